"""Convert the released PyTorch HowTo100M model to Keras / TF checkpoint.

Usage: ``python -m howto.convert_torch --pth=... --output_dir=...``.

The authors' pretrained model (``howto100m_pt_model.pth``, D = 6144) is the
``state_dict`` of their ``model.Net``; this tool loads it into the Keras
model of :mod:`howto.models` and writes, into ``--output_dir``:

* ``model_config.json``: the :class:`howto.models.ModelConfig` (sizes read
  from the tensor shapes, ``max_words`` from ``--max_words``);
* ``ckpt-1.*`` + ``checkpoint``: a TensorFlow checkpoint of the model, as
  training writes it, so ``vidcore.training.restore_model_weights(model,
  output_dir)`` restores it into ``build_model(config)``;
* optionally ``--keras_file``: the whole Keras model (``.keras``).

Weight mapping (PyTorch ``nn.Linear`` weights are [out, in], Keras kernels
[in, out], so they are transposed)::

    text_pooling.fc.{weight,bias}  -> text_pooling/fc/{kernel,bias}
    GU_<x>.fc.{weight,bias}        -> GU_<x>/fc/{kernel,bias}
    GU_<x>.cg.fc.{weight,bias}     -> GU_<x>/context_gating/{gating_weights,
                                                             gating_biases}

for ``<x>`` in ``text`` and ``video``. The released Context_Gating creates a
``batch_norm`` (BatchNorm1d) that its forward pass never uses; its tensors
(``GU_<x>.cg.batch_norm.*``) are skipped. Any other missing, extra or
mis-shaped tensor is an error. Checkpoints saved from ``nn.DataParallel``
(keys prefixed ``module.``) and dicts wrapping the state dict under
``state_dict`` or ``model`` are accepted.

Needs PyTorch (CPU is enough): ``pip install 'vidmodels[torch]'``.
"""

import json
import os

import numpy as np
import tensorflow as tf
from absl import flags, logging

from howto.models import ModelConfig, build_model
from vidcore import cli, torch_io, training
from vidcore.errors import UserInputError

CONFIG_FILE = "model_config.json"
CHECKPOINT_NAME = "ckpt"

_BRANCHES = ("GU_text", "GU_video")
# Tensors of the unused BatchNorm1d in each released Context_Gating.
_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var",
                "num_batches_tracked")
SKIPPED_KEYS = tuple(f"{branch}.cg.batch_norm.{suffix}"
                     for branch in _BRANCHES for suffix in _BN_SUFFIXES)
def read_state_dict(path):
    """Reads a PyTorch HowTo100M checkpoint into numpy arrays.

    Args:
        path: a ``.pth`` file written by ``torch.save(model.state_dict())``
            (or a dict holding it under "state_dict" or "model"); any path
            ``tf.io.gfile`` can read.

    Returns:
        {name: float32 np.ndarray}, names without a DataParallel ``module.``
        prefix.

    Raises:
        UserInputError: PyTorch is not installed, the file is missing, is not
            a readable checkpoint or does not hold a dict of tensors.
    """
    arrays = torch_io.read_state_dict(
        path, expected="a state dict of the HowTo100M model")
    return {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}


def _shape_of(state_dict, key, ndim):
    if key not in state_dict:
        raise UserInputError(
            f"checkpoint has no tensor {key!r}; expected the state dict of "
            f"the released HowTo100M model (keys "
            f"'text_pooling.fc.weight', 'GU_video.fc.weight', ...)")
    shape = tuple(np.shape(state_dict[key]))
    if len(shape) != ndim:
        raise UserInputError(
            f"checkpoint tensor {key!r} has shape {shape}, expected a "
            f"{ndim}-D tensor")
    return shape


def infer_config(state_dict, max_words=20):
    """The model config matching a state dict's shapes.

    Args:
        state_dict: {name: array} from :func:`read_state_dict`.
        max_words: words per sentence (not stored in the checkpoint).

    Returns:
        howto.models.ModelConfig; ``sentence_dim`` is -1 (= embd_dim) when
        the text max-pool has the embedding size, as in the released model.

    Raises:
        UserInputError: a tensor needed to read a size is missing or not 2-D.
    """
    embd_dim, feature_dim = _shape_of(state_dict, "GU_video.fc.weight", 2)
    sentence_dim, we_dim = _shape_of(state_dict, "text_pooling.fc.weight", 2)
    return ModelConfig(
        embd_dim=int(embd_dim), feature_dim=int(feature_dim),
        we_dim=int(we_dim), max_words=int(max_words),
        sentence_dim=-1 if sentence_dim == embd_dim else int(sentence_dim))


def _weight_map(model):
    """[(torch name, keras variable, transpose)] for a HowTo100M model."""
    try:
        pooling = model.get_layer("text_pooling")
        branches = {name: model.get_layer(name) for name in _BRANCHES}
    except ValueError as e:
        raise UserInputError(
            f"model {model.name!r} is not a howto.models.build_model model "
            f"({e})") from None
    mapping = [("text_pooling.fc.weight", pooling.fc.kernel, True),
               ("text_pooling.fc.bias", pooling.fc.bias, False)]
    for name, unit in branches.items():
        if unit.gate is None:
            raise UserInputError(f"layer {name} has no context gating; the "
                                 "released model always uses it")
        mapping += [
            (f"{name}.fc.weight", unit.fc.kernel, True),
            (f"{name}.fc.bias", unit.fc.bias, False),
            (f"{name}.cg.fc.weight", unit.gate.gating_weights, True),
            (f"{name}.cg.fc.bias", unit.gate.gating_biases, False),
        ]
    return mapping


