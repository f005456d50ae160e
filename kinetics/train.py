"""Train a Kinetics-style clip classifier: ``python -m kinetics.train``.

torchvision's video-classification recipe with its own flags (underscores
for dashes). Its published Kinetics-400 training (64 GPUs), in our terms:

    python -m kinetics.train --data_path=kinetics400 --model=r2plus1d_18 \\
        --clip_len=16 --clips_per_video=5 --batch_size=24 --epochs=45 \\
        --lr=0.01 --lr_warmup_epochs=10 --lr_milestones=20,30,40 \\
        --lr_gamma=0.1 --sync_bn --amp --output_dir=runs/r2plus1d

(presets in configs/kinetics/). As in the recipe, ``--batch_size`` is per
device, the learning rate is multiplied by the number of replicas, SGD
(PyTorch's momentum form) with coupled weight decay, linear warm-up then
step decay, per iteration. Clips: ``--clips_per_video`` random clips of
``--clip_len`` frames at ``--frame_rate`` per video and epoch, resized,
randomly cropped and flipped, normalised with the Kinetics mean/std (in
the training step, on the device: the reader hands over uint8 pixels where
frames are stored at the resize size). After
every epoch the model is evaluated on ``--val_dir`` (when it exists): clip
and video accuracy (top-1/top-5), also logged to TensorBoard.

``--weights=<torchvision .pth>`` starts from torchvision's weights (e.g.
Kinetics-400, to fine-tune on other classes: the classifier is then new);
``--dry_run`` prints the model summary and its parameter count.
"""

import os

import keras
import tensorflow as tf
from absl import flags, logging

from input_pipeline import video as reader
from kinetics import evaluation, models
from kinetics import flags as kflags
from vidcore import cli, distribute, schedules, torch_io, training
from vidcore import files as vfiles
from vidcore.errors import UserInputError

FLAGS = kflags.FLAGS
cli.flag_topic("training", FLAGS)
flags.DEFINE_integer("epochs", 45, "Training epochs.", flag_values=FLAGS)
flags.DEFINE_float("lr", 0.01, "Learning rate per device (multiplied by the "
                   "number of replicas).", flag_values=FLAGS)
flags.DEFINE_float("momentum", 0.9, "SGD momentum.", flag_values=FLAGS)
flags.DEFINE_float("weight_decay", 1e-4,
                   "L2 weight decay (PyTorch SGD's coupled form).",
                   flag_values=FLAGS)
flags.DEFINE_alias("wd", "weight_decay", flag_values=FLAGS)
flags.DEFINE_list("lr_milestones", ["20", "30", "40"],
                  "Epochs at which the learning rate is multiplied by "
                  "--lr_gamma.", flag_values=FLAGS)
flags.DEFINE_float("lr_gamma", 0.1, "Step decay factor.", flag_values=FLAGS)
flags.DEFINE_integer("lr_warmup_epochs", 10, "Warm-up epochs.",
                     flag_values=FLAGS)
flags.DEFINE_enum("lr_warmup_method", "linear",
                  list(schedules.WARMUP_METHODS), "Warm-up shape.",
                  flag_values=FLAGS)
flags.DEFINE_float("lr_warmup_decay", 0.001,
                   "Warm-up starts at this fraction of the rate.",
                   flag_values=FLAGS)
flags.DEFINE_bool("sync_bn", False,
                  "Synchronise batch-norm statistics across replicas "
                  "(normalise with the global batch). Without it each "
                  "replica normalises with its own batch and the moving "
                  "statistics are averaged across replicas at every step, "
                  "so evaluation and checkpoints use one copy.",
                  flag_values=FLAGS)
flags.DEFINE_integer("steps_per_epoch", 0,
                     "Steps per epoch (0: clips per epoch // global batch).",
                     flag_values=FLAGS)
flags.DEFINE_integer("max_steps", None,
                     "Stop after this step (default epochs * steps_per_epoch)",
                     flag_values=FLAGS)
flags.DEFINE_integer("print_freq", 10, "Steps between logged losses.",
                     flag_values=FLAGS)
flags.DEFINE_integer("checkpoint_every_steps", 1000,
                     "Steps between checkpoints (also one per epoch).",
                     flag_values=FLAGS)
