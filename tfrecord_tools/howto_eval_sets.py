"""Evaluation / fine-tuning clip sets of HowTo100M -> Example shards.

One `tf.train.Example` per clip (layout: HowTo100M section of
`input_pipeline.features`): clip id, parent video id, caption text list and
one pooled float feature per stream ("2d", "3d").

Library:
  make_clip_example(clip_id, video_id, texts, pooled) -> tf.train.Example
  parse_clip_example(serialized)                      -> the values back
  read_clips(dataset, captions, split, json_path, allow_pickle)
  load_features(path, streams, clip_ids)
  convert_clip(item, settings)                        -> [serialized record]
  convert_eval_set(...)                               -> ConversionResult

Caption files (`--captions`) per `--dataset`:

* `msrvtt`, `--split=test`: the 1k-A test CSV with columns
  key,vid_key,video_id,sentence; clip id = video id = `video_id`.
* `msrvtt`, `--split=train` (fine-tuning): the authors' pickle (below),
  or the train CSV of video ids
  (header `video_id`, or one id a line) plus `--json`, MSR-VTT's
  `videodatainfo.json` ({"sentences": [{"video_id", "caption"}, ...]}); one
  record per video holding all of its sentences, in JSON order.
* `youcook`: the validation CSV with columns end,start,task,text,video_id;
  clip id = `<video_id>_<k>`, k = 0, 1, ... the clip's row index among the
  rows of its video, in file order (YouCook2 has no clip ids and two steps
  of one video may share start/end times).
* `lsmdc`: the public test file, tab-separated without header; column 0 is
  the clip name (= clip id = video id), column 5 the sentence.
* `csv`: a generic CSV with header clip_id,text and optionally video_id
  (default: the clip id); rows that share a clip id form one record with
  several captions.
* any dataset: the authors' pickle (a list of dicts with "id", "caption",
  "2d", "3d" and optionally "video_id"), read only with `--allow_pickle`;
  it carries the features, so `--features` is not needed. AVLnet's
  released pickles (YouCook2, CrossTask, YouCook-Japanese: "2d", "3d",
  "audio", "caption"; MSR-VTT: "2d_pooled", "3d_pooled", "audio",
  "caption" (a list of sentences in the train set), "eval_caption" (the
  test query)) convert the same way: "audio" (a [40, T] log-mel
  spectrogram, torch tensor or array) becomes the AVLnet spectrogram keys
  of `input_pipeline.features` with all T frames valid (the original's
  loaders take `nframes` = T), and an "eval_caption" is the clip's first
  caption (the query), followed by its other sentences.

Audio (AVLnet) from files: `--features_path_audio` names a directory of
`<clip_id>_spec.npz` / `<clip_id>.npz` spectrograms (as
`tfrecord_tools.audio_spectrograms` writes them) or `<clip_id>.wav` files.
With audio in play (a pickle with "audio" fields, or that flag), a clip
without audio is rejected, except in the MSR-VTT test split, where it is
written without the audio keys: the reader flags it (`has_audio` False)
and the evaluation counts it as a miss, as the authors did for the 32 of
1,000 test clips without audio.

Features (`--features`), the clip's pooled vector per stream ([dim], or
[num_frames, dim], which is max-pooled over frames):

* the authors' `.pth` torch file {"2d": {clip_id: tensor}, "3d": {...}}
  (needs PyTorch; read with `weights_only=True`, so no code runs);
* an `.npz` with arrays named `<stream>/<clip_id>` (e.g. `2d/video9770`);
* a directory with `<stream>/<clip_id>.npy` (or `.npz`, first array).

A clip without a caption or with a missing, wrong-sized or NaN feature is
rejected with its reason (`rejects-<prefix>.jsonl`), never silently dropped.
Malformed caption lines are errors naming file:line (a test set must not
shrink unnoticed). These sets are small: one shard in this process by
default, through the same `conversion` mechanism as the training videos.

CLI:

  python -m tfrecord_tools.howto_eval_sets --dataset=msrvtt \
      --captions=msrvtt_test.csv --features=msrvtt_test.pth --output_dir=out
"""

