"""tf.data readers for AVLnet (audio-video and audio-video-text embeddings).

AVLnet (Rouditchenko et al., Interspeech 2021) reads the HowTo100M records
of ``input_pipeline.howto`` with each record's log-mel spectrogram added
(AVLnet section of ``input_pipeline.features``: time-major float16 bytes,
100 frames per second). Only the bytes of the frames a clip needs are
decoded: one ``substr`` per clip cuts its window out of its video's
spectrogram, and ``decode_raw(fixed_length=...)`` decodes it zero-padded to
the window length (the original's ``_zero_pad_audio``).

Two samplers for **videos** records, per the original's
``random_audio_windows`` flag (``youtube_dataloader.py``); both draw
``n_pair`` clips per video, the pairs of a video contiguous:

* ``random_audio_windows=True`` (AVLnet): with T the video's spectrogram
  frames, ``video_seconds = int(frames_to_time(T))`` and
  ``audio_seconds = int(frames_to_time(audio_frames))``, each clip's start
  second is uniform in ``range(max(1, video_seconds - (audio_seconds +
  1)))`` (with replacement); its audio is ``audio_frames`` frames from
  ``max(0, time_to_frames(start))``, zero-padded where the video ends
  (``nframes`` = the real ones); its video is each stream max-pooled over
  ``[start, start + audio_seconds]`` seconds with HowTo100M's rules
  (frames ``[int(s * rate), int(e * rate) + 1)``, L2-normalised, zeros
  when the span holds no frame).
* ``random_audio_windows=False`` (the text variants): HowTo100M's caption
  spans (``howto.sample_clips``: a drawn caption grown by neighbours to
  ``min_time``), the span's video features and words as HowTo100M, and
  audio frames ``[time_to_frames(start), time_to_frames(end))`` padded or
  truncated to ``audio_frames``. One deliberate difference: a span that
  starts before 0.0125 s has a negative first frame (-1 or -2), with which
  the original's Python slice ``mel[:, -2:end]`` counts from the END of the
  spectrogram and so yields nothing (a silent all-padding clip with
  ``nframes`` 0); here the first frame is clamped to 0, so such a clip
  gets the audio of its span.

**clips** records (YouCook2, MSR-VTT, CrossTask, YouCook-Japanese: one
Example per clip with its pooled features and spectrogram): the first
``eval_audio_frames`` frames (``1024 * multiplier``: 5,120 for YouCook2 and
CrossTask, 3,072 for MSR-VTT), zero-padded. ``nframes`` is
``min(frames, eval_audio_frames)``; the original passes the unclipped frame
count, which the model's pooling (``max(1, nframes // 16)`` steps, at most
the steps there are) treats the same. A clip stored without audio (MSR-VTT
test clips whose videos have no audio track) comes out with zeros,
``nframes`` 0 and ``has_audio`` False, so evaluation can count it as a
miss.

Batches: ``({"video": float32 [N, feature_dim], "audio": float32
[N, 40, frames], "nframes": int32 [N], "text": float32 [N, max_words,
we_dim] (only with ``needs_text``)}, labels)``.
"""

import dataclasses

import tensorflow as tf

from input_pipeline import features as keys
from input_pipeline import howto
from input_pipeline import records
from vidcore import audio as core_audio

AUTOTUNE = tf.data.AUTOTUNE
FRAME_BYTES = 2 * core_audio.NUM_MEL_BINS  # one float16 frame of 40 bands


