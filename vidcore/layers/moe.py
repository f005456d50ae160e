"""Mixture-of-Experts multi-label classifier (YouTube-8M, arXiv:1609.08675 Sec. 4.3).

For each class v, a softmax gate over M experts plus one dummy expert that
always predicts 0, and M logistic experts:

    p_v = sum_{m<M} softmax(x G)_{v,m} * sigmoid(x E + b)_{v,m}

G [H, V*(M+1)] has no bias, E [H, V*M] has one. Both kernels carry the
penalty ``l2 * sum(w^2) / 2`` (slim's l2_regularizer). Columns are laid out
class-major (class v owns columns v*(M+1) ... v*(M+1)+M), as in the original
checkpoints.

With ``prob_gating`` the probabilities are gated by themselves
(Miech et al., arXiv:1706.06905, Sec. 4, "gated MoE"):
``p = p * sigmoid(BN(p W_p))``, W_p [V, V] ~ N(0, 1/sqrt(V)), no bias.
"""

import math

import keras
import tensorflow as tf

from vidcore.layers.normalization import batch_norm


@keras.saving.register_keras_serializable(package="vidcore")
class MixtureOfExperts(keras.layers.Layer):
    """MoE classifier returning probabilities (float32 under mixed precision).

    Args:
        num_classes: V.
        num_mixtures: M, experts per class (excluding the dummy expert).
        l2_penalty: weight of ``sum(w^2) / 2`` on the gate and expert kernels.
        prob_gating: apply probability context gating.
        bn_momentum, bn_epsilon: batch norm of the probability gate.
    """

    def __init__(self, num_classes, num_mixtures=2, l2_penalty=1e-8,
                 prob_gating=False, bn_momentum=0.999, bn_epsilon=1e-3,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.num_mixtures = int(num_mixtures)
        self.l2_penalty = float(l2_penalty)
        self.prob_gating = bool(prob_gating)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        reg = keras.regularizers.L2(self.l2_penalty / 2.0)
        v, m = self.num_classes, self.num_mixtures
        self.gates = keras.layers.Dense(
            v * (m + 1), use_bias=False, kernel_regularizer=reg, name="gates")
        self.experts = keras.layers.Dense(
            v * m, kernel_regularizer=reg, name="experts")
        if self.prob_gating:
            # Statistics in float32: probabilities are small numbers.
            self.gating_prob_bn = batch_norm(
                self.bn_momentum, self.bn_epsilon, dtype="float32",
                name="gating_prob_bn")

    def build(self, input_shape):
        self.gates.build(input_shape)
        self.experts.build(input_shape)
        if self.prob_gating:
            v = self.num_classes
            self.gating_prob_weights = self.add_weight(
                name="gating_prob_weights", shape=(v, v),
                initializer=keras.initializers.RandomNormal(
                    stddev=1.0 / math.sqrt(v)))
            self.gating_prob_bn.build((input_shape[0], v))

    def call(self, x, training=None):
        v, m = self.num_classes, self.num_mixtures
        gate_logits = tf.cast(self.gates(x), tf.float32)
        gate_logits = tf.reshape(gate_logits, [-1, v, m + 1])  # [B, V, M+1]
        expert_logits = tf.cast(self.experts(x), tf.float32)
        expert_logits = tf.reshape(expert_logits, [-1, v, m])  # [B, V, M]
        gating = tf.nn.softmax(gate_logits, axis=-1)
        probabilities = tf.reduce_sum(
            gating[:, :, :m] * tf.sigmoid(expert_logits), axis=-1)  # [B, V]
        if self.prob_gating:
            weights = tf.cast(self.gating_prob_weights, tf.float32)
            gates = self.gating_prob_bn(tf.matmul(probabilities, weights),
                                        training=training)
            probabilities = probabilities * tf.sigmoid(gates)
        return probabilities

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def compute_output_spec(self, x, training=None):
        return keras.KerasTensor((x.shape[0], self.num_classes),
                                 dtype="float32")

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "num_mixtures": self.num_mixtures,
                "l2_penalty": self.l2_penalty, "prob_gating": self.prob_gating,
                "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon}


@keras.saving.register_keras_serializable(package="vidcore")
class LogisticClassifier(keras.layers.Layer):
    """Independent sigmoid per class: ``sigmoid(x W + b)`` (the starter's
    LogisticModel), with penalty ``l2 * sum(W^2) / 2``; float32 output.

    Args:
        num_classes: V.
        l2_penalty: weight of the kernel penalty.
    """

    def __init__(self, num_classes, l2_penalty=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.l2_penalty = float(l2_penalty)
        self.dense = keras.layers.Dense(
            self.num_classes,
            kernel_regularizer=keras.regularizers.L2(self.l2_penalty / 2.0),
            name="logistic")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x):
        return tf.sigmoid(tf.cast(self.dense(x), tf.float32))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def compute_output_spec(self, x):
        return keras.KerasTensor((x.shape[0], self.num_classes),
                                 dtype="float32")

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "l2_penalty": self.l2_penalty}
