"""Evaluate a trained model: ``python -m yt8m.eval --eval_data_pattern=...``.

GAP@``--top_k``, mAP, Hit@1, PERR and the mean loss over a whole split,
streamed batch by batch (memory O(videos x top_k), never videos x classes),
deterministic (every record once, frames sampled evenly at evaluation). The
metrics go to ``<train_dir>/eval/metrics_step<N>.json`` and to TensorBoard in
``<train_dir>/eval``. ``--segment_labels`` evaluates the 2019 segment task
(mAP over rated segments, ranked as the submission would rank them).

With ``--strategy=multi_worker`` (TF_CONFIG), each chief/worker process
evaluates a block of the shards on its own devices and the chief merges the
shares into the metrics one process gives (vidcore.eval_workers); the shares
go through ``--eval_dir``, which every worker must reach.
"""

import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import flags, logging

from input_pipeline import features as keys
from input_pipeline import records
from input_pipeline import yt8m as reader
from vidcore import (cli, distribute, eval_workers, losses, metrics, progress,
                     training)
from vidcore.errors import UserInputError
from vidcore.prediction import run_batches
from yt8m import flags as yflags
from yt8m import segments, trained

FLAGS = flags.FLAGS

cli.flag_topic("data")
flags.DEFINE_string("eval_data_pattern", "",
                    "Glob(s) of the evaluation TFRecord shards.")
cli.flag_topic("evaluation")
flags.DEFINE_string("eval_dir", "",
                    "Where metrics JSON and TensorBoard events go (default "
                    "<train_dir>/eval).")
flags.DEFINE_integer("eval_timeout_secs", 3600,
                     "With --run_once=False: stop after this long without a "
                     "new checkpoint.")
flags.DEFINE_integer("segment_top_n", 0,
                     "Segment task: rank at most this many segments per "
                     "class (0: no cap).")
eval_workers.define_flags()


def accumulate_videos(model, strategy, dataset, num_classes, top_k):
    """Streams a video-level evaluation.

    Returns:
        (metrics.StreamingYT8MMetrics, summed loss over the videos).
    """
    accumulator = metrics.StreamingYT8MMetrics(num_classes, top_k)
    loss_sum = 0.0

    def replica_fn(inputs, labels, meta):
        predictions = model(inputs, training=False)
        summary = metrics.topk_summary(predictions, labels, top_k,
                                       mask=meta["mask"])
        summary["loss"] = losses.multilabel_cross_entropy(labels,
                                                          predictions)
        return summary

    progbar = progress.Progbar(None, unit_name="video")
    for out in run_batches(strategy, dataset, replica_fn,
                           sum_keys=("class_positives",)):
        accumulator.update(out)
        # float64: a float32 sum would depend on how videos fill batches.
        loss_sum += float(out["loss"][out["mask"]].astype(np.float64).sum())
        progbar.add(int(out["mask"].sum()))
    progbar.finish()
    return accumulator, loss_sum


def video_result(accumulator, loss_sum):
    """The metrics dict of an accumulated evaluation (``avg_loss`` too)."""
    result = accumulator.result()
    result["avg_loss"] = loss_sum / max(result["num_videos"], 1)
    return result


def evaluate_segments(model, strategy, dataset, whitelist, top_k,
                      max_per_class, top_n):
    """Segment task: the submission's ranking scored on the rated pairs."""
    ranker, rated = segments.rank_segments(model, strategy, dataset,
                                           whitelist, top_k, max_per_class,
                                           with_ratings=True)
    value = metrics.segment_mean_average_precision(
        ranker.ranked(), rated, top_n=top_n or None)
    return {"segment_map": float(value), "num_segments":
            len(ranker.segment_ids), "num_rated_pairs": len(rated)}


def write_results(eval_dir, step, result):
    """JSON file per checkpoint step + TensorBoard scalars."""
    tf.io.gfile.makedirs(eval_dir)
    path = os.path.join(eval_dir, f"metrics_step{step}.json")
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    writer = tf.summary.create_file_writer(eval_dir)
    with writer.as_default(step=step):
        for key, value in result.items():
            if isinstance(value, (int, float)) and not isinstance(value,
                                                                  bool):
                tf.summary.scalar(f"eval/{key}", value)
    writer.close()
    return path


def print_table(result):
    width = max(len(k) for k in result)
    for key, value in sorted(result.items()):
        shown = f"{value:.6f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")


def video_share(model, strategy, source, reader_cfg, num_classes):
    """This worker's share of a video-level evaluation of ``source``: the
    accumulator's state, the summed loss and the skipped-record counts."""
    accumulator = metrics.StreamingYT8MMetrics(num_classes, FLAGS.top_k)
    loss_sum, counts = 0.0, {"skipped_records": 0, "corrupt_shards": 0}
    if source.files:
        counter = (records.CorruptionCounter()
                   if FLAGS.skip_corrupt_records else None)
        global_batch = FLAGS.batch_size * strategy.num_replicas_in_sync
        dataset = reader.evaluation_dataset(source, reader_cfg, global_batch,
                                            counter)
        accumulator, loss_sum = accumulate_videos(
            model, strategy, dataset, num_classes, FLAGS.top_k)
        if counter is not None:
            counts = counter.result()
    return {**accumulator.state(), "loss_sum": np.float64(loss_sum),
            **{k: np.int64(v) for k, v in counts.items()}}


