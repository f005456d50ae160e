"""What the MIL-NCE evaluation CLIs share: flags -> model, words, records.

``howto.eval_msrvtt``, ``howto.eval_youcook``, ``howto.eval_hmdb`` and
``howto.extract_features`` read the flags of ``howto.milnce_flags`` (the
original's names) through these helpers and hand plain values to
``howto.milnce_eval``:

* ``--pretrain_cnn_path``: the released ``s3d_howto100m.pth`` (space-to-
  depth stem), an original training checkpoint (``epochNNNN.pth.tar``), a
  folder written by ``howto.convert_milnce`` or one of our training run
  folders (the latest checkpoint), a checkpoint prefix or a ``.keras``
  file. The architecture comes from the weights themselves (PyTorch
  shapes) or from the ``model_config.json`` beside them.
* Words: ``--token_to_word_path`` (the release's ``s3d_dict.npy`` /
  ``dict.npy``, or a ``vocab.txt``) when given, and always for PyTorch
  weights; otherwise the ``vocab.txt`` beside our weights. Word ``i`` has
  id ``i + 1``, as in the release. The word table itself is part of the
  weights, so ``--word2vec_path`` is accepted and not read.
* ``--eval_video_root``: shards (a glob, or a folder holding them), or the
  folder of raw videos, converted on first use by
  ``tfrecord_tools.milnce_writer`` into ``--records_cache`` and reused
  afterwards (``howto.milnce_data``).
"""

import os

import tensorflow as tf
from absl import flags

from howto import milnce_data, milnce_eval, milnce_model, milnce_weights
from howto import milnce_flags as mflags
from vidcore import cli, distribute, metrics
from vidcore.errors import UserInputError
from vidcore.files import write_json_atomic

FLAGS = mflags.FLAGS

cli.flag_topic("evaluation output", FLAGS)
flags.DEFINE_enum(
    "ties", "pessimistic", ["pessimistic", "optimistic", "index"],
    "Retrieval: rank of the true clip among equal scores (the original has "
    "no rule for ties).", flag_values=FLAGS)

# Converter --dataset and the name shown in results, per evaluation CLI.
TITLES = {"msrvtt": "MSR-VTT", "youcook": "YouCook2", "hmdb": "HMDB-51"}


def make_strategy():
    """The tf.distribute strategy and dtype policy of the flags."""
    strategy = distribute.make_strategy(FLAGS.strategy, FLAGS.tpu)
    distribute.configure_mixed_precision(FLAGS.mixed_precision)
    return strategy


def reader_options():
    """tf.data options of --num_thread_reader (0: the shared pool)."""
    options = tf.data.Options()
    if FLAGS.num_thread_reader > 0:
        options.threading.private_threadpool_size = FLAGS.num_thread_reader
    return options


def load_model(strategy):
    """The model of --pretrain_cnn_path, built in ``strategy``'s scope.

    Returns:
        (keras.Model, MilNCEConfig, the path that was loaded).
    """
    path = FLAGS.pretrain_cnn_path
    if not path:
        raise UserInputError(
            "--pretrain_cnn_path is required: the released "
            "s3d_howto100m.pth, an original training checkpoint, a "
            "howto.convert_milnce folder or one of our run folders")
    if not tf.io.gfile.exists(path) and not tf.io.gfile.exists(
            path + ".index"):
        raise UserInputError(f"--pretrain_cnn_path={path} does not exist")
    state_dict = None
    if milnce_weights.is_torch_checkpoint(path):
        state_dict = milnce_weights.read_state_dict(path)
        cfg = milnce_weights.config_from_state_dict(state_dict)
    else:
        cfg = milnce_weights.pretrained_config(path)
        if cfg is None:
            raise UserInputError(
                f"--pretrain_cnn_path={path}: no "
                f"{milnce_weights.CONFIG_FILE} beside these weights to say "
                f"which model they fit (howto.convert_milnce and "
                f"howto.milnce_train write one)")
    with strategy.scope():
        model = milnce_model.build_milnce_model(cfg)
    loaded = milnce_weights.load_pretrained(model, path, state_dict)
    return model, cfg, loaded


def _weights_folder(path):
    return path if tf.io.gfile.isdir(path) else os.path.dirname(path)


