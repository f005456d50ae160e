"""HowTo100M training videos -> SequenceExample shards (one per video).

Library:
  make_video_example(video_id, captions, streams) -> tf.train.SequenceExample
  parse_video_example(serialized)                 -> the same values back
  read_video_list(path) / load_caption_source(path, allow_pickle)
  convert_video(item, settings)                   -> [serialized record]
  convert_videos(csv_path, caption_path, settings, ...) -> ConversionResult

The record layout is the HowTo100M section of `input_pipeline.features`:
the video id, the caption start/end/text lists and, per stream ("2d", "3d"),
its frame rate and feature size in the context and one bytes feature per
frame (the frame's vector as little-endian float16, the release's own
precision: float16 input is stored bit-exactly, wider input is rounded).

Inputs, as released:

* `--csv`: the video list. A CSV whose header names `video_id` and
  optionally `task` (features in `<dir>/<task>/`) and/or `path` (the feature
  file relative to the feature directories, as in the original loader; a
  leading "None/" is dropped and the id is the file name without extension
  when there is no `video_id` column); or a plain list of ids, one a line.
* `--features_path` / `--features_path_3D`: directories holding
  `<video_id>.npy` or `.npz` (the first array of the npz), directly or under
  `<task>/`; each array is [num_frames, dim]. `--features_path_3D=""`
  writes no 3D stream. With a `path` column, AVLnet's layouts are found
  too: `<path>_2d.npz` / `<path>_3d.npz` (its training instructions) and
  `<path>/<video_id>_2d.npz` (its loader).
* `--features_path_audio` (AVLnet, optional): a directory of each video's
  audio, looked up as the AVLnet training instructions lay it out
  (`<root>/<path from --csv>{_2d.npz,_3d.npz,.wav}`) and where
  `tfrecord_tools.audio_spectrograms` and the original's loader put
  precomputed spectrograms, in this order: `<root>/<path>_spec.npz`,
  `<root>/<path>/<video_id>_spec.npz` (the original loader's place),
  `<root>/<path>.npz`, `<root>/<path>.wav` (with no `path` column, `<path>`
  is `<video_id>`, then `<task>/<video_id>`). A `.wav` becomes the log-mel
  spectrogram of `vidcore.audio` (`audio_spectrograms.file_spectrogram`; a
  wav at another sample rate is resampled to 16 kHz and logged); an `.npz`
  holds it already (`arr_0` [40, T], float16). The record then also holds
  the whole video's spectrogram (AVLnet keys of `input_pipeline.features`).
* `--caption_path`: a directory of `<video_id>.csv` files with columns
  start,end,text (MIL-NCE's release); a `.json` file mapping video_id ->
  {"start": [...], "end": [...], "text": [...]}; or the release's
  `caption.pickle` with that layout, read only with `--allow_pickle`
  (unpickling can run code hidden in the file).

Videos that cannot be converted are rejected with a reason (listed in
`rejects-<prefix>.jsonl`, see `conversion`): missing or unreadable feature
file, wrong feature size, NaN or float16-overflowing values, no frames,
missing or empty captions, malformed caption CSV line (file:line), a caption
whose start is after its end; with `--features_path_audio`: no audio file,
an unreadable wav or spectrogram, audio shorter than the video's features
(by more than one feature period; the reason says by how much).

CLI:

  python -m tfrecord_tools.howto_writer --csv=HowTo100M_v1.csv \
      --features_path=feats_2d --features_path_3D=feats_3d \
      --caption_path=caption.json --output_dir=out --num_shards=256 \
      --num_workers=8      # or --runner=beam --beam_options="..."
"""

import collections
import csv
import dataclasses
import functools
import io
import json
import math
import os
import pickle

from absl import flags
import numpy as np
import tensorflow as tf

from input_pipeline import features as F
from tfrecord_tools import audio_decode
from tfrecord_tools import audio_spectrograms
from tfrecord_tools import cli
from tfrecord_tools import tf_features
from tfrecord_tools import conversion
from vidcore import audio as core_audio

Stream = collections.namedtuple("Stream", ["frames", "rate"])
Stream.__doc__ = "One stream of a video: frames [T, dim], rate (per second)."
Audio = collections.namedtuple("Audio",
                               ["spectrogram", "nframes", "source_rate"])
Audio.__doc__ = ("A video's log-mel spectrogram [40, T] (vidcore.audio), its "
                 "valid frames and the source's sample rate.")

