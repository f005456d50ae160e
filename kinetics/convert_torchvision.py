"""Convert torchvision video-classification weights to our Keras models.

Usage::

    python -m kinetics.convert_torchvision --model=r2plus1d_18 \\
        --weights=r2plus1d_18-91a641e6.pth --output_dir=converted/r2plus1d

``--weights`` is a state dict of torchvision's ``r3d_18``, ``mc3_18``,
``r2plus1d_18`` or ``s3d`` (the files behind torchvision's
``*_Weights.KINETICS400_V1``, or a checkpoint of its training recipe, which
wraps the state dict under "model"). It is read with
``torch.load(weights_only=True)`` (torch is an optional extra:
``pip install 'vidmodels[torch]'``), copied into the Keras model of
:mod:`vidcore.backbones` (every tensor accounted for: a missing, extra or
mis-shaped one is an error) and written to ``--output_dir`` as

* ``model_config.json``: model, classes (from the classifier's shape), and
  the clip geometry of torchvision's weights for that model;
* ``ckpt-1.*`` + ``checkpoint``: a TensorFlow checkpoint, the form that
  ``kinetics.eval --output_dir`` reads (and ``kinetics.train --resume``);
* optionally ``--keras_file``: the whole Keras model.

The converted model gives the same logits as torchvision's in eval mode on
the same clip (channels-first [B, 3, T, H, W] there, channels-last
[B, T, H, W, 3] here), within 1e-4 (tests/test_kinetics_convert.py).
To fine-tune on other classes instead, pass the .pth to
``kinetics.train --weights``.
"""

from absl import flags, logging

from kinetics import models
from vidcore import cli, torch_io, training
from vidcore.errors import UserInputError

FLAGS = flags.FlagValues()
flags.DEFINE_enum("model", None, list(models.MODELS),
                  "torchvision model the weights belong to.",
                  flag_values=FLAGS)
flags.DEFINE_string("weights", None, "torchvision state dict (.pth).",
                    flag_values=FLAGS)
flags.DEFINE_string("output_dir", None,
                    "New directory: model_config.json + TF checkpoint.",
                    flag_values=FLAGS)
flags.DEFINE_integer("clip_len", 16,
                     "Frames per clip recorded for evaluation (S3D needs "
                     ">= 14).", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_string("keras_file", None,
                    "Also save the Keras model to this .keras file.",
                    flag_values=FLAGS)


def convert(model_name, weights, output_dir, clip_len=16, keras_file=None):
    """Converts a torchvision state dict file; returns (ModelConfig, path).

    Raises:
        UserInputError: unreadable file, weights of another model, or
            output_dir already holding a checkpoint.
    """
    state = torch_io.read_state_dict(
        weights, expected=f"a torchvision {model_name} state dict")
    num_classes = models.torchvision_num_classes(model_name, state,
                                                 f"--weights={weights}")
    resize, crop = models.DEFAULT_GEOMETRY[model_name]
    cfg = models.ModelConfig(model=model_name, num_classes=num_classes,
                             clip_len=clip_len, crop_size=crop, resize=resize)
    model = models.build_model(cfg)
    try:
        models.load_torchvision(model, model_name, state)
    except ValueError as e:
        raise UserInputError(f"--weights={weights}: {e}") from e
    try:
        path = training.save_model_checkpoint(model, output_dir,
                                              keras_file=keras_file)
    except ValueError as e:
        raise UserInputError(str(e)) from e
    models.save_config(output_dir, cfg)
    logging.info("wrote %s (%d tensors)", path, len(state))
    return cfg, path


def main(argv):
    if len(argv) > 1:
        raise UserInputError(f"unexpected arguments {argv[1:]}")
    for name in ("model", "weights", "output_dir"):
        if not FLAGS[name].value:
            raise UserInputError(f"--{name} is required")
    cfg, path = convert(FLAGS.model, FLAGS.weights, FLAGS.output_dir,
                        clip_len=FLAGS.clip_len, keras_file=FLAGS.keras_file)
    print(f"Converted {FLAGS.weights} ({cfg.model}, {cfg.num_classes} "
          f"classes) to {path}")


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
