"""Writes YouTube-8M TFRecords in the official frame- or video-level format.

Library:
  quantize / dequantize           the official uint8 frame quantisation
  make_frame_example(...)         -> tf.train.SequenceExample (frame level)
  make_video_example(...)         -> tf.train.Example (video level)
  convert_directory(...)          features dir + labels CSV -> sharded shards

CLI (one `<video_id>.npz` per video holding `rgb` [T, 1024] and
`audio` [T, 128] float arrays; labels from a CSV `video_id,labels`):

  python -m tfrecord_tools.yt8m_writer --features_dir=feats \
      --labels_csv=labels.csv --output_dir=out --prefix=train --num_shards=4

Shards are named like the official ones (`train0000.tfrecord`), hold the
videos in CSV order in contiguous blocks, and are written atomically (see
`sharded_writer`); `--resume` keeps shards finished by an earlier run.
"""

import csv
import io
import os
import sys

from absl import flags
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from input_pipeline import features as F
from tfrecord_tools import cli
from tfrecord_tools import tf_features
from tfrecord_tools import sharded_writer

# Frame-level feature name -> video-level (mean-pooled) key.
MEAN_FEATURE_KEYS = {F.YT8M_RGB: F.YT8M_MEAN_RGB,
                     F.YT8M_AUDIO: F.YT8M_MEAN_AUDIO}
SEGMENT_KEYS = (F.YT8M_SEGMENT_LABELS, F.YT8M_SEGMENT_START_TIMES,
                F.YT8M_SEGMENT_SCORES)
CSV_HEADER = ("video_id", "labels")

_QUANT_RANGE = F.QUANT_MAX - F.QUANT_MIN


# -- quantisation --------------------------------------------------------


def quantize(x):
    """Official YouTube-8M quantisation of float features to uint8.

    q = round((clip(x, -2, 2) + 2) * 255 / 4), rounding half to even as
    Python's round() in the official feature extractor.

    Args:
        x: float array of any shape.

    Returns:
        uint8 array of the same shape.

    Raises:
        ValueError: `x` contains NaN.
    """
    x = np.asarray(x, dtype=np.float32)
    if np.isnan(x).any():
        raise ValueError("cannot quantize NaN feature values")
    clipped = np.clip(x, F.QUANT_MIN, F.QUANT_MAX)
    scaled = (clipped - F.QUANT_MIN) * np.float32(255.0 / _QUANT_RANGE)
    return np.round(scaled).astype(np.uint8)


def dequantize(q):
    """Official YouTube-8M dequantisation: x = q * 4/255 + (4/512 - 2).

    Args:
        q: uint8 (or integer) array of any shape.

    Returns:
        float32 array of the same shape.
    """
    q = np.asarray(q).astype(np.float32)
    return q * np.float32(F.DEQUANT_SCALE) + np.float32(F.DEQUANT_BIAS)


# -- protos --------------------------------------------------------------


def _id_bytes(video_id):
    return video_id if isinstance(video_id, bytes) else str(video_id).encode()


def _context(video_id, labels, id_key):
    """Context/features dict: id and (unless labels is None) labels."""
    if id_key not in F.YT8M_ID_KEYS:
        raise cli.InputError(
            f"id_key must be one of {F.YT8M_ID_KEYS}, got {id_key!r}")
    feature = {id_key: tf_features.bytes_feature([_id_bytes(video_id)])}
    if labels is not None:
        feature[F.YT8M_LABELS_KEY] = tf_features.int64_feature(
            [int(l) for l in labels])
    return feature


