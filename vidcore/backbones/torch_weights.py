"""Copying PyTorch state dicts into the Keras backbones (no torch here).

Every backbone names its Keras layers after the PyTorch modules they stand
for, so a layer's weights map mechanically: ``weight_plan`` lists the torch
keys, torch-layout shapes and layout conversions of one layer, and
``load_state_dict`` checks a whole state dict against the model before
assigning anything.
"""

import keras
import numpy as np


def conv_kernel(array):
    """torch Conv3d weight [out, in, t, h, w] -> keras [t, h, w, in, out]."""
    return np.transpose(array, (2, 3, 4, 1, 0))


def conv2d_kernel(array):
    """torch Conv2d weight [out, in, h, w] -> keras [h, w, in, out]."""
    return np.transpose(array, (2, 3, 1, 0))


def dense_kernel(array):
    """torch Linear weight [out, in] -> keras [in, out]."""
    return np.transpose(array, (1, 0))


def identity(array):
    return array


def weight_plan(layer, prefix):
    """[(torch key, torch-layout shape, to-keras function)] in the order of
    ``layer.get_weights()``, for a Conv3D, Conv2D, BatchNormalization or
    a layer with a Dense-style ``kernel`` [in, out] (and ``bias``) whose
    torch module path is ``prefix``.

    Raises:
        ValueError: a layer with weights of another kind.
    """
    if isinstance(layer, keras.layers.Conv3D):
        kernel_shape = tuple(layer.kernel.shape)  # [t, h, w, in, out]
        plan = [(f"{prefix}.weight",
                 (kernel_shape[4], kernel_shape[3]) + kernel_shape[:3],
                 conv_kernel)]
        if layer.use_bias:
            plan.append((f"{prefix}.bias", tuple(layer.bias.shape),
                         identity))
        return plan
    if isinstance(layer, keras.layers.Conv2D):
        kernel_shape = tuple(layer.kernel.shape)  # [h, w, in, out]
        plan = [(f"{prefix}.weight",
                 (kernel_shape[3], kernel_shape[2]) + kernel_shape[:2],
                 conv2d_kernel)]
        if layer.use_bias:
            plan.append((f"{prefix}.bias", tuple(layer.bias.shape),
                         identity))
        return plan
    if isinstance(layer, keras.layers.BatchNormalization):
        if not (layer.scale and layer.center):
            raise ValueError(
                f"batch norm {layer.name!r} must have scale and center to "
                "hold PyTorch weights")
        shape = tuple(layer.gamma.shape)
        return [(f"{prefix}.{suffix}", shape, identity) for suffix in
                ("weight", "bias", "running_mean", "running_var")]
    kernel = getattr(layer, "kernel", None)
    if kernel is not None and len(kernel.shape) == 2:
        plan = [(f"{prefix}.weight", tuple(kernel.shape)[::-1],
                 dense_kernel)]
        if getattr(layer, "bias", None) is not None:
            plan.append((f"{prefix}.bias", tuple(layer.bias.shape),
                         identity))
        return plan
    raise ValueError(
        f"layer {layer.name!r} ({type(layer).__name__}) has weights but no "
        "PyTorch counterpart")


def load_state_dict(model, state_dict, torch_path, top, skip_top=False,
                    ignored=()):
    """Copies a PyTorch state dict into ``model``, all or nothing.

    Args:
        model: a backbone whose layers map to torch modules.
        state_dict: torch name -> numpy array (``num_batches_tracked``
            buffers are ignored).
        torch_path: layer -> its torch module path.
        top: key prefix of the classification head (e.g. "fc.").
        skip_top: leave the head's layers untouched and ignore its keys.
        ignored: key prefixes to ignore (parts of the checkpoint that are
            not this model, e.g. a text branch).

    Returns:
        ``model``.

    Raises:
        ValueError: listing every missing key, unexpected key and shape
            mismatch (name, expected torch-layout shape, got) at once.
    """
    arrays = {key: np.asarray(value) for key, value in state_dict.items()
              if not key.endswith(".num_batches_tracked")
              and not key.startswith(tuple(ignored))}
    assignments = []  # (layer, [keras-layout arrays])
    used, missing, mismatched = set(), [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        try:
            plan = weight_plan(layer, torch_path(layer))
        except ValueError as e:
            raise ValueError(f"model {model.name!r}: {e}") from None
        if skip_top and plan[0][0].startswith(top):
            continue
        values = []
        for key, shape, to_keras in plan:
            if key not in arrays:
                missing.append(key)
                continue
            used.add(key)
            got = tuple(arrays[key].shape)
            if got != tuple(shape):
                mismatched.append((key, tuple(shape), got))
                continue
            values.append(to_keras(arrays[key]))
        assignments.append((layer, values))
    unexpected = sorted(
        key for key in arrays
        if key not in used and not (skip_top and key.startswith(top)))
    if missing or unexpected or mismatched:
        lines = [(f"cannot load the PyTorch state dict into model "
                  f"{model.name!r}:")]
        if missing:
            lines.append("missing keys: " + ", ".join(missing))
        if unexpected:
            lines.append("unexpected keys: " + ", ".join(unexpected))
        for key, expected, got in mismatched:
            lines.append(f"shape mismatch for {key}: expected "
                         f"{expected} (torch layout), got {got}")
        if any(key.startswith(top) for key in unexpected) or any(
                key.startswith(top) for key, _, _ in mismatched):
            lines.append("(to leave the classification head out, pass "
                         "skip_top=True)")
        raise ValueError("\n".join(lines))
    for layer, values in assignments:
        layer.set_weights([
            value.astype(current.dtype, copy=False)
            for value, current in zip(values, layer.get_weights())])
    return model
