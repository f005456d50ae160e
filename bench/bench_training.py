"""Training throughput of the published YouTube-8M configurations on this machine.

For each preset in configs/yt8m/ (full size, 3862 classes), runs the shared
training step (vidcore.training.Trainer: forward, loss, all-reduce, clip,
Adam) on in-memory random batches of 80 videos x 300 frames, and reports
examples/s and the model's FLOP/s as a fraction of this machine's dense
float32 matmul FLOP/s measured in the same run.

Model FLOPs per example are counted by TensorFlow's graph profiler on the
forward pass (a matmul counts 2*m*n*k; recurrent layers unrolled so that
every time step counts); a training step is taken as 3x the forward pass
(forward + two backward matmuls per forward matmul).

    python bench/bench_training.py [--steps 3 --batch 80]

Each configuration runs in its own process (models of up to 333 M
parameters).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench._flops import (TRAIN_TO_FORWARD, forward_flops_per_example,  # noqa: E402
                          matmul_peak)


def run_one(preset, steps, batch):
    """Times one preset (child process); prints a JSON line."""
    import numpy as np
    import tensorflow as tf
    from absl import flags

    from vidcore import distribute, losses, training
    from yt8m import flags as yflags
    from yt8m.models import build_model, count_trainable_params

    flags.FLAGS([sys.argv[0], f"--flagfile={preset}"])
    cfg = yflags.model_config_from_flags()
    rng = np.random.default_rng(0)
    inputs = {"frames": rng.integers(0, 256, (batch, 300, 1152),
                                     dtype=np.uint8),
              "num_frames": rng.integers(120, 301, batch).astype(np.int32)}
    labels = rng.random((batch, cfg.num_classes)) < 3 / cfg.num_classes

    def dataset_fn(ctx, seed):
        return tf.data.Dataset.from_tensors((inputs, labels)).repeat()

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = training.Trainer(
            distribute.make_strategy("default"),
            training.LoopConfig(train_dir=tmp, per_replica_batch_size=batch,
                                max_steps=1, checkpoint_every_steps=10**9,
                                verbose=False),
            build_model=lambda: build_model(cfg),
            build_optimizer=lambda gb: training.make_optimizer(
                "tf1_adam", 2e-4, clip_norm=1.0),
            per_example_loss=losses.multilabel_cross_entropy,
            dataset_fn=dataset_fn)
        step_fn = trainer._make_train_function()
        iterator = iter(trainer.strategy.distribute_datasets_from_function(
            lambda ctx: dataset_fn(ctx, 0)))
        one = tf.constant(1)  # one step per call
        step_fn(iterator, one)  # trace + warm up
        for _ in range(steps):
            start = time.perf_counter()
            float(step_fn(iterator, one)[1][0])
            times.append(time.perf_counter() - start)
        flops = forward_flops_per_example(
            trainer.model, {k: tf.constant(v[:8]) for k, v in inputs.items()})
        params = count_trainable_params(trainer.model)
    step = float(np.median(times))
    print(json.dumps({"model": cfg.model, "params": params, "step_s": step,
                      "examples_per_s": batch / step,
                      "train_flops_per_example": TRAIN_TO_FORWARD * flops}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=80)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return run_one(args.one, args.steps, args.batch)

    peak = matmul_peak(n=2048, dtype="float32")
    rows = []
    presets = sorted(os.listdir(os.path.join(REPO, "configs", "yt8m")))
    for name in presets:
        proc = subprocess.run(
            [sys.executable, __file__, f"--one={REPO}/configs/yt8m/{name}",
             f"--steps={args.steps}", f"--batch={args.batch}"],
            capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append((name, row))
        print(f"{name}: {row['examples_per_s']:.1f} examples/s", flush=True)

    import tensorflow as tf
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, "
          f"TensorFlow {tf.__version__}; "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"dense float32 matmul (2048^3): {peak / 1e9:.1f} GFLOP/s; batch "
          f"{args.batch}, median of {args.steps} steps after warm-up\n")
    print("| preset | model | trainable params | s/step | examples/s | "
          "train GFLOP/example | model GFLOP/s | fraction of matmul peak |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        rate = r["train_flops_per_example"] * r["examples_per_s"]
        print(f"| {name} | {r['model']} | {r['params']:,} | "
              f"{r['step_s']:.2f} | {r['examples_per_s']:.1f} | "
              f"{r['train_flops_per_example'] / 1e9:.2f} | {rate / 1e9:.1f} | "
              f"{rate / peak:.2f} |")


if __name__ == "__main__":
    main()
