"""tf.data readers of MIL-NCE raw-video records (Miech et al., CVPR 2020,
"End-to-End Learning of Visual Representations from Uncurated Instructional
Videos", section 4 and the released PyTorch loaders).

Records are the raw-video SequenceExamples of ``input_pipeline.video`` (one
JPEG per stored frame) with the captions in the context (keys and timeline
in ``input_pipeline.features``, "MIL-NCE"): stored frame k shows time
``clip/start/timestamp / 1e6 + k / image/frame_rate`` on the source video's
timeline, and caption times are seconds on that same timeline.

Why the sampling lives here, in TF ops: the original decodes every training
clip with ffmpeg from the source video; here a clip is a time window mapped
onto stored frames (``vidcore.video.frames_at_times``), and only the
``num_frames`` JPEGs of that window are decoded
(``vidcore.video.decode_selected``), so the reader costs about one JPEG
decode per delivered frame.

Training (the original's ``HT100M_DataLoader``), per video:

1. pick a caption index uniformly;
2. with ``num_candidates`` K > 1, grow a window of K consecutive captions
   around it by the shorter span (:func:`candidate_start`, the original's
   ``_find_nearest_candidates`` with its edge cases) and take the captions
   ``clip(cap_start + i, 0, n - 1)``, i < K;
3. the clip time is the picked caption's [start, end], extended to
   ``min_time`` when shorter (:func:`clip_time`), both truncated to whole
   seconds; the clip starts at a uniform random integer second in
   ``[start, int(max(start, end - num_frames / fps))]``;
4. the ``num_frames`` frames from there at ``fps`` (zeros past the end of
   the video), cropped (``crop_only``: a random, or centre with
   ``center_crop``, ``video_size`` square of the stored frame; otherwise the
   square of the short side resized to ``video_size``), flipped with p 0.5
   (``random_flip``); values in [0, 1] (uint8 until the batch is made);
5. the K captions lower-cased and mapped to word ids
   (``TextEncoder.word_ids``, ``max_words``), per batch.

Evaluation (the original's MSR-VTT / YouCook2 / HMDB-51 loaders):
``num_windows_test`` windows per record, the short side's centre square
resized to ``video_size``, zero frames past the end; every record once, in
file order, the last batch padded (mask False, index -1).

* :func:`retrieval_dataset`: window start times
  ``linspace(c_start, max(c_start, c_end - num_frames / fps - window_margin),
  W)`` seconds over the record's first caption, frames at ``fps``;
* :func:`classification_dataset` (HMDB-51): stored-frame starts
  ``linspace(0, n - num_frames, W)`` truncated to integers, over the stored
  frames padded with zero frames to at least ``num_frames``;
* :func:`feature_windows_dataset`: consecutive non-overlapping windows of
  ``num_frames`` at ``fps`` covering each whole video, one row per window.

The square resize is bilinear with antialiasing (the original's ffmpeg
``scale`` filters on downscaling too) and is rounded back to uint8 as
ffmpeg's rgb24 output is.

Errors name the shard, the record number and the media id: a training or
retrieval record without captions, caption lists of different lengths, a
video without frames, frames that are not JPEG, frames smaller than
``video_size`` for ``crop_only``, a missing frame rate, an HMDB-51 record
without a class. A truncated shard is an error naming it
(``records.checked_records``).
"""

import dataclasses
import math

import tensorflow as tf

from input_pipeline import features as keys
from input_pipeline import records
from input_pipeline import video as video_reader
from vidcore import video as video_ops

AUTOTUNE = tf.data.AUTOTUNE

_US = 1e6  # microseconds per second


