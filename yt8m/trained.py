"""Rebuilding a trained model from its train_dir (eval, inference, export)."""

import dataclasses

from vidcore import training
from yt8m import flags as yflags
from yt8m.models import build_model


def load(train_dir, strategy=None, max_frames=None, checkpoint_path=None):
    """Builds the recorded model and restores its latest checkpoint.

    Args:
        train_dir: directory written by yt8m.train.
        strategy: build the model in this strategy's scope (None: no scope).
        max_frames: build with another frame count (segments use 5); the
            weights do not depend on it.
        checkpoint_path: a specific checkpoint prefix instead of the latest.

    Returns:
        (model, model_cfg as trained, feature_names, checkpoint path).
    """
    model_cfg, names = yflags.load_model_flags(train_dir)
    build_cfg = (dataclasses.replace(model_cfg, max_frames=max_frames)
                 if max_frames else model_cfg)
    if strategy is None:
        model = build_model(build_cfg)
    else:
        with strategy.scope():
            model = build_model(build_cfg)
    path = training.restore_model_weights(model, train_dir, checkpoint_path)
    return model, model_cfg, names, path


def checkpoint_step(path):
    """Step number of a checkpoint prefix like .../ckpt-1200."""
    try:
        return int(str(path).rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0
