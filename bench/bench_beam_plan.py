"""Planning a Beam conversion of HowTo100M's 1.2 M videos: time, host
memory and the size of the submitted pipeline.

The Beam runner of ``tfrecord_tools.conversion`` writes its shard plan to a
file and the pipeline reads it (``ReadFromText -> Reshuffle -> Convert``),
so the pipeline a runner receives (its runner-API proto, what Dataflow
uploads as the job graph) has one size whatever the item count. For
comparison the script also builds the former design, which put the shard
jobs themselves in a ``beam.Create``, at the smaller counts.

Items are synthetic HowTo100M video-list items (id, relative path, task, as
``howto_writer.read_video_list`` makes them) converted with the real
``howto_writer.convert_video`` settings; nothing is converted.

    python bench/bench_beam_plan.py                 # 1.2 M items, 4,096 shards
    python bench/bench_beam_plan.py --items=1000,100000 --num_shards=64
"""

import argparse
import functools
import os
import platform
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def synthetic_items(n):
    """n HowTo100M-like video list items (read_video_list's fields)."""
    return [{"id": f"{k:011d}", "task": f"{k % 23_000}",
             "path": f"videos/{k % 1000:03d}/{k:011d}.mp4",
             "where": f"HowTo100M_v1.csv:{k + 2}"} for k in range(n)]


def max_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(n, num_shards, output_dir, with_create):
    import apache_beam as beam

    from tfrecord_tools import conversion
    from tfrecord_tools import howto_writer

    settings = howto_writer.VideoSettings(
        features_path="gs://bucket/howto100m/features_2d",
        features_path_3d="gs://bucket/howto100m/features_3d",
        caption_path="gs://bucket/howto100m/captions")
    convert = functools.partial(howto_writer.convert_video,
                                settings=settings)
    start = time.perf_counter()
    items = synthetic_items(n)
    made = time.perf_counter() - start
    start = time.perf_counter()
    jobs = conversion.plan_shards(items, convert, output_dir, "train",
                                  num_shards, options={"n": n})
    planned = time.perf_counter() - start
    plan = os.path.join(output_dir, ".train.beam-plan.txt")
    start = time.perf_counter()
    conversion.write_lines_atomic(plan, map(conversion.plan_line, jobs))
    written = time.perf_counter() - start
    plan_mb = os.path.getsize(plan) / 2**20
    start = time.perf_counter()
    pipeline = conversion.build_beam_pipeline(
        plan, conversion.SharedJobFields(output_dir, "train", convert,
                                         conversion.default_item_id),
        os.path.join(output_dir, "results.json"),
        conversion.beam_pipeline_options())
    size = len(pipeline.to_runner_api().SerializeToString())
    built = time.perf_counter() - start
    create_size = None
    if with_create:
        old = beam.Pipeline(options=conversion.beam_pipeline_options())
        _ = (old | beam.Create(jobs) | beam.Reshuffle()
             | beam.Map(conversion.convert_shard))
        create_size = len(old.to_runner_api().SerializeToString())
    os.remove(plan)
    return {"items": n, "shards": num_shards, "make items s": made,
            "plan_shards s": planned, "write plan s": written,
            "plan file MB": plan_mb, "build pipeline s": built,
            "pipeline bytes": size, "Create pipeline bytes": create_size,
            "max RSS GB": max_rss_gb()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", default="1000,100000,1200000",
                        help="comma-separated item counts (default "
                             "1000,100000,1200000)")
    parser.add_argument("--num_shards", type=int, default=4096,
                        help="shards (default 4096)")
    parser.add_argument("--create_up_to", type=int, default=100_000,
                        help="also build the former Create pipeline up to "
                             "this many items (default 100000)")
    opts = parser.parse_args(argv)
    import apache_beam
    import tensorflow as tf
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, TensorFlow "
          f"{tf.__version__}, Apache Beam {apache_beam.__version__}, load "
          f"average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = []
    with tempfile.TemporaryDirectory() as output_dir:
        for n in (int(x) for x in opts.items.split(",")):
            rows.append(measure(n, opts.num_shards, output_dir,
                                n <= opts.create_up_to))
            print(f"# {n:,} items done", flush=True)
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = []
        for key in columns:
            value = row[key]
            cells.append("-" if value is None else f"{value:,}"
                         if isinstance(value, int) else f"{value:.2f}")
        print("| " + " | ".join(cells) + " |")
    print("(max RSS: the process's peak so far, so each row includes the "
          "rows before it)")


if __name__ == "__main__":
    main()
