"""R3D-18, MC3-18 and R(2+1)D-18 video ResNets (channels-last Keras).

The architectures follow torchvision's ``VideoResNet`` ("A Closer Look at
Spatiotemporal Convolutions for Action Recognition", Tran et al. 2018):

- R3D-18: every convolution is 3x3x3.
- MC3-18: 3x3x3 convolutions in the stem and ``layer1``, 1x3x3 (no
  temporal extent, no temporal stride) in ``layer2``-``layer4``.
- R(2+1)D-18: every 3x3x3 convolution is factorised into a 1x3x3 spatial
  convolution, batch norm, ReLU and a 3x1x1 temporal convolution, with
  ``mid = (in * out * 27) // (in * 9 + 3 * out)`` channels in between (so
  the factorised pair has about as many weights as the 3x3x3 convolution);
  the stem is 1x7x7 (45 channels) then 3x1x1 (64 channels).

Every stem uses stride (1, 2, 2); ``layer2``-``layer4`` downsample by 2 in
time, height and width (MC3: height and width only). Padding is PyTorch's
symmetric zero padding (explicit `ZeroPadding3D` + 'valid' layers), batch
norm uses PyTorch's defaults (epsilon 1e-5, momentum 0.1, i.e. Keras
momentum 0.9).

Each Keras layer carries the name of the torchvision module it mirrors with
dots replaced by underscores (``layer2.0.conv1.0.3`` ->
``layer2_0_conv1_0_3``); `load_torchvision_weights` relies on that to copy
the public torchvision Kinetics-400 weights one to one.
"""

import keras
import numpy as np

from vidcore.backbones import torch_weights
from vidcore.backbones.padding import check_input_shape, conv3d
from vidcore.layers.normalization import batch_norm

BN_MOMENTUM = 0.9  # PyTorch BatchNorm3d momentum 0.1
BN_EPSILON = 1e-5
FEATURE_DIM = 512
STAGE_PLANES = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
BLOCKS_PER_STAGE = (2, 2, 2, 2)


