"""Evaluation metrics, exact and vectorised: YouTube-8M classification
(GAP@k, mAP, Hit@1, PERR) and text-video retrieval (R@K, median rank, in
blocks of the similarity matrix; see ``retrieval_ranks``).

The numbers follow the official ``google/youtube-8m`` evaluation
(``eval_util.py``, ``average_precision_calculator.py``,
``mean_average_precision_calculator.py`` and ``segment_eval_inference.py``),
but are computed with sorts and cumulative sums instead of Python heaps.

Metrics (N videos, V classes, ``y[n, c]`` in {0, 1}, ``p[n, c]`` scores):

* Hit@1 = (1/N) sum_n y[n, argmax_c p[n, c]].
* PERR: for a video with ``m_n > 0`` labels take its top-``m_n`` predictions;
  PERR_n = (1/m_n) * #{c in top-m_n : y[n, c] = 1 and p[n, c] > 0}.
  A video with no labels contributes 0 (as in the original) and the mean is
  over *all* N videos.
* GAP@k (YouTube-8M, Abu-El-Haija et al. 2016, Sec. 4): keep the top-k
  triplets ``(class, score, label)`` of each video, pool the N*k triplets and
  sort them by score, descending. With P the total number of ground-truth
  positives of all videos (also those outside the top k)::

      GAP = (1/P) * sum_i y_i * precision@i,
      precision@i = (sum_{j<=i} y_j) / i

  GAP is 0 when P == 0.
* mAP: the same average precision per class c, over the pooled top-k triplets
  of class c, normalised by P_c = number of videos labelled c (all of them);
  mAP is the mean over classes with P_c > 0 (0 when there is none).

Tie rule (the same everywhere: TF and numpy top-k, GAP, mAP, sparse GAP):

* Within a video the top-k are ordered by descending score, equal scores by
  lower class index first (this is also ``tf.math.top_k``'s rule, and makes
  Hit@1 equal to ``np.argmax``).
* Pooled triplets are sorted by a *stable* sort on descending score: equal
  scores keep their arrival order, i.e. video order (order of ``update``
  calls, then row order), then the within-video top-k order above. For mAP
  the same ranked order restricted to each class is used.
* Scores are compared in float32: every input is cast to float32 first
  (float16/bfloat16 exactly; float64 rounded), and the accumulator stores
  float32 scores. NaN predictions are not supported.

The original breaks ties arbitrarily (``np.argpartition``, and a seeded
shuffle before sorting in the AP calculator) and accumulates some sums in
float32 when labels are float32; without ties and with float64 sums the
numbers agree with it to ~1e-16. Labels are binarised (> 0).

Main entry points:

* :func:`topk_summary` (TensorFlow, per batch; ``tf.function`` and
  ``tf.distribute`` friendly) and :func:`topk_summary_numpy` (same output).
* :class:`StreamingYT8MMetrics` accumulates summaries, ``result()`` gives
  ``gap``, ``map``, ``hit_at_one``, ``perr``, ``num_videos``.
* Full-matrix helpers: :func:`evaluate_predictions`, :func:`hit_at_one`,
  :func:`precision_at_equal_recall_rate`, :func:`global_average_precision`,
  :func:`mean_average_precision`.
* Sparse helpers: :func:`gap_from_triplets`,
  :func:`global_average_precision_sparse`.
* Segment level (2019 challenge): :func:`segment_mean_average_precision`.
"""

import itertools

import numpy as np
import tensorflow as tf

SUMMARY_KEYS = ("scores", "classes", "hits", "num_labels", "hit_at_one",
                "perr", "class_positives")
RESULT_KEYS = ("gap", "map", "hit_at_one", "perr", "num_videos")

# Rows per chunk in the full-matrix helpers (bounds the [B, V] temporaries).
_EVAL_CHUNK_ROWS = 4096


# --------------------------------------------------------------------------
# TensorFlow per-batch summary.
# --------------------------------------------------------------------------
def topk_summary(predictions, labels, top_k=20, mask=None):
    """Per-batch top-k summary of predictions, in TensorFlow.

    Works eagerly, inside ``tf.function`` and per replica under
    ``tf.distribute`` (no Python-side data dependence). The top-k rule is
    ``tf.math.top_k``'s: descending score, ties by lower class index.

    Args:
      predictions: float tensor [B, V] (float16, bfloat16, float32; float64 is
        rounded to float32).
      labels: multi-hot tensor [B, V], any numeric or bool dtype; entries > 0
        are positives.
      top_k: number of predictions kept per video; ``k = min(top_k, V)``.
      mask: optional bool tensor [B]; rows with False are padding. It only
        changes ``class_positives`` (masked rows are not counted) and is
        passed through as the "mask" key for ``StreamingYT8MMetrics.update``.

    Returns:
      dict of tensors:
        "scores" float32 [B, k], descending; "classes" int32 [B, k];
        "hits" bool [B, k] (label at those classes);
        "num_labels" int32 [B]; "hit_at_one" float32 [B] (0/1);
        "perr" float32 [B] (per-video PERR, exact also when num_labels > k,
        0 for videos without labels);
        "class_positives" int64 [V] (column sums of the labels);
        "mask" bool [B] only when ``mask`` was given.
    """
    if top_k <= 0:
        raise ValueError(f"top_k must be positive, got {top_k}")
    preds = tf.cast(tf.convert_to_tensor(predictions), tf.float32)
    is_label = _tf_positive(labels)
    num_labels, class_positives = _tf_label_counts(is_label, mask)
    k = _tf_num_kept(preds, top_k)
    # Enough columns for PERR of the video with the most labels (dynamic).
    k_all = tf.maximum(k, tf.reduce_max(num_labels))
    values, indices = tf.math.top_k(preds, k=k_all, sorted=True)
    hits_all = tf.gather(is_label, indices, batch_dims=1)
    summary = {
        "scores": _tf_first_columns(values, k),
        "classes": _tf_first_columns(indices, k),
        "hits": _tf_first_columns(hits_all, k),
        "num_labels": num_labels,
        "hit_at_one": tf.cast(hits_all[:, 0], tf.float32),
        "perr": _tf_perr(values, hits_all, num_labels),
        "class_positives": class_positives,
    }
    if mask is not None:
        summary["mask"] = tf.cast(mask, tf.bool)
    return summary


def _tf_positive(labels):
    """Bool [B, V]: labels > 0 for any numeric/bool dtype."""
    labels = tf.convert_to_tensor(labels)
    if labels.dtype == tf.bool:
        return labels
    return tf.greater(labels, tf.zeros([], labels.dtype))


