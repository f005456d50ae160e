"""Context gating (Miech et al., arXiv:1706.06905, Eq. 2)."""

import math

import keras
import tensorflow as tf

from vidcore.layers.normalization import batch_norm


@keras.saving.register_keras_serializable(package="vidcore")
class ContextGating(keras.layers.Layer):
    """``y = x * sigmoid(BN(x W))`` with W [H, H] ~ N(0, 1/sqrt(H)), no bias.

    Without batch norm a bias is added instead (the original's fallback).

    Args:
        add_batch_norm: batch-normalise the gate logits.
        bn_momentum: batch-norm moving-average momentum (slim default 0.999).
        bn_epsilon: batch-norm epsilon (slim default 1e-3).
        initializer: "tf1" (the TF1 code: N(0, 1/sqrt(H)) for weights and
            biases) or "torch" (PyTorch nn.Linear's default, U(-b, b) with
            b = 1/sqrt(H), as in the HowTo100M gated embedding unit).
    """

    INITIALIZERS = ("tf1", "torch")

    def __init__(self, add_batch_norm=True, bn_momentum=0.999, bn_epsilon=1e-3,
                 initializer="tf1", **kwargs):
        super().__init__(**kwargs)
        if initializer not in self.INITIALIZERS:
            raise ValueError(f"initializer must be one of {self.INITIALIZERS}, "
                             f"got {initializer!r}")
        self.initializer = initializer
        self.add_batch_norm = bool(add_batch_norm)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.gating_bn = (batch_norm(self.bn_momentum, self.bn_epsilon,
                                     name="gating_bn")
                          if self.add_batch_norm else None)

    def _init(self, dim):
        if self.initializer == "torch":
            bound = 1.0 / math.sqrt(dim)
            return keras.initializers.RandomUniform(-bound, bound)
        return keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(dim))

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.gating_weights = self.add_weight(
            name="gating_weights", shape=(dim, dim),
            initializer=self._init(dim))
        if self.add_batch_norm:
            self.gating_bn.build(input_shape)
        else:
            self.gating_biases = self.add_weight(
                name="gating_biases", shape=(dim,),
                initializer=self._init(dim))

    def call(self, x, training=None):
        gates = tf.matmul(x, self.gating_weights)
        if self.add_batch_norm:
            gates = self.gating_bn(gates, training=training)
        else:
            gates = gates + self.gating_biases
        return x * tf.sigmoid(gates)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "add_batch_norm": self.add_batch_norm,
                "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon,
                "initializer": self.initializer}
