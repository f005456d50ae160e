"""2019 segment task: per-class rankings of 5-second segments.

Inference scores every segment, keeps each segment's top-k classes (among the
rated classes) and, per class, the best ``max_per_class`` segments, as the
official inference did; the submission lists them per class, best first.
"""

import numpy as np
import tensorflow as tf

from input_pipeline import records
from vidcore import progress
from vidcore.errors import DataError
from vidcore.prediction import run_batches


def read_class_whitelist(path, num_classes):
    """Boolean [num_classes] mask of the class ids listed one per line in
    ``path`` (non-integer lines such as a header are skipped)."""
    mask = np.zeros(num_classes, dtype=bool)
    with tf.io.gfile.GFile(path, "r") as f:
        for line_no, line in enumerate(f, 1):
            text = line.strip()
            if not text.lstrip("-").isdigit():
                continue
            cls = int(text)
            if not 0 <= cls < num_classes:
                raise DataError(f"{path}:{line_no}: class id {cls} outside "
                                f"[0, {num_classes})")
            mask[cls] = True
    return mask


class SegmentRanker:
    """Keeps, per class, the ``max_per_class`` best-scored segments.

    Ties keep arrival order. Memory stays bounded: the buffer is pruned to
    ``max_per_class`` per class whenever it grows past ``prune_at`` entries.

    Args:
        max_per_class: segments kept per class.
        prune_at: buffer size that triggers pruning.
    """

    def __init__(self, max_per_class=100000, prune_at=20_000_000):
        self.max_per_class = int(max_per_class)
        self.prune_at = int(prune_at)
        self.segment_ids = []
        self._seg, self._cls, self._score = [], [], []
        self._size = 0

    def add(self, segment_ids, classes, scores, keep=None):
        """Adds a batch: ids [B], classes/scores [B, k]; ``keep`` bool [B, k]
        selects the entries to rank (e.g. whitelisted classes)."""
        classes = np.asarray(classes)
        scores = np.asarray(scores, dtype=np.float32)
        keep = (np.ones(classes.shape, bool) if keep is None
                else np.asarray(keep, bool))
        base = len(self.segment_ids)
        self.segment_ids.extend(segment_ids)
        rows = np.broadcast_to(
            np.arange(base, base + len(segment_ids))[:, None], classes.shape)
        self._seg.append(rows[keep].astype(np.int64))
        self._cls.append(classes[keep].astype(np.int32))
        self._score.append(scores[keep])
        self._size += int(keep.sum())
        if self._size > self.prune_at:
            self._prune()

    def _arrays(self):
        seg = np.concatenate(self._seg) if self._seg else np.zeros(0, np.int64)
        cls = np.concatenate(self._cls) if self._cls else np.zeros(0, np.int32)
        score = (np.concatenate(self._score) if self._score
                 else np.zeros(0, np.float32))
        return seg, cls, score

    def _prune(self):
        seg, cls, score = self._arrays()
        # Sort by class, then descending score, ties by arrival (stable).
        order = np.lexsort((seg, -score, cls))
        cls_sorted = cls[order]
        starts = np.searchsorted(cls_sorted, cls_sorted, side="left")
        rank = np.arange(len(order)) - starts
        keep = order[rank < self.max_per_class]
        keep.sort(kind="stable")
        self._seg, self._cls, self._score = [seg[keep]], [cls[keep]], [
            score[keep]]
        self._size = len(keep)

    def ranked(self):
        """dict class id -> list of segment ids, best first."""
        self._prune()
        seg, cls, score = self._arrays()
        order = np.lexsort((seg, -score, cls))
        cls_sorted, seg_sorted = cls[order], seg[order]
        classes, starts = np.unique(cls_sorted, return_index=True)
        ends = np.append(starts[1:], len(order))
        return {int(c): [self.segment_ids[i] for i in seg_sorted[a:b]]
                for c, a, b in zip(classes, starts, ends)}


def rank_segments(model, strategy, dataset, whitelist, top_k, max_per_class,
                  with_ratings=False):
    """Scores every segment of ``dataset`` as the submission does.

    Each segment keeps its ``top_k`` classes among the ``whitelist``ed ones;
    per class the best ``max_per_class`` segments are kept.

    Args:
        model: a model built with max_frames = 5.
        strategy: tf.distribute strategy the model was built under.
        dataset: input_pipeline.yt8m.segment_dataset batches.
        whitelist: bool [num_classes] of the rated classes.
        top_k: classes kept per segment.
        max_per_class: segments kept per class.
        with_ratings: also collect the ratings of rated segments.

    Returns:
        (SegmentRanker, ratings) with ratings a dict (segment id, class) ->
        score (> 0 positive), or None without ``with_ratings``.
    """
    mask = tf.constant(whitelist, tf.float32)
    k = min(top_k, len(whitelist))

    def replica_fn(inputs, labels, meta):
        scores, classes = tf.math.top_k(model(inputs, training=False) * mask,
                                        k=k)
        out = {"scores": scores, "classes": classes, "id": meta["id"],
               "mask": meta["mask"]}
        if with_ratings:
            out.update(labels=labels, rated=meta["rated"])
        return out

    ranker = SegmentRanker(max_per_class)
    ratings = {} if with_ratings else None
    progbar = progress.Progbar(None, unit_name="segment")
    for out in run_batches(strategy, dataset, replica_fn):
        keep = out["mask"]
        ids = records.decode_ids(out["id"][keep])
        classes = out["classes"][keep]
        ranker.add(ids, classes, out["scores"][keep], keep=whitelist[classes])
        if with_ratings:
            for seg_id, labels, rated in zip(ids, out["labels"][keep],
                                             out["rated"][keep]):
                for cls in np.flatnonzero(rated):
                    ratings[(seg_id, int(cls))] = float(labels[cls])
        progbar.add(len(ids))
    progbar.finish()
    return ranker, ratings
