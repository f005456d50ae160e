"""Tests of vidcore.metrics: hand-made cases, slow reference, TF parity."""
import numpy as np
import pytest
import tensorflow as tf

from vidcore import metrics as M

# --------------------------------------------------------------------------
# Hand-made case: 3 videos x 5 classes, top_k = 2.
#   v0 labels {0, 2, 3} (3 labels > top_k), v1 labels {2}, v2 no labels.
#   Classes 1 and 4 have no positives.
# --------------------------------------------------------------------------
HAND_PREDS = np.array([[0.9, 0.8, 0.1, 0.3, 0.0],
                       [0.2, 0.7, 0.6, 0.1, 0.5],
                       [0.4, 0.3, 0.2, 0.6, 0.1]], np.float32)
HAND_LABELS = np.array([[1, 0, 1, 1, 0],
                        [0, 0, 1, 0, 0],
                        [0, 0, 0, 0, 0]], np.int64)
# Pooled top-2 triplets (class, score, hit), arrival order:
#   (0,.9,1) (1,.8,0) | (1,.7,0) (2,.6,1) | (3,.6,0) (0,.4,0)
# Ranked: .9 h, .8, .7, .6 h (v1 comes before v2's tie), .6, .4; P = 4.
HAND_GAP = (1 / 1 + 2 / 4) / 4                      # 0.375
# c0: [.9 h, .4] P=1 -> 1; c2: [.6 h] P=2 -> 1/2; c3: [.6] P=1 -> 0.
HAND_MAP = (1.0 + 0.5 + 0.0) / 3                    # 0.5
HAND_HIT1 = 1 / 3                                   # argmax: 0, 1, 3
# v0 top-3 = {0, 1, 3} -> 2/3 ; v1 top-1 = {1} -> 0 ; v2 -> 0.
HAND_PERR = (2 / 3) / 3


def test_hand_made_case():
    out = M.evaluate_predictions(HAND_PREDS, HAND_LABELS, top_k=2)
    assert out["num_videos"] == 3
    assert out["gap"] == pytest.approx(HAND_GAP, abs=1e-15)
    assert out["map"] == pytest.approx(HAND_MAP, abs=1e-15)
    assert out["hit_at_one"] == pytest.approx(HAND_HIT1, abs=1e-15)
    assert out["perr"] == pytest.approx(HAND_PERR, abs=1e-15)
    assert M.global_average_precision(HAND_PREDS, HAND_LABELS, 2) == out["gap"]
    assert M.mean_average_precision(HAND_PREDS, HAND_LABELS, 2) == out["map"]
    assert M.hit_at_one(HAND_PREDS, HAND_LABELS) == out["hit_at_one"]
    assert (M.precision_at_equal_recall_rate(HAND_PREDS, HAND_LABELS)
            == out["perr"])


def test_hand_made_summary_tf_and_numpy():
    expected_classes = [[0, 1], [1, 2], [3, 0]]
    for summary in (M.topk_summary_numpy(HAND_PREDS, HAND_LABELS, 2),
                    _to_numpy(M.topk_summary(HAND_PREDS, HAND_LABELS, 2))):
        np.testing.assert_array_equal(summary["classes"], expected_classes)
        np.testing.assert_array_equal(summary["hits"],
                                      [[1, 0], [0, 1], [0, 0]])
        np.testing.assert_array_equal(summary["num_labels"], [3, 1, 0])
        np.testing.assert_array_equal(summary["class_positives"],
                                      [1, 0, 2, 1, 0])
        np.testing.assert_allclose(summary["perr"], [2 / 3, 0, 0], rtol=1e-7)


def test_hand_made_gap_with_top_1_and_top_5():
    # top 1: .9 h, .7, .6 ; P = 4 -> 1/4.
    assert M.global_average_precision(HAND_PREDS, HAND_LABELS, 1) == 0.25
    # top 5 = everything: rank all 15 scores, ties by flat (arrival) index.
    ranked = sorted(((-s, i) for i, s in enumerate(HAND_PREDS.ravel())))
    hits = [HAND_LABELS.ravel()[i] for _, i in ranked]
    expected = sum(np.cumsum(hits)[j] / (j + 1)
                   for j in range(len(hits)) if hits[j]) / 4
    assert M.global_average_precision(HAND_PREDS, HAND_LABELS, 5) == \
        pytest.approx(expected, abs=1e-15)


