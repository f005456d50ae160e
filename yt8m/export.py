"""Export a trained model for serving: ``python -m yt8m.export``.

Writes into ``--export_dir``:

* ``saved_model/``: a TensorFlow SavedModel whose ``serving_default``
  signature takes serialized records (``tf.train.SequenceExample`` for
  frame-level models, ``tf.train.Example`` for video-level ones) as a string
  vector ``serialized_examples`` and returns ``video_id`` (string [B]),
  ``class_indexes`` (int32 [B, k]) and ``predictions`` (float32 [B, k]), the
  top ``--top_k`` classes by score, like the starter code's export;
* ``model.keras``: the Keras model (architecture + weights), loadable with
  ``keras.saving.load_model`` after ``import yt8m.models``.
"""

import os

import tensorflow as tf
from absl import flags

from input_pipeline import yt8m as reader
from vidcore import cli
from vidcore.errors import UserInputError
from yt8m import flags as yflags
from yt8m import trained

FLAGS = flags.FLAGS

flags.DEFINE_string("export_dir", "",
                    "Output directory (saved_model/ and model.keras).")


class ServingModule(tf.Module):
    """Parses serialized records and returns the top-k classes."""

    def __init__(self, model, reader_cfg, id_key, top_k):
        super().__init__()
        self.model = model
        self.reader_cfg = reader_cfg
        self.id_key = id_key
        self.top_k = min(int(top_k), reader_cfg.num_classes)

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name="serialized_examples")])
    def serve(self, serialized_examples):
        names = tf.fill(tf.shape(serialized_examples), "serving input")
        inputs, _, extra = reader.parse_batch(self.reader_cfg, self.id_key,
                                              serialized_examples, names)
        predictions = self.model(inputs, training=False)
        scores, classes = tf.math.top_k(predictions, k=self.top_k)
        return {"video_id": extra["id"], "class_indexes": classes,
                "predictions": scores}


def export(train_dir, export_dir, top_k=20, id_key="id"):
    """Exports the latest checkpoint of train_dir; returns the paths."""
    model, model_cfg, names, _ = trained.load(train_dir)
    reader_cfg = yflags.reader_config(model_cfg, names)
    tf.io.gfile.makedirs(export_dir)
    keras_path = os.path.join(export_dir, "model.keras")
    model.save(keras_path)
    module = ServingModule(model, reader_cfg, id_key, top_k)
    saved_path = os.path.join(export_dir, "saved_model")
    tf.saved_model.save(module, saved_path,
                        signatures={"serving_default": module.serve})
    return saved_path, keras_path


def main(argv):
    del argv
    if not FLAGS.export_dir:
        raise UserInputError("--export_dir is required")
    id_key = "id" if FLAGS.id_key == "auto" else FLAGS.id_key
    saved, keras_path = export(FLAGS.train_dir, FLAGS.export_dir, FLAGS.top_k,
                               id_key)
    print(f"Exported SavedModel to {saved} and Keras model to {keras_path}")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