import collections
import csv
import dataclasses
import functools
import io
import json
import os

from absl import flags
import numpy as np
import tensorflow as tf

from input_pipeline import features as F
from tfrecord_tools import cli
from tfrecord_tools import tf_features
from tfrecord_tools import conversion
from tfrecord_tools import howto_writer
from vidcore import audio as core_audio

DATASETS = ("msrvtt", "youcook", "lsmdc", "csv")
SPLITS = ("test", "train")
DEFAULT_PREFIXES = {("msrvtt", "test"): "msrvtt_test",
                    ("msrvtt", "train"): "msrvtt_train",
                    ("youcook", "test"): "youcook_val",
                    ("lsmdc", "test"): "lsmdc_test",
                    ("csv", "test"): "clips"}
LSMDC_CLIP_COLUMN = 0
LSMDC_TEXT_COLUMN = 5


# -- protos ------------------------------------------------------------------


def check_pooled(values, where, dim=None, dim_flag=None):
    """Validates a clip's pooled feature of one stream.

    Args:
        values: array [dim], or [num_frames, dim] (max-pooled over frames).
        where: what to name in error messages.
        dim: expected size, or None for any.
        dim_flag: flag that sets `dim`, named in the message.

    Returns:
        float32 array [dim].

    Raises:
        InputError: wrong rank or size, no frames, non-float, NaN or
            infinite values.
    """
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[0] > 0:
        values = values.max(axis=0)
    if values.ndim != 1 or values.size == 0:
        raise cli.InputError(
            f"{where}: feature of shape {list(values.shape)}; expected "
            f"[{dim or 'dim'}] or [num_frames, {dim or 'dim'}]")
    if dim is not None and values.shape[0] != dim:
        flag = f" ({dim_flag}={dim})" if dim_flag else ""
        raise cli.InputError(
            f"{where}: feature size {values.shape[0]}, expected {dim}{flag}")
    if not np.issubdtype(values.dtype, np.floating):
        raise cli.InputError(
            f"{where}: feature dtype {values.dtype}; expected floats")
    if np.isnan(values).any():
        raise cli.InputError(f"{where}: feature contains NaN")
    if not np.isfinite(values).all():
        raise cli.InputError(f"{where}: feature contains infinite values")
    return values.astype(np.float32)


def make_clip_example(clip_id, video_id, texts, pooled, audio=None):
    """Builds one clip record.

    Args:
        clip_id: str or bytes clip id.
        video_id: parent video id (None: the clip id).
        texts: non-empty list of non-empty caption strings.
        pooled: dict stream name ("2d", "3d") -> float array [dim] (or
            [num_frames, dim], max-pooled here).
        audio: optional howto_writer.Audio (AVLnet): the clip's spectrogram.

    Returns:
        tf.train.Example.

    Raises:
        InputError: no caption, an empty caption or a bad feature.
    """
    where = f"clip {clip_id!r}"
    texts = [howto_writer.caption_text(t) for t in texts]
    if not texts:
        raise cli.InputError(f"{where}: no caption")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise cli.InputError(f"{where}: caption {empty[0]} is empty")
    feature = {
        F.HOWTO_CLIP_ID: tf_features.bytes_feature([clip_id]),
        F.HOWTO_VIDEO_ID: tf_features.bytes_feature(
            [clip_id if video_id is None else video_id]),
        F.HOWTO_CAPTION_TEXT: tf_features.bytes_feature(texts),
    }
    for stream, values in pooled.items():
        values = check_pooled(values, f"{where} stream {stream!r}")
        feature[F.howto_pooled_key(stream)] = tf.train.Feature(
            float_list=tf.train.FloatList(value=values.tolist()))
    if audio is not None:
        try:
            feature.update(howto_writer.audio_context(audio))
        except cli.InputError as e:
            raise cli.InputError(f"{where}: {e}") from None
    return tf.train.Example(features=tf.train.Features(feature=feature))


