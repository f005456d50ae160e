"""Benchmark of vidcore.metrics.retrieval_ranks (blocked text->video ranks).

For each size N it builds N random L2-normalised "video" embeddings and N
"text" embeddings (video + Gaussian noise, re-normalised, float32), then times
``retrieval_ranks(text, video, block_size=...)`` (Q = C = N, the true video
of text i is video i). The Q x C score matrix is never built; the table shows
how big it would have been. Peak memory is the process's resident set size,
sampled every 5 ms from /proc/self/statm during the call (falls back to
``ru_maxrss``), and its increase over the RSS just before the call (inputs
already in memory, TensorFlow already initialised). Runs shorter than 5 s
are repeated (--repeats) and the fastest is reported.

For N <= --check-max the ranks are cross-checked against the HowTo100M
authors' full-matrix numpy formula (``np.sort(-S)``, position of the
diagonal; valid here because random float data has no ties), and that
reference is timed too. The script exits with status 1 on a mismatch.

Usage:
  python bench/bench_retrieval.py [--sizes 1000 10000 100000] [--dim 512]
                                  [--block-size 4096] [--quick]
"""
import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from vidcore import metrics as M  # noqa: E402

MIB = 2 ** 20


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[1000, 10_000, 100_000],
                        help="N for each row (Q = C = N)")
    parser.add_argument("--dim", type=int, default=512, help="embedding D")
    parser.add_argument("--block-size", type=int, default=4096)
    parser.add_argument("--noise", type=float, default=7.0,
                        help="norm of the noise added to a unit video vector "
                             "to make its text (7: cosine ~0.14, so ranks "
                             "spread out at D=512)")
    parser.add_argument("--check-max", type=int, default=10_000,
                        help="cross-check against the full-matrix reference "
                             "up to this N")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs shorter than 5 s are repeated this many "
                             "times and the fastest is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: sizes 1000 3000, D 64, block 512, "
                             "noise 2")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.dim, args.block_size = [1000, 3000], 64, 512
        args.noise = 2.0
    return args


# ------------------------------------------------------------------ machine
def machine_description():
    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True,
                             check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    gpus = tf.config.list_physical_devices("GPU")
    return (f"{cpu}, nproc={os.cpu_count()}, {mem:.0f} GiB RAM, "
            f"{'GPU: ' + str(len(gpus)) if gpus else 'no GPU'}; "
            f"Linux {platform.release()}; python {platform.python_version()}, "
            f"numpy {np.__version__}, tensorflow {tf.__version__}")


# ------------------------------------------------------------------- memory
def current_rss():
    """Resident set size in bytes (Linux /proc), else None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


class PeakRss:
    """Samples the RSS in a thread; ``peak`` is the maximum seen."""

    def __init__(self, interval=0.005):
        self.interval = interval
        self.start = current_rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            rss = current_rss()
            self.peak = max(self.peak, rss)
            time.sleep(self.interval)

    def __enter__(self):
        if self.start is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.start is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, current_rss())


def max_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --------------------------------------------------------------------- data
def make_data(num, dim, noise, seed, chunk=8192):
    """float32 unit video [N, D] and text = unit(video + noise) [N, D]."""
    rng = np.random.default_rng(seed)
    video = np.empty((num, dim), np.float32)
    text = np.empty((num, dim), np.float32)
    for lo in range(0, num, chunk):
        v = rng.standard_normal((min(chunk, num - lo), dim), np.float32)
        v /= np.sqrt(np.einsum("ij,ij->i", v, v))[:, None]
        t = v + rng.standard_normal(v.shape, np.float32) * np.float32(
            noise / np.sqrt(dim))       # noise vector of norm ~ noise
        t /= np.sqrt(np.einsum("ij,ij->i", t, t))[:, None]
        video[lo:lo + len(v)], text[lo:lo + len(v)] = v, t
    return text, video


def authors_reference(text, video):
    """HowTo100M evaluation: full S, sort, position of the diagonal."""
    scores = text @ video.T
    sx = np.sort(-scores, axis=1)
    d = np.diag(-scores)[:, None]
    ind = np.where(sx - d == 0)[1]
    return ind


# --------------------------------------------------------------------- main
def main():
    args = parse_args()
    print(f"machine: {machine_description()}")
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"date: {now:%Y-%m-%d %H:%M} UTC")
    print(f"data: N text x N video embeddings, D = {args.dim}, float32, "
          f"L2-normalised, text = unit(video + noise of norm ~{args.noise}), "
          f"seed {args.seed}; ties='pessimistic'\n")
    # Trace the tf.function and initialise TensorFlow before measuring.
    warm = np.eye(4, args.dim, dtype=np.float32)
    M.retrieval_ranks(warm, warm, block_size=2)

    rows, tables, failed = [], {}, False
    for num in args.sizes:
        start = time.perf_counter()
        text, video = make_data(num, args.dim, args.noise, args.seed)
        gen_s = time.perf_counter() - start
        block = min(args.block_size, num)
        with PeakRss() as mem:
            seconds = np.inf
            for repeat in range(max(1, args.repeats)):
                start = time.perf_counter()
                ranks = M.retrieval_ranks(text, video,
                                          block_size=args.block_size)
                seconds = min(seconds, time.perf_counter() - start)
                if seconds > 5.0:
                    break
        peak = mem.peak if mem.peak is not None else max_rss_bytes()
        delta = (mem.peak - mem.start) if mem.start is not None else None
        full_s_mib = num * num * 4 / MIB
        rows.append([f"blocked TF (ours), block {block}", args.dim,
                     f"{num:,} x {num:,}", f"{block:,}", f"{seconds:.3f}",
                     f"{num / seconds:,.0f}", f"{peak / MIB:,.0f}",
                     f"{delta / MIB:,.0f}" if delta is not None else "n/a",
                     f"{full_s_mib:,.0f}"])
        metrics = M.retrieval_metrics(ranks)
        tables[f"N={num:,} (synthetic)"] = metrics
        print(f"N={num:,}: data {gen_s:.1f} s, inputs "
              f"{(text.nbytes + video.nbytes) / MIB:,.0f} MiB, ranks "
              f"{seconds:.2f} s (best of {repeat + 1})", flush=True)
        if num <= args.check_max:
            with PeakRss() as mem:
                ref_s = np.inf
                for repeat in range(max(1, args.repeats)):
                    start = time.perf_counter()
                    ind = authors_reference(text, video)
                    ref_s = min(ref_s, time.perf_counter() - start)
                    if ref_s > 5.0:
                        break
            ok = ind.shape == ranks.shape and np.array_equal(ind + 1, ranks)
            failed |= not ok
            rows.append(["numpy full S + sort (authors' formula)", args.dim,
                         f"{num:,} x {num:,}", "-", f"{ref_s:.3f}",
                         f"{num / ref_s:,.0f}", f"{mem.peak / MIB:,.0f}",
                         f"{(mem.peak - mem.start) / MIB:,.0f}",
                         f"{full_s_mib:,.0f}"])
            print(f"N={num:,}: reference {ref_s:.2f} s (best of "
                  f"{repeat + 1}), ranks identical: {ok}", flush=True)
        del text, video, ranks

    header = ["method", "D", "Q x C", "block", "seconds", "queries/s",
              "peak RSS MiB", "peak - start MiB", "full S would be MiB"]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    print()
    print(M.format_retrieval_table(tables, columns=("R@1", "R@5", "R@10",
                                                    "MedR", "MeanR")))
    if failed:
        print("MISMATCH between blocked ranks and the reference")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
