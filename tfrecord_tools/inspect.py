"""Inspects and verifies YouTube-8M TFRecord shards (a diagnostic tool).

  python -m tfrecord_tools.inspect --data_pattern='out/train*.tfrecord'
  python -m tfrecord_tools.inspect --data_pattern='out/*.tfrecord' --verify \
      --num_classes=3862

Reports the shards and their record counts, the record type (video-level
`tf.train.Example` or frame-level `tf.train.SequenceExample`), the first
record's schema, the id key (`id` 2018+ / `video_id` 2017), label, frame
count and 2019 segment statistics. `--verify` also checks every record
against the first one's schema and ends with "OK: N records in M shards
verified", or exits 1 naming the shard, record index and problem of the
first bad record.

Records are parsed with the Python protobuf classes: simple and exact.
A serialized Example parses as a SequenceExample whose context is the
Example's features and whose feature_lists are empty, so every record is
parsed as a SequenceExample and the type is decided by whether it has
feature lists.
"""

import collections
import json
import logging
import os
import re
import sys

from absl import flags
from google.protobuf import message as pb_message
import tensorflow as tf
from tqdm import tqdm

from input_pipeline import features as F
from tfrecord_tools import cli
from tfrecord_tools import sharded_writer

FRAME_LEVEL = "frame"  # tf.train.SequenceExample with feature lists
VIDEO_LEVEL = "video"  # tf.train.Example
RECORD_TYPE_NAMES = {
    FRAME_LEVEL: "frame level (tf.train.SequenceExample)",
    VIDEO_LEVEL: "video level (tf.train.Example)",
}
SEGMENT_KEYS = (F.YT8M_SEGMENT_LABELS, F.YT8M_SEGMENT_START_TIMES,
                F.YT8M_SEGMENT_SCORES)
# Context keys whose length varies between records; all others (id,
# mean_rgb, ...) must keep the first record's length.
VARIABLE_LENGTH_KEYS = (F.YT8M_LABELS_KEY,) + SEGMENT_KEYS
ID_KEY_RELEASES = {F.YT8M_ID_KEY: "2018+", F.YT8M_ID_KEY_2017: "2017"}
TOP_CLASSES = 10
MAX_LISTED_SHARDS = 20


def list_shards(data_pattern):
    """Sorted files matching a glob (or comma-separated globs).

    Args:
        data_pattern: e.g. "data/train*.tfrecord" (any `tf.io.gfile` path).

    Returns:
        Sorted list of paths.

    Raises:
        MissingInputError: nothing matches.
    """
    paths = set()
    for pattern in cli.parse_name_list(data_pattern):
        paths.update(tf.io.gfile.glob(pattern))
    if not paths:
        raise cli.MissingInputError(
            f"--data_pattern={data_pattern!r} matches no files")
    return sorted(paths)


def _tf_error_text(error):
    """Short description of a TFRecord read error."""
    text = getattr(error, "message", str(error))
    m = re.search(r"(truncated|corrupted) record at (\d+)", text)
    if not m:
        return " ".join(text.split())
    if m.group(1) == "truncated":
        return (f"truncated record at byte offset {m.group(2)} (the file ends "
                "inside a record: cut short or still being written)")
    return (
        f"corrupted record at byte offset {m.group(2)} (checksum mismatch: "
        "the file is damaged or not a TFRecord file)")


def _record_iterator(path):
    """tf_record_iterator without its one-time deprecation log line.

    It is ~25x faster than iterating a TFRecordDataset eagerly and raises
    plain Python errors; fall back to the dataset if TF ever removes it.
    """
    iterator_fn = getattr(tf.compat.v1.io, "tf_record_iterator", None)
    if iterator_fn is None:
        return tf.data.TFRecordDataset(path).as_numpy_iterator()
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return iterator_fn(path)
    finally:
        logger.setLevel(level)