def test_perr_counts_only_positive_scores_and_ties_by_lower_class():
    preds = np.array([[0.0, 0.0, 0.5],      # top-2 = {2, 0}; label 0 has p=0
                      [0.5, 0.5, 0.1]], np.float32)  # tie: argmax = 0
    labels = np.array([[1, 0, 1], [1, 0, 0]])
    out = M.evaluate_predictions(preds, labels, top_k=1)
    assert out["perr"] == pytest.approx((1 / 2 + 1) / 2, abs=1e-15)
    assert out["hit_at_one"] == 1.0   # v0: argmax 2 is a label; v1: class 0
    tf_sum = _to_numpy(M.topk_summary(preds, labels, 1))
    np.testing.assert_array_equal(tf_sum["perr"], [0.5, 1.0])
    np.testing.assert_array_equal(tf_sum["classes"], [[2], [0]])


def test_no_labels_at_all_gives_zero():
    preds = np.random.default_rng(0).random((4, 6)).astype(np.float32)
    out = M.evaluate_predictions(preds, np.zeros((4, 6)), top_k=3)
    assert out == {"gap": 0.0, "map": 0.0, "hit_at_one": 0.0, "perr": 0.0,
                   "num_videos": 4}
    assert M.StreamingYT8MMetrics(6).result()["num_videos"] == 0


# --------------------------------------------------------------------------
# Slow, straightforward reference (sort + loops), same tie rule.
# --------------------------------------------------------------------------
def slow_metrics(preds, labels, top_k):
    preds = np.asarray(preds, np.float32)
    labels = np.asarray(labels) > 0
    num_videos, num_classes = preds.shape
    triplets, hit1, perr = [], 0.0, 0.0
    for n in range(num_videos):
        ranked = sorted(range(num_classes), key=lambda c: (-preds[n, c], c))
        hit1 += labels[n, ranked[0]]
        m = int(labels[n].sum())
        if m:
            perr += sum(labels[n, c] and preds[n, c] > 0
                        for c in ranked[:m]) / m
        triplets += [(c, preds[n, c], labels[n, c]) for c in ranked[:top_k]]

    def average_precision(items, positives):
        items = sorted(items, key=lambda t: -t[1])   # stable: arrival order
        found, total = 0, 0.0
        for i, (_, _, hit) in enumerate(items):
            if hit:
                found += 1
                total += found / (i + 1)
        return total / positives if positives else 0.0

    aps = [average_precision([t for t in triplets if t[0] == c],
                             labels[:, c].sum())
           for c in range(num_classes) if labels[:, c].sum() > 0]
    return {"gap": average_precision(triplets, labels.sum()),
            "map": float(np.mean(aps)) if aps else 0.0,
            "hit_at_one": hit1 / num_videos, "perr": perr / num_videos,
            "num_videos": num_videos}


def random_case(seed, num_videos, num_classes, decimals=1):
    """Scores with many ties (rounded), negatives, 0..7 labels per video."""
    rng = np.random.default_rng(seed)
    preds = np.round(rng.normal(0.3, 0.5, (num_videos, num_classes)),
                     decimals).astype(np.float32)
    counts = rng.integers(0, 8, num_videos)
    labels = np.zeros((num_videos, num_classes), bool)
    for n, count in enumerate(counts):
        labels[n, rng.choice(num_classes, min(count, num_classes), False)] = 1
        preds[n, labels[n]] += rng.choice([0.0, 0.3], labels[n].sum())
    return preds, labels


def assert_metrics_close(got, expected, tol=1e-12):
    assert got["num_videos"] == expected["num_videos"]
    for key in ("gap", "map", "hit_at_one", "perr"):
        assert got[key] == pytest.approx(expected[key], abs=tol), key


@pytest.mark.parametrize("seed,num_videos,num_classes,top_k", [
    (0, 40, 9, 3), (1, 60, 12, 20), (2, 50, 30, 5), (3, 33, 6, 1)])
def test_vectorised_equals_slow_reference(seed, num_videos, num_classes,
                                          top_k):
    preds, labels = random_case(seed, num_videos, num_classes)
    got = M.evaluate_predictions(preds, labels, top_k)
    assert_metrics_close(got, slow_metrics(preds, labels, top_k))


@pytest.mark.parametrize("splits", [[1], [7, 13, 50], [40, 41, 99],
                                    list(range(1, 120, 2))])
def test_streaming_equals_one_shot(splits):
    preds, labels = random_case(4, 120, 15)
    one_shot = M.evaluate_predictions(preds, labels, 4)
    metrics = M.StreamingYT8MMetrics(15, top_k=4)
    for rows in np.split(np.arange(120), splits):
        metrics.update(M.topk_summary_numpy(preds[rows], labels[rows], 4))
    assert metrics.num_videos == 120
    assert metrics.result() == one_shot   # bitwise: order-independent sums
    assert_metrics_close(one_shot, slow_metrics(preds, labels, 4))


