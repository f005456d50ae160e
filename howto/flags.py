"""Flags shared by howto.train and howto.eval, named as the original's.

The original (PyTorch) read features and captions from their release files;
we read them from TFRecords made once by the converters, so the data flags
name shard patterns. The original's file flags (``--features_path_2D``,
``--train_csv``, ``--caption_path``, ``--msrvtt_test_csv_path``, ...) are
still defined: passing one ends with a message saying which converter makes
the shards and which flag takes them.
"""

import os

import tensorflow as tf
from absl import flags

from howto.models import ModelConfig
from vidcore import cli
from vidcore import files as vfiles
from vidcore.distribute import PRECISIONS, STRATEGIES
from vidcore.errors import UserInputError
from vidcore.files import write_json_atomic

# The family's own FlagValues (not absl's global FLAGS): the YouTube-8M CLIs
# define flags of the same names (batch_size, strategy, ...), and tests import
# both families into one process. vidcore.cli.run attaches them to the global
# FLAGS in the process that runs the CLI.
FLAGS = flags.FlagValues()
MODEL_CONFIG_FILE = "model_config.json"

# --- data --------------------------------------------------------------------
cli.flag_topic("data", FLAGS)
flags.DEFINE_string(
    "train_data",
    "",
    "HowTo100M video shards (glob), from tfrecord_tools.howto_writer.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "msrvtt_train_path",
    "",
    "MSR-VTT training clip shards (glob), used with "
    "--msrvtt=1 (tfrecord_tools.howto_eval_sets "
    "--dataset=msrvtt --split=train).",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "youcook_train_path",
    "",
    "YouCook2 training clip shards (glob), used with --youcook=1.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "lsmdc_train_path",
    "",
    "LSMDC training clip shards (glob), used with --lsmdc=1.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "msrvtt_test_path",
    "",
    "MSR-VTT 1k-A test clip shards (glob), for --eval_msrvtt=1.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "youcook_val_path",
    "",
    "YouCook2 validation clip shards (glob), for --eval_youcook=1.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "lsmdc_test_path",
    "",
    "LSMDC public test clip shards (glob), for --eval_lsmdc=1.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "word2vec_path",
    "",
    "Word vectors: word2vec C binary (GoogleNews), GloVe / "
    "word2vec text, or a directory saved by "
    "vidcore.text.WordVectors.save. Default for eval: the "
    "one recorded at training time.",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "msrvtt", 0, "Train on MSR-VTT (--msrvtt_train_path).", flag_values=FLAGS
)
flags.DEFINE_integer(
    "youcook",
    0,
    "Train on YouCook2 (--youcook_train_path).",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "lsmdc", 0, "Train on LSMDC (--lsmdc_train_path).", flag_values=FLAGS
)
flags.DEFINE_integer(
    "eval_msrvtt", 0, "Evaluate on MSR-VTT 1k-A.", flag_values=FLAGS
)
flags.DEFINE_integer(
    "eval_youcook", 0, "Evaluate on YouCook2 validation.", flag_values=FLAGS
)
flags.DEFINE_integer(
    "eval_lsmdc", 0, "Evaluate on LSMDC public test.", flag_values=FLAGS
)

# The original's release-file flags: rejected with a pointer to the
# converter (see module docstring).
_RELEASE_FILE_FLAGS = {
    "train_csv": ("tfrecord_tools.howto_writer --csv", "--train_data"),
    "features_path": (
        "tfrecord_tools.howto_writer --features_path",
        "--train_data",
    ),
    "features_path_3D": (
        "tfrecord_tools.howto_writer --features_path_3D",
        "--train_data",
    ),
    "caption_path": (
        "tfrecord_tools.howto_writer --caption_path",
        "--train_data",
    ),
    "msrvtt_test_csv_path": (
        "tfrecord_tools.howto_eval_sets --dataset=msrvtt",
        "--msrvtt_test_path",
    ),
    "msrvtt_test_features_path": (
        "tfrecord_tools.howto_eval_sets --dataset=msrvtt",
        "--msrvtt_test_path",
    ),
    "lsmdc_test_csv_path": (
        "tfrecord_tools.howto_eval_sets --dataset=lsmdc",
        "--lsmdc_test_path",
    ),
    "lsmdc_test_features_path": (
        "tfrecord_tools.howto_eval_sets --dataset=lsmdc",
        "--lsmdc_test_path",
    ),
}
for _name in _RELEASE_FILE_FLAGS:
    flags.DEFINE_string(
        _name,
        "",
        "Release-file path of the original code: "
        "convert to TFRecords first (the error says how).",
        flag_values=FLAGS,
    )
