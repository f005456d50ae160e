"""The AVLnet readers (input_pipeline.avl) against plain-Python statements
of the original's samplers (youtube_dataloader.py, youcook_dataloader.py,
msrvtt_dataloader.py): window start seconds, frame windows, pooling ranges,
zero padding and nframes; evaluation order and the clips without audio."""

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import avl
from test_howto_sampler import reference_grow, reference_pool
from tfrecord_tools import howto_eval_sets
from tfrecord_tools import howto_writer

STREAMS = {"2d": (6, 1.0), "3d": (4, 1.5)}  # dim, frames per second
VOCAB = ["cut", "the", "onion", "add", "salt", "stir", "it's", "pan"]


# -- the original's rules, in plain Python -------------------------------------
def ref_time_to_frames(seconds):
    """librosa.time_to_frames(t, sr=16000, hop_length=160, n_fft=400)."""
    return math.floor((int(seconds * 16000) - 200) / 160)


def ref_frames_to_time(frames):
    """librosa.frames_to_time(f, sr=16000, hop_length=160, n_fft=400)."""
    return (frames * 160 + 200) / 16000


def ref_zero_pad(audio, max_frames):
    """The original's _zero_pad_audio: (padded [40, max_frames], nframes)."""
    n = audio.shape[1]
    if n >= max_frames:
        return audio[:, :max_frames], max_frames
    return np.pad(audio, ((0, 0), (0, max_frames - n))), n


def ref_random_window(mel, streams, start, audio_frames):
    """_get_audio_random + _get_video for one drawn start second."""
    audio_seconds = int(ref_frames_to_time(audio_frames))
    first = max(0, ref_time_to_frames(start))
    audio, nframes = ref_zero_pad(mel[:, first:first + audio_frames],
                                  audio_frames)
    video = np.concatenate([
        reference_pool(frames.astype("f4"), rate, start,
                       start + audio_seconds)
        for frames, rate in streams.values()])
    return audio, nframes, video


def ref_start_choices(num_frames, audio_frames):
    video_seconds = int(ref_frames_to_time(num_frames))
    audio_seconds = int(ref_frames_to_time(audio_frames))
    return max(1, video_seconds - (audio_seconds + 1))


def ref_caption_audio(mel, start, end, audio_frames):
    """_get_single_audio_text's audio, with the first frame clamped at 0
    (the original's slice would wrap: see input_pipeline.avl)."""
    first = max(0, ref_time_to_frames(start))
    return ref_zero_pad(mel[:, first:max(first, ref_time_to_frames(end))],
                        audio_frames)


# -- data ----------------------------------------------------------------------
def _tokens(text):
    return re.findall(r"[\w']+", text)


def _encoder():
    from vidcore.text import TextEncoder, WordVectors
    vectors = np.arange(len(VOCAB) * 3, dtype="f4").reshape(-1, 3)
    return TextEncoder(WordVectors(VOCAB, vectors))


def _config(**kwargs):
    return avl.AVLClipConfig(streams=tuple(STREAMS),
                             dims=tuple(d for d, _ in STREAMS.values()),
                             **kwargs)


def _video(rng, index, seconds, num_captions, first_start=0.0):
    """A video of `seconds` with captions, float16 frames and a random
    float16 spectrogram of 1 + 100 * seconds frames."""
    starts = first_start + np.sort(rng.uniform(0, seconds - 2,
                                               num_captions))
    starts[0] = first_start
    ends = np.minimum(starts + rng.uniform(0.5, 4.0, num_captions), seconds)
    texts = [" ".join(rng.choice(VOCAB, rng.integers(1, 5)))
             for _ in range(num_captions)]
    streams = {s: howto_writer.Stream(
        rng.normal(size=(max(1, int(seconds * rate)), dim)).astype("f2"),
        rate) for s, (dim, rate) in STREAMS.items()}
    frames = 1 + int(seconds * 100)
    mel = rng.uniform(-80, 0, size=(40, frames)).astype("f2")
    captions = {"start": starts.astype("f4").tolist(),
                "end": ends.astype("f4").tolist(), "text": texts}
    record = howto_writer.make_video_example(
        f"v{index}", captions, streams,
        howto_writer.Audio(mel, frames, 16000)).SerializeToString()
    return {"captions": captions, "streams": streams, "mel": mel,
            "record": record}


def _videos(seed, seconds, first_start=0.0):
    rng = np.random.default_rng(seed)
    return [_video(rng, i, s, 6, first_start) for i, s in enumerate(seconds)]


