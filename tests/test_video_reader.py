"""input_pipeline.video on small raw-video TFRecords written here, and
vidcore.metrics.clip_and_video_accuracy.

Frames carry their identity: red = 4 * frame index, green = 16 * video
number, blue = a left-to-right ramp (so a horizontal flip is visible).
JPEGs are written at quality 100 without chroma subsampling, so the codes
survive to within +-1.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import features as keys
from input_pipeline import video as reader
from vidcore import metrics

CFG = reader.VideoClipConfig(clip_len=4, frame_rate=15.0, clips_per_video=3,
                             resize=(24, 32), crop_size=16)
HEIGHT, WIDTH = 20, 28


def make_video(number, num_frames, fps=30.0, label=True, media_id=None,
               frames=None):
    """Serialized SequenceExample of video ``number`` (see module doc)."""
    ex = tf.train.SequenceExample()
    ctx = ex.context.feature
    media_id = f"video-{number:03d}" if media_id is None else media_id
    ctx[keys.VIDEO_MEDIA_ID].bytes_list.value.append(media_id.encode())
    if label:
        ctx[keys.VIDEO_LABEL_INDEX].int64_list.value.append(number)
    ctx[keys.VIDEO_FRAME_RATE].float_list.value.append(fps)
    ctx[keys.VIDEO_HEIGHT].int64_list.value.append(HEIGHT)
    ctx[keys.VIDEO_WIDTH].int64_list.value.append(WIDTH)
    ctx[keys.VIDEO_FORMAT].bytes_list.value.append(b"JPEG")
    feature_list = ex.feature_lists.feature_list[keys.VIDEO_IMAGE_ENCODED]
    ramp = np.linspace(40, 220, WIDTH).astype(np.uint8)
    for t in range(num_frames):
        if frames is not None:
            data = frames[t]
        else:
            image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            image[..., 0] = 4 * t
            image[..., 1] = 16 * number
            image[..., 2] = ramp[None, :]
            data = tf.io.encode_jpeg(image, quality=100,
                                     chroma_downsampling=False).numpy()
        feature_list.feature.add().bytes_list.value.append(data)
    return ex.SerializeToString()


def write_shard(path, serialized):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for s in serialized:
            writer.write(s)
    return str(path)


# Video number -> (frames, stored fps). Frame counts cover long videos,
# exactly one clip, shorter than a clip, non-integer resampling (25 fps).
VIDEOS = {0: (20, 30.0), 1: (30, 30.0), 2: (8, 30.0), 3: (5, 30.0),
          4: (25, 25.0), 5: (40, 30.0), 6: (12, 15.0)}
SHARDS = ((0, 1, 2), (3, 4), (5, 6))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    directory = tmp_path_factory.mktemp("video_shards")
    return [write_shard(directory / f"train-{i:02d}.tfrecord",
                        [make_video(n, *VIDEOS[n]) for n in numbers])
            for i, numbers in enumerate(SHARDS)]


def decode_codes(clips, cfg=CFG):
    """float clips [..., T, h, w, 3] -> (frame index [..., T],
    video number [...], flipped [...] bool)."""
    rgb = (clips * np.array(cfg.std) + np.array(cfg.mean)) * 255.0
    frame = np.round(rgb[..., :, :, :, 0].mean(axis=(-1, -2)) / 4)
    number = np.round(rgb[..., 1].mean(axis=(-1, -2, -3)) / 16)
    blue = rgb[..., 2].mean(axis=-2)  # [..., T, w]
    slope = blue[..., -1] - blue[..., 0]  # [..., T]
    flipped = slope < 0
    assert np.all(flipped == flipped[..., :1])  # one decision per clip
    return frame.astype(int), number.astype(int), flipped[..., 0]


def resampled(number, cfg=CFG):
    """torchvision's frame-rate resampling of video ``number``."""
    n, fps = VIDEOS[number]
    step = fps / cfg.frame_rate
    if step.is_integer():
        return list(range(n))[::int(step)]
    total = math.floor(n * cfg.frame_rate / fps)
    return [int(v) for v in np.floor(np.arange(total, dtype=np.float32)
                                     * np.float32(step))]


