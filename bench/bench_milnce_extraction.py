"""MIL-NCE feature extraction: videos/s of ``howto.milnce_eval`` on real clips.

Converts the real clips of ``--video_dir`` (default
``howto/data/milnce_demo``: 4 videos of 3.2-4 s) the way
``python -m howto.extract_features`` does on first use
(``howto.milnce_data.converted_records`` running
``tfrecord_tools.video_writer`` as its own process: JPEG frames at 5 fps,
short side 256), timing the conversion, and then times, for each size
(frames x side of the windows, 5 fps), with a model of RANDOM weights
(``howto.milnce_model`` at the release's sizes), in turns per round:

* extract_features: ``howto.milnce_eval.extract_features`` end to end
  (reader, S3D-G, one ``.npz`` per video written). Each call traces the
  trunk anew (``vidcore.prediction.run_batches`` makes its ``tf.function``
  per call), as each run of the CLI does, so on a few short videos the
  trace is a large part of it;
* reader alone: ``input_pipeline.milnce.feature_windows_dataset`` on the
  same records, iterated to the end (decode, crop, resize; no model);
* model alone: the same ``s3dg`` trunk on in-memory batches of the same
  shape and number, traced beforehand (the compute limit);
* trunk trace alone: tracing the trunk's inference graph once (what each
  extract_features call spends before its first batch; the reader
  already runs meanwhile).

``--copies`` N lists every clip N times (links under other names, so N x
the videos and windows; the ids differ) to give the model more than a
handful of windows. Times are the best of ``--rounds`` after one warm-up
round; the conversion is timed on fresh output folders, best of
``--convert_rounds``.

    python bench/bench_milnce_extraction.py [--sizes 16x224,8x64]
        [--copies 4 --batch_size 8 --rounds 2]
"""

import argparse
import datetime
import glob
import os
import platform
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FPS = 5
SHORT_SIDE = 256  # howto.milnce_flags --short_side default


def link_videos(video_dir, copies, folder):
    """Links every video of ``video_dir`` ``copies`` times into ``folder``
    (``<stem>_<i><ext>``); returns the links, sorted."""
    from howto import extract_features
    links = []
    for path in extract_features.list_videos(video_dir):
        stem, ext = os.path.splitext(os.path.basename(path))
        for i in range(copies):
            link = os.path.join(folder, f"{stem}_{i}{ext}")
            os.symlink(path, link)
            links.append(link)
    return sorted(links)


def convert(videos, output_dir):
    """Converts ``videos`` as howto.extract_features does; returns
    (shards, seconds)."""
    from howto import milnce_data
    os.makedirs(output_dir)
    csv_path = os.path.join(output_dir, "videos.csv")
    with open(csv_path, "w") as f:
        f.write("path\n" + "".join(f'"{v}"\n' for v in videos))
    start = time.perf_counter()
    files = milnce_data.converted_records(
        None, os.path.dirname(videos[0]), output_dir, "video_dir",
        [f"--csv={csv_path}", f"--fps={FPS}", f"--short_side={SHORT_SIDE}",
         "--shuffle_seed=-1"], prefix="videos",
        converter="tfrecord_tools.video_writer")
    return files, time.perf_counter() - start


