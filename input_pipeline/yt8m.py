"""tf.data readers for the official YouTube-8M shards.

Frame-level records stay uint8 through tf.data (parse + decode only); the
model dequantises on the accelerator. Parsing is batched
(``tf.io.parse_sequence_example`` on a whole batch of serialized records),
which is several times faster than one record at a time.

Element structure:
* training: ``(inputs, labels)`` with inputs ``{"frames": uint8 [B, T, D],
  "num_frames": int32 [B]}`` (frame level) or ``{"features": float32 [B, D]}``
  (video level) and labels bool [B, num_classes];
* evaluation / inference: ``(inputs, labels, meta)`` with meta
  ``{"id": uint8 [B, 64] (records.encode_ids), "mask": bool [B]}``;
  batches are padded to the full
  batch size and ``mask`` marks the real rows, so under MirroredStrategy
  every replica gets an equal share and every record is seen exactly once,
  in a fixed order (up to 8 shards at a time, interleaved record by record).

The readers cost about as much CPU per record as the bare read + parse
(bench/RESULTS.md): the integrity accounting of each shard runs once per
block of records (``records.checked_records_blockwise``), shards are read
in parallel (also in the deterministic evaluation order), and each batch
is parsed and finished (labels dropped or padding added) in one function
call.
"""

import dataclasses
from typing import Optional, Tuple

import tensorflow as tf

from input_pipeline import features as keys
from input_pipeline import records
from vidcore.errors import DataError

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class ReaderConfig:
    """What to read and how to shape it.

    Attributes:
        frame_features: frame-level SequenceExamples (else video-level Examples).
        feature_names: features to read, concatenated in this order.
        feature_sizes: their sizes (values per frame / per video).
        num_classes: label ids must be < num_classes.
        max_frames: frames kept per video (longer videos are truncated).
        id_key: 'id' (2018+) or 'video_id' (2017); None detects it.
        segment_labels: read the 2019 segment-rated context features.
    """

    frame_features: bool = True
    feature_names: Tuple[str, ...] = (keys.YT8M_RGB, keys.YT8M_AUDIO)
    feature_sizes: Tuple[int, ...] = (1024, 128)
    num_classes: int = keys.YT8M_NUM_CLASSES
    max_frames: int = keys.YT8M_MAX_FRAMES
    id_key: Optional[str] = None
    segment_labels: bool = False

    def __post_init__(self):
        self.feature_names = tuple(self.feature_names)
        self.feature_sizes = tuple(int(s) for s in self.feature_sizes)
        if len(self.feature_names) != len(self.feature_sizes):
            raise ValueError(
                f"--feature_names has {len(self.feature_names)} entries "
                f"({','.join(self.feature_names)}) but --feature_sizes has "
                f"{len(self.feature_sizes)}")


# --------------------------------------------------------------------------
# Schema detection: read the first record in Python and explain mismatches.
# --------------------------------------------------------------------------

def _first_record(path):
    for raw in tf.data.TFRecordDataset(path).take(1):
        return raw.numpy()
    return None


def _describe_features(feature_map):
    parts = []
    for name, feat in sorted(feature_map.items()):
        kind = feat.WhichOneof("kind")
        n = len(getattr(feat, kind).value) if kind else 0
        parts.append(f"{name}({kind}[{n}])")
    return ", ".join(parts) or "none"


