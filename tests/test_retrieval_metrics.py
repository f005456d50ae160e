"""Tests of the text-video retrieval metrics in vidcore.metrics.

Ranks are checked against hand-computed answers, a brute-force numpy
implementation of the definition (float64 scores of small-integer embeddings,
so every score is exact and ties are real ties), and the HowTo100M authors'
formula on tie-free data.
"""
import numpy as np
import pytest
import tensorflow as tf

from vidcore import metrics as M

TIES = ("pessimistic", "optimistic", "index")


def reference_ranks(queries, candidates, positives=None, ties="pessimistic"):
    """Brute-force ranks from the full float64 score matrix."""
    scores = (np.asarray(queries, np.float64)
              @ np.asarray(candidates, np.float64).T)
    num_queries, num_candidates = scores.shape
    if positives is None:
        positives = np.arange(num_queries)
    positives = np.asarray(positives)
    pos_scores = scores[np.arange(num_queries), positives][:, None]
    greater = (scores > pos_scores).sum(axis=1)
    equal = (scores == pos_scores).sum(axis=1) - 1
    before = ((scores == pos_scores)
              & (np.arange(num_candidates)[None, :] < positives[:, None])
              ).sum(axis=1)
    extra = {"pessimistic": equal, "optimistic": 0, "index": before}[ties]
    return 1 + greater + extra


def authors_ranks(scores):
    """The HowTo100M reference: sort -S, find the diagonal entry's position.

    Correct only without ties (with ties ``ind`` gets longer than Q).
    """
    sx = np.sort(-scores, axis=1)
    d = np.diag(-scores)[:, None]
    ind = np.where(sx - d == 0)[1]
    return ind


def integer_embeddings(rng, rows, dim=4, low=-2, high=2):
    """Small-integer embeddings: exact float scores with many ties."""
    return rng.integers(low, high + 1, (rows, dim)).astype(np.float32)


# --------------------------------------------------------------------------
# Hand-made cases.
# --------------------------------------------------------------------------
def test_identity_matrix_gives_rank_one():
    eye = np.eye(6, dtype=np.float32)
    ranks = M.retrieval_ranks(eye, eye)
    assert ranks.dtype == np.int64
    np.testing.assert_array_equal(ranks, np.ones(6))
    out = M.retrieval_metrics(ranks)
    assert out == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0, "MedR": 1.0,
                   "MeanR": 1.0, "num_queries": 6}


# Worked example. queries q0 = (1, 0), q1 = (0, 1), q2 = (1, 1);
# candidates c0 = (2, 0), c1 = (1, 1), c2 = (0, 2). S = q @ c^T:
#        c0 c1 c2
#   q0 [  2  1  0 ]   diagonal 2: nothing higher               -> rank 1
#   q1 [  0  1  2 ]   diagonal 1: c2 higher                    -> rank 2
#   q2 [  2  2  2 ]   diagonal 2: ties with c0 and c1, j < 2   -> 3 / 1 / 3
# With positives (1, 1, 1): q0 score 1 < c0 -> 2; q1 score 1 < c2 -> 2;
# q2 score 2 ties c0 (j < 1) and c2 (j > 1) -> pessimistic 3, optimistic 1,
# index 2.
HAND_Q = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
HAND_C = np.array([[2, 0], [1, 1], [0, 2]], np.float32)


@pytest.mark.parametrize("ties, expected", [
    ("pessimistic", [1, 2, 3]), ("optimistic", [1, 2, 1]),
    ("index", [1, 2, 3])])
def test_worked_example_diagonal(ties, expected):
    for block_size in (1, 2, 3, 4096):
        np.testing.assert_array_equal(
            M.retrieval_ranks(HAND_Q, HAND_C, block_size=block_size,
                              ties=ties), expected)


@pytest.mark.parametrize("ties, expected", [
    ("pessimistic", [2, 2, 3]), ("optimistic", [2, 2, 1]),
    ("index", [2, 2, 2])])
def test_worked_example_shared_positive(ties, expected):
    for block_size in (1, 2, 3):
        np.testing.assert_array_equal(
            M.retrieval_ranks(HAND_Q, HAND_C, positives=[1, 1, 1],
                              block_size=block_size, ties=ties), expected)


