"""tf.data readers for the HowTo100M text-video embedding.

Two record kinds (layouts in ``input_pipeline.features``):

* **videos** (HowTo100M pre-training): one SequenceExample per video with
  per-frame 2D/3D features and the video's captions. Training draws
  ``n_pair`` clips per video (HowTo100M's sampler, vectorised in TF):

  1. draw ``n_pair`` caption indices uniformly, with replacement;
  2. grow each caption [start, end] by appending a neighbouring caption
     until the span lasts ``min_time`` seconds and holds ``min_words``
     tokens: with neighbours on both sides it takes the one that gives the
     shorter span (the previous one on a tie; when ``min_time`` is 0, the
     previous one when the next has no more tokens); at the first or last
     caption it takes the only neighbour; it stops when there is none;
  3. the clip's words are the captions' words in the order they were added
     (so truncation to ``max_words`` keeps the first-drawn caption's words);
  4. each stream's frames ``[int(start * rate), int(end * rate) + 1)`` are
     max-pooled and L2-normalised (zeros when the span holds no frame), and
     the streams are concatenated.

* **clips** (MSR-VTT, YouCook2, LSMDC): one Example per clip with its pooled
  2D/3D features (each L2-normalised here, then concatenated) and its
  caption(s). Evaluation uses the first caption; fine-tuning draws one of
  the clip's captions per step (the MSR-VTT training loader).

Text becomes word ids (tokens of ``[\\w']+``, out-of-vocabulary words
dropped, truncated / zero-padded to ``max_words``) and then word vectors, all
inside tf.data via ``vidcore.text.TextEncoder``. Batches are
``({"video": [N, feature_dim], "text": [N, max_words, we_dim]}, labels)``
with the N = videos x n_pair clips of one video contiguous.
"""

import dataclasses
from typing import Tuple

import tensorflow as tf

from input_pipeline import features as keys
from input_pipeline import records
from vidcore import text as text_lib
from vidcore.errors import DataError

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class ClipConfig:
    """How clips and sentences are made.

    Attributes:
        streams: feature streams to use, in concatenation order.
        dims: feature size of each stream.
        n_pair: clips drawn per video per step (videos records only).
        min_time: minimum clip duration in seconds (videos records only).
        min_words: minimum clip tokens (videos records only).
        max_words: words per sentence.
    """

    streams: Tuple[str, ...] = keys.HOWTO_STREAMS
    dims: Tuple[int, ...] = (2048, 2048)
    n_pair: int = 1
    min_time: float = 5.0
    min_words: int = 0
    max_words: int = 20

    @property
    def feature_dim(self):
        return int(sum(self.dims))


# --------------------------------------------------------------------------- #
# Parsing.
# --------------------------------------------------------------------------- #
def parse_video(serialized, cfg):
    """Parses one videos-record.

    Args:
        serialized: scalar tf.string.
        cfg: ClipConfig (streams and their expected sizes).

    Returns:
        dict: "video_id" scalar string, "start"/"end" float32 [C], "text"
        string [C], and per stream s: "frames/s" float16 [T_s, dim_s],
        "rate/s" float32 scalar.
    """
    context = {
        keys.HOWTO_VIDEO_ID: tf.io.FixedLenFeature([], tf.string),
        keys.HOWTO_CAPTION_START: tf.io.VarLenFeature(tf.float32),
        keys.HOWTO_CAPTION_END: tf.io.VarLenFeature(tf.float32),
        keys.HOWTO_CAPTION_TEXT: tf.io.VarLenFeature(tf.string),
    }
    sequence = {}
    for s in cfg.streams:
        context[keys.howto_rate_key(s)] = tf.io.FixedLenFeature([], tf.float32)
        context[keys.howto_dim_key(s)] = tf.io.FixedLenFeature([], tf.int64)
        sequence[keys.howto_frames_key(s)] = tf.io.FixedLenSequenceFeature(
            [], tf.string)
    ctx, seq = tf.io.parse_single_sequence_example(
        serialized, context_features=context, sequence_features=sequence)
    video_id = ctx[keys.HOWTO_VIDEO_ID]
    out = {
        "video_id": video_id,
        "start": tf.sparse.to_dense(ctx[keys.HOWTO_CAPTION_START]),
        "end": tf.sparse.to_dense(ctx[keys.HOWTO_CAPTION_END]),
        "text": tf.sparse.to_dense(ctx[keys.HOWTO_CAPTION_TEXT]),
    }
    checks = [tf.debugging.assert_positive(
        tf.size(out["start"]), message="video has no captions")]
    for s, dim in zip(cfg.streams, cfg.dims):
        checks.append(tf.debugging.assert_equal(
            ctx[keys.howto_dim_key(s)], tf.constant(dim, tf.int64),
            message=f"stream {s!r} feature size differs from the expected "
                    f"{dim} (--feature_dim / stream dims)"))
    with tf.control_dependencies(checks):
        for s, dim in zip(cfg.streams, cfg.dims):
            raw = tf.io.decode_raw(seq[keys.howto_frames_key(s)], tf.float16,
                                   little_endian=True)
            # [T, dim] float16: kept in half precision until pooled (the
            # max of float16 values is exact; pool_spans casts the result).
            out[f"frames/{s}"] = tf.reshape(raw, [-1, dim])
            out[f"rate/{s}"] = ctx[keys.howto_rate_key(s)]
    return out