def detect_schema(files, cfg):
    """Checks the first record of the first non-empty shard against ``cfg``.

    Returns:
        The id key in use ('id' or 'video_id').

    Raises:
        DataError: naming the shard and the mismatch (record kind, id key,
            feature names or sizes, segment fields).
    """
    path, raw = None, None
    for path in files:
        try:
            raw = _first_record(path)
        except tf.errors.OpError as e:
            raise DataError(f"cannot read TFRecord shard {path}: "
                            f"{e.message}") from None
        if raw is not None:
            break
    if raw is None:
        raise DataError(f"all {len(files)} shard(s) are empty, e.g. {path}")
    seq = tf.train.SequenceExample.FromString(raw)
    context = seq.context.feature
    feature_lists = seq.feature_lists.feature_list
    is_frame = len(feature_lists) > 0

    if cfg.frame_features and not is_frame:
        raise DataError(
            f"{path} holds video-level tf.train.Example records (features: "
            f"{_describe_features(context)}) but --frame_features=True; use "
            f"--frame_features=False with --feature_names=mean_rgb,mean_audio")
    if not cfg.frame_features and is_frame:
        raise DataError(
            f"{path} holds frame-level tf.train.SequenceExample records "
            f"(feature lists: {', '.join(sorted(feature_lists))}) but "
            f"--frame_features=False; use --frame_features=True with a "
            f"frame-level model")

    present = [k for k in keys.YT8M_ID_KEYS if k in context]
    if cfg.id_key:
        if cfg.id_key not in context:
            raise DataError(f"{path}: the id key {cfg.id_key!r} is missing; "
                            f"the record has {_describe_features(context)}")
        id_key = cfg.id_key
    elif present:
        id_key = present[0]
    else:
        raise DataError(f"{path}: no video id ('id' in 2018+ data, "
                        f"'video_id' in 2017 data); the record has "
                        f"{_describe_features(context)}")

    for name, size in zip(cfg.feature_names, cfg.feature_sizes):
        if is_frame:
            if name not in feature_lists:
                raise DataError(
                    f"{path}: no feature list {name!r} (--feature_names); "
                    f"the record has {', '.join(sorted(feature_lists))}")
            frames = feature_lists[name].feature
            if frames:
                got = len(frames[0].bytes_list.value[0]) if frames[
                    0].bytes_list.value else 0
                if got != size:
                    raise DataError(
                        f"{path}: feature {name!r} has {got} values per "
                        f"frame but --feature_sizes says {size}")
        else:
            if name not in context:
                raise DataError(
                    f"{path}: no feature {name!r} (--feature_names); the "
                    f"record has {_describe_features(context)}")
            got = len(context[name].float_list.value)
            if got != size:
                raise DataError(f"{path}: feature {name!r} has {got} values "
                                f"but --feature_sizes says {size}")
    if cfg.segment_labels:
        missing = [k for k in (keys.YT8M_SEGMENT_START_TIMES,)
                   if k not in context]
        if missing:
            raise DataError(
                f"{path}: --segment_labels needs the 2019 segment-rated "
                f"shards; the record has no {missing[0]!r}")
    return id_key


# --------------------------------------------------------------------------
# Parsing (batched). Every check names the offending record.
# --------------------------------------------------------------------------

def _first_bad(names, bad_rows):
    return tf.gather(names, tf.where(bad_rows)[:, 0])[:3]


def _dense_labels(sparse_labels, names, num_classes, label_key="labels"):
    """VarLen int64 labels -> bool multi-hot [B, num_classes], range-checked."""
    values = sparse_labels.values
    rows = sparse_labels.indices[:, 0]
    bad = tf.logical_or(values < 0, values >= num_classes)
    bad_rows = tf.math.unsorted_segment_max(
        tf.cast(bad, tf.int32), rows, tf.shape(names, tf.int64)[0]) > 0
    check = tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(bad)),
        [f"{label_key} id outside [0, --num_classes={num_classes}) in",
         _first_bad(names, bad_rows), "ids:", tf.boolean_mask(values, bad),
         "(2017 data has 4716 classes, 2018+ data 3862)"], summarize=5)
    with tf.control_dependencies([check]):
        indices = tf.stack([rows, values], axis=1)
        dense = tf.scatter_nd(indices, tf.ones_like(values, tf.int32),
                              [tf.shape(names, tf.int64)[0], num_classes])
    return dense > 0


def _frames_from_bytes(frame_bytes, lengths, size, name, names, max_frames):
    """bytes [B, T] -> uint8 [B, max_frames, size], byte-size checked."""
    t = tf.shape(frame_bytes)[1]
    valid = tf.sequence_mask(lengths, t)
    got = tf.strings.length(frame_bytes)
    bad = tf.logical_and(valid, tf.not_equal(got, size))
    check = tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(bad)),
        [f"feature {name!r}: frames of", _first_bad(names,
                                                    tf.reduce_any(bad, 1)),
         "have", tf.boolean_mask(got, bad), f"bytes, expected {size} "
         "(check --feature_names / --feature_sizes)"], summarize=3)
    with tf.control_dependencies([check]):
        frame_bytes = frame_bytes[:, :max_frames]
        decoded = tf.io.decode_raw(frame_bytes, tf.uint8,
                                   fixed_length=size)  # [B, t', size]
    pad = tf.maximum(max_frames - tf.shape(decoded)[1], 0)
    decoded = tf.pad(decoded, [[0, 0], [0, pad], [0, 0]])
    return tf.ensure_shape(decoded, [None, max_frames, size])


