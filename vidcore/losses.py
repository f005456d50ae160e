"""Losses shared by the families (per-example form, for tf.distribute).

Every loss returns one value per example; the training loop divides the sum
by the global batch size (``tf.nn.compute_average_loss``), which gives the
batch mean on one device and the same number under any strategy.
"""

import tensorflow as tf


def multilabel_cross_entropy(labels, probabilities, epsilon=1e-5):
    """Binary cross-entropy on probabilities, summed over classes.

    ``-sum_v [y_v log(p_v + eps) + (1 - y_v) log(1 - p_v + eps)]`` with
    ``eps = 1e-5``: the YouTube-8M starter / Kaggle-winner form (the loss
    takes probabilities, not logits, because MoE outputs are mixtures).

    Args:
        labels: [batch, classes] multi-hot (any numeric or bool dtype).
        probabilities: [batch, classes] in [0, 1].
        epsilon: added inside both logarithms.

    Returns:
        float32 [batch].
    """
    p = tf.cast(probabilities, tf.float32)
    y = tf.cast(labels, tf.float32)
    xent = y * tf.math.log(p + epsilon) + (1.0 - y) * tf.math.log(
        1.0 - p + epsilon)
    return -tf.reduce_sum(xent, axis=-1)
