"""Train the HowTo100M text-video embedding: ``python -m howto.train``.

The published commands run with their own flags; only the data flags name
TFRecord shards made once by the converters (presets in configs/howto/):

* HowTo100M from scratch: ``--epochs=15 --batch_size=32 --n_pair=64
  --embd_dim=4096 --train_data=...`` (lr 1e-4, decay 0.9 per epoch,
  margin 0.1, negative weighting);
* MSR-VTT from scratch: ``--msrvtt=1 --eval_msrvtt=1 --epochs=100
  --batch_size=32 --n_pair=1 --embd_dim=4096 --negative_weighting=0``;
* MSR-VTT fine-tuning of the released model: ``--msrvtt=1 --eval_msrvtt=1
  --batch_size=256 --epochs=50 --lr_decay=1.0 --embd_dim=6144
  --pretrain_path=howto100m_pt_model.pth``.

The loss is the max-margin ranking loss over the global batch (embeddings
are gathered across replicas, so any replica count gives the one-device
loss); ``--batch_size`` is the global number of videos, as in the original.
``--dry_run`` prints the model summary and trainable parameter count.
"""


import keras
import tensorflow as tf
from absl import flags, logging

from howto import evaluation
from howto import flags as hflags
from howto import weights
from howto.models import build_model
from input_pipeline import howto as reader
from input_pipeline import records
from vidcore import cli, distribute, losses, metrics, training
from vidcore import files as vfiles
from vidcore.errors import UserInputError

FLAGS = hflags.FLAGS
flags.DEFINE_bool(
    "dry_run",
    False,
    "Build the model, print its summary and trainable "
    "parameter count, and exit without data.",
    flag_values=FLAGS,
)


def dry_run(cfg):
    model = build_model(cfg)
    model.summary(line_length=110)
    count = training.count_trainable_params(model)
    print(
        f"Trainable parameters: {count:,} (embd_dim {cfg.embd_dim}, "
        f"feature_dim {cfg.feature_dim})"
    )
    return count


def training_source():
    """(flag name, glob) of the training data chosen by the flags."""
    chosen = [
        (n, p)
        for on, n, p in (
            (FLAGS.msrvtt, "msrvtt_train_path", FLAGS.msrvtt_train_path),
            (FLAGS.youcook, "youcook_train_path", FLAGS.youcook_train_path),
            (FLAGS.lsmdc, "lsmdc_train_path", FLAGS.lsmdc_train_path),
        )
        if on
    ]
    if len(chosen) > 1:
        raise UserInputError("choose one of --msrvtt, --youcook, --lsmdc")
    name, pattern = chosen[0] if chosen else ("train_data", FLAGS.train_data)
    if not pattern:
        raise UserInputError(
            f"--{name} is required (a glob of TFRecord "
            f"shards), or --dry_run to only build the model"
        )
    return name, pattern


def check_flags(kind, global_batch):
    if FLAGS.batch_size < 1 or FLAGS.n_pair < 1:
        raise UserInputError("--batch_size and --n_pair must be positive")
    if kind == "clips" and FLAGS.n_pair != 1:
        logging.warning(
            "clip records give one clip per record: --n_pair=%d is used as 1",
            FLAGS.n_pair,
        )
    if (
        FLAGS.negative_weighting
        and FLAGS.n_pair > 1
        and kind == "videos"
        and global_batch < 2
    ):
        raise UserInputError("--negative_weighting needs --batch_size >= 2")


