"""vidcore layers against the formulas of the spec, written in numpy here."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from vidcore.layers import frames as frame_layers
from vidcore.layers.gating import ContextGating
from vidcore.layers.moe import LogisticClassifier, MixtureOfExperts
from vidcore.layers.pooling import DBoF, GatedDBoF, NetFV, NetVLAD, SoftDBoF

RNG = np.random.default_rng(0)


def _l2n(x, axis):
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-6)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _bn_inference(layer, x):
    """Batch norm in inference mode with the layer's (randomised) stats."""
    gamma, beta, mean, var = [w.numpy() for w in layer.weights]
    return gamma * (x - mean) / np.sqrt(var + layer.epsilon) + beta


def _randomise_bn(layer):
    for w in layer.weights:
        shape = w.shape
        if "variance" in w.path:
            w.assign(RNG.uniform(0.5, 2.0, shape).astype("float32"))
        else:
            w.assign(RNG.normal(0, 0.5, shape).astype("float32"))


def _frames(b=3, n=7, d=6):
    return RNG.normal(size=(b, n, d)).astype("float32")


def _assignments(layer, x):
    _randomise_bn(layer.cluster_bn)
    logits = x @ layer.cluster_weights.numpy()
    return _softmax(_bn_inference(layer.cluster_bn, logits))


@pytest.mark.parametrize("light", [False, True])
def test_netvlad_matches_formula(light):
    x = _frames()
    layer = NetVLAD(4, light=light)
    layer(x)
    a = _assignments(layer, x)  # [B, N, K]
    vlad = np.einsum("bnk,bnd->bdk", a, x)
    if not light:
        vlad -= a.sum(1)[:, None, :] * layer.centroids.numpy()
    expected = _l2n(_l2n(vlad, 1).reshape(3, -1), 1)
    np.testing.assert_allclose(layer(x, training=False), expected,
                               rtol=1e-5, atol=1e-6)
    assert len(layer.trainable_weights) == (3 if light else 4)


