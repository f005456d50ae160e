"""Frame decoding, clip sampling and clip augmentation (plain TF ops).

Every function here is an ordinary TensorFlow function: it runs eagerly and
inside ``tf.data`` / ``tf.function`` graphs, with dynamic frame counts and
frame sizes. Randomness is stateless (``tf.random.stateless_*`` with an
explicit ``[2]`` integer seed), so a reader built on these ops is
reproducible with a seed.

The sampling rules are those of torchvision's video datasets
(``VideoClips`` with ``frames_between_clips=1``, ``RandomClipSampler`` for
training and ``UniformClipSampler`` for evaluation), and the transforms those
of torchvision's video-classification recipe, with one deliberate
difference: torchvision drops videos that are shorter than one clip after
frame-rate resampling; here such videos are kept and their clips are padded
by repeating the last frame (see :func:`clip_indices`).

Frames are channels-last: ``[T, H, W, 3]``.
"""

import tensorflow as tf

# Kinetics clip normalisation (torchvision video-classification recipe),
# applied to RGB in [0, 1].
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

# Start of every JPEG file (SOI marker followed by the first segment marker).
_JPEG_SOI = b"\xff\xd8"


def _message_parts(video_id):
    """Suffix naming the video in assertion messages (may be empty)."""
    if video_id is None:
        return []
    return ["(video", video_id, ")"]


def _size_pair(size, name):
    """int or (h, w) -> (h, w) python ints."""
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"{name} must be an int or (height, width), got "
                         f"{size!r}")
    return size


# --------------------------------------------------------------------------- #
# Decoding.
# --------------------------------------------------------------------------- #
def decode_frames(jpegs, video_id=None):
    """Decodes the JPEG frames of one video (or of its sampled clips).

    Uses libjpeg's accurate integer DCT (``INTEGER_ACCURATE``), the method
    PIL uses by default, so frames equal ``PIL.Image.open`` decodes.

    Each frame's size is checked against the first frame's inside the one
    decoding loop (a second loop over the frames only to read their headers
    cost about 10% of the decoding time).

    Args:
        jpegs: string [T], one JPEG image per frame, all of one size.
        video_id: optional scalar string named in error messages.

    Returns:
        uint8 [T, H, W, 3] (grayscale JPEGs are expanded to RGB).

    Raises (eagerly, or when the dataset runs):
        InvalidArgumentError naming the video when a frame is not a JPEG or
        the frames differ in size.
    """
    jpegs = tf.convert_to_tensor(jpegs, tf.string)
    is_jpeg = tf.equal(tf.strings.substr(jpegs, 0, 2), _JPEG_SOI)
    check = tf.debugging.Assert(
        tf.reduce_all(is_jpeg),
        ["frames are not JPEG images (no JPEG start-of-image marker) at",
         "positions", tf.where(tf.logical_not(is_jpeg))[:, 0]]
        + _message_parts(video_id), summarize=5)

    def decode():
        with tf.control_dependencies([check]):
            first = tf.io.extract_jpeg_shape(jpegs[0])[:2]  # [2]

        def one(args):
            position, jpeg = args
            frame = tf.io.decode_jpeg(jpeg, channels=3,
                                      dct_method="INTEGER_ACCURATE")
            size = tf.shape(frame)[:2]
            same = tf.debugging.Assert(
                tf.reduce_all(tf.equal(size, first)),
                ["frames of one video differ in size: frame", position,
                 "is (height, width)", size, "but frame 0 is", first]
                + _message_parts(video_id))
            with tf.control_dependencies([same]):
                return tf.identity(frame)

        return tf.map_fn(
            one, (tf.range(tf.size(jpegs)), jpegs),
            fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))

    frames = tf.cond(tf.size(jpegs) > 0, decode,
                     lambda: tf.zeros([0, 0, 0, 3], tf.uint8))
    return frames  # [T, H, W, 3]


