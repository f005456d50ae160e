r"""Averages YouTube-8M prediction files into one Kaggle submission.

    python -m yt8m.ensemble \
        --input_files=netvlad.csv,netfv.csv,dbof.csv \
        [--weights=0.5,0.3,0.2] --top_k=20 --output_file=submission.csv

Each input is a Kaggle video file (``VideoId,LabelConfidencePairs``); raw
scores for ensembling are the same format with more pairs per video (the
published commands wrote ``--top_k=50``). For every video the ensemble score
of a class is the weighted mean of the models' confidences, a class missing
from a model's list counting as 0; the ``--top_k`` best classes are written,
sorted by descending score (equal scores: lower class id first). Weights
default to equal and are normalised to sum to 1. Output rows follow the
first file's order; every file must list exactly the same videos.

With ``--labels_file`` (``VideoId,Labels``, e.g. written by
``yt8m.inference --output_labels_file`` on a validation split) GAP@top_k of
each input and of the ensemble is reported; ``--output_file`` may then be
left out. ``--fit_weights`` also fits the weights on these labelled
predictions (:func:`fit_weights`) before writing, and ``--weights_output``
saves them as JSON::

    {"input_files": [...], "weights": [...], "weights_flag": "0.6,0.4",
     "ensemble_gap": 0.83, "equal_weights_gap": 0.82, "input_gaps": [...],
     "top_k": 20}

so that the same weights can be applied to the test predictions with
``--weights``.

Memory and speed: each file is held as int32 classes and float32 scores
(8 bytes per pair: 700k videos x 50 pairs x 7 files is about 2 GB); videos
are processed in chunks of ``--chunk_size`` rows, vectorised over the union
of the classes the models list for each video (at most files x pairs
columns), never a per-video Python loop: 700k videos x 7 files x 50 pairs
take about 2 minutes and 3.5 GB on two CPU cores (reading is about 7 s a
file). Weight fitting keeps that union for all labelled videos in memory
(about 4 bytes x files x videos x union width) and evaluates GAP about 100
to 160 times, each about 1 s per 100k videos for 7 files.
"""

import os
import time

import numpy as np
import tensorflow as tf
from absl import flags, logging

from vidcore import cli
from vidcore import files
from vidcore import metrics
from vidcore.errors import UserInputError
from vidcore.files import write_json_atomic
# --output_file, --top_k and --num_classes are shared with the other CLIs.
from yt8m import flags as yflags  # noqa: F401
from yt8m import submission

FLAGS = flags.FLAGS


flags.DEFINE_list("input_files", [],
                  "Comma-separated Kaggle prediction files to average.")
flags.DEFINE_list("weights", [],
                  "Optional comma-separated weight per input file (same "
                  "count); default equal. Normalised to sum to 1.")
flags.DEFINE_string("labels_file", "",
                    "Optional VideoId,Labels file: report GAP@top_k of every "
                    "input and of the ensemble.")
flags.DEFINE_bool("fit_weights", False,
                  "Fit the weights on --labels_file to maximise GAP@top_k "
                  "(coordinate ascent from equal weights).")
flags.DEFINE_string("weights_output", "",
                    "With --fit_weights: write the fitted weights here "
                    "(JSON).")
flags.DEFINE_integer("chunk_size", 20000,
                     "Videos averaged per vectorised step (memory bound).")
# Coordinate-ascent schedule of fit_weights: a coarse grid of absolute values
# first, then steps around the current value that halve every round.
FIT_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 6))
FIT_STEPS = (0.05, 0.025, 0.0125)
_MIN_GAIN = 1e-9     # a move must improve GAP by more than this


# --------------------------------------------------------------------------
# Loading and aligning files.
# --------------------------------------------------------------------------
class Predictions:
    """One prediction file: ids [N] str, classes [N, k] int32 (-1 pad),
    scores [N, k] float32 (0 pad)."""

    def __init__(self, path, ids, classes, scores):
        self.path, self.ids, self.classes, self.scores = (path, ids, classes,
                                                          scores)


