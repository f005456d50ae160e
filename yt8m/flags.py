"""Flags shared by the YouTube-8M CLIs, named as in the published commands.

Defined once here (absl flags are global), imported by train / eval /
inference / export, so the published command lines of every tool parse. The
flags that configure the model are mapped to ``yt8m.models.ModelConfig`` by
``model_config_from_flags`` (models never read flags), and recorded in
``<train_dir>/model_flags.json`` by training; eval, inference and export
rebuild the model from that record.
"""

import dataclasses
import json
import os

import tensorflow as tf
from absl import flags, logging

from input_pipeline import features as keys
from input_pipeline.yt8m import ReaderConfig
from vidcore import cli
from vidcore.distribute import PRECISIONS, STRATEGIES
from vidcore.errors import UserInputError
from vidcore.files import write_json_atomic
from yt8m.models import LSTM_OUTPUTS, MODELS, ModelConfig

FLAGS = flags.FLAGS
MODEL_FLAGS_FILE = "model_flags.json"
_D = ModelConfig()

# --- data -------------------------------------------------------------------
cli.flag_topic("data")
flags.DEFINE_string("train_dir", "/tmp/yt8m_model/",
                    "Directory of checkpoints, TensorBoard events and the "
                    "recorded model flags.")
flags.DEFINE_bool("frame_features", False,
                  "Frame-level SequenceExamples (else video-level Examples).")
flags.DEFINE_string("feature_names", "mean_rgb",
                    "Comma-separated features to read, e.g. 'rgb,audio' "
                    "(frame level) or 'mean_rgb,mean_audio' (video level).")
flags.DEFINE_string("feature_sizes", "1024",
                    "Comma-separated sizes of --feature_names.")
flags.DEFINE_integer("num_classes", keys.YT8M_NUM_CLASSES,
                     "Number of classes: 3862 for 2018+ data, 4716 for 2017.")
flags.DEFINE_integer("max_frames", keys.YT8M_MAX_FRAMES,
                     "Frames read per video (longer videos are truncated).")
flags.DEFINE_enum("id_key", "auto", ["auto", "id", "video_id"],
                  "Video id feature: 'id' (2018+), 'video_id' (2017), or "
                  "detect it from the first record.")
flags.DEFINE_bool("skip_corrupt_records", False,
                  "Skip unparsable records and unreadable shard tails, and "
                  "count them, instead of stopping with an error.")
flags.DEFINE_integer("batch_size", 1024,
                     "Examples per replica per step (global batch = this x "
                     "replicas).")
flags.DEFINE_integer("num_readers", 8,
                     "Accepted for compatibility with the original commands;"
                     " tf.data tunes its parallelism itself (AUTOTUNE).")

# --- model ------------------------------------------------------------------
cli.flag_topic("model")
flags.DEFINE_enum("model", _D.model, list(MODELS), "Model architecture.")
flags.DEFINE_integer("iterations", _D.iterations,
                     "Frames sampled per video by the frame-level models.")
flags.DEFINE_bool("sample_random_frames", _D.sample_random_frames,
                  "Sample random frames (else a random run of consecutive "
                  "frames) during training.")
flags.DEFINE_float("bn_momentum", _D.bn_momentum,
                   "Batch-norm moving-average momentum (slim's 0.999).")
flags.DEFINE_integer("netvlad_cluster_size", _D.netvlad_cluster_size,
                     "NetVLAD clusters (audio uses half).")
flags.DEFINE_integer("netvlad_hidden_size", _D.netvlad_hidden_size,
                     "Hidden units after NetVLAD.")
flags.DEFINE_bool("netvlad_relu", _D.netvlad_relu,
                  "Batch norm + relu6 on the hidden layer (else bias only).")
flags.DEFINE_bool("netvlad_add_batch_norm", _D.netvlad_add_batch_norm,
                  "Batch norm in NetVLAD/NetFV models.")
flags.DEFINE_bool("lightvlad", _D.lightvlad,
                  "NetRVLAD: NetVLAD without centroids.")
flags.DEFINE_bool("gating", _D.gating,
                  "Context gating after the hidden layer.")
flags.DEFINE_integer("fv_cluster_size", _D.fv_cluster_size,
                     "NetFV clusters (audio uses half).")
flags.DEFINE_integer("fv_hidden_size", _D.fv_hidden_size,
                     "Hidden units after NetFV.")
flags.DEFINE_bool("fv_relu", _D.fv_relu,
                  "Batch norm + relu6 on the NetFV hidden layer.")
flags.DEFINE_bool("fv_couple_weights", _D.fv_couple_weights,
                  "Tie NetFV centroids to the assignment weights.")
flags.DEFINE_float("fv_coupling_factor", _D.fv_coupling_factor,
                   "Factor of the tied NetFV centroids.")