flags.DEFINE_integer("steps_per_loop", 10,
                     "Training steps per tf.function call (losses reach the "
                     "host once per call; calls end on print, checkpoint and "
                     "epoch boundaries).", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer("keep_checkpoints", 5, "Checkpoints kept.",
                     flag_values=FLAGS)
flags.DEFINE_integer(
    "shuffle_buffer", 256,
    "Videos (their JPEG frames, ~1-3 MB each) in the record shuffle buffer.",
    flag_values=FLAGS)
flags.DEFINE_integer(
    "clip_shuffle_buffer", 0,
    "Decoded clips in the clip shuffle buffer (2.4 MB each at 16x112x112; "
    "0: max(2 x batch, 4 x clips_per_video)).", flag_values=FLAGS)
flags.DEFINE_bool("eval_each_epoch", True,
                  "Evaluate on --val_dir after every epoch (when it exists).",
                  flag_values=FLAGS)
flags.DEFINE_bool("dry_run", False,
                  "Print the model summary and parameter count; no data.",
                  flag_values=FLAGS)


def dry_run():
    resize, crop = kflags.geometry(FLAGS.model)
    cfg = models.ModelConfig(model=FLAGS.model,
                             num_classes=FLAGS.num_classes or 400,
                             clip_len=FLAGS.clip_len, crop_size=crop,
                             resize=resize)
    model = models.build_model(cfg)
    model.summary(line_length=110)
    count = training.count_trainable_params(model)
    print(f"Trainable parameters: {count:,} ({cfg.model}, "
          f"{cfg.num_classes} classes, input {cfg.clip_len}x{crop}x{crop})")
    return count


def milestones():
    try:
        values = [int(v) for v in FLAGS.lr_milestones]
    except ValueError:
        raise UserInputError(f"--lr_milestones must be epochs (integers), "
                             f"got {','.join(FLAGS.lr_milestones)}") from None
    if values != sorted(values):
        raise UserInputError(f"--lr_milestones must increase, got {values}")
    return values


def model_config(train_files):
    """The ModelConfig of this run, checked against --output_dir's."""
    labels = kflags.manifest_labels(train_files)
    num_classes = FLAGS.num_classes or (len(labels) if labels else 0)
    if not num_classes:
        raise UserInputError(
            "--num_classes is required: the converter's manifest beside the "
            "training shards lists no classes")
    resize, crop = kflags.geometry(FLAGS.model)
    cfg = models.ModelConfig(
        model=FLAGS.model, num_classes=num_classes, clip_len=FLAGS.clip_len,
        crop_size=crop, resize=resize, frame_rate=kflags.frame_rate(),
        class_names=tuple(labels) if labels and len(labels) == num_classes
        else ())
    old = models.read_config(FLAGS.output_dir)
    if old is not None and tf.train.latest_checkpoint(FLAGS.output_dir):
        for key in ("model", "num_classes"):
            if getattr(old, key) != getattr(cfg, key):
                raise UserInputError(
                    f"--output_dir={FLAGS.output_dir} holds a run of "
                    f"{key}={getattr(old, key)}, not {getattr(cfg, key)}; "
                    f"choose another --output_dir")
    return cfg


def steps_per_epoch(train_files, global_batch):
    if FLAGS.steps_per_epoch > 0:
        return FLAGS.steps_per_epoch
    videos = reader.num_videos(train_files)
    clips = videos * FLAGS.clips_per_video
    if clips < global_batch:
        raise UserInputError(
            f"{videos} training videos x {FLAGS.clips_per_video} clips are "
            f"fewer than one global batch of {global_batch}; lower "
            f"--batch_size")
    return clips // global_batch


def validation_files():
    path = os.path.join(FLAGS.data_path, FLAGS.val_dir)
    if not FLAGS.eval_each_epoch or not (tf.io.gfile.isdir(path)
                                         or tf.io.gfile.glob(path)):
        return []
    return kflags.split_files(FLAGS.val_dir, "val_dir")


def load_weights(model, cfg):
    """--weights (torchvision .pth) into a fresh model."""
    state = torch_io.read_state_dict(
        FLAGS.weights, expected=f"a torchvision {cfg.model} state dict")
    out_dim = models.torchvision_num_classes(cfg.model, state,
                                             f"--weights={FLAGS.weights}")
    skip_top = out_dim != cfg.num_classes
    try:
        models.load_torchvision(model, cfg.model, state, skip_top=skip_top)
    except ValueError as e:
        raise UserInputError(f"--weights={FLAGS.weights}: {e}") from e
    logging.info("initialised from %s%s", FLAGS.weights,
                 f" (new {cfg.num_classes}-class classifier instead of "
                 f"its {out_dim} classes)"
                 if skip_top else "")


def main(argv):
    del argv
    if FLAGS.dry_run:
        return dry_run()
    if FLAGS.cache_dataset:
        logging.info("--cache_dataset: the shards already hold decoded "
                     "frames; nothing to cache")
    if FLAGS.batch_size < 1 or FLAGS.clip_len < 1 or FLAGS.clips_per_video < 1:
        raise UserInputError("--batch_size, --clip_len and --clips_per_video "
                             "must be positive")
    policy = kflags.precision()
    strategy = distribute.make_strategy(FLAGS.strategy, FLAGS.tpu)
    distribute.configure_mixed_precision(policy)
    keras.utils.set_random_seed(FLAGS.seed)
    replicas = strategy.num_replicas_in_sync
    global_batch = FLAGS.batch_size * replicas

    train_files = kflags.split_files(FLAGS.train_dir, "train_dir")
    val_files = validation_files()
    cfg = model_config(train_files)
    kflags.check_same_classes(val_files, cfg.class_names, "val_dir")
    clip_cfg = reader.VideoClipConfig(
        clip_len=cfg.clip_len, frame_rate=cfg.frame_rate,
        clips_per_video=FLAGS.clips_per_video, resize=cfg.resize,
        crop_size=cfg.crop_size)
    epoch_steps = steps_per_epoch(train_files, global_batch)
    max_steps = FLAGS.max_steps or FLAGS.epochs * epoch_steps
    lr = FLAGS.lr * replicas  # linear scaling, as the recipe
    schedule = schedules.WarmupMultiStepDecay(
        lr, warmup_steps=epoch_steps * FLAGS.lr_warmup_epochs,
        warmup_factor=FLAGS.lr_warmup_decay,
        warmup_method=FLAGS.lr_warmup_method,
        milestones=[epoch_steps * m for m in milestones()],
        gamma=FLAGS.lr_gamma)
    chief = distribute.is_chief(strategy)
    if chief:
        models.save_config(FLAGS.output_dir, cfg)
    logging.info("%d training shard(s), %d classes; %d steps per epoch of "
                 "%d clips; learning rate %g (%g x %d replicas)",
                 len(train_files), cfg.num_classes, epoch_steps,
                 global_batch, lr, FLAGS.lr, replicas)

    options = tf.data.Options()
    if FLAGS.workers > 0:
        options.threading.private_threadpool_size = FLAGS.workers

    def dataset_fn(ctx, seed):
        return reader.training_dataset(
            train_files, clip_cfg, ctx.get_per_replica_batch_size(
                global_batch), input_context=ctx, seed=FLAGS.seed + seed,
            shuffle_buffer=FLAGS.shuffle_buffer,
            clip_shuffle_buffer=FLAGS.clip_shuffle_buffer or None,
            normalize=False,  # uint8 pixels, normalised in the step
        ).with_options(options)

    def per_example_loss(labels, logits):
        return keras.losses.sparse_categorical_crossentropy(
            labels, tf.cast(logits, tf.float32), from_logits=True)

    def on_epoch_end(epoch, step):
        if not val_files:
            return {}
        results = evaluation.evaluate(strategy, trainer.model, val_files,
                                      clip_cfg, global_batch)
        if chief:
            print(f"\nEpoch {epoch:g} (step {step}) validation: "
                  + evaluation.format_accuracy(results))
        return {k: v for k, v in results.items() if "acc" in k}

    trainer = training.Trainer(
        strategy,
        training.LoopConfig(
            train_dir=FLAGS.output_dir, per_replica_batch_size=FLAGS.batch_size,
            max_steps=max_steps, steps_per_epoch=epoch_steps,
            checkpoint_every_steps=FLAGS.checkpoint_every_steps,
            log_every_steps=max(1, FLAGS.print_freq),
            keep_checkpoints=FLAGS.keep_checkpoints,
            steps_per_loop=FLAGS.steps_per_loop),
        build_model=lambda: models.build_model(cfg, sync_bn=FLAGS.sync_bn),
        build_optimizer=lambda gb: training.make_optimizer(
            "torch_sgd", schedule, loss_scale=policy == "mixed_float16",
            momentum=FLAGS.momentum),
        per_example_loss=per_example_loss, dataset_fn=dataset_fn,
        on_epoch_end=on_epoch_end, weight_decay=FLAGS.weight_decay,
        prepare_inputs=lambda pixels: reader.normalize_clip_pixels(
            pixels, clip_cfg))
    if chief:
        logging.info("%s trainable parameters",
                     f"{training.count_trainable_params(trainer.model):,}")
    fresh = not tf.train.latest_checkpoint(FLAGS.output_dir)
    if FLAGS.resume and fresh:
        path = (tf.train.latest_checkpoint(FLAGS.resume)
                if tf.io.gfile.isdir(FLAGS.resume) else FLAGS.resume)
        if not path:
            raise UserInputError(f"--resume={FLAGS.resume}: no checkpoint")
        trainer.checkpoint.restore(path).assert_existing_objects_matched()
        logging.info("resumed from %s at step %d", path,
                     int(trainer.step.numpy()))
    elif FLAGS.resume:
        logging.warning("--resume ignored: %s has checkpoints of its own and "
                        "training resumes from them", FLAGS.output_dir)
    elif FLAGS.weights and fresh:
        load_weights(trainer.model, cfg)
    step = trainer.train()
    if val_files and step % epoch_steps:
        on_epoch_end(step / epoch_steps, step)  # stopped mid-epoch
    if chief:
        training.cleanup_worker_dirs(FLAGS.output_dir)
        print(f"Training finished at step {step}; checkpoints in "
              f"{vfiles.display_path(FLAGS.output_dir)}")
    return step


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