def parse_clip_example(serialized):
    """Reads a record written by make_clip_example back (tests/tools).

    Args:
        serialized: the record's bytes.

    Returns:
        Dict "clip_id", "video_id" (str), "texts" (list of str), "pooled"
        (dict stream -> float32 array), "audio" (howto_writer.Audio or
        None).
    """
    feature = tf.train.Example.FromString(serialized).features.feature
    pooled = {}
    for key, value in feature.items():
        if key.startswith("feature/") and key.endswith("/pooled"):
            pooled[key.split("/")[1]] = np.array(value.float_list.value,
                                                 dtype=np.float32)
    return {
        "clip_id": feature[F.HOWTO_CLIP_ID].bytes_list.value[0].decode(),
        "video_id": feature[F.HOWTO_VIDEO_ID].bytes_list.value[0].decode(),
        "texts": [t.decode("utf-8") for t in
                  feature[F.HOWTO_CAPTION_TEXT].bytes_list.value],
        "pooled": pooled,
        "audio": howto_writer.parse_audio_feature(feature),
    }


# -- caption files ------------------------------------------------------------


def _read_text(path, flag):
    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
        raise cli.MissingInputError(f"{flag}: no such file {path}")
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read().decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as e:
        raise cli.InputError(f"{path}: not UTF-8 text ({e})") from None