def merged_video_result(shares, num_classes):
    """The metrics of all workers' shares, as one process computes them."""
    accumulator = metrics.StreamingYT8MMetrics(num_classes, FLAGS.top_k)
    for share in shares:
        accumulator.merge(share)
    result = video_result(accumulator,
                          sum(float(s["loss_sum"]) for s in shares))
    if FLAGS.skip_corrupt_records:
        for key in ("skipped_records", "corrupt_shards"):
            result[key] = sum(int(s[key]) for s in shares)
    return result


def evaluate_checkpoint(strategy, checkpoint_path, workers=None):
    """Evaluates one checkpoint; with several ``workers`` each takes a
    block of the shards and the chief merges and reports.

    Returns:
        The metrics dict (None on a worker other than the chief).
    """
    workers = workers or eval_workers.Workers()
    segment = FLAGS.segment_labels
    model, model_cfg, names, path = trained.load(
        FLAGS.train_dir, strategy,
        max_frames=keys.YT8M_SEGMENT_SIZE if segment else None,
        checkpoint_path=checkpoint_path)
    reader_cfg = yflags.reader_config(model_cfg, names,
                                      segment_labels=segment)
    source = reader.Source.from_pattern(FLAGS.eval_data_pattern, reader_cfg,
                                        "--eval_data_pattern")
    global_batch = FLAGS.batch_size * strategy.num_replicas_in_sync
    step = trained.checkpoint_step(path)
    eval_dir = FLAGS.eval_dir or os.path.join(FLAGS.train_dir, "eval")
    start = time.time()
    if segment:
        if FLAGS.skip_corrupt_records:
            raise UserInputError("--skip_corrupt_records is not supported "
                                 "with --segment_labels")
        whitelist = segments.read_class_whitelist(
            FLAGS.segment_label_ids_file, model_cfg.num_classes)
        dataset = reader.segment_dataset(source, reader_cfg, global_batch,
                                         rated_only=True)
        result = evaluate_segments(model, strategy, dataset, whitelist,
                                   FLAGS.top_k, FLAGS.segment_max_pred,
                                   FLAGS.segment_top_n)
    else:
        mine = source.only(workers.shard_files(source.files))
        exchange = eval_workers.ShareExchange(
            workers, eval_dir, f"eval-step{step}", eval_workers.run_key(
                "yt8m.eval", source.files, path, FLAGS.top_k,
                FLAGS.skip_corrupt_records), FLAGS.worker_timeout_secs)
        share, shares = eval_workers.share_work(
            workers, exchange, lambda: video_share(
                model, strategy, mine, reader_cfg, model_cfg.num_classes))
        workers.announce(len(share["perr"]))
        if shares is None:  # another worker: the chief reports
            return None
        result = merged_video_result(shares, model_cfg.num_classes)
        exchange.remove()
    result.update({"checkpoint": os.path.basename(path), "step": step,
                   "top_k": FLAGS.top_k, "seconds": time.time() - start,
                   "data_pattern": FLAGS.eval_data_pattern})
    out = write_results(eval_dir, step, result)
    print(f"Evaluation of {path} on {FLAGS.eval_data_pattern}:")
    print_table({k: v for k, v in result.items()
                 if k not in ("data_pattern",)})
    print(f"Metrics written to {out}")
    return result


def main(argv):
    del argv
    if not FLAGS.eval_data_pattern:
        raise UserInputError("--eval_data_pattern is required")
    workers = eval_workers.Workers.from_strategy(FLAGS.strategy)
    if workers.is_split and FLAGS.segment_labels:
        raise UserInputError(
            "--segment_labels runs in one process: drop "
            "--strategy=multi_worker (the segment task reads ~300 videos)")
    strategy = distribute.make_strategy(
        workers.local_strategy_name(FLAGS.strategy))
    distribute.configure_mixed_precision(FLAGS.mixed_precision)
    if FLAGS.run_once:
        return evaluate_checkpoint(strategy, FLAGS.checkpoint_path or None,
                                   workers)
    result = None
    for path in tf.train.checkpoints_iterator(
            FLAGS.train_dir, timeout=FLAGS.eval_timeout_secs):
        result = evaluate_checkpoint(strategy, path, workers)
        state = training.read_train_state(FLAGS.train_dir)
        if state.get("done") and state.get("checkpoint") == os.path.basename(
                path):
            logging.info("training is done; last checkpoint evaluated")
            break
    return result


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
