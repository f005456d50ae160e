"""The training loop every family uses.

One custom loop that runs unchanged on one device, under MirroredStrategy and
under MultiWorkerMirroredStrategy. (Keras 3 ``fit()`` fails under
MultiWorkerMirroredStrategy on current releases, keras-team/keras#20585, so
the loop is ours; a single loop keeps the behaviour identical everywhere.)

Per step: forward pass, per-example loss averaged over the *global* batch,
plus the model's regularisation losses; gradients are all-reduced (summed)
across replicas first, then clipped and applied, so clipping sees the
gradient of the whole global batch exactly as on one device.

Several steps run inside one ``tf.function`` call (``steps_per_loop``, Keras'
``steps_per_execution`` in spirit): an accelerator then does not wait for the
host after every step. The per-step losses stay on the device and come back
once per call as small [n] tensors; the host replays them step by step into
the progress bar and TensorBoard, so both show what a one-step call shows. A
call never runs past the next log, checkpoint, epoch-end or max_steps
boundary, so those happen on their exact steps whatever steps_per_loop is.

The learning-rate schedule follows the loop's step (batches consumed, as the
TF1 global step did), not the optimizer's ``iterations``, which stand still
on the steps a LossScaleOptimizer skips for non-finite gradients.

Checkpoints (model, optimizer, step) are written every N steps and at the
end, and training resumes from the latest one automatically;
train_state.json also records the examples seen and the epochs completed.
TensorBoard gets loss, learning rate and examples/s; the console gets a
Keras progress bar.
"""

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from vidcore import distribute, progress
from vidcore.files import write_json_atomic

TRAIN_STATE_FILE = "train_state.json"


class _PrereducedGradients:
    """Optimizer mixin: gradients arrive already summed across replicas, and
    a learning-rate schedule may follow an outside step counter.

    Keras' TF optimizer all-reduces gradients inside ``apply`` *after*
    clipping them per replica; the loop reduces them itself before the
    optimizer (and its clipping) sees them, so this turns the second
    reduction off.

    Keras evaluates a schedule at ``iterations``, which a LossScaleOptimizer
    does not advance on the steps it skips; after :meth:`follow_step` the
    schedule is evaluated at the given step variable instead (the Trainer
    passes its loop step).
    """

    _schedule_step = None

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)

    def follow_step(self, step):
        """Evaluates a learning-rate schedule at ``step`` (a variable)."""
        self._schedule_step = step

    def _get_current_learning_rate(self):
        if self._schedule_step is not None and isinstance(
                self._learning_rate,
                keras.optimizers.schedules.LearningRateSchedule):
            return self._learning_rate(self._schedule_step)
        return super()._get_current_learning_rate()

    def _clip_by_norm(self, values, axes=None):
        """``clipnorm``: TF1's ``tf.clip_by_norm`` of each gradient, ``g *
        c / max(||g||, c)``, with the squared norm from one ``L2Loss`` pass.

        Keras squares the gradient into a copy of its size before summing,
        and writes two more copies for the product and the quotient: 3.9 GB
        of temporaries for the 1.3 GB gradient of the gated NetVLAD preset's
        hidden layer. Here the only new tensor is the clipped gradient
        (unclipped gradients are multiplied by exactly 1).
        """
        if axes is not None:
            return super()._clip_by_norm(values, axes)
        values = tf.convert_to_tensor(values)
        clip = tf.cast(self.clipnorm, values.dtype)
        norm = tf.sqrt(2.0 * tf.nn.l2_loss(values))  # ||g||_2, one pass
        return values * (clip / tf.maximum(norm, clip))


