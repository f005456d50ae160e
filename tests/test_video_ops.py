"""vidcore.video: every op eagerly and inside tf.data, against numpy
references and plain-Python statements of torchvision's sampling rules."""

import io
import math
import sys

import numpy as np
import pytest
import tensorflow as tf

from vidcore import video


def _in_dataset(fn, *args):
    """Runs ``fn(*args)`` inside a tf.data map with fully unknown input
    shapes (the hardest graph case) and returns numpy outputs."""
    args = [tf.convert_to_tensor(a) for a in args]
    specs = tuple(tf.TensorSpec([None] * a.shape.rank, a.dtype)
                  for a in args)
    ds = tf.data.Dataset.from_generator(lambda: iter([tuple(args)]),
                                        output_signature=specs)
    return next(iter(ds.map(fn))).numpy()


def _in_dataset_many(fn, cases):
    """Runs ``fn`` on every argument tuple of ``cases`` in one tf.data
    pipeline (unknown input shapes); returns the numpy outputs in order."""
    cases = [tuple(tf.convert_to_tensor(a) for a in c) for c in cases]
    specs = tuple(tf.TensorSpec([None] * a.shape.rank, a.dtype)
                  for a in cases[0])
    ds = tf.data.Dataset.from_generator(lambda: iter(cases),
                                        output_signature=specs)
    return [out.numpy() for out in ds.map(fn)]


def _both_many(fn, cases):
    """fn eagerly and in one tf.data pipeline for every case; asserts they
    agree; returns the eager results."""
    eager = [fn(*c).numpy() for c in cases]
    for e, g in zip(eager, _in_dataset_many(fn, cases)):
        np.testing.assert_array_equal(e, g)
    return eager


def _both(fn, *args):
    """fn eagerly and in tf.data; asserts they agree; returns the result."""
    eager = fn(*args).numpy()
    graph = _in_dataset(fn, *args)
    np.testing.assert_array_equal(eager, graph)
    return eager


def _torchvision():
    """torch + torchvision in a process running TensorFlow (hide triton:
    its native library and TensorFlow's crash together)."""
    pytest.importorskip("torch")
    if "triton" not in sys.modules:
        sys.modules["triton"] = None
    return pytest.importorskip("torchvision")


# --------------------------------------------------------------------------- #
# Plain-Python statements of torchvision's rules.
# --------------------------------------------------------------------------- #
def tv_resample(n, source_fps, target_fps):
    """VideoClips.compute_clips_for_video + _resample_video_idx."""
    if not target_fps:
        return list(range(n))
    step = source_fps / target_fps
    if float(step).is_integer():
        return list(range(n))[::int(step)]
    total = math.floor(n * target_fps / source_fps)
    return [int(v) for v in np.floor(np.arange(total, dtype=np.float32)
                                     * np.float32(step))]


def tv_uniform_starts(num_candidates, num_clips):
    """torch.linspace(0, c - 1, k).floor() in float32, as torch computes
    it: first half start + i * step, second half end - (k-1-i) * step."""
    end = np.float32(num_candidates - 1)
    if num_clips == 1:
        return [0]
    step = np.float32(end / np.float32(num_clips - 1))
    out = []
    for i in range(num_clips):
        if i < num_clips // 2:
            v = np.float32(np.float32(i) * step)
        else:
            v = np.float32(end - np.float32(num_clips - 1 - i) * step)
        out.append(int(np.floor(v)))
    return out


# --------------------------------------------------------------------------- #
# Decoding.
# --------------------------------------------------------------------------- #
def _jpegs(frames, quality=90):
    return tf.stack([tf.io.encode_jpeg(f, quality=quality) for f in frames])


def test_decode_frames_matches_pil_eager_and_in_dataset():
    image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 24, 40, 3), dtype=np.uint8)
    jpegs = _jpegs(frames)
    decoded = _both(video.decode_frames, jpegs)
    assert decoded.shape == (4, 24, 40, 3) and decoded.dtype == np.uint8
    for j, got in zip(jpegs.numpy(), decoded):
        want = np.asarray(image.open(io.BytesIO(j)).convert("RGB"))
        np.testing.assert_array_equal(got, want)