def _rows(path, text, delimiter=",", quoting=csv.QUOTE_MINIMAL):
    """Yields (line number, fields) of the non-blank CSV rows."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter,
                        quoting=quoting)
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                yield reader.line_num, fields
    except csv.Error as e:
        raise cli.InputError(
            f"{path}:{reader.line_num}: malformed line ({e})") from None


def _table(path, required, optional=(), flag="--captions"):
    """Yields (where, dict column -> value) of a CSV with a header.

    Raises:
        InputError: a required column is missing or a line has the wrong
            number of fields (names file:line).
    """
    rows = _rows(path, _read_text(path, flag))
    _, header = next(rows, (1, []))
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise cli.InputError(
            f"{path}:1: header {','.join(header)!r} lacks columns {missing}; "
            f"expected {','.join(required)}")
    wanted = [c for c in header if c in required or c in optional]
    for line, fields in rows:
        where = f"{path}:{line}"
        if len(fields) != len(header):
            raise cli.InputError(
                f"{where}: malformed line {','.join(fields)!r}: expected "
                f"{len(header)} fields ({','.join(header)}), got "
                f"{len(fields)}")
        yield where, {c: fields[header.index(c)].strip() for c in wanted}


def _clip(clip_id, video_id, texts, where):
    if not clip_id:
        raise cli.InputError(f"{where}: empty clip id")
    return {"id": clip_id, "video_id": video_id or clip_id,
            "texts": list(texts), "where": where}


def group_clips(rows):
    """Merges rows of one clip id into one clip with several captions.

    Args:
        rows: iterable of (clip_id, video_id, text, where).

    Returns:
        List of clip dicts "id", "video_id", "texts", "where" in order of
        first appearance.

    Raises:
        InputError: rows of one clip name different video ids.
    """
    clips = collections.OrderedDict()
    for clip_id, video_id, text, where in rows:
        clip = clips.get(clip_id)
        if clip is None:
            clips[clip_id] = _clip(clip_id, video_id, [text], where)
        elif (video_id or clip_id) != clip["video_id"]:
            raise cli.InputError(
                f"{where}: clip {clip_id!r} has video id {video_id!r} but "
                f"{clip['where']} gave {clip['video_id']!r}")
        else:
            clip["texts"].append(text)
    return list(clips.values())


def read_msrvtt_test(path):
    """MSR-VTT 1k-A test CSV (key,vid_key,video_id,sentence) -> clips."""
    return group_clips((r["video_id"], None, r["sentence"], where)
                       for where, r in _table(path, ("video_id", "sentence")))


def read_msrvtt_train(csv_path, json_path):
    """MSR-VTT train ids + videodatainfo.json -> one clip per video.

    Args:
        csv_path: CSV with a `video_id` column, or one id a line.
        json_path: MSR-VTT's videodatainfo.json.

    Returns:
        Clip dicts with all sentences of each video (empty list when the
        JSON has none: the clip is then rejected).

    Raises:
        InputError: malformed JSON or CSV.
    """
    if not json_path:
        raise cli.InputError("--dataset=msrvtt --split=train needs --json "
                             "(MSR-VTT's videodatainfo.json)")
    try:
        info = json.loads(_read_text(json_path, "--json"))
        sentences = info["sentences"]
        by_video = collections.defaultdict(list)
        for s in sentences:
            by_video[str(s["video_id"])].append(s["caption"])
    except (ValueError, KeyError, TypeError) as e:
        raise cli.InputError(
            f"{json_path}: expected MSR-VTT's videodatainfo JSON with "
            f"'sentences': [{{'video_id', 'caption'}}, ...] ({e!r})") from None
    return [_clip(v["id"], None, by_video.get(v["id"], []), v["where"])
            for v in howto_writer.read_video_list(csv_path)]


def read_youcook_csv(path):
    """YouCook2 validation CSV (end,start,task,text,video_id) -> clips.

    The clip id is `<video_id>_<k>` with k the row's index among the rows of
    the same video, in file order.
    """
    counts = collections.Counter()
    clips = []
    for where, r in _table(path, ("video_id", "text"), ("start", "end")):
        video_id = r["video_id"]
        if not video_id:
            raise cli.InputError(f"{where}: empty video_id")
        clips.append(_clip(f"{video_id}_{counts[video_id]}", video_id,
                           [r["text"]], where))
        counts[video_id] += 1
    return clips


def read_lsmdc(path):
    """LSMDC public test TSV (no header; col 0 clip, col 5 text) -> clips."""
    rows = _rows(path, _read_text(path, "--captions"), delimiter="\t",
                 quoting=csv.QUOTE_NONE)
    clips = []
    for line, fields in rows:
        where = f"{path}:{line}"
        if len(fields) <= LSMDC_TEXT_COLUMN:
            raise cli.InputError(
                f"{where}: malformed line: expected at least "
                f"{LSMDC_TEXT_COLUMN + 1} tab-separated fields (clip name "
                f"first, sentence sixth), got {len(fields)}")
        clips.append((fields[LSMDC_CLIP_COLUMN].strip(), None,
                      fields[LSMDC_TEXT_COLUMN].strip(), where))
    return group_clips(clips)


def read_generic_csv(path):
    """CSV with header clip_id,text[,video_id] -> clips."""
    return group_clips((r["clip_id"], r.get("video_id"), r["text"], where)
                       for where, r in _table(path, ("clip_id", "text"),
                                              ("video_id",)))


def read_clip_pickle(path, allow_pickle):
    """The authors' pickle: list of dicts id, caption, 2d, 3d -> clips.

    Args:
        path: pickle file.
        allow_pickle: the user's --allow_pickle.

    Returns:
        Clip dicts carrying "features" {stream: array or None}.

    Raises:
        InputError: without allow_pickle, or an unexpected layout.
    """
    data = howto_writer.load_pickle(path, allow_pickle, "--captions")
    if not isinstance(data, (list, tuple)):
        raise cli.InputError(
            f"{path}: expected a list of dicts with 'id', 'caption', '2d', "
            f"'3d', got {type(data).__name__}")
    clips = []
    for i, entry in enumerate(data):
        where = f"{path}[{i}]"
        if not isinstance(entry, dict) or "id" not in entry:
            raise cli.InputError(f"{where}: expected a dict with an 'id'")
        clip = _clip(str(entry["id"]), entry.get("video_id"),
                     _pickle_texts(entry), where)
        # HowTo100M / AVLnet YouCook2: "2d"; AVLnet MSR-VTT: "2d_pooled".
        clip["features"] = {
            s: entry.get(s, entry.get(f"{s}_pooled")) for s in
            F.HOWTO_STREAMS}
        if "audio" in entry:
            audio = entry["audio"]
            clip["audio"] = None if audio is None else _to_numpy(audio)
        clips.append(clip)
    return clips


def _pickle_texts(entry):
    """A pickle entry's captions: "eval_caption" (MSR-VTT's test query)
    first, then "caption" (a string or a list of sentences)."""
    texts = []
    for key in ("eval_caption", "caption"):
        value = entry.get(key)
        if value is None:
            continue
        for text in ([value] if isinstance(value, (str, bytes))
                     else list(value)):
            if text not in texts:
                texts.append(text)
    return texts


def read_clips(dataset, captions, split="test", json_path=None,
               allow_pickle=False):
    """Reads the clips of an evaluation / fine-tuning set.

    Args:
        dataset: "msrvtt", "youcook", "lsmdc" or "csv".
        captions: the caption file (see the module docstring), or the
            authors' pickle.
        split: "test", or "train" for msrvtt.
        json_path: msrvtt train: videodatainfo.json.
        allow_pickle: permit a pickle caption file.

    Returns:
        List of clip dicts "id", "video_id", "texts", "where" (and
        "features" for a pickle).

    Raises:
        InputError, MissingInputError: bad input (names file:line).
    """
    if dataset not in DATASETS:
        raise cli.InputError(f"--dataset must be one of {DATASETS}, got "
                             f"{dataset!r}")
    if split not in SPLITS or (split == "train" and dataset != "msrvtt"):
        raise cli.InputError(
            f"--split={split!r}: only --dataset=msrvtt has a train split; "
            "use --dataset=csv for other training clips")
    if not tf.io.gfile.exists(captions):
        raise cli.MissingInputError(f"--captions: no such file {captions}")
    if howto_writer.is_pickle_file(captions):  # e.g. msrvtt_train.pkl
        return read_clip_pickle(captions, allow_pickle)
    if split == "train":
        return read_msrvtt_train(captions, json_path)
    reader = {"msrvtt": read_msrvtt_test, "youcook": read_youcook_csv,
              "lsmdc": read_lsmdc, "csv": read_generic_csv}[dataset]
    clips = reader(captions)
    if not clips:
        raise cli.InputError(f"{captions}: no clips listed")
    return clips


# -- features -----------------------------------------------------------------


def load_features(path, streams, clip_ids):
    """Loads the clips' features from a .pth, an .npz or a directory.

    Args:
        path: `.pth` ({stream: {clip_id: tensor}}), `.npz` (arrays
            `<stream>/<clip_id>`) or a directory (`<stream>/<clip_id>.npy`).
        streams: stream names to read.
        clip_ids: the clips wanted.

    Returns:
        ("dir", path), or ("arrays", {stream: {clip_id: array}}) holding
        only the wanted clips that the file has.

    Raises:
        MissingInputError: no such path.
        InputError: unreadable file, PyTorch missing for .pth, wrong layout.
    """
    if not path:
        raise cli.InputError("--features is required (except with the "
                             "authors' pickle, which carries them)")
    if tf.io.gfile.isdir(path):
        return "dir", path
    if not tf.io.gfile.exists(path):
        raise cli.MissingInputError(f"--features: no such file or directory "
                                    f"{path}")
    if path.endswith(".npz"):
        arrays = _load_npz(path, streams, clip_ids)
    elif path.endswith((".pth", ".pt")):
        arrays = _load_pth(path, streams, clip_ids)
    else:
        raise cli.InputError(
            f"--features={path}: expected a .pth, an .npz or a directory")
    return "arrays", arrays


def _load_npz(path, streams, clip_ids):
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            loaded = np.load(io.BytesIO(f.read()), allow_pickle=False)
        names = set(loaded.files)
        return {s: {c: loaded[f"{s}/{c}"] for c in clip_ids
                    if f"{s}/{c}" in names} for s in streams}
    except Exception as e:  # noqa: BLE001 - numpy/zip errors
        raise cli.InputError(
            f"{path}: unreadable npz ({type(e).__name__}: {e})") from None


def _load_pth(path, streams, clip_ids):
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise cli.InputError(
            f"{path}: reading .pth features needs PyTorch (pip install "
            "'vidmodels[torch]'); or save them as an .npz with arrays named "
            "<stream>/<clip_id>") from None
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = torch.load(io.BytesIO(f.read()), map_location="cpu",
                              weights_only=True)
    except Exception as e:  # noqa: BLE001 - any torch load error
        raise cli.InputError(
            f"{path}: cannot load ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or not all(
            isinstance(data.get(s), dict) for s in streams):
        raise cli.InputError(
            f"{path}: expected a dict {{stream: {{clip_id: tensor}}}} with "
            f"streams {list(streams)}")
    return {s: {c: _to_numpy(data[s][c]) for c in clip_ids if c in data[s]}
            for s in streams}


def _to_numpy(value):
    """A torch tensor (any float dtype) or array -> numpy array."""
    if hasattr(value, "detach"):
        return value.detach().cpu().float().numpy()
    return np.asarray(value)


def attach_features(clips, feature_source, streams):
    """Gives each clip its features (arrays) or the feature directory.

    Args:
        clips: read_clips output (pickle clips keep their own features).
        feature_source: load_features output, or None for pickle clips.
        streams: stream names.

    Returns:
        New list of picklable item dicts.
    """
    items = []
    for clip in clips:
        item = dict(clip)
        if feature_source is not None:
            kind, source = feature_source
            if kind == "dir":
                item["feature_dir"] = source
            else:
                item["features"] = {s: source[s].get(clip["id"])
                                    for s in streams}
        items.append(item)
    return items


# -- conversion ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClipSettings:
    """Settings of a clip conversion (picklable; bound to convert_clip).

    Attributes:
        streams: stream names, e.g. ("2d", "3d").
        dims: expected feature size of each stream.
        features: the --features source (for messages).
        audio: "" (no audio), "pickle" (the items carry it) or the
            --features_path_audio directory.
        keep_missing_audio: write a clip without audio (MSR-VTT test)
            instead of rejecting it.
    """

    streams: tuple = F.HOWTO_STREAMS
    dims: tuple = (F.HOWTO_DEFAULT_DIMS["2d"], F.HOWTO_DEFAULT_DIMS["3d"])
    features: str = ""
    audio: str = ""
    keep_missing_audio: bool = False


def _clip_feature(item, stream, settings):
    """The clip's raw feature of one stream; Reject when there is none."""
    if "feature_dir" in item:
        for ext in howto_writer.FEATURE_EXTENSIONS:
            path = os.path.join(item["feature_dir"], stream, item["id"] + ext)
            if tf.io.gfile.exists(path):
                return howto_writer.load_array(path), path
        raise conversion.Reject(
            f"missing {stream} feature file "
            f"{os.path.join(item['feature_dir'], stream, item['id'])}"
            ".npy (or .npz)")
    value = item.get("features", {}).get(stream)
    if value is None:
        raise conversion.Reject(
            f"no {stream} feature for this clip in "
            f"{settings.features or item['where']}")
    return _to_numpy(value), settings.features or item["where"]


