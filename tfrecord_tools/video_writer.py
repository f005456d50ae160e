"""Raw videos -> SequenceExample shards of JPEG frames (Kinetics / UCF101).

Library:
  VideoSettings(fps, short_side, jpeg_quality)     conversion settings
  read_label_map(path)                             class names, one a line
  list_video_folder(video_dir, label_map, ...)     -> (items, class names)
  read_video_csv(csv_path, video_root, label_map)  -> (items, class names)
  decode_clip(path, settings, start, end)          -> DecodedClip
  make_video_example(clip, media_id, data_path, label_index, label)
  parse_video_example(serialized)                  -> dict (numpy side)
  convert_video(item, settings)                    -> [serialized record]
  convert_folder(video_dir, output_dir, ...)       -> ConversionResult
  convert_csv(csv_path, output_dir, ...)           -> ConversionResult

The record layout is the raw-video section of `input_pipeline.features`
(DMVR / TF Model Garden keys): one SequenceExample per video, or per CSV
segment, with one JPEG per stored frame in the `image/encoded` feature list
and the media id, source path, label, segment times, frame rate and size,
and the source's own frame rate and duration in the context.

Inputs:

* `--video_dir`: one sub-folder per class (Kinetics, UCF101, HMDB-51
  layout), videos anywhere below it. The class index is the position of the
  folder's name in the sorted folder names (as torchvision's `find_classes`;
  empty class folders count), or its line in `--label_map` (one class name a
  line, e.g. Kinetics' label_map.txt) when given; a folder name matches a
  label-map name exactly or with its underscores read as spaces
  ("playing_cricket" -> "playing cricket"), and a class folder that is not
  in the label map is an error. Files with another extension than
  `--extensions` inside class folders are listed in the rejects file;
  hidden files and folders (".name") are ignored, and so are non-video
  files directly in `--video_dir` (a README, a CSV); a video directly in
  `--video_dir` is an error (it has no class).
* `--csv`: a CSV with header `path,label,start,end` (`label`, `start`,
  `end` optional columns; empty start/end = whole video, empty label =
  unlabelled, e.g. a test set). Relative paths resolve against
  `--video_root`, else the CSV's folder. Class indices as above, from the
  sorted label names of the CSV when there is no label map.
* `--csv` in the official Kinetics layout (header with `youtube_id`,
  `time_start`, `time_end`, optional `label`, `split`, `is_cc`): each row
  names the downloaded, already trimmed file
  `{youtube_id}_{time_start:06d}_{time_end:06d}.<video extension>`, looked
  up anywhere below `--video_root` (default: the CSV's folder); the whole
  file is converted. A row whose file is missing (videos removed from
  YouTube) is rejected, not an error.

Frames (the rules the tests check):

* Timestamps are the decoded frames' presentation times, in seconds from
  the video stream's start time. A segment [start, end) (whole video: start
  0, end = the video's end, i.e. the last frame's timestamp plus its
  duration) is resampled to `fps`: stored frame k shows the last decoded
  frame whose timestamp is <= start + k / fps (the first frame when none
  is), for every k with start + k / fps < end; so a whole video of D
  seconds gives ceil(D * fps) frames (torchvision's nearest-lower index
  resampling for constant-rate video). Arithmetic is exact (fractions).
  `fps=0` keeps every decoded frame with start <= timestamp < end.
* Frames are resized (swscale bilinear, by PyAV) so that the short side is
  `short_side` (up or down) and the long side is
  round(long * short_side / short) (nearest integer, halves up), from the
  coded size (sample aspect ratio and rotation metadata are ignored). The
  size of the first stored frame is used for all of them. `short_side=0`
  keeps the size.
* Each frame is JPEG-encoded by `tf.io.encode_jpeg` (libjpeg-turbo, 4:2:0,
  `jpeg_quality`): TensorFlow is a dependency already, and it encodes
  faster than Pillow here (0.24 vs 0.47 ms per 301x128 frame).
* A segment end beyond the video's end is clamped to it (the written end
  timestamp says where the frames stop); a segment that starts at or after
  the end is rejected.

Rejected videos (listed with the reason in `rejects-<prefix>.jsonl`): a
file that cannot be opened (missing, unreadable, not a video: PyAV's own
message), no video stream, no decoded frames, a decoding error part-way
(nothing of that video is written), a segment outside the video, a file
with another extension than `--extensions` in a class folder, a Kinetics
row without its file.

CLI (needs PyAV: pip install 'vidmodels[video]'):

  python -m tfrecord_tools.video_writer --video_dir=kinetics400/train \
      --label_map=label_map.txt --output_dir=out --num_shards=256 \
      --num_workers=8      # or --runner=beam --beam_options="..."
  python -m tfrecord_tools.video_writer --csv=segments.csv \
      --video_root=videos --output_dir=out --prefix=test --fps=15
"""

