"""Learnable temporal pooling of frame features: NetVLAD, NetRVLAD, NetFV, DBoF.

All take frames [batch, frames, dim] (already batch-normalised by the model)
and return one vector per video. The shared first step is a soft assignment
of every frame to K clusters, ``a = softmax(BN(x W))`` with W [D, K] drawn
from N(0, 1/sqrt(D)).

References:
    Miech, Laptev, Sivic. "Learnable pooling with Context Gating for video
    classification", arXiv:1706.06905 (2017), Sec. 3 (NetVLAD, NetRVLAD,
    NetFV, soft-DBoF) and the Kaggle-winning code it describes.
    Abu-El-Haija et al. "YouTube-8M", arXiv:1609.08675 (2016), Sec. 4.2 (DBoF).
"""

import math

import keras
import tensorflow as tf

from vidcore.layers.normalization import batch_norm


def _normal(stddev, mean=0.0):
    return keras.initializers.RandomNormal(mean=mean, stddev=stddev)


def _l2_normalize(x, axis):
    return tf.math.l2_normalize(x, axis=axis)


class _ClusteredPooling(keras.layers.Layer):
    """Base class: holds the cluster projection and its batch norm (or bias).

    Args:
        cluster_size: number of clusters K.
        add_batch_norm: batch-normalise the assignment logits (else add a
            bias, as the original did without batch norm).
        bn_momentum: moving-average momentum of the batch norms (slim's
            default decay 0.999).
        bn_epsilon: batch-norm epsilon (slim's default 1e-3).
    """

    def __init__(self, cluster_size, add_batch_norm=True, bn_momentum=0.999,
                 bn_epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.cluster_size = int(cluster_size)
        self.add_batch_norm = bool(add_batch_norm)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.cluster_bn = (self._batch_norm("cluster_bn")
                           if self.add_batch_norm else None)

    def _batch_norm(self, name):
        return batch_norm(self.bn_momentum, self.bn_epsilon, name=name)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.feature_size = dim
        self.cluster_weights = self.add_weight(
            name="cluster_weights", shape=(dim, self.cluster_size),
            initializer=_normal(1.0 / math.sqrt(dim)))
        if self.add_batch_norm:
            self.cluster_bn.build(tuple(input_shape[:-1]) +
                                  (self.cluster_size,))
        else:
            self.cluster_biases = self.add_weight(
                name="cluster_biases", shape=(self.cluster_size,),
                initializer=_normal(1.0 / math.sqrt(dim)))

    def assign(self, frames, training):
        """Cluster logits BN(x W) (or x W + b), before the non-linearity."""
        logits = tf.matmul(frames, self.cluster_weights)  # [B, N, K]
        if self.add_batch_norm:
            return self.cluster_bn(logits, training=training)
        return logits + self.cluster_biases

    def soft_assign(self, frames, training):
        """a = softmax over clusters, [B, N, K]."""
        return tf.nn.softmax(self.assign(frames, training), axis=-1)

    def get_config(self):
        return {**super().get_config(), "cluster_size": self.cluster_size,
                "add_batch_norm": self.add_batch_norm,
                "bn_momentum": self.bn_momentum,
                "bn_epsilon": self.bn_epsilon}


@keras.saving.register_keras_serializable(package="vidcore")
class NetVLAD(_ClusteredPooling):
    """NetVLAD / NetRVLAD pooling (output D*K).

    ``V[d,k] = sum_t a[t,k] x[t,d] - (sum_t a[t,k]) c[d,k]``, L2-normalised
    over d for each cluster (intra-normalisation), flattened d-major to D*K,
    then L2-normalised. ``light=True`` is NetRVLAD ("lightvlad"): no centroid
    term and no centroid parameters.

    Args:
        cluster_size: K.
        light: NetRVLAD instead of NetVLAD.
        (see _ClusteredPooling for the batch-norm arguments)
    """

    def __init__(self, cluster_size, light=False, **kwargs):
        super().__init__(cluster_size, **kwargs)
        self.light = bool(light)

    def build(self, input_shape):
        super().build(input_shape)
        if not self.light:
            self.centroids = self.add_weight(
                name="cluster_weights2",
                shape=(1, self.feature_size, self.cluster_size),
                initializer=_normal(1.0 / math.sqrt(self.feature_size)))

    def call(self, frames, training=None):
        a = self.soft_assign(frames, training)  # [B, N, K]
        vlad = tf.matmul(frames, a, transpose_a=True)  # [B, D, K]
        if not self.light:
            a_sum = tf.reduce_sum(a, axis=1, keepdims=True)  # [B, 1, K]
            vlad = vlad - a_sum * self.centroids
        vlad = _l2_normalize(vlad, axis=1)
        vlad = tf.reshape(vlad, [-1, self.feature_size * self.cluster_size])  # [B, D*K]
        return _l2_normalize(vlad, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], int(input_shape[-1]) * self.cluster_size)

    def get_config(self):
        return {**super().get_config(), "light": self.light}


