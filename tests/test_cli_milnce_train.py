"""howto.milnce_train end to end, the published command, and the demo.

Data: the four REAL clips of howto/data/milnce_demo with the captions
written for the demo (howto.milnce_demo lays them out as a user's
HowTo100M download: a video folder, a video list, one caption CSV per
video). Training runs at tiny sizes (4 frames of 32 x 32); what is checked
is the plumbing: raw folder -> converted records -> MIL-NCE steps ->
checkpoints, run record, per-epoch YouCook2-style retrieval (resuming is
the Trainer's, tested in test_training_resume.py).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from howto import milnce_demo, milnce_model, milnce_train, milnce_weights
from howto import milnce_flags as mflags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESET = os.path.join(REPO, "configs", "howto", "milnce_howto100m.flags")
TINY = ["--num_frames=4", "--fps=5", "--video_size=32", "--short_side=40",
        "--min_time=1.6", "--num_candidates=2",
        f"--word2vec_path={milnce_demo.WORD_VECTORS}", "--batch_size=4",
        "--lr=0.0003", "--warmup_steps=1", "--verbose=0",
        "--num_thread_reader=0", "--steps_per_loop=2"]


def run_cli(*args):
    mflags.FLAGS.unparse_flags()
    return milnce_train.main(mflags.FLAGS(["prog", *args]))


@pytest.fixture(autouse=True)
def _reset_flags():
    yield
    mflags.FLAGS.unparse_flags()


def test_published_command_dry_run_counts(capsys):
    """The README command (preset flagfile, PyTorch-only flags included)
    parses and builds the published model: 11,315,408 trainable."""
    count = run_cli(f"--flagfile={PRESET}", "--caption_root=captions",
                    "--video_path=videos", "--dry_run")
    out = capsys.readouterr().out
    assert count == 11_315_408
    assert "Trainable parameters: 11,315,408" in out
    assert "66,250 x 300" in out and "19,875,000 frozen" in out


def test_raw_folder_trains_and_evaluates_each_epoch(tmp_path, capsys):
    videos, train_csv, captions, eval_csv = milnce_demo.write_user_layout(
        str(tmp_path / "user"))
    eval_records = str(tmp_path / "eval_records")
    subprocess.run(
        [sys.executable, "-m", "tfrecord_tools.milnce_writer",
         "--dataset=youcook", f"--video_path={videos}", f"--csv={eval_csv}",
         f"--output_dir={eval_records}", "--short_side=40"],
        check=True, capture_output=True, cwd=REPO)
    common = [*TINY, f"--video_path={videos}", f"--train_csv={train_csv}",
              f"--caption_root={captions}",
              f"--checkpoint_root={tmp_path}", "--checkpoint_dir=run",
              "--steps_per_epoch=2", "--epochs=1", "--evaluate",
              f"--eval_video_root={eval_records}", "--num_windows_test=2"]
    step = run_cli(*common)
    assert step == 2
    run_dir = tmp_path / "run"
    out = capsys.readouterr().out
    # --evaluate: the epoch-end YouCook2 table (4 held-out segments).
    assert "YouCook2" in out and "R@1" in out
    # Raw videos were converted once into <run>/records.
    shards = tf.io.gfile.glob(str(run_dir / "records" / "train-*"))
    assert len(shards) == 1
    state = json.loads((run_dir / "train_state.json").read_text())
    assert state["step"] == 2 and state["global_batch_size"] == 4
    # The run record lets the evaluation CLIs rebuild the model and words.
    cfg = milnce_weights.load_config(str(run_dir))
    assert cfg.embedding_dim == 512 and cfg.word_dim == 10
    words = milnce_weights.read_vocabulary(str(run_dir / "vocab.txt"))
    assert len(words) == cfg.vocab_size - 1
    model = milnce_model.build_milnce_model(cfg)
    milnce_weights.load_pretrained(model, str(run_dir))
    table = milnce_model.word_table(model)
    assert np.any(table[1:] != 0) and not np.any(table[0])


def test_raw_folder_without_captions_is_one_error(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(Exception, match="--train_csv and --caption_root"):
        run_cli(*TINY, f"--video_path={tmp_path / 'videos'}",
                f"--checkpoint_root={tmp_path}", "--checkpoint_dir=r")


def test_demo_quick_runs(tmp_path):
    """The README's demo, tiny: raw folder -> train -> held-out retrieval."""
    proc = subprocess.run(
        [sys.executable, "-m", "howto.milnce_demo",
         f"--workdir={tmp_path}", "--quick"],
        capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "chance: R@1 25%" in proc.stdout
    assert os.path.exists(tmp_path / "retrieval.json")
