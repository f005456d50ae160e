"""Entry-point wrapper shared by every command-line tool.

Errors the user can cause end with one line on stderr and exit status 1:
our own UserInputError / DataError, missing files, bad flag values, and the
TensorFlow errors that our in-graph checks raise while reading data (their
message names the shard and record). Anything else is a bug and keeps its
traceback.

``--help`` (also ``-h``, ``--helpshort``) prints the usage, the module's
documentation and every flag the CLI accepts, grouped by topic
(vidcore.flag_help), and exits 0 before ``main`` builds anything. absl's
own ``--helpfull`` still lists absl's and TensorFlow's internal flags too.
"""

import re
import sys

from absl import app, flags, logging

from vidcore import flag_help
from vidcore.errors import UserInputError

# The flags modules mark their topic blocks with cli.flag_topic(...).
flag_topic = flag_help.flag_topic


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


SCHEME_HINT = (
    "other schemes (s3://, hdfs://, az://) need a filesystem plugin built "
    "for this TensorFlow version (tensorflow-io), or mount the store as a "
    "local folder (s3fs, gcsfuse, an HDFS FUSE mount)")


def is_unknown_filesystem(error):
    """True for TensorFlow's error on a path whose scheme no registered
    filesystem implements (e.g. s3:// without a plugin)."""
    import tensorflow as tf
    return isinstance(error, tf.errors.UnimplementedError) and (
        "File system scheme" in str(getattr(error, "message", error)))


_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Storage schemes a user may give for data; addresses (tcp://, grpc://) in
# flags such as --dist-url or --tpu are not paths and are not checked.
_STORE_SCHEMES = frozenset({"s3", "s3a", "hdfs", "viewfs", "az", "abfs",
                            "abfss", "wasb", "wasbs", "oss", "gs", "gcs",
                            "ram", "file", "http", "https"})


def check_path_schemes(flag_values=None):
    """Stops with one line when a flag names a path on a filesystem that
    this TensorFlow does not implement (s3:// without a plugin), before
    any work starts; without this, ``tf.io.gfile.exists`` just answers
    False and the user reads "no such file".

    Args:
        flag_values: the FlagValues to look through (default absl's global
            FLAGS, to which every CLI's own flags are attached).

    Raises:
        UserInputError: naming the flag, the path and what would help.
    """
    import tensorflow as tf
    flag_values = flags.FLAGS if flag_values is None else flag_values
    known = set(tf.io.gfile.get_registered_schemes())
    for name in sorted(flag_values):
        value = flag_values[name].value
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(item, str):
                continue
            for part in item.split(","):
                found = _URL.match(part.strip())
                scheme = found.group(1).lower() if found else ""
                if scheme in _STORE_SCHEMES and scheme not in known:
                    raise UserInputError(
                        f"--{name}={item}: TensorFlow has no filesystem "
                        f"for {scheme}:// (it knows "
                        f"{', '.join(sorted(s + '://' for s in known if s))}"
                        f" and local paths); {SCHEME_HINT}")


def user_error_message(error):
    """The one-line text shown for a user error (ours, OS or TensorFlow)."""
    if isinstance(error, (UserInputError, FileNotFoundError)):
        text = str(error)
    else:
        text = clean_tf_message(getattr(error, "message", str(error)))
        if is_unknown_filesystem(error):
            text = f"{text}: TensorFlow reads gs://, ram:// and local paths; " \
                f"{SCHEME_HINT}"
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
        import tensorflow as tf
        try:
            check_path_schemes()
            main(argv)
        except (UserInputError, FileNotFoundError) + _tf_user_errors() as e:
            report_and_exit(e)
        except tf.errors.UnimplementedError as e:
            if not is_unknown_filesystem(e):
                raise
            report_and_exit(e)
    return wrapped


def flags_parser(doc, flag_values=None):
    """absl ``app.run`` flags_parser: --help exits 0, bad flags one line.

    Args:
        doc: the CLI module's docstring, shown by --help.
        flag_values: the CLI's own FlagValues, or None.

    Returns:
        ``parse(argv) -> remaining argv``.
    """
    def parse(argv):
        if flag_help.wants_help(argv):
            sys.stdout.write(flag_help.help_text(doc, flag_values))
            sys.stdout.flush()
            sys.exit(0)
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            print(f"error: {' '.join(str(e).split())} (see "
                  f"{flag_help.program_name()} --help)", file=sys.stderr,
                  flush=True)
            sys.exit(1)
    return parse


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


def run_app(main, flag_values=None):
    """absl ``app.run(main)`` with this module's --help and flag errors.

    Args:
        main: ``main(argv)``; its return value is the exit status.
        flag_values: the CLI's own FlagValues (attached to the global
            FLAGS first), or None when it defines its flags on FLAGS.
    """
    doc = getattr(sys.modules.get(main.__module__), "__doc__", None)
    if flag_values is None:
        app.run(main, flags_parser=flags_parser(doc))
        return
    attach_flag_values(flag_values)

    def main_with_module_flags(argv):
        # The Flag objects are shared with the global FLAGS, which app.run
        # has parsed; mark the module's view as parsed too.
        flag_values.mark_as_parsed()
        return main(argv)

    main_with_module_flags.__module__ = main.__module__
    app.run(main_with_module_flags,
            flags_parser=flags_parser(doc, flag_values))


def run(main, flag_values=None):
    """``run_app`` of a guarded ``main`` (user errors become one line).

    Args:
        main: ``main(argv)``.
        flag_values: the CLI's own FlagValues (see attach_flag_values), or
            None when it defines its flags on the global FLAGS.
    """
    guarded_main = guarded(main)
    guarded_main.__module__ = main.__module__
    run_app(guarded_main, flag_values)