def make_frame_example(video_id, labels, features, id_key=F.YT8M_ID_KEY,
                       segments=None):
    """Builds one frame-level record in the official format.

    Args:
        video_id: str or bytes id.
        labels: iterable of int class ids (may be empty); None omits the
            `labels` context feature.
        features: dict feature name (e.g. "rgb", "audio") -> array [T, D]:
            float values are quantised; uint8 values are taken as already
            quantised. All features must have the same T. T above 300 is kept
            (the reader truncates).
        id_key: "id" (2018+) or "video_id" (2017).
        segments: optional dict with the 2019 segment fields `segment_labels`
            (ints), `segment_start_times` (ints, frame index) and
            `segment_scores`
            (floats), all of one length.

    Returns:
        tf.train.SequenceExample.

    Raises:
        InputError: bad shapes, mismatched frame counts or segment fields.
    """
    context = _context(video_id, labels, id_key)
    if segments is not None:
        missing = [k for k in SEGMENT_KEYS if k not in segments]
        if missing:
            raise cli.InputError(
                f"video {video_id!r}: segments lacks {missing}")
        lengths = {k: len(segments[k]) for k in SEGMENT_KEYS}
        if len(set(lengths.values())) != 1:
            raise cli.InputError(
                f"video {video_id!r}: segment fields differ in length "
                f"{lengths}")
        context[F.YT8M_SEGMENT_LABELS] = tf_features.int64_feature(
            [int(v) for v in segments[F.YT8M_SEGMENT_LABELS]])
        context[F.YT8M_SEGMENT_START_TIMES] = tf_features.int64_feature(
            [int(v) for v in segments[F.YT8M_SEGMENT_START_TIMES]])
        context[F.YT8M_SEGMENT_SCORES] = tf_features.float_feature(
            [float(v) for v in segments[F.YT8M_SEGMENT_SCORES]])
    feature_lists = {}
    num_frames = None
    for name, values in features.items():
        values = np.asarray(values)
        if values.ndim != 2:
            raise cli.InputError(
                f"video {video_id!r}: feature {name!r} has shape "
                f"{values.shape}; "
                "expected [num_frames, dim]")
        if num_frames is not None and values.shape[0] != num_frames:
            raise cli.InputError(
                f"video {video_id!r}: feature {name!r} has "
                f"{values.shape[0]} frames "
                f"but the previous features have {num_frames}")
        num_frames = values.shape[0]
        q = values if values.dtype == np.uint8 else quantize(values)  # [T, D]
        feature_lists[name] = tf.train.FeatureList(
            feature=[tf_features.bytes_feature([row.tobytes()]) for row in q])
    return tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(feature_list=feature_lists))


def make_video_example(video_id, labels, features, id_key=F.YT8M_ID_KEY):
    """Builds one video-level record in the official format.

    Args:
        video_id: str or bytes id.
        labels: iterable of int class ids (may be empty); None omits `labels`.
        features: dict key (e.g. "mean_rgb", "mean_audio") -> float array [D].
        id_key: "id" (2018+) or "video_id" (2017).

    Returns:
        tf.train.Example.

    Raises:
        InputError: a feature is not one-dimensional.
    """
    feature = _context(video_id, labels, id_key)
    for name, values in features.items():
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 1:
            raise cli.InputError(
                f"video {video_id!r}: feature {name!r} has shape "
                f"{values.shape}; "
                "expected [dim]")
        feature[name] = tf_features.float_feature(values.tolist())
    return tf.train.Example(features=tf.train.Features(feature=feature))


def serialize(example):
    """Deterministic serialization (map entries in sorted key order)."""
    return example.SerializeToString(deterministic=True)


# -- inputs: labels CSV and feature files ---------------------------------