def _tf_num_kept(preds, top_k):
    """k = min(top_k, V), a Python int when V is static."""
    num_classes = preds.shape[-1]
    if num_classes is not None:
        return min(int(top_k), int(num_classes))
    return tf.minimum(tf.constant(top_k, tf.int32), tf.shape(preds)[-1])


def _tf_first_columns(x, k):
    """x[:, :k], with the static column count set when k is a Python int."""
    out = x[:, :k]
    if isinstance(k, int):
        out = tf.ensure_shape(out, [x.shape[0], k])
    return out


def _tf_perr(values, hits_all, num_labels):
    """Per-video PERR from the top max(k, max num_labels) columns."""
    positions = tf.range(tf.shape(values)[1])[tf.newaxis, :]
    in_top_n = positions < num_labels[:, tf.newaxis]
    correct = in_top_n & hits_all & (values > 0.0)
    num_correct = tf.reduce_sum(tf.cast(correct, tf.int32), axis=1)
    return tf.math.divide_no_nan(tf.cast(num_correct, tf.float32),
                                 tf.cast(num_labels, tf.float32))


def _tf_label_counts(is_label, mask):
    """Labels per row (int32 [B]) and per column over unmasked rows (int64
    [V]), counted from the positions of the positives: one pass over the
    [B, V] labels instead of two full-size casts and reductions (on CPU
    those took almost half as long as the top-k itself)."""
    positions = tf.where(is_label)  # [P, 2] (row, class), int64
    rows, cols = positions[:, 0], positions[:, 1]
    dynamic = tf.shape(is_label, out_type=tf.int64)
    static = (is_label.shape.as_list() if is_label.shape.rank == 2
              else [None, None])
    num_rows, num_cols = (dynamic[i] if static[i] is None else static[i]
                          for i in (0, 1))
    num_labels = tf.math.unsorted_segment_sum(
        tf.ones_like(rows, tf.int32), rows, num_rows)
    counted = tf.ones_like(rows)
    if mask is not None:
        keep = tf.cast(tf.convert_to_tensor(mask), tf.int64)  # [B]
        counted = tf.gather(keep, rows)
    class_positives = tf.math.unsorted_segment_sum(counted, cols, num_cols)
    return num_labels, class_positives


# --------------------------------------------------------------------------
# numpy per-batch summary (same contract as topk_summary).
# --------------------------------------------------------------------------
def topk_summary_numpy(predictions, labels, top_k=20, mask=None):
    """numpy twin of :func:`topk_summary`, same keys, dtypes and tie rule.

    Args:
      predictions: array-like [B, V] of floats (cast to float32; no NaN).
      labels: array-like [B, V] multi-hot, entries > 0 are positives.
      top_k: predictions kept per video, ``k = min(top_k, V)``.
      mask: optional bool [B]; see :func:`topk_summary`.

    Returns:
      dict of numpy arrays, see :func:`topk_summary`.
    """
    if top_k <= 0:
        raise ValueError(f"top_k must be positive, got {top_k}")
    preds = np.asarray(predictions, dtype=np.float32)
    is_label = np.asarray(labels) > 0
    if preds.ndim != 2 or preds.shape != is_label.shape:
        raise ValueError(f"predictions {preds.shape} and labels "
                         f"{is_label.shape} must both be [B, V]")
    num_labels = is_label.sum(axis=1, dtype=np.int32)
    k = min(int(top_k), preds.shape[1])
    k_all = max(k, int(num_labels.max(initial=0)))
    indices = topk_indices(preds, k_all)
    values = np.take_along_axis(preds, indices, axis=1)
    hits_all = np.take_along_axis(is_label, indices, axis=1)
    summary = {
        "scores": values[:, :k],
        "classes": indices[:, :k].astype(np.int32),
        "hits": hits_all[:, :k],
        "num_labels": num_labels,
        "hit_at_one": hits_all[:, 0].astype(np.float32),
        "perr": _np_perr(values, hits_all, num_labels),
        "class_positives": _np_class_positives(is_label, mask),
    }
    if mask is not None:
        summary["mask"] = np.asarray(mask, dtype=bool)
    return summary


def topk_indices(x, k):
    """Column indices of the k largest entries of each row, ranked.

    Order: descending value, ties by lower column index (``tf.math.top_k``'s
    rule). Uses ``np.partition`` (O(V) per row) then sorts only k columns.

    Args:
      x: float array [B, V] without NaN.
      k: 0 <= k <= V.

    Returns:
      int64 array [B, k].
    """
    num_rows, num_cols = x.shape
    if k >= num_cols:
        return np.argsort(-x, axis=1, kind="stable")
    if k == 0:
        return np.zeros((num_rows, 0), np.int64)
    kth = np.partition(x, num_cols - k, axis=1)[:, num_cols - k, None]
    selected = _select_topk_mask(x, kth, k)
    if selected.sum() != num_rows * k:
        raise ValueError("predictions contain NaN")
    candidates = np.nonzero(selected)[1].reshape(num_rows, k)  # ascending
    cand_values = np.take_along_axis(x, candidates, axis=1)
    order = np.argsort(-cand_values, axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1)


def _select_topk_mask(x, kth, k):
    """Bool [B, V]: entries > kth plus the lowest-index ties to reach k."""
    above = x > kth
    tied = x == kth
    need = k - above.sum(axis=1)
    rows = np.nonzero(tied.sum(axis=1) > need)[0]  # more ties than room
    if rows.size:
        rank_in_ties = np.cumsum(tied[rows], axis=1)
        tied[rows] &= rank_in_ties <= need[rows, None]
    return above | tied


def _np_perr(values, hits_all, num_labels):
    """float32 [B] per-video PERR (float32 division, as in TF)."""
    positions = np.arange(values.shape[1])[None, :]
    correct = (positions < num_labels[:, None]) & hits_all & (values > 0)
    num_correct = correct.sum(axis=1).astype(np.float32)
    denom = num_labels.astype(np.float32)
    out = np.zeros_like(num_correct)
    np.divide(num_correct, denom, out=out, where=num_labels > 0)
    return out


def _np_class_positives(is_label, mask):
    """int64 [V] column sums of the labels over unmasked rows."""
    if mask is not None:
        is_label = is_label[np.asarray(mask, dtype=bool)]
    return is_label.sum(axis=0, dtype=np.int64)


