"""Batch normalisation as every vidcore model uses it.

`BatchNorm` is ``keras.layers.BatchNormalization`` (same arguments, same
variables gamma, beta, moving_mean, moving_variance, so checkpoints and
torchvision weight loading are unchanged) with its own statistics, for two
reasons:

1. Numerically safe variance. Keras' synchronised path computes
   ``max(E[x^2] - E[x]^2, 0)`` in float32 over the global batch, and runs
   even on one device (the default strategy has a replica context). When
   the mean is large against the spread, the two terms cancel: 64 values of
   ``1000 + 0.05 N(0, 1)`` give a variance of 0 or 0.25 instead of 0.0025,
   and a variance clamped to 0 scales the centred input by 1/sqrt(epsilon).
   Here every replica takes two passes over its own rows (count ``n_r``,
   mean ``m_r``, ``M2_r = sum((x - m_r)^2)``) and the replicas are combined
   with Chan et al.'s parallel formula (Chan, Golub, LeVeque, "Updating
   formulae and a pairwise algorithm for computing sample variances", 1979):
   ``mean = sum(n_r m_r) / n`` and
   ``M2 = sum(M2_r) + sum(n_r (m_r - mean)^2)``. No term of either sum
   cancels, so the variance is correct to float32 precision relative to the
   variance itself, whatever the mean. One detail matters across replicas:
   a float32 ``m_r`` near 1000 is rounded by up to 3e-5, more than the
   spread of the replicas' means, so each replica also sends the mean of
   ``x - m_r`` (exact to float32 relative to the spread) and the means are
   compared as offsets from one replica's ``m_r``.

2. One all-reduce per layer. Chan's formula needs every replica's
   ``(n_r, m_r, M2_r)``, not only their sums: a sum of ``n_r (m_r - s)^2``
   around a shift ``s`` known to all replicas without communication, such
   as the moving mean, cancels again whenever ``s`` is far from the batch
   mean (at the first steps, or after a shift of the data). So each replica
   writes its row ``[n_r, m_r, correction_r, M2_r]`` into its own slot of a
   zero [replicas, 3C + 1] tensor and ONE all-reduce (sum) hands every
   replica all rows; adding zeros is exact. (Keras sends three all-reduces,
   count, sum and sum of squares, plus their gradients, and builds a
   full-size ``ones_like(x)`` only to count.) The payload grows with the
   number of replicas (8 replicas x 512 channels: 49 kB per layer), which is
   latency-bound and small next to the gradient all-reduce. Every replica
   then combines the same rows in the same order, so the statistics and the
   moving averages are bitwise identical on all replicas and workers.
   Gradients flow through the all-reduce (its gradient is an all-reduce) and
   equal those of one device with the whole global batch. With one replica
   in sync (one device, or no strategy) the layer takes the two local passes
   only and sends nothing.

``synchronized=False`` (Kinetics without ``--sync_bn``) normalises each
replica with its own rows, as before. Its moving statistics are updated with
the replica average of the local mean and variance, weighted by each
replica's rows (one all-reduce of 2C + 1 values, no gradient), so every
replica holds the same moving statistics: evaluation during training reads
one copy, the one the checkpoint keeps. (Keras lets each replica's copy
drift, and a checkpoint keeps replica 0's.)

Statistics are taken in float32 when inputs are float16/bfloat16 (mixed
precision), as Keras does.
"""

import keras
import tensorflow as tf
from keras import ops


