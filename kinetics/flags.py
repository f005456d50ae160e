"""Flags of kinetics.train and kinetics.eval, named as torchvision's
video-classification recipe names them (``--data-path`` -> ``--data_path``,
``--lr-warmup-epochs`` -> ``--lr_warmup_epochs``, ...).

As in the recipe, ``--batch_size`` is per device and the learning rate is
scaled linearly with the number of replicas; the data flags name folders of
TFRecord shards written once by ``tfrecord_tools.video_writer`` (the recipe
decoded the videos on every run; ``--cache_dataset`` is accepted and implied).
"""

import os

import tensorflow as tf
from absl import flags

from input_pipeline import records
from kinetics.models import DEFAULT_GEOMETRY, MODELS
from vidcore import cli
from vidcore import files as vfiles
from vidcore.distribute import PRECISIONS, STRATEGIES
from vidcore.errors import UserInputError

# The family's own FlagValues: other families define flags of the same names
# (batch_size, lr, ...) and tests import them into one process.
FLAGS = flags.FlagValues()

# --- data --------------------------------------------------------------------
cli.flag_topic("data", FLAGS)
flags.DEFINE_string(
    "data_path", "",
    "Dataset root: holds --train_dir and --val_dir (folders of shards "
    "from tfrecord_tools.video_writer, or globs).", flag_values=FLAGS)
flags.DEFINE_string("train_dir", "train",
                    "Training shards under --data_path (folder or glob).",
                    flag_values=FLAGS)
flags.DEFINE_string("val_dir", "val",
                    "Validation shards under --data_path (folder or glob).",
                    flag_values=FLAGS)
flags.DEFINE_integer("clip_len", 16, "Frames per clip.", flag_values=FLAGS)
flags.DEFINE_float(
    "frame_rate", 15.0,
    "Clips are sampled at this many frames per second (0: the rate the "
    "shards were written with).", flag_values=FLAGS)
flags.DEFINE_integer(
    "clips_per_video", 5,
    "Training: random clips drawn per video per epoch. Evaluation: evenly "
    "spaced clips per video.", flag_values=FLAGS)
flags.DEFINE_list(
    "resize", [],
    "Resize frames to H,W before cropping (default: the model's, "
    "128,171 for R3D/MC3/R(2+1)D, 256,256 for S3D).", flag_values=FLAGS)
flags.DEFINE_integer("crop_size", 0,
                     "Clip height/width (default: the model's, 112 or 224).",
                     flag_values=FLAGS)
flags.DEFINE_bool("cache_dataset", False,
                  "Accepted for the recipe's commands: the shards already "
                  "hold decoded, resampled frames.", flag_values=FLAGS)
flags.DEFINE_integer("workers", 0,
                     "tf.data private thread pool size (0: shared pool).",
                     flag_values=FLAGS)

# --- model ------------------------------------------------------------------
cli.flag_topic("model", FLAGS)
flags.DEFINE_enum("model", "r2plus1d_18", list(MODELS), "Backbone.",
                  flag_values=FLAGS)
flags.DEFINE_integer(
    "num_classes", 0,
    "Classes (0: from the converter's manifest of the training shards).",
    flag_values=FLAGS)
flags.DEFINE_string(
    "weights", "",
    "Start from torchvision weights: a .pth state dict of the same model "
    "(e.g. r2plus1d_18-91a641e6.pth), converted on the fly (torch extra); "
    "with another class count the classifier stays freshly initialised.",
    flag_values=FLAGS)
flags.DEFINE_string(
    "output_dir", "kinetics_run",
    "Checkpoints, TensorBoard events and model_config.json; training "
    "resumes from its latest checkpoint.", flag_values=FLAGS)
flags.DEFINE_string(
    "resume", "",
    "A checkpoint (directory or prefix) of an earlier run. kinetics.train: "
    "resume from it (weights, optimizer, step) into a new --output_dir (a "
    "run resumes from --output_dir's own checkpoints without this flag). "
    "kinetics.eval: evaluate it instead of --output_dir's latest.",
    flag_values=FLAGS)

