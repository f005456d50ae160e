"""Flags of avl.train and avl.eval: every flag of the original ``args.py``
by its name, plus ours for the input pipeline and the training loop.

The original read 2D/3D features, wav files / spectrograms and captions
from per-video files (``--features_path``, ``--features_path_audio``,
``--train_csv``, ``--caption_path``) and its downstream sets from pickles.
We read TFRecord shards made once by the converters, so:

* ``--train_data`` names the HowTo100M video shards of
  ``tfrecord_tools.howto_writer ... --features_path_audio=...``; the
  original's per-video file flags are still defined, and passing one ends
  with a message giving the converter command;
* ``--youcook_train_path``, ``--youcook_val_path``, ``--msrvtt_train_path``
  and ``--msrvtt_test_path`` keep their names but take shard globs of
  ``tfrecord_tools.howto_eval_sets --allow_pickle --captions=<pickle>``
  (CrossTask and YouCook-Japanese go through the YouCook2 flags, as in the
  original); a ``.pkl`` path is rejected with that command.

Accepted for the published command lines and used as the original does:
``--num_thread_reader`` (a tf.data thread pool; 0, our default, lets
tf.data size it), ``--apex_level`` (1, NVIDIA apex O1, is mixed_float16;
0 is float32), ``--loss`` (0, MMS, is the only loss), ``--verbose``.
Accepted and unused, as in the original (its code never reads them):
``--sentence_dim``, ``--text_thresh``. ``--feature_framerate`` is not
needed: each record carries its streams' frame rates (set when converting,
``howto_writer --feature_rate_2d``).
"""

import os

import tensorflow as tf
from absl import flags, logging

from avl.models import AVLConfig
from input_pipeline import avl as reader
from input_pipeline import features as keys
from input_pipeline import howto as howto_reader
from input_pipeline import records
from vidcore import cli
from vidcore import files as vfiles
from vidcore.distribute import PRECISIONS, STRATEGIES
from vidcore.errors import UserInputError
from vidcore.files import write_json_atomic

# The family's own FlagValues (not absl's global FLAGS): howto and yt8m
# define flags of the same names and tests import all families into one
# process; vidcore.cli.run attaches them in the process that runs the CLI.
FLAGS = flags.FlagValues()
MODEL_CONFIG_FILE = "model_config.json"  # the AVLConfig (as avl.convert_torch)
RUN_RECORD_FILE = "avl_run.json"  # word vectors of a training run
AUDIO_FRAMES_UNIT = 1024  # the downstream sets keep 1024 * multiplier frames

# --- data ----------------------------------------------------------------
cli.flag_topic("data", FLAGS)
flags.DEFINE_string(
    "train_data", "",
    "HowTo100M video shards (glob) with audio, from tfrecord_tools."
    "howto_writer --features_path_audio=... (used unless --youcook or "
    "--msrvtt).", flag_values=FLAGS)
flags.DEFINE_string(
    "youcook_train_path", "",
    "YouCook2 (or CrossTask, YouCook-Japanese) training clip shards (glob), "
    "for --youcook=1: tfrecord_tools.howto_eval_sets --allow_pickle "
    "--captions=youcook_train_audio.pkl.", flag_values=FLAGS)
flags.DEFINE_string(
    "youcook_val_path", "",
    "YouCook2 (or CrossTask, YouCook-Japanese) validation clip shards "
    "(glob), for --eval_youcook=1.", flag_values=FLAGS)
flags.DEFINE_string(
    "msrvtt_train_path", "",
    "MSR-VTT training clip shards (glob), for --msrvtt=1 (from "
    "msrvtt_train.pkl or msrvtt_1k-A_train.pkl).", flag_values=FLAGS)
flags.DEFINE_string(
    "msrvtt_test_path", "",
    "MSR-VTT 1k-A test clip shards (glob), for --eval_msrvtt=1 (from "
    "msrvtt_jsfusion_test.pkl).", flag_values=FLAGS)
flags.DEFINE_string(
    "word2vec_path", "",
    "Word vectors of the text variants (--tri_modal=1): word2vec binary "
    "(GoogleNews), GloVe / word2vec text, or a vidcore.text.WordVectors "
    "directory. avl.eval defaults to the one recorded at training.",
    flag_values=FLAGS)
flags.DEFINE_integer("youcook", 0, "Train on the --youcook_train_path clips.",
                     flag_values=FLAGS)