def _conv_init():
    """Kaiming normal, fan_out, ReLU gain (torchvision's conv init)."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal")


def _conv(x, filters, kernel_size, strides, padding, name):
    return conv3d(x, filters, kernel_size, strides=strides, padding=padding,
                  use_bias=False, name=name,
                  kernel_initializer=_conv_init())


def _bn(x, name, sync_bn):
    return batch_norm(BN_MOMENTUM, BN_EPSILON, name=name,
                      synchronized=sync_bn)(x)


def _relu(x, name):
    return keras.layers.ReLU(name=name)(x)


# --- the three convolution "builders" of torchvision -----------------------
# Each maps x [B, T, H, W, C] to [B, T', H', W', planes]; `name` is the
# torch path of the builder module (e.g. "layer2_0_conv1_0").

def _conv3d_simple(x, planes, midplanes, stride, name, sync_bn):
    del midplanes, sync_bn  # unused by this builder
    return _conv(x, planes, (3, 3, 3), (stride, stride, stride), (1, 1, 1),
                 name)


def _conv3d_no_temporal(x, planes, midplanes, stride, name, sync_bn):
    del midplanes, sync_bn  # unused by this builder
    return _conv(x, planes, (1, 3, 3), (1, stride, stride), (0, 1, 1), name)


def _conv2plus1d(x, planes, midplanes, stride, name, sync_bn):
    x = _conv(x, midplanes, (1, 3, 3), (1, stride, stride), (0, 1, 1),
              f"{name}_0")
    x = _bn(x, f"{name}_1", sync_bn)
    x = _relu(x, f"{name}_2")
    return _conv(x, planes, (3, 1, 1), (stride, 1, 1), (1, 0, 0),
                 f"{name}_3")


# kind -> (builder, downsample stride for a stage stride s)
_CONV_KINDS = {
    "3d": (_conv3d_simple, lambda s: (s, s, s)),
    "no_temporal": (_conv3d_no_temporal, lambda s: (1, s, s)),
    "2plus1d": (_conv2plus1d, lambda s: (s, s, s)),
}


def _midplanes(inplanes, planes):
    """Channels between the (2+1)D pair (torchvision's BasicBlock formula).

    Computed once per block from the block's input and output widths and
    used by both of its convolutions."""
    return (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)


def _basic_block(x, inplanes, planes, kind, stride, name, sync_bn):
    """torchvision BasicBlock: two convs + BN, identity or 1x1x1 shortcut."""
    builder, ds_stride = _CONV_KINDS[kind]
    midplanes = _midplanes(inplanes, planes)
    out = builder(x, planes, midplanes, stride, f"{name}_conv1_0", sync_bn)
    out = _bn(out, f"{name}_conv1_1", sync_bn)
    out = _relu(out, f"{name}_conv1_2")
    out = builder(out, planes, midplanes, 1, f"{name}_conv2_0", sync_bn)
    out = _bn(out, f"{name}_conv2_1", sync_bn)
    if stride != 1 or inplanes != planes:
        residual = _conv(x, planes, (1, 1, 1), ds_stride(stride), (0, 0, 0),
                         f"{name}_downsample_0")
        residual = _bn(residual, f"{name}_downsample_1", sync_bn)
    else:
        residual = x
    out = keras.layers.Add(name=f"{name}_add")([out, residual])
    return _relu(out, f"{name}_relu")


def _basic_stem(x, sync_bn):
    """Conv 3x7x7 stride (1, 2, 2) -> BN -> ReLU, 64 channels."""
    x = _conv(x, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), "stem_0")
    x = _bn(x, "stem_1", sync_bn)
    return _relu(x, "stem_2")


def _r2plus1d_stem(x, sync_bn):
    """Conv 1x7x7 (45) stride (1, 2, 2) -> BN -> ReLU -> conv 3x1x1 (64)
    -> BN -> ReLU."""
    x = _conv(x, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3), "stem_0")
    x = _bn(x, "stem_1", sync_bn)
    x = _relu(x, "stem_2")
    x = _conv(x, 64, (3, 1, 1), (1, 1, 1), (1, 0, 0), "stem_3")
    x = _bn(x, "stem_4", sync_bn)
    return _relu(x, "stem_5")


def _check_args(num_classes, input_shape, include_top, name):
    shape = check_input_shape(input_shape, name)
    if include_top and (isinstance(num_classes, bool)
                        or not isinstance(num_classes, (int, np.integer))
                        or num_classes < 1):
        raise ValueError(
            f"{name}: num_classes must be a positive int, got "
            f"{num_classes!r}")
    return shape


def _video_resnet(stem, conv_kinds, num_classes, input_shape, sync_bn,
                  include_top, name):
    """Builds a torchvision-style VideoResNet-18 as a functional model.

    Args:
        stem: "basic" or "r2plus1d".
        conv_kinds: four keys of `_CONV_KINDS`, one per stage.
        num_classes, input_shape, sync_bn, include_top, name: see `r3d_18`.
    """
    shape = _check_args(num_classes, input_shape, include_top, name)
    inputs = keras.Input(shape=shape, name="clip")
    # [B, T, H, W, C] -> stem -> [B, T, H/2, W/2, 64]
    if stem == "basic":
        x = _basic_stem(inputs, sync_bn)
    else:
        x = _r2plus1d_stem(inputs, sync_bn)
    inplanes = 64
    for stage, (kind, planes, stride, blocks) in enumerate(
            zip(conv_kinds, STAGE_PLANES, STAGE_STRIDES, BLOCKS_PER_STAGE),
            start=1):
        for block in range(blocks):
            x = _basic_block(x, inplanes, planes, kind,
                             stride if block == 0 else 1,
                             f"layer{stage}_{block}", sync_bn)
            inplanes = planes
    # [B, T', H', W', 512] -> [B, 512]
    x = keras.layers.GlobalAveragePooling3D(
        data_format="channels_last", name="avgpool")(x)
    if include_top:
        # Logits in float32 even under a mixed-precision policy.
        x = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            bias_initializer="zeros", dtype="float32", name="fc")(x)
    return keras.Model(inputs, x, name=name)


def r3d_18(num_classes=400, input_shape=(16, 112, 112, 3), sync_bn=False,
           include_top=True, name="r3d_18"):
    """R3D-18: 18-layer ResNet with 3x3x3 convolutions everywhere.

    Args:
        num_classes: size of the classification head (ignored without it).
        input_shape: (T, H, W, C) of one clip; T, H and W may be None.
        sync_bn: synchronise batch-norm statistics across replicas.
        include_top: add the ``fc`` layer (logits, no softmax); without it
            the model returns the global-average-pooled 512-d features.
        name: model name.

    Returns:
        keras.Model mapping float32 clips [B, T, H, W, C] (normalised) to
        logits [B, num_classes] or features [B, 512].
    """
    return _video_resnet("basic", ("3d",) * 4, num_classes, input_shape,
                         sync_bn, include_top, name)


def mc3_18(num_classes=400, input_shape=(16, 112, 112, 3), sync_bn=False,
           include_top=True, name="mc3_18"):
    """MC3-18: 3x3x3 convolutions in the stem and layer1, 1x3x3 after.

    Args:
        num_classes: size of the classification head (ignored without it).
        input_shape: (T, H, W, C) of one clip; T, H and W may be None.
        sync_bn: synchronise batch-norm statistics across replicas.
        include_top: add the ``fc`` layer (logits, no softmax); without it
            the model returns the global-average-pooled 512-d features.
        name: model name.

    Returns:
        keras.Model mapping float32 clips [B, T, H, W, C] (normalised) to
        logits [B, num_classes] or features [B, 512].
    """
    return _video_resnet("basic", ("3d",) + ("no_temporal",) * 3,
                         num_classes, input_shape, sync_bn, include_top,
                         name)


def r2plus1d_18(num_classes=400, input_shape=(16, 112, 112, 3),
                sync_bn=False, include_top=True, name="r2plus1d_18"):
    """R(2+1)D-18: every 3x3x3 convolution factorised into (2+1)D.

    Args:
        num_classes: size of the classification head (ignored without it).
        input_shape: (T, H, W, C) of one clip; T, H and W may be None.
        sync_bn: synchronise batch-norm statistics across replicas.
        include_top: add the ``fc`` layer (logits, no softmax); without it
            the model returns the global-average-pooled 512-d features.
        name: model name.

    Returns:
        keras.Model mapping float32 clips [B, T, H, W, C] (normalised) to
        logits [B, num_classes] or features [B, 512].
    """
    return _video_resnet("r2plus1d", ("2plus1d",) * 4, num_classes,
                         input_shape, sync_bn, include_top, name)


# --- torchvision weight conversion -----------------------------------------

def _torch_path(layer_name):
    """Keras layer name -> torch module path (no torch module name here
    contains an underscore, so the mapping is reversible)."""
    return layer_name.replace("_", ".")


def load_torchvision_weights(model, state_dict, skip_top=False):
    """Copies a torchvision VideoResNet state dict into ``model``.

    Conv kernels go from torch [out, in, t, h, w] to Keras [t, h, w, in,
    out], the ``fc`` kernel is transposed, batch norms receive gamma, beta
    and the running mean/variance. ``num_batches_tracked`` buffers are
    ignored. Nothing is assigned unless every weight matches.

    Args:
        model: a model built by `r3d_18`, `mc3_18` or `r2plus1d_18`.
        state_dict: mapping of torch names (e.g. ``"layer1.0.conv1.0.weight"``)
            to numpy arrays (convert tensors with ``t.detach().cpu().numpy()``).
        skip_top: do not load the ``fc.*`` weights (the model's head, if
            any, keeps its initialisation): for fine-tuning on a different
            number of classes, or for a model built with include_top=False.

    Raises:
        ValueError: listing every missing key, unexpected key and shape
            mismatch (name, expected torch-layout shape, got) at once.
    """
    return torch_weights.load_state_dict(
        model, state_dict, lambda layer: _torch_path(layer.name), top="fc.",
        skip_top=skip_top)
