"""Benchmark and cross-check of vidcore.metrics (GAP@k, mAP, Hit@1, PERR).

1. Cost over bare top-k: on the first --timing-videos videos (already
   TensorFlow tensors, batches of --batch), the whole streaming evaluation
   (``topk_summary`` in one tf.function per batch, summaries fetched,
   ``StreamingYT8MMetrics.update`` per batch, then ``result()``) against
   bare ``tf.math.top_k`` of the same batches (values and indices fetched),
   the part no implementation avoids. Best of --rounds rounds, the two
   taking turns in each round; prints the ratio.
2. Cross-check: our streaming path (numpy and TensorFlow summaries) on all
   --videos against a straightforward per-formula implementation written
   here (full-matrix numpy: per-row argsort for the top-k, one flat sort for
   GAP, a Python loop over classes for mAP and over videos for PERR).

Prints markdown tables and exits with status 1 when a metric differs by more
than --tolerance.

Usage:
  python bench/bench_metrics.py [--videos 100000] [--timing-videos 20000]
      [--classes 3862] [--rounds 5] [--seed 0]
"""
import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from vidcore import metrics as M  # noqa: E402

METRICS = ("gap", "map", "hit_at_one", "perr")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=3862)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--labels-per-video", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=1000,
                        help="videos per streaming update")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-9)
    parser.add_argument("--no-tf", action="store_true",
                        help="skip the TensorFlow summary path")
    parser.add_argument("--timing-videos", type=int, default=20_000,
                        help="videos timed against bare top-k (0: skip)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="best-of rounds of the timing against top-k")
    return parser.parse_args()


def make_data(num_videos, num_classes, labels_per_video, seed):
    """Random multi-hot labels (Zipf-like class frequencies, >= 1 per video)
    and continuous float32 scores correlated with them."""
    rng = np.random.default_rng(seed)
    counts = 1 + rng.poisson(labels_per_video - 1, num_videos)
    weights = 1.0 / (np.arange(num_classes) + 10.0)
    cols = rng.choice(num_classes, counts.sum(), p=weights / weights.sum())
    rows = np.repeat(np.arange(num_videos), counts)
    labels = np.zeros((num_videos, num_classes), bool)
    labels[rows, cols] = True
    preds = rng.standard_normal((num_videos, num_classes), dtype=np.float32)
    preds -= 3.0
    preds[rows, cols] += rng.uniform(1.0, 8.0, rows.size).astype(np.float32)
    np.negative(preds, out=preds)
    np.exp(preds, out=preds)
    preds += 1.0
    np.reciprocal(preds, out=preds)          # sigmoid, in place
    return preds, labels


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


# ---------------------------------------------------------------- our path
def ours_numpy(preds, labels, top_k, batch):
    metrics = M.StreamingYT8MMetrics(preds.shape[1], top_k)
    start = time.perf_counter()
    for lo in range(0, len(preds), batch):
        metrics.update(M.topk_summary_numpy(preds[lo:lo + batch],
                                            labels[lo:lo + batch], top_k))
    summary_s = time.perf_counter() - start
    result, result_s = timed(metrics.result)
    return result, summary_s, result_s


def summary_step(num_classes, top_k):
    """topk_summary as one tf.function per batch, traced for [None, V]."""
    import tensorflow as tf
    spec = [tf.TensorSpec([None, num_classes], tf.float32),
            tf.TensorSpec([None, num_classes], tf.bool)]
    step = tf.function(lambda p, y: M.topk_summary(p, y, top_k),
                       input_signature=spec)
    step.get_concrete_function()  # trace outside the timing
    return step


def ours_tf(preds, labels, top_k, batch):
    step = summary_step(preds.shape[1], top_k)
    metrics = M.StreamingYT8MMetrics(preds.shape[1], top_k)
    start = time.perf_counter()
    for lo in range(0, len(preds), batch):
        summary = step(preds[lo:lo + batch], labels[lo:lo + batch])
        metrics.update({k: v.numpy() for k, v in summary.items()})
    summary_s = time.perf_counter() - start
    result, result_s = timed(metrics.result)
    return result, summary_s, result_s


def timing_against_top_k(preds, labels, top_k, batch, rounds):
    """Best-of-rounds seconds of bare top-k and of each stage of ours.

    Returns:
      dict stage -> seconds: "bare", "summary" (topk_summary, fetched),
      "summary + update", "total" (summary + update + result()).
    """
    import tensorflow as tf
    bare = tf.function(lambda p: tf.math.top_k(p, top_k), input_signature=[
        tf.TensorSpec([None, preds.shape[1]], tf.float32)])
    bare.get_concrete_function()
    step = summary_step(preds.shape[1], top_k)
    batches = [(tf.constant(preds[lo:lo + batch]),
                tf.constant(labels[lo:lo + batch]))
               for lo in range(0, len(preds), batch)]

    def run_bare():
        for p, _ in batches:
            out = bare(p)
            out.values.numpy(), out.indices.numpy()

    def run_ours(update, result):
        metrics = M.StreamingYT8MMetrics(preds.shape[1], top_k)
        for p, y in batches:
            summary = {k: v.numpy() for k, v in step(p, y).items()}
            if update:
                metrics.update(summary)
        if result:
            metrics.result()

    stages = {"bare": run_bare,
              "summary": lambda: run_ours(False, False),
              "summary + update": lambda: run_ours(True, False),
              "total": lambda: run_ours(True, True)}
    best = {name: float("inf") for name in stages}
    for _ in range(rounds):
        for name, fn in stages.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def measure_timing(args, preds, labels):
    """Runs timing_against_top_k; returns what print_timing shows."""
    n = min(args.timing_videos, len(preds))
    before = load_average()
    best = timing_against_top_k(preds[:n], labels[:n], args.top_k,
                                args.batch, args.rounds)
    return n, f"{before} before, {load_average()} after", best


def load_average():
    """The 1/5/15-minute load averages, as in /proc/loadavg."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def print_timing(args, num_classes, timing):
    n, load, best = timing
    print(f"\nCost over bare top-k: {n} x {num_classes} in batches of "
          f"{args.batch}, best of {args.rounds} rounds (load average "
          f"{load}):\n")
    print("| stage | seconds | ratio to bare top-k |\n|---|---|---|")
    names = {"bare": "bare tf.math.top_k (values + indices fetched)",
             "summary": "topk_summary (tf.function per batch, fetched)",
             "summary + update": "+ StreamingYT8MMetrics.update",
             "total": "+ result() = whole evaluation"}
    for stage, seconds in best.items():
        print(f"| {names[stage]} | {seconds:.3f} | "
              f"{seconds / best['bare']:.2f} |")


# ------------------------------------------------- straightforward reference
def reference(preds, labels, top_k, chunk=2000):
    """Per-formula implementation on the full matrices (same tie rule:
    stable sorts, ties by lower class / arrival order)."""
    times = {}
    start = time.perf_counter()
    num_videos, num_classes = preds.shape
    num_labels = labels.sum(axis=1)
    k = min(top_k, num_classes)
    top_classes = np.empty((num_videos, k), np.int64)
    perr_sum = 0.0
    for lo in range(0, num_videos, chunk):
        order = np.argsort(-preds[lo:lo + chunk], axis=1, kind="stable")
        top_classes[lo:lo + chunk] = order[:, :k]
        for i in range(len(order)):                       # loop over videos
            n = num_labels[lo + i]
            if n:
                top = order[i, :n]
                good = labels[lo + i, top] & (preds[lo + i, top] > 0)
                perr_sum += good.sum() / n
    times["top-k + PERR (argsort, video loop)"] = time.perf_counter() - start

    rows = np.arange(num_videos)[:, None]
    hit1 = labels[np.arange(num_videos), preds.argmax(axis=1)].mean()
    tri_scores = preds[rows, top_classes].ravel()
    tri_hits = labels[rows, top_classes].ravel()
    tri_classes = top_classes.ravel()

    start = time.perf_counter()
    gap = _ap(tri_scores, tri_hits, num_labels.sum())
    times["GAP (flat sort)"] = time.perf_counter() - start

    start = time.perf_counter()
    positives = labels.sum(axis=0)
    aps = []
    for c in range(num_classes):                          # loop over classes
        if positives[c]:
            sel = tri_classes == c
            aps.append(_ap(tri_scores[sel], tri_hits[sel], positives[c]))
    times["mAP (class loop)"] = time.perf_counter() - start
    result = {"gap": gap, "map": float(np.mean(aps)) if aps else 0.0,
              "hit_at_one": float(hit1), "perr": perr_sum / num_videos}
    times["tied pooled scores"] = tri_scores.size - np.unique(tri_scores).size
    return result, times


def _ap(scores, hits, positives):
    """(1/P) sum_i y_i precision@i over a stable descending sort."""
    if positives == 0:
        return 0.0
    ranked = hits[np.argsort(-scores, kind="stable")]
    precision = np.cumsum(ranked) / np.arange(1, ranked.size + 1)
    return float(precision[ranked].sum() / positives)


# ------------------------------------------------------------------ report
def machine_info():
    import tensorflow as tf
    now = datetime.datetime.now().astimezone()
    return (f"- date: {now:%Y-%m-%d %H:%M %Z}\n"
            f"- machine: {platform.platform()}, {platform.machine()}, "
            f"cpu_count={os.cpu_count()}\n"
            f"- python {platform.python_version()}, numpy {np.__version__}, "
            f"tensorflow {tf.__version__} (CPU)")


def main():
    args = parse_args()
    print("## GAP / mAP metrics (bench/bench_metrics.py)\n")
    print(machine_info())
    (preds, labels), gen_s = timed(make_data, args.videos, args.classes,
                                   args.labels_per_video, args.seed)
    M.topk_summary_numpy(preds[:args.batch], labels[:args.batch],
                         args.top_k)  # warm-up
    print(f"- data: {args.videos} videos x {args.classes} classes, "
          f"{labels.sum() / args.videos:.2f} labels/video, top_k="
          f"{args.top_k}, batches of {args.batch}, seed {args.seed} "
          f"(generated in {gen_s:.1f} s)")
    timing = None
    if args.timing_videos and not args.no_tf:
        timing = measure_timing(args, preds, labels)

    ours = {"numpy": ours_numpy(preds, labels, args.top_k, args.batch)}
    if not args.no_tf:
        ours["tf"] = ours_tf(preds, labels, args.top_k, args.batch)
    (ref, ref_times), ref_s = timed(reference, preds, labels, args.top_k)
    pooled = ours["numpy"][0]["num_videos"] * min(args.top_k, args.classes)
    tied = ref_times.pop("tied pooled scores")
    print(f"- pooled triplets: {pooled}, of which {tied} repeat an earlier "
          "float32 score (ties: both sides use the stable rule)\n")

    paths = list(ours)
    print("| metric | " + " | ".join(f"ours ({p})" for p in paths)
          + " | reference | max abs diff |")
    print("|---|" + "---|" * (len(paths) + 2))
    worst = 0.0
    for name in METRICS:
        diff = max(abs(ours[p][0][name] - ref[name]) for p in paths)
        worst = max(worst, diff)
        print(f"| {name} | " + " | ".join(f"{ours[p][0][name]:.12f}"
                                          for p in paths)
              + f" | {ref[name]:.12f} | {diff:.1e} |")

    print("\n| timing | seconds |\n|---|---|")
    for p in paths:
        print(f"| ours ({p}): top-k summaries + update, "
              f"{args.videos // args.batch} batches | {ours[p][1]:.2f} |")
        print(f"| ours ({p}): result() (GAP+mAP+Hit@1+PERR) | "
              f"{ours[p][2]:.2f} |")
    for stage, seconds in ref_times.items():
        print(f"| reference: {stage} | {seconds:.2f} |")
    print(f"| reference: total | {ref_s:.2f} |")
    if timing is not None:
        print_timing(args, args.classes, timing)

    ok = worst <= args.tolerance
    print(f"\nmax |diff| = {worst:.1e} "
          f"({'OK' if ok else 'FAIL'}, tolerance {args.tolerance:.0e})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