flags.DEFINE_integer("dbof_cluster_size", _D.dbof_cluster_size,
                     "DBoF clusters (audio uses 1/8 in the LF models).")
flags.DEFINE_integer("dbof_hidden_size", _D.dbof_hidden_size,
                     "Hidden units after DBoF.")
flags.DEFINE_bool("dbof_relu", _D.dbof_relu,
                  "Batch norm + relu6 on the DBoF LF hidden layer.")
flags.DEFINE_bool("dbof_add_batch_norm", _D.dbof_add_batch_norm,
                  "Batch norm in DBoF models.")
flags.DEFINE_bool("softdbof_maxpool", _D.softdbof_maxpool,
                  "Soft-DBoF: also concatenate the max-pooled assignments.")
flags.DEFINE_enum("dbof_pooling_method", _D.dbof_pooling_method,
                  ["max", "average"], "Frame pooling of the starter DbofModel.")
flags.DEFINE_enum("dbof_activation", _D.dbof_activation,
                  ["sigmoid", "relu6"], "Activation of the starter DbofModel.")
flags.DEFINE_integer("gru_cells", _D.gru_cells, "GRU units per layer.")
flags.DEFINE_integer("gru_layers", _D.gru_layers, "GRU layers.")
flags.DEFINE_bool("gru_random_sequence", _D.gru_random_sequence,
                  "GRU on --iterations randomly sampled frames.")
flags.DEFINE_integer("lstm_cells", _D.lstm_cells, "LSTM units per layer.")
flags.DEFINE_integer("lstm_layers", _D.lstm_layers, "LSTM layers.")
flags.DEFINE_bool("lstm_random_sequence", _D.lstm_random_sequence,
                  "LSTM on --iterations randomly sampled frames.")
flags.DEFINE_enum("lstm_output", _D.lstm_output, list(LSTM_OUTPUTS),
                  "What the LSTM passes on: 'full_state' (c and h of every "
                  "layer, the Kaggle winners') or 'last_h' (the starter "
                  "code's LstmModel).")
flags.DEFINE_enum("video_level_classifier_model",
                  _D.video_level_classifier_model,
                  ["MoeModel", "LogisticModel"],
                  "Classifier on top of frame-level pooling.")
flags.DEFINE_integer("moe_num_mixtures", _D.moe_num_mixtures,
                     "Experts per class (excluding the dummy expert).")
flags.DEFINE_float("moe_l2", _D.moe_l2, "L2 penalty of the MoE kernels.")
flags.DEFINE_bool("moe_prob_gating", _D.moe_prob_gating,
                  "Context gating of the MoE probabilities.")

# --- training (also accepted by eval/inference: published commands pass them)
cli.flag_topic("training")
flags.DEFINE_float("base_learning_rate", 0.01, "Initial learning rate.")
flags.DEFINE_float("learning_rate_decay", 0.95,
                   "Multiply the learning rate by this every "
                   "--learning_rate_decay_examples examples (staircase).")
flags.DEFINE_float("learning_rate_decay_examples", 4000000,
                   "Examples between learning-rate decays.")
flags.DEFINE_float("clip_gradient_norm", 1.0,
                   "Clip each gradient tensor to this L2 norm (<= 0: off).")
flags.DEFINE_float("regularization_penalty", 1.0,
                   "Weight of the L2 penalties relative to the label loss.")
flags.DEFINE_enum("optimizer", "AdamOptimizer", ["AdamOptimizer"],
                  "Optimizer (the published models all use Adam).")
flags.DEFINE_integer("num_epochs", None,
                     "Passes over the training data (default: until "
                     "--max_steps; the original's default was 15); a "
                     "resumed run continues the count.")
flags.DEFINE_integer("max_steps", None, "Stop training after this step.")
flags.DEFINE_alias("max_step", "max_steps")
flags.DEFINE_bool("start_new_model", False,
                  "Delete --train_dir first instead of resuming from it.")
cli.flag_topic("distribution")
flags.DEFINE_enum("strategy", "auto", list(STRATEGIES),
                  "tf.distribute strategy: auto (mirrored with >1 GPU), "
                  "default, mirrored, multi_worker (TF_CONFIG), tpu.")
flags.DEFINE_string("tpu", "", "TPU name or address for --strategy=tpu.")
flags.DEFINE_enum("mixed_precision", "float32", list(PRECISIONS),
                  "Keras dtype policy.")
cli.flag_topic("training")
flags.DEFINE_integer("export_model_steps", 10000,
                     "Accepted for compatibility; export with "
                     "python -m yt8m.export instead.")

# --- evaluation / inference -------------------------------------------------
cli.flag_topic("evaluation")
flags.DEFINE_string("output_file", "", "The prediction file to write.")
flags.DEFINE_integer("top_k", 20,
                     "Predictions kept per video (GAP@k, Kaggle lines).")