@keras.saving.register_keras_serializable(package="vidcore")
class NetFV(_ClusteredPooling):
    """NetFV: Fisher-vector-like pooling of first and second order (output 2*D*K).

    With ``s = w^2 + 1e-6`` (w: covariance weights, initialised N(1, 1/sqrt(D))):

    * first order ``(sum_t a x - a_sum c) / s``, L2-normalised over d per
      cluster, flattened, L2-normalised;
    * second order ``(sum_t a x^2 - 2 c sum_t a x + a_sum c^2) / s^2 - a_sum``,
      flattened and L2-normalised (twice, as the original did; the second
      normalisation is a no-op up to rounding).

    Args:
        cluster_size: K.
        couple_weights: tie the centroids to the assignment weights,
            ``c = coupling_factor * W`` (no centroid parameters).
        coupling_factor: the tie factor (original default 0.01).
    """

    def __init__(self, cluster_size, couple_weights=True, coupling_factor=0.01,
                 **kwargs):
        super().__init__(cluster_size, **kwargs)
        self.couple_weights = bool(couple_weights)
        self.coupling_factor = float(coupling_factor)

    def build(self, input_shape):
        super().build(input_shape)
        std = 1.0 / math.sqrt(self.feature_size)
        self.covar_weights = self.add_weight(
            name="covar_weights", shape=(self.feature_size, self.cluster_size),
            initializer=_normal(std, mean=1.0))
        if not self.couple_weights:
            self.centroids = self.add_weight(
                name="cluster_weights2",
                shape=(1, self.feature_size, self.cluster_size),
                initializer=_normal(std))

    def call(self, frames, training=None):
        a = self.soft_assign(frames, training)  # [B, N, K]
        a_sum = tf.reduce_sum(a, axis=1, keepdims=True)  # [B, 1, K]
        if self.couple_weights:
            c = self.coupling_factor * self.cluster_weights[None]  # [1, D, K]
        else:
            c = self.centroids
        s = tf.square(self.covar_weights) + 1e-6  # [D, K]
        ax = tf.matmul(frames, a, transpose_a=True)  # [B, D, K]
        ax2 = tf.matmul(tf.square(frames), a, transpose_a=True)  # [B, D, K]
        dk = self.feature_size * self.cluster_size

        fv2 = (ax2 + a_sum * tf.square(c) - 2.0 * ax * c) / tf.square(s)
        fv2 = fv2 - a_sum
        fv2 = tf.reshape(fv2, [-1, dk])  # [B, D*K]
        fv2 = _l2_normalize(_l2_normalize(fv2, axis=1), axis=1)

        fv1 = (ax - a_sum * c) / s
        fv1 = _l2_normalize(fv1, axis=1)
        fv1 = tf.reshape(fv1, [-1, dk])  # [B, D*K]
        fv1 = _l2_normalize(fv1, axis=1)
        return tf.concat([fv1, fv2], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * int(input_shape[-1]) * self.cluster_size)

    def get_config(self):
        return {**super().get_config(),
                "couple_weights": self.couple_weights,
                "coupling_factor": self.coupling_factor}


