"""Train a YouTube-8M model: ``python -m yt8m.train --train_data_pattern=...``.

Every flag of the published Kaggle-winner commands works unchanged (only the
data path differs); presets are in configs/yt8m/*.flags (``--flagfile``).
``--dry_run`` builds the model and prints its summary and trainable
parameter count without reading data.
"""


import keras
import tensorflow as tf
from absl import flags, logging

from input_pipeline import records
from input_pipeline import yt8m as reader
from vidcore import cli, distribute, losses, training
from vidcore import files as vfiles
from vidcore.errors import UserInputError
from yt8m import flags as yflags
from yt8m.models import build_model, count_trainable_params

FLAGS = flags.FLAGS

cli.flag_topic("data")
flags.DEFINE_string("train_data_pattern", "",
                    "Glob(s) of the training TFRecord shards.")
cli.flag_topic("training")
flags.DEFINE_bool("dry_run", False,
                  "Build the model from the flags, print its summary and "
                  "trainable parameter count, and exit without data.")
flags.DEFINE_integer("shuffle_buffer", 1024, "Records in the shuffle buffer.")
flags.DEFINE_integer("checkpoint_every_steps", 1000,
                     "Steps between checkpoints (resume restarts from the "
                     "latest one).")
flags.DEFINE_integer("log_every_steps", 100,
                     "Steps between TensorBoard scalars.")
flags.DEFINE_integer("steps_per_loop", 10,
                     "Training steps per tf.function call (losses reach the "
                     "host once per call; calls end on log, checkpoint and "
                     "max_steps boundaries).", lower_bound=1)
flags.DEFINE_integer("keep_checkpoints", 5, "Checkpoints kept in train_dir.")
flags.DEFINE_integer("seed", None, "Random seed (weights, sampling).")
flags.DEFINE_bool("keep_worker_checkpoints", False,
                  "Multi-worker: keep each non-chief worker's final "
                  "checkpoint in <train_dir>/.workers (to check that all "
                  "workers end with identical weights).")


def learning_rate_schedule(global_batch_size):
    """Staircase decay by examples seen: lr * decay^floor(examples / N)."""
    return keras.optimizers.schedules.ExponentialDecay(
        FLAGS.base_learning_rate,
        decay_steps=FLAGS.learning_rate_decay_examples / global_batch_size,
        decay_rate=FLAGS.learning_rate_decay, staircase=True)


def epoch_budget(source, strategy, global_batch):
    """(examples per pass per input pipeline, the step where --num_epochs
    passes end), or (None, None) without --num_epochs.

    Pipeline i reads shards i, i+k, ... (records.training_file_dataset).
    Records are counted from the converter's manifest, else by reading."""
    if not FLAGS.num_epochs:
        return None, None
    k = distribute.num_input_pipelines(strategy)
    counts = []
    for i in range(k):
        files = source.files[i::k]
        count = records.manifest_record_count(files)
        if count is None:
            logging.info("--num_epochs: counting the records of %d shard(s)",
                         len(files))
            count = records.count_records(files)
        counts.append(count)
    return counts, training.epochs_end_step(FLAGS.num_epochs, counts,
                                            global_batch)


def dry_run(model_cfg):
    model = build_model(model_cfg)
    model.summary(line_length=110, expand_nested=False)
    count = count_trainable_params(model)
    print(f"Trainable parameters: {count:,} ({FLAGS.model}, "
          f"{model_cfg.num_classes} classes)")
    return count


def main(argv):
    del argv
    strategy = distribute.make_strategy(FLAGS.strategy, FLAGS.tpu)
    distribute.configure_mixed_precision(FLAGS.mixed_precision)
    if FLAGS.seed is not None:
        keras.utils.set_random_seed(FLAGS.seed)
    model_cfg = yflags.model_config_from_flags()
    if FLAGS.dry_run:
        return dry_run(model_cfg)
    if not FLAGS.train_data_pattern:
        raise UserInputError("--train_data_pattern is required (or "
                             "--dry_run to only build the model)")
    names, _ = yflags.feature_names_and_sizes()
    reader_cfg = yflags.reader_config(model_cfg, names)
    source = reader.Source.from_pattern(FLAGS.train_data_pattern, reader_cfg,
                                        "--train_data_pattern")
    logging.info("%d training shards, id key %r", len(source.files),
                 source.id_key)
    chief = distribute.is_chief(strategy)
    if chief and FLAGS.start_new_model and tf.io.gfile.exists(
            FLAGS.train_dir):
        logging.info("--start_new_model: removing %s", FLAGS.train_dir)
        tf.io.gfile.rmtree(FLAGS.train_dir)
    if chief:
        yflags.record_model_flags(FLAGS.train_dir, model_cfg)
    counter = (records.CorruptionCounter() if FLAGS.skip_corrupt_records
               else None)

    global_batch = FLAGS.batch_size * strategy.num_replicas_in_sync
    epoch_counts, epochs_end = epoch_budget(source, strategy, global_batch)
    max_steps = FLAGS.max_steps
    if epochs_end is not None:
        max_steps = min(max_steps or epochs_end, epochs_end)

    def dataset_fn(ctx, seed):
        batch = ctx.get_per_replica_batch_size(global_batch)
        num_epochs = FLAGS.num_epochs
        if epoch_counts:  # a resumed run reads only the passes left
            num_epochs -= training.passes_done(
                trainer.start_step, epoch_counts[ctx.input_pipeline_id],
                global_batch // ctx.num_input_pipelines)
        return reader.training_dataset(
            source, reader_cfg, batch, input_context=ctx,
            seed=(FLAGS.seed or 0) + seed, shuffle_buffer=FLAGS.shuffle_buffer,
            num_epochs=num_epochs, counter=counter)

    clip = FLAGS.clip_gradient_norm if FLAGS.clip_gradient_norm > 0 else None
    trainer = training.Trainer(
        strategy,
        training.LoopConfig(
            train_dir=FLAGS.train_dir, per_replica_batch_size=FLAGS.batch_size,
            max_steps=max_steps,
            checkpoint_every_steps=FLAGS.checkpoint_every_steps,
            log_every_steps=FLAGS.log_every_steps,
            keep_checkpoints=FLAGS.keep_checkpoints,
            keep_worker_checkpoints=FLAGS.keep_worker_checkpoints,
            steps_per_loop=FLAGS.steps_per_loop,
            examples_per_epoch=sum(epoch_counts) if epoch_counts else None),
        build_model=lambda: build_model(model_cfg),
        build_optimizer=lambda gb: training.make_optimizer(
            "tf1_adam", learning_rate_schedule(gb), clip_norm=clip,
            loss_scale=FLAGS.mixed_precision == "mixed_float16"),
        per_example_loss=losses.multilabel_cross_entropy,
        dataset_fn=dataset_fn,
        regularization_weight=FLAGS.regularization_penalty)
    if chief:
        logging.info("%s: %s trainable parameters", FLAGS.model,
                     f"{count_trainable_params(trainer.model):,}")
    step = trainer.train()
    if counter is not None:
        logging.warning("skipped while training: %s", counter.result())
    if chief:
        if not FLAGS.keep_worker_checkpoints:
            training.cleanup_worker_dirs(FLAGS.train_dir)
        print(f"Training finished at step {step}; checkpoints in "
              f"{vfiles.display_path(FLAGS.train_dir)}")
    return step


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