def parse_clip(serialized, cfg):
    """Parses one clips-record.

    Returns:
        dict: "clip_id", "video_id" scalar strings, "text" string [C >= 1],
        "video" float32 [feature_dim] (each stream L2-normalised).
    """
    features = {
        keys.HOWTO_CLIP_ID: tf.io.FixedLenFeature([], tf.string),
        keys.HOWTO_VIDEO_ID: tf.io.FixedLenFeature([], tf.string,
                                                   default_value=""),
        keys.HOWTO_CAPTION_TEXT: tf.io.VarLenFeature(tf.string),
    }
    for s, dim in zip(cfg.streams, cfg.dims):
        features[keys.howto_pooled_key(s)] = tf.io.FixedLenFeature(
            [dim], tf.float32)
    ex = tf.io.parse_single_example(serialized, features)
    texts = tf.sparse.to_dense(ex[keys.HOWTO_CAPTION_TEXT])
    check = tf.debugging.assert_positive(tf.size(texts),
                                         message="clip has no caption")
    with tf.control_dependencies([check]):
        video = tf.concat([tf.math.l2_normalize(ex[keys.howto_pooled_key(s)])
                           for s in cfg.streams], axis=0)
    return {"clip_id": ex[keys.HOWTO_CLIP_ID],
            "video_id": ex[keys.HOWTO_VIDEO_ID], "text": texts,
            "video": video}


# --------------------------------------------------------------------------- #
# Clip sampling (HowTo100M's sampler, vectorised over the n_pair draws).
# --------------------------------------------------------------------------- #
def grow_spans(starts, ends, token_counts, first, min_time, min_words):
    """Grows each drawn caption into a span of neighbouring captions.

    Args:
        starts, ends: float32 [C] caption times.
        token_counts: int [C] tokens per caption (out-of-vocabulary included,
            as the original counts words before the vocabulary filter).
        first: int32 [P] drawn caption indices.
        min_time: minimum span duration (seconds).
        min_words: minimum span tokens.

    Returns:
        (start_index [P], end_index [P], order): ``order`` is an int32
        RaggedTensor [P, None] of caption indices in the order their words
        are concatenated (the drawn caption first).
    """
    num = tf.size(starts)
    token_counts = tf.cast(token_counts, tf.int32)
    last = num - 1

    def needs_more(lo, hi, words):
        short = ((tf.gather(ends, hi) - tf.gather(starts, lo)) < min_time) | (
            words < min_words)
        return short & ((lo > 0) | (hi < last))

    def cond(lo, hi, words, added):
        return tf.reduce_any(needs_more(lo, hi, words))

    def body(lo, hi, words, added):
        active = needs_more(lo, hi, words)
        has_prev, has_next = lo > 0, hi < last
        prev, nxt = tf.maximum(lo - 1, 0), tf.minimum(hi + 1, last)
        if min_time > 0:
            d_next = tf.gather(ends, nxt) - tf.gather(starts, lo)
            d_prev = tf.gather(ends, hi) - tf.gather(starts, prev)
            prefer_prev = d_prev <= d_next
        else:
            prefer_prev = (tf.gather(token_counts, nxt)
                           <= tf.gather(token_counts, prev))
        go_prev = tf.where(has_prev & has_next, prefer_prev, has_prev)
        new = tf.where(go_prev, prev, nxt)
        lo = tf.where(active & go_prev, prev, lo)
        hi = tf.where(active & ~go_prev, nxt, hi)
        words = words + tf.where(active, tf.gather(token_counts, new), 0)
        added = added.write(added.size(), tf.where(active, new, -1))
        return lo, hi, words, added

    added = tf.TensorArray(tf.int32, size=0, dynamic_size=True,
                           element_shape=first.shape)
    lo, hi, _, added = tf.while_loop(
        cond, body, (first, first, tf.gather(token_counts, first), added),
        maximum_iterations=num)
    steps = tf.reshape(added.stack(), [-1, tf.size(first)])  # [S, P]
    sequence = tf.transpose(tf.concat([first[None, :], steps], axis=0))
    order = tf.ragged.boolean_mask(sequence, sequence >= 0)  # [P, None]
    return lo, hi, order


