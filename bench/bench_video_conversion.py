"""Raw-video -> TFRecord conversion throughput (tfrecord_tools.video_writer).

Builds a class-folder tree holding `--copies` copies of each REAL clip of
kinetics/data/clips (4 clips: 176x144 29.97 fps 4.0 s, 224x224 25 fps
3.2 s, 320x136 and 320x180 25 fps 4.0 s; 399 source frames per copy), then
converts it with the local runner and 1, 2, ... worker processes
(`--fps 15 --short_side 128` by default: 229 stored frames per copy) and
prints a markdown table of videos/s, stored frames/s and decoded source
frames/s. Times are wall-clock of the whole `convert_folder` call, so the
pool runs include starting the spawn workers (each imports TensorFlow);
that start-up is also timed on its own (the same pool converting one
instantly rejected item per worker; it overlaps with work in the real
run, so it is shown, not subtracted). The best of `--rounds` runs is
shown.

    python bench/bench_video_conversion.py [--copies 25 --workers 1,2]
"""

import argparse
import datetime
import functools
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf

from tfrecord_tools import conversion, video_writer

CLIPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "kinetics", "data", "clips")


def build_tree(root, copies):
    """Copies every clip `copies` times into root/<class>/; returns paths."""
    paths = []
    for cls in sorted(os.listdir(CLIPS)):
        src_dir = os.path.join(CLIPS, cls)
        if not os.path.isdir(src_dir):
            continue
        os.makedirs(os.path.join(root, cls))
        for name in sorted(os.listdir(src_dir)):
            stem, ext = os.path.splitext(name)
            for i in range(copies):
                dst = os.path.join(root, cls, f"{stem}_copy{i:03d}{ext}")
                shutil.copyfile(os.path.join(src_dir, name), dst)
                paths.append(dst)
    return paths


def source_frames(paths):
    """Total decoded frames of the given videos (PyAV)."""
    av = video_writer.import_av()
    total = 0
    for path in paths:
        with av.open(path) as container:
            total += sum(1 for _ in container.decode(video=0))
    return total


def measure(tree, out, workers, settings, shards, rounds):
    """(seconds, records, stored frames) of the best of `rounds` runs."""
    best = None
    for _ in range(rounds):
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        result = video_writer.convert_folder(
            tree, out, settings, shuffle_seed=0, num_shards=shards,
            num_workers=workers, progress=False)
        seconds = time.perf_counter() - start
        if result.rejects:
            raise SystemExit(f"unexpected rejects: {result.rejects[:3]}")
        frames = sum(len(video_writer.parse_video_example(r.numpy())[
            "frames"]) for r in _records(result.paths))
        if best is None or seconds < best[0]:
            best = (seconds, result.num_records, frames)
    return best


def startup_seconds(out, workers, rounds):
    """Wall-clock of a pool run whose items are rejected at once."""
    items = [{"id": f"noop{i}", "skip": "no-op"} for i in range(workers)]
    convert = functools.partial(video_writer.convert_video,
                                settings=video_writer.VideoSettings())
    best = None
    for _ in range(rounds):
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        conversion.convert_items(items, convert, out, "noop", workers,
                                 num_workers=workers, progress=False)
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
    return best


def _records(paths):
    return tf.data.TFRecordDataset(paths)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=25,
                        help="copies of each of the 4 clips")
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated worker counts")
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--short_side", type=int, default=128)
    parser.add_argument("--jpeg_quality", type=int, default=90)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    settings = video_writer.VideoSettings(args.fps, args.short_side,
                                          args.jpeg_quality)
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tree = os.path.join(tmp, "videos")
        paths = build_tree(tree, args.copies)
        decoded = source_frames(paths)
        rows = []
        for n in workers:
            seconds, records, frames = measure(
                tree, os.path.join(tmp, f"out{n}"), n, settings,
                args.shards, args.rounds)
            startup = startup_seconds(os.path.join(tmp, f"noop{n}"), n,
                                      args.rounds)
            rows.append((n, records, frames, seconds, startup))
    print(f"# video conversion, {datetime.date.today()}, "
          f"{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"# {len(paths)} videos ({args.copies} copies x 4 real clips), "
          f"{decoded} source frames; --fps={args.fps:g} "
          f"--short_side={args.short_side} --jpeg_quality="
          f"{args.jpeg_quality} --num_shards={args.shards}; best of "
          f"{args.rounds}; wall-clock incl. worker start-up\n")
    print("| workers | videos | stored frames | seconds | videos/s | "
          "stored frames/s | decoded frames/s | pool start-up s |")
    print("|---|---|---|---|---|---|---|---|")
    for n, records, frames, seconds, startup in rows:
        print(f"| {n} | {records} | {frames} | {seconds:.1f} | "
              f"{records / seconds:.1f} | {frames / seconds:.0f} | "
              f"{decoded / seconds:.0f} | {startup:.1f} |")


if __name__ == "__main__":
    main()
