"""TF1GRU: the reset_after=False GRU whose loop reads its weights once."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from vidcore.layers.recurrent import TF1GRU


def _pair(units=5, **kwargs):
    """A TF1GRU and a Keras GRU(reset_after=False) with the same weights."""
    ours = TF1GRU(units, return_sequences=True, return_state=True, **kwargs)
    keras_gru = keras.layers.GRU(units, return_sequences=True,
                                 return_state=True, reset_after=False,
                                 **kwargs)
    x = np.zeros((1, 3, 4), np.float32)
    ours(x)
    keras_gru(x)
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=w.shape).astype(np.float32) * 0.5
               for w in keras_gru.get_weights()]
    ours.set_weights(weights)
    keras_gru.set_weights(weights)
    return ours, keras_gru, weights


def _numpy_tf1_gru(x, mask, kernel, recurrent, bias):
    """TF1 GRUCell (reset gate before the recurrent matmul), masked steps
    keep the state."""
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    units = recurrent.shape[0]
    h = np.zeros((x.shape[0], units))
    outputs = []
    for t in range(x.shape[1]):
        proj = x[:, t] @ kernel + bias
        z = sigmoid(proj[:, :units] + h @ recurrent[:, :units])
        r = sigmoid(proj[:, units:2 * units]
                    + h @ recurrent[:, units:2 * units])
        c = np.tanh(proj[:, 2 * units:] + (r * h) @ recurrent[:, 2 * units:])
        h = np.where(mask[:, t:t + 1], z * h + (1 - z) * c, h)
        outputs.append(h)
    return np.stack(outputs, 1), h


def test_equals_keras_gru_and_the_tf1_formula_with_a_mask():
    ours, keras_gru, (kernel, recurrent, bias) = _pair()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6, 4)).astype(np.float32)
    mask = np.arange(6)[None] < np.array([[6], [2], [4]])  # [B, T]
    seq, state = ours(x, mask=mask)
    ref_seq, ref_state = keras_gru(x, mask=mask)
    np.testing.assert_allclose(seq, ref_seq, atol=1e-6)
    np.testing.assert_allclose(state, ref_state, atol=1e-6)
    np_seq, np_state = _numpy_tf1_gru(x.astype(np.float64), mask, kernel,
                                      recurrent, bias)
    np.testing.assert_allclose(state, np_state, atol=1e-5)
    np.testing.assert_allclose(seq, np_seq, atol=1e-5)


def test_gradients_equal_keras_gru():
    ours, keras_gru, _ = _pair()
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 5, 4)),
                    tf.float32)
    mask = tf.constant(np.arange(5)[None] < np.array([[5], [3]]))
    grads = []
    for layer in (ours, keras_gru):
        with tf.GradientTape() as tape:
            tape.watch(x)
            seq, state = layer(x, mask=mask)
            loss = tf.reduce_sum(seq ** 2) + tf.reduce_sum(state)
        grads.append(tape.gradient(loss, [x] + layer.trainable_weights))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_loop_keeps_no_per_step_copy_of_the_weights():
    """The traced backward pass stacks nothing of the recurrent kernel's
    size per step (Keras' loop stacks its in-loop slices)."""
    units, steps = 64, 50
    ours, keras_gru, _ = _pair(units)

    def stacked_bytes(layer):
        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                _, state = layer(x)
                loss = tf.reduce_sum(state)
            return tape.gradient(loss, layer.trainable_weights)

        graph = step.get_concrete_function(
            tf.TensorSpec((2, steps, 4), tf.float32)).graph
        # While-loop accumulators: TensorList pushes of per-step values.
        sizes = []
        for fn in graph._functions.values():  # pylint: disable=protected-access
            for op in fn.graph.get_operations():
                if op.type == "TensorListPushBack":
                    shape = op.inputs[1].shape
                    if shape.is_fully_defined():
                        sizes.append(int(np.prod(shape)))
        return max(sizes, default=0)

    assert stacked_bytes(keras_gru) >= units * units  # a weight slice
    assert stacked_bytes(ours) < units * units


def test_serialises_and_rejects_reset_after():
    layer = TF1GRU(3, return_sequences=True)
    clone = TF1GRU.from_config(layer.get_config())
    assert isinstance(clone, TF1GRU) and not clone.cell.reset_after
    with pytest.raises(ValueError, match="reset_after=False"):
        TF1GRU(3, reset_after=True)


def test_mixed_precision_matches_float32():
    ours, _, weights = _pair()
    x = np.random.default_rng(3).normal(size=(2, 4, 4)).astype(np.float32)
    reference = ours(x)[1].numpy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = TF1GRU(5, return_sequences=True, return_state=True)
        mixed(x)
        mixed.set_weights(weights)
        state = mixed(x)[1]
        assert state.dtype == tf.bfloat16
    finally:
        keras.mixed_precision.set_global_policy("float32")
    np.testing.assert_allclose(tf.cast(state, tf.float32), reference,
                               atol=3e-2)