CAPTION_FIELDS = ("start", "end", "text")
FEATURE_EXTENSIONS = (".npy", ".npz")
PICKLE_EXTENSIONS = (".pickle", ".pkl")
_FLOAT16_LE = np.dtype("<f2")


# -- protos ------------------------------------------------------------------


def check_captions(captions, where):
    """Validates and normalises a caption dict.

    Args:
        captions: mapping with "start", "end" and "text" sequences of one
            length (lists, numpy arrays, ...).
        where: what to name in error messages (video id, file).

    Returns:
        Dict "start"/"end" -> list of float, "text" -> list of str (None or
        NaN text becomes "").

    Raises:
        InputError: missing key, differing lengths, no captions, a start or
            end that is not a finite number, start > end.
    """
    if not hasattr(captions, "get"):
        raise cli.InputError(
            f"{where}: captions must be a dict with 'start', 'end', 'text', "
            f"got {type(captions).__name__}")
    missing = [k for k in CAPTION_FIELDS if captions.get(k) is None]
    if missing:
        raise cli.InputError(f"{where}: captions lack {missing}")
    values = {k: list(captions[k]) for k in CAPTION_FIELDS}
    lengths = {k: len(v) for k, v in values.items()}
    if len(set(lengths.values())) != 1:
        raise cli.InputError(
            f"{where}: caption lists differ in length {lengths}")
    if not values["text"]:
        raise cli.InputError(f"{where}: empty captions (no start/end/text)")
    out = {"start": [], "end": [], "text": []}
    for i, (start, end, text) in enumerate(zip(*values.values())):
        start = _seconds(start, f"{where}: caption {i} start")
        end = _seconds(end, f"{where}: caption {i} end")
        if start > end:
            raise cli.InputError(
                f"{where}: caption {i} starts after it ends ({start} > "
                f"{end})")
        out["start"].append(start)
        out["end"].append(end)
        out["text"].append(caption_text(text))
    return out


def _seconds(value, where):
    """float(value), which must be finite."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise cli.InputError(
            f"{where} {value!r} is not a number") from None
    if not math.isfinite(seconds):
        raise cli.InputError(f"{where} is {seconds}")
    return seconds


def caption_text(text):
    """A caption text as str: bytes decoded, None or NaN (pandas) -> ""."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    return text.decode("utf-8") if isinstance(text, bytes) else str(text)


def check_frames(frames, where, dim=None, dim_flag=None):
    """Validates a stream's frames and converts them to float16.

    Args:
        frames: array [T, dim] (any float dtype).
        where: what to name in error messages.
        dim: expected feature size, or None for any.
        dim_flag: flag that sets `dim`, named in the message.

    Returns:
        Little-endian float16 array [T, dim].

    Raises:
        InputError: not 2-D, wrong size, no frames, NaN or values beyond the
            float16 range.
    """
    frames = np.asarray(frames)
    if frames.ndim != 2:
        raise cli.InputError(
            f"{where}: features have shape {list(frames.shape)}; expected "
            f"[num_frames, {dim or 'dim'}]")
    if dim is not None and frames.shape[1] != dim:
        flag = f" ({dim_flag}={dim})" if dim_flag else ""
        raise cli.InputError(
            f"{where}: feature size {frames.shape[1]} (shape "
            f"{list(frames.shape)}), expected {dim}{flag}")
    if frames.shape[0] == 0:
        raise cli.InputError(f"{where}: no frames (shape "
                             f"{list(frames.shape)})")
    if not np.issubdtype(frames.dtype, np.floating):
        raise cli.InputError(
            f"{where}: features have dtype {frames.dtype}; expected floats")
    if np.isnan(frames).any():
        raise cli.InputError(f"{where}: features contain NaN")
    with np.errstate(over="ignore"):  # overflow is reported below
        half = frames.astype(_FLOAT16_LE, copy=False)
    if not np.isfinite(half).all():
        raise cli.InputError(
            f"{where}: features contain infinite values or values beyond "
            "the float16 range (|x| > 65504)")
    return half