import csv
import dataclasses
import fractions
import functools
import io
import math
import os
import random

import tensorflow as tf
from absl import flags

from input_pipeline import features as F
from tfrecord_tools import cli, conversion, tf_features

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v",
                    ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv", ".gif")
CSV_COLUMNS = ("path", "label", "start", "end")
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split",
                    "is_cc")
KINETICS_NAME = "{youtube_id}_{start:06d}_{end:06d}"
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


# -- records ------------------------------------------------------------------


def make_video_example(clip, media_id, data_path, label_index=None,
                       label=None):
    """Builds one raw-video record (keys of `input_pipeline.features`).

    Args:
        clip: DecodedClip.
        media_id: the video (or segment) id.
        data_path: the source file as given by the input.
        label_index: class index, or None (unlabelled).
        label: class name, or None; written under both the DMVR key
            (`clip/label/string`) and the Model Garden key
            (`clip/label/text`).

    Returns:
        tf.train.SequenceExample.

    Raises:
        InputError: a clip without frames.
    """
    if not clip.frames:
        raise cli.InputError(f"{media_id}: no frames to write")
    context = {
        F.VIDEO_MEDIA_ID: tf_features.bytes_feature([media_id]),
        F.VIDEO_DATA_PATH: tf_features.bytes_feature([data_path]),
        F.VIDEO_START_TIMESTAMP: tf_features.int64_feature(
            [round(clip.start * _US)]),
        F.VIDEO_END_TIMESTAMP: tf_features.int64_feature(
            [round(clip.end * _US)]),
        F.VIDEO_FRAME_RATE: tf_features.float_feature([clip.frame_rate]),
        F.VIDEO_HEIGHT: tf_features.int64_feature([clip.height]),
        F.VIDEO_WIDTH: tf_features.int64_feature([clip.width]),
        F.VIDEO_FORMAT: tf_features.bytes_feature([IMAGE_FORMAT]),
        F.VIDEO_SOURCE_FRAME_RATE: tf_features.float_feature(
            [clip.source_frame_rate]),
        F.VIDEO_SOURCE_DURATION: tf_features.float_feature(
            [clip.source_duration]),
    }
    if label_index is not None:
        context[F.VIDEO_LABEL_INDEX] = tf_features.int64_feature(
            [int(label_index)])
    if label is not None:
        context[F.VIDEO_LABEL_STRING] = tf_features.bytes_feature([label])
        context[F.VIDEO_LABEL_TEXT] = tf_features.bytes_feature([label])
    frames = tf.train.FeatureList(
        feature=[tf_features.bytes_feature([f]) for f in clip.frames])
    return tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(
            feature_list={F.VIDEO_IMAGE_ENCODED: frames}))