flags.DEFINE_integer("msrvtt", 0, "Train on the --msrvtt_train_path clips.",
                     flag_values=FLAGS)
flags.DEFINE_integer("eval_youcook", 0,
                     "Evaluate retrieval on --youcook_val_path.",
                     flag_values=FLAGS)
flags.DEFINE_integer("eval_msrvtt", 0,
                     "Evaluate retrieval on --msrvtt_test_path.",
                     flag_values=FLAGS)

# The original's per-video file flags: rejected with the converter command.
_CONVERT_VIDEOS = ("python -m tfrecord_tools.howto_writer --csv=<video list> "
                   "--caption_path=<caption json> --features_path=<2D> "
                   "--features_path_3D=<3D> --features_path_audio=<wav or "
                   "npz root> --output_dir=<shards>")
_RELEASE_FILE_FLAGS = ("train_csv", "features_path", "features_path_audio",
                       "caption_path")
for _name in _RELEASE_FILE_FLAGS:
    flags.DEFINE_string(
        _name, "",
        "Per-video release files of the original: convert them to shards "
        "first (the error says how) and pass --train_data.",
        flag_values=FLAGS)
# The pickle-path flags of the original that now take shard globs.
_CLIP_SET_FLAGS = {"youcook_train_path": "youcook",
                   "youcook_val_path": "youcook",
                   "msrvtt_train_path": "msrvtt",
                   "msrvtt_test_path": "msrvtt"}

# --- model ---------------------------------------------------------------
cli.flag_topic("model", FLAGS)
flags.DEFINE_integer("embd_dim", 2048, "Joint embedding size D.",
                     flag_values=FLAGS)
flags.DEFINE_integer("feature_dim", 4096,
                     "Video feature size (2D + 3D); checked against the "
                     "data.", flag_values=FLAGS)
flags.DEFINE_integer("we_dim", 300, "Word-vector size (text variants).",
                     flag_values=FLAGS)
flags.DEFINE_integer("max_words", 20, "Words per caption (text variants).",
                     flag_values=FLAGS)
flags.DEFINE_integer("sentence_dim", -1,
                     "Accepted for the original's command lines; its code "
                     "never uses it (the text branch has embd_dim, or "
                     "embd_dim / 2 when fused).", flag_values=FLAGS)
flags.DEFINE_integer("tri_modal", 0,
                     "Add the text branch (AVLnet-Text).", flag_values=FLAGS)
flags.DEFINE_integer("tri_modal_fuse", 0,
                     "Fuse audio and text (AVLnet-Text-Fused; needs "
                     "--tri_modal=1).", flag_values=FLAGS)
flags.DEFINE_integer("fuse_videoaudio_additive", 0,
                     "AVLnet-Text-Tri: train and evaluate text -> audio + "
                     "video (the fine-tuning commands).", flag_values=FLAGS)
flags.DEFINE_integer("loss", 0, "0: masked margin softmax (the only loss).",
                     flag_values=FLAGS)
flags.DEFINE_bool("mask_audio_padding_in_training", False,
                  "Mean-pool the audio over its valid frames in training too "
                  "(the original averages over the padding as well).",
                  flag_values=FLAGS)
flags.DEFINE_bool("sync_bn", False,
                  "ResDAVEnet batch-norm statistics over the global batch "
                  "(the original's DataParallel normalised per GPU).",
                  flag_values=FLAGS)
flags.DEFINE_string(
    "pretrain_path", "",
    "Start from these weights: a released .pth (AVLnet_release.pth, ...; "
    "converted on the fly, needs the torch extra), one of our checkpoint "
    "directories (training or avl.convert_torch) or a checkpoint prefix.",
    flag_values=FLAGS)
flags.DEFINE_string(
    "checkpoint_dir", "ckpt",
    "Checkpoints (one per epoch), TensorBoard events, model_config.json; "
    "training resumes from it.", flag_values=FLAGS)

# --- input ---------------------------------------------------------------
cli.flag_topic("input", FLAGS)
flags.DEFINE_integer("random_audio_windows", 1,
                     "1: n_pair random whole-second audio windows per video; "
                     "0: the HowTo100M caption clips grown to --min_time.",
                     flag_values=FLAGS)