def audio_context(audio):
    """AVLnet context/Example features of a spectrogram.

    Args:
        audio: Audio (spectrogram float array [40, T], valid frames, source
            sample rate).

    Returns:
        dict key -> tf.train.Feature (AVLnet keys of input_pipeline.features).

    Raises:
        InputError: not [40, T], NaN or beyond the float16 range.
    """
    spectrogram = np.asarray(audio.spectrogram)
    if spectrogram.ndim != 2 or spectrogram.shape[0] != \
            core_audio.NUM_MEL_BINS:
        raise cli.InputError(
            f"spectrogram of shape {list(spectrogram.shape)}; expected "
            f"[{core_audio.NUM_MEL_BINS}, num_frames]")
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(spectrogram.astype(_FLOAT16_LE)).all():
            raise cli.InputError("spectrogram holds NaN or values beyond "
                                 "the float16 range")
    nframes = int(audio.nframes)
    if not 0 <= nframes <= spectrogram.shape[1]:
        raise cli.InputError(f"spectrogram valid frames {nframes} not in "
                             f"[0, {spectrogram.shape[1]}]")
    return {
        F.AVL_SPECTROGRAM: tf_features.bytes_feature(
            [core_audio.encode_spectrogram(spectrogram)]),
        F.AVL_SPECTROGRAM_FRAMES: tf_features.int64_feature([nframes]),
        F.AVL_SPECTROGRAM_BINS: tf_features.int64_feature(
            [core_audio.NUM_MEL_BINS]),
        F.AVL_SPECTROGRAM_RATE: tf_features.float_feature(
            [core_audio.FRAMES_PER_SECOND]),
        F.AVL_AUDIO_SOURCE_RATE: tf_features.int64_feature(
            [int(audio.source_rate)]),
    }


def make_video_example(video_id, captions, streams, audio=None):
    """Builds one HowTo100M training record.

    Args:
        video_id: str or bytes id.
        captions: dict "start", "end" (seconds) and "text" lists of equal,
            non-zero length.
        streams: dict stream name ("2d", "3d") -> Stream(frames [T, dim]
            float array, rate frames per second) (a plain (frames, rate)
            tuple works too).
        audio: optional Audio (AVLnet): the whole video's spectrogram.

    Returns:
        tf.train.SequenceExample.

    Raises:
        InputError: bad captions or frames (see check_captions,
            check_frames).
    """
    where = f"video {video_id!r}"
    captions = check_captions(captions, where)
    context = {
        F.HOWTO_VIDEO_ID: tf_features.bytes_feature([video_id]),
        F.HOWTO_CAPTION_START: tf_features.float_feature(captions["start"]),
        F.HOWTO_CAPTION_END: tf_features.float_feature(captions["end"]),
        F.HOWTO_CAPTION_TEXT: tf_features.bytes_feature(captions["text"]),
    }
    feature_lists = {}
    for name, (frames, rate) in streams.items():
        half = check_frames(frames, f"{where} stream {name!r}")
        context[F.howto_rate_key(name)] = tf_features.float_feature(
            [float(rate)])
        context[F.howto_dim_key(name)] = tf_features.int64_feature(
            [half.shape[1]])
        feature_lists[F.howto_frames_key(name)] = tf.train.FeatureList(
            feature=[tf_features.bytes_feature([row.tobytes()])
                     for row in half])
    if audio is not None:
        context.update(audio_context(audio))
    return tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(feature_list=feature_lists))


def parse_video_example(serialized):
    """Reads a record written by make_video_example back (for tests/tools).

    Args:
        serialized: the record's bytes.

    Returns:
        Dict "video_id" (str), "captions" (dict of lists: start, end as
        float32-rounded floats, text as str), "streams" (dict name ->
        Stream(float16 array [T, dim], rate)) and "audio" (Audio with a
        float16 [40, T] spectrogram, or None).
    """
    example = tf.train.SequenceExample.FromString(serialized)
    ctx = example.context.feature
    streams = {}
    for key, flist in example.feature_lists.feature_list.items():
        name = key.split("/", 1)[1]
        dim = ctx[F.howto_dim_key(name)].int64_list.value[0]
        raw = b"".join(f.bytes_list.value[0] for f in flist.feature)
        frames = np.frombuffer(raw, dtype=_FLOAT16_LE).reshape(-1, dim)
        streams[name] = Stream(frames, ctx[F.howto_rate_key(name)]
                               .float_list.value[0])
    return {
        "video_id": ctx[F.HOWTO_VIDEO_ID].bytes_list.value[0].decode(),
        "captions": {
            "start": list(ctx[F.HOWTO_CAPTION_START].float_list.value),
            "end": list(ctx[F.HOWTO_CAPTION_END].float_list.value),
            "text": [t.decode("utf-8") for t in
                     ctx[F.HOWTO_CAPTION_TEXT].bytes_list.value],
        },
        "streams": streams,
        "audio": parse_audio_feature(ctx),
    }