def _clip_audio(item, settings):
    """The clip's Audio, or None when it has none (see the module
    docstring); Reject for unreadable audio."""
    if settings.audio == "pickle":
        spectrogram = item.get("audio")
        if spectrogram is not None and np.ndim(spectrogram) == 2 and \
                np.shape(spectrogram)[1] > 0:
            return howto_writer.Audio(spectrogram, np.shape(spectrogram)[1],
                                      core_audio.SAMPLE_RATE)
        if spectrogram is not None and np.ndim(spectrogram) != 2:
            raise conversion.Reject(
                f"{item['where']}: audio of shape "
                f"{list(np.shape(spectrogram))}; expected "
                f"[{core_audio.NUM_MEL_BINS}, num_frames]")
        return None
    looked = howto_writer.audio_candidates(settings.audio, item["id"])
    path = next((p for p in looked if tf.io.gfile.exists(p)), None)
    return None if path is None else howto_writer.load_audio(path)


def convert_clip(item, settings):
    """Converts one clip item into its record.

    Args:
        item: dict "id", "video_id", "texts", "where" and "features" or
            "feature_dir" (see attach_features).
        settings: ClipSettings.

    Returns:
        [serialized Example].

    Raises:
        conversion.Reject: missing caption or feature, bad feature.
    """
    try:
        pooled = {}
        for stream, dim in zip(settings.streams, settings.dims):
            values, source = _clip_feature(item, stream, settings)
            pooled[stream] = check_pooled(
                values, f"{source}: clip {item['id']!r} stream {stream}",
                dim=dim, dim_flag=f"--feature_dim_{stream}")
        audio = _clip_audio(item, settings) if settings.audio else None
        if settings.audio and audio is None and \
                not settings.keep_missing_audio:
            raise conversion.Reject(
                f"{item['where']}: no audio for clip {item['id']!r} (kept "
                f"without audio only in the MSR-VTT test split)")
        example = make_clip_example(item["id"], item["video_id"],
                                    item["texts"], pooled, audio)
    except cli.InputError as e:
        raise conversion.Reject(str(e)) from None
    return [example.SerializeToString(deterministic=True)]


