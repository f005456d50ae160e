"""vidcore.layers.normalization.BatchNorm: safe statistics on one device and
on two replicas (two logical CPU devices, tests/conftest.py), exact
gradients, one all-reduce per layer, one copy of the moving statistics."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from vidcore.backbones import resnet3d, s3d
from vidcore.layers.normalization import BatchNorm, batch_norm

EPSILON = 1e-3


def _devices():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    if len(devices) < 2:
        pytest.skip("needs two logical CPU devices (tests/conftest.py)")
    return devices


@pytest.fixture(scope="module")
def strategy():
    return tf.distribute.MirroredStrategy(_devices())


def _badly_centred(mean, std, shape, seed=0):
    rng = np.random.default_rng(seed)
    return (mean + std * rng.normal(size=shape)).astype(np.float32)


def _assert_normalised(out, x, mean, var):
    """out == (x - mean) / sqrt(var + eps), to the rounding of the form
    x * inv - mean * inv that tf.nn.batch_normalization computes (float32
    at the scale of |x| / std)."""
    expected = (x - mean) / np.sqrt(var + EPSILON)
    scale = np.abs(x).max() / np.sqrt(var.min() + EPSILON)
    np.testing.assert_allclose(out, expected, atol=1e-4 + 8e-7 * scale)


def _true_moments(x):
    """tf.nn.moments in float64 over all axes but the last."""
    mean, var = tf.nn.moments(tf.constant(x, tf.float64),
                              axes=list(range(x.ndim - 1)))
    return mean.numpy(), var.numpy()


def _split(strategy, x, sizes):
    """Replica i gets the next sizes[i] rows of x."""
    bounds = np.cumsum([0, *sizes])
    return strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(x[bounds[ctx.replica_id_in_sync_group]:
                                  bounds[ctx.replica_id_in_sync_group + 1]]))


def _per_replica(strategy, value):
    return [t.numpy() for t in strategy.experimental_local_results(value)]


def _train_on_replicas(strategy, layer, x, sizes):
    """One training-mode call on each replica's rows; outputs concatenated."""
    @tf.function
    def step(rows):
        return strategy.run(lambda r: layer(r, training=True), args=(rows,))
    return np.concatenate(_per_replica(strategy, step(_split(strategy, x,
                                                             sizes))))


BAD_INPUTS = [(1000.0, 0.05), (100.0, 0.1), (-3e4, 2.0)]


@pytest.mark.parametrize("mean,std", BAD_INPUTS)
def test_one_device_variance_of_badly_centred_inputs(mean, std):
    x = _badly_centred(mean, std, (64, 6))
    layer = batch_norm(momentum=0.0, epsilon=EPSILON)
    out = layer(x, training=True).numpy()
    true_mean, true_var = _true_moments(x)
    # Relative to the variance itself (Keras' E[x^2] - E[x]^2 is off by
    # 20-100% here, or 0).
    np.testing.assert_allclose(layer.moving_variance.numpy(), true_var,
                               rtol=5e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), true_mean,
                               rtol=1e-6)
    _assert_normalised(out, x, true_mean, true_var)


@pytest.mark.parametrize("mean,std", BAD_INPUTS)
@pytest.mark.parametrize("sizes", [(32, 32), (48, 16), (64, 0)])
def test_two_replicas_variance_of_badly_centred_inputs(strategy, mean, std,
                                                       sizes):
    x = _badly_centred(mean, std, (64, 6), seed=1)
    # Replica 1's rows sit a few standard deviations higher, so the spread
    # between replica means counts.
    x[sizes[0]:] += np.float32(3 * std)
    with strategy.scope():
        layer = batch_norm(momentum=0.0, epsilon=EPSILON)
        layer.build((None, 6))
    out = _train_on_replicas(strategy, layer, x, sizes)
    true_mean, true_var = _true_moments(x)
    for copy in _per_replica(strategy, layer.moving_variance.value):
        np.testing.assert_allclose(copy, true_var, rtol=5e-5)
    for copy in _per_replica(strategy, layer.moving_mean.value):
        np.testing.assert_allclose(copy, true_mean, rtol=1e-6)
    _assert_normalised(out, x, true_mean, true_var)


def test_video_shaped_inputs_reduce_all_but_channels(strategy):
    # [B, T, H, W, C] with per-channel offsets: statistics per channel over
    # batch, time and space.
    x = _badly_centred(0.0, 0.2, (4, 3, 5, 5, 3), seed=2)
    x += np.array([500.0, -20.0, 0.5], np.float32)
    true_mean, true_var = _true_moments(x)
    layer = batch_norm(momentum=0.0)
    layer(x, training=True)
    np.testing.assert_allclose(layer.moving_variance.numpy(), true_var,
                               rtol=5e-5)
    with strategy.scope():
        synced = batch_norm(momentum=0.0)
        synced.build((None, 3, 5, 5, 3))
    _train_on_replicas(strategy, synced, x, (2, 2))
    np.testing.assert_allclose(synced.moving_variance.numpy(), true_var,
                               rtol=5e-5)
    np.testing.assert_allclose(synced.moving_mean.numpy(), true_mean,
                               rtol=1e-6)