def test_accumulator_truncates_wider_summaries_and_resets():
    preds, labels = random_case(5, 30, 10)
    metrics = M.StreamingYT8MMetrics(10, top_k=3)
    metrics.update(M.topk_summary_numpy(preds, labels, 8))
    assert metrics.result() == M.evaluate_predictions(preds, labels, 3)
    with pytest.raises(ValueError):
        metrics.update(M.topk_summary_numpy(preds, labels, 2))
    metrics.reset()
    assert metrics.num_videos == 0


# --------------------------------------------------------------------------
# Sorting and AP kernels against their plain definitions.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_ranked_order_is_the_stable_descending_sort(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(0, 2, 500), seed % 2).astype(np.float32)
    scores[:8] = [0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45, 0.0, -0.0]
    rng.shuffle(scores)
    expected = sorted(range(scores.size), key=lambda i: (-scores[i], i))
    np.testing.assert_array_equal(M.ranked_order(scores), expected)
    assert M.ranked_order(np.zeros(0, np.float32)).size == 0


@pytest.mark.parametrize("seed", range(4))
def test_grouped_average_precision_equals_per_group_loop(seed):
    rng = np.random.default_rng(seed)
    groups = np.sort(rng.choice([0, 2, 3, 6], 300))   # groups 1, 4, 5 empty
    hits = rng.random(300) < 0.3
    positives = np.bincount(groups[hits], minlength=7) + rng.integers(0, 3, 7)
    expected = np.zeros(7)
    for g in range(7):
        ranked = hits[groups == g]
        precision = np.cumsum(ranked) / np.arange(1, ranked.size + 1)
        if positives[g]:
            expected[g] = precision[ranked].sum() / positives[g]
    got = M.grouped_average_precision(groups, hits, positives)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=0)


# --------------------------------------------------------------------------
# Mask handling.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("use_tf", [False, True])
def test_mask_ignores_padding_rows(use_tf):
    preds, labels = random_case(6, 25, 8)
    pad_preds, pad_labels = random_case(7, 9, 8)     # padding WITH labels
    all_preds = np.concatenate([preds[:10], pad_preds, preds[10:]])
    all_labels = np.concatenate([labels[:10], pad_labels, labels[10:]])
    mask = np.r_[np.ones(10, bool), np.zeros(9, bool), np.ones(15, bool)]
    summarise = M.topk_summary if use_tf else M.topk_summary_numpy
    metrics = M.StreamingYT8MMetrics(8, top_k=3)
    metrics.update(_to_numpy(summarise(all_preds, all_labels, 3, mask=mask)))
    assert metrics.result() == M.evaluate_predictions(preds, labels, 3)


def test_mask_without_masked_class_positives_is_rejected():
    preds, labels = random_case(8, 10, 6)
    labels[-1, :] = True
    summary = M.topk_summary_numpy(preds, labels, 3)
    summary["mask"] = np.arange(10) < 9
    with pytest.raises(ValueError, match="class_positives"):
        M.StreamingYT8MMetrics(6, 3).update(summary)


# --------------------------------------------------------------------------
# TensorFlow summary == numpy summary (eager, tf.function, distributed).
# --------------------------------------------------------------------------
def _to_numpy(summary):
    return {key: np.asarray(value) for key, value in summary.items()}


def assert_summaries_equal(got, expected):
    assert set(got) == set(expected)
    for key in expected:
        got_value = np.asarray(got[key])
        assert got_value.dtype == expected[key].dtype, key
        np.testing.assert_array_equal(got_value, expected[key], err_msg=key)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("top_k", [1, 4, 20])
def test_tf_summary_equals_numpy(dtype, top_k):
    preds, labels = random_case(9, 37, 11)
    preds = preds.astype(dtype)
    expected = M.topk_summary_numpy(preds, labels.astype(np.float32), top_k)
    assert_summaries_equal(M.topk_summary(preds, labels, top_k), expected)
    assert_summaries_equal(
        M.topk_summary(tf.constant(preds), tf.constant(labels, tf.int32),
                       top_k), expected)