def _resource_handle(variable):
    """The resource handle of a Keras or TensorFlow variable (the local
    component inside ``strategy.extended.update``)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


class PrereducedAdam(_PrereducedGradients, keras.optimizers.Adam):
    """keras.optimizers.Adam taking cross-replica-summed gradients.

    Its coefficients are computed in float64 and then rounded (``1 - beta_2``
    is 0.001 exactly), as ``torch.optim.Adam`` computes them: the optimizer
    of the PyTorch-trained families (HowTo100M, MIL-NCE, AVLnet).
    """


class TF1Adam(PrereducedAdam):
    """TF1's ``tf.train.AdamOptimizer``: its fused ``ApplyAdam`` kernel, the
    op that the published YouTube-8M models were trained with.

    The formula is Keras' (``m += (g - m)(1 - b1)``, ``v += (g^2 - v)(1 -
    b2)``, ``w -= m alpha / (sqrt(v) + eps)`` with ``alpha = lr sqrt(1 -
    b2^t) / (1 - b1^t)``), with the kernel's float32 coefficients: ``1 -
    0.999`` is 0.000999987 there, against Keras' (and PyTorch's) 0.001.
    The kernel updates the variable and both slots in place. Keras' separate
    ops allocate temporaries of each variable's size: 2.24 GB more for one
    variable of 300 M floats (1.2 GB), the size of the gated NetVLAD
    preset's hidden layer, whose training step at batch 8 peaks at 7.35
    instead of 8.74 GB (bench/RESULTS.md). Sparse gradients and AMSGrad
    take Keras' path.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        return tf.raw_ops.ResourceApplyAdam(
            var=_resource_handle(variable),
            m=_resource_handle(self._momentums[index]),
            v=_resource_handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))


class PrereducedSGD(_PrereducedGradients, keras.optimizers.SGD):
    """keras.optimizers.SGD taking cross-replica-summed gradients."""