def decode_selected(jpegs, indices, video_id=None):
    """Decodes only the frames that ``indices`` select, each distinct frame
    once (clips of a video may share frames).

    Args:
        jpegs: string [N], one JPEG per stored frame.
        indices: int [...] positions in ``jpegs`` (all valid).
        video_id: optional scalar string named in error messages.

    Returns:
        (frames uint8 [U, H, W, 3], the distinct selected frames decoded by
        :func:`decode_frames`; local int32 with the shape of ``indices``,
        each index's row in ``frames``).
    """
    indices = tf.convert_to_tensor(indices, tf.int32)
    flat = tf.reshape(indices, [-1])  # [prod(indices.shape)]
    unique, local = tf.unique(flat)
    local = tf.reshape(local, tf.shape(indices))  # indices.shape
    frames = decode_frames(tf.gather(jpegs, unique), video_id)  # [U, H, W, 3]
    return frames, local


# --------------------------------------------------------------------------- #
# Temporal sampling.
# --------------------------------------------------------------------------- #
def _is_python_zero_or_none(value):
    return value is None or (isinstance(value, (int, float))
                             and float(value) == 0.0)


def resample_indices(num_frames, source_fps, target_fps=None,
                     video_id=None):
    """Frame indices that change a video's frame rate (torchvision's rule).

    With ``step = source_fps / target_fps`` (float64):

    * ``step`` an integer: every ``step``-th frame, ``range(0, n, step)``
      (torchvision's strided-slice shortcut; ``ceil(n / step)`` frames);
    * otherwise ``floor(arange(m) * step)`` in float32 with
      ``m = floor(n * target_fps / source_fps)`` (frames are repeated when
      ``target_fps > source_fps``).

    ``target_fps`` None or 0 keeps every frame.

    Args:
        num_frames: int scalar, frames stored for the video.
        source_fps: float scalar, their frame rate (> 0 when resampling).
        target_fps: float scalar, None or 0 for no resampling.
        video_id: optional scalar string named in error messages.

    Returns:
        int32 [M] indices into the stored frames.
    """
    num_frames = tf.cast(num_frames, tf.int32)
    identity = tf.range(num_frames)
    if _is_python_zero_or_none(target_fps):
        return identity
    target = tf.cast(target_fps, tf.float64)
    source = tf.cast(source_fps, tf.float64)

    def resampled():
        check = tf.debugging.Assert(
            source > 0, ["resampling to", target,
                         "fps needs the stored frame rate",
                         "(source_fps) > 0, got", source]
            + _message_parts(video_id))
        with tf.control_dependencies([check]):
            step = source / target
        is_integer = tf.equal(step, tf.floor(step))

        def strided():
            return tf.range(0, num_frames, tf.cast(step, tf.int32))

        def floored():
            count = tf.cast(tf.floor(tf.cast(num_frames, tf.float64)
                                     * target / source), tf.int32)
            positions = tf.range(count, dtype=tf.float32) * tf.cast(
                step, tf.float32)
            return tf.cast(tf.floor(positions), tf.int32)

        return tf.cond(is_integer, strided, floored)

    return tf.cond(target > 0, resampled, lambda: identity)


def frames_at_times(times, start_time, frame_rate, num_frames):
    """Stored frames that show given times (nearest frame).

    Stored frame k shows ``start_time + k / frame_rate``; time t maps to
    ``k = floor((t - start_time) * frame_rate + 0.5)`` (float64; halves
    round up, as ffmpeg's fps filter rounds), which also resamples when the
    times' rate differs from the stored one.
    Times before the first frame show frame 0; times past the last frame
    are marked invalid (callers zero those frames).

    Args:
        times: float [...] seconds on the stored frames' timeline.
        start_time: float scalar, time of stored frame 0.
        frame_rate: float scalar > 0, stored frames per second.
        num_frames: int scalar > 0, stored frames.

    Returns:
        (indices int32 [...] in [0, num_frames - 1] (invalid positions hold
        the last frame, so that decoding them costs nothing extra), valid
        bool [...]).
    """
    offsets = (tf.cast(times, tf.float64) - tf.cast(start_time, tf.float64)
               ) * tf.cast(frame_rate, tf.float64)
    k = tf.cast(tf.floor(offsets + 0.5), tf.int64)
    count = tf.cast(num_frames, tf.int64)
    valid = k < count
    indices = tf.clip_by_value(k, 0, tf.maximum(count - 1, 0))
    return tf.cast(indices, tf.int32), valid


