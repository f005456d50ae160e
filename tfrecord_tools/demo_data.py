"""Writes a SYNTHETIC YouTube-8M-format demo dataset (no real videos).

The records use the exact official frame-level format (SequenceExample,
context `id` + `labels`, uint8-quantised `rgb` [1024] and `audio` [128] per
frame, shards `train0000.tfrecord`, ...), but every feature value is
synthetic: random class prototypes mixed per frame plus Gaussian noise.
It is meant for demos, smoke tests and tutorials, and is learnable: a linear
model on mean frame features separates the classes well. Numbers obtained on
it say nothing about YouTube-8M itself.

  python -m tfrecord_tools.demo_data --output_dir=demo_out/yt8m

Generative process (all from `numpy.random.default_rng`, so one seed gives
byte-identical files):

* each class c has prototypes P_rgb[c] ~ N(0, 0.5^2 I_1024) and
  P_audio[c] ~ N(0, 0.5^2 I_128);
* a video has 1-3 distinct labels drawn from a Zipf-like prior
  p(c) ~ (c + 1)^-0.8 (class 0 most frequent, as in the real vocabulary),
  and num_frames ~ U{min_frames..max_frames};
* frame t = sum_k w_tk P[label_k] + o + e_t with per-frame mixture weights
  w_t ~ Dirichlet(1), a per-video offset o ~ N(0, 0.15^2 I) and noise
  e_t ~ N(0, 0.5^2 I): about 99.5% of values fall inside the quantisation
  range [-2, 2];
* test videos are generated the same way but written without labels (an
  empty `labels` list, like the Kaggle test set);
* with segment_rated, `validate_segments0000.tfrecord` holds videos in the
  2019 segment-rated format: one rated class per video, 5-frame segments
  starting at multiples of 5, score 1 where the segment's frames contain the
  class and 0 where they do not.
"""

import csv
import io
import os
import string

from absl import flags
import numpy as np
import tensorflow as tf

from input_pipeline import features as F
from tfrecord_tools import cli
from tfrecord_tools import sharded_writer
from tfrecord_tools import yt8m_writer

SPLITS = ("train", "validate", "test")
SEGMENTS_PREFIX = "validate_segments"
VOCABULARY_FILE = "vocabulary.csv"
README_FILE = "README.txt"
ID_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 4  # like the 2018 release ids, e.g. "Ab3d"

PROTOTYPE_STD = 0.5
OFFSET_STD = 0.15
NOISE_STD = 0.5
ZIPF_EXPONENT = 0.8
LABELS_PER_VIDEO = (1, 2, 3)
LABELS_PER_VIDEO_P = (0.5, 0.3, 0.2)
RATED_SEGMENTS_PER_VIDEO = 5


def class_prior(num_classes):
    """Zipf-like class prior p(c) ~ (c + 1)^-0.8, summing to 1."""
    weights = 1.0 / np.arange(1, num_classes + 1) ** ZIPF_EXPONENT
    return weights / weights.sum()


def make_ids(rng, count):
    """`count` distinct random 4-character ids such as "Ab3d".

    Args:
        rng: numpy Generator.
        count: number of ids.

    Returns:
        List of str, in generation order.
    """
    ids = []
    seen = set()
    alphabet = np.array(list(ID_ALPHABET))
    while len(ids) < count:
        chars = alphabet[rng.integers(0, len(alphabet),
                                      size=(2 * (count - len(ids)) + 8,
                                            ID_LENGTH))]  # [n, 4]
        for row in chars:
            video_id = "".join(row)
            if video_id not in seen:
                seen.add(video_id)
                ids.append(video_id)
                if len(ids) == count:
                    break
    return ids


