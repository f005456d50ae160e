"""tf.data readers of raw-video TFRecords (Kinetics-style classification).

Records: one ``tf.train.SequenceExample`` per video (layout and keys in
``input_pipeline.features``, "Raw video"): the feature list
``image/encoded`` holds one JPEG per stored frame, the context the video id,
the class index and the stored frame rate.

Sampling follows torchvision's video-classification recipe (see
``vidcore.video`` for the exact rules): frames are resampled to
``frame_rate``; training draws ``clips_per_video`` distinct random clips of
``clip_len`` consecutive frames per video (every start is a candidate), and
evaluation takes ``clips_per_video`` evenly spaced clips. Videos shorter
than one clip are kept and padded with their last frame (torchvision drops
them); a video without frames is an error naming it.

Only the frames of the sampled clips are decoded: the reader gathers the
JPEG strings of the clips' frames first and decodes each distinct frame
once (clips of a video may overlap), then resizes them to ``resize``, crops
(random in training, centre in evaluation), flips (training) and
normalises with ``mean`` / ``std``. Frames stored at the resize size are
not resized and stay uint8 through cropping, shuffling and batching; they
are normalised per batch (bench/RESULTS.md has the per-stage profile).

Element structure (channels last):

* training: ``(clips float32 [B, T, crop, crop, 3], labels int32 [B])``;
* evaluation: ``(clips, labels, video_index int64 [B], mask bool [B])``,
  every video exactly once, in file order, ``clips_per_video`` consecutive
  rows per video, padded to full batches (padding rows have mask False and
  video_index -1); ``video_ids(files)[video_index]`` is the video's id.

Corrupt data: a truncated or corrupt shard is an error naming the shard
(``records.checked_records``); a record that does not parse, has no frames,
has frames that are not JPEG images or lacks a label in training is an error
naming the shard, the record number and the video id. (A JPEG whose
entropy-coded data is damaged is reported by TensorFlow's decoder without
the record's name.)
"""

import dataclasses

import tensorflow as tf

from input_pipeline import features as keys
from input_pipeline import records
from vidcore import video as video_ops

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class VideoClipConfig:
    """How clips are sampled and transformed.

    Attributes:
        clip_len: frames per clip.
        frame_rate: frames per second of the clips (frames are resampled
            from the stored rate); None keeps the stored rate.
        clips_per_video: training: at most this many distinct random clips
            per video and pass; evaluation: this many uniform clips.
        resize: (height, width) every frame is resized to.
        crop_size: side of the square crop (random in training, centre in
            evaluation).
        mean, std: per-channel normalisation of RGB in [0, 1].
        flip: random horizontal flips in training (p = 0.5 per clip).
        antialias: antialiased resizing (False: the recipe's plain
            bilinear).
    """

    clip_len: int = 16
    frame_rate: float | None = 15.0
    clips_per_video: int = 5
    resize: tuple[int, int] = (128, 171)
    crop_size: int = 112
    mean: tuple[float, ...] = video_ops.KINETICS_MEAN
    std: tuple[float, ...] = video_ops.KINETICS_STD
    flip: bool = True
    antialias: bool = False

    def __post_init__(self):
        self.resize = tuple(int(s) for s in self.resize)
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if self.clip_len < 1 or self.clips_per_video < 1:
            raise ValueError(
                f"clip_len ({self.clip_len}) and clips_per_video "
                f"({self.clips_per_video}) must be positive")
        if len(self.resize) != 2:
            raise ValueError(f"resize must be (height, width), got "
                             f"{self.resize}")
        if self.crop_size > min(self.resize):
            raise ValueError(f"crop_size {self.crop_size} does not fit in "
                             f"resize {self.resize}")
        if self.frame_rate is not None and self.frame_rate < 0:
            raise ValueError(f"frame_rate must be positive or None, got "
                             f"{self.frame_rate}")


