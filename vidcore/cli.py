"""Entry-point wrapper shared by every command-line tool.

Errors the user can cause end with one line on stderr and exit status 1:
our own UserInputError / DataError, missing files, and the TensorFlow errors
that our in-graph checks raise while reading data (their message names the
shard and record). Anything else is a bug and keeps its traceback.
"""

import os
import re
import subprocess
import sys
import time

from absl import app, flags, logging

from vidcore.errors import UserInputError


def _tf_user_errors():
    import tensorflow as tf
    return (tf.errors.InvalidArgumentError, tf.errors.DataLossError,
            tf.errors.NotFoundError)


def clean_tf_message(message):
    """Shortens a TensorFlow op error to what our assertion said."""
    text = message.split("\n\t [[")[0]
    if "assertion failed:" in text:
        text = text.split("assertion failed:", 1)[1]
        text = re.sub(r"\] \[", " ", text).strip().strip("[]")
    text = re.sub(r"\{\{function_node [^}]*\}\}", "", text)
    text = text.replace("[Op:IteratorGetNext]", "").strip()
    return re.sub(r"\s+", " ", text)


def user_error_message(error):
    """The one-line text shown for a user error (ours, OS or TensorFlow)."""
    if isinstance(error, (UserInputError, FileNotFoundError)):
        text = str(error)
    else:
        text = clean_tf_message(getattr(error, "message", str(error)))
    return " ".join(text.split())


def print_user_error(error):
    """Prints ``error`` as ``error: <one line>`` on stderr."""
    logging.debug("error details", exc_info=error)
    sys.stderr.flush()
    print(f"error: {user_error_message(error)}", file=sys.stderr, flush=True)


def report_and_exit(error):
    """Prints ``error`` as one line and exits with status 1."""
    print_user_error(error)
    sys.exit(1)


def guarded(main):
    """Wraps an absl ``main(argv)`` so user errors become one-line exits."""
    def wrapped(argv):
        # absl passes main's return value to sys.exit: results are not
        # exit codes, so they are dropped here.
        try:
            main(argv)
        except (UserInputError, FileNotFoundError) + _tf_user_errors() as e:
            report_and_exit(e)
    return wrapped


def attach_flag_values(flag_values):
    """Makes a CLI's own ``flags.FlagValues`` part of absl's global FLAGS.

    CLIs whose flag names clash with another family's (``batch_size``,
    ``strategy``, ...) define them on their own FlagValues so that both can
    be imported into one process (tests); only the process that runs the
    CLI attaches them, so ``--help`` and ``--flagfile`` work as usual.

    Args:
        flag_values: the module's flags.FlagValues.
    """
    flags.FLAGS.append_flag_values(flag_values)
    for name in flag_values:  # list them in --help
        flags.FLAGS.register_key_flag_for_module(sys.argv[0],
                                                 flag_values[name])


def run(main, flag_values=None):
    """absl ``app.run`` of a guarded ``main``.

    Args:
        main: ``main(argv)``.
        flag_values: the CLI's own FlagValues (see attach_flag_values), or
            None when it defines its flags on the global FLAGS.
    """
    if flag_values is None:
        app.run(guarded(main))
        return
    attach_flag_values(flag_values)
    guarded_main = guarded(main)

    def main_with_module_flags(argv):
        # The Flag objects are shared with the global FLAGS, which app.run
        # has parsed; mark the module's view as parsed too.
        flag_values.mark_as_parsed()
        guarded_main(argv)

    app.run(main_with_module_flags)


def run_step(args, log, tail=12):
    """Runs one CLI as ``python -m ...`` (a demo step).

    Prints the command and the last ``tail`` lines of its output, appends
    everything to ``log``, and stops with the command's error if it fails.

    Args:
        args: argument list after ``python``, e.g. ["-m", "yt8m.train", ...].
        log: log file path.
        tail: output lines shown.

    Returns:
        The command's stdout.
    """
    shown = " ".join(args)
    print(f"\n$ python {shown}", flush=True)
    start = time.time()
    proc = subprocess.run([sys.executable] + list(args), capture_output=True,
                          text=True, env={**os.environ,
                                          "TF_CPP_MIN_LOG_LEVEL": "2"})
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ python {shown}\n{proc.stdout}\n{proc.stderr}\n")
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"demo step failed (exit {proc.returncode}): "
                         f"python {shown}; full log in {log}")
    for line in proc.stdout.strip().splitlines()[-tail:]:
        print("   " + line)
    print(f"   ({time.time() - start:.0f} s)", flush=True)
    return proc.stdout
