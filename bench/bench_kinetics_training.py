"""Training throughput of the Kinetics backbones on this machine.

Runs the shared training loop (vidcore.training.Trainer: forward, softmax
cross-entropy, coupled weight decay, all-reduce, PyTorch-form SGD with the
recipe's warm-up schedule) on in-memory random clips, at the recipe's input
size (16 x 112 x 112, 400 classes) unless told otherwise, and prints clips/s
per model and batch size (timed after two warm-up steps).

    python bench/bench_kinetics_training.py [--models r2plus1d_18 --batches 4,8 --steps 5]
"""

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(model_name, batch, steps, clip_len, crop):
    import keras
    import numpy as np
    import tensorflow as tf

    from kinetics import models
    from vidcore import schedules, training

    cfg = models.ModelConfig(model=model_name, num_classes=400,
                             clip_len=clip_len, crop_size=crop,
                             resize=(crop, crop))
    rng = np.random.default_rng(0)
    clips = rng.normal(size=(batch, clip_len, crop, crop, 3)).astype(
        np.float32)
    labels = rng.integers(0, 400, size=batch).astype(np.int32)

    def dataset_fn(ctx, seed):
        del ctx, seed
        return tf.data.Dataset.from_tensors((clips, labels)).repeat()

    def loss(y, logits):
        return keras.losses.sparse_categorical_crossentropy(
            y, tf.cast(logits, tf.float32), from_logits=True)

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = training.Trainer(
            tf.distribute.get_strategy(),
            training.LoopConfig(train_dir=tmp, per_replica_batch_size=batch,
                                max_steps=1, verbose=False,
                                checkpoint_every_steps=10 ** 9),
            build_model=lambda: models.build_model(cfg),
            build_optimizer=lambda gb: training.make_optimizer(
                "torch_sgd", schedules.WarmupMultiStepDecay(
                    0.01, warmup_steps=100), momentum=0.9),
            per_example_loss=loss, dataset_fn=dataset_fn,
            weight_decay=1e-4)
        iterator = iter(tf.distribute.get_strategy()
                        .distribute_datasets_from_function(
                            lambda ctx: dataset_fn(ctx, 0)))
        step = trainer._make_train_function()  # the loop's own step, timed
        for i in range(steps + 2):
            start = time.perf_counter()
            _, value, _, _ = step(iterator, tf.constant(1))
            float(value[0])
            if i >= 2:
                times.append(time.perf_counter() - start)
    per_step = float(np.median(times))
    return per_step, batch / per_step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="r2plus1d_18")
    parser.add_argument("--batches", default="4,8")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--clip_len", type=int, default=16)
    parser.add_argument("--crop", type=int, default=112)
    args = parser.parse_args()
    import tensorflow as tf
    print(f"# {datetime.date.today()} {platform.node()} "
          f"{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, TensorFlow {tf.__version__}, "
          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}")
    print(f"| model | clip | batch | s/step (median of {args.steps}) "
          f"| clips/s |")
    print("|---|---|---|---|---|")
    for model in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            per_step, rate = measure(model, batch, args.steps, args.clip_len,
                                     args.crop)
            print(f"| {model} | {args.clip_len}x{args.crop}x{args.crop} | "
                  f"{batch} | {per_step:.2f} | {rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
