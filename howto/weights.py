"""Initial weights for training or evaluation from a path of either kind:
the authors' PyTorch state dict (``.pth``, converted on the fly) or one of
our checkpoint directories / checkpoint prefixes."""

import os

import tensorflow as tf

from vidcore import training
from vidcore.errors import UserInputError


def is_torch_checkpoint(path):
    return path.endswith((".pth", ".pt"))


def load_pretrained(model, path):
    """Loads the joint model's weights from ``path``.

    Args:
        model: a model from howto.models.build_model (same config as the
            weights).
        path: ``.pth`` / ``.pt`` PyTorch state dict, a checkpoint directory,
            or a checkpoint prefix.

    Returns:
        The path that was loaded.

    Raises:
        UserInputError: the path does not exist or does not match the model.
    """
    if is_torch_checkpoint(path):
        from howto import convert_torch  # torch is an optional extra
        convert_torch.load_into_model(model,
                                      convert_torch.read_state_dict(path))
        return path
    if os.path.isdir(path):
        try:
            return training.restore_model_weights(model, path)
        except FileNotFoundError as e:
            raise UserInputError(str(e)) from None
    if tf.io.gfile.exists(path + ".index"):
        return training.restore_model_weights(model, None, path)
    raise UserInputError(f"--pretrain_path={path}: not a .pth file, a "
                         f"checkpoint directory or a checkpoint prefix")
