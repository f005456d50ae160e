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


# --------------------------------------------------------------------------- #
# The training reader's batch path: records of several videos parsed in one
# op and sampled together, each pair checked against the rules above.
# --------------------------------------------------------------------------- #
VOCAB = ["cut", "the", "onion", "add", "salt", "stir", "it's", "pan"]
STREAMS = {"2d": (6, 1.0), "3d": (4, 1.5)}  # dim, frames per second


def _encoder():
    from vidcore.text import TextEncoder, WordVectors
    vectors = np.arange(len(VOCAB) * 3, dtype="f4").reshape(-1, 3)
    return TextEncoder(WordVectors(VOCAB, vectors))


def _reference_ids(texts, order, max_words):
    ids = [VOCAB.index(t) + 1 for c in order for t in _tokens(texts[c])
           if t in VOCAB][:max_words]
    return ids + [0] * (max_words - len(ids))


def _random_videos(rng, caption_counts):
    """Videos with random captions and float16 frames; a few frames only
    for some, so spans run past the end of a stream."""
    from tfrecord_tools import howto_writer
    videos, records = [], []
    for i, n in enumerate(caption_counts):
        starts, ends, texts = _random_captions(rng, n)
        length = float(ends[-1]) * (1.0 if i % 2 else 0.4)
        streams = {s: (rng.normal(size=(max(1, int(length * rate)), dim))
                       .astype("f2"), rate)
                   for s, (dim, rate) in STREAMS.items()}
        videos.append((starts, ends, texts, streams))
        records.append(howto_writer.make_video_example(
            f"v{i}", {"start": starts.tolist(), "end": ends.tolist(),
                      "text": texts}, streams).SerializeToString())
    return videos, tf.constant(records)


def _config(**kwargs):
    from input_pipeline.howto import ClipConfig
    return ClipConfig(streams=tuple(STREAMS),
                      dims=tuple(d for d, _ in STREAMS.values()), **kwargs)


@pytest.mark.parametrize("min_time,min_words", [(5.0, 0), (0.0, 7),
                                                (3.0, 4), (100.0, 0),
                                                (0.0, 0)])
def test_sample_clips_batch_matches_reference(min_time, min_words):
    from input_pipeline.howto import parse_video_batch, sample_clips
    rng = np.random.default_rng(2)
    videos, records = _random_videos(rng, [1, 2, 7, 11, 5])
    cfg = _config(n_pair=9, min_time=min_time, min_words=min_words,
                  max_words=5)
    encoder = _encoder()
    # In a graph, as in tf.data (unknown numbers of draws and steps).
    out = tf.function(lambda r: sample_clips(
        parse_video_batch(r, cfg), tf.constant([7, 8], tf.int64), cfg,
        encoder))(records)
    assert out["video"].shape == (5 * 9, 10) and out["ids"].shape == (45, 5)
    for row, index in enumerate(out["caption"].numpy()):
        starts, ends, texts, streams = videos[row // 9]  # pairs contiguous
        lo, hi, order = reference_grow(starts, ends, texts, int(index),
                                       min_time, min_words)
        assert out["ids"][row].numpy().tolist() == _reference_ids(
            texts, order, 5), row
        expected = np.concatenate([
            reference_pool(frames.astype("f4"), np.float32(rate), starts[lo],
                           ends[hi]) for frames, rate in streams.values()])
        np.testing.assert_allclose(out["video"][row], expected, atol=1e-6,
                                   err_msg=f"pair {row}")


def test_sample_clips_draws_uniformly_per_video():
    from input_pipeline.howto import parse_video_batch, sample_clips
    rng = np.random.default_rng(3)
    _, records = _random_videos(rng, [4, 4, 1])
    cfg = _config(n_pair=4000, min_time=0.0)
    videos = parse_video_batch(records, cfg)
    caption = sample_clips(videos, tf.constant([1, 2], tf.int64), cfg,
                           _encoder())["caption"].numpy().reshape(3, 4000)
    # 4000 draws of 4 captions: 1000 each, standard deviation 27.
    for counts in (np.bincount(caption[0], minlength=4),
                   np.bincount(caption[1], minlength=4)):
        assert counts.tolist() != [1000] * 4
        assert np.all(np.abs(counts - 1000) < 150), counts
    assert not np.array_equal(caption[0], caption[1])  # independent draws
    assert np.all(caption[2] == 0)
    other = sample_clips(videos, tf.constant([1, 3], tf.int64), cfg,
                         _encoder())["caption"].numpy().reshape(3, 4000)
    assert not np.array_equal(other[0], caption[0])


def test_parse_video_batch_equals_parse_video():
    from input_pipeline.howto import parse_video, parse_video_batch
    rng = np.random.default_rng(4)
    _, records = _random_videos(rng, [3, 1, 6])
    cfg = _config()
    batch = parse_video_batch(records, cfg)
    for i in range(3):
        one = parse_video(records[i], cfg)
        assert batch["video_id"][i] == one["video_id"]
        for key in ("start", "end", "text"):
            assert batch[key][i].numpy().tolist() == one[key].numpy().tolist()
        for s in STREAMS:
            np.testing.assert_array_equal(batch[f"frames/{s}"][i],
                                          one[f"frames/{s}"])
            assert batch[f"rate/{s}"][i] == one[f"rate/{s}"]
    from input_pipeline.howto import ClipConfig
    wrong = ClipConfig(streams=("2d",), dims=(5,))
    with pytest.raises(tf.errors.InvalidArgumentError, match="feature size"):
        parse_video_batch(records, wrong)


def test_max_pool_ranges_matches_numpy():
    from input_pipeline.howto import max_pool_ranges
    rng = np.random.default_rng(5)
    frames = rng.normal(size=(40, 3)).astype("f2")
    lo = rng.integers(0, 41, size=30)
    hi = np.minimum(lo + rng.integers(0, 12, size=30), 40)
    lo[[3, 29]] = hi[[3, 29]]  # empty ranges, one in the middle, one last
    lo[7], hi[7] = 0, 40
    out = max_pool_ranges(tf.constant(frames), tf.constant(lo, tf.int32),
                          tf.constant(hi, tf.int32)).numpy()
    for i in range(30):
        expected = (frames[lo[i]:hi[i]].max(axis=0) if hi[i] > lo[i]
                    else np.zeros(3, "f2"))
        np.testing.assert_array_equal(out[i], expected, err_msg=str(i))


def test_training_dataset_videos_batches(tmp_path):
    from input_pipeline.howto import training_dataset
    rng = np.random.default_rng(6)
    _, records = _random_videos(rng, [3, 5, 2, 8, 4, 6])
    paths = []
    for k in range(2):
        path = str(tmp_path / f"train-{k}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for r in records.numpy()[k::2]:
                writer.write(r)
        paths.append(path)
    cfg = _config(n_pair=3, min_time=5.0, max_words=4)
    ds = training_dataset(paths, "videos", cfg, _encoder(), batch_size=2,
                          seed=1, shuffle_buffer=4)
    assert ds.element_spec[0]["video"].shape == (6, 10)
    for features, labels in ds.take(4):
        assert features["text"].shape == (6, 4, 3) and labels.shape == (2,)
        video = features["video"].numpy()
        for part in (video[:, :6], video[:, 6:]):  # 2D, 3D: [6, dim]
            norms = np.linalg.norm(part, axis=-1)
            # Unit length, or zeros for a span past the stream's last frame.
            assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0)), norms