@dataclasses.dataclass
class MilNCEClipConfig:
    """How MIL-NCE clips are sampled and transformed (the original's flags).

    Attributes:
        num_frames: frames per clip / window (``--num_frames``).
        fps: frames per second of the clips (``--fps``).
        video_size: side of the square clips (``--video_size``).
        min_time: training clip time extended to at least this many seconds
            (``--min_time``).
        num_candidates: K consecutive captions per training clip
            (``--num_candidates``).
        max_words: word ids per caption (20 in training, 30 in evaluation).
        crop_only: training crop of ``video_size`` from the stored frame
            (``--crop_only``); False: the short side's square resized.
        center_crop: centre instead of random training crops
            (``--centercrop``).
        random_flip: horizontal flips with p 0.5 in training
            (``--random_flip``).
        num_windows_test: windows per evaluation record
            (``--num_windows_test``).
        window_margin: seconds kept free at the end of the caption by the
            last retrieval window.
    """

    num_frames: int = 16
    fps: float = 5.0
    video_size: int = 224
    min_time: float = 5.0
    num_candidates: int = 1
    max_words: int = 20
    crop_only: bool = True
    center_crop: bool = False
    random_flip: bool = True
    num_windows_test: int = 4
    window_margin: float = 0.4

    def __post_init__(self):
        for name in ("num_frames", "video_size", "num_candidates",
                     "max_words", "num_windows_test"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"MilNCEClipConfig.{name} must be a "
                                 f"positive integer, got {value!r}")
            setattr(self, name, int(value))
        for name in ("fps", "min_time", "window_margin"):
            value = float(getattr(self, name))
            positive = name == "fps"
            if (not math.isfinite(value) or value < 0
                    or (positive and value == 0)):
                kind = "positive" if positive else "non-negative"
                raise ValueError(f"MilNCEClipConfig.{name} must be a finite "
                                 f"{kind} number, got "
                                 f"{getattr(self, name)!r}")
            setattr(self, name, value)
        for name in ("crop_only", "center_crop", "random_flip"):
            setattr(self, name, bool(getattr(self, name)))

    @property
    def clip_seconds(self):
        """Duration of one clip, ``num_frames / fps`` seconds."""
        return self.num_frames / self.fps


# --------------------------------------------------------------------------- #
# Parsing.
# --------------------------------------------------------------------------- #
_CONTEXT = {
    keys.VIDEO_CAPTION_STRING: tf.io.VarLenFeature(tf.string),
    keys.VIDEO_CAPTION_START: tf.io.VarLenFeature(tf.float32),
    keys.VIDEO_CAPTION_END: tf.io.VarLenFeature(tf.float32),
    keys.VIDEO_START_TIMESTAMP: tf.io.FixedLenFeature([], tf.int64,
                                                      default_value=0),
    keys.VIDEO_SPLITS: tf.io.FixedLenFeature([3], tf.int64,
                                             default_value=[0, 0, 0]),
}


def parse_record(serialized, name):
    """Parses one MIL-NCE record without decoding any frame.

    Args:
        serialized: scalar tf.string, a SequenceExample.
        name: scalar string naming the record ("<shard>:record <i>").

    Returns:
        dict: "jpegs" string [N], "num_frames" int32, "frame_rate" float32
        (0 when absent), "start_time" float64 seconds of stored frame 0,
        "captions" string [n], "caption_start", "caption_end" float64 [n],
        "label" int32 (-1 when absent), "splits" int32 [3], "media_id",
        "where" (the record, named for errors: "<shard>:record <i> (id
        <media_id>)").
    """
    video = video_reader.parse_video(serialized, name, _CONTEXT)
    ctx = video.pop("context")

    def dense(key, default):
        return tf.sparse.to_dense(ctx[key], default_value=default)

    video["captions"] = dense(keys.VIDEO_CAPTION_STRING, "")
    video["caption_start"] = tf.cast(dense(keys.VIDEO_CAPTION_START, 0.0),
                                     tf.float64)
    video["caption_end"] = tf.cast(dense(keys.VIDEO_CAPTION_END, 0.0),
                                   tf.float64)
    video["start_time"] = tf.cast(ctx[keys.VIDEO_START_TIMESTAMP],
                                  tf.float64) / _US
    video["splits"] = tf.cast(ctx[keys.VIDEO_SPLITS], tf.int32)
    video["where"] = records.describe_record(name, video["media_id"])
    return video