def _check_has_frames(num_frames, video_id):
    return tf.debugging.Assert(
        num_frames > 0, ["video has no frames"] + _message_parts(video_id))


def num_candidate_clips(num_frames, clip_len):
    """Clip start positions 0..num_frames-clip_len (one clip per start,
    ``frames_between_clips=1``); 1 for videos shorter than ``clip_len``
    (that clip is padded)."""
    return tf.maximum(tf.cast(num_frames, tf.int32) - clip_len + 1, 1)


def clip_starts_random(num_frames, clip_len, num_clips, seed,
                       video_id=None):
    """Random clip starts for training (torchvision's RandomClipSampler).

    Every start ``0..num_frames-clip_len`` is a candidate clip; at most
    ``num_clips`` distinct ones are drawn uniformly without replacement (all
    of them when there are fewer). A video shorter than ``clip_len`` has the
    single candidate 0 (torchvision drops it; its clip is padded here).

    Args:
        num_frames: int scalar, frames after resampling (> 0).
        clip_len: frames per clip (python int).
        num_clips: clips to draw (python int, clips_per_video).
        seed: int [2] stateless seed.
        video_id: optional scalar string named in error messages.

    Returns:
        int32 [min(candidates, num_clips)] distinct starts, ascending.
    """
    num_frames = tf.cast(num_frames, tf.int32)
    with tf.control_dependencies([_check_has_frames(num_frames, video_id)]):
        candidates = num_candidate_clips(num_frames, clip_len)
    drawn = tf.random.experimental.stateless_shuffle(tf.range(candidates),
                                                     seed=seed)
    return tf.sort(drawn[:tf.minimum(candidates, num_clips)])


def clip_starts_uniform(num_frames, clip_len, num_clips, video_id=None):
    """Evenly spaced clip starts for evaluation (UniformClipSampler).

    ``floor(linspace(0, candidates - 1, num_clips))`` computed in float32
    exactly as ``torch.linspace`` does (first half ``start + i * step``,
    second half ``end - (num_clips - 1 - i) * step``); starts repeat when
    the video has fewer than ``num_clips`` candidate clips.

    Args:
        num_frames: int scalar, frames after resampling (> 0).
        clip_len: frames per clip (python int).
        num_clips: clips per video (python int).
        video_id: optional scalar string named in error messages.

    Returns:
        int32 [num_clips] starts, non-decreasing.
    """
    num_frames = tf.cast(num_frames, tf.int32)
    with tf.control_dependencies([_check_has_frames(num_frames, video_id)]):
        end = tf.cast(num_candidate_clips(num_frames, clip_len) - 1,
                      tf.float32)
    if num_clips == 1:
        return tf.zeros([1], tf.int32)
    step = end / float(num_clips - 1)
    i = tf.range(num_clips, dtype=tf.float32)
    half = num_clips // 2
    values = tf.where(tf.range(num_clips) < half, i * step,
                      end - step * (float(num_clips - 1) - i))
    return tf.cast(tf.floor(values), tf.int32)


def clip_frame_indices(frame_indices, starts, clip_len, video_id=None):
    """Stored-frame indices of clips: ``frame_indices[s : s + clip_len]``.

    Positions past the end repeat the last frame (short videos).

    Args:
        frame_indices: int [M] (from :func:`resample_indices`), M > 0.
        starts: int [C] clip starts in ``frame_indices``.
        clip_len: frames per clip.
        video_id: optional scalar string named in error messages.

    Returns:
        int32 [C, clip_len].
    """
    frame_indices = tf.cast(frame_indices, tf.int32)
    count = tf.size(frame_indices)
    with tf.control_dependencies([_check_has_frames(count, video_id)]):
        positions = (tf.cast(starts, tf.int32)[:, None]
                     + tf.range(clip_len)[None, :])  # [C, clip_len]
    return tf.gather(frame_indices, tf.minimum(positions, count - 1))