# --------------------------------------------------------------------------
# Average precision kernels (shared by GAP, mAP, sparse GAP, segment mAP).
# --------------------------------------------------------------------------
def ranked_order(scores):
    """Indices sorting ``scores`` descending; ties keep arrival order.

    Equals ``np.argsort(-scores, kind="stable")`` for float32 scores without
    NaN (-0.0 ties with 0.0), but sorts one unique integer key per item
    (the score's order-preserving bits, then the position) with numpy's
    fast unstable sort: the stable float sort dominated ``result()`` on
    millions of pooled triplets.

    Args:
      scores: 1-D array-like of scores (cast to float32).

    Returns:
      int64 array of indices.
    """
    scores = np.asarray(scores, dtype=np.float32) + np.float32(0.0)
    if scores.ndim != 1:
        raise ValueError(f"ranked_order needs 1-D scores, got shape "
                         f"{scores.shape}")
    bits = scores.view(np.uint32)  # -0.0 became +0.0 above
    negative = (bits >> np.uint32(31)).astype(bool)
    ascending = np.where(negative, ~bits, bits | np.uint32(1 << 31))
    return _stable_argsort_uint32(~ascending)


def _stable_argsort_uint32(keys):
    """Stable ascending argsort of a 1-D uint32 array (int64 indices)."""
    if keys.size >= 2 ** 32:
        return np.argsort(keys, kind="stable")
    packed = keys.astype(np.uint64) << np.uint64(32)
    packed |= np.arange(keys.size, dtype=np.uint64)  # unique: ties by index
    packed.sort()
    return (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)


def grouped_average_precision(groups, hits, positives):
    """Average precision of several ranked lists laid end to end.

    For each group g (a contiguous run in ``groups``, in rank order):
    ``AP_g = (1/P_g) * sum_i y_i * precision@i`` with ranks counted from the
    start of the group (non-interpolated AP, Abu-El-Haija et al. 2016,
    Sec. 4); AP_g = 0 when P_g == 0. Only the hits are visited (precision
    is needed at hits only), so the cost is O(M) comparisons plus
    O(hits * log) searches.

    Args:
      groups: int array [M], non-decreasing group ids in [0, G).
      hits: bool array [M], relevance of each ranked item.
      positives: array [G] of totals P_g (may exceed the hits present).

    Returns:
      float64 array [G].
    """
    groups = np.asarray(groups)
    hits = np.asarray(hits, dtype=bool)
    positives = np.asarray(positives, dtype=np.float64)
    if hits.size == 0:
        return np.zeros(positives.shape, np.float64)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    at = np.flatnonzero(hits)  # ranked positions of the hits
    first = starts[np.searchsorted(starts, at, side="right") - 1]
    hits_before = np.searchsorted(at, first)  # hits ahead of the group
    found = np.arange(1, at.size + 1) - hits_before  # hits so far in group
    precision = found / (at - first + 1)
    sums = np.bincount(groups[at], weights=precision,
                       minlength=positives.size)
    out = np.zeros(positives.shape, np.float64)
    np.divide(sums, positives, out=out, where=positives > 0)
    return out


def gap_from_triplets(scores, hits, total_positives, classes=None):
    """GAP of already pooled triplets (stable descending sort, then AP).

    Args:
      scores: float array [M] in arrival order (cast to float32).
      hits: bool array [M], whether each triplet's class is a true label.
      total_positives: P, number of ground-truth positives of all videos.
      classes: optional int array [M]; triplets with class < 0 are padding
        and ignored.

    Returns:
      float, GAP = (1/P) sum_i y_i precision@i (0 when P == 0).
    """
    scores = np.asarray(scores, dtype=np.float32).ravel()
    hits = np.asarray(hits, dtype=bool).ravel()
    if classes is not None:
        valid = np.asarray(classes).ravel() >= 0
        scores, hits = scores[valid], hits[valid]
    return _ranked_gap(hits[ranked_order(scores)], total_positives)


def _ranked_gap(ranked_hits, total_positives):
    """AP of one ranked list of hits with P = total_positives."""
    groups = np.zeros(ranked_hits.shape, np.int64)
    return float(grouped_average_precision(groups, ranked_hits,
                                           [total_positives])[0])


def per_class_average_precision(scores, classes, hits, class_positives,
                                order=None):
    """AP of every class over pooled triplets (same ranking as GAP).

    Args:
      scores: float32 [M]; classes: int [M] in [0, V); hits: bool [M], all in
        arrival order.
      class_positives: [V] number of videos labelled with each class.
      order: optional precomputed ``ranked_order(scores)``.

    Returns:
      float64 [V]; 0 for classes without positives.
    """
    if order is None:
        order = ranked_order(scores)
    # Classes are in [0, V): a stable sort by class keeps the rank order.
    by_class = order[_stable_argsort_uint32(
        np.asarray(classes)[order].astype(np.uint32))]
    return grouped_average_precision(classes[by_class], hits[by_class],
                                      class_positives)


# --------------------------------------------------------------------------
# Streaming accumulator.
# --------------------------------------------------------------------------
class _GrowingArray:
    """Append-only array of fixed row shape; capacity doubles when full."""

    def __init__(self, row_shape, dtype, capacity=1024):
        self._data = np.empty((capacity,) + tuple(row_shape), dtype)
        self._size = 0

    def append(self, rows):
        """Copies ``rows`` (shape [n] + row_shape) to the end."""
        end = self._size + len(rows)
        if end > len(self._data):
            grown = np.empty((max(end, 2 * len(self._data)),)
                             + self._data.shape[1:], self._data.dtype)
            grown[:self._size] = self._data[:self._size]
            self._data = grown
        self._data[self._size:end] = rows
        self._size = end

    def view(self):
        """The filled part, without copying."""
        return self._data[:self._size]


