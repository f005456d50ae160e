"""Steps/s of the training loop at 1 and at N steps per tf.function call.

Runs ``vidcore.training.Trainer.train`` itself (progress bar off) on a
small YouTube-8M video-level model (MoE over 1152 features) with in-memory
batches, so the time is the step plus the loop's per-call overhead (the
host round trip that ``steps_per_loop`` amortises). Each run logs every
``--steps`` steps: the first window includes tracing, the second is timed
by the loop's own ``examples_per_second`` (read back from TensorBoard).
Best of ``--rounds`` fresh runs per setting; all settings run in the same
process on the same batches.

    python bench/bench_steps_per_loop.py [--steps_per_loop 1,10,50]
        [--steps 200 --rounds 3 --batch 32 --num_classes 100]
"""

import argparse
import datetime
import os
import platform
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def timed_rate(steps_per_loop, steps, batch, num_classes):
    """Steps/s of the second window of ``steps`` steps of one fresh run."""
    import keras
    import numpy as np
    import tensorflow as tf

    from vidcore import distribute, losses, training
    from yt8m.models import ModelConfig, build_model

    cfg = ModelConfig(model="MoeModel", num_classes=num_classes,
                      feature_sizes=(1024, 128), moe_num_mixtures=2)
    rng = np.random.default_rng(0)
    inputs = {"features": rng.normal(size=(batch, 1152)).astype("float32")}
    labels = rng.random((batch, num_classes)) < 3 / num_classes

    def dataset_fn(ctx, seed):
        del ctx, seed
        return tf.data.Dataset.from_tensors((inputs, labels)).repeat()

    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = training.Trainer(
            distribute.make_strategy("default"),
            training.LoopConfig(
                train_dir=tmp, per_replica_batch_size=batch,
                max_steps=2 * steps, log_every_steps=steps,
                checkpoint_every_steps=10 ** 9, verbose=False,
                steps_per_loop=steps_per_loop),
            build_model=lambda: build_model(cfg),
            build_optimizer=lambda gb: training.make_optimizer(
                "adam", 1e-3, clip_norm=1.0),
            per_example_loss=losses.multilabel_cross_entropy,
            dataset_fn=dataset_fn)
        trainer.train()
        rates = {}
        for name in os.listdir(tmp):
            if name.startswith("events"):
                for event in tf.compat.v1.train.summary_iterator(
                        os.path.join(tmp, name)):
                    for v in event.summary.value:
                        if v.tag == "examples_per_second":
                            rates[event.step] = float(
                                tf.make_ndarray(v.tensor))
    return rates[2 * steps] / batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps_per_loop", default="1,10,50")
    parser.add_argument("--steps", type=int, default=200,
                        help="steps per timed window (a multiple of each N)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--num_classes", type=int, default=100)
    args = parser.parse_args()
    settings = [int(n) for n in args.steps_per_loop.split(",")]
    for n in settings:
        if args.steps % n:
            sys.exit(f"--steps={args.steps} is not a multiple of "
                     f"steps_per_loop {n}")
    best = {n: 0.0 for n in settings}
    for _ in range(args.rounds):  # settings interleaved: same load for each
        for n in settings:
            best[n] = max(best[n], timed_rate(n, args.steps, args.batch,
                                              args.num_classes))
    import tensorflow as tf
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} "
          f"UTC, {platform.machine()}, {os.cpu_count()} CPUs, TensorFlow "
          f"{tf.__version__}, GPUs: "
          f"{len(tf.config.list_physical_devices('GPU'))}, load average "
          f"{load}")
    print(f"# MoeModel 1152 features -> {args.num_classes} classes, 2 "
          f"mixtures, Adam; batch {args.batch}; best of {args.rounds} rounds "
          f"of {args.steps} timed steps")
    print("| steps per call | steps/s | vs 1 per call |")
    print("|---|---|---|")
    base = best.get(1)
    for n in settings:
        ratio = f"{best[n] / base:.2f}x" if base else "-"
        print(f"| {n} | {best[n]:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