def parse_frame_batch(cfg, id_key, serialized, names):
    """Parses a batch of frame-level SequenceExamples.

    Args:
        cfg: ReaderConfig.
        id_key: 'id' or 'video_id'.
        serialized: string [B].
        names: string [B], used in error messages.

    Returns:
        (inputs, labels, extra): inputs {"frames" uint8 [B, max_frames, D],
        "num_frames" int32 [B]}, labels bool [B, V], extra {"id": string
        [B]} plus the raw segment fields when cfg.segment_labels.
    """
    context_spec = {id_key: tf.io.FixedLenFeature([], tf.string),
                    keys.YT8M_LABELS_KEY: tf.io.VarLenFeature(tf.int64)}
    if cfg.segment_labels:
        context_spec.update({
            keys.YT8M_SEGMENT_LABELS: tf.io.VarLenFeature(tf.int64),
            keys.YT8M_SEGMENT_START_TIMES: tf.io.VarLenFeature(tf.int64),
            keys.YT8M_SEGMENT_SCORES: tf.io.VarLenFeature(tf.float32)})
    sequence_spec = {name: tf.io.FixedLenSequenceFeature([], tf.string)
                     for name in cfg.feature_names}
    context, sequences, lengths = tf.io.parse_sequence_example(
        serialized, context_features=context_spec,
        sequence_features=sequence_spec, example_names=names)
    parts = [_frames_from_bytes(sequences[name], lengths[name], size, name,
                                names, cfg.max_frames)
             for name, size in zip(cfg.feature_names, cfg.feature_sizes)]
    frames = tf.concat(parts, axis=-1) if len(parts) > 1 else parts[0]
    num_frames = tf.minimum(tf.cast(lengths[cfg.feature_names[0]], tf.int32),
                            cfg.max_frames)
    labels = _dense_labels(context[keys.YT8M_LABELS_KEY], names,
                           cfg.num_classes)
    extra = {"id": context[id_key]}
    if cfg.segment_labels:
        for k in (keys.YT8M_SEGMENT_LABELS, keys.YT8M_SEGMENT_START_TIMES,
                  keys.YT8M_SEGMENT_SCORES):
            extra[k] = context[k]
    return {"frames": frames, "num_frames": num_frames}, labels, extra


def parse_video_batch(cfg, id_key, serialized, names):
    """Parses a batch of video-level Examples (same outputs, inputs
    {"features": float32 [B, D]})."""
    spec = {id_key: tf.io.FixedLenFeature([], tf.string),
            keys.YT8M_LABELS_KEY: tf.io.VarLenFeature(tf.int64)}
    for name, size in zip(cfg.feature_names, cfg.feature_sizes):
        spec[name] = tf.io.FixedLenFeature([size], tf.float32)
    parsed = tf.io.parse_example(serialized, spec, example_names=names)
    feats = [parsed[name] for name in cfg.feature_names]
    features = tf.concat(feats, axis=-1) if len(feats) > 1 else feats[0]
    labels = _dense_labels(parsed[keys.YT8M_LABELS_KEY], names,
                           cfg.num_classes)
    return {"features": features}, labels, {"id": parsed[id_key]}


def parse_batch(cfg, id_key, serialized, names):
    fn = parse_frame_batch if cfg.frame_features else parse_video_batch
    return fn(cfg, id_key, serialized, names)


def _parse_one(cfg, id_key):
    """Single-record parse with static shapes (for skip_corrupt streams)."""
    def parse(serialized, name):
        inputs, labels, extra = parse_batch(cfg, id_key, serialized[None],
                                            name[None])
        squeeze = lambda t: t[0]  # noqa: E731
        return (tf.nest.map_structure(squeeze, inputs), labels[0],
                {"id": extra["id"][0]})
    return parse