def parse_audio_feature(feature):
    """Audio of a record's feature map (context or Example), or None."""
    if F.AVL_SPECTROGRAM not in feature:
        return None
    raw = feature[F.AVL_SPECTROGRAM].bytes_list.value[0]
    frames = np.frombuffer(raw, dtype=_FLOAT16_LE).reshape(
        -1, core_audio.NUM_MEL_BINS)  # [T, 40] time-major
    return Audio(frames.T, feature[F.AVL_SPECTROGRAM_FRAMES].int64_list
                 .value[0], feature[F.AVL_AUDIO_SOURCE_RATE].int64_list
                 .value[0])


# -- feature files ------------------------------------------------------------


def load_array(path):
    """Loads a `.npy` array or the first array of a `.npz` (no pickles).

    Args:
        path: file path (any tf.io.gfile path).

    Returns:
        numpy array.

    Raises:
        InputError: unreadable file or an npz without arrays.
    """
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            if not loaded.files:
                raise cli.InputError(f"{path}: the npz holds no array")
            return loaded[loaded.files[0]]
    except cli.InputError:
        raise
    except Exception as e:  # noqa: BLE001 - numpy/zip/OS read errors
        raise cli.InputError(
            f"{path}: unreadable feature file ({type(e).__name__}: "
            f"{' '.join(str(e).split())})") from None


def feature_candidates(features_dir, video_id, task=None, rel_path=None,
                       stream=None):
    """Paths where a video's feature file may be, in lookup order.

    Args:
        features_dir: a stream's feature directory.
        video_id: the video id.
        task: optional task sub-directory.
        rel_path: optional path relative to features_dir (from the CSV's
            `path` column); with no .npy/.npz extension both are tried,
            then (with `stream`) AVLnet's layouts `<path>_<stream>.npz`
            (its training instructions) and `<path>/<video_id>_<stream>.npz`
            (its loader).
        stream: the stream's name ("2d", "3d"), for AVLnet's layouts.

    Returns:
        List of paths.
    """
    if rel_path:
        rel_path = rel_path[len("None/"):] if rel_path.startswith(
            "None/") else rel_path
        base = os.path.join(features_dir, rel_path)
        if base.endswith(FEATURE_EXTENSIONS):
            return [base]
        out = [base + ext for ext in FEATURE_EXTENSIONS]
        if stream:
            out += [f"{base}_{stream}.npz",
                    os.path.join(base, f"{video_id}_{stream}.npz")]
        return out
    stems = [os.path.join(features_dir, video_id)]
    if task:
        stems.append(os.path.join(features_dir, str(task), video_id))
    return [stem + ext for stem in stems for ext in FEATURE_EXTENSIONS]


def find_feature_file(features_dir, video_id, task=None, rel_path=None,
                      stream=None):
    """First existing feature file of a video, or None."""
    for path in feature_candidates(features_dir, video_id, task, rel_path,
                                   stream):
        if tf.io.gfile.exists(path):
            return path
    return None


# -- captions -----------------------------------------------------------------


def read_caption_csv(path):
    """Reads one video's MIL-NCE caption CSV (columns start,end,text).

    Args:
        path: CSV path.

    Returns:
        Dict "start", "end" -> lists of float, "text" -> list of str.

    Raises:
        InputError: unreadable file, no header with start,end,text, a
            malformed line, a start or end that is not a number, start > end
            (names file:line).
    """
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError, tf.errors.OpError) as e:
        raise cli.InputError(
            f"{path}: unreadable caption file ({type(e).__name__}: "
            f"{' '.join(str(e).split())})") from None
    rows = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(rows, None)
    if header is None or not set(CAPTION_FIELDS) <= {
            h.strip() for h in header}:
        raise cli.InputError(
            f"{path}:1: expected a header with columns start,end,text, got "
            f"{','.join(header or [])!r}")
    column = {h.strip(): i for i, h in enumerate(header)}
    out = {k: [] for k in CAPTION_FIELDS}
    for fields in rows:
        if not any(f.strip() for f in fields):
            continue
        line = rows.line_num
        if len(fields) != len(header):
            raise cli.InputError(
                f"{path}:{line}: malformed line {','.join(fields)!r}: "
                f"expected {len(header)} fields, got {len(fields)}")
        start, end = (_seconds(fields[column[k]], f"{path}:{line}: {k}")
                      for k in ("start", "end"))
        if start > end:
            raise cli.InputError(
                f"{path}:{line}: caption starts after it ends ({start} > "
                f"{end})")
        out["start"].append(start)
        out["end"].append(end)
        out["text"].append(fields[column["text"]])
    return out