flags.DEFINE_integer("howto_audio_frames", 1024,
                     "Spectrogram frames (10 ms) per HowTo100M clip.",
                     flag_values=FLAGS)
flags.DEFINE_integer("youcook_num_frames_multiplier", 5,
                     "YouCook2 clips keep 1024 * this many frames.",
                     flag_values=FLAGS)
flags.DEFINE_integer("msrvtt_num_frames_multiplier", 3,
                     "MSR-VTT clips keep 1024 * this many frames.",
                     flag_values=FLAGS)
flags.DEFINE_integer("n_pair", 1, "Clips drawn per video per step.",
                     flag_values=FLAGS)
flags.DEFINE_float("min_time", 5.0,
                   "Minimum clip duration in seconds (--random_audio_"
                   "windows=0).", flag_values=FLAGS)
flags.DEFINE_integer("min_words", 0,
                     "Minimum clip tokens (--random_audio_windows=0).",
                     flag_values=FLAGS)
flags.DEFINE_integer("feature_framerate", 1,
                     "Not needed: the records carry each stream's rate.",
                     flag_values=FLAGS)
flags.DEFINE_integer("num_thread_reader", 0,
                     "tf.data private thread pool size (0: tf.data's shared "
                     "pool, AUTOTUNE parallelism).", flag_values=FLAGS)
flags.DEFINE_integer("shuffle_buffer", 1024, "Records in the shuffle buffer.",
                     flag_values=FLAGS)

# --- training ------------------------------------------------------------
cli.flag_topic("training", FLAGS)
flags.DEFINE_integer("batch_size", 256,
                     "Videos (or clips) per step, global.", flag_values=FLAGS)
flags.DEFINE_integer("epochs", 20,
                     "Epochs in all (a resumed run does the rest).",
                     flag_values=FLAGS)
flags.DEFINE_float("lr", 0.0001, "Adam learning rate.", flag_values=FLAGS)
flags.DEFINE_float("lr_decay", 0.9, "Learning-rate factor per epoch.",
                   flag_values=FLAGS)
flags.DEFINE_integer("apex_level", 0,
                     "1: mixed precision (mixed_float16, as apex O1); 0: "
                     "float32.", flag_values=FLAGS)
flags.DEFINE_integer("seed", 1, "Random seed (weights, sampling).",
                     flag_values=FLAGS)
flags.DEFINE_integer("n_display", 200, "Steps between logged losses.",
                     flag_values=FLAGS)
flags.DEFINE_integer("verbose", 1, "Show progress bars.", flag_values=FLAGS)
flags.DEFINE_integer("steps_per_epoch", 0,
                     "Steps per epoch (0: training records // batch_size, "
                     "from the converter's manifest or by counting).",
                     flag_values=FLAGS)
flags.DEFINE_integer("max_steps", None,
                     "Stop after this step (default: epochs * "
                     "steps_per_epoch).", flag_values=FLAGS)
flags.DEFINE_integer("checkpoint_every_steps", 1000,
                     "Steps between checkpoints (also one per epoch).",
                     flag_values=FLAGS)