def test_worked_example_metrics():
    out = M.retrieval_metrics(M.retrieval_ranks(HAND_Q, HAND_C))  # 1, 2, 3
    assert out["R@1"] == pytest.approx(100.0 / 3)
    assert out["R@5"] == 100.0 and out["R@10"] == 100.0
    assert out["MedR"] == 2.0 and out["MeanR"] == 2.0
    assert out["num_queries"] == 3


def test_reversed_order_gives_rank_c():
    # S = -I: every other candidate (score 0) beats the positive (-1).
    num = 9
    ranks = M.retrieval_ranks(np.eye(num), -np.eye(num), block_size=4)
    np.testing.assert_array_equal(ranks, np.full(num, num))
    # 1-D ramp: s_ij = j, so candidate i is beaten by the C - 1 - i above it.
    ramp = np.arange(num, dtype=np.float32)[:, None]
    for block_size in (1, 2, 4, 9, 100):
        np.testing.assert_array_equal(
            M.retrieval_ranks(np.ones((num, 1)), ramp, block_size=block_size),
            num - np.arange(num))


@pytest.mark.parametrize("block_size", [1, 3, 5, 7, 4096])
def test_all_equal_scores_each_tie_mode(block_size):
    num = 7
    const = np.full((num, 3), 0.5, np.float32)
    rank = {t: M.retrieval_ranks(const, const, block_size=block_size, ties=t)
            for t in TIES}
    np.testing.assert_array_equal(rank["pessimistic"], np.full(num, num))
    np.testing.assert_array_equal(rank["optimistic"], np.ones(num))
    np.testing.assert_array_equal(rank["index"], np.arange(1, num + 1))


def test_degenerate_model_gets_worst_rank_with_inexact_scores():
    # Collapsed embeddings with arbitrary (not exactly representable)
    # values: each block's positive score comes from the same matmul as the
    # scores it is compared with, so all ties stay ties.
    rng = np.random.default_rng(3)
    text = np.tile(rng.standard_normal((1, 300), np.float32), (40, 1))
    video = np.tile(rng.standard_normal((1, 300), np.float32), (40, 1))
    for block_size in (1, 6, 16, 40):
        ranks = M.retrieval_ranks(text, video, block_size=block_size)
        np.testing.assert_array_equal(ranks, np.full(40, 40))
    out = M.retrieval_metrics(ranks)
    assert out["R@1"] == 0.0 and out["MedR"] == 40.0


@pytest.mark.parametrize("ties", TIES)
def test_partial_ties_match_reference(ties):
    rng = np.random.default_rng(0)
    queries = integer_embeddings(rng, 40)
    candidates = integer_embeddings(rng, 40)
    expected = reference_ranks(queries, candidates, ties=ties)
    scores = queries.astype(np.float64) @ candidates.T
    tied = (scores == np.diag(scores)[:, None]).sum(axis=1) > 1
    assert 0 < tied.sum() < 40               # the case has partial ties
    np.testing.assert_array_equal(
        M.retrieval_ranks(queries, candidates, block_size=16, ties=ties),
        expected)


# --------------------------------------------------------------------------
# Agreement with the authors' formula (tie-free data).
# --------------------------------------------------------------------------
def test_agrees_with_authors_formula_without_ties():
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((300, 32)).astype(np.float32)
    candidates = (queries + rng.standard_normal((300, 32))).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    candidates /= np.linalg.norm(candidates, axis=1, keepdims=True)
    scores = queries.astype(np.float64) @ candidates.astype(np.float64).T
    # Tie-free with a margin far above float32 rounding of the dot products.
    gaps = np.abs(scores - np.diag(scores)[:, None])
    np.fill_diagonal(gaps, np.inf)
    assert gaps.min() > 1e-5
    ind = authors_ranks(scores)
    assert ind.shape == (300,)
    ranks = M.retrieval_ranks(queries, candidates, block_size=64)
    np.testing.assert_array_equal(ranks, ind + 1)
    out = M.retrieval_metrics(ranks)
    for k in (1, 5, 10):
        assert out[f"R@{k}"] == pytest.approx(100 * np.mean(ind < k),
                                              abs=1e-12)
    assert out["MedR"] == np.median(ind) + 1
    for ties in TIES:                        # no ties: modes agree
        np.testing.assert_array_equal(
            M.retrieval_ranks(queries, candidates, ties=ties), ranks)


