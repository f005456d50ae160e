"""Batch normalisation as every vidcore model uses it.

Statistics are synchronised across replicas (``synchronized=True``): each
replica normalises with the statistics of the global batch, so training on
N devices computes what one device would with the whole batch, and the
moving averages stay identical on every replica and worker (with local
statistics, Keras 3 lets each copy drift and checkpoints keep only one).
On a single device this is the ordinary batch norm.
"""

import keras


def batch_norm(momentum=0.999, epsilon=1e-3, name=None, **kwargs):
    """keras BatchNormalization (center and scale) with synchronised
    statistics. Defaults are TF-slim's (decay 0.999, epsilon 1e-3)."""
    return keras.layers.BatchNormalization(
        momentum=momentum, epsilon=epsilon, synchronized=True, name=name,
        **kwargs)