@dataclasses.dataclass
class AVLClipConfig(howto.ClipConfig):
    """How AVLnet clips are made (HowTo100M's ClipConfig plus audio).

    Attributes:
        audio_frames: spectrogram frames per HowTo100M clip
            (``--howto_audio_frames``).
        random_audio_windows: True: random whole-second windows (AVLnet);
            False: HowTo100M's caption spans (the text variants).
        needs_text: produce word vectors ("text"; the text variants).
        eval_audio_frames: frames per clip of clip records (downstream
            sets: ``1024 * --youcook_num_frames_multiplier`` or
            ``1024 * --msrvtt_num_frames_multiplier``).
    """

    audio_frames: int = 1024
    random_audio_windows: bool = True
    needs_text: bool = False
    eval_audio_frames: int = 5 * 1024

    def check(self):
        """Raises ValueError for a setting out of range."""
        if self.audio_frames < 1 or self.eval_audio_frames < 1:
            raise ValueError(
                f"audio frames must be >= 1, got audio_frames="
                f"{self.audio_frames}, eval_audio_frames="
                f"{self.eval_audio_frames}")
        if self.n_pair < 1:
            raise ValueError(f"n_pair must be >= 1, got {self.n_pair}")


# --------------------------------------------------------------------------- #
# Parsing.
# --------------------------------------------------------------------------- #
def _video_audio_spec():
    """Context features of a videos-record's spectrogram (required)."""
    return {
        keys.AVL_SPECTROGRAM: tf.io.FixedLenFeature([], tf.string),
        keys.AVL_SPECTROGRAM_FRAMES: tf.io.FixedLenFeature([], tf.int64),
        keys.AVL_SPECTROGRAM_BINS: tf.io.FixedLenFeature(
            [], tf.int64, default_value=core_audio.NUM_MEL_BINS),
    }


def _clip_audio_spec():
    """Features of a clip-record's spectrogram (absent: a clip without
    audio)."""
    return {
        keys.AVL_SPECTROGRAM: tf.io.FixedLenFeature([], tf.string,
                                                    default_value=""),
        keys.AVL_SPECTROGRAM_FRAMES: tf.io.FixedLenFeature(
            [], tf.int64, default_value=0),
        keys.AVL_SPECTROGRAM_BINS: tf.io.FixedLenFeature(
            [], tf.int64, default_value=core_audio.NUM_MEL_BINS),
    }


def _bins_check(bins):
    return tf.debugging.assert_equal(
        bins, tf.constant(core_audio.NUM_MEL_BINS, tf.int64),
        message=f"spectrogram bands differ from "
                f"{core_audio.NUM_MEL_BINS} (convert the audio with "
                f"tfrecord_tools.howto_writer --features_path_audio)")


def parse_video_batch(serialized, cfg):
    """Parses a batch of AVLnet videos-records in one op.

    Args:
        serialized: tf.string [B].
        cfg: AVLClipConfig.

    Returns:
        ``howto.parse_video_batch``'s dict plus "spectrogram" string [B]
        (time-major float16 bytes) and "audio_frames" int32 [B] (valid
        frames, clamped to the stored ones).
    """
    videos = howto.parse_video_batch(serialized, cfg, _video_audio_spec())
    data = videos.pop(keys.AVL_SPECTROGRAM)
    with tf.control_dependencies(
            [_bins_check(videos.pop(keys.AVL_SPECTROGRAM_BINS))]):
        stored = tf.strings.length(data) // FRAME_BYTES  # [B]
        valid = tf.cast(videos.pop(keys.AVL_SPECTROGRAM_FRAMES), tf.int32)
        videos["spectrogram"] = data
        videos["audio_frames"] = tf.minimum(valid, stored)
    return videos


