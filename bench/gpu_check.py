"""GPU readiness: a short training of every family in three precisions.

For each family (YouTube-8M gated NetVLAD and gated DBoF presets at batch
80, HowTo100M at the published 32 videos x 64 clip pairs, R(2+1)D-18 on
16x112x112 clips at the recipe's multi-GPU batch of 16 per device, MIL-NCE
S3D-G + text on 16x224x224 clips with 4 captions each, 32 per device,
AVLnet on 64 videos x 32 pairs of 1,000 log-mel frames and 2D+3D features
per device) and each
precision (float32, mixed_float16, mixed_bfloat16), trains a few steps through
the one training loop (``vidcore.training.Trainer`` under
``tf.distribute.MirroredStrategy`` over all visible GPUs) on in-memory random
data, and prints one table: examples/s, model FLOP/s and its fraction of the
dense matmul peak measured in the same run in the same precision. It checks
that the loss stays finite and that the mixed-precision losses follow the
float32 run (same seed, same data, same initial weights; the first steps'
losses within a tolerance per precision); otherwise it prints a FAIL line
and exits with status 1. Errors of one case (a kernel missing for a dtype,
a non-finite loss) are reported and the other cases still run.

    python bench/gpu_check.py                      # all, < 8 min on one GPU
    python bench/gpu_check.py --families=howto100m --precisions=float32,mixed_bfloat16
    python bench/gpu_check.py --smoke              # tiny sizes on the CPU

``--smoke`` runs the same code at tiny sizes on two logical CPU devices
(tests/test_gpu_check.py runs it, so the script cannot rot); it takes a few
minutes on 2 cores, most of them tracing R(2+1)D-18's graph three times.

How a case is measured. The Trainer logs every step (``log_every_steps=1``)
to TensorBoard; the loop's own per-step ``examples_per_second`` (the time of
the step call up to its loss on the host, summary writing excluded) and
``loss/label`` are read back from the event file. Logging every step means
one step per ``tf.function`` call (whatever ``steps_per_loop``), so each
timed step includes one host round trip: for the smallest steps (HowTo100M
on a fast GPU) examples/s is a lower bound. The first ``--warmup_steps``
steps (tracing, autotuning) are not timed. The loop writes a final
checkpoint per case (3.9 GB for NetVLAD with Adam), into /dev/shm when it
fits (``--work_dir``), and it is deleted afterwards. Each case has a
share of the total ``--budget_s``: the in-memory data ends at the case's
deadline (after at least warm-up + 2 steps) and the loop stops there; the
default budget (360 s) leaves two of the eight minutes for the FLOP counts,
the peaks and tracing that runs past a case's share (the graphs of
R(2+1)D-18 and S3D-G take tens of seconds to trace). Model
FLOPs are the forward pass counted by TensorFlow's graph profiler (x3 for a
training step, bench/_flops.py); the loss's own FLOPs (HowTo100M's 2048 x
2048 similarity matrix) are not counted. "float32" on Ampere and later GPUs
means TensorFloat-32 matmuls and convolutions (TensorFlow's default, both for
the model and the peak).

What to look for when it runs on a GPU (none has run it yet: the one lent
to this project has no TensorFlow and cannot install it, bench/RESULTS.md;
the CPU smoke run passes for every family and precision):
- A FAIL line with "No registered ... OpKernel" names an op without a GPU
  kernel for float16 or bfloat16 (candidates: 3D pooling and conv ops in
  bfloat16, segment/scatter ops in NetVLAD/DBoF pooling): fix it in the layer
  (compute that op in float32 with casts around it), as the issue asks.
- A low fraction of peak for the YouTube-8M models in mixed_float16 with
  bfloat16 fine: a float32 fallback somewhere (look for Cast-heavy traces).
- The yt8m GRU/LSTM presets are not in this check (NetVLAD and DBoF are the
  published best); the GRU uses ``reset_after=False`` (the TF1 GRUCell
  formula, needed for parity with the published weights), which Keras
  cannot run on cuDNN: it falls back to a while loop on GPU. Measure it with
  bench/bench_training.py before changing anything; do not change the formula.
- mixed_float16 rows with skipped steps (LossScaleOptimizer) in the result
  column: a few at the start are normal (the loss scale starts at 2^15) and
  the float32 comparison allows for them; many, or NaN losses, are not.
- XLA (``jit_compile``) is not used by the loop; try it only after this
  table exists.
"""

