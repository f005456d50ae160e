"""YouTube-8M prediction files: Kaggle submissions, label files, segment files.

Only numpy and pandas are used here (no TensorFlow import), so these functions
serve the inference CLI, the ensemble CLI and notebooks alike.

File formats (all UTF-8 text, one header line, ``\\n`` line ends; a path that
ends in ``.gz`` is read and written gzip-compressed):

* Video-level predictions (the Kaggle file), header
  ``VideoId,LabelConfidencePairs``; one line per video::

      6l0e,4 0.953125 118 0.412 12 0.0631

  label/confidence pairs separated by single spaces, sorted by descending
  confidence. The Kaggle submission keeps the top 20 pairs
  (:data:`DEFAULT_TOP_K`). **Raw scores for ensembling** use the very same
  format with a larger top_k (the published WILLOW commands write
  ``--top_k=50``, :data:`RAW_TOP_K`); the ensemble CLI reads either.
  Confidences are written with ``%.6g`` (:data:`CONFIDENCE_FORMAT`: six
  significant digits, the starter code's ``%g``), a relative rounding error
  of at most 5e-7, far below any difference between models, so averaging
  rounded files gives the same ranking as averaging the float32 scores.
* Validation labels, header ``VideoId,Labels``; one line per video with the
  space-separated ground-truth class ids (``6l0e,4 118``).
* 2019 segment predictions, header ``Class,Segments``; one line per class
  with the top-scoring ``videoid:start_time`` entries, best first
  (``3,6l0e:35 Xa9b:120``). ``start_time`` is the segment's first frame
  (= second) index, as in the ``segment_start_times`` feature.

Video ids are always strings: ``0001``, ``1e5`` or ``nan`` are ids, never
numbers. Readers are vectorised (numpy over the raw bytes of large blocks of
lines), so a 700k-line file is parsed in seconds; any malformed line raises
:class:`PredictionFileError` naming the file, the line number and the line.
Writers write to a hidden temporary file beside the target and rename it on
success, so an interrupted run never leaves a partial file under the final
name.
"""

import csv
import gzip
import io
import os
import re
import uuid

import numpy as np
import pandas as pd
import tensorflow as tf

from vidcore import files
from vidcore.errors import DataError

VIDEO_HEADER = "VideoId,LabelConfidencePairs"
LABELS_HEADER = "VideoId,Labels"
SEGMENT_HEADER = "Class,Segments"
DEFAULT_TOP_K = 20
RAW_TOP_K = 50
CONFIDENCE_FORMAT = "%.6g"

_VIDEO_LINE = "id,label confidence label confidence ..."
_LABELS_LINE = "id,label label ..."
_SEGMENT_LINE = "class,videoid:start_time videoid:start_time ..."
_CHUNK_BYTES = 1 << 25          # bytes of lines parsed per vectorised block
_MAX_CLASS_ID = np.iinfo(np.int32).max
_SPACE_BYTES = (9, 10, 11, 12, 13, 32)
# Byte lookup tables: separators, and "turn every separator into a newline".
_SEPARATOR = np.zeros(256, bool)
_SEPARATOR[list(_SPACE_BYTES)] = True
_TO_NEWLINE = np.where(_SEPARATOR, 10, np.arange(256)).astype(np.uint8)


class PredictionFileError(DataError):
    """A prediction, label or segment file (or data given to a writer) is bad.

    A ``vidcore.errors.DataError`` (hence a ``ValueError``), so command-line
    tools wrapped by ``vidcore.cli`` print it as one line.
    """


# --------------------------------------------------------------------------
# Atomic writing
# --------------------------------------------------------------------------


