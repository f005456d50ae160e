"""Recurrent layers.

``TF1GRU`` is Keras' GRU with ``reset_after=False``, the formula of TF1's
``tf.nn.rnn_cell.GRUCell`` (Cho et al. 2014, eq. 5-8, as TF1 wrote it):

    z = sigmoid(x W_z + h U_z + b_z)
    r = sigmoid(x W_r + h U_r + b_r)
    c = tanh(x W_h + (r * h) U_h + b_h)
    h' = z * h + (1 - z) * c

with the same variables (``kernel`` [in, 3H], ``recurrent_kernel`` [H, 3H],
``bias`` [3H], gate order z, r, h), so checkpoints and weights move between
the two unchanged. Only the loop differs. Keras' cell slices
``recurrent_kernel[:, :2H]`` and ``[:, 2H:]`` (and casts the weights under
mixed precision) inside the loop body, so TensorFlow keeps those per-step
copies of the weights for the backward pass: for the YouTube-8M GRU preset
(H = 1200, 300 frames, 2 layers) that was 10 GB per training step whatever
the batch. Here the weights are read, cast and sliced once per call, the
input projection ``x W + b`` is one matmul over all steps, and the loop
carries only the state.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="vidcore")
class TF1GRU(keras.layers.GRU):
    """``keras.layers.GRU(reset_after=False)`` with its weights read once
    per call (module docstring).

    Takes every argument of ``keras.layers.GRU``; ``reset_after`` must be
    False (the default here). Dropout, ``go_backwards`` and ``unroll`` run
    through Keras' own loop, unchanged.

    Args:
        units: H, the state size.
        **kwargs: keras.layers.GRU arguments.
    """

    def __init__(self, units, **kwargs):
        if kwargs.setdefault("reset_after", False):
            raise ValueError("TF1GRU is the reset_after=False GRU")
        kwargs.setdefault("use_cudnn", False)  # no cuDNN kernel for it
        super().__init__(units, **kwargs)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        if (self.unroll or self.go_backwards
                or (training and (cell.dropout or cell.recurrent_dropout))):
            return super().inner_loop(sequences, initial_state, mask,
                                      training=training)
        if isinstance(initial_state, (list, tuple)):
            initial_state = initial_state[0]
        units = cell.units
        dtype = self.compute_dtype
        kernel = tf.cast(cell.kernel, dtype)  # [in, 3H]
        recurrent = tf.cast(cell.recurrent_kernel, dtype)  # [H, 3H]
        u_zr, u_h = recurrent[:, :2 * units], recurrent[:, 2 * units:]
        # [B, T, in] @ [in, 3H] -> [B, T, 3H] -> time-major [T, B, 3H]
        projected = tf.linalg.matmul(sequences, kernel)
        if cell.use_bias:
            projected += tf.cast(cell.bias, dtype)
        projected = tf.transpose(projected, [1, 0, 2])
        if mask is None:
            mask = tf.ones(tf.shape(sequences)[:2], tf.bool)
        mask = tf.transpose(tf.cast(mask, tf.bool))  # [B, T] -> [T, B]
        activation, gate = cell.activation, cell.recurrent_activation

        def step(h, inputs):
            x, keep = inputs  # [B, 3H], [B]
            x_z, x_r, x_h = tf.split(x, 3, axis=-1)
            inner = tf.linalg.matmul(h, u_zr)  # [B, 2H]
            z = gate(x_z + inner[:, :units])
            r = gate(x_r + inner[:, units:])
            candidate = activation(x_h + tf.linalg.matmul(r * h, u_h))
            new = z * h + (1 - z) * candidate
            # Masked steps keep the state (and repeat it as their output),
            # as Keras' loop does.
            return tf.where(keep[:, None], new, h)

        states = tf.scan(step, (projected, mask),
                         initializer=tf.cast(initial_state, dtype))
        last = states[-1]  # [B, H]
        # [T, B, H] -> [B, T, H]
        outputs = (tf.transpose(states, [1, 0, 2]) if self.return_sequences
                   else last)
        return last, outputs, [last]
