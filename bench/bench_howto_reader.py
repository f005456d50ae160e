"""HowTo100M training reader throughput versus its bare limit, in one run.

Writes HowTo100M-format video shards at the release's sizes (2D and 3D
features of 2048 float16 values, 1 and 1.5 frames per second, ~4-minute
videos with a caption every ~4 s; SYNTHETIC values, real YouCook2 caption
texts), then measures videos/s and clip pairs/s of

* bare limit: read + parse + float16 decode of every frame, nothing else,
  both per record (one parse op per video) and per batch (one parse op per
  32 videos, as the training reader parses); the faster is the limit;
* training reader: the full pipeline of ``howto.train`` (shuffle, batch,
  parse, n_pair caption draws grown to min_time, word ids, frame
  max-pooling per span, L2 norms, word vectors, prefetch);

and prints a markdown table. Each row is the best of ``--rounds`` rounds,
all in one process on the same records, the pipelines taking turns round
by round; "cores" is the process CPU time over the wall time of that
round (the machine has ``os.cpu_count()``), "CPU ms per batch" the CPU
time one batch cost, which a loaded machine disturbs less than videos/s.
``--profile`` adds one row per stage (reading alone; read + parse +
sampling without the shuffle; the sampler alone on one parsed batch held
in memory). With the published setting (32 videos x 64 pairs per step)
the pairs/s column says how many steps per second one host can feed.

    python bench/bench_howto_reader.py [--videos 256 --rounds 5 --profile]
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


def records(files):
    """Every record of the shards, shards read in parallel, repeated."""
    return tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=len(files),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=False).repeat()


def bare_dataset(files, cfg, batch):
    """Read + parse + float16 decode, one parse op per record."""
    ds = records(files).map(
        lambda r: reader.parse_video(r, cfg)["frames/2d"][:1, :1],
        num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


def bare_batch_dataset(files, cfg, batch):
    """Read + parse + float16 decode, one parse op per batch of records."""
    ds = records(files).batch(batch).map(
        lambda r: reader.parse_video_batch(r, cfg)["frames/2d"].flat_values[
            :1, :1], num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def read_dataset(files, batch):
    """Reading alone (the record bytes are touched, nothing parsed)."""
    return records(files).map(tf.strings.length).batch(batch).prefetch(
        tf.data.AUTOTUNE)


def unshuffled_dataset(files, cfg, encoder, batch):
    """The training reader's batch path without the record shuffle."""
    def make(serialized, seed):
        clips = reader.sample_clips(reader.parse_video_batch(serialized, cfg),
                                    seed, cfg, encoder)
        return clips["video"], encoder.vectors(clips["ids"])

    ds = tf.data.Dataset.zip((records(files).batch(batch),
                              tf.data.Dataset.random(seed=0).batch(2)))
    return ds.map(make, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)


def sampler_dataset(files, cfg, encoder, batch):
    """The sampler alone, again and again on one parsed batch in memory."""
    serialized = next(iter(tf.data.TFRecordDataset(files[0]).batch(batch)))
    videos = reader.parse_video_batch(serialized, cfg)
    ds = tf.data.Dataset.zip((tf.data.Dataset.from_tensors(videos).repeat(),
                              tf.data.Dataset.random(seed=0).batch(2)))
    return ds.map(lambda v, seed: reader.sample_clips(v, seed, cfg, encoder),
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)


def measure_round(make, batches, warmup=3):
    """(batches/s, cores used) of one round on a fresh iterator."""
    it = iter(make())
    for _ in range(warmup):
        next(it)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(it)
    wall = time.perf_counter() - start
    return batches / wall, (time.process_time() - cpu) / wall


def measure(pipelines, batches, rounds):
    """Best (batches/s, cores) of each pipeline over rounds; the rounds take
    turns between pipelines, so a change of load on a shared machine hits
    every pipeline alike."""
    best = {name: (0.0, 0.0) for name, _ in pipelines}
    for _ in range(rounds):
        for name, make in pipelines:
            best[name] = max(best[name], measure_round(make, batches))
    return best


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--n_pair", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true",
                        help="also time each stage on its own")
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
              f"{time.perf_counter() - start:.0f} s; load average "
              f"{loadavg()}")
        pipelines = [
            ("bare parse + decode, per record",
             lambda: bare_dataset(files, cfg, args.batch)),
            ("bare parse + decode, per batch",
             lambda: bare_batch_dataset(files, cfg, args.batch)),
            ("training reader", lambda: reader.training_dataset(
                files, "videos", cfg, encoder, args.batch, seed=0,
                shuffle_buffer=64)),
        ]
        if args.profile:
            pipelines += [
                ("stage: reading alone", lambda: read_dataset(files,
                                                              args.batch)),
                ("stage: read + parse + sample, no shuffle",
                 lambda: unshuffled_dataset(files, cfg, encoder, args.batch)),
                ("stage: sampler alone, parsed batch in memory",
                 lambda: sampler_dataset(files, cfg, encoder, args.batch)),
            ]
        # Every pipeline under the training reader's tf.data options.
        best = measure([(name, lambda make=make: make().with_options(
            reader.batch_options())) for name, make in pipelines],
            args.batches, args.rounds)
        rows = [(name, best[name][0] * args.batch, best[name][1])
                for name, _ in pipelines]
    bare = max(rows[0][1], rows[1][1])
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"\n{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, TF {tf.__version__}, "
          f"{now:%Y-%m-%d %H:%M} UTC, load average {loadavg()}")
    print(f"videos of {args.seconds:.0f} s, 2048-d 2D + 3D float16 frames; "
          f"batch {args.batch} videos x {args.n_pair} pairs; best of "
          f"{args.rounds} rounds of {args.batches} batches\n")
    print("| pipeline | videos/s | clip pairs/s | cores | CPU ms per batch "
          "| ratio to bare |")
    print("|---|---|---|---|---|---|")
    for name, videos, cores in rows:
        pairs = (f"{videos * args.n_pair:,.0f}"
                 if name == "training reader" else "-")
        cpu_ms = 1000 * cores * args.batch / videos  # CPU time per batch
        print(f"| {name} | {videos:,.0f} | {pairs} | {cores:.2f} | "
              f"{cpu_ms:.0f} | {videos / bare:.2f} |")


if __name__ == "__main__":
    main()