import argparse
import contextlib
import dataclasses
import gc
import glob
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench import _flops  # noqa: E402

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# Largest relative deviation of a mixed-precision run's loss from the float32
# run's over the first PARITY_STEPS steps (same data, same initial weights).
# float16 keeps 11 significant bits, bfloat16 8 (relative rounding 2^-11 and
# 2^-8); a loss through tens of layers and a few updates drifts by some
# multiples of that. Measured at full size on the CPU, HowTo100M: 8e-6
# (bfloat16); smoke sizes, R(2+1)D-18: 3e-3 (float16), 1.1e-2 (bfloat16).
TOLERANCE = {"mixed_float16": 0.02, "mixed_bfloat16": 0.05}
PARITY_STEPS = 3
SEED = 0
YT8M_PRESETS = {"yt8m_netvlad": "configs/yt8m/gated_netvlad.flags",
                "yt8m_dbof": "configs/yt8m/gated_dbof.flags"}
HOWTO_PRESET = "configs/howto/howto100m_pretrain.flags"
KINETICS_PRESET = "configs/kinetics/multi_gpu.flags"
MILNCE_PRESET = "configs/howto/milnce_howto100m.flags"
MILNCE_BATCH_PER_DEVICE = 32
AVL_PRESET = "configs/avl/avlnet_howto100m.flags"
AVL_GPUS_IN_PAPER = 2  # AVLnet's batch of 128 videos ran on 2 V100s
LOSS_TAG = "loss/label"
RATE_TAG = "examples_per_second"


@dataclasses.dataclass
class Family:
    """One model family as the check trains it.

    Attributes:
        name: row label.
        example: what one example is (for the table's legend).
        per_replica_batch: examples per replica per step.
        build_model: () -> keras.Model (under the current dtype policy).
        build_optimizer: (loss_scale) -> optimizer (make_optimizer).
        per_example_loss: the family's training loss, per example.
        make_batch: (numpy Generator, examples) -> (features, labels) of one
            replica, numpy.
        regularization_weight: Trainer's regularization_weight.
        weight_decay: Trainer's weight_decay (coupled, the recipe's).
        slot_variables: optimizer slots per weight (checkpoint size).
    """

    name: str
    example: str
    per_replica_batch: int
    build_model: Callable
    build_optimizer: Callable
    per_example_loss: Callable
    make_batch: Callable
    regularization_weight: float = 1.0
    weight_decay: float = 0.0
    slot_variables: int = 2


@dataclasses.dataclass
class CaseResult:
    """What one (family, precision) training produced."""

    family: str
    precision: str
    replicas: int
    global_batch: int
    losses: dict = dataclasses.field(default_factory=dict)  # step -> loss
    timed_steps: int = 0
    examples_per_s: float = float("nan")
    skipped_steps: int = 0
    deviation: float | None = None
    failures: list = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def preset_flags(flag_values, path):
    """Parses a flagfile preset into ``flag_values`` for the duration of the
    block, then restores every flag (other code in the process, e.g. tests,
    keeps its values).

    Args:
        flag_values: the absl FlagValues the preset's CLI defines its flags on.
        path: flagfile path relative to the repository root.
    """
    from absl.testing import flagsaver
    saved = flagsaver.save_flag_values(flag_values)
    was_parsed = flag_values.is_parsed()
    try:
        flag_values(["gpu_check", f"--flagfile={os.path.join(REPO, path)}"])
        yield flag_values
    finally:
        flagsaver.restore_flag_values(saved, flag_values)
        if not was_parsed:
            flag_values.unparse_flags()


