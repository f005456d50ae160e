"""AVLnet conversion: HowTo100M video records with the videos' audio
(howto_writer --features_path_audio: wav or precomputed spectrograms) and
the released evaluation pickles (howto_eval_sets --allow_pickle), with
every reject kind. The audio is real speech (tests/data/librivox); the
visual features are SYNTHETIC."""

import json
import os
import pickle
import re
import wave

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import avl
from tfrecord_tools import audio_spectrograms
from tfrecord_tools import howto_eval_sets as eval_sets
from tfrecord_tools import howto_writer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRIVOX = os.path.join(REPO_ROOT, "tests", "data", "librivox")
WAV_3S = os.path.join(LIBRIVOX, "sense_and_sensibility_01_austen_64kb-0880.wav")
WAV_5S = os.path.join(LIBRIVOX, "sense_and_sensibility_01_austen_64kb-0890.wav")
DIM_2D, DIM_3D = 8, 4


def run_main(module, *args):
    """Parses args into the module's own FLAGS and calls its main."""
    module.FLAGS.unparse_flags()
    return module.main(module.FLAGS(["prog", *[str(a) for a in args]]))


def read_records(pattern):
    return [r.numpy() for r in tf.data.TFRecordDataset(
        sorted(tf.io.gfile.glob(str(pattern))))]


def read_rejects(directory, prefix):
    with open(os.path.join(directory, f"rejects-{prefix}.jsonl")) as f:
        return {r["item"]: r["reason"] for r in map(json.loads, f)}


def _spectrogram(path):
    return audio_spectrograms.file_spectrogram(path)[0]  # float32 [40, T]


def _wav_at_rate(source, target, rate):
    """The source's samples under another rate in the header: a wav FFmpeg
    has to resample (and twice as long at half the rate)."""
    with wave.open(source) as r:
        params, frames = r.getparams(), r.readframes(r.getnframes())
    with wave.open(str(target), "wb") as w:
        w.setparams(params._replace(framerate=rate))
        w.writeframes(frames)


def _frames(rng, seconds, rate, dim):
    return rng.normal(size=(int(seconds * rate), dim)).astype(np.float16)


# -- HowTo100M videos with audio ----------------------------------------------
# video path (training.md layout) -> (2D seconds, how its audio is stored)
VIDEOS = {
    "food/video_a/vidWav": (3, "wav"),  # <root>/<path>.wav, 2.99 s
    "food/video_b/vidOrig": (5, "orig_npz"),  # <root>/<path>/<id>_spec.npz
    "vidOurs": (5, "our_npz"),  # <root>/<path>_spec.npz
    "vidResampled": (6, "wav8k"),  # 8 kHz wav: resampled, 5.98 s
    "vidNoAudio": (3, None),
    "vidBadWav": (3, "garbage_wav"),
    "vidBadNpz": (3, "garbage_npz"),
    "vidShort": (10, "wav"),  # 2.99 s of audio for 10 s of features
}
REJECTS = {
    "vidNoAudio": r"missing audio file: none of \[.*vidNoAudio_spec\.npz",
    "vidBadWav": r"unreadable audio: .*vidBadWav\.wav",
    "vidBadNpz": r"vidBadNpz_spec\.npz: unreadable spectrogram",
    "vidShort": r"vidShort\.wav: audio of 3\.00 s is shorter than the "
                r"video's features \(10\.00 s\) by 7\.00 s",
}


