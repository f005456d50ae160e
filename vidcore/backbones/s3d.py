"""S3D and S3D-G video backbones (channels-last Keras).

Two separable-3D Inception networks ("Rethinking Spatiotemporal Feature
Learning", Xie et al. 2018):

- `s3d`: torchvision's S3D Kinetics-400 classifier. Every 3-D convolution
  of the Inception trunk is a 1xkxk spatial convolution followed by a kx1x1
  temporal one (each with batch norm, epsilon 1e-3, PyTorch momentum 1e-3,
  i.e. Keras momentum 0.999, and ReLU); the head is a (2, 7, 7) stride-1
  average pool, dropout, a 1x1x1 convolution with bias and the mean over
  time, height and width.
- `s3dg`: the S3D-G video trunk of MIL-NCE (Miech et al. 2020, the
  HowTo100M end-to-end model): bias-free convolutions with batch norm
  (epsilon 1e-5, PyTorch momentum 0.1, i.e. Keras momentum 0.9) and ReLU,
  self-gating ``x * sigmoid(Dense(mean_THW(x)))`` after ``conv_2c`` and on
  every Inception branch, TF-"SAME"-like max pools as the PyTorch release
  implements them (zeros before/after, then ceil-mode pooling), the mean
  over time, height and width (``mixed_5c``, 1024-d) and a ``fc`` Dense
  projection (``video_embedding``). An optional space-to-depth stem
  matches the released TPU-trained weights.

PyTorch padding is reproduced exactly: convolutions get explicit symmetric
zero padding and 'valid' convolutions (`vidcore.backbones.padding`), max
pools pad with -inf and support PyTorch's ``ceil_mode`` (`TorchMaxPool3D`).

Each Keras layer carries the name of the PyTorch module it mirrors with
dots replaced by underscores (torchvision ``features.5.branch1.1.0.0`` ->
``features_5_branch1_1_0_0``; MIL-NCE ``mixed_3b.conv_b1_b.conv2`` ->
``mixed_3b_conv_b1_b_conv2``); `load_torchvision_weights` relies on that.
"""

import functools
import math
import re

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from vidcore.backbones import torch_weights
from vidcore.backbones.padding import check_input_shape, conv3d
from vidcore.layers.normalization import batch_norm

# torchvision S3D: BatchNorm3d(eps=0.001, momentum=0.001).
S3D_BN_MOMENTUM = 0.999
S3D_BN_EPSILON = 1e-3
# MIL-NCE S3D-G: BatchNorm3d defaults (eps=1e-5, momentum=0.1).
S3DG_BN_MOMENTUM = 0.9
S3DG_BN_EPSILON = 1e-5
FEATURE_DIM = 1024

# Inception blocks: (name, b0, b1 reduce, b1 out, b2 reduce, b2 out, b3).
# The torchvision index of each block in ``features`` is listed in
# `_S3D_FEATURES`; the MIL-NCE names are the first field.
_INCEPTION = (
    ("mixed_3b", 64, 96, 128, 16, 32, 32),
    ("mixed_3c", 128, 128, 192, 32, 96, 64),
    ("mixed_4b", 192, 96, 208, 16, 48, 64),
    ("mixed_4c", 160, 112, 224, 24, 64, 64),
    ("mixed_4d", 128, 128, 256, 24, 64, 64),
    ("mixed_4e", 112, 144, 288, 32, 64, 64),
    ("mixed_4f", 256, 160, 320, 32, 128, 128),
    ("mixed_5b", 256, 160, 320, 32, 128, 128),
    ("mixed_5c", 384, 192, 384, 48, 128, 128),
)