# --------------------------------------------------------------------------- #
# The families.
# --------------------------------------------------------------------------- #
def yt8m_family(name, smoke, replicas):
    """A YouTube-8M frame-level preset (configs/yt8m/) at its batch of 80."""
    del replicas
    import numpy as np
    from absl import flags

    from vidcore import losses, training
    from yt8m import flags as yflags
    from yt8m.models import build_model

    with preset_flags(flags.FLAGS, YT8M_PRESETS[name]) as f:
        cfg = yflags.model_config_from_flags()
        batch, lr = f.batch_size, f.base_learning_rate
        clip = f.clip_gradient_norm if f.clip_gradient_norm > 0 else None
        reg = f.regularization_penalty
    if smoke:
        cfg = dataclasses.replace(
            cfg, num_classes=10, feature_sizes=(12, 4), max_frames=8,
            iterations=4, netvlad_cluster_size=4, netvlad_hidden_size=8,
            dbof_cluster_size=16, dbof_hidden_size=8)
        batch = 2

    def make_batch(rng, n):
        # One frame repeated along time: the model samples frames with
        # unseeded random ops whose seeds follow the graph's op count, which
        # the precision's casts change; with equal frames every sample is
        # the same, so the runs stay comparable.
        dim = sum(cfg.feature_sizes)
        frame = rng.integers(0, 256, (n, 1, dim), dtype=np.uint8)
        frames = np.repeat(frame, cfg.max_frames, axis=1)  # [n, T, dim]
        num_frames = rng.integers(cfg.iterations, cfg.max_frames + 1,
                                  n).astype(np.int32)
        labels = rng.random((n, cfg.num_classes)) < min(
            1.0, 3.0 / cfg.num_classes)
        return {"frames": frames, "num_frames": num_frames}, labels

    return Family(
        name=name, example=f"video ({cfg.max_frames} frames)",
        per_replica_batch=batch,
        build_model=lambda: build_model(cfg),
        build_optimizer=lambda loss_scale: training.make_optimizer(
            "tf1_adam", lr, clip_norm=clip, loss_scale=loss_scale),
        per_example_loss=losses.multilabel_cross_entropy,
        make_batch=make_batch, regularization_weight=reg)


def howto_family(smoke, replicas):
    """HowTo100M at the published command's sizes (32 videos x 64 pairs,
    D = 4096), max-margin loss over the global batch."""
    import numpy as np

    from howto import flags as hflags
    from howto.models import build_model
    from vidcore import losses, training
    from vidcore.errors import UserInputError

    with preset_flags(hflags.FLAGS, HOWTO_PRESET) as f:
        cfg = hflags.model_config_from_flags()
        videos, n_pair, lr = f.batch_size, f.n_pair, f.lr
        margin, rate = f.margin, f.hard_negative_rate
        weighting = bool(f.negative_weighting and n_pair > 1)
    if smoke:
        cfg = dataclasses.replace(cfg, embd_dim=16, feature_dim=12, we_dim=6,
                                  max_words=4)
        videos, n_pair = 4, 3
    if videos % replicas:
        raise UserInputError(f"howto100m: the {videos} videos of a step do "
                             f"not split over {replicas} replicas")

    def per_example_loss(labels, outputs):
        del labels
        return losses.cross_replica_max_margin(
            outputs["text"], outputs["video"], n_pair, margin=margin,
            negative_weighting=weighting, hard_negative_rate=rate)

    def make_batch(rng, n):
        rows = n * n_pair
        video = np.abs(rng.normal(size=(rows, cfg.feature_dim)))
        video /= np.linalg.norm(video, axis=1, keepdims=True)  # [rows, F]
        text = 0.1 * rng.normal(size=(rows, cfg.max_words, cfg.we_dim))
        return ({"video": video.astype(np.float32),
                 "text": text.astype(np.float32)},
                np.zeros(n, np.int32))

    return Family(
        name="howto100m", example=f"video ({n_pair} clip-caption pairs)",
        per_replica_batch=videos // replicas, build_model=lambda: build_model(
            cfg),
        build_optimizer=lambda loss_scale: training.make_optimizer(
            "adam", lr, loss_scale=loss_scale),
        per_example_loss=per_example_loss, make_batch=make_batch)


def r2plus1d_family(smoke, replicas):
    """R(2+1)D-18 with the recipe's multi-GPU settings (configs/kinetics/
    multi_gpu.flags: 16 clips of 16x112x112 per device, synchronised batch
    norm, PyTorch-form SGD with coupled weight decay) at the learning rate
    of its first warm-up step."""
    import keras
    import numpy as np
    import tensorflow as tf

    from kinetics import flags as kflags
    from kinetics import models
    from kinetics import train as ktrain  # noqa: F401 (defines the preset's flags)
    from vidcore import training

    with preset_flags(kflags.FLAGS, KINETICS_PRESET) as f:
        _, crop = kflags.geometry(f.model)
        cfg = models.ModelConfig(model=f.model,
                                 num_classes=f.num_classes or 400,
                                 clip_len=f.clip_len, crop_size=crop,
                                 resize=(crop, crop))
        batch, sync_bn = f.batch_size, f.sync_bn
        lr = f.lr * replicas * f.lr_warmup_decay
        momentum, weight_decay = f.momentum, f.weight_decay
    if smoke:
        # 20x20: layer4 still sees 2x2 positions per clip, so its batch-norm
        # statistics are not degenerate (at 16x16 they are over 4 values and
        # precision noise decides the normalised outputs). The gradient norm
        # of 4 such random clips is ~160, so the recipe's first rate would
        # change the loss by ~20% per step and the precisions would part for
        # that reason alone: the smoke run takes 1/100 of it.
        cfg = dataclasses.replace(cfg, num_classes=10, clip_len=4,
                                  crop_size=20, resize=(20, 20))
        batch, lr = 2, lr / 100

    def per_example_loss(labels, logits):
        return keras.losses.sparse_categorical_crossentropy(
            labels, tf.cast(logits, tf.float32), from_logits=True)

    def make_batch(rng, n):
        clips = rng.normal(size=(n, cfg.clip_len, cfg.crop_size,
                                 cfg.crop_size, 3)).astype(np.float32)
        return clips, rng.integers(0, cfg.num_classes, n).astype(np.int32)

    size = f"{cfg.clip_len}x{cfg.crop_size}x{cfg.crop_size}"
    return Family(
        name=cfg.model, example=f"clip ({size})", per_replica_batch=batch,
        build_model=lambda: models.build_model(cfg, sync_bn=sync_bn),
        build_optimizer=lambda loss_scale: training.make_optimizer(
            "torch_sgd", lr, loss_scale=loss_scale, momentum=momentum),
        per_example_loss=per_example_loss, make_batch=make_batch,
        weight_decay=weight_decay, slot_variables=1)