@pytest.fixture(scope="module")
def howto_audio(tmp_path_factory):
    root = tmp_path_factory.mktemp("avl")
    d2, d3, audio = root / "f2", root / "f3", root / "audio"
    rng = np.random.default_rng(0)
    captions, spectrograms, frames = {}, {}, {}
    for path, (seconds, kind) in VIDEOS.items():
        vid = os.path.basename(path)
        for directory in (d2, d3):
            (directory / os.path.dirname(path)).mkdir(parents=True,
                                                      exist_ok=True)
        f2 = _frames(rng, seconds, 1.0, DIM_2D)
        f3 = _frames(rng, seconds, 1.5, DIM_3D)
        for directory, stream, f in ((d2, "2d", f2), (d3, "3d", f3)):
            if vid == "vidWav":  # AVLnet's training.md: <path>_2d.npz
                np.savez(directory / f"{path}_{stream}.npz", features=f)
            elif vid == "vidOrig":  # its loader: <path>/<id>_2d.npz
                (directory / path).mkdir(parents=True)
                np.savez(directory / path / f"{vid}_{stream}.npz",
                         features=f)
            else:
                np.save(directory / f"{path}.npy", f)
        frames[vid] = (f2, f3)
        captions[vid] = {"start": [0.0, 1.0], "end": [2.0, 2.5],
                         "text": ["cut the onion", "add salt"]}
        base = audio / path
        base.parent.mkdir(parents=True, exist_ok=True)
        source = WAV_5S if seconds >= 5 else WAV_3S
        if kind == "wav":
            base.with_suffix(".wav").write_bytes(open(WAV_3S, "rb").read())
            spectrograms[vid] = _spectrogram(WAV_3S)
        elif kind == "wav8k":
            _wav_at_rate(WAV_3S, base.with_suffix(".wav"), 8000)
            spectrograms[vid] = _spectrogram(str(base.with_suffix(".wav")))
        elif kind in ("orig_npz", "our_npz"):
            spectrogram = _spectrogram(source).astype(np.float16)
            target = (base / f"{vid}_spec.npz" if kind == "orig_npz"
                      else base.parent / f"{vid}_spec.npz")
            target.parent.mkdir(parents=True, exist_ok=True)
            if kind == "orig_npz":  # the original's files: arr_0 only
                np.savez(target, spectrogram)
            else:
                target.write_bytes(audio_spectrograms.spectrogram_npz_bytes(
                    spectrogram, spectrogram.shape[1]))
            spectrograms[vid] = spectrogram
        elif kind == "garbage_wav":
            base.with_suffix(".wav").write_bytes(b"RIFF....not a wav")
        elif kind == "garbage_npz":
            (base.parent / f"{vid}_spec.npz").write_bytes(b"not an npz")
    with open(root / "captions.json", "w") as f:
        json.dump(captions, f)
    with open(root / "videos.csv", "w") as f:
        f.write("path\n" + "".join(f"{p}\n" for p in VIDEOS))
    return {"frames": frames, "spectrograms": spectrograms,
            "flags": [f"--csv={root / 'videos.csv'}",
                      f"--features_path={d2}", f"--features_path_3D={d3}",
                      f"--features_path_audio={audio}",
                      f"--caption_path={root / 'captions.json'}",
                      f"--feature_dim_2d={DIM_2D}",
                      f"--feature_dim_3d={DIM_3D}", "--progress=false"]}


def test_howto_writer_audio_records_and_every_reject(howto_audio, tmp_path,
                                                     capsys):
    out = tmp_path / "out"
    assert run_main(howto_writer, *howto_audio["flags"],
                    f"--output_dir={out}", "--num_shards=2") == 0
    assert "4 records from 8 items" in capsys.readouterr().out
    parsed = {p["video_id"]: p for p in map(
        howto_writer.parse_video_example,
        read_records(out / "train-*.tfrecord"))}
    assert sorted(parsed) == sorted(
        ["vidWav", "vidOrig", "vidOurs", "vidResampled"])
    for vid, p in parsed.items():
        expected = howto_audio["spectrograms"][vid].astype(np.float16)
        assert p["audio"].spectrogram.tobytes() == expected.tobytes(), vid
        assert p["audio"].nframes == expected.shape[1]
        assert p["audio"].source_rate == (8000 if vid == "vidResampled"
                                          else 16000)
        for stream, frames in zip(("2d", "3d"), howto_audio["frames"][vid]):
            assert p["streams"][stream].frames.tobytes() == \
                frames.tobytes()
    assert parsed["vidWav"]["audio"].nframes == 300  # 2.99 s: 1 + N // 160
    assert parsed["vidResampled"]["audio"].nframes == 599
    rejects = read_rejects(out, "train")
    assert len(rejects) == len(REJECTS)
    for vid, pattern in REJECTS.items():
        reason = next(r for item, r in rejects.items() if vid in item)
        assert re.search(pattern, reason), (vid, reason)

    # The AVLnet reader on these records: windows of the real spectrograms.
    cfg = avl.AVLClipConfig(dims=(DIM_2D, DIM_3D), n_pair=2,
                            audio_frames=200)
    files = sorted(str(p) for p in out.glob("train-*.tfrecord"))
    features, _ = next(iter(avl.training_dataset(files, "videos", cfg, None,
                                                 batch_size=4)))
    assert features["audio"].shape == (8, 40, 200)
    assert features["nframes"].numpy().min() > 0