def test_decode_frames_errors_name_the_video():
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    good = _jpegs(frames)
    bad = tf.concat([good, tf.constant([b"not a jpeg"])], axis=0)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"not JPEG[\s\S]*shard-7:record 2"):
        video.decode_frames(bad, tf.constant("shard-7:record 2"))
    mixed = tf.concat([good, _jpegs(np.zeros((1, 8, 10, 3), np.uint8))], 0)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"differ in size[\s\S]*clip-x"):
        _in_dataset(lambda j: video.decode_frames(j, "clip-x"), mixed)


# --------------------------------------------------------------------------- #
# Temporal sampling.
# --------------------------------------------------------------------------- #
RESAMPLE_CASES = [
    (n, src, tgt)
    for n in (0, 1, 7, 30, 75, 301)
    for src, tgt in ((30.0, 15.0), (30.0, 30.0), (29.97, 15.0),
                     (25.0, 15.0), (24.0, 15.0), (15.0, 30.0), (10.0, 15.0),
                     (60.0, 7.5), (30.0, None), (30.0, 0))
]


def test_resample_indices_follow_torchvision_rule():
    for n, src, tgt in RESAMPLE_CASES:
        got = video.resample_indices(n, src, tgt).numpy().tolist()
        assert got == tv_resample(n, src, tgt), (n, src, tgt)


def test_resample_indices_in_dataset_with_tensor_rates():
    cases = [(n, src, float(tgt)) for n, src, tgt in RESAMPLE_CASES
             if tgt is not None]
    got = _in_dataset_many(
        video.resample_indices,
        [(tf.constant(n), tf.constant(src, tf.float32),
          tf.constant(tgt, tf.float32)) for n, src, tgt in cases])
    for (n, src, tgt), indices in zip(cases, got):
        want = tv_resample(n, float(np.float32(src)), float(np.float32(tgt)))
        assert indices.tolist() == want, (n, src, tgt)


def test_resample_indices_against_torchvision_itself():
    _torchvision()
    from torchvision.datasets.video_utils import VideoClips
    for n, src, tgt in RESAMPLE_CASES:
        if not tgt:
            continue
        total = math.floor(n * tgt / src)
        idx = VideoClips._resample_video_idx(total, src, tgt)
        want = (list(range(n))[idx] if isinstance(idx, slice)
                else idx.tolist())
        assert video.resample_indices(n, src, tgt).numpy().tolist() == want


def test_resample_needs_a_stored_rate():
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"source_fps\) > 0[\s\S]*vid-9"):
        video.resample_indices(10, 0.0, 15.0, video_id="vid-9")


def test_random_starts_rule():
    for n, clip_len, k in [(75, 16, 5), (20, 16, 5), (16, 16, 5), (10, 16, 5),
                           (40, 4, 1), (100, 8, 50)]:
        candidates = max(n - clip_len + 1, 1)
        results = _both_many(
            lambda m, sd, c=clip_len, k=k: video.clip_starts_random(
                m, c, k, sd),
            [(tf.constant(n), tf.constant([s, 7], tf.int64))
             for s in range(5)])
        for s, starts in enumerate(results):
            seed = tf.constant([s, 7], tf.int64)
            assert len(starts) == min(candidates, k)
            assert len(set(starts.tolist())) == len(starts)  # distinct
            assert starts.min() >= 0 and starts.max() <= candidates - 1
            assert starts.tolist() == sorted(starts.tolist())
            again = video.clip_starts_random(n, clip_len, k, seed).numpy()
            np.testing.assert_array_equal(starts, again)  # reproducible
    draws = {tuple(video.clip_starts_random(75, 16, 5, [s, 0]).numpy())
             for s in range(10)}
    assert len(draws) > 5  # the seed matters


def test_random_starts_are_uniform_over_candidates():
    counts = np.zeros(10, int)
    for s in range(300):
        starts = video.clip_starts_random(12, 3, 3, [s, 1]).numpy()
        counts[starts] += 1
    # 900 draws over 10 candidates: 90 each expected (deterministic seeds).
    assert counts.min() > 60 and counts.max() < 120, counts


