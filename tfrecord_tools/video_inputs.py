"""Inputs of the raw-video converter: label maps, class-folder trees and
CSV lists (path,label,start,end or the official Kinetics columns) ->
picklable conversion items (see `tfrecord_tools.video_writer` for the
rules).
"""

import csv
import io
import math
import os

import tensorflow as tf

from tfrecord_tools import cli

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v",
                    ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv", ".gif")
CSV_COLUMNS = ("path", "label", "start", "end")
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split",
                    "is_cc")
KINETICS_NAME = "{youtube_id}_{start:06d}_{end:06d}"


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


segment_media_id = _segment_media_id  # public: the MIL-NCE converter too


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
    for where, row in cli.csv_table_rows(csv_path, header, rows):
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
    for where, row in cli.csv_table_rows(csv_path, header, rows):
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
