"""Tests of tfrecord_tools: sharded writer, YT8M writer, inspect, demo data."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import features as F
from tfrecord_tools import cli
from tfrecord_tools import demo_data
from tfrecord_tools import inspect as yt_inspect
from tfrecord_tools import sharded_writer
from tfrecord_tools import yt8m_writer

DATA_DIR = os.path.join(os.path.dirname(__file__), "data")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RGB, AUDIO = F.YT8M_RGB, F.YT8M_AUDIO
RGB_SIZE, AUDIO_SIZE = F.YT8M_FEATURE_SIZES[RGB], F.YT8M_FEATURE_SIZES[AUDIO]
HALF_STEP = (F.QUANT_MAX - F.QUANT_MIN) / 255 / 2


# -- helpers ------------------------------------------------------------------


def run_main(module, **flag_values):
    """Parses `flag_values` into the module's own FLAGS and calls its main."""
    module.FLAGS.unparse_flags()
    argv = ["prog"] + [f"--{k}={v}" for k, v in flag_values.items()]
    argv = module.FLAGS(argv)
    return module.main(argv)


def parse_frame_records(paths, id_key=F.YT8M_ID_KEY, segments=False):
    """Parses frame-level shards with the official reader schema."""
    context = {id_key: tf.io.FixedLenFeature([], tf.string),
               F.YT8M_LABELS_KEY: tf.io.VarLenFeature(tf.int64)}
    if segments:
        context.update({
            F.YT8M_SEGMENT_LABELS: tf.io.VarLenFeature(tf.int64),
            F.YT8M_SEGMENT_START_TIMES: tf.io.VarLenFeature(tf.int64),
            F.YT8M_SEGMENT_SCORES: tf.io.VarLenFeature(tf.float32),
        })
    sequence = {RGB: tf.io.FixedLenSequenceFeature([], tf.string),
                AUDIO: tf.io.FixedLenSequenceFeature([], tf.string)}
    out = []
    for record in tf.data.TFRecordDataset(paths):
        ctx, seq = tf.io.parse_single_sequence_example(record, context,
                                                       sequence)
        item = {"id": ctx[id_key].numpy().decode(),
                "labels": tf.sparse.to_dense(ctx[F.YT8M_LABELS_KEY]).numpy()}
        for name in (RGB, AUDIO):
            q = tf.io.decode_raw(seq[name], tf.uint8).numpy()  # [T, D]
            item[name] = yt8m_writer.dequantize(q)
        if segments:
            for key in (F.YT8M_SEGMENT_LABELS, F.YT8M_SEGMENT_START_TIMES,
                        F.YT8M_SEGMENT_SCORES):
                item[key] = tf.sparse.to_dense(ctx[key]).numpy()
        out.append(item)
    return out


def write_features(directory, video_id, num_frames, seed, rgb_size=RGB_SIZE):
    """Writes `<id>.npz` of random rgb/audio in [-2.5, 2.5]; returns them."""
    rng = np.random.default_rng(seed)
    arrays = {RGB: rng.uniform(-2.5, 2.5, (num_frames, rgb_size)),
              AUDIO: rng.uniform(-2.5, 2.5, (num_frames, AUDIO_SIZE))}
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    np.savez(os.path.join(directory, video_id + ".npz"), **arrays)
    return arrays


def write_csv(path, lines):
    with open(path, "w") as f:
        f.write("video_id,labels\n" + "".join(l + "\n" for l in lines))