def _triple(value, what):
    """Returns ``value`` as a tuple of three ints (t, h, w)."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * 3
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(
            f"{what} must be an int or a (t, h, w) triple, got {value!r}")
    return value


def _torch_pool_length(size, kernel, stride, padding, ceil_mode):
    """Output length of a PyTorch max pool along one axis (python ints;
    below 1 where PyTorch refuses the input as too small)."""
    # floor((size + 2p - k + (s - 1 if ceil)) / s) + 1, rounding down.
    out = (size + 2 * padding - kernel
           + (stride - 1 if ceil_mode else 0)) // stride + 1
    # In ceil mode PyTorch drops a last window that would start in the
    # right padding.
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


@functools.lru_cache(maxsize=None)
def _has_gpu():
    """Whether TensorFlow sees a GPU (float16 pooling kernels exist)."""
    return bool(tf.config.list_logical_devices("GPU"))


@keras.saving.register_keras_serializable(package="vidcore")
class TorchMaxPool3D(keras.layers.Layer):
    """Max pooling with PyTorch ``MaxPool3d`` semantics (channels last).

    PyTorch pads max pools with -inf (padding never wins the max) and, with
    ``ceil_mode``, adds a last window that may run past the input (only
    when it starts inside the input or the left padding). Both are
    reproduced by padding with -inf and pooling 'valid'; the ceil-mode
    right padding is computed from the actual input size, so T, H and W
    may be unknown when the model is built.

    Args:
        pool_size: int or (t, h, w) window.
        strides: int or (t, h, w) strides; defaults to ``pool_size``.
        padding: int or (t, h, w) implicit -inf padding on both sides of
            each axis (at most half the window, as PyTorch requires).
        ceil_mode: PyTorch's ``ceil_mode`` (round the output length up).
    """

    def __init__(self, pool_size, strides=None, padding=0, ceil_mode=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _triple(pool_size, "pool_size")
        self.strides = _triple(
            self.pool_size if strides is None else strides, "strides")
        self.padding = _triple(padding, "padding")
        self.ceil_mode = bool(ceil_mode)
        for k, s, p in zip(self.pool_size, self.strides, self.padding):
            if k < 1 or s < 1 or p < 0 or 2 * p > k:
                raise ValueError(
                    f"{self.name}: need pool_size >= 1, strides >= 1 and "
                    f"0 <= padding <= pool_size / 2, got pool_size="
                    f"{self.pool_size}, strides={self.strides}, padding="
                    f"{self.padding}")

    def _right_extra(self, size, axis):
        """Extra right padding that ceil mode needs along ``axis``."""
        k, s, p = (self.pool_size[axis], self.strides[axis],
                   self.padding[axis])
        if not self.ceil_mode:
            return 0
        if isinstance(size, (int, np.integer)):
            out = _torch_pool_length(int(size), k, s, p, True)
            return max(0, (out - 1) * s + k - (int(size) + 2 * p))
        # Same arithmetic on a dynamic (scalar tensor) size.
        out = (size + 2 * p - k + s - 1) // s + 1
        out = ops.where((out - 1) * s >= size + p, out - 1, out)
        return ops.maximum(0, (out - 1) * s + k - (size + 2 * p))

    def _check_sizes(self, shape):
        for axis, (letter, size) in enumerate(zip("THW", shape[1:4])):
            if size is None:
                continue
            out = _torch_pool_length(
                int(size), self.pool_size[axis], self.strides[axis],
                self.padding[axis], self.ceil_mode)
            if out < 1:
                raise ValueError(
                    f"{self.name}: input {letter} = {size} is too small for "
                    f"a max pool of size {self.pool_size[axis]} with "
                    f"padding {self.padding[axis]} (input shape "
                    f"{tuple(shape)})")

    def build(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(
                f"{self.name}: expected input [B, T, H, W, C], got shape "
                f"{tuple(input_shape)}")
        self._check_sizes(input_shape)

    def call(self, x):
        self._check_sizes(x.shape)
        dynamic = ops.shape(x)
        widths = [[0, 0]]
        for axis in range(3):
            size = x.shape[axis + 1]
            if size is None:
                size = dynamic[axis + 1]
            p = self.padding[axis]
            widths.append([p, p + self._right_extra(size, axis)])
        widths.append([0, 0])
        # TensorFlow has no float16 MaxPool3D kernel on the CPU: pool in
        # float32 there (exact: the max of float16 values is one of them).
        dtype = x.dtype
        upcast = dtype == "float16" and not _has_gpu()
        if upcast:
            x = ops.cast(x, "float32")
        if any(not isinstance(w, int) or w for pair in widths for w in pair):
            x = ops.pad(x, widths, constant_values=float("-inf"))
        x = ops.max_pool(x, self.pool_size, strides=self.strides,
                         padding="valid", data_format="channels_last")
        return ops.cast(x, dtype) if upcast else x

    def compute_output_shape(self, input_shape):
        out = [input_shape[0]]
        for axis, size in enumerate(input_shape[1:4]):
            out.append(None if size is None else _torch_pool_length(
                int(size), self.pool_size[axis], self.strides[axis],
                self.padding[axis], self.ceil_mode))
        return tuple(out) + (input_shape[4],)

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides,
                      padding=self.padding, ceil_mode=self.ceil_mode)
        return config


@keras.saving.register_keras_serializable(package="vidcore")
class SelfGating(keras.layers.Layer):
    """S3D-G self-gating: ``x * sigmoid(mean_THW(x) W + b)`` per channel.

    Input and output [B, T, H, W, C]; W is [C, C] and b is [C] (PyTorch
    ``nn.Linear`` with bias, initialised like it: U(-1/sqrt(C), 1/sqrt(C))).
    No arguments besides the base layer's.
    """

    def build(self, input_shape):
        if len(input_shape) != 5 or input_shape[-1] is None:
            raise ValueError(
                f"{self.name}: expected input [B, T, H, W, C] with known C, "
                f"got shape {tuple(input_shape)}")
        channels = int(input_shape[-1])
        bound = 1.0 / math.sqrt(channels)
        init = keras.initializers.RandomUniform(-bound, bound)
        self.kernel = self.add_weight(name="kernel",
                                      shape=(channels, channels),
                                      initializer=init)
        self.bias = self.add_weight(name="bias", shape=(channels,),
                                    initializer=init)

    def call(self, x):
        # [B, T, H, W, C] -> [B, C]
        pooled = ops.mean(x, axis=(1, 2, 3))
        gate = ops.sigmoid(ops.matmul(pooled, self.kernel) + self.bias)
        # [B, C] -> [B, 1, 1, 1, C]
        gate = ops.reshape(gate, (-1, 1, 1, 1, ops.shape(gate)[-1]))
        return x * ops.cast(gate, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="vidcore")
class SpaceToDepth3D(keras.layers.Layer):
    """Moves b x b x b blocks of (t, h, w) into channels (MIL-NCE stem).

    [B, T, H, W, C] -> [B, T/b, H/b, W/b, b^3 C]; output channel
    ``((dt * b + dh) * b + dw) * C + c`` holds input
    ``[t * b + dt, h * b + dh, w * b + dw, c]``, the channel order of the
    MIL-NCE PyTorch release (so its converted conv1 weights apply).

    Args:
        block_size: b (T, H and W must be multiples of it).
    """

    def __init__(self, block_size=2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)
        if self.block_size < 1:
            raise ValueError(
                f"{self.name}: block_size must be >= 1, got {block_size!r}")

    def _check(self, shape):
        if len(shape) != 5 or shape[-1] is None:
            raise ValueError(
                f"{self.name}: expected input [B, T, H, W, C] with known C, "
                f"got shape {tuple(shape)}")
        for letter, size in zip("THW", shape[1:4]):
            if size is not None and int(size) % self.block_size:
                raise ValueError(
                    f"{self.name}: input {letter} = {size} is not a "
                    f"multiple of block_size {self.block_size} (input "
                    f"shape {tuple(shape)})")

    def build(self, input_shape):
        self._check(input_shape)

    def call(self, x):
        self._check(x.shape)
        b = self.block_size
        channels = x.shape[-1]
        shape = ops.shape(x)
        t, h, w = (x.shape[i] if x.shape[i] is not None else shape[i]
                   for i in (1, 2, 3))
        # [B, T, H, W, C] -> [B, T/b, b, H/b, b, W/b, b, C]
        x = ops.reshape(x, (-1, t // b, b, h // b, b, w // b, b, channels))
        # -> [B, T/b, H/b, W/b, b(t), b(h), b(w), C]
        x = ops.transpose(x, (0, 1, 3, 5, 2, 4, 6, 7))
        # -> [B, T/b, H/b, W/b, b^3 C]
        return ops.reshape(x, (-1, t // b, h // b, w // b,
                               b ** 3 * channels))

    def compute_output_shape(self, input_shape):
        b = self.block_size
        return ((input_shape[0],)
                + tuple(None if s is None else s // b
                        for s in input_shape[1:4])
                + (b ** 3 * input_shape[4],))

    def get_config(self):
        config = super().get_config()
        config.update(block_size=self.block_size)
        return config


def _check_positive_int(value, what, name):
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
            or value < 1):
        raise ValueError(f"{name}: {what} must be a positive int, got "
                         f"{value!r}")


# --- torchvision S3D --------------------------------------------------------

def _conv_bn_relu(x, filters, kernel_size, strides, padding, name, sync_bn,
                  momentum, epsilon, names=("0", "1", "2")):
    """Conv (no bias) -> BN -> ReLU named ``{name}_{names[i]}``."""
    x = conv3d(x, filters, kernel_size, strides=strides, padding=padding,
               use_bias=False, name=f"{name}_{names[0]}")
    x = batch_norm(momentum, epsilon, name=f"{name}_{names[1]}",
                   synchronized=sync_bn)(x)
    return keras.layers.ReLU(name=f"{name}_{names[2]}")(x)


def _s3d_unit(x, filters, kernel_size, strides, padding, name, sync_bn):
    """torchvision Conv3dNormActivation with the S3D batch norm."""
    return _conv_bn_relu(x, filters, kernel_size, strides, padding, name,
                         sync_bn, S3D_BN_MOMENTUM, S3D_BN_EPSILON)


def _s3d_separable(x, filters, kernel, stride, padding, name, sync_bn):
    """torchvision TemporalSeparableConv: 1xkxk then kx1x1 (``_0``, ``_1``)."""
    x = _s3d_unit(x, filters, (1, kernel, kernel), (1, stride, stride),
                  (0, padding, padding), f"{name}_0", sync_bn)
    return _s3d_unit(x, filters, (kernel, 1, 1), (stride, 1, 1),
                     (padding, 0, 0), f"{name}_1", sync_bn)


def _s3d_inception(x, widths, name, sync_bn):
    """torchvision SepInceptionBlock3D; [B, T, H, W, C] -> [.., sum(out)]."""
    b0, b1_mid, b1_out, b2_mid, b2_out, b3 = widths
    x0 = _s3d_unit(x, b0, 1, 1, 0, f"{name}_branch0", sync_bn)
    x1 = _s3d_unit(x, b1_mid, 1, 1, 0, f"{name}_branch1_0", sync_bn)
    x1 = _s3d_separable(x1, b1_out, 3, 1, 1, f"{name}_branch1_1", sync_bn)
    x2 = _s3d_unit(x, b2_mid, 1, 1, 0, f"{name}_branch2_0", sync_bn)
    x2 = _s3d_separable(x2, b2_out, 3, 1, 1, f"{name}_branch2_1", sync_bn)
    x3 = TorchMaxPool3D(3, 1, padding=1, name=f"{name}_branch3_0")(x)
    x3 = _s3d_unit(x3, b3, 1, 1, 0, f"{name}_branch3_1", sync_bn)
    return keras.layers.Concatenate(axis=-1, name=name)([x0, x1, x2, x3])


def _s3d_features(x, sync_bn):
    """torchvision ``S3D.features``: [B, T, H, W, 3] ->
    [B, ~T/8, ~H/32, ~W/32, 1024]."""
    x = _s3d_separable(x, 64, 7, 2, 3, "features_0", sync_bn)
    x = TorchMaxPool3D((1, 3, 3), (1, 2, 2), (0, 1, 1),
                       name="features_1")(x)
    x = _s3d_unit(x, 64, 1, 1, 0, "features_2", sync_bn)
    x = _s3d_separable(x, 192, 3, 1, 1, "features_3", sync_bn)
    x = TorchMaxPool3D((1, 3, 3), (1, 2, 2), (0, 1, 1),
                       name="features_4")(x)
    blocks = iter(row[1:] for row in _INCEPTION)
    for index in (5, 6):
        x = _s3d_inception(x, next(blocks), f"features_{index}", sync_bn)
    x = TorchMaxPool3D(3, 2, 1, name="features_7")(x)
    for index in (8, 9, 10, 11, 12):
        x = _s3d_inception(x, next(blocks), f"features_{index}", sync_bn)
    x = TorchMaxPool3D(2, 2, 0, name="features_13")(x)
    for index in (14, 15):
        x = _s3d_inception(x, next(blocks), f"features_{index}", sync_bn)
    return x


def s3d(num_classes=400, input_shape=(16, 224, 224, 3), dropout=0.2,
        sync_bn=False, include_top=True, name="s3d"):
    """torchvision's S3D Kinetics classifier (``torchvision.models.video``).

    The torchvision head average-pools with a fixed (2, 7, 7) window, so
    with ``include_top`` a clip needs at least 14 frames of 224 x 224 (the
    torchvision Kinetics-400 weights' minimum); longer or larger clips give
    several windows whose logits are averaged, as in torchvision.

    Args:
        num_classes: number of classes of the 1x1x1 classifier convolution
            (ignored without the top).
        input_shape: (T, H, W, C) of one clip; T, H and W may be None.
        dropout: dropout rate before the classifier.
        sync_bn: synchronise batch-norm statistics across replicas.
        include_top: add avgpool, dropout, classifier and the mean (logits,
            float32, no softmax); without it the model returns the
            1024-d mean over T, H and W of the last Inception block (any
            clip size works).
        name: model name.

    Returns:
        keras.Model mapping clips [B, T, H, W, C] (normalised) to logits
        [B, num_classes] or features [B, 1024].
    """
    shape = check_input_shape(input_shape, name)
    if include_top:
        _check_positive_int(num_classes, "num_classes", name)
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"{name}: dropout must be in [0, 1), got "
                         f"{dropout!r}")
    inputs = keras.Input(shape=shape, name="clip")
    x = _s3d_features(inputs, sync_bn)
    if not include_top:
        # [B, T', H', W', 1024] -> [B, 1024]
        x = keras.layers.GlobalAveragePooling3D(
            data_format="channels_last", dtype="float32",
            name="global_pool")(x)
        return keras.Model(inputs, x, name=name)
    for axis, need in zip((1, 2, 3), (2, 7, 7)):
        if x.shape[axis] is not None and x.shape[axis] < need:
            raise ValueError(
                f"{name}: the classifier's (2, 7, 7) average pool needs "
                f"features of at least 2 x 7 x 7 (clips of >= 14 frames of "
                f">= 224 x 224); input_shape {input_shape!r} gives "
                f"{tuple(x.shape[1:4])}. Use include_top=False for smaller "
                f"clips")
    # [B, T', H', W', 1024] -> [B, T'-1, H'-6, W'-6, 1024]
    x = keras.layers.AveragePooling3D(
        (2, 7, 7), strides=1, padding="valid", data_format="channels_last",
        name="avgpool")(x)
    x = keras.layers.Dropout(float(dropout), name="classifier_0")(x)
    x = keras.layers.Conv3D(
        num_classes, 1, use_bias=True, data_format="channels_last",
        dtype="float32", name="classifier_1")(x)
    # [B, T'', H'', W'', num_classes] -> [B, num_classes]
    x = keras.layers.GlobalAveragePooling3D(
        data_format="channels_last", dtype="float32", name="logits")(x)
    return keras.Model(inputs, x, name=name)


# --- MIL-NCE S3D-G ----------------------------------------------------------

def _s3dg_unit(x, filters, kernel_size, strides, padding, name, sync_bn):
    """MIL-NCE STConv3D (not separable): conv1 -> bn1 -> relu1."""
    return _conv_bn_relu(x, filters, kernel_size, strides, padding, name,
                         sync_bn, S3DG_BN_MOMENTUM, S3DG_BN_EPSILON,
                         names=("conv1", "bn1", "relu1"))


def _s3dg_separable(x, filters, name, sync_bn):
    """MIL-NCE separable STConv3D, 3x3x3 stride 1 padding 1: 1x3x3 (conv1,
    bn1, relu1) then 3x1x1 (conv2, bn2, relu2)."""
    x = _conv_bn_relu(x, filters, (1, 3, 3), 1, (0, 1, 1), name, sync_bn,
                      S3DG_BN_MOMENTUM, S3DG_BN_EPSILON,
                      names=("conv1", "bn1", "relu1"))
    return _conv_bn_relu(x, filters, (3, 1, 1), 1, (1, 0, 0), name, sync_bn,
                         S3DG_BN_MOMENTUM, S3DG_BN_EPSILON,
                         names=("conv2", "bn2", "relu2"))


def _s3dg_maxpool(x, pool_size, strides, name):
    """The release's "SAME" max pool: zeros (max(k - s, 0) split as
    floor/ceil before/after), then a ceil-mode 'valid' PyTorch max pool.

    Unlike TensorFlow's SAME this padding does not depend on the input
    size (they differ for odd sizes); the release's weights expect it."""
    along = [max(k - s, 0) for k, s in zip(pool_size, strides)]
    pads = tuple((a // 2, a - a // 2) for a in along)
    if any(any(pair) for pair in pads):
        x = keras.layers.ZeroPadding3D(
            pads, data_format="channels_last", name=f"{name}_pad")(x)
    return TorchMaxPool3D(pool_size, strides, 0, ceil_mode=True,
                          name=name)(x)


def _s3dg_inception(x, widths, name, sync_bn):
    """MIL-NCE InceptionBlock with gating; [B, T, H, W, C] -> [.., out]."""
    b0, b1_mid, b1_out, b2_mid, b2_out, b3 = widths
    x0 = _s3dg_unit(x, b0, 1, 1, 0, f"{name}_conv_b0", sync_bn)
    x1 = _s3dg_unit(x, b1_mid, 1, 1, 0, f"{name}_conv_b1_a", sync_bn)
    x1 = _s3dg_separable(x1, b1_out, f"{name}_conv_b1_b", sync_bn)
    x2 = _s3dg_unit(x, b2_mid, 1, 1, 0, f"{name}_conv_b2_a", sync_bn)
    x2 = _s3dg_separable(x2, b2_out, f"{name}_conv_b2_b", sync_bn)
    x3 = TorchMaxPool3D(3, 1, padding=1, name=f"{name}_maxpool_b3")(x)
    x3 = _s3dg_unit(x3, b3, 1, 1, 0, f"{name}_conv_b3_b", sync_bn)
    branches = [SelfGating(name=f"{name}_gating_b{i}")(branch)
                for i, branch in enumerate((x0, x1, x2, x3))]
    return keras.layers.Concatenate(axis=-1, name=name)(branches)


def s3dg(embedding_dim=512, space_to_depth=False,
         input_shape=(None, None, None, 3), sync_bn=False,
         include_embedding=True, name="s3dg"):
    """The MIL-NCE S3D-G video network (HowTo100M end-to-end model).

    Stem: conv1 3x7x7 stride 2 with PyTorch padding (1, 3, 3) -> 64 (or,
    with ``space_to_depth``, 2x2x2 space-to-depth to 24 channels, conv1
    2x4x4 stride 1 padding (1, 2, 2), crop the first element of T, H and
    W); max pool 1x3x3 s(1, 2, 2); conv_2b 1x1x1 64; conv_2c separable
    192; gating; max pool; Mixed_3b/3c; max pool 3x3x3 s2; Mixed_4b-4f;
    max pool 2x2x2 s2; Mixed_5b/5c; mean over T, H, W; ``fc``.

    Args:
        embedding_dim: size D of the ``video_embedding`` projection.
        space_to_depth: use the space-to-depth stem (the released
            TPU-trained weights); T, H and W must then be even.
        input_shape: (T, H, W, C) of one clip, values in [0, 1]; T, H and W
            may be None.
        sync_bn: synchronise batch-norm statistics across replicas.
        include_embedding: add the ``fc`` projection.
        name: model name.

    Returns:
        keras.Model mapping clips [B, T, H, W, C] to
        ``{"mixed_5c": [B, 1024], "video_embedding": [B, D]}`` (float32),
        or to the [B, 1024] features without the embedding.
    """
    shape = check_input_shape(input_shape, name)
    if include_embedding:
        _check_positive_int(embedding_dim, "embedding_dim", name)
    inputs = keras.Input(shape=shape, name="clip")
    if space_to_depth:
        # [B, T, H, W, C] -> [B, T/2, H/2, W/2, 8C]
        x = SpaceToDepth3D(2, name="space_to_depth")(inputs)
        # -> [B, T/2 + 1, H/2 + 1, W/2 + 1, 64]
        x = _s3dg_unit(x, 64, (2, 4, 4), 1, (1, 2, 2), "conv1", sync_bn)
        # -> [B, T/2, H/2, W/2, 64]
        x = keras.layers.Cropping3D(
            ((1, 0), (1, 0), (1, 0)), data_format="channels_last",
            name="conv1_crop")(x)
    else:
        # [B, T, H, W, C] -> [B, ~T/2, ~H/2, ~W/2, 64]
        x = _s3dg_unit(inputs, 64, (3, 7, 7), 2, (1, 3, 3), "conv1",
                       sync_bn)
    x = _s3dg_maxpool(x, (1, 3, 3), (1, 2, 2), "maxpool_2a")
    x = _s3dg_unit(x, 64, 1, 1, 0, "conv_2b", sync_bn)
    x = _s3dg_separable(x, 192, "conv_2c", sync_bn)
    x = SelfGating(name="gating")(x)
    x = _s3dg_maxpool(x, (1, 3, 3), (1, 2, 2), "maxpool_3a")
    pools = {"mixed_4b": ((3, 3, 3), (2, 2, 2), "maxpool_4a"),
             "mixed_5b": ((2, 2, 2), (2, 2, 2), "maxpool_5a")}
    for block, *widths in _INCEPTION:
        if block in pools:
            x = _s3dg_maxpool(x, *pools[block])
        x = _s3dg_inception(x, widths, block, sync_bn)
    # [B, T', H', W', 1024] -> [B, 1024]
    features = keras.layers.GlobalAveragePooling3D(
        data_format="channels_last", dtype="float32",
        name="global_pool")(x)
    if not include_embedding:
        return keras.Model(inputs, features, name=name)
    embedding = keras.layers.Dense(embedding_dim, dtype="float32",
                                   name="fc")(features)
    return keras.Model(
        inputs, {"mixed_5c": features, "video_embedding": embedding},
        name=name)


# --- PyTorch weight conversion ----------------------------------------------

# Keras layer name -> torch module path. Underscores separate path parts
# except inside these MIL-NCE module names (torchvision names have none).
_PATH_TOKEN = re.compile(
    r"(?:mixed_\d[a-z]|conv_2[bc]|conv_b\d(?:_[ab])?|gating_b\d"
    r"|maxpool_[0-9a-z]{2})(?=_|$)|[^_]+")


def _torch_path(layer):
    path = ".".join(_PATH_TOKEN.findall(layer.name))
    if isinstance(layer, SelfGating):
        path += ".fc"  # the gate's nn.Linear
    return path


def load_torchvision_weights(model, state_dict, skip_top=False):
    """Copies a PyTorch S3D / S3D-G state dict into ``model``.

    For a model built by `s3d`, ``state_dict`` is torchvision's S3D (e.g.
    the Kinetics-400 ``s3d-d76dad2f.pth``); for one built by `s3dg`, the
    MIL-NCE release (``s3d_howto100m.pth``; its ``text_module.*`` entries,
    the text branch, are ignored here). Conv kernels go from torch
    [out, in, t, h, w] to Keras [t, h, w, in, out], Linear kernels are
    transposed, batch norms receive gamma, beta and the running
    mean/variance; ``num_batches_tracked`` buffers are ignored. Nothing is
    assigned unless every weight matches.

    Args:
        model: a model built by `s3d` or `s3dg`.
        state_dict: mapping of torch names (e.g.
            ``"features.5.branch1.1.0.0.weight"``) to numpy arrays (convert
            tensors with ``t.detach().cpu().numpy()``).
        skip_top: leave the head untouched and ignore its entries
            (torchvision ``classifier.*``, MIL-NCE ``fc.*``): for
            fine-tuning on other classes, or for a model built without
            its head.

    Returns:
        ``model``.

    Raises:
        ValueError: listing every missing key, unexpected key and shape
            mismatch (name, expected torch-layout shape, got) at once.
    """
    names = {layer.name for layer in model.layers}
    if "features_0_0_0" in names:
        top, ignored = "classifier.", ()
    elif "conv_2b_conv1" in names:
        top, ignored = "fc.", ("text_module.",)
    else:
        raise ValueError(
            f"model {model.name!r} was not built by vidcore.backbones.s3d "
            "(no layer 'features_0_0_0' or 'conv_2b_conv1')")
    return torch_weights.load_state_dict(
        model, state_dict, _torch_path, top=top, skip_top=skip_top,
        ignored=ignored)
