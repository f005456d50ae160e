"""HowTo100M training reader throughput versus its bare limit, in one run.

Writes HowTo100M-format video shards at the release's sizes (2D and 3D
features of 2048 float16 values, 1 and 1.5 frames per second, ~4-minute
videos with a caption every ~4 s; SYNTHETIC values, real YouCook2 caption
texts), then measures videos/s and clip pairs/s of

* bare limit: read + parse + float16 decode of every frame, nothing else;
* training reader: the full pipeline of ``howto.train`` (shuffle, parse,
  n_pair caption draws grown to min_time, word ids, frame max-pooling per
  span, L2 norms, batching, word vectors, prefetch);

and prints a markdown table. With the published setting (32 videos x 64
pairs per step) the pairs/s column says how many steps per second one host
can feed.

    python bench/bench_howto_reader.py [--videos 256 --rounds 3]
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

from input_pipeline import howto as reader  # noqa: E402
from tfrecord_tools import howto_demo_data, howto_writer  # noqa: E402
from tfrecord_tools.sharded_writer import write_sharded  # noqa: E402
from vidcore import text  # noqa: E402


def write_shards(directory, videos, shards, seconds, seed=0):
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
            streams = {}
            for s, rate in (("2d", 1.0), ("3d", 1.5)):
                x = rng.normal(size=(int(seconds * rate), 2048))
                x /= np.linalg.norm(x, axis=1, keepdims=True)
                streams[s] = (x.astype(np.float16), rate)
            yield howto_writer.make_video_example(
                f"v{i:05d}", caps, streams).SerializeToString()

    write_sharded(records(), directory, "train", shards, num_records=videos)


def bare_dataset(files, cfg):
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=len(files),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.map(lambda r: reader.parse_video(r, cfg)["frames/2d"][:1, :1],
                num_parallel_calls=tf.data.AUTOTUNE).repeat()
    return ds.batch(32).prefetch(tf.data.AUTOTUNE)


def measure(make, batches, rounds, warmup=3):
    best = 0.0
    for _ in range(rounds):
        it = iter(make())
        for _ in range(warmup):
            next(it)
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        best = max(best, batches / (time.perf_counter() - start))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--n_pair", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    vectors = text.WordVectors.load(howto_demo_data.WORD_VECTORS)
    encoder = text.TextEncoder(vectors)
    cfg = reader.ClipConfig(dims=(2048, 2048), n_pair=args.n_pair,
                            min_time=5.0, max_words=20)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_shards(tmp, args.videos, 8, args.seconds)
        files = sorted(tf.io.gfile.glob(os.path.join(tmp, "train-*")))
        size = sum(os.path.getsize(f) for f in files) / 2**20
        print(f"wrote {args.videos} videos ({size:.0f} MiB) in "
              f"{time.perf_counter() - start:.0f} s")
        bare = measure(lambda: bare_dataset(files, cfg), args.batches,
                       args.rounds) * 32
        full = measure(lambda: reader.training_dataset(
            files, "videos", cfg, encoder, args.batch, seed=0,
            shuffle_buffer=64), args.batches, args.rounds) * args.batch
    print(f"\n{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, TF {tf.__version__}, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"videos of {args.seconds:.0f} s, 2048-d 2D + 3D float16 frames; "
          f"batch {args.batch} videos x {args.n_pair} pairs\n")
    print("| pipeline | videos/s | clip pairs/s | ratio to bare |")
    print("|---|---|---|---|")
    print(f"| bare parse + decode | {bare:,.0f} | - | 1.00 |")
    print(f"| training reader | {full:,.0f} | {full * args.n_pair:,.0f} | "
          f"{full / bare:.2f} |")


if __name__ == "__main__":
    main()