@pytest.fixture
def converted(tmp_path):
    """A features dir + CSV of 5 videos converted to 2 frame-level shards."""
    feats = tmp_path / "feats"
    feats.mkdir()
    videos = {"Ab3d": [3, 7], "xY09": [], "QQqq": [1], "zz11": [0, 9],
              "L0ng": [4]}
    frames = {"Ab3d": 4, "xY09": 1, "QQqq": 7, "zz11": 3, "L0ng": 305}
    arrays = {v: write_features(str(feats), v, frames[v], seed=i)
              for i, v in enumerate(videos)}
    csv_path = tmp_path / "labels.csv"
    write_csv(csv_path, [f"{v},{' '.join(map(str, l))}"
                         for v, l in videos.items()])
    out = tmp_path / "out"
    rc = run_main(yt8m_writer, features_dir=feats, labels_csv=csv_path,
                  output_dir=out, num_shards=2, num_classes=10,
                  progress="false")
    assert rc == 0
    return {"dir": out, "videos": videos, "arrays": arrays, "feats": feats,
            "csv": csv_path, "tmp": tmp_path}


# -- quantisation -------------------------------------------------------------


def test_quantize_round_trip_on_real_frame_feature():
    x = np.load(os.path.join(DATA_DIR, "sports1m_frame_pca1024.npy"))
    assert x.shape == (RGB_SIZE,)
    q = yt8m_writer.quantize(x)
    assert q.dtype == np.uint8
    clipped = np.clip(x, F.QUANT_MIN, F.QUANT_MAX)
    # Rounding to the 255-step grid is within half a step ...
    grid = q.astype(np.float64) * F.DEQUANT_SCALE + F.QUANT_MIN
    assert np.abs(grid - clipped).max() <= HALF_STEP + 1e-6
    # ... and the official dequantisation adds its constant bias 4/512 - 0
    # on top (it centres 256 bins, the quantiser rounds to 255 steps), so
    # its error lies in [4/512 - half step, 4/512 + half step].
    err = yt8m_writer.dequantize(q) - clipped
    bias = F.DEQUANT_BIAS - F.QUANT_MIN  # 4/512
    assert err.min() >= bias - HALF_STEP - 1e-6
    assert err.max() <= bias + HALF_STEP + 1e-6


def test_quantize_formula_on_edge_values():
    x = np.array([-2.0, 2.0, 0.0, -5.0, 7.0, np.inf, -np.inf, 1.0])
    # 0 -> 2 * 255/4 = 127.5 rounds half to even (as Python's round) -> 128.
    assert yt8m_writer.quantize(x).tolist() == [0, 255, 128, 0, 255, 255, 0,
                                                191]
    deq = yt8m_writer.dequantize(np.array([0, 255, 128], np.uint8))
    np.testing.assert_allclose(
        deq, [4 / 512 - 2, 255 * 4 / 255 + 4 / 512 - 2,
              128 * 4 / 255 + 4 / 512 - 2], atol=1e-6)
    assert deq.dtype == np.float32
    q = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(
        yt8m_writer.quantize(yt8m_writer.dequantize(q)), q)
    with pytest.raises(ValueError, match="NaN"):
        yt8m_writer.quantize(np.array([0.0, np.nan]))


# -- sharded writer -----------------------------------------------------------


def test_sharded_writer_contiguous_round_robin_and_manifest(tmp_path):
    records = [b"r%d" % i for i in range(10)]
    counts = sharded_writer.write_sharded(records, str(tmp_path), "train", 4)
    names = [os.path.basename(p) for p in counts]
    assert names == [f"train-{k:05d}-of-00004.tfrecord" for k in range(4)]
    assert list(counts.values()) == [3, 3, 2, 2]
    first = list(tf.compat.v1.io.tf_record_iterator(list(counts)[0]))
    assert first == records[:3]  # contiguous blocks
    manifest = json.loads((tmp_path / "manifest-train.json").read_text())
    assert manifest["assignment"] == "contiguous"
    assert [s["records"] for s in manifest["shards"]] == [3, 3, 2, 2]

    counts = sharded_writer.write_sharded(
        iter(records), str(tmp_path / "rr"), "x", 3,
        name_template=sharded_writer.YT8M_NAME_TEMPLATE)
    assert [os.path.basename(p) for p in counts] == [
        "x0000.tfrecord", "x0001.tfrecord", "x0002.tfrecord"]
    second = list(tf.compat.v1.io.tf_record_iterator(list(counts)[1]))
    assert second == [b"r1", b"r4", b"r7"]  # round robin


