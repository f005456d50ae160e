"""Raw-video (Kinetics-style) readers: frames/s versus bare JPEG decoding.

Writes raw-video shards (``input_pipeline.features`` layout) of SYNTHETIC
frames (moving colour gradients plus noise, JPEG quality 90), by default
64 videos x 75 frames of 128 x 171 stored at 15 fps in 4 shards, or reads
``--data`` shards, then measures in the same run

* bare decode: read + parse + decode EVERY stored frame (tf.io.decode_jpeg
  in a map over records, nothing else), and the same with
  ``vidcore.video.decode_frames`` (its JPEG / frame-size checks included);
* training reader: ``input_pipeline.video.training_dataset`` with the
  recipe's settings (clip_len 16 at 15 fps, clips_per_video 5, resize
  128 x 171, random crop 112, flip, normalise); frames/s counts the frames
  delivered in batches (clips x 16);
* evaluation reader: ``evaluation_dataset`` (5 uniform clips per video,
  centre crop), one full pass; frames delivered as above;
* both readers twice: returning normalised float32 clips, and returning
  the uint8 clip pixels (``normalize=False``) that kinetics.train and
  kinetics.eval read, normalising them in the model's step on the device;

and prints a markdown table ("vs bare decode": frames/s over the first
row's). ``--profile`` adds the CPU milliseconds per video of the readers'
stages (each a parallel tf.data map over the same records that stops after
that stage), which shows what bounds a reader.

    python bench/bench_video_reader.py [--videos 64 --frames 75] [--profile]
    python bench/bench_video_reader.py --data '/data/kinetics/train-*'
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

import numpy as np
import tensorflow as tf

from input_pipeline import features as keys
from input_pipeline import records
from input_pipeline import video as reader
from vidcore import video as video_ops

AUTOTUNE = tf.data.AUTOTUNE


def synthetic_video(rng, number, frames, height, width, fps, num_classes):
    """One serialized SequenceExample of moving gradients plus noise."""
    ex = tf.train.SequenceExample()
    ctx = ex.context.feature
    ctx[keys.VIDEO_MEDIA_ID].bytes_list.value.append(
        f"synthetic-{number:05d}".encode())
    ctx[keys.VIDEO_LABEL_INDEX].int64_list.value.append(
        number % num_classes)
    ctx[keys.VIDEO_FRAME_RATE].float_list.value.append(fps)
    ctx[keys.VIDEO_HEIGHT].int64_list.value.append(height)
    ctx[keys.VIDEO_WIDTH].int64_list.value.append(width)
    ctx[keys.VIDEO_FORMAT].bytes_list.value.append(b"JPEG")
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3)
    freq = rng.uniform(0.02, 0.08, 3)
    feature_list = ex.feature_lists.feature_list[keys.VIDEO_IMAGE_ENCODED]
    for t in range(frames):
        channels = [127 + 100 * np.sin(freq[c] * (xx + 2 * t)
                                       + 0.5 * freq[c] * yy + phase[c])
                    for c in range(3)]
        image = np.stack(channels, axis=-1) + rng.normal(
            0, 6, (height, width, 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        feature_list.feature.add().bytes_list.value.append(
            tf.io.encode_jpeg(image, quality=90).numpy())
    return ex.SerializeToString()


def write_shards(directory, videos, frames, height, width, fps, shards,
                 seed=0):
    rng = np.random.default_rng(seed)
    files = []
    per_shard = -(-videos // shards)
    for s in range(shards):
        path = os.path.join(directory, f"bench-{s:03d}-of-{shards:03d}")
        with tf.io.TFRecordWriter(path) as writer:
            for number in range(s * per_shard,
                                min((s + 1) * per_shard, videos)):
                writer.write(synthetic_video(rng, number, frames, height,
                                             width, fps, 400))
        files.append(path)
    return files


def bare_decode_dataset(files, checked):
    """Every stored frame decoded; elements are frame counts."""
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=len(files),
        num_parallel_calls=AUTOTUNE, deterministic=False)

    def decode(serialized):
        jpegs = reader.parse_video(serialized)["jpegs"]
        if checked:
            frames = video_ops.decode_frames(jpegs)
        else:
            frames = tf.map_fn(
                lambda s: tf.io.decode_jpeg(s, channels=3,
                                            dct_method="INTEGER_ACCURATE"),
                jpegs, fn_output_signature=tf.TensorSpec([None, None, 3],
                                                         tf.uint8))
        return tf.shape(frames)[0]

    return ds.map(decode, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def measure(make_dataset, count, limit=None):
    """Runs a fresh dataset; returns (seconds to its first element, wall
    seconds and process CPU seconds for the following elements, sum of
    ``count`` over them). At most ``limit`` elements after the first
    (None: to the end)."""
    start = time.perf_counter()
    it = iter(make_dataset())
    next(it)
    first = time.perf_counter()
    cpu = time.process_time()
    total = 0
    for n, element in enumerate(it, start=1):
        total += count(element)
        if limit is not None and n >= limit:
            break
    return (first - start, time.perf_counter() - first,
            time.process_time() - cpu, total)


def best_of(rounds, make_dataset, count, limit=None):
    """measure() ``rounds`` times; the round with the highest rate."""
    runs = [measure(make_dataset, count, limit) for _ in range(rounds)]
    return max(runs, key=lambda r: r[3] / r[1])


def stage_functions(cfg):
    """Per-video pipelines that stop after each stage of the readers, for
    the profile (each maps a serialized record to a tensor)."""
    name = tf.constant("bench")

    def seed_of(serialized):
        return tf.stack([tf.constant(0, tf.int64),
                         tf.strings.to_hash_bucket_fast(serialized, 2 ** 62)])

    def indices(serialized, mode):
        video = reader.parse_video(serialized, name)
        return video, video_ops.clip_indices(
            video["num_frames"], cfg.clip_len, cfg.clips_per_video, mode,
            video["frame_rate"], cfg.frame_rate,
            seed_of(serialized) if mode == "random" else None, name)

    def decoded(serialized, mode):
        video, clip_frames = indices(serialized, mode)
        unique, _ = tf.unique(tf.reshape(clip_frames, [-1]))
        return video_ops.decode_frames(tf.gather(video["jpegs"], unique),
                                       name)

    def pixels(serialized, mode):
        video = reader.parse_video(serialized, name)
        if mode == "random":
            return reader.training_clip_pixels(video, name,
                                               seed_of(serialized), cfg)[0]
        return reader.evaluation_clip_pixels(video, name, cfg)[0]

    def normalised(serialized, mode):
        return reader.normalize_clip_pixels(pixels(serialized, mode), cfg)

    def bare(serialized):
        jpegs = reader.parse_video(serialized)["jpegs"]
        return tf.map_fn(
            lambda s: tf.io.decode_jpeg(s, channels=3,
                                        dct_method="INTEGER_ACCURATE"),
            jpegs, fn_output_signature=tf.TensorSpec([None, None, 3],
                                                     tf.uint8))

    stages = [("bare: parse + decode every frame", bare),
              ("parse", lambda s: reader.parse_video(s, name)["jpegs"])]
    for mode, reader_name in (("random", "training"),
                              ("uniform", "evaluation")):
        stages += [
            (f"{reader_name}: parse + clip indices",
             lambda s, m=mode: indices(s, m)[1]),
            (f"{reader_name}: + decode distinct frames (checked)",
             lambda s, m=mode: decoded(s, m)),
            (f"{reader_name}: + crop/flip/gather (uint8 clip pixels)",
             lambda s, m=mode: pixels(s, m)["stored"]),
            (f"{reader_name}: + normalise (float32 clips)",
             lambda s, m=mode: normalised(s, m))]
    return stages


def profile(records_list, cfg, rounds):
    """CPU milliseconds per video of each stage: a parallel tf.data map over
    the records (as in the readers), best of ``rounds``."""
    serialized = tf.stack(records_list)
    rows = []
    for stage, fn in stage_functions(cfg):
        def make(fn=fn):
            return tf.data.Dataset.from_tensor_slices(serialized).map(
                lambda s: tf.size(fn(s)),
                num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
        best = min(measure(make, lambda e: 1)[2:]
                   for _ in range(rounds))  # (cpu seconds, videos)
        rows.append((stage, 1e3 * best[0] / best[1]))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None,
                        help="raw-video shards to read instead of writing")
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--frames", type=int, default=75)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=171)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--train_batches", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true",
                        help="also print CPU ms per video of each stage")
    args = parser.parse_args()

    cfg = reader.VideoClipConfig()  # the recipe's settings
    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            files = records.list_files(args.data, "--data")
            source = f"{len(files)} shard(s) from {args.data}"
        else:
            start = time.perf_counter()
            files = write_shards(tmp, args.videos, args.frames, args.height,
                                 args.width, args.fps, args.shards)
            source = (f"{args.videos} SYNTHETIC videos x {args.frames} frames"
                      f" of {args.height}x{args.width} at {args.fps:g} fps, "
                      f"JPEG q90, {args.shards} shards (written in "
                      f"{time.perf_counter() - start:.0f} s)")
        num = reader.num_videos(files)
        size = sum(records.file_sizes(files))
        stored = sum(int(b) for b in bare_decode_dataset(files, False))
        rows = []
        for name, checked in (("bare decode (tf.io.decode_jpeg)", False),
                              ("bare decode (video.decode_frames)", True)):
            startup, seconds, cpu, frames = best_of(
                args.rounds, lambda c=checked: bare_decode_dataset(files, c),
                int)
            rows.append((name, frames, None, frames / (stored / num),
                         seconds, cpu, startup))
        for normalize, kind in ((True, "float32 clips"),
                                (False, "uint8 pixels, as the CLIs read")):
            startup, seconds, cpu, clips = best_of(
                args.rounds,
                lambda n=normalize: reader.training_dataset(
                    files, cfg, args.batch, seed=0, normalize=n),
                lambda e: int(e[1].shape[0]), args.train_batches)
            rows.append((f"training reader (5 random clips/video; {kind})",
                         clips * cfg.clip_len, clips,
                         clips / cfg.clips_per_video, seconds, cpu, startup))
            startup, seconds, cpu, clips = best_of(
                args.rounds,
                lambda n=normalize: reader.evaluation_dataset(
                    files, cfg, args.batch, normalize=n),
                lambda e: int(tf.reduce_sum(tf.cast(e[3], tf.int32))))
            rows.append((f"evaluation reader (5 uniform clips/video; {kind})",
                         clips * cfg.clip_len, clips,
                         clips / cfg.clips_per_video, seconds, cpu, startup))
        stage_rows = None
        if args.profile:
            stage_rows = profile(
                [r for f in files for r in tf.data.TFRecordDataset(f)],
                cfg, args.rounds)

    print(f"\n{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, TF {tf.__version__}, "
          f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"data: {source}; {num} videos, {stored} stored frames, "
          f"{size / stored / 1024:.1f} KiB per frame")
    print(f"readers: clip_len {cfg.clip_len} at {cfg.frame_rate:g} fps, "
          f"clips_per_video {cfg.clips_per_video}, resize {cfg.resize}, "
          f"crop {cfg.crop_size}, batch {args.batch}; best of "
          f"{args.rounds} rounds\n")
    print("| pipeline | frames/s | vs bare decode | clips/s | videos/s "
          "| frames per CPU-s | first element s |")
    print("|---|---|---|---|---|---|---|")
    bare_rate = rows[0][1] / rows[0][4]
    for name, frames, clips, videos, seconds, cpu, startup in rows:
        clip_rate = "-" if clips is None else f"{clips / seconds:,.1f}"
        print(f"| {name} | {frames / seconds:,.0f} | "
              f"{frames / seconds / bare_rate:.2f} | {clip_rate} | "
              f"{videos / seconds:,.1f} | {frames / cpu:,.0f} | "
              f"{startup:.2f} |")
    print("\nRates are measured after the first element (pipeline start and "
          "tracing are in the last column). frames: bare rows count stored "
          "frames decoded; reader rows count frames delivered in clips "
          "(clips x clip_len; training decodes each distinct sampled frame "
          "once, so overlapping clips deliver more frames than it decodes). "
          "frames per CPU-s divides by this process's CPU time (all "
          "threads), which other processes on the machine disturb less "
          "than wall time.")
    load = open("/proc/loadavg").read().split()[:3]
    print(f"load average at the end: {' '.join(load)}")
    if stage_rows:
        print("\n| stage (cumulative, per video) | CPU ms per video |")
        print("|---|---|")
        for stage, ms in stage_rows:
            print(f"| {stage} | {ms:.2f} |")

if __name__ == "__main__":
    main()