def milnce_family(smoke, replicas):
    """MIL-NCE (S3D-G + text, configs/howto/milnce_howto100m.flags): clips
    of 16x224x224 with 4 candidate captions of 20 words each, 32 clips per
    device (the preset's 256 clips of one host over 8 GPUs: the original
    divides --batch_size by the node's GPUs), the MIL-NCE loss over the
    global batch, Adam on the preset's warm-up schedule from its step 0
    (as howto.milnce_train), a frozen random word table of the release's
    66,250 x 300."""
    del replicas  # a per-device batch; the loss gathers the global one
    import numpy as np

    from howto import milnce_flags as mflags
    from howto import milnce_model
    from vidcore import losses, schedules, training

    with preset_flags(mflags.FLAGS, MILNCE_PRESET) as f:
        cfg = milnce_model.MilNCEConfig(
            embedding_dim=f.num_class, space_to_depth=bool(f.space_to_depth),
            sync_bn=bool(f.sync_bn))
        frames, size = f.num_frames, f.video_size
        candidates, words = f.num_candidates, f.max_words
        lr, warmup = f.lr, f.warmup_steps
        # as howto.milnce_train: --optimizer=sgd is PyTorch's momentum form
        optimizer, optimizer_kwargs = (
            ("torch_sgd", {"momentum": f.momemtum}) if f.optimizer == "sgd"
            else ("adam", {}))
    batch = MILNCE_BATCH_PER_DEVICE
    if smoke:
        # 64x64: mixed_5c still sees 2x2 positions per clip (stride 32), so
        # its batch-norm statistics are not over 2 values only.
        cfg = dataclasses.replace(cfg, embedding_dim=16, vocab_size=50,
                                  word_dim=8, text_hidden=16)
        frames, size, candidates, words, batch = 8, 64, 2, 4, 2

    def per_example_loss(labels, outputs):  # as howto.milnce_train
        del labels
        return losses.cross_replica_milnce(outputs["video_embedding"],
                                           outputs["text_embedding"])

    def make_batch(rng, n):
        video = rng.random((n, frames, size, size, 3), dtype=np.float32)
        text = rng.integers(1, cfg.vocab_size, (n, candidates, words),
                            dtype=np.int32)  # [n, K, L]; 0 = padding
        return {"video": video, "text": text}, np.zeros(n, np.int32)

    # The decay's length only matters after the warm-up, far past the
    # check's steps.
    schedule = schedules.WarmupCosineDecay(lr, warmup, 100 * max(warmup, 1))
    return Family(
        name="milnce_s3dg",
        example=f"clip ({frames}x{size}x{size}, {candidates} captions of "
                f"{words} words)",
        per_replica_batch=batch,
        build_model=lambda: milnce_model.build_milnce_model(cfg),
        build_optimizer=lambda loss_scale: training.make_optimizer(
            optimizer, schedule, loss_scale=loss_scale, **optimizer_kwargs),
        per_example_loss=per_example_loss, make_batch=make_batch,
        slot_variables=2 if optimizer == "adam" else 1)


