"""Train AVLnet, AVLnet-Text-Tri or AVLnet-Text-Fused: ``python -m avl.train``.

Every published command runs with its own flags, only the data paths
changed (presets in configs/avl/, ``--flagfile``): the three HowTo100M
training commands (``--train_data`` = shards of tfrecord_tools.howto_writer
with ``--features_path_audio``) and the release's evaluate / fine-tune
commands on YouCook2, MSR-VTT, CrossTask and YouCook-Japanese
(``--youcook=1 --eval_youcook=1`` / ``--msrvtt=1 --eval_msrvtt=1`` with
shards of tfrecord_tools.howto_eval_sets ``--allow_pickle``; the pickle
path flags take the shard globs). E.g. AVLnet on HowTo100M::

  python -m avl.train --flagfile=configs/avl/avlnet_howto100m.flags \\
      --train_data=shards/train-*

One step: ``--batch_size`` videos (global, as the original's DataParallel
batch) give ``--n_pair`` clips each (input_pipeline.avl); the model embeds
them and the loss sums the masked margin softmax of each pair of
:func:`avl.models.loss_pairs` over the GLOBAL batch (the embeddings of all
replicas are gathered, as DataParallel gathered them on one GPU). Adam,
learning rate ``--lr`` times ``--lr_decay`` after every epoch, a checkpoint
every epoch (and every ``--checkpoint_every_steps``); a run resumes from
``--checkpoint_dir`` by itself, so ``--epochs`` counts all epochs, done
ones included. ``--pretrain_path`` starts a new run from a released .pth or
our checkpoint. With ``--eval_youcook`` / ``--eval_msrvtt``, retrieval is
printed before training (a new run) and after every epoch, as the original
did. ``--apex_level=1`` trains in mixed_float16. ``--dry_run`` prints the
model summary and ``Trainable parameters: N``.
"""


import keras
import tensorflow as tf
from absl import flags, logging

from avl import evaluation
from avl import flags as aflags
from avl import weights
from avl.models import build_model, loss_pairs
from howto import weights as howto_weights
from input_pipeline import avl as reader
from input_pipeline import howto as howto_reader
from input_pipeline import records
from vidcore import cli, distribute, losses, training
from vidcore import files as vfiles
from vidcore.errors import UserInputError

FLAGS = aflags.FLAGS
flags.DEFINE_bool("dry_run", False,
                  "Build the model, print its summary and trainable "
                  "parameter count, and exit without data.",
                  flag_values=FLAGS)


def dry_run(cfg):
    model = build_model(cfg)
    model.summary(line_length=110)
    count = training.count_trainable_params(model)
    print(f"Trainable parameters: {count:,} ({model.name}, embd_dim "
          f"{cfg.embd_dim}, feature_dim {cfg.feature_dim})")
    return count


def mms_loss_fn(cfg, n_pair):
    """(labels, outputs) -> per-video loss [videos]: the MMS of every pair
    of loss_pairs(cfg) summed, averaged over each video's n_pair clips (so
    the Trainer's mean over videos is the mean over all clips)."""
    pairs = loss_pairs(cfg)

    def per_example_loss(labels, outputs):
        del labels
        per_clip = tf.add_n([losses.cross_replica_mms(outputs[a], outputs[b])
                             for a, b in pairs])  # [videos * n_pair]
        # [videos * n_pair] -> [videos, n_pair]
        return tf.reduce_mean(tf.reshape(per_clip, [-1, n_pair]), axis=1)

    return per_example_loss


def training_data(cfg):
    """(files, kind, AVLClipConfig, flag name) of the training source."""
    flag_name, pattern, dataset = aflags.training_source()
    files = records.list_files(pattern, f"--{flag_name}")
    kind = howto_reader.detect_kind(files)
    want = "videos" if dataset == "howto" else "clips"
    if kind != want:
        raise UserInputError(f"--{flag_name} holds {kind} records; expected "
                             f"{want} records")
    clip_cfg = aflags.clip_config(files, kind, dataset, cfg)
    if kind == "clips" and FLAGS.n_pair != 1:
        logging.warning("clip records give one clip per record: --n_pair=%d "
                        "is used as 1", FLAGS.n_pair)
    return files, kind, clip_cfg, flag_name


def initial_weights(model, cfg):
    """--pretrain_path into a new run's model (checked against the flags)."""
    path = FLAGS.pretrain_path
    state = (weights.read_state_dict(path)
             if weights.is_torch_checkpoint(path) else None)
    stored = weights.stored_config(path, state, cfg.max_words)
    if stored is not None:
        weights.check_same_model(cfg, stored[0], path)
    weights.load_pretrained(model, path, state)
    logging.info("initialised from %s", path)


