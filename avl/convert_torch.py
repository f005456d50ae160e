"""Convert the released PyTorch AVLnet models to Keras / TF checkpoints.

Usage: ``python -m avl.convert_torch --pth=... --output_dir=...``.

The released ``AVLnet_release.pth``, ``AVLnet_Text_Tri_release.pth`` and
``AVLnet_Text_Fused_release.pth`` are ``state_dict``\\ s of the original
``model.Net``; this tool reads one (the variant and the sizes come from its
tensors: :func:`config_from_state_dict`), loads it into the model of
:mod:`avl.models` and writes, into ``--output_dir``:

* ``model_config.json``: the :class:`avl.models.AVLConfig`;
* ``ckpt-1.*`` + ``checkpoint``: a TensorFlow checkpoint of the model, as
  training writes it, so ``vidcore.training.restore_model_weights(model,
  output_dir)`` restores it into ``build_model(config)``;
* optionally ``--keras_file``: the whole Keras model (``.keras``).

Weight mapping (PyTorch Linear weights [out, in] are transposed to Keras
kernels [in, out]; Conv2d weights [out, in, h, w] become [h, w, in, out])::

    DAVEnet.<module path>.*         -> DAVEnet/<path with _>  (ResDAVEnet)
    DAVEnet_projection.{weight,bias}-> DAVEnet_projection/{kernel,bias}
    GU_<x>.fc.{weight,bias}         -> GU_<x>/fc/{kernel,bias}
    GU_<x>.cg.fc.{weight,bias}      -> GU_<x>/context_gating/{gating_weights,
                                                             gating_biases}
    text_pooling_caption.fc.*       -> text_pooling_caption/fc/*
    GU_audio_text.{fc_audio,fc_text}.* -> GU_audio_text/{fc_audio,fc_text}/*
    GU_audio_text.cg.fc.*           -> GU_audio_text/context_gating/*

Skipped, because the original builds them and never uses them (listed in the
log): ``DAVEnet.batchnorm1.*`` (a 1-channel BatchNorm2d) and, in
Text-Fused, ``GU_audio.*``. Any other missing, extra or mis-shaped tensor is
an error, and nothing is assigned then. ``module.``-prefixed keys
(nn.DataParallel) and dicts wrapping the state dict under ``state_dict`` or
``model`` are accepted.

Needs PyTorch (CPU is enough): ``pip install 'vidmodels[torch]'``.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl import flags, logging

from avl.models import AVLConfig, FusedGatedUnit, build_model
from vidcore import cli, torch_io, training
from vidcore.backbones import resdavenet
from vidcore.errors import UserInputError
from vidcore.layers.embedding import GatedEmbeddingUnit, SentenceMaxPool

CONFIG_FILE = "model_config.json"
CHECKPOINT_NAME = "ckpt"
BACKBONE = "DAVEnet"

_BN_TENSORS = ("weight", "bias", "running_mean", "running_var",
               "num_batches_tracked")
# Tensors the original creates and never uses.
UNUSED_BACKBONE_KEYS = tuple(f"{BACKBONE}.{prefix}{suffix}"
                             for prefix in resdavenet.UNUSED_PREFIXES
                             for suffix in _BN_TENSORS)
UNUSED_FUSED_KEYS = ("GU_audio.fc.weight", "GU_audio.fc.bias",
                     "GU_audio.cg.fc.weight", "GU_audio.cg.fc.bias")


def read_state_dict(path):
    """Reads a released AVLnet checkpoint into numpy arrays.

    Args:
        path: a ``.pth`` file (see vidcore.torch_io.read_state_dict).

    Returns:
        {name: np.ndarray}, floating tensors as float32, names without a
        DataParallel ``module.`` prefix.

    Raises:
        UserInputError: PyTorch is not installed, the file is missing, is not
            a readable checkpoint or does not hold a dict of tensors.
    """
    return torch_io.read_state_dict(
        path, expected="a state dict of a released AVLnet model")


def _shape(state_dict, key, ndim):
    if key not in state_dict:
        raise UserInputError(
            f"checkpoint has no tensor {key!r}; expected the state dict of a "
            "released AVLnet model (keys 'DAVEnet.conv1.weight', "
            "'GU_video.fc.weight', ...)")
    shape = tuple(np.shape(state_dict[key]))
    if len(shape) != ndim:
        raise UserInputError(f"checkpoint tensor {key!r} has shape {shape}, "
                             f"expected a {ndim}-D tensor")
    return shape


def config_from_state_dict(state_dict, max_words=20,
                           fuse_videoaudio_additive=False):
    """The AVLConfig matching a released state dict's tensors.

    The variant is read from the branches present (``GU_audio_text``:
    Text-Fused; ``GU_text_captions``: Text-Tri; neither: AVLnet), the sizes
    from the shapes.

    Args:
        state_dict: {name: array} from :func:`read_state_dict`.
        max_words: words per caption (not stored in the checkpoint).
        fuse_videoaudio_additive: the Text-Tri loss setting (not stored).

    Returns:
        avl.models.AVLConfig.

    Raises:
        UserInputError: a tensor needed to read a size is missing or has
            the wrong rank.
    """
    embd_dim, feature_dim = _shape(state_dict, "GU_video.fc.weight", 2)
    fused = "GU_audio_text.cg.fc.weight" in state_dict
    tri = fused or "GU_text_captions.fc.weight" in state_dict
    we_dim = 300
    if tri:
        _, we_dim = _shape(state_dict, "text_pooling_caption.fc.weight", 2)
    return AVLConfig(
        embd_dim=int(embd_dim), feature_dim=int(feature_dim),
        we_dim=int(we_dim), max_words=int(max_words), tri_modal=tri,
        tri_modal_fuse=fused,
        fuse_videoaudio_additive=bool(fuse_videoaudio_additive))


def _linear(name, dense):
    """Plan of a torch nn.Linear ``name`` held by a keras Dense."""
    return [(f"{name}.weight", dense.kernel, True),
            (f"{name}.bias", dense.bias, False)]


def _gating(name, gate):
    """Plan of a torch Context_Gating ``name`` (its ``fc``) held by a
    vidcore ContextGating with bias."""
    return [(f"{name}.fc.weight", gate.gating_weights, True),
            (f"{name}.fc.bias", gate.gating_biases, False)]


def _head_plan(model):
    """[(torch name, keras variable, transpose)] of every layer but the
    ResDAVEnet; each layer is named as the original's attribute."""
    plan = []
    for layer in model.layers:
        name = layer.name
        if name == BACKBONE or not layer.weights:
            continue
        if isinstance(layer, FusedGatedUnit):
            plan += (_linear(f"{name}.fc_audio", layer.fc_audio)
                     + _linear(f"{name}.fc_text", layer.fc_text)
                     + _gating(f"{name}.cg", layer.gate))
        elif isinstance(layer, GatedEmbeddingUnit) and layer.gate:
            plan += (_linear(f"{name}.fc", layer.fc)
                     + _gating(f"{name}.cg", layer.gate))
        elif isinstance(layer, SentenceMaxPool):
            plan += _linear(f"{name}.fc", layer.fc)
        elif isinstance(layer, keras.layers.Dense):
            plan += _linear(name, layer)
        else:
            raise UserInputError(
                f"model {model.name!r}: layer {name!r} has no counterpart "
                "in the released AVLnet; build the model with "
                "avl.models.build_model")
    return plan