def _check_captions(video, purpose):
    """Assert op: at least one caption, and as many starts and ends as
    caption strings."""
    count = tf.size(video["captions"])
    return [
        tf.debugging.Assert(
            count > 0, [f"{purpose} record has no caption "
                        f"({keys.VIDEO_CAPTION_STRING}):", video["where"]]),
        tf.debugging.Assert(
            tf.logical_and(tf.equal(tf.size(video["caption_start"]), count),
                           tf.equal(tf.size(video["caption_end"]), count)),
            ["caption lists differ in length:", count,
             keys.VIDEO_CAPTION_STRING, tf.size(video["caption_start"]),
             keys.VIDEO_CAPTION_START, tf.size(video["caption_end"]),
             keys.VIDEO_CAPTION_END, "in", video["where"]]),
    ]


def _check_timed_frames(video):
    """Assert ops: the record has frames and a frame rate."""
    return [
        tf.debugging.Assert(video["num_frames"] > 0,
                            ["video has no frames:", video["where"]]),
        tf.debugging.Assert(
            video["frame_rate"] > 0,
            [f"record has no frame rate ({keys.VIDEO_FRAME_RATE} > 0 is "
             f"needed to find frames by time):", video["where"]]),
    ]


# --------------------------------------------------------------------------- #
# Training: captions and clip time.
# --------------------------------------------------------------------------- #
def candidate_start(starts, ends, index, num_candidates):
    """First caption of the K-caption window around caption ``index`` (the
    original's ``_find_nearest_candidates``).

    The window [start, end] starts at ``index`` and grows, while it holds
    fewer than K captions, by the neighbour that gives the shorter span
    (left when ``ends[end] - starts[start - 1] < ends[end + 1] -
    starts[start]``, else right). When the window reaches caption 0 the
    result is 0; when it reaches the last caption (and not caption 0) the
    result is ``start - (K - size)`` with ``size`` the window's captions so
    far (it may be negative; candidates are clipped to [0, n - 1]).

    Args:
        starts, ends: float [n] caption times (n > 0).
        index: int scalar, the picked caption.
        num_candidates: K (python int).

    Returns:
        int32 scalar.
    """
    starts = tf.cast(starts, tf.float64)
    ends = tf.cast(ends, tf.float64)
    last = tf.size(starts) - 1
    start = end = tf.cast(index, tf.int32)
    result = start
    done = tf.constant(False)
    # K - 1 unrolled steps of the original's while loop (size = step).
    for size in range(1, num_candidates):
        at_first = tf.equal(start, 0)
        stop = tf.logical_or(at_first, tf.equal(end, last))
        left = ends[end] - starts[tf.maximum(start - 1, 0)]
        right = ends[tf.minimum(end + 1, last)] - starts[start]
        grow_left = left < right
        stopped_at = tf.where(at_first, 0, start - (num_candidates - size))
        result = tf.where(done, result, tf.where(stop, stopped_at, start))
        grows = tf.logical_not(tf.logical_or(done, stop))
        start = tf.where(tf.logical_and(grows, grow_left), start - 1, start)
        end = tf.where(tf.logical_and(grows, tf.logical_not(grow_left)),
                       end + 1, end)
        done = tf.logical_or(done, stop)
    return tf.where(done, result, start)


def candidate_indices(starts, ends, index, num_candidates):
    """The K candidate captions: ``clip(candidate_start + i, 0, n - 1)``.

    Args:
        starts, ends: float [n] caption times (n > 0).
        index: int scalar, the picked caption.
        num_candidates: K (python int).

    Returns:
        int32 [K] caption indices (``[index]`` for K = 1).
    """
    first = candidate_start(starts, ends, index, num_candidates)
    last = tf.size(starts) - 1
    return tf.clip_by_value(first + tf.range(num_candidates), 0, last)


def clip_time(starts, ends, index, min_time):
    """The clip time of caption ``index``: its [start, end], extended when
    ``end - start < min_time`` to ``start = max(0, start - (min_time - end +
    start) / 2)``, ``end = start + min_time``; both truncated to integers
    (Python's ``int``), in float64 as the original.

    Args:
        starts, ends: float [n] caption times.
        index: int scalar.
        min_time: python float.

    Returns:
        (start, end) int64 scalars, seconds.
    """
    start = tf.cast(starts[index], tf.float64)
    end = tf.cast(ends[index], tf.float64)
    diff = min_time - end + start
    extended = tf.maximum(tf.constant(0.0, tf.float64), start - diff / 2)
    short = end - start < min_time
    start, end = (tf.where(short, extended, start),
                  tf.where(short, extended + min_time, end))
    return tf.cast(start, tf.int64), tf.cast(end, tf.int64)


