"""Entry-point wrapper shared by every command-line tool.

Errors the user can cause end with one line on stderr and exit status 1:
our own UserInputError / DataError, missing files, bad flag values, and the
TensorFlow errors that our in-graph checks raise while reading data (their
message names the shard and record). Anything else is a bug and keeps its
traceback.

``--help`` (also ``-h``, ``--helpshort``) prints the usage, the module's
documentation and every flag the CLI accepts, grouped by topic, and exits 0
before ``main`` builds anything. Topics come from ``flag_topic`` calls placed
before each block of flag definitions; a flag defined outside such a block
is listed under "other", so no flag is ever left out. absl's own
``--helpfull`` still lists absl's and TensorFlow's internal flags too.
"""

import codecs
import os
import re
import shlex
import subprocess
import sys
import textwrap
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


# -- flag topics and --help ---------------------------------------------------

# Topics in the order --help lists them; others follow in the order of their
# first flag_topic call, and "other" (flags outside every topic block) last.
TOPIC_ORDER = ("data", "input", "model", "training", "distribution",
               "evaluation", "output", "conversion")
OTHER_TOPIC = "other"
HELP_ARGS = ("-h", "-help", "--help", "-?", "-helpshort", "--helpshort")
# Top-level packages whose flags a CLI lists; everything else (absl.app,
# absl.logging, absltest, TensorFlow's tpu/pfor modules) is internal.
OUR_PACKAGES = ("vidcore", "input_pipeline", "tfrecord_tools", "yt8m",
                "howto", "kinetics", "avl")
# id(FlagValues) -> [(module, topic, names defined before the call)]
_TOPIC_MARKS = {}


def _module_name(name):
    """absl's name for a defining module (a script's path for __main__)."""
    return sys.argv[0] if name == "__main__" else name


def flag_topic(topic, flag_values=None):
    """Lists the flags defined after this call under ``topic`` in --help.

    The block ends at the next ``flag_topic`` call of the same module (on
    the same FlagValues) or at the end of the module; flags of another
    module are not affected.

    Args:
        topic: heading, e.g. "data", "model", "training", "distribution".
        flag_values: the FlagValues the flags are defined on (default:
            absl's global FLAGS).
    """
    flag_values = flags.FLAGS if flag_values is None else flag_values
    module = _module_name(sys._getframe(1).f_globals.get(  # pylint: disable=protected-access
        "__name__", ""))
    _TOPIC_MARKS.setdefault(id(flag_values), []).append(
        (module, topic, frozenset(flag_values)))


def _topic_in(flag_values, name):
    """Topic of flag ``name`` from the marks on ``flag_values``, or None."""
    module = flag_values.find_module_defining_flag(name)
    if module is None:
        return None
    topic = OTHER_TOPIC
    for mark_module, mark_topic, defined_before in _TOPIC_MARKS.get(
            id(flag_values), ()):
        if mark_module == module and name not in defined_before:
            topic = mark_topic  # the last mark before the definition
    return topic


def flag_topic_of(name, flag_values=None):
    """The --help topic of flag ``name`` (``OTHER_TOPIC`` if it has none).

    Args:
        name: flag name.
        flag_values: the CLI's own FlagValues (see attach_flag_values), or
            None for flags on the global FLAGS only.
    """
    for values in (flag_values, flags.FLAGS):
        if values is not None and name in values:
            topic = _topic_in(values, name)
            if topic is not None:
                return topic
    return OTHER_TOPIC


def _is_ours(module):
    """Whether a defining module name belongs to the project (or the CLI)."""
    if module is None:
        return False
    if module == sys.argv[0] or os.path.isabs(module):
        return True  # a script run as __main__
    return module.split(".")[0] in OUR_PACKAGES


def accepted_flags(flag_values=None):
    """Names of the flags a CLI accepts, without absl's/TF's internals.

    Args:
        flag_values: the CLI's own FlagValues, or None.

    Returns:
        Sorted list of flag names.
    """
    names = set()
    if flag_values is not None:
        names.update(flag_values)
    for name in flags.FLAGS:
        if _is_ours(flags.FLAGS.find_module_defining_flag(name)):
            names.add(name)
    return sorted(names)