def iter_records(path):
    """Yields the serialized records of one shard, checking TFRecord CRCs.

    Args:
        path: shard path.

    Yields:
        bytes of each record.

    Raises:
        CorruptRecordError: naming the shard, the record index and the problem.
    """
    index = 0
    try:
        for record in _record_iterator(path):
            yield record
            index += 1
    except tf.errors.NotFoundError:
        raise cli.MissingInputError(f"{path}: no such file") from None
    except tf.errors.OpError as e:
        raise cli.CorruptRecordError(
            f"{path}: record {index}: {_tf_error_text(e)}") from None


def parse_record(data, path, index):
    """Parses one record as a SequenceExample (Examples parse too).

    Raises:
        CorruptRecordError: not a valid protobuf.
    """
    try:
        return tf.train.SequenceExample.FromString(data)
    except pb_message.DecodeError as e:
        raise cli.CorruptRecordError(
            f"{path}: record {index}: not a tf.train.Example/SequenceExample "
            f"protobuf ({e})") from None


def _kind_and_values(feature):
    kind = feature.WhichOneof("kind")
    if kind is None:
        return "none", []
    return kind.replace("_list", ""), getattr(feature, kind).value


def record_schema(seq):
    """Schema of one parsed record.

    Args:
        seq: tf.train.SequenceExample.

    Returns:
        Dict with "type" (FRAME_LEVEL/VIDEO_LEVEL), "context" {key: {"dtype",
        "length"}} and "feature_lists" {key: {"frames", "bytes_per_frame"}}
        (bytes_per_frame of the first frame, None when there are no frames).
    """
    context = {}
    for key in sorted(seq.context.feature):
        dtype, values = _kind_and_values(seq.context.feature[key])
        context[key] = {"dtype": dtype, "length": len(values)}
    feature_lists = {}
    for key in sorted(seq.feature_lists.feature_list):
        frames = seq.feature_lists.feature_list[key].feature
        first = frames[0].bytes_list.value if frames else None
        feature_lists[key] = {
            "frames": len(frames),
            "bytes_per_frame": len(first[0]) if first else None,
        }
    return {
        "type": FRAME_LEVEL if feature_lists else VIDEO_LEVEL,
        "context": context,
        "feature_lists": feature_lists,
    }


def detect_id_key(context_keys):
    """The id key present among `context_keys`, or None."""
    for key in F.YT8M_ID_KEYS:
        if key in context_keys:
            return key
    return None


def _read_manifests(paths):
    """Shard path -> (record count, manifest) from manifests beside shards."""
    counts = {}
    for directory in sorted({os.path.dirname(p) for p in paths}):
        pattern = os.path.join(
            directory, sharded_writer.MANIFEST_TEMPLATE.format(prefix="*"))
        for manifest in tf.io.gfile.glob(pattern):
            try:
                with tf.io.gfile.GFile(manifest) as f:
                    shards = json.load(f).get("shards", [])
                for shard in shards:
                    counts[os.path.join(directory, shard["name"])] = (
                        int(shard["records"]), manifest)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # not one of ours: ignore
    return counts