# -- random windows ------------------------------------------------------------
@pytest.mark.parametrize("audio_frames", [1000, 250, 3000])
def test_random_windows_match_reference(audio_frames):
    videos = _videos(0, [40.0, 3.2, 12.5, 25.0])
    cfg = _config(n_pair=7, audio_frames=audio_frames)
    records = tf.constant([v["record"] for v in videos])
    out = tf.function(lambda r: avl.sample_random_windows(
        avl.parse_video_batch(r, cfg), tf.constant([3, 4], tf.int64),
        cfg))(records)
    assert out["audio"].shape == (28, 40, audio_frames)
    audio_seconds = int(ref_frames_to_time(audio_frames))
    for row in range(28):
        v = videos[row // 7]  # pairs of a video contiguous
        start = float(out["start"][row])
        assert start == int(start)
        assert 0 <= start < ref_start_choices(v["mel"].shape[1],
                                              audio_frames)
        assert float(out["end"][row]) == start + audio_seconds
        audio, nframes, video = ref_random_window(
            v["mel"].astype("f4"), v["streams"], int(start), audio_frames)
        np.testing.assert_array_equal(out["audio"][row], audio,
                                      err_msg=f"row {row}")
        assert int(out["nframes"][row]) == nframes, row
        np.testing.assert_allclose(out["video"][row], video, atol=1e-6,
                                   err_msg=f"row {row}")


def test_random_window_starts_cover_the_range_uniformly():
    # 16 s (1601 frames), 500-frame windows (5 s): starts 0 .. 9; a 3 s
    # video: always 0, and the window runs past its end (zero padding).
    videos = _videos(1, [16.0, 3.0])
    cfg = _config(n_pair=5000, audio_frames=500)
    out = avl.sample_random_windows(
        avl.parse_video_batch(tf.constant([v["record"] for v in videos]),
                              cfg), tf.constant([5, 6], tf.int64), cfg)
    start = out["start"].numpy().reshape(2, 5000)
    counts = np.bincount(start[0].astype(int), minlength=10)
    assert len(counts) == 10 and np.all(np.abs(counts - 500) < 90), counts
    assert np.all(start[1] == 0)
    assert np.all(out["nframes"].numpy().reshape(2, -1)[1] == 301)


# -- caption spans -------------------------------------------------------------
@pytest.mark.parametrize("min_time", [8.0, 0.5])
def test_caption_spans_match_reference(min_time):
    # first_start 0.004 s: the first caption's first frame is -2, clamped.
    videos = _videos(2, [30.0, 9.0, 18.0], first_start=0.004)
    cfg = _config(n_pair=6, audio_frames=700, min_time=min_time,
                  random_audio_windows=False, needs_text=True, max_words=6)
    encoder = _encoder()
    records = tf.constant([v["record"] for v in videos])
    out = tf.function(lambda r: avl.sample_caption_spans(
        avl.parse_video_batch(r, cfg), tf.constant([8, 9], tf.int64), cfg,
        encoder))(records)
    assert out["audio"].shape == (18, 40, 700)
    saw_first = False
    for row, index in enumerate(out["caption"].numpy()):
        v = videos[row // 6]
        c = v["captions"]
        starts, ends = np.array(c["start"], "f4"), np.array(c["end"], "f4")
        lo, hi, order = reference_grow(starts, ends, c["text"], int(index),
                                       min_time, 0)
        saw_first |= lo == 0
        assert float(out["start"][row]) == starts[lo]
        assert float(out["end"][row]) == ends[hi]
        audio, nframes = ref_caption_audio(v["mel"].astype("f4"),
                                           float(starts[lo]),
                                           float(ends[hi]), 700)
        np.testing.assert_array_equal(out["audio"][row], audio,
                                      err_msg=f"row {row}")
        assert int(out["nframes"][row]) == nframes, row
        expected = np.concatenate([
            reference_pool(frames.astype("f4"), np.float32(rate), starts[lo],
                           ends[hi]) for frames, rate in
            v["streams"].values()])
        np.testing.assert_allclose(out["video"][row], expected, atol=1e-6)
        ids = [VOCAB.index(t) + 1 for k in order
               for t in _tokens(c["text"][k])][:6]
        assert out["ids"][row].numpy().tolist() == ids + [0] * (6 - len(ids))
    assert saw_first  # the clamped negative first frame was exercised


def test_decode_windows_clamps_and_pads():
    mel = np.arange(40 * 10, dtype="f2").reshape(40, 10)
    data = tf.constant([mel.T.astype("<f2").tobytes()])
    audio, nframes = avl.decode_windows(
        data, tf.constant([8]), tf.constant([[-3, 4, 9, 12]]),
        tf.constant([[4, 4, 4, 4]]), 5)
    assert nframes.numpy().tolist() == [4, 4, 0, 0]
    np.testing.assert_array_equal(audio[0], np.pad(mel[:, :4], [[0, 0],
                                                                 [0, 1]]))
    np.testing.assert_array_equal(audio[1], np.pad(mel[:, 4:8], [[0, 0],
                                                                 [0, 1]]))
    assert not np.any(audio[2:])


# -- datasets -------------------------------------------------------------------
def _write(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for r in records:
            writer.write(r)
    return str(path)


@pytest.mark.parametrize("random_windows", [True, False])
def test_training_dataset_videos(tmp_path, random_windows):
    videos = _videos(3, [20.0, 12.0, 30.0, 8.0])
    path = _write(tmp_path / "train.tfrecord", [v["record"] for v in videos])
    cfg = _config(n_pair=3, audio_frames=400, min_time=5.0,
                  random_audio_windows=random_windows,
                  needs_text=not random_windows, max_words=4)
    ds = avl.training_dataset([path], "videos", cfg, _encoder(),
                              batch_size=2, seed=1, shuffle_buffer=4)
    for features, labels in ds.take(3):
        assert features["video"].shape == (6, 10)
        assert features["audio"].shape == (6, 40, 400)
        assert features["audio"].dtype == tf.float32
        assert features["nframes"].dtype == tf.int32
        assert ("text" in features) == (not random_windows)
        assert labels.shape == (2,)
        # Audio beyond nframes is zero padding.
        for row, n in enumerate(features["nframes"].numpy()):
            assert not np.any(features["audio"][row, :, n:])


def _clip_records(rng, ids, frames, texts):
    records = []
    for clip_id, n, text in zip(ids, frames, texts):
        pooled = {s: rng.normal(size=dim).astype("f4")
                  for s, (dim, _) in STREAMS.items()}
        audio = None if n is None else howto_writer.Audio(
            rng.uniform(-80, 0, size=(40, n)), n, 16000)
        records.append((howto_eval_sets.make_clip_example(
            clip_id, None, text, pooled, audio).SerializeToString(), pooled,
            audio))
    return records


def test_evaluation_every_clip_once_in_order_and_missing_audio(tmp_path):
    rng = np.random.default_rng(4)
    ids = [f"video{i}" for i in range(7)]
    frames = [3500, None, 100, 3072, 5000, None, 1]
    texts = [["cut the onion"], ["add salt"], ["stir it's"], ["pan"],
             ["the onion", "other"], ["salt"], ["cut"]]
    made = _clip_records(rng, ids, frames, texts)
    paths = [_write(tmp_path / "a.tfrecord", [m[0] for m in made[:4]]),
             _write(tmp_path / "b.tfrecord", [m[0] for m in made[4:]])]
    cfg = _config(eval_audio_frames=3072, needs_text=True, max_words=3)
    batches = list(avl.evaluation_dataset(paths, cfg, _encoder(), 3))
    assert len(batches) == 3
    from input_pipeline.records import decode_ids
    seen, rows = [], []
    for features, mask in batches:
        assert features["audio"].shape == (3, 40, 3072)
        for i in np.flatnonzero(mask.numpy()):
            seen.append(decode_ids(features["clip_id"][i:i + 1])[0])
            rows.append({k: v[i].numpy() for k, v in features.items()})
    assert seen == ids  # every clip once, file order
    for row, (_, pooled, audio), n, text in zip(rows, made, frames, texts):
        if audio is None:
            assert not row["has_audio"] and row["nframes"] == 0
            assert not np.any(row["audio"])
        else:
            padded, nframes = ref_zero_pad(
                audio.spectrogram.astype("f2").astype("f4"), 3072)
            np.testing.assert_array_equal(row["audio"], padded)
            assert row["has_audio"] and row["nframes"] == nframes
        video = np.concatenate([p / np.linalg.norm(p)
                                for p in pooled.values()])
        np.testing.assert_allclose(row["video"], video, atol=1e-6)
        ids_ = [VOCAB.index(t) + 1 for t in _tokens(text[0])][:3]
        expected = np.arange(len(VOCAB) * 3, dtype="f4").reshape(-1, 3)
        np.testing.assert_array_equal(
            row["text"][:len(ids_)], expected[np.array(ids_) - 1])


def test_training_dataset_clips(tmp_path):
    rng = np.random.default_rng(5)
    made = _clip_records(rng, ["a", "b", "c"], [6000, 20, 5120],
                         [["cut"], ["salt", "stir"], ["pan"]])
    path = _write(tmp_path / "train.tfrecord", [m[0] for m in made])
    cfg = _config(eval_audio_frames=5120)
    ds = avl.training_dataset([path], "clips", cfg, None, batch_size=3,
                              seed=2, shuffle_buffer=3)
    features, labels = next(iter(ds))
    assert features["audio"].shape == (3, 40, 5120)
    assert sorted(features["nframes"].numpy().tolist()) == [20, 5120, 5120]
    assert "text" not in features and labels.shape == (3,)


def test_missing_encoder_for_caption_spans_is_an_error(tmp_path):
    cfg = _config(random_audio_windows=False)
    with pytest.raises(ValueError, match="text encoder"):
        avl.training_dataset(["x"], "videos", cfg, None, 2)