def clip_start_second(start, end, clip_seconds, seed):
    """Uniform random integer second in ``[start, int(max(start, end -
    clip_seconds))]`` (the original's ``random.randint``).

    Args:
        start, end: int64 scalars (from :func:`clip_time`).
        clip_seconds: python float, ``num_frames / fps``.
        seed: int [2] stateless seed.

    Returns:
        int64 scalar.
    """
    high = tf.cast(tf.maximum(tf.cast(start, tf.float64),
                              tf.cast(end, tf.float64) - clip_seconds),
                   tf.int64)
    return tf.random.stateless_uniform([], seed, minval=start,
                                       maxval=high + 1, dtype=tf.int64)


def sample_clip(starts, ends, seed, cfg):
    """The whole training draw of one video: caption, candidates, clip
    time and start second.

    Args:
        starts, ends: float [n] caption times (n > 0).
        seed: int [2] stateless seed.
        cfg: MilNCEClipConfig.

    Returns:
        dict: "index" int32 (the picked caption), "candidates" int32 [K],
        "start", "end" int64 (the clip time), "start_second" int64.
    """
    pick_seed, second_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=2))
    index = tf.random.stateless_uniform([], pick_seed, minval=0,
                                        maxval=tf.size(starts),
                                        dtype=tf.int32)
    start, end = clip_time(starts, ends, index, cfg.min_time)
    return {
        "index": index,
        "candidates": candidate_indices(starts, ends, index,
                                        cfg.num_candidates),
        "start": start,
        "end": end,
        "start_second": clip_start_second(start, end, cfg.clip_seconds,
                                          second_seed),
    }


# --------------------------------------------------------------------------- #
# Frames.
# --------------------------------------------------------------------------- #
def _check_size(frames, size, where):
    shape = tf.shape(frames)
    return tf.debugging.Assert(
        tf.logical_and(shape[1] >= size, shape[2] >= size),
        [f"frames smaller than video_size {size} (height, width):",
         shape[1], shape[2], "in", where])


def square_window(height, width, seed=None):
    """The short side's square: centred (seed None, as
    ``video.center_crop``) or at uniform random integer offsets.

    Args:
        height, width: int32 scalars, the frames' size.
        seed: int [2] stateless seed, or None for the centre.

    Returns:
        (top, left, side) int32 scalars.
    """
    side = tf.minimum(height, width)
    if seed is None:
        top, left = video_ops.center_crop_window(height, width, side)
        return top, left, side
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    top = tf.random.stateless_uniform([], seeds[0], minval=0,
                                      maxval=height - side + 1,
                                      dtype=tf.int32)
    left = tf.random.stateless_uniform([], seeds[1], minval=0,
                                       maxval=width - side + 1,
                                       dtype=tf.int32)
    return top, left, side


def square_resize(frames, size, seed=None):
    """The short side's square (:func:`square_window`) resized to ``size``
    (bilinear, antialiased) and rounded back to uint8.

    Args:
        frames: uint8 [U, H, W, 3].
        size: python int.
        seed: int [2] for a random square, None for the centre one.

    Returns:
        uint8 [U, size, size, 3].
    """
    shape = tf.shape(frames)
    top, left, side = square_window(shape[1], shape[2], seed)
    square = frames[:, top:top + side, left:left + side, :]  # [U, s, s, 3]
    resized = video_ops.resize(square, (size, size), antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 1.0) * 255.0),
                   tf.uint8)  # [U, size, size, 3]


def _zero_invalid(clips, valid):
    """Frames where ``valid`` is False set to zeros.

    Args:
        clips: [..., T, S, S, 3]; valid: bool [..., T].
    """
    return tf.where(valid[..., None, None, None], clips,
                    tf.zeros([], clips.dtype))


