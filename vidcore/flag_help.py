"""What ``--help`` of every CLI prints: usage, documentation, flags by topic.

absl's own ``--help`` lists only the flags of the main module (8 of the
~70 that yt8m.train accepts) and exits 1; ``--helpfull`` buries them among
absl's and TensorFlow's internal flags. Here a CLI's help lists every flag
it accepts, less those internals, grouped by topic. Topics come from
``flag_topic`` calls placed before each block of flag definitions (where
the flags modules had "# --- data ---" comments); a flag defined outside
such a block, e.g. one added later by another module, is listed under
"other", so no flag is ever left out.
"""

import os
import sys
import textwrap

from absl import flags

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
    if flag.short_name:
        head += f" (-{flag.short_name})"
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
        if flag.name != name:  # a short name (-e): shown with its flag
            continue
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
    parts.append(textwrap.fill(
        "--flagfile=FILE reads flags from a file (presets are in configs/); "
        "--helpfull also lists absl's and TensorFlow's internal flags.",
        width))
    return "\n\n".join(parts) + "\n"


def wants_help(argv):
    """Whether the command line asks for --help (before a ``--``)."""
    for arg in argv[1:]:
        if arg == "--":
            return False
        if arg in HELP_ARGS:
            return True
    return False
