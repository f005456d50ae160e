"""Kaggle prediction files: ``python -m yt8m.inference``.

Writes ``VideoId,LabelConfidencePairs`` with exactly one line per video (top
``--top_k`` classes, string ids), reading every record once in a fixed
order (a deterministic round-robin over up to 8 shards at a time), also
under MirroredStrategy with a ragged last batch. A larger ``--top_k``
(the published commands use 50) gives the raw scores that yt8m.ensemble
averages. ``--segment_labels`` writes the 2019 ``Class,Segments`` file.
The model settings come from what training recorded in ``--train_dir``.

With ``--strategy=multi_worker`` (TF_CONFIG), each chief/worker process
predicts a block of the shards into a hidden file beside ``--output_file``
and the chief joins them in worker order: every video once, each line the
bytes one process writes (one process interleaves the shards it reads, so
with several shards per worker the line order differs; vidcore.eval_workers).
"""

import numpy as np
import tensorflow as tf
from absl import flags, logging

from input_pipeline import features as keys
from input_pipeline import records
from input_pipeline import yt8m as reader
from vidcore import cli, distribute, eval_workers, files, progress
from vidcore.errors import UserInputError
from vidcore.prediction import run_batches
from yt8m import flags as yflags
from yt8m import segments, submission, trained

FLAGS = flags.FLAGS

cli.flag_topic("data")
flags.DEFINE_string("input_data_pattern", "",
                    "Glob(s) of the TFRecord shards to predict.")
cli.flag_topic("evaluation")
flags.DEFINE_string("output_labels_file", "",
                    "Also write the records' ground-truth labels "
                    "(VideoId,Labels) here, e.g. to fit ensemble weights on "
                    "a validation split.")
eval_workers.define_flags()

def _labels_lists(labels):
    rows, cols = np.nonzero(labels)
    return np.split(cols, np.searchsorted(rows, np.arange(1, len(labels))))


def predict_videos(model, strategy, dataset, top_k, keep_labels=False):
    """Yields (ids, classes [B, k], scores [B, k], labels or None) per batch."""
    k = min(top_k, model.output_shape[-1])

    def replica_fn(inputs, labels, meta):
        scores, classes = tf.math.top_k(model(inputs, training=False), k=k)
        out = {"scores": scores, "classes": classes, "id": meta["id"],
               "mask": meta["mask"]}
        if keep_labels:
            out["labels"] = labels
        return out

    for out in run_batches(strategy, dataset, replica_fn):
        keep = out["mask"]
        yield (records.decode_ids(out["id"][keep]), out["classes"][keep],
               out["scores"][keep],
               out["labels"][keep] if keep_labels else None)


def write_video_file(model, strategy, source, reader_cfg, counter,
                     output_file, labels_file=""):
    """Writes the Kaggle file of ``source`` (and its labels file).

    Returns:
        Number of videos written.
    """
    keep_labels = bool(labels_file)
    label_ids, label_lists = [], []
    with submission.VideoPredictionWriter(output_file,
                                          top_k=FLAGS.top_k) as writer:
        if source.files:
            global_batch = FLAGS.batch_size * strategy.num_replicas_in_sync
            dataset = reader.evaluation_dataset(source, reader_cfg,
                                                global_batch, counter)
            progbar = progress.Progbar(None, unit_name="video")
            for ids, classes, scores, labels in predict_videos(
                    model, strategy, dataset, FLAGS.top_k, keep_labels):
                writer.write_batch(ids, classes, scores)
                if keep_labels:
                    label_ids.extend(ids)
                    label_lists.extend(_labels_lists(labels))
                progbar.add(len(ids))
            progbar.finish()
    if keep_labels:
        submission.write_labels(labels_file, label_ids, label_lists)
    return writer.num_written