def window_clips(video, indices, valid, size):
    """Evaluation clips: the distinct frames of ``indices`` decoded once,
    each the short side's centre square resized to ``size``, gathered into
    windows, zeros where not ``valid``.

    Args:
        video: output of :func:`parse_record`.
        indices: int32 [W, T] stored frames (valid positions in range).
        valid: bool [W, T].
        size: python int.

    Returns:
        uint8 [W, T, size, size, 3].
    """
    frames, local = video_ops.decode_selected(video["jpegs"], indices,
                                              video["where"])
    squares = square_resize(frames, size)  # [U, size, size, 3]
    clips = tf.gather(squares, local)  # [W, T, size, size, 3]
    return _zero_invalid(clips, valid)


def _times(first, num_frames, fps):
    """float64 [..., T]: ``first[..., None] + j / fps``."""
    steps = tf.range(num_frames, dtype=tf.float64) / fps  # [T]
    return tf.cast(first, tf.float64)[..., None] + steps


def training_frames(video, start_second, seed, cfg):
    """The training clip's frames from ``start_second``: ``num_frames`` at
    ``fps`` (zeros past the end), cropped and flipped (module docstring).

    Args:
        video: output of :func:`parse_record` (with frames and a rate).
        start_second: int or float scalar, the clip's start on the source
            timeline.
        seed: int [2] stateless seed of the crop and the flip.
        cfg: MilNCEClipConfig.

    Returns:
        uint8 [T, S, S, 3].
    """
    where = video["where"]
    crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=2))
    times = _times(start_second, cfg.num_frames, cfg.fps)  # [T]
    indices, valid = video_ops.frames_at_times(
        times, video["start_time"], video["frame_rate"], video["num_frames"])
    frames, local = video_ops.decode_selected(video["jpegs"], indices,
                                              where)  # [U, H, W, 3], [T]
    flip = (video_ops.random_flip_decision(flip_seed) if cfg.random_flip
            else None)
    size = cfg.video_size
    if cfg.crop_only:
        shape = tf.shape(frames)
        with tf.control_dependencies([_check_size(frames, size, where)]):
            if cfg.center_crop:
                top, left = video_ops.center_crop_window(shape[1], shape[2],
                                                         size)
            else:
                top, left = video_ops.random_crop_window(shape[1], shape[2],
                                                         size, crop_seed)
        clip = video_ops.crop_clips(
            frames, local[None], top[None], left[None], size,
            None if flip is None else flip[None], max_clips=1)[0]
    else:
        squares = square_resize(frames, size,
                                None if cfg.center_crop else crop_seed)
        clip = tf.gather(squares, local)  # [T, S, S, 3]
        if flip is not None:
            clip = tf.cond(flip, lambda: video_ops.flip_left_right(clip),
                           lambda: clip)
    clip = _zero_invalid(clip, valid)  # [T, S, S, 3] uint8
    clip.set_shape([cfg.num_frames, size, size, 3])
    return clip


def training_clip(video, seed, cfg):
    """One training clip of a video and its candidate captions.

    Args:
        video: output of :func:`parse_record`.
        seed: int64 [2] stateless seed of this video and pass.
        cfg: MilNCEClipConfig.

    Returns:
        (video uint8 [T, S, S, 3], captions string [K]).
    """
    checks = _check_captions(video, "training") + _check_timed_frames(video)
    draw_seed, frames_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=2))
    with tf.control_dependencies(checks):
        draw = sample_clip(video["caption_start"], video["caption_end"],
                           draw_seed, cfg)
    clip = training_frames(video, draw["start_second"], frames_seed, cfg)
    captions = tf.gather(video["captions"], draw["candidates"])  # [K]
    return clip, captions