flags.DEFINE_bool("run_once", True,
                  "Evaluate the latest checkpoint once (else evaluate each "
                  "new checkpoint until training is done).")
flags.DEFINE_bool("segment_labels", False,
                  "2019 segment task: score 5-frame segments.")
DEFAULT_SEGMENT_CLASSES = os.path.join(os.path.dirname(__file__), "data",
                                       "segment_label_ids.csv")
flags.DEFINE_string("segment_label_ids_file", DEFAULT_SEGMENT_CLASSES,
                    "Class ids rated in the segment task, one per line "
                    "(default: the 1000 classes of the 2019 challenge).")
flags.DEFINE_integer("segment_max_pred", 100000,
                     "Segments kept per class in the segment file.")
flags.DEFINE_string("checkpoint_path", "",
                    "A specific checkpoint prefix (default: the latest in "
                    "--train_dir).")




def _csv(value):
    return [v.strip() for v in str(value).split(",") if v.strip()]


def feature_names_and_sizes():
    names = tuple(_csv(FLAGS.feature_names))
    try:
        sizes = tuple(int(s) for s in _csv(FLAGS.feature_sizes))
    except ValueError:
        raise UserInputError(f"--feature_sizes={FLAGS.feature_sizes!r} must be "
                         f"comma-separated integers") from None
    if len(names) != len(sizes):
        raise UserInputError(f"--feature_names={FLAGS.feature_names!r} and "
                         f"--feature_sizes={FLAGS.feature_sizes!r} differ "
                         f"in length")
    return names, sizes


# ModelConfig fields that come from flags of the same name.
_MODEL_FIELDS = [f.name for f in dataclasses.fields(ModelConfig)
                 if f.name not in ("feature_sizes",)]


def model_config_from_flags():
    """ModelConfig from the current flag values."""
    values = {name: FLAGS[name].value for name in _MODEL_FIELDS}
    values["feature_sizes"] = feature_names_and_sizes()[1]
    return ModelConfig(**values)


def record_model_flags(train_dir, model_cfg):
    """Writes model_flags.json (model config + feature names) to train_dir.

    Raises:
        ValueError: train_dir already holds a different model.
    """
    record = {"model_config": model_cfg.to_dict(),
              "feature_names": list(feature_names_and_sizes()[0])}
    path = os.path.join(train_dir, MODEL_FLAGS_FILE)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            old = json.load(f)
        if old != record:
            diff = sorted(k for k in set(old["model_config"]) | set(
                record["model_config"]) if old["model_config"].get(k) !=
                record["model_config"].get(k))
            if old.get("feature_names") != record["feature_names"]:
                diff.append("feature_names")
            raise UserInputError(
                f"--train_dir={train_dir} holds a model trained with other "
                f"settings ({', '.join(diff)}); pass --start_new_model to "
                f"replace it or choose another --train_dir")
        return
    tf.io.gfile.makedirs(train_dir)
    write_json_atomic(path, record)


def load_model_flags(train_dir):
    """(ModelConfig, feature_names) recorded by training in train_dir.

    Model flags given on the command line too must agree with the record;
    where they differ the record wins (it describes the checkpoint) and a
    warning names them.

    Raises:
        FileNotFoundError: train_dir has no model_flags.json.
    """
    path = os.path.join(train_dir, MODEL_FLAGS_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{path} not found: --train_dir must be a directory written by "
            f"python -m yt8m.train")
    with tf.io.gfile.GFile(path) as f:
        record = json.load(f)
    cfg = ModelConfig.from_dict(record["model_config"])
    names = tuple(record["feature_names"])
    recorded = cfg.to_dict()
    differing = [name for name in _MODEL_FIELDS
                 if FLAGS[name].present and FLAGS[name].value != recorded[name]]
    if FLAGS["feature_sizes"].present and list(
            feature_names_and_sizes()[1]) != recorded["feature_sizes"]:
        differing.append("feature_sizes")
    if FLAGS["feature_names"].present and feature_names_and_sizes()[
            0] != names:
        differing.append("feature_names")
    if differing:
        logging.warning(
            "ignoring command-line %s: %s was trained with %s",
            ", ".join(f"--{d}" for d in differing), train_dir,
            ", ".join(f"{d}={recorded.get(d, list(names))}" for d in
                      differing))
    return cfg, names


def reader_config(model_cfg, feature_names, segment_labels=False):
    """ReaderConfig matching a model config."""
    return ReaderConfig(
        frame_features=model_cfg.frame_features,
        feature_names=feature_names, feature_sizes=model_cfg.feature_sizes,
        num_classes=model_cfg.num_classes, max_frames=model_cfg.max_frames,
        id_key=None if FLAGS.id_key == "auto" else FLAGS.id_key,
        segment_labels=segment_labels)