# --- distribution / precision -------------------------------------------
cli.flag_topic("distribution", FLAGS)
flags.DEFINE_enum(
    "strategy", "auto", list(STRATEGIES),
    "tf.distribute strategy: auto (mirrored with >1 GPU), default, "
    "mirrored, multi_worker (TF_CONFIG), tpu.", flag_values=FLAGS)
flags.DEFINE_string("tpu", "", "TPU name or address for --strategy=tpu.",
                    flag_values=FLAGS)
flags.DEFINE_enum("mixed_precision", "float32", list(PRECISIONS),
                  "Keras dtype policy.", flag_values=FLAGS)
flags.DEFINE_bool("amp", False,
                  "The recipe's mixed precision flag: --mixed_precision="
                  "mixed_float16.", flag_values=FLAGS)
flags.DEFINE_alias("apex", "amp", flag_values=FLAGS)
cli.flag_topic("training", FLAGS)
flags.DEFINE_integer("batch_size", 24, "Clips per device per step.",
                     flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Random seed.", flag_values=FLAGS)


def precision():
    """The dtype policy asked for (--amp/--apex mean mixed_float16)."""
    if FLAGS.amp and FLAGS.mixed_precision == "float32":
        return "mixed_float16"
    return FLAGS.mixed_precision


def geometry(model_name):
    """(resize (H, W), crop) from --resize/--crop_size or the model's."""
    resize, crop = DEFAULT_GEOMETRY[model_name]
    if FLAGS.resize:
        try:
            resize = tuple(int(v) for v in FLAGS.resize)
        except ValueError:
            resize = ()
        if len(resize) != 2 or min(resize) < 1:
            raise UserInputError(
                f"--resize must be two positive integers H,W, got "
                f"{','.join(FLAGS.resize)}")
    if FLAGS.crop_size:
        crop = FLAGS.crop_size
    if crop > min(resize):
        raise UserInputError(f"--crop_size={crop} is larger than the resized "
                             f"frames {resize}")
    return resize, crop


def frame_rate():
    return FLAGS.frame_rate if FLAGS.frame_rate > 0 else None


def split_files(sub, flag_name):
    """Shard paths of a split: --data_path/<sub> as a folder (its
    *.tfrecord* files) or a glob."""
    if not FLAGS.data_path:
        raise UserInputError("--data_path is required (the folder holding "
                             "--train_dir and --val_dir)")
    path = os.path.join(FLAGS.data_path, sub)
    if tf.io.gfile.isdir(path):
        files = sorted(f for f in vfiles.glob(os.path.join(path,
                                                          "*.tfrecord*"))
                       if not os.path.basename(f).startswith("."))
        if not files:
            raise UserInputError(f"--{flag_name}: no *.tfrecord shards in "
                                 f"{path}")
        return files
    return records.list_files(path, f"--{flag_name}")


def manifest_labels(files):
    """Class names the converter recorded for these shards, or None."""
    found = None
    for directory in sorted({vfiles.parent_dir(f) for f in files}):
        for path in sorted(vfiles.glob(os.path.join(directory,
                                                   "manifest-*.json"))):
            try:
                labels = vfiles.read_json(path).get("options", {}).get(
                    "classes")
            except (OSError, ValueError, AttributeError,
                    tf.errors.OpError):
                continue
            if labels:
                if found is not None and list(labels) != list(found):
                    raise UserInputError(
                        f"{path}: its class list differs from another "
                        f"manifest's beside the same shards")
                found = list(labels)
    return found


def check_same_classes(files, class_names, flag_name):
    """Refuses shards whose converter class list differs from the model's
    (class indices would mean other classes)."""
    labels = manifest_labels(files)
    if labels and class_names and list(labels) != list(class_names):
        raise UserInputError(
            f"--{flag_name}: the shards were converted with classes "
            f"{labels[:5]}{'...' if len(labels) > 5 else ''} but the model "
            f"has {list(class_names)[:5]}"
            f"{'...' if len(class_names) > 5 else ''}; convert them with "
            f"the same --label_map")