def is_pickle_file(path):
    """True for a .pickle/.pkl name or a file starting with pickle's PROTO."""
    if path.lower().endswith(PICKLE_EXTENSIONS):
        return True
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read(1) == b"\x80"


def load_caption_source(path, allow_pickle=False):
    """Opens the caption source named by --caption_path.

    Args:
        path: a directory of `<video_id>.csv`, a `.json` file or a pickle
            (`.pickle`/`.pkl`) mapping video_id -> {start, end, text}.
        allow_pickle: permit reading a pickle.

    Returns:
        ("dir", path) or ("dict", mapping).

    Raises:
        MissingInputError: no such path.
        InputError: a pickle without allow_pickle, unreadable or not a dict.
    """
    if not path:
        raise cli.InputError("--caption_path is required")
    if tf.io.gfile.isdir(path):
        return "dir", path
    if not tf.io.gfile.exists(path):
        raise cli.MissingInputError(f"--caption_path: no such file or "
                                    f"directory {path}")
    if path.lower().endswith(".json"):
        mapping = _load_json(path)
    elif is_pickle_file(path):
        mapping = load_pickle(path, allow_pickle, "--caption_path")
    else:
        raise cli.InputError(
            f"--caption_path={path}: unknown caption format; expected a "
            "directory of <video_id>.csv files, a .json file or a "
            ".pickle/.pkl file (with --allow_pickle)")
    if not isinstance(mapping, dict):
        raise cli.InputError(
            f"{path}: expected a dict video_id -> {{start, end, text}}, got "
            f"{type(mapping).__name__}")
    return "dict", mapping


def _load_json(path):
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            return json.load(f)
    except ValueError as e:
        raise cli.InputError(f"{path}: invalid JSON ({e})") from None


def load_pickle(path, allow_pickle, flag):
    """Unpickles a file the user vouched for with --allow_pickle.

    Args:
        path: pickle file.
        allow_pickle: the user's --allow_pickle.
        flag: the flag that named the file, for the message.

    Returns:
        The unpickled object.

    Raises:
        InputError: allow_pickle is False, or the file does not unpickle.
    """
    if not allow_pickle:
        raise cli.InputError(
            f"{flag}={path} is a pickle file; unpickling can run code hidden "
            "in the file, so it is read only with --allow_pickle (pass it if "
            "you trust the file, or convert the data to JSON/CSV)")
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return pickle.load(f)  # noqa: S301 - only with --allow_pickle
    except Exception as e:  # noqa: BLE001 - any unpickling error
        raise cli.InputError(
            f"{path}: cannot unpickle ({type(e).__name__}: {e})") from None


# -- video list ---------------------------------------------------------------


def read_video_list(path):
    """Reads the video list: a CSV with a header, or one id per line.

    Args:
        path: CSV with a header naming `video_id` and/or `path` (optional
            `task`), or a headerless list of video ids.

    Returns:
        List of dicts "id", "task" (or None), "path" (or None), "where"
        (file:line).

    Raises:
        MissingInputError: no such file.
        InputError: malformed line, empty or duplicate id (names file:line).
    """
    if not tf.io.gfile.exists(path):
        raise cli.MissingInputError(f"--csv: no such file {path}")
    with tf.io.gfile.GFile(path, "r") as f:
        text = f.read().lstrip("\ufeff")
    rows = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(rows, [])]
    if "video_id" in header or "path" in header:
        videos = _videos_from_table(path, header, rows)
    else:
        videos = _videos_from_ids(path, text)
    if not videos:
        raise cli.InputError(f"{path}: no videos listed")
    seen = {}
    for video in videos:
        if video["id"] in seen:
            raise cli.InputError(
                f"{video['where']}: duplicate video id {video['id']!r} (first "
                f"at {seen[video['id']]})")
        seen[video["id"]] = video["where"]
    return videos


def _videos_from_table(path, header, rows):
    videos = []
    for where, row in cli.csv_table_rows(path, header, rows):
        rel_path = row.get("path") or None
        video_id = row.get("video_id")
        if video_id is None and rel_path:
            video_id = os.path.splitext(os.path.basename(rel_path))[0]
        _check_id(video_id, where)
        videos.append({"id": video_id, "task": row.get("task") or None,
                       "path": rel_path, "where": where})
    return videos


def _videos_from_ids(path, text):
    videos = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        video_id = line.strip()
        if not video_id:
            continue
        where = f"{path}:{line_no}"
        if "," in video_id:
            raise cli.InputError(
                f"{where}: malformed line {line!r}: expected one video id a "
                "line, or a CSV header naming video_id (and optionally task, "
                "path) on line 1")
        _check_id(video_id, where)
        videos.append({"id": video_id, "task": None, "path": None,
                       "where": where})
    return videos


