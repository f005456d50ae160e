"""MIL-NCE training throughput (S3D-G + text, cross-replica MIL-NCE, Adam).

Times the project's own training step (``vidcore.training.Trainer``'s step
function, as ``howto.milnce_train`` builds it: forward through
``howto.milnce_model``, ``vidcore.losses.cross_replica_milnce`` over the
global batch, gradients, Adam with the ``WarmupCosineDecay`` schedule) on
SYNTHETIC in-memory batches: clips uniform in [0, 1] and random word ids
(``--num_candidates`` captions of ``--max_words`` words per clip, the
release's 66,250 x 300 frozen word table). The reader is excluded; it has
its own benchmark, bench/bench_milnce_reader.py.

For each size (frames x height x width : batch), one warm-up step
(tracing) and then ``--rounds`` rounds of ``--steps`` steps in one call
each; clips/s is the best round's. Model FLOPs per clip are the forward
pass counted by TensorFlow's graph profiler, x3 for a training step
(bench/_flops.py); they are given as a fraction of the dense float32 matmul
FLOP/s measured in the same process (2048^3, best of 10, before and after
the sizes; the larger is used). The peak resident memory of the process
after each size is printed too (sizes run in the order given, so the
largest so far sets it).

    python bench/bench_milnce_training.py [--sizes 16x224x224:2,8x64x64:8]
        [--steps 1 --rounds 3]
"""

import argparse
import datetime
import os
import platform
import resource
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench._flops import (TRAIN_TO_FORWARD, forward_flops_per_example,  # noqa: E402
                          matmul_peak)


def parse_sizes(text):
    """'16x224x224:2,8x64x64:8' -> [((16, 224, 224), 2), ((8, 64, 64), 8)]."""
    sizes = []
    for item in text.split(","):
        try:
            shape, batch = item.strip().split(":")
            frames, height, width = (int(v) for v in shape.split("x"))
            sizes.append(((frames, height, width), int(batch)))
        except ValueError:
            raise SystemExit(f"--sizes: {item!r} is not FRAMESxHxW:BATCH")
    return sizes


def synthetic_batch(rng, batch, shape, num_candidates, max_words,
                    vocab_size):
    """(features, labels) of one batch: clips in [0, 1], word ids 1..V-1
    (no padding slot)."""
    import numpy as np
    video = rng.random((batch, *shape, 3), dtype=np.float32)  # [B, T, H, W, 3]
    text = rng.integers(1, vocab_size, (batch, num_candidates, max_words),
                        dtype=np.int32)  # [B, K, L]
    return {"video": video, "text": text}, np.zeros(batch, np.int32)


