"""Atomic file writes shared by every tool: a reader never sees a file half
written, and an interrupted write leaves the previous file (if any) intact."""

import json
import os

import tensorflow as tf


def write_text_atomic(path, text):
    """Writes ``text`` to ``path`` via a hidden temporary file beside it.

    The temporary name (``.<name>.partial``) matches no ``prefix*`` glob;
    it is renamed over ``path`` once complete. Any ``tf.io.gfile`` path.

    Args:
        path: destination file.
        text: str content.
    """
    tmp = os.path.join(os.path.dirname(path),
                       "." + os.path.basename(path) + ".partial")
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_lines_atomic(path, lines):
    """Writes an iterable of str lines (each without its newline) to
    ``path`` as :func:`write_text_atomic`, without holding them all in
    memory.

    Args:
        path: destination file.
        lines: iterable of str.
    """
    tmp = os.path.join(os.path.dirname(path),
                       "." + os.path.basename(path) + ".partial")
    with tf.io.gfile.GFile(tmp, "w") as f:
        for line in lines:
            f.write(line + "\n")
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_bytes_atomic(path, data):
    """Writes ``data`` (bytes, e.g. a serialised ``.npz``) to ``path`` via a
    hidden temporary file beside it, as :func:`write_text_atomic`.

    Args:
        path: destination file.
        data: bytes content.
    """
    tmp = os.path.join(os.path.dirname(path),
                       "." + os.path.basename(path) + ".partial")
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_json_atomic(path, obj, indent=2):
    """Writes ``obj`` as JSON (sorted keys, final newline) atomically.

    Args:
        path: destination file.
        obj: JSON-serialisable object.
        indent: JSON indentation.
    """
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=True)
                      + "\n")
