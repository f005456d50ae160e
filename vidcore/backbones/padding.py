"""PyTorch-style symmetric zero padding for channels-last 3-D layers.

PyTorch convolutions and pools pad every spatial side by the same amount
(`padding=(pt, ph, pw)`), whereas Keras' ``padding="same"`` puts the extra
row/column on the bottom/right when the stride is 2. After converting
PyTorch weights the outputs would then differ, so the backbones pad
explicitly with `ZeroPadding3D` and use ``padding="valid"`` layers.

Note for max pooling: PyTorch pads max pools with -inf, not zeros, so a
zero-padded 'valid' max pool matches only when its input is >= 0 (e.g.
right after a ReLU).
"""

import keras


def _triple(value, what):
    """Returns ``value`` as a tuple of three ints (t, h, w)."""
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(
            f"{what} must be an int or a (t, h, w) triple, got {value!r}")
    return value


def torch_pad(kernel_size, padding, name=None):
    """Returns a layer padding (t, h, w) symmetrically like PyTorch, or None.

    Args:
        kernel_size: int or (t, h, w) kernel size of the layer that follows
            (only checked to be a valid triple; kept so call sites read
            like the PyTorch module they mirror).
        padding: int or (t, h, w) number of zeros added on BOTH sides of
            each of the time, height and width axes.
        name: name of the returned layer.

    Returns:
        A `keras.layers.ZeroPadding3D` (channels-last, input
        [B, T, H, W, C] -> [B, T + 2pt, H + 2ph, W + 2pw, C]), or None when
        all padding is zero.
    """
    kernel_size = _triple(kernel_size, "kernel_size")
    padding = _triple(padding, "padding")
    if any(p < 0 for p in padding):
        raise ValueError(f"padding must be >= 0, got {padding!r} ({name})")
    if not any(padding):
        return None
    return keras.layers.ZeroPadding3D(
        padding=tuple((p, p) for p in padding),
        data_format="channels_last", name=name)


def conv3d(x, filters, kernel_size, strides=(1, 1, 1), padding=(0, 0, 0),
           use_bias=False, name=None,
           kernel_initializer="glorot_uniform"):
    """Applies a PyTorch-equivalent Conv3d to a channels-last tensor.

    The padding layer (if any) is named ``f"{name}_pad"`` and the
    convolution ``name``, so weights map to the torch module path.

    Args:
        x: Keras tensor [B, T, H, W, C].
        filters: number of output channels.
        kernel_size: int or (t, h, w).
        strides: int or (t, h, w).
        padding: int or (t, h, w) symmetric zero padding (PyTorch meaning).
        use_bias: whether the convolution has a bias.
        name: name of the convolution layer (required for weight mapping,
            but may be None).
        kernel_initializer: Keras initializer for the kernel.

    Returns:
        Keras tensor [B, T', H', W', filters].
    """
    kernel_size = _triple(kernel_size, "kernel_size")
    strides = _triple(strides, "strides")
    pad = torch_pad(kernel_size, padding,
                    name=None if name is None else f"{name}_pad")
    if pad is not None:
        x = pad(x)
    return keras.layers.Conv3D(
        filters, kernel_size, strides=strides, padding="valid",
        use_bias=use_bias, kernel_initializer=kernel_initializer,
        data_format="channels_last", name=name)(x)


def check_input_shape(input_shape, name):
    """The (T, H, W, C) clip shape of a backbone's input, checked: channels
    known, T/H/W None or positive. Raises ValueError naming the model."""
    shape = tuple(input_shape)
    if len(shape) != 4:
        raise ValueError(
            f"{name}: input_shape must be (T, H, W, C) (channels last, "
            f"without the batch axis), got {input_shape!r}")
    if shape[-1] is None or int(shape[-1]) < 1:
        raise ValueError(
            f"{name}: the channel axis of input_shape must be known, got "
            f"{input_shape!r}")
    for axis, size in zip("THW", shape[:3]):
        if size is not None and int(size) < 1:
            raise ValueError(
                f"{name}: input_shape {axis} must be None or >= 1, got "
                f"{input_shape!r}")
    return shape