class StreamingYT8MMetrics:
    """Accumulates top-k summaries and computes GAP, mAP, Hit@1 and PERR.

    Memory is O(num_videos * k): per triplet a float32 score, an int16 (or
    int32 when V > 32767) class and a bool hit, plus a float64 PERR per video
    and an int64 [V] positive count. ``result()`` is a few sorts and cumsums.
    Results do not depend on how the videos were split into batches.

    Args:
      num_classes: V.
      top_k: predictions per video kept for GAP/mAP (k = min(top_k, V)).
    """

    def __init__(self, num_classes, top_k=20):
        if num_classes <= 0 or top_k <= 0:
            raise ValueError("num_classes and top_k must be positive")
        self.num_classes = int(num_classes)
        self.top_k = int(top_k)
        self._k = min(self.top_k, self.num_classes)
        self._class_dtype = np.int16 if num_classes <= 32767 else np.int32
        self.reset()

    def reset(self):
        """Forgets everything accumulated."""
        self._scores = _GrowingArray([self._k], np.float32)
        self._classes = _GrowingArray([self._k], self._class_dtype)
        self._hits = _GrowingArray([self._k], bool)
        self._perr = _GrowingArray([], np.float64)
        self._hit_count = 0
        self._class_positives = np.zeros(self.num_classes, np.int64)

    @property
    def num_videos(self):
        """Number of (unmasked) videos accumulated."""
        return len(self._perr.view())

    def update(self, summary):
        """Adds one batch summary (output of ``topk_summary[_numpy]``).

        Args:
          summary: dict with the keys of :func:`topk_summary` (numpy arrays
            or eager tensors), and optionally "mask" bool [B]: rows with
            False are ignored. "class_positives" must already exclude masked
            rows (``topk_summary(..., mask=...)`` does this); this is checked
            against "num_labels" and a ValueError is raised on mismatch.
            Columns beyond k are dropped.
        """
        arrays = {key: np.asarray(summary[key]) for key in SUMMARY_KEYS}
        if "mask" in summary:
            keep = np.asarray(summary["mask"], dtype=bool)
            arrays.update({key: arrays[key][keep] for key in SUMMARY_KEYS
                           if key != "class_positives"})
        self._check_summary(arrays)
        k = self._k
        self._scores.append(arrays["scores"][:, :k])
        self._classes.append(arrays["classes"][:, :k])
        self._hits.append(arrays["hits"][:, :k])
        self._perr.append(_exact_perr(arrays["perr"], arrays["num_labels"]))
        self._hit_count += int(np.count_nonzero(arrays["hit_at_one"]))
        self._class_positives += arrays["class_positives"]

    def state(self):
        """Everything accumulated, as a dict of numpy arrays (e.g. to send
        one worker's share of an evaluation to the chief)."""
        return {"scores": self._scores.view(),
                "classes": self._classes.view(),
                "hits": self._hits.view(), "perr": self._perr.view(),
                "hit_count": np.int64(self._hit_count),
                "class_positives": self._class_positives}

    def merge(self, state):
        """Appends the videos of another accumulator's :meth:`state` (same
        num_classes and top_k) after those already here.

        Merging the shares of consecutive parts of a split in order gives
        exactly the state (and result) of one accumulator over all of it.
        """
        if np.shape(state["class_positives"]) != (self.num_classes,) or (
                np.shape(state["scores"])[1:] != (self._k,)):
            raise ValueError(
                f"cannot merge a state of {np.shape(state['class_positives'])}"
                f" classes x {np.shape(state['scores'])[1:]} predictions "
                f"into {self.num_classes} x {self._k}")
        self._scores.append(state["scores"])
        self._classes.append(state["classes"])
        self._hits.append(state["hits"])
        self._perr.append(state["perr"])
        self._hit_count += int(state["hit_count"])
        self._class_positives += state["class_positives"]

    def _check_summary(self, arrays):
        """Validates shapes and the positives bookkeeping of a summary."""
        scores, cls = arrays["scores"], arrays["classes"]
        if scores.ndim != 2 or scores.shape[1] < self._k:
            raise ValueError(f"summary scores {scores.shape} need >= "
                             f"{self._k} columns")
        if arrays["class_positives"].shape != (self.num_classes,):
            raise ValueError("class_positives must have shape [num_classes]")
        if cls.size and (cls.min() < 0 or cls.max() >= self.num_classes):
            raise ValueError("summary classes out of range")
        if int(arrays["class_positives"].sum()) != int(
                arrays["num_labels"].sum()):
            raise ValueError("class_positives disagree with num_labels of the "
                             "unmasked rows; pass mask= to topk_summary")

    def result(self):
        """Computes the metrics over everything accumulated.

        Returns:
          dict: "gap", "map", "hit_at_one", "perr" (Python floats; all 0.0
          when no video was seen) and "num_videos" (int).
        """
        n = self.num_videos
        if n == 0:
            return {"gap": 0.0, "map": 0.0, "hit_at_one": 0.0, "perr": 0.0,
                    "num_videos": 0}
        scores = self._scores.view().ravel()
        classes = self._classes.view().ravel()
        hits = self._hits.view().ravel()
        order = ranked_order(scores)
        aps = per_class_average_precision(scores, classes, hits,
                                          self._class_positives, order)
        has_positives = self._class_positives > 0
        return {
            "gap": _ranked_gap(hits[order], int(self._class_positives.sum())),
            "map": float(aps[has_positives].mean()) if has_positives.any()
                   else 0.0,
            "hit_at_one": self._hit_count / n,
            "perr": float(self._perr.view().sum() / n),
            "num_videos": n,
        }


def _exact_perr(perr, num_labels):
    """float64 PERR m/n recovered exactly from its float32 rounding."""
    num_labels = np.asarray(num_labels, dtype=np.float64)
    num_correct = np.rint(np.asarray(perr, np.float64) * num_labels)
    out = np.zeros(num_labels.shape, np.float64)
    np.divide(num_correct, num_labels, out=out, where=num_labels > 0)
    return out


# --------------------------------------------------------------------------
# Full-matrix convenience functions (same code path as streaming).
# --------------------------------------------------------------------------
def evaluate_predictions(predictions, labels, top_k=20):
    """All video-level metrics of a full prediction matrix.

    Args:
      predictions: array-like [N, V] scores.
      labels: array-like [N, V] multi-hot (entries > 0 are positives).
      top_k: predictions per video used by GAP and mAP.

    Returns:
      dict with "gap", "map", "hit_at_one", "perr", "num_videos".
    """
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if predictions.ndim != 2:
        raise ValueError("predictions must be [N, V]")
    metrics = StreamingYT8MMetrics(predictions.shape[1], top_k)
    for start in range(0, len(predictions), _EVAL_CHUNK_ROWS):
        rows = slice(start, start + _EVAL_CHUNK_ROWS)
        metrics.update(topk_summary_numpy(predictions[rows], labels[rows],
                                          top_k))
    return metrics.result()


def hit_at_one(predictions, labels):
    """Hit@1: mean over videos of label[argmax(prediction)]."""
    return evaluate_predictions(predictions, labels, top_k=1)["hit_at_one"]


def precision_at_equal_recall_rate(predictions, labels):
    """PERR: mean over all videos of the precision of their top-m_n."""
    return evaluate_predictions(predictions, labels, top_k=1)["perr"]


def global_average_precision(predictions, labels, top_k=20):
    """GAP@top_k (YouTube-8M, Abu-El-Haija et al. 2016, Sec. 4)."""
    return evaluate_predictions(predictions, labels, top_k)["gap"]