def test_uniform_starts_rule():
    cases = [(n, clip_len, k) for n in (1, 5, 16, 17, 30, 75, 150, 301)
             for clip_len in (4, 16) for k in (1, 2, 3, 5, 10)]
    for n, clip_len, k in cases:
        got = video.clip_starts_uniform(n, clip_len, k).numpy()
        assert got.tolist() == tv_uniform_starts(max(n - clip_len + 1, 1), k)
    for clip_len, k in ((4, 3), (16, 5)):
        _both_many(lambda m, c=clip_len, k=k: video.clip_starts_uniform(
            m, c, k),
                   [(tf.constant(n),) for n in (1, 5, 16, 17, 30, 75)])
    # Hand-checked: 7 candidates, 3 clips -> 0, 3, 6; 2 candidates,
    # 5 clips -> duplicates 0, 0, 0, 0, 1.
    assert video.clip_starts_uniform(10, 4, 3).numpy().tolist() == [0, 3, 6]
    assert video.clip_starts_uniform(5, 4, 5).numpy().tolist() == [
        0, 0, 0, 0, 1]


def test_uniform_starts_against_torch_linspace():
    torch = pytest.importorskip("torch")
    for candidates in range(1, 120):
        for k in (1, 2, 3, 4, 5, 7, 10):
            want = torch.linspace(0, candidates - 1, steps=k).floor()
            got = video.clip_starts_uniform(candidates + 15, 16, k)
            assert got.numpy().tolist() == want.long().tolist()


def test_short_videos_are_padded_with_the_last_frame():
    got = _both(lambda n: video.clip_indices(n, 5, 3, "uniform"),
                tf.constant(3))
    np.testing.assert_array_equal(got, [[0, 1, 2, 2, 2]] * 3)
    got = video.clip_indices(3, 5, 3, "random", seed=[0, 0]).numpy()
    np.testing.assert_array_equal(got, [[0, 1, 2, 2, 2]])
    # 7 frames at 30 fps -> 15 fps: frames 0, 2, 4, 6, then padding.
    got = video.clip_indices(7, 6, 2, "uniform", 30.0, 15.0).numpy()
    np.testing.assert_array_equal(got, [[0, 2, 4, 6, 6, 6]] * 2)
    # 1 frame at 25 fps -> 15 fps resamples to nothing: frame 0 is kept.
    got = video.clip_indices(1, 4, 2, "random", 25.0, 15.0, [1, 2]).numpy()
    np.testing.assert_array_equal(got, [[0, 0, 0, 0]])


def test_clip_indices_are_windows_of_the_resampled_frames():
    for n, src, tgt in [(75, 30.0, 15.0), (90, 25.0, 15.0), (40, 10.0, 15.0)]:
        resampled = tv_resample(n, src, tgt)
        for mode, seed in (("random", [3, 4]), ("uniform", None)):
            got = video.clip_indices(n, 8, 5, mode, src, tgt, seed).numpy()
            assert got.shape == (5, 8)
            for row in got.tolist():
                starts = [s for s in range(len(resampled) - 7)
                          if resampled[s:s + 8] == row]
                assert starts, (row, resampled)


def test_zero_frames_is_an_error_naming_the_video():
    for mode, seed in (("random", [0, 0]), ("uniform", None)):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"no frames[\s\S]*empty-video-7"):
            video.clip_indices(0, 16, 5, mode, 30.0, 15.0, seed,
                               video_id="empty-video-7")
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"no frames[\s\S]*empty-video-8"):
            _in_dataset(lambda n, mode=mode, seed=seed: video.clip_indices(
                n, 16, 5, mode, 30.0, 15.0, seed, "empty-video-8"),
                tf.constant(0))