def load_predictions(paths, num_classes):
    """Reads prediction files and checks their class ids.

    Args:
      paths: prediction file paths.
      num_classes: class ids must lie in [0, num_classes).

    Returns:
      list of :class:`Predictions`.

    Raises:
      FileNotFoundError, submission.PredictionFileError.
    """
    loaded = []
    for path in paths:
        start = time.time()
        ids, classes, scores = submission.read_video_predictions(path)
        _check_class_range(classes, ids, num_classes, path)
        logging.info("read %s: %d videos x %d pairs in %.1f s", path,
                     ids.size, classes.shape[1], time.time() - start)
        loaded.append(Predictions(path, ids, classes, scores))
    return loaded


def _check_class_range(classes, ids, num_classes, path):
    """Raises if a class id is >= num_classes, naming file and video."""
    bad = classes >= num_classes
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise submission.PredictionFileError(
            f"{path}: video {str(ids[row])!r} has class "
            f"{int(classes[row][bad[row]][0])}, expected class ids below "
            f"--num_classes={num_classes}")


def align(predictions):
    """Row permutations that put every file in the first file's video order.

    Args:
      predictions: list of :class:`Predictions`.

    Returns:
      list of int64 arrays ``perm`` with ``p.ids[perm] == predictions[0].ids``.

    Raises:
      submission.PredictionFileError: the sets of video ids differ (names
        the first offending id and both files).
    """
    reference = predictions[0]
    return [submission.alignment_permutation(reference.ids, p.ids,
                                             reference.path, p.path)
            for p in predictions]


def load_aligned_labels(path, video_ids, num_classes):
    """Reads a labels file and aligns it to ``video_ids``.

    Args:
      path: ``VideoId,Labels`` file; it may list more videos than predicted.
      video_ids: [N] ids of the predictions.
      num_classes: label ids must lie in [0, num_classes).

    Returns:
      (labels [N, L] int32 padded with -1, number of extra labelled videos).
    """
    ids, labels = submission.read_label_matrix(path)
    _check_class_range(labels, ids, num_classes, path)
    perm = submission.alignment_permutation(
        video_ids, ids, "the prediction files", path, allow_extra=True)
    return labels[perm], ids.size - video_ids.size


def parse_weights(values, num_files):
    """Parses and normalises ``--weights``.

    Args:
      values: list of strings (empty: equal weights).
      num_files: number of input files.

    Returns:
      float64 [num_files] non-negative weights summing to 1.
    """
    if not values:
        return np.full(num_files, 1.0 / num_files)
    try:
        weights = [float(v) for v in values]
    except ValueError:
        raise UserInputError(
            f"--weights={','.join(values)}: expected comma-separated "
            "numbers") from None
    return normalise_weights(weights, num_files)


def normalise_weights(weights, num_files):
    """Checks per-file weights and scales them to sum to 1.

    Args:
      weights: sequence of numbers (None: equal weights).
      num_files: number of input files.

    Returns:
      float64 [num_files].

    Raises:
      UserInputError: wrong count, negative or non-finite values, zero sum.
    """
    if weights is None:
        return np.full(num_files, 1.0 / num_files)
    weights = np.asarray(weights, np.float64).ravel()
    if weights.size != num_files:
        raise UserInputError(
            f"--weights has {weights.size} values but --input_files has "
            f"{num_files} files; expected one weight per file")
    if not np.all(np.isfinite(weights)) or (weights < 0).any() or (
            weights.sum() <= 0):
        raise UserInputError(
            f"--weights={','.join(f'{w:g}' for w in weights)}: expected "
            "non-negative numbers with a positive sum")
    return weights / weights.sum()


