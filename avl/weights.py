"""Model weights for avl.train and avl.eval: which AVLnet a weights path
holds, and loading it.

A path is a released PyTorch state dict (``AVLnet_release.pth``,
``AVLnet_Text_Tri_release.pth``, ``AVLnet_Text_Fused_release.pth``;
converted on the fly by :mod:`avl.convert_torch`, which needs the torch
extra), one of our checkpoint directories (a training run, or the output of
``avl.convert_torch``), or a checkpoint prefix.
"""

import os

import tensorflow as tf

from avl import flags as aflags
from howto import weights as howto_weights
from vidcore.errors import UserInputError

# Settings that decide the model's weights (the others change the loss or
# the pooling, not which tensors exist).
ARCHITECTURE = ("tri_modal", "tri_modal_fuse", "embd_dim", "feature_dim",
                "we_dim")


def is_torch_checkpoint(path):
    return howto_weights.is_torch_checkpoint(path)


def read_state_dict(path):
    """The released state dict at ``path`` (numpy arrays)."""
    from avl import convert_torch  # torch is an optional extra
    return convert_torch.read_state_dict(path)


def stored_config(path, state_dict=None, max_words=20,
                  fuse_videoaudio_additive=False):
    """(AVLConfig, word2vec path or "") of the weights at ``path``, or None
    for a bare checkpoint prefix (no record of its model).

    Args:
        path: see the module docstring.
        state_dict: the .pth file's tensors when already read.
        max_words: words per caption (not stored in a .pth file).
        fuse_videoaudio_additive: the Text-Tri loss setting (not stored in a
            .pth file).
    """
    if is_torch_checkpoint(path):
        from avl import convert_torch  # torch is an optional extra
        state = state_dict if state_dict is not None else read_state_dict(
            path)
        return convert_torch.config_from_state_dict(
            state, max_words=max_words,
            fuse_videoaudio_additive=fuse_videoaudio_additive), ""
    directory = path if tf.io.gfile.isdir(path) else os.path.dirname(path)
    return aflags.read_run_record(directory)


def check_same_model(cfg, stored, path):
    """Raises UserInputError naming the flags to change when ``stored`` (the
    weights' AVLConfig) builds other tensors than ``cfg``."""
    differ = [name for name in ARCHITECTURE
              if getattr(cfg, name) != getattr(stored, name)]
    if differ:
        wanted = " ".join(f"--{n}={int(getattr(stored, n))}" for n in differ)
        raise UserInputError(
            f"--pretrain_path={path} holds a {stored.variant} model that "
            f"needs {wanted} (the flags give "
            + ", ".join(f"{n}={int(getattr(cfg, n))}" for n in differ) + ")")


def load_pretrained(model, path, state_dict=None):
    """Loads AVLnet weights from ``path`` into ``model``.

    Args:
        model: from avl.models.build_model, with the weights' architecture.
        path: see the module docstring.
        state_dict: the .pth file's tensors when already read.

    Returns:
        The path that was loaded.

    Raises:
        UserInputError: no such weights, or they do not fit the model.
    """
    if is_torch_checkpoint(path):
        from avl import convert_torch  # torch is an optional extra
        state = state_dict if state_dict is not None else read_state_dict(
            path)
        convert_torch.load_torch_state_dict(model, state)
        return path
    if not (tf.io.gfile.isdir(path) or tf.io.gfile.exists(path + ".index")):
        raise UserInputError(f"--pretrain_path={path}: not a .pth file, a "
                             f"checkpoint directory or a checkpoint prefix")
    return howto_weights.load_pretrained(model, path)