def test_authors_formula_breaks_with_ties():
    # Documents why we do not use it: ties give more matches than queries.
    scores = np.ones((4, 4))
    assert authors_ranks(scores).shape == (16,)


# --------------------------------------------------------------------------
# Blocking, positives, shapes.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("ties", TIES)
def test_blocked_equals_unblocked_with_ties(ties):
    rng = np.random.default_rng(2)
    queries = integer_embeddings(rng, 23)
    candidates = integer_embeddings(rng, 31)
    positives = rng.integers(0, 31, 23)
    expected = reference_ranks(queries, candidates, positives, ties)
    for block_size in (1, 2, 3, 5, 8, 10, 23, 31, 32, 4096):
        np.testing.assert_array_equal(
            M.retrieval_ranks(queries, candidates, positives,
                              block_size=block_size, ties=ties), expected,
            err_msg=f"block_size={block_size}")


def test_blocked_equals_unblocked_random_floats():
    rng = np.random.default_rng(4)
    queries = rng.standard_normal((57, 24), np.float32)
    candidates = rng.standard_normal((57, 24), np.float32)
    expected = M.retrieval_ranks(queries, candidates, block_size=4096)
    np.testing.assert_array_equal(expected,
                                  reference_ranks(queries, candidates))
    for block_size in (1, 4, 10, 19, 56, 57, 58):
        np.testing.assert_array_equal(
            M.retrieval_ranks(queries, candidates, block_size=block_size),
            expected)


def test_several_captions_per_video():
    rng = np.random.default_rng(5)
    videos = integer_embeddings(rng, 10)
    positives = rng.permutation(np.repeat(np.arange(10), 3))   # Q = 30
    captions = integer_embeddings(rng, 30)
    for ties in TIES:
        expected = reference_ranks(captions, videos, positives, ties)
        for block_size in (3, 4, 7, 10):
            np.testing.assert_array_equal(
                M.retrieval_ranks(captions, videos, positives,
                                  block_size=block_size, ties=ties), expected)


def test_query_count_differs_from_candidate_count():
    rng = np.random.default_rng(6)
    queries = integer_embeddings(rng, 5)
    candidates = integer_embeddings(rng, 12)
    positives = np.array([11, 0, 5, 5, 7])
    np.testing.assert_array_equal(
        M.retrieval_ranks(queries, candidates, positives, block_size=4),
        reference_ranks(queries, candidates, positives))
    ranks = M.retrieval_ranks(candidates, queries, positives=np.arange(12) % 5,
                              block_size=4)
    assert ranks.shape == (12,) and ranks.max() <= 5


def test_no_queries():
    ranks = M.retrieval_ranks(np.zeros((0, 4)), np.ones((3, 4)),
                              positives=np.zeros(0, np.int64))
    assert ranks.shape == (0,) and ranks.dtype == np.int64


# --------------------------------------------------------------------------
# Input types.
# --------------------------------------------------------------------------
def test_float16_bfloat16_float64_and_tf_inputs():
    rng = np.random.default_rng(7)
    queries = integer_embeddings(rng, 20)
    candidates = integer_embeddings(rng, 20)
    expected = reference_ranks(queries, candidates)
    variants = [
        (queries.astype(np.float16), candidates.astype(np.float16)),
        (queries.astype(np.float64), candidates.astype(np.float64)),
        (queries.astype(np.int32), candidates),
        (tf.constant(queries), tf.constant(candidates)),
        (tf.constant(queries, tf.float16), candidates),
        (tf.constant(queries, tf.bfloat16), tf.constant(candidates,
                                                        tf.bfloat16)),
        (queries.tolist(), candidates.tolist()),
    ]
    for q, c in variants:
        np.testing.assert_array_equal(
            M.retrieval_ranks(q, c, tf.constant(np.arange(20)), block_size=6),
            expected)


def test_float16_random_inputs_use_their_exact_float32_values():
    rng = np.random.default_rng(8)
    queries = rng.standard_normal((30, 16)).astype(np.float16)
    candidates = rng.standard_normal((30, 16)).astype(np.float16)
    np.testing.assert_array_equal(
        M.retrieval_ranks(queries, candidates, block_size=7),
        M.retrieval_ranks(queries.astype(np.float32),
                          candidates.astype(np.float32), block_size=7))