@pytest.mark.parametrize("couple", [False, True])
def test_netfv_matches_formula(couple):
    x = _frames()
    layer = NetFV(4, couple_weights=couple, coupling_factor=0.01)
    layer(x)
    a = _assignments(layer, x)
    a_sum = a.sum(1)[:, None, :]
    c = (0.01 * layer.cluster_weights.numpy()[None] if couple
         else layer.centroids.numpy())
    s = layer.covar_weights.numpy() ** 2 + 1e-6
    ax = np.einsum("bnk,bnd->bdk", a, x)
    ax2 = np.einsum("bnk,bnd->bdk", a, x ** 2)
    fv1 = _l2n(_l2n((ax - a_sum * c) / s, 1).reshape(3, -1), 1)
    fv2 = (ax2 - 2 * c * ax + a_sum * c ** 2) / s ** 2 - a_sum
    fv2 = _l2n(fv2.reshape(3, -1), 1)
    np.testing.assert_allclose(layer(x, training=False),
                               np.concatenate([fv1, fv2], 1),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("max_pool", [False, True])
def test_soft_dbof(max_pool):
    x = _frames()
    layer = SoftDBoF(5, max_pool=max_pool)
    layer(x)
    a = _assignments(layer, x)
    expected = _l2n(a.sum(1), 1)
    if max_pool:
        expected = np.concatenate([expected, _l2n(a.max(1), 1)], 1)
    np.testing.assert_allclose(layer(x, training=False), expected, rtol=1e-5,
                               atol=1e-6)


def test_gated_dbof():
    x = _frames()
    layer = GatedDBoF(5)
    layer(x)
    a = _assignments(layer, x)
    _randomise_bn(layer.gate_bn)
    gate = _l2n(a.max(1), 1) @ layer.dim_red.numpy() @ \
        layer.cluster_weights_2.numpy()
    gate = 1 / (1 + np.exp(-_bn_inference(layer.gate_bn, gate)))
    np.testing.assert_allclose(layer(x, training=False),
                               _l2n(gate * a.sum(1), 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", ["max", "average"])
def test_starter_dbof(pooling):
    x = _frames()
    layer = DBoF(5, activation="relu6", pooling=pooling)
    layer(x)
    _randomise_bn(layer.cluster_bn)
    act = np.clip(_bn_inference(layer.cluster_bn,
                                x @ layer.cluster_weights.numpy()), 0, 6)
    expected = act.max(1) if pooling == "max" else act.mean(1)
    np.testing.assert_allclose(layer(x, training=False), expected, rtol=1e-5,
                               atol=1e-6)


def test_pooling_without_batch_norm_uses_biases():
    layer = NetVLAD(4, add_batch_norm=False)
    layer(_frames())
    names = sorted(w.name for w in layer.trainable_weights)
    assert names == ["cluster_biases", "cluster_weights", "cluster_weights2"]


def test_context_gating():
    x = RNG.normal(size=(4, 6)).astype("float32")
    layer = ContextGating()
    layer(x)
    _randomise_bn(layer.gating_bn)
    gates = _bn_inference(layer.gating_bn, x @ layer.gating_weights.numpy())
    np.testing.assert_allclose(layer(x, training=False),
                               x / (1 + np.exp(-gates)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("prob_gating", [False, True])
def test_mixture_of_experts(prob_gating):
    v, m, h = 5, 2, 6
    x = RNG.normal(size=(4, h)).astype("float32")
    layer = MixtureOfExperts(v, num_mixtures=m, l2_penalty=1e-3,
                             prob_gating=prob_gating)
    layer(x)
    layer.experts.bias.assign(RNG.normal(size=(v * m,)).astype("float32"))
    gates = (x @ layer.gates.kernel.numpy()).reshape(4, v, m + 1)
    experts = (x @ layer.experts.kernel.numpy()
               + layer.experts.bias.numpy()).reshape(4, v, m)
    p = (_softmax(gates)[..., :m] / (1 + np.exp(-experts))).sum(-1)
    if prob_gating:
        _randomise_bn(layer.gating_prob_bn)
        g = _bn_inference(layer.gating_prob_bn,
                          p @ layer.gating_prob_weights.numpy())
        p = p / (1 + np.exp(-g))
    out = layer(x, training=False)
    assert out.dtype == "float32"
    np.testing.assert_allclose(out, p, rtol=1e-5, atol=1e-6)
    # L2 penalty: moe_l2 * sum(w^2) / 2 on the gate and expert kernels.
    penalty = 1e-3 * (np.sum(layer.gates.kernel.numpy() ** 2)
                      + np.sum(layer.experts.kernel.numpy() ** 2)) / 2
    np.testing.assert_allclose(float(sum(layer.losses)), penalty, rtol=1e-5)


def test_logistic_classifier():
    x = RNG.normal(size=(3, 4)).astype("float32")
    layer = LogisticClassifier(2, l2_penalty=0.1)
    out = layer(x)
    k, b = layer.dense.kernel.numpy(), layer.dense.bias.numpy()
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-(x @ k + b))), rtol=1e-5)
    np.testing.assert_allclose(float(sum(layer.losses)),
                               0.1 * np.sum(k ** 2) / 2, rtol=1e-5)


def test_dequantize_and_mask():
    q = np.array([[[0, 255], [128, 1], [7, 7]]], np.uint8)  # [1, 3, 2]
    layer = frame_layers.DequantizeFrames(4 / 255, 4 / 512 - 2)
    out = layer(q, np.array([2], np.int32)).numpy()
    expected = q * (4 / 255) + (4 / 512 - 2)
    expected[:, 2] = 0.0  # padding frame
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_frame_sampler_training_and_evaluation():
    frames = np.arange(2 * 10, dtype="float32").reshape(2, 10, 1)
    num_frames = np.array([4, 10], np.int32)
    for mode in frame_layers.FrameSampler.MODES:
        sampler = frame_layers.FrameSampler(6, mode=mode)
        picked = sampler(frames, num_frames, training=True).numpy()[..., 0]
        index = picked - np.arange(2)[:, None] * 10
        assert index.shape == (2, 6)
        assert (index >= 0).all() and (index < num_frames[:, None]).all()
        if mode == "random_sequence":
            # consecutive run, clamped at the last frame of short videos
            assert (np.diff(index[1]) == 1).all()
    evaluated = frame_layers.FrameSampler(4)(frames, num_frames,
                                             training=False).numpy()[..., 0]
    # centres of 4 equal bins: floor((i + .5) * n / 4)
    np.testing.assert_array_equal(evaluated[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(evaluated[1], [11, 13, 16, 18])


def test_evenly_spaced_repeats_short_videos():
    index = frame_layers.evenly_spaced_indices(tf.constant([2, 1, 0]), 4)
    np.testing.assert_array_equal(index, [[0, 0, 1, 1], [0, 0, 0, 0],
                                          [0, 0, 0, 0]])


LAYERS = [
    lambda: NetVLAD(3, light=True, bn_momentum=0.9),
    lambda: NetFV(3, couple_weights=False),
    lambda: SoftDBoF(3, max_pool=True),
    lambda: GatedDBoF(3, add_batch_norm=False),
    lambda: DBoF(3, activation="relu6", pooling="average"),
]


@pytest.mark.parametrize("make", LAYERS)
def test_pooling_layers_serialise(make):
    layer = make()
    x = _frames()
    y = layer(x, training=False)
    clone = type(layer).from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x, training=False), y, rtol=1e-6)
    assert clone.get_config() == layer.get_config()


def test_small_layers_serialise():
    for layer in [ContextGating(add_batch_norm=False),
                  MixtureOfExperts(4, num_mixtures=3, prob_gating=True),
                  LogisticClassifier(4, l2_penalty=0.5),
                  frame_layers.FrameSampler(5, mode="random_sequence"),
                  frame_layers.SplitFeatures([2, 3]),
                  frame_layers.L2Normalize(axis=1),
                  frame_layers.DequantizeFrames(0.5, -1.0)]:
        config = layer.get_config()
        assert type(layer).from_config(config).get_config() == config


def test_mixed_bfloat16_pooling_runs():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = NetVLAD(4)
        out = layer(tf.constant(_frames()), training=True)
        assert out.dtype == tf.bfloat16
        assert layer.cluster_weights.dtype == "float32"
        moe = MixtureOfExperts(3, prob_gating=True)
        assert moe(out).dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")
