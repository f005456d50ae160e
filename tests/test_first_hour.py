"""What a new user meets first: quiet one-line errors, demo steps that show
their output while they run, progress lines that end before results, a
conversion that rejects everything failing loudly, the TensorBoard line."""

import functools
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest
import tensorflow as tf
from absl import logging as absl_logging

from tfrecord_tools import conversion
from vidcore import demo_steps, progress, tf_logs, training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_cli(*args):
    """Runs ``python -m ...`` as a user would (no TF log level set)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run([sys.executable, "-m", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300,
                          check=False)


# -- one-line errors, no TensorFlow start-up lines ----------------------------


def test_bad_flag_value_is_exactly_one_error_line():
    proc = _run_cli("yt8m.train", "--batch_size=many")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: flag --batch_size=many: ")
    assert lines[0].endswith("(see python -m yt8m.train --help)")
    assert proc.stdout == ""


@pytest.mark.parametrize("cli", ["yt8m.train", "howto.train",
                                 "kinetics.train"])
def test_steps_per_loop_below_1_is_one_error_line(cli):
    proc = _run_cli(cli, "--steps_per_loop=0")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"error: flag --steps_per_loop=0: 0 is not a positive integer "
        f"(see python -m {cli} --help)"]


def test_missing_file_is_exactly_one_error_line(tmp_path):
    proc = _run_cli("yt8m.eval", f"--eval_data_pattern={tmp_path}/x*",
                    f"--train_dir={tmp_path / 'no_model'}")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"error: {tmp_path / 'no_model' / 'model_flags.json'} not found: "
        "--train_dir must be a directory written by python -m yt8m.train"]


@pytest.mark.parametrize("args,flag", [
    (("yt8m.eval", "--eval_data_pattern=s3://bucket/val*.tfrecord",
      "--train_dir=s3://bucket/run"), "--eval_data_pattern"),
    (("tfrecord_tools.howto_writer", "--csv=videos.csv",
      "--caption_path=hdfs://nn/captions.json", "--features_path=f",
      "--output_dir=out"), "--caption_path")])
def test_a_filesystem_tensorflow_lacks_is_one_error_line(args, flag):
    """s3:// / hdfs:// without a plugin: named before any work, not "no
    such file"."""
    proc = _run_cli(*args)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {flag}=")
    assert "TensorFlow has no filesystem for" in lines[0]
    assert "gs://" in lines[0] and "tensorflow-io" in lines[0]


def test_scheme_check_passes_known_schemes_and_addresses():
    from absl import flags as absl_flags

    from vidcore import cli as core_cli
    from vidcore.errors import UserInputError

    values = absl_flags.FlagValues()
    absl_flags.DEFINE_string("data", "gs://b/x*,ram://y/z", "",
                             flag_values=values)
    absl_flags.DEFINE_list("more", ["/local", "file:///a"], "",
                           flag_values=values)
    absl_flags.DEFINE_string("tpu", "grpc://10.0.0.2:8470", "",
                             flag_values=values)
    absl_flags.DEFINE_string("dist_url", "tcp://224.66.41.62:23456", "",
                             flag_values=values)
    values(["prog"])
    core_cli.check_path_schemes(values)
    values["more"].value = ["/local", "s3://bucket/a.csv"]
    with pytest.raises(UserInputError, match=r"^--more=s3://bucket/a.csv: "):
        core_cli.check_path_schemes(values)


STARTUP = (
    "WARNING: All log messages before absl::InitializeLog() is called are "
    "written to STDERR\n"
    "I0000 00:00:1795966990.110724    6259 port.cc:153] oneDNN custom "
    "operations are on.\n"
    "W0000 00:00:1795966990.2    6259 gpu.cc:1] Cannot dlopen some GPU "
    "libraries.\n"
    "E0000 00:00:1795966990.3    6259 x.cc:2] an error\n"
    "a Python warning\n")


MARKERS = {"absl note": "absl::InitializeLog", "info": "oneDNN",
           "warning": "dlopen", "error": "an error",
           "python": "a Python warning"}


@pytest.mark.parametrize("level,kept", [
    (0, set(MARKERS)), (1, {"warning", "error", "python"}),
    (2, {"error", "python"}), (3, {"python"})])
def test_startup_lines_below_the_level_are_dropped(level, kept):
    text = tf_logs.kept_startup_text(STARTUP, level)
    assert {name for name, marker in MARKERS.items() if marker in text} == (
        kept)