# --------------------------------------------------------------------------- #
# Spatial ops.
# --------------------------------------------------------------------------- #
def _np_bilinear(x, out_h, out_w):
    """Bilinear, half-pixel centres, no antialias (numpy, float64)."""
    def axis(n_in, n_out):
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0, None)
        lo = np.minimum(np.floor(pos).astype(int), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, pos - lo

    y0, y1, wy = axis(x.shape[-3], out_h)
    x0, x1, wx = axis(x.shape[-2], out_w)
    x = x.astype(np.float64)
    rows = (x[..., y0, :, :] * (1 - wy)[:, None, None]
            + x[..., y1, :, :] * wy[:, None, None])
    return (rows[..., x0, :] * (1 - wx)[:, None]
            + rows[..., x1, :] * wx[:, None])


def test_resize_matches_numpy_bilinear():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    for size in ((128, 171), (20, 27), (40, 60)):
        got = _both(lambda f, size=size: video.resize(f, size), frames)
        assert got.dtype == np.float32 and got.shape == (3,) + size + (3,)
        want = _np_bilinear(frames / 255.0, *size)
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert got.min() >= 0 and got.max() <= 1


def test_resize_against_torch(capsys):
    torch = pytest.importorskip("torch")
    _torchvision()
    from torchvision.transforms.v2 import functional as tvf
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (4, 150, 200, 3), dtype=np.uint8)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    report = []
    for size in ((128, 171), (96, 100), (240, 320)):
        ours = video.resize(frames, size).numpy()
        ref = torch.nn.functional.interpolate(
            x, size=size, mode="bilinear", align_corners=False)
        ref_tv = tvf.resize(x, list(size), antialias=False)
        ours_aa = video.resize(frames, size, antialias=True).numpy()
        ref_aa = tvf.resize(x, list(size), antialias=True)
        diffs = [np.abs(ours - r.permute(0, 2, 3, 1).numpy()).max()
                 for r in (ref, ref_tv)]
        diff_aa = np.abs(ours_aa - ref_aa.permute(0, 2, 3, 1).numpy()).max()
        report.append(f"{size}: interpolate {diffs[0]:.2e}, tv resize "
                      f"{diffs[1]:.2e}, antialias {diff_aa:.2e}")
        assert max(diffs) < 1e-5 and diff_aa < 1e-5
    with capsys.disabled():
        print("\nresize max |TF - torch|:", "; ".join(report))


def _coded(t, h, w):
    """Frames whose value encodes (frame, row, column) uniquely."""
    tt, yy, xx = np.meshgrid(np.arange(t), np.arange(h), np.arange(w),
                             indexing="ij")
    return np.stack([tt, yy, xx], axis=-1).astype(np.int32)


def test_random_crop_is_one_window_per_clip_and_covers_all_offsets():
    frames = _coded(3, 9, 12)
    tops, lefts = set(), set()
    results = _both_many(lambda f, sd: video.random_crop(f, (5, 6), sd),
                         [(frames, tf.constant([s, 5], tf.int64))
                          for s in range(60)])
    for got in results:
        assert got.shape == (3, 5, 6, 3)
        top, left = got[0, 0, 0, 1], got[0, 0, 0, 2]
        np.testing.assert_array_equal(
            got, frames[:, top:top + 5, left:left + 6])  # same for all t
        tops.add(int(top))
        lefts.add(int(left))
    assert tops == set(range(5)) and lefts == set(range(7))
    with pytest.raises(tf.errors.InvalidArgumentError, match="cannot crop"):
        video.random_crop(frames, 10, [0, 0])


def test_center_crop_rounds_like_torchvision():
    frames = _coded(2, 128, 171)
    got = _both(lambda f: video.center_crop(f, 112), frames)
    # (128-112)/2 = 8; (171-112)/2 = 29.5 -> 30 (round half to even).
    np.testing.assert_array_equal(got, frames[:, 8:120, 30:142])
    small = _coded(1, 9, 10)
    got = video.center_crop(small, (4, 5)).numpy()  # 2.5 -> 2, 2.5 -> 2
    np.testing.assert_array_equal(got, small[:, 2:6, 2:7])
    _torchvision()
    import torch
    from torchvision.transforms.v2 import functional as tvf
    for h, w in ((128, 171), (9, 10), (11, 13)):
        x = _coded(1, h, w)
        ref = tvf.center_crop(torch.from_numpy(x).permute(0, 3, 1, 2),
                              [4, 5]).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(video.center_crop(x, (4, 5)), ref)