class _Checker:
    """Checks records against the first record's schema (for --verify)."""

    def __init__(self, schema, num_classes):
        self.schema = schema
        self.num_classes = num_classes

    def check(self, seq, where):
        """Raises CorruptRecordError(where + problem) for the first problem."""
        expected = self.schema["context"]
        got = {}
        for key, feature in seq.context.feature.items():
            dtype, values = _kind_and_values(feature)
            got[key] = (dtype, values)
        if set(got) != set(expected):
            raise cli.CorruptRecordError(
                f"{where}: context keys {sorted(got)} differ from the first "
                f"record's {sorted(expected)}")
        for key, (dtype, values) in got.items():
            want = expected[key]
            if dtype != want["dtype"]:
                raise cli.CorruptRecordError(
                    f"{where}: context feature {key!r} is {dtype}, the first "
                    f"record's is {want['dtype']}")
            fixed = key not in VARIABLE_LENGTH_KEYS
            if fixed and len(values) != want["length"]:
                raise cli.CorruptRecordError(
                    f"{where}: context feature {key!r} has {len(values)} "
                    f"values, the first record's has {want['length']}")
        for key in (F.YT8M_LABELS_KEY, F.YT8M_SEGMENT_LABELS):
            if key in got:
                self._check_labels(key, got[key][1], where)
        present = [k for k in SEGMENT_KEYS if k in got]
        if present:
            lengths = {k: len(got[k][1]) for k in present}
            equal = len(set(lengths.values())) == 1
            if len(present) != len(SEGMENT_KEYS) or not equal:
                raise cli.CorruptRecordError(
                    f"{where}: segment fields must all be present with equal "
                    f"lengths, got {lengths}")
        want_lists = self.schema["feature_lists"]
        lists = seq.feature_lists.feature_list
        if set(lists) != set(want_lists):
            raise cli.CorruptRecordError(
                f"{where}: feature lists {sorted(lists)} differ from the "
                f"first record's {sorted(want_lists)}")
        for key, feature_list in lists.items():
            size = want_lists[key]["bytes_per_frame"]
            for t, frame in enumerate(feature_list.feature):
                values = frame.bytes_list.value
                is_bytes = frame.WhichOneof("kind") == "bytes_list"
                if not is_bytes or len(values) != 1:
                    raise cli.CorruptRecordError(
                        f"{where}: feature list {key!r} frame {t} is not one "
                        "bytes value")
                if size is not None and len(values[0]) != size:
                    raise cli.CorruptRecordError(
                        f"{where}: feature list {key!r} frame {t} has "
                        f"{len(values[0])} bytes, expected {size}")

    def _check_labels(self, key, labels, where):
        for label in labels:
            if label < 0:
                raise cli.CorruptRecordError(
                    f"{where}: {key} contains negative class id {label}")
            if self.num_classes is not None and label >= self.num_classes:
                raise cli.CorruptRecordError(
                    f"{where}: {key} contains class id {label}, not below "
                    f"--num_classes={self.num_classes}")


class _Stats:
    """Accumulates label / frame / segment statistics over records."""

    def __init__(self):
        self.videos = 0
        self.label_counts = collections.Counter()
        self.num_labels = 0
        self.videos_without_labels = 0
        self.videos_with_labels_key = 0
        self.frames = []
        self.frames_over_max = 0
        self.segment_videos = 0
        self.segments = 0
        self.segment_classes = collections.Counter()
        self.segment_positives = 0
        self.segment_starts_off_grid = 0

    def add(self, seq):
        self.videos += 1
        context = seq.context.feature
        labels = []
        if F.YT8M_LABELS_KEY in context:
            self.videos_with_labels_key += 1
            labels = context[F.YT8M_LABELS_KEY].int64_list.value
        self.num_labels += len(labels)
        self.videos_without_labels += not labels
        self.label_counts.update(labels)
        lists = seq.feature_lists.feature_list
        if lists:
            frames = max(len(fl.feature) for fl in lists.values())
            self.frames.append(frames)
            self.frames_over_max += frames > F.YT8M_MAX_FRAMES
        if F.YT8M_SEGMENT_LABELS in context:
            seg_labels = context[F.YT8M_SEGMENT_LABELS].int64_list.value
            starts = context[F.YT8M_SEGMENT_START_TIMES].int64_list.value if (
                F.YT8M_SEGMENT_START_TIMES in context) else []
            scores = context[F.YT8M_SEGMENT_SCORES].float_list.value if (
                F.YT8M_SEGMENT_SCORES in context) else []
            self.segment_videos += bool(seg_labels)
            self.segments += len(seg_labels)
            self.segment_classes.update(seg_labels)
            self.segment_positives += sum(1 for s in scores if s >= 0.5)
            self.segment_starts_off_grid += sum(
                1 for s in starts if s % F.YT8M_SEGMENT_SIZE)

    def summary(self):
        videos = self.videos
        labels = {
            "videos": videos,
            "videos_with_labels_key": self.videos_with_labels_key,
            "mean_labels_per_video": self.num_labels / max(1, videos),
            "distinct_classes": len(self.label_counts),
            "max_class_id": max(self.label_counts, default=None),
            "videos_without_labels": self.videos_without_labels,
            "top_classes": self.label_counts.most_common(TOP_CLASSES),
        }
        frames = None
        if self.frames:
            frames = {
                "min": min(self.frames),
                "mean": sum(self.frames) / len(self.frames),
                "max": max(self.frames),
                "videos_over_max_frames": self.frames_over_max,
            }
        segments = None
        if self.segments or self.segment_videos:
            num = self.segments
            segments = {
                "videos_with_segments": self.segment_videos,
                "segments": num,
                "mean_segments_per_video": num / max(1, self.segment_videos),
                "distinct_segment_classes": len(self.segment_classes),
                "positive_segments": self.segment_positives,
                "negative_segments": num - self.segment_positives,
                "start_times_not_multiple_of_segment_size":
                self.segment_starts_off_grid,
            }
        return labels, frames, segments


