"""MIL-NCE training pieces: the loss against a numpy re-derivation of its
formula, its cross-replica form on two logical CPU devices (loss and
gradients equal to one device on the whole batch), and the warm-up +
cosine learning-rate schedule against the original's formula."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from vidcore import losses
from vidcore.schedules import WarmupCosineDecay


def _logsumexp(a):
    m = np.max(a)
    return m + np.log(np.sum(np.exp(a - m)))


def _reference_milnce(video, text):
    """The formula in float64, loop by loop: x[i, j, k] = v_i . t_jk;
    mean_i [lse(x[i, :, :] and x[:, i, :]) - lse_k x[i, i, k]]."""
    video = video.astype(np.float64)
    text = text.astype(np.float64)
    b, k, _ = text.shape
    x = np.zeros((b, b, k))
    for i in range(b):
        for j in range(b):
            for c in range(k):
                x[i, j, c] = video[i] @ text[j, c]
    terms = []
    for i in range(b):
        denominator = _logsumexp(np.concatenate([x[i].ravel(),
                                                 x[:, i].ravel()]))
        numerator = _logsumexp(x[i, i])
        terms.append(denominator - numerator)
    return float(np.mean(terms))


@pytest.mark.parametrize("b, k", [(1, 1), (5, 1), (6, 4)])
def test_milnce_loss_matches_formula(b, k):
    rng = np.random.default_rng(b * 10 + k)
    video = rng.normal(size=(b, 7)).astype("f4")
    text = rng.normal(size=(b, k, 7)).astype("f4")
    want = _reference_milnce(video, text)
    np.testing.assert_allclose(float(losses.milnce_loss(video, text)), want,
                               rtol=1e-5)
    # No replica strategy: the per-clip form sums to the same mean.
    per_clip = losses.cross_replica_milnce(video, text)
    assert per_clip.shape == (b,)
    total = tf.nn.compute_average_loss(per_clip, global_batch_size=b)
    np.testing.assert_allclose(float(total), want, rtol=1e-5)


def test_milnce_loss_counts_the_positive_twice():
    """One clip, one caption: the denominator holds x[0, 0, 0] twice
    (row and column), so the loss is log 2, whatever the score."""
    video = np.array([[3.0, -1.0]], "f4")
    text = np.array([[[0.5, 2.0]]], "f4")
    np.testing.assert_allclose(float(losses.milnce_loss(video, text)),
                               math.log(2.0), rtol=1e-6)


def test_milnce_loss_bfloat16_inputs_are_computed_in_float32():
    rng = np.random.default_rng(7)
    video = rng.normal(size=(3, 4)).astype("f4")
    text = rng.normal(size=(3, 2, 4)).astype("f4")
    got = losses.milnce_loss(tf.cast(video, tf.bfloat16),
                             tf.cast(text, tf.bfloat16))
    assert got.dtype == tf.float32
    rounded = [tf.cast(tf.cast(a, tf.bfloat16), tf.float32).numpy()
               for a in (video, text)]
    np.testing.assert_allclose(float(got), _reference_milnce(*rounded),
                               rtol=1e-5)


def test_cross_replica_milnce_loss_and_gradients_match_one_device():
    """2 replicas x 2 clips == 1 device x 4 clips: negatives come from the
    global batch and the gradients flow back through the gather."""
    rng = np.random.default_rng(11)
    b, k, dim_v, dim_t, dim = 4, 3, 6, 5, 4
    x_video = rng.normal(size=(b, dim_v)).astype("f4")
    x_text = rng.normal(size=(b, k, dim_t)).astype("f4")
    wv0 = rng.normal(size=(dim_v, dim)).astype("f4") * 0.5
    wt0 = rng.normal(size=(dim_t, dim)).astype("f4") * 0.5

    def loss_and_grads(strategy):
        with strategy.scope():
            wv = tf.Variable(wv0)
            wt = tf.Variable(wt0)

        def replica(v, t):
            with tf.GradientTape() as tape:
                per = losses.cross_replica_milnce(
                    v @ wv, tf.einsum("bkt,td->bkd", t, wt))
                loss = tf.nn.compute_average_loss(per, global_batch_size=b)
            grads = tape.gradient(loss, [wv, wt])
            ctx = tf.distribute.get_replica_context()
            return (ctx.all_reduce("sum", loss),
                    [ctx.all_reduce("sum", g) for g in grads])

        n = strategy.num_replicas_in_sync
        per = b // n

        def part(array):
            return strategy.experimental_distribute_values_from_function(
                lambda ctx: array[ctx.replica_id_in_sync_group * per:
                                  (ctx.replica_id_in_sync_group + 1) * per])

        loss, grads = strategy.run(tf.function(replica),
                                   args=(part(x_video), part(x_text)))
        local = strategy.experimental_local_results
        return (local(loss)[0].numpy(),
                [local(g)[0].numpy() for g in grads])

    # One device, the whole batch, the plain loss (no gather).
    wv, wt = tf.Variable(wv0), tf.Variable(wt0)
    with tf.GradientTape() as tape:
        one_loss = losses.milnce_loss(
            x_video @ wv, tf.einsum("bkt,td->bkd", x_text, wt))
    one_grads = [g.numpy() for g in tape.gradient(one_loss, [wv, wt])]
    one_loss = one_loss.numpy()
    # The per-clip form without a strategy gives the same.
    same_loss, same_grads = loss_and_grads(tf.distribute.get_strategy())
    np.testing.assert_allclose(same_loss, one_loss, rtol=1e-6)
    for same, one in zip(same_grads, one_grads):
        np.testing.assert_allclose(same, one, rtol=1e-5, atol=1e-7)
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    if len(cpus) < 2:
        pytest.skip("needs two logical CPU devices (tests/conftest.py)")
    two_loss, two_grads = loss_and_grads(tf.distribute.MirroredStrategy(cpus))
    np.testing.assert_allclose(one_loss, _reference_milnce(
        x_video @ wv0, np.einsum("bkt,td->bkd", x_text, wt0)), rtol=1e-5)
    np.testing.assert_allclose(two_loss, one_loss, rtol=1e-5)
    for two, one in zip(two_grads, one_grads):
        assert np.abs(one).max() > 1e-2  # a real gradient
        np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------- schedule --

def _original_lr(step, base, warmup, total, cycles=0.5):
    """get_cosine_schedule_with_warmup's lr_lambda (MIL-NCE utils.py), in
    plain Python, times the base rate."""
    if step < warmup:
        return base * float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    return base * max(0.0, 0.5 * (1.0 + math.cos(
        math.pi * float(cycles) * 2.0 * progress)))


@pytest.mark.parametrize("warmup, total, cycles", [
    (10_000, 1_451_850, 0.5),  # the published run: 300 epochs of 4,839
    (7, 50, 0.5),
    (0, 20, 0.5),
    (5, 30, 1.5),  # several cycles: the max(0, .) clamps
    (8, 4, 0.5),   # total inside the warm-up
])
def test_warmup_cosine_matches_original(warmup, total, cycles):
    schedule = WarmupCosineDecay(1e-3, warmup, total, num_cycles=cycles)
    steps = sorted({0, 1, max(0, warmup - 1), warmup, warmup + 1,
                    (warmup + total) // 2, total - 1, total, total + 1,
                    2 * total + 3} | set(range(0, total + 5,
                                               max(1, total // 37))))
    got = [float(schedule(tf.constant(s, tf.int64))) for s in steps]
    want = [_original_lr(s, 1e-3, warmup, total, cycles) for s in steps]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)
    # In a graph too (the Trainer evaluates it inside its tf.function).
    in_graph = tf.function(schedule)
    np.testing.assert_allclose(
        [float(in_graph(tf.constant(s, tf.int64))) for s in steps], want,
        rtol=1e-6, atol=1e-12)
    assert got[0] == 0.0 or warmup == 0
    if total > warmup:
        assert got[steps.index(warmup)] == pytest.approx(1e-3, rel=1e-6)
    if total > warmup and cycles == 0.5:
        assert got[steps.index(total)] == pytest.approx(0.0, abs=1e-12)


def test_warmup_cosine_serialises_and_checks_arguments():
    schedule = WarmupCosineDecay(0.01, 3, 9, num_cycles=0.25)
    config = keras.saving.serialize_keras_object(schedule)
    again = keras.saving.deserialize_keras_object(config)
    assert isinstance(again, WarmupCosineDecay)
    assert again.get_config() == schedule.get_config()
    for step in (0, 2, 3, 6, 9, 12):
        assert float(again(step)) == float(schedule(step))
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosineDecay(0.01, -1, 9)
    with pytest.raises(ValueError, match="total_steps"):
        WarmupCosineDecay(0.01, 0, -9)
