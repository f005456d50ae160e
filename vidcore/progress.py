"""A progress bar that behaves in files and pipes as well as on a terminal.

Keras' ``Progbar`` redraws its line in place (``\\b``/``\\r``) whenever
``"posix" in sys.modules``, which is true on every POSIX system, and always
colours its counts with ANSI escape codes. Redirected to a file or read
through a pipe (a demo's log, CI), that gives raw escape codes, and the
next print continues its unfinished last line ("200/Unknown ... 8ms/video
Evaluation of ..."). ``Progbar`` here keeps Keras' layout, but:

* it redraws in place only when stdout is a terminal;
* elsewhere it writes one plain line (no escape codes; the bar's part
  still to do drawn as dots) at most every ``file_interval`` seconds, and
  each line ends with a newline;
* ``finish()`` writes the final count and ends the line, so whatever is
  printed next starts on a line of its own.
"""

import contextlib
import io
import re
import sys

import keras

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Keras draws the bar's done part green and the rest white, with the same
# character; without colours the rest becomes dots.
_TODO_PART = re.compile(r"\x1b\[37m(\u2501*)")


class Progbar(keras.utils.Progbar):
    """``keras.utils.Progbar`` with terminal-aware display and ``finish()``.

    Args:
        target: total number of steps, or None if unknown.
        file_interval: seconds between lines when stdout is not a terminal.
        **kwargs: the arguments of ``keras.utils.Progbar`` (width, verbose,
            interval, stateful_metrics, unit_name, ...).
    """

    def __init__(self, target, file_interval=10.0, **kwargs):
        super().__init__(target, **kwargs)
        self._dynamic_display = is_terminal(sys.stdout)
        if not self._dynamic_display:
            self.interval = max(self.interval, file_interval)
        self._line_open = False  # a redrawn line waits for its newline
        self._shown = None  # the step of the last line written
        self._finished = False

    def update(self, current, values=None, finalize=None):
        """Keras' update, written as described in the module docstring."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            super().update(current, values, finalize)
        text = out.getvalue()
        if not text:
            return
        if not self._dynamic_display:
            text = _TODO_PART.sub(lambda m: "." * len(m.group(1)), text)
            text = _ANSI.sub("", text).strip("\n\r\b")
            text = text.rstrip() + "\n" if text.strip() else ""
        sys.stdout.write(text)
        sys.stdout.flush()
        self._shown = current
        self._line_open = self._dynamic_display and not text.endswith("\n")

    def finish(self, current=None, values=None):
        """Shows the final count (or ``current``) and ends the line.

        A final count that the last line already shows is not repeated.

        Args:
            current: the final step; default: the last one seen.
            values: metric values as in ``update``.
        """
        if self._finished:
            return
        self._finished = True
        current = self._seen_so_far if current is None else current
        if self.verbose and (current != self._shown or values):
            self.update(current, values, finalize=True)
        if self._line_open:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self._line_open = False


    def break_line(self):
        """Ends a line that is being redrawn, so that text printed next
        (an evaluation's results) starts on a line of its own; the bar
        carries on below it."""
        if self._line_open:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self._line_open = False


def is_terminal(stream):
    """Whether ``stream`` is a terminal (False for files, pipes, StringIO)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False
