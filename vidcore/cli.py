"""Entry-point wrapper shared by every command-line tool.

Errors the user can cause end with one line on stderr and exit status 1:
our own UserInputError / DataError, missing files, and the TensorFlow errors
that our in-graph checks raise while reading data (their message names the
shard and record). Anything else is a bug and keeps its traceback.
"""

import re
import sys

from absl import app, logging

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


def run(main):
    """absl ``app.run`` of a guarded ``main``."""
    app.run(guarded(main))