class _Generator:
    """Synthetic frame features for given labels (see module docstring)."""

    def __init__(self, num_classes, seed):
        rng = np.random.default_rng([seed, 1])
        rgb_size = F.YT8M_FEATURE_SIZES[F.YT8M_RGB]
        audio_size = F.YT8M_FEATURE_SIZES[F.YT8M_AUDIO]
        sizes = {F.YT8M_RGB: rgb_size, F.YT8M_AUDIO: audio_size}
        self.prototypes = {
            name: rng.normal(0.0, PROTOTYPE_STD,
                             (num_classes, size)).astype(np.float32)
            for name, size in sizes.items()
        }  # name -> [C, D]
        self.prior = class_prior(num_classes)
        self.num_classes = num_classes

    def labels(self, rng, exclude=()):
        """1-3 distinct sorted labels from the prior, none in `exclude`."""
        prior = self.prior.copy()
        prior[list(exclude)] = 0.0
        prior /= prior.sum()
        k = int(rng.choice(LABELS_PER_VIDEO, p=LABELS_PER_VIDEO_P))
        k = min(k, int((prior > 0).sum()))
        return sorted(int(c) for c in rng.choice(self.num_classes, size=k,
                                                 replace=False, p=prior))

    def frames(self, rng, frame_labels):
        """Features of frames whose content classes are `frame_labels`.

        Args:
            rng: numpy Generator.
            frame_labels: list (one per frame) of lists of class ids.

        Returns:
            Dict "rgb" -> [T, 1024], "audio" -> [T, 128] float32.
        """
        num_frames = len(frame_labels)
        used = sorted({c for classes in frame_labels for c in classes})
        column = {c: i for i, c in enumerate(used)}
        mask = np.zeros((num_frames, len(used)))  # [T, U]
        for t, classes in enumerate(frame_labels):
            mask[t, [column[c] for c in classes]] = 1.0
        # Dirichlet(1) weights over each frame's classes: normalised Exp(1).
        weights = rng.exponential(1.0, mask.shape) * mask  # [T, U]
        weights /= weights.sum(axis=1, keepdims=True)
        out = {}
        for name, prototypes in self.prototypes.items():
            size = prototypes.shape[1]
            offset = rng.normal(0.0, OFFSET_STD, size)  # [D]
            noise = rng.normal(0.0, NOISE_STD, (num_frames, size))  # [T, D]
            mixture = weights @ prototypes[used]  # [T, U] @ [U, D] -> [T, D]
            out[name] = (mixture + offset + noise).astype(np.float32)
        return out


def _video_records(gen, rng, ids, min_frames, max_frames, with_labels):
    """Yields serialized frame-level records of ordinary videos."""
    for video_id in ids:
        labels = gen.labels(rng)
        num_frames = int(rng.integers(min_frames, max_frames + 1))
        frames = gen.frames(rng, [labels] * num_frames)
        example = yt8m_writer.make_frame_example(
            video_id, labels if with_labels else [], frames,
            id_key=F.YT8M_ID_KEY)
        yield yt8m_writer.serialize(example)