@keras.saving.register_keras_serializable(package="vidcore")
class SoftDBoF(_ClusteredPooling):
    """Soft deep bag of frames: ``L2(sum_t a_t)`` (K), optionally with
    ``L2(max_t a_t)`` concatenated (2K).

    Args:
        cluster_size: K.
        max_pool: also concatenate the L2-normalised max-pool of assignments.
    """

    def __init__(self, cluster_size, max_pool=False, **kwargs):
        super().__init__(cluster_size, **kwargs)
        self.max_pool = bool(max_pool)

    def call(self, frames, training=None):
        a = self.soft_assign(frames, training)  # [B, N, K]
        pooled = _l2_normalize(tf.reduce_sum(a, axis=1), axis=1)
        if self.max_pool:
            a_max = _l2_normalize(tf.reduce_max(a, axis=1), axis=1)
            pooled = tf.concat([pooled, a_max], axis=1)
        return pooled

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.cluster_size * (2 if self.max_pool else 1))

    def get_config(self):
        return {**super().get_config(), "max_pool": self.max_pool}


@keras.saving.register_keras_serializable(package="vidcore")
class GatedDBoF(_ClusteredPooling):
    """Gated soft-DBoF: ``L2( sigmoid(BN(L2(max_t a) W_down W_up)) * sum_t a )``.

    W_down [K, D] and W_up [D, K] (the bottleneck is the input dimension D),
    both N(0, 1/sqrt(D)). Output K.
    """

    def __init__(self, cluster_size, **kwargs):
        super().__init__(cluster_size, **kwargs)
        self.gate_bn = (self._batch_norm("cluster_bn_2")
                        if self.add_batch_norm else None)

    def build(self, input_shape):
        super().build(input_shape)
        std = 1.0 / math.sqrt(self.feature_size)
        self.dim_red = self.add_weight(
            name="dim_red", shape=(self.cluster_size, self.feature_size),
            initializer=_normal(std))
        self.cluster_weights_2 = self.add_weight(
            name="cluster_weights_2",
            shape=(self.feature_size, self.cluster_size),
            initializer=_normal(std))
        if self.add_batch_norm:
            self.gate_bn.build((input_shape[0], self.cluster_size))
        else:
            self.cluster_biases_2 = self.add_weight(
                name="cluster_biases_2", shape=(self.cluster_size,),
                initializer=_normal(std))

    def call(self, frames, training=None):
        a = self.soft_assign(frames, training)  # [B, N, K]
        a_sum = tf.reduce_sum(a, axis=1)  # [B, K]
        a_max = _l2_normalize(tf.reduce_max(a, axis=1), axis=1)  # [B, K]
        gates = tf.matmul(tf.matmul(a_max, self.dim_red),
                          self.cluster_weights_2)  # [B, K]
        if self.add_batch_norm:
            gates = self.gate_bn(gates, training=training)
        else:
            gates = gates + self.cluster_biases_2
        return _l2_normalize(tf.sigmoid(gates) * a_sum, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.cluster_size)


@keras.saving.register_keras_serializable(package="vidcore")
class DBoF(_ClusteredPooling):
    """Deep bag of frames of the YouTube-8M starter code.

    ``act(BN(x W))`` per frame (``act`` = sigmoid or relu6), then a max or
    average pool over frames. Output K.

    Args:
        cluster_size: K.
        activation: 'sigmoid' or 'relu6'.
        pooling: 'max' or 'average'.
    """

    ACTIVATIONS = {"sigmoid": tf.sigmoid, "relu6": tf.nn.relu6}
    POOLINGS = ("max", "average")

    def __init__(self, cluster_size, activation="sigmoid", pooling="max",
                 **kwargs):
        super().__init__(cluster_size, **kwargs)
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"DBoF activation must be one of "
                             f"{sorted(self.ACTIVATIONS)}, got {activation!r}")
        if pooling not in self.POOLINGS:
            raise ValueError(f"DBoF pooling must be one of {self.POOLINGS}, "
                             f"got {pooling!r}")
        self.activation = activation
        self.pooling = pooling

    def call(self, frames, training=None):
        act = self.ACTIVATIONS[self.activation](self.assign(frames, training))
        if self.pooling == "max":
            return tf.reduce_max(act, axis=1)
        return tf.reduce_mean(act, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.cluster_size)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation,
                "pooling": self.pooling}