def _local_moments(x, axes, mask, exact_mean=False):
    """Count, mean and sum of squared deviations of one replica's rows.

    Args:
        x: float tensor, channels on the one axis not in ``axes``.
        axes: the reduction axes (all but the channel axis).
        mask: None, or a boolean/0-1 tensor of x's shape without its last
            axis; rows where it is False are left out.
        exact_mean: also return ``correction``, the mean of ``x - mean``:
            the float32 ``mean`` is rounded to a unit in its last place
            (6e-5 at 1000), which is more than the spread between replicas'
            means of badly centred data; ``mean + correction`` is the local
            mean to float32 precision of the deviations.

    Returns:
        count (scalar), mean [C], m2 [C] (the sum of squared deviations
        from the local mean) and correction [C] (None unless exact_mean),
        all of x's dtype. An empty batch gives zeros.
    """
    if mask is None:
        shape = tf.shape(x, out_type=tf.int64)
        count = tf.cast(tf.reduce_prod(tf.gather(shape, axes)), x.dtype)
        weights = None
        total = tf.reduce_sum(x, axes, keepdims=True)  # [1, .., C, .., 1]
    else:
        weights = tf.cast(mask, x.dtype)[..., None]  # [B, ..., 1]
        count = tf.reduce_sum(weights)
        total = tf.reduce_sum(x * weights, axes, keepdims=True)
    safe_count = tf.maximum(count, 1.0)
    mean = total / safe_count  # [1, .., C, .., 1]
    # The mean's gradient through the deviations is -2 sum(x - mean) = 0,
    # so it is stopped (as tf.nn.moments does).
    centre = tf.stop_gradient(mean)
    mean = tf.reshape(mean, [-1])  # [C]
    if weights is None and not exact_mean:  # the one-replica fast path
        m2 = tf.reduce_sum(tf.math.squared_difference(x, centre), axes)
        return count, mean, m2, None
    dev = x - centre
    if weights is not None:
        dev = dev * weights
    m2 = tf.reduce_sum(tf.square(dev), axes)  # [C]
    if not exact_mean:
        return count, mean, m2, None
    correction = tf.stop_gradient(tf.reduce_sum(dev, axes) / safe_count)
    # Deviations from mean + correction: m2 - n c^2 (c is tiny, no
    # cancellation).
    return count, mean, m2 - count * tf.square(correction), correction


def _global_moments(count, mean, m2, correction, replica_ctx):
    """Global mean and variance from every replica's local moments.

    Args:
        count, mean [C], m2 [C], correction [C]: this replica's
            `_local_moments` (with exact_mean).
        replica_ctx: the current tf.distribute.ReplicaContext.

    Returns:
        mean [C], variance [C] of the global batch, identical on every
        replica.
    """
    replicas = replica_ctx.num_replicas_in_sync
    channels = tf.shape(mean)[0]
    row = tf.concat([count[None], mean, correction, m2], axis=0)  # [3C + 1]
    slots = tf.scatter_nd(
        [[replica_ctx.replica_id_in_sync_group]], row[None],
        tf.stack([replicas, 3 * channels + 1]))  # [R, 3C + 1]
    slots = replica_ctx.all_reduce(tf.distribute.ReduceOp.SUM, slots)
    counts = slots[:, :1]  # [R, 1]
    means = slots[:, 1:channels + 1]  # [R, C]
    corrections = slots[:, channels + 1:2 * channels + 1]  # [R, C]
    m2s = slots[:, 2 * channels + 1:]  # [R, C]
    # Replica means relative to the float32 mean of the largest replica:
    # the difference of two nearby float32 values is exact, so the offsets
    # keep the corrections' precision. Chan's formula is the same around
    # any shift, so the shift needs no gradient.
    shift = tf.stop_gradient(tf.gather(means, tf.argmax(counts[:, 0])))
    offsets = (means - shift) + corrections  # [R, C]
    total = tf.maximum(tf.reduce_sum(counts), 1.0)
    mean_offset = tf.reduce_sum(counts * offsets, axis=0) / total  # [C]
    spread = tf.reduce_sum(
        counts * tf.math.squared_difference(offsets, mean_offset), axis=0)
    return shift + mean_offset, (tf.reduce_sum(m2s, axis=0) + spread) / total