def convert_eval_set(dataset, captions, features, output_dir, split="test",
                     json_path=None, prefix=None, num_shards=1,
                     streams=F.HOWTO_STREAMS, dims=None, allow_pickle=False,
                     features_path_audio="", **conversion_kwargs):
    """Converts an evaluation / fine-tuning set into clip Example shards.

    Args:
        dataset: "msrvtt", "youcook", "lsmdc" or "csv".
        captions: caption file (or the authors' pickle).
        features: .pth / .npz / directory (None or "" with a pickle).
        output_dir: output directory.
        split: "test", or "train" (msrvtt).
        json_path: msrvtt train: videodatainfo.json.
        prefix: shard name prefix (default e.g. "msrvtt_test").
        num_shards: number of shards.
        streams: stream names.
        dims: expected sizes per stream (default 2048 each).
        allow_pickle: permit a pickle caption file.
        features_path_audio: AVLnet audio directory ("" for none; a pickle
            with "audio" fields needs none).
        **conversion_kwargs: runner, num_workers, beam_runner,
            beam_options, progress (see conversion.convert_items).

    Returns:
        conversion.ConversionResult.

    Raises:
        InputError, MissingInputError: bad input (one precise message).
    """
    streams = tuple(streams)
    dims = tuple(dims) if dims else tuple(F.HOWTO_DEFAULT_DIMS.get(s, 2048)
                                          for s in streams)
    if not streams or len(streams) != len(dims):
        raise cli.InputError(f"streams {streams} and dims {dims} must be "
                             "non-empty and of equal length")
    clips = read_clips(dataset, captions, split, json_path, allow_pickle)
    from_pickle = "features" in clips[0]
    source = None if from_pickle and not features else load_features(
        features, streams, [c["id"] for c in clips])
    items = attach_features(clips, source, streams)
    if features_path_audio and not tf.io.gfile.isdir(features_path_audio):
        raise cli.MissingInputError(f"--features_path_audio: no such "
                                    f"directory {features_path_audio}")
    audio = features_path_audio or (
        "pickle" if any("audio" in c for c in clips) else "")
    settings = ClipSettings(
        streams, dims, features or captions, audio,
        keep_missing_audio=(dataset, split) == ("msrvtt", "test"))
    prefix = prefix or DEFAULT_PREFIXES.get((dataset, split), "clips")
    options = {"source": f"howto_eval_{dataset}_{split}",
               "captions": captions, "json": json_path, "features": features,
               "streams": list(streams), "dims": list(dims),
               "audio": audio}
    return conversion.convert_items(
        items, functools.partial(convert_clip, settings=settings),
        output_dir, prefix, num_shards, options=options, **conversion_kwargs)