def parse_video_example(serialized):
    """Reads a record written by make_video_example (numpy side, for tests
    and inspection; the tf.data reader is `input_pipeline.video`).

    Args:
        serialized: the record's bytes.

    Returns:
        Dict: "frames" (list of JPEG bytes), "media_id", "data_path",
        "label_index" (int or None), "label" and "label_text" (str or
        None), "start_us", "end_us", "height", "width" (int), "frame_rate",
        "source_frame_rate", "source_duration" (float), "format" (str).
    """
    example = tf.train.SequenceExample.FromString(serialized)
    ctx = example.context.feature

    def one(key, kind):
        if key not in ctx:
            return None
        value = getattr(ctx[key], kind).value[0]
        return value.decode("utf-8") if isinstance(value, bytes) else value

    frames = example.feature_lists.feature_list[F.VIDEO_IMAGE_ENCODED]
    return {
        "frames": [f.bytes_list.value[0] for f in frames.feature],
        "media_id": one(F.VIDEO_MEDIA_ID, "bytes_list"),
        "data_path": one(F.VIDEO_DATA_PATH, "bytes_list"),
        "label_index": one(F.VIDEO_LABEL_INDEX, "int64_list"),
        "label": one(F.VIDEO_LABEL_STRING, "bytes_list"),
        "label_text": one(F.VIDEO_LABEL_TEXT, "bytes_list"),
        "start_us": one(F.VIDEO_START_TIMESTAMP, "int64_list"),
        "end_us": one(F.VIDEO_END_TIMESTAMP, "int64_list"),
        "frame_rate": one(F.VIDEO_FRAME_RATE, "float_list"),
        "height": one(F.VIDEO_HEIGHT, "int64_list"),
        "width": one(F.VIDEO_WIDTH, "int64_list"),
        "format": one(F.VIDEO_FORMAT, "bytes_list"),
        "source_frame_rate": one(F.VIDEO_SOURCE_FRAME_RATE, "float_list"),
        "source_duration": one(F.VIDEO_SOURCE_DURATION, "float_list"),
    }


# -- labels -------------------------------------------------------------------


def read_label_map(path):
    """Reads class names, one a line (index = line number - 1).

    Args:
        path: text file (e.g. Kinetics' label_map.txt); trailing blank
            lines are ignored.

    Returns:
        List of class names.

    Raises:
        MissingInputError: no such file.
        InputError: a blank line between names, a duplicate name, no names
            (names file:line).
    """
    if not tf.io.gfile.exists(path):
        raise cli.MissingInputError(f"--label_map: no such file {path}")
    with tf.io.gfile.GFile(path, "rb") as f:
        lines = f.read().decode("utf-8").lstrip("\ufeff").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names, seen = [], {}
    for line_no, line in enumerate(lines, start=1):
        name = line.strip()
        if not name:
            raise cli.InputError(
                f"{path}:{line_no}: blank line between class names (the "
                "class index is the line number, so lines cannot be empty)")
        if name in seen:
            raise cli.InputError(f"{path}:{line_no}: duplicate class name "
                                 f"{name!r} (first at line {seen[name]})")
        seen[name] = line_no
        names.append(name)
    if not names:
        raise cli.InputError(f"{path}: no class names")
    return names


def _load_label_map(label_map):
    """label_map as a list of names (read from a path), or None."""
    if label_map is None or isinstance(label_map, (list, tuple)):
        return None if label_map is None else list(label_map)
    return read_label_map(label_map)


def _match_class(name, index):
    """The label-map name for `name` (exact, or underscores as spaces)."""
    if name in index:
        return name
    spaced = name.replace("_", " ")
    return spaced if spaced in index else None


# -- folder input -------------------------------------------------------------


def _is_hidden(name):
    return name.startswith(".")


def _listdir(path):
    """Sorted entry names (tf.io.gfile lists directories as "name/")."""
    return sorted(n.rstrip("/") for n in tf.io.gfile.listdir(path))


def _files_below(directory):
    """Relative paths of the visible files below directory, sorted."""
    found = []
    for root, subdirs, files in tf.io.gfile.walk(directory):
        subdirs[:] = [d for d in subdirs if not _is_hidden(d.rstrip("/"))]
        rel_root = os.path.relpath(root, directory)
        if rel_root != os.curdir and any(
                _is_hidden(part) for part in rel_root.split(os.sep)):
            continue
        for name in files:
            if not _is_hidden(name):
                found.append(os.path.normpath(os.path.join(rel_root, name)))
    return sorted(found)


