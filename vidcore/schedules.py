"""Learning-rate schedules of the published recipes (Keras schedules,
serialisable with ``get_config``). In ``vidcore.training.Trainer`` a schedule
is evaluated at the loop's step (batches consumed before the update), not at
the optimizer's ``iterations``, which skipped loss-scale steps hold back."""

import math

import keras
import tensorflow as tf

WARMUP_METHODS = ("linear", "constant")


@keras.saving.register_keras_serializable(package="vidcore")
class WarmupMultiStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Warm-up, then step decay: torchvision's video-classification schedule.

    The recipe steps PyTorch schedulers once per iteration:
    ``SequentialLR([LinearLR(start_factor=warmup_factor,
    total_iters=warmup_steps), MultiStepLR(milestones, gamma)],
    milestones=[warmup_steps])`` with the MultiStepLR milestones given
    relative to the end of the warm-up. In closed form, at step t
    (0-based, the step whose update uses this rate):

        t <  W: lr * (f + (1 - f) * t / W)   ("linear")  or  lr * f
        t >= W: lr * gamma ** #{m in milestones: t >= m}

    with ``milestones`` in absolute steps (the recipe's epochs times steps
    per epoch).

    Args:
        base_learning_rate: the rate after warm-up (already scaled by the
            number of replicas where the recipe does so).
        warmup_steps: W (0: no warm-up).
        warmup_factor: f, the recipe's ``--lr-warmup-decay`` (0.001).
        warmup_method: "linear" or "constant".
        milestones: absolute steps at which the rate is multiplied by gamma.
        gamma: the decay factor (``--lr-gamma``).
    """

    def __init__(self, base_learning_rate, warmup_steps=0, warmup_factor=0.001,
                 warmup_method="linear", milestones=(), gamma=0.1):
        if warmup_method not in WARMUP_METHODS:
            raise ValueError(
                f"warmup_method must be one of {WARMUP_METHODS}, got "
                f"{warmup_method!r}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must increase, got {milestones}")
        self.base_learning_rate = float(base_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)
        self.warmup_method = warmup_method
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = tf.constant(self.base_learning_rate, tf.float32)
        if self.milestones:
            passed = tf.reduce_sum(tf.cast(
                step >= tf.constant(self.milestones, tf.float32), tf.float32))
            decayed = lr * tf.pow(tf.constant(self.gamma, tf.float32), passed)
        else:
            decayed = lr
        if not self.warmup_steps:
            return decayed
        f = self.warmup_factor
        if self.warmup_method == "linear":
            factor = f + (1.0 - f) * step / float(self.warmup_steps)
        else:
            factor = tf.constant(f, tf.float32)
        return tf.where(step < float(self.warmup_steps), lr * factor, decayed)

    def get_config(self):
        return {"base_learning_rate": self.base_learning_rate,
                "warmup_steps": self.warmup_steps,
                "warmup_factor": self.warmup_factor,
                "warmup_method": self.warmup_method,
                "milestones": list(self.milestones), "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="vidcore")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then cosine decay: MIL-NCE's schedule.

    The original steps ``get_cosine_schedule_with_warmup`` (``utils.py`` of
    the MIL-NCE_HowTo100M code, a PyTorch ``LambdaLR``) once per
    iteration. At step t (0-based, the step whose update uses this rate),
    with W warm-up steps and N total steps:

        t <  W: lr * t / max(1, W)
        t >= W: lr * max(0, 0.5 (1 + cos(2 pi c p))),
                p = (t - W) / max(1, N - W)

    so the rate is 0 at step 0, ``lr`` at W, and with c = 0.5 (half a
    cycle) 0 at N. As in the original, steps past N continue the cosine
    (the clamp at 0 only matters for c > 0.5); train for N steps.

    Args:
        base_learning_rate: the peak rate (``--lr``).
        warmup_steps: W (``--warmup_steps``; 0: no warm-up).
        total_steps: N, steps of the whole run (the original: batches per
            epoch x ``--epochs``).
        num_cycles: c, cosine cycles over the decay (0.5 in the original).
    """

    def __init__(self, base_learning_rate, warmup_steps, total_steps,
                 num_cycles=0.5):
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if total_steps < 0:
            raise ValueError(f"total_steps must be >= 0, got {total_steps}")
        self.base_learning_rate = float(base_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.num_cycles = float(num_cycles)

    def __call__(self, step):
        # float64: step counts of long runs and the cosine keep full
        # float32 precision in the result.
        step = tf.cast(step, tf.float64)
        warmup = float(self.warmup_steps)
        warm = step / max(1.0, warmup)
        progress = (step - warmup) / max(1.0, float(self.total_steps
                                                    - self.warmup_steps))
        zero = tf.constant(0.0, tf.float64)  # graph mode: no float32 0.0
        cosine = tf.maximum(zero, 0.5 * (1.0 + tf.cos(
            math.pi * self.num_cycles * 2.0 * progress)))
        factor = tf.where(step < warmup, warm, cosine)
        return tf.cast(self.base_learning_rate * factor, tf.float32)

    def get_config(self):
        return {"base_learning_rate": self.base_learning_rate,
                "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps,
                "num_cycles": self.num_cycles}