def _check_id(video_id, where):
    if not video_id or "/" in video_id or "\\" in video_id:
        raise cli.InputError(f"{where}: invalid video id {video_id!r}")


# -- conversion ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VideoSettings:
    """Settings of a conversion (picklable; bound to convert_video).

    Attributes:
        features_path: 2D feature directory.
        features_path_3d: 3D feature directory, "" for no 3D stream.
        feature_rate_2d / feature_rate_3d: frames per second.
        feature_dim_2d / feature_dim_3d: expected feature sizes.
        caption_path: caption source (for messages and CSV lookup).
        caption_kind: "dir" (per-video CSV files) or "dict" (captions are
            carried by the items).
        features_path_audio: AVLnet audio directory (wav or spectrogram
            npz), "" for none.
    """

    features_path: str
    features_path_3d: str = ""
    feature_rate_2d: float = F.HOWTO_DEFAULT_RATES["2d"]
    feature_rate_3d: float = F.HOWTO_DEFAULT_RATES["3d"]
    feature_dim_2d: int = F.HOWTO_DEFAULT_DIMS["2d"]
    feature_dim_3d: int = F.HOWTO_DEFAULT_DIMS["3d"]
    caption_path: str = ""
    caption_kind: str = "dir"
    features_path_audio: str = ""

    def streams(self):
        """[(name, directory, rate, dim, flag suffix)] of the streams."""
        out = [("2d", self.features_path, self.feature_rate_2d,
                self.feature_dim_2d, "2d")]
        if self.features_path_3d:
            out.append(("3d", self.features_path_3d, self.feature_rate_3d,
                        self.feature_dim_3d, "3d"))
        return out


def _item_captions(item, settings):
    """The item's caption dict (read from its CSV file in "dir" mode)."""
    if settings.caption_kind == "dir":
        path = os.path.join(settings.caption_path, item["id"] + ".csv")
        if not tf.io.gfile.exists(path):
            raise conversion.Reject(f"no caption file {path}")
        return read_caption_csv(path), path
    if item.get("captions") is None:
        raise conversion.Reject(
            f"no captions for this video in {settings.caption_path}")
    return item["captions"], settings.caption_path


def _item_stream(item, name, directory, rate, dim, suffix):
    """Loads and checks one stream of the item; returns Stream."""
    path = find_feature_file(directory, item["id"], item.get("task"),
                             item.get("path"), name)
    if path is None:
        looked = feature_candidates(directory, item["id"], item.get("task"),
                                    item.get("path"), name)
        raise conversion.Reject(
            f"missing {name.upper()} feature file: none of {looked}")
    frames = check_frames(load_array(path), path, dim=dim,
                          dim_flag=f"--feature_dim_{suffix}")
    return Stream(frames, rate)


def audio_candidates(audio_dir, video_id, task=None, rel_path=None):
    """Paths where a video's audio may be, in lookup order (module
    docstring: precomputed spectrograms first, then the wav).

    Args:
        audio_dir: the --features_path_audio directory.
        video_id: the video id.
        task: optional task sub-directory.
        rel_path: optional path from the CSV's `path` column (a feature
            extension on it is dropped).

    Returns:
        List of paths.
    """
    if rel_path:
        rel_path = rel_path[len("None/"):] if rel_path.startswith(
            "None/") else rel_path
        if rel_path.endswith(FEATURE_EXTENSIONS):
            rel_path = os.path.splitext(rel_path)[0]
        bases = [os.path.join(audio_dir, rel_path)]
    else:
        bases = [os.path.join(audio_dir, video_id)]
        if task:
            bases.append(os.path.join(audio_dir, str(task), video_id))
    out = []
    for base in bases:
        out += [base + "_spec.npz", os.path.join(base, video_id + "_spec.npz"),
                base + ".npz", base + ".wav"]
    return out