# -- CLI ----------------------------------------------------------------------

FLAGS = flags.FlagValues()
cli.flag_topic("input", FLAGS)
flags.DEFINE_enum("dataset", None, list(DATASETS),
                  "Caption file layout (see the module docstring).",
                  flag_values=FLAGS)
flags.DEFINE_enum("split", "test", list(SPLITS),
                  "test, or train for --dataset=msrvtt (fine-tuning set: "
                  "--captions is the train id CSV, --json the "
                  "videodatainfo.json).", flag_values=FLAGS)
flags.DEFINE_string("captions", None,
                    "Caption CSV/TSV (per --dataset) or the authors' pickle "
                    "(needs --allow_pickle).", flag_values=FLAGS)
flags.DEFINE_string("json", None,
                    "MSR-VTT videodatainfo.json (--split=train).",
                    flag_values=FLAGS)
flags.DEFINE_string(
    "features", None,
    "Pooled clip features: the authors' .pth (needs PyTorch), an .npz with "
    "arrays <stream>/<clip_id>, or a directory <stream>/<clip_id>.npy.",
    flag_values=FLAGS)
flags.DEFINE_string(
    "features_path_audio", "",
    "AVLnet: directory of <clip_id>_spec.npz / <clip_id>.npz spectrograms or "
    "<clip_id>.wav files (a pickle with 'audio' fields needs none).",
    flag_values=FLAGS)