def mean_average_precision(predictions, labels, top_k=20):
    """mAP over classes with positives, from the pooled top-k predictions."""
    return evaluate_predictions(predictions, labels, top_k)["map"]


# --------------------------------------------------------------------------
# Sparse GAP (e.g. top-k predictions read back from submission CSV files).
# --------------------------------------------------------------------------
def global_average_precision_sparse(video_scores, video_classes,
                                    labels_per_video, top_k=20):
    """GAP@top_k from sparse per-video predictions.

    Each video's entries are ranked by descending score, ties by lower class
    index, and the first ``top_k`` valid ones are kept; pooling and the tie
    rule are those of :class:`StreamingYT8MMetrics`, so for the same top-k
    predictions the result is identical.

    Args:
      video_scores: [N, K] array, or a list of N sequences (ragged allowed)
        of scores.
      video_classes: same layout, int class ids. Entries with class < 0 are
        padding and ignored (whatever their score). Class ids within a video
        are assumed distinct.
      labels_per_video: either a list of N iterables of true class ids (e.g.
        sets), or a multi-hot [N, V] array (entries > 0 are positives).
      top_k: number of predictions kept per video.

    Returns:
      float GAP; P is the number of distinct (video, label) pairs, 0.0 when
      there is none.
    """
    scores = _pad_rows(video_scores, np.float32, -np.inf)
    classes = _pad_rows(video_classes, np.int64, -1)
    if scores.shape != classes.shape:
        raise ValueError("video_scores and video_classes differ in shape")
    scores, classes = _rank_sparse_rows(scores, classes, top_k)
    label_keys, width = _label_keys(labels_per_video, len(scores), classes)
    valid = classes >= 0
    rows = np.nonzero(valid)[0]
    pred_keys = rows * width + classes[valid]
    hits = np.isin(pred_keys, label_keys)
    return gap_from_triplets(scores[valid], hits, label_keys.size)


def _pad_rows(rows, dtype, fill):
    """[N, K] array from an array or a ragged list, padded with ``fill``."""
    if isinstance(rows, np.ndarray):
        return rows.astype(dtype).reshape(len(rows), -1)
    rows = [np.asarray(r, dtype=dtype).ravel() for r in rows]
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), fill, dtype)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def _rank_sparse_rows(scores, classes, top_k):
    """Sorts each row (valid first, score desc, class asc) and keeps top_k."""
    invalid = classes < 0
    order = np.lexsort((classes, -scores, invalid), axis=-1)
    scores = np.take_along_axis(scores, order, axis=1)[:, :top_k]
    classes = np.take_along_axis(classes, order, axis=1)[:, :top_k]
    return scores, classes


def _label_keys(labels_per_video, num_videos, classes):
    """Unique int64 keys video * width + class of the true labels."""
    if isinstance(labels_per_video, np.ndarray) and labels_per_video.ndim == 2:
        if len(labels_per_video) != num_videos:
            raise ValueError("labels_per_video has the wrong number of rows")
        rows, cols = np.nonzero(labels_per_video > 0)
    else:
        labels_per_video = [list(s) for s in labels_per_video]
        if len(labels_per_video) != num_videos:
            raise ValueError("labels_per_video has the wrong number of rows")
        counts = [len(s) for s in labels_per_video]
        cols = np.fromiter(itertools.chain.from_iterable(labels_per_video),
                           np.int64, sum(counts))
        rows = np.repeat(np.arange(num_videos), counts)
    width = int(max(cols.max(initial=-1), classes.max(initial=-1))) + 1
    return np.unique(rows * width + cols), width


# --------------------------------------------------------------------------
# Segment-level mAP (2019 challenge).
# --------------------------------------------------------------------------
def segment_mean_average_precision(class_ranked_segments, rated, top_n=None):
    """Segment mAP as in google/youtube-8m ``segment_eval_inference.py``.

    For each class c in ``class_ranked_segments``: its ranked list is first
    truncated to ``top_n`` (when given; the original truncates *before*
    dropping unrated segments), then only segments rated for c are kept, in
    ranked order (the original scores them n/n, (n-1)/n, ..., 1/n, i.e. rank
    order). AP_c = (1/P_c) * sum_i y_i precision@i, with y_i = rated score
    > 0 and P_c the number of rated (segment, c) pairs with score > 0 (not
    capped by top_n). mAP is the mean of AP_c over the classes of
    ``class_ranked_segments`` with P_c > 0 (0.0 when there is none).

    Args:
      class_ranked_segments: dict class_id -> sequence of segment ids, best
        first.
      rated: dict (segment_id, class_id) -> rating score (ground truth).
      top_n: optional int, per-class cap on the ranked list (None or 0: no
        cap).

    Returns:
      float mAP.
    """
    class_ids = sorted(class_ranked_segments)
    positives = np.zeros(len(class_ids), np.int64)
    index = {c: i for i, c in enumerate(class_ids)}
    for (_, class_id), score in rated.items():
        if score > 0 and class_id in index:
            positives[index[class_id]] += 1
    groups, ratings = [], []
    for i, class_id in enumerate(class_ids):
        ranked = list(class_ranked_segments[class_id])[:top_n or None]
        kept = [rated[(seg, class_id)] for seg in ranked
                if (seg, class_id) in rated]
        groups += [i] * len(kept)
        ratings += kept
    aps = grouped_average_precision(np.asarray(groups, np.int64),
                                    np.asarray(ratings, np.float64) > 0,
                                    positives)
    return float(aps[positives > 0].mean()) if (positives > 0).any() else 0.0


# --------------------------------------------------------------------------
# Text-video retrieval: ranks of the true candidate, R@K, median rank.
# --------------------------------------------------------------------------
# Scores are S = queries @ candidates^T (e.g. L2-normalised text embeddings
# x video embeddings). The rank of query i's true candidate p_i is
#
#   rank_i = 1 + #{j : s_ij > s_ip} + tie term,
#
# with tie term (``ties=``)
#   "pessimistic" (default): #{j != p_i : s_ij == s_ip}, every tie is ranked
#                 before the true candidate;
#   "optimistic":  0, every tie is ranked after it;
#   "index":       #{j < p_i : s_ij == s_ip}, ties ordered by candidate index
#                 (a stable sort of the row by descending score).
#
# The reference evaluation of the HowTo100M authors,
#   sx = np.sort(-S, 1); d = np.diag(-S)[:, None]
#   ind = np.where(sx - d == 0)[1]
#   R@k = mean(ind < k); MR = median(ind) + 1,
# equals these ranks when a row has no ties with its positive. A row whose
# positive ties with t other candidates yields t + 1 matches (every position
# from its optimistic to its pessimistic rank), so ``ind`` gets longer than
# the number of queries and R@k and MR weight that query t + 1 times.
#
# Why pessimistic by default: a degenerate model whose embeddings are all
# equal scores every pair the same. "optimistic" would give it rank 1 for
# every query (R@1 = 100 %), "index" ranks that only reflect the data order
# (query i with positive i gets rank i + 1). Counting ties against the model
# gives it rank C, the worst possible, so collapsed embeddings cannot look
# good, and the metric is a lower bound for every tie-breaking order.