def decode_windows(data, valid, first, count, frames):
    """Spectrogram windows of a batch of videos, decoding only their bytes.

    Window (b, p) holds frames ``[first, first + count)`` of video b, cut to
    its ``valid`` frames and to ``frames``, zero-padded to ``frames``.

    Args:
        data: tf.string [B] spectrograms (time-major float16 bytes).
        valid: int [B] valid frames of each.
        first: int [B, P] first frame of each window (negative counts as 0).
        count: int [B, P] frames wanted.
        frames: python int, the window length.

    Returns:
        (float32 [B * P, 40, frames], int32 [B * P] real frames), windows
        of a video contiguous.
    """
    valid = tf.cast(valid, tf.int32)[:, None]  # [B, 1]
    first = tf.clip_by_value(tf.cast(first, tf.int32), 0, valid)  # [B, P]
    count = tf.clip_by_value(tf.cast(count, tf.int32), 0,
                             tf.minimum(valid - first, frames))  # [B, P]
    # [B, 1] broadcast against [B, P]: no copy of a whole spectrogram.
    windows = tf.strings.substr(data[:, None], first * FRAME_BYTES,
                                count * FRAME_BYTES)  # [B, P]
    # The padded decode has no float16 kernel: decode the 16-bit words and
    # reinterpret them (zero bits are +0.0).
    # The transpose moves 16-bit words, half the bytes of float32.
    words = tf.io.decode_raw(windows, tf.uint16, little_endian=True,
                             fixed_length=frames * FRAME_BYTES)
    # [B, P, frames * 40] -> [B * P, frames, 40] -> [B * P, 40, frames]
    words = tf.reshape(words, [-1, frames, core_audio.NUM_MEL_BINS])
    words = tf.transpose(words, [0, 2, 1])
    audio = tf.cast(tf.bitcast(words, tf.float16), tf.float32)
    return audio, tf.reshape(count, [-1])