flags.DEFINE_boolean("allow_pickle", False,
                     "Allow reading a pickle --captions file (unpickling can "
                     "run code: only for files you trust).",
                     flag_values=FLAGS)
flags.DEFINE_string("streams", ",".join(F.HOWTO_STREAMS),
                    "Comma-separated streams to write.", flag_values=FLAGS)
flags.DEFINE_integer("feature_dim_2d", F.HOWTO_DEFAULT_DIMS["2d"],
                     "Expected 2D feature size.", flag_values=FLAGS)
flags.DEFINE_integer("feature_dim_3d", F.HOWTO_DEFAULT_DIMS["3d"],
                     "Expected 3D feature size.", flag_values=FLAGS)
conversion.define_flags(FLAGS, default_prefix="")
FLAGS["prefix"].help = ("Shard name prefix (default: msrvtt_test, "
                        "msrvtt_train, youcook_val, lsmdc_test or clips).")
for _name in ("dataset", "captions"):
    flags.mark_flag_as_required(_name, flag_values=FLAGS)


@cli.handle_errors
def main(argv):
    """Converts per the module FLAGS (which must be parsed)."""
    if len(argv) > 1:
        raise cli.InputError(f"unexpected arguments {argv[1:]}")
    streams = cli.parse_name_list(FLAGS.streams)
    unknown = [s for s in streams if s not in F.HOWTO_STREAMS]
    if unknown or not streams:
        raise cli.InputError(f"--streams={FLAGS.streams!r}: expected a "
                             f"subset of {list(F.HOWTO_STREAMS)}")
    dims = [FLAGS[f"feature_dim_{s}"].value for s in streams]
    result = convert_eval_set(
        FLAGS.dataset, FLAGS.captions, FLAGS.features, split=FLAGS.split,
        json_path=FLAGS.json, streams=streams, dims=dims,
        allow_pickle=FLAGS.allow_pickle,
        features_path_audio=FLAGS.features_path_audio,
        **conversion.flag_kwargs(FLAGS))
    print(result.summary())
    return 0


def run():
    """Console-script entry point."""
    cli.run(main, FLAGS)


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy, so that the convert
    # function reaches pool and Beam workers pickled by its module path.
    from tfrecord_tools import howto_eval_sets as _module  # noqa: E402
    _module.run()