RETRIEVAL_TIES = ("pessimistic", "optimistic", "index")
_RETRIEVAL_COUNT_FNS = {}


def retrieval_ranks(queries, candidates, positives=None, block_size=4096,
                    ties="pessimistic"):
    """1-based rank of each query's true candidate, computed block by block.

    The Q x C score matrix ``S = queries @ candidates^T`` is never
    materialised: queries are processed in chunks of at most ``block_size``
    rows, each against ``block_size`` candidates at a time, inside one
    ``tf.function`` per chunk (``tf.matmul`` then greater/equal counts per
    query), so memory is O(block_size^2 + (Q + C) * D) and the work runs on
    the GPU when TensorFlow has one.

    Exactness: every score s_ij is computed once. Queries are grouped by the
    candidate block that holds their true candidate, and that block is
    multiplied first; the positive score s_ip is gathered from *that* matmul
    output and compared with the other entries of the same output and of the
    other blocks. So the true candidate is never counted against itself and
    ties are decided on the very float values that are compared, with no
    separately computed dot product that could differ in the last bit.
    Scores are computed in float32 (float16 and bfloat16 inputs are cast
    exactly, integer inputs converted; float64 inputs are computed in
    float64). Which kernel the matmul uses can depend on the block shape,
    so for scores that are not exact in floating point a different
    ``block_size`` may move a score by one ulp and decide a near-tie
    differently; for exactly representable scores the ranks do not depend
    on the block size. A score that overflows to inf still counts as
    greater than the positive's; NaN scores of other candidates (inf - inf)
    are never counted. On Ampere and newer GPUs TensorFlow runs float32
    matmuls in TF32 unless
    ``tf.config.experimental.enable_tensor_float_32_execution(False)`` was
    called; do that for float32-exact scores.

    Args:
      queries: [Q, D] numpy array or tensor (e.g. text embeddings).
      candidates: [C, D] numpy array or tensor (e.g. video embeddings).
      positives: optional int array [Q], index in [0, C) of each query's true
        candidate (several queries may share one, e.g. several captions per
        video). Default ``arange(Q)``, which requires Q == C.
      block_size: rows of queries and of candidates per block (>= 1).
      ties: "pessimistic" (default), "optimistic" or "index"; see above.

    Returns:
      int64 numpy array [Q] of ranks in [1, C].

    Raises:
      ValueError: unknown ``ties``, bad ``block_size``, inputs that are not
        2-D, differ in D, are not real numbers or contain NaN/inf, a positive
        score that overflows to inf/NaN, or ``positives`` of the wrong shape,
        type or range.
    """
    if ties not in RETRIEVAL_TIES:
        raise ValueError(f"ties must be one of {RETRIEVAL_TIES}, got {ties!r}")
    if (isinstance(block_size, (bool, np.bool_))
            or not isinstance(block_size, (int, np.integer))
            or block_size < 1):
        raise ValueError(f"block_size must be a positive int, got "
                         f"{block_size!r}")
    block_size = int(block_size)
    queries = _retrieval_matrix(queries, "queries")
    candidates = _retrieval_matrix(candidates, "candidates")
    num_queries = int(queries.shape[0])
    num_candidates = int(candidates.shape[0])
    if queries.shape[1] != candidates.shape[1]:
        raise ValueError(f"queries [Q, D] = {list(queries.shape)} and "
                         f"candidates [C, D] = {list(candidates.shape)} must "
                         f"have the same embedding size D")
    positives = _retrieval_positives(positives, num_queries, num_candidates)
    if num_queries == 0:
        return np.zeros([0], np.int64)
    dtype = (tf.float64 if tf.float64 in (queries.dtype, candidates.dtype)
             else tf.float32)
    queries = tf.identity(tf.cast(queries, dtype))
    candidates = tf.identity(tf.cast(candidates, dtype))
    _check_finite(queries, "queries")
    _check_finite(candidates, "candidates")

    count_fn = _retrieval_count_fn(dtype)
    greater = np.zeros(num_queries, np.int64)
    equal = np.zeros(num_queries, np.int64)
    before = np.zeros(num_queries, np.int64)
    for query_ids, pos_block in _retrieval_chunks(positives, block_size):
        pos_local = positives[query_ids] - pos_block * block_size
        out = count_fn(queries, candidates, tf.constant(query_ids),
                       tf.constant(pos_block, tf.int64),
                       tf.constant(pos_local), tf.constant(block_size,
                                                           tf.int64))
        greater[query_ids] = out[0].numpy()
        equal[query_ids] = out[1].numpy()
        before[query_ids] = out[2].numpy()
        _check_positive_scores(out[3].numpy(), query_ids)
    ties_count = {"pessimistic": equal, "optimistic": 0, "index": before}[ties]
    return 1 + greater + ties_count


def _retrieval_matrix(x, name):
    """A 2-D real tensor (numpy arrays are converted), else ValueError."""
    if not tf.is_tensor(x):
        x = np.asarray(x)
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number)
                                     or x.dtype == bool):
            raise ValueError(f"{name} must be a real-valued [N, D] array, got "
                             f"dtype {x.dtype}")
        if x.dtype == bool:
            x = x.astype(np.float32)
    dtype = tf.as_dtype(x.dtype)
    if dtype.is_complex or not (dtype.is_floating or dtype.is_integer
                                or dtype == tf.bool):
        raise ValueError(f"{name} must be real-valued, got dtype {dtype.name}")
    x = tf.convert_to_tensor(x)
    if x.shape.rank != 2:
        raise ValueError(f"{name} must be a 2-D [N, D] matrix, got shape "
                         f"{list(x.shape)}")
    return x


def _check_finite(x, name):
    """ValueError naming the first row of ``x`` with NaN or inf."""
    finite = tf.reduce_all(tf.math.is_finite(x), axis=1)
    if not bool(tf.reduce_all(finite)):
        row = int(tf.argmin(tf.cast(finite, tf.int32)))
        raise ValueError(f"{name} contain NaN or inf (first in row {row}); "
                         f"ranks of non-finite scores are undefined")