def scan_shards(paths, verify=False, num_classes=None, progress=True):
    """Reads every record of `paths` and gathers the inspection report.

    Args:
        paths: shard paths, in order.
        verify: check each record against the first record's schema, label
            ranges and, where a manifest lists the shard, its record count.
        num_classes: with verify, labels must be < num_classes.
        progress: show a progress bar over shards.

    Returns:
        Dict with "shards" [(path, records)], "num_records", "type",
        "schema" (of the first record, None if there are no records), "id_key",
        "labels", "frames" (frame level only), "segments" (None when absent).

    Raises:
        CorruptRecordError: unreadable shard/record, or (verify) a record off
            the first record's schema; the message names shard and record
            index.
        MissingInputError: a shard does not exist.
    """
    paths = list(paths)
    schema = None
    checker = None
    stats = _Stats()
    shards = []
    manifests = _read_manifests(paths) if verify else {}
    for path in tqdm(paths, desc="shards", unit="shard", disable=not progress,
                     file=sys.stderr):
        count = 0
        for index, data in enumerate(iter_records(path)):
            seq = parse_record(data, path, index)
            if schema is None:
                schema = record_schema(seq)
                checker = _Checker(schema, num_classes)
            if verify:
                checker.check(seq, f"{path}: record {index}")
            stats.add(seq)
            count += 1
        if verify and path in manifests and manifests[path][0] != count:
            want, manifest = manifests[path]
            raise cli.CorruptRecordError(
                f"{path}: has {count} records but {manifest} lists {want} "
                "(file cut short at a record boundary, or a stale manifest)")
        shards.append((path, count))
    labels, frames, segments = stats.summary()
    return {
        "shards": shards,
        "num_records": sum(c for _, c in shards),
        "type": schema["type"] if schema else None,
        "schema": schema,
        "id_key": detect_id_key(schema["context"]) if schema else None,
        "labels": labels,
        "frames": frames,
        "segments": segments,
    }


def inspect_shards(paths, progress=False):
    """Inspection report of `paths` (see `scan_shards`), no schema checks."""
    return scan_shards(paths, verify=False, progress=progress)


def verify_shards(paths, num_classes=None, progress=False):
    """Verifies every record of `paths`; raises CorruptRecordError on the first
    bad one (see `scan_shards`).

    Returns:
        The inspection report (as `scan_shards`).
    """
    return scan_shards(paths, verify=True, num_classes=num_classes,
                       progress=progress)


