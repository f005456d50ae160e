"""Clip and video accuracy: ``python -m kinetics.eval``.

Evaluates a run of kinetics.train (``--output_dir``, whose
model_config.json gives the model and its clip geometry; ``--resume`` picks
a checkpoint other than the latest) or torchvision's weights
(``--weights=r2plus1d_18-91a641e6.pth --model=r2plus1d_18``) on the
validation shards:

    python -m kinetics.eval --data_path=kinetics400 --val_dir=val \\
        --output_dir=runs/r2plus1d --clips_per_video=5

Each video gives ``--clips_per_video`` evenly spaced clips (resize, centre
crop); clip accuracy counts clips, video accuracy averages the clips'
softmax per video (torchvision's recipe). Prints top-1/top-5 of both and
writes them as JSON.

With ``--strategy=multi_worker`` (TF_CONFIG), each chief/worker process
scores a block of the shards and the chief joins them (in shard order, so
the accuracies are those of one process) through hidden files beside
``--output_json`` (vidcore.eval_workers).
"""

import os

import numpy as np
import tensorflow as tf
from absl import flags, logging

from input_pipeline import video as reader
from kinetics import evaluation, models
from kinetics import flags as kflags
from vidcore import (cli, distribute, eval_workers, metrics, torch_io,
                     training)
from vidcore import files as files_lib
from vidcore.errors import UserInputError
from vidcore.files import write_json_atomic, write_text_atomic

FLAGS = kflags.FLAGS
flags.DEFINE_string(
    "output_json", "",
    "Write the accuracies here (default <output_dir>/eval.json when "
    "evaluating a run).", flag_values=FLAGS)
flags.DEFINE_string(
    "predictions_csv", "",
    "Also write each video's id, label and top-5 classes with their mean "
    "softmax scores here.", flag_values=FLAGS)
eval_workers.define_flags(FLAGS)


def config_from_flags(state=None):
    """ModelConfig for --weights: sizes from the flags and the state dict."""
    resize, crop = kflags.geometry(FLAGS.model)
    num_classes = FLAGS.num_classes or 400
    if state is not None:
        num_classes = models.torchvision_num_classes(
            FLAGS.model, state, f"--weights={FLAGS.weights}")
    return models.ModelConfig(model=FLAGS.model, num_classes=num_classes,
                              clip_len=FLAGS.clip_len, crop_size=crop,
                              resize=resize, frame_rate=kflags.frame_rate())


def model_and_weights(strategy):
    """(ModelConfig, model with weights loaded, where they came from)."""
    if FLAGS.weights:
        state = torch_io.read_state_dict(
            FLAGS.weights, expected=f"a torchvision {FLAGS.model} state dict")
        cfg = config_from_flags(state)
        with strategy.scope():
            model = models.build_model(cfg)
        try:
            models.load_torchvision(model, cfg.model, state)
        except ValueError as e:
            raise UserInputError(f"--weights={FLAGS.weights}: {e}") from e
        return cfg, model, FLAGS.weights
    run_dir = FLAGS.output_dir
    if FLAGS.resume and tf.io.gfile.isdir(FLAGS.resume):
        run_dir = FLAGS.resume
    cfg = models.read_config(run_dir)
    if cfg is None:
        raise UserInputError(
            f"{run_dir} has no {models.CONFIG_FILE}: pass the --output_dir of "
            f"a kinetics.train run, or --weights=<torchvision .pth>")
    for name, value in (("model", cfg.model), ("clip_len", cfg.clip_len)):
        if FLAGS[name].present and FLAGS[name].value != value:
            logging.warning("--%s=%s ignored: the run in %s used %s", name,
                            FLAGS[name].value, run_dir, value)
    with strategy.scope():
        model = models.build_model(cfg)
    checkpoint = (FLAGS.resume if FLAGS.resume and not tf.io.gfile.isdir(
        FLAGS.resume) else None)
    try:
        path = training.restore_model_weights(model, run_dir, checkpoint)
    except FileNotFoundError as e:
        raise UserInputError(str(e)) from e
    return cfg, model, path


