"""Reading PyTorch checkpoints into numpy, without torch anywhere else.

Every family's weight converter (HowTo100M, torchvision video models, ...)
reads ``.pth`` files through :func:`read_state_dict` and then maps the numpy
arrays onto its Keras model, so torch stays an optional extra
(``pip install 'vidmodels[torch]'``) needed only at conversion time.
"""

import argparse
import collections.abc

import numpy as np
import tensorflow as tf

from vidcore.errors import UserInputError

# Keys under which training scripts wrap the model's state dict
# (torchvision's references save {"model": ..., "optimizer": ..., ...}).
WRAPPER_KEYS = ("state_dict", "model")
DATA_PARALLEL_PREFIX = "module."


def import_torch():
    """The torch module, or a UserInputError saying how to install it."""
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise UserInputError(
            "reading a PyTorch checkpoint needs PyTorch: pip install "
            "'vidmodels[torch]'") from None
    return torch


def _unwrap(obj, path):
    """The state dict inside what torch.load returned."""
    if not isinstance(obj, collections.abc.Mapping):
        raise UserInputError(
            f"{path}: expected a PyTorch state dict (a dict of tensors), got "
            f"{type(obj).__name__}")
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, collections.abc.Mapping):
            return inner
    return obj


def _load(torch, path):
    """torch.load with weights_only=True (a pickle can run code); the
    argparse.Namespace that training scripts store beside the weights is
    the one extra type allowed."""
    safe = getattr(torch.serialization, "safe_globals", None)
    if "://" in path:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
        import io  # pylint: disable=import-outside-toplevel
        source = io.BytesIO(data)
    else:
        source = path
    if safe is None:
        return torch.load(source, map_location="cpu", weights_only=True)
    with safe([argparse.Namespace]):
        return torch.load(source, map_location="cpu", weights_only=True)


def read_state_dict(path, expected="the model's state dict"):
    """Reads a PyTorch checkpoint into numpy arrays.

    Args:
        path: a ``.pth`` file written by ``torch.save(model.state_dict())``
            (or a dict holding it under "state_dict" or "model", as training
            scripts save it); any path ``tf.io.gfile`` can read.
        expected: what the file should hold, for error messages.

    Returns:
        {name: np.ndarray} (floating tensors as float32, others keep their
        dtype), names without a DataParallel ``module.`` prefix.

    Raises:
        UserInputError: PyTorch is not installed, the file is missing, is not
            a readable checkpoint or does not hold a dict of tensors.
    """
    torch = import_torch()
    if not tf.io.gfile.exists(path):
        raise UserInputError(f"PyTorch checkpoint {path} does not exist")
    try:
        obj = _load(torch, path)
    except Exception as e:  # torch.load raises many types for a bad file.
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise UserInputError(
            f"{path}: not a readable PyTorch checkpoint "
            f"({type(e).__name__}: {first_line})") from e
    state_dict = _unwrap(obj, path)
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise UserInputError(
                f"{path}: entry {name!r} is a {type(value).__name__}, not a "
                f"tensor; expected {expected}")
        key = str(name)
        key = key.removeprefix(DATA_PARALLEL_PREFIX)
        if key in arrays:
            raise UserInputError(
                f"{path}: tensor {key!r} appears both with and without the "
                f"'module.' prefix")
        tensor = value.detach().cpu()
        if tensor.is_floating_point():
            arrays[key] = tensor.float().numpy().astype(np.float32,
                                                        copy=False)
        else:
            arrays[key] = tensor.numpy()
    return arrays