def _describe_flag(flag, width):
    """``--name`` line(s) of one flag for --help."""
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    default = flag.default_as_str
    head = f"  {name}"
    if default not in (None, "''"):
        head += f" (default: {default.strip(chr(39))})"
    body = textwrap.fill(" ".join(flag.help.split()), width,
                         initial_indent="      ", subsequent_indent="      ")
    return f"{head}\n{body}" if body.strip() else head


def program_name():
    """How the running CLI was started: ``python -m pkg.mod`` or its script."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name not in ("__main__", None):
        return f"python -m {spec.name}"
    return os.path.basename(sys.argv[0])


def _doc_text(doc):
    """A module docstring for --help, without its Python API listing."""
    paragraphs = [p for p in (doc or "").strip().split("\n\n")
                  if p.strip() and not p.lstrip().startswith("Library:")]
    return "\n\n".join(paragraphs)


def help_text(doc, flag_values=None, width=80):
    """The --help text: usage, documentation, flags grouped by topic.

    Args:
        doc: the CLI module's docstring.
        flag_values: the CLI's own FlagValues, or None.
        width: line width.

    Returns:
        The text (ends with a newline).
    """
    groups = {}
    for name in accepted_flags(flag_values):
        flag = (flag_values[name] if flag_values is not None
                and name in flag_values else flags.FLAGS[name])
        groups.setdefault(flag_topic_of(name, flag_values), []).append(flag)
    seen = [t for marks in _TOPIC_MARKS.values() for _, t, _ in marks]
    order = list(TOPIC_ORDER) + [t for t in dict.fromkeys(seen)
                                 if t not in TOPIC_ORDER] + [OTHER_TOPIC]
    parts = [f"usage: {program_name()} [--flag=value ...]"]
    text = _doc_text(doc)
    if text:
        parts.append(text)
    for topic in order:
        if topic in groups:
            parts.append(f"{topic} flags:\n" + "\n".join(
                _describe_flag(f, width) for f in groups[topic]))
    parts.append("--flagfile=FILE reads flags from a file (presets are in "
                 "configs/); --helpfull also lists absl's and TensorFlow's "
                 "internal flags.")
    return "\n\n".join(parts) + "\n"


def wants_help(argv):
    """Whether the command line asks for --help (before a ``--``)."""
    for arg in argv[1:]:
        if arg == "--":
            return False
        if arg in HELP_ARGS:
            return True
    return False


def flags_parser(doc, flag_values=None):
    """absl ``app.run`` flags_parser: --help exits 0, bad flags one line.

    Args:
        doc: the CLI module's docstring, shown by --help.
        flag_values: the CLI's own FlagValues, or None.

    Returns:
        ``parse(argv) -> remaining argv``.
    """
    def parse(argv):
        if wants_help(argv):
            sys.stdout.write(help_text(doc, flag_values))
            sys.stdout.flush()
            sys.exit(0)
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            print(f"error: {' '.join(str(e).split())} (see "
                  f"{program_name()} --help)", file=sys.stderr, flush=True)
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
    redrawn with carriage returns show as they change.

    Returns:
        All the text read.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    at_line_start = True
    seen = []
    while True:
        chunk = os.read(pipe.fileno(), 65536)
        text = decoder.decode(chunk, final=not chunk)
        if text:
            seen.append(text)
            log_file.write(text)
            log_file.flush()
            shown = []
            for char in text:
                if at_line_start and char not in "\r\n":
                    shown.append(indent)
                shown.append(char)
                at_line_start = char in "\r\n"
            sys.stdout.write("".join(shown))
            sys.stdout.flush()
        if not chunk:
            break
    pipe.close()
    if not at_line_start:
        sys.stdout.write("\n")
    return "".join(seen)