def load_words(cfg):
    """The dictionary the weights were trained with (see module docstring).

    Returns:
        (list of words, where they came from).
    """
    path = FLAGS.pretrain_cnn_path
    if FLAGS["token_to_word_path"].present or \
            milnce_weights.is_torch_checkpoint(path):
        source = FLAGS.token_to_word_path
        if not tf.io.gfile.exists(source):
            raise UserInputError(
                f"--token_to_word_path={source} does not exist (the "
                f"release's s3d_dict.npy, the training's dict.npy or a "
                f"vocab.txt)")
        words = (milnce_weights.read_dictionary(source)
                 if source.endswith(".npy")
                 else milnce_weights.read_vocabulary(source))
    else:
        source = os.path.join(_weights_folder(path), milnce_weights.VOCAB_FILE)
        words = milnce_weights.read_vocabulary(source)
    milnce_weights.check_dictionary(words, cfg, source)
    return words, source


def eval_files(dataset):
    """Shards of the evaluation set named by --eval_video_root.

    Args:
        dataset: "msrvtt", "youcook" or "hmdb" (the converter's --dataset).

    Returns:
        Sorted list of shard paths.
    """
    root = FLAGS.eval_video_root
    if not root:
        raise UserInputError(
            "--eval_video_root is required: the folder of the set's raw "
            "videos, or its TFRecord shards (a glob or their folder)")
    args = [f"--short_side={FLAGS.short_side}"]
    if dataset != "hmdb":  # HMDB-51 keeps every decoded frame
        args.append(f"--fps={FLAGS.fps}")
    if FLAGS.eval_csv:
        args.append(f"--csv={FLAGS.eval_csv}")
    files = milnce_data.shard_files(root)
    if files:
        return files
    cache = FLAGS.records_cache or (
        milnce_data.default_cache(root, dataset)
        if tf.io.gfile.isdir(root) else "")
    return milnce_data.records_or_convert(root, dataset, cache,
                                          "eval_video_root", args)


def eval_clip_config():
    """The reader's evaluation MilNCEClipConfig of the flags."""
    return mflags.clip_config(training=False)


def write_results(output, results, **extra):
    """Writes ``results`` (and ``extra`` entries) as JSON to ``output``."""
    if output:
        write_json_atomic(output, {"flags": _flag_record(), **extra,
                                   "results": results})
        print(f"wrote {output}")


def _flag_record():
    names = ("pretrain_cnn_path", "eval_video_root", "num_windows_test",
             "num_frames", "fps", "video_size")
    return {name: FLAGS[name].value for name in names}


def retrieval_main(dataset):
    """Zero-shot text-to-video retrieval on one set (MSR-VTT, YouCook2).

    Prints R@1/5/10 (percent) and the median rank; writes --output_json.

    Returns:
        {"<set> text->video": metrics dict}.
    """
    mflags.log_torch_only_flags()
    files = eval_files(dataset)
    strategy = make_strategy()
    model, cfg, loaded = load_model(strategy)
    words, _ = load_words(cfg)
    encoder = milnce_weights.text_encoder(words)
    text, video, _ = milnce_eval.embed_retrieval(
        model, files, eval_clip_config(), FLAGS.batch_size, encoder,
        strategy, progress=bool(FLAGS.verbose), options=reader_options())
    results = {f"{TITLES[dataset]} text->video":
               milnce_eval.retrieval_results(text, video, FLAGS.ties)}
    print(metrics.format_retrieval_table(results))
    write_results(FLAGS.output_json, results, weights=str(loaded),
                  ties=FLAGS.ties, recall_unit="percent")
    return results


def epoch_evaluation(strategy, run_dir, words=None):
    """The per-epoch zero-shot YouCook2 retrieval of ``--evaluate``.

    Args:
        strategy: the training strategy.
        run_dir: the run folder (its ``vocab.txt`` gives the words when
            ``words`` is None).
        words: the training dictionary.

    Returns:
        ``evaluate(model, epoch, step) -> {"YouCook2 text->video/R@1": ...}``.
    """
    files = eval_files("youcook")
    if words is None:
        words = milnce_weights.read_vocabulary(run_dir)
    encoder = milnce_weights.text_encoder(words)
    clip_cfg = eval_clip_config()
    chief = distribute.is_chief(strategy)

    def evaluate(model, epoch, step):
        text, video, _ = milnce_eval.embed_retrieval(
            model, files, clip_cfg, FLAGS.batch_size_val, encoder, strategy,
            options=reader_options())
        results = {"YouCook2 text->video": milnce_eval.retrieval_results(
            text, video, FLAGS.ties)}
        if chief:
            print(f"\nEpoch {epoch:g} (step {step}):\n"
                  + metrics.format_retrieval_table(results))
        return {f"{row}/{k}": v for row, values in results.items()
                for k, v in values.items() if k != "num_queries"}

    return evaluate