def _check_positive_scores(pos_scores, query_ids):
    """ValueError when a positive score overflowed to inf or NaN."""
    bad = np.flatnonzero(~np.isfinite(pos_scores))
    if bad.size:
        raise ValueError(f"the score of query {query_ids[bad[0]]} with its "
                         f"positive is {pos_scores[bad[0]]} (overflow of the "
                         f"dot product); rescale the embeddings")


def _retrieval_positives(positives, num_queries, num_candidates):
    """Validated int64 [Q] numpy positives (default arange(Q) if Q == C)."""
    if positives is None:
        if num_queries != num_candidates:
            raise ValueError(f"positives are required when the number of "
                             f"queries ({num_queries}) differs from the "
                             f"number of candidates ({num_candidates})")
        return np.arange(num_queries, dtype=np.int64)
    positives = np.asarray(positives)
    if positives.shape != (num_queries,):
        raise ValueError(f"positives must have shape [Q] = [{num_queries}], "
                         f"got {list(positives.shape)}")
    if positives.size and not np.issubdtype(positives.dtype, np.integer):
        raise ValueError(f"positives must be integer candidate indices, got "
                         f"dtype {positives.dtype}")
    positives = positives.astype(np.int64)
    bad = np.nonzero((positives < 0) | (positives >= num_candidates))[0]
    if bad.size:
        raise ValueError(f"positives must lie in [0, C) = [0, "
                         f"{num_candidates}); query {bad[0]} has "
                         f"{positives[bad[0]]} ({bad.size} out of range)")
    return positives


def _retrieval_chunks(positives, block_size):
    """Yields (query indices int64 [n <= block_size], candidate block).

    Queries are grouped by the candidate block of their positive (stable, so
    with default positives chunk k is queries [k*bs, (k+1)*bs)), each group
    split into chunks of at most ``block_size`` queries.
    """
    order = np.argsort(positives // block_size, kind="stable")
    blocks = positives[order] // block_size
    starts = np.flatnonzero(np.r_[True, blocks[1:] != blocks[:-1]])
    ends = np.r_[starts[1:], len(order)]
    for start, end in zip(starts, ends):
        for lo in range(start, end, block_size):
            yield order[lo:min(lo + block_size, end)], int(blocks[start])


def _retrieval_count_fn(dtype):
    """The per-chunk counting tf.function for ``dtype`` (traced once)."""
    if dtype not in _RETRIEVAL_COUNT_FNS:
        _RETRIEVAL_COUNT_FNS[dtype] = tf.function(
            _retrieval_chunk_counts,
            input_signature=[
                tf.TensorSpec([None, None], dtype),     # queries [Q, D]
                tf.TensorSpec([None, None], dtype),     # candidates [C, D]
                tf.TensorSpec([None], tf.int64),        # query ids [n]
                tf.TensorSpec([], tf.int64),            # positive block
                tf.TensorSpec([None], tf.int64),        # positive in block [n]
                tf.TensorSpec([], tf.int64),            # block size
            ])
    return _RETRIEVAL_COUNT_FNS[dtype]


def _retrieval_chunk_counts(queries, candidates, query_ids, pos_block,
                            pos_local, block_size):
    """Greater / equal / equal-before-positive counts of one query chunk.

    All queries of the chunk have their positive in candidate block
    ``pos_block`` (at column ``pos_local`` of that block). That block is
    multiplied first and the positive scores are gathered from its output;
    then every other block is multiplied once (a sequential while loop, so
    one block of scores is alive at a time).

    Returns:
      int64 [n] counts of s_ij > s_ip, of s_ij == s_ip with j != p_i, of
      s_ij == s_ip with j < p_i; and the positive scores [n].
    """
    q = tf.gather(queries, query_ids)
    num_blocks = (tf.shape(candidates, out_type=tf.int64)[0]
                  + block_size - 1) // block_size

    def block_scores(block):
        start = block * block_size
        return tf.matmul(q, candidates[start:start + block_size],
                         transpose_b=True)

    def count(mask):
        return tf.cast(tf.reduce_sum(tf.cast(mask, tf.int32), axis=1),
                       tf.int64)

    scores = block_scores(pos_block)
    pos_scores = tf.gather(scores, pos_local, batch_dims=1)[:, tf.newaxis]
    is_equal = tf.equal(scores, pos_scores)
    columns = tf.range(tf.shape(scores, out_type=tf.int64)[1])
    greater = count(scores > pos_scores)
    equal = count(is_equal) - 1                       # minus the positive
    before = count(is_equal & (columns < pos_local[:, tf.newaxis]))

    def body(block, greater, equal, before):
        def other_block():
            block_s = block_scores(block)
            block_equal = count(tf.equal(block_s, pos_scores))
            block_before = tf.where(block < pos_block, block_equal,
                                    tf.zeros_like(block_equal))
            return (greater + count(block_s > pos_scores),
                    equal + block_equal, before + block_before)

        counts = tf.cond(tf.equal(block, pos_block),
                         lambda: (greater, equal, before), other_block)
        return (block + 1,) + tuple(counts)

    _, greater, equal, before = tf.while_loop(
        lambda block, *_: block < num_blocks, body,
        (tf.constant(0, tf.int64), greater, equal, before),
        parallel_iterations=1)
    return greater, equal, before, pos_scores[:, 0]


def retrieval_metrics(ranks, ks=(1, 5, 10)):
    """Recall@K and median/mean rank from 1-based ranks.

    Units: ``R@k`` is a PERCENTAGE in [0, 100] (the unit the HowTo100M,
    MIL-NCE and AVLnet papers report), i.e. 100 * fraction of queries with
    rank <= k. ``MedR`` is the median 1-based rank with ``np.median``
    semantics (so x.5 for an even number of queries), ``MeanR`` the mean
    1-based rank; both are in ranks (1 = best).

    Args:
      ranks: int array-like [Q] of 1-based ranks (e.g. from
        :func:`retrieval_ranks`), Q >= 1.
      ks: cut-offs K for R@K.

    Returns:
      dict with "R@k" for each k in ``ks`` (float percent), "MedR" (float),
      "MeanR" (float) and "num_queries" (int), in that order.
    """
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape "
                         f"{list(ranks.shape)}")
    if not np.issubdtype(ranks.dtype, np.integer):
        raise ValueError(f"ranks must be integers, got dtype {ranks.dtype}")
    if ranks.min() < 1:
        raise ValueError(f"ranks are 1-based, got a rank {ranks.min()}")
    out = {}
    for k in ks:
        out[f"R@{k}"] = 100.0 * float(np.mean(ranks <= k))
    out["MedR"] = float(np.median(ranks))
    out["MeanR"] = float(np.mean(ranks))
    out["num_queries"] = int(ranks.size)
    return out