# --------------------------------------------------------------------------
# Datasets.
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Source:
    """Shards to read, their sizes and the schema found in them."""

    files: list
    sizes: list
    id_key: str

    @classmethod
    def from_pattern(cls, pattern, cfg, flag_name="data pattern"):
        files = records.list_files(pattern, flag_name)
        id_key = detect_schema(files, cfg)
        return cls(files, records.file_sizes(files), id_key)

    def only(self, files):
        """The same source restricted to ``files`` (a subset, e.g. one
        evaluation worker's block)."""
        size = dict(zip(self.files, self.sizes))
        return Source(list(files), [size[f] for f in files], self.id_key)


def _record_stream(source, cfg, files_ds, deterministic, counter):
    """Interleaved per-shard streams: raw (record, name) pairs in strict
    mode, or already-parsed single records with ``counter`` (skip mode)."""
    size_table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(source.files), tf.constant(source.sizes, tf.int64)),
        default_value=-1)
    parse_one = _parse_one(cfg, source.id_key)

    def per_file(path):
        size = size_table.lookup(path)
        if counter is None:
            return records.checked_records_blockwise(path, size)
        return records.skipping_records(path, size, parse_one, counter)

    return files_ds.interleave(
        per_file, cycle_length=min(len(source.files), 8),
        num_parallel_calls=AUTOTUNE, deterministic=deterministic)


def _batched(stream, cfg, id_key, batch_size, drop_remainder, counter,
             finish):
    """Batches a record stream and maps each batch, in one function, to
    ``finish(inputs, labels, extra)`` (parse included in strict mode)."""
    stream = stream.batch(batch_size, drop_remainder=drop_remainder)
    if counter is None:
        return stream.map(
            lambda s, n: finish(*parse_batch(cfg, id_key, s, n)),
            num_parallel_calls=AUTOTUNE)
    return stream.map(finish, num_parallel_calls=AUTOTUNE)


def training_dataset(source, cfg, batch_size, input_context=None, seed=0,
                     shuffle_buffer=1024, num_epochs=None, counter=None):
    """Shuffled, repeated training batches of (inputs, labels).

    Args:
        source: Source.
        cfg: ReaderConfig.
        batch_size: per-replica batch size.
        input_context: tf.distribute.InputContext (per-worker sharding).
        seed: shuffle seed (the trainer passes its start step).
        shuffle_buffer: records in the shuffle buffer.
        num_epochs: passes over the data (None: forever).
        counter: CorruptionCounter to skip and count bad records (None:
            a bad record or shard is an error naming it).
    """
    files = records.training_file_dataset(source.files, input_context, seed,
                                          num_epochs)
    stream = _record_stream(source, cfg, files, deterministic=False,
                            counter=counter)
    stream = stream.shuffle(records.shuffle_buffer_size(
        source.files, shuffle_buffer, input_context), seed=seed)
    ds = _batched(stream, cfg, source.id_key, batch_size, True, counter,
                  lambda inputs, labels, extra: (inputs, labels))
    return ds.prefetch(AUTOTUNE)


def evaluation_dataset(source, cfg, batch_size, counter=None):
    """Every record exactly once, in a fixed order (a deterministic
    round-robin over up to 8 shards at a time), as padded batches of
    (inputs, labels, meta) — see the module docstring."""
    files = tf.data.Dataset.from_tensor_slices(source.files)
    stream = _record_stream(source, cfg, files, deterministic=True,
                            counter=counter)

    def pad(inputs, labels, extra):
        (inputs, labels, ids), mask = records.pad_batch(
            (inputs, labels, records.encode_ids(extra["id"])), batch_size)
        return inputs, labels, {"id": ids, "mask": mask}

    ds = _batched(stream, cfg, source.id_key, batch_size, False, counter, pad)
    return ds.prefetch(AUTOTUNE)