def _segment_records(gen, rng, ids, min_frames, max_frames):
    """Yields serialized records in the 2019 segment-rated format."""
    size = F.YT8M_SEGMENT_SIZE
    low = max(2, -(-min_frames // size))
    high = max(low, max_frames // size)
    for video_id in ids:
        rated_class = int(rng.choice(gen.num_classes, p=gen.prior))
        background = gen.labels(rng, exclude=[rated_class])
        num_segments = int(rng.integers(low, high + 1))
        num_rated = min(RATED_SEGMENTS_PER_VIDEO, num_segments)
        rated = np.sort(rng.choice(num_segments, size=num_rated,
                                   replace=False))
        # Random 0/1 scores: at least one positive and (if 2+) one negative.
        scores = rng.integers(0, 2, size=num_rated).astype(np.float32)
        scores[0] = 1.0
        if num_rated > 1:
            scores[-1] = 0.0
        rng.shuffle(scores)
        # Rated segments contain the class iff positive; unrated ones half the
        # time.
        contains = rng.integers(0, 2, size=num_segments).astype(bool)
        contains[rated] = scores > 0.5
        frame_labels = []
        for s in range(num_segments):
            has_class = contains[s]
            classes = background + [rated_class] if has_class else background
            frame_labels.extend([classes] * size)
        frames = gen.frames(rng, frame_labels)
        segments = {
            F.YT8M_SEGMENT_LABELS: [rated_class] * num_rated,
            F.YT8M_SEGMENT_START_TIMES: (rated * size).tolist(),
            F.YT8M_SEGMENT_SCORES: scores.tolist(),
        }
        labels = sorted(background + [rated_class])
        example = yt8m_writer.make_frame_example(
            video_id, labels, frames, id_key=F.YT8M_ID_KEY, segments=segments)
        yield yt8m_writer.serialize(example)


def _write_split(records, output_dir, prefix, num_shards, num_records):
    with sharded_writer.ShardedWriter(
        output_dir, prefix, num_shards, num_records=num_records,
        name_template=sharded_writer.YT8M_NAME_TEMPLATE) as writer:
        for record in records:
            writer.write(record)
    return list(writer.paths)


def _write_text(path, text):
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def _vocabulary_csv(num_classes):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["Index", "Name"])
    for c in range(num_classes):
        writer.writerow([c, f"Synthetic class {c:04d}"])
    return buf.getvalue()


def _readme(params, outputs):
    lines = [
        "SYNTHETIC YouTube-8M-format demo dataset",
        "=========================================",
        "",
        "Written by `python -m tfrecord_tools.demo_data`. The files use the",
        "official YouTube-8M frame-level TFRecord format (SequenceExample,",
        "context 'id' and 'labels', uint8-quantised 'rgb' [1024] and 'audio'",
        "[128] per frame), but NO real video is behind them: every feature",
        "is synthetic (per-class random prototypes mixed per frame, plus",
        "Gaussian noise). Results on this data say nothing about YouTube-8M.",
        "",
        "Parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()),
        "",
        "Files:",
    ]
    for split, paths in outputs.items():
        names = ", ".join(os.path.basename(p) for p in paths)
        lines.append(f"  {split}: {names}")
    lines += [
        f"  {VOCABULARY_FILE}: synthetic class names (Index,Name)",
        "  manifest-*.json: record counts per shard",
        "",
        "The test split has empty 'labels' lists, like the Kaggle test set.",
    ]
    if SEGMENTS_PREFIX in outputs:
        lines += [
            f"{SEGMENTS_PREFIX}*.tfrecord holds videos in the 2019",
            "segment-rated format (segment_labels, segment_start_times,",
            "segment_scores). Note that the pattern 'validate*.tfrecord' also",
            "matches it; use 'validate0*.tfrecord' for the plain validate",
            "split.",
        ]
    return "\n".join(lines) + "\n"


def write_demo_dataset(output_dir, num_classes=200, num_train=400,
                       num_validate=120, num_test=80, seed=0, min_frames=20,
                       max_frames=90, num_shards=(4, 2, 2),
                       segment_rated=True, num_segment_videos=24):
    """Writes the SYNTHETIC demo dataset (see module docstring).

    Args:
        output_dir: output directory (created).
        num_classes: number of classes.
        num_train, num_validate, num_test: videos per split.
        seed: random seed; the same seed gives byte-identical files.
        min_frames, max_frames: range of frames per video (inclusive).
        num_shards: shards of (train, validate, test).
        segment_rated: also write `validate_segments0000.tfrecord` in the 2019
            segment-rated format.
        num_segment_videos: videos in the segment-rated shard.

    Returns:
        Dict split ("train", "validate", "test", and "validate_segments" when
        segment_rated) -> list of shard paths.

    Raises:
        InputError: invalid arguments.
    """
    if num_classes < 2:
        raise cli.InputError(f"num_classes must be >= 2, got {num_classes}")
    if not 1 <= min_frames <= max_frames:
        raise cli.InputError(
            f"need 1 <= min_frames <= max_frames, got {min_frames}, "
            f"{max_frames}")
    num_shards = tuple(num_shards)
    if len(num_shards) != len(SPLITS) or min(num_shards) < 1:
        raise cli.InputError(
            f"num_shards must be 3 positive ints (train, validate, test), got "
            f"{num_shards}")
    counts = {"train": num_train, "validate": num_validate, "test": num_test}
    if min(counts.values()) < 0 or num_segment_videos < 0:
        raise cli.InputError(f"video counts must be >= 0, got {counts}")
    gen = _Generator(num_classes, seed)
    num_seg = num_segment_videos if segment_rated else 0
    all_ids = make_ids(np.random.default_rng([seed, 2]),
                       sum(counts.values()) + num_seg)
    outputs = {}
    start = 0
    for index, split in enumerate(SPLITS):
        ids = all_ids[start:start + counts[split]]
        start += counts[split]
        rng = np.random.default_rng([seed, 10 + index])
        records = _video_records(gen, rng, ids, min_frames, max_frames,
                                 with_labels=split != "test")
        outputs[split] = _write_split(records, output_dir, split,
                                      num_shards[index], len(ids))
    if segment_rated:
        ids = all_ids[start:start + num_seg]
        rng = np.random.default_rng([seed, 20])
        records = _segment_records(gen, rng, ids, min_frames, max_frames)
        outputs[SEGMENTS_PREFIX] = _write_split(records, output_dir,
                                                SEGMENTS_PREFIX, 1, len(ids))
    _write_text(os.path.join(output_dir, VOCABULARY_FILE),
                _vocabulary_csv(num_classes))
    params = dict(num_classes=num_classes, num_train=num_train,
                  num_validate=num_validate, num_test=num_test, seed=seed,
                  min_frames=min_frames, max_frames=max_frames,
                  num_shards=",".join(map(str, num_shards)),
                  segment_rated=segment_rated,
                  num_segment_videos=num_seg)
    _write_text(os.path.join(output_dir, README_FILE),
                _readme(params, outputs))
    return outputs


# -- CLI -----------------------------------------------------------------

FLAGS = flags.FlagValues()
cli.flag_topic("data", FLAGS)
flags.DEFINE_string("output_dir", None,
                    "Directory for the SYNTHETIC demo shards.",
                    flag_values=FLAGS)
flags.DEFINE_integer("num_classes", 200, "Number of synthetic classes.",
                     lower_bound=2, flag_values=FLAGS)
flags.DEFINE_integer("num_train", 400, "Synthetic train videos.",
                     lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer("num_validate", 120, "Synthetic validate videos.",
                     lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer("num_test", 80, "Synthetic test videos (no labels).",
                     lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Random seed (same seed, same bytes).",
                     flag_values=FLAGS)
flags.DEFINE_integer("min_frames", 20, "Fewest frames per video.",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("max_frames", 90, "Most frames per video.",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_string("num_shards", "4,2,2",
                    "Shards of the train, validate and test splits.",
                    flag_values=FLAGS)
flags.DEFINE_boolean("segment_rated", True,
                     "Also write validate_segments0000.tfrecord in the 2019 "
                     "segment-rated format.", flag_values=FLAGS)
flags.DEFINE_integer("num_segment_videos", 24,
                     "Videos in the segment-rated shard.", lower_bound=0,
                     flag_values=FLAGS)
flags.mark_flag_as_required("output_dir", flag_values=FLAGS)


@cli.handle_errors
def main(argv):
    """Writes the SYNTHETIC demo dataset per the module FLAGS."""
    if len(argv) > 1:
        raise cli.InputError(f"unexpected arguments {argv[1:]}")
    outputs = write_demo_dataset(
        FLAGS.output_dir, num_classes=FLAGS.num_classes,
        num_train=FLAGS.num_train, num_validate=FLAGS.num_validate,
        num_test=FLAGS.num_test, seed=FLAGS.seed, min_frames=FLAGS.min_frames,
        max_frames=FLAGS.max_frames,
        num_shards=cli.parse_int_list(FLAGS.num_shards, "num_shards"),
        segment_rated=FLAGS.segment_rated,
        num_segment_videos=FLAGS.num_segment_videos)
    for split, paths in outputs.items():
        print(f"{split}: {len(paths)} shards")
    print(f"Wrote the SYNTHETIC demo dataset to {FLAGS.output_dir} "
          f"(see {README_FILE} there)")
    return 0


def run():
    """Console-script entry point."""
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
