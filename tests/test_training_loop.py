"""Several steps per tf.function call (steps_per_loop) and the learning-rate
schedule on the loop's step: the same weights, losses, TensorBoard scalars,
checkpoints and epoch ends as one step per call."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from vidcore import distribute, losses, training
from yt8m.models import ModelConfig, build_model

CFG = ModelConfig(model="MoeModel", num_classes=6, feature_sizes=(10,),
                  moe_num_mixtures=2, moe_l2=1e-3, moe_prob_gating=True,
                  bn_momentum=0.9)


def _dataset_fn(num_examples=None):
    """(ctx, seed) -> batches of 8 global examples; repeated forever when
    num_examples is None, else one pass over that many examples."""
    rng = np.random.default_rng(0)
    n = num_examples or 64
    x = rng.normal(size=(n, 10)).astype("float32")
    y = rng.random((n, 6)) < 0.3

    def fn(ctx, seed):
        del seed
        ds = tf.data.Dataset.from_tensor_slices(({"features": x}, y))
        if num_examples is None:
            ds = ds.repeat()
        return ds.batch(ctx.get_per_replica_batch_size(8))
    return fn


def _trainer(train_dir, steps_per_loop, max_steps=None, strategy=None,
             log_every=4, checkpoint_every=1000, steps_per_epoch=None,
             num_examples=None, per_example_loss=None, on_epoch_end=None,
             optimizer=None):
    strategy = strategy or distribute.make_strategy("default")
    keras.utils.set_random_seed(1)
    return training.Trainer(
        strategy,
        training.LoopConfig(
            train_dir=str(train_dir),
            per_replica_batch_size=8 // strategy.num_replicas_in_sync,
            max_steps=max_steps, checkpoint_every_steps=checkpoint_every,
            log_every_steps=log_every, keep_checkpoints=100, verbose=False,
            steps_per_epoch=steps_per_epoch, steps_per_loop=steps_per_loop),
        build_model=lambda: build_model(CFG),
        build_optimizer=optimizer or (lambda gb: training.make_optimizer(
            "sgd", 0.05, clip_norm=0.05, momentum=0.9)),
        per_example_loss=per_example_loss or losses.multilabel_cross_entropy,
        dataset_fn=_dataset_fn(num_examples), on_epoch_end=on_epoch_end)


def _scalars(train_dir):
    """{tag: [(step, value), ...]} from the event files of train_dir."""
    out = {}
    for name in sorted(os.listdir(train_dir)):
        if not name.startswith("events"):
            continue
        for event in tf.compat.v1.train.summary_iterator(
                os.path.join(train_dir, name)):
            for v in event.summary.value:
                value = float(tf.make_ndarray(v.tensor)) if v.HasField(
                    "tensor") else v.simple_value
                out.setdefault(v.tag, []).append((event.step, value))
    return out


def _checkpoint_steps(train_dir):
    return sorted(int(f[len("ckpt-"):-len(".index")])
                  for f in os.listdir(train_dir)
                  if f.startswith("ckpt-") and f.endswith(".index"))


def test_steps_in_next_call_stops_on_every_boundary():
    cfg = training.LoopConfig(train_dir="x", per_replica_batch_size=1,
                              max_steps=23, log_every_steps=5,
                              checkpoint_every_steps=7, steps_per_epoch=11,
                              steps_per_loop=100)
    step, ends = 0, []
    while step < cfg.max_steps:
        step += training.steps_in_next_call(step, cfg)
        ends.append(step)
    assert ends == [5, 7, 10, 11, 14, 15, 20, 21, 22, 23]
    cfg.steps_per_loop = 3
    assert training.steps_in_next_call(0, cfg) == 3
    assert training.steps_in_next_call(3, cfg) == 2
    with pytest.raises(ValueError, match="steps_per_loop"):
        training.LoopConfig(train_dir="x", per_replica_batch_size=1,
                            steps_per_loop=0)


@pytest.mark.parametrize("replicas", [1, 2])
def test_steps_per_loop_gives_the_same_run(tmp_path, replicas):
    """K=11 steps at 1 and at 3 steps per call (calls of 3, 1, 3, 1, 3): the
    same weights, batch-norm statistics, optimizer state and TensorBoard
    scalars (except examples/s), checkpoints and epoch ends."""
    runs = {}
    for n in (1, 3):
        strategy = distribute.make_strategy(
            "mirrored" if replicas == 2 else "default")
        assert strategy.num_replicas_in_sync == replicas
        epochs = []
        trainer = _trainer(
            tmp_path / f"n{n}", n, max_steps=11, strategy=strategy,
            log_every=4, checkpoint_every=5, steps_per_epoch=6,
            on_epoch_end=lambda e, s, epochs=epochs: epochs.append((e, s))
            or {"x": float(e)})
        assert trainer.train() == 11
        runs[n] = (trainer, epochs, _scalars(str(tmp_path / f"n{n}")),
                   _checkpoint_steps(str(tmp_path / f"n{n}")))
    (one, epochs1, tb1, ck1), (three, epochs3, tb3, ck3) = runs[1], runs[3]
    state1 = one.model.get_weights() + [v.numpy()
                                        for v in one.optimizer.variables]
    state3 = three.model.get_weights() + [v.numpy()
                                          for v in three.optimizer.variables]
    assert len(state1) == len(state3) > 10
    for a, b in zip(state1, state3):
        np.testing.assert_array_equal(a, b)
    assert epochs1 == epochs3 == [(1, 6)]
    assert ck1 == ck3 == [5, 6, 10, 11]
    tb1.pop("examples_per_second"), tb3.pop("examples_per_second")
    assert [s for s, _ in tb1["loss/label"]] == [4, 8, 11]
    assert set(tb1) == set(tb3) == {"loss/label", "loss/regularization",
                                    "learning_rate", "eval/x"}
    for tag in tb1:
        assert [s for s, _ in tb1[tag]] == [s for s, _ in tb3[tag]], tag
        np.testing.assert_allclose([v for _, v in tb1[tag]],
                                   [v for _, v in tb3[tag]], rtol=1e-6,
                                   err_msg=tag)


def test_one_call_returns_each_steps_losses(tmp_path):
    """One call of 4 steps returns the 4 losses that 4 one-step calls give
    (what the progress bar shows step by step)."""
    outputs = []
    for calls in ([1, 1, 1, 1], [4]):
        trainer = _trainer(tmp_path / str(len(calls)), 4)
        iterator = iter(trainer.strategy.distribute_datasets_from_function(
            lambda ctx: trainer.dataset_fn(ctx, seed=0)))
        train_steps = trainer._make_train_function()
        got = [train_steps(iterator, tf.constant(n)) for n in calls]
        assert [int(g[0]) for g in got] == calls
        outputs.append(np.concatenate([g[1].numpy() for g in got]))
        assert int(trainer.step.numpy()) == 4
    assert outputs[1].shape == (4,)
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6)


@pytest.mark.parametrize("replicas", [1, 2])
def test_end_of_data_inside_a_call_counts_only_steps_that_ran(tmp_path,
                                                              replicas):
    """64 examples, global batch 8: 8 steps; at 5 steps per call the second
    call finds the end after 3."""
    strategy = distribute.make_strategy(
        "mirrored" if replicas == 2 else "default")
    trainer = _trainer(tmp_path, 5, strategy=strategy, num_examples=64,
                       log_every=100)
    assert trainer.train() == 8
    assert int(trainer.step.numpy()) == 8
    assert int(trainer.optimizer.iterations.numpy()) == 8
    state = training.read_train_state(str(tmp_path))
    assert state["step"] == 8 and state["examples_seen"] == 64
    assert _checkpoint_steps(str(tmp_path)) == [8]


def test_non_finite_loss_stops_at_the_step_it_appeared(tmp_path):
    """A NaN loss at step 6 (the second step of the second call of 4) stops
    the call there and is reported as step 6; no checkpoint after it."""
    holder = []

    def nan_at_step_6(labels, predictions):
        per_example = losses.multilabel_cross_entropy(labels, predictions)
        bad = tf.equal(holder[0].step, 5)  # 5 steps done: this is step 6
        return per_example * tf.where(bad, np.nan, 1.0)

    trainer = _trainer(tmp_path, 4, max_steps=20, checkpoint_every=4,
                       log_every=100, per_example_loss=nan_at_step_6)
    holder.append(trainer)
    with pytest.raises(FloatingPointError, match="at step 6;"):
        trainer.train()
    assert int(trainer.step.numpy()) == 6
    assert _checkpoint_steps(str(tmp_path)) == [4]


def test_learning_rate_follows_the_loop_step_when_steps_are_skipped(
        tmp_path):
    """LossScaleOptimizer: steps 2 and 5 get infinite gradients and are
    skipped (the optimizer's iterations stay behind); the rate used at each
    step, and logged for it, is schedule(step - 1) of the loop's step."""
    holder = []
    skip = [1, 4]  # loop steps (batches consumed before) with inf gradients

    def inf_gradients(labels, predictions):
        bad = tf.reduce_any(tf.equal(holder[0].step, skip))

        @tf.custom_gradient
        def poison(x):
            def grad(dy):
                return dy * tf.where(bad, np.inf, 1.0)
            return tf.identity(x), grad

        return losses.multilabel_cross_entropy(labels, poison(predictions))

    schedule = keras.optimizers.schedules.ExponentialDecay(
        0.1, decay_steps=2, decay_rate=0.5, staircase=True)
    trainer = _trainer(
        tmp_path, 3, max_steps=8, log_every=1, per_example_loss=inf_gradients,
        optimizer=lambda gb: training.make_optimizer(
            "sgd", schedule, loss_scale=True))
    holder.append(trainer)
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert trainer.train() == 8
    assert int(trainer.optimizer.iterations.numpy()) == 8 - len(skip)
    logged = _scalars(str(tmp_path))["learning_rate"]
    assert [s for s, _ in logged] == list(range(1, 9))
    np.testing.assert_allclose([v for _, v in logged],
                               [float(schedule(s - 1)) for s in range(1, 9)],
                               rtol=1e-6)
    np.testing.assert_allclose(float(trainer.optimizer.learning_rate),
                               float(schedule(8)), rtol=1e-6)


def test_low_precision_per_example_loss_trains_in_float32(tmp_path):
    """A loss returning bfloat16 (mixed-precision logits) is summed in
    float32, to the float32 loss's value within bfloat16 rounding."""
    def bf16_loss(labels, predictions):
        return tf.cast(losses.multilabel_cross_entropy(labels, predictions),
                       tf.bfloat16)

    low = _trainer(tmp_path / "bf16", 1, max_steps=3,
                   per_example_loss=bf16_loss)
    assert low.train() == 3
    ref = _trainer(tmp_path / "f32", 1, max_steps=3)
    ref.train()
    got = dict(_scalars(str(tmp_path / "bf16")).get("loss/label", []))
    want = dict(_scalars(str(tmp_path / "f32")).get("loss/label", []))
    assert got and got.keys() == want.keys()
    for step, value in want.items():
        assert got[step] == pytest.approx(value, rel=1e-2)