def format_report(info):
    """Human-readable text of a `scan_shards` report."""
    lines = []
    shards = info["shards"]
    counts = [c for _, c in shards]
    lines.append(f"Shards: {len(shards)}, records: {info['num_records']} "
                 f"(per shard min {min(counts)}, max {max(counts)})")
    for path, count in shards[:MAX_LISTED_SHARDS]:
        lines.append(f"  {path}: {count}")
    if len(shards) > MAX_LISTED_SHARDS:
        lines.append(
            f"  ... and {len(shards) - MAX_LISTED_SHARDS} more shards")
    if info["schema"] is None:
        lines.append("No records.")
        return "\n".join(lines)
    schema = info["schema"]
    lines.append(f"Record type: {RECORD_TYPE_NAMES[info['type']]}")
    section = "context" if info["type"] == FRAME_LEVEL else "features"
    lines.append(f"Schema of the first record ({section}):")
    for key, spec in schema["context"].items():
        lines.append(f"  {key}: {spec['dtype']} x {spec['length']}")
    if schema["feature_lists"]:
        lines.append("  feature_lists:")
        for key, spec in schema["feature_lists"].items():
            lines.append(f"    {key}: {spec['frames']} frames x "
                         f"{spec['bytes_per_frame']} bytes")
    id_key = info["id_key"]
    lines.append("Id key: " + (
        f"{id_key!r} ({ID_KEY_RELEASES[id_key]} releases)" if id_key
        else f"none of {list(F.YT8M_ID_KEYS)} found"))
    lab = info["labels"]
    if not lab["videos_with_labels_key"]:
        lines.append(f"Labels: no '{F.YT8M_LABELS_KEY}' feature")
    else:
        top = ", ".join(f"{c}:{n}" for c, n in lab["top_classes"])
        lines.append(
            f"Labels: {lab['videos']} videos, "
            f"{lab['mean_labels_per_video']:.2f} labels per video, "
            f"{lab['distinct_classes']} distinct classes, max class id "
            f"{lab['max_class_id']}, {lab['videos_without_labels']} videos "
            "without labels")
        lines.append(f"  top classes (class:videos): {top or '-'}")
    if info["frames"]:
        fr = info["frames"]
        lines.append(
            f"Frames per video: min {fr['min']}, mean {fr['mean']:.1f}, max "
            f"{fr['max']} ({fr['videos_over_max_frames']} videos over "
            f"{F.YT8M_MAX_FRAMES}, which readers truncate)")
    seg = info["segments"]
    if seg is None:
        lines.append("Segment fields (2019): absent")
    else:
        lines.append(
            f"Segment fields (2019): present; {seg['videos_with_segments']} "
            f"videos with {seg['segments']} rated segments "
            f"({seg['mean_segments_per_video']:.2f} per video), "
            f"{seg['distinct_segment_classes']} classes, "
            f"{seg['positive_segments']} positive / "
            f"{seg['negative_segments']} negative, "
            f"{seg['start_times_not_multiple_of_segment_size']} start times "
            f"not a multiple of {F.YT8M_SEGMENT_SIZE}")
    return "\n".join(lines)


# -- CLI -----------------------------------------------------------------

FLAGS = flags.FlagValues()
cli.flag_topic("data", FLAGS)
flags.DEFINE_string("data_pattern", None,
                    "Glob of the shards, e.g. 'data/train*.tfrecord' "
                    "(comma-separated globs allowed).", flag_values=FLAGS)
flags.DEFINE_boolean("verify", False,
                     "Check every record: TFRecord CRC, protobuf parse, same "
                     "schema and bytes per frame as the first record, label "
                     "ids < --num_classes, record counts of a manifest.",
                     flag_values=FLAGS)
flags.DEFINE_integer("num_classes", None,
                     "With --verify: label ids must be < num_classes.",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_boolean("progress", True, "Show a progress bar.",
                     flag_values=FLAGS)
flags.mark_flag_as_required("data_pattern", flag_values=FLAGS)


@cli.handle_errors
def main(argv):
    """Prints the report (and verifies) per the module FLAGS."""
    if len(argv) > 1:
        raise cli.InputError(f"unexpected arguments {argv[1:]}")
    paths = list_shards(FLAGS.data_pattern)
    info = scan_shards(paths, verify=FLAGS.verify,
                       num_classes=FLAGS.num_classes, progress=FLAGS.progress)
    print(format_report(info))
    if FLAGS.verify:
        print(f"OK: {info['num_records']} records in {len(paths)} shards "
              "verified")
    return 0


def run():
    """Console-script entry point."""
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
