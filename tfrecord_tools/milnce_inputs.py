"""Inputs of the MIL-NCE converter: the video list and caption tables of
HowTo100M, MSR-VTT 1k-A test, YouCook2 validation and HMDB-51 -> picklable
conversion items (the rules are in `tfrecord_tools.milnce_writer`).

Reading a list only parses it: files are looked up by the conversion
workers (each item carries its candidate paths), so that a list of a
million videos is planned without a million file-system calls and a missing
file is one rejected item, not an error.
"""

import collections
import csv
import io
import math
import os

import tensorflow as tf

from tfrecord_tools import cli
from tfrecord_tools.video_inputs import segment_media_id

DATASETS = ("howto100m", "msrvtt", "youcook", "hmdb")
HOWTO_LIST_COLUMN = "video_path"
MSRVTT_COLUMNS = ("video_id", "sentence")
YOUCOOK_COLUMNS = ("video_id", "task", "start", "end", "text")
YOUCOOK_EXTENSIONS = (".mp4", ".mkv", ".webm")  # the original's order
HMDB_COLUMNS = ("video_id", "label", "split1", "split2", "split3")
HMDB_LABEL_SUFFIX = "_test"
HMDB_SPLIT_VALUES = (0, 1, 2)  # unused, train, test


def make_item(item_id, candidates, media_id, where, start=None, end=None,
              captions=None, caption_file=None, label=None, label_index=None,
              splits=None):
    """One conversion item (a plain dict, picklable for pool/Beam workers).

    Args:
        item_id: id in rejects and fingerprints (unique per list).
        candidates: [(path, data_path)] in lookup order; the first existing
            path is converted, data_path is what the record names.
        media_id: the record's media id.
        where: "file:line" of the list row, for messages.
        start: segment start in seconds (None = the video's start).
        end: segment end in seconds (None = the video's end).
        captions: [(start, end, text)]; an end of None means the converted
            clip's end (MSR-VTT: the video's duration).
        caption_file: a `start,end,text` CSV read by the worker instead.
        label: class name, or None.
        label_index: class index, or None.
        splits: [3] ints (HMDB-51), or None.

    Returns:
        Dict with those keys ("id" for item_id).
    """
    return {"id": item_id, "candidates": [list(c) for c in candidates],
            "media_id": media_id, "where": where, "start": start,
            "end": end, "captions": captions, "caption_file": caption_file,
            "label": label, "label_index": label_index, "splits": splits}


# -- reading tables -----------------------------------------------------------


def _read_text(path, flag):
    """The UTF-8 text of a list file (BOM dropped)."""
    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
        raise cli.MissingInputError(f"{flag}: no such file {path}")
    with tf.io.gfile.GFile(path, "rb") as f:
        try:
            return f.read().decode("utf-8").lstrip("\ufeff")
        except UnicodeDecodeError as e:
            raise cli.InputError(f"{path}: not UTF-8 text ({e})") from None


def _table(path, flag, required):
    """Yields (where, {column: field}) of a CSV whose header has `required`.

    Raises:
        MissingInputError: no such file.
        InputError: a required column is missing, a line with another
            number of fields, no rows (names file:line).
    """
    rows = csv.reader(io.StringIO(_read_text(path, flag)))
    header = [h.strip() for h in next(rows, [])]
    missing = [c for c in required if c not in header]
    if missing:
        raise cli.InputError(
            f"{path}:1: header {','.join(header)!r} lacks columns {missing}; "
            f"expected {','.join(required)}")
    count = 0
    for where, row in cli.csv_table_rows(path, header, rows):
        count += 1
        yield where, row
    if not count:
        raise cli.InputError(f"{path}: no rows after the header")


