"""Quiet TensorFlow start-up: its C++ INFO lines never reach the user.

Why this is more than ``TF_CPP_MIN_LOG_LEVEL``: TensorFlow 2.21 logs through
Abseil, and the lines it writes while its shared libraries load ("WARNING:
All log messages before absl::InitializeLog() is called ...", "oneDNN
custom operations are on", twice) come before Abseil's logging is set up,
so they go to stderr whatever the level says. Every CLI would open with
them, even one whose only output is a one-line error. So the first import
of TensorFlow runs with file descriptor 2 sent to a temporary file; what it
wrote is then passed on to stderr except the log lines below the chosen
level (and Abseil's note about them).

Every package of the project imports this module first (from its
``__init__``), so the level is set before any ``import tensorflow``. A
``TF_CPP_MIN_LOG_LEVEL`` set by the user wins (0 shows everything, as
TensorFlow would).
"""

import os
import re
import sys
import tempfile

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
# 1: hide INFO, keep warnings and errors (a GPU machine whose CUDA libraries
# are missing says so at WARNING level).
DEFAULT_LEVEL = "1"
_SEVERITIES = "IWEF"  # Abseil's one-letter severities, in level order
_ABSL_PREFACE = "WARNING: All log messages before absl::InitializeLog()"
# I0000 00:00:1795966990.110724    6259 port.cc:153] message
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]")


def min_log_level():
    """The C++ log level in effect (0-3; an unparsable value counts as 0)."""
    try:
        return int(os.environ.get(LEVEL_VARIABLE, "0"))
    except ValueError:
        return 0


def kept_startup_text(text, level):
    """What of TensorFlow's start-up stderr ``text`` to show at ``level``.

    Args:
        text: what was written to stderr while TensorFlow was imported.
        level: the C++ log level (0 keeps everything).

    Returns:
        ``text`` without the Abseil log lines whose severity is below
        ``level`` and without Abseil's pre-initialisation note (level >= 1).
    """
    if level <= 0:
        return text
    kept = []
    for line in text.splitlines(keepends=True):
        if line.startswith(_ABSL_PREFACE):
            continue
        match = _ABSL_LINE.match(line)
        if match and _SEVERITIES.index(match.group(1)) < level:
            continue
        kept.append(line)
    return "".join(kept)


def _import_tensorflow_filtered(level):
    """Imports TensorFlow with fd 2 filtered through ``kept_startup_text``."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to protect
        import tensorflow  # noqa: F401 pylint: disable=import-outside-toplevel
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401 pylint: disable=import-outside-toplevel,unused-import
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            # A failed import shows everything it wrote.
            shown = (kept_startup_text(text, level)
                     if "tensorflow" in sys.modules else text)
            if shown:
                os.write(2, shown.encode("utf-8"))


def quiet_startup():
    """Sets the C++ log level (unless set) and imports TensorFlow quietly.

    Does nothing when TensorFlow is already imported (its start-up lines
    are written by then).
    """
    if not os.environ.get(LEVEL_VARIABLE):  # unset or empty
        os.environ[LEVEL_VARIABLE] = DEFAULT_LEVEL
    if "tensorflow" in sys.modules:
        return
    level = min_log_level()
    if level <= 0:
        return
    _import_tensorflow_filtered(level)