def _has_extension(name, extensions):
    return name.lower().endswith(tuple(e.lower() for e in extensions))


def list_video_folder(video_dir, label_map=None,
                      extensions=VIDEO_EXTENSIONS):
    """Lists the videos of a one-folder-per-class tree as items.

    Args:
        video_dir: directory with one sub-folder per class.
        label_map: None (classes = sorted folder names), a label-map file
            path, or a list of class names.
        extensions: video file extensions (case-insensitive).

    Returns:
        (items, class names): items in class then path order, dicts with
        "id" (path relative to video_dir), "path", "data_path" (relative),
        "media_id" (file stem), "label", "label_index", "start", "end"
        (None) and "skip" (a reject reason for non-video files, else None).

    Raises:
        MissingInputError: no such directory.
        InputError: no class folders, a video directly in video_dir, a
            class folder not in the label map, no videos, duplicate media
            ids.
    """
    if not tf.io.gfile.isdir(video_dir):
        raise cli.MissingInputError(
            f"--video_dir: no such directory {video_dir}")
    names = map_names = _load_label_map(label_map)
    folders, loose = [], []
    for entry in _listdir(video_dir):
        if _is_hidden(entry):
            continue
        if tf.io.gfile.isdir(os.path.join(video_dir, entry)):
            folders.append(entry)
        elif _has_extension(entry, extensions):
            loose.append(entry)
    if loose:
        raise cli.InputError(
            f"{video_dir}: video files outside a class folder ({loose[:5]}"
            f"{' ...' if len(loose) > 5 else ''}); expected one sub-folder "
            "per class holding its videos")
    if not folders:
        raise cli.InputError(f"{video_dir}: no class folders (expected one "
                             "sub-folder per class)")
    if map_names is None:
        names = folders
        classes = {f: f for f in folders}
    else:
        index = set(map_names)
        classes = {f: _match_class(f, index) for f in folders}
        unknown = [f for f, c in classes.items() if c is None]
        if unknown:
            raise cli.InputError(
                f"{video_dir}: class folders not in the label map "
                f"{label_map if isinstance(label_map, str) else ''}: "
                f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''} "
                f"(folder names must equal a label-map line, or equal it "
                f"with underscores for spaces)")
    position = {n: i for i, n in enumerate(names)}
    items = []
    for folder in folders:
        for rel in _files_below(os.path.join(video_dir, folder)):
            data_path = os.path.join(folder, rel)
            skip = None
            if not _has_extension(rel, extensions):
                skip = (f"not a video file: extension "
                        f"{os.path.splitext(rel)[1]!r} is not one of "
                        f"--extensions={','.join(extensions)}")
            items.append(_item(
                data_path, os.path.join(video_dir, data_path), data_path,
                _stem(rel), classes[folder], position[classes[folder]],
                skip=skip))
    if not [i for i in items if i["skip"] is None]:
        raise cli.InputError(f"{video_dir}: no videos (files ending in "
                             f"{','.join(extensions)}) in the class folders")
    _check_unique(items)
    return items, list(names)


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _item(item_id, path, data_path, media_id, label, label_index,
          start=None, end=None, skip=None, where=None):
    return {"id": item_id, "path": path, "data_path": data_path,
            "media_id": media_id, "label": label, "label_index": label_index,
            "start": start, "end": end, "skip": skip,
            "where": where or path}


def _check_unique(items):
    """Raises InputError for two items with one media id."""
    seen = {}
    for item in items:
        first = seen.setdefault(item["media_id"], item["where"])
        if first != item["where"]:
            raise cli.InputError(
                f"{item['where']}: duplicate media id {item['media_id']!r} "
                f"(first at {first}); media ids (file stem, plus the "
                "segment times for segments) must be unique")


