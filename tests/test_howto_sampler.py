"""The vectorised HowTo100M clip sampler against a plain-Python version of
the published sampling rules (span growth, word order, frame pooling)."""

import re

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline.howto import grow_spans, pool_spans


def _tokens(text):
    return re.findall(r"[\w']+", text)


def reference_grow(starts, ends, texts, index, min_time, min_words):
    """Plain-Python statement of the rules in input_pipeline.howto."""
    lo = hi = index
    words = list(_tokens(texts[index]))
    order = [index]
    last = len(starts) - 1
    while len(words) < min_words or ends[hi] - starts[lo] < min_time:
        if lo > 0 and hi < last:
            next_words, prev_words = _tokens(texts[hi + 1]), _tokens(
                texts[lo - 1])
            d_next = ends[hi + 1] - starts[lo]
            d_prev = ends[hi] - starts[lo - 1]
            if (min_time > 0 and d_prev <= d_next) or (
                    min_time == 0 and len(next_words) <= len(prev_words)):
                lo -= 1
                words += prev_words
                order.append(lo)
            else:
                hi += 1
                words += next_words
                order.append(hi)
        elif lo > 0:
            lo -= 1
            words += _tokens(texts[lo])
            order.append(lo)
        elif hi < last:
            hi += 1
            words += _tokens(texts[hi])
            order.append(hi)
        else:
            break
    return lo, hi, order


def _random_captions(rng, n):
    vocab = ["cut", "the", "onion", "add", "salt", "stir", "it's", "pan",
             "heat", "oil"]
    starts = np.cumsum(rng.uniform(0.2, 4.0, n)).astype("f4")
    ends = (starts + rng.uniform(0.1, 3.0, n)).astype("f4")
    texts = [" ".join(rng.choice(vocab, rng.integers(0, 6)))
             for _ in range(n)]
    return starts, ends, texts


@pytest.mark.parametrize("min_time,min_words", [(5.0, 0), (0.0, 7),
                                                (3.0, 4), (100.0, 0),
                                                (0.0, 0)])
def test_grow_spans_matches_reference(min_time, min_words):
    rng = np.random.default_rng(0)
    for trial in range(6):
        n = int(rng.integers(1, 12))
        starts, ends, texts = _random_captions(rng, n)
        first = rng.integers(0, n, size=9).astype("i4")
        counts = tf.constant([len(_tokens(t)) for t in texts])
        lo, hi, order = grow_spans(tf.constant(starts), tf.constant(ends),
                                   counts, tf.constant(first), min_time,
                                   min_words)
        for p, index in enumerate(first):
            ref_lo, ref_hi, ref_order = reference_grow(
                starts, ends, texts, int(index), min_time, min_words)
            assert (int(lo[p]), int(hi[p])) == (ref_lo, ref_hi), (trial, p)
            assert order[p].numpy().tolist() == ref_order, (trial, p)


def test_grow_spans_in_tf_function_and_single_caption():
    fn = tf.function(lambda s, e, c, f: grow_spans(s, e, c, f, 5.0, 0))
    lo, hi, order = fn(tf.constant([1.0]), tf.constant([2.0]),
                       tf.constant([3]), tf.constant([0, 0]))
    assert lo.numpy().tolist() == [0, 0] and hi.numpy().tolist() == [0, 0]
    assert order.to_list() == [[0], [0]]


def reference_pool(frames, rate, start, end):
    lo, hi = int(start * rate), int(end * rate) + 1
    part = frames[lo:hi]
    if len(part) < 1:
        return np.zeros(frames.shape[1], "f4")
    m = part.max(axis=0)
    return m / max(np.linalg.norm(m), 1e-12)


def test_pool_spans_matches_reference():
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(13, 6)).astype("f4")
    spans = [(0.0, 0.0), (0.3, 2.9), (2.0, 5.5), (7.9, 30.0), (9.0, 9.1),
             (20.0, 25.0)]
    for rate in (1.0, 1.5):
        out = pool_spans(tf.constant(frames), tf.constant(rate),
                         tf.constant([s for s, _ in spans], tf.float32),
                         tf.constant([e for _, e in spans], tf.float32))
        for i, (s, e) in enumerate(spans):
            np.testing.assert_allclose(out[i], reference_pool(frames, rate, s,
                                                              e), atol=1e-6)
    # No frame at all (a video without 3D features for the span).
    empty = pool_spans(tf.zeros([0, 4]), tf.constant(1.5), tf.constant([1.0]),
                       tf.constant([4.0]))
    np.testing.assert_array_equal(empty, np.zeros((1, 4)))
