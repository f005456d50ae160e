"""vidcore.files: atomic writes."""

import json
import os
import stat
import threading

import pytest

from vidcore import files


def test_atomic_write_replaces_only_when_complete(tmp_path):
    path = str(tmp_path / "out.json")
    files.write_json_atomic(path, {"a": 1})
    assert json.load(open(path)) == {"a": 1}

    def lines():
        yield "first"
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        files.write_lines_atomic(path, lines())
    assert json.load(open(path)) == {"a": 1}  # the previous file, intact
    assert os.listdir(tmp_path) == ["out.json"]  # no partial file left


def test_atomic_write_to_a_fifo_writes_through_it(tmp_path):
    """A device or FIFO (``--output_json=/dev/null``) is written, not
    replaced: renaming a file over /dev/null as root had turned it into a
    regular file."""
    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
    reader.start()
    files.write_json_atomic(fifo, {"b": 2})
    reader.join(timeout=30)
    assert json.loads(got[0]) == {"b": 2}
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["pipe"]
