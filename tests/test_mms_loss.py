"""Masked margin softmax (AVLnet): the loss against a numpy re-derivation
of its formula, and its cross-replica form on two logical CPU devices
(loss and gradients equal to one device on the whole batch)."""

import numpy as np
import pytest
import tensorflow as tf

from vidcore import losses


def _reference_mms(s, margin):
    """The formula in float64, loop by loop: S' = S - margin I;
    mean_i [lse_j S'[i, j] - S'[i, i]] + mean_j [lse_i S'[i, j] - S'[j, j]]."""
    s = np.asarray(s, np.float64).copy()
    n = s.shape[0]
    for i in range(n):
        s[i, i] -= margin
    rows, cols = [], []
    for i in range(n):
        row = s[i, :]
        rows.append(np.log(np.sum(np.exp(row - row.max()))) + row.max()
                    - s[i, i])
        col = s[:, i]
        cols.append(np.log(np.sum(np.exp(col - col.max()))) + col.max()
                    - s[i, i])
    return float(np.mean(rows) + np.mean(cols))


@pytest.mark.parametrize("n, margin", [(1, 0.001), (5, 0.001), (7, 0.5),
                                       (6, 0.0)])
def test_mms_matches_formula(n, margin):
    rng = np.random.default_rng(n)
    # Non-symmetric scores, so swapping rows and columns cannot pass.
    s = rng.normal(size=(n, n)).astype("f4") * 3.0
    want = _reference_mms(s, margin)
    got = losses.masked_margin_softmax(s, margin=margin)
    assert got.dtype == tf.float32
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    # The per-example form without a strategy, averaged over the batch.
    a = rng.normal(size=(n, 4)).astype("f4")
    b = rng.normal(size=(n, 4)).astype("f4")
    per = losses.cross_replica_mms(a, b, margin=margin)
    assert per.shape == (n,)
    total = tf.nn.compute_average_loss(per, global_batch_size=n)
    np.testing.assert_allclose(float(total), _reference_mms(a @ b.T, margin),
                               rtol=1e-5)


def test_mms_margin_lowers_the_true_pairs_and_averages_the_batch():
    """One pair: both softmaxes have one entry, the loss is 0 whatever the
    margin. Two identical pairs with zero scores: each direction is
    mean_i log(exp(-m) + 1) - (-m) = log(1 + e^m), so 2 log(1 + e^m) (a
    sum over the batch would double it, a wrong sign would give
    2 log(1 + e^-m))."""
    assert float(losses.masked_margin_softmax([[4.0]], margin=0.3)) == 0.0
    m = 0.3
    got = losses.masked_margin_softmax(np.zeros((2, 2), "f4"), margin=m)
    np.testing.assert_allclose(float(got), 2 * np.log1p(np.exp(m)),
                               rtol=1e-6)


def test_mms_bfloat16_inputs_are_computed_in_float32():
    rng = np.random.default_rng(3)
    s = rng.normal(size=(4, 4)).astype("f4")
    got = losses.masked_margin_softmax(tf.cast(s, tf.bfloat16))
    assert got.dtype == tf.float32
    rounded = tf.cast(tf.cast(s, tf.bfloat16), tf.float32).numpy()
    np.testing.assert_allclose(float(got), _reference_mms(rounded, 0.001),
                               rtol=1e-5)


def test_cross_replica_mms_loss_and_gradients_match_one_device():
    """2 replicas x 3 examples == 1 device x 6 examples: negatives come from
    the global batch and the gradients flow back through the gather."""
    rng = np.random.default_rng(5)
    n, dim_a, dim_b, dim = 6, 5, 7, 4
    x_a = rng.normal(size=(n, dim_a)).astype("f4")
    x_b = rng.normal(size=(n, dim_b)).astype("f4")
    wa0 = rng.normal(size=(dim_a, dim)).astype("f4") * 0.7
    wb0 = rng.normal(size=(dim_b, dim)).astype("f4") * 0.7
    margin = 0.2

    def loss_and_grads(strategy):
        with strategy.scope():
            wa = tf.Variable(wa0)
            wb = tf.Variable(wb0)

        def replica(a, b):
            with tf.GradientTape() as tape:
                per = losses.cross_replica_mms(a @ wa, b @ wb, margin=margin)
                loss = tf.nn.compute_average_loss(per, global_batch_size=n)
            grads = tape.gradient(loss, [wa, wb])
            ctx = tf.distribute.get_replica_context()
            return (ctx.all_reduce("sum", loss),
                    [ctx.all_reduce("sum", g) for g in grads])

        per = n // strategy.num_replicas_in_sync

        def part(array):
            return strategy.experimental_distribute_values_from_function(
                lambda ctx: array[ctx.replica_id_in_sync_group * per:
                                  (ctx.replica_id_in_sync_group + 1) * per])

        loss, grads = strategy.run(tf.function(replica),
                                   args=(part(x_a), part(x_b)))
        local = strategy.experimental_local_results
        return (local(loss)[0].numpy(),
                [local(g)[0].numpy() for g in grads])

    # One device, the whole batch, the plain loss (no gather).
    wa, wb = tf.Variable(wa0), tf.Variable(wb0)
    with tf.GradientTape() as tape:
        one_loss = losses.masked_margin_softmax(
            tf.matmul(x_a @ wa, x_b @ wb, transpose_b=True), margin=margin)
    one_grads = [g.numpy() for g in tape.gradient(one_loss, [wa, wb])]
    one_loss = one_loss.numpy()
    np.testing.assert_allclose(
        one_loss, _reference_mms((x_a @ wa0) @ (x_b @ wb0).T, margin),
        rtol=1e-5)
    same_loss, same_grads = loss_and_grads(tf.distribute.get_strategy())
    np.testing.assert_allclose(same_loss, one_loss, rtol=1e-6)
    for same, one in zip(same_grads, one_grads):
        np.testing.assert_allclose(same, one, rtol=1e-5, atol=1e-7)
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    if len(cpus) < 2:
        pytest.skip("needs two logical CPU devices (tests/conftest.py)")
    two_loss, two_grads = loss_and_grads(tf.distribute.MirroredStrategy(cpus))
    np.testing.assert_allclose(two_loss, one_loss, rtol=1e-5)
    for two, one in zip(two_grads, one_grads):
        assert np.abs(one).max() > 1e-2  # a real gradient
        np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-6)
