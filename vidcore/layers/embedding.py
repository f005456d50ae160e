"""Joint text-video embedding layers (Miech et al., HowTo100M, ICCV 2019;
Learning a Text-Video Embedding from Incomplete and Heterogeneous Data,
arXiv:1804.02516, Eq. 1-2).

Both layers use PyTorch nn.Linear's default initialisation (U(-b, b),
b = 1/sqrt(fan_in), for kernel and bias), the initialisation of the released
HowTo100M code, so training from scratch starts from the same distribution.
"""

import math

import keras
import tensorflow as tf

from vidcore.layers.frames import L2Normalize
from vidcore.layers.gating import ContextGating


def torch_linear_initializer(fan_in):
    """PyTorch nn.Linear's default initialiser for kernel and bias.

    Args:
        fan_in: input size of the linear layer.

    Returns:
        keras.initializers.RandomUniform(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


def torch_dense(units, fan_in, name):
    """keras Dense initialised like PyTorch's nn.Linear(fan_in, units)."""
    return keras.layers.Dense(
        units, name=name, kernel_initializer=torch_linear_initializer(fan_in),
        bias_initializer=torch_linear_initializer(fan_in))


@keras.saving.register_keras_serializable(package="vidcore")
class GatedEmbeddingUnit(keras.layers.Layer):
    """Gated embedding unit: ``y = W x + b``; ``y = y * sigmoid(W_g y + b_g)``;
    ``y / ||y||_2``.

    Args:
        output_dim: embedding size D.
        gating: apply the context gate (the published models always do).
        l2_normalize: end with the L2 normalisation (HowTo100M does; AVLnet's
            unit stops after the gate).
    """

    def __init__(self, output_dim, gating=True, l2_normalize=True, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = int(output_dim)
        self.gating = bool(gating)
        self.l2_normalize = bool(l2_normalize)
        self.gate = (ContextGating(add_batch_norm=False, initializer="torch",
                                   name="context_gating")
                     if self.gating else None)
        self.normalize = (L2Normalize(axis=-1, name="l2_normalize")
                          if self.l2_normalize else None)

    def build(self, input_shape):
        self.fc = torch_dense(self.output_dim, int(input_shape[-1]), "fc")
        self.fc.build(input_shape)
        out_shape = tuple(input_shape[:-1]) + (self.output_dim,)
        if self.gate is not None:
            self.gate.build(out_shape)

    def call(self, x):
        y = self.fc(x)
        if self.gate is not None:
            y = self.gate(y)
        return y if self.normalize is None else self.normalize(y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim,)

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim,
                "gating": self.gating, "l2_normalize": self.l2_normalize}


@keras.saving.register_keras_serializable(package="vidcore")
class SentenceMaxPool(keras.layers.Layer):
    """Sentence encoder: ``max_w relu(W e_w + b)`` over the word axis.

    As in the released HowTo100M code, zero-padded word slots are not masked:
    a padding slot contributes ``relu(b)`` to the max. Pass ``mask_padding``
    to exclude them instead (not the published behaviour).

    Args:
        output_dim: sentence feature size.
        relu: apply ReLU before the max (the published model does).
        mask_padding: ignore all-zero word vectors in the max.
    """

    def __init__(self, output_dim, relu=True, mask_padding=False, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = int(output_dim)
        self.relu = bool(relu)
        self.mask_padding = bool(mask_padding)

    def build(self, input_shape):
        self.fc = torch_dense(self.output_dim, int(input_shape[-1]), "fc")
        self.fc.build(input_shape)

    def call(self, words):
        # words: [batch, max_words, word_dim] -> h: [batch, max_words, D]
        h = self.fc(words)
        if self.relu:
            h = tf.nn.relu(h)
        if self.mask_padding:
            present = tf.reduce_any(tf.not_equal(words, 0), axis=-1)
            h = tf.where(present[..., None], h, tf.cast(-1e4, h.dtype))
        return tf.reduce_max(h, axis=-2)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-2]) + (self.output_dim,)

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim,
                "relu": self.relu, "mask_padding": self.mask_padding}