def read_labels_csv(path, num_classes):
    """Reads `video_id,labels` rows (labels space-separated, may be empty).

    Args:
        path: CSV file path.
        num_classes: labels must lie in [0, num_classes).

    Returns:
        List of (video_id, [labels], line_number).

    Raises:
        MissingInputError: no such file.
        InputError: bad header, malformed line, label out of range,
            duplicate id.
    """
    if not tf.io.gfile.exists(path):
        raise cli.MissingInputError(f"--labels_csv: no such file {path}")
    with tf.io.gfile.GFile(path, "r") as f:
        text = f.read()
    rows = []
    seen = {}
    lines = text.lstrip("\ufeff").splitlines()
    header = tuple(c.strip() for c in lines[0].split(",")) if lines else ()
    if header != CSV_HEADER:
        first = lines[0] if lines else ""
        raise cli.InputError(
            f"{path}:1: expected header 'video_id,labels', got {first!r}")
    for line_no, fields in enumerate(csv.reader(lines[1:]), start=2):
        content = ",".join(fields)
        if not content.strip():
            continue  # blank line
        where = f"{path}:{line_no}"
        if len(fields) != 2:
            raise cli.InputError(
                f"{where}: malformed line {content!r}: expected 2 fields "
                f"'video_id,labels', got {len(fields)}")
        video_id, label_text = fields[0].strip(), fields[1]
        if not video_id or "/" in video_id or "\\" in video_id:
            raise cli.InputError(
                f"{where}: malformed line {content!r}: invalid video id "
                f"{video_id!r}")
        try:
            labels = [int(t) for t in label_text.split()]
        except ValueError:
            raise cli.InputError(
                f"{where}: malformed line {content!r}: labels must be "
                "space-separated integers") from None
        for label in labels:
            if not 0 <= label < num_classes:
                raise cli.InputError(
                    f"{where}: video {video_id!r}: label {label} out of range "
                    f"[0, {num_classes}) (--num_classes={num_classes})")
        if len(set(labels)) != len(labels):
            raise cli.InputError(
                f"{where}: video {video_id!r}: repeated label in "
                f"{label_text!r}")
        if video_id in seen:
            raise cli.InputError(
                f"{where}: duplicate video id {video_id!r} (first on line "
                f"{seen[video_id]})")
        seen[video_id] = line_no
        rows.append((video_id, labels, line_no))
    return rows


def feature_file(features_dir, video_id, feature_names):
    """Path of a video's `<id>.npz` (or, for one feature, `<id>.npy`) file.

    Args:
        features_dir: directory of the feature files.
        video_id: the video id.
        feature_names: names of the features to read.

    Returns:
        Path of the existing file, or None when there is none.
    """
    npz = os.path.join(features_dir, video_id + ".npz")
    if tf.io.gfile.exists(npz):
        return npz
    npy = os.path.join(features_dir, video_id + ".npy")
    if len(feature_names) == 1 and tf.io.gfile.exists(npy):
        return npy
    return None


def load_features(path, feature_names, feature_sizes):
    """Loads and checks one video's frame features.

    Args:
        path: `.npz` with one array per feature name, or `.npy` holding the
            single feature's array.
        feature_names: names to read, e.g. ["rgb", "audio"].
        feature_sizes: expected last dimension of each.

    Returns:
        Dict name -> array [T, D] (float32, or uint8 when stored quantised).

    Raises:
        InputError: missing array, wrong shape or dimension, differing frame
            counts, no frames, NaN values, unreadable file.
    """
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if path.endswith(".npy"):
            arrays = {feature_names[0]: loaded}
        else:
            arrays = {k: loaded[k] for k in loaded.files}
    except (ValueError, OSError, EOFError) as e:
        raise cli.InputError(f"{path}: cannot read numpy data ({e})") from None
    out = {}
    num_frames = None
    for name, size in zip(feature_names, feature_sizes):
        if name not in arrays:
            raise cli.InputError(
                f"{path}: no array named {name!r} (has {sorted(arrays)}); "
                "--feature_names lists the arrays every file must hold")
        a = arrays[name]
        if a.ndim != 2 or a.shape[1] != size:
            raise cli.InputError(
                f"{path}: feature {name!r} has shape {list(a.shape)}; "
                f"expected [num_frames, {size}] (--feature_sizes)")
        if a.shape[0] == 0:
            raise cli.InputError(f"{path}: feature {name!r} has 0 frames")
        if num_frames is not None and a.shape[0] != num_frames:
            raise cli.InputError(
                f"{path}: feature {name!r} has {a.shape[0]} frames but "
                f"{feature_names[0]!r} has {num_frames}")
        num_frames = a.shape[0]
        if a.dtype != np.uint8:
            a = a.astype(np.float32)
            if np.isnan(a).any():
                raise cli.InputError(f"{path}: feature {name!r} contains NaN")
        out[name] = a
    return out


