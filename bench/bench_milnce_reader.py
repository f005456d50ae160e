"""MIL-NCE training reader: frames/s versus bare JPEG decoding.

Writes MIL-NCE records (``input_pipeline.features`` raw-video layout plus
captions) of SYNTHETIC frames (moving colour gradients plus noise, JPEG
quality 90), by default 24 videos x 40 s at 5 fps with the short side 256
(256 x 455; 40 distinct frames repeated) and a caption every 4 s, in 4
shards (``--seconds 390``: HowTo100M's mean video length), or reads ``--data``
shards, then measures in the same process, taking the rounds in turns:

* bare decode: read + parse + decode 16 consecutive stored frames of each
  video (a random start), with ``tf.io.decode_jpeg`` alone and with
  ``vidcore.video.decode_frames`` (its JPEG / frame-size checks), batched
  like the reader: the least work a reader of such clips does;
* read + parse only: what every clip costs before any decoding (a clip
  reads its video's whole record), counted as 16 frames per record;
* training reader: ``input_pipeline.milnce.training_dataset`` at the
  published settings (16 frames at 5 fps, random 224 crop, flip,
  num_candidates 4, max_words 20, float32 [0, 1] batches and word ids).

Frames/s counts the frames delivered in batches (clips x 16). Prints a
markdown table ("vs bare decode": frames/s over the first row's).

    python bench/bench_milnce_reader.py [--videos 24 --seconds 40] [--rounds 5]
    python bench/bench_milnce_reader.py --data '/data/howto100m/train-*'
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
from input_pipeline import milnce
from input_pipeline import records
from input_pipeline import video as video_reader
from vidcore import text as text_lib
from vidcore import video as video_ops

AUTOTUNE = tf.data.AUTOTUNE
WORDS = ["add", "the", "onion", "and", "stir", "for", "two", "minutes", "now",
         "cut", "pepper", "into", "small", "pieces", "heat", "oil", "pan"]


def synthetic_video(rng, number, frames, height, width, fps, caption_every,
                    distinct=40):
    """One serialized MIL-NCE record: moving gradients plus noise (the
    first ``distinct`` frames encoded, then repeated in turn, so that long
    videos are written quickly), and a caption every ``caption_every``
    seconds."""
    ex = tf.train.SequenceExample()
    ctx = ex.context.feature
    ctx[keys.VIDEO_MEDIA_ID].bytes_list.value.append(
        f"synthetic-{number:05d}".encode())
    ctx[keys.VIDEO_FRAME_RATE].float_list.value.append(fps)
    ctx[keys.VIDEO_START_TIMESTAMP].int64_list.value.append(0)
    ctx[keys.VIDEO_HEIGHT].int64_list.value.append(height)
    ctx[keys.VIDEO_WIDTH].int64_list.value.append(width)
    ctx[keys.VIDEO_FORMAT].bytes_list.value.append(b"JPEG")
    duration = frames / fps
    for start in np.arange(0.0, duration, caption_every):
        words = rng.choice(WORDS, size=int(rng.integers(3, 12)))
        ctx[keys.VIDEO_CAPTION_STRING].bytes_list.value.append(
            " ".join(words).encode())
        ctx[keys.VIDEO_CAPTION_START].float_list.value.append(start)
        ctx[keys.VIDEO_CAPTION_END].float_list.value.append(
            min(duration, start + rng.uniform(1.0, 2 * caption_every)))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3)
    freq = rng.uniform(0.01, 0.04, 3)
    feature_list = ex.feature_lists.feature_list[keys.VIDEO_IMAGE_ENCODED]
    encoded = []
    for t in range(min(frames, distinct)):
        channels = [127 + 100 * np.sin(freq[c] * (xx + 6 * t)
                                       + 0.5 * freq[c] * yy + phase[c])
                    for c in range(3)]
        image = np.stack(channels, axis=-1) + rng.normal(
            0, 6, (height, width, 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        encoded.append(tf.io.encode_jpeg(image, quality=90).numpy())
    for t in range(frames):
        feature_list.feature.add().bytes_list.value.append(
            encoded[t % len(encoded)])
    return ex.SerializeToString()


def write_shards(directory, videos, frames, height, width, fps, shards,
                 caption_every, seed=0):
    rng = np.random.default_rng(seed)
    files = []
    per_shard = -(-videos // shards)
    for s in range(shards):
        path = os.path.join(directory, f"milnce-{s:03d}-of-{shards:03d}")
        with tf.io.TFRecordWriter(path) as writer:
            for number in range(s * per_shard,
                                min((s + 1) * per_shard, videos)):
                writer.write(synthetic_video(rng, number, frames, height,
                                             width, fps, caption_every))
        files.append(path)
    return files


def _records(files):
    return tf.data.Dataset.from_tensor_slices(files).repeat().interleave(
        tf.data.TFRecordDataset, cycle_length=len(files),
        num_parallel_calls=AUTOTUNE, deterministic=False)


def read_parse_dataset(files, batch):
    """Records read and parsed, nothing decoded (the whole record is read
    whatever the clip); elements are frame counts [batch]."""
    return _records(files).map(
        lambda s: video_reader.parse_video(s)["num_frames"],
        num_parallel_calls=AUTOTUNE, deterministic=False).batch(
            batch).prefetch(AUTOTUNE)


def bare_decode_dataset(files, num_frames, batch, checked):
    """16 consecutive stored frames of each video decoded (random start),
    batched; elements are uint8 [batch, T, H, W, 3]."""
    ds = _records(files)

    def decode(serialized):
        jpegs = video_reader.parse_video(serialized)["jpegs"]
        count = tf.size(jpegs)
        seed = tf.stack([tf.constant(0, tf.int64),
                         tf.strings.to_hash_bucket_fast(serialized, 2 ** 62)])
        start = tf.random.stateless_uniform(
            [], seed, 0, tf.maximum(count - num_frames, 0) + 1, tf.int32)
        clip = tf.gather(jpegs, tf.minimum(start + tf.range(num_frames),
                                           count - 1))
        if checked:
            return video_ops.decode_frames(clip)
        return tf.map_fn(
            lambda s: tf.io.decode_jpeg(s, channels=3,
                                        dct_method="INTEGER_ACCURATE"),
            clip, fn_output_signature=tf.TensorSpec([None, None, 3],
                                                    tf.uint8))

    return ds.map(decode, num_parallel_calls=AUTOTUNE,
                  deterministic=False).batch(batch).prefetch(AUTOTUNE)


def measure(make_dataset, batches):
    """Runs a fresh dataset for ``batches`` batches after the first; returns
    (seconds to the first batch, wall seconds and process CPU seconds of
    the others)."""
    start = time.perf_counter()
    it = iter(make_dataset())
    next(it)
    first = time.perf_counter()
    cpu = time.process_time()
    for _ in range(batches):
        next(it)
    return (first - start, time.perf_counter() - first,
            time.process_time() - cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None,
                        help="MIL-NCE shards to read instead of writing")
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=455)
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--caption_every", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=30,
                        help="batches timed per round (after the first)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    cfg = milnce.MilNCEClipConfig(num_candidates=4)  # the published command
    encoder = text_lib.TextEncoder(
        text_lib.WordVectors(WORDS, np.zeros((len(WORDS), 1), np.float32)),
        embeddings=False)
    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            files = records.list_files(args.data, "--data")
            source = f"{len(files)} shard(s) from {args.data}"
        else:
            start = time.perf_counter()
            frames = int(round(args.seconds * args.fps))
            files = write_shards(tmp, args.videos, frames, args.height,
                                 args.width, args.fps, args.shards,
                                 args.caption_every)
            source = (f"{args.videos} SYNTHETIC videos x {frames} frames "
                      f"(40 distinct, repeated) of "
                      f"{args.height}x{args.width} at {args.fps:g} fps, a "
                      f"caption every {args.caption_every:g} s, JPEG q90, "
                      f"{args.shards} shards (written in "
                      f"{time.perf_counter() - start:.0f} s)")
        size = sum(records.file_sizes(files))
        stored = int(tf.data.TFRecordDataset(files).map(
            lambda s: video_reader.parse_video(s)["num_frames"]).reduce(
                0, lambda a, b: a + b))
        pipelines = [
            ("bare decode (tf.io.decode_jpeg)",
             lambda: bare_decode_dataset(files, cfg.num_frames, args.batch,
                                         False)),
            ("bare decode (video.decode_frames)",
             lambda: bare_decode_dataset(files, cfg.num_frames, args.batch,
                                         True)),
            ("read + parse records only (no decode)",
             lambda: read_parse_dataset(files, args.batch)),
            ("training reader (milnce.training_dataset)",
             lambda: milnce.training_dataset(files, cfg, args.batch,
                                             encoder, seed=0)),
        ]
        runs = {name: [] for name, _ in pipelines}
        for _ in range(args.rounds):  # rounds in turns between pipelines
            for name, make in pipelines:
                runs[name].append(measure(make, args.batches))

    frames_timed = args.batches * args.batch * cfg.num_frames
    print(f"\n{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, TF {tf.__version__}, "
          f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"data: {source}; {stored} stored frames, "
          f"{size / stored / 1024:.1f} KiB per frame")
    print(f"reader: {cfg.num_frames} frames at {cfg.fps:g} fps, random "
          f"{cfg.video_size} crop + flip, num_candidates "
          f"{cfg.num_candidates}, max_words {cfg.max_words}; batch "
          f"{args.batch}, {args.batches} batches timed per round; best of "
          f"{args.rounds} rounds taken in turns\n")
    print("| pipeline | frames/s | vs bare decode | clips/s "
          "| frames per CPU-s | first batch s |")
    print("|---|---|---|---|---|---|")
    bare_rate = None
    for name, _ in pipelines:
        startup, seconds, cpu = max(runs[name], key=lambda r: -r[1])
        rate = frames_timed / seconds
        bare_rate = bare_rate or rate
        print(f"| {name} | {rate:,.0f} | {rate / bare_rate:.2f} | "
              f"{rate / cfg.num_frames:,.1f} | {frames_timed / cpu:,.0f} | "
              f"{startup:.2f} |")
    print("\nRates are measured after the first batch (pipeline start, "
          "tracing and the reader's shuffle-buffer fill are in the last "
          "column). Bare rows decode the full stored frames of one clip "
          "per video and nothing else; the reader also samples captions "
          "and the clip time, crops, flips, converts to float32 and maps "
          "the K captions to word ids. frames per CPU-s divides by this "
          "process's CPU time (all threads).")
    load = open("/proc/loadavg").read().split()[:3]
    print(f"load average at the end: {' '.join(load)}")


if __name__ == "__main__":
    main()