def retrieval_windows(video, cfg):
    """Stored frames of the retrieval windows over the first caption.

    Window w starts at ``linspace(c_start, max(c_start, c_end -
    num_frames / fps - window_margin), W)[w]`` seconds (numpy's linspace
    arithmetic), frame j of it at ``start + j / fps``.

    Args:
        video: output of :func:`parse_record`.
        cfg: MilNCEClipConfig.

    Returns:
        (indices int32 [W, T], valid bool [W, T]) from
        ``vidcore.video.frames_at_times``.
    """
    c_start = video["caption_start"][0]
    c_end = video["caption_end"][0]
    last = tf.maximum(c_start, c_end - cfg.clip_seconds - cfg.window_margin)
    starts = linspace(c_start, last, cfg.num_windows_test)  # [W]
    times = _times(starts, cfg.num_frames, cfg.fps)  # [W, T]
    return video_ops.frames_at_times(times, video["start_time"],
                                     video["frame_rate"], video["num_frames"])


def classification_windows(num_frames, cfg):
    """Stored frames of the HMDB-51 windows: starts ``linspace(0, m - T,
    W)`` truncated to integers (numpy's ``linspace(..., dtype=int)``) with
    ``m = max(num_frames, T)``; positions past the stored frames invalid.

    Args:
        num_frames: int32 scalar > 0, stored frames.
        cfg: MilNCEClipConfig.

    Returns:
        (indices int32 [W, T] clipped to the stored frames, valid bool
        [W, T]).
    """
    padded = tf.maximum(num_frames, cfg.num_frames)
    starts = tf.cast(linspace(0.0, tf.cast(padded - cfg.num_frames,
                                           tf.float64),
                              cfg.num_windows_test), tf.int32)  # [W]
    positions = starts[:, None] + tf.range(cfg.num_frames)  # [W, T]
    valid = positions < num_frames
    return tf.minimum(positions, num_frames - 1), valid


def linspace(start, stop, num):
    """float64 [num] with numpy's ``linspace`` arithmetic: ``start + i *
    ((stop - start) / (num - 1))``, the last value ``stop`` exactly.

    Args:
        start, stop: float scalars.
        num: python int >= 1.

    Returns:
        float64 [num].
    """
    start = tf.cast(start, tf.float64)
    stop = tf.cast(stop, tf.float64)
    if num == 1:
        return start[None]
    step = (stop - start) / (num - 1)
    values = tf.range(num - 1, dtype=tf.float64) * step + start
    return tf.concat([values, stop[None]], axis=0)


