"""Folding a second axis into the batch and back, inside functional models.

A sub-model that encodes one item per row (e.g. a sentence encoder taking
[N, L] word ids) is applied to K items per example by merging [B, K] into
the batch, calling it, and splitting the batch again. Keras' own
``Reshape`` keeps the batch axis, and ``TimeDistributed`` would hide the
wrapped sub-model from ``model.get_layer``; these two layers do only the
reshapes and work with B and K unknown when the model is built.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="vidcore")
class MergeLeadingAxes(keras.layers.Layer):
    """[B, K, ...] -> [B * K, ...] (row ``b * K + k`` is item ``[b, k]``).

    No arguments besides the base layer's.
    """

    def call(self, x):
        shape = ops.shape(x)
        rest = tuple(x.shape[2:])
        if any(d is None for d in rest):
            rest = tuple(shape[2:])
        # [B, K, ...] -> [B * K, ...]
        return ops.reshape(x, (-1,) + rest)

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"{self.name}: expected [B, K, ...], got shape "
                             f"{tuple(input_shape)}")
        b, k = input_shape[:2]
        merged = None if b is None or k is None else b * k
        return (merged,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="vidcore")
class SplitLeadingAxis(keras.layers.Layer):
    """[B * K, ...] -> [B, K, ...], K taken from a reference [B, K, ...].

    Call args:
        x: the merged tensor [B * K, ...].
        reference: any tensor [B, K, ...] (e.g. the input that
            `MergeLeadingAxes` merged); only its shape is used.
    """

    def call(self, x, reference):
        k = reference.shape[1]
        if k is None:
            k = ops.shape(reference)[1]
        rest = tuple(x.shape[1:])
        if any(d is None for d in rest):
            rest = tuple(ops.shape(x)[1:])
        # [B * K, ...] -> [B, K, ...]
        return ops.reshape(x, (-1, k) + rest)

    def compute_output_shape(self, x_shape, reference_shape):
        return ((reference_shape[0], reference_shape[1])
                + tuple(x_shape[1:]))