def write_predictions(path, files, probs, labels, video_index, class_names):
    """One CSV row per video: id, label, top-5 (class, mean softmax)."""
    ids = reader.video_ids(files)
    videos, inverse, mean = metrics.video_mean_scores(probs, video_index)
    video_labels = np.empty(len(videos), np.int64)
    video_labels[inverse] = labels
    name = (lambda c: class_names[c]) if class_names else str
    lines = ["video_id,label,top5"]
    for row, video in enumerate(videos):
        top = np.argsort(-mean[row], kind="stable")[:5]
        cells = " ".join(f"{name(int(c))}:{mean[row, c]:.5f}" for c in top)
        lines.append(f"{ids[video]},{name(int(video_labels[row]))},{cells}")
    write_text_atomic(path, "\n".join(lines) + "\n")


def scores_by_workers(strategy, model, files, clip_cfg, batch, workers,
                      output, key):
    """clip_scores of ``files``; with several workers each scores its block
    of shards and the chief joins them in shard order (video indices
    shifted by the videos of the blocks before).

    Returns:
        (probs, labels, video_index) on the chief, None on other workers.
    """
    exchange = eval_workers.ShareExchange(
        workers, files_lib.parent_dir(output), "kinetics-eval", key,
        FLAGS.worker_timeout_secs)

    def compute():
        probs, labels, video_index = evaluation.clip_scores(
            strategy, model, workers.shard_files(files), clip_cfg, batch)
        return {"probs": probs, "labels": labels, "video_index": video_index,
                "num_videos": np.int64(len(probs) // clip_cfg.clips_per_video)}

    share, shares = eval_workers.share_work(workers, exchange, compute)
    workers.announce(int(share["num_videos"]))
    if shares is None:
        return None
    exchange.remove()
    shares = [s for s in shares if len(s["probs"])]
    offsets = np.cumsum([0] + [int(s["num_videos"]) for s in shares[:-1]])
    return (np.concatenate([s["probs"] for s in shares]),
            np.concatenate([s["labels"] for s in shares]),
            np.concatenate([s["video_index"] + offset
                            for s, offset in zip(shares, offsets)]))


def main(argv):
    del argv
    workers = eval_workers.Workers.from_strategy(FLAGS.strategy)
    output = FLAGS.output_json or (
        os.path.join(FLAGS.output_dir, "eval.json") if not FLAGS.weights
        else "")
    workers.check_shared_output(output, "--output_json")
    strategy = distribute.make_strategy(
        workers.local_strategy_name(FLAGS.strategy), FLAGS.tpu)
    distribute.configure_mixed_precision(kflags.precision())
    files = kflags.split_files(FLAGS.val_dir, "val_dir")
    cfg, model, source = model_and_weights(strategy)
    kflags.check_same_classes(files, cfg.class_names, "val_dir")
    clip_cfg = reader.VideoClipConfig(
        clip_len=cfg.clip_len, frame_rate=cfg.frame_rate,
        clips_per_video=FLAGS.clips_per_video, resize=cfg.resize,
        crop_size=cfg.crop_size)
    batch = FLAGS.batch_size * strategy.num_replicas_in_sync
    scores = scores_by_workers(
        strategy, model, files, clip_cfg, batch, workers, output,
        eval_workers.run_key("kinetics.eval", files, str(source),
                             FLAGS.clips_per_video))
    if scores is None:  # another worker: the chief reports
        return None
    probs, labels, video_index = scores
    try:
        results = evaluation.accuracy(probs, labels, video_index)
    except ValueError as e:
        raise UserInputError(f"--val_dir: {e}") from e
    print(f"{cfg.model} ({source}):\n" + evaluation.format_accuracy(results))
    if output:
        write_json_atomic(output, {
            "weights": str(source), "model": cfg.model,
            "clips_per_video": FLAGS.clips_per_video,
            "accuracy_unit": "percent", "results": results})
        print(f"wrote {output}")
    if FLAGS.predictions_csv:
        write_predictions(FLAGS.predictions_csv, files, probs, labels,
                          video_index, cfg.class_names)
        print(f"wrote {FLAGS.predictions_csv}")
    return results


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