def feature_windows(video, cfg):
    """Non-overlapping windows of ``num_frames`` at ``fps`` covering the
    whole video: ``m = ceil(N * fps / rate)`` frames at fps
    (``max(1, ceil(m / T))`` windows), window w's frame j at
    ``start_time + (w * T + j) / fps``.

    Args:
        video: output of :func:`parse_record`.
        cfg: MilNCEClipConfig.

    Returns:
        (indices int32 [V, T], valid bool [V, T], start_time float64 [V]).
    """
    rate = tf.cast(video["frame_rate"], tf.float64)
    count = tf.cast(tf.math.ceil(
        tf.cast(video["num_frames"], tf.float64) * cfg.fps / rate), tf.int32)
    windows = tf.maximum(1, (count + cfg.num_frames - 1) // cfg.num_frames)
    positions = (tf.range(windows)[:, None] * cfg.num_frames
                 + tf.range(cfg.num_frames)[None, :])  # [V, T]
    times = video["start_time"] + tf.cast(positions, tf.float64) / cfg.fps
    indices, valid = video_ops.frames_at_times(
        times, video["start_time"], video["frame_rate"], video["num_frames"])
    return indices, valid, times[:, 0]


# --------------------------------------------------------------------------- #
# Datasets.
# --------------------------------------------------------------------------- #
def _word_ids(encoder, captions, max_words):
    """Lower-cased captions -> int32 word ids [..., max_words]."""
    clean = tf.strings.unicode_transcode(
        captions, input_encoding="UTF-8", output_encoding="UTF-8",
        errors="replace", replacement_char=0xFFFD)
    ids = encoder.word_ids(tf.strings.lower(clean, encoding="utf-8"),
                           max_words)
    ids.set_shape(captions.shape.concatenate([max_words]))
    return tf.cast(ids, tf.int32)


def training_dataset(files, cfg, batch_size, encoder, input_context=None,
                     seed=0, shuffle_buffer=64, deterministic=False):
    """Repeated, shuffled batches of MIL-NCE training clips.

    Shards are shuffled per pass and split between input pipelines
    (``records.training_records``), read interleaved; each video gives one
    clip (module docstring), the clips are shuffled and batched.

    Args:
        files: shard paths.
        cfg: MilNCEClipConfig.
        batch_size: clips per batch (per input pipeline / replica).
        encoder: vidcore.text.TextEncoder (ids only is enough).
        input_context: tf.distribute.InputContext (per-worker sharding).
        seed: seed of the shuffles and of each video's draw (stateless: a
            video's clip depends on the seed, the record and the pass).
        shuffle_buffer: clips in the shuffle buffer (sampled clips, not
            records: a HowTo100M record holds minutes of frames, a clip
            ``num_frames x S x S x 3`` uint8, 2.4 MB at 16 x 224).
        deterministic: fixed element order (reproducible batches) at the
            cost of some parallelism.

    Returns:
        tf.data.Dataset of ({"video": float32 [B, T, S, S, 3] in [0, 1],
        "text": int32 [B, K, max_words]}, labels int32 [B] zeros).
    """
    ds = records.training_records(files, input_context, seed, deterministic)

    def make(serialized, name, file_pass):
        return training_clip(parse_record(serialized, name),
                             records.record_seed(seed, name, file_pass), cfg)

    ds = ds.map(make, num_parallel_calls=AUTOTUNE,
                deterministic=deterministic)
    ds = ds.shuffle(shuffle_buffer, seed=seed)
    ds = ds.batch(batch_size, drop_remainder=True)

    def finish(clips, captions):
        inputs = {"video": video_ops.to_float(clips),  # [B, T, S, S, 3]
                  "text": _word_ids(encoder, captions, cfg.max_words)}
        return inputs, tf.zeros([batch_size], tf.int32)

    ds = ds.map(finish, num_parallel_calls=AUTOTUNE,
                deterministic=deterministic)
    return ds.prefetch(AUTOTUNE)


def _padded_batches(ds, batch_size, finish, index_keys):
    """Batches ``ds`` (dict elements, in order), applies ``finish`` to each
    batch, pads the last one with ``records.pad_batch`` ("mask") and sets
    ``index_keys`` to -1 on padding rows."""
    def pad(batch):
        batch, mask = records.pad_batch(finish(batch), batch_size)
        for key in index_keys:
            batch[key] = tf.where(mask, batch[key],
                                  tf.constant(-1, batch[key].dtype))
        batch["mask"] = mask
        return batch

    return ds.batch(batch_size).map(
        pad, num_parallel_calls=AUTOTUNE,
        deterministic=True).prefetch(AUTOTUNE)


def _float_video(batch):
    batch["video"] = video_ops.to_float(batch["video"])
    return batch


def retrieval_dataset(files, cfg, batch_size, encoder):
    """Every record once, in file order: its windows and first caption
    (MSR-VTT, YouCook2 zero-shot retrieval).

    Args:
        files: shard paths (the order defines "index").
        cfg: MilNCEClipConfig (``num_windows_test``, ``window_margin``,
            ``max_words`` as the evaluation wants them).
        batch_size: records per batch.
        encoder: vidcore.text.TextEncoder.

    Returns:
        tf.data.Dataset of dicts: "video" float32 [B, W, T, S, S, 3],
        "text" int32 [B, max_words], "index" int64 [B] (record number,
        -1 on padding), "mask" bool [B].
    """
    def make(index, serialized, name):
        video = parse_record(serialized, name)
        checks = (_check_captions(video, "retrieval")
                  + _check_timed_frames(video))
        with tf.control_dependencies(checks):
            indices, valid = retrieval_windows(video, cfg)
            caption = video["captions"][0]
        return {"video": window_clips(video, indices, valid,
                                      cfg.video_size),
                "text": caption, "index": index}

    ds = records.ordered_records(files).enumerate().map(
        lambda index, record: make(index, *record),
        num_parallel_calls=AUTOTUNE, deterministic=True)

    def finish(batch):
        batch = _float_video(batch)
        batch["text"] = _word_ids(encoder, batch["text"], cfg.max_words)
        return batch

    return _padded_batches(ds, batch_size, finish, ["index"])


def classification_dataset(files, cfg, batch_size):
    """Every record once, in file order: its windows, class and splits
    (HMDB-51 linear probe).

    Args:
        files: shard paths (the order defines "index").
        cfg: MilNCEClipConfig (``num_frames``, ``num_windows_test``,
            ``video_size``; frames are the stored ones, ``fps`` unused).
        batch_size: records per batch.

    Returns:
        tf.data.Dataset of dicts: "video" float32 [B, W, T, S, S, 3],
        "label" int32 [B], "splits" int32 [B, 3] (0 unused, 1 train, 2
        test), "index" int64 [B] (-1 on padding), "mask" bool [B].
    """
    def make(index, serialized, name):
        video = parse_record(serialized, name)
        checks = [
            tf.debugging.Assert(video["num_frames"] > 0,
                                ["video has no frames:", video["where"]]),
            tf.debugging.Assert(
                video["label"] >= 0,
                [f"classification record has no class index "
                 f"({keys.VIDEO_LABEL_INDEX}):", video["where"]])]
        with tf.control_dependencies(checks):
            indices, valid = classification_windows(video["num_frames"], cfg)
        return {"video": window_clips(video, indices, valid,
                                      cfg.video_size),
                "label": video["label"], "splits": video["splits"],
                "index": index}

    ds = records.ordered_records(files).enumerate().map(
        lambda index, record: make(index, *record),
        num_parallel_calls=AUTOTUNE, deterministic=True)
    return _padded_batches(ds, batch_size, _float_video, ["index"])


def feature_windows_dataset(files, cfg, batch_size):
    """Every window of every record once, in order: consecutive
    non-overlapping windows of ``num_frames`` at ``fps`` covering each
    whole video (:func:`feature_windows`; feature extraction).

    A record's windows share its parse; each window decodes only its own
    distinct frames, so a long video never sits decoded in memory.

    Args:
        files: shard paths (the order defines "video_index").
        cfg: MilNCEClipConfig.
        batch_size: windows per batch.

    Returns:
        tf.data.Dataset of dicts: "video" float32 [B, T, S, S, 3],
        "video_index" int64 [B], "window_index" int32 [B] (both -1 on
        padding), "start_time" float32 [B] (seconds on the source video's
        timeline), "mask" bool [B].
    """
    size = cfg.video_size

    def windows(index, serialized, name):
        video = parse_record(serialized, name)
        with tf.control_dependencies(_check_timed_frames(video)):
            indices, valid, starts = feature_windows(video, cfg)
        count = tf.shape(indices)[0]
        # First position of each index in its window: decode_selected then
        # decodes each distinct frame of a window once.
        same = tf.equal(indices[:, :, None], indices[:, None, :])  # [V, T, T]
        first = tf.argmax(tf.cast(same, tf.int32), axis=-1,
                          output_type=tf.int32)  # [V, T]
        return tf.data.Dataset.from_tensor_slices({
            "jpegs": tf.gather(video["jpegs"], indices),  # [V, T]
            "first": first, "valid": valid,
            "where": tf.fill([count], video["where"]),
            "video_index": tf.fill([count], index),
            "window_index": tf.range(count),
            "start_time": tf.cast(starts, tf.float32)})

    def make(window):
        frames, local = video_ops.decode_selected(
            window["jpegs"], window["first"], window["where"])
        clip = tf.gather(square_resize(frames, size), local)  # [T, S, S, 3]
        clip = _zero_invalid(clip, window["valid"])
        clip.set_shape([cfg.num_frames, size, size, 3])
        return {"video": clip, "video_index": window["video_index"],
                "window_index": window["window_index"],
                "start_time": window["start_time"]}

    ds = records.ordered_records(files).enumerate().flat_map(
        lambda index, record: windows(index, *record))
    ds = ds.map(make, num_parallel_calls=AUTOTUNE, deterministic=True)
    return _padded_batches(ds, batch_size, _float_video,
                           ["video_index", "window_index"])


def video_ids(files):
    """Media ids of the records in file order (``index`` / ``video_index``
    of the evaluation datasets point into it).

    Returns:
        list of str.
    """
    return video_reader.video_ids(files)