def uniform_starts(candidates, k):
    """torch.linspace(0, candidates - 1, k).floor() (exact for these
    small cases)."""
    if k == 1:
        return [0]
    return [math.floor(i * (candidates - 1) / (k - 1)) for i in range(k)]


def window_start(frames, number, cfg=CFG):
    """Start of ``frames`` as a clip of the resampled video (padded with
    the last frame), or None."""
    indices = resampled(number, cfg) or [0]
    for s in range(max(len(indices) - cfg.clip_len + 1, 1)):
        window = indices[s:s + cfg.clip_len]
        window += [window[-1]] * (cfg.clip_len - len(window))
        if list(frames) == window:
            return s
    return None


# --------------------------------------------------------------------------- #
# Parsing.
# --------------------------------------------------------------------------- #
def test_parse_video():
    parsed = reader.parse_video(tf.constant(make_video(3, 5, fps=24.0)))
    assert parsed["num_frames"].numpy() == 5
    assert parsed["jpegs"].shape == (5,)
    assert parsed["label"].dtype == tf.int32 and parsed["label"] == 3
    assert parsed["media_id"].numpy() == b"video-003"
    assert parsed["frame_rate"].numpy() == 24.0
    unlabelled = reader.parse_video(make_video(2, 1, label=False))
    assert unlabelled["label"].numpy() == -1


# --------------------------------------------------------------------------- #
# Training.
# --------------------------------------------------------------------------- #
def test_training_batches(shards):
    ds = reader.training_dataset(shards, CFG, batch_size=6, seed=3)
    spec = ds.element_spec
    assert spec[0].shape.as_list() == [6, 4, 16, 16, 3]
    assert spec[0].dtype == tf.float32
    assert spec[1].shape.as_list() == [6] and spec[1].dtype == tf.int32
    flips = []
    for clips, labels in ds.take(8):
        clips, labels = clips.numpy(), labels.numpy()
        rgb = clips * np.array(CFG.std) + np.array(CFG.mean)
        assert rgb.min() > -0.01 and rgb.max() < 1.01
        frames, numbers, flipped = decode_codes(clips)
        np.testing.assert_array_equal(numbers, labels)
        flips.extend(flipped.tolist())
        for row, number in zip(frames, numbers):
            # consecutive frames of the video resampled to 15 fps
            assert window_start(row, number) is not None, (row, number)
    assert 0 < sum(flips) < len(flips)  # some clips flipped, some not


def test_training_clips_of_one_video_are_distinct_random_windows():
    record = make_video(5, 40)  # 40 frames at 30 fps -> 20 -> 17 starts
    video = reader.parse_video(record)
    cfg = reader.VideoClipConfig(clip_len=4, clips_per_video=5,
                                 resize=(24, 32), crop_size=16, flip=False)
    seen = set()
    for s in range(4):
        clips, labels = reader.training_clips(
            video, tf.constant("shard:record 0"),
            tf.constant([0, s], tf.int64), cfg)
        assert clips.shape == (5, 4, 16, 16, 3)
        np.testing.assert_array_equal(labels, [5] * 5)
        frames, _, flipped = decode_codes(clips.numpy(), cfg)
        assert not flipped.any()
        starts = [window_start(row, 5, cfg) for row in frames]
        assert None not in starts and len(set(starts)) == 5
        seen.add(tuple(starts))
    assert len(seen) > 1  # the seed changes the draw
    short = reader.parse_video(make_video(3, 5))  # 3 frames at 15 fps
    clips, _ = reader.training_clips(short, tf.constant("s:record 1"),
                                     tf.constant([0, 0], tf.int64), cfg)
    frames, _, _ = decode_codes(clips.numpy(), cfg)
    np.testing.assert_array_equal(frames, [[0, 2, 4, 4]])  # padded