def test_masked_rows_are_left_out():
    x = _badly_centred(100.0, 0.1, (2, 10, 4), seed=3)
    mask = np.ones((2, 10), bool)
    mask[1, 6:] = False
    x[1, 6:] = 1e4  # would dominate the statistics if counted
    layer = batch_norm(momentum=0.0)
    layer(x, training=True, mask=mask)
    true_mean, true_var = _true_moments(x[mask])
    np.testing.assert_allclose(layer.moving_variance.numpy(), true_var,
                               rtol=5e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), true_mean,
                               rtol=1e-6)


def test_mixed_precision_statistics_in_float32():
    x16 = _badly_centred(10.0, 0.5, (64, 4), seed=4).astype(np.float16)
    layer = batch_norm(momentum=0.0, dtype="mixed_float16")
    out = layer(x16, training=True)
    assert out.dtype == tf.float16
    assert layer.moving_variance.dtype == "float32"
    _, true_var = _true_moments(x16.astype(np.float32))
    np.testing.assert_allclose(layer.moving_variance.numpy(), true_var,
                               rtol=5e-5)


def _loss_weights(shape, seed=5):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (100.0, 0.1)])
def test_two_replicas_gradients_equal_one_device(strategy, mean, std):
    """2 replicas x 4 examples == 1 device x 8: input, gamma and beta
    gradients of sum(w * BN(x)) and the moving statistics."""
    x = _badly_centred(mean, std, (8, 3, 5), seed=6)
    x[4:] = x[4:] * 2.0 - np.float32(std)  # replicas differ in distribution
    w = _loss_weights(x.shape)
    init = [np.random.default_rng(7).normal(size=5).astype(np.float32)
            for _ in range(2)] + [np.zeros(5, np.float32),
                                  np.ones(5, np.float32)]

    def grads(layer, rows, weights):
        with tf.GradientTape() as tape:
            tape.watch(rows)
            loss = tf.reduce_sum(weights * layer(rows, training=True))
        return tape.gradient(loss, [rows, layer.gamma, layer.beta])

    single = batch_norm(momentum=0.5)
    single.build((None, 3, 5))
    single.set_weights(init)
    want_x, want_gamma, want_beta = [g.numpy() for g in grads(
        single, tf.constant(x), tf.constant(w))]

    with strategy.scope():
        synced = batch_norm(momentum=0.5)
        synced.build((None, 3, 5))
        synced.set_weights(init)

    @tf.function
    def step(rows, weights):
        return strategy.run(lambda r, v: grads(synced, r, v),
                            args=(rows, weights))

    got = step(_split(strategy, x, (4, 4)), _split(strategy, w, (4, 4)))
    got_x = np.concatenate(_per_replica(strategy, got[0]))
    scale = np.abs(want_x).max()
    np.testing.assert_allclose(got_x, want_x, atol=1e-4 * scale)
    for per_replica, want in ((got[1], want_gamma), (got[2], want_beta)):
        np.testing.assert_allclose(sum(_per_replica(strategy, per_replica)),
                                   want, rtol=1e-4, atol=1e-4)
    for got_w, want_w in zip(synced.get_weights(), single.get_weights()):
        np.testing.assert_allclose(got_w, want_w, rtol=1e-5, atol=1e-6)


def _count_all_reduces(strategy, monkeypatch, layer, x):
    """all_reduce calls in one training-mode forward (traced once)."""
    calls = []
    original = tf.distribute.ReplicaContext.all_reduce

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(tf.distribute.ReplicaContext, "all_reduce", counting)

    @tf.function
    def step(rows):
        strategy.run(lambda r: layer(r, training=True), args=(rows,))

    step(_split(strategy, x, (4, 4)))
    replicas = strategy.num_replicas_in_sync
    assert len(calls) % replicas == 0
    return len(calls) // replicas


@pytest.mark.parametrize("synchronized", [True, False])
def test_one_all_reduce_per_layer_forward(strategy, monkeypatch,
                                          synchronized):
    x = _badly_centred(0.0, 1.0, (8, 6))
    with strategy.scope():
        layer = batch_norm(synchronized=synchronized)
        layer.build((None, 6))
    assert _count_all_reduces(strategy, monkeypatch, layer, x) == 1


def test_one_replica_sends_nothing(monkeypatch):
    one = tf.distribute.MirroredStrategy(_devices()[:1])
    x = _badly_centred(0.0, 1.0, (8, 6))
    with one.scope():
        layer = batch_norm()
        layer.build((None, 6))
    calls = []
    original = tf.distribute.ReplicaContext.all_reduce
    monkeypatch.setattr(tf.distribute.ReplicaContext, "all_reduce",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    one.run(tf.function(lambda r: layer(r, training=True)), args=(x,))
    layer(x, training=True)  # default strategy
    assert calls == []


def _small_model(synchronized):
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, name="dense")(inputs)
    x = batch_norm(momentum=0.5, synchronized=synchronized, name="bn")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def _tiny_mc3(synchronized):
    """The Kinetics MC3-18 at a tiny clip size (--sync_bn or not)."""
    return resnet3d.mc3_18(num_classes=3, input_shape=(4, 16, 16, 3),
                           sync_bn=synchronized)