def write_video_file_by_workers(model, strategy, source, reader_cfg,
                                counter, workers, key):
    """Each worker writes the files of its block of shards beside
    ``--output_file``; the chief joins them in worker (= shard) order.

    Returns:
        (videos written by this worker, videos in the joined file on the
        chief or None on the other workers).
    """
    exchange = eval_workers.ShareExchange(
        workers, files.parent_dir(FLAGS.output_file),
        FLAGS.output_file.rsplit("/", 1)[-1], key, FLAGS.worker_timeout_secs)
    labels = bool(FLAGS.output_labels_file)

    def compute():
        mine = source.only(workers.shard_files(source.files))
        n = write_video_file(
            model, strategy, mine, reader_cfg, counter,
            exchange.path(workers.index, "csv"),
            exchange.path(workers.index, "labels.csv") if labels else "")
        skipped = counter.result() if counter is not None else {}
        return {"num_videos": np.int64(n),
                **{k: np.int64(v) for k, v in skipped.items()}}

    share, shares = eval_workers.share_work(workers, exchange, compute)
    if shares is not None:
        parts = [exchange.path(i, "csv") for i in range(workers.count)]
        submission.concatenate_files(FLAGS.output_file, parts,
                                     submission.VIDEO_HEADER)
        if labels:
            submission.concatenate_files(
                FLAGS.output_labels_file,
                [exchange.path(i, "labels.csv")
                 for i in range(workers.count)], submission.LABELS_HEADER)
        exchange.remove(("npz", "csv", "labels.csv"))
        if counter is not None:
            logging.warning("skipped by all workers: %s", {
                k: sum(int(s[k]) for s in shares)
                for k in ("skipped_records", "corrupt_shards")})
    return int(share["num_videos"]), (
        None if shares is None else sum(int(s["num_videos"]) for s in shares))


def main(argv):
    del argv
    if not FLAGS.input_data_pattern or not FLAGS.output_file:
        raise UserInputError("--input_data_pattern and --output_file are "
                             "required")
    workers = eval_workers.Workers.from_strategy(FLAGS.strategy)
    segment = FLAGS.segment_labels
    if workers.is_split and segment:
        raise UserInputError(
            "--segment_labels runs in one process: drop "
            "--strategy=multi_worker (the segment task reads ~300 videos)")
    strategy = distribute.make_strategy(
        workers.local_strategy_name(FLAGS.strategy))
    distribute.configure_mixed_precision(FLAGS.mixed_precision)
    model, model_cfg, names, path = trained.load(
        FLAGS.train_dir, strategy,
        max_frames=keys.YT8M_SEGMENT_SIZE if segment else None,
        checkpoint_path=FLAGS.checkpoint_path or None)
    logging.info("predicting with %s (%s)", path, model_cfg.model)
    reader_cfg = yflags.reader_config(model_cfg, names)
    source = reader.Source.from_pattern(FLAGS.input_data_pattern, reader_cfg,
                                        "--input_data_pattern")
    counter = (records.CorruptionCounter() if FLAGS.skip_corrupt_records
               else None)
    if segment:
        if counter is not None:
            raise UserInputError("--skip_corrupt_records is not supported "
                                 "with --segment_labels")
        whitelist = segments.read_class_whitelist(
            FLAGS.segment_label_ids_file, model_cfg.num_classes)
        dataset = reader.segment_dataset(
            source, reader_cfg,
            FLAGS.batch_size * strategy.num_replicas_in_sync,
            rated_only=False)
        ranker, _ = segments.rank_segments(model, strategy, dataset,
                                           whitelist, FLAGS.top_k,
                                           FLAGS.segment_max_pred)
        submission.write_segment_predictions(FLAGS.output_file,
                                             ranker.ranked())
        print(f"Wrote segment rankings of {int(whitelist.sum())} classes "
              f"({len(ranker.segment_ids)} segments) to {FLAGS.output_file}")
        return
    if not workers.is_split:
        n = write_video_file(model, strategy, source, reader_cfg, counter,
                             FLAGS.output_file, FLAGS.output_labels_file)
        if counter is not None:
            logging.warning("skipped: %s", counter.result())
        print(f"Wrote predictions for {n} videos to {FLAGS.output_file}")
        return
    key = eval_workers.run_key("yt8m.inference", source.files, path,
                               FLAGS.top_k, FLAGS.skip_corrupt_records,
                               FLAGS.output_labels_file)
    mine, total = write_video_file_by_workers(
        model, strategy, source, reader_cfg, counter, workers, key)
    workers.announce(mine)
    if total is not None:
        print(f"Wrote predictions for {total} videos to {FLAGS.output_file}")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
