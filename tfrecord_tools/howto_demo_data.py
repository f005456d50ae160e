"""Writes a HowTo100M-style demo in the RELEASE file formats: REAL captions,
SYNTHETIC clip features.

The captions are real (copied with attribution, see NOTICE.md):

* "training videos": the 3,350 YouCook2 validation step captions grouped by
  their 436 YouTube videos, with their real start/end seconds, written as
  the HowTo100M caption JSON (video_id -> {start, end, text}) and video
  list CSV;
* "test clips": the 1,000 MSR-VTT 1k-A test captions, written as the
  authors' test CSV.

The features are SYNTHETIC: a noisy function of each caption's words, so
that retrieval can be learned, nothing measured on them says anything about
real videos. With the demo word vectors (``howto/data/demo_word_vectors.bin``,
real word2vec-format vectors, 10-d, 2,747 words):

* a caption's "content" is ``h = max_w relu(A e_w + a)`` over its
  in-vocabulary word vectors e_w (A [10 -> hidden], a random), zeros when
  no word is in the vocabulary;
* stream s (2D or 3D) of a frame inside a caption's span is
  ``normalize(R_s h + noise_std * n)`` with R_s random, n ~ N(0, I); frames
  covered by no caption are ``normalize(n)``; frames are float16 and
  L2-normalised, at 1 and 1.5 frames per second as in the release;
* a test clip's stream feature is the max over ``clip_frames`` such frames
  of its caption (the release's test features are max-pooled clip
  features).

Files (under output_dir):

  videos.csv                   video_id,task
  captions.json                {video_id: {"start", "end", "text"}}
  features_2d/<id>.npy         float16 [T_2d, dim_2d]
  features_3d/<id>.npy         float16 [T_3d, dim_3d]
  msrvtt_test.csv              key,vid_key,video_id,sentence (real)
  msrvtt_test_features.npz     arrays "2d/<video_id>", "3d/<video_id>"
  README.txt                   this description

  python -m tfrecord_tools.howto_demo_data --output_dir=demo_out/howto/release
"""

import csv
import os

from absl import flags
import numpy as np

from tfrecord_tools import cli
from vidcore.files import write_json_atomic
from vidcore import text

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "howto", "data")
WORD_VECTORS = os.path.join(DATA_DIR, "demo_word_vectors.bin")
YOUCOOK_CAPTIONS = os.path.join(DATA_DIR, "validation_youcook.csv")
MSRVTT_CAPTIONS = os.path.join(DATA_DIR, "msrvtt_test.csv")
RATES = {"2d": 1.0, "3d": 1.5}
README_FILE = "README.txt"


class CaptionFeatures:
    """The synthetic caption -> stream-feature function.

    Args:
        word_vectors: vidcore.text.WordVectors.
        dims: {stream: feature size}.
        hidden: size of the caption content h.
        noise_std: per-frame noise.
        seed: random seed of A, a and R_s.
    """

    def __init__(self, word_vectors, dims, hidden=32, noise_std=0.5, seed=0):
        rng = np.random.default_rng(seed)
        self.word_vectors = word_vectors
        dim = word_vectors.dim
        self.a_w = rng.normal(0, 1 / np.sqrt(dim), (dim, hidden))
        self.a_b = rng.normal(0, 0.1, hidden)
        self.r = {s: rng.normal(0, 1 / np.sqrt(hidden), (hidden, d))
                  for s, d in dims.items()}
        self.dims = dict(dims)
        self.noise_std = noise_std

    def content(self, caption):
        """h [hidden] of one caption."""
        index = self.word_vectors.index
        rows = [index[w] for w in text.python_tokenize(caption)
                if w in index]
        if not rows:
            return np.zeros(self.a_b.shape)
        # word ids are 1-based: row id - 1 of the vectors matrix.
        vecs = self.word_vectors.vectors[np.asarray(rows) - 1]
        return np.maximum(vecs @ self.a_w + self.a_b, 0).max(axis=0)

    def frames(self, rng, stream, content, count):
        """[count, dim] float32 L2-normalised frames (content None: noise)."""
        noise = rng.normal(0, 1, (count, self.dims[stream]))
        x = noise if content is None else (
            content @ self.r[stream] + self.noise_std * noise)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _videos(rows):
    """YouCook2 rows -> {video_id: (task, [(start, end, text)])}."""
    videos = {}
    for row in rows:
        entry = videos.setdefault(row["video_id"], (row["task"], []))
        entry[1].append((float(row["start"]), float(row["end"]), row["text"]))
    return videos