def _check_evaluation_reads_one_copy(strategy, tmp_path, build, shape,
                                     steps):
    """Trains ``build()`` under ``strategy`` with different data per replica
    (a custom step, as vidcore.training.Trainer runs), then checks that
    evaluation gives the same outputs on both replicas, that every moving
    statistic has one value on all replicas, and that the model restored
    from the checkpoint on one device gives the same outputs."""
    rng = np.random.default_rng(8)
    with strategy.scope():
        model = build()
        optimizer = keras.optimizers.SGD(0.01)
        optimizer.build(model.trainable_variables)

    def train_step(rows):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(rows, training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        grads = tf.distribute.get_replica_context().all_reduce("sum", grads)
        optimizer.apply(grads, model.trainable_variables)

    train = tf.function(lambda rows: strategy.run(train_step, args=(rows,)))
    for _ in range(steps):
        x = rng.normal(size=(4, *shape)).astype(np.float32)
        x[2:] = x[2:] * 3.0 + 5.0  # replica 1 sees other data
        train(_split(strategy, x, (2, 2)))

    probe = rng.normal(size=(2, *shape)).astype(np.float32)
    evaluate = tf.function(lambda rows: strategy.run(
        lambda r: model(r, training=False), args=(rows,)))
    same_on_each = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(probe))
    outputs = _per_replica(strategy, evaluate(same_on_each))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    norms = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    assert norms
    for layer in norms:
        for var in (layer.moving_mean, layer.moving_variance):
            copies = _per_replica(strategy, var.value)
            np.testing.assert_array_equal(copies[0], copies[1])
    assert not np.allclose(norms[0].moving_mean.numpy(), 0.0)  # it trained

    path = tf.train.Checkpoint(model=model).write(
        os.path.join(tmp_path, "ckpt"))
    restored = build()
    tf.train.Checkpoint(model=restored).read(path).assert_consumed()
    np.testing.assert_allclose(restored(probe, training=False).numpy(),
                               outputs[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("synchronized", [True, False])
def test_evaluation_reads_one_copy_of_moving_statistics(strategy, tmp_path,
                                                        synchronized):
    _check_evaluation_reads_one_copy(
        strategy, tmp_path, lambda: _small_model(synchronized), (6,), 3)


@pytest.mark.slow
def test_kinetics_model_without_sync_bn_evaluates_one_copy(strategy,
                                                           tmp_path):
    _check_evaluation_reads_one_copy(
        strategy, tmp_path, lambda: _tiny_mc3(False), (4, 16, 16, 3), 2)


def test_checkpoint_compatible_with_keras_batch_normalization(tmp_path):
    keras_bn = keras.layers.BatchNormalization()
    keras_bn.build((None, 4))
    rng = np.random.default_rng(9)
    values = [rng.uniform(0.5, 2.0, 4).astype(np.float32) for _ in range(4)]
    keras_bn.set_weights(values)
    path = tf.train.Checkpoint(layer=keras_bn).write(
        os.path.join(tmp_path, "ckpt"))
    ours = batch_norm()
    ours.build((None, 4))
    assert [w.name for w in ours.weights] == [
        "gamma", "beta", "moving_mean", "moving_variance"]
    tf.train.Checkpoint(layer=ours).read(path).assert_consumed()
    for got, want in zip(ours.get_weights(), values):
        np.testing.assert_array_equal(got, want)


def test_keras_file_round_trip(tmp_path):
    model = _small_model(synchronized=False)
    x = _badly_centred(50.0, 1.0, (8, 6))
    model(x, training=True)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    bn = loaded.get_layer("bn")
    assert isinstance(bn, BatchNorm) and not bn.synchronized
    assert bn.momentum == 0.5
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_renorm_is_refused():
    with pytest.raises(ValueError, match="renorm"):
        batch_norm(renorm=True)


@pytest.mark.parametrize("build", [
    lambda sync_bn: resnet3d.r3d_18(num_classes=3, input_shape=(4, 16, 16, 3),
                                    sync_bn=sync_bn),
    lambda sync_bn: s3d.s3d(input_shape=(None, None, None, 3),
                            sync_bn=sync_bn, include_top=False),
], ids=["r3d_18", "s3d"])
def test_video_backbones_use_the_shared_layer(build):
    for sync_bn in (False, True):
        model = build(sync_bn)
        norms = [layer for layer in model.layers
                 if isinstance(layer, keras.layers.BatchNormalization)]
        assert norms and all(isinstance(layer, BatchNorm)
                             and layer.synchronized == sync_bn
                             for layer in norms)