def avlnet_family(smoke, replicas):
    """AVLnet (ResDAVEnet audio <-> 2D+3D video features, configs/avl/
    avlnet_howto100m.flags): 10 s windows of 1,000 log-mel frames, 32 clip
    pairs per video, the preset's 128 videos over the paper's 2 GPUs (64
    videos, 2,048 clip pairs per device), the masked margin softmax loss
    over the global batch, Adam at the preset's rate (as avl.train)."""
    import numpy as np

    from avl import flags as aflags
    from avl import models as avl_models
    from avl import train as avl_train
    from vidcore import training
    from vidcore.backbones.resdavenet import NUM_BANDS

    with preset_flags(aflags.FLAGS, AVL_PRESET) as f:
        cfg = aflags.model_config_from_flags()
        videos, n_pair, lr = f.batch_size, f.n_pair, f.lr
        frames = f.howto_audio_frames
    per_replica = videos // AVL_GPUS_IN_PAPER
    if smoke:
        # 32 frames: the trunk's 16x time reduction leaves 2 steps. The
        # preset's rate takes 8 random clips' loss from 4.2 to 1.7 in two
        # steps, and the precisions would part for that reason alone: the
        # smoke run takes 1/10 of it.
        cfg = dataclasses.replace(cfg, embd_dim=16, feature_dim=12)
        per_replica, n_pair, frames, lr = 2, 2, 32, lr / 10
    del replicas  # a per-device batch; the loss gathers the global one

    def make_batch(rng, n):
        rows = n * n_pair
        video = np.abs(rng.normal(size=(rows, cfg.feature_dim)))
        # log-mel values in dB below the clip's maximum, [rows, 40, T]
        audio = -40.0 * rng.random((rows, NUM_BANDS, frames))
        return ({avl_models.VIDEO: video.astype(np.float32),
                 avl_models.AUDIO: audio.astype(np.float32),
                 avl_models.NFRAMES: np.full(rows, frames, np.int32)},
                np.zeros(n, np.int32))

    return Family(
        name="avlnet", example=f"video ({n_pair} pairs of {frames} audio "
                               f"frames + features)",
        per_replica_batch=per_replica,
        build_model=lambda: avl_models.build_model(cfg),
        build_optimizer=lambda loss_scale: training.make_optimizer(
            "adam", lr, loss_scale=loss_scale),
        per_example_loss=avl_train.mms_loss_fn(cfg, n_pair),
        make_batch=make_batch)


# name -> (smoke, replicas) -> Family.
FAMILIES = {
    "yt8m_netvlad": lambda smoke, r: yt8m_family("yt8m_netvlad", smoke, r),
    "yt8m_dbof": lambda smoke, r: yt8m_family("yt8m_dbof", smoke, r),
    "howto100m": howto_family,
    "r2plus1d_18": r2plus1d_family,
    "milnce_s3dg": milnce_family,
    "avlnet": avlnet_family,
}


# --------------------------------------------------------------------------- #
# Running one case.
# --------------------------------------------------------------------------- #
@contextlib.contextmanager
def dtype_policy(precision):
    """Applies ``precision`` as the projects' CLIs do
    (vidcore.distribute.configure_mixed_precision) for the block; restores
    the previous Keras policy and Grappler remapping afterwards and frees
    the Keras state of the block."""
    import keras
    import tensorflow as tf

    from vidcore import distribute

    old_policy = keras.mixed_precision.global_policy().name
    remapping = tf.config.optimizer.get_experimental_options().get(
        "remapping", True)
    distribute.configure_mixed_precision(precision)
    try:
        yield
    finally:
        gc.collect()
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy(old_policy)
        tf.config.optimizer.set_experimental_options(
            {"remapping": remapping})


def replica_batches(family, replicas, seed):
    """(features, labels) with a leading replica axis: one distinct batch
    per replica, the same for every precision."""
    import numpy as np
    import tensorflow as tf
    rng = np.random.default_rng(seed)
    batches = [family.make_batch(rng, family.per_replica_batch)
               for _ in range(replicas)]
    # replicas x [batch, ...] -> [replicas, batch, ...]
    return tf.nest.map_structure(lambda *parts: np.stack(parts), *batches)


def make_dataset_fn(data, min_steps, deadline):
    """dataset_fn for the Trainer: the same per-replica batches every step,
    ending at ``deadline`` (time.time() seconds) but not before
    ``min_steps`` steps."""
    import tensorflow as tf

    @tf.autograph.experimental.do_not_convert
    def running(i, _):
        return tf.logical_or(i < min_steps, tf.timestamp() < deadline)

    @tf.autograph.experimental.do_not_convert
    def without_index(_, batches):
        return batches

    def dataset_fn(ctx, seed):
        del ctx, seed  # one worker; the same data for every precision
        steps = tf.data.Dataset.from_tensors(data).repeat().enumerate()
        # [replicas, batch, ...] -> replicas consecutive per-replica batches
        return steps.take_while(running).map(without_index).unbatch()

    return dataset_fn