def test_sharded_writer_error_keeps_finished_shards_only(tmp_path):
    def records():
        for i in range(5):
            if i == 3:
                raise RuntimeError("boom")
            yield b"r%d" % i

    with pytest.raises(RuntimeError):
        sharded_writer.write_sharded(records(), str(tmp_path), "t", 3,
                                     num_records=5)
    # Shard 0 holds records 0-1 and was finished; shard 1 (2-3) was not.
    assert sorted(os.listdir(tmp_path)) == ["t-00000-of-00003.tfrecord"]

    # resume: shard 0 is kept (not rewritten), the rest is written.
    os.utime(tmp_path / "t-00000-of-00003.tfrecord", (1, 1))
    with sharded_writer.ShardedWriter(str(tmp_path), "t", 3, num_records=5,
                                      resume=True) as w:
        written = []
        for i in range(5):
            if w.needs_next():
                w.write(b"r%d" % i)
                written.append(i)
            else:
                w.skip()
    assert written == [2, 3, 4]
    assert os.stat(tmp_path / "t-00000-of-00003.tfrecord").st_mtime == 1
    assert w.counts == [2, 2, 1]
    with pytest.raises(cli.InputError, match="distinct|same name"):
        sharded_writer.shard_names("t", 2, "{prefix}.tfrecord")


# -- examples -----------------------------------------------------------------


