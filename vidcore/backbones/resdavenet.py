"""ResDAVEnet: the residual speech CNN of AVLnet's audio branch
(Rouditchenko et al., "AVLnet: Learning Audio-Visual Language
Representations from Instructional Videos", Interspeech 2021, Sec. 3.1;
the ResDAVEnet of Harwath et al., "Learning Hierarchical Discrete
Linguistic Units from Visually-Grounded Speech", ICLR 2020).

Input: log-mel spectrograms [B, 40, T] (mel bands first, the layout the
records and the original store; 100 frames per second). A convolution
1 -> 128 channels with a (40, 1) kernel, batch norm and ReLU collapses the
40 bands; four residual stages of two basic blocks (widths 128, 256, 512,
1024; kernel (1, 9), padding (0, 4); the first block of each stage has
stride 2 and a 1x1 stride-2 convolution + batch norm shortcut) follow, so
the output is [B, ceil(T / 16), 1024]. Batch norm has PyTorch's defaults
(epsilon 1e-5, momentum 0.1, i.e. Keras momentum 0.9) and the project's
`BatchNorm`; convolutions have no bias and the original's initialisation
(normal, std sqrt(2 / (kh * kw * out_channels))).

The network runs channels-last on [B, 1, T, C] tensors with Conv2D layers,
which is PyTorch's [B, C, 1, T] transposed: every kernel maps one to one
([out, in, h, w] -> [h, w, in, out]) and padding is PyTorch's symmetric
zero padding (explicit ZeroPadding2D + 'valid' convolutions; Keras 'same'
would pad 3 left / 4 right at stride 2). Layer names are the PyTorch module
paths with dots replaced by underscores (``layer2.0.downsample.0`` ->
``layer2_0_downsample_0``); `load_torch_weights` relies on that. The
original module also creates a 1-channel ``batchnorm1`` that its forward
pass never uses (2 parameters); it is not built here and its tensors are
skipped when loading.

Pooling (`ValidFramesMeanPool`) is the mean over time, as the original:

* evaluation (``training`` false): over the first
  ``max(1, nframes // r)`` output steps of each example, where nframes is
  the number of real (not zero-padded) spectrogram frames and
  ``r = round(T / T_out)`` the original's pooling ratio (16 for every
  published input length: 800, 1000, 3072, 5120 frames);
* training: over ALL output steps, padding included, by default. That is
  what the original does in training (its ``audio.mean(dim=2)``), and the
  released weights and the published numbers come from it; with random
  whole-second windows (AVLnet) a training window is padded only when the
  audio is shorter than the window, so the difference is small. The text
  variants pad every caption span shorter than ``howto_audio_frames``;
  ``mask_padding_in_training=True`` pools over the valid steps in training
  too (not the published behaviour).
"""

import keras
import tensorflow as tf

from vidcore.backbones import torch_weights
from vidcore.layers.normalization import batch_norm

BN_MOMENTUM = 0.9  # PyTorch BatchNorm2d momentum 0.1
BN_EPSILON = 1e-5
NUM_BANDS = 40
STEM_WIDTH = 128
STAGE_WIDTHS = (128, 256, 512, 1024)
BLOCKS_PER_STAGE = (2, 2, 2, 2)
KERNEL_WIDTH = 9
AUDIO_INPUT = "audio"
NFRAMES_INPUT = "nframes"
# Tensors of the original's unused 1-channel BatchNorm2d.
UNUSED_PREFIXES = ("batchnorm1.",)