def video_level_features(frames):
    """Mean over frames of each feature, keyed by its video-level name.

    Args:
        frames: dict name -> [T, D] array (uint8 arrays are dequantised first).

    Returns:
        Dict e.g. {"mean_rgb": [1024], "mean_audio": [128]} of float32.
    """
    out = {}
    for name, a in frames.items():
        values = dequantize(a) if a.dtype == np.uint8 else a
        key = MEAN_FEATURE_KEYS.get(name, "mean_" + name)
        out[key] = values.astype(np.float64).mean(axis=0).astype(np.float32)
    return out


def convert_directory(features_dir, labels_csv, output_dir, prefix="train",
                      num_shards=1, level="frame", id_key=F.YT8M_ID_KEY,
                      feature_names=(F.YT8M_RGB, F.YT8M_AUDIO),
                      feature_sizes=None, num_classes=F.YT8M_NUM_CLASSES,
                      resume=False, progress=True):
    """Converts per-video feature files + a labels CSV into YT8M shards.

    All CSV rows and the existence of every feature file are checked before
    anything is written; a bad feature file found while writing stops the run
    with the shards finished so far left in place (rerun with resume=True
    after fixing it).

    Args:
        features_dir: directory of `<video_id>.npz` (or `.npy`) files.
        labels_csv: CSV with header `video_id,labels`.
        output_dir: directory for the shards.
        prefix: shard name prefix ("train", "validate", "test").
        num_shards: number of shards.
        level: "frame" (SequenceExample) or "video" (Example of mean features).
        id_key: "id" (2018+) or "video_id" (2017).
        feature_names: arrays to read from each file.
        feature_sizes: their dimensions; default from
            `input_pipeline.features`.
        num_classes: labels must be < num_classes.
        resume: keep shards that already exist under their final names.
        progress: show a progress bar.

    Returns:
        Dict shard path -> record count.

    Raises:
        InputError, MissingInputError: bad input (one precise message).
    """
    feature_names = list(feature_names)
    if feature_sizes is None:
        unknown = [n for n in feature_names if n not in F.YT8M_FEATURE_SIZES]
        if unknown:
            raise cli.InputError(
                f"no default size for features {unknown}; pass "
                "--feature_sizes")
        feature_sizes = [F.YT8M_FEATURE_SIZES[n] for n in feature_names]
    feature_sizes = list(feature_sizes)
    if not feature_names or len(feature_names) != len(feature_sizes):
        raise cli.InputError(
            f"--feature_names {feature_names} and --feature_sizes "
            f"{feature_sizes} must be non-empty and of equal length")
    if level not in ("frame", "video"):
        raise cli.InputError(
            f"--level must be 'frame' or 'video', got {level!r}")
    if id_key not in F.YT8M_ID_KEYS:
        raise cli.InputError(
            f"--id_key must be one of {F.YT8M_ID_KEYS}, got {id_key!r}")
    if not tf.io.gfile.isdir(features_dir):
        raise cli.MissingInputError(
            f"--features_dir: no such directory {features_dir}")
    rows = read_labels_csv(labels_csv, num_classes)
    if not rows:
        raise cli.InputError(f"{labels_csv}: no video rows after the header")
    paths = []
    for video_id, _, line_no in rows:
        path = feature_file(features_dir, video_id, feature_names)
        if path is None:
            expected = os.path.join(features_dir, video_id + ".npz")
            if len(feature_names) == 1:
                expected += " (or .npy)"
            raise cli.MissingInputError(
                f"{labels_csv}:{line_no}: video {video_id!r} has no feature "
                f"file; expected {expected}")
        paths.append(path)

    with sharded_writer.ShardedWriter(
        output_dir, prefix, num_shards, num_records=len(rows),
        name_template=sharded_writer.YT8M_NAME_TEMPLATE,
        resume=resume) as writer:
        for (video_id, labels, _), path in tqdm(
            zip(rows, paths), total=len(rows), desc=f"{prefix} videos",
            unit="video", disable=not progress, file=sys.stderr):
            if not writer.needs_next():
                writer.skip()
                continue
            frames = load_features(path, feature_names, feature_sizes)
            if level == "frame":
                example = make_frame_example(
                    video_id, labels, frames, id_key=id_key)
            else:
                example = make_video_example(
                    video_id, labels, video_level_features(frames),
                    id_key=id_key)
            writer.write(serialize(example))
    return dict(zip(writer.paths, writer.counts))


