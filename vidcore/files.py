"""Atomic file writes shared by every tool: a reader never sees a file half
written, and an interrupted write leaves the previous file (if any) intact."""

import contextlib
import glob as _glob
import gzip
import io
import json
import os
import stat

import tensorflow as tf


def is_url(path):
    """True for a path with a filesystem scheme (gs://, s3://, ram://, ...),
    which only ``tf.io.gfile`` can open."""
    return "://" in os.fspath(path)


def parent_dir(path):
    """The directory a path is in: absolute for a local path, the prefix
    before the last "/" for a URL (``ram://bucket/a.csv`` ->
    ``ram://bucket``)."""
    path = os.fspath(path)
    if is_url(path):
        return path.rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(path))


class GFileStream(io.RawIOBase):
    """A ``tf.io.gfile.GFile`` as a binary ``io`` stream, so that
    ``gzip.GzipFile``, ``io.TextIOWrapper`` and ``pandas`` can read or
    write any filesystem TensorFlow knows.

    Args:
        path: file path (any tf.io.gfile scheme).
        mode: "rb" or "wb".
    """

    def __init__(self, path, mode):
        super().__init__()
        if mode not in ("rb", "wb"):
            raise ValueError(f"mode must be 'rb' or 'wb', got {mode!r}")
        self._mode = mode
        self._file = tf.io.gfile.GFile(path, mode)

    def readable(self):
        return self._mode == "rb"

    def writable(self):
        return self._mode == "wb"

    def readinto(self, buffer):
        data = self._file.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def write(self, data):
        self._file.write(bytes(data))
        return len(data)

    def flush(self):
        if not self.closed:
            self._file.flush()

    def close(self):
        if not self.closed:
            self._file.close()
        super().close()


def display_path(path):
    """``path`` as shown to a user: absolute when local, as given when it
    is a URL (``os.path.abspath`` would turn ``gs://b/x`` into
    ``<cwd>/gs:/b/x``)."""
    path = os.fspath(path)
    return path if is_url(path) else os.path.abspath(path)


def read_json(path):
    """The JSON document in ``path`` (any tf.io.gfile filesystem), or None
    when there is no such file."""
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "r") as f:
        return json.load(f)


def is_file(path):
    """True when ``path`` (any tf.io.gfile filesystem) is an existing file,
    not a directory."""
    return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def glob(pattern):
    """Paths matching ``pattern``: the standard library's glob for a local
    pattern, ``tf.io.gfile.glob`` for any other filesystem."""
    if is_url(pattern):
        return tf.io.gfile.glob(pattern)
    return _glob.glob(pattern)


def open_binary(path, mode="rb"):
    """A buffered binary stream of ``path``: open() for a local path,
    GFileStream for any other filesystem."""
    if not is_url(path):
        return open(path, mode)
    stream = GFileStream(path, mode)
    return (io.BufferedReader(stream) if mode == "rb"
            else io.BufferedWriter(stream))


def open_gzip(path):
    """A gzip reader of ``path`` (any tf.io.gfile filesystem)."""
    if is_url(path):
        return gzip.GzipFile(fileobj=open_binary(path, "rb"), mode="rb")
    return gzip.open(path, "rb")


def _partial_path(path):
    """The hidden temporary name (``.<name>.partial``) an atomic write uses
    beside ``path``; it matches no ``prefix*`` glob."""
    return os.path.join(os.path.dirname(path),
                        "." + os.path.basename(path) + ".partial")


def _is_special_file(path):
    """True for an existing local path that is not a regular file or
    directory: a device (``/dev/null``, ``/dev/stdout``), a FIFO or a
    socket. Such a path cannot be replaced by renaming a file over it (as
    root that would turn ``/dev/null`` into a regular file)."""
    if is_url(path):
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


@contextlib.contextmanager
def _atomic_writer(path, mode):
    """A file object whose content lands at ``path`` only once complete.

    Writes to the hidden temporary ``.<name>.partial`` beside ``path`` and
    renames it over ``path`` on success; on an exception the temporary is
    removed and ``path`` keeps its previous content. A device or FIFO
    (``/dev/null``, ``/dev/stdout``) is written directly.
    """
    if _is_special_file(path):
        with open(path, mode) as f:
            yield f
        return
    tmp = _partial_path(path)
    try:
        with tf.io.gfile.GFile(tmp, mode) as f:
            yield f
    except BaseException:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)
        raise
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_text_atomic(path, text):
    """Writes ``text`` to ``path`` via a hidden temporary file beside it.

    The temporary name (``.<name>.partial``) matches no ``prefix*`` glob;
    it is renamed over ``path`` once complete. Any ``tf.io.gfile`` path; a
    device such as ``/dev/null`` is written directly.

    Args:
        path: destination file.
        text: str content.
    """
    with _atomic_writer(path, "w") as f:
        f.write(text)


def write_lines_atomic(path, lines):
    """Writes an iterable of str lines (each without its newline) to
    ``path`` as :func:`write_text_atomic`, without holding them all in
    memory.

    Args:
        path: destination file.
        lines: iterable of str.
    """
    with _atomic_writer(path, "w") as f:
        for line in lines:
            f.write(line + "\n")


def write_bytes_atomic(path, data):
    """Writes ``data`` (bytes, e.g. a serialised ``.npz``) to ``path`` via a
    hidden temporary file beside it, as :func:`write_text_atomic`.

    Args:
        path: destination file.
        data: bytes content.
    """
    with _atomic_writer(path, "wb") as f:
        f.write(data)


def write_json_atomic(path, obj, indent=2):
    """Writes ``obj`` as JSON (sorted keys, final newline) atomically.

    Args:
        path: destination file.
        obj: JSON-serialisable object.
        indent: JSON indentation.
    """
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=True)
                      + "\n")