def test_howto_writer_audio_directory_must_exist(howto_audio, tmp_path,
                                                 capsys):
    flags_ = [f for f in howto_audio["flags"]
              if not f.startswith("--features_path_audio")]
    assert run_main(howto_writer, *flags_, f"--output_dir={tmp_path}",
                    f"--features_path_audio={tmp_path / 'none'}") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--features_path_audio: no such directory" in \
        err[0], err


# -- released evaluation pickles -------------------------------------------------
def _tensor(array):
    torch = pytest.importorskip("torch")
    return torch.from_numpy(np.ascontiguousarray(array))


def _youcook_pickle(path, rng):
    """AVLnet's YouCook2 / CrossTask layout: 2d, 3d (pooled), audio (a
    [40, T] torch tensor), caption, id; CrossTask adds task/start/end/
    video_id."""
    spectrogram = _spectrogram(WAV_5S)
    data = [
        {"id": "yc0", "2d": rng.normal(size=DIM_2D).astype("f4"),
         "3d": rng.normal(size=DIM_3D).astype("f4"),
         "audio": _tensor(spectrogram), "caption": "cut the onion"},
        {"id": "ct1", "video_id": "ytX", "task": 3, "start": 4, "end": 9,
         "2d": rng.normal(size=DIM_2D).astype("f4"),
         "3d": rng.normal(size=DIM_3D).astype("f4"),
         "audio": _tensor(spectrogram[:, :120]), "caption": "add salt",
         "text_sim": np.ones(3)},
        {"id": "noAudio", "2d": rng.normal(size=DIM_2D).astype("f4"),
         "3d": rng.normal(size=DIM_3D).astype("f4"), "audio": None,
         "caption": "stir"},
        {"id": "flatAudio", "2d": rng.normal(size=DIM_2D).astype("f4"),
         "3d": rng.normal(size=DIM_3D).astype("f4"),
         "audio": _tensor(spectrogram[0]), "caption": "stir"},
    ]
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return data


def _eval_flags(out, *args):
    return [*args, f"--output_dir={out}", f"--feature_dim_2d={DIM_2D}",
            f"--feature_dim_3d={DIM_3D}", "--progress=false"]


def test_youcook_pickle_with_audio_and_rejects(tmp_path, capsys):
    data = _youcook_pickle(tmp_path / "youcook_val_audio.pkl",
                           np.random.default_rng(1))
    out = tmp_path / "out"
    flags_ = _eval_flags(out, "--dataset=youcook",
                         f"--captions={tmp_path / 'youcook_val_audio.pkl'}")
    assert run_main(eval_sets, *flags_) == 1  # no --allow_pickle
    assert "--allow_pickle" in capsys.readouterr().err
    assert run_main(eval_sets, *flags_, "--allow_pickle") == 0
    parsed = [eval_sets.parse_clip_example(r) for r in
              read_records(out / "youcook_val-*.tfrecord")]
    assert [(p["clip_id"], p["video_id"], p["texts"]) for p in parsed] == [
        ("yc0", "yc0", ["cut the onion"]), ("ct1", "ytX", ["add salt"])]
    for p, entry in zip(parsed, data):
        audio = entry["audio"].numpy()
        assert p["audio"].spectrogram.tobytes() == audio.astype(
            np.float16).tobytes()
        assert p["audio"].nframes == audio.shape[1]
        np.testing.assert_array_equal(p["pooled"]["2d"], entry["2d"])
    rejects = read_rejects(out, "youcook_val")
    assert re.search(r"no audio for clip 'noAudio'", rejects["noAudio"])
    assert re.search(r"audio of shape \[\d+\]; expected \[40, num_frames\]",
                     rejects["flatAudio"])

    # Read back at YouCook2's 5 x 1024 frames.
    cfg = avl.AVLClipConfig(dims=(DIM_2D, DIM_3D), eval_audio_frames=5120)
    features, mask = next(iter(avl.evaluation_dataset(
        sorted(str(p) for p in out.glob("youcook_val-*.tfrecord")), cfg,
        None, 4)))
    assert mask.numpy().tolist() == [True, True, False, False]
    assert features["nframes"].numpy().tolist()[:2] == [531, 120]
    np.testing.assert_array_equal(
        features["audio"][1, :, :120],
        data[1]["audio"].numpy().astype(np.float16).astype(np.float32))
    assert not np.any(features["audio"][1, :, 120:])


