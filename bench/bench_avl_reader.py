"""AVLnet training reader throughput versus bare parse, in one run.

Writes HowTo100M-format video shards with AVLnet's audio at the release's
sizes (2D and 3D features of 2048 float16 values at 1 and 1.5 frames per
second, a 40-band float16 spectrogram at 100 frames per second, ~4-minute
videos with a caption every ~4 s; SYNTHETIC values, real YouCook2 caption
texts), then measures videos/s and clips/s of

* bare parse: read + one parse op per batch of records (frames decoded
  from float16, the spectrogram bytes parsed), nothing else: the limit;
* AVLnet reader (``random_audio_windows=1``, the AVLnet command's
  1000-frame windows): ``input_pipeline.avl.training_dataset`` with
  n_pair random windows per video (each window's bytes decoded), the
  video features max-pooled over the window's seconds;
* AVLnet-Text reader (``random_audio_windows=0``, Text-Tri's 800 frames,
  min_time 8): caption spans grown to min_time, their audio, words and
  word vectors.

Each row is the best of ``--rounds`` rounds, all in one process on the same
records, the pipelines taking turns round by round (``bench_howto_reader``'s
measurement). "cores" is the process CPU time over the wall time of that
round.

    python bench/bench_avl_reader.py [--videos 64 --batch 16 --n_pair 32]
"""

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import bench_howto_reader as howto_bench  # noqa: E402
from input_pipeline import avl  # noqa: E402
from input_pipeline import howto  # noqa: E402
from tfrecord_tools import howto_demo_data, howto_writer  # noqa: E402
from tfrecord_tools.sharded_writer import write_sharded  # noqa: E402
from vidcore import text  # noqa: E402


def write_shards(directory, videos, shards, seconds, seed=0):
    """HowTo100M records with spectrograms (values synthetic)."""
    rng = np.random.default_rng(seed)
    rows = howto_demo_data._read_csv(howto_demo_data.YOUCOOK_CAPTIONS)
    texts = [r["text"] for r in rows]

    def records():
        for i in range(videos):
            n = int(seconds / 4)
            starts = np.sort(rng.uniform(0, seconds - 3, n))
            caps = {"start": starts.tolist(),
                    "end": (starts + rng.uniform(1, 6, n)).tolist(),
                    "text": [texts[j] for j in rng.integers(0, len(texts),
                                                            n)]}
            streams = {s: (rng.normal(size=(int(seconds * rate), 2048))
                           .astype(np.float16), rate)
                       for s, rate in (("2d", 1.0), ("3d", 1.5))}
            frames = 1 + int(seconds * 100)
            mel = rng.uniform(-80, 0, size=(40, frames)).astype(np.float16)
            yield howto_writer.make_video_example(
                f"v{i:05d}", caps, streams,
                howto_writer.Audio(mel, frames, 16000)).SerializeToString()

    write_sharded(records(), directory, "train", shards, num_records=videos)


def bare_dataset(files, cfg, batch):
    """Read + parse one batch of records per op (frames and spectrogram)."""
    def parse(serialized):
        videos = avl.parse_video_batch(serialized, cfg)
        return (videos["frames/2d"].flat_values[:1, :1],
                videos["frames/3d"].flat_values[:1, :1],
                tf.strings.length(videos["spectrogram"]))

    return howto_bench.records(files).batch(batch).map(
        parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n_pair", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    encoder = text.TextEncoder(text.WordVectors.load(
        howto_demo_data.WORD_VECTORS))
    windows = avl.AVLClipConfig(dims=(2048, 2048), n_pair=args.n_pair,
                                audio_frames=1000)
    spans = avl.AVLClipConfig(dims=(2048, 2048), n_pair=args.n_pair,
                              audio_frames=800, min_time=8.0,
                              random_audio_windows=False, needs_text=True,
                              max_words=20)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_shards(tmp, args.videos, 8, args.seconds)
        files = sorted(tf.io.gfile.glob(os.path.join(tmp, "train-*")))
        size = sum(os.path.getsize(f) for f in files) / 2**20
        print(f"wrote {args.videos} videos ({size:.0f} MiB) in "
              f"{time.perf_counter() - start:.0f} s; load average "
              f"{howto_bench.loadavg()}")
        pipelines = [
            ("bare parse (per batch)",
             lambda: bare_dataset(files, windows, args.batch)),
            ("AVLnet reader, random windows (1000 frames)",
             lambda: avl.training_dataset(files, "videos", windows, None,
                                          args.batch, seed=0,
                                          shuffle_buffer=32)),
            ("AVLnet-Text reader, caption spans (800 frames, text)",
             lambda: avl.training_dataset(files, "videos", spans, encoder,
                                          args.batch, seed=0,
                                          shuffle_buffer=32)),
        ]
        best = howto_bench.measure([
            (name, lambda make=make: make().with_options(
                howto.batch_options())) for name, make in pipelines],
            args.batches, args.rounds)
    bare = best[pipelines[0][0]][0]
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"\n{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, TF {tf.__version__}, "
          f"{now:%Y-%m-%d %H:%M} UTC, load average {howto_bench.loadavg()}")
    print(f"videos of {args.seconds:.0f} s ({size / args.videos:.1f} MiB "
          f"each), batch {args.batch} videos x {args.n_pair} clips; best of "
          f"{args.rounds} rounds of {args.batches} batches\n")
    print("| pipeline | videos/s | clips/s | cores | ratio to bare |")
    print("|---|---|---|---|---|")
    for name, _ in pipelines:
        rate, cores = best[name]
        videos = rate * args.batch
        clips = "-" if name.startswith("bare") else \
            f"{videos * args.n_pair:,.0f}"
        print(f"| {name} | {videos:,.1f} | {clips} | {cores:.2f} | "
              f"{rate / bare:.2f} |")


if __name__ == "__main__":
    main()