# --------------------------------------------------------------------------- #
# Parsing.
# --------------------------------------------------------------------------- #
def parse_video(serialized, name=None, extra_context=None):
    """Parses one raw-video record without decoding any frame.

    Args:
        serialized: scalar tf.string, a SequenceExample.
        name: optional scalar string naming the record in parse errors
            (e.g. "shard:record 3", as ``records.checked_records`` gives).
        extra_context: optional dict key -> ``tf.io`` feature spec of
            further context features to parse (e.g. MIL-NCE captions).

    Returns:
        dict: "jpegs" string [T], "label" int32 (-1 when the record has
        none), "media_id" string, "frame_rate" float32 (the stored rate, 0
        when absent), "num_frames" int32, and "context": the parsed
        ``extra_context`` features by key (when given).
    """
    context = {
        keys.VIDEO_MEDIA_ID: tf.io.FixedLenFeature([], tf.string,
                                                   default_value=""),
        keys.VIDEO_LABEL_INDEX: tf.io.FixedLenFeature([], tf.int64,
                                                      default_value=-1),
        keys.VIDEO_FRAME_RATE: tf.io.FixedLenFeature([], tf.float32,
                                                     default_value=0.0),
    }
    sequence = {keys.VIDEO_IMAGE_ENCODED: tf.io.FixedLenSequenceFeature(
        [], tf.string, allow_missing=True)}
    context.update(extra_context or {})
    ctx, seq = tf.io.parse_single_sequence_example(
        serialized, context_features=context, sequence_features=sequence,
        example_name=name)
    jpegs = seq[keys.VIDEO_IMAGE_ENCODED]
    parsed = {
        "jpegs": jpegs,
        "label": tf.cast(ctx[keys.VIDEO_LABEL_INDEX], tf.int32),
        "media_id": ctx[keys.VIDEO_MEDIA_ID],
        "frame_rate": ctx[keys.VIDEO_FRAME_RATE],
        "num_frames": tf.size(jpegs, out_type=tf.int32),
    }
    if extra_context:
        parsed["context"] = {key: ctx[key] for key in extra_context}
    return parsed


_describe = records.describe_record


def _clip_pixels(video, indices, cfg, where, make_clips):
    """Decodes each distinct frame of ``indices`` [C, T] once, resizes and
    hands the frames to ``make_clips(frames, local)`` (local: int32 [C, T]
    indices into frames), which gathers, crops and flips them.

    Frames already stored at ``cfg.resize`` are not resized (torchvision
    returns them unchanged too) and stay uint8 (a quarter of the bytes of
    float32 through the gathers, crops, shuffles and batching; they are
    normalised per batch); other frames are resized to float32 in [0, 1].

    Returns:
        clip pixels: dict of "stored" uint8 [C, T, h, w, 3] and "resized"
        float32 [C, T, h, w, 3], one of them the clips and the other a
        placeholder [C, 1, 1, 1, 3], and "is_stored" bool [C] saying which;
        :func:`normalize_clip_pixels` turns them into clips.
    """
    frames, local = video_ops.decode_selected(
        video["jpegs"], indices, where)  # [U, H, W, 3] uint8, [C, T]
    shape = tf.shape(frames)
    height, width = cfg.resize
    stored_size = tf.logical_and(tf.equal(shape[1], height),
                                 tf.equal(shape[2], width))
    num_clips = tf.shape(indices)[0]
    # The unused kind is a 1-pixel placeholder per clip (tf.data's unbatch
    # crashes on tensors with a zero-size dimension).
    none = [num_clips, 1, 1, 1, 3]

    def stored():
        return make_clips(frames, local), tf.zeros(none, tf.float32)

    def resized():
        frames_01 = video_ops.resize(frames, cfg.resize, cfg.antialias)
        return tf.zeros(none, tf.uint8), make_clips(frames_01, local)

    clips_u8, clips_01 = tf.cond(stored_size, stored, resized)
    return {"stored": clips_u8, "resized": clips_01,
            "is_stored": tf.fill([num_clips], stored_size)}


def normalize_clip_pixels(pixels, cfg):
    """Normalised float32 clips from clip pixels (of one video, or batched
    with ``padded_batch``; rows of both kinds may be mixed).

    Args:
        pixels: dict from :func:`training_clip_pixels` or
            :func:`evaluation_clip_pixels`, possibly batched.
        cfg: VideoClipConfig.

    Returns:
        float32 [N, clip_len, crop, crop, 3], ``video.normalize`` of each
        row's pixels (uint8 as ``x / 255``).
    """
    stored, resized = pixels["stored"], pixels["resized"]
    is_stored = pixels["is_stored"]

    def of(part):
        return lambda: video_ops.normalize(part, cfg.mean, cfg.std)

    def mixed():  # both kinds padded to full clips by padded_batch
        rows = is_stored[:, None, None, None, None]  # [N, 1, 1, 1, 1]
        return tf.where(rows, of(stored)(), of(resized)())

    clips = tf.cond(
        tf.reduce_all(is_stored), of(stored),
        lambda: tf.cond(tf.reduce_any(is_stored), mixed, of(resized)))
    clips.set_shape([None, cfg.clip_len, cfg.crop_size, cfg.crop_size, 3])
    return clips


def _target_rate(cfg):
    return None if cfg.frame_rate is None else float(cfg.frame_rate)


