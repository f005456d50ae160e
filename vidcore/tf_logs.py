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


class _TensorFlowInfoFilter:
    """Drops records below WARNING logged from TensorFlow's own files."""

    def filter(self, record):
        """True to keep ``record``."""
        if record.levelno >= 30:  # logging.WARNING
            return True
        module = sys.modules.get("tensorflow")
        root = os.path.dirname(getattr(module, "__file__", "") or "")
        return not (root and record.pathname.startswith(root + os.sep))


def quiet_python_info(level):
    """Hides TensorFlow's own Python INFO records at C++ level >= 1.

    TensorFlow's Python code logs through its ``tensorflow`` logger and, in
    many modules, through absl's logger directly; absl's handler shows INFO
    records on the console, because the CLIs run absl at INFO for their own
    progress lines. So every checkpoint save printed "Sharding callback
    duration: ... microseconds". This hides the INFO records of
    TensorFlow's files (its warnings stay), unless the C++ level is 0 (the
    user asks for everything); a level the user gave the ``tensorflow``
    logger is left alone.

    Args:
        level: the C++ log level in effect.
    """
    import logging  # pylint: disable=import-outside-toplevel
    if level < 1:
        return
    logger = logging.getLogger("tensorflow")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    # absl's own logger object (created by absl with its caller lookup; a
    # plain logging.getLogger("absl") made before absl is imported would
    # take its place and every record would name absl's file).
    from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
    absl_logger = absl_logging.get_absl_logger()
    if not any(isinstance(f, _TensorFlowInfoFilter)
               for f in absl_logger.filters):
        absl_logger.addFilter(_TensorFlowInfoFilter())


def quiet_startup():
    """Sets the C++ log level (unless set) and imports TensorFlow quietly.

    The start-up lines are filtered only when TensorFlow is not imported
    yet (they are written by then); TensorFlow's Python INFO records are
    hidden either way (`quiet_python_info`).
    """
    if not os.environ.get(LEVEL_VARIABLE):  # unset or empty
        os.environ[LEVEL_VARIABLE] = DEFAULT_LEVEL
    level = min_log_level()
    quiet_python_info(level)
    if "tensorflow" in sys.modules or level <= 0:
        return
    _import_tensorflow_filtered(level)
