"""--help of every CLI: complete, grouped by topic, usage first, exit 0.

The completeness check runs each console script of setup.py in its own
process (the flags a CLI parses are those of the modules it imports) and
compares the flags its --help lists with every flag absl's global FLAGS
would parse in that process, less absl's and TensorFlow's own.
"""

import ast
import json
import os
import re
import subprocess
import sys
import types

import pytest
from absl import flags

from vidcore import cli, flag_help

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTED = re.compile(r"^  --(?:\[no\])?([A-Za-z0-9_-]+)", re.MULTILINE)
TOPIC_HEADING = re.compile(r"^\w[\w ]* flags:$", re.MULTILINE)
INTERNAL_MODULES = ("absl.", "tensorflow.")

# Runs one console script's entry function with --help in a fresh process
# and reports its exit code, its output and the defining module of every
# flag of the global FLAGS (None: a CLI's own FlagValues attached to it).
_PROBE = """
import contextlib, importlib, io, json, sys
from absl import flags
module, function = sys.argv[1].split(":")
entry = getattr(importlib.import_module(module), function)
sys.argv = [sys.argv[2], "--help"]
out = io.StringIO()
code = "returned"
with contextlib.redirect_stdout(out):
    try:
        entry()
    except SystemExit as e:
        code = e.code
print(json.dumps({"code": code, "help": out.getvalue(), "flags": {
    name: flags.FLAGS.find_module_defining_flag(name)
    for name in flags.FLAGS if flags.FLAGS[name].name == name}}))
"""


def console_scripts():
    """(name, "module:function") of setup.py's console_scripts."""
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if (isinstance(node, ast.Dict) and any(
                isinstance(k, ast.Constant) and k.value == "console_scripts"
                for k in node.keys)):
            entries = node.values[[k.value for k in node.keys].index(
                "console_scripts")]
            return [tuple(s.strip() for s in e.value.split("="))
                    for e in entries.elts]
    raise AssertionError("no console_scripts in setup.py")


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the project's default applies
    return env


def test_setup_lists_the_console_scripts():
    scripts = dict(console_scripts())
    assert scripts["yt8m-train"] == "yt8m.train:run"
    assert len(scripts) >= 20


@pytest.mark.slow
@pytest.mark.parametrize("script,entry", console_scripts(),
                         ids=[s for s, _ in console_scripts()])
def test_help_lists_every_flag_and_exits_0(script, entry):
    proc = subprocess.run([sys.executable, "-c", _PROBE, entry, script],
                          capture_output=True, text=True, env=_env(),
                          cwd=ROOT, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    text = report["help"]
    assert text.startswith(f"usage: {script} ")
    accepted = {name for name, module in report["flags"].items()
                if module is None or not module.startswith(INTERNAL_MODULES)}
    flag_part = text[TOPIC_HEADING.search(text).start():]  # after the docs
    listed = LISTED.findall(flag_part)
    assert len(listed) == len(set(listed)), "a flag is listed twice"
    assert set(listed) == accepted


def test_python_m_help_exits_0_quietly_with_usage_first():
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecord_tools.video_writer", "--help"],
        capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300,
        check=False)
    assert proc.returncode == 0
    assert proc.stderr == ""  # no TensorFlow start-up lines either
    assert proc.stdout.startswith(
        "usage: python -m tfrecord_tools.video_writer [--flag=value ...]\n")
    assert "Library:" not in proc.stdout  # the Python API listing
    for topic in ("output", "conversion"):
        assert f"\n{topic} flags:\n" in proc.stdout
    assert "--video_dir" in proc.stdout and "--num_workers" in proc.stdout


FAMILY_FLAGS = """
flags.DEFINE_string("before_any_topic", "", "b.", flag_values=values)
cli.flag_topic("data", values)
flags.DEFINE_string("data_path", "", "Data.", flag_values=values)
flags.DEFINE_integer("shuffle", 1, "Shuffle.", flag_values=values)
cli.flag_topic("training", values)
flags.DEFINE_float("lr", 0.1, "Learning rate.", flag_values=values)
flags.DEFINE_bool("sync", False, "Sync.", flag_values=values)
"""
# A flag that another module adds later without a topic.
LATER_FLAGS = """
flags.DEFINE_integer("steps_per_loop", 1, "Steps per call.",
                     flag_values=values)
"""


def _run_as_module(source, module_name, values, monkeypatch):
    """Runs flag definitions as the code of a module named module_name."""
    module = types.ModuleType(module_name)
    module.__dict__.update(flags=flags, cli=cli, values=values)
    monkeypatch.setitem(sys.modules, module_name, module)  # as absl sees it
    exec(compile(source, module_name, "exec"),  # pylint: disable=exec-used
         module.__dict__)


def test_topics_follow_the_blocks_and_late_flags_are_other(monkeypatch):
    values = flags.FlagValues()
    _run_as_module(FAMILY_FLAGS, "fake_family.flags", values, monkeypatch)
    _run_as_module(LATER_FLAGS, "fake_family.train", values, monkeypatch)
    topics = {n: flag_help.flag_topic_of(n, values) for n in values}
    assert topics == {"before_any_topic": "other", "data_path": "data",
                      "shuffle": "data", "lr": "training",
                      "sync": "training", "steps_per_loop": "other"}
    text = flag_help.help_text("Does things.\n\nLibrary:\n  f(x)  api", values)
    assert text.startswith("usage: ")
    assert "Does things." in text and "Library:" not in text
    sections = re.findall(r"^(\w+) flags:$", text, re.MULTILINE)
    assert sections.index("data") < sections.index("training") < (
        sections.index("other"))
    other = text.split("\nother flags:\n")[1]
    assert "--steps_per_loop (default: 1)" in other
    assert "--[no]sync (default: false)" in text
    assert set(values) <= set(LISTED.findall(text))


@pytest.mark.parametrize("argv,expected", [
    (["p", "--help"], True), (["p", "-h"], True), (["p", "--helpshort"], True),
    (["p", "--x=1", "-?"], True), (["p", "--", "--help"], False),
    (["p", "--helpfull"], False), (["p", "--x=--help"], False)])
def test_wants_help(argv, expected):
    assert flag_help.wants_help(argv) is expected