def training_clip_pixels(video, name, seed, cfg):
    """Random clips of one parsed video, cropped and flipped for training,
    not yet normalised (see :func:`training_clips`).

    Args:
        video: output of :func:`parse_video`.
        name: scalar string naming the record (for errors).
        seed: int64 [2] stateless seed of this video and pass.
        cfg: VideoClipConfig.

    Returns:
        (clip pixels (see :func:`normalize_clip_pixels`), labels int32 [C])
        with C = min(candidate clips, clips_per_video).
    """
    where = _describe(name, video["media_id"])
    check = tf.debugging.Assert(
        video["label"] >= 0,
        ["training record has no class index", keys.VIDEO_LABEL_INDEX,
         "or a negative one:", where])
    sample_seed, crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=3))
    with tf.control_dependencies([check]):
        indices = video_ops.clip_indices(
            video["num_frames"], cfg.clip_len, cfg.clips_per_video,
            "random", video["frame_rate"], _target_rate(cfg), sample_seed,
            where)  # [C, T]
    height, width = cfg.resize
    # Clip c's window and flip come from seeds folded with c (as many as a
    # video can have clips; those past C are unused).
    windows = [video_ops.random_crop_window(
        height, width, cfg.crop_size,
        tf.random.experimental.stateless_fold_in(crop_seed, c))
        for c in range(cfg.clips_per_video)]
    tops = tf.stack([top for top, _ in windows])  # [clips_per_video]
    lefts = tf.stack([left for _, left in windows])
    flips = None
    if cfg.flip:
        flips = tf.stack([video_ops.random_flip_decision(
            tf.random.experimental.stateless_fold_in(flip_seed, c))
            for c in range(cfg.clips_per_video)])

    def make_clips(frames, local):
        return video_ops.crop_clips(frames, local, tops, lefts,
                                    cfg.crop_size, flips,
                                    cfg.clips_per_video)

    pixels = _clip_pixels(video, indices, cfg, where, make_clips)
    num_clips = tf.shape(indices)[0]
    return pixels, tf.fill([num_clips], video["label"])


def training_clips(video, name, seed, cfg):
    """Random clips of one parsed video, transformed for training.

    Args:
        video: output of :func:`parse_video`.
        name: scalar string naming the record (for errors).
        seed: int64 [2] stateless seed of this video and pass.
        cfg: VideoClipConfig.

    Returns:
        (clips float32 [C, clip_len, crop, crop, 3], labels int32 [C]) with
        C = min(candidate clips, clips_per_video).
    """
    pixels, labels = training_clip_pixels(video, name, seed, cfg)
    return normalize_clip_pixels(pixels, cfg), labels


def evaluation_clip_pixels(video, name, cfg):
    """Uniform centre-cropped clips of one parsed video, not yet normalised
    (see :func:`evaluation_clips`).

    Returns:
        (clip pixels (see :func:`normalize_clip_pixels`), labels int32
        [clips_per_video]).
    """
    where = _describe(name, video["media_id"])
    indices = video_ops.clip_indices(
        video["num_frames"], cfg.clip_len, cfg.clips_per_video, "uniform",
        video["frame_rate"], _target_rate(cfg), video_id=where)  # [K, T]

    def make_clips(frames, local):
        frames = video_ops.center_crop(frames, cfg.crop_size)  # [U, c, c, 3]
        return tf.gather(frames, local)  # [K, T, crop, crop, 3]

    pixels = _clip_pixels(video, indices, cfg, where, make_clips)
    return pixels, tf.fill([cfg.clips_per_video], video["label"])


def evaluation_clips(video, name, cfg):
    """Uniform clips of one parsed video, transformed for evaluation.

    Returns:
        (clips float32 [clips_per_video, clip_len, crop, crop, 3],
        labels int32 [clips_per_video]).
    """
    pixels, labels = evaluation_clip_pixels(video, name, cfg)
    return normalize_clip_pixels(pixels, cfg), labels


# --------------------------------------------------------------------------- #
# Record streams.
# --------------------------------------------------------------------------- #
_ordered_records = records.ordered_records
_video_seed = records.record_seed


