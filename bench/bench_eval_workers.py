"""Evaluation and inference split over worker processes: wall time of one
process against k worker processes on the same shards, and what merging
costs the chief.

Writes a synthetic frame-level YouTube-8M validation split (our demo
writer), trains a NetVLAD model for a few steps, then runs ``yt8m.eval``
and ``yt8m.inference`` as one process and as ``--workers`` processes of a
local cluster (TF_CONFIG, ``--strategy=multi_worker``: each worker takes a
block of shards, the chief merges). Checks that the split runs give the
one-process metrics (to 1e-9) and the same prediction lines (byte for
byte; one process interleaves its shards, the chief joins the workers'
blocks, so the line order differs), and prints one table.

    python bench/bench_eval_workers.py                     # 8,000 videos, 16 shards
    python bench/bench_eval_workers.py --videos=2000 --shards=4 --workers=2,4

On one machine the workers share its cores: the table shows the cost of
the split (start-up of each process, the chief's merge), not the speed-up
that separate hosts give.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODEL = ["--model=NetVLADModelLF", "--frame_features",
         "--feature_names=rgb,audio", "--feature_sizes=1024,128",
         "--num_classes=500", "--netvlad_cluster_size=32",
         "--netvlad_hidden_size=256", "--iterations=30"]


def run(args, count=1):
    """Runs ``python -m args`` as one process or ``count`` workers; returns
    (wall seconds, [stdout per process])."""
    cluster = {"worker": [f"localhost:{21000 + i}" for i in range(count)]}
    start = time.perf_counter()
    procs = []
    for index in range(count):
        env = dict(os.environ)
        extra = []
        if count > 1:
            env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {
                "type": "worker", "index": index}})
            extra = ["--strategy=multi_worker"]
        procs.append(subprocess.Popen(
            [sys.executable, "-m", *args, *extra], cwd=REPO, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"{' '.join(args)} failed:\n{err[-3000:]}")
        outs.append(out)
    return time.perf_counter() - start, outs


def shares(outs):
    found = [re.findall(r"^worker (\d+): (\d+) videos$", o, re.MULTILINE)
             for o in outs]
    return "/".join(f[0][1] for f in found if f) or "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=8000)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--workers", default="2")
    parser.add_argument("--batch_size", type=int, default=256)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench_eval_workers_")
    try:
        rows = measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {platform.node()} {os.cpu_count()} cores, "
          f"{args.videos} videos in {args.shards} shards, "
          f"{time.strftime('%Y-%m-%d')}")
    print("| CLI | processes | videos per worker | wall s | videos/s | "
          "check |")
    print("|---|---|---|---|---|---|")
    for cli, count, share, seconds, rate, check in rows:
        print(f"| {cli} | {count} | {share} | {seconds:.1f} | {rate:.0f} | "
              f"{check} |")


def measure(args, work):
    """Writes the data, trains, and returns the table's rows."""
    from tfrecord_tools.demo_data import write_demo_dataset

    data = os.path.join(work, "data")
    write_demo_dataset(data, num_classes=500, num_train=64,
                       num_validate=args.videos, num_test=8, min_frames=30,
                       max_frames=120, num_shards=(1, args.shards, 1),
                       segment_rated=False)
    pattern = os.path.join(data, "validate*.tfrecord")
    train_dir = os.path.join(work, "run")
    run(["yt8m.train", f"--train_data_pattern={data}/train*.tfrecord",
         f"--train_dir={train_dir}", *MODEL, "--batch_size=32",
         "--max_steps=2", "--checkpoint_every_steps=2"])
    rows = []
    reference = {}
    for count in [1] + [int(w) for w in args.workers.split(",")]:
        eval_dir = os.path.join(work, f"eval{count}")
        seconds, outs = run(["yt8m.eval", f"--eval_data_pattern={pattern}",
                             f"--train_dir={train_dir}",
                             f"--batch_size={args.batch_size}",
                             f"--eval_dir={eval_dir}"], count)
        with open(os.path.join(eval_dir, "metrics_step2.json")) as f:
            metrics = json.load(f)
        if count == 1:
            reference["metrics"] = metrics
        gaps = {k: abs(metrics[k] - reference["metrics"][k]) for k in
                ("gap", "map", "hit_at_one", "perr", "avg_loss")}
        worst = max(gaps.values())
        differ = ", ".join(k for k, v in gaps.items() if v) or "none differ"
        rows.append(("yt8m.eval", count, shares(outs), seconds,
                     metrics["num_videos"] / seconds,
                     f"metrics within {worst:.1e} of 1 process ({differ})"))
        out_file = os.path.join(work, f"pred{count}.csv")
        seconds, outs = run(["yt8m.inference",
                             f"--input_data_pattern={pattern}",
                             f"--train_dir={train_dir}",
                             f"--batch_size={args.batch_size}", "--top_k=20",
                             f"--output_file={out_file}"], count)
        with open(out_file, "rb") as f:
            lines = f.read().splitlines()
        if count == 1:
            reference["lines"] = sorted(lines)
        same = sorted(lines) == reference["lines"]
        rows.append(("yt8m.inference", count, shares(outs), seconds,
                     args.videos / seconds,
                     "same lines as 1 process" if same else "LINES DIFFER"))
    return rows


if __name__ == "__main__":
    main()