flags.DEFINE_alias("features_path_2D", "features_path", flag_values=FLAGS)

# --- model ---------------------------------------------------------------
cli.flag_topic("model", FLAGS)
flags.DEFINE_integer(
    "embd_dim", 2048, "Joint embedding size D.", flag_values=FLAGS
)
flags.DEFINE_integer(
    "feature_dim",
    4096,
    "Clip feature size (2D + 3D); checked against the data.",
    flag_values=FLAGS,
)
flags.DEFINE_integer("we_dim", 300, "Word-vector size.", flag_values=FLAGS)
flags.DEFINE_integer("max_words", 20, "Words per sentence.", flag_values=FLAGS)
flags.DEFINE_integer(
    "sentence_dim",
    -1,
    "Text max-pool size (<= 0: embd_dim).",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "pretrain_path",
    "",
    "Start from these weights: the authors' PyTorch .pth "
    "(converted on the fly; needs the torch extra), or one of "
    "our checkpoint directories / prefixes.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "checkpoint_dir",
    "ckpt",
    "Checkpoints, TensorBoard events, model_config.json "
    "(training resumes from it).",
    flag_values=FLAGS,
)

# --- training / evaluation ---------------------------------------------
cli.flag_topic("training", FLAGS)
flags.DEFINE_integer(
    "batch_size", 256, "Videos (or clips) per step, global.", flag_values=FLAGS
)
flags.DEFINE_integer(
    "batch_size_val", 3500, "Clips per evaluation batch.", flag_values=FLAGS
)
flags.DEFINE_integer(
    "n_pair", 1, "Clips drawn per video per step.", flag_values=FLAGS
)
flags.DEFINE_float(
    "min_time", 5.0, "Minimum clip duration (s).", flag_values=FLAGS
)
flags.DEFINE_integer("min_words", 0, "Minimum clip tokens.", flag_values=FLAGS)
flags.DEFINE_integer(
    "epochs", 20, "Epochs (an epoch draws each video once).", flag_values=FLAGS
)
flags.DEFINE_float("lr", 0.0001, "Adam learning rate.", flag_values=FLAGS)
flags.DEFINE_float(
    "lr_decay", 0.9, "Learning-rate factor per epoch.", flag_values=FLAGS
)
flags.DEFINE_float(
    "margin", 0.1, "Max-margin ranking margin.", flag_values=FLAGS
)
flags.DEFINE_float(
    "hard_negative_rate",
    0.5,
    "Share of negative weight on same-video clips.",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "negative_weighting",
    1,
    "Weight same-video vs other-video negatives (applies "
    "when n_pair > 1, as in the original).",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "seed", 1, "Random seed (weights, sampling).", flag_values=FLAGS
)
flags.DEFINE_integer(
    "n_display", 10, "Steps between logged losses.", flag_values=FLAGS
)
flags.DEFINE_integer(
    "num_thread_reader",
    0,
    "tf.data private thread pool size (0: shared pool, AUTOTUNE parallelism).",
    flag_values=FLAGS,
)
flags.DEFINE_integer("verbose", 1, "Show progress bars.", flag_values=FLAGS)
flags.DEFINE_integer(
    "gpu_mode", 1, "0: run on the CPU even with GPUs.", flag_values=FLAGS
)
flags.DEFINE_integer(
    "steps_per_epoch",
    0,
    "Steps per epoch (0: training records // global batch, "
    "from the converter's manifest or by counting).",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "max_steps",
    None,
    "Stop after this step (default: epochs * steps_per_epoch).",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "shuffle_buffer", 1024, "Records in the shuffle buffer.", flag_values=FLAGS
)
flags.DEFINE_integer(
    "checkpoint_every_steps",
    1000,
    "Steps between checkpoints (also one per epoch).",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "steps_per_loop",
    10,
    "Training steps per tf.function call (losses reach the host once per "
    "call; calls end on display, checkpoint and epoch boundaries).",
    lower_bound=1,
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "keep_checkpoints", 5, "Checkpoints kept.", flag_values=FLAGS
)
cli.flag_topic("evaluation", FLAGS)
flags.DEFINE_enum(
    "ties",
    "pessimistic",
    ["pessimistic", "optimistic", "index"],
    "Rank of the true clip among equal scores.",
    flag_values=FLAGS,
)
flags.DEFINE_bool(
    "video_to_text",
    False,
    "Also report video->text retrieval.",
    flag_values=FLAGS,
)
cli.flag_topic("distribution", FLAGS)
flags.DEFINE_enum(
    "strategy",
    "auto",
    list(STRATEGIES),
    "tf.distribute strategy: auto (mirrored with >1 GPU), "
    "default, mirrored, multi_worker (TF_CONFIG), tpu.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "tpu", "", "TPU name or address for --strategy=tpu.", flag_values=FLAGS
)
flags.DEFINE_enum(
    "mixed_precision",
    "float32",
    list(PRECISIONS),
    "Keras dtype policy.",
    flag_values=FLAGS,
)


