"""Video decoding for the raw-video converter: PyAV, exact-time resampling
to a frame rate, short-side resizing and JPEG encoding of the frames.

The rules (documented with the converter, `tfrecord_tools.video_writer`):
stored frame k of a segment [start, end) shows the last decoded frame whose
timestamp is <= start + k / fps, for every k with start + k / fps < end;
frames are resized so that the short side is `short_side`; each frame is
JPEG-encoded by `tf.io.encode_jpeg`. PyAV is imported lazily
(pip install 'vidmodels[video]').
"""

import dataclasses
import fractions
import math

import tensorflow as tf

from tfrecord_tools import cli

IMAGE_FORMAT = "JPEG"
_AV_HINT = "pip install 'vidmodels[video]'"
_US = 1_000_000  # microseconds per second


# -- settings and PyAV ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VideoSettings:
    """How frames are stored (picklable; bound to convert_video).

    Attributes:
        fps: stored frames per second (0 = every decoded frame).
        short_side: stored short side in pixels (0 = keep the size).
        jpeg_quality: JPEG quality, 1-100.
    """

    fps: float = 15.0
    short_side: int = 128
    jpeg_quality: int = 90

    def check(self):
        """Raises InputError for a setting out of range."""
        if not (math.isfinite(self.fps) and self.fps >= 0):
            raise cli.InputError(f"--fps must be >= 0, got {self.fps}")
        if self.short_side < 0:
            raise cli.InputError(
                f"--short_side must be >= 0, got {self.short_side}")
        if not 1 <= self.jpeg_quality <= 100:
            raise cli.InputError(
                f"--jpeg_quality must be in [1, 100], got "
                f"{self.jpeg_quality}")


def import_av():
    """Imports PyAV or raises one clear error naming the extra.

    Returns:
        The `av` module.

    Raises:
        InputError: PyAV is not installed.
    """
    try:
        import av  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise cli.InputError(
            f"decoding videos needs PyAV, which is not installed ({e}); "
            f"install the extra: {_AV_HINT}") from None
    return av


class VideoError(cli.InputError):
    """A video cannot be decoded or does not hold the asked segment."""


# -- decoding -------------------------------------------------------------------


@dataclasses.dataclass
class DecodedClip:
    """The stored frames of one video or segment.

    Attributes:
        frames: list of JPEG bytes, one per stored frame.
        height: stored frame height.
        width: stored frame width.
        frame_rate: stored frames per second.
        start: segment start, seconds from the video's start.
        end: segment end (clamped to the video's end), seconds.
        source_frame_rate: the video stream's average frame rate.
        source_duration: the video's duration in seconds (container
            metadata, else the decoded end).
    """

    frames: list
    height: int
    width: int
    frame_rate: float
    start: float
    end: float
    source_frame_rate: float
    source_duration: float


def exact(seconds):
    """float seconds -> Fraction of its shortest decimal form (1.1 -> 11/10).

    Args:
        seconds: a finite number.

    Returns:
        fractions.Fraction.
    """
    return fractions.Fraction(repr(float(seconds)))


def output_size(height, width, short_side):
    """Stored (height, width): short side = short_side, aspect kept.

    Args:
        height: source height.
        width: source width.
        short_side: wanted short side, 0 = keep the size.

    Returns:
        (height, width); the long side is rounded to the nearest integer
        (halves up), at least 1.
    """
    if short_side == 0 or min(height, width) == short_side:
        return height, width
    short, long_ = min(height, width), max(height, width)
    scaled = max(1, int(fractions.Fraction(long_ * short_side, short)
                        + fractions.Fraction(1, 2)))
    return (short_side, scaled) if height <= width else (scaled, short_side)


