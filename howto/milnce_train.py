"""Train MIL-NCE (S3D-G + text) from raw video: ``python -m howto.milnce_train``.

The published command runs as it is, only the paths changed::

  python -m howto.milnce_train --n_display=1 \\
      --multiprocessing-distributed --batch_size=256 \\
      --num_thread_reader=40 --cudnn_benchmark=1 --pin_memory \\
      --checkpoint_dir=milnce --num_candidates=4 --resume --lr=0.001 \\
      --warmup_steps=10000 --epochs=300 --caption_root=path_to_howto_csv \\
      --video_path=path_to_howto_videos \\
      --word2vec_path=data/word2vec.pth --token_to_word_path=data/dict.npy

(preset: ``--flagfile=configs/howto/milnce_howto100m.flags``). A folder of raw
videos in ``--video_path`` is converted once into TFRecords (with
``--train_csv`` and ``--caption_root``); shards from
``tfrecord_tools.milnce_writer`` are read directly.

What one step does (Miech et al. 2020, Sec. 3): each video gives one clip of
``--num_frames`` frames at ``--fps`` around a random caption and the
``--num_candidates`` captions nearest to it; S3D-G embeds the clip, the text
branch the captions, and the MIL-NCE loss contrasts each clip's bag of
captions against every other clip and caption of the GLOBAL batch (the
embeddings of all replicas and hosts are gathered inside the step). Adam,
``--warmup_steps`` of linear warm-up then a cosine decay to 0 over
``--epochs`` (the original's ``get_cosine_schedule_with_warmup``, stepped per
batch). ``--batch_size`` is the batch of one host, as in the original
(its GPUs split it); the global batch is batch_size x hosts. Checkpoints go
to ``<checkpoint_root>/<checkpoint_dir>``, with TensorBoard events; a run
resumes from its folder automatically (``--resume`` is accepted).
``--evaluate`` adds zero-shot YouCook2 retrieval after every epoch.
``--dry_run`` prints the model and its trainable parameter count.
"""

import os

import keras
import tensorflow as tf
from absl import logging

from howto import milnce_data, milnce_eval_cli, milnce_model
from howto import milnce_weights
from howto import milnce_flags as mflags
from input_pipeline import milnce as reader
from input_pipeline import records
from vidcore import cli, distribute, losses, schedules, training
from vidcore import files as vfiles
from vidcore.errors import UserInputError

FLAGS = mflags.FLAGS
# The release's word table: used by --dry_run when no table file is at hand.
RELEASE_VOCAB_ROWS = 66250
RELEASE_WORD_DIM = 300


def train_dir():
    if not FLAGS.checkpoint_dir:
        raise UserInputError("--checkpoint_dir is required (the run folder "
                             "under --checkpoint_root)")
    return os.path.join(FLAGS.checkpoint_root, FLAGS.checkpoint_dir)


def model_config(vocab_rows, word_dim):
    return milnce_model.MilNCEConfig(
        embedding_dim=FLAGS.num_class,
        space_to_depth=bool(FLAGS.space_to_depth),
        vocab_size=vocab_rows, word_dim=word_dim,
        sync_bn=bool(FLAGS.sync_bn))


def dry_run():
    if tf.io.gfile.exists(FLAGS.word2vec_path):
        words, table = milnce_weights.load_word_table(
            FLAGS.word2vec_path, FLAGS.token_to_word_path)
        rows, dim = table.shape
        source = FLAGS.word2vec_path
    else:
        rows, dim = RELEASE_VOCAB_ROWS, RELEASE_WORD_DIM
        source = "the release's size (no --word2vec_path file)"
    cfg = model_config(rows, dim)
    model = milnce_model.build_milnce_model(cfg)
    model.summary(line_length=110, expand_nested=False)
    count = training.count_trainable_params(model)
    frozen = sum(int(w.shape.num_elements() or 0)
                 for w in model.non_trainable_weights
                 if "word_embd" in w.path)
    print(f"Word table: {rows:,} x {dim} from {source} "
          f"({frozen:,} frozen entries)")
    print(f"Trainable parameters: {count:,}")
    return count


def training_files(run_dir, strategy):
    """Shards of the training videos (converting raw videos once)."""
    files = milnce_data.shard_files(FLAGS.video_path) if FLAGS.video_path \
        else []
    if files:
        return files
    if not FLAGS.video_path:
        raise UserInputError("--video_path is required (raw videos or "
                             "TFRecord shards), or --dry_run")
    if not (FLAGS.train_csv and FLAGS.caption_root):
        raise UserInputError(
            f"--video_path={FLAGS.video_path} holds no TFRecord shards: "
            "to convert raw videos give --train_csv and --caption_root too")
    if distribute.num_input_pipelines(strategy) > 1:
        raise UserInputError(
            "with several workers, convert the videos first (python -m "
            "tfrecord_tools.milnce_writer --dataset=howto100m ...) and pass "
            "the shards with --video_path")
    return milnce_data.converted_records(
        "howto100m", FLAGS.video_path,
        FLAGS.records_dir or os.path.join(run_dir, "records"), "video_path",
        [f"--train_csv={FLAGS.train_csv}",
         f"--caption_root={FLAGS.caption_root}", f"--fps={FLAGS.fps}",
         f"--short_side={FLAGS.short_side}"], prefix="train")