def clip_indices(num_frames, clip_len, num_clips, mode, source_fps=None,
                 target_fps=None, seed=None, video_id=None):
    """Stored-frame indices of a video's sampled clips (the whole rule).

    1. fail, naming the video, if it has no frames;
    2. resample to ``target_fps`` (:func:`resample_indices`); if that leaves
       no frame (a very short video at a lower rate), keep frame 0;
    3. draw starts (:func:`clip_starts_random` for ``mode="random"``,
       :func:`clip_starts_uniform` for ``mode="uniform"``);
    4. take ``clip_len`` consecutive resampled frames per start, repeating
       the last frame past the end (videos shorter than one clip are kept
       and padded; torchvision would drop them).

    Args:
        num_frames: int scalar, stored frames.
        clip_len, num_clips: python ints.
        mode: "random" (training) or "uniform" (evaluation).
        source_fps, target_fps: see :func:`resample_indices`.
        seed: int [2], required for "random".
        video_id: optional scalar string named in error messages.

    Returns:
        int32 [C, clip_len]; C = num_clips for "uniform", at most num_clips
        for "random".
    """
    if mode not in ("random", "uniform"):
        raise ValueError(f"mode must be 'random' or 'uniform', got {mode!r}")
    if mode == "random" and seed is None:
        raise ValueError("mode='random' needs a seed")
    num_frames = tf.cast(num_frames, tf.int32)
    with tf.control_dependencies([_check_has_frames(num_frames, video_id)]):
        resampled = resample_indices(num_frames, source_fps, target_fps,
                                     video_id)
    resampled = tf.cond(tf.size(resampled) > 0, lambda: resampled,
                        lambda: tf.zeros([1], tf.int32))
    count = tf.size(resampled)
    if mode == "random":
        starts = clip_starts_random(count, clip_len, num_clips, seed,
                                    video_id)
    else:
        starts = clip_starts_uniform(count, clip_len, num_clips, video_id)
    return clip_frame_indices(resampled, starts, clip_len, video_id)


# --------------------------------------------------------------------------- #
# Spatial transforms.
# --------------------------------------------------------------------------- #
def to_float(frames):
    """uint8 -> float32 in [0, 1] (``x / 255``, torchvision's
    ConvertImageDtype); float inputs are cast to float32 unchanged."""
    frames = tf.convert_to_tensor(frames)
    if frames.dtype == tf.uint8:
        return tf.cast(frames, tf.float32) / 255.0
    return tf.cast(frames, tf.float32)


def resize(frames, size=(128, 171), antialias=False):
    """Resizes frames to exactly ``size`` (the recipe's ``Resize((128,
    171))``), bilinear.

    uint8 frames are first converted to float32 in [0, 1] (the recipe
    converts before resizing, so nothing is rounded back to uint8).
    ``antialias=False`` is the recipe's choice (torchvision's
    video-classification presets hard-code it, although
    ``transforms.Resize`` defaults to ``antialias=True`` for tensors since
    0.17): plain bilinear interpolation with half-pixel centres, equal to
    ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)``. ``antialias=True`` gives torchvision's
    antialiased bilinear (triangle filter widened by the downscale factor).

    Args:
        frames: uint8 or float [..., H, W, 3] (e.g. [T, H, W, 3]).
        size: (height, width).
        antialias: see above.

    Returns:
        float32 [..., size[0], size[1], 3].
    """
    height, width = _size_pair(size, "size")
    frames = to_float(frames)
    shape = tf.shape(frames)
    same = tf.logical_and(tf.equal(shape[-3], height),
                          tf.equal(shape[-2], width))
    return tf.cond(
        same, lambda: frames,
        lambda: tf.image.resize(frames, (height, width), method="bilinear",
                                antialias=antialias))