def load_audio(path):
    """A video's spectrogram from a `.wav` (computed) or an `.npz`.

    Args:
        path: the file.

    Returns:
        Audio.

    Raises:
        InputError: unreadable file (decoder's or numpy's words).
    """
    if path.endswith(".npz"):
        try:
            spectrogram, nframes = audio_spectrograms.load_spectrogram_npz(
                path)
        except cli.InputError:
            raise
        except Exception as e:  # noqa: BLE001 - numpy/zip/OS read errors
            raise cli.InputError(
                f"{path}: unreadable spectrogram ({type(e).__name__}: "
                f"{' '.join(str(e).split())})") from None
        return Audio(spectrogram, nframes, core_audio.SAMPLE_RATE)
    try:
        spectrogram, nframes, decoded = audio_spectrograms.file_spectrogram(
            path)
    except audio_decode.AudioError as e:
        raise cli.InputError(f"unreadable audio: {e}") from None
    return Audio(spectrogram, nframes, decoded.source_rate)


def check_audio_length(audio, streams, where):
    """Rejects audio shorter than the video's features.

    The video lasts max over streams of frames / rate seconds; the audio
    nframes / 100. One feature period (the largest 1 / rate) is allowed,
    as a feature frame may cover a part-second at the end.

    Raises:
        InputError: saying by how much the audio is shorter.
    """
    video_seconds = max(len(s.frames) / s.rate for s in streams.values())
    audio_seconds = audio.nframes / core_audio.FRAMES_PER_SECOND
    slack = max(1.0 / s.rate for s in streams.values())
    if audio_seconds + slack < video_seconds:
        raise cli.InputError(
            f"{where}: audio of {audio_seconds:.2f} s is shorter than the "
            f"video's features ({video_seconds:.2f} s) by "
            f"{video_seconds - audio_seconds:.2f} s")


def _item_audio(item, settings, streams):
    """Loads and checks the item's audio; returns Audio."""
    looked = audio_candidates(settings.features_path_audio, item["id"],
                              item.get("task"), item.get("path"))
    path = next((p for p in looked if tf.io.gfile.exists(p)), None)
    if path is None:
        raise conversion.Reject(f"missing audio file: none of {looked}")
    audio = load_audio(path)
    check_audio_length(audio, streams, path)
    return audio


def convert_video(item, settings):
    """Converts one video (a read_video_list item) into its record.

    Args:
        item: dict "id", "task", "path", and "captions" in "dict" mode.
        settings: VideoSettings.

    Returns:
        [serialized SequenceExample].

    Raises:
        conversion.Reject: the video cannot be converted (reason given).
    """
    try:
        captions, source = _item_captions(item, settings)
        captions = check_captions(captions, source)
        streams = {}
        for name, directory, rate, dim, suffix in settings.streams():
            streams[name] = _item_stream(item, name, directory, rate, dim,
                                         suffix)
        audio = (_item_audio(item, settings, streams)
                 if settings.features_path_audio else None)
        example = make_video_example(item["id"], captions, streams, audio)
    except cli.InputError as e:
        raise conversion.Reject(str(e)) from None
    return [example.SerializeToString(deterministic=True)]


def build_items(videos, caption_source):
    """Attaches captions (in "dict" mode) to the video list items.

    Args:
        videos: read_video_list output.
        caption_source: load_caption_source output.

    Returns:
        List of picklable item dicts.
    """
    kind, source = caption_source
    items = []
    for video in videos:
        item = dict(video)
        if kind == "dict":
            item["captions"] = source.get(video["id"])
        items.append(item)
    return items


def convert_videos(csv_path, caption_path, settings, output_dir,
                   prefix="train", num_shards=1, allow_pickle=False,
                   **conversion_kwargs):
    """Converts the listed HowTo100M videos into sharded SequenceExamples.

    Args:
        csv_path: video list (see read_video_list).
        caption_path: caption source (see load_caption_source).
        settings: VideoSettings (its caption fields are filled in here).
        output_dir: output directory.
        prefix: shard name prefix.
        num_shards: number of shards.
        allow_pickle: permit a pickle caption file.
        **conversion_kwargs: runner, num_workers, beam_runner, beam_options,
            progress (see conversion.convert_items).

    Returns:
        conversion.ConversionResult.

    Raises:
        InputError, MissingInputError: bad input (one precise message).
        conversion.ConversionError: an unexpected error on an item.
    """
    _check_settings(settings)
    videos = read_video_list(csv_path)
    caption_source = load_caption_source(caption_path, allow_pickle)
    settings = dataclasses.replace(settings, caption_path=caption_path,
                                   caption_kind=caption_source[0])
    items = build_items(videos, caption_source)
    options = {"source": "howto100m_videos", "csv": csv_path,
               **dataclasses.asdict(settings)}
    return conversion.convert_items(
        items, functools.partial(convert_video, settings=settings),
        output_dir, prefix, num_shards, options=options, **conversion_kwargs)


