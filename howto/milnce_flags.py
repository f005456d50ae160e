"""Flags of the MIL-NCE CLIs, named as the original's ``args.py``.

The original's training and evaluation scripts (``main_distributed.py``,
``eval_msrvtt.py``, ``eval_youcook.py``, ``eval_hmdb.py``) share one argument
parser; here ``howto.milnce_train``, ``howto.eval_msrvtt``,
``howto.eval_youcook``, ``howto.eval_hmdb`` and ``howto.extract_features``
share this one FlagValues, so every published command line parses unchanged.

PyTorch-only knobs are accepted and mapped to their TensorFlow meaning, or
logged as having none (``log_torch_only_flags``):

* ``--multiprocessing-distributed``, ``--world-size``, ``--rank``,
  ``--dist-url``, ``--dist-file``, ``--dist-backend``, ``--gpu``: process
  and rendezvous settings of torch.distributed. Here one process drives all
  GPUs of a host (MirroredStrategy) and hosts join through TF_CONFIG
  (``--strategy=multi_worker``).
* ``--num_thread_reader``: DataLoader worker processes; here the size of
  tf.data's private thread pool (0: the shared pool).
* ``--cudnn_benchmark``, ``--pin_memory``: cuDNN autotuning and pinned host
  buffers; TensorFlow autotunes convolutions and stages input through
  pinned memory by itself.
* ``--weight_init``: PyTorch's layer initialisation; Keras initialisers are
  used.
"""

from absl import flags, logging

from vidcore import cli
from vidcore.distribute import PRECISIONS, STRATEGIES

# The family's own FlagValues (howto.flags has flags of the same names for
# the feature-based HowTo100M model); vidcore.cli.run attaches it to absl's
# global FLAGS in the process that runs the CLI.
FLAGS = flags.FlagValues()


def _string(name, default, help_text):
    flags.DEFINE_string(name, default, help_text, flag_values=FLAGS)


def _integer(name, default, help_text, **kwargs):
    flags.DEFINE_integer(name, default, help_text, flag_values=FLAGS,
                         **kwargs)


def _float(name, default, help_text, **kwargs):
    flags.DEFINE_float(name, default, help_text, flag_values=FLAGS, **kwargs)


def _bool(name, default, help_text, **kwargs):
    flags.DEFINE_bool(name, default, help_text, flag_values=FLAGS, **kwargs)


# --- data ----------------------------------------------------------------
cli.flag_topic("data", FLAGS)
_string("train_csv", "",
        "Training video list (the original's csv/howto100m_videos.csv: a "
        "video_path column, paths relative to --video_path). Used when "
        "--video_path is a folder of raw videos.")
_string("video_path", "",
        "Training videos: a folder of raw videos (converted once, with "
        "--train_csv and --caption_root, into --records_dir), or TFRecord "
        "shards from tfrecord_tools.milnce_writer (a glob, or their "
        "folder).")
_string("caption_root", "",
        "Folder of <video_id>.csv caption files (start,end,text), the "
        "released howto100m_captions layout. Used with raw videos.")
_string("records_dir", "",
        "Where raw training videos are converted to TFRecords (default: "
        "<checkpoint_root>/<checkpoint_dir>/records). Reused when it "
        "already holds a finished conversion.")
_string("eval_video_root", "",
        "Evaluation videos: the folder of raw videos, as published "
        "(converted on first use into --records_cache), or TFRecord shards "
        "of that set (a glob, or their folder).")
_string("eval_csv", "",
        "The evaluation set's CSV (default: the packaged copy of the "
        "original's csv/ file for that set).")
_string("records_cache", "",
        "Folder for evaluation videos converted on first use (default: "
        "<eval_video_root>/vidmodels_records, or ./vidmodels_records when "
        "that folder is not writable).")
_integer("short_side", 256,
         "Short side of the stored frames when converting raw videos.")

# --- clips and text ------------------------------------------------------
cli.flag_topic("clips and text", FLAGS)
_integer("num_frames", 16, "Frames per clip.", lower_bound=1)
_integer("fps", 5, "Frames per second of the clips.", lower_bound=1)
_integer("video_size", 224, "Clip height and width (crop size).",
         lower_bound=1)
_integer("crop_only", 1,
         "1: random video_size crop of the stored frames; 0: a square crop "
         "of the short side resized to video_size.")