def format_retrieval_table(results, columns=("R@1", "R@5", "R@10", "MedR")):
    """Fixed-width text table of retrieval metrics.

    Args:
      results: dict name -> metrics dict (from :func:`retrieval_metrics`),
        e.g. {"MSR-VTT text->video": {...}}; rows keep the dict order.
      columns: metric keys to show. R@K and MeanR print with one decimal
        (R@K in percent), MedR as an integer or with one decimal (x.5).

    Returns:
      str: a header line and one line per result, no trailing newline.
    """
    name_width = max([len("task")] + [len(str(name)) for name in results])
    widths = [max(len(column), 6) for column in columns]
    lines = ["  ".join([f"{'task':<{name_width}}"]
                       + [f"{c:>{w}}" for c, w in zip(columns, widths)])]
    for name, metrics in results.items():
        missing = [c for c in columns if c not in metrics]
        if missing:
            raise ValueError(f"results[{name!r}] lacks {missing}; it has "
                             f"{sorted(metrics)}")
        cells = [_format_retrieval_value(c, metrics[c]) for c in columns]
        lines.append("  ".join([f"{str(name):<{name_width}}"]
                               + [f"{v:>{w}}" for v, w in zip(cells, widths)]))
    return "\n".join(lines)


def _format_retrieval_value(column, value):
    """One table cell: MedR/num_queries as int when whole, else 1 decimal."""
    value = float(value)
    if column in ("MedR", "num_queries") and value.is_integer():
        return f"{int(value)}"
    return f"{value:.1f}"


def video_mean_scores(clip_probs, video_index):
    """Each video's score: the mean of its clips' scores (float64 sums in
    row order, divided by the clip count).

    Args:
        clip_probs: float [N, V] per-clip class scores.
        video_index: int [N] the video of each clip (any integers).

    Returns:
        (videos [M] the sorted distinct video indices, inverse int [N] each
        clip's row in ``videos``, scores float64 [M, V]).
    """
    probs = np.asarray(clip_probs, dtype=np.float64)
    videos, inverse = np.unique(np.asarray(video_index), return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((len(videos), probs.shape[1]), np.float64)
    np.add.at(sums, inverse, probs)
    counts = np.bincount(inverse, minlength=len(videos))[:, None]
    return videos, inverse, sums / counts


def clip_and_video_accuracy(clip_probs, labels, video_index, top_k=(1, 5)):
    """Clip-level and video-level top-k accuracy (torchvision's
    video-classification recipe).

    A clip is a top-k hit when its true class ranks among its k best
    scores; a video's scores are the mean of its clips' softmax
    probabilities, and it is a hit when its true class ranks among the k
    best of those means. Vectorised: clips are grouped with ``np.unique``
    and ``np.add.at``; ranks are counted in blocks of rows.

    Tie rule (the module's, also ``np.argmax``'s and ``tf.math.top_k``'s):
    classes are ordered by descending score, equal scores by lower class
    index first. So the rank of the true class y is
    ``#{c : s_c > s_y} + #{c < y : s_c == s_y}`` and a hit is rank < k.
    Scores are compared in float64 (float32/float16 inputs exactly); video
    means are sums in float64 over the video's clips in row order, divided
    by the clip count.

    Args:
        clip_probs: float [N, V] per-clip class probabilities (softmax).
        labels: int [N] true class of each clip, in [0, V); every clip of a
            video must carry the video's label.
        video_index: int [N] the video each clip belongs to (any integers,
            e.g. ``evaluation_dataset``'s positions; drop padding rows with
            the mask first).
        top_k: the k values to report.

    Returns:
        dict with "clip_acc@k" and "video_acc@k" in percent for every k in
        ``top_k``, and "num_clips", "num_videos".

    Raises:
        ValueError: on mismatched shapes, labels outside [0, V), or a video
            whose clips carry different labels (naming the video).
    """
    probs = np.asarray(clip_probs, dtype=np.float64)
    labels = np.asarray(labels)
    video_index = np.asarray(video_index)
    if probs.ndim != 2:
        raise ValueError(f"clip_probs must be [num_clips, num_classes], got "
                         f"shape {probs.shape}")
    num_clips, num_classes = probs.shape
    if labels.shape != (num_clips,) or video_index.shape != (num_clips,):
        raise ValueError(
            f"labels {labels.shape} and video_index {video_index.shape} must "
            f"both have shape ({num_clips},) like clip_probs' rows")
    labels = labels.astype(np.int64)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise ValueError(f"labels outside [0, {num_classes}): "
                         f"{np.unique(labels[bad])[:5].tolist()}")
    ks = tuple(int(k) for k in top_k)
    if any(k < 1 for k in ks):
        raise ValueError(f"top_k values must be >= 1, got {ks}")

    videos, inverse, video_scores = video_mean_scores(probs, video_index)
    num_videos = len(videos)
    video_labels = np.full(num_videos, -1, np.int64)
    video_labels[inverse] = labels  # any clip's label; checked next
    conflict = video_labels[inverse] != labels
    if conflict.any():
        first = int(video_index[np.argmax(conflict)])
        raise ValueError(f"clips of video {first} carry different labels: "
                         f"{np.unique(labels[video_index == first]).tolist()}")

    def ranks(scores, truth):
        out = np.empty(len(truth), np.int64)
        classes = np.arange(scores.shape[1])
        for lo in range(0, len(truth), _EVAL_CHUNK_ROWS):
            block = scores[lo:lo + _EVAL_CHUNK_ROWS]
            y = truth[lo:lo + _EVAL_CHUNK_ROWS]
            true_score = block[np.arange(len(y)), y][:, None]
            ahead = (block > true_score) | (
                (block == true_score) & (classes[None, :] < y[:, None]))
            out[lo:lo + _EVAL_CHUNK_ROWS] = ahead.sum(axis=1)
        return out

    clip_rank = ranks(probs, labels)
    video_rank = ranks(video_scores, video_labels)
    result = {}
    for k in ks:
        result[f"clip_acc@{k}"] = (100.0 * float(np.mean(clip_rank < k))
                                   if num_clips else 0.0)
    for k in ks:
        result[f"video_acc@{k}"] = (100.0 * float(np.mean(video_rank < k))
                                    if num_videos else 0.0)
    result["num_clips"] = int(num_clips)
    result["num_videos"] = int(num_videos)
    return result
