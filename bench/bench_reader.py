"""Frame-level reader throughput versus its bare limit, in the same run.

Writes YouTube-8M-format frame-level shards (random uint8 frames, lengths
uniform in [--min_frames, --max_frames], 1024 rgb + 128 audio bytes per frame,
~3 labels per video), then measures records/s of

* bare limit: read + batched parse + decode to uint8, nothing else
  (input_pipeline.yt8m.bare_parse_dataset, one continuous stream over the
  shards repeated, so it never restarts);
* training reader: the full training pipeline (file shuffle, per-shard
  integrity accounting, record shuffle, batching, parse, byte-size and
  label checks, dense labels, padding to 300 frames, prefetch);
* evaluation reader: deterministic order, padded batches, encoded ids
  (a finite dataset, so ``.repeat()`` restarts it after every pass, as a
  new evaluation would);

and prints a markdown table per shard count with the ratio to the bare
limit and the CPU time per record (process CPU seconds over the timed
batches, all threads; on a loaded machine the ratio of CPU costs is what
the throughput ratio tends to). ``--profile`` adds one row per stage
(reading alone, the integrity accounting, the shuffle, the deterministic
interleave, the previous per-record accounting) to show where the time
goes.

    python bench/bench_reader.py [--videos 3000 --shards 8 --batch 80
                                  --rounds 3]
    python bench/bench_reader.py --videos 800 --shards 2,4,8 --rounds 5 \
        --profile
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

from input_pipeline import records  # noqa: E402
from input_pipeline import yt8m as reader  # noqa: E402
from tfrecord_tools import yt8m_writer as writer  # noqa: E402
from tfrecord_tools.sharded_writer import (YT8M_NAME_TEMPLATE,  # noqa: E402
                                           write_sharded)

AUTOTUNE = tf.data.AUTOTUNE
BARE = "bare limit (read + parse + decode)"
BARE_PASSES = "bare limit, restarted after every pass"


def write_shards(directory, videos, shards, min_frames, max_frames, seed=0):
    rng = np.random.default_rng(seed)

    def records():
        for i in range(videos):
            t = int(rng.integers(min_frames, max_frames + 1))
            labels = rng.choice(3862, size=3, replace=False).tolist()
            feats = {"rgb": rng.integers(0, 256, (t, 1024), dtype=np.uint8),
                     "audio": rng.integers(0, 256, (t, 128), dtype=np.uint8)}
            yield writer.serialize(writer.make_frame_example(
                f"{i:06x}", labels, feats))

    write_sharded(records(), directory, "train", shards, num_records=videos,
                  name_template=YT8M_NAME_TEMPLATE)


def measure(makers, batch, batches, rounds, warmup):
    """Steady-state records/s and CPU us/record of each pipeline.

    Best over ``rounds`` rounds (pipelines take turns; a fresh iterator each
    round, ``warmup`` batches discarded so that shuffle and prefetch buffers
    are full), each round timing ``batches`` batches twice. Best-of
    suppresses the noise of a shared 2-core machine, where single timings
    vary by +-20% and more.
    """
    rate = {name: 0.0 for name in makers}
    cpu = {name: float("inf") for name in makers}
    for _ in range(rounds):
        for name, make in makers.items():
            it = iter(make())
            for _ in range(warmup):
                next(it)
            for _ in range(2):
                start, start_cpu = time.perf_counter(), time.process_time()
                for _ in range(batches):
                    next(it)
                wall = time.perf_counter() - start
                used = time.process_time() - start_cpu
                rate[name] = max(rate[name], batches * batch / wall)
                cpu[name] = min(cpu[name], used / (batches * batch) * 1e6)
            del it
    return rate, cpu


def readers(source, cfg, args):
    """The bare limit and the two readers, as dataset makers."""
    return {
        BARE: lambda: reader.bare_parse_dataset(source, cfg, args.batch,
                                                num_epochs=None),
        BARE_PASSES: lambda: reader.bare_parse_dataset(
            source, cfg, args.batch).repeat(),
        "training reader": lambda: reader.training_dataset(
            source, cfg, args.batch, seed=0,
            shuffle_buffer=args.shuffle_buffer),
        "evaluation reader": lambda: reader.evaluation_dataset(
            source, cfg, args.batch).repeat(),
    }


def stages(source, args):
    """Partial pipelines for --profile (records only grouped into batches,
    no parse), mirroring input_pipeline.yt8m's interleave."""
    sizes = dict(zip(source.files, source.sizes))
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(sizes)), tf.constant(list(sizes.values()),
                                              tf.int64)), -1)
    cycle = min(len(source.files), 8)

    def interleaved(per_file, deterministic):
        files = tf.data.Dataset.from_tensor_slices(source.files).repeat()
        return files.interleave(per_file, cycle_length=cycle,
                                num_parallel_calls=AUTOTUNE,
                                deterministic=deterministic)

    def read(path):
        return tf.data.TFRecordDataset(path)

    def blockwise(path):
        return records.checked_records_blockwise(path, table.lookup(path))

    def per_record(path):
        return records.checked_records(path, table.lookup(path))

    return {
        "stage: read (interleave, any order)": lambda: interleaved(
            read, False).batch(args.batch),
        "stage: read + integrity accounting": lambda: interleaved(
            blockwise, False).batch(args.batch),
        "stage: read + integrity + record shuffle": lambda: interleaved(
            blockwise, False).shuffle(args.shuffle_buffer).batch(args.batch),
        "stage: read (interleave, deterministic)": lambda: interleaved(
            read, True).batch(args.batch),
        "stage: read + integrity, deterministic": lambda: interleaved(
            blockwise, True).batch(args.batch),
        "stage: read + per-record accounting (records.checked_records)":
            lambda: interleaved(per_record, False).batch(args.batch),
    }


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run(directory, shards, args, cfg):
    """Writes (or reuses) the shards in ``directory`` and prints a table."""
    if not tf.io.gfile.glob(os.path.join(directory, "*.tfrecord")):
        start = time.perf_counter()
        write_shards(directory, args.videos, shards, args.min_frames,
                     args.max_frames)
        print(f"wrote {args.videos} videos in {shards} shards in "
              f"{time.perf_counter() - start:.0f} s")
    source = reader.Source.from_pattern(os.path.join(directory, "*.tfrecord"),
                                        cfg)
    makers = readers(source, cfg, args)
    if args.profile:
        makers.update(stages(source, args))
    # Warm up past the shuffle buffer (it emits nothing until full).
    warmup = args.shuffle_buffer // args.batch + 5
    before = load_average()
    rates, cpu = measure(makers, args.batch, args.batches, args.rounds,
                         warmup)
    size = sum(source.sizes) / 2**20
    print(f"\n{args.videos} videos in {len(source.files)} shards "
          f"({size:.0f} MiB), batch {args.batch}, frames "
          f"U[{args.min_frames}, {args.max_frames}], shuffle buffer "
          f"{args.shuffle_buffer}; best of {args.rounds} rounds x 2 x "
          f"{args.batches} batches after {warmup} warm-up batches; "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} "
          f"UTC; load average {before} before, {load_average()} after\n")
    print("| pipeline | records/s | ratio to bare limit | CPU us/record |")
    print("|---|---|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / rates[BARE]:.2f} | "
              f"{cpu[name]:.0f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=3000)
    parser.add_argument("--shards", default="8",
                        help="shard count, or several comma-separated (one "
                             "table each)")
    parser.add_argument("--min_frames", type=int, default=120)
    parser.add_argument("--max_frames", type=int, default=300)
    parser.add_argument("--batch", type=int, default=80)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--shuffle_buffer", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true",
                        help="add one row per pipeline stage")
    parser.add_argument("--data_dir", default="",
                        help="keep the shards here (<data_dir>/<videos>"
                             "videos_<N>shards, reused when present) instead "
                             "of a temporary folder")
    args = parser.parse_args()

    cfg = reader.ReaderConfig(feature_names=("rgb", "audio"),
                              feature_sizes=(1024, 128), num_classes=3862)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, TensorFlow {tf.__version__}")
    for shards in [int(s) for s in args.shards.split(",")]:
        if args.data_dir:
            directory = os.path.join(args.data_dir,
                                     f"{args.videos}videos_{shards}shards")
            os.makedirs(directory, exist_ok=True)
            run(directory, shards, args, cfg)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                run(tmp, shards, args, cfg)


if __name__ == "__main__":
    main()