def test_make_examples_parse_with_official_schema(tmp_path):
    rng = np.random.default_rng(0)
    frames = {RGB: rng.normal(size=(3, RGB_SIZE)),
              AUDIO: rng.normal(size=(3, AUDIO_SIZE))}
    seq = yt8m_writer.make_frame_example(
        "Ab3d", [5, 2], frames,
        segments={F.YT8M_SEGMENT_LABELS: [5], F.YT8M_SEGMENT_START_TIMES: [0],
                  F.YT8M_SEGMENT_SCORES: [1.0]})
    path = str(tmp_path / "f.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        w.write(yt8m_writer.serialize(seq))
    (item,) = parse_frame_records([path], segments=True)
    assert item["id"] == "Ab3d" and item["labels"].tolist() == [5, 2]
    np.testing.assert_array_equal(
        item[RGB], yt8m_writer.dequantize(yt8m_writer.quantize(frames[RGB])))
    assert item[F.YT8M_SEGMENT_SCORES].tolist() == [1.0]

    ex = yt8m_writer.make_video_example(
        "xY09", [1], {F.YT8M_MEAN_RGB: np.ones(RGB_SIZE),
                      F.YT8M_MEAN_AUDIO: np.zeros(AUDIO_SIZE)},
        id_key=F.YT8M_ID_KEY_2017)
    parsed = tf.io.parse_single_example(ex.SerializeToString(), {
        F.YT8M_ID_KEY_2017: tf.io.FixedLenFeature([], tf.string),
        F.YT8M_LABELS_KEY: tf.io.VarLenFeature(tf.int64),
        F.YT8M_MEAN_RGB: tf.io.FixedLenFeature([RGB_SIZE], tf.float32),
        F.YT8M_MEAN_AUDIO: tf.io.FixedLenFeature([AUDIO_SIZE], tf.float32)})
    assert parsed[F.YT8M_ID_KEY_2017].numpy() == b"xY09"
    assert float(parsed[F.YT8M_MEAN_RGB].numpy().sum()) == RGB_SIZE
    with pytest.raises(ValueError, match="frames"):
        yt8m_writer.make_frame_example(
            "a", [], {RGB: np.zeros((3, 4)), AUDIO: np.zeros((2, 4))})


# -- writer CLI ---------------------------------------------------------------


def test_writer_cli_frame_level_round_trip(converted):
    shards = sorted(str(p) for p in converted["dir"].glob("*.tfrecord"))
    assert [os.path.basename(p) for p in shards] == [
        "train0000.tfrecord", "train0001.tfrecord"]
    assert not [n for n in os.listdir(converted["dir"]) if "partial" in n]
    items = parse_frame_records(shards)
    videos = converted["videos"]
    assert [i["id"] for i in items] == list(videos)  # CSV order
    for item in items:
        assert item["labels"].tolist() == videos[item["id"]]
        for name in (RGB, AUDIO):
            x = converted["arrays"][item["id"]][name]
            np.testing.assert_array_equal(
                item[name], yt8m_writer.dequantize(yt8m_writer.quantize(x)))
    assert len(items[-1][RGB]) == 305  # long videos are kept whole
    manifest = json.loads(
        (converted["dir"] / "manifest-train.json").read_text())
    assert [s["records"] for s in manifest["shards"]] == [3, 2]


def test_writer_cli_video_level_2017_ids_and_npy(converted, tmp_path):
    out = tmp_path / "video"
    rc = run_main(yt8m_writer, features_dir=converted["feats"],
                  labels_csv=converted["csv"], output_dir=out, level="video",
                  id_key=F.YT8M_ID_KEY_2017, prefix="validate",
                  num_classes=10, progress="false")
    assert rc == 0
    records = list(tf.compat.v1.io.tf_record_iterator(
        str(out / "validate0000.tfrecord")))
    ex = tf.train.Example.FromString(records[0])
    feature = ex.features.feature
    assert feature[F.YT8M_ID_KEY_2017].bytes_list.value == [b"Ab3d"]
    np.testing.assert_allclose(
        feature[F.YT8M_MEAN_RGB].float_list.value,
        converted["arrays"]["Ab3d"][RGB].mean(axis=0), atol=1e-6)
    assert len(feature[F.YT8M_MEAN_AUDIO].float_list.value) == AUDIO_SIZE

    feats = tmp_path / "npy"
    feats.mkdir()
    np.save(feats / "v1.npy", np.zeros((2, AUDIO_SIZE), np.float32))
    write_csv(tmp_path / "one.csv", ["v1,2"])
    rc = run_main(yt8m_writer, features_dir=feats,
                  labels_csv=tmp_path / "one.csv", output_dir=tmp_path / "o1",
                  feature_names=AUDIO, feature_sizes=AUDIO_SIZE,
                  progress="false")
    assert rc == 0
    seq = tf.train.SequenceExample.FromString(next(
        tf.compat.v1.io.tf_record_iterator(
            str(tmp_path / "o1" / "train0000.tfrecord"))))
    assert list(seq.feature_lists.feature_list) == [AUDIO]


BAD_INPUTS = {
    # case: (CSV lines, files to (re)write {id: rgb size}, expected message)
    "missing_npz": (["Ab3d,1", "nope,2"], {},
                    r"labels\.csv:3: video 'nope' has no feature file; "
                    r"expected .*feats/nope\.npz"),
    "wrong_dim": (["Ab3d,1", "zz11,2", "QQqq,3"], {"QQqq": 1000},
                  r"feats/QQqq\.npz: feature 'rgb' has shape \[7, 1000\]; "
                  r"expected \[num_frames, 1024\]"),
    "malformed_line": (["Ab3d,1", "xY09;3", "QQqq,1"], {},
                       r"labels\.csv:3: malformed line 'xY09;3'"),
    "bad_label": (["Ab3d,1 x"], {},
                  r"labels\.csv:2: malformed line 'Ab3d,1 x'"),
    "label_range": (["Ab3d,1", "QQqq,10"], {},
                    r"labels\.csv:3: video 'QQqq': label 10 out of range "
                    r"\[0, 10\)"),
    "duplicate_id": (["Ab3d,1", "QQqq,", "Ab3d,2"], {},
                     r"labels\.csv:4: duplicate video id 'Ab3d' \(first on "
                     r"line 2\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_writer_cli_bad_input_one_clear_error(converted, case, capsys):
    lines, rewrite, pattern = BAD_INPUTS[case]
    for video_id, rgb_size in rewrite.items():
        write_features(str(converted["feats"]), video_id, 7, 0,
                       rgb_size=rgb_size)
    write_csv(converted["csv"], lines)
    out = converted["tmp"] / f"out_{case}"
    capsys.readouterr()
    rc = run_main(yt8m_writer, features_dir=converted["feats"],
                  labels_csv=converted["csv"], output_dir=out, num_shards=2,
                  num_classes=10, progress="false")
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert re.search(pattern, err[0]), err[0]
    names = sorted(os.listdir(out)) if out.exists() else []
    if case == "wrong_dim":  # shard 0 (videos 1-2) finished before the error
        assert names == ["train0000.tfrecord"]
    else:  # checked before anything is written
        assert names == []
    # the library function raises the typed error with the same message
    with pytest.raises((cli.InputError, cli.MissingInputError), match=pattern):
        yt8m_writer.convert_directory(
            str(converted["feats"]), str(converted["csv"]), str(out),
            num_shards=2, num_classes=10, progress=False)


def test_writer_cli_resume_after_fixing_bad_file(converted):
    lines, rewrite, _ = BAD_INPUTS["wrong_dim"]
    write_features(str(converted["feats"]), "QQqq", 7, 0, rgb_size=1000)
    write_csv(converted["csv"], lines)
    out = converted["tmp"] / "resume"
    flags_ = dict(features_dir=converted["feats"], labels_csv=converted["csv"],
                  output_dir=out, num_shards=2, num_classes=10,
                  progress="false")
    assert run_main(yt8m_writer, **flags_) == 1
    first = out / "train0000.tfrecord"
    os.utime(first, (1, 1))
    fixed = write_features(str(converted["feats"]), "QQqq", 7, 0)
    assert run_main(yt8m_writer, resume="true", **flags_) == 0
    assert os.stat(first).st_mtime == 1  # kept, not rewritten
    items = parse_frame_records([str(first), str(out / "train0001.tfrecord")])
    assert [i["id"] for i in items] == ["Ab3d", "zz11", "QQqq"]
    np.testing.assert_array_equal(
        items[2][RGB],
        yt8m_writer.dequantize(yt8m_writer.quantize(fixed[RGB])))


def test_writer_cli_subprocess_exit_code(tmp_path):
    write_csv(tmp_path / "labels.csv", ["Ab3d,1"])
    (tmp_path / "feats").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecord_tools.yt8m_writer",
         f"--features_dir={tmp_path / 'feats'}",
         f"--labels_csv={tmp_path / 'labels.csv'}",
         f"--output_dir={tmp_path / 'out'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert re.match(r"error: .*labels\.csv:2: video 'Ab3d' has no feature "
                    r"file; expected .*Ab3d\.npz$", last), proc.stderr


# -- inspect / verify ---------------------------------------------------------


def test_inspect_and_verify_good_shards(converted, capsys):
    paths = yt_inspect.list_shards(str(converted["dir"] / "train*.tfrecord"))
    info = yt_inspect.inspect_shards(paths)
    assert [c for _, c in info["shards"]] == [3, 2]
    assert info["type"] == yt_inspect.FRAME_LEVEL
    assert info["id_key"] == F.YT8M_ID_KEY
    schema = info["schema"]
    assert schema["context"][F.YT8M_ID_KEY] == {"dtype": "bytes", "length": 1}
    assert schema["feature_lists"][RGB] == {"frames": 4,
                                            "bytes_per_frame": RGB_SIZE}
    labels = info["labels"]
    assert labels["videos"] == 5 and labels["videos_without_labels"] == 1
    assert labels["max_class_id"] == 9 and labels["distinct_classes"] == 6
    assert labels["mean_labels_per_video"] == pytest.approx(6 / 5)
    assert info["frames"]["min"] == 1 and info["frames"]["max"] == 305
    assert info["frames"]["videos_over_max_frames"] == 1
    assert info["segments"] is None

    with pytest.raises(cli.CorruptRecordError,
                       match=r"train0000\.tfrecord: record 0: labels contains "
                       r"class id 7, not below --num_classes=5"):
        yt_inspect.verify_shards(paths, num_classes=5)

    capsys.readouterr()
    rc = run_main(yt_inspect, data_pattern=converted["dir"] / "train*",
                  verify="true", num_classes=10, progress="false")
    out = capsys.readouterr().out
    assert rc == 0
    assert "frame level (tf.train.SequenceExample)" in out
    assert "Id key: 'id' (2018+ releases)" in out
    assert out.strip().endswith("OK: 5 records in 2 shards verified")


def test_inspect_video_level_and_missing_pattern(converted, tmp_path, capsys):
    out = tmp_path / "video"
    yt8m_writer.convert_directory(
        str(converted["feats"]), str(converted["csv"]), str(out),
        level="video", id_key=F.YT8M_ID_KEY_2017, num_classes=10,
        progress=False)
    info = yt_inspect.verify_shards([str(out / "train0000.tfrecord")])
    assert info["type"] == yt_inspect.VIDEO_LEVEL
    assert info["id_key"] == F.YT8M_ID_KEY_2017
    assert info["schema"]["context"][F.YT8M_MEAN_RGB] == {
        "dtype": "float", "length": RGB_SIZE}
    assert info["frames"] is None
    capsys.readouterr()
    assert run_main(yt_inspect, data_pattern=tmp_path / "nothing*") == 1
    assert re.match(r"error: --data_pattern=.*nothing\*' matches no files$",
                    capsys.readouterr().err.strip())


def _damage(path, how):
    data = bytearray(open(path, "rb").read())
    if how == "truncate":
        data = data[:-100]
    else:  # flip a byte inside the second record's payload
        first_len = int.from_bytes(data[:8], "little")
        second = 8 + 4 + first_len + 4
        data[second + 12 + 50] ^= 0xFF
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("how,index,problem", [
    ("truncate", 2, "truncated record"),
    ("flip", 1, "corrupted record"),
])
def test_verify_damaged_shard_names_shard_and_record(converted, how, index,
                                                     problem, capsys):
    shard = str(converted["dir"] / "train0000.tfrecord")
    _damage(shard, how)
    pattern = rf"train0000\.tfrecord: record {index}: {problem}"
    paths = yt_inspect.list_shards(str(converted["dir"] / "train*.tfrecord"))
    with pytest.raises(cli.CorruptRecordError, match=pattern):
        yt_inspect.verify_shards(paths)
    with pytest.raises(cli.CorruptRecordError, match=pattern):
        yt_inspect.inspect_shards(paths)
    capsys.readouterr()
    rc = run_main(yt_inspect, data_pattern=converted["dir"] / "train*",
                  verify="true", progress="false")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert re.search(pattern, err[0]), err


def test_verify_detects_shard_cut_at_record_boundary(converted):
    shard = str(converted["dir"] / "train0001.tfrecord")
    first = next(tf.compat.v1.io.tf_record_iterator(shard))
    with tf.io.TFRecordWriter(shard) as w:  # 1 of its 2 records
        w.write(first)
    with pytest.raises(cli.CorruptRecordError,
                       match=r"train0001\.tfrecord: has 1 records but "
                       r".*manifest-train\.json lists 2"):
        yt_inspect.verify_shards([shard])


# -- demo data ----------------------------------------------------------------


def _read_dir(path):
    return {n: open(os.path.join(path, n), "rb").read()
            for n in sorted(os.listdir(path))}


def test_demo_dataset_deterministic_and_official_format(tmp_path):
    kwargs = dict(num_classes=12, num_train=10, num_validate=6, num_test=4,
                  min_frames=5, max_frames=12, num_shards=(2, 1, 1),
                  num_segment_videos=3)
    out = demo_data.write_demo_dataset(str(tmp_path / "a"), seed=3, **kwargs)
    demo_data.write_demo_dataset(str(tmp_path / "b"), seed=3, **kwargs)
    files = _read_dir(tmp_path / "a")
    assert files == _read_dir(tmp_path / "b")
    assert [os.path.basename(p) for p in out["train"]] == [
        "train0000.tfrecord", "train0001.tfrecord"]
    assert "SYNTHETIC" in files["README.txt"].decode()
    assert files["vocabulary.csv"].decode().splitlines()[0] == "Index,Name"

    train = parse_frame_records(out["train"])
    test = parse_frame_records(out["test"])
    ids = [i["id"] for i in train + test]
    assert len(set(ids)) == len(ids) == 14
    assert all(re.fullmatch(r"[A-Za-z0-9]{4}", i) for i in ids)
    assert all(1 <= len(i["labels"]) <= 3 for i in train)
    assert all(len(i["labels"]) == 0 for i in test)
    assert all(5 <= len(i[RGB]) <= 12 and i[AUDIO].shape[1] == AUDIO_SIZE
               for i in train)
    segs = parse_frame_records(out["validate_segments"], segments=True)
    assert len(segs) == 3
    for item in segs:
        starts = item[F.YT8M_SEGMENT_START_TIMES]
        assert (starts % F.YT8M_SEGMENT_SIZE == 0).all()
        assert set(item[F.YT8M_SEGMENT_SCORES].tolist()) <= {0.0, 1.0}
        assert len(item[F.YT8M_SEGMENT_LABELS]) == len(starts)
    info = yt_inspect.verify_shards(out["validate_segments"], num_classes=12)
    assert info["segments"]["videos_with_segments"] == 3


def test_demo_dataset_is_learnable_by_a_linear_model(tmp_path):
    """Ridge regression on mean frame features (defaults, written < 10 s)."""
    out = demo_data.write_demo_dataset(str(tmp_path), segment_rated=True)

    def mean_features(paths):
        """Mean dequantised rgb+audio [N, 1152], multi-hot labels [N, 200]."""
        x, y = [], []
        for path in paths:  # protobuf parsing: faster than eager tf ops here
            for record in tf.compat.v1.io.tf_record_iterator(path):
                seq = tf.train.SequenceExample.FromString(record)
                means = []
                for name in (RGB, AUDIO):
                    frames = seq.feature_lists.feature_list[name].feature
                    q = np.frombuffer(
                        b"".join(f.bytes_list.value[0] for f in frames),
                        np.uint8).reshape(len(frames), -1)  # [T, D]
                    means.append(yt8m_writer.dequantize(q).mean(0))
                x.append(np.concatenate(means))
                y.append(np.zeros(200))
                labels = seq.context.feature[F.YT8M_LABELS_KEY].int64_list
                y[-1][list(labels.value)] = 1.0
        return np.stack(x), np.stack(y)

    x_train, y_train = mean_features(out["train"])
    x_val, y_val = mean_features(out["validate"])
    mu = x_train.mean(0)
    a, b = x_train - mu, x_val - mu
    alpha = np.linalg.solve(a @ a.T + np.eye(len(a)), y_train)  # kernel ridge
    top = (b @ (a.T @ alpha)).argmax(1)
    hit_at_1 = y_val[np.arange(len(top)), top].mean()
    assert hit_at_1 > 0.8

    # Rated-positive segments carry their class, negatives do not: the
    # projection on the class prototype separates them perfectly.
    gen = demo_data._Generator(200, 0)  # same prototypes as seed 0
    projections = {0.0: [], 1.0: []}
    for item in parse_frame_records(out["validate_segments"], segments=True):
        c = int(item[F.YT8M_SEGMENT_LABELS][0])
        proto = gen.prototypes[RGB][c] / np.linalg.norm(gen.prototypes[RGB][c])
        for start, score in zip(item[F.YT8M_SEGMENT_START_TIMES],
                                item[F.YT8M_SEGMENT_SCORES]):
            end = start + F.YT8M_SEGMENT_SIZE
            segment = item[RGB][start:end].mean(0)  # [D]
            projections[float(score)].append(float(segment @ proto))
    assert min(projections[1.0]) > max(projections[0.0])
