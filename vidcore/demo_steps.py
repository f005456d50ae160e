"""Demo steps: run a CLI in a child process and show its output as it comes.

A demo is a recipe of CLI commands that a user can copy. Each step prints
its command, then the command's output while it runs (progress lines
included: a step that trains for minutes is not silent), indented under
it, and appends the same text to the demo's log file as it arrives.
"""

import codecs
import os
import shlex
import subprocess
import sys
import time

from vidcore import progress


def run_step(args, log):
    """Runs one CLI as ``python -m ...`` (a demo step), streaming its output.

    Prints the command, then the command's stdout and stderr as they come
    (indented; progress lines included), appends the same text to ``log``
    as it arrives, and stops with the command's exit status if it fails.

    Args:
        args: argument list after ``python``, e.g. ["-m", "yt8m.train", ...].
        log: log file path.

    Returns:
        The command's output (stdout and stderr interleaved).
    """
    shown = " ".join(args)
    print(f"\n$ python {shown}", flush=True)
    start = time.time()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # output as it comes
    with open(log, "a", encoding="utf-8") as log_file:
        log_file.write(f"$ python {shown}\n")
        log_file.flush()
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable] + list(args), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=env)
        output = _relay(proc.stdout, log_file)
        returncode = proc.wait()
    if returncode != 0:
        raise SystemExit(f"demo step failed (exit {returncode}): "
                         f"python {shown}; full log in {log}")
    print(f"   ({time.time() - start:.0f} s)", flush=True)
    return output


def tensorboard_hint(logdir):
    """The line a demo ends with: how to open its TensorBoard event files.

    Args:
        logdir: the directory holding the runs' event files.

    Returns:
        ``TensorBoard: tensorboard --logdir=<absolute path>`` (the path
        quoted for the shell when it needs it).
    """
    return (f"TensorBoard (training curves): tensorboard "
            f"--logdir={shlex.quote(os.path.abspath(logdir))}")


def _relay(pipe, log_file, indent="   "):
    """Copies a child's output to stdout (indented) and to the log file.

    Reads whatever has arrived (not whole lines), so progress lines that are
    redrawn with carriage returns show as they change on a terminal. Into a
    file or a pipe (and always into the log) a carriage return ends the line
    instead, so each state of a redrawn bar is a line of its own rather than
    all of them glued onto one.

    Returns:
        All the text read, as the child wrote it.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    redraw = progress.is_terminal(sys.stdout)
    at_line_start = True
    after_return = False
    seen = []
    while True:
        chunk = os.read(pipe.fileno(), 65536)
        text = decoder.decode(chunk, final=not chunk)
        if text:
            seen.append(text)
            shown, logged = [], []
            for char in text:
                if char == "\n" and after_return:
                    after_return = False  # "\r\n": the line ended at "\r"
                    if not redraw:
                        continue
                    shown.append(char)
                    continue
                after_return = char == "\r"
                logged.append("\n" if char == "\r" else char)
                if not redraw and char == "\r":
                    char = "\n"
                if at_line_start and char not in "\r\n":
                    shown.append(indent)
                shown.append(char)
                at_line_start = char in "\r\n"
            log_file.write("".join(logged))
            log_file.flush()
            sys.stdout.write("".join(shown))
            sys.stdout.flush()
        if not chunk:
            break
    pipe.close()
    if not at_line_start:
        sys.stdout.write("\n")
    return "".join(seen)