# -- CSV input ----------------------------------------------------------------


def _csv_seconds(text, where, column):
    """Parses an optional seconds field (empty -> None)."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise cli.InputError(
            f"{where}: {column} {text!r} is not a number of seconds"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise cli.InputError(f"{where}: {column} must be a finite number "
                             f">= 0, got {text!r}")
    return value


def _segment_media_id(stem, start, end):
    """stem, or stem_<start>_<end> (seconds, up to microseconds)."""
    if start is None and end is None:
        return stem

    def text(value):
        if value is None:
            return "end"
        return f"{value:.6f}".rstrip("0").rstrip(".")

    return f"{stem}_{text(start or 0.0)}_{text(end)}"


def _read_rows(csv_path):
    """(header, csv reader) of a CSV file read through tf.io.gfile."""
    if not tf.io.gfile.exists(csv_path):
        raise cli.MissingInputError(f"--csv: no such file {csv_path}")
    with tf.io.gfile.GFile(csv_path, "rb") as f:
        try:
            text = f.read().decode("utf-8").lstrip("\ufeff")
        except UnicodeDecodeError as e:
            raise cli.InputError(f"{csv_path}: not UTF-8 text ({e})") \
                from None
    rows = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(rows, [])]
    return header, rows


def _table_rows(csv_path, header, rows):
    """Yields (where, {column: stripped field}) of the non-blank rows."""
    for fields in rows:
        if not any(f.strip() for f in fields):
            continue
        where = f"{csv_path}:{rows.line_num}"
        if len(fields) != len(header):
            raise cli.InputError(
                f"{where}: malformed line {','.join(fields)!r}: expected "
                f"{len(header)} fields ({','.join(header)}), got "
                f"{len(fields)}")
        yield where, {h: f.strip() for h, f in zip(header, fields)}


def read_video_csv(csv_path, video_root=None, label_map=None,
                   extensions=VIDEO_EXTENSIONS):
    """Lists the videos / segments of a CSV as items.

    Args:
        csv_path: CSV with header `path,label,start,end` (label, start, end
            optional) or the official Kinetics columns (see module doc).
        video_root: directory that relative paths (and Kinetics files) are
            under; None = the CSV's folder.
        label_map: None (classes = the CSV's sorted label names), a
            label-map file path, or a list of class names.
        extensions: Kinetics layout: the extensions a video file may have.

    Returns:
        (items, class names): items in CSV order (see list_video_folder;
        "id" is the path, plus "@start-end" for segments).

    Raises:
        MissingInputError: no such CSV file or video_root.
        InputError: bad header, malformed line, empty path, bad time,
            start >= end, a label not in the label map, duplicate media
            ids, no rows (names file:line).
    """
    header, rows = _read_rows(csv_path)
    root = video_root or os.path.dirname(csv_path) or os.curdir
    if video_root and not tf.io.gfile.isdir(video_root):
        raise cli.MissingInputError(
            f"--video_root: no such directory {video_root}")
    if "youtube_id" in header:
        records = _kinetics_rows(csv_path, header, rows, root, extensions)
    else:
        records = _path_rows(csv_path, header, rows, root)
    if not records:
        raise cli.InputError(f"{csv_path}: no videos listed")
    names = _load_label_map(label_map)
    labels = [r["label"] for r in records if r["label"] is not None]
    if names is None:
        names = sorted(set(labels))
        classes = {n: n for n in names}
    else:
        index = set(names)
        classes = {}
        for r in records:
            if r["label"] is None or r["label"] in classes:
                continue
            classes[r["label"]] = _match_class(r["label"], index)
            if classes[r["label"]] is None:
                raise cli.InputError(
                    f"{r['where']}: unknown class name {r['label']!r}: not "
                    f"in the label map "
                    f"{label_map if isinstance(label_map, str) else ''}")
    position = {n: i for i, n in enumerate(names)}
    items = []
    for r in records:
        label = classes[r["label"]] if r["label"] is not None else None
        items.append(_item(
            r["id"], r["path"], r["data_path"], r["media_id"], label,
            position[label] if label is not None else None, r["start"],
            r["end"], r["skip"], r["where"]))
    _check_unique(items)
    return items, list(names)


def _path_rows(csv_path, header, rows, root):
    """Records of a path,label,start,end CSV."""
    if "path" not in header:
        raise cli.InputError(
            f"{csv_path}:1: expected a header with columns "
            f"{','.join(CSV_COLUMNS)} (label, start, end optional) or the "
            f"Kinetics columns {','.join(KINETICS_COLUMNS[:5])}, got "
            f"{','.join(header)!r}")
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown or len(set(header)) != len(header):
        raise cli.InputError(
            f"{csv_path}:1: unknown or repeated columns {unknown or header} "
            f"in the header; expected {','.join(CSV_COLUMNS)}")
    records = []
    for where, row in _table_rows(csv_path, header, rows):
        path = row["path"]
        if not path:
            raise cli.InputError(f"{where}: empty path")
        start = _csv_seconds(row.get("start", ""), where, "start")
        end = _csv_seconds(row.get("end", ""), where, "end")
        if end is not None and end <= (start or 0.0):
            raise cli.InputError(
                f"{where}: segment end {end} is not after its start "
                f"{start or 0.0}")
        full = path if (os.path.isabs(path) or "://" in path) else \
            os.path.join(root, path)
        media_id = _segment_media_id(_stem(path), start, end)
        item_id = path if start is None and end is None else \
            f"{path}@{_segment_media_id('', start, end)[1:]}"
        records.append({"id": item_id, "path": full, "data_path": path,
                        "media_id": media_id,
                        "label": row.get("label") or None, "start": start,
                        "end": end, "skip": None, "where": where})
    return records


def _kinetics_rows(csv_path, header, rows, root, extensions):
    """Records of an official Kinetics CSV; files looked up below root."""
    required = ("youtube_id", "time_start", "time_end")
    missing = [c for c in required if c not in header]
    unknown = [h for h in header if h not in KINETICS_COLUMNS]
    if missing or unknown:
        raise cli.InputError(
            f"{csv_path}:1: Kinetics CSV header {','.join(header)!r}: "
            f"missing {missing}, unknown {unknown}; expected "
            f"{','.join(KINETICS_COLUMNS[:5])} (label, split optional)")
    if not tf.io.gfile.isdir(root):
        raise cli.MissingInputError(
            f"--video_root: no such directory {root}")
    by_stem = {}
    for rel in _files_below(root):
        if _has_extension(rel, extensions):
            by_stem.setdefault(_stem(rel), []).append(rel)
    records = []
    for where, row in _table_rows(csv_path, header, rows):
        if not row["youtube_id"]:
            raise cli.InputError(f"{where}: empty youtube_id")
        times = []
        for column in ("time_start", "time_end"):
            value = _csv_seconds(row[column], where, column)
            if value is None or not value.is_integer():
                raise cli.InputError(
                    f"{where}: {column} must be whole seconds, got "
                    f"{row[column]!r}")
            times.append(int(value))
        stem = KINETICS_NAME.format(youtube_id=row["youtube_id"],
                                    start=times[0], end=times[1])
        found = by_stem.get(stem, [])
        if len(found) > 1:
            raise cli.InputError(
                f"{where}: several files for {stem} below {root}: {found}")
        skip = None if found else (
            f"no video file {stem}.* (extensions {','.join(extensions)}) "
            f"below {root}")
        rel = found[0] if found else stem
        records.append({"id": rel, "path": os.path.join(root, rel),
                        "data_path": rel, "media_id": stem,
                        "label": row.get("label") or None, "start": None,
                        "end": None, "skip": skip, "where": where})
    return records


# -- conversion ---------------------------------------------------------------


def convert_video(item, settings):
    """Converts one item (a video or segment) into its record.

    Args:
        item: dict from list_video_folder / read_video_csv.
        settings: VideoSettings.

    Returns:
        [serialized SequenceExample].

    Raises:
        conversion.Reject: the video cannot be converted (reason given).
    """
    if item.get("skip"):
        raise conversion.Reject(item["skip"])
    try:
        clip = decode_clip(item["path"], settings, item.get("start"),
                           item.get("end"))
    except VideoError as e:
        raise conversion.Reject(str(e)) from None
    example = make_video_example(clip, item["media_id"], item["data_path"],
                                 item.get("label_index"), item.get("label"))
    return [example.SerializeToString(deterministic=True)]


def shuffle_items(items, seed):
    """A copy of items in a seeded random order (None: input order).

    Contiguous shards of a class-sorted list would hold one or two classes
    each; shuffling spreads the classes over the shards.

    Args:
        items: list.
        seed: int seed, or None to keep the order.

    Returns:
        New list.
    """
    items = list(items)
    if seed is not None:
        random.Random(seed).shuffle(items)
    return items


def _convert(items, classes, source, settings, output_dir, prefix,
             num_shards, shuffle_seed, conversion_kwargs, **options):
    """Shared tail of convert_folder / convert_csv."""
    settings.check()
    import_av()  # fail before any work
    items = shuffle_items(items, shuffle_seed)
    options = {"source": source, **options,
               **dataclasses.asdict(settings),
               "shuffle_seed": shuffle_seed, "classes": classes}
    return conversion.convert_items(
        items, functools.partial(convert_video, settings=settings),
        output_dir, prefix, num_shards, options=options,
        **conversion_kwargs)


def convert_folder(video_dir, output_dir, settings=VideoSettings(),
                   label_map=None, extensions=VIDEO_EXTENSIONS,
                   shuffle_seed=0, prefix="train", num_shards=1,
                   **conversion_kwargs):
    """Converts a one-folder-per-class video tree into sharded records.

    Args:
        video_dir: directory with one sub-folder per class.
        output_dir: output directory.
        settings: VideoSettings.
        label_map: None, a label-map file path or a list of class names.
        extensions: video file extensions.
        shuffle_seed: seed of the item order, None = class/path order.
        prefix: shard name prefix.
        num_shards: number of shards.
        **conversion_kwargs: runner, num_workers, beam_runner, beam_options,
            progress (see conversion.convert_items).

    Returns:
        conversion.ConversionResult; its manifest's options hold the class
        names in index order ("classes").

    Raises:
        InputError, MissingInputError: bad input (one precise message).
        conversion.ConversionError: an unexpected error on an item.
    """
    settings.check()
    items, classes = list_video_folder(video_dir, label_map, extensions)
    return _convert(items, classes, "video_folder", settings, output_dir,
                    prefix, num_shards, shuffle_seed, conversion_kwargs,
                    video_dir=video_dir, extensions=list(extensions),
                    label_map=_option_label_map(label_map))


def convert_csv(csv_path, output_dir, settings=VideoSettings(),
                video_root=None, label_map=None,
                extensions=VIDEO_EXTENSIONS, shuffle_seed=0, prefix="train",
                num_shards=1, **conversion_kwargs):
    """Converts the videos / segments listed in a CSV into sharded records.

    Args:
        csv_path: the CSV (see read_video_csv).
        output_dir: output directory.
        settings: VideoSettings.
        video_root: base of relative paths (None = the CSV's folder).
        label_map: None, a label-map file path or a list of class names.
        extensions: Kinetics layout: possible video file extensions.
        shuffle_seed: seed of the item order, None = CSV order.
        prefix: shard name prefix.
        num_shards: number of shards.
        **conversion_kwargs: see convert_folder.

    Returns:
        conversion.ConversionResult.

    Raises:
        InputError, MissingInputError: bad input (one precise message).
        conversion.ConversionError: an unexpected error on an item.
    """
    settings.check()
    items, classes = read_video_csv(csv_path, video_root, label_map,
                                    extensions)
    return _convert(items, classes, "video_csv", settings, output_dir,
                    prefix, num_shards, shuffle_seed, conversion_kwargs,
                    csv=csv_path, video_root=video_root,
                    label_map=_option_label_map(label_map))


def _option_label_map(label_map):
    return label_map if label_map is None or isinstance(label_map, str) \
        else "<list>"


# -- CLI ----------------------------------------------------------------------

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "video_dir", None,
    "Input: a directory with one sub-folder per class (Kinetics / UCF101 "
    "layout). Exactly one of --video_dir and --csv.", flag_values=FLAGS)
flags.DEFINE_string(
    "csv", None,
    "Input: a CSV with header path,label,start,end (label, start, end "
    "optional; seconds; empty = whole video / unlabelled) or the official "
    "Kinetics columns label,youtube_id,time_start,time_end,split.",
    flag_values=FLAGS)
flags.DEFINE_string(
    "video_root", None,
    "--csv: directory of relative paths and Kinetics files (default: the "
    "CSV's folder).", flag_values=FLAGS)
flags.DEFINE_string(
    "label_map", None,
    "Class names, one a line (class index = line number - 1), e.g. "
    "Kinetics' label_map.txt. Default: the sorted folder / label names.",
    flag_values=FLAGS)
flags.DEFINE_float(
    "fps", 15.0,
    "Stored frames per second (frame k = last frame at or before k/fps); "
    "0 keeps every decoded frame.", lower_bound=0.0, flag_values=FLAGS)
flags.DEFINE_integer(
    "short_side", 128,
    "Resize so that the short side has this many pixels (aspect kept); 0 "
    "keeps the size.", lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of stored frames.",
                     lower_bound=1, upper_bound=100, flag_values=FLAGS)
flags.DEFINE_string(
    "extensions", ",".join(VIDEO_EXTENSIONS),
    "Video file extensions (other files in class folders are rejected).",
    flag_values=FLAGS)
flags.DEFINE_integer(
    "shuffle_seed", 0,
    "Seed of the order in which videos are spread over the shards; -1 "
    "keeps the input order (class then path, or CSV order).",
    lower_bound=-1, flag_values=FLAGS)
conversion.define_flags(FLAGS, default_prefix="train")


@cli.handle_errors
def main(argv):
    """Converts per the module FLAGS (which must be parsed)."""
    if len(argv) > 1:
        raise cli.InputError(f"unexpected arguments {argv[1:]}")
    if bool(FLAGS.video_dir) == bool(FLAGS.csv):
        raise cli.InputError(
            "give exactly one input: --video_dir (one sub-folder per class) "
            "or --csv")
    if FLAGS.video_root and not FLAGS.csv:
        raise cli.InputError("--video_root needs --csv")
    extensions = tuple(
        e if e.startswith(".") else f".{e}"
        for e in cli.parse_name_list(FLAGS.extensions))
    if not extensions:
        raise cli.InputError("--extensions: no extension given")
    settings = VideoSettings(fps=FLAGS.fps, short_side=FLAGS.short_side,
                             jpeg_quality=FLAGS.jpeg_quality)
    seed = None if FLAGS.shuffle_seed < 0 else FLAGS.shuffle_seed
    kwargs = conversion.flag_kwargs(FLAGS)
    if FLAGS.video_dir:
        result = convert_folder(
            FLAGS.video_dir, settings=settings, label_map=FLAGS.label_map,
            extensions=extensions, shuffle_seed=seed, **kwargs)
    else:
        result = convert_csv(
            FLAGS.csv, settings=settings, video_root=FLAGS.video_root,
            label_map=FLAGS.label_map, extensions=extensions,
            shuffle_seed=seed, **kwargs)
    print(result.summary())
    return 0


def run():
    """Console-script entry point."""
    cli.run(main, FLAGS)


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy, so that the convert
    # function reaches pool and Beam workers pickled by its module path.
    from tfrecord_tools import video_writer as _module  # noqa: PLW0406
    _module.run()