_integer("centercrop", 0, "1: centre crop instead of a random one.")
_integer("random_flip", 1, "1: random horizontal flip (p = 0.5).")
_float("min_time", 5.0, "Clips shorter than this (s) are extended.")
_integer("num_candidates", 1,
         "Captions per clip in the MIL-NCE positive bag (4 in the "
         "published command).", lower_bound=1)
_integer("max_words", 20, "Words per training caption.", lower_bound=1)
_integer("max_words_test", 30, "Words per evaluation caption.",
         lower_bound=1)
_integer("num_windows_test", 4,
         "Evenly spaced windows per evaluation clip (embeddings averaged; "
         "10 in the published evaluation commands).", lower_bound=1)

# --- model ---------------------------------------------------------------
cli.flag_topic("model", FLAGS)
_integer("num_class", 512, "Size of the joint embedding.", lower_bound=1)
_string("word2vec_path", "data/word2vec.pth",
        "Word table: the original's word2vec.pth (66,250 x 300, row 0 = "
        "padding) with --token_to_word_path, or a word2vec binary / GloVe "
        "text file (vidcore.text.WordVectors) that carries its own words.")
_string("token_to_word_path", "data/dict.npy",
        "The original's dictionary (dict.npy / s3d_dict.npy): word i has "
        "id i + 1. Used with a .pth word table.")
_integer("space_to_depth", 0,
         "1: the space-to-depth stem of the released TPU-trained weights.")
_integer("sync_bn", 0, "1: batch-norm statistics over all replicas.")
_string("pretrain_cnn_path", "",
        "Start from / evaluate these weights: the released "
        "s3d_howto100m.pth, an original training checkpoint, or one of our "
        "checkpoint directories.")
_string("weight_init", "uniform",
        "PyTorch layer initialisation of the original (accepted; Keras "
        "initialisers are used).")

# --- training ------------------------------------------------------------
cli.flag_topic("training", FLAGS)
_integer("batch_size", 256,
         "Clips per step on ONE HOST, split over its GPUs, as in the "
         "original (global batch = batch_size x hosts). Evaluation: "
         "videos per batch.", lower_bound=1)
_integer("batch_size_val", 32, "Clips per batch of the per-epoch "
         "evaluation.", lower_bound=1)
flags.DEFINE_enum("optimizer", "adam", ["adam", "sgd"], "Optimizer.",
                  flag_values=FLAGS)
_float("lr", 0.001, "Peak learning rate.")
flags.DEFINE_alias("learning-rate", "lr", flag_values=FLAGS)
_float("momemtum", 0.9, "SGD momentum (the original's spelling).")
_float("momentum", 0.9, "Accepted, unused (the original's SGD reads "
       "--momemtum).")
_integer("warmup_steps", 5000, "Linear warm-up steps before the cosine "
         "decay.", lower_bound=0)
_integer("epochs", 150, "Epochs; one epoch = one clip from each training "
         "video.", lower_bound=1)
_integer("start-epoch", 0, "Accepted; the epoch comes from the checkpoint.")
_string("checkpoint_root", "checkpoint", "Root of the checkpoint folders.")
_string("checkpoint_dir", "",
        "Run folder under --checkpoint_root: checkpoints, TensorBoard "
        "events, train_state.json (training resumes from it).")
_string("log_root", "log",
        "Accepted; TensorBoard events are written to the run folder.")
_bool("resume", False,
      "Resume from the run folder's last checkpoint (always done when one "
      "exists).")
_bool("evaluate", False,
      "After each epoch, zero-shot YouCook2 retrieval on --eval_video_root.",
      short_name="e")
_bool("pretrained", False, "Accepted; use --pretrain_cnn_path.")
_integer("n_display", 10, "Steps between logged losses.", lower_bound=1)
_integer("verbose", 1, "Show progress bars.")
_integer("seed", 1, "Random seed (weights, sampling).")
_integer("steps_per_epoch", 0,
         "Steps per epoch (0: training videos // global batch).",
         lower_bound=0)
_integer("max_steps", None, "Stop after this step (default: epochs * "
         "steps_per_epoch).")
_integer("checkpoint_every_steps", 1000, "Steps between checkpoints (also "
         "one per epoch).", lower_bound=1)
_integer("keep_checkpoints", 10, "Checkpoints kept (the original keeps "
         "10).", lower_bound=1)
