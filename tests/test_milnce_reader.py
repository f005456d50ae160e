"""input_pipeline.milnce on small MIL-NCE records written with the project's
raw-video writer (``tfrecord_tools.video_writer.make_video_example``) plus
the caption keys.

Frames carry their identity: red = 4 * stored frame index, green = 16 *
(video number + 1) (so an all-zero padding frame is told apart from frame
0), blue = a left-to-right ramp (a horizontal flip is visible). JPEGs are
written at quality 100 without chroma subsampling, so the codes survive to
within +-1. Caption i of a record reads "Word<i> THE Common zzunknown", so
its word ids tell which caption was taken.

The candidate-window and clip-time rules are re-derived below in plain
Python from the original loader's description and compared exactly.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import features as keys
from input_pipeline import milnce
from tfrecord_tools import video_writer
from vidcore import text as text_lib
from vidcore import video as video_ops

HEIGHT, WIDTH = 20, 28
CFG = milnce.MilNCEClipConfig(num_frames=4, fps=5.0, video_size=16,
                              min_time=5.0, num_candidates=2, max_words=6,
                              num_windows_test=3)
WORDS = [f"word{i}" for i in range(12)] + ["the", "common"]


@pytest.fixture(scope="module")
def encoder():
    vectors = text_lib.WordVectors(WORDS, np.zeros((len(WORDS), 2)))
    return text_lib.TextEncoder(vectors, embeddings=False)


def word_id(word):
    return WORDS.index(word) + 1


def coded_frame(number, k, height=HEIGHT, width=WIDTH):
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = 4 * k
    image[..., 1] = 16 * (number + 1)
    image[..., 2] = np.linspace(40, 220, width).astype(np.uint8)[None, :]
    return tf.io.encode_jpeg(image, quality=100,
                             chroma_downsampling=False).numpy()


def caption_text(i):
    return f"Word{i} THE Common zzunknown"


def make_record(number, num_frames, captions=(), rate=5.0, start=0.0,
                label=None, splits=None, frames=None, media_id=None,
                height=HEIGHT, width=WIDTH):
    """Serialized MIL-NCE record; ``captions`` = [(start, end)] seconds
    (caption i's text is ``caption_text(i)``)."""
    if frames is None:
        frames = [coded_frame(number, k, height, width)
                  for k in range(num_frames)]
    clip = video_writer.DecodedClip(
        frames=frames, height=height, width=width, frame_rate=rate,
        start=start, end=start + num_frames / rate, source_frame_rate=30.0,
        source_duration=start + num_frames / rate)
    media_id = f"vid-{number}" if media_id is None else media_id
    example = video_writer.make_video_example(
        clip, media_id, f"{media_id}.mp4", label_index=label,
        label=None if label is None else f"class{label}")
    ctx = example.context.feature
    for i, (c_start, c_end) in enumerate(captions):
        ctx[keys.VIDEO_CAPTION_STRING].bytes_list.value.append(
            caption_text(i).encode())
        ctx[keys.VIDEO_CAPTION_START].float_list.value.append(c_start)
        ctx[keys.VIDEO_CAPTION_END].float_list.value.append(c_end)
    if splits is not None:
        ctx[keys.VIDEO_SPLITS].int64_list.value.extend(splits)
    return example.SerializeToString()


def write_shard(path, serialized):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for s in serialized:
            writer.write(s)
    return str(path)


def codes(clips):
    """float clips [..., T, S, S, 3] in [0, 1] -> (stored frame index, -1
    for zero frames [..., T]; video number [..., T]; flipped [..., T])."""
    rgb = np.asarray(clips, np.float64) * 255.0
    green = rgb[..., 1].mean(axis=(-1, -2))
    zero = green < 8
    frame = np.where(zero, -1, np.round(rgb[..., 0].mean(axis=(-1, -2)) / 4))
    number = np.where(zero, -1, np.round(green / 16) - 1)
    blue = rgb[..., 2].mean(axis=-2)  # [..., T, S]
    flipped = blue[..., -1] < blue[..., 0]
    return frame.astype(int), number.astype(int), flipped


def parsed(serialized, name="shard:record 0"):
    return milnce.parse_record(tf.constant(serialized), tf.constant(name))


# --------------------------------------------------------------------------- #
# The rules in plain Python.
# --------------------------------------------------------------------------- #
def ref_candidates(starts, ends, index, k):
    """K consecutive captions around ``index``: grow [lo, hi] by the
    neighbour with the shorter span (left only when strictly shorter); on
    reaching the first caption the window starts at 0, on reaching the last
    it starts (K - size) before lo; indices clipped to [0, n - 1]."""
    n = len(starts)
    lo = hi = index
    first = None
    for size in range(1, k):
        if lo == 0:
            first = 0
            break
        if hi == n - 1:
            first = lo - (k - size)
            break
        if ends[hi] - starts[lo - 1] < ends[hi + 1] - starts[lo]:
            lo -= 1
        else:
            hi += 1
    if first is None:
        first = lo
    return [min(max(first + i, 0), n - 1) for i in range(k)]


def ref_clip_time(starts, ends, index, min_time):
    """Caption span extended symmetrically (not below 0) to min_time, then
    truncated to ints."""
    start, end = starts[index], ends[index]
    if end - start < min_time:
        missing = min_time - end + start
        start = max(0, start - missing / 2)
        end = start + min_time
    return int(start), int(end)


def ref_start_range(start, end, clip_seconds):
    return start, int(max(start, end - clip_seconds))


def random_captions(rng, n):
    """float32-representable caption times on a half-second grid (ties
    between spans are common)."""
    gaps = rng.integers(0, 12, n) / 2.0
    starts = np.cumsum(gaps) + rng.integers(0, 6) / 2.0
    ends = starts + rng.integers(1, 20, n) / 2.0
    return (starts.astype(np.float32).tolist(),
            ends.astype(np.float32).tolist())


# --------------------------------------------------------------------------- #
# Config.
# --------------------------------------------------------------------------- #
def test_config_defaults_and_validation():
    cfg = milnce.MilNCEClipConfig()
    assert (cfg.num_frames, cfg.fps, cfg.video_size, cfg.min_time,
            cfg.num_candidates, cfg.max_words, cfg.crop_only,
            cfg.center_crop, cfg.random_flip, cfg.num_windows_test,
            cfg.window_margin) == (16, 5.0, 224, 5.0, 1, 20, True, False,
                                   True, 4, 0.4)
    assert cfg.clip_seconds == pytest.approx(3.2)
    for bad in ({"num_frames": 0}, {"fps": 0}, {"video_size": 2.5},
                {"num_candidates": -1}, {"min_time": -1.0},
                {"window_margin": float("nan")}, {"num_windows_test": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            milnce.MilNCEClipConfig(**bad)


# --------------------------------------------------------------------------- #
# Candidate window and clip time.
# --------------------------------------------------------------------------- #
def test_candidates_and_clip_time_equal_the_reference():
    spec = [tf.TensorSpec([None], tf.float32)] * 2 + [
        tf.TensorSpec([], tf.int32)]
    draws = {}
    for k in range(1, 6):
        def draw(starts, ends, index, k=k):
            return (milnce.candidate_indices(starts, ends, index, k),
                    *milnce.clip_time(starts, ends, index, CFG.min_time))
        draws[k] = tf.function(draw, input_signature=spec)
    rng = np.random.default_rng(0)
    checked = edge = 0
    for _ in range(40):
        n = int(rng.integers(1, 9))
        starts, ends = random_captions(rng, n)
        for index in range(n):
            want_time = ref_clip_time(starts, ends, index, CFG.min_time)
            for k, draw in draws.items():
                got, start, end = draw(tf.constant(starts), tf.constant(ends),
                                       tf.constant(index))
                want = ref_candidates(starts, ends, index, k)
                assert got.numpy().tolist() == want, (starts, ends, index, k)
                assert (int(start), int(end)) == want_time
                checked += 1
                edge += want[0] != min(index, n - 1) and index in (0, n - 1)
    assert checked > 500 and edge > 0


def test_candidates_edge_cases():
    starts, ends = [0.0, 2.0, 4.0, 6.0], [1.0, 3.0, 5.0, 7.0]
    pick = lambda i, k: milnce.candidate_indices(  # noqa: E731
        tf.constant(starts), tf.constant(ends), i, k).numpy().tolist()
    assert pick(0, 3) == [0, 1, 2]  # at the first caption: start 0
    assert pick(3, 3) == [1, 2, 3]  # at the last one: 3 - (3 - 1)
    assert pick(3, 6) == [0, 0, 0, 1, 2, 3]  # 3 - 5 < 0, clipped
    assert pick(1, 3) == [1, 2, 3]  # equal spans grow to the right
    assert pick(1, 4) == [0, 1, 2, 3]  # ... up to the last: 1 - (4 - 3)
    longer = [1.0, 3.0, 5.0, 9.0]  # the right neighbour's span is longer
    assert milnce.candidate_indices(tf.constant(starts), tf.constant(longer),
                                    2, 2).numpy().tolist() == [1, 2]
    assert pick(2, 1) == [2]
    one = milnce.candidate_indices(tf.constant([5.0]), tf.constant([6.0]),
                                   0, 4)
    assert one.numpy().tolist() == [0, 0, 0, 0]


def test_clip_start_seconds_cover_the_range_uniformly():
    starts, ends = [3.0, 20.0], [14.0, 22.5]
    cfg = milnce.MilNCEClipConfig(num_frames=16, fps=5.0)
    draw = tf.function(lambda seed: milnce.sample_clip(
        tf.constant(starts), tf.constant(ends), seed, cfg))
    seen = {0: [], 1: []}
    for s in range(400):
        got = draw(tf.constant([7, s], tf.int64))
        index = int(got["index"])
        start, end = ref_clip_time(starts, ends, index, cfg.min_time)
        assert (int(got["start"]), int(got["end"])) == (start, end)
        seen[index].append(int(got["start_second"]))
    # caption 0: [3, 14] -> seconds 3..int(14 - 3.2) = 10; caption 1 is
    # extended to [18.75, 23.75] -> [18, 23] -> seconds 18..19.
    assert ref_start_range(3, 14, cfg.clip_seconds) == (3, 10)
    for index, (lo, hi) in ((0, (3, 10)), (1, (18, 19))):
        values = seen[index]
        assert sorted(set(values)) == list(range(lo, hi + 1)), index
        counts = np.bincount(np.array(values) - lo)
        expected = len(values) / (hi - lo + 1)
        assert counts.min() > 0.5 * expected and counts.max() < 1.6 * expected
    assert 150 < len(seen[0]) < 250  # captions picked uniformly


# --------------------------------------------------------------------------- #
# Frames.
# --------------------------------------------------------------------------- #
def training_frames(record, start_second, cfg, seed=(0, 0)):
    clip = milnce.training_frames(parsed(record), start_second,
                                  tf.constant(seed, tf.int64), cfg)
    return codes(video_ops.to_float(clip).numpy())


def test_training_frames_are_the_right_ones_and_zero_padded():
    cfg = milnce.MilNCEClipConfig(num_frames=4, fps=5.0, video_size=16,
                                  center_crop=True, random_flip=False)
    record = make_record(1, 40)  # 8 s at 5 fps
    frames, numbers, flipped = training_frames(record, 2, cfg)
    assert frames.tolist() == [10, 11, 12, 13]
    assert numbers.tolist() == [1] * 4 and not flipped.any()
    assert training_frames(record, 7.6, cfg)[0].tolist() == [38, 39, -1, -1]
    assert training_frames(record, 9, cfg)[0].tolist() == [-1] * 4
    # stored at 10 fps: every second stored frame
    faster = make_record(2, 60, rate=10.0)
    assert training_frames(faster, 2, cfg)[0].tolist() == [20, 22, 24, 26]
    # a record starting at 1.4 s of its source video
    late = make_record(3, 20, start=1.4)
    assert training_frames(late, 2, cfg)[0].tolist() == [3, 4, 5, 6]


def test_frames_at_times_takes_the_nearest_frame_halves_up():
    # frame k of 10 at 4 fps shows 0.25 + k / 4 s
    times = [-1.0, 0.25, 0.37, 0.375, 0.5, 0.625, 2.4, 2.625, 2.875, 9.0]
    indices, valid = video_ops.frames_at_times(times, 0.25, 4.0, 10)
    assert indices.numpy().tolist() == [0, 0, 0, 1, 1, 2, 9, 9, 9, 9]
    assert valid.numpy().tolist() == [True] * 7 + [False] * 3


def _noise_record(num_frames, height=HEIGHT, width=WIDTH):
    rng = np.random.default_rng(num_frames)
    frames = [tf.io.encode_jpeg(rng.integers(0, 256, (height, width, 3),
                                             dtype=np.uint8)).numpy()
              for _ in range(num_frames)]
    return make_record(0, num_frames, frames=frames)


def test_crop_and_flip_bounds():
    record = _noise_record(3)
    video = parsed(record)
    decoded = video_ops.decode_frames(video["jpegs"]).numpy()  # [3, H, W, 3]
    stored = decoded[[0, 1, 2, 2]]  # frames 0, 1, 2 and one zero frame
    stored[3] = 0
    size = 16

    def run(cfg, seeds):
        fn = tf.function(lambda seed: milnce.training_frames(
            video, 0.0, seed, cfg))
        return [fn(tf.constant([3, s], tf.int64)).numpy() for s in seeds]

    # crop_only: a random 16 x 16 window of the stored frame.
    cfg = milnce.MilNCEClipConfig(num_frames=4, fps=5.0, video_size=size)
    windows = set()
    for clip in run(cfg, range(120)):
        found = [(top, left, flip)
                 for top in range(HEIGHT - size + 1)
                 for left in range(WIDTH - size + 1) for flip in (0, 1)
                 if np.array_equal(clip, (lambda w: w[:, :, ::-1] if flip
                                          else w)(
                     stored[:, top:top + size, left:left + size]))]
        assert len(found) == 1
        windows.add(found[0])
    assert {t for t, _, _ in windows} == set(range(HEIGHT - size + 1))
    assert {left for _, left, _ in windows} == set(range(WIDTH - size + 1))
    assert {f for _, _, f in windows} == {0, 1}
    # centre crop, no flip
    cfg = milnce.MilNCEClipConfig(num_frames=4, fps=5.0, video_size=size,
                                  center_crop=True, random_flip=False)
    for clip in run(cfg, range(3)):
        np.testing.assert_array_equal(clip, stored[:, 2:18, 6:22])
    # crop_only False: the 20 x 20 short-side square at a random left
    # offset 0..8, resized to 16 (centre: left 4); graph and eager resizes
    # may round a pixel differently (+-1).
    squares = [np.round(video_ops.resize(
        stored[:, :, left:left + HEIGHT], (size, size),
        antialias=True).numpy() * 255)
        for left in range(WIDTH - HEIGHT + 1)]

    def close(a, b):
        return np.abs(a.astype(np.float64) - b).max() <= 1

    cfg = milnce.MilNCEClipConfig(num_frames=4, fps=5.0, video_size=size,
                                  crop_only=False)
    found = set()
    for clip in run(cfg, range(80)):
        match = [(left, flip) for left, square in enumerate(squares)
                 for flip in (0, 1)
                 if close(clip, square[:, :, ::-1] if flip else square)]
        assert len(match) == 1
        found.add(match[0])
    assert {left for left, _ in found} == set(range(WIDTH - HEIGHT + 1))
    assert {f for _, f in found} == {0, 1}
    cfg = milnce.MilNCEClipConfig(num_frames=4, fps=5.0, video_size=size,
                                  crop_only=False, center_crop=True,
                                  random_flip=False)
    assert close(run(cfg, [0])[0], squares[4])


# --------------------------------------------------------------------------- #
# Training dataset.
# --------------------------------------------------------------------------- #
CAPTIONS = [(0.0, 1.5), (1.0, 2.0), (2.5, 6.5), (6.0, 7.0), (7.0, 7.5)]


@pytest.fixture(scope="module")
def training_shards(tmp_path_factory):
    directory = tmp_path_factory.mktemp("milnce_train")
    return [write_shard(directory / f"train-{i}.tfrecord",
                        [make_record(n, 40, CAPTIONS) for n in numbers])
            for i, numbers in enumerate(((0, 1), (2, 3)))]


def caption_of(ids):
    """word ids of one caption -> its caption number."""
    words = [WORDS[i - 1] for i in ids if i > 0]
    assert words[1:] == ["the", "common"]  # lower-cased, OOV dropped
    return int(words[0][4:])


def test_training_batches(training_shards, encoder):
    ds = milnce.training_dataset(training_shards, CFG, 3, encoder, seed=1)
    inputs, labels = ds.element_spec
    assert inputs["video"].shape.as_list() == [3, 4, 16, 16, 3]
    assert inputs["video"].dtype == tf.float32
    assert inputs["text"].shape.as_list() == [3, 2, 6]
    assert inputs["text"].dtype == tf.int32
    assert labels.shape.as_list() == [3] and labels.dtype == tf.int32
    starts = [s for s, _ in CAPTIONS]
    ends = [e for _, e in CAPTIONS]
    flips, numbers = [], set()
    for inputs, labels in ds.take(12):
        video, text = inputs["video"].numpy(), inputs["text"].numpy()
        assert video.min() >= 0 and video.max() <= 1
        assert not labels.numpy().any()
        frames, number, flipped = codes(video)
        for row in range(3):
            first = frames[row, 0]
            if first < 0:  # a clip starting past the stored 8 s: zeros
                assert (frames[row] == -1).all()
                seconds = range(8, 20)
            else:
                numbers.add(int(number[row, 0]))
                flips.append(bool(flipped[row, 0]))
                assert first % 5 == 0  # an integer second at 5 fps
                want = [first + j if first + j < 40 else -1
                        for j in range(4)]
                assert frames[row].tolist() == want
                seconds = [first // 5]
            candidates = [caption_of(ids) for ids in text[row]]
            # some picked caption explains both the candidates and the start
            ok = []
            for i in range(len(CAPTIONS)):
                lo, hi = ref_start_range(
                    *ref_clip_time(starts, ends, i, CFG.min_time),
                    CFG.clip_seconds)
                if (ref_candidates(starts, ends, i, 2) == candidates
                        and any(lo <= s <= hi for s in seconds)):
                    ok.append(i)
            assert ok, (candidates, first)
    assert numbers == {0, 1, 2, 3}
    assert 0 < sum(flips) < len(flips)


def test_training_per_worker_sharding_and_seed(training_shards, encoder):
    seen = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2,
                                             input_pipeline_id=worker)
        # deterministic: with a parallel, unordered read the clip shuffle
        # may draw 8 clips of one video (seen once, on a loaded machine).
        ds = milnce.training_dataset(training_shards, CFG, 2, encoder,
                                     input_context=context,
                                     deterministic=True)
        seen.append({int(n) for inputs, _ in ds.take(4)
                     for n in codes(inputs["video"].numpy())[1][:, 0]}
                    - {-1})  # -1: a clip past the stored frames
    assert seen == [{0, 1}, {2, 3}]

    def batches(seed):
        ds = milnce.training_dataset(training_shards, CFG, 2, encoder,
                                     seed=seed, deterministic=True)
        return [inputs["video"].numpy() for inputs, _ in ds.take(3)]

    a, b, c = batches(4), batches(4), batches(5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))


# --------------------------------------------------------------------------- #
# Evaluation.
# --------------------------------------------------------------------------- #
def ref_window_frames(c_start, c_end, rec_start, rate, num_frames, cfg):
    """numpy linspace window starts -> stored frame of every window frame
    (-1 past the end)."""
    starts = np.linspace(c_start, max(c_start, c_end - cfg.num_frames
                                      / cfg.fps - cfg.window_margin),
                         cfg.num_windows_test)
    out = []
    for s in starts:
        row = []
        for j in range(cfg.num_frames):
            k = math.floor((s + j / cfg.fps - rec_start) * rate + 0.5)
            row.append(k if k < num_frames else -1)
        out.append(row)
    return out


@pytest.mark.parametrize("margin", [0.4, 0.1])
def test_retrieval_windows_every_record_once(tmp_path, encoder, margin):
    cfg = milnce.MilNCEClipConfig(num_frames=4, fps=5.0, video_size=16,
                                  num_windows_test=3, max_words=5,
                                  window_margin=margin)
    # (number, frames, rate, record start, caption start, caption end):
    # YouCook2-like segments of a longer video, MSR-VTT-like whole videos,
    # a caption shorter than a window, one running past the frames.
    specs = [(0, 40, 5.0, 10.0, 11.0, 16.3), (1, 40, 5.0, 0.0, 0.0, 8.0),
             (2, 30, 10.0, 0.0, 0.0, 2.95), (3, 12, 5.0, 3.0, 3.3, 3.9),
             (4, 10, 5.0, 0.0, 0.0, 9.0)]
    records = [make_record(n, f, [(cs, ce)], rate=r, start=s)
               for n, f, r, s, cs, ce in specs]
    path = write_shard(tmp_path / "eval.tfrecord", records[:3])
    other = write_shard(tmp_path / "eval2.tfrecord", records[3:])
    batches = list(milnce.retrieval_dataset([path, other], cfg, 2, encoder))
    assert len(batches) == 3
    video = np.concatenate([b["video"].numpy() for b in batches])
    text = np.concatenate([b["text"].numpy() for b in batches])
    index = np.concatenate([b["index"].numpy() for b in batches])
    mask = np.concatenate([b["mask"].numpy() for b in batches])
    assert video.shape == (6, 3, 4, 16, 16, 3) and video.dtype == np.float32
    assert text.shape == (6, 5) and text.dtype == np.int32
    assert index.tolist() == [0, 1, 2, 3, 4, -1]
    assert mask.tolist() == [True] * 5 + [False]
    assert not video[5].any() and not text[5].any()
    frames, numbers, flipped = codes(video[:5])
    assert not flipped.any()
    for row, (n, f, r, s, cs, ce) in enumerate(specs):
        cs, ce = float(np.float32(cs)), float(np.float32(ce))
        want = ref_window_frames(cs, ce, s, r, f, cfg)
        assert frames[row].tolist() == want, (row, want)
        assert set(numbers[row][frames[row] >= 0].tolist()) == {n}
        ids = [word_id("word0"), word_id("the"), word_id("common"), 0, 0]
        assert text[row].tolist() == ids
    assert milnce.video_ids([path, other]) == [f"vid-{n}" for n in range(5)]


def test_retrieval_window_is_the_centre_square():
    record = _noise_record(4)
    video = parsed(record)
    decoded = video_ops.decode_frames(video["jpegs"])
    square = video_ops.resize(decoded[:, :, 4:24], (16, 16), antialias=True)
    want = np.round(square.numpy() * 255)
    indices = tf.constant([[0, 1, 2, 3]])
    clips = milnce.window_clips(video, indices, tf.constant([[True] * 4]),
                                16)
    np.testing.assert_allclose(clips[0].numpy(), want, atol=1)
    assert clips.dtype == tf.uint8


def test_classification_windows_and_labels(tmp_path):
    cfg = milnce.MilNCEClipConfig(num_frames=4, video_size=16,
                                  num_windows_test=4)
    specs = [(0, 20, 3, [1, 2, 0]), (1, 11, 7, [2, 1, 1]), (2, 3, 50, None)]
    path = write_shard(tmp_path / "hmdb.tfrecord", [
        make_record(n, f, rate=30.0, label=label, splits=splits)
        for n, f, label, splits in specs])
    batches = list(milnce.classification_dataset([path], cfg, 2))
    video = np.concatenate([b["video"].numpy() for b in batches])
    assert video.shape == (4, 4, 4, 16, 16, 3)
    label = np.concatenate([b["label"].numpy() for b in batches])
    splits = np.concatenate([b["splits"].numpy() for b in batches])
    index = np.concatenate([b["index"].numpy() for b in batches])
    mask = np.concatenate([b["mask"].numpy() for b in batches])
    assert label.dtype == np.int32 and splits.dtype == np.int32
    assert label[:3].tolist() == [3, 7, 50]
    assert splits[:3].tolist() == [[1, 2, 0], [2, 1, 1], [0, 0, 0]]
    assert index.tolist() == [0, 1, 2, -1] and mask.tolist() == [1, 1, 1, 0]
    frames, _, _ = codes(video[:3])
    for row, (_, f, _, _) in enumerate(specs):
        padded = max(f, cfg.num_frames)
        starts = np.linspace(0, padded - cfg.num_frames,
                             cfg.num_windows_test, dtype=int)
        want = [[s + j if s + j < f else -1 for j in range(cfg.num_frames)]
                for s in starts]
        assert frames[row].tolist() == want
    assert frames[0, :, 0].tolist() == [0, 5, 10, 16]  # 16 / 3 truncated
    assert frames[2, 0].tolist() == [0, 1, 2, -1]  # short video padded


def test_feature_windows_cover_each_video(tmp_path):
    cfg = milnce.MilNCEClipConfig(num_frames=4, fps=5.0, video_size=16)
    # (number, frames, rate, record start) -> windows of 4 frames at 5 fps
    specs = [(0, 10, 5.0, 0.0), (1, 7, 10.0, 2.0), (2, 1, 5.0, 0.0),
             (3, 17, 25.0, 0.0)]
    path = write_shard(tmp_path / "videos.tfrecord", [
        make_record(n, f, rate=r, start=s) for n, f, r, s in specs])
    batches = list(milnce.feature_windows_dataset([path], cfg, 3))
    rows = {key: np.concatenate([b[key].numpy() for b in batches])
            for key in batches[0]}
    assert rows["video"].shape[1:] == (4, 16, 16, 3)
    assert rows["video_index"].dtype == np.int64
    assert rows["window_index"].dtype == np.int32
    assert rows["start_time"].dtype == np.float32
    real = rows["mask"]
    frames, numbers, _ = codes(rows["video"])
    got = {}
    for i in np.flatnonzero(real):
        got.setdefault(int(rows["video_index"][i]), []).append(
            (int(rows["window_index"][i]), float(rows["start_time"][i]),
             frames[i].tolist()))
    want = {
        0: [(0, 0.0, [0, 1, 2, 3]), (1, 0.8, [4, 5, 6, 7]),
            (2, 1.6, [8, 9, -1, -1])],
        1: [(0, 2.0, [0, 2, 4, 6])],
        2: [(0, 0.0, [0, -1, -1, -1])],
        # 17 frames at 25 fps = 0.68 s -> 4 frames at 5 fps
        3: [(0, 0.0, [0, 5, 10, 15])],
    }
    assert got.keys() == want.keys()
    for v, windows in want.items():
        assert [(w, f) for w, _, f in got[v]] == [(w, f) for w, _, f in
                                                  windows]
        np.testing.assert_allclose([t for _, t, _ in got[v]],
                                   [t for _, t, _ in windows], atol=1e-6)
    total = sum(len(w) for w in want.values())
    assert real.sum() == total and len(real) == 3 * math.ceil(total / 3)
    assert (rows["video_index"][~real] == -1).all()
    assert (rows["window_index"][~real] == -1).all()
    assert not rows["video"][~real].any()


# --------------------------------------------------------------------------- #
# Bad data.
# --------------------------------------------------------------------------- #
def test_errors_name_shard_record_and_id(tmp_path, encoder):
    uncaptioned = write_shard(tmp_path / "nocap-shard.tfrecord", [
        make_record(0, 20, CAPTIONS), make_record(1, 20)])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"no caption[\s\S]*nocap-shard.tfrecord:record 1"
                             r" \(id vid-1\)"):
        for _ in milnce.training_dataset([uncaptioned], CFG, 2, encoder,
                                         shuffle_buffer=1).take(5):
            pass
    not_jpeg = write_shard(tmp_path / "pngs.tfrecord", [
        make_record(0, 10, [(0.0, 2.0)]),
        make_record(1, 3, [(0.0, 2.0)], frames=[b"\x89PNG...."] * 3)])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"not JPEG[\s\S]*pngs.tfrecord:record 1 "
                             r"\(id vid-1\)"):
        list(milnce.retrieval_dataset([not_jpeg], CFG, 2, encoder))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"not JPEG[\s\S]*pngs.tfrecord:record 1 "
                             r"\(id vid-1\)"):
        for _ in milnce.training_dataset([not_jpeg], CFG, 2, encoder,
                                         shuffle_buffer=1).take(5):
            pass
    unlabelled = write_shard(tmp_path / "nolabel.tfrecord",
                             [make_record(0, 10)])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"no class index[\s\S]*"
                             r"nolabel.tfrecord:record 0"):
        list(milnce.classification_dataset([unlabelled], CFG, 2))
    small = write_shard(tmp_path / "small.tfrecord", [
        make_record(0, 10, CAPTIONS, height=12, width=14)])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"smaller than video_size 16[\s\S]*"
                             r"small.tfrecord:record 0"):
        next(iter(milnce.training_dataset([small], CFG, 1, encoder)))