def check_release_file_flags():
    """Raises UserInputError when an original release-file flag is set."""
    for name, (tool, ours) in _RELEASE_FILE_FLAGS.items():
        if FLAGS[name].value:
            raise UserInputError(
                f"--{name} points at the original release files; convert "
                f"them once with `python -m {tool}=...` and pass the shards "
                f"with {ours}=<glob>"
            )


def model_config_from_flags():
    return ModelConfig(
        embd_dim=FLAGS.embd_dim,
        feature_dim=FLAGS.feature_dim,
        we_dim=FLAGS.we_dim,
        max_words=FLAGS.max_words,
        sentence_dim=FLAGS.sentence_dim,
    )


def eval_sets_from_flags():
    """{display name: shard glob} of the evaluation sets asked for."""
    sets = {}
    for enabled, name, path, flag in (
        (
            FLAGS.eval_msrvtt,
            "MSR-VTT",
            FLAGS.msrvtt_test_path,
            "msrvtt_test_path",
        ),
        (
            FLAGS.eval_youcook,
            "YouCook2",
            FLAGS.youcook_val_path,
            "youcook_val_path",
        ),
        (FLAGS.eval_lsmdc, "LSMDC", FLAGS.lsmdc_test_path, "lsmdc_test_path"),
    ):
        if enabled:
            if not path:
                raise UserInputError(
                    f"--eval_{flag.split('_')[0]}=1 needs "
                    f"--{flag}=<glob of clip shards>"
                )
            sets[name] = path
    return sets


def write_model_record(checkpoint_dir, cfg, word2vec_path):
    """Writes checkpoint_dir/model_config.json (model + word vectors)."""
    tf.io.gfile.makedirs(checkpoint_dir)
    path = os.path.join(checkpoint_dir, MODEL_CONFIG_FILE)
    write_json_atomic(path, {
        "model": cfg.to_dict(),
        "word2vec_path": (vfiles.display_path(word2vec_path) if word2vec_path
                          else "")})


def read_model_record(checkpoint_dir):
    """(ModelConfig, word2vec_path) recorded in checkpoint_dir, or None."""
    record = vfiles.read_json(os.path.join(checkpoint_dir,
                                          MODEL_CONFIG_FILE))
    if record is None:
        return None
    return ModelConfig.from_dict(record["model"]), record.get(
        "word2vec_path", ""
    )