def pool_spans(frames, rate, span_start, span_end):
    """Max-pools frames ``[int(start*rate), int(end*rate)+1)`` per span.

    Args:
        frames: [T, dim] float16 or float32.
        rate: frames per second (scalar).
        span_start, span_end: float32 [P] seconds.

    Returns:
        float32 [P, dim]: L2-normalised maxima; zeros for spans without
        frames (as the original leaves them).
    """
    num_frames = tf.shape(frames)[0]
    # int() truncation of non-negative times; clamped like Python slicing.
    lo = tf.clip_by_value(tf.cast(span_start * rate, tf.int32), 0, num_frames)
    hi = tf.clip_by_value(tf.cast(span_end * rate, tf.int32) + 1, lo,
                          num_frames)
    index = tf.ragged.range(lo, hi)  # [P, None] frame indices
    gathered = tf.gather(frames, index.flat_values)  # [K, dim]
    pooled = tf.cast(tf.math.unsorted_segment_max(
        gathered, index.value_rowids(), num_segments=tf.size(lo)), tf.float32)
    nonempty = (hi > lo)[:, None]
    return tf.where(nonempty, tf.math.l2_normalize(
        tf.where(nonempty, pooled, 0.0), axis=-1), 0.0)


def sample_video_clips(video, seed, cfg, encoder):
    """Draws cfg.n_pair (clip, sentence) pairs from one parsed video.

    Args:
        video: output of :func:`parse_video`.
        seed: int64 [2] stateless seed.
        cfg: ClipConfig.
        encoder: vidcore.text.TextEncoder.

    Returns:
        dict "video" float32 [P, feature_dim], "ids" int32 [P, max_words].
    """
    starts, ends, texts = video["start"], video["end"], video["text"]
    token_counts = text_lib.tokenize(texts).row_lengths()
    caption_ids = encoder.ragged_ids(texts)  # [C, None], OOV dropped
    first = tf.random.stateless_uniform(
        [cfg.n_pair], seed=seed, minval=0, maxval=tf.size(starts),
        dtype=tf.int32)
    lo, hi, order = grow_spans(starts, ends, token_counts, first,
                               cfg.min_time, cfg.min_words)
    # [P, None captions] -> [P, None captions, None words] -> [P, None words]
    words = tf.RaggedTensor.from_row_lengths(
        tf.gather(caption_ids, order.flat_values), order.row_lengths())
    ids = encoder.pad_ids(words.merge_dims(1, 2), cfg.max_words)
    span_start, span_end = tf.gather(starts, lo), tf.gather(ends, hi)
    pooled = [pool_spans(video[f"frames/{s}"], video[f"rate/{s}"],
                         span_start, span_end) for s in cfg.streams]
    return {"video": tf.concat(pooled, axis=-1), "ids": ids}


def sample_clip_caption(clip, seed, cfg, encoder):
    """One (clip, sentence) pair from a clips-record: a random caption of the
    clip (MSR-VTT fine-tuning draws one of its 20 sentences per epoch).

    Returns:
        dict "video" float32 [1, feature_dim], "ids" int32 [1, max_words].
    """
    pick = tf.random.stateless_uniform([], seed=seed, minval=0,
                                       maxval=tf.size(clip["text"]),
                                       dtype=tf.int32)
    ids = encoder.word_ids(clip["text"][pick][None], cfg.max_words)
    return {"video": clip["video"][None], "ids": ids}


# --------------------------------------------------------------------------- #
# Datasets.
# --------------------------------------------------------------------------- #
def _flatten_pairs(encoder):
    def flatten(batch):
        video = batch["video"]  # [B, P, F]
        ids = batch["ids"]  # [B, P, W]
        # [B, P, F] -> [B*P, F]; [B, P, W] -> [B*P, W]
        video = tf.reshape(video, [-1, video.shape[-1]])
        ids = tf.reshape(ids, [-1, ids.shape[-1]])
        features = {"video": video, "text": encoder.vectors(ids)}
        return features, tf.zeros([tf.shape(batch["video"])[0]], tf.int32)
    return flatten