def youcook_evaluation(strategy, run_dir, words):
    """(on_epoch_end callback or None) for --evaluate."""
    if not FLAGS.evaluate:
        return None
    return milnce_eval_cli.epoch_evaluation(strategy, run_dir, words)


def main(argv):
    del argv
    mflags.log_torch_only_flags()
    if FLAGS.dry_run:
        return dry_run()
    strategy = distribute.make_strategy(FLAGS.strategy, FLAGS.tpu)
    distribute.configure_mixed_precision(FLAGS.mixed_precision)
    keras.utils.set_random_seed(FLAGS.seed)
    run_dir = train_dir()
    hosts = distribute.num_input_pipelines(strategy)
    local = strategy.num_replicas_in_sync // hosts
    if FLAGS.batch_size % local:
        raise UserInputError(f"--batch_size={FLAGS.batch_size} (one host's "
                             f"batch) must be a multiple of its {local} "
                             f"replicas")
    per_replica = FLAGS.batch_size // local
    global_batch = per_replica * strategy.num_replicas_in_sync

    words, table = milnce_weights.load_word_table(FLAGS.word2vec_path,
                                                  FLAGS.token_to_word_path)
    cfg = model_config(*table.shape)
    encoder = milnce_weights.text_encoder(words)
    files = training_files(run_dir, strategy)
    epoch_steps = FLAGS.steps_per_epoch or records.steps_per_epoch(
        files, global_batch, unit="videos")
    max_steps = FLAGS.max_steps or FLAGS.epochs * epoch_steps
    clip_cfg = mflags.clip_config(training=True)
    chief = distribute.is_chief(strategy)
    if chief:
        milnce_weights.save_run_record(run_dir, cfg, words)
    logging.info("%d training shard(s); %d steps per epoch of %d clips; %d "
                 "steps in all", len(files), epoch_steps, global_batch,
                 max_steps)

    options = tf.data.Options()
    if FLAGS.num_thread_reader > 0:
        options.threading.private_threadpool_size = FLAGS.num_thread_reader

    def dataset_fn(ctx, seed):
        return reader.training_dataset(
            files, clip_cfg, ctx.get_per_replica_batch_size(global_batch),
            encoder, input_context=ctx, seed=FLAGS.seed + seed,
            shuffle_buffer=FLAGS.shuffle_buffer).with_options(options)

    def per_example_loss(labels, outputs):
        del labels
        return losses.cross_replica_milnce(outputs["video_embedding"],
                                           outputs["text_embedding"])

    def build():
        model = milnce_model.build_milnce_model(cfg)
        milnce_model.set_word_embeddings(model, table)
        return model

    schedule = schedules.WarmupCosineDecay(FLAGS.lr, FLAGS.warmup_steps,
                                           FLAGS.epochs * epoch_steps)
    optimizer_kwargs = ({"momentum": FLAGS.momemtum}
                        if FLAGS.optimizer == "sgd" else {})
    evaluator = youcook_evaluation(strategy, run_dir, words)
    trainer = training.Trainer(
        strategy,
        training.LoopConfig(
            train_dir=run_dir, per_replica_batch_size=per_replica,
            max_steps=max_steps, steps_per_epoch=epoch_steps,
            checkpoint_every_steps=FLAGS.checkpoint_every_steps,
            log_every_steps=FLAGS.n_display,
            keep_checkpoints=FLAGS.keep_checkpoints,
            verbose=bool(FLAGS.verbose),
            steps_per_loop=FLAGS.steps_per_loop),
        build_model=build,
        build_optimizer=lambda gb: training.make_optimizer(
            "torch_sgd" if FLAGS.optimizer == "sgd" else "adam", schedule,
            loss_scale=FLAGS.mixed_precision == "mixed_float16",
            **optimizer_kwargs),
        per_example_loss=per_example_loss,
        dataset_fn=dataset_fn,
        on_epoch_end=(lambda epoch, step: evaluator(trainer.model, epoch,
                                                     step))
        if evaluator else None)
    if chief:
        logging.info("%s trainable parameters",
                     f"{training.count_trainable_params(trainer.model):,}")
    if FLAGS.pretrain_cnn_path and not tf.train.latest_checkpoint(run_dir):
        milnce_weights.load_pretrained(trainer.model, FLAGS.pretrain_cnn_path)
        logging.info("initialised from %s", FLAGS.pretrain_cnn_path)
    step = trainer.train()
    if chief:
        training.cleanup_worker_dirs(run_dir)
        print(f"Training finished at step {step}; checkpoints in "
              f"{vfiles.display_path(run_dir)}")
    return step


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