def _check_settings(settings):
    if not tf.io.gfile.isdir(settings.features_path):
        raise cli.MissingInputError(
            f"--features_path: no such directory {settings.features_path}")
    if settings.features_path_audio and not tf.io.gfile.isdir(
            settings.features_path_audio):
        raise cli.MissingInputError(
            f"--features_path_audio: no such directory "
            f"{settings.features_path_audio}")
    if settings.features_path_3d and not tf.io.gfile.isdir(
            settings.features_path_3d):
        raise cli.MissingInputError(
            f"--features_path_3D: no such directory "
            f"{settings.features_path_3d}")
    for _, _, rate, dim, suffix in settings.streams():
        if not rate > 0:
            raise cli.InputError(
                f"--feature_rate_{suffix} must be > 0, got {rate}")
        if dim < 1:
            raise cli.InputError(
                f"--feature_dim_{suffix} must be >= 1, got {dim}")


# -- CLI ----------------------------------------------------------------------

FLAGS = flags.FlagValues()
cli.flag_topic("input", FLAGS)
flags.DEFINE_string(
    "csv", None,
    "Video list: CSV with a header naming video_id (optional columns task, "
    "path) as in the HowTo100M release, or one video id a line.",
    flag_values=FLAGS)
flags.DEFINE_string(
    "features_path", None,
    "2D feature directory: <video_id>.npy|.npz or <task>/<video_id>.npy|.npz "
    "(the first array of an npz), each [num_frames, dim].",
    flag_values=FLAGS)
flags.DEFINE_string(
    "features_path_3D", "",
    "3D feature directory, same layout; empty = no 3D stream.",
    flag_values=FLAGS)
flags.DEFINE_string(
    "features_path_audio", "",
    "AVLnet: audio directory (<path>.wav, or spectrograms <path>_spec.npz / "
    "<path>/<video_id>_spec.npz as tfrecord_tools.audio_spectrograms and "
    "the original write them); each record then holds the video's log-mel "
    "spectrogram. Empty = no audio.", flag_values=FLAGS)
flags.DEFINE_float("feature_rate_2d", F.HOWTO_DEFAULT_RATES["2d"],
                   "2D features per second of video.", flag_values=FLAGS)
flags.DEFINE_float("feature_rate_3d", F.HOWTO_DEFAULT_RATES["3d"],
                   "3D features per second of video (24 fps / 16 frames).",
                   flag_values=FLAGS)
flags.DEFINE_integer("feature_dim_2d", F.HOWTO_DEFAULT_DIMS["2d"],
                     "Expected 2D feature size.", flag_values=FLAGS)
flags.DEFINE_integer("feature_dim_3d", F.HOWTO_DEFAULT_DIMS["3d"],
                     "Expected 3D feature size.", flag_values=FLAGS)
flags.DEFINE_string(
    "caption_path", None,
    "Captions: a directory of <video_id>.csv (columns start,end,text), a "
    ".json file or the release's caption.pickle (needs --allow_pickle) "
    "mapping video_id -> {start, end, text}.", flag_values=FLAGS)
flags.DEFINE_boolean(
    "allow_pickle", False,
    "Allow reading a pickle --caption_path (unpickling can run code: only "
    "for files you trust).", flag_values=FLAGS)
conversion.define_flags(FLAGS, default_prefix="train")
for _name in ("csv", "features_path", "caption_path"):
    flags.mark_flag_as_required(_name, flag_values=FLAGS)


@cli.handle_errors
def main(argv):
    """Converts per the module FLAGS (which must be parsed)."""
    if len(argv) > 1:
        raise cli.InputError(f"unexpected arguments {argv[1:]}")
    settings = VideoSettings(
        features_path=FLAGS.features_path,
        features_path_3d=FLAGS.features_path_3D,
        feature_rate_2d=FLAGS.feature_rate_2d,
        feature_rate_3d=FLAGS.feature_rate_3d,
        feature_dim_2d=FLAGS.feature_dim_2d,
        feature_dim_3d=FLAGS.feature_dim_3d,
        features_path_audio=FLAGS.features_path_audio)
    result = convert_videos(FLAGS.csv, FLAGS.caption_path, settings,
                            allow_pickle=FLAGS.allow_pickle,
                            **conversion.flag_kwargs(FLAGS))
    print(result.summary())
    return 0


def run():
    """Console-script entry point."""
    cli.run(main, FLAGS)


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy, so that the convert
    # function reaches pool and Beam workers pickled by its module path.
    from tfrecord_tools import howto_writer as _module  # noqa: E402
    _module.run()