def measure(shape, batch, opts):
    """Times one size; returns a dict of the row's values."""
    import keras
    import numpy as np
    import tensorflow as tf

    from howto import milnce_model
    from vidcore import losses, schedules, training

    cfg = milnce_model.MilNCEConfig()  # the release's sizes
    features, labels = synthetic_batch(
        np.random.default_rng(0), batch, shape, opts.num_candidates,
        opts.max_words, cfg.vocab_size)

    def dataset_fn(ctx, seed):
        del ctx, seed
        return tf.data.Dataset.from_tensors((features, labels)).repeat()

    def per_example_loss(labels, outputs):  # as howto.milnce_train
        del labels
        return losses.cross_replica_milnce(outputs["video_embedding"],
                                           outputs["text_embedding"])

    strategy = tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)  # the same initial weights every run
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = training.Trainer(
            strategy,
            training.LoopConfig(train_dir=tmp, per_replica_batch_size=batch,
                                max_steps=1, verbose=False,
                                checkpoint_every_steps=10 ** 9),
            build_model=lambda: milnce_model.build_milnce_model(cfg),
            build_optimizer=lambda gb: training.make_optimizer(
                "adam", schedules.WarmupCosineDecay(1e-3, 10000, 10 ** 6)),
            per_example_loss=per_example_loss, dataset_fn=dataset_fn)
        iterator = iter(strategy.distribute_datasets_from_function(
            lambda ctx: dataset_fn(ctx, 0)))
        step = trainer._make_train_function()  # the loop's own step
        start = time.perf_counter()
        ran, values, _, _ = step(iterator, tf.constant(1))
        first_loss = float(values[0])
        warmup_s = time.perf_counter() - start
        n = tf.constant(opts.steps)
        for _ in range(opts.rounds):
            start = time.perf_counter()
            ran, values, _, _ = step(iterator, n)
            last_loss = float(values[-1])
            rounds.append((time.perf_counter() - start) / int(ran))
        flops = TRAIN_TO_FORWARD * forward_flops_per_example(
            trainer.model, {k: tf.constant(v) for k, v in features.items()})
        params = training.count_trainable_params(trainer.model)
        del trainer
    keras.backend.clear_session()
    best = min(rounds)
    return {"shape": shape, "batch": batch, "params": params,
            "warmup_s": warmup_s, "rounds_s": rounds, "step_s": best,
            "clips_per_s": batch / best, "train_flops_per_clip": flops,
            "losses": (first_loss, last_loss),
            "max_rss_gb": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16x224x224:2,8x64x64:8",
                        help="FRAMESxHEIGHTxWIDTH:BATCH, comma-separated")
    parser.add_argument("--steps", type=int, default=1,
                        help="steps per timed round (one call)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num_candidates", type=int, default=4)
    parser.add_argument("--max_words", type=int, default=20)
    opts = parser.parse_args()
    sizes = parse_sizes(opts.sizes)

    import tensorflow as tf
    start_load = load_average()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}"
          f" UTC, {platform.machine()}, {os.cpu_count()} CPUs, TensorFlow "
          f"{tf.__version__}, GPUs: "
          f"{len(tf.config.list_physical_devices('GPU'))}, load average "
          f"{start_load}", flush=True)
    peaks = [matmul_peak(n=2048, dtype="float32")]
    rows = []
    for shape, batch in sizes:
        row = measure(shape, batch, opts)
        rows.append(row)
        print(f"{'x'.join(map(str, shape))} batch {batch}: warm-up "
              f"{row['warmup_s']:.1f} s, rounds "
              f"{', '.join(f'{s:.2f}' for s in row['rounds_s'])} s/step, "
              f"loss {row['losses'][0]:.4f} -> {row['losses'][1]:.4f}, "
              f"max RSS {row['max_rss_gb']:.2f} GB", flush=True)
    peaks.append(matmul_peak(n=2048, dtype="float32"))
    peak = max(peaks)
    print(f"\n# load average {start_load} -> {load_average()}; dense float32"
          f" matmul 2048^3: {peaks[0] / 1e9:.1f} / {peaks[1] / 1e9:.1f} "
          f"GFLOP/s (before / after; {peak / 1e9:.1f} used); "
          f"{rows[0]['params']:,} trainable parameters; "
          f"K = {opts.num_candidates} captions x {opts.max_words} words per "
          f"clip; best of {opts.rounds} rounds of {opts.steps} step(s) after"
          f" one warm-up step; synthetic in-memory batches (reader "
          f"excluded)\n")
    print("| clip | batch | s/step (best) | clips/s | train GFLOP/clip | "
          "model GFLOP/s | fraction of matmul peak | max RSS GB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate = r["train_flops_per_clip"] * r["clips_per_s"]
        print(f"| {'x'.join(map(str, r['shape']))} | {r['batch']} | "
              f"{r['step_s']:.2f} | {r['clips_per_s']:.3g} | "
              f"{r['train_flops_per_clip'] / 1e9:.1f} | {rate / 1e9:.1f} | "
              f"{rate / peak:.2f} | {r['max_rss_gb']:.2f} |")


if __name__ == "__main__":
    main()
