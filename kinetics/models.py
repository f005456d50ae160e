"""Kinetics clip classifiers: the one place that maps settings to a model.

The backbones live in :mod:`vidcore.backbones`; this module records which
one a run used, with the clip geometry its input pipeline needs, so that
evaluation rebuilds the same model and feeds it the same clips.
"""

import dataclasses
import os

import tensorflow as tf

from vidcore import backbones
from vidcore import files as vfiles
from vidcore.config import dataclass_from_dict
from vidcore.errors import UserInputError
from vidcore.files import write_json_atomic

MODELS = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d")
CONFIG_FILE = "model_config.json"

# The classifier's bias in each torchvision model's state dict.
CLASSIFIER_BIAS = {"r3d_18": "fc.bias", "mc3_18": "fc.bias",
                   "r2plus1d_18": "fc.bias", "s3d": "classifier.1.bias"}

# Clip geometry of torchvision's Kinetics-400 weights (their transforms):
# (resize (H, W), crop) per model; the R(2+1)D family's is the recipe's.
DEFAULT_GEOMETRY = {
    "r3d_18": ((128, 171), 112),
    "mc3_18": ((128, 171), 112),
    "r2plus1d_18": ((128, 171), 112),
    "s3d": ((256, 256), 224),
}


@dataclasses.dataclass
class ModelConfig:
    """A clip classifier and the clips it takes.

    Attributes:
        model: one of MODELS.
        num_classes: output classes.
        clip_len: frames per clip.
        crop_size: clip height and width after cropping.
        resize: (height, width) frames are resized to before cropping.
        frame_rate: frames per second clips are sampled at (None: the rate
            the shards were written with).
        class_names: names of the classes in index order (may be empty).
    """

    model: str = "r2plus1d_18"
    num_classes: int = 400
    clip_len: int = 16
    crop_size: int = 112
    resize: tuple[int, int] = (128, 171)
    frame_rate: float | None = 15.0
    class_names: tuple[str, ...] = ()

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; expected one of "
                             f"{', '.join(MODELS)}")
        self.resize = tuple(int(v) for v in self.resize)
        self.class_names = tuple(self.class_names)
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{len(self.class_names)} class names for num_classes="
                f"{self.num_classes}")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        return dataclass_from_dict(cls, values)


def build_model(cfg, sync_bn=False, clip_len=None):
    """The Keras classifier of ``cfg``: clips [B, T, crop, crop, 3]
    (normalised) -> logits [B, num_classes].

    Args:
        cfg: ModelConfig.
        sync_bn: synchronise batch-norm statistics across replicas.
        clip_len: T of the input (default cfg.clip_len; None in the shape
            where the backbone allows any length).
    """
    t = clip_len or cfg.clip_len
    shape = (t, cfg.crop_size, cfg.crop_size, 3)
    return backbones.build(cfg.model, num_classes=cfg.num_classes,
                           input_shape=shape, sync_bn=sync_bn)


def save_config(directory, cfg):
    """Writes directory/model_config.json."""
    tf.io.gfile.makedirs(directory)
    write_json_atomic(os.path.join(directory, CONFIG_FILE), cfg.to_dict())


def read_config(directory):
    """The ModelConfig recorded in ``directory``, or None."""
    record = vfiles.read_json(os.path.join(directory, CONFIG_FILE))
    return None if record is None else ModelConfig.from_dict(record)


def load_torchvision(model, model_name, state_dict, skip_top=False):
    """Copies a torchvision state dict (numpy arrays) into ``model``."""
    return backbones.load_torchvision_weights(model_name, model, state_dict,
                                              skip_top=skip_top)


def torchvision_num_classes(model_name, state_dict, source):
    """Classes of a torchvision state dict, from its classifier's bias.

    Raises:
        UserInputError: the state dict has no classifier of that model
            (naming ``source``).
    """
    bias = CLASSIFIER_BIAS[model_name]
    if bias not in state_dict:
        raise UserInputError(
            f"{source}: no {bias!r} tensor; not a torchvision {model_name} "
            f"state dict (its keys start {sorted(state_dict)[:3]})")
    return int(state_dict[bias].shape[0])