def load_torch_state_dict(model, state_dict):
    """Assigns a released AVLnet state dict to a Keras AVLnet model.

    Everything is checked before any weight is assigned: on error the model
    is unchanged.

    Args:
        model: a model from ``avl.models.build_model`` whose variant and
            sizes match the state dict (:func:`config_from_state_dict`).
        state_dict: {name: array} from :func:`read_state_dict`.

    Returns:
        Sorted names of the skipped tensors (the original's unused
        ``DAVEnet.batchnorm1`` and, for Text-Fused, ``GU_audio``) found in
        the state dict.

    Raises:
        UserInputError: a tensor is missing, an unknown tensor is present or
            a shape differs; the message lists every such problem, with the
            expected and actual shapes (PyTorch layout).
    """
    try:
        backbone = model.get_layer(BACKBONE)
    except ValueError:
        raise UserInputError(f"model {model.name!r} has no {BACKBONE} "
                             "layer; build it with avl.models.build_model") \
            from None
    plan = _head_plan(model)
    fused = any(isinstance(layer, FusedGatedUnit) for layer in model.layers)
    unused = UNUSED_BACKBONE_KEYS + (UNUSED_FUSED_KEYS if fused else ())
    skipped = sorted(k for k in state_dict if k in unused)
    prefix = f"{BACKBONE}."
    expected = {name for name, _, _ in plan}
    problems = []
    missing = sorted(expected - set(state_dict))
    if missing:
        problems.append(f"missing tensors {missing}")
    unexpected = sorted(k for k in state_dict if k not in expected
                        and k not in unused and not k.startswith(prefix))
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    for name, variable, transpose in plan:
        if name not in state_dict:
            continue
        want = tuple(int(d) for d in variable.shape)
        want = want[::-1] if transpose else want
        got = tuple(np.shape(state_dict[name]))
        if got != want:
            problems.append(f"{name} has shape {got}, expected {want}")
    if problems:
        raise UserInputError(
            f"PyTorch checkpoint does not match the {model.name} model: "
            + "; ".join(problems))
    # Checks the ResDAVEnet's tensors, then assigns them (all or nothing).
    try:
        resdavenet.load_torch_weights(backbone, {
            k[len(prefix):]: v for k, v in state_dict.items()
            if k.startswith(prefix)})
    except ValueError as e:
        raise UserInputError(" ".join(
            f"PyTorch checkpoint does not match the {model.name} model "
            f"(keys under {prefix}): {e}".split())) from None
    for name, variable, transpose in plan:
        value = np.asarray(state_dict[name], dtype=np.float32)
        variable.assign(value.T if transpose else value)
    if skipped:
        logging.info("Skipped tensors the original never uses: %s",
                     ", ".join(skipped))
    return skipped


