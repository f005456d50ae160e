"""Video CNN backbones shared by the families (channels-last Keras models).

Every builder takes plain keyword arguments and returns a `keras.Model`
mapping clips [B, T, H, W, 3] (float, already normalised) to logits or
features. `build(name, **kwargs)` picks one by its torchvision / paper name.

Each module also provides `load_torchvision_weights(model, state_dict)`,
which copies a PyTorch state dict (names -> numpy arrays; no torch import
needed here) into a model built by that module, with the same outputs.
"""

import importlib

# name -> (module, builder function)
BACKBONES = {
    "r3d_18": ("vidcore.backbones.resnet3d", "r3d_18"),
    "mc3_18": ("vidcore.backbones.resnet3d", "mc3_18"),
    "r2plus1d_18": ("vidcore.backbones.resnet3d", "r2plus1d_18"),
    "s3d": ("vidcore.backbones.s3d", "s3d"),
    "s3dg": ("vidcore.backbones.s3d", "s3dg"),
}


def _lookup(name):
    if name not in BACKBONES:
        raise ValueError(
            f"unknown backbone {name!r}; expected one of "
            f"{', '.join(sorted(BACKBONES))}")
    module_name, fn_name = BACKBONES[name]
    return importlib.import_module(module_name), fn_name


def build(name, **kwargs):
    """Builds backbone ``name`` (a key of BACKBONES) with ``kwargs``."""
    module, fn_name = _lookup(name)
    return getattr(module, fn_name)(**kwargs)


def load_torchvision_weights(name, model, state_dict, skip_top=False):
    """Copies a torchvision state dict into a model built by ``build(name)``.

    Args:
        name: key of BACKBONES.
        model: the Keras model.
        state_dict: mapping of PyTorch parameter/buffer names to numpy arrays.
        skip_top: leave the classifier as it is (fine-tuning on other
            classes).
    """
    module, _ = _lookup(name)
    return module.load_torchvision_weights(model, state_dict,
                                           skip_top=skip_top)