def _seconds(text, where, column):
    """A finite, non-negative number of seconds from a CSV field."""
    try:
        value = float(text)
    except ValueError:
        raise cli.InputError(
            f"{where}: {column} {text!r} is not a number of seconds"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise cli.InputError(
            f"{where}: {column} must be a finite number >= 0, got {text!r}")
    return value


def _check_root(video_root):
    if not video_root:
        raise cli.InputError("--video_path (the folder of the videos) is "
                             "required")
    if not tf.io.gfile.isdir(video_root):
        raise cli.MissingInputError(
            f"--video_path: no such directory {video_root}")


def _under(root, rel):
    """root/rel, or rel itself when absolute or a URL."""
    return rel if os.path.isabs(rel) or "://" in rel else \
        os.path.join(root, rel)


def _check_unique(items, what="media id"):
    seen = {}
    for item in items:
        first = seen.setdefault(item["media_id"], item["where"])
        if first != item["where"]:
            raise cli.InputError(
                f"{item['where']}: duplicate {what} {item['media_id']!r} "
                f"(first at {first})")


# -- HowTo100M ----------------------------------------------------------------


def howto100m_video_id(video_file):
    """The video id of a list entry: its file name up to the first dot.

    As the original loader's `video_file.split('.')[0]`, taken on the file
    name so that entries in sub-folders find `<caption_root>/<id>.csv`
    ("ab/xyz.mp4" -> "xyz"; YouTube ids contain no dots).
    """
    return os.path.basename(video_file).split(".")[0]


def _howto100m_paths(path):
    """(where, video path) of a list: `video_path` column or one a line."""
    text = _read_text(path, "--train_csv")
    first = next(csv.reader(io.StringIO(text)), [])
    if HOWTO_LIST_COLUMN in [h.strip() for h in first]:
        return [(where, row[HOWTO_LIST_COLUMN]) for where, row in
                _table(path, "--train_csv", (HOWTO_LIST_COLUMN,))]
    out = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = next(csv.reader([line]), [])
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != 1:
            raise cli.InputError(
                f"{path}:{line_no}: malformed line {line!r}: expected a CSV "
                f"with a {HOWTO_LIST_COLUMN} column, or one video path a "
                "line")
        out.append((f"{path}:{line_no}", fields[0].strip()))
    return out


def read_howto100m(csv_path, video_root, caption_root):
    """HowTo100M video list -> one item per video, captions from files.

    Args:
        csv_path: the original's `howto100m_videos.csv` (a `video_path`
            column; other columns ignored) or one video path a line; paths
            relative to video_root.
        video_root: folder of the videos (--video_path).
        caption_root: folder of `<video_id>.csv` caption files.

    Returns:
        Items in list order; "id" is the listed path.

    Raises:
        MissingInputError: no such list file or folder.
        InputError: malformed line, empty path or id, duplicate video id
            (names file:line).
    """
    _check_root(video_root)
    if not caption_root:
        raise cli.InputError("--dataset=howto100m needs --caption_root (the "
                             "folder of <video_id>.csv caption files)")
    if not tf.io.gfile.isdir(caption_root):
        raise cli.MissingInputError(
            f"--caption_root: no such directory {caption_root}")
    items = []
    for where, rel in _howto100m_paths(csv_path):
        video_id = howto100m_video_id(rel)
        if not video_id:
            raise cli.InputError(f"{where}: no video id in path {rel!r}")
        items.append(make_item(
            rel, [(_under(video_root, rel), rel)], video_id, where,
            caption_file=os.path.join(caption_root, video_id + ".csv")))
    if not items:
        raise cli.InputError(f"{csv_path}: no videos listed")
    _check_unique(items, "video id")
    return items


# -- MSR-VTT ------------------------------------------------------------------


def read_msrvtt(csv_path, video_root):
    """MSR-VTT test CSV (key,vid_key,video_id,sentence) -> one item a row.

    Args:
        csv_path: the CSV (columns video_id and sentence are used).
        video_root: folder of `<video_id>.mp4`.

    Returns:
        Items in CSV order: media id = video id, one caption (0, the video's
        end, sentence).

    Raises:
        MissingInputError, InputError: as read_howto100m.
    """
    _check_root(video_root)
    items = []
    for where, row in _table(csv_path, "--csv", MSRVTT_COLUMNS):
        video_id = row["video_id"]
        if not video_id:
            raise cli.InputError(f"{where}: empty video_id")
        rel = video_id + ".mp4"
        items.append(make_item(video_id, [(_under(video_root, rel), rel)],
                               video_id, where,
                               captions=[(0.0, None, row["sentence"])]))
    _check_unique(items, "video_id")
    return items


# -- YouCook2 -----------------------------------------------------------------


def youcook_candidates(video_root, task, video_id):
    """[(path, data_path)] where a YouCook2 validation video may be.

    `<root>/validation/<task>/<video_id>.<ext>` (the original's layout),
    then `<root>/<video_id>.<ext>` (a flat folder), ext in mp4, mkv, webm.
    """
    rels = [os.path.join("validation", task, video_id + ext)
            for ext in YOUCOOK_EXTENSIONS]
    rels += [video_id + ext for ext in YOUCOOK_EXTENSIONS]
    return [(os.path.join(video_root, r), r) for r in rels]


def read_youcook(csv_path, video_root, segment_margin):
    """YouCook2 validation CSV (end,start,task,text,video_id) -> one item a
    row.

    Args:
        csv_path: the CSV.
        video_root: folder of the videos (see youcook_candidates).
        segment_margin: seconds converted past each caption's end.

    Returns:
        Items in CSV order: segment [start, end + segment_margin], one
        caption (start, end, text); media id `<video_id>_<start>_<end>`,
        with `_<n>` added for the n-th (n >= 2) row of the same video and
        times (the validation set has one such pair).

    Raises:
        MissingInputError, InputError: as read_howto100m, plus a start or
        end that is not a number >= 0 or an end before the start.
    """
    _check_root(video_root)
    if not (math.isfinite(segment_margin) and segment_margin >= 0):
        raise cli.InputError(
            f"--segment_margin must be >= 0, got {segment_margin}")
    repeats = collections.Counter()
    items = []
    for where, row in _table(csv_path, "--csv", YOUCOOK_COLUMNS):
        video_id = row["video_id"]
        if not video_id:
            raise cli.InputError(f"{where}: empty video_id")
        start = _seconds(row["start"], where, "start")
        end = _seconds(row["end"], where, "end")
        if end < start:
            raise cli.InputError(
                f"{where}: end {row['end']} is before start {row['start']}")
        media_id = segment_media_id(video_id, start, end)
        repeats[media_id] += 1
        if repeats[media_id] > 1:
            media_id = f"{media_id}_{repeats[media_id]}"
        items.append(make_item(
            media_id, youcook_candidates(video_root, row["task"], video_id),
            media_id, where, start=start, end=end + segment_margin,
            captions=[(start, end, row["text"])]))
    return items


# -- HMDB-51 ------------------------------------------------------------------


def hmdb_class_name(label):
    """The class (= folder) name of an hmdb51.csv label: `_test` dropped."""
    if label.endswith(HMDB_LABEL_SUFFIX):
        return label[:-len(HMDB_LABEL_SUFFIX)]
    return label


def read_hmdb(csv_path, video_root):
    """hmdb51.csv (video_id,label,split1,split2,split3) -> one item a row.

    Args:
        csv_path: the CSV.
        video_root: folder with one sub-folder per class
            (`<root>/<class>/<video_id>`).

    Returns:
        (items, class names): items in CSV order with the class index (the
        position of the class name in the sorted names of the CSV), name and
        the three splits; media id = the file name without extension.

    Raises:
        MissingInputError, InputError: as read_howto100m, plus a split
        that is not 0, 1 or 2.
    """
    _check_root(video_root)
    rows = []
    for where, row in _table(csv_path, "--csv", HMDB_COLUMNS):
        if not row["video_id"] or not row["label"]:
            raise cli.InputError(f"{where}: empty video_id or label")
        splits = []
        for column in HMDB_COLUMNS[2:]:
            value = row[column]
            if value not in {str(v) for v in HMDB_SPLIT_VALUES}:
                raise cli.InputError(
                    f"{where}: {column} must be 0 (unused), 1 (train) or 2 "
                    f"(test), got {value!r}")
            splits.append(int(value))
        rows.append((where, row["video_id"], hmdb_class_name(row["label"]),
                     splits))
    classes = sorted({name for _, _, name, _ in rows})
    index = {name: i for i, name in enumerate(classes)}
    items = []
    for where, video_id, name, splits in rows:
        rel = os.path.join(name, video_id)
        items.append(make_item(
            video_id, [(os.path.join(video_root, rel), rel)],
            os.path.splitext(video_id)[0], where, label=name,
            label_index=index[name], splits=splits))
    _check_unique(items)
    return items, classes
