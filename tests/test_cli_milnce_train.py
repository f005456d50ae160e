"""howto.milnce_train end to end, the published command, and the demo.

Data: the four REAL clips of howto/data/milnce_demo with the captions
written for the demo (howto.milnce_demo lays them out as a user's
HowTo100M download: a video folder, a video list, one caption CSV per
video). Training runs at tiny sizes (4 frames of 32 x 32); what is checked
is the plumbing: raw folder -> converted records -> MIL-NCE steps ->
checkpoints, run record, per-epoch YouCook2-style retrieval, in one run of
the demo's --quick mode (resuming is the Trainer's, tested in
test_training_resume.py).
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


def test_raw_folder_without_captions_is_one_error(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(Exception, match="--train_csv and --caption_root"):
        run_cli(*TINY, f"--video_path={tmp_path / 'videos'}",
                f"--checkpoint_root={tmp_path}", "--checkpoint_dir=r")


def test_demo_quick_trains_from_raw_video_and_evaluates(tmp_path):
    """The README's demo, tiny: raw folder -> converted records -> MIL-NCE
    steps with --evaluate -> checkpoint and run record -> held-out
    retrieval by the evaluation CLI on the cached segments."""
    proc = subprocess.run(
        [sys.executable, "-m", "howto.milnce_demo",
         f"--workdir={tmp_path}", "--quick"],
        capture_output=True, text=True, cwd=REPO)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "chance: R@1 25%" in out
    # --evaluate: the epoch-end table of the training step, on the same
    # 4 held-out segments the final evaluation reads (converted once).
    assert "Epoch 1 (step 4)" in out and "YouCook2 text->video" in out
    assert out.count("Converting the videos of --eval_video_root") == 1
    assert "Reusing 1 shard(s) converted earlier" in out
    results = json.loads((tmp_path / "retrieval.json").read_text())
    assert results["results"]["YouCook2 text->video"]["num_queries"] == 4
    # Raw training videos were converted once into --records_dir.
    assert len(tf.io.gfile.glob(str(tmp_path / "records" / "train-*"))) == 1
    run_dir = tmp_path / "model"
    state = json.loads((run_dir / "train_state.json").read_text())
    assert state["step"] == 4 and state["global_batch_size"] == 4
    # The run record rebuilds the model, its word table and its words.
    cfg = milnce_weights.load_config(str(run_dir))
    assert cfg.embedding_dim == 512 and cfg.word_dim == 10
    words = milnce_weights.read_vocabulary(str(run_dir / "vocab.txt"))
    assert len(words) == cfg.vocab_size - 1
    model = milnce_model.build_milnce_model(cfg)
    milnce_weights.load_pretrained(model, str(run_dir))
    table = milnce_model.word_table(model)
    assert np.any(table[1:] != 0) and not np.any(table[0])