def main(argv):
    del argv
    hflags.check_release_file_flags()
    if not FLAGS.gpu_mode:
        tf.config.set_visible_devices([], "GPU")
    cfg = hflags.model_config_from_flags()
    if FLAGS.dry_run:
        return dry_run(cfg)
    strategy = distribute.make_strategy(FLAGS.strategy, FLAGS.tpu)
    distribute.configure_mixed_precision(FLAGS.mixed_precision)
    keras.utils.set_random_seed(FLAGS.seed)
    replicas = strategy.num_replicas_in_sync
    if FLAGS.batch_size % replicas:
        raise UserInputError(
            f"--batch_size={FLAGS.batch_size} must be a "
            f"multiple of the {replicas} replicas"
        )
    per_replica = FLAGS.batch_size // replicas

    flag_name, pattern = training_source()
    files = records.list_files(pattern, f"--{flag_name}")
    kind = reader.detect_kind(files)
    streams, dims = reader.detect_streams(files, kind)
    if sum(dims) != cfg.feature_dim:
        raise UserInputError(
            f"--feature_dim={cfg.feature_dim} but the shards of "
            f"--{flag_name} hold streams {streams} of sizes {dims} "
            f"(total {sum(dims)})"
        )
    check_flags(kind, FLAGS.batch_size)
    n_pair = FLAGS.n_pair if kind == "videos" else 1
    clip_cfg = reader.ClipConfig(
        streams=streams,
        dims=dims,
        n_pair=n_pair,
        min_time=FLAGS.min_time,
        min_words=FLAGS.min_words,
        max_words=FLAGS.max_words,
    )
    encoder = weights.text_encoder(FLAGS.word2vec_path, cfg.we_dim)
    eval_sets = {
        name: records.list_files(p, name)
        for name, p in hflags.eval_sets_from_flags().items()
    }
    for name, set_files in eval_sets.items():
        set_dims = reader.detect_streams(set_files, "clips")
        if set_dims != (streams, dims):
            raise UserInputError(
                f"{name} test clips have streams {set_dims} "
                f"but the training data {(streams, dims)}"
            )
    epoch_steps = FLAGS.steps_per_epoch or records.steps_per_epoch(
        files, FLAGS.batch_size)
    max_steps = FLAGS.max_steps or FLAGS.epochs * epoch_steps
    chief = distribute.is_chief(strategy)
    if chief:
        hflags.write_model_record(
            FLAGS.checkpoint_dir, cfg, FLAGS.word2vec_path
        )
    logging.info(
        "%s: %d %s shard(s), streams %s %s; %d steps per epoch of %d %s",
        flag_name,
        len(files),
        kind,
        streams,
        dims,
        epoch_steps,
        FLAGS.batch_size,
        kind,
    )

    options = tf.data.Options()
    if FLAGS.num_thread_reader > 0:
        options.threading.private_threadpool_size = FLAGS.num_thread_reader

    def dataset_fn(ctx, seed):
        return reader.training_dataset(
            files,
            kind,
            clip_cfg,
            encoder,
            per_replica,
            input_context=ctx,
            seed=FLAGS.seed + seed,
            shuffle_buffer=FLAGS.shuffle_buffer,
        ).with_options(options)

    def per_example_loss(labels, outputs):
        del labels
        return losses.cross_replica_max_margin(
            outputs["text"],
            outputs["video"],
            n_pair,
            margin=FLAGS.margin,
            negative_weighting=bool(FLAGS.negative_weighting and n_pair > 1),
            hard_negative_rate=FLAGS.hard_negative_rate,
        )

    def on_epoch_end(epoch, step):
        if not eval_sets:
            return {}
        results = evaluation.evaluate_sets(
            strategy,
            trainer.model,
            eval_sets,
            clip_cfg,
            encoder,
            FLAGS.batch_size_val,
            ties=FLAGS.ties,
        )
        if chief:
            print(
                f"\nEpoch {epoch:g} (step {step}):\n"
                + metrics.format_retrieval_table(results)
            )
        return {
            f"{row}/{k}": v
            for row, m in results.items()
            for k, v in m.items()
            if k != "num_queries"
        }

    schedule = keras.optimizers.schedules.ExponentialDecay(
        FLAGS.lr,
        decay_steps=epoch_steps,
        decay_rate=FLAGS.lr_decay,
        staircase=True,
    )
    trainer = training.Trainer(
        strategy,
        training.LoopConfig(
            train_dir=FLAGS.checkpoint_dir,
            per_replica_batch_size=per_replica,
            max_steps=max_steps,
            steps_per_epoch=epoch_steps,
            checkpoint_every_steps=FLAGS.checkpoint_every_steps,
            log_every_steps=max(1, FLAGS.n_display),
            keep_checkpoints=FLAGS.keep_checkpoints,
            verbose=bool(FLAGS.verbose),
            steps_per_loop=FLAGS.steps_per_loop,
        ),
        build_model=lambda: build_model(cfg),
        build_optimizer=lambda gb: training.make_optimizer(
            "adam",
            schedule,
            loss_scale=FLAGS.mixed_precision == "mixed_float16",
        ),
        per_example_loss=per_example_loss,
        dataset_fn=dataset_fn,
        on_epoch_end=on_epoch_end,
    )
    if chief:
        logging.info(
            "%s trainable parameters",
            f"{training.count_trainable_params(trainer.model):,}",
        )
    if FLAGS.pretrain_path and not tf.train.latest_checkpoint(
        FLAGS.checkpoint_dir
    ):
        weights.load_pretrained(trainer.model, FLAGS.pretrain_path)
        logging.info("initialised from %s", FLAGS.pretrain_path)
    step = trainer.train()
    if eval_sets and step % epoch_steps:
        on_epoch_end(step / epoch_steps, step)  # stopped mid-epoch
    if chief:
        training.cleanup_worker_dirs(FLAGS.checkpoint_dir)
        print(
            f"Training finished at step {step}; checkpoints in "
            f"{vfiles.display_path(FLAGS.checkpoint_dir)}"
        )
    return step


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