def training_dataset(files, kind, cfg, encoder, batch_size,
                     input_context=None, seed=0, shuffle_buffer=1024):
    """Shuffled, repeated batches of (features, dummy labels).

    Args:
        files: shard paths.
        kind: "videos" (HowTo100M records, cfg.n_pair clips per video) or
            "clips" (one clip and one of its captions per record).
        cfg: ClipConfig.
        encoder: vidcore.text.TextEncoder.
        batch_size: videos (or clips) per replica per step.
        input_context: tf.distribute.InputContext.
        seed: shuffle / sampling seed (the trainer passes its start step).
        shuffle_buffer: records in the shuffle buffer.

    Returns:
        tf.data.Dataset of ({"video": [N, F], "text": [N, W, we_dim]},
        int32 [batch_size]) with N = batch_size * n_pair (1 for clips).
    """
    if kind not in ("videos", "clips"):
        raise ValueError(f"kind must be 'videos' or 'clips', got {kind!r}")
    paths = records.training_file_dataset(files, input_context, seed)
    ds = paths.interleave(tf.data.TFRecordDataset,
                          cycle_length=min(len(files), 16),
                          num_parallel_calls=AUTOTUNE, deterministic=False)
    ds = ds.shuffle(shuffle_buffer, seed=seed)
    ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))

    if kind == "videos":
        def make(serialized, seed_pair):
            return sample_video_clips(parse_video(serialized, cfg), seed_pair,
                                      cfg, encoder)
    else:
        def make(serialized, seed_pair):
            return sample_clip_caption(parse_clip(serialized, cfg), seed_pair,
                                       cfg, encoder)

    ds = ds.map(make, num_parallel_calls=AUTOTUNE, deterministic=False)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(_flatten_pairs(encoder), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def evaluation_dataset(files, cfg, encoder, batch_size):
    """Every clip once, in file order: ({"video", "text"}, mask) padded to
    full batches (the mask marks real clips). The first caption of each clip
    is the query."""
    ds = tf.data.Dataset.from_tensor_slices(list(files)).flat_map(
        tf.data.TFRecordDataset)

    def make(serialized):
        clip = parse_clip(serialized, cfg)
        ids = encoder.word_ids(clip["text"][:1], cfg.max_words)[0]
        return clip["video"], ids

    ds = ds.map(make, num_parallel_calls=AUTOTUNE).batch(batch_size)

    def pad(video, ids):
        (video, ids), mask = records.pad_batch((video, ids), batch_size)
        return {"video": video, "text": encoder.vectors(ids)}, mask

    return ds.map(pad, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def detect_kind(files):
    """"videos" or "clips", from the first record of the first shard.

    Raises:
        DataError: naming the shard, when it holds neither kind.
    """
    for path in files:
        for record in tf.data.TFRecordDataset(path).take(1):
            raw = record.numpy()
            example = tf.train.SequenceExample.FromString(raw)
            if keys.HOWTO_CAPTION_START in example.context.feature:
                return "videos"
            plain = tf.train.Example.FromString(raw)
            if keys.HOWTO_CLIP_ID in plain.features.feature:
                return "clips"
            raise DataError(
                f"{path}: the first record is neither a HowTo100M video "
                f"record (context {keys.HOWTO_CAPTION_START!r}) nor a clip "
                f"record ({keys.HOWTO_CLIP_ID!r}); convert the data with "
                f"tfrecord_tools.howto_writer / howto_eval_sets")
    raise DataError(f"all {len(files)} shard(s) are empty, e.g. {files[0]}")


def detect_streams(files, kind):
    """Feature streams present in the data and their sizes.

    Args:
        files: shard paths.
        kind: "videos" or "clips" (see :func:`detect_kind`).

    Returns:
        (streams tuple, dims tuple) in HOWTO_STREAMS order, read from the
        first record.

    Raises:
        DataError: naming the shard when no known stream is present.
    """
    for path in files:
        for record in tf.data.TFRecordDataset(path).take(1):
            raw = record.numpy()
            streams, dims = [], []
            if kind == "videos":
                context = tf.train.SequenceExample.FromString(raw).context
                for s in keys.HOWTO_STREAMS:
                    feature = context.feature.get(keys.howto_dim_key(s))
                    if feature is not None:
                        streams.append(s)
                        dims.append(int(feature.int64_list.value[0]))
            else:
                feats = tf.train.Example.FromString(raw).features.feature
                for s in keys.HOWTO_STREAMS:
                    feature = feats.get(keys.howto_pooled_key(s))
                    if feature is not None:
                        streams.append(s)
                        dims.append(len(feature.float_list.value))
            if not streams:
                raise DataError(f"{path}: no feature stream "
                                f"({', '.join(keys.HOWTO_STREAMS)}) in the "
                                f"first record")
            return tuple(streams), tuple(dims)
    raise DataError(f"all {len(files)} shard(s) are empty, e.g. {files[0]}")