# -- CLI -----------------------------------------------------------------

FLAGS = flags.FlagValues()
cli.flag_topic("input", FLAGS)
flags.DEFINE_string(
    "features_dir", None,
    "Directory with one <video_id>.npz per video (arrays named by "
    "--feature_names, each [num_frames, size]); <video_id>.npy holding one "
    "[num_frames, size] array is accepted when one feature is named.",
    flag_values=FLAGS)
flags.DEFINE_string(
    "labels_csv", None,
    "CSV with header 'video_id,labels'; labels are space-separated integer "
    "class ids and may be empty. Defines which videos are written, in order.",
    flag_values=FLAGS)
cli.flag_topic("output", FLAGS)
flags.DEFINE_string("output_dir", None, "Directory for the shards.",
                    flag_values=FLAGS)
flags.DEFINE_string("prefix", "train",
                    "Shard name prefix: <prefix>0000.tfrecord, ...",
                    flag_values=FLAGS)
flags.DEFINE_integer("num_shards", 1, "Number of shards.", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_enum("level", "frame", ["frame", "video"],
                  "frame: SequenceExample with quantised per-frame features; "
                  "video: Example with mean_<feature> float lists.",
                  flag_values=FLAGS)
flags.DEFINE_enum("id_key", F.YT8M_ID_KEY, list(F.YT8M_ID_KEYS),
                  "Context key of the video id: 'id' (2018+) or 'video_id' "
                  "(2017 release).", flag_values=FLAGS)
flags.DEFINE_string("feature_names", f"{F.YT8M_RGB},{F.YT8M_AUDIO}",
                    "Comma-separated feature (array) names.",
                    flag_values=FLAGS)
flags.DEFINE_string(
    "feature_sizes",
    f"{F.YT8M_FEATURE_SIZES[F.YT8M_RGB]},{F.YT8M_FEATURE_SIZES[F.YT8M_AUDIO]}",
    "Comma-separated feature dimensions, one per --feature_names.",
    flag_values=FLAGS)
flags.DEFINE_integer("num_classes", F.YT8M_NUM_CLASSES,
                     "Labels must be < num_classes (2017 release: "
                     f"{F.YT8M_NUM_CLASSES_2017}).", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_boolean("resume", False,
                     "Keep shards that already exist under their final names "
                     "(from an earlier run over the same inputs) and write "
                     "only the missing ones.", flag_values=FLAGS)
flags.DEFINE_boolean("progress", True, "Show a progress bar.",
                     flag_values=FLAGS)
for _name in ("features_dir", "labels_csv", "output_dir"):
    flags.mark_flag_as_required(_name, flag_values=FLAGS)


@cli.handle_errors
def main(argv):
    """Converts per the module FLAGS (which must be parsed)."""
    if len(argv) > 1:
        raise cli.InputError(f"unexpected arguments {argv[1:]}")
    counts = convert_directory(
        FLAGS.features_dir, FLAGS.labels_csv, FLAGS.output_dir,
        prefix=FLAGS.prefix, num_shards=FLAGS.num_shards, level=FLAGS.level,
        id_key=FLAGS.id_key,
        feature_names=cli.parse_name_list(FLAGS.feature_names),
        feature_sizes=cli.parse_int_list(FLAGS.feature_sizes, "feature_sizes"),
        num_classes=FLAGS.num_classes, resume=FLAGS.resume,
        progress=FLAGS.progress)
    print(f"Wrote {sum(counts.values())} {FLAGS.level}-level records to "
          f"{len(counts)} shards in {FLAGS.output_dir}")
    return 0


def run():
    """Console-script entry point."""
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