def test_tf_summary_in_tf_function_with_dynamic_shapes():
    spec = [tf.TensorSpec([None, None], tf.float32),
            tf.TensorSpec([None, None], tf.bool)]
    fn = tf.function(lambda p, y: M.topk_summary(p, y, top_k=5),
                     input_signature=spec)
    fixed = tf.function(lambda p, y: M.topk_summary(p, y, top_k=5))
    for seed, shape in [(10, (16, 12)), (11, (5, 3)), (12, (1, 30))]:
        preds, labels = random_case(seed, *shape)
        expected = M.topk_summary_numpy(preds, labels, 5)
        assert_summaries_equal(fn(preds, labels), expected)
        assert_summaries_equal(fixed(preds, labels), expected)
    assert fixed(preds, labels)["scores"].shape == (1, 5)


def test_tf_summary_under_mirrored_strategy():
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs 2 logical CPU devices (tests/conftest.py)")
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
    preds, labels = random_case(13, 45, 10)
    dataset = tf.data.Dataset.from_tensor_slices((preds, labels)).batch(8)
    step = tf.function(lambda p, y: M.topk_summary(p, y, top_k=4))
    metrics = M.StreamingYT8MMetrics(10, top_k=4)
    replicas_seen = set()
    for batch in strategy.experimental_distribute_dataset(dataset):
        per_replica = strategy.run(step, args=batch)
        results = strategy.experimental_local_results(per_replica)
        replicas_seen.add(len(results))
        for summary in results:       # replica order keeps video order
            metrics.update(_to_numpy(summary))
    assert replicas_seen == {2}
    assert metrics.result() == M.evaluate_predictions(preds, labels, 4)


# --------------------------------------------------------------------------
# Sparse GAP.
# --------------------------------------------------------------------------
def test_gap_from_triplets_ignores_padding():
    scores = [0.9, 0.8, 0.7, 0.6]
    hits = [True, True, False, True]
    assert M.gap_from_triplets(scores, hits, 4) == pytest.approx(
        (1 + 1 + 3 / 4) / 4)
    assert M.gap_from_triplets(scores, hits, 4, classes=[3, -1, 2, 1]) == \
        pytest.approx((1 + 2 / 3) / 4)
    assert M.gap_from_triplets(scores, hits, 0) == 0.0


def test_sparse_gap_equals_dense_gap():
    preds, labels = random_case(14, 50, 12)
    summary = M.topk_summary_numpy(preds, labels, 6)
    dense_gap = M.global_average_precision(preds, labels, 4)
    label_sets = [set(np.nonzero(row)[0]) for row in labels]
    # Shuffle the sparse columns: the function re-ranks each row itself.
    perm = np.random.default_rng(0).permutation(6)
    scores, classes = summary["scores"][:, perm], summary["classes"][:, perm]
    for lab in (label_sets, labels):
        assert M.global_average_precision_sparse(scores, classes, lab, 4) == \
            dense_gap
    # Ragged lists and class -1 padding.
    ragged_s = [list(s[:4]) + [9.0] for s in summary["scores"]]
    ragged_c = [list(c[:4]) + [-1] for c in summary["classes"]]
    ragged_s[0], ragged_c[0] = ragged_s[0][:4], ragged_c[0][:4]
    assert M.global_average_precision_sparse(ragged_s, ragged_c,
                                             label_sets, 4) == dense_gap


# --------------------------------------------------------------------------
# Segment-level mAP.
# --------------------------------------------------------------------------
SEG_RATED = {("a", 1): 1, ("b", 1): 0, ("c", 1): 1, ("d", 1): 1,
             ("a", 2): 0, ("e", 2): 0,
             ("f", 3): 1, ("g", 5): 1}
SEG_RANKED = {1: ["x", "a", "b", "y", "c"], 2: ["a", "e"], 5: ["z"]}


def test_segment_map_hand_made():
    # class 1: rated in rank order a(1) b(0) c(1), P=3 -> (1 + 2/3) / 3.
    # class 2: no positives -> excluded; class 3: not ranked -> excluded;
    # class 5: P=1, nothing rated ranked -> AP 0.
    assert M.segment_mean_average_precision(SEG_RANKED, SEG_RATED) == \
        pytest.approx((5 / 9 + 0) / 2, abs=1e-15)
    # top_n=3 truncates before filtering: x a b -> a(1) b(0) -> 1/3.
    assert M.segment_mean_average_precision(SEG_RANKED, SEG_RATED, 3) == \
        pytest.approx((1 / 3 + 0) / 2, abs=1e-15)
    assert M.segment_mean_average_precision({2: ["a"]}, SEG_RATED) == 0.0
    assert M.segment_mean_average_precision({}, SEG_RATED) == 0.0
