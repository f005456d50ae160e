"""Convert the released MIL-NCE S3D model (or a training checkpoint) to Keras.

Usage: ``python -m howto.convert_milnce --pth=s3d_howto100m.pth
--dict=s3d_dict.npy --output_dir=DIR [--keras_file=DIR/milnce.keras]``.

Reads a PyTorch MIL-NCE checkpoint, either the release
(``s3d_howto100m.pth``: space-to-depth stem, D = 512, 66,250-word table) or
one of the original training's ``epochNNNN.pth.tar`` files (``module.``
prefixes under ``"state_dict"``, no space-to-depth), builds the matching
`howto.milnce_model` model (the architecture is read from the tensor
shapes), copies every tensor (see `howto.milnce_weights`), and writes into
``--output_dir``:

* ``model_config.json``: the MilNCEConfig;
* ``ckpt-1.*`` + ``checkpoint``: a TensorFlow checkpoint of the model, the
  form training writes, so the evaluation and feature-extraction CLIs take
  ``--pretrain_cnn_path=DIR`` (``howto.milnce_weights.load_pretrained``);
* ``vocab.txt``: the dictionary, one word a line (line i = id i + 1), from
  which ``howto.milnce_weights.load_vocabulary(DIR)`` builds the readers'
  TextEncoder (the text is lower-cased and split on ``[\\w']+`` as in the
  release; unknown words are dropped);
* optionally ``--keras_file``: the whole Keras model (``.keras``).

Needs PyTorch (CPU is enough): ``pip install 'vidmodels[torch]'``.
"""

import tensorflow as tf
from absl import flags, logging

from howto import milnce_weights
from howto.milnce_model import build_milnce_model, parameter_counts
from vidcore import cli, training
from vidcore.errors import UserInputError


def convert(pth_path, dict_path, output_dir, keras_file=None):
    """Converts a MIL-NCE PyTorch checkpoint and its dictionary.

    Everything is read and checked before anything is written.

    Args:
        pth_path: the ``.pth`` / ``.pth.tar`` checkpoint.
        dict_path: the word dictionary (``s3d_dict.npy`` / ``dict.npy``).
        output_dir: a new or empty directory (refused if it holds a
            checkpoint already).
        keras_file: also save the Keras model there (a ``.keras`` path).

    Returns:
        (model, config) of the converted model.

    Raises:
        UserInputError: a file is missing or does not match (see
            howto.milnce_weights), output_dir holds a checkpoint, keras_file
            does not end in ``.keras``.
    """
    if keras_file and not keras_file.endswith(".keras"):
        raise UserInputError(f"--keras_file={keras_file} must end in .keras")
    if tf.io.gfile.isdir(output_dir) and tf.train.latest_checkpoint(
            output_dir):  # refused before the slow part
        raise UserInputError(
            f"--output_dir={output_dir} already holds a checkpoint; choose "
            "an empty or new directory")
    words = milnce_weights.read_dictionary(dict_path)
    state_dict = milnce_weights.read_state_dict(pth_path)
    cfg = milnce_weights.config_from_state_dict(state_dict)
    duplicates = milnce_weights.check_dictionary(words, cfg, dict_path)
    if duplicates:
        logging.warning("%s lists %d words more than once (they keep their "
                        "last id, as in the release): %s", dict_path,
                        len(duplicates), ", ".join(duplicates[:10]))
    model = build_milnce_model(cfg)
    milnce_weights.load_torch_state_dict(model, state_dict)
    try:
        path = training.save_model_checkpoint(
            model, output_dir, keras_file=keras_file,
            checkpoint_name=milnce_weights.CHECKPOINT_NAME)
    except ValueError as e:
        raise UserInputError(str(e)) from None
    milnce_weights.save_config(cfg, output_dir)
    milnce_weights.save_vocabulary(words, output_dir)
    counts = parameter_counts(model)
    logging.info("Wrote %s (%s; %d words; %d trainable parameters)", path,
                 cfg, len(words), counts.trainable)
    return model, cfg


# Own FlagValues (as howto.convert_torch): tests import several CLIs at once.
FLAGS = flags.FlagValues()
cli.flag_topic("data", FLAGS)
flags.DEFINE_string("pth", None,
                    "The PyTorch checkpoint: the release's "
                    "s3d_howto100m.pth or a training epochNNNN.pth.tar.",
                    flag_values=FLAGS)
flags.DEFINE_string("dict", None,
                    "The word dictionary of the checkpoint: s3d_dict.npy of "
                    "the release, dict.npy of the training data.",
                    flag_values=FLAGS)
cli.flag_topic("output", FLAGS)
flags.DEFINE_string("output_dir", None,
                    "Output directory: model_config.json, TF checkpoint and "
                    "vocab.txt.", flag_values=FLAGS)
flags.DEFINE_string("keras_file", None,
                    "Also save the Keras model to this .keras file.",
                    flag_values=FLAGS)


def main(argv):
    """Converts per the module FLAGS."""
    if len(argv) > 1:
        raise UserInputError(f"unexpected arguments {argv[1:]}")
    for name in ("pth", "dict", "output_dir"):
        if not FLAGS[name].value:
            raise UserInputError(f"--{name} is required")
    _, cfg = convert(FLAGS.pth, FLAGS.dict, FLAGS.output_dir,
                     keras_file=FLAGS.keras_file)
    extra = (f" and the Keras model to {FLAGS.keras_file}"
             if FLAGS.keras_file else "")
    print(f"Converted {FLAGS.pth} (embedding_dim {cfg.embedding_dim}, "
          f"space_to_depth {cfg.space_to_depth}, vocab_size "
          f"{cfg.vocab_size}) to {FLAGS.output_dir}{extra}")


def run():
    """Console-script entry point."""
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