class _Selector:
    """Picks the stored frames from decoded frames in presentation order.

    `push(ts, frame)` returns the frames to store now (in order, a frame
    repeated when it covers several sampling times); `finish(video_end)`
    returns the rest once the stream has ended. With fps: stored frame k is
    the last pushed frame with timestamp <= t_k = start + k / fps (the first
    frame if none), for t_k < end. Without: every frame in [start, end).
    """

    def __init__(self, start, end, fps):
        self.start, self.end, self.fps = start, end, fps
        self.k = 0
        self.prev = None

    def _target(self):
        return self.start + self.k / self.fps

    def _before_end(self, t, limit=None):
        ends = [e for e in (self.end, limit) if e is not None]
        return all(t < e for e in ends)

    def push(self, ts, frame):
        out = []
        if self.fps is None:
            if ts >= self.start and self._before_end(ts):
                out.append(frame)
        else:
            while self._target() < ts and self._before_end(self._target()):
                out.append(frame if self.prev is None else self.prev)
                self.k += 1
        self.prev = frame
        return out

    def past_end(self, ts):
        """True once no later frame can be stored."""
        return self.end is not None and ts >= self.end

    def finish(self, video_end):
        out = []
        if self.fps is not None and self.prev is not None:
            while self._before_end(self._target(), video_end):
                out.append(self.prev)
                self.k += 1
        return out


class _Encoder:
    """Resizes and JPEG-encodes frames; a repeated frame is encoded once."""

    def __init__(self, settings):
        self.settings = settings
        self.size = None
        self.frames = []
        self._last = (None, None)

    def add(self, frame):
        if frame is self._last[0]:
            self.frames.append(self._last[1])
            return
        if self.size is None:
            self.size = output_size(frame.height, frame.width,
                                    self.settings.short_side)
        height, width = self.size
        rgb = frame.reformat(width=width, height=height, format="rgb24",
                             interpolation="BILINEAR").to_ndarray()
        data = tf.io.encode_jpeg(
            rgb, quality=self.settings.jpeg_quality).numpy()
        self.frames.append(data)
        self._last = (frame, data)


def _decode_errors(av):
    """Errors that mean "this file cannot be decoded" (not our bugs)."""
    ffmpeg_error = getattr(av, "FFmpegError", None) or av.error.FFmpegError
    return (ffmpeg_error, OSError, EOFError, ValueError, tf.errors.OpError)


def _describe(error):
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else \
        type(error).__name__


def _open_container(av, path):
    """(container, file object or None); gs:// etc. read via tf.io.gfile."""
    if "://" in path:
        handle = tf.io.gfile.GFile(path, "rb")
        try:
            return av.open(handle, mode="r"), handle
        except BaseException:
            handle.close()
            raise
    return av.open(path, mode="r"), None