def _check_crop(frames, height, width):
    shape = tf.shape(frames)
    return tf.debugging.Assert(
        tf.logical_and(shape[-3] >= height, shape[-2] >= width),
        [f"cannot crop {height}x{width} from frames of height x width",
         shape[-3], shape[-2]])


def random_crop_window(frame_height, frame_width, size, seed):
    """Top-left corner of a random crop (torchvision RandomCrop: top uniform
    in [0, H - h], left uniform in [0, W - w]).

    Args:
        frame_height, frame_width: int32 scalars, the frames' size.
        size: int or (h, w).
        seed: int [2] stateless seed.

    Returns:
        (top, left) int32 scalars.
    """
    height, width = _size_pair(size, "size")
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    top = tf.random.stateless_uniform(
        [], seeds[0], minval=0, maxval=frame_height - height + 1,
        dtype=tf.int32)
    left = tf.random.stateless_uniform(
        [], seeds[1], minval=0, maxval=frame_width - width + 1,
        dtype=tf.int32)
    return top, left


def random_crop(frames, size, seed):
    """One random crop for all frames of a clip (see
    :func:`random_crop_window`).

    Args:
        frames: [..., H, W, C] (e.g. one clip [T, H, W, C]).
        size: int or (h, w); frames must be at least that large.
        seed: int [2] stateless seed.

    Returns:
        [..., h, w, C], same dtype.
    """
    height, width = _size_pair(size, "size")
    frames = tf.convert_to_tensor(frames)
    shape = tf.shape(frames)
    with tf.control_dependencies([_check_crop(frames, height, width)]):
        top, left = random_crop_window(shape[-3], shape[-2], size, seed)
    return frames[..., top:top + height, left:left + width, :]


def center_crop(frames, size):
    """Centre crop (torchvision CenterCrop: top = round((H - h) / 2) and
    left = round((W - w) / 2), rounding halves to even like Python).

    Args:
        frames: [..., H, W, C].
        size: int or (h, w); frames must be at least that large.

    Returns:
        [..., h, w, C], same dtype.
    """
    height, width = _size_pair(size, "size")
    frames = tf.convert_to_tensor(frames)
    shape = tf.shape(frames)
    with tf.control_dependencies([_check_crop(frames, height, width)]):
        top, left = center_crop_window(shape[-3], shape[-2], size)
    return frames[..., top:top + height, left:left + width, :]


def center_crop_window(frame_height, frame_width, size):
    """Top-left corner of the centre crop (see :func:`center_crop`).

    Args:
        frame_height, frame_width: int32 scalars, the frames' size.
        size: int or int32 scalar tensor (a square), or (h, w).

    Returns:
        (top, left) int32 scalars: round((H - h) / 2), round((W - w) / 2).
    """
    height, width = size if isinstance(size, (tuple, list)) else (size, size)
    # tf.round rounds half to even, as Python's round().
    top = tf.cast(tf.round(tf.cast(frame_height - height, tf.float64) / 2),
                  tf.int32)
    left = tf.cast(tf.round(tf.cast(frame_width - width, tf.float64) / 2),
                   tf.int32)
    return top, left


def random_flip_decision(seed, probability=0.5):
    """Whether to flip (torchvision RandomHorizontalFlip: flip when
    ``uniform < p``); bool scalar from an int [2] stateless seed."""
    return tf.random.stateless_uniform([], seed) < probability


def flip_left_right(frames):
    """Mirrors frames along the width axis.

    Args:
        frames: [..., H, W, C].

    Returns:
        the same shape and dtype, ``tf.reverse(frames, [-2])``.
    """
    frames = tf.convert_to_tensor(frames)
    shape = tf.shape(frames)
    # Eigen reverses a middle axis of a rank-3 tensor about three times
    # faster than of the rank-4/5 tensor it views.
    rows = tf.reshape(frames, [-1, shape[-2], shape[-1]])  # [N*H, W, C]
    out = tf.reshape(tf.reverse(rows, axis=[1]), shape)  # [..., H, W, C]
    out.set_shape(frames.shape)
    return out