def read_scalars(train_dir, tags):
    """{tag: {step: value}} of the scalars the loop wrote to TensorBoard."""
    import tensorflow as tf
    found = {tag: {} for tag in tags}
    for path in sorted(glob.glob(os.path.join(train_dir,
                                              "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag in found:
                    found[value.tag][event.step] = float(
                        tf.make_ndarray(value.tensor))
    return found


def run_case(family, precision, strategy, opts, initial_weights, deadline,
             work_dir):
    """Trains ``family`` in ``precision``; returns a CaseResult.

    Args:
        family: Family.
        precision: one of PRECISIONS.
        strategy: the tf.distribute strategy.
        opts: parsed options (steps, warmup_steps).
        initial_weights: dict shared by a family's cases: the first case
            stores its freshly built weights under the family's name, the
            others start from them.
        deadline: time.time() after which the data ends.
        work_dir: parent of the case's temporary train_dir.
    """
    import keras
    import tensorflow as tf

    from vidcore import training

    replicas = strategy.num_replicas_in_sync
    result = CaseResult(family.name, precision, replicas,
                        family.per_replica_batch * replicas)
    data = replica_batches(family, replicas, SEED)
    max_steps = opts.warmup_steps + opts.steps

    def build_model():
        keras.utils.set_random_seed(SEED)
        model = family.build_model()
        if family.name in initial_weights:
            model.set_weights(initial_weights[family.name])
        else:
            initial_weights[family.name] = model.get_weights()
        return model

    with dtype_policy(precision), tempfile.TemporaryDirectory(
            prefix=f"gpu_check_{family.name}_", dir=work_dir) as train_dir:
        trainer = training.Trainer(
            strategy,
            training.LoopConfig(
                train_dir=train_dir,
                per_replica_batch_size=family.per_replica_batch,
                max_steps=max_steps, checkpoint_every_steps=10 ** 9,
                log_every_steps=1, keep_checkpoints=1, verbose=False),
            build_model=build_model,
            build_optimizer=lambda gb: family.build_optimizer(
                precision == "mixed_float16"),
            per_example_loss=family.per_example_loss,
            dataset_fn=make_dataset_fn(data, opts.warmup_steps + 2,
                                       deadline),
            regularization_weight=family.regularization_weight,
            weight_decay=family.weight_decay)
        try:
            steps = trainer.train()
        except (FloatingPointError, tf.errors.OpError) as e:
            first = str(getattr(e, "message", e)).strip().splitlines()
            result.failures.append(first[0] if first else type(e).__name__)
            steps = int(trainer.step.numpy())
        applied = int(trainer.optimizer.iterations.numpy())
        result.skipped_steps = max(0, int(trainer.step.numpy()) - applied)
        scalars = read_scalars(train_dir, (LOSS_TAG, RATE_TAG))
        del trainer
    result.losses = dict(sorted(scalars[LOSS_TAG].items()))
    bad = [s for s, v in result.losses.items() if not math.isfinite(v)]
    if bad:
        result.failures.append(f"loss not finite at step {bad[0]}")
    timed = [rate for s, rate in scalars[RATE_TAG].items()
             if s > opts.warmup_steps and rate > 0]
    result.timed_steps = len(timed)
    if timed:
        seconds = sum(result.global_batch / rate for rate in timed)
        result.examples_per_s = result.global_batch * len(timed) / seconds
    elif not result.failures:
        result.failures.append(f"no timed step ({steps} steps run, "
                               f"{opts.warmup_steps} warm-up)")
    return result


def compare_to_float32(result, reference):
    """Sets result.deviation, the largest relative difference between the
    result's first PARITY_STEPS losses and the float32 run's, and a failure
    past the precision's tolerance.

    Steps a LossScaleOptimizer skipped (mixed_float16; non-finite scaled
    gradients) apply no update. They are taken to be the first ones (the
    search for a loss scale, which starts at 2^15, happens there), so the
    result's step s is compared with the float32 step that follows as many
    updates: max(1, s - skipped).
    """
    pairs = [(s, max(1, s - result.skipped_steps))
             for s in sorted(result.losses)[:PARITY_STEPS]]
    pairs = [(s, r) for s, r in pairs if r in reference.losses]
    if not pairs:
        result.failures.append("no loss to compare with float32")
        return
    result.deviation = max(
        abs(result.losses[s] - reference.losses[r])
        / max(abs(reference.losses[r]), 1e-12) for s, r in pairs)
    tolerance = TOLERANCE[result.precision]
    if not result.deviation <= tolerance:
        skipped = (f", {result.skipped_steps} skipped steps"
                   if result.skipped_steps else "")
        result.failures.append(
            f"loss deviates from float32 by {result.deviation:.2e} (relative,"
            f" steps {pairs[0][0]}-{pairs[-1][0]}{skipped}) > tolerance "
            f"{tolerance:g}")


# --------------------------------------------------------------------------- #
# Set-up, table, main.
# --------------------------------------------------------------------------- #
def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="bench/gpu_check.py", description=__doc__.split("\n")[0],
        epilog="Prints one table; exit status 1 if any case FAILs.")
    parser.add_argument(
        "--families", default=",".join(FAMILIES),
        help=f"comma-separated, from: {', '.join(FAMILIES)} (default: all)")
    parser.add_argument(
        "--precisions", default=",".join(PRECISIONS),
        help=f"comma-separated, from: {', '.join(PRECISIONS)} (default: "
             f"all; mixed runs are compared with float32 when it runs)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per case at most (default 30; "
                             "smoke 2)")
    parser.add_argument("--warmup_steps", type=int, default=None,
                        help="untimed steps first (default 3; smoke 1)")
    parser.add_argument("--budget_s", type=float, default=360.0,
                        help="seconds for all cases together: each case's "
                             "data ends at its share (default 360)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes on two logical CPU devices (when no"
                             " GPU), for the test")
    parser.add_argument("--work_dir", default=None,
                        help="parent of the temporary train_dirs (default: "
                             "/dev/shm when the checkpoint fits, else the "
                             "system temp folder)")
    opts = parser.parse_args(argv)
    opts.steps = opts.steps or (2 if opts.smoke else 30)
    opts.warmup_steps = (opts.warmup_steps if opts.warmup_steps is not None
                         else 1 if opts.smoke else 3)
    for attr, known in (("families", FAMILIES), ("precisions", PRECISIONS)):
        chosen = [v.strip() for v in getattr(opts, attr).split(",")
                  if v.strip()]
        unknown = [v for v in chosen if v not in known]
        if unknown or not chosen:
            parser.error(f"--{attr}={getattr(opts, attr)}: expected a "
                         f"comma-separated subset of {', '.join(known)}")
        # float32 first: the mixed runs are compared with it.
        setattr(opts, attr, [v for v in known if v in chosen])
    if opts.steps < 1 or opts.warmup_steps < 1:
        parser.error("--steps and --warmup_steps must be >= 1")
    return opts


def two_logical_cpus():
    """Splits the CPU into two logical devices (as tests/conftest.py does)
    so that MirroredStrategy has two replicas without a GPU; no-op once
    TensorFlow's devices are initialised."""
    import tensorflow as tf
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:
        pass


def choose_work_dir(requested, checkpoint_bytes):
    """Where the train_dirs go: the final checkpoint of a 321 M-parameter
    model with Adam is ~3.9 GB, written once per case."""
    if requested:
        os.makedirs(requested, exist_ok=True)
        return requested
    shm = "/dev/shm"
    if os.path.isdir(shm) and shutil.disk_usage(shm).free > 1.5 * (
            checkpoint_bytes):
        return shm
    return tempfile.gettempdir()


def format_table(results, peaks, flops, families):
    """The Markdown table of all cases."""
    lines = [
        "| family | precision | replicas | global batch | timed steps | "
        "examples/s | train GFLOP/example | model TFLOP/s | matmul peak "
        "TFLOP/s | fraction of peak | max loss deviation from float32 | "
        "result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        rate = flops[r.family] * r.examples_per_s
        deviation = ("reference" if r.precision == "float32" else
                     "-" if r.deviation is None else f"{r.deviation:.1e}")
        status = "FAIL" if r.failures else "ok"
        if r.skipped_steps:
            status += f" ({r.skipped_steps} skipped steps)"
        lines.append(
            f"| {r.family} | {r.precision} | {r.replicas} | {r.global_batch}"
            f" | {r.timed_steps} | {r.examples_per_s:.4g} | "
            f"{flops[r.family] / 1e9:.4g} | {rate / 1e12:.3g} | "
            f"{peaks[r.precision] / 1e12:.3g} | "
            f"{rate / peaks[r.precision]:.3g} | {deviation} | {status} |")
    lines.append("")
    lines += [f"- {f.name}: one example = one {f.example}, "
              f"{f.per_replica_batch} per replica" for f in families]
    return "\n".join(lines)


def describe_machine(strategy):
    import platform

    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    names = sorted({tf.config.experimental.get_device_details(g).get(
        "device_name", "GPU") for g in gpus})
    device = (f"{len(gpus)} x {', '.join(names)}" if gpus
              else f"no GPU ({os.cpu_count()} CPUs)")
    tf32 = ("; TensorFloat-32 " + (
        "on" if tf.config.experimental.tensor_float_32_execution_enabled()
        else "off")) if gpus else ""
    return (f"TensorFlow {tf.__version__}, {platform.machine()}, {device}; "
            f"MirroredStrategy over {strategy.num_replicas_in_sync} "
            f"replica(s){tf32}")


def measure_peaks(strategy, precisions, smoke):
    """{precision: dense matmul FLOP/s over all replicas} in each precision's
    compute dtype."""
    import keras
    import tensorflow as tf

    # 8192^3 x 8 keeps a GPU busy for ~10 ms a call; on a CPU 2048^3 does.
    n, chain, repeats = ((64, 2, 3) if smoke else (8192, 8, 10)
                         if tf.config.list_logical_devices("GPU")
                         else (2048, 1, 5))
    peaks = {}
    for precision in precisions:
        dtype = keras.mixed_precision.Policy(precision).compute_dtype
        peaks[precision] = _flops.matmul_peak(
            n=n, dtype=dtype, chain=chain, repeats=repeats,
            strategy=strategy)
        print(f"dense {dtype} matmul peak: {peaks[precision] / 1e12:.3g} "
              f"TFLOP/s ({n}^3 x {chain} per call)", flush=True)
    return peaks


def count_family(family):
    """(training FLOPs per example, bytes of its final checkpoint) from a
    float32 model on one device."""
    import numpy as np
    import tensorflow as tf

    with dtype_policy("float32"):
        model = family.build_model()
        features, _ = family.make_batch(np.random.default_rng(SEED),
                                        family.per_replica_batch)
        flops = _flops.TRAIN_TO_FORWARD * _flops.forward_flops(
            model, tf.nest.map_structure(tf.constant, features))
        size = 4 * (1 + family.slot_variables) * model.count_params()
        del model
    return flops / family.per_replica_batch, size


def run_family(family, strategy, opts, end, cases_left, work_dir):
    """Runs a family in every precision (float32 first: the others are
    compared with it); each case gets an equal share of the time left
    until ``end`` among ``cases_left`` cases. Returns the CaseResults."""
    results, initial_weights, reference = [], {}, None
    for precision in opts.precisions:
        now = time.time()
        deadline = now + max(0.0, end - now) / cases_left
        cases_left -= 1
        result = run_case(family, precision, strategy, opts,
                          initial_weights, deadline, work_dir)
        if precision == "float32":
            reference = result
        elif reference is not None and reference.losses:
            compare_to_float32(result, reference)
        losses = list(result.losses.values()) or [float("nan")]
        print(f"{family.name} {precision}: {len(result.losses)} steps, "
              f"{result.examples_per_s:.4g} examples/s, loss "
              f"{losses[0]:.6g} -> {losses[-1]:.6g} "
              f"({time.time() - now:.0f} s)", flush=True)
        results.append(result)
    return results


def main(argv=None):
    """Runs the check; prints the table; returns the exit status (0: all
    cases ok, 1: a FAIL)."""
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    start = time.time()
    if opts.smoke:
        two_logical_cpus()
    from vidcore import distribute

    strategy = distribute.make_strategy("mirrored")
    print(describe_machine(strategy), flush=True)
    peaks = measure_peaks(strategy, opts.precisions, opts.smoke)
    families = [FAMILIES[name](opts.smoke, strategy.num_replicas_in_sync)
                for name in opts.families]
    results, flops = [], {}
    for i, family in enumerate(families):
        flops[family.name], checkpoint_bytes = count_family(family)
        results += run_family(
            family, strategy, opts, start + opts.budget_s,
            (len(families) - i) * len(opts.precisions),
            choose_work_dir(opts.work_dir, checkpoint_bytes))

    print()
    print(format_table(results, peaks, flops, families))
    print(f"\n{len(results)} cases in {time.time() - start:.0f} s "
          f"(budget {opts.budget_s:.0f} s)")
    failed = [(r, f) for r in results for f in r.failures]
    for r, failure in failed:
        print(f"FAIL {r.family} {r.precision}: {failure}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