# --------------------------------------------------------------------------- #
# Sampling.
# --------------------------------------------------------------------------- #
def audio_window_seconds(audio_frames):
    """``int(frames_to_time(audio_frames))``: whole seconds of a window."""
    return int((audio_frames * core_audio.HOP_LENGTH
                + core_audio.N_FFT // 2) / core_audio.SAMPLE_RATE)


def random_start_seconds(num_frames, seed, n_pair, audio_frames):
    """The original's random window starts, uniform with replacement.

    Args:
        num_frames: int [B] spectrogram frames of each video.
        seed: int64 [2] stateless seed.
        n_pair: windows per video.
        audio_frames: frames per window.

    Returns:
        int32 [B, n_pair] start seconds in
        ``range(max(1, video_seconds - (audio_seconds + 1)))``.
    """
    # int(frames_to_time(T)) = floor((160 T + 200) / 16000) for T >= 0.
    video_seconds = tf.cast(tf.math.floor(core_audio.frames_to_time(
        num_frames)), tf.int64)  # [B]
    choices = tf.maximum(
        video_seconds - (audio_window_seconds(audio_frames) + 1), 1)
    draws = tf.random.stateless_uniform(
        [tf.size(num_frames), n_pair], seed=seed, minval=None, maxval=None,
        dtype=tf.int64)  # [B, P], full-range int64 (bias < choices / 2**64)
    return tf.cast(tf.math.floormod(draws, choices[:, None]), tf.int32)


def sample_random_windows(videos, seed, cfg):
    """``random_audio_windows=True``: n_pair random windows per video.

    Args:
        videos: :func:`parse_video_batch` output (B videos).
        seed: int64 [2] stateless seed.
        cfg: AVLClipConfig.

    Returns:
        dict "video" float32 [B * P, feature_dim], "audio" float32
        [B * P, 40, audio_frames], "nframes" int32 [B * P], "start"/"end"
        float32 [B * P] seconds.
    """
    num_videos = tf.size(videos["audio_frames"])
    start = random_start_seconds(videos["audio_frames"], seed, cfg.n_pair,
                                 cfg.audio_frames)  # [B, P]
    first = tf.maximum(core_audio.time_to_frames(start), 0)  # [B, P]
    audio, nframes = decode_windows(
        videos["spectrogram"], videos["audio_frames"], first,
        tf.fill(tf.shape(start), cfg.audio_frames), cfg.audio_frames)
    span_start = tf.cast(tf.reshape(start, [-1]), tf.float32)  # [B*P]
    span_end = span_start + audio_window_seconds(cfg.audio_frames)
    video = tf.repeat(tf.range(num_videos), cfg.n_pair)  # [B*P]
    return {"video": howto.pool_video_spans(videos, video, span_start,
                                            span_end, cfg),
            "audio": audio, "nframes": nframes,
            "start": span_start, "end": span_end}


def sample_caption_spans(videos, seed, cfg, encoder):
    """``random_audio_windows=False``: HowTo100M's caption spans with the
    audio of each span (module docstring).

    Args:
        videos: :func:`parse_video_batch` output (B videos).
        seed: int64 [2] stateless seed.
        cfg: AVLClipConfig.
        encoder: vidcore.text.TextEncoder.

    Returns:
        ``howto.sample_clips``'s dict ("video", "ids", "caption", "start",
        "end") plus "audio" float32 [B * P, 40, audio_frames] and "nframes"
        int32 [B * P].
    """
    clips = howto.sample_clips(videos, seed, cfg, encoder)
    # [B*P] -> [B, P]: the pairs of a video are contiguous.
    first = tf.reshape(core_audio.time_to_frames(clips["start"]),
                       [-1, cfg.n_pair])
    last = tf.reshape(core_audio.time_to_frames(clips["end"]),
                      [-1, cfg.n_pair])
    first = tf.maximum(first, 0)  # the original's slice wraps (docstring)
    clips["audio"], clips["nframes"] = decode_windows(
        videos["spectrogram"], videos["audio_frames"], first, last - first,
        cfg.audio_frames)
    return clips


def parse_clip(serialized, cfg):
    """Parses one AVLnet clips-record.

    Returns:
        ``howto.parse_clip``'s dict plus "audio" float32
        [40, eval_audio_frames], "nframes" int32 and "has_audio" bool.
    """
    clip = howto.parse_clip(serialized, cfg, _clip_audio_spec())
    data = clip.pop(keys.AVL_SPECTROGRAM)
    valid = tf.cast(clip.pop(keys.AVL_SPECTROGRAM_FRAMES), tf.int32)
    with tf.control_dependencies(
            [_bins_check(clip.pop(keys.AVL_SPECTROGRAM_BINS))]):
        spectrogram = core_audio.decode_spectrogram(
            data, start=0, max_frames=cfg.eval_audio_frames)  # [40, n]
    clip["audio"], stored = core_audio.pad_or_truncate(
        spectrogram, cfg.eval_audio_frames)
    clip["nframes"] = tf.minimum(valid, stored)
    clip["has_audio"] = clip["nframes"] > 0
    return clip


# --------------------------------------------------------------------------- #
# Datasets.
# --------------------------------------------------------------------------- #
def _features(out, cfg, encoder, ids=None):
    """The model's input dict from sampled clips."""
    features = {"video": out["video"], "audio": out["audio"],
                "nframes": out["nframes"]}
    if cfg.needs_text:
        features["text"] = encoder.vectors(ids)
    return features


def training_dataset(files, kind, cfg, encoder, batch_size,
                     input_context=None, seed=0, shuffle_buffer=1024):
    """Shuffled, repeated batches of (features, dummy labels).

    Args:
        files: shard paths.
        kind: "videos" (HowTo100M records with spectrograms: cfg.n_pair
            clips per video) or "clips" (one clip per record; one of its
            captions with ``needs_text``).
        cfg: AVLClipConfig.
        encoder: vidcore.text.TextEncoder (needed with ``needs_text`` or
            caption spans; else may be None).
        batch_size: videos (or clips) per replica per step.
        input_context: tf.distribute.InputContext.
        seed: shuffle / sampling seed.
        shuffle_buffer: records in the shuffle buffer.

    Returns:
        tf.data.Dataset of ({"video": [N, F], "audio": [N, 40, A],
        "nframes": [N], "text": [N, W, we_dim] (needs_text)}, int32
        [batch_size]) with N = batch_size * n_pair and A = audio_frames
        (videos) or N = batch_size and A = eval_audio_frames (clips).
    """
    if kind not in ("videos", "clips"):
        raise ValueError(f"kind must be 'videos' or 'clips', got {kind!r}")
    cfg.check()
    if encoder is None and (cfg.needs_text or (
            kind == "videos" and not cfg.random_audio_windows)):
        raise ValueError("a text encoder is needed for text or caption "
                         "spans (random_audio_windows=False)")
    ds = howto.shuffled_records(files, input_context, seed, shuffle_buffer)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)

    if kind == "videos":
        pairs = batch_size * cfg.n_pair

        def make(serialized, seed_pair):
            videos = parse_video_batch(serialized, cfg)
            if cfg.random_audio_windows:
                out = sample_random_windows(videos, seed_pair, cfg)
            else:
                out = sample_caption_spans(videos, seed_pair, cfg, encoder)
            out["video"] = tf.ensure_shape(out["video"],
                                           [pairs, cfg.feature_dim])
            out["audio"] = tf.ensure_shape(
                out["audio"], [pairs, core_audio.NUM_MEL_BINS,
                               cfg.audio_frames])
            out["nframes"] = tf.ensure_shape(out["nframes"], [pairs])
            return (_features(out, cfg, encoder, out.get("ids")),
                    tf.zeros([batch_size], tf.int32))

        ds = tf.data.Dataset.zip((ds.batch(batch_size, drop_remainder=True),
                                  seeds))
        return howto.map_video_batches(ds, make)

    def make_clip(serialized, seed_pair):
        clip = parse_clip(serialized, cfg)
        out = {"video": clip["video"], "audio": clip["audio"],
               "nframes": clip["nframes"]}
        if cfg.needs_text:
            out["ids"] = howto.sample_clip_caption(
                clip, seed_pair, cfg, encoder)["ids"][0]  # [W]
        return out

    def to_features(out):
        return (_features(out, cfg, encoder, out.get("ids")),
                tf.zeros([tf.shape(out["video"])[0]], tf.int32))

    ds = tf.data.Dataset.zip((ds, seeds))
    ds = ds.map(make_clip, num_parallel_calls=AUTOTUNE, deterministic=False)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(to_features, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def evaluation_dataset(files, cfg, encoder, batch_size):
    """Every clip once, in file order, padded to full batches.

    Args:
        files: clip-record shard paths.
        cfg: AVLClipConfig (``eval_audio_frames``, ``needs_text``).
        encoder: vidcore.text.TextEncoder (with ``needs_text``; the first
            caption of a clip is its query), or None.
        batch_size: clips per batch.

    Returns:
        tf.data.Dataset of ({"video" [B, F], "audio" [B, 40, A], "nframes"
        int32 [B], "has_audio" bool [B], "clip_id" uint8 [B, 64]
        (``records.encode_ids``), "text" [B, W, we_dim] (needs_text)},
        mask bool [B]); the mask marks real clips, and has_audio the clips
        stored with audio (False: count the clip as a miss).
    """
    cfg.check()
    if cfg.needs_text and encoder is None:
        raise ValueError("needs_text needs a text encoder")
    ds = tf.data.Dataset.from_tensor_slices(list(files)).flat_map(
        tf.data.TFRecordDataset)

    def make(serialized):
        clip = parse_clip(serialized, cfg)
        out = {"video": clip["video"], "audio": clip["audio"],
               "nframes": clip["nframes"], "has_audio": clip["has_audio"],
               "clip_id": clip["clip_id"]}
        if cfg.needs_text:
            out["ids"] = encoder.word_ids(clip["text"][:1],
                                          cfg.max_words)[0]  # [W]
        return out

    ds = ds.map(make, num_parallel_calls=AUTOTUNE).batch(batch_size)

    def pad(out):
        out = dict(out)
        out["clip_id"] = records.encode_ids(out["clip_id"])  # [b, 64]
        out, mask = records.pad_batch(out, batch_size)
        features = _features(out, cfg, encoder, out.get("ids"))
        features.update(has_audio=out["has_audio"],
                        clip_id=out["clip_id"])
        return features, mask

    return ds.map(pad, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