def test_training_is_reproducible_with_a_seed(shards):
    def first(seed):
        ds = reader.training_dataset(shards, CFG, 5, seed=seed,
                                     deterministic=True)
        return [c.numpy() for c, _ in ds.take(3)]

    a, b, c = first(7), first(7), first(8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))


def test_stored_rate_and_default_size(tmp_path):
    path = write_shard(tmp_path / "a.tfrecord",
                       [make_video(1, 30), make_video(2, 20)])
    cfg = reader.VideoClipConfig(clip_len=4, frame_rate=None,
                                 clips_per_video=2)
    clips, _ = next(iter(reader.training_dataset([path], cfg, 3)))
    assert clips.shape == (3, 4, 112, 112, 3)  # 128x171 resize, 112 crop
    frames, _, _ = decode_codes(clips.numpy(), cfg)
    for row in frames:
        np.testing.assert_array_equal(np.diff(row), 1)  # every stored frame


def test_two_replicas_distribute_training(shards):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    global_batch = 4

    def dataset_fn(context):
        return reader.training_dataset(
            shards, CFG, context.get_per_replica_batch_size(global_batch),
            input_context=context, seed=context.input_pipeline_id)

    dist = strategy.distribute_datasets_from_function(dataset_fn)

    @tf.function
    def step(batch):
        def replica(clips, labels):
            del clips  # the count of rows is what is checked
            return tf.reduce_sum(tf.ones_like(labels))
        counts = strategy.run(replica, args=batch)
        return strategy.reduce("SUM", counts, axis=None)

    iterator = iter(dist)
    for _ in range(2):
        batch = next(iterator)
        local = strategy.experimental_local_results(batch[0])
        assert [t.shape.as_list() for t in local] == [[2, 4, 16, 16, 3]] * 2
        assert int(step(batch)) == global_batch


# --------------------------------------------------------------------------- #
# Evaluation.
# --------------------------------------------------------------------------- #
def test_evaluation_every_video_once_with_uniform_clips(shards):
    ds = reader.evaluation_dataset(shards, CFG, batch_size=4)
    rows = []
    batches = 0
    for clips, labels, index, mask in ds:
        batches += 1
        assert clips.shape == (4, 4, 16, 16, 3) and mask.dtype == tf.bool
        assert index.dtype == tf.int64 and labels.dtype == tf.int32
        frames, numbers, flipped = decode_codes(clips.numpy())
        assert not flipped.any()
        for i in range(4):
            rows.append((bool(mask[i]), int(index[i]), int(labels[i]),
                         int(numbers[i]), frames[i].tolist()))
    order = [n for shard in SHARDS for n in shard]
    total = len(order) * CFG.clips_per_video
    assert batches == -(-total // 4)
    real = [r for r in rows if r[0]]
    assert len(real) == total and all(not r[0] for r in rows[total:])
    assert all(r[1] == -1 for r in rows[total:])
    for position, number in enumerate(order):
        mine = real[position * 3:(position + 1) * 3]  # consecutive rows
        assert [r[1] for r in mine] == [position] * 3
        assert [r[2] for r in mine] == [number] * 3
        assert [r[3] for r in mine] == [number] * 3
        count = len(resampled(number) or [0])
        want = uniform_starts(max(count - CFG.clip_len + 1, 1), 3)
        assert [window_start(r[4], number) for r in mine] == want
    ids = reader.video_ids(shards)
    assert ids == [f"video-{n:03d}" for n in order]
    assert reader.num_videos(shards) == len(order)


def test_evaluation_centre_crop(tmp_path):
    path = write_shard(tmp_path / "a.tfrecord", [make_video(1, 30)])
    cfg = reader.VideoClipConfig(clip_len=4, clips_per_video=1,
                                 resize=(HEIGHT, WIDTH), crop_size=10)
    clips = next(iter(reader.evaluation_dataset([path], cfg, 1)))[0]
    rgb = (clips.numpy() * np.array(cfg.std) + np.array(cfg.mean)) * 255
    ramp = np.linspace(40, 220, WIDTH)
    # same size resize: centre columns 9..18 of the ramp
    np.testing.assert_allclose(rgb[0, 0, 0, :, 2], ramp[9:19], atol=1.5)


# --------------------------------------------------------------------------- #
# Bad data.
# --------------------------------------------------------------------------- #
def test_truncated_shard_is_named(shards, tmp_path):
    with open(shards[1], "rb") as fh:
        data = fh.read()
    bad = tmp_path / "broken-shard.tfrecord"
    bad.write_bytes(data[:len(data) - 100])
    files = [shards[0], str(bad)]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="broken-shard.tfrecord"):
        for _ in reader.evaluation_dataset(files, CFG, 4):
            pass
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="broken-shard.tfrecord"):
        for _ in reader.training_dataset([str(bad)], CFG, 2).take(20):
            pass