def _stream_facts(container, stream):
    """(time origin in stream ticks or None, frame rate or None, duration)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    duration = None
    if stream.duration:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / _US
    return stream.start_time, (float(rate) if rate else None), duration


def _frame_times(container, stream, origin, rate):
    """Yields (timestamp, frame duration, frame) in presentation order.

    Args:
        container: open PyAV container (possibly after a seek).
        stream: its video stream.
        origin: the stream's start time in ticks (None: first frame's pts).
        rate: average frame rate (for frames without pts / duration).

    Yields:
        (Fraction seconds from the origin, Fraction seconds or None, frame).
    """
    base = stream.time_base
    fallback = fractions.Fraction(1) / exact(rate) if rate else None
    for index, frame in enumerate(container.decode(stream)):
        if frame.pts is None:
            if fallback is None:
                raise VideoError("decoded frames carry no timestamps and "
                                 "the stream has no frame rate")
            ts = index * fallback
        else:
            if origin is None:
                origin = frame.pts
            ts = (frame.pts - origin) * base
        duration = getattr(frame, "duration", None)
        duration = duration * base if duration else fallback
        yield ts, duration, frame


def _packets_end(container, stream, origin):
    """The end time of the remaining packets (for files without metadata)."""
    end = None
    for packet in container.demux(stream):
        if packet.pts is None:
            continue
        t = packet.pts + (packet.duration or 0) - (origin or 0)
        end = t if end is None else max(end, t)
    return None if end is None else float(end * stream.time_base)


class _SeekMissed(Exception):
    """Internal: seeking failed or landed after the segment start."""


def decode_clip(path, settings, start=None, end=None):
    """Decodes, resamples, resizes and JPEG-encodes one video or segment.

    A segment that starts after 0 is decoded from the last keyframe at or
    before its start (a seek); when the container cannot seek there, the
    video is decoded from its beginning instead (same frames, slower).

    Args:
        path: video file (local path or any tf.io.gfile path).
        settings: VideoSettings.
        start: segment start in seconds from the video's start (None = 0).
        end: segment end in seconds (None = the video's end); must be
            > start.

    Returns:
        DecodedClip.

    Raises:
        VideoError: the file cannot be opened or decoded, has no video
            stream or no frames, or the segment is outside the video
            (message names the file and says what went wrong, with the
            decoder's own message).
        InputError: PyAV is not installed, or start >= end.
    """
    av = import_av()
    seg_start = exact(start) if start else fractions.Fraction(0)
    seg_end = exact(end) if end is not None else None
    if seg_start < 0 or (seg_end is not None and seg_end <= seg_start):
        raise cli.InputError(
            f"{path}: bad segment [{start}, {end}): expected "
            "0 <= start < end")
    try:
        return _decode_file(av, path, settings, seg_start, seg_end,
                            seek=seg_start > 0)
    except _SeekMissed:
        return _decode_file(av, path, settings, seg_start, seg_end,
                            seek=False)


def _decode_file(av, path, settings, seg_start, seg_end, seek):
    """Opens `path` and decodes the segment (see decode_clip)."""
    errors = _decode_errors(av)
    try:
        container, handle = _open_container(av, path)
    except errors as e:
        raise VideoError(f"cannot open {path}: {_describe(e)}") from None
    try:
        return _decode_open(container, path, settings, seg_start, seg_end,
                            seek, errors)
    finally:
        container.close()
        if handle is not None:
            handle.close()


def _seconds_text(value):
    return "end" if value is None else f"{float(value):g}"


def _decode_open(container, path, settings, seg_start, seg_end, seek,
                 errors):
    """decode_clip on an open container."""
    if not container.streams.video:
        raise VideoError(f"{path}: no video stream (streams: "
                         f"{[s.type for s in container.streams]})")
    stream = container.streams.video[0]
    origin, rate, meta_duration = _stream_facts(container, stream)
    if seek:
        try:
            container.seek(int((origin or 0) + seg_start / stream.time_base),
                           stream=stream, backward=True, any_frame=False)
        except errors:
            raise _SeekMissed() from None
    fps = exact(settings.fps) if settings.fps else None
    selector = _Selector(seg_start, seg_end, fps)
    encoder = _Encoder(settings)
    decoded, first, last, at_eof = 0, None, None, True
    try:
        for ts, duration, frame in _frame_times(container, stream, origin,
                                                rate):
            if seek and decoded == 0 and ts > seg_start:
                raise _SeekMissed()
            decoded += 1
            first = ts if first is None else first
            last = (ts, duration)
            for chosen in selector.push(ts, frame):
                encoder.add(chosen)
            if selector.past_end(ts):
                at_eof = False
                break
    except (VideoError, _SeekMissed):
        raise
    except errors as e:
        raise VideoError(
            f"{path}: decoding failed after {decoded} frames "
            f"(t={float(last[0]) if last else 0:.3f} s): {_describe(e)}"
        ) from None
    if decoded == 0:
        if seek:
            raise _SeekMissed()  # e.g. sought past the last keyframe
        raise VideoError(f"{path}: no video frames could be decoded")
    video_end = None
    if at_eof:
        video_end = last[0] + (last[1] or 0)
        if seg_start >= video_end:
            raise VideoError(
                f"{path}: segment [{_seconds_text(seg_start)}, "
                f"{_seconds_text(seg_end)}) s starts at or after the end of "
                f"the video ({float(video_end):g} s)")
        for chosen in selector.finish(video_end):
            encoder.add(chosen)
    if not encoder.frames:
        raise VideoError(
            f"{path}: no frame in the segment [{_seconds_text(seg_start)}, "
            f"{_seconds_text(seg_end)}) s")
    if meta_duration is None:
        try:
            meta_duration = (float(video_end) if video_end is not None
                             else _packets_end(container, stream, origin))
        except errors as e:
            raise VideoError(f"{path}: reading to the end failed: "
                             f"{_describe(e)}") from None
    clip_end = seg_end if video_end is None else (
        video_end if seg_end is None else min(seg_end, video_end))
    if not rate and video_end is not None and video_end > first:
        rate = decoded / float(video_end - first)
    source_rate = rate or 0.0
    height, width = encoder.size
    return DecodedClip(
        frames=encoder.frames, height=height, width=width,
        frame_rate=float(fps) if fps else float(source_rate),
        start=float(seg_start), end=float(clip_end),
        source_frame_rate=float(source_rate),
        source_duration=float(meta_duration or 0.0))