def main(argv):
    del argv
    aflags.check_flags()
    cfg = aflags.model_config_from_flags()
    if FLAGS.dry_run:
        return dry_run(cfg)
    if FLAGS.batch_size < 1 or FLAGS.n_pair < 1:
        raise UserInputError("--batch_size and --n_pair must be positive")
    strategy = distribute.make_strategy(FLAGS.strategy, FLAGS.tpu)
    distribute.configure_mixed_precision(aflags.precision_from_flags())
    keras.utils.set_random_seed(FLAGS.seed)
    replicas = strategy.num_replicas_in_sync
    if FLAGS.batch_size % replicas:
        raise UserInputError(f"--batch_size={FLAGS.batch_size} must be a "
                             f"multiple of the {replicas} replicas")
    per_replica = FLAGS.batch_size // replicas
    files, kind, clip_cfg, flag_name = training_data(cfg)
    # Words: the text branch's input, or the caption spans' growth rule.
    needs_words = clip_cfg.needs_text or (
        kind == "videos" and not clip_cfg.random_audio_windows)
    encoder = (howto_weights.text_encoder(FLAGS.word2vec_path, cfg.we_dim)
               if needs_words else None)
    eval_sets = aflags.eval_sets(cfg)
    epoch_steps = FLAGS.steps_per_epoch or records.steps_per_epoch(
        files, FLAGS.batch_size, kind)
    max_steps = FLAGS.max_steps or FLAGS.epochs * epoch_steps
    chief = distribute.is_chief(strategy)
    if chief:
        aflags.write_run_record(FLAGS.checkpoint_dir, cfg,
                                FLAGS.word2vec_path)
    logging.info("--%s: %d %s shard(s), streams %s %s; %d steps per epoch "
                 "of %d %s x %d clips", flag_name, len(files), kind,
                 clip_cfg.streams, clip_cfg.dims, epoch_steps,
                 FLAGS.batch_size, kind, clip_cfg.n_pair)
    options = tf.data.Options()
    if FLAGS.num_thread_reader > 0:
        options.threading.private_threadpool_size = FLAGS.num_thread_reader

    def dataset_fn(ctx, seed):
        return reader.training_dataset(
            files, kind, clip_cfg, encoder, per_replica, input_context=ctx,
            seed=FLAGS.seed + seed,
            shuffle_buffer=FLAGS.shuffle_buffer).with_options(options)

    def evaluate(epoch, step):
        if not eval_sets:
            return {}
        results = evaluation.evaluate_sets(
            strategy, trainer.model, cfg, eval_sets, encoder,
            FLAGS.batch_size_val, lang_retrieval=bool(
                FLAGS.eval_lang_retrieval), ties=FLAGS.ties)
        if chief:
            print(f"\nEpoch {epoch:g} (step {step}):\n"
                  + evaluation.report(results), flush=True)
        return {f"{row}/{k}": v for row, m in results.items()
                for k, v in m.items() if k.startswith(("R@", "MedR"))}

    schedule = keras.optimizers.schedules.ExponentialDecay(
        FLAGS.lr, decay_steps=epoch_steps, decay_rate=FLAGS.lr_decay,
        staircase=True)
    trainer = training.Trainer(
        strategy,
        training.LoopConfig(
            train_dir=FLAGS.checkpoint_dir, per_replica_batch_size=per_replica,
            max_steps=max_steps, steps_per_epoch=epoch_steps,
            checkpoint_every_steps=FLAGS.checkpoint_every_steps,
            log_every_steps=max(1, FLAGS.n_display),
            keep_checkpoints=FLAGS.keep_checkpoints,
            verbose=bool(FLAGS.verbose), steps_per_loop=FLAGS.steps_per_loop),
        build_model=lambda: build_model(cfg),
        build_optimizer=lambda gb: training.make_optimizer(
            "adam", schedule, loss_scale=(
                aflags.precision_from_flags() == "mixed_float16")),
        per_example_loss=mms_loss_fn(cfg, clip_cfg.n_pair),
        dataset_fn=dataset_fn, on_epoch_end=evaluate)
    if chief:
        logging.info("%s trainable parameters",
                     f"{training.count_trainable_params(trainer.model):,}")
    if not tf.train.latest_checkpoint(FLAGS.checkpoint_dir):
        if FLAGS.pretrain_path:
            initial_weights(trainer.model, cfg)
        evaluate(0, 0)  # the original evaluates before its first epoch
    step = trainer.train()
    if eval_sets and step % epoch_steps:
        evaluate(step / epoch_steps, step)  # stopped mid-epoch
    if chief:
        training.cleanup_worker_dirs(FLAGS.checkpoint_dir)
        print(f"Training finished at step {step}; checkpoints in "
              f"{vfiles.display_path(FLAGS.checkpoint_dir)}")
    return step


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