def write_demo_release(output_dir, dims=(64, 64), noise_std=0.5,
                       clip_frames=4, seed=0, max_videos=None):
    """Writes the demo files (see module docstring).

    Args:
        output_dir: output directory (created).
        dims: (2D size, 3D size) of the synthetic features.
        noise_std: per-frame noise.
        clip_frames: frames max-pooled into a test clip's feature.
        seed: random seed (same seed, same bytes).
        max_videos: keep only the first N training videos (tests).

    Returns:
        dict of the written paths and counts.
    """
    os.makedirs(output_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    word_vectors = text.WordVectors.load(WORD_VECTORS)
    fn = CaptionFeatures(word_vectors, {"2d": dims[0], "3d": dims[1]},
                         noise_std=noise_std, seed=seed)
    videos = _videos(_read_csv(YOUCOOK_CAPTIONS))
    if max_videos:
        videos = dict(list(videos.items())[:max_videos])
    for stream in RATES:
        os.makedirs(os.path.join(output_dir, f"features_{stream}"),
                    exist_ok=True)
    captions = {}
    for video_id, (task, caps) in videos.items():
        captions[video_id] = {"start": [c[0] for c in caps],
                              "end": [c[1] for c in caps],
                              "text": [c[2] for c in caps]}
        duration = max(c[1] for c in caps) + 5.0
        contents = [fn.content(c[2]) for c in caps]
        for stream, rate in RATES.items():
            count = int(duration * rate)
            frames = fn.frames(rng, stream, None, count)
            times = np.arange(count) / rate
            # Later captions overwrite earlier ones where spans overlap.
            for (start, end, _), h in zip(caps, contents):
                inside = np.nonzero((times >= start) & (times <= end))[0]
                if inside.size:
                    frames[inside] = fn.frames(rng, stream, h, inside.size)
            np.save(os.path.join(output_dir, f"features_{stream}",
                                 f"{video_id}.npy"), frames.astype(np.float16))
    write_json_atomic(os.path.join(output_dir, "captions.json"),
                            captions, indent=None)
    with open(os.path.join(output_dir, "videos.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_id", "task"])
        for video_id, (task, _) in videos.items():
            writer.writerow([video_id, task])

    test_rows = _read_csv(MSRVTT_CAPTIONS)
    arrays = {}
    for row in test_rows:
        h = fn.content(row["sentence"])
        for stream in RATES:
            arrays[f"{stream}/{row['video_id']}"] = fn.frames(
                rng, stream, h, clip_frames).max(axis=0).astype(np.float32)
    with open(os.path.join(output_dir, "msrvtt_test.csv"), "w",
              newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["key", "vid_key", "video_id",
                                               "sentence"])
        writer.writeheader()
        writer.writerows(test_rows)
    np.savez(os.path.join(output_dir, "msrvtt_test_features.npz"), **arrays)
    with open(os.path.join(output_dir, README_FILE), "w") as f:
        f.write(__doc__)
    return {"videos": len(videos), "captions": sum(
        len(c["text"]) for c in captions.values()),
        "test_clips": len(test_rows), "dims": tuple(dims)}


FLAGS = flags.FlagValues()
cli.flag_topic("data", FLAGS)
flags.DEFINE_string("output_dir", None, "Output directory.", flag_values=FLAGS)
flags.DEFINE_list("dims", ["64", "64"], "2D,3D synthetic feature sizes.",
                  flag_values=FLAGS)
flags.DEFINE_float("noise_std", 0.5, "Per-frame noise.", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Random seed.", flag_values=FLAGS)


@cli.handle_errors
def main(argv):
    if len(argv) > 1:
        raise cli.InputError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.output_dir:
        raise cli.InputError("--output_dir is required")
    dims = tuple(cli.parse_int_list(",".join(FLAGS.dims), "dims"))
    info = write_demo_release(FLAGS.output_dir, dims=dims,
                              noise_std=FLAGS.noise_std, seed=FLAGS.seed)
    print(f"wrote {info['videos']} videos ({info['captions']} real YouCook2 "
          f"captions) and {info['test_clips']} MSR-VTT test clips with "
          f"SYNTHETIC features to {FLAGS.output_dir}")


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