@keras.saving.register_keras_serializable(package="vidcore")
class ValidFramesMeanPool(keras.layers.Layer):
    """Mean over time of ResDAVEnet features, padding excluded in evaluation.

    Called as ``layer(features, nframes, spectrogram)``: features
    [B, T_out, C], nframes [B] (int) real frames of each spectrogram,
    spectrogram [B, F, T] the network's input (only its length T is read,
    for the pooling ratio ``r = round(T / T_out)``, rounding half to even
    as Python's ``round``). Returns [B, C]: in evaluation (or always with
    ``mask_padding_in_training``) the mean over the first
    ``min(T_out, max(1, nframes // r))`` steps, in training the mean over
    all T_out steps (module docstring: why).

    Args:
        mask_padding_in_training: pool over the valid steps in training too.
    """

    def __init__(self, mask_padding_in_training=False, **kwargs):
        super().__init__(**kwargs)
        self.mask_padding_in_training = bool(mask_padding_in_training)

    def call(self, features, nframes, spectrogram, training=None):
        x = tf.cast(features, tf.float32)  # [B, T_out, C]
        if training and not self.mask_padding_in_training:
            return tf.cast(tf.reduce_mean(x, axis=1), self.compute_dtype)
        steps = tf.shape(x)[1]
        ratio = tf.cast(tf.round(
            tf.cast(tf.shape(spectrogram)[-1], tf.float64)
            / tf.cast(steps, tf.float64)), tf.int64)
        valid = tf.maximum(tf.cast(nframes, tf.int64) // ratio, 1)  # [B]
        valid = tf.minimum(valid, tf.cast(steps, tf.int64))
        mask = tf.sequence_mask(valid, steps, dtype=tf.float32)  # [B, T_out]
        total = tf.reduce_sum(x * mask[:, :, None], axis=1)  # [B, C]
        mean = total / tf.cast(valid, tf.float32)[:, None]
        return tf.cast(mean, self.compute_dtype)

    def compute_output_shape(self, features_shape, nframes_shape=None,
                             spectrogram_shape=None):
        return (features_shape[0], features_shape[-1])

    def get_config(self):
        return {**super().get_config(),
                "mask_padding_in_training": self.mask_padding_in_training}


def _conv_init():
    """normal(0, sqrt(2 / (kh * kw * out))): the original's conv init."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal")


def _conv(x, filters, kernel_width, stride, name):
    """Conv2D (1, k) over [B, 1, T, C], PyTorch padding (0, (k - 1) // 2)."""
    pad = (kernel_width - 1) // 2
    if pad:
        # [B, 1, T, C] -> [B, 1, T + 2 pad, C]
        x = keras.layers.ZeroPadding2D(((0, 0), (pad, pad)),
                                       name=f"{name}_pad")(x)
    return keras.layers.Conv2D(
        filters, (1, kernel_width), strides=(1, stride), padding="valid",
        use_bias=False, kernel_initializer=_conv_init(), name=name)(x)


def _bn(x, name, sync_bn):
    return batch_norm(BN_MOMENTUM, BN_EPSILON, name=name,
                      synchronized=sync_bn)(x)


def _basic_block(x, inplanes, planes, stride, kernel_width, name, sync_bn):
    """Two (1, k) convolutions + BN; 1x1 convolution + BN shortcut when the
    block changes the width or the stride."""
    out = _conv(x, planes, kernel_width, stride, f"{name}_conv1")
    out = _bn(out, f"{name}_bn1", sync_bn)
    out = keras.layers.ReLU(name=f"{name}_relu1")(out)
    out = _conv(out, planes, kernel_width, 1, f"{name}_conv2")
    out = _bn(out, f"{name}_bn2", sync_bn)
    if stride != 1 or inplanes != planes:
        residual = _conv(x, planes, 1, stride, f"{name}_downsample_0")
        residual = _bn(residual, f"{name}_downsample_1", sync_bn)
    else:
        residual = x
    out = keras.layers.Add(name=f"{name}_add")([out, residual])
    return keras.layers.ReLU(name=f"{name}_relu2")(out)


def _check_ints(values, what, name):
    values = tuple(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, int)
                         or v < 1 for v in values):
        raise ValueError(f"{name}: {what} must be positive ints, got "
                         f"{values!r}")
    return values


def resdavenet(num_bands=NUM_BANDS, num_frames=None, stem_width=STEM_WIDTH,
               widths=STAGE_WIDTHS, blocks=BLOCKS_PER_STAGE,
               kernel_width=KERNEL_WIDTH, pooling=True,
               mask_padding_in_training=False, sync_bn=False,
               name="DAVEnet"):
    """Builds ResDAVEnet (module docstring) as a functional model.

    Args:
        num_bands: F, mel bands of the input (40).
        num_frames: T, spectrogram frames, or None for any length.
        stem_width: channels of the band-collapsing convolution (128).
        widths: channels of the residual stages (128, 256, 512, 1024).
        blocks: basic blocks per stage (2, 2, 2, 2).
        kernel_width: k of the (1, k) convolutions (9).
        pooling: end with `ValidFramesMeanPool` (inputs {"audio",
            "nframes"}, output [B, widths[-1]]); False: input "audio" only,
            output the feature sequence [B, T_out, widths[-1]].
        mask_padding_in_training: see `ValidFramesMeanPool`.
        sync_bn: batch-norm statistics over the global batch (across
            replicas). The original trained with nn.DataParallel, whose
            BatchNorm2d normalises each GPU's share: False matches it.
        name: model name ("DAVEnet", the original's attribute).

    Returns:
        keras.Model: spectrograms [B, F, T] (float; + nframes [B] int when
        pooling) -> [B, C] or [B, ceil(T / 2**stages), C].
    """
    widths = _check_ints(widths, "widths", name)
    blocks = _check_ints(blocks, "blocks", name)
    _check_ints((num_bands, stem_width, kernel_width), "num_bands, "
                "stem_width and kernel_width", name)
    if len(widths) != len(blocks):
        raise ValueError(f"{name}: widths {widths} and blocks {blocks} "
                         "must have one entry per stage")
    audio = keras.Input((num_bands, num_frames), name=AUDIO_INPUT)
    # [B, F, T] -> [B, F, T, 1]: PyTorch's [B, 1, F, T], channels last.
    x = keras.layers.Reshape((num_bands, -1, 1), name="add_channel")(audio)
    # (F, 1) kernel, no padding: [B, F, T, 1] -> [B, 1, T, stem_width]
    x = keras.layers.Conv2D(
        stem_width, (num_bands, 1), padding="valid", use_bias=False,
        kernel_initializer=_conv_init(), name="conv1")(x)
    x = _bn(x, "bn1", sync_bn)
    x = keras.layers.ReLU(name="relu")(x)
    inplanes = stem_width
    for stage, (planes, count) in enumerate(zip(widths, blocks), start=1):
        for block in range(count):
            x = _basic_block(x, inplanes, planes, 2 if block == 0 else 1,
                             kernel_width, f"layer{stage}_{block}", sync_bn)
            inplanes = planes
    # [B, 1, T_out, C] -> [B, T_out, C]
    x = keras.layers.Reshape((-1, inplanes), name="squeeze")(x)
    if not pooling:
        return keras.Model(audio, x, name=name)
    nframes = keras.Input((), dtype="int32", name=NFRAMES_INPUT)
    pooled = ValidFramesMeanPool(
        mask_padding_in_training=mask_padding_in_training,
        name="pool")(x, nframes, audio)
    return keras.Model({AUDIO_INPUT: audio, NFRAMES_INPUT: nframes}, pooled,
                       name=name)


def _torch_path(layer):
    """Keras layer -> torch module path (no torch module name of
    ResDavenet contains an underscore)."""
    return layer.name.replace("_", ".")


def load_torch_weights(model, state_dict):
    """Copies the original ``ResDavenet`` state dict into ``model``.

    Conv kernels go from torch [out, in, h, w] to Keras [h, w, in, out],
    batch norms receive gamma, beta and the running mean/variance;
    ``num_batches_tracked`` buffers and the unused ``batchnorm1.*`` are
    ignored. Nothing is assigned unless every weight matches.

    Args:
        model: a model built by `resdavenet`.
        state_dict: torch names (``"layer1.0.conv1.weight"``, without the
            ``DAVEnet.`` prefix of the AVLnet model) -> numpy arrays.

    Returns:
        ``model``.

    Raises:
        ValueError: listing every missing key, unexpected key and shape
            mismatch (name, expected torch-layout shape, got) at once.
    """
    # top: the backbone has no classification head ("\0" starts no key).
    return torch_weights.load_state_dict(
        model, state_dict, _torch_path, top="\0", ignored=UNUSED_PREFIXES)