class TorchSGD(PrereducedSGD):
    """SGD with momentum as PyTorch computes it (pre-reduced gradients).

    PyTorch keeps ``buf = momentum * buf + g`` and steps ``w -= lr * buf``;
    Keras folds the rate into the velocity (``v = momentum * v - lr * g``,
    ``w += v``). The two agree while the rate is constant and differ after
    each change of it (warm-up, step decay), so recipes ported from PyTorch
    use this one. Nesterov is not supported.
    """

    def __init__(self, *args, **kwargs):
        if kwargs.get("nesterov"):
            raise ValueError("TorchSGD does not implement nesterov")
        super().__init__(*args, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = keras.ops.cast(learning_rate, variable.dtype)
        gradient = keras.ops.cast(gradient, variable.dtype)
        if self.momentum == 0:
            self.assign_sub(variable, gradient * learning_rate)
            return
        buf = self.momentums[self._get_variable_index(variable)]
        self.assign(buf, buf * keras.ops.cast(self.momentum, variable.dtype)
                    + gradient)
        self.assign_sub(variable, buf * learning_rate)


OPTIMIZERS = {"adam": PrereducedAdam, "tf1_adam": TF1Adam,
              "sgd": PrereducedSGD, "torch_sgd": TorchSGD}


def make_optimizer(name, learning_rate, clip_norm=None, loss_scale=False,
                   **kwargs):
    """Builds the optimizer (inside the strategy scope).

    Args:
        name: 'adam' (Keras' Adam, PyTorch's coefficients), 'tf1_adam'
            (TF1's fused ApplyAdam kernel, see TF1Adam), 'sgd' (Keras'
            momentum form) or 'torch_sgd' (PyTorch's momentum form).
        learning_rate: float or keras LearningRateSchedule; in the Trainer
            a schedule is evaluated at the loop's step (0 for the first
            batch), skipped loss-scale steps included.
        clip_norm: clip each gradient tensor to this L2 norm (None: no clip).
        loss_scale: wrap in a dynamic LossScaleOptimizer (mixed_float16).
        **kwargs: passed to the optimizer (momentum, epsilon, ...). Adam's
            epsilon defaults to 1e-8, the default of TF1's AdamOptimizer and
            of PyTorch's Adam, which the published models were trained with
            (Keras' own default is 1e-7).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of "
                         f"{', '.join(OPTIMIZERS)}")
    if name in ("adam", "tf1_adam"):
        kwargs.setdefault("epsilon", 1e-8)
    opt = OPTIMIZERS[name](learning_rate=learning_rate, clipnorm=clip_norm,
                           **kwargs)
    if loss_scale:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


@dataclasses.dataclass
class LoopConfig:
    """Settings of the training loop.

    Attributes:
        train_dir: checkpoints, TensorBoard events and train_state.json.
        per_replica_batch_size: examples per replica per step.
        max_steps: stop after this many steps (None: until data runs out).
        checkpoint_every_steps: checkpoint period in steps.
        log_every_steps: TensorBoard scalar period in steps.
        keep_checkpoints: how many recent checkpoints to keep.
        verbose: show the progress bar (chief only).
        keep_worker_checkpoints: keep the checkpoints that non-chief
            workers write under train_dir/.workers (to verify that all
            workers hold identical weights).
        steps_per_epoch: when set, the loop checkpoints at the end of every
            epoch and calls the trainer's ``on_epoch_end``.
        steps_per_loop: steps run per ``tf.function`` call (losses are
            fetched once per call); a call stops early at the next log,
            checkpoint, epoch-end or max_steps boundary.
        examples_per_epoch: examples in one pass over the training data,
            when known: train_state.json then records the epochs completed
            (examples seen / examples_per_epoch). With steps_per_epoch the
            epochs are counted in steps instead.
    """

    train_dir: str
    per_replica_batch_size: int
    max_steps: int | None = None
    checkpoint_every_steps: int = 1000
    log_every_steps: int = 100
    keep_checkpoints: int = 5
    verbose: bool = True
    keep_worker_checkpoints: bool = False
    steps_per_epoch: int | None = None
    steps_per_loop: int = 1
    examples_per_epoch: int | None = None

    def __post_init__(self):
        if self.steps_per_loop < 1:
            raise ValueError(f"steps_per_loop must be >= 1, got "
                             f"{self.steps_per_loop}")


def steps_in_next_call(step, config):
    """How many steps the next call runs from ``step``: at most
    ``config.steps_per_loop``, ending on the next log, checkpoint, epoch-end
    or max_steps boundary if that comes first.

    Args:
        step: steps done so far.
        config: LoopConfig.
    """
    periods = [config.log_every_steps, config.checkpoint_every_steps]
    if config.steps_per_epoch:
        periods.append(config.steps_per_epoch)
    boundary = min((step // p + 1) * p for p in periods)
    if config.max_steps is not None:
        boundary = min(boundary, config.max_steps)
    return max(1, min(config.steps_per_loop, boundary - step))


def epochs_end_step(num_epochs, pipeline_examples, global_batch_size):
    """The step at which ``num_epochs`` passes over the data end.

    Each input pipeline reads its own records (``pipeline_examples[i]``) in
    batches of ``global_batch_size / len(pipeline_examples)`` with the
    partial last batch dropped; the run ends when the first pipeline has no
    full batch left. A run resumed at any step ends at this same step (the
    rebuilt pipeline starts a new pass, so the step count, not the data,
    says when to stop).

    Args:
        num_epochs: passes over the data.
        pipeline_examples: examples each input pipeline reads per pass.
        global_batch_size: examples per step over all replicas.
    """
    batch = global_batch_size // len(pipeline_examples)
    return min(num_epochs * n // batch for n in pipeline_examples)


def passes_done(step, examples, pipeline_batch_size):
    """Whole passes over ``examples`` records that ``step`` steps of
    ``pipeline_batch_size`` consumed (a resumed pipeline repeats only the
    rest)."""
    return step * pipeline_batch_size // examples


def _worker_checkpoint_dir(train_dir, strategy):
    """Chief writes into train_dir; other workers into a scratch folder
    (MultiWorkerMirroredStrategy needs every worker to take part in saving)."""
    if distribute.is_chief(strategy):
        return train_dir
    task_type, task_id = distribute.task_info(strategy)
    return os.path.join(train_dir, ".workers", f"{task_type}_{task_id}")


def read_train_state(train_dir):
    """The train_state.json written by the loop, or {} if there is none."""
    path = os.path.join(train_dir, TRAIN_STATE_FILE)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


class Trainer:
    """Trains a Keras model with a custom, strategy-agnostic loop.

    Args:
        strategy: a tf.distribute.Strategy (create it first, at start-up).
        config: LoopConfig.
        build_model: () -> keras.Model, called inside the strategy scope.
        build_optimizer: (global_batch_size) -> optimizer, called inside the
            scope (use make_optimizer; it must take pre-reduced gradients).
        per_example_loss: (labels, predictions) -> [batch] float32.
        dataset_fn: (tf.distribute.InputContext, seed) -> tf.data.Dataset of
            (features, labels) batched per replica (use
            ``ctx.get_per_replica_batch_size``) and sharded by
            ``ctx.input_pipeline_id``. ``seed`` is the step the run starts
            from (also ``trainer.start_step``), so a restarted run does not
            replay the same order and can tell how much data went before.
        regularization_weight: multiplies the model's regularisation losses.
        on_epoch_end: optional (epoch, step) -> dict of scalars, called on
            every worker after each epoch's checkpoint (needs
            ``config.steps_per_epoch``); the chief logs the scalars to
            TensorBoard under ``eval/``.
        prepare_inputs: optional features -> model inputs, run in the
            replica step on the device before the model (e.g. normalising
            uint8 pixels there, which a GPU does in microseconds while the
            host's input pipeline would spend its largest stage on it and
            send 4x the bytes).
        weight_decay: coupled L2 weight decay as PyTorch's SGD applies it
            (``weight_decay * w`` added to each gradient before momentum):
            ``weight_decay / 2 * sum(w**2)`` over all trainable weights
            (batch-norm gamma/beta and biases included, as in torchvision's
            recipes) is added to the loss and reported as reg_loss. Keras'
            own ``weight_decay`` is decoupled (AdamW style), which differs
            under momentum.
    """

    def __init__(self, strategy, config: LoopConfig,
                 build_model: Callable[[], keras.Model],
                 build_optimizer: Callable[[int], keras.optimizers.Optimizer],
                 per_example_loss: Callable, dataset_fn: Callable,
                 regularization_weight: float = 1.0,
                 on_epoch_end: Callable[[int, int], dict] | None = None,
                 weight_decay: float = 0.0,
                 prepare_inputs: Callable | None = None):
        self.strategy = strategy
        self.prepare_inputs = prepare_inputs
        self.weight_decay = float(weight_decay)
        self.on_epoch_end = on_epoch_end
        self.regularization_weight = float(regularization_weight)
        self.config = config
        self.per_example_loss = per_example_loss
        self.dataset_fn = dataset_fn
        self.replicas = strategy.num_replicas_in_sync
        self.global_batch_size = config.per_replica_batch_size * self.replicas
        self.chief = distribute.is_chief(strategy)
        with strategy.scope():
            self.model = build_model()
            self.optimizer = build_optimizer(self.global_batch_size)
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False,
                                    name="global_step")
            inner = getattr(self.optimizer, "inner_optimizer",
                            self.optimizer)
            if isinstance(inner, _PrereducedGradients):
                inner.follow_step(self.step)
            self.checkpoint = tf.train.Checkpoint(
                model=self.model, optimizer=self.optimizer, step=self.step)
        self._write_dir = _worker_checkpoint_dir(config.train_dir, strategy)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._write_dir,
            max_to_keep=config.keep_checkpoints, checkpoint_name="ckpt")
        self.start_step = 0

    # ------------------------------------------------------------------ #
    def restore(self):
        """Restores the latest checkpoint of train_dir; returns its step."""
        latest = tf.train.latest_checkpoint(self.config.train_dir)
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            logging.info("resumed from %s at step %d", latest,
                         int(self.step.numpy()))
        return int(self.step.numpy())

    def _replica_step(self, features, labels):
        if self.prepare_inputs is not None:
            features = self.prepare_inputs(features)
        with tf.GradientTape() as tape:
            predictions = self.model(features, training=True)
            # float32 whatever the loss returns (bfloat16/float16 logits
            # under mixed precision): the sum and the regulariser are float32.
            per_example = tf.cast(
                self.per_example_loss(labels, predictions), tf.float32)
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=self.global_batch_size)
            reg = (tf.add_n([tf.cast(l, tf.float32)
                             for l in self.model.losses])
                   * (self.regularization_weight / self.replicas)
                   if self.model.losses else tf.constant(0.0))
            if self.weight_decay:
                squares = tf.add_n([
                    tf.reduce_sum(tf.square(tf.cast(v, tf.float32)))
                    for v in self.model.trainable_variables])
                # Each replica adds its share; the all-reduce sums them.
                reg += squares * (0.5 * self.weight_decay / self.replicas)
            total = loss + reg
            scaled = (self.optimizer.scale_loss(total)
                      if isinstance(self.optimizer,
                                    keras.optimizers.LossScaleOptimizer)
                      else total)
        variables = self.model.trainable_variables
        grads = tape.gradient(scaled, variables)
        ctx = tf.distribute.get_replica_context()
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        self.optimizer.apply(grads, variables)
        return loss, reg

    def _make_train_function(self):
        """A tf.function (iterator, n) -> (ran, losses, regs, rates): runs up
        to n steps and returns how many ran (fewer when the data ends, or
        up to and including the first step with a non-finite loss) and each
        step's label loss, regularisation loss and learning rate, as [ran]
        tensors."""
        strategy = self.strategy
        total = tf.distribute.ReduceOp.SUM

        @tf.function
        def train_steps(iterator, num_steps):
            losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
            regs = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
            rates = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
            ran = tf.constant(0)
            for i in tf.range(num_steps):
                optional = iterator.get_next_as_optional()
                if not optional.has_value():
                    break
                features, labels = optional.get_value()
                # The rate this step uses: the schedule at the loop's step.
                rate = tf.cast(self.optimizer.learning_rate, tf.float32)
                loss, reg = strategy.run(self._replica_step,
                                         args=(features, labels))
                loss = strategy.reduce(total, loss, axis=None)
                reg = strategy.reduce(total, reg, axis=None)
                self.step.assign_add(1)
                losses = losses.write(i, loss)
                regs = regs.write(i, reg)
                rates = rates.write(i, rate)
                ran = i + 1
                if not tf.math.is_finite(loss):
                    break
            return ran, losses.stack(), regs.stack(), rates.stack()

        return train_steps

    # ------------------------------------------------------------------ #
    def train(self):
        """Runs until max_steps (or the end of the data); returns the step."""
        cfg = self.config
        start = self.start_step = self.restore()
        if cfg.max_steps is not None and start >= cfg.max_steps:
            logging.info("train_dir already at step %d >= max_steps %d",
                         start, cfg.max_steps)
            return start
        logging.info(distribute.describe(self.strategy,
                                         cfg.per_replica_batch_size))
        before = read_train_state(cfg.train_dir).get("global_batch_size")
        if start and before and before != self.global_batch_size:
            logging.warning(
                "%s was trained with a global batch of %d, now %d: the "
                "step, the epoch count and examples_seen go on in steps of "
                "the new batch", cfg.train_dir, before,
                self.global_batch_size)

        def input_fn(ctx):
            return self.dataset_fn(ctx, seed=start)

        iterator = iter(self.strategy.distribute_datasets_from_function(
            input_fn))
        train_steps = self._make_train_function()
        writer = (tf.summary.create_file_writer(cfg.train_dir)
                  if self.chief else tf.summary.create_noop_writer())
        progbar = progress.Progbar(
            cfg.max_steps, verbose=1 if (cfg.verbose and self.chief) else 0,
            stateful_metrics=["loss", "reg_loss", "examples/s"])
        if start:
            progbar.update(start)
        step = start
        window_start, window_steps = time.time(), 0
        while cfg.max_steps is None or step < cfg.max_steps:
            wanted = steps_in_next_call(step, cfg)
            outputs = train_steps(iterator, tf.constant(wanted, tf.int32))
            # The one host round trip of the call.
            ran, losses, regs, rates = (np.asarray(t) for t in outputs)
            for loss, reg, lr in zip(losses.tolist(), regs.tolist(),
                                     rates.tolist()):
                step += 1
                window_steps += 1
                if not np.isfinite(loss):
                    raise FloatingPointError(
                        f"loss became {loss} at step {step}; the last good "
                        f"checkpoint is in {cfg.train_dir}")
                # Boundaries below fall on the last step of a call only.
                if step % cfg.log_every_steps == 0 or step == cfg.max_steps:
                    elapsed = time.time() - window_start
                    rate = window_steps * self.global_batch_size / max(
                        elapsed, 1e-9)
                    with writer.as_default(step=step):
                        tf.summary.scalar("loss/label", loss)
                        tf.summary.scalar("loss/regularization", reg)
                        tf.summary.scalar("learning_rate", lr)
                        tf.summary.scalar("examples_per_second", rate)
                    writer.flush()
                    progbar.update(step, [("loss", loss), ("reg_loss", reg),
                                          ("examples/s", rate)])
                    window_start, window_steps = time.time(), 0
                else:
                    progbar.update(step, [("loss", loss), ("reg_loss", reg)])
                self._step_boundaries(step, writer, progbar)
            if int(ran) < wanted:
                logging.info("input exhausted at step %d", step)
                break
        progbar.finish()
        self._save(step, final=True)
        writer.close()
        return step

    def _step_boundaries(self, step, writer, progbar):
        """Checkpoint and epoch end due after ``step``, if any (the progress
        line is ended first when an epoch-end evaluation will print)."""
        cfg = self.config
        epoch_done = bool(cfg.steps_per_epoch
                          and step % cfg.steps_per_epoch == 0)
        if step % cfg.checkpoint_every_steps == 0 or epoch_done:
            self._save(step)
        if epoch_done and self.on_epoch_end is not None:
            progbar.break_line()
            scalars = self.on_epoch_end(step // cfg.steps_per_epoch, step)
            with writer.as_default(step=step):
                for name, value in (scalars or {}).items():
                    tf.summary.scalar(f"eval/{name}", value)
            writer.flush()

    def epochs_completed(self, step):
        """Passes over the training data after ``step`` steps (a float), or
        None when neither steps_per_epoch nor examples_per_epoch is set."""
        cfg = self.config
        if cfg.steps_per_epoch:
            return step / cfg.steps_per_epoch
        if cfg.examples_per_epoch:
            return step * self.global_batch_size / cfg.examples_per_epoch
        return None

    def _save(self, step, final=False):
        latest = self.manager.latest_checkpoint
        already = bool(latest and latest.endswith(f"-{step}"))
        if already:
            path = latest  # saved at this step already
        else:
            path = self.manager.save(checkpoint_number=step)
            if not self.chief and not self.config.keep_worker_checkpoints:
                # Other workers only take part in the collective save.
                tf.io.gfile.rmtree(self._write_dir)
        if self.chief:
            write_json_atomic(
                os.path.join(self.config.train_dir, TRAIN_STATE_FILE),
                {"step": int(step), "checkpoint": os.path.basename(path),
                 "done": bool(final),
                 "global_batch_size": self.global_batch_size,
                 "replicas": self.replicas,
                 "examples_seen": int(step) * self.global_batch_size,
                 "epoch": self.epochs_completed(int(step))})
            if not already:
                logging.info("saved checkpoint %s", path)


def restore_model_weights(model, train_dir, checkpoint_path=None):
    """Loads a model's weights from a training checkpoint (not the optimizer).

    Args:
        model: a model built with the same configuration as in training.
        train_dir: training directory (its latest checkpoint is used).
        checkpoint_path: a specific checkpoint prefix instead of the latest.

    Returns:
        The checkpoint path that was restored.

    Raises:
        FileNotFoundError: no checkpoint in train_dir.
    """
    path = checkpoint_path or tf.train.latest_checkpoint(train_dir)
    if not path:
        raise FileNotFoundError(
            f"no checkpoint found in --train_dir={train_dir}; train a model "
            f"there first (python -m yt8m.train ...)")
    tf.train.Checkpoint(model=model).restore(path).expect_partial() \
        .assert_existing_objects_matched()
    return path


def cleanup_worker_dirs(train_dir):
    """Removes scratch checkpoint folders of non-chief workers."""
    path = os.path.join(train_dir, ".workers")
    if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)


def count_trainable_params(model):
    """Number of trainable scalars (batch-norm gamma and beta included)."""
    return int(sum(math.prod(v.shape) for v in model.trainable_weights))


def save_model_checkpoint(model, output_dir, keras_file=None,
                          checkpoint_name="ckpt"):
    """Writes a model's weights as a training checkpoint (no optimizer),
    the form :func:`restore_model_weights` reads; used by the weight
    converters.

    Args:
        model: the Keras model.
        output_dir: a new or empty directory (refused if it already holds a
            checkpoint, so no earlier run is overwritten).
        keras_file: also save the whole model there (must end in .keras).
        checkpoint_name: file prefix of the checkpoint.

    Returns:
        The checkpoint path.

    Raises:
        ValueError: output_dir holds a checkpoint, or keras_file does not
            end in .keras.
    """
    if keras_file and not keras_file.endswith(".keras"):
        raise ValueError(f"--keras_file={keras_file} must end in .keras")
    if tf.io.gfile.isdir(output_dir) and tf.train.latest_checkpoint(
            output_dir):
        raise ValueError(f"--output_dir={output_dir} already holds a "
                         "checkpoint; choose an empty or new directory")
    tf.io.gfile.makedirs(output_dir)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), output_dir, max_to_keep=1,
        checkpoint_name=checkpoint_name)
    path = manager.save()
    if keras_file:
        parent = os.path.dirname(keras_file)
        if parent:
            tf.io.gfile.makedirs(parent)
        model.save(keras_file)
    return path