flags.DEFINE_integer("steps_per_loop", 10,
                     "Training steps per tf.function call.", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer("keep_checkpoints", 5, "Checkpoints kept.",
                     flag_values=FLAGS)

# --- evaluation ----------------------------------------------------------
cli.flag_topic("evaluation", FLAGS)
flags.DEFINE_integer("batch_size_val", 3500, "Clips per evaluation batch.",
                     flag_values=FLAGS)
flags.DEFINE_integer("eval_lang_retrieval", 0,
                     "1: retrieve the language side (audio / text) given "
                     "video clips (the similarity matrix transposed).",
                     flag_values=FLAGS)
flags.DEFINE_integer("msrvtt_test_clips", 1000,
                     "Clips of the MSR-VTT test split (1k-A: 1000). Recall "
                     "is divided by it: test clips without audio, in the "
                     "shards or not, count as misses.", flag_values=FLAGS)
flags.DEFINE_integer("text_thresh", 0,
                     "Accepted for the original's command lines; its code "
                     "never uses it.", flag_values=FLAGS)
flags.DEFINE_enum("ties", "pessimistic",
                  ["pessimistic", "optimistic", "index"],
                  "Rank of the true clip among equal scores.",
                  flag_values=FLAGS)

# --- distribution --------------------------------------------------------
cli.flag_topic("distribution", FLAGS)
flags.DEFINE_enum("strategy", "auto", list(STRATEGIES),
                  "tf.distribute strategy: auto (mirrored with >1 GPU), "
                  "default, mirrored, multi_worker (TF_CONFIG), tpu.",
                  flag_values=FLAGS)
flags.DEFINE_string("tpu", "", "TPU name or address for --strategy=tpu.",
                    flag_values=FLAGS)
flags.DEFINE_enum("mixed_precision", None, list(PRECISIONS),
                  "Keras dtype policy (default: from --apex_level); "
                  "mixed_bfloat16 for TPUs.", flag_values=FLAGS)


def check_flags():
    """Raises UserInputError for flags this port cannot take as given.

    The original's per-video file flags and pickle paths (convert them
    first), a loss other than MMS, an unknown --apex_level.
    """
    for name in _RELEASE_FILE_FLAGS:
        if FLAGS[name].value:
            raise UserInputError(
                f"--{name}={FLAGS[name].value} points at the original's "
                f"per-video files; convert them once with `{_CONVERT_VIDEOS}` "
                f"and pass --train_data=<shards>/train-*")
    for name, dataset in _CLIP_SET_FLAGS.items():
        value = FLAGS[name].value
        if value.endswith((".pkl", ".pickle")):
            raise UserInputError(
                f"--{name}={value} is a release pickle; convert it once with "
                f"`python -m tfrecord_tools.howto_eval_sets --dataset="
                f"{dataset} --allow_pickle --captions={value} "
                f"--output_dir=<shards>` and pass --{name}=<shards>/<prefix>-*")
    if FLAGS.loss != 0:
        raise UserInputError(f"--loss={FLAGS.loss}: only 0 (masked margin "
                             f"softmax) exists, as in the original")
    if FLAGS.apex_level not in (0, 1):
        raise UserInputError(f"--apex_level={FLAGS.apex_level}: 0 (float32) "
                             f"or 1 (mixed precision, apex O1)")
    for name in ("sentence_dim", "text_thresh", "feature_framerate"):
        if FLAGS[name].present:
            logging.info("--%s is accepted and unused (module doc of "
                         "avl.flags)", name)


def precision_from_flags():
    """The Keras dtype policy: --mixed_precision, else from --apex_level."""
    from_apex = "mixed_float16" if FLAGS.apex_level == 1 else "float32"
    chosen = FLAGS.mixed_precision
    if chosen is None:
        return from_apex
    if FLAGS["apex_level"].present and chosen != from_apex:
        raise UserInputError(f"--apex_level={FLAGS.apex_level} means "
                             f"{from_apex}, but --mixed_precision={chosen}; "
                             f"pass one of them")
    return chosen


def model_config_from_flags():
    """AVLConfig of the flags (validated when the model is built)."""
    return AVLConfig(
        embd_dim=FLAGS.embd_dim, feature_dim=FLAGS.feature_dim,
        we_dim=FLAGS.we_dim, max_words=FLAGS.max_words,
        tri_modal=bool(FLAGS.tri_modal),
        tri_modal_fuse=bool(FLAGS.tri_modal_fuse),
        fuse_videoaudio_additive=bool(FLAGS.fuse_videoaudio_additive),
        mask_audio_padding_in_training=FLAGS.mask_audio_padding_in_training,
        sync_bn=FLAGS.sync_bn)


def audio_frames_of(dataset):
    """Spectrogram frames a downstream clip keeps: 1024 x the set's
    multiplier ("youcook" or "msrvtt")."""
    multiplier = FLAGS[f"{dataset}_num_frames_multiplier"].value
    if multiplier < 1:
        raise UserInputError(f"--{dataset}_num_frames_multiplier must be "
                             f"positive, got {multiplier}")
    return AUDIO_FRAMES_UNIT * multiplier


def training_source():
    """(flag name, shard glob, dataset) of the training data the flags
    choose; dataset is "howto", "youcook" or "msrvtt"."""
    if FLAGS.youcook and FLAGS.msrvtt:
        raise UserInputError("choose one of --youcook=1 and --msrvtt=1")
    if FLAGS.youcook:
        name, dataset = "youcook_train_path", "youcook"
    elif FLAGS.msrvtt:
        name, dataset = "msrvtt_train_path", "msrvtt"
    else:
        name, dataset = "train_data", "howto"
    pattern = FLAGS[name].value
    if not pattern:
        raise UserInputError(f"--{name} is required (a glob of TFRecord "
                             f"shards), or --dry_run to only build the model")
    return name, pattern, dataset


def eval_sets_from_flags():
    """{display name: (flag name, shard glob, dataset)} of the evaluation
    sets asked for, in the original's order (YouCook2, then MSR-VTT)."""
    sets = {}
    for enabled, label, name, dataset in (
            (FLAGS.eval_youcook, "YouCook2", "youcook_val_path", "youcook"),
            (FLAGS.eval_msrvtt, "MSR-VTT", "msrvtt_test_path", "msrvtt")):
        if not enabled:
            continue
        if not FLAGS[name].value:
            raise UserInputError(f"--eval_{dataset}=1 needs --{name}=<glob of "
                                 f"clip shards>")
        sets[label] = (name, FLAGS[name].value, dataset)
    return sets


def clip_config(files, kind, dataset, cfg):
    """The reader's AVLClipConfig for shards of ``dataset`` ("howto",
    "youcook" or "msrvtt"): their streams, the sampling flags, the set's
    audio length.

    Raises:
        UserInputError: the shards' 2D + 3D size is not --feature_dim.
    """
    streams, dims = howto_reader.detect_streams(files, kind)
    if kind == "videos":
        _check_video_audio(files[0])
    if sum(dims) != cfg.feature_dim:
        raise UserInputError(
            f"--feature_dim={cfg.feature_dim} but the {dataset} shards "
            f"({files[0]}, ...) hold streams {streams} of sizes {dims} "
            f"(total {sum(dims)})")
    return reader.AVLClipConfig(
        streams=streams, dims=dims,
        n_pair=FLAGS.n_pair if kind == "videos" else 1,
        min_time=FLAGS.min_time, min_words=FLAGS.min_words,
        max_words=cfg.max_words, audio_frames=FLAGS.howto_audio_frames,
        random_audio_windows=bool(FLAGS.random_audio_windows),
        needs_text=cfg.tri_modal,
        eval_audio_frames=(FLAGS.howto_audio_frames if dataset == "howto"
                           else audio_frames_of(dataset)))


def _check_video_audio(path):
    """Raises UserInputError when the first video record of ``path`` has no
    spectrogram (HowTo100M shards converted without audio)."""
    for raw in tf.data.TFRecordDataset(path).take(1):
        context = tf.train.SequenceExample.FromString(raw.numpy()).context
        if keys.AVL_SPECTROGRAM not in context.feature:
            raise UserInputError(
                f"{path} holds HowTo100M video records without audio; "
                f"convert them with `{_CONVERT_VIDEOS}`")


def eval_sets(cfg):
    """{name: (files, AVLClipConfig, clips in the split or None)} of the
    evaluation sets asked for; MSR-VTT's split has --msrvtt_test_clips."""
    sets = {}
    for label, (name, pattern, dataset) in eval_sets_from_flags().items():
        files = records.list_files(pattern, f"--{name}")
        total = FLAGS.msrvtt_test_clips if dataset == "msrvtt" else None
        sets[label] = (files, clip_config(files, "clips", dataset, cfg),
                       total)
    return sets


def write_run_record(checkpoint_dir, cfg, word2vec_path):
    """Writes model_config.json (the AVLConfig, as avl.convert_torch does)
    and avl_run.json (the word vectors) into checkpoint_dir."""
    tf.io.gfile.makedirs(checkpoint_dir)
    write_json_atomic(os.path.join(checkpoint_dir, MODEL_CONFIG_FILE),
                      cfg.to_dict())
    write_json_atomic(os.path.join(checkpoint_dir, RUN_RECORD_FILE), {
        "word2vec_path": (vfiles.display_path(word2vec_path) if word2vec_path
                          else "")})


def read_run_record(checkpoint_dir):
    """(AVLConfig, word2vec path or "") of a training or avl.convert_torch
    directory, or None when it holds no model_config.json."""
    record = vfiles.read_json(os.path.join(checkpoint_dir, MODEL_CONFIG_FILE))
    if record is None:
        return None
    run = vfiles.read_json(os.path.join(checkpoint_dir, RUN_RECORD_FILE))
    return AVLConfig.from_dict(record), (run or {}).get("word2vec_path", "")