_integer("steps_per_loop", 10,
         "Training steps per tf.function call (losses reach the host once "
         "per call; calls end on display, checkpoint and epoch "
         "boundaries).", lower_bound=1)
_integer("shuffle_buffer", 256, "Videos in the shuffle buffer.",
         lower_bound=1)
_bool("dry_run", False, "Build the model from the flags, print its summary "
      "and 'Trainable parameters: N', and exit.")

# --- evaluation output ---------------------------------------------------
cli.flag_topic("evaluation output", FLAGS)
_string("output_json", "", "Also write the results here (JSON).")

# --- distribution ----------------------------------------------------------
cli.flag_topic("distribution", FLAGS)
flags.DEFINE_enum("strategy", "auto", list(STRATEGIES),
                  "tf.distribute strategy: auto (mirrored with >1 GPU), "
                  "default, mirrored, multi_worker (TF_CONFIG), tpu.",
                  flag_values=FLAGS)
_string("tpu", "", "TPU name or address for --strategy=tpu.")
flags.DEFINE_enum("mixed_precision", "float32", list(PRECISIONS),
                  "Keras dtype policy.", flag_values=FLAGS)
_integer("num_thread_reader", 20,
         "tf.data private thread pool size (0: the shared pool); the "
         "original's DataLoader workers.", lower_bound=0)

# --- accepted PyTorch-only flags ----------------------------------------
cli.flag_topic("PyTorch-only flags (accepted)", FLAGS)
_bool("multiprocessing-distributed", False,
      "torch.distributed launch mode; here one process drives all local "
      "GPUs (MirroredStrategy), hosts join with --strategy=multi_worker.")
_integer("cudnn_benchmark", 0, "cuDNN autotuning; TensorFlow autotunes by "
         "itself.")
_bool("pin_memory", False, "Pinned host buffers; tf.data handles this.")
_integer("world-size", -1, "torch.distributed world size; see "
         "--strategy=multi_worker and TF_CONFIG.")
_integer("rank", -1, "torch.distributed rank; see TF_CONFIG.")
_string("dist-file", "dist-file", "torch.distributed rendezvous file.")
_string("dist-url", "tcp://224.66.41.62:23456",
        "torch.distributed rendezvous URL.")
_string("dist-backend", "nccl", "torch.distributed backend.")
_integer("gpu", None, "Single GPU id of the original; use "
         "CUDA_VISIBLE_DEVICES.")

_TORCH_ONLY = {
    "multiprocessing-distributed": "one process drives all local GPUs "
                                   "(--strategy=auto/mirrored)",
    "cudnn_benchmark": "TensorFlow autotunes convolutions itself",
    "pin_memory": "tf.data stages input itself",
    "world-size": "hosts join through TF_CONFIG (--strategy=multi_worker)",
    "rank": "the rank comes from TF_CONFIG",
    "dist-file": "hosts join through TF_CONFIG",
    "dist-url": "hosts join through TF_CONFIG",
    "dist-backend": "collectives are chosen by tf.distribute",
    "gpu": "set CUDA_VISIBLE_DEVICES to choose GPUs",
    "weight_init": "Keras initialisers are used",
    "start-epoch": "the epoch comes from the checkpoint",
    "pretrained": "use --pretrain_cnn_path",
    "log_root": "TensorBoard events go to the run folder",
}


def log_torch_only_flags():
    """Logs, once, each PyTorch-only flag the user set and what it maps to
    here."""
    for name, meaning in _TORCH_ONLY.items():
        if FLAGS[name].present:
            logging.info("--%s is a PyTorch setting of the original: %s",
                         name, meaning)


def clip_config(training):
    """The reader's MilNCEClipConfig from the flags.

    Args:
        training: True for the training reader (max_words, random crops),
            False for evaluation (max_words_test, centre crops).
    """
    from input_pipeline.milnce import MilNCEClipConfig
    return MilNCEClipConfig(
        num_frames=FLAGS.num_frames, fps=float(FLAGS.fps),
        video_size=FLAGS.video_size, min_time=FLAGS.min_time,
        num_candidates=FLAGS.num_candidates if training else 1,
        max_words=FLAGS.max_words if training else FLAGS.max_words_test,
        crop_only=bool(FLAGS.crop_only) if training else False,
        center_crop=bool(FLAGS.centercrop) if training else True,
        random_flip=bool(FLAGS.random_flip) if training else False,
        num_windows_test=FLAGS.num_windows_test)