def test_bad_records_are_named(tmp_path):
    not_jpeg = write_shard(tmp_path / "pngs.tfrecord", [
        make_video(1, 10), make_video(2, 3, frames=[b"\x89PNG...."] * 3)])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"not JPEG[\s\S]*pngs.tfrecord:record 1"
                             r"[\s\S]*video-002"):
        list(reader.evaluation_dataset([not_jpeg], CFG, 4))
    empty = write_shard(tmp_path / "empty.tfrecord", [make_video(4, 0)])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"no frames[\s\S]*empty.tfrecord:record 0"):
        list(reader.evaluation_dataset([empty], CFG, 4))
    unlabelled = write_shard(tmp_path / "nolabel.tfrecord",
                             [make_video(4, 10, label=False)])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"no class index[\s\S]*nolabel.tfrecord"):
        next(iter(reader.training_dataset([unlabelled], CFG, 2)))
    no_rate = write_shard(tmp_path / "norate.tfrecord",
                          [make_video(4, 10, fps=0.0)])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"stored frame rate[\s\S]*norate.tfrecord"
                             r"[\s\S]*video-004"):
        list(reader.evaluation_dataset([no_rate], CFG, 4))
    garbage = write_shard(tmp_path / "garbage.tfrecord", [b"\x01\x02junk"])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="garbage.tfrecord:record 0"):
        list(reader.evaluation_dataset([garbage], CFG, 4))


# --------------------------------------------------------------------------- #
# clip_and_video_accuracy.
# --------------------------------------------------------------------------- #
def _loop_accuracy(probs, labels, video_index, ks):
    """Plain loops: rank = #higher + #equal with a lower class index."""
    def hit(scores, y, k):
        rank = sum(1 for c, s in enumerate(scores)
                   if s > scores[y] or (s == scores[y] and c < y))
        return rank < k

    out = {}
    for k in ks:
        out[f"clip_acc@{k}"] = 100.0 * np.mean(
            [hit(p, y, k) for p, y in zip(probs, labels)])
    videos = sorted(set(video_index.tolist()))
    for k in ks:
        hits = []
        for v in videos:
            rows = [i for i in range(len(labels)) if video_index[i] == v]
            mean = [sum(float(probs[i][c]) for i in rows) / len(rows)
                    for c in range(probs.shape[1])]
            hits.append(hit(mean, labels[rows[0]], k))
        out[f"video_acc@{k}"] = 100.0 * np.mean(hits)
    out["num_clips"], out["num_videos"] = len(labels), len(videos)
    return out


def test_clip_and_video_accuracy_matches_loops():
    rng = np.random.default_rng(0)
    num_videos, clips, classes = 40, 5, 12
    video_index = np.repeat(rng.permutation(100)[:num_videos] * 3, clips)
    video_labels = rng.integers(0, classes, num_videos)
    labels = np.repeat(video_labels, clips)
    logits = rng.normal(size=(num_videos * clips, classes)) * 2
    logits[np.arange(len(labels)), labels] += 1.5
    # quantised probabilities make ties common
    probs = np.round(np.exp(logits) / np.exp(logits).sum(1, keepdims=True),
                     2).astype(np.float32)
    order = rng.permutation(len(labels))  # clips in any order
    args = probs[order], labels[order], video_index[order]
    got = metrics.clip_and_video_accuracy(*args, top_k=(1, 3, 5))
    want = _loop_accuracy(*args, (1, 3, 5))
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key
    assert 0 < got["clip_acc@1"] < got["clip_acc@5"] < 100