def bare_parse_dataset(source, cfg, batch_size, num_epochs=1):
    """Read + batched parse + decode to uint8, nothing else (the reader's
    speed limit, measured by bench/bench_reader.py).

    Args:
        source, cfg, batch_size: as for :func:`training_dataset`.
        num_epochs: passes over the shards in one continuous stream
            (None: forever), so that a measurement sees no restarts.
    """
    files = tf.data.Dataset.from_tensor_slices(source.files)
    ds = files.repeat(num_epochs).interleave(
        lambda f: tf.data.TFRecordDataset(f),
        cycle_length=min(len(source.files), 8), num_parallel_calls=AUTOTUNE,
        deterministic=False)
    ds = ds.batch(batch_size)
    names = tf.fill([batch_size], "")

    def parse(serialized):
        n = tf.shape(serialized)[0]
        return parse_batch(cfg, source.id_key, serialized, names[:n])[:2]

    return ds.map(parse, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def _video_segments(segment_size, rated_only):
    """One video's (inputs, labels, extra) -> a dataset of its segments.

    Rated mode: the distinct rated start times, labels = the rated scores
    (> 0 positive) and ``rated`` marking the rated classes. Otherwise every
    ``segment_size``-frame segment of the video, without labels.
    """
    def split(inputs, labels, extra):
        frames, num_frames = inputs["frames"], inputs["num_frames"]
        num_classes = labels.shape[-1]
        if rated_only:
            times = extra[keys.YT8M_SEGMENT_START_TIMES].values
            starts, which = tf.unique(tf.cast(times, tf.int32))
        else:
            starts = tf.range(0, tf.maximum(num_frames, 1), segment_size)
        n = tf.shape(starts)[0]
        index = starts[:, None] + tf.range(segment_size)[None, :]  # [S, size]
        index = tf.minimum(index, tf.shape(frames)[0] - 1)
        seg_frames = tf.gather(frames, index)  # [S, size, D]
        seg_lengths = tf.clip_by_value(num_frames - starts, 0, segment_size)
        ids = tf.strings.join([extra["id"], ":", tf.strings.as_string(starts)])
        if rated_only:
            cls = tf.cast(extra[keys.YT8M_SEGMENT_LABELS].values, tf.int32)
            score = extra[keys.YT8M_SEGMENT_SCORES].values
            at = tf.stack([tf.cast(which, tf.int32), cls], axis=1)
            seg_labels = tf.scatter_nd(at, tf.cast(score > 0, tf.int32),
                                       [n, num_classes]) > 0
            rated = tf.scatter_nd(at, tf.ones_like(cls), [n, num_classes]) > 0
        else:
            seg_labels = tf.zeros([n, num_classes], tf.bool)
            rated = seg_labels
        return tf.data.Dataset.from_tensor_slices((
            {"frames": seg_frames, "num_frames": seg_lengths}, seg_labels,
            {"id": ids, "rated": rated}))
    return split


def segment_dataset(source, cfg, batch_size, rated_only=True):
    """2019 segment task: every video split into ``5``-frame segments.

    Args:
        source: Source (validate shards with segment ratings for
            ``rated_only``; any frame-level shards otherwise).
        cfg: ReaderConfig (``segment_labels`` must equal ``rated_only``).
        batch_size: segments per (padded) batch.
        rated_only: only the rated segments, with their labels.

    Returns:
        Padded batches of (inputs, labels, meta) with meta {"id" = "vid:start",
        "mask", "rated" bool [B, V]}; inputs have ``5`` frames per segment
        (build the model with max_frames=5).
    """
    files = tf.data.Dataset.from_tensor_slices(source.files)
    stream = _record_stream(source, cfg, files, deterministic=True,
                            counter=None)
    videos = _batched(stream, cfg, source.id_key, 32, False, None,
                      lambda *parsed: parsed).unbatch()
    segs = videos.flat_map(_video_segments(keys.YT8M_SEGMENT_SIZE,
                                           rated_only))
    segs = segs.batch(batch_size)

    def pad(inputs, labels, extra):
        extra = {**extra, "id": records.encode_ids(extra["id"])}
        (inputs, labels, extra), mask = records.pad_batch(
            (inputs, labels, extra), batch_size)
        return inputs, labels, {**extra, "mask": mask}

    return segs.map(pad, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
