"""YouTube-8M readers on shards written by our own writer."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import records
from input_pipeline import yt8m as reader
from input_pipeline.yt8m import ReaderConfig, Source
from tfrecord_tools import yt8m_writer as writer
from tfrecord_tools.sharded_writer import YT8M_NAME_TEMPLATE, write_sharded
from vidcore import distribute
from vidcore.errors import DataError
from vidcore.prediction import run_batches

SIZES = (8, 4)
CFG = ReaderConfig(feature_names=("rgb", "audio"), feature_sizes=SIZES,
                   num_classes=10, max_frames=6)


def _videos(n, seed=0, labelled=True):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = int(rng.integers(1, 9))
        labels = sorted(rng.choice(10, rng.integers(1, 3), replace=False))
        out.append((f"v{i:03d}", [int(c) for c in labels] if labelled else [],
                    {"rgb": rng.normal(size=(t, 8)),
                     "audio": rng.normal(size=(t, 4))}))
    return out


def _write(tmp_path, videos, shards=2, prefix="train", id_key="id",
           make=None):
    make = make or (lambda vid, labels, feats: writer.make_frame_example(
        vid, labels, feats, id_key=id_key))
    serialized = [writer.serialize(make(*v)) for v in videos]
    write_sharded(serialized, str(tmp_path), prefix, shards,
                  name_template=YT8M_NAME_TEMPLATE)
    return str(tmp_path / f"{prefix}*.tfrecord")


def _expected(video):
    vid, labels, feats = video
    q = np.concatenate([writer.quantize(feats["rgb"]),
                        writer.quantize(feats["audio"])], axis=1)[:6]
    frames = np.zeros((6, 12), np.uint8)
    frames[:len(q)] = q
    dense = np.zeros(10, bool)
    dense[labels] = True
    return frames, min(len(feats["rgb"]), 6), dense


def _collect(dataset):
    out = {}
    for inputs, labels, meta in dataset:
        keep = meta["mask"].numpy()
        ids = records.decode_ids(meta["id"].numpy()[keep])
        for i, vid in enumerate(ids):
            out[vid] = (inputs["frames"].numpy()[keep][i],
                        int(inputs["num_frames"].numpy()[keep][i]),
                        labels.numpy()[keep][i])
    return out


def _ids_in_order(dataset):
    seen = []
    for inputs, labels, meta in dataset:
        assert inputs["frames"].dtype == tf.uint8
        seen += records.decode_ids(meta["id"].numpy()[meta["mask"].numpy()])
    return seen


def test_evaluation_reads_every_record_once_in_order(tmp_path):
    videos = _videos(11)
    source = Source.from_pattern(_write(tmp_path, videos, shards=3), CFG)
    assert source.id_key == "id"
    ds = reader.evaluation_dataset(source, CFG, batch_size=4)
    inputs, _, meta = next(iter(ds))
    assert inputs["frames"].shape == (4, 6, 12)  # padded batches
    seen = _ids_in_order(ds)
    assert sorted(seen) == [v[0] for v in videos]  # each exactly once
    # Deterministic: shards are interleaved record by record, same order on
    # every run.
    assert seen[:3] == ["v000", "v004", "v008"]
    assert _ids_in_order(reader.evaluation_dataset(source, CFG, 5)) == seen
    got = _collect(ds)
    for video in videos:
        frames, n, dense = _expected(video)
        np.testing.assert_array_equal(got[video[0]][0], frames)
        assert got[video[0]][1] == n
        np.testing.assert_array_equal(got[video[0]][2], dense)


def test_training_batches(tmp_path):
    source = Source.from_pattern(_write(tmp_path, _videos(9)), CFG)
    ds = reader.training_dataset(source, CFG, batch_size=4, seed=1)
    for inputs, labels in ds.take(5):  # repeats forever
        assert inputs["frames"].shape == (4, 6, 12)
        assert inputs["num_frames"].dtype == tf.int32
        assert labels.shape == (4, 10) and labels.dtype == tf.bool


def test_shuffle_buffer_holds_at_most_one_pass(tmp_path):
    """The training streams repeat before they shuffle: the buffer is capped
    at the records one input pipeline reads per pass (manifest counts), so
    it never fills with copies of the same records."""
    import json
    files = []
    for i, n in enumerate((5, 7, 9)):
        files.append(str(tmp_path / f"s{i}.tfrecord"))
        open(files[-1], "wb").close()
    assert records.shuffle_buffer_size(files, 1024) == 1024  # no manifest
    with open(tmp_path / "manifest-s.json", "w") as f:
        json.dump({"shards": [{"name": f"s{i}.tfrecord", "records": n}
                              for i, n in enumerate((5, 7, 9))]}, f)
    assert records.shuffle_buffer_size(files, 1024) == 21
    assert records.shuffle_buffer_size(files, 16) == 16
    ctx = tf.distribute.InputContext(num_input_pipelines=2,
                                     input_pipeline_id=1)
    assert records.shuffle_buffer_size(files, 1024, ctx) == 7  # shard 1
    ctx = tf.distribute.InputContext(num_input_pipelines=2,
                                     input_pipeline_id=0)
    assert records.shuffle_buffer_size(files, 1024, ctx) == 14  # 0 and 2


def test_video_ids_2017_key_detected(tmp_path):
    source = Source.from_pattern(
        _write(tmp_path, _videos(3), id_key="video_id"), CFG)
    assert source.id_key == "video_id"
    assert sorted(_collect(reader.evaluation_dataset(source, CFG, 2))) == [
        "v000", "v001", "v002"]


def test_video_level_records(tmp_path):
    cfg = ReaderConfig(frame_features=False,
                       feature_names=("mean_rgb", "mean_audio"),
                       feature_sizes=SIZES, num_classes=10)
    videos = _videos(5)
    pattern = _write(tmp_path, videos, make=lambda vid, labels, f:
                     writer.make_video_example(
                         vid, labels, {"mean_rgb": f["rgb"].mean(0),
                                       "mean_audio": f["audio"].mean(0)}))
    source = Source.from_pattern(pattern, cfg)
    inputs, labels, meta = next(iter(reader.evaluation_dataset(source, cfg,
                                                               8)))
    np.testing.assert_allclose(inputs["features"][0],
                               np.concatenate([videos[0][2]["rgb"].mean(0),
                                               videos[0][2]["audio"].mean(0)]),
                               rtol=1e-6)
    assert meta["mask"].numpy().sum() == 5


def test_schema_mismatches_are_explained(tmp_path):
    pattern = _write(tmp_path, _videos(2))
    video_cfg = ReaderConfig(frame_features=False, feature_names=("mean_rgb",),
                             feature_sizes=(8,))
    with pytest.raises(DataError, match="frame-level.*--frame_features=False"):
        Source.from_pattern(pattern, video_cfg)
    with pytest.raises(DataError, match="'rgb' has 8 values per frame but "
                                        "--feature_sizes says 1024"):
        Source.from_pattern(pattern, ReaderConfig(feature_sizes=(1024, 128)))
    with pytest.raises(DataError, match="no feature list 'flow'"):
        Source.from_pattern(pattern, ReaderConfig(
            feature_names=("rgb", "flow"), feature_sizes=SIZES))
    with pytest.raises(DataError, match="segment-rated"):
        Source.from_pattern(pattern, ReaderConfig(
            feature_names=("rgb", "audio"), feature_sizes=SIZES,
            segment_labels=True))
    with pytest.raises(DataError, match="no files match --x='.*nope"):
        Source.from_pattern(str(tmp_path / "nope*"), CFG, "--x")


def test_label_out_of_range_names_the_record(tmp_path):
    videos = _videos(4)
    videos[2] = (videos[2][0], [3, 12], videos[2][2])
    source = Source.from_pattern(_write(tmp_path, videos, shards=1), CFG)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"(?s)--num_classes=10.*train0000.tfrecord:"
                             r"record 2.*12"):
        list(reader.evaluation_dataset(source, CFG, 4))


def test_wrong_frame_size_in_a_later_record_names_it(tmp_path):
    videos = _videos(3)
    frames = len(videos[1][2]["rgb"])
    bad = dict(videos[1][2], audio=np.zeros((frames, 5)))
    videos[1] = (videos[1][0], videos[1][1], bad)
    source = Source.from_pattern(_write(tmp_path, videos, shards=1), CFG)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"(?s)audio.*record 1.*\[5\].*bytes, expected 4"):
        list(reader.evaluation_dataset(source, CFG, 4))


def _truncate(pattern, cut=30):
    path = sorted(glob.glob(pattern))[-1]
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-cut])
    return path


def test_truncated_shard_is_an_error_naming_it(tmp_path):
    pattern = _write(tmp_path, _videos(8), shards=2)
    path = _truncate(pattern)
    source = Source.from_pattern(pattern, CFG)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=f"(?s){os.path.basename(path)}.*truncated or "
                             "corrupt"):
        list(reader.evaluation_dataset(source, CFG, 4))
    with pytest.raises(tf.errors.InvalidArgumentError, match="truncated"):
        for _ in reader.training_dataset(source, CFG, 2, num_epochs=1):
            pass


@pytest.mark.parametrize("num_videos,block_size", [(8, 3), (8, 4), (0, 4)])
def test_blockwise_accounting_equals_per_record(tmp_path, num_videos,
                                               block_size):
    pattern = _write(tmp_path, _videos(num_videos), shards=1)
    path = sorted(glob.glob(pattern))[0]
    size = os.path.getsize(path)

    def elements(dataset):
        return [(r.numpy(), n.numpy()) for r, n in dataset]

    expected = elements(records.checked_records(path, size))
    assert len(expected) == num_videos
    assert elements(records.checked_records_blockwise(
        path, size, block_size)) == expected
    if num_videos:
        _truncate(pattern)
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=f"(?s){os.path.basename(path)}.*truncated"):
            elements(records.checked_records_blockwise(
                path, os.path.getsize(path), block_size))


def test_skip_corrupt_records_counts_them(tmp_path):
    videos = _videos(8)
    videos[1] = (videos[1][0], [11], videos[1][2])  # label out of range
    pattern = _write(tmp_path, videos, shards=2)
    _truncate(pattern)  # the last record of shard 2 is cut
    source = Source.from_pattern(pattern, CFG)
    counter = records.CorruptionCounter()
    got = _collect(reader.evaluation_dataset(source, CFG, 3, counter))
    assert sorted(got) == [v[0] for i, v in enumerate(videos)
                           if i not in (1, 7)]
    assert counter.result() == {"skipped_records": 1, "corrupt_shards": 1}
    frames, n, dense = _expected(videos[3])
    np.testing.assert_array_equal(got["v003"][0], frames)
    np.testing.assert_array_equal(got["v003"][2], dense)


def test_mirrored_batches_keep_every_record_once(tmp_path):
    videos = _videos(13)
    source = Source.from_pattern(_write(tmp_path, videos, shards=3), CFG)
    strategy = distribute.make_strategy("mirrored")
    ds = reader.evaluation_dataset(source, CFG, batch_size=4)  # 13 % 4 != 0

    def replica_fn(inputs, labels, meta):
        return {"id": meta["id"], "mask": meta["mask"],
                "n": inputs["num_frames"]}

    ids = []
    for out in run_batches(strategy, ds, replica_fn):
        ids += records.decode_ids(out["id"][out["mask"]])
    assert ids == _ids_in_order(ds)  # same order as on one device
    assert sorted(ids) == [v[0] for v in videos]


def test_segment_datasets(tmp_path):
    rng = np.random.default_rng(0)
    feats = {"rgb": rng.normal(size=(12, 8)), "audio": rng.normal(size=(12, 4))}
    segments = {"segment_labels": [3, 3, 5], "segment_start_times": [0, 5, 5],
                "segment_scores": [1.0, 0.0, 1.0]}
    example = writer.make_frame_example("vid", [3, 5], feats,
                                        segments=segments)
    write_sharded([writer.serialize(example)], str(tmp_path), "seg", 1,
                  name_template=YT8M_NAME_TEMPLATE)
    cfg = ReaderConfig(feature_names=("rgb", "audio"), feature_sizes=SIZES,
                       num_classes=10, segment_labels=True)
    source = Source.from_pattern(str(tmp_path / "seg*.tfrecord"), cfg)
    inputs, labels, meta = next(iter(reader.segment_dataset(source, cfg, 4)))
    mask = meta["mask"].numpy()
    assert records.decode_ids(meta["id"].numpy()[mask]) == ["vid:0", "vid:5"]
    assert inputs["frames"].shape == (4, 5, 12)
    np.testing.assert_array_equal(inputs["num_frames"].numpy()[mask], [5, 5])
    q = np.concatenate([writer.quantize(feats["rgb"]),
                        writer.quantize(feats["audio"])], 1)
    np.testing.assert_array_equal(inputs["frames"][1], q[5:10])
    assert np.flatnonzero(meta["rated"][0]).tolist() == [3]
    assert np.flatnonzero(meta["rated"][1]).tolist() == [3, 5]
    assert np.flatnonzero(labels[0]).tolist() == [3]
    assert np.flatnonzero(labels[1]).tolist() == [5]
    # Inference: every 5-frame segment, the last one partial (12 frames).
    all_cfg = ReaderConfig(feature_names=("rgb", "audio"),
                           feature_sizes=SIZES, num_classes=10)
    source = Source.from_pattern(str(tmp_path / "seg*.tfrecord"), all_cfg)
    inputs, _, meta = next(iter(reader.segment_dataset(
        source, all_cfg, 4, rated_only=False)))
    mask = meta["mask"].numpy()
    assert records.decode_ids(meta["id"].numpy()[mask]) == [
        "vid:0", "vid:5", "vid:10"]
    np.testing.assert_array_equal(inputs["num_frames"].numpy()[mask],
                                  [5, 5, 2])
    np.testing.assert_array_equal(inputs["frames"][2][2:], 0)


def test_ids_round_trip():
    ids = tf.constant(["6l0e", "", "x" * 64, "ü"])
    assert records.decode_ids(records.encode_ids(ids)) == [
        "6l0e", "", "x" * 64, "ü"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="longer than"):
        records.encode_ids(tf.constant(["y" * 65]))