class _AtomicTextFile:
    """A text file written under a hidden temporary name and renamed on commit.

    Args:
      path: final file path; ``.gz`` paths are gzip-compressed.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        directory = files.parent_dir(self.path)
        name = self.path.rsplit("/", 1)[-1]
        if not tf.io.gfile.isdir(directory):
            raise FileNotFoundError(
                f"cannot write {self.path}: directory {directory} does not "
                "exist")
        self.tmp_path = (f"{directory}/.{name}.tmp-{os.getpid()}-"
                         f"{uuid.uuid4().hex[:8]}")
        # Local files through open() (fsync before the rename); any other
        # filesystem (gs://, s3://, ram://) through tf.io.gfile.
        self._raw = files.open_binary(self.tmp_path, "wb")
        self._gz = None
        stream = self._raw
        if self.path.endswith(".gz"):
            self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", mtime=0)
            stream = self._gz
        self._text = io.TextIOWrapper(stream, encoding="utf-8", newline="\n")
        self.closed = False

    def write(self, text):
        """Appends ``text`` (a str) to the temporary file."""
        self._text.write(text)

    def commit(self):
        """Flushes, syncs and renames the temporary file to the final path."""
        if self.closed:
            return
        self._text.flush()
        self._text.detach()
        if self._gz is not None:
            self._gz.close()
        self._raw.flush()
        if not files.is_url(self.tmp_path):
            os.fsync(self._raw.fileno())
        self._raw.close()
        tf.io.gfile.rename(self.tmp_path, self.path, overwrite=True)
        self.closed = True

    def abort(self):
        """Closes and deletes the temporary file; leaves the final path."""
        if self.closed:
            return
        self.closed = True
        for closer in (self._text.detach, getattr(self._gz, "close", None),
                       self._raw.close):
            try:
                if closer is not None:
                    closer()
            except (ValueError, OSError):
                pass
        try:
            tf.io.gfile.remove(self.tmp_path)
        except (OSError, tf.errors.OpError):
            pass


def concatenate_files(path, parts, header):
    """Writes ``header`` and then the rows of every part file, in order, to
    ``path`` (atomically; ``.gz`` compresses). Used by the chief of a
    multi-worker inference to join the workers' files.

    Args:
      path: output path.
      parts: paths of uncompressed files that each start with ``header``.
      header: the header line, without newline.

    Returns:
      Number of rows written.

    Raises:
      PredictionFileError: a part with another header, or a video id (the
        first cell) in more than one row.
    """
    out = _AtomicTextFile(path)
    seen = set()
    try:
        out.write(header + "\n")
        for part in parts:
            with tf.io.gfile.GFile(part, "r") as f:
                first = f.readline().rstrip("\n")
                if first != header:
                    raise PredictionFileError(
                        f"{part}: header {first!r}, expected {header!r}")
                for line in f:
                    video_id = line.split(",", 1)[0]
                    if video_id in seen:
                        raise PredictionFileError(
                            f"video id {video_id!r} of {part} is already "
                            f"in {path}")
                    seen.add(video_id)
                    out.write(line)
        out.commit()
    except BaseException:
        out.abort()
        raise
    return len(seen)


def _write_text_atomically(path_or_file, header, lines):
    """Writes a header and lines to a path (atomically) or an open text file.

    Args:
      path_or_file: a path, or an object with a ``write(str)`` method.
      header: the header line, without newline.
      lines: iterable of lines without newlines.
    """
    text = header + "\n" + "".join(line + "\n" for line in lines)
    if hasattr(path_or_file, "write"):
        path_or_file.write(text)
        return
    out = _AtomicTextFile(path_or_file)
    try:
        out.write(text)
        out.commit()
    except BaseException:
        out.abort()
        raise


# --------------------------------------------------------------------------
# Validation and formatting helpers
# --------------------------------------------------------------------------


def as_video_ids(video_ids):
    """Converts video ids (str, or bytes) to a str array, checking them.

    Args:
      video_ids: 1-D sequence of ids; bytes (e.g. from ``tf.string`` tensors)
        are decoded as UTF-8.

    Returns:
      1-D numpy array of ``str``.

    Raises:
      PredictionFileError: an id is empty or contains a comma, quote or
        whitespace (it could not be written to or read back from a CSV line).
    """
    ids = np.asarray(video_ids)
    if ids.size == 0 and ids.ndim == 1:  # [] is float64 to numpy
        return ids.astype(str)
    if ids.ndim != 1:
        raise PredictionFileError(
            f"video ids must be a 1-D sequence, got shape {ids.shape}")
    if ids.dtype.kind == "S":
        ids = np.char.decode(ids, "utf-8")
    elif ids.dtype.kind == "O":
        ids = np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v)
                        for v in ids.tolist()], dtype=str)
    elif ids.dtype.kind != "U":
        raise PredictionFileError(
            f"video ids must be strings (or bytes), got dtype {ids.dtype}; "
            "ids like '0001' must not be converted to numbers")
    if ids.size:
        bad = pd.Series(ids, dtype=object).str.contains(r'^$|[,"\s]',
                                                        regex=True)
        if bad.any():
            first = str(ids[int(np.flatnonzero(bad.to_numpy())[0])])
            raise PredictionFileError(
                f"invalid video id {first!r}: expected a non-empty id without "
                "commas, quotes or whitespace")
    return ids.astype(str)


def _check_prediction_arrays(video_ids, classes, scores):
    """Validates writer inputs and returns them as (str ids, int64, float64).

    Args:
      video_ids: N ids.
      classes: [N, k] integer class ids; negative values are padding.
      scores: [N, k] confidences (finite where the class is not padding).

    Returns:
      (ids [N] str, classes [N, k] int64, scores [N, k] float64).
    """
    ids = as_video_ids(video_ids)
    classes = np.asarray(classes)
    scores = np.asarray(scores)
    if classes.ndim != 2 or classes.shape != scores.shape or (
        classes.shape[0] != ids.size):
        raise PredictionFileError(
            f"expected classes and scores of shape [N, k] with N={ids.size} "
            f"video ids, got classes {classes.shape} and scores "
            f"{scores.shape}")
    if classes.size and classes.dtype.kind not in "iu":
        if not np.all(np.equal(np.mod(classes, 1), 0)):
            raise PredictionFileError(
                f"class ids must be integers, got dtype {classes.dtype}")
    classes = classes.astype(np.int64)
    scores = scores.astype(np.float64)
    bad = (classes >= 0) & ~np.isfinite(scores)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise PredictionFileError(
            f"video {str(ids[row])!r}: confidences must be finite numbers, "
            f"got {scores[row][bad[row]].tolist()}")
    return ids, classes, scores


def sort_predictions(classes, scores, top_k=None):
    """Sorts each row by descending confidence, padding last, and truncates.

    Args:
      classes: [N, k] integer class ids; negative entries are padding.
      scores: [N, k] confidences.
      top_k: keep at most this many pairs per row (None: keep all k).

    Returns:
      (classes [N, k'] int32 padded with -1, scores [N, k'] float32 padded with
      0), k' = min(k, top_k). Ties keep their input order.
    """
    classes = np.asarray(classes)
    scores = np.asarray(scores, dtype=np.float64)
    key = np.where(classes >= 0, -scores, np.inf)
    order = np.argsort(key, axis=1, kind="stable")
    if top_k is not None:
        if top_k < 1:
            raise PredictionFileError(f"top_k must be >= 1, got {top_k}")
        order = order[:, :top_k]
    classes = np.take_along_axis(classes, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    pad = classes < 0
    return (np.where(pad, -1, classes).astype(np.int32),
            np.where(pad, 0.0, scores).astype(np.float32))


def top_k_mask(scores, top_k):
    """Boolean mask of each row's top_k finite scores, without sorting.

    Equal scores at the cut are taken in column order (lower column first),
    exactly as a stable descending sort would; non-finite entries (e.g. -inf
    for "absent") are never selected.

    Args:
      scores: [N, W] float scores.
      top_k: entries kept per row.

    Returns:
      [N, W] bool with min(top_k, finite entries) True values per row.
    """
    scores = np.asarray(scores)
    width = scores.shape[1]
    finite = np.isfinite(scores)
    if width <= top_k:
        return finite
    kth = np.partition(np.where(finite, scores, -np.inf), width - top_k,
                       axis=1)[:, width - top_k]
    greater = scores > kth[:, None]
    equal = scores == kth[:, None]
    room = top_k - greater.sum(axis=1)
    cut = equal & (np.cumsum(equal, axis=1) <= room[:, None])
    return (greater | cut) & finite


def top_k_predictions(predictions, top_k=DEFAULT_TOP_K):
    """Top-k classes of dense score rows, best first.

    Args:
      predictions: [N, V] scores (e.g. model outputs); non-finite entries
        are skipped.
      top_k: pairs to keep per video (clipped to V).

    Returns:
      (classes [N, k] int32 padded with -1, scores [N, k] float32 padded
      with 0), sorted by descending score, equal scores by lower class id
      (also at the top-k cut).
    """
    predictions = np.asarray(predictions)
    if predictions.ndim != 2:
        raise PredictionFileError(
            f"expected predictions of shape [N, V], got {predictions.shape}")
    n, num_classes = predictions.shape
    k = min(int(top_k), num_classes)
    mask = top_k_mask(predictions, k)
    column = np.cumsum(mask, axis=1) - 1
    rows = np.broadcast_to(np.arange(n)[:, None], mask.shape)[mask]
    classes = np.full((n, k), -1, np.int64)
    scores = np.zeros((n, k), np.float64)
    classes[rows, column[mask]] = np.nonzero(mask)[1]
    scores[rows, column[mask]] = predictions[mask]
    return sort_predictions(classes, scores)


_FORMAT_ROWS = 32768   # rows formatted per vectorised step


def _digits(values, width):
    """Decimal digits of non-negative ints as an [n, width] uint8 matrix.

    Most significant digit first, zero-filled on the left.
    """
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers) % 10).astype(np.uint8)


def _int_cells(values):
    """ASCII of non-negative ints, NUL where a leading zero would be.

    NUL bytes are dropped when the line is assembled, so cells need no
    alignment.

    Args:
      values: [n] non-negative ints.

    Returns:
      [n, w] uint8.
    """
    values = values.astype(np.int64)
    width = len(str(int(values.max(initial=0))))
    digits = _digits(values, width)
    significant = np.maximum.accumulate(digits != 0, axis=1)
    significant[:, -1] = True                    # "0" keeps one digit
    return np.where(significant, digits + 48, 0).astype(np.uint8)


def _confidence_cells(values):
    """ASCII of confidences exactly as ``%.6g`` prints them, NUL-padded.

    Values in [1e-4, 1) (nearly all sigmoid outputs) are rounded to six
    significant digits and written as ``0.`` + nine decimals with trailing
    zeros dropped, in numpy; the few others (0, 1, tiny, negative) go through
    Python's ``%.6g``.

    Args:
      values: [n] float64.

    Returns:
      [n, w] uint8.
    """
    fast = (values >= 1e-4) & (values < 1.0)
    v = np.where(fast, values, 0.5)
    exponent = np.floor(np.log10(v))
    mantissa = np.rint(v * 10.0 ** (5 - exponent))
    for fix in (1, -1):                  # correct log10 rounding at decades
        off = mantissa >= 1e6 if fix == 1 else mantissa < 1e5
        exponent = np.where(off, exponent + fix, exponent)
        mantissa = np.where(off, np.rint(v * 10.0 ** (5 - exponent)), mantissa)
    fast &= (exponent >= -4) & (exponent <= -1) & (mantissa < 1e6)
    exponent = np.clip(exponent, -4, -1)
    nano = (mantissa * 10.0 ** (exponent + 4)).astype(np.int64)  # value * 1e9
    digits = _digits(nano, 9)
    kept = np.maximum.accumulate((digits != 0)[:, ::-1], axis=1)[:, ::-1]
    cells = np.empty((values.size, 11), np.uint8)
    cells[:, 0], cells[:, 1] = 48, 46            # "0."
    cells[:, 2:] = np.where(kept, digits + 48, 0)
    slow = np.flatnonzero(~fast)
    if slow.size == 0:
        return cells
    text = np.array([(CONFIDENCE_FORMAT % x).encode("ascii")
                     for x in values[slow].tolist()])
    width = max(cells.shape[1], text.itemsize)
    cells = np.pad(cells, ((0, 0), (0, width - cells.shape[1])))
    cells[slow] = 0
    cells[slow, :text.itemsize] = text.view(np.uint8).reshape(slow.size, -1)
    return cells


def _format_rows_fast(ids, classes, scores):
    """Formats sorted rows (padding last) as ``%d %.6g`` lines, vectorised.

    Args:
      ids: [n] str.
      classes: [n, k] int, -1 padding at the end of rows.
      scores: [n, k] float.

    Returns:
      The lines as one str, each ending in a newline.
    """
    n, k = classes.shape
    if k == 0:
        return "".join(f"{video_id},\n" for video_id in ids.tolist())
    parts = []
    for begin in range(0, n, _FORMAT_ROWS):
        rows = slice(begin, begin + _FORMAT_ROWS)
        parts.append(_format_block_fast(ids[rows], classes[rows],
                                        scores[rows]))
    return "".join(parts)


def _format_block_fast(ids, classes, scores):
    """Vectorised body of :func:`_format_rows_fast` for one block of rows."""
    n, k = classes.shape
    encoded = np.char.encode(ids, "utf-8")
    id_cells = encoded.view(np.uint8).reshape(n, encoded.itemsize)
    valid = classes >= 0
    class_cells = _int_cells(np.maximum(classes, 0).ravel())
    score_cells = _confidence_cells(scores.astype(np.float64).ravel())
    column = lambda byte, mask: np.where(mask, byte, 0).astype(np.uint8)[
        :, :, None]
    pairs = np.concatenate([
        column(32, valid & (np.arange(k) > 0)),
        class_cells.reshape(n, k, -1), column(32, valid),
        score_cells.reshape(n, k, -1)], axis=2)
    pairs[~valid] = 0
    full = np.concatenate([
        id_cells, np.full((n, 1), 44, np.uint8), pairs.reshape(n, -1),
        np.full((n, 1), 10, np.uint8)], axis=1)
    return full[full != 0].tobytes().decode("utf-8")


def _format_rows_printf(ids, classes, scores, confidence_format):
    """Formats sorted rows with a printf confidence format (Python loop)."""
    num_valid = (classes >= 0).sum(axis=1)
    lines = np.empty(ids.size, dtype=object)
    pair_format = "%d " + confidence_format
    for n in np.unique(num_valid).tolist():
        rows = np.flatnonzero(num_valid == n)
        cells = np.empty((rows.size, 2 * n + 1), dtype=object)
        cells[:, 0] = ids[rows]
        cells[:, 1::2] = classes[rows, :n].tolist()
        cells[:, 2::2] = scores[rows, :n].astype(np.float64).tolist()
        line_format = "%s," + " ".join([pair_format] * n) + "\n"
        lines[rows] = [line_format % tuple(cell) for cell in cells.tolist()]
    return "".join(lines.tolist())


def format_video_text(video_ids, classes, scores, top_k=None,
                      confidence_format=CONFIDENCE_FORMAT):
    """Formats Kaggle prediction lines (without header) as one string.

    Args:
      video_ids: N ids.
      classes: [N, k] integer class ids; negative entries are padding.
      scores: [N, k] confidences.
      top_k: keep at most this many pairs per video (None: all valid pairs).
      confidence_format: printf format of a confidence; the default ``%.6g``
        runs vectorised, any other goes through Python formatting.

    Returns:
      N lines ``id,label conf label conf ...\\n``, pairs sorted by descending
      confidence ("" when N is 0).
    """
    ids, classes, scores = _check_prediction_arrays(video_ids, classes, scores)
    classes, scores = sort_predictions(classes, scores, top_k)
    if ids.size == 0:
        return ""
    if confidence_format == CONFIDENCE_FORMAT:
        return _format_rows_fast(ids, classes, scores)
    return _format_rows_printf(ids, classes, scores, confidence_format)


def format_video_lines(video_ids, classes, scores, top_k=None,
                       confidence_format=CONFIDENCE_FORMAT):
    """Like :func:`format_video_text`, as a list of lines without newlines.

    Returns:
      List of N strings ``id,label conf label conf ...``.
    """
    return format_video_text(video_ids, classes, scores, top_k,
                             confidence_format).splitlines()


class VideoPredictionWriter:
    """Streams a Kaggle video prediction file, written atomically.

    Lines go to a hidden temporary file beside ``path``; :meth:`close` renames
    it to ``path``. Used as a context manager, an exception discards the
    temporary file, so ``path`` either holds a complete file or is untouched.

    Args:
      path: output path (``.gz`` for gzip).
      top_k: pairs kept per video (None: all pairs given to write_batch).
      confidence_format: printf format of a confidence.
    """

    def __init__(self, path, top_k=None, confidence_format=CONFIDENCE_FORMAT):
        self.path = os.fspath(path)
        self.top_k = top_k
        self.confidence_format = confidence_format
        self.num_written = 0
        self._seen = set()
        self._out = _AtomicTextFile(self.path)
        self._out.write(VIDEO_HEADER + "\n")

    def write_batch(self, video_ids, classes, scores):
        """Appends one line per video.

        Args:
          video_ids: N ids (str or bytes).
          classes: [N, k] integer class ids; negative entries are padding.
          scores: [N, k] confidences; each line is sorted by them.

        Raises:
          PredictionFileError: malformed arrays or a video id already written.
        """
        if self._out.closed:
            raise PredictionFileError(
                f"writer for {self.path} is already closed")
        ids = as_video_ids(video_ids).tolist()
        batch = set(ids)
        if len(batch) != len(ids) or not self._seen.isdisjoint(batch):
            dup = _first_duplicate(ids, self._seen)
            raise PredictionFileError(
                f"video id {dup!r} written twice to {self.path}")
        text = format_video_text(video_ids, classes, scores, self.top_k,
                                 self.confidence_format)
        self._seen.update(batch)
        self._out.write(text)
        self.num_written += len(ids)

    def close(self):
        """Finishes the file and renames it to its final path."""
        self._out.commit()

    def abort(self):
        """Discards everything written; the final path is left untouched."""
        self._out.abort()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def _first_duplicate(ids, seen):
    """First id of ``ids`` that is in ``seen`` or earlier in ``ids``."""
    local = set(seen)
    for video_id in ids:
        if video_id in local:
            return video_id
        local.add(video_id)
    return None


def write_video_predictions(path_or_file, video_ids, classes, scores,
                            top_k=None, confidence_format=CONFIDENCE_FORMAT):
    """Writes a Kaggle video prediction file.

    Args:
      path_or_file: output path (written atomically, ``.gz`` for gzip) or an
        open text file.
      video_ids: N ids.
      classes: [N, k] integer class ids; negative entries are padding.
      scores: [N, k] confidences.
      top_k: pairs kept per video after sorting (None: all valid pairs; use
        20 for a submission, 50 for raw scores to ensemble).
      confidence_format: printf format of a confidence.

    Returns:
      Number of videos written.
    """
    if hasattr(path_or_file, "write"):
        dup = _first_duplicate(as_video_ids(video_ids).tolist(), ())
        if dup is not None:
            raise PredictionFileError(f"video id {dup!r} given twice")
        text = format_video_text(video_ids, classes, scores, top_k,
                                 confidence_format)
        path_or_file.write(VIDEO_HEADER + "\n" + text)
        return len(video_ids)
    with VideoPredictionWriter(path_or_file, top_k, confidence_format) as w:
        w.write_batch(video_ids, classes, scores)
    return w.num_written


# --------------------------------------------------------------------------
# Vectorised parsing of "id,number number ..." files
# --------------------------------------------------------------------------


def _open_binary(path):
    """Opens a path for binary reading (gzip if it ends in .gz)."""
    path = os.fspath(path)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"prediction file not found: {path}")
    if path.endswith(".gz"):
        return files.open_gzip(path)
    return files.open_binary(path, "rb")


def _shorten(text, limit=120):
    return text if len(text) <= limit else text[:limit] + "..."


def _line_error(path, line_no, reason, content, expected):
    """Builds the one-line error for a malformed line."""
    if isinstance(content, bytes):
        content = content.decode("utf-8", errors="replace")
    content = content.rstrip("\r\n")
    return PredictionFileError(
        f"{path}, line {line_no}: {reason}; expected '{expected}', got "
        f"{_shorten(content)!r}")


def _read_header(f, path, header):
    """Reads and checks the header line; returns the number of lines read."""
    first = f.readline()
    text = first.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    if not first:
        raise PredictionFileError(
            f"{path} is empty; expected header {header!r}")
    if text != header:
        raise _line_error(path, 1, "unexpected header", text, header)
    return 1


def _iter_blocks(f, chunk_bytes):
    """Yields (bytes holding whole lines, number of lines before the block)."""
    lines_before = 1
    while True:
        block = f.read(chunk_bytes)
        if not block:
            return
        if not block.endswith(b"\n"):
            block += f.readline()
        yield block, lines_before
        lines_before += block.count(b"\n")


class _Rows:
    """Parsed non-blank lines of one block: ids, line numbers, numbers."""

    def __init__(self, ids, line_nos, counts, values, raw_lines):
        self.ids = ids            # [n] str
        self.line_nos = line_nos  # [n] int64, 1-based line numbers in the file
        self.counts = counts      # [n] int64, numbers on each line
        self.values = values      # [sum(counts)] float64
        self.raw_lines = raw_lines  # callable: row index -> line bytes


def _parse_block(block, lines_before, path, expected):
    """Splits a block of ``id,n n n`` lines into ids and numbers, vectorised.

    Every pass is a numpy operation over the block's bytes; the numbers are
    parsed by pandas' C float parser after turning every separator into a
    newline (one number per line). Python only loops over lines on the error
    path, to name the first bad line.

    Args:
      block: bytes of whole lines.
      lines_before: number of file lines preceding the block.
      path: file name for error messages.
      expected: description of a valid line for error messages.

    Returns:
      A :class:`_Rows` (blank lines are skipped).

    Raises:
      PredictionFileError: naming the first malformed line.
    """
    if not block.endswith(b"\n"):
        block += b"\n"
    arr = np.frombuffer(block, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    starts = np.concatenate([[0], newlines[:-1] + 1])
    ends = np.maximum(newlines - (arr[newlines - 1] == 13), starts)
    line_nos = lines_before + 1 + np.arange(starts.size)

    comma_pos = np.flatnonzero(arr == 44)
    first_comma = np.searchsorted(comma_pos, starts)
    num_commas = np.searchsorted(comma_pos, ends) - first_comma
    no_comma = np.flatnonzero(num_commas == 0)
    blank = [i for i in no_comma.tolist()
             if not block[starts[i]:ends[i]].strip()]
    if blank:
        keep = np.ones(starts.size, bool)
        keep[blank] = False
        starts, ends, line_nos = starts[keep], ends[keep], line_nos[keep]
        first_comma, num_commas = first_comma[keep], num_commas[keep]
    if starts.size == 0:
        return _Rows(np.zeros(0, str), line_nos, np.zeros(0, np.int64),
                     np.zeros(0), lambda i: b"")

    def raw_line(i):
        return block[starts[i]:ends[i]]

    bad = np.flatnonzero(num_commas != 1)
    if bad.size:
        raise _line_error(path, line_nos[bad[0]],
                          "expected exactly one ',' after the video id",
                          raw_line(bad[0]), expected)
    commas = comma_pos[first_comma]
    ids, id_index, id_bytes = _gather_ids(arr, starts, commas, path, line_nos)
    bad_id = (commas == starts) | _SEPARATOR[id_bytes].any(axis=1)
    if bad_id.any():
        i = np.flatnonzero(bad_id)[0]
        raise _line_error(path, line_nos[i],
                          "empty video id or whitespace in it", raw_line(i),
                          expected)

    # One number per line: separators (and the ids with their commas) -> "\n".
    numbers = _TO_NEWLINE[arr]
    numbers[id_index] = 10
    numbers[commas] = 10
    is_newline = numbers == 10
    token_starts = np.flatnonzero(~is_newline[1:] & is_newline[:-1]) + 1
    counts = (np.searchsorted(token_starts, ends) -
              np.searchsorted(token_starts, starts)).astype(np.int64)
    values = _parse_numbers(numbers, int(counts.sum()))
    if values is None:
        _raise_first_bad_number(block, starts, ends, commas, line_nos, path,
                                expected)
    return _Rows(ids, line_nos, counts, values, raw_line)


def _parse_numbers(numbers, expected_count):
    """Parses newline-separated numbers with pandas' C parser.

    Args:
      numbers: uint8 array of numbers separated by runs of newlines.
      expected_count: how many numbers the caller counted.

    Returns:
      float64 array, or None when a token is not a number or the count differs.
    """
    if expected_count == 0:
        return np.zeros(0, np.float64)
    try:
        frame = pd.read_csv(io.BytesIO(numbers.tobytes()), header=None,
                            names=["v"], dtype=np.float64, engine="c",
                            quoting=csv.QUOTE_NONE, skip_blank_lines=True,
                            na_filter=False)
    except (ValueError, pd.errors.ParserError):
        return None
    values = frame["v"].to_numpy(dtype=np.float64)
    return values if values.size == expected_count else None


def _gather_ids(arr, starts, commas, path, line_nos):
    """Extracts the id bytes [start, comma) of every line.

    Returns:
      (ids [n] str, flat byte positions of all id bytes, [n, w] uint8 id bytes
      padded with NUL).
    """
    lengths = commas - starts
    width = max(int(lengths.max()), 1)
    cols = np.arange(width)
    inside = cols < lengths[:, None]
    index = np.minimum(starts[:, None] + cols, arr.size - 1)
    cells = np.where(inside, arr[index], 0).astype(np.uint8)
    raw = np.ascontiguousarray(cells).view(f"S{width}").ravel()
    try:
        ids = np.char.decode(raw, "utf-8").astype(str)
    except UnicodeDecodeError:
        for i, value in enumerate(raw.tolist()):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise PredictionFileError(
                    f"{path}, line {line_nos[i]}: video id is not valid "
                    f"UTF-8: {value!r}") from None
        raise
    return ids, index[inside], cells


_NUMBER = re.compile(
    rb"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?inf(inity)?",
    re.IGNORECASE)


def _raise_first_bad_number(block, starts, ends, commas, line_nos, path,
                            expected):
    """Finds (line by line, only on the error path) the first bad number."""
    for i in range(starts.size):
        for token in block[commas[i] + 1:ends[i]].split():
            if not _NUMBER.fullmatch(token):
                raise _line_error(
                    path, line_nos[i],
                    f"{token.decode('utf-8', errors='replace')!r} is not a "
                    "finite decimal number",
                    block[starts[i]:ends[i]], expected)
    raise PredictionFileError(
        f"{path}: could not parse the numbers between lines {line_nos[0]} and "
        f"{line_nos[-1]}; expected lines '{expected}'")


def _first_bad_row(row_bad, rows, path, reason, expected):
    """Raises for the first row flagged in ``row_bad`` (if any)."""
    if np.any(row_bad):
        i = int(np.flatnonzero(row_bad)[0])
        raise _line_error(path, rows.line_nos[i], reason, rows.raw_lines(i),
                          expected)


def _value_rows(counts):
    """Row index of every value, for values laid out row after row."""
    return np.repeat(np.arange(counts.size), counts)


def _check_class_ids(class_values, value_rows, n, rows, path, what, expected):
    """Checks that class ids are integers in [0, 2^31) (vectorised)."""
    bad_value = ~np.isfinite(class_values) | (class_values < 0) | (
        class_values > _MAX_CLASS_ID) | (np.mod(class_values, 1) != 0)
    if bad_value.any():
        row_bad = np.zeros(n, bool)
        row_bad[value_rows[bad_value]] = True
        _first_bad_row(row_bad, rows, path,
                       f"{what} must be non-negative integers", expected)


def _pad_rows(counts, values, fill, dtype):
    """Lays out per-row values as a padded [n, max(counts)] matrix."""
    width = int(counts.max()) if counts.size else 0
    out = np.full((counts.size, width), fill, dtype=dtype)
    out[np.arange(width) < counts[:, None]] = values
    return out


def _check_unique_per_row(matrix, rows, path, what, expected):
    """Raises if a non-negative id appears twice on one row."""
    if matrix.shape[1] < 2:
        return
    s = np.sort(matrix, axis=1)
    dup = ((s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)).any(axis=1)
    _first_bad_row(dup, rows, path, f"a {what} appears twice", expected)


def _pairs_from_rows(rows, path):
    """Converts parsed rows into padded (classes, scores) matrices."""
    n = rows.ids.size
    _first_bad_row(rows.counts % 2 == 1, rows, path,
                   "odd number of values (expected label/confidence pairs)",
                   _VIDEO_LINE)
    value_rows = _value_rows(rows.counts // 2)
    class_values = rows.values[0::2]
    score_values = rows.values[1::2]
    _check_class_ids(class_values, value_rows, n, rows, path, "labels",
                     _VIDEO_LINE)
    bad_score = ~np.isfinite(score_values)
    if bad_score.any():
        row_bad = np.zeros(n, bool)
        row_bad[value_rows[bad_score]] = True
        _first_bad_row(row_bad, rows, path, "confidences must be finite",
                       _VIDEO_LINE)
    classes = _pad_rows(rows.counts // 2, class_values, -1, np.int32)
    scores = _pad_rows(rows.counts // 2, score_values, 0.0, np.float32)
    _check_unique_per_row(classes, rows, path, "label", _VIDEO_LINE)
    return classes, scores


def _labels_from_rows(rows, path):
    """Converts parsed rows into a padded label matrix."""
    _check_class_ids(rows.values, _value_rows(rows.counts), rows.ids.size,
                     rows, path, "labels", _LABELS_LINE)
    labels = _pad_rows(rows.counts, rows.values, -1, np.int32)
    _check_unique_per_row(labels, rows, path, "label", _LABELS_LINE)
    return labels


def _concat_padded(blocks, fill, dtype):
    """Concatenates [n_i, w_i] matrices, padding each to the widest."""
    width = max([b.shape[1] for b in blocks], default=0)
    out = [np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=fill)
           for b in blocks]
    if not out:
        return np.zeros((0, 0), dtype)
    return np.concatenate(out).astype(dtype, copy=False)


def _check_unique_ids(ids, line_nos, path):
    """Raises naming both lines if a video id appears twice."""
    dup = pd.Index(ids).duplicated(keep="first")
    if dup.any():
        j = int(np.flatnonzero(dup)[0])
        i = int(np.flatnonzero(ids == ids[j])[0])
        raise PredictionFileError(
            f"{path}: video id {str(ids[j])!r} appears twice (lines "
            f"{line_nos[i]} and {line_nos[j]}); expected one line per video")


def _read_id_number_file(path, header, expected, convert, chunk_bytes):
    """Reads an ``id,numbers`` file block by block.

    Args:
      path: file path.
      header: expected header line.
      expected: description of a valid line for errors.
      convert: function(rows, path) -> tuple of padded matrices.
      chunk_bytes: bytes parsed per vectorised block.

    Returns:
      (ids [N] str, list of per-output lists of matrices).
    """
    path = os.fspath(path)
    ids, line_nos, outputs = [], [], None
    with _open_binary(path) as f:
        _read_header(f, path, header)
        for block, lines_before in _iter_blocks(f, chunk_bytes):
            rows = _parse_block(block, lines_before, path, expected)
            if rows.ids.size == 0:
                continue
            converted = convert(rows, path)
            outputs = outputs or [[] for _ in converted]
            for acc, matrix in zip(outputs, converted):
                acc.append(matrix)
            ids.append(rows.ids)
            line_nos.append(rows.line_nos)
    ids = np.concatenate(ids) if ids else np.zeros(0, dtype=str)
    line_nos = np.concatenate(line_nos) if line_nos else np.zeros(0, np.int64)
    _check_unique_ids(ids, line_nos, path)
    return ids.astype(str), outputs or []


def read_video_predictions(path, chunk_bytes=_CHUNK_BYTES):
    """Reads a Kaggle video prediction file (submission or raw top-k scores).

    Args:
      path: file path (``.gz`` for gzip).
      chunk_bytes: bytes of lines parsed per vectorised block (memory bound).

    Returns:
      (video_ids [N] str, classes [N, k] int32 padded with -1,
      scores [N, k] float32 padded with 0), rows in file order, pairs in file
      order; k is the longest line's number of pairs.

    Raises:
      FileNotFoundError: the file does not exist.
      PredictionFileError: wrong header, malformed line (named by number),
        a label listed twice on a line, or a video id on two lines.
    """
    ids, outputs = _read_id_number_file(path, VIDEO_HEADER, _VIDEO_LINE,
                                        _pairs_from_rows, chunk_bytes)
    if not outputs:
        return ids, np.zeros((0, 0), np.int32), np.zeros((0, 0), np.float32)
    return (ids, _concat_padded(outputs[0], -1, np.int32),
            _concat_padded(outputs[1], 0.0, np.float32))


# --------------------------------------------------------------------------
# Label files
# --------------------------------------------------------------------------


def _label_rows(labels, num_videos):
    """Normalises labels (padded matrix or lists) to sorted int lists."""
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        labels = [row[row >= 0] for row in labels]
    labels = list(labels)
    if len(labels) != num_videos:
        raise PredictionFileError(
            f"expected one label list per video ({num_videos}), got "
            f"{len(labels)}")
    out = []
    for row in labels:
        row = np.asarray(row, dtype=np.int64).ravel()
        if (row < 0).any() or np.unique(row).size != row.size:
            raise PredictionFileError(
                f"labels must be distinct non-negative ints, got "
                f"{row.tolist()}")
        out.append(np.sort(row).tolist())
    return out


def write_labels(path_or_file, video_ids, labels):
    """Writes a ``VideoId,Labels`` file (ground truth of a validation set).

    Args:
      path_or_file: output path (written atomically) or an open text file.
      video_ids: N ids.
      labels: N sequences of class ids, or an [N, L] int matrix padded with
        negative values. Labels are written in ascending order.

    Returns:
      Number of videos written.
    """
    ids = as_video_ids(video_ids)
    rows = _label_rows(labels, ids.size)
    dup = _first_duplicate(ids.tolist(), ())
    if dup is not None:
        raise PredictionFileError(f"video id {dup!r} given twice")
    lines = [f"{video_id}," + " ".join(map(str, row))
             for video_id, row in zip(ids.tolist(), rows)]
    _write_text_atomically(path_or_file, LABELS_HEADER, lines)
    return len(lines)


def read_label_matrix(path, chunk_bytes=_CHUNK_BYTES):
    """Reads a ``VideoId,Labels`` file as a padded matrix (vectorised).

    Args:
      path: file path (``.gz`` for gzip).
      chunk_bytes: bytes of lines parsed per vectorised block.

    Returns:
      (video_ids [N] str, labels [N, L] int32 padded with -1, each row in file
      order).

    Raises:
      FileNotFoundError, PredictionFileError (as read_video_predictions).
    """
    ids, outputs = _read_id_number_file(
        path, LABELS_HEADER, _LABELS_LINE,
        lambda rows, name: (_labels_from_rows(rows, name),), chunk_bytes)
    if not outputs:
        return ids, np.zeros((0, 0), np.int32)
    return ids, _concat_padded(outputs[0], -1, np.int32)


def read_labels(path, chunk_bytes=_CHUNK_BYTES):
    """Reads a ``VideoId,Labels`` file as one label array per video.

    Args:
      path: file path (``.gz`` for gzip).
      chunk_bytes: bytes of lines parsed per vectorised block.

    Returns:
      (video_ids [N] str, list of N int32 arrays of class ids). Use
      :func:`read_label_matrix` for a padded [N, L] matrix instead.

    Raises:
      FileNotFoundError, PredictionFileError (as read_video_predictions).
    """
    ids, matrix = read_label_matrix(path, chunk_bytes)
    counts = (matrix >= 0).sum(axis=1)
    flat = matrix[matrix >= 0]
    return ids, np.split(flat, np.cumsum(counts)[:-1]) if ids.size else []


# --------------------------------------------------------------------------
# Aligning files
# --------------------------------------------------------------------------


def alignment_permutation(reference_ids, ids, reference_name="reference",
                          name="other", allow_extra=False):
    """Index that reorders ``ids`` to follow ``reference_ids``.

    Args:
      reference_ids: [N] unique ids in the wanted order.
      ids: [M] unique ids.
      reference_name: name (file) of the reference ids, for errors.
      name: name (file) of ``ids``, for errors.
      allow_extra: accept ids that are not in ``reference_ids`` (they are
        dropped), e.g. a labels file covering more videos than predicted.

    Returns:
      int64 array ``perm`` of length N with ``ids[perm] == reference_ids``.

    Raises:
      PredictionFileError: the id sets differ, naming the first offending id
        and both names.
    """
    perm = pd.Index(ids).get_indexer(reference_ids)
    missing = perm < 0
    if missing.any():
        first = str(reference_ids[int(np.flatnonzero(missing)[0])])
        raise PredictionFileError(
            f"video id {first!r} is in {reference_name} but not in {name} "
            f"({int(missing.sum())} such ids); expected the same set of "
            "videos")
    if not allow_extra and len(ids) != len(reference_ids):
        extra = pd.Index(reference_ids).get_indexer(ids) < 0
        first = str(ids[int(np.flatnonzero(extra)[0])])
        raise PredictionFileError(
            f"video id {first!r} is in {name} but not in {reference_name} "
            f"({int(extra.sum())} such ids); expected the same set of videos")
    return perm.astype(np.int64)


# --------------------------------------------------------------------------
# 2019 segment files
# --------------------------------------------------------------------------


def _segment_entry(entry):
    """Normalises a ``"vid:start"`` string or ``(vid, start)`` pair.

    Args:
      entry: ``"videoid:start_time"`` (str or bytes) or ``(video_id, start)``.

    Returns:
      (video_id str, start_time int).
    """
    if isinstance(entry, bytes):
        entry = entry.decode("utf-8")
    if isinstance(entry, str):
        video_id, sep, start = entry.rpartition(":")
        if not sep:
            raise PredictionFileError(
                f"segment {entry!r}: expected 'videoid:start_time'")
    else:
        video_id, start = entry
    if isinstance(video_id, bytes):
        video_id = video_id.decode("utf-8")
    video_id = str(video_id)
    if isinstance(start, (int, np.integer)):
        valid = int(start) >= 0
    else:
        start = str(start)
        valid = start.isascii() and start.isdigit()
    if not valid:
        raise PredictionFileError(
            f"segment {video_id}:{start}: start_time must be a non-negative "
            "int")
    if not video_id or any(c in video_id for c in ', "\t\n\r'):
        raise PredictionFileError(
            f"segment video id {video_id!r}: expected a non-empty id without "
            "commas, quotes or whitespace")
    return video_id, int(start)


def write_segment_predictions(path_or_file, class_to_ranked_segments):
    """Writes a 2019 segment prediction file (``Class,Segments``).

    Args:
      path_or_file: output path (written atomically) or an open text file.
      class_to_ranked_segments: {class id: segments best first}, each segment
        a ``"videoid:start_time"`` string or a ``(video_id, start_time)`` pair.
        Lines are written in ascending class order.

    Returns:
      Number of classes written.
    """
    lines = []
    for class_id in sorted(class_to_ranked_segments, key=int):
        if int(class_id) < 0 or int(class_id) != class_id:
            raise PredictionFileError(
                f"class id {class_id!r}: expected a non-negative int")
        entries = [_segment_entry(entry)
                   for entry in class_to_ranked_segments[class_id]]
        lines.append(f"{int(class_id)}," + " ".join(
            f"{video_id}:{start}" for video_id, start in entries))
    _write_text_atomically(path_or_file, SEGMENT_HEADER, lines)
    return len(lines)


def read_segment_predictions(path):
    """Reads a 2019 segment prediction file.

    Args:
      path: file path (``.gz`` for gzip).

    Returns:
      {class id (int): [(video_id str, start_time int), ...] best first}, in
      file order.

    Raises:
      FileNotFoundError, PredictionFileError naming the line.
    """
    path = os.fspath(path)
    result = {}
    with _open_binary(path) as f:
        _read_header(f, path, SEGMENT_HEADER)
        for line_no, raw in enumerate(f, start=2):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line.strip():
                continue
            class_text, sep, segments = line.partition(",")
            if not sep or "," in segments or not class_text.strip().isdigit():
                raise _line_error(path, line_no, "malformed line", line,
                                  _SEGMENT_LINE)
            class_id = int(class_text)
            if class_id in result:
                raise _line_error(path, line_no,
                                  f"class {class_id} appears twice", line,
                                  _SEGMENT_LINE)
            try:
                result[class_id] = [_segment_entry(token)
                                    for token in segments.split()]
            except PredictionFileError as e:
                raise _line_error(path, line_no, str(e), line,
                                  _SEGMENT_LINE) from None
    return result