def training_dataset(files, cfg, batch_size, input_context=None, seed=0,
                     shuffle_buffer=64, clip_shuffle_buffer=None,
                     deterministic=False, normalize=True):
    """Shuffled, repeated batches of training clips.

    Shards are shuffled per pass and split between input pipelines
    (``records.training_file_dataset``), read interleaved, and the videos
    shuffled; each video yields up to ``clips_per_video`` random clips
    (decode + resize + random crop + flip + normalise), the clips are
    shuffled again and batched.

    Args:
        files: shard paths.
        cfg: VideoClipConfig.
        batch_size: clips per batch (per replica).
        input_context: tf.distribute.InputContext (per-worker sharding).
        seed: seed of the shard/record/clip shuffles and of the clip
            sampling and augmentation (stateless: each video's clips depend
            on the seed, the record and the pass over its shard).
        shuffle_buffer: videos (serialized records, i.e. their JPEG bytes:
            about 1-3 MB for 10 s of 128-pixel frames) in the shuffle
            buffer; the first batch waits until it is full.
        clip_shuffle_buffer: clips in the clip shuffle buffer (each
            ``clip_len x crop x crop x 3`` uint8 when frames are stored at
            the resize size, 0.6 MB at 16x112x112, else float32, 2.4 MB);
            default ``max(2 * batch_size, 4 * clips_per_video)``.
        deterministic: keep a fixed element order at the cost of some
            parallelism (then the batches are reproducible with ``seed``).
        normalize: True: float32 clips. False: the batch's clip pixels
            (uint8 where frames are stored at the resize size) for the
            model's step to normalise with :func:`normalize_clip_pixels` on
            the accelerator: the host then skips its largest stage after
            decoding and sends a quarter of the bytes.

    Returns:
        tf.data.Dataset of (float32 [batch_size, clip_len, crop, crop, 3]
        or the clip pixels dict, int32 [batch_size]).
    """
    if clip_shuffle_buffer is None:
        clip_shuffle_buffer = max(2 * batch_size, 4 * cfg.clips_per_video)
    ds = records.training_records(files, input_context, seed, deterministic)
    ds = ds.shuffle(shuffle_buffer, seed=seed)

    def make(serialized, name, file_pass):
        video = parse_video(serialized, name)
        return training_clip_pixels(video, name,
                                    _video_seed(seed, name, file_pass), cfg)

    ds = ds.map(make, num_parallel_calls=AUTOTUNE,
                deterministic=deterministic)
    ds = ds.unbatch()
    ds = ds.shuffle(clip_shuffle_buffer, seed=seed + 1)
    # Pixels travel as uint8 when frames are stored at the resize size and
    # are normalised per batch (normalising per video, then copying float32
    # clips through unbatch and batch cost a quarter of the decode time).
    ds = ds.padded_batch(batch_size, drop_remainder=True)
    if normalize:
        ds = ds.map(lambda pixels, labels: (
            normalize_clip_pixels(pixels, cfg), labels),
            num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    return ds.prefetch(AUTOTUNE)


def evaluation_dataset(files, cfg, batch_size, normalize=True):
    """Every video once, in file order, as padded batches of uniform clips.

    Args:
        files: shard paths (the order defines ``video_index``).
        cfg: VideoClipConfig (``flip`` is ignored).
        batch_size: clips per batch.
        normalize: True: float32 clips; False: clip pixels for the model's
            step to normalise (see :func:`training_dataset`).

    Returns:
        tf.data.Dataset of (clips float32 [batch_size, clip_len, crop, crop,
        3] or the clip pixels dict, labels int32 [batch_size], video_index
        int64 [batch_size], mask bool [batch_size]); each video gives
        ``clips_per_video`` consecutive rows; padding rows have mask False,
        label 0 and video_index -1.
    """
    ds = _ordered_records(files).enumerate()

    def make(index, serialized, name):
        pixels, labels = evaluation_clip_pixels(parse_video(serialized, name),
                                                name, cfg)
        return pixels, labels, tf.fill([cfg.clips_per_video], index)

    ds = ds.map(lambda index, record: make(index, *record),
                num_parallel_calls=AUTOTUNE, deterministic=True)
    # uint8 pixels through unbatch and batch, normalised per batch (see
    # training_dataset).
    ds = ds.unbatch().padded_batch(batch_size)

    def pad(pixels, labels, video_index):
        clips = normalize_clip_pixels(pixels, cfg) if normalize else pixels
        (clips, labels, video_index), mask = records.pad_batch(
            (clips, labels, video_index), batch_size)
        if not normalize:  # padding rows of the first row's kind
            kind = clips["is_stored"]
            clips["is_stored"] = tf.where(mask, kind, kind[0])
        video_index = tf.where(mask, video_index, tf.constant(-1, tf.int64))
        return clips, labels, video_index, mask

    return ds.map(pad, num_parallel_calls=AUTOTUNE,
                  deterministic=True).prefetch(AUTOTUNE)


def video_ids(files):
    """Media ids of the videos in ``evaluation_dataset`` order.

    Returns:
        list of str; ``video_ids(files)[video_index]`` names a video.
    """
    context = {keys.VIDEO_MEDIA_ID: tf.io.FixedLenFeature(
        [], tf.string, default_value="")}

    def media_id(serialized, name):
        ctx, _ = tf.io.parse_single_sequence_example(
            serialized, context_features=context, example_name=name)
        return ctx[keys.VIDEO_MEDIA_ID]

    ds = _ordered_records(files).map(media_id, num_parallel_calls=AUTOTUNE,
                                     deterministic=True).batch(1024)
    return [v.decode("utf-8") for batch in ds.as_numpy_iterator()
            for v in batch]


def num_videos(files):
    """Videos in the shards: from the converters' manifests when they list
    every shard, else by counting records."""
    files = list(files)
    count = records.manifest_record_count(files)
    return records.count_records(files) if count is None else count