def test_traced_once_per_dtype():
    rng = np.random.default_rng(9)
    queries = rng.standard_normal((11, 5), np.float32)
    M.retrieval_ranks(queries, queries)
    fn = M._retrieval_count_fn(tf.float32)
    traces = fn.experimental_get_tracing_count()
    for block_size in (1, 3, 4096):
        M.retrieval_ranks(queries[:7], queries, np.arange(7),
                          block_size=block_size)
    assert fn.experimental_get_tracing_count() == traces


# --------------------------------------------------------------------------
# Errors a user can cause.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"candidates": np.ones((4, 5))}, "same embedding size D"),
    ({"queries": np.ones(4)}, "2-D"),
    ({"candidates": np.ones((4, 3, 1))}, "2-D"),
    ({"positives": [0, 1, 2, 4]}, r"\[0, C\) = \[0, 4\); query 3 has 4"),
    ({"positives": [0, -1, 2, 3]}, "query 1 has -1"),
    ({"positives": [0, 1, 2]}, r"shape \[Q\] = \[4\]"),
    ({"positives": [0.0, 1.0, 2.0, 3.0]}, "integer"),
    ({"candidates": np.ones((5, 4))}, "positives are required"),
    ({"ties": "random"}, "pessimistic.*optimistic.*index"),
    ({"block_size": 0}, "block_size"),
    ({"block_size": 2.5}, "block_size"),
    ({"queries": np.full((4, 4), "a")}, "real-valued"),
    ({"queries": np.ones((4, 4), np.complex64)}, "real-valued"),
    ({"candidates": np.array([[1, 0, 0, 0]] * 3 + [[0, np.nan, 0, 0]])},
     "candidates contain NaN or inf .first in row 3"),
    ({"queries": np.full((4, 4), 1e20, np.float32),
      "candidates": np.full((4, 4), 1e20, np.float32)},
     "score of query 0 with its positive is inf"),
])
def test_invalid_inputs(kwargs, message):
    args = {"queries": np.ones((4, 4)), "candidates": np.ones((4, 4))}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        M.retrieval_ranks(**args)


# --------------------------------------------------------------------------
# Metrics and the table.
# --------------------------------------------------------------------------
def test_retrieval_metrics_units_and_median():
    out = M.retrieval_metrics([1, 3, 6, 20])
    assert list(out) == ["R@1", "R@5", "R@10", "MedR", "MeanR",
                         "num_queries"]
    assert out["R@1"] == 25.0 and out["R@5"] == 50.0 and out["R@10"] == 75.0
    assert out["MedR"] == 4.5                # np.median of an even count
    assert out["MeanR"] == 7.5 and out["num_queries"] == 4
    assert M.retrieval_metrics([2], ks=(1, 2)) == {
        "R@1": 0.0, "R@2": 100.0, "MedR": 2.0, "MeanR": 2.0,
        "num_queries": 1}


@pytest.mark.parametrize("ranks", [[], [0, 1], [1.5, 2.0], [[1, 2]]])
def test_retrieval_metrics_invalid(ranks):
    with pytest.raises(ValueError):
        M.retrieval_metrics(np.asarray(ranks))


def test_format_retrieval_table():
    results = {
        "MSR-VTT text->video": {"R@1": 14.9, "R@5": 40.2, "R@10": 52.8,
                                "MedR": 9.0},
        "YouCook2": M.retrieval_metrics([1, 2, 30, 29]),
    }
    table = M.format_retrieval_table(results)
    lines = table.split("\n")
    assert len(lines) == 3
    assert lines[0].split() == ["task", "R@1", "R@5", "R@10", "MedR"]
    assert lines[1].split()[-4:] == ["14.9", "40.2", "52.8", "9"]
    assert lines[1].startswith("MSR-VTT text->video")
    assert lines[2].split() == ["YouCook2", "25.0", "50.0", "50.0", "15.5"]
    assert len({len(line) for line in lines}) == 1        # fixed width
    assert M.format_retrieval_table(
        {"YouCook2": results["YouCook2"]},
        columns=("R@1", "MeanR")).split("\n")[1].split() == [
            "YouCook2", "25.0", "15.5"]
    with pytest.raises(ValueError, match="lacks"):
        M.format_retrieval_table({"x": {"R@1": 1.0}})