def time_size(model, files, num_frames, side, opts, work_dir):
    """Best-of-rounds seconds of the three measurements at one size;
    returns a dict."""
    import numpy as np
    import tensorflow as tf

    from howto import milnce_eval
    from input_pipeline import milnce as reader

    cfg = reader.MilNCEClipConfig(num_frames=num_frames, fps=FPS,
                                  video_size=side)
    video_model = model.get_layer("s3dg")
    counted = {}

    def extract():
        out = os.path.join(work_dir, f"features_{num_frames}x{side}")
        shutil.rmtree(out, ignore_errors=True)
        counted["paths"] = milnce_eval.extract_features(
            model, files, cfg, opts.batch_size, out, progress=False)

    def read():
        batches = windows = 0
        for batch in reader.feature_windows_dataset(files, cfg,
                                                    opts.batch_size):
            batches += 1
            windows += int(np.sum(batch["mask"].numpy()))
        counted["batches"], counted["read_windows"] = batches, windows

    forward = tf.function(lambda x: video_model(x, training=False))
    clips = tf.random.uniform([opts.batch_size, num_frames, side, side, 3])

    def model_alone():
        for _ in range(counted["batches"]):
            out = forward(clips)
        out["mixed_5c"].numpy()

    def trace():
        tf.function(lambda x: video_model(x, training=False)
                    ).get_concrete_function(
            tf.TensorSpec(clips.shape, tf.float32))

    read()  # the batch count for model_alone
    forward(clips)  # trace
    runs = {"extract_features": extract, "reader alone": read,
            "model alone": model_alone, "trunk trace alone": trace}
    times = {name: [] for name in runs}
    for round_ in range(opts.rounds + 1):  # round 0: warm-up, not kept
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            if round_:
                times[name].append(time.perf_counter() - start)
    paths = counted.pop("paths")  # the last call's files, counted untimed
    counted["videos"] = len(paths)
    counted["windows"] = sum(len(np.load(p)["start_time"]) for p in paths)
    if counted["windows"] != counted["read_windows"]:
        raise AssertionError(f"extract_features wrote {counted['windows']} "
                             f"windows, the reader gave "
                             f"{counted['read_windows']}")
    return {"size": f"{num_frames}x{side}x{side}", "times": times,
            **counted}


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video_dir",
                        default=os.path.join(REPO, "howto", "data",
                                             "milnce_demo"))
    parser.add_argument("--sizes", default="16x224,8x64",
                        help="FRAMESxSIDE of the windows, comma-separated")
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=8,
                        help="windows per batch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--convert_rounds", type=int, default=2)
    opts = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x"))
             for s in opts.sizes.split(",")]

    import keras
    import tensorflow as tf

    from howto import milnce_model

    start_load = load_average()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}"
          f" UTC, {platform.machine()}, {os.cpu_count()} CPUs, TensorFlow "
          f"{tf.__version__}, load average {start_load}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_milnce_extraction_") as t:
        os.makedirs(os.path.join(t, "videos"))
        videos = link_videos(opts.video_dir, opts.copies,
                             os.path.join(t, "videos"))
        conversions = []
        for i in range(opts.convert_rounds):
            files, seconds = convert(videos, os.path.join(t, f"records{i}"))
            conversions.append(seconds)
        record_bytes = sum(os.path.getsize(f) for f in files)
        print(f"converted {len(videos)} videos into {len(files)} shard(s), "
              f"{record_bytes / 1e6:.1f} MB: "
              f"{', '.join(f'{s:.1f}' for s in conversions)} s", flush=True)

        keras.utils.set_random_seed(0)
        model = milnce_model.build_milnce_model(milnce_model.MilNCEConfig())
        rows = []
        for num_frames, side in sizes:
            row = time_size(model, files, num_frames, side, opts, t)
            rows.append(row)
            print(f"{row['size']}: {row['videos']} videos, {row['windows']} "
                  f"windows in {row['batches']} batches; " + "; ".join(
                      f"{name} {', '.join(f'{s:.2f}' for s in ts)} s"
                      for name, ts in row["times"].items()), flush=True)
    print(f"\n# load average {start_load} -> {load_average()}; "
          f"{len(videos)} videos ({opts.copies} x each clip of "
          f"{os.path.relpath(opts.video_dir, REPO)}); conversion (fps {FPS},"
          f" short side {SHORT_SIDE}, one converter process): best "
          f"{min(conversions):.1f} s = {len(videos) / min(conversions):.2f} "
          f"videos/s (rounds {', '.join(f'{s:.1f}' for s in conversions)} "
          f"s); {opts.batch_size} windows per batch; random weights; best "
          f"of {opts.rounds} rounds after a warm-up round\n")
    print("| windows | videos | windows | what | s (best) | videos/s | "
          "windows/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        for name, ts in r["times"].items():
            best = min(ts)
            rates = ("- | -" if name == "trunk trace alone" else
                     f"{r['videos'] / best:.3g} | {r['windows'] / best:.3g}")
            print(f"| {r['size']} | {r['videos']} | {r['windows']} | {name} |"
                  f" {best:.2f} | {rates} |")


if __name__ == "__main__":
    main()