def test_msrvtt_pickles_keep_test_clips_without_audio(tmp_path):
    rng = np.random.default_rng(2)
    spectrogram = _spectrogram(WAV_3S)

    def entry(i, with_audio=True):
        e = {"id": f"video{i}", "2d_pooled": rng.normal(size=DIM_2D),
             "3d_pooled": rng.normal(size=DIM_3D),
             "eval_caption": f"a man cuts {i}",
             "caption": [f"a man cuts {i}", f"someone cooks {i}"]}
        if with_audio:
            e["audio"] = _tensor(spectrogram[:, :50 + i])
        return e

    test = [entry(0), entry(1, with_audio=False), entry(2)]
    train = [entry(3), entry(4, with_audio=False)]
    for name, data in (("test", test), ("train", train)):
        with open(tmp_path / f"msrvtt_{name}.pkl", "wb") as f:
            pickle.dump(data, f)
        assert run_main(eval_sets, *_eval_flags(
            tmp_path / name, "--dataset=msrvtt", f"--split={name}",
            f"--captions={tmp_path / f'msrvtt_{name}.pkl'}",
            "--allow_pickle")) == 0
    parsed = [eval_sets.parse_clip_example(r) for r in
              read_records(tmp_path / "test" / "msrvtt_test-*.tfrecord")]
    assert [p["clip_id"] for p in parsed] == ["video0", "video1", "video2"]
    assert parsed[0]["texts"] == ["a man cuts 0", "someone cooks 0"]
    assert parsed[1]["audio"] is None and parsed[2]["audio"].nframes == 52
    # Training clips need audio.
    rejects = read_rejects(tmp_path / "train", "msrvtt_train")
    assert list(rejects) == ["video4"]
    assert "no audio" in rejects["video4"]

    cfg = avl.AVLClipConfig(dims=(DIM_2D, DIM_3D), eval_audio_frames=3072)
    features, mask = next(iter(avl.evaluation_dataset(
        sorted(str(p) for p in (tmp_path / "test").glob("*.tfrecord")), cfg,
        None, 3)))
    assert features["has_audio"].numpy().tolist() == [True, False, True]
    assert features["nframes"].numpy().tolist() == [50, 0, 52]


def test_clip_audio_directory_wav_and_npz(tmp_path):
    rng = np.random.default_rng(3)
    with open(tmp_path / "clips.csv", "w") as f:
        f.write("clip_id,text\nc0,cut the onion\nc1,add salt\nc2,stir\n")
    np.savez(tmp_path / "feats.npz", **{
        f"{s}/c{i}": rng.normal(size=d).astype("f4")
        for s, d in (("2d", DIM_2D), ("3d", DIM_3D)) for i in range(3)})
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "c0.wav").write_bytes(open(WAV_3S, "rb").read())
    spectrogram = _spectrogram(WAV_5S).astype(np.float16)
    (audio / "c1_spec.npz").write_bytes(
        audio_spectrograms.spectrogram_npz_bytes(spectrogram, 400))
    out = tmp_path / "out"
    assert run_main(eval_sets, *_eval_flags(
        out, "--dataset=csv", f"--captions={tmp_path / 'clips.csv'}",
        f"--features={tmp_path / 'feats.npz'}",
        f"--features_path_audio={audio}")) == 0
    parsed = [eval_sets.parse_clip_example(r)
              for r in read_records(out / "clips-*.tfrecord")]
    assert [p["clip_id"] for p in parsed] == ["c0", "c1"]
    assert parsed[0]["audio"].spectrogram.tobytes() == _spectrogram(
        WAV_3S).astype(np.float16).tobytes()
    assert parsed[1]["audio"].nframes == 400  # the npz's valid frames
    assert "no audio for clip 'c2'" in read_rejects(out, "clips")["c2"]