def test_the_users_log_level_wins(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    tf_logs.quiet_startup()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    tf_logs.quiet_startup()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == tf_logs.DEFAULT_LEVEL


def test_tensorflow_python_info_hidden_unless_level_0():
    logger = logging.getLogger("tensorflow")
    saved = logger.level
    try:
        logger.setLevel(logging.NOTSET)
        tf_logs.quiet_python_info(0)
        assert logger.level == logging.NOTSET
        tf_logs.quiet_python_info(1)
        assert logger.level == logging.WARNING
        logger.setLevel(logging.DEBUG)  # the user's choice stays
        tf_logs.quiet_python_info(2)
        assert logger.level == logging.DEBUG
    finally:
        logger.setLevel(saved)


def test_tensorflow_info_through_absl_is_dropped_ours_kept():
    """TensorFlow modules that log with absl directly (functional_saver's
    "Sharding callback duration" at every checkpoint) are quiet; the
    project's own INFO lines and TensorFlow's warnings are not."""
    tf_logs.quiet_python_info(1)
    (keep,) = [f for f in absl_logging.get_absl_logger().filters
               if isinstance(f, tf_logs._TensorFlowInfoFilter)]
    tf_dir = os.path.dirname(tf.__file__)

    def record(path, level):
        return logging.LogRecord("absl", level, path, 1, "m", None, None)

    saver = os.path.join(tf_dir, "python", "checkpoint", "functional_saver.py")
    assert not keep.filter(record(saver, logging.INFO))
    assert keep.filter(record(saver, logging.WARNING))
    assert keep.filter(record(os.path.abspath(training.__file__),
                              logging.INFO))


# -- progress lines -----------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_into_a_file_has_plain_whole_lines(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    bar = progress.Progbar(None, unit_name="video", file_interval=0.0)
    for _ in range(3):
        bar.add(100)
        time.sleep(0.06)  # Keras' own minimum interval
    bar.finish()
    print("Evaluation of model.ckpt-30:")
    text = out.getvalue()
    assert not any(c in text for c in "\x1b\r\b")
    lines = text.splitlines()
    assert lines[-1] == "Evaluation of model.ckpt-30:"
    assert lines[-2].split()[0] == "300/Unknown"  # the final count
    assert all(line.split()[0].endswith("/Unknown") for line in lines[:-1])
    assert len(lines) == len(set(lines))  # the final count only once


def test_progress_into_a_file_writes_at_most_one_line_per_interval(
        monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    bar = progress.Progbar(1000, width=10, stateful_metrics=["loss"])
    for step in range(1, 1001):
        bar.update(step, [("loss", 0.5)])
    first, last = out.getvalue().splitlines()  # at most one per 10 s
    assert first.startswith("   1/1000 " + "." * 10 + " ")
    assert last.startswith("1000/1000 " + "\u2501" * 10 + " ")
    assert "loss: 0.5000" in last


def test_progress_on_a_terminal_redraws_and_finish_ends_the_line(
        monkeypatch):
    out = _Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    bar = progress.Progbar(None, unit_name="video", interval=0.0)
    bar.add(5)
    assert "\r" in out.getvalue() and not out.getvalue().endswith("\n")
    bar.finish()
    bar.finish()  # once only
    assert out.getvalue().endswith("\n")
    assert out.getvalue().count("\n") == 1


# -- demo steps stream their output -------------------------------------------

_CHILD = """
import os, sys, time
print("first line", flush=True)
print("to stderr", file=sys.stderr, flush=True)
deadline = time.time() + 60
while not os.path.exists(sys.argv[1]) and time.time() < deadline:
    time.sleep(0.05)
print("second line")
"""


def test_run_step_streams_output_to_console_and_log(tmp_path, capsys):
    log = tmp_path / "demo.log"
    go = tmp_path / "go"
    outputs = []
    step = threading.Thread(target=lambda: outputs.append(
        demo_steps.run_step(["-c", _CHILD, str(go)], str(log))))
    step.start()
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (
                log.exists() and "to stderr" in log.read_text()):
            time.sleep(0.05)
        # The child is still waiting: its output is already in the log.
        assert "first line" in log.read_text()
        assert step.is_alive()
    finally:
        go.touch()
        step.join(90)
    shown = capsys.readouterr().out
    assert "   first line\n   to stderr\n   second line\n" in shown
    assert outputs[0] == "first line\nto stderr\nsecond line\n"
    assert log.read_text().endswith("first line\nto stderr\nsecond line\n")


def test_run_step_failure_names_the_log(tmp_path, capsys):
    log = tmp_path / "demo.log"
    with pytest.raises(SystemExit, match=r"exit 3\).*full log in .*demo.log"):
        demo_steps.run_step(["-c", "import sys; print('bad input');"
                      " sys.exit(3)"], str(log))
    assert "   bad input\n" in capsys.readouterr().out
    assert "bad input" in log.read_text()


def test_run_step_redrawn_lines_become_lines_in_files(tmp_path, capsys):
    """A child's carriage-return progress (tqdm) shows one state per line
    when the demo's own output is not a terminal, and in the log."""
    log = tmp_path / "demo.log"
    child = ("import sys; sys.stdout.write('bar 0%\\rbar 100%\\r\\n"
             "done\\r\\n')")
    demo_steps.run_step(["-c", child], str(log))
    shown = capsys.readouterr().out
    assert "   bar 0%\n   bar 100%\n   done\n" in shown
    assert "\r" not in shown
    assert log.read_bytes().decode().endswith("bar 0%\nbar 100%\ndone\n")


def test_tensorboard_hint_gives_the_real_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert demo_steps.tensorboard_hint("demo out/models").endswith(
        f"tensorboard --logdir='{tmp_path}/demo out/models'")


# -- a conversion that rejects everything ------------------------------------


def _convert(item, bad):
    if item["id"] in bad:
        raise conversion.Reject(f"{item['id']} is broken")
    return [item["id"].encode()]


ITEMS = [{"id": f"v{i}"} for i in range(6)]


def _outputs(path):
    return sorted(n for n in os.listdir(path))


@pytest.mark.parametrize("runner", ["local", pytest.param(
    "beam", marks=pytest.mark.slow)])
def test_every_input_rejected_is_an_error_without_empty_shards(
        tmp_path, runner):
    everything = {i["id"] for i in ITEMS}
    with pytest.raises(conversion.ConversionError) as error:
        conversion.convert_items(
            ITEMS, functools.partial(_convert, bad=everything), str(tmp_path),
            "train", num_shards=3, runner=runner, progress=False)
    rejects = tmp_path / "rejects-train.jsonl"
    assert str(error.value) == (
        f"all 6 inputs were rejected: nothing was written to {tmp_path}; "
        f"the reasons are in {rejects}")
    assert _outputs(tmp_path) == ["rejects-train.jsonl"]
    assert [json.loads(line)["reason"] for line in
            rejects.read_text().splitlines()] == [
                f"v{i} is broken" for i in range(6)]
    # Fixed inputs: the same command converts everything (nothing is kept).
    result = conversion.convert_items(
        ITEMS, functools.partial(_convert, bad=set()), str(tmp_path),
        "train", num_shards=3, runner=runner, progress=False)
    assert result.num_records == 6 and not result.resumed
    assert result.summary().endswith("; 0 rejected")


def test_partial_success_keeps_shards_and_counts_the_rejects(tmp_path):
    result = conversion.convert_items(
        ITEMS, functools.partial(_convert, bad={"v0", "v1"}), str(tmp_path),
        "train", num_shards=3, progress=False)
    assert result.num_records == 4
    assert result.summary().endswith(
        f"; 2 rejected (reasons in {tmp_path / 'rejects-train.jsonl'})")
    assert "manifest-train.json" in _outputs(tmp_path)
    # Shard 0 held only the two rejected items; the run resumes as before.
    again = conversion.convert_items(
        ITEMS, functools.partial(_convert, bad={"v0", "v1"}), str(tmp_path),
        "train", num_shards=3, progress=False)
    assert len(again.resumed) == 3 and again.num_records == 4


def test_cli_conversion_rejecting_everything_exits_1(tmp_path):
    videos = tmp_path / "videos.csv"
    videos.write_text("path,label\nmissing/a.mp4,cooking\n"
                      "missing/b.mp4,dancing\n")
    out = tmp_path / "out"
    proc = _run_cli("tfrecord_tools.video_writer", f"--csv={videos}",
                    f"--output_dir={out}", "--progress=false")
    assert proc.returncode == 1
    rejects = out / "rejects-train.jsonl"
    assert proc.stderr.splitlines() == [
        f"error: all 2 inputs were rejected: nothing was written to {out}; "
        f"the reasons are in {rejects}"]
    assert _outputs(out) == ["rejects-train.jsonl"]