def random_flip(frames, seed, probability=0.5):
    """Horizontal flip of a whole clip with the given probability (see
    :func:`random_flip_decision`).

    Args:
        frames: [..., H, W, C]; all frames share the decision.
        seed: int [2] stateless seed.
        probability: chance of flipping.

    Returns:
        frames, flipped along W or not.
    """
    frames = tf.convert_to_tensor(frames)
    return tf.cond(random_flip_decision(seed, probability),
                   lambda: flip_left_right(frames), lambda: frames)


def crop_clips(frames, indices, tops, lefts, size, flips=None,
               max_clips=None):
    """Clips gathered from a video's decoded frames, each with its own crop
    window and flip.

    This is the training reader's per-clip augmentation as one op: clips of
    one video share decoded frames (each distinct frame is decoded once),
    so every clip gathers its frames, crops its window and is flipped or
    not. Clips are handled one after another in the graph (unrolled up to
    ``max_clips``), without a ``tf.map_fn`` loop.

    Args:
        frames: [U, H, W, C] (any dtype).
        indices: int32 [N, T], frames of each clip (positions in
            ``frames``); N may be dynamic but at most ``max_clips``.
        tops, lefts: int32 [N], top-left corner of each clip's window.
        size: int or (h, w), the window.
        flips: bool [N], flip each clip (None: no flips).
        max_clips: python int bound on N (default: the static N).

    Returns:
        [N, T, h, w, C], the dtype of ``frames``.
    """
    height, width = _size_pair(size, "size")
    frames = tf.convert_to_tensor(frames)
    indices = tf.convert_to_tensor(indices, tf.int32)
    if max_clips is None:
        max_clips = indices.shape[0]
        if max_clips is None:
            raise ValueError("crop_clips: indices have a dynamic number of "
                             "clips; pass max_clips")
    count = tf.shape(indices)[0]
    clips = []
    for c in range(max_clips):
        # Rows past ``count`` repeat the last clip; they are sliced off.
        row = tf.minimum(c, count - 1)
        top, left = tops[row], lefts[row]
        clip = tf.gather(frames, indices[row])  # [T, H, W, C]
        clip = clip[:, top:top + height, left:left + width, :]  # [T, h, w, C]
        if flips is not None:
            clip = tf.cond(flips[row], lambda x=clip: flip_left_right(x),
                           lambda x=clip: x)
        clips.append(clip)
    with tf.control_dependencies([_check_crop(frames, height, width)]):
        out = tf.stack(clips)[:count]  # [N, T, h, w, C]
    out.set_shape([indices.shape[0], indices.shape[1], height, width,
                   frames.shape[-1]])
    return out


def normalize(frames, mean=KINETICS_MEAN, std=KINETICS_STD):
    """``(x - mean) / std`` per channel (last axis), in float32.

    Args:
        frames: float [..., W, C] (rank >= 2) in [0, 1] (uint8 is converted
            first, ``x / 255``).
        mean, std: C values each (defaults: the Kinetics recipe's).

    Returns:
        float32 frames.
    """
    frames = to_float(frames)
    channels = frames.shape[-1] if frames.shape.rank else None
    if channels is not None and channels != len(mean):
        raise ValueError(f"normalize: frames have {channels} channels but "
                         f"mean/std have {len(mean)} values")
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)
    shape = tf.shape(frames)
    # Broadcasting a 3-vector over the last axis is slow in Eigen; the same
    # arithmetic over rows of W*C values with the vectors tiled W times is
    # several times faster (and bit-identical).
    width = shape[-2]
    rows = tf.reshape(frames, [-1, width * tf.size(mean)])  # [N*H, W*C]
    rows = (rows - tf.tile(mean, [width])) / tf.tile(std, [width])
    out = tf.reshape(rows, shape)  # [..., W, C]
    out.set_shape(frames.shape)
    return out