# --------------------------------------------------------------------------
# Union of the models' lists, per chunk of videos.
# --------------------------------------------------------------------------
class UnionChunk:
    """The classes listed by any model for a chunk of n videos.

    Attributes:
      classes: [n, W] int32 class ids, ascending per row, -1 padding.
      scores: [M, n, W] float32 confidence of each model (0 when unlisted).
      listed: [n, W] uint64 bit m set when model m lists the class.
      hits: [n, W] bool, whether the class is a true label (None without
        labels).
    """

    def __init__(self, classes, scores, listed, hits=None):
        self.classes, self.scores, self.listed, self.hits = (
            classes, scores, listed, hits)


def build_union(class_blocks, score_blocks):
    """Merges the models' (classes, scores) rows into a :class:`UnionChunk`.

    Args:
      class_blocks: M arrays [n, k_m] int32, -1 padding; a class appears at
        most once per row (the reader guarantees it).
      score_blocks: M arrays [n, k_m] float32.

    Returns:
      UnionChunk without hits.
    """
    num_models = len(class_blocks)
    n = class_blocks[0].shape[0]
    classes = np.concatenate(class_blocks, axis=1).astype(np.int64)
    scores = np.concatenate(score_blocks, axis=1)
    model = np.repeat(np.arange(num_models),
                      [c.shape[1] for c in class_blocks])
    sentinel = np.iinfo(np.int64).max
    classes = np.where(classes < 0, sentinel, classes)
    order = np.argsort(classes, axis=1, kind="stable")
    classes = np.take_along_axis(classes, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    model = model[order]
    new = np.ones(classes.shape, bool)
    new[:, 1:] = classes[:, 1:] != classes[:, :-1]
    slot = np.cumsum(new, axis=1) - 1
    valid = classes != sentinel
    width = int(slot[valid].max(initial=-1)) + 1
    # Flat positions in [n, width], non-decreasing (rows, then classes).
    flat = (np.arange(n, dtype=np.int64)[:, None] * width + slot)[valid]
    model = model[valid]
    union = np.full((n, width), -1, np.int32)
    union.ravel()[flat] = classes[valid]
    per_model = np.zeros((num_models, n, width), np.float32)
    per_model.ravel()[model * (n * width) + flat] = scores[valid]
    # A class's entries are adjacent and come from distinct models, so the
    # sum of their bits is their bitwise or.
    listed = np.zeros((n, width), np.uint64)
    if flat.size:
        starts = np.flatnonzero(np.diff(flat, prepend=-1))
        bits = np.left_shift(np.uint64(1), model.astype(np.uint64))
        listed.ravel()[flat[starts]] = np.add.reduceat(bits, starts)
    return UnionChunk(union, per_model, listed)


def label_hits(classes, labels):
    """Whether each class is among its video's labels (vectorised).

    Args:
      classes: [n, W] int class ids, negative = padding.
      labels: [n, L] int label ids, -1 padding.

    Returns:
      [n, W] bool.
    """
    if labels.shape[1] <= 32:
        hits = np.zeros(classes.shape, bool)
        for column in labels.T:                  # -1 never matches a class
            hits |= classes == column[:, None]
        return hits & (classes >= 0)
    width = int(max(classes.max(initial=0), labels.max(initial=0))) + 1
    rows = np.arange(classes.shape[0], dtype=np.int64)[:, None]
    keys = rows * width + classes
    label_keys = (rows * width + labels)[labels >= 0]
    return np.isin(keys, label_keys) & (classes >= 0)


def combine(chunk, weights):
    """Weighted ensemble scores of a chunk.

    Args:
      chunk: UnionChunk.
      weights: [M] non-negative weights.

    Returns:
      [n, W] float32 scores; -inf where no model with a positive weight
      lists the class.
    """
    weights = np.asarray(weights, np.float32)
    mask = np.uint64(sum(1 << m for m in np.flatnonzero(weights > 0)))
    scores = np.tensordot(weights, chunk.scores, axes=(0, 0))
    return np.where((chunk.listed & mask) != 0, scores, -np.inf).astype(
        np.float32)


def top_k_rows(chunk, weights, top_k):
    """The ensemble's top_k (classes, scores) per video of a chunk.

    Args:
      chunk: UnionChunk.
      weights: [M] weights.
      top_k: pairs per video.

    Returns:
      (classes [n, k] int32 padded with -1, scores [n, k] float32), sorted
      by descending score, equal scores by ascending class.
    """
    scores = combine(chunk, weights)
    selected = submission.top_k_mask(scores, top_k)
    n = scores.shape[0]
    k = min(top_k, scores.shape[1])
    out_classes = np.full((n, k), -1, np.int32)
    out_scores = np.zeros((n, k), np.float32)
    column = np.cumsum(selected, axis=1) - 1
    rows = np.broadcast_to(np.arange(n)[:, None], selected.shape)
    out_classes[rows[selected], column[selected]] = chunk.classes[selected]
    out_scores[rows[selected], column[selected]] = scores[selected]
    return submission.sort_predictions(out_classes, out_scores)


def gap_triplets(chunk, weights, top_k):
    """Pooled (score, hit) triplets of the ensemble's top_k, video by video.

    Within a video the triplets come in ascending class order; since the
    GAP sort is stable on descending score this ranks exactly like the
    per-video order of ``vidcore.metrics`` (score desc, class asc).

    Returns:
      (scores [T] float32, hits [T] bool).
    """
    scores = combine(chunk, weights)
    selected = submission.top_k_mask(scores, top_k)
    return scores[selected], chunk.hits[selected]


def pooled_gap(parts, positives):
    """GAP from per-chunk (scores, hits) parts (``vidcore.metrics``)."""
    if not parts:
        return 0.0
    scores = np.concatenate([p[0] for p in parts])
    hits = np.concatenate([p[1] for p in parts])
    return metrics.gap_from_triplets(scores, hits, positives)


# --------------------------------------------------------------------------
# Weight fitting.
# --------------------------------------------------------------------------
def _move(weights, index, value):
    """Sets weights[index] = value, rescaling the others to keep sum 1."""
    others = np.delete(np.arange(weights.size), index)
    rest = 1.0 - value
    new = np.empty_like(weights)
    new[index] = value
    total = weights[others].sum()
    if total > 0:
        new[others] = weights[others] * (rest / total)
    else:
        new[others] = rest / others.size
    return new


def fit_weights(evaluate, num_models, grid=FIT_GRID, steps=FIT_STEPS):
    """Deterministic coordinate ascent on the simplex maximising ``evaluate``.

    Starts from equal weights. Round 0 tries, for each model in turn, every
    value of ``grid`` as its weight (the others rescaled proportionally to
    keep the sum 1); each later round tries ``w_m +- step`` and
    ``w_m +- 2 step`` for the next value of ``steps``. A move is kept only
    if it raises the score by more than 1e-9, so the result is never worse
    than equal weights on the fitting data.

    Args:
      evaluate: function(weights [M] float64) -> float (e.g. GAP).
      num_models: M.
      grid: absolute candidate values of round 0.
      steps: step of each later round.

    Returns:
      (weights [M] summing to 1, best score, score of equal weights,
      number of evaluations).
    """
    weights = np.full(num_models, 1.0 / num_models)
    best = equal = evaluate(weights)
    if num_models == 1:
        return weights, best, equal, 1
    cache = {tuple(np.round(weights, 9)): best}
    rounds = [np.asarray(grid, float)] + [
        np.array([-2.0, -1.0, 1.0, 2.0]) * s for s in steps]
    for round_index, candidates in enumerate(rounds):
        for m in range(num_models):
            values = (candidates if round_index == 0
                      else weights[m] + candidates)
            for value in np.clip(values, 0.0, 1.0):
                trial = _move(weights, m, float(value))
                key = tuple(np.round(trial, 9))
                if key not in cache:
                    cache[key] = evaluate(trial)
                if cache[key] > best + _MIN_GAIN:
                    best, weights = cache[key], trial
        logging.info("fit round %d: GAP %.6f weights %s", round_index, best,
                     np.round(weights, 4).tolist())
    return weights, best, equal, len(cache)


# --------------------------------------------------------------------------
# The ensemble.
# --------------------------------------------------------------------------
def _chunks(predictions, perms, chunk_size, labels=None):
    """Yields (first row, UnionChunk) over the reference order."""
    total = predictions[0].ids.size
    for begin in range(0, total, chunk_size):
        rows = slice(begin, min(begin + chunk_size, total))
        index = [perm[rows] for perm in perms]
        chunk = build_union([p.classes[i] for p, i in zip(predictions, index)],
                            [p.scores[i] for p, i in zip(predictions, index)])
        if labels is not None:
            chunk.hits = label_hits(chunk.classes, labels[rows])
        yield begin, chunk


def run_ensemble(input_files, output_file=None, weights=None, top_k=20,
                 labels_file=None, fit=False, num_classes=3862,
                 chunk_size=20000):
    """Averages prediction files; optionally evaluates and fits weights.

    Args:
      input_files: prediction file paths.
      output_file: Kaggle file to write (atomically); None to skip.
      weights: per-file weights (None: equal); normalised to sum 1.
      top_k: pairs kept per video (and k of GAP@k).
      labels_file: optional ``VideoId,Labels`` file.
      fit: fit the weights on ``labels_file`` (requires it).
      num_classes: class ids must be below it.
      chunk_size: videos per vectorised step.

    Returns:
      dict with ``input_files``, ``weights``, ``num_videos``, ``top_k``,
      ``output_file`` and, with labels, ``input_gaps``, ``ensemble_gap``,
      ``unpredicted_labelled_videos`` (labelled videos without predictions,
      ignored), plus ``equal_weights_gap`` and ``fit_evaluations`` when
      fitting.
    """
    if not input_files:
        raise UserInputError("--input_files is empty; expected one or more "
                             "comma-separated prediction files")
    if fit and not labels_file:
        raise UserInputError("--fit_weights needs --labels_file (the "
                             "ground truth to fit the weights on)")
    if top_k < 1 or chunk_size < 1:
        raise UserInputError(f"--top_k={top_k} and --chunk_size={chunk_size}"
                             " must be >= 1")
    num_models = len(input_files)
    if num_models > 64:
        raise UserInputError(f"{num_models} input files: at most 64 are "
                             "supported")
    weights = normalise_weights(weights, num_models)
    for path in list(input_files) + ([labels_file] if labels_file else []):
        if not files.is_file(path):
            raise FileNotFoundError(f"input file not found: {path}")
    if output_file and not tf.io.gfile.isdir(files.parent_dir(output_file)):
        raise FileNotFoundError(f"cannot write --output_file={output_file}: "
                                f"directory {files.parent_dir(output_file)} "
                                "does not exist")
    predictions = load_predictions(input_files, num_classes)
    perms = align(predictions)
    labels = None
    result = {"input_files": list(input_files), "top_k": top_k,
              "num_videos": int(predictions[0].ids.size),
              "output_file": output_file}
    if labels_file:
        labels, extra = load_aligned_labels(labels_file, predictions[0].ids,
                                            num_classes)
        result["unpredicted_labelled_videos"] = int(extra)
        positives = int((labels >= 0).sum())

    chunks = _chunks(predictions, perms, chunk_size, labels)
    if fit:
        chunks = list(chunks)
        evaluate = lambda w: pooled_gap(
            [gap_triplets(c, w, top_k) for _, c in chunks], positives)
        weights, _, equal, count = fit_weights(evaluate, num_models)
        result.update(equal_weights_gap=equal, fit_evaluations=count)
    result["weights"] = weights.tolist()

    one_hot = np.eye(num_models)
    input_parts = [[] for _ in range(num_models)]
    ensemble_parts = []
    writer = (submission.VideoPredictionWriter(output_file)
              if output_file else None)
    try:
        for begin, chunk in chunks:
            if writer is not None:
                ids = predictions[0].ids[begin:begin + chunk.classes.shape[0]]
                writer.write_batch(ids, *top_k_rows(chunk, weights, top_k))
            if labels is not None:
                ensemble_parts.append(gap_triplets(chunk, weights, top_k))
                for m in range(num_models):
                    input_parts[m].append(gap_triplets(chunk, one_hot[m],
                                                       top_k))
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    if labels is not None:
        result["input_gaps"] = [pooled_gap(p, positives) for p in input_parts]
        result["ensemble_gap"] = pooled_gap(ensemble_parts, positives)
    return result


def format_report(result):
    """The table printed by the CLI: file, weight, GAP (with labels)."""
    gaps = result.get("input_gaps")
    k = result["top_k"]
    name_width = max([len(p) for p in result["input_files"]] + [10])
    header = f"{'model file':<{name_width}}  {'weight':>8}"
    header += f"  {'GAP@' + str(k):>9}" if gaps else ""
    lines = [header, "-" * len(header)]
    for i, path in enumerate(result["input_files"]):
        line = f"{path:<{name_width}}  {result['weights'][i]:8.4f}"
        lines.append(line + (f"  {gaps[i]:9.5f}" if gaps else ""))
    if gaps:
        lines.append(f"{'ensemble':<{name_width}}  {'':8}  "
                     f"{result['ensemble_gap']:9.5f}")
        if "equal_weights_gap" in result:
            lines.append(f"{'(equal weights)':<{name_width}}  {'':8}  "
                         f"{result['equal_weights_gap']:9.5f}")
    lines.append(f"videos: {result['num_videos']}")
    if result.get("unpredicted_labelled_videos"):
        lines.append(f"(ignored {result['unpredicted_labelled_videos']} "
                     "labelled videos that have no predictions)")
    if result.get("output_file"):
        lines.append(f"wrote {result['output_file']}")
    return "\n".join(lines)


def write_weights_json(path, result):
    """Saves fitted weights (and the GAPs) as JSON, atomically."""
    record = {
        "input_files": result["input_files"],
        "weights": result["weights"],
        "weights_flag": ",".join(f"{w:.6g}" for w in result["weights"]),
        "ensemble_gap": result.get("ensemble_gap"),
        "equal_weights_gap": result.get("equal_weights_gap"),
        "input_gaps": result.get("input_gaps"),
        "top_k": result["top_k"],
    }
    write_json_atomic(path, record)


def main(argv):
    """CLI body; callable in-process after ``flags.FLAGS(argv)``.

    Returns:
      the :func:`run_ensemble` result dict.
    """
    if len(argv) > 1:
        raise UserInputError(f"unexpected arguments {argv[1:]}; pass the "
                             "files with --input_files=a.csv,b.csv")
    if not FLAGS.output_file and not FLAGS.labels_file:
        raise UserInputError("--output_file is required (it may be left out "
                             "only to evaluate with --labels_file)")
    if FLAGS.fit_weights and FLAGS.weights:
        raise UserInputError("--weights and --fit_weights exclude each "
                             "other: fitting starts from equal weights")
    if FLAGS.weights_output and not FLAGS.fit_weights:
        raise UserInputError("--weights_output needs --fit_weights")
    weights = parse_weights(FLAGS.weights, max(len(FLAGS.input_files), 1))
    result = run_ensemble(
        FLAGS.input_files, output_file=FLAGS.output_file or None,
        weights=weights, top_k=FLAGS.top_k,
        labels_file=FLAGS.labels_file or None, fit=FLAGS.fit_weights,
        num_classes=FLAGS.num_classes, chunk_size=FLAGS.chunk_size)
    print(format_report(result), flush=True)
    if FLAGS.fit_weights:
        print("fitted weights: --weights=" + ",".join(
            f"{w:.6g}" for w in result["weights"]))
        if FLAGS.weights_output:
            write_weights_json(FLAGS.weights_output, result)
            print(f"wrote {FLAGS.weights_output}")
    return result


def run():
    """Console-script entry point (``yt8m-ensemble``)."""
    cli.run(main)


if __name__ == "__main__":
    run()