def load_into_model(model, state_dict):
    """Assigns a released-model state dict to a Keras HowTo100M model.

    Everything is checked before any weight is assigned: on error the model
    is unchanged.

    Args:
        model: a model from ``howto.models.build_model`` (built).
        state_dict: {name: array} from :func:`read_state_dict`.

    Returns:
        Sorted names of the skipped tensors (the unused BatchNorm1d buffers
        and parameters of the context gatings found in the state dict).

    Raises:
        UserInputError: a tensor is missing, an unknown tensor is present or
            a shape differs; the message lists every such problem, with the
            expected and actual shapes (PyTorch layout, [out, in]).
    """
    mapping = _weight_map(model)
    expected = {name for name, _, _ in mapping}
    skipped = sorted(k for k in state_dict if k in SKIPPED_KEYS)
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected - set(SKIPPED_KEYS))
    problems = []
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    for name, variable, transpose in mapping:
        if name not in state_dict:
            continue
        want = tuple(int(d) for d in variable.shape)
        if transpose:
            want = want[::-1]
        got = tuple(np.shape(state_dict[name]))
        if got != want:
            problems.append(f"{name} has shape {got}, expected {want}")
    if problems:
        raise UserInputError(
            "PyTorch checkpoint does not match the HowTo100M model "
            f"(embd_dim={model.get_layer('GU_video').output_dim}): "
            + "; ".join(problems))
    for name, variable, transpose in mapping:
        value = np.asarray(state_dict[name], dtype=np.float32)
        variable.assign(value.T if transpose else value)
    if skipped:
        logging.info("Skipped the unused context-gating batch norm: %s",
                     ", ".join(skipped))
    return skipped


def convert(pth_path, output_dir, max_words=20, keras_file=None):
    """Converts a released PyTorch checkpoint to a TF checkpoint directory.

    Args:
        pth_path: the ``.pth`` state dict.
        output_dir: directory for ``model_config.json`` and the checkpoint;
            must not hold a checkpoint already.
        max_words: words per sentence of the text input.
        keras_file: also save the Keras model there (a ``.keras`` path).

    Returns:
        output_dir.

    Raises:
        UserInputError: see :func:`read_state_dict`, :func:`load_into_model`;
            output_dir already holds a checkpoint; keras_file does not end in
            ``.keras``.
    """
    if keras_file and not keras_file.endswith(".keras"):
        raise UserInputError(
            f"--keras_file={keras_file} must end in .keras")
    if tf.io.gfile.isdir(output_dir) and tf.train.latest_checkpoint(
            output_dir):
        raise UserInputError(
            f"--output_dir={output_dir} already holds a checkpoint; choose "
            "an empty or new directory")
    state_dict = read_state_dict(pth_path)
    cfg = infer_config(state_dict, max_words=max_words)
    model = build_model(cfg)
    skipped = load_into_model(model, state_dict)
    path = training.save_model_checkpoint(
        model, output_dir, keras_file=keras_file,
        checkpoint_name=CHECKPOINT_NAME)
    with tf.io.gfile.GFile(os.path.join(output_dir, CONFIG_FILE), "w") as f:
        json.dump(cfg.to_dict(), f, indent=2, sort_keys=True)
    logging.info("Wrote %s (%d tensors loaded, %d skipped)", path,
                 len(state_dict) - len(skipped), len(skipped))
    return output_dir


def load_config(output_dir):
    """The ModelConfig that :func:`convert` wrote into output_dir."""
    path = os.path.join(output_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"no {CONFIG_FILE} in {output_dir}")
    with tf.io.gfile.GFile(path) as f:
        return ModelConfig.from_dict(json.load(f))


# Own FlagValues (as the tfrecord_tools CLIs): howto/flags.py defines
# max_words etc. on the global FLAGS, and tests import several CLIs at once.
FLAGS = flags.FlagValues()
flags.DEFINE_string("pth", None,
                    "The released PyTorch checkpoint "
                    "(howto100m_pt_model.pth).", flag_values=FLAGS)
flags.DEFINE_string("output_dir", None,
                    "Output directory: model_config.json + TF checkpoint.",
                    flag_values=FLAGS)
flags.DEFINE_integer("max_words", 20,
                     "Words per sentence of the converted model's text input "
                     "(not stored in the checkpoint).", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_string("keras_file", None,
                    "Also save the Keras model to this .keras file.",
                    flag_values=FLAGS)


def main(argv):
    """Converts per the module FLAGS."""
    if len(argv) > 1:
        raise UserInputError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.pth:
        raise UserInputError("--pth is required")
    if not FLAGS.output_dir:
        raise UserInputError("--output_dir is required")
    out = convert(FLAGS.pth, FLAGS.output_dir, max_words=FLAGS.max_words,
                  keras_file=FLAGS.keras_file)
    extra = f" and Keras model to {FLAGS.keras_file}" if FLAGS.keras_file \
        else ""
    print(f"Converted {FLAGS.pth} to a TF checkpoint in {out}{extra}")


def run():
    """Console-script entry point."""
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