def test_random_flip_is_consistent_per_clip():
    frames = _coded(4, 3, 5)
    flips = 0
    results = _both_many(video.random_flip,
                         [(frames, tf.constant([s, 9], tf.int64))
                          for s in range(100)])
    for got in results:
        if np.array_equal(got, frames[:, :, ::-1]):
            flips += 1
        else:
            np.testing.assert_array_equal(got, frames)
    assert 30 <= flips <= 70, flips


def test_flip_left_right_is_reverse_of_the_width_axis():
    rng = np.random.default_rng(6)
    for shape in ((5, 7, 3), (2, 5, 7, 3), (2, 3, 4, 6, 3)):
        for dtype in (np.uint8, np.float32):
            x = (rng.random(shape) * 255).astype(dtype)
            got = _both(video.flip_left_right, x)
            np.testing.assert_array_equal(got, x[..., ::-1, :])


def test_crop_window_and_flip_decision_are_those_of_the_clip_ops():
    frames = _coded(2, 9, 12)
    for s in range(20):
        seed = tf.constant([s, 3], tf.int64)
        top, left = video.random_crop_window(9, 12, (5, 6), seed)
        np.testing.assert_array_equal(
            video.random_crop(frames, (5, 6), seed),
            frames[:, top:top + 5, left:left + 6])
        flipped = bool(video.random_flip_decision(seed))
        want = frames[:, :, ::-1] if flipped else frames
        np.testing.assert_array_equal(video.random_flip(frames, seed), want)


def test_crop_clips_crops_and_flips_each_clip():
    frames = _coded(6, 9, 12)  # value = (frame, row, column)
    rng = np.random.default_rng(2)
    for count in (1, 3, 4):  # fewer clips than max_clips too
        indices = rng.integers(0, 6, (count, 5)).astype(np.int32)
        tops = rng.integers(0, 5, count).astype(np.int32)
        lefts = rng.integers(0, 7, count).astype(np.int32)
        flips = rng.random(count) < 0.5
        want = []
        for c in range(count):
            clip = frames[indices[c], tops[c]:tops[c] + 5,
                          lefts[c]:lefts[c] + 6]
            want.append(clip[:, :, ::-1] if flips[c] else clip)
        got = _both(lambda f, i, t, l, fl: video.crop_clips(
            f, i, t, l, (5, 6), fl, max_clips=4),
            frames, indices, tops, lefts, flips)
        np.testing.assert_array_equal(got, np.stack(want))
        unflipped = video.crop_clips(frames, indices, tops, lefts, (5, 6))
        np.testing.assert_array_equal(
            unflipped, np.stack([frames[indices[c], tops[c]:tops[c] + 5,
                                        lefts[c]:lefts[c] + 6]
                                 for c in range(count)]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="cannot crop"):
        video.crop_clips(frames, indices, tops, lefts, (10, 6))
    with pytest.raises(ValueError, match="max_clips"):
        _in_dataset(lambda f, i: video.crop_clips(f, i, [0], [0], 2),
                    frames, indices)


def test_normalize_matches_numpy():
    assert video.KINETICS_MEAN == (0.43216, 0.394666, 0.37645)  # the spec
    assert video.KINETICS_STD == (0.22803, 0.22145, 0.216989)
    rng = np.random.default_rng(3)
    x = rng.random((2, 4, 5, 3)).astype(np.float32)
    got = _both(video.normalize, x)
    want = ((x - np.array(video.KINETICS_MEAN, np.float32))
            / np.array(video.KINETICS_STD, np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    u8 = (x * 255).astype(np.uint8)
    got = video.normalize(u8, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).numpy()
    np.testing.assert_allclose(got, (u8 / 255.0 - 0.5) / 0.25, atol=1e-5)


def test_resize_to_the_same_size_is_the_identity():
    frames = np.random.default_rng(4).integers(0, 256, (2, 6, 7, 3),
                                               dtype=np.uint8)
    for antialias in (False, True):
        got = _both(lambda f, a=antialias: video.resize(f, (6, 7), a), frames)
        np.testing.assert_array_equal(got, frames.astype(np.float32) / 255)


def test_decode_no_frames():
    empty = tf.constant([], tf.string)
    assert _both(video.decode_frames, empty).shape == (0, 0, 0, 3)