def test_accuracy_tie_rule_and_errors():
    # all scores equal: the true class is ranked by its index
    probs = np.full((3, 4), 0.25)
    got = metrics.clip_and_video_accuracy(probs, [0, 1, 3], [0, 1, 2],
                                          top_k=(1, 2))
    assert got["clip_acc@1"] == pytest.approx(100 / 3)  # class 0 only
    assert got["clip_acc@2"] == pytest.approx(200 / 3)  # classes 0, 1
    # video means: a video with a clip-level hit can still be a miss
    probs = np.array([[0.6, 0.4], [0.0, 1.0], [0.1, 0.9]])
    got = metrics.clip_and_video_accuracy(probs, [0, 0, 1], [7, 7, 8],
                                          top_k=(1,))
    assert got == {"clip_acc@1": pytest.approx(200 / 3),
                   "video_acc@1": pytest.approx(50.0),
                   "num_clips": 3, "num_videos": 2}
    with pytest.raises(ValueError, match="video 7"):
        metrics.clip_and_video_accuracy(probs, [0, 1, 1], [7, 7, 8])
    with pytest.raises(ValueError, match="outside"):
        metrics.clip_and_video_accuracy(probs, [0, 2, 1], [7, 7, 8])


def test_training_clip_equals_the_ops_composition():
    """Both paths (frames stored at the resize size: no resize, uint8 until
    normalised; other sizes: float resize) equal decode -> resize -> crop ->
    normalise done with the ops."""
    from vidcore import video as video_ops
    rng = np.random.default_rng(5)
    noise = [tf.io.encode_jpeg(rng.integers(0, 256, (HEIGHT, WIDTH, 3),
                                            dtype=np.uint8)).numpy()
             for _ in range(8)]
    record = make_video(2, 8, frames=noise)  # 30 fps -> 4 frames: one clip
    parsed = reader.parse_video(record)
    decoded = video_ops.decode_frames(parsed["jpegs"])[::2]  # 15 fps
    for resize in ((HEIGHT, WIDTH), (24, 32)):
        cfg = reader.VideoClipConfig(clip_len=4, clips_per_video=2,
                                     resize=resize, crop_size=16, flip=False)
        clips, _ = reader.training_clips(parsed, tf.constant("s:record 0"),
                                         tf.constant([1, 2], tf.int64), cfg)
        assert clips.shape == (1, 4, 16, 16, 3)
        frames = video_ops.resize(decoded, resize)
        matches = [
            (top, left)
            for top in range(resize[0] - 15) for left in range(resize[1] - 15)
            if np.array_equal(clips[0], video_ops.normalize(
                frames[:, top:top + 16, left:left + 16]))]
        assert len(matches) == 1, (resize, matches)


def _noise_video(number, num_frames, height, width, seed):
    rng = np.random.default_rng(seed)
    frames = [tf.io.encode_jpeg(rng.integers(0, 256, (height, width, 3),
                                             dtype=np.uint8)).numpy()
              for _ in range(num_frames)]
    return make_video(number, num_frames, frames=frames)