def convert(pth_path, output_dir, max_words=20, keras_file=None):
    """Converts a released PyTorch AVLnet model to a TF checkpoint directory.

    Args:
        pth_path: the ``.pth`` state dict.
        output_dir: directory for ``model_config.json`` and the checkpoint;
            must not hold a checkpoint already.
        max_words: words per caption of the text variants' input.
        keras_file: also save the Keras model there (a ``.keras`` path).

    Returns:
        output_dir.

    Raises:
        UserInputError: see :func:`read_state_dict` and
            :func:`load_torch_state_dict`; output_dir already holds a
            checkpoint; keras_file does not end in ``.keras``.
    """
    if keras_file and not keras_file.endswith(".keras"):
        raise UserInputError(f"--keras_file={keras_file} must end in .keras")
    if tf.io.gfile.isdir(output_dir) and tf.train.latest_checkpoint(
            output_dir):
        raise UserInputError(
            f"--output_dir={output_dir} already holds a checkpoint; choose "
            "an empty or new directory")
    state_dict = read_state_dict(pth_path)
    cfg = config_from_state_dict(state_dict, max_words=max_words)
    model = build_model(cfg)
    skipped = load_torch_state_dict(model, state_dict)
    path = training.save_model_checkpoint(
        model, output_dir, keras_file=keras_file,
        checkpoint_name=CHECKPOINT_NAME)
    with tf.io.gfile.GFile(os.path.join(output_dir, CONFIG_FILE), "w") as f:
        json.dump(cfg.to_dict(), f, indent=2, sort_keys=True)
    logging.info("Wrote %s (%s, %d tensors loaded, %d skipped)", path,
                 model.name, len(state_dict) - len(skipped), len(skipped))
    return output_dir


def load_config(output_dir):
    """The AVLConfig that :func:`convert` wrote into output_dir."""
    path = os.path.join(output_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"no {CONFIG_FILE} in {output_dir}")
    with tf.io.gfile.GFile(path) as f:
        return AVLConfig.from_dict(json.load(f))


# Own FlagValues, as howto.convert_torch: tests import several CLIs at once.
FLAGS = flags.FlagValues()
flags.DEFINE_string("pth", None,
                    "The released PyTorch checkpoint (AVLnet_release.pth, "
                    "AVLnet_Text_Tri_release.pth or "
                    "AVLnet_Text_Fused_release.pth).", flag_values=FLAGS)
flags.DEFINE_string("output_dir", None,
                    "Output directory: model_config.json + TF checkpoint.",
                    flag_values=FLAGS)
flags.DEFINE_integer("max_words", 20,
                     "Words per caption of the text variants' input (not "
                     "stored in the checkpoint).", lower_bound=1,
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
    cfg = load_config(out)
    extra = f" and Keras model to {FLAGS.keras_file}" if FLAGS.keras_file \
        else ""
    print(f"Converted {FLAGS.pth} ({cfg.variant}, embd_dim {cfg.embd_dim}) "
          f"to a TF checkpoint in {out}{extra}")


def run():
    """Console-script entry point."""
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
