"""Frame-sequence preprocessing layers: dequantisation, masking, sampling.

These run inside the model (on the accelerator), so that tf.data only moves
uint8 frames: parsing and decoding to uint8 is about twice as fast on the
host as also dequantising to float32 there.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="vidcore")
class DequantizeFrames(keras.layers.Layer):
    """uint8 frames -> float frames, zero beyond each video's length.

    ``x = q * scale + bias`` (YouTube-8M: ``scale = 4/255``,
    ``bias = 4/512 - 2``, see input_pipeline.features). Frames at positions
    ``>= num_frames`` are padding and are set to exactly zero, as the original
    reader padded after dequantising.

    Args:
        scale: multiplier of the quantised value.
        bias: offset added after scaling.

    Call args:
        frames: uint8 (or any numeric) tensor [batch, max_frames, dim].
        num_frames: int tensor [batch] of true lengths.
    """

    def __init__(self, scale, bias, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.bias = float(bias)

    def call(self, frames, num_frames):
        x = tf.cast(frames, self.compute_dtype) * self.scale + self.bias
        mask = tf.sequence_mask(num_frames, tf.shape(frames)[1],
                                dtype=self.compute_dtype)  # [B, T]
        return x * mask[:, :, None]

    def compute_output_shape(self, frames_shape, num_frames_shape=None):
        return frames_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale,
                "bias": self.bias}


@keras.saving.register_keras_serializable(package="vidcore")
class L2Normalize(keras.layers.Layer):
    """``x / max(||x||_2, sqrt(epsilon))`` along ``axis`` (tf.nn.l2_normalize).

    Args:
        axis: axis to normalise over.
        epsilon: lower bound on the squared norm (zero vectors stay zero).
    """

    def __init__(self, axis=-1, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self.epsilon = float(epsilon)

    def call(self, x):
        # Squared norm in float32 so float16 inputs do not overflow.
        x32 = tf.cast(x, tf.float32)
        return tf.cast(tf.nn.l2_normalize(x32, axis=self.axis,
                                          epsilon=self.epsilon), x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis,
                "epsilon": self.epsilon}


def evenly_spaced_indices(num_frames, num_samples):
    """Deterministic frame indices: the centres of ``num_samples`` equal bins.

    ``index_i = floor((i + 0.5) * num_frames / num_samples)`` for
    ``i < num_samples``; videos shorter than ``num_samples`` repeat frames.

    Args:
        num_frames: int tensor [batch] (>= 1 for real videos; 0 gives index 0).
        num_samples: python int.

    Returns:
        int32 tensor [batch, num_samples].
    """
    n = tf.cast(tf.maximum(num_frames, 1), tf.float32)[:, None]  # [B, 1]
    centres = (tf.range(num_samples, dtype=tf.float32) + 0.5) / num_samples
    return tf.cast(tf.floor(centres[None, :] * n), tf.int32)


def random_frame_indices(num_frames, num_samples):
    """``num_samples`` frame indices drawn uniformly with replacement.

    Matches the original ``SampleRandomFrames``: ``floor(u * num_frames)``.

    Returns:
        int32 tensor [batch, num_samples].
    """
    n = tf.cast(tf.maximum(num_frames, 1), tf.float32)[:, None]  # [B, 1]
    u = tf.random.uniform([tf.shape(num_frames)[0], num_samples])
    return tf.minimum(tf.cast(u * n, tf.int32),
                      tf.cast(n, tf.int32) - 1)


def random_sequence_indices(num_frames, num_samples):
    """A random run of ``num_samples`` consecutive frames (``SampleRandomSequence``).

    The start is uniform over ``[0, max(num_frames - num_samples, 0)]``; indices
    past the end are clamped to the last frame.

    Returns:
        int32 tensor [batch, num_samples].
    """
    num_frames = tf.cast(num_frames, tf.int32)[:, None]  # [B, 1]
    max_start = tf.maximum(num_frames - num_samples, 0)
    u = tf.random.uniform(tf.shape(num_frames))
    start = tf.cast(u * tf.cast(max_start + 1, tf.float32), tf.int32)
    index = start + tf.range(num_samples)[None, :]
    return tf.minimum(index, tf.maximum(num_frames - 1, 0))


@keras.saving.register_keras_serializable(package="vidcore")
class FrameSampler(keras.layers.Layer):
    """Picks ``num_samples`` frames of each video.

    Training draws them at random (``mode='random_frames'``: uniformly with
    replacement; ``mode='random_sequence'``: one random run of consecutive
    frames), as the original models did. Inference is deterministic: the
    centres of ``num_samples`` equal bins over the valid frames (the original
    sampled at random at evaluation too, which made two evaluations of the
    same checkpoint disagree).

    Args:
        num_samples: frames per video after sampling.
        mode: 'random_frames' or 'random_sequence' (training behaviour).

    Call args:
        frames: [batch, max_frames, dim].
        num_frames: int [batch].
        training: python bool or None.

    Returns:
        [batch, num_samples, dim].
    """

    MODES = ("random_frames", "random_sequence")

    def __init__(self, num_samples, mode="random_frames", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(
                f"FrameSampler mode must be one of {self.MODES}, got {mode!r}")
        self.num_samples = int(num_samples)
        self.mode = mode

    def call(self, frames, num_frames, training=None):
        if training:
            if self.mode == "random_frames":
                index = random_frame_indices(num_frames, self.num_samples)
            else:
                index = random_sequence_indices(num_frames, self.num_samples)
        else:
            index = evenly_spaced_indices(num_frames, self.num_samples)
        return tf.gather(frames, index, batch_dims=1)

    def compute_output_shape(self, frames_shape, num_frames_shape=None):
        return (frames_shape[0], self.num_samples, frames_shape[2])

    def get_config(self):
        return {**super().get_config(), "num_samples": self.num_samples,
                "mode": self.mode}


@keras.saving.register_keras_serializable(package="vidcore")
class SplitFeatures(keras.layers.Layer):
    """Splits the last axis into consecutive parts (e.g. rgb 1024 | audio 128).

    Args:
        sizes: list of part sizes; they must add up to the last dimension.
    """

    def __init__(self, sizes, **kwargs):
        super().__init__(**kwargs)
        self.sizes = [int(s) for s in sizes]

    def build(self, input_shape):
        if input_shape[-1] is not None and sum(self.sizes) != input_shape[-1]:
            raise ValueError(
                f"feature sizes {self.sizes} add up to {sum(self.sizes)}, but "
                f"the input has {input_shape[-1]} features per frame")

    def call(self, x):
        return tf.split(x, self.sizes, axis=-1)

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape[:-1]) + (s,) for s in self.sizes]

    def get_config(self):
        return {**super().get_config(), "sizes": self.sizes}


@keras.saving.register_keras_serializable(package="vidcore")
class LengthMask(keras.layers.Layer):
    """Boolean mask [batch, steps] of the first ``min(length, steps)`` steps.

    Call args:
        sequence: [batch, steps, ...] (only its static/dynamic step count is used).
        lengths: int [batch].
    """

    def call(self, sequence, lengths):
        steps = tf.shape(sequence)[1]
        return tf.sequence_mask(tf.minimum(tf.cast(lengths, tf.int32), steps),
                                steps)

    def compute_output_spec(self, sequence, lengths):
        return keras.KerasTensor(tuple(sequence.shape[:2]), dtype="bool")


@keras.saving.register_keras_serializable(package="vidcore")
class MaskedMean(keras.layers.Layer):
    """Sum over frames divided by the true length (zero-padded frames).

    Call args:
        frames: [batch, steps, dim] with zeros beyond each length.
        lengths: int [batch].
    """

    def call(self, frames, lengths):
        denom = tf.cast(tf.maximum(lengths, 1), frames.dtype)[:, None]  # [B, 1]
        return tf.reduce_sum(frames, axis=1) / denom

    def compute_output_shape(self, frames_shape, lengths_shape=None):
        return (frames_shape[0], frames_shape[2])
