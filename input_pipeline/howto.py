"""tf.data readers for the HowTo100M text-video embedding.

Two record kinds (layouts in ``input_pipeline.features``):

* **videos** (HowTo100M pre-training): one SequenceExample per video with
  per-frame 2D/3D features and the video's captions. Training draws
  ``n_pair`` clips per video (HowTo100M's sampler, vectorised in TF over a
  whole batch of videos, so a step costs a few hundred ops, not a few
  hundred per video):

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
     the streams are concatenated. Frames stay float16 until pooled (the
     max is exact), and each frame is read once per batch however many
     spans overlap it (:func:`max_pool_ranges`).

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
import os
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
def _video_context_spec(cfg, caption_feature):
    """Context features of a videos-record; captions as ``caption_feature``
    (VarLenFeature for one record, RaggedFeature for a batch)."""
    context = {
        keys.HOWTO_VIDEO_ID: tf.io.FixedLenFeature([], tf.string),
        keys.HOWTO_CAPTION_START: caption_feature(tf.float32),
        keys.HOWTO_CAPTION_END: caption_feature(tf.float32),
        keys.HOWTO_CAPTION_TEXT: caption_feature(tf.string),
    }
    for s in cfg.streams:
        context[keys.howto_rate_key(s)] = tf.io.FixedLenFeature([], tf.float32)
        context[keys.howto_dim_key(s)] = tf.io.FixedLenFeature([], tf.int64)
    return context


def _video_checks(ctx, num_captions, cfg):
    """Assertions every parsed video must pass (captions, stream sizes)."""
    checks = [tf.debugging.assert_positive(
        num_captions, message="video has no captions")]
    for s, dim in zip(cfg.streams, cfg.dims):
        checks.append(tf.debugging.assert_equal(
            ctx[keys.howto_dim_key(s)], tf.constant(dim, tf.int64),
            message=f"stream {s!r} feature size differs from the expected "
                    f"{dim} (--feature_dim / stream dims)"))
    return checks


def _decode_frames(raw_frames, dim):
    """float16 [K, dim] from K little-endian frame strings (an error, not a
    silent re-cut, when a frame does not hold ``dim`` values)."""
    raw = tf.io.decode_raw(raw_frames, tf.float16, little_endian=True)
    # [K, bytes / 2] -> [K, dim]: fails when the stored size is not dim.
    return tf.reshape(raw, [tf.size(raw_frames), dim])


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
    sequence = {keys.howto_frames_key(s): tf.io.FixedLenSequenceFeature(
        [], tf.string) for s in cfg.streams}
    ctx, seq = tf.io.parse_single_sequence_example(
        serialized, context_features=_video_context_spec(
            cfg, tf.io.VarLenFeature),
        sequence_features=sequence)
    out = {
        "video_id": ctx[keys.HOWTO_VIDEO_ID],
        "start": tf.sparse.to_dense(ctx[keys.HOWTO_CAPTION_START]),
        "end": tf.sparse.to_dense(ctx[keys.HOWTO_CAPTION_END]),
        "text": tf.sparse.to_dense(ctx[keys.HOWTO_CAPTION_TEXT]),
    }
    with tf.control_dependencies(
            _video_checks(ctx, tf.size(out["start"]), cfg)):
        for s, dim in zip(cfg.streams, cfg.dims):
            # [T, dim] float16: kept in half precision until pooled (the
            # max of float16 values is exact; pooling casts the result).
            out[f"frames/{s}"] = _decode_frames(seq[keys.howto_frames_key(s)],
                                                dim)
            out[f"rate/{s}"] = ctx[keys.howto_rate_key(s)]
    return out


def parse_video_batch(serialized, cfg, extra_context=None):
    """Parses a batch of videos-records in one op.

    The frames of all videos come out as one float16 array per stream (a
    RaggedTensor over videos), so the batch is never copied video by video.

    Args:
        serialized: tf.string [B].
        cfg: ClipConfig (streams and their expected sizes).
        extra_context: optional dict key -> feature spec of further context
            features (e.g. AVLnet's spectrogram), returned under their keys.

    Returns:
        dict: "video_id" string [B]; "start"/"end" float32 and "text" string
        RaggedTensors [B, None captions]; per stream s: "frames/s" float16
        RaggedTensor [B, None frames, dim_s] and "rate/s" float32 [B].
    """
    sequence = {keys.howto_frames_key(s): tf.io.RaggedFeature(tf.string)
                for s in cfg.streams}
    context = _video_context_spec(cfg, tf.io.RaggedFeature)
    context.update(extra_context or {})
    ctx, seq, _ = tf.io.parse_sequence_example(
        serialized, context_features=context, sequence_features=sequence)
    out = {key: ctx[key] for key in (extra_context or {})}
    out.update({"video_id": ctx[keys.HOWTO_VIDEO_ID],
           "start": ctx[keys.HOWTO_CAPTION_START],
           "end": ctx[keys.HOWTO_CAPTION_END],
           "text": ctx[keys.HOWTO_CAPTION_TEXT]})
    checks = _video_checks(ctx, out["start"].row_lengths(), cfg)
    for s in cfg.streams:
        steps = seq[keys.howto_frames_key(s)].values  # [K steps, None bytes]
        checks.append(tf.debugging.assert_equal(
            steps.row_lengths(), tf.ones([], steps.row_splits.dtype),
            message=f"stream {s!r}: a frame holds more or less than one "
                    f"bytes value"))
    with tf.control_dependencies(checks):
        for s, dim in zip(cfg.streams, cfg.dims):
            frames = seq[keys.howto_frames_key(s)]  # [B, None, 1] strings
            out[f"frames/{s}"] = tf.RaggedTensor.from_row_splits(
                _decode_frames(frames.flat_values, dim),  # [K, dim]
                frames.row_splits, validate=False)  # [B, None, dim]
            out[f"rate/{s}"] = ctx[keys.howto_rate_key(s)]
    return out


def parse_clip(serialized, cfg, extra_features=None):
    """Parses one clips-record.

    Args:
        serialized: scalar tf.string.
        cfg: ClipConfig.
        extra_features: optional dict key -> feature spec of further
            features (e.g. AVLnet's spectrogram), returned under their keys.

    Returns:
        dict: "clip_id", "video_id" scalar strings, "text" string [C >= 1],
        "video" float32 [feature_dim] (each stream L2-normalised), and the
        extra features.
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
    features.update(extra_features or {})
    ex = tf.io.parse_single_example(serialized, features)
    texts = tf.sparse.to_dense(ex[keys.HOWTO_CAPTION_TEXT])
    check = tf.debugging.assert_positive(tf.size(texts),
                                         message="clip has no caption")
    with tf.control_dependencies([check]):
        video = tf.concat([tf.math.l2_normalize(ex[keys.howto_pooled_key(s)])
                           for s in cfg.streams], axis=0)
    out = {key: ex[key] for key in (extra_features or {})}
    out.update({"clip_id": ex[keys.HOWTO_CLIP_ID],
                "video_id": ex[keys.HOWTO_VIDEO_ID], "text": texts,
                "video": video})
    return out


# --------------------------------------------------------------------------- #
# Clip sampling (HowTo100M's sampler, vectorised over a batch of videos).
# --------------------------------------------------------------------------- #
def _needs_token_counts(min_time, min_words):
    """Whether span growth reads token counts (the word minimum, or the
    tie-break by tokens when there is no time minimum)."""
    return min_words > 0 or not min_time > 0


def grow_spans(starts, ends, token_counts, first, min_time, min_words,
               lowest=None, highest=None):
    """Grows each drawn caption into a span of neighbouring captions.

    All draws grow together in one loop, so captions of many videos can be
    concatenated into one array with each draw bounded by its own video.

    Args:
        starts, ends: float32 [C] caption times.
        token_counts: int [C] tokens per caption (out-of-vocabulary included,
            as the original counts words before the vocabulary filter); may
            be None when ``min_words`` is 0 and ``min_time`` > 0 (not read).
        first: int32 [P] drawn caption indices.
        min_time: minimum span duration (seconds).
        min_words: minimum span tokens.
        lowest, highest: int32 [P] first and last caption index of each
            draw's video (default: 0 and C - 1, one video).

    Returns:
        (start_index [P], end_index [P], order): ``order`` is an int32
        RaggedTensor [P, None] of caption indices in the order their words
        are concatenated (the drawn caption first).
    """
    num = tf.size(starts)
    if lowest is None:
        lowest = tf.zeros_like(first)
    if highest is None:
        highest = tf.fill(tf.shape(first), num - 1)
    count_words = _needs_token_counts(min_time, min_words)
    if count_words:
        token_counts = tf.cast(token_counts, tf.int32)
    else:
        token_counts = tf.zeros_like(starts, tf.int32)  # never read

    def needs_more(lo, hi, words):
        short = (tf.gather(ends, hi) - tf.gather(starts, lo)) < min_time
        if min_words > 0:
            short = short | (words < min_words)
        return short & ((lo > lowest) | (hi < highest))

    def cond(lo, hi, words, added):
        return tf.reduce_any(needs_more(lo, hi, words))

    def body(lo, hi, words, added):
        active = needs_more(lo, hi, words)
        has_prev, has_next = lo > lowest, hi < highest
        prev, nxt = tf.maximum(lo - 1, lowest), tf.minimum(hi + 1, highest)
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
        if min_words > 0:
            words = words + tf.where(active, tf.gather(token_counts, new), 0)
        added = added.write(added.size(), tf.where(active, new, -1))
        return lo, hi, words, added

    # Row 0 is the drawn caption, so the stack is never empty (an empty
    # list of unknown element shape cannot be stacked in a graph).
    added = tf.TensorArray(tf.int32, size=1, dynamic_size=True,
                           element_shape=first.shape).write(0, first)
    lo, hi, _, added = tf.while_loop(
        cond, body, (first, first, tf.gather(token_counts, first), added),
        maximum_iterations=num)
    sequence = tf.transpose(added.stack())  # [1 + S, P] -> [P, 1 + S]
    order = tf.ragged.boolean_mask(sequence, sequence >= 0)  # [P, None]
    return lo, hi, order


def frame_ranges(span_start, span_end, rate, num_frames, offset=0):
    """Frames ``[int(start*rate), int(end*rate)+1)`` of each span, clamped
    like Python slicing to the span's video.

    Args:
        span_start, span_end: float32 [P] seconds.
        rate: frames per second, scalar or float32 [P] (the span's video).
        num_frames: int32 frames of the span's video, scalar or [P].
        offset: int32 index of the video's first frame in a concatenation
            of videos, scalar or [P].

    Returns:
        (lo, hi) int32 [P]: the frames are rows ``lo .. hi - 1`` (none when
        lo == hi).
    """
    # int() truncation of non-negative times.
    lo = tf.clip_by_value(tf.cast(span_start * rate, tf.int32), 0, num_frames)
    hi = tf.clip_by_value(tf.cast(span_end * rate, tf.int32) + 1, lo,
                          num_frames)
    return lo + offset, hi + offset


def max_pool_ranges(frames, lo, hi):
    """Maximum over the rows ``frames[lo:hi]`` of each range, reading every
    frame once.

    The range ends cut the frames into elementary intervals; each range is
    a run of consecutive intervals. One sorted segment max gives every
    interval's maximum, a second one combines the intervals of each range,
    so overlapping ranges do not gather their frames again.

    Args:
        frames: [K, dim] (float16 or float32).
        lo, hi: int32 [P] row ranges, 0 <= lo <= hi <= K.

    Returns:
        [P, dim] of frames' dtype; zeros for empty ranges.
    """
    num_frames = tf.shape(frames)[0]
    points = tf.sort(tf.concat([tf.stack([0, num_frames]), lo, hi], axis=0))
    bounds, _ = tf.unique(points)  # [E + 1] sorted, interval e = [b_e, b_e+1)
    interval = tf.searchsorted(bounds, tf.range(num_frames),
                               side="right") - 1  # [K] sorted interval ids
    interval_max = tf.math.segment_max(frames, interval)  # [E, dim]
    parts = tf.ragged.range(tf.searchsorted(bounds, lo),
                            tf.searchsorted(bounds, hi))  # [P, None] intervals
    # Empty ranges get no row: zeros in the middle, padding at the end.
    pooled = tf.math.segment_max(tf.gather(interval_max, parts.flat_values),
                                 parts.value_rowids())  # [<= P, dim]
    return tf.pad(pooled, [[0, tf.size(lo) - tf.shape(pooled)[0]], [0, 0]])


def pool_spans(frames, rate, span_start, span_end):
    """Max-pools frames ``[int(start*rate), int(end*rate)+1)`` per span of
    one video.

    Args:
        frames: [T, dim] float16 or float32.
        rate: frames per second (scalar).
        span_start, span_end: float32 [P] seconds.

    Returns:
        float32 [P, dim]: L2-normalised maxima; zeros for spans without
        frames (as the original leaves them).
    """
    lo, hi = frame_ranges(span_start, span_end, rate, tf.shape(frames)[0])
    return _normalised_maxima(frames, lo, hi)


def _normalised_maxima(frames, lo, hi):
    """float32 [P, dim] L2-normalised maxima of frame ranges (zeros for
    empty ones). The max of float16 values is exact; the norm is taken in
    float32."""
    return tf.math.l2_normalize(tf.cast(max_pool_ranges(frames, lo, hi),
                                        tf.float32), axis=-1)


def sample_clips(videos, seed, cfg, encoder):
    """Draws cfg.n_pair (clip, sentence) pairs from each video of a batch.

    Each video's n_pair caption draws are uniform with replacement; draws
    of the same caption give the same pair, so each distinct draw is grown,
    pooled and looked up once for the batch.

    Args:
        videos: output of :func:`parse_video_batch` (B videos).
        seed: int64 [2] stateless seed.
        cfg: ClipConfig.
        encoder: vidcore.text.TextEncoder.

    Returns:
        dict "video" float32 [B * n_pair, feature_dim], "ids" int32
        [B * n_pair, max_words], "caption" int32 [B * n_pair] (the drawn
        caption's index in its video) and "start"/"end" float32
        [B * n_pair] (the grown span's seconds), the n_pair pairs of a
        video contiguous.
    """
    starts = videos["start"].flat_values  # [C] captions of all videos
    ends = videos["end"].flat_values  # [C]
    texts = videos["text"].flat_values  # [C]
    splits = tf.cast(videos["start"].row_splits, tf.int32)  # [B + 1]
    num_videos = tf.size(splits) - 1
    # Uniform caption index per draw: full-range int64 mod C_b (bias
    # below C_b / 2**64).
    draws = tf.random.stateless_uniform(
        [num_videos, cfg.n_pair], seed=seed, minval=None, maxval=None,
        dtype=tf.int64)  # [B, P]
    caption = tf.cast(tf.math.floormod(
        draws, tf.cast(splits[1:] - splits[:-1], tf.int64)[:, None]),
        tf.int32)  # [B, P] index in the video
    first = tf.reshape(caption + splits[:-1, None],
                       [-1])  # [B, P] -> [B*P] indices into [C]
    distinct, slot = tf.unique(first)  # [U], [B*P]: first = distinct[slot]
    video = tf.searchsorted(splits[1:], distinct, side="right")  # [U]

    token_counts = None
    if _needs_token_counts(cfg.min_time, cfg.min_words):
        token_counts = text_lib.tokenize(texts).row_lengths()  # [C]
    lo, hi, order = grow_spans(starts, ends, token_counts, distinct,
                               cfg.min_time, cfg.min_words,
                               lowest=tf.gather(splits, video),
                               highest=tf.gather(splits, video + 1) - 1)
    # Only the captions some span uses are tokenised, each once.
    used, position = tf.unique(order.flat_values)  # [C_used], [M]
    caption_ids = encoder.ragged_ids(tf.gather(texts, used))  # [C_used, None]
    # [U, None captions] -> [U, None captions, None words] -> [U, None words]
    words = tf.RaggedTensor.from_row_lengths(
        tf.gather(caption_ids, position), order.row_lengths())
    ids = encoder.pad_ids(words.merge_dims(1, 2), cfg.max_words)  # [U, W]

    span_start, span_end = tf.gather(starts, lo), tf.gather(ends, hi)
    features = pool_video_spans(videos, video, span_start, span_end,
                                cfg)  # [U, feature_dim]
    return {"video": tf.gather(features, slot),  # [B*P, feature_dim]
            "ids": tf.gather(ids, slot),  # [B*P, max_words]
            "caption": tf.reshape(caption, [-1]),  # [B, P] -> [B*P]
            "start": tf.gather(span_start, slot),  # [B*P]
            "end": tf.gather(span_end, slot)}  # [B*P]


def pool_video_spans(videos, video, span_start, span_end, cfg):
    """Pooled, L2-normalised features of spans of a batch's videos, all
    streams concatenated (frames ``[int(start*rate), int(end*rate)+1)`` of
    the span's own video, each frame read once; :func:`max_pool_ranges`).

    Args:
        videos: output of :func:`parse_video_batch` (B videos).
        video: int32 [S] index of each span's video in the batch.
        span_start, span_end: float32 [S] seconds.
        cfg: ClipConfig (streams).

    Returns:
        float32 [S, feature_dim].
    """
    pooled = []
    for s in cfg.streams:
        frames = videos[f"frames/{s}"]  # [B, None, dim]
        frame_splits = tf.cast(frames.row_splits, tf.int32)  # [B + 1]
        offset = tf.gather(frame_splits, video)  # [S]
        f_lo, f_hi = frame_ranges(
            span_start, span_end, tf.gather(videos[f"rate/{s}"], video),
            tf.gather(frame_splits, video + 1) - offset, offset)
        pooled.append(_normalised_maxima(frames.flat_values, f_lo, f_hi))
    return tf.concat(pooled, axis=-1)  # [S, feature_dim]


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
def batch_options():
    """tf.data options of the batch-first videos reader: one batch's large
    ops (decode, segment max, gathers) may use every core, so a step does
    not wait on one thread when few batches are in flight."""
    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = os.cpu_count() or 1
    return options


def map_video_batches(ds, make):
    """``make`` over batches of video records, at most one call per core
    in flight, prefetched, under :func:`batch_options`.

    One call runs its large ops on every core, so more calls in flight
    than cores add no speed, only memory: each holds a parsed batch and
    its sampler's buffers (about 130 MB at the published HowTo100M sizes;
    AUTOTUNE under the published 8-thread pool kept 8 in flight, 0.9 GB
    more on a 2-core host).
    """
    ds = ds.map(make, num_parallel_calls=os.cpu_count() or 1,
                deterministic=False)
    return ds.prefetch(AUTOTUNE).with_options(batch_options())


def shuffled_records(files, input_context=None, seed=0, shuffle_buffer=1024):
    """Serialized records of a training stream: shards shuffled per pass,
    split between input pipelines, read interleaved, then shuffled.

    Args:
        files: shard paths.
        input_context: tf.distribute.InputContext.
        seed: shuffle seed.
        shuffle_buffer: records in the shuffle buffer.

    Returns:
        tf.data.Dataset of scalar tf.string, repeated forever.
    """
    paths = records.training_file_dataset(files, input_context, seed)
    ds = paths.interleave(tf.data.TFRecordDataset,
                          cycle_length=min(len(files), 16),
                          num_parallel_calls=AUTOTUNE, deterministic=False)
    return ds.shuffle(
        records.shuffle_buffer_size(files, shuffle_buffer, input_context),
        seed=seed)


def training_dataset(files, kind, cfg, encoder, batch_size,
                     input_context=None, seed=0, shuffle_buffer=1024):
    """Shuffled, repeated batches of (features, dummy labels).

    Videos records are batched before they are parsed: one parse of the
    batch and one vectorised sampler call (:func:`sample_clips`) per step.

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
    ds = shuffled_records(files, input_context, seed, shuffle_buffer)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)

    if kind == "videos":
        pairs = batch_size * cfg.n_pair

        def make(serialized, seed_pair):
            clips = sample_clips(parse_video_batch(serialized, cfg),
                                 seed_pair, cfg, encoder)
            video = tf.ensure_shape(clips["video"], [pairs, cfg.feature_dim])
            ids = tf.ensure_shape(clips["ids"], [pairs, cfg.max_words])
            return ({"video": video, "text": encoder.vectors(ids)},
                    tf.zeros([batch_size], tf.int32))

        ds = tf.data.Dataset.zip((ds.batch(batch_size, drop_remainder=True),
                                  seeds))
        return map_video_batches(ds, make)

    def make_clip(serialized, seed_pair):
        clip = sample_clip_caption(parse_clip(serialized, cfg), seed_pair,
                                   cfg, encoder)
        return clip["video"][0], clip["ids"][0]  # [F], [W]

    def to_features(video, ids):
        return ({"video": video, "text": encoder.vectors(ids)},
                tf.zeros([tf.shape(video)[0]], tf.int32))

    ds = tf.data.Dataset.zip((ds, seeds))
    ds = ds.map(make_clip, num_parallel_calls=AUTOTUNE, deterministic=False)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(to_features, num_parallel_calls=AUTOTUNE)
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
