"""A resumed run ends where an uninterrupted one would: the epoch count
continues across restarts instead of starting again from zero."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from vidcore import distribute, losses, training
from yt8m import train as ytrain
from yt8m.models import ModelConfig, build_model

FLAGS = flags.FLAGS
CFG = ModelConfig(model="MoeModel", num_classes=6, feature_sizes=(10,),
                  moe_num_mixtures=2)


class Crash(Exception):
    """Stands for the process dying right after a checkpoint."""


def _crash_after_checkpoint(monkeypatch, at_step):
    """Makes Trainer._save raise right after writing the checkpoint of
    ``at_step`` (once)."""
    save = training.Trainer._save

    def save_then_crash(self, step, final=False):
        save(self, step, final)
        if step == at_step and not final:
            monkeypatch.setattr(training.Trainer, "_save", save)
            raise Crash(f"killed after the checkpoint of step {step}")

    monkeypatch.setattr(training.Trainer, "_save", save_then_crash)


def _counting(per_example_loss, seen):
    """per_example_loss that adds the rows of every batch trained on to
    the variable ``seen``."""
    def loss(labels, predictions):
        with tf.control_dependencies([seen.assign_add(tf.shape(labels)[0])]):
            return tf.identity(per_example_loss(labels, predictions))
    return loss


def test_epochs_end_step_and_passes_done():
    # One pipeline: 2 passes over 100 examples in batches of 16: 12 steps.
    assert training.epochs_end_step(2, [100], 16) == 12
    # Two pipelines of 8 per step: the one with fewer records ends first.
    assert training.epochs_end_step(2, [60, 40], 16) == 10
    assert training.passes_done(0, 100, 16) == 0
    assert training.passes_done(7, 100, 16) == 1  # 112 examples read
    assert training.passes_done(12, 100, 16) == 1


def test_steps_per_epoch_runs_resume_to_the_same_end(tmp_path, monkeypatch):
    """howto.train and kinetics.train: max_steps = epochs x steps_per_epoch
    over data repeated forever. Killed after the checkpoint of step 5 and
    resumed, the run ends at step 3 x 4 with 3 x 4 x 8 examples trained on,
    as the uninterrupted run."""
    x = np.random.default_rng(0).normal(size=(32, 10)).astype("float32")
    y = np.random.default_rng(1).random((32, 6)) < 0.3

    def dataset_fn(ctx, seed):
        ds = tf.data.Dataset.from_tensor_slices(({"features": x}, y))
        return ds.shuffle(32, seed=seed).repeat().batch(8)

    def run(train_dir, seen):
        keras.utils.set_random_seed(0)
        trainer = training.Trainer(
            distribute.make_strategy("default"),
            training.LoopConfig(
                train_dir=str(train_dir), per_replica_batch_size=8,
                max_steps=3 * 4, steps_per_epoch=4, checkpoint_every_steps=5,
                log_every_steps=100, verbose=False, steps_per_loop=3),
            build_model=lambda: build_model(CFG),
            build_optimizer=lambda gb: training.make_optimizer("adam", 0.01),
            per_example_loss=_counting(losses.multilabel_cross_entropy, seen),
            dataset_fn=dataset_fn)
        return trainer.train()

    whole = tf.Variable(0)
    assert run(tmp_path / "whole", whole) == 12
    assert int(whole.numpy()) == 3 * 32

    seen = tf.Variable(0)
    _crash_after_checkpoint(monkeypatch, 5)
    with pytest.raises(Crash):
        run(tmp_path / "resumed", seen)
    assert int(seen.numpy()) == 5 * 8
    state = training.read_train_state(str(tmp_path / "resumed"))
    assert state["step"] == 5 and state["epoch"] == pytest.approx(1.25)
    assert run(tmp_path / "resumed", seen) == 12
    assert int(seen.numpy()) == int(whole.numpy())
    state = training.read_train_state(str(tmp_path / "resumed"))
    assert state["examples_seen"] == 96 and state["epoch"] == 3


def _yt8m_train(demo_data, train_dir, *extra):
    FLAGS.unparse_flags()
    FLAGS(["prog", f"--train_data_pattern={demo_data}/train*.tfrecord",
           f"--train_dir={train_dir}", "--model=FrameLevelLogisticModel",
           "--frame_features", "--feature_names=rgb,audio",
           "--feature_sizes=1024,128", "--num_classes=20", "--batch_size=16",
           "--num_epochs=2", "--checkpoint_every_steps=4", "--seed=0",
           *extra])
    return ytrain.main([])


def test_yt8m_num_epochs_continue_after_a_restart(demo_data, tmp_path,
                                                  monkeypatch):
    """--num_epochs=2 over the 96 demo videos in batches of 16: 12 steps,
    192 videos trained on. Killed after the checkpoint of step 4 and
    resumed, the run still ends there (before the fix the resumed run
    started two new passes and trained on 256)."""
    seen = tf.Variable(0)
    monkeypatch.setattr(ytrain.losses, "multilabel_cross_entropy",
                        _counting(losses.multilabel_cross_entropy, seen))
    assert _yt8m_train(demo_data, tmp_path / "whole") == 12
    assert int(seen.numpy()) == 2 * 96
    state = training.read_train_state(str(tmp_path / "whole"))
    assert state["examples_seen"] == 192 and state["epoch"] == 2

    seen.assign(0)
    _crash_after_checkpoint(monkeypatch, 4)
    with pytest.raises(Crash):
        _yt8m_train(demo_data, tmp_path / "resumed")
    assert int(seen.numpy()) == 4 * 16
    with open(os.path.join(tmp_path / "resumed", "train_state.json")) as f:
        state = json.load(f)
    assert state["step"] == 4 and state["epoch"] == pytest.approx(64 / 96)
    assert _yt8m_train(demo_data, tmp_path / "resumed") == 12
    assert int(seen.numpy()) == 2 * 96
    # Resumed once more at the end: nothing left to do.
    assert _yt8m_train(demo_data, tmp_path / "resumed") == 12
    assert int(seen.numpy()) == 2 * 96