def test_batches_mixing_stored_size_and_resized_videos(tmp_path):
    """Frames stored at the resize size travel as uint8 and are normalised
    per batch, others are resized to float per video: batches that mix the
    two kinds equal the clips of each video made alone."""
    sizes = [(HEIGHT, WIDTH), (24, 32), (HEIGHT, WIDTH), (30, 36)]
    serialized = [_noise_video(n, 12, h, w, seed=n)
                  for n, (h, w) in enumerate(sizes)]
    path = write_shard(tmp_path / "mixed.tfrecord", serialized)
    cfg = reader.VideoClipConfig(clip_len=4, clips_per_video=3,
                                 resize=(HEIGHT, WIDTH), crop_size=16)
    kinds = [bool(reader.training_clip_pixels(
        reader.parse_video(s), tf.constant("x"),
        tf.constant([0, 0], tf.int64), cfg)[0]["is_stored"][0])
        for s in serialized]
    assert kinds == [True, False, True, False]
    # Evaluation: batches of 4 rows straddle videos of both kinds.
    want = np.concatenate([
        reader.evaluation_clips(reader.parse_video(s), tf.constant("x"),
                                cfg)[0].numpy() for s in serialized])
    batches = list(reader.evaluation_dataset([path], cfg, 4))
    got = np.concatenate([b[0].numpy() for b in batches])
    mask = np.concatenate([b[3].numpy() for b in batches])
    np.testing.assert_array_equal(got[:len(want)], want)
    assert mask.sum() == len(want) and not got[len(want):].any()
    # Training: every row is one of its video's clips, made alone.
    own = {i: [] for i in range(len(serialized))}
    for i, s in enumerate(serialized):
        name = tf.constant(f"{path}:record {i}")
        for file_pass in range(3):
            clips, _ = reader.training_clips(
                reader.parse_video(s), name,
                reader._video_seed(5, name, tf.constant(file_pass, tf.int64)),
                cfg)
            own[i].extend(clips.numpy())
    ds = reader.training_dataset([path], cfg, 4, seed=5, shuffle_buffer=1,
                                 deterministic=True)
    for clips, labels in ds.take(3):  # 12 clips of the first two passes
        for clip, label in zip(clips.numpy(), labels.numpy()):
            assert any(np.array_equal(clip, c) for c in own[label])


def test_pixels_normalised_in_the_step_equal_the_normalised_batches(
        tmp_path):
    """normalize=False hands over the batch's clip pixels (uint8 where
    frames are stored at the resize size); normalize_clip_pixels on them
    gives the normalize=True batches bit for bit (run eagerly; padding rows
    of the last evaluation batch and batches that mix both kinds included).
    In a tf.function, as kinetics.train / kinetics.eval run it in the
    replica step, Grappler may rewrite the division: equal to 1e-6."""
    sizes = [(HEIGHT, WIDTH), (24, 32), (HEIGHT, WIDTH), (30, 36),
             (HEIGHT, WIDTH)]
    path = write_shard(tmp_path / "mixed.tfrecord", [
        _noise_video(n, 12, h, w, seed=n) for n, (h, w) in enumerate(sizes)])
    cfg = reader.VideoClipConfig(clip_len=4, clips_per_video=3,
                                 resize=(HEIGHT, WIDTH), crop_size=16)
    def normalise(pixels):
        return reader.normalize_clip_pixels(pixels, cfg)

    in_step = tf.function(normalise)
    stored = []
    for batch, raw in zip(reader.evaluation_dataset([path], cfg, 4),
                          reader.evaluation_dataset([path], cfg, 4,
                                                    normalize=False)):
        mask = batch[3].numpy()
        np.testing.assert_array_equal(normalise(raw[0]).numpy()[mask],
                                      batch[0].numpy()[mask])
        np.testing.assert_allclose(in_step(raw[0]).numpy()[mask],
                                   batch[0].numpy()[mask], rtol=0, atol=1e-6)
        for i in (1, 2, 3):
            np.testing.assert_array_equal(raw[i], batch[i])
        stored.append(raw[0]["stored"].dtype)
    assert set(stored) == {tf.uint8}
    kwargs = dict(seed=5, shuffle_buffer=1, deterministic=True)
    for (clips, labels), (pixels, raw_labels) in zip(
            reader.training_dataset([path], cfg, 4, **kwargs).take(4),
            reader.training_dataset([path], cfg, 4, normalize=False,
                                    **kwargs).take(4)):
        np.testing.assert_array_equal(normalise(pixels).numpy(),
                                      clips.numpy())
        np.testing.assert_array_equal(raw_labels, labels)