@keras.saving.register_keras_serializable(package="vidcore")
class BatchNorm(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization with safe statistics (module doc).

    Args:
        axis, momentum, epsilon, center, scale, *_initializer,
        *_regularizer, *_constraint: as in keras.layers.BatchNormalization.
        synchronized: normalise with the statistics of the global batch
            (across replicas); else with each replica's own rows, keeping
            one copy of the moving statistics either way.
        **kwargs: other keras.layers.BatchNormalization / Layer arguments;
            batch renormalisation (``renorm``) is not implemented.
    """

    def __init__(self, *args, **kwargs):
        if kwargs.get("renorm"):
            raise ValueError(
                "vidcore BatchNorm does not implement renorm=True; use "
                "keras.layers.BatchNormalization for batch renormalisation")
        super().__init__(*args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        if mask is not None and len(mask.shape) != len(inputs.shape) - 1:
            raise ValueError(
                f"{self.name}: the mask must have one dimension less than "
                f"the inputs, got mask {mask.shape} for inputs "
                f"{inputs.shape}")
        # float32 statistics under mixed precision (float64 stays float64).
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype,
                                                       "float32"))
        if training and self.trainable:
            mean, variance, update = self._batch_moments(x, mask)
            self._update_moving_statistics(*update)
        else:
            mean = ops.cast(self.moving_mean, x.dtype)
            variance = ops.cast(self.moving_variance, x.dtype)
        gamma = ops.cast(self.gamma, x.dtype) if self.scale else None
        beta = ops.cast(self.beta, x.dtype) if self.center else None
        outputs = ops.batch_normalization(
            x, mean, variance, axis=self.axis, offset=beta, scale=gamma,
            epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)

    def _batch_moments(self, x, mask):
        """Statistics for normalising this replica's rows in training.

        Returns:
            mean [C], variance [C], and the moving statistics' update
            (mean [C], variance [C]): the same tensors, or for local
            statistics on several replicas their count-weighted replica
            average (one all-reduce, no gradient), so that every replica
            updates its copy with the same values.
        """
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync == 1:
            ctx = None  # one replica: nothing to send
        if ctx is not None and self.synchronized:
            moments = _local_moments(x, self._reduction_axes, mask,
                                     exact_mean=True)
            mean, variance = _global_moments(*moments, ctx)
            return mean, variance, (mean, variance)
        count, mean, m2, _ = _local_moments(x, self._reduction_axes, mask)
        variance = m2 / tf.maximum(count, 1.0)
        if ctx is None:
            return mean, variance, (mean, variance)
        weighted = tf.stop_gradient(tf.concat(
            [count[None], count * mean, count * variance], 0))  # [2C + 1]
        weighted = ctx.all_reduce(tf.distribute.ReduceOp.SUM, weighted)
        total = tf.maximum(weighted[0], 1.0)
        # [2C] -> [2, C]: replica-average mean and variance.
        average = tf.reshape(weighted[1:] / total, [2, -1])
        return mean, variance, (average[0], average[1])

    def _update_moving_statistics(self, mean, variance):
        """moving = momentum * moving + (1 - momentum) * batch statistic."""
        for var, value in ((self.moving_mean, mean),
                           (self.moving_variance, variance)):
            value = tf.stop_gradient(value)
            old = ops.cast(var, value.dtype)
            var.assign(ops.cast(
                old * self.momentum + value * (1.0 - self.momentum),
                var.dtype))


def batch_norm(momentum=0.999, epsilon=1e-3, name=None, synchronized=True,
               **kwargs):
    """The batch norm of every vidcore model (`BatchNorm`).

    Args:
        momentum: moving-average momentum. Default TF-slim's decay 0.999.
        epsilon: added to the variance. Default TF-slim's 1e-3.
        name: layer name.
        synchronized: global-batch statistics across replicas (module doc);
            False: each replica's own rows, one copy of the moving
            statistics.
        **kwargs: more keras.layers.BatchNormalization arguments.
    """
    return BatchNorm(momentum=momentum, epsilon=epsilon,
                     synchronized=synchronized, name=name, **kwargs)
