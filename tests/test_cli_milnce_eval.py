"""End-to-end runs of the MIL-NCE evaluation CLIs (howto.eval_msrvtt,
eval_youcook, eval_hmdb, extract_features) at tiny sizes.

Data: the four REAL clips of kinetics/data/clips, converted by
tfrecord_tools.milnce_writer into MSR-VTT, YouCook2 and HMDB-51 records
with captions and splits written here. Model: a small MIL-NCE model (random
weights, the demo word vectors as its frozen word table) saved as our
checkpoint folder (model_config.json + vocab.txt + checkpoint). Every
number the CLIs print is checked against a direct computation: the same
model called on the reader's windows one record at a time, then numpy
ranks (retrieval) or scikit-learn as the original eval_hmdb.py uses it
(linear probe).
"""

import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from howto import eval_hmdb, eval_msrvtt, eval_youcook, extract_features
from howto import milnce_eval, milnce_eval_cli, milnce_model, milnce_weights
from howto import milnce_flags as mflags
from input_pipeline import milnce as reader
from tfrecord_tools import milnce_writer
from tfrecord_tools import video_writer
from vidcore import text as text_lib
from vidcore import distribute, training
from vidcore.errors import UserInputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIPS = sorted(glob.glob(os.path.join(REPO, "kinetics", "data", "clips", "*",
                                      "*.mp4")))
WORD_VECTORS = os.path.join(REPO, "howto", "data", "demo_word_vectors.bin")
SHORT_SIDE = 40
WINDOWS = 2
CLIP_CFG = reader.MilNCEClipConfig(num_frames=4, fps=5.0, video_size=32,
                                   max_words=30, crop_only=False,
                                   center_crop=True, random_flip=False,
                                   num_windows_test=WINDOWS)
TINY = ["--num_frames=4", "--fps=5", "--video_size=32",
        f"--num_windows_test={WINDOWS}", "--batch_size=3", "--verbose=0",
        "--num_thread_reader=0"]
SENTENCES = ["the man is in the new car", "a boy says he will play",
             "they have been to australia", "we are not at the police",
             "the government said it has a plan", "he was with his family",
             "an australian team will play today",
             "the people were at the house", "she says they had been there",
             "the police are on the road", "it is the first time",
             "we will be there in the morning"]


def run_cli(module, *args):
    """Parses ``args`` as the CLI's command line and runs its main."""
    mflags.FLAGS.unparse_flags()
    return module.main(mflags.FLAGS(["prog", *args]))


def _link_videos(folder, names):
    os.makedirs(folder, exist_ok=True)
    for clip, name in zip(CLIPS, names):
        os.symlink(clip, os.path.join(folder, name))


def _write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        f.writelines(",".join(str(v) for v in row) + "\n" for row in rows)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Raw folders, CSVs and converted records of the three sets."""
    root = tmp_path_factory.mktemp("milnce_eval")
    flat = str(root / "videos")  # v0.mp4 .. v3.mp4
    _link_videos(flat, [f"v{i}.mp4" for i in range(len(CLIPS))])
    msrvtt_csv = _write_csv(
        str(root / "msrvtt.csv"), ["key", "vid_key", "video_id", "sentence"],
        [(f"ret{i}", f"msr{i}", f"v{i}", SENTENCES[i])
         for i in range(len(CLIPS))])
    youcook_csv = _write_csv(
        str(root / "youcook.csv"), ["end", "start", "task", "text",
                                    "video_id"],
        [(start + 1, start, 101, SENTENCES[3 * i + start], f"v{i}")
         for i in range(len(CLIPS)) for start in range(3)])
    hmdb_dir = str(root / "hmdb")  # <class>/<id>.mp4, two copies per clip
    hmdb_rows = []
    for i, clip in enumerate(CLIPS):
        name = f"class{i}"
        os.makedirs(os.path.join(hmdb_dir, name))
        for copy in range(2):
            video_id = f"h{i}_{copy}.mp4"
            os.symlink(clip, os.path.join(hmdb_dir, name, video_id))
            # split 1: copy 0 trains, copy 1 tests; split 2 the other way;
            # split 3: copy 1 of clips 2, 3 unused.
            split3 = 1 if copy == 0 else (2 if i < 2 else 0)
            hmdb_rows.append((video_id, f"{name}_test", 1 + copy, 2 - copy,
                              split3))
    hmdb_csv = _write_csv(str(root / "hmdb.csv"),
                          ["video_id", "label", "split1", "split2", "split3"],
                          hmdb_rows)
    out = {"root": root, "flat": flat, "msrvtt_csv": msrvtt_csv,
           "youcook_csv": youcook_csv, "hmdb_dir": hmdb_dir,
           "hmdb_csv": hmdb_csv}
    for dataset, video_path, csv_path in (("msrvtt", flat, msrvtt_csv),
                                          ("youcook", flat, youcook_csv),
                                          ("hmdb", hmdb_dir, hmdb_csv)):
        folder = str(root / f"{dataset}_records")
        result = milnce_writer.convert_dataset(
            dataset, folder, video_path, csv_path,
            settings=milnce_writer.default_settings(
                dataset, short_side=SHORT_SIDE), progress=False)
        assert not result.rejects, result.rejects
        out[dataset] = folder
        out[f"{dataset}_files"] = result.paths
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """(checkpoint folder, model, encoder) of a small random model."""
    vectors = text_lib.WordVectors.load(WORD_VECTORS)
    cfg = milnce_model.MilNCEConfig(
        embedding_dim=8, vocab_size=vectors.size + 1, word_dim=vectors.dim,
        text_hidden=16)
    keras.utils.set_random_seed(3)
    model = milnce_model.build_milnce_model(cfg)
    milnce_model.set_word_embeddings(
        model, np.concatenate([np.zeros((1, vectors.dim), np.float32),
                               vectors.vectors]))
    folder = str(tmp_path_factory.mktemp("milnce_ckpt"))
    training.save_model_checkpoint(model, folder)
    milnce_weights.save_config(cfg, folder)
    milnce_weights.save_vocabulary(list(vectors.words), folder)
    return folder, model, milnce_weights.text_encoder(list(vectors.words))


# -- direct references -----------------------------------------------------


@pytest.fixture(scope="module")
def youcook_reference(data, weights):
    """Direct (text, video) embeddings of the YouCook2 records."""
    _, model, encoder = weights
    return direct_retrieval_embeddings(model, data["youcook_files"], encoder)


def direct_retrieval_embeddings(model, files, encoder):
    """(text [N, D], video [N, D]): the whole model called on each record's
    windows (batch 1), video = mean over the windows."""
    texts, videos = [], []
    for element in reader.retrieval_dataset(files, CLIP_CFG, 1, encoder):
        windows = element["video"][0]  # [W, T, S, S, 3]
        ids = tf.repeat(element["text"][:, None], WINDOWS, axis=0)  # [W, 1, L]
        out = model({"video": windows, "text": ids}, training=False)
        videos.append(np.mean(out["video_embedding"].numpy(), axis=0))
        texts.append(out["text_embedding"].numpy()[0, 0])
    return np.stack(texts), np.stack(videos)


def numpy_retrieval_metrics(text, video):
    """R@1/5/10 (percent) and median rank of text->video, ties counted
    against the model, from S = text @ video^T."""
    scores = np.dot(text, video.T)
    true = np.diag(scores)[:, None]
    ranks = 1 + np.sum(scores > true, axis=1) + np.sum(scores == true,
                                                       axis=1) - 1
    return {"R@1": 100 * np.mean(ranks <= 1), "R@5": 100 * np.mean(ranks <= 5),
            "R@10": 100 * np.mean(ranks <= 10), "MedR": np.median(ranks)}


def direct_hmdb_features(model, files):
    """(features [N, W, 1024], labels, splits) by the model on each
    record's windows."""
    features, labels, splits = [], [], []
    for element in reader.classification_dataset(files, CLIP_CFG, 1):
        windows = element["video"][0]  # [W, T, S, S, 3]
        out = model({"video": windows,
                     "text": tf.zeros([WINDOWS, 1, 1], tf.int32)},
                    training=False)
        features.append(out["mixed_5c"].numpy())
        labels.append(int(element["label"][0]))
        splits.append(element["splits"][0].numpy())
    return np.stack(features), np.array(labels), np.stack(splits)


def sklearn_probe(features, labels, splits, num_windows):
    """Top-1 per split written as the original eval_hmdb.py computes it."""
    from sklearn import preprocessing
    from sklearn.svm import LinearSVC
    labels = preprocessing.LabelEncoder().fit_transform(labels)
    accuracies = {}
    for split in range(3):
        s = splits[:, split]
        train, test = np.where(s == 1)[0], np.where(s == 2)[0]
        if not len(test):
            continue
        svm = LinearSVC(C=100.0, random_state=0)
        svm.fit(features[train].reshape(-1, features.shape[-1]),
                labels[train].repeat(num_windows))
        pred = svm.decision_function(
            features[test].reshape(-1, features.shape[-1]))
        pred = pred.reshape(len(test), num_windows, -1).sum(axis=1)
        accuracies[split + 1] = float(np.mean(np.argmax(pred, axis=1)
                                              == labels[test]))
    return accuracies


# -- library ---------------------------------------------------------------


def test_embed_retrieval_equals_the_model_per_record(data, weights,
                                                     youcook_reference):
    _, model, encoder = weights
    files = data["youcook_files"]
    text, video, ids = milnce_eval.embed_retrieval(model, files, CLIP_CFG, 5,
                                                   encoder)
    ref_text, ref_video = youcook_reference
    assert len(ids) == text.shape[0] == 3 * len(CLIPS)
    assert ids[:3] == ["v0_0_1", "v0_1_2", "v0_2_3"]
    np.testing.assert_allclose(text, ref_text, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(video, ref_video, rtol=1e-4, atol=1e-5)
    # Different clips (segments of one video too) give different videos.
    assert np.min(np.abs(video[:, None] - video[None]).sum(-1)
                  + np.eye(len(video))) > 0


@pytest.mark.slow
def test_two_replicas_give_the_one_device_features(data, weights):
    folder, model, _ = weights
    strategy = distribute.make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        mirrored = milnce_model.build_milnce_model(
            milnce_weights.load_config(folder))
    mirrored.set_weights(model.get_weights())
    # 8 HMDB-51 videos in batches of 5 -> 6: the last one padded.
    features, labels, _ = milnce_eval.hmdb_features(
        mirrored, data["hmdb_files"], CLIP_CFG, 5, strategy)
    ref_features, ref_labels, _ = milnce_eval.hmdb_features(
        model, data["hmdb_files"], CLIP_CFG, 8)
    np.testing.assert_allclose(features, ref_features, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(labels, ref_labels)


def test_epoch_evaluator_scores_youcook(data, weights, youcook_reference):
    folder, model, _ = weights
    mflags.FLAGS.unparse_flags()
    mflags.FLAGS(["prog", f"--eval_video_root={data['youcook']}", *TINY])
    evaluate = milnce_eval_cli.epoch_evaluation(
        tf.distribute.get_strategy(), folder)
    scalars = evaluate(model, 1, 7)
    expected = numpy_retrieval_metrics(*youcook_reference)
    for key, value in expected.items():
        assert scalars[f"YouCook2 text->video/{key}"] == pytest.approx(
            value, abs=1e-9)


def test_linear_probe_binary_and_missing_splits():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(12, 3, 5)).astype(np.float32)
    labels = np.array([3, 7] * 6)
    features[labels == 7] += 0.5
    splits = np.zeros((12, 3), int)
    splits[:8, 0], splits[8:, 0] = 1, 2  # split 1 only
    results = milnce_eval.linear_probe(features, labels, splits)
    from sklearn.svm import LinearSVC
    svm = LinearSVC(C=100.0, random_state=0).fit(
        features[:8].reshape(-1, 5), np.repeat(labels[:8], 3))
    summed = svm.decision_function(features[8:].reshape(-1, 5)).reshape(
        4, 3).sum(axis=1)
    expected = np.mean(np.where(summed > 0, 7, 3) == labels[8:])
    assert results["split1"] == expected
    assert set(results) == {"split1", "mean", "num_test"}
    assert results["mean"] == expected
    with pytest.raises(UserInputError, match="no split"):
        milnce_eval.linear_probe(features, labels, np.zeros((12, 3), int))


# -- CLIs ------------------------------------------------------------------


@pytest.mark.slow
def test_eval_msrvtt_and_youcook_match_numpy(data, weights, tmp_path,
                                             capsys, youcook_reference):
    folder, model, encoder = weights
    for module, dataset, root in (
            (eval_msrvtt, "msrvtt", data["msrvtt"]),
            (eval_youcook, "youcook", os.path.join(data["youcook"],
                                                   "*.tfrecord"))):
        out = str(tmp_path / f"{dataset}.json")
        results = run_cli(module, f"--eval_video_root={root}",
                          f"--pretrain_cnn_path={folder}",
                          f"--output_json={out}", *TINY)
        (name, got), = results.items()
        assert name == f"{milnce_eval_title(dataset)} text->video"
        expected = numpy_retrieval_metrics(
            *(direct_retrieval_embeddings(model, data["msrvtt_files"],
                                          encoder)
              if dataset == "msrvtt" else youcook_reference))
        assert got["num_queries"] == (4 if dataset == "msrvtt" else 12)
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-9), (dataset, key)
        printed = capsys.readouterr().out
        assert "R@1" in printed and "MedR" in printed and name in printed
        saved = json.load(open(out))
        assert saved["results"][name] == got
        assert saved["recall_unit"] == "percent"


@pytest.mark.slow
def test_eval_takes_the_released_pth_and_its_dictionary(data, tmp_path):
    """The release's form: a plain PyTorch state dict with the space-to-depth
    stem, and s3d_dict.npy (random weights from the parity test's torch
    S3D, whose words are cooking words)."""
    torch = pytest.importorskip("torch")
    reference = pytest.importorskip("test_convert_milnce")
    state = reference._small_state_dict(space_to_depth=True)
    pth = str(tmp_path / "s3d_howto100m.pth")
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, pth)
    dictionary = str(tmp_path / "s3d_dict.npy")
    np.save(dictionary, np.array(reference.WORDS))
    results = run_cli(eval_msrvtt, f"--eval_video_root={data['msrvtt']}",
                      f"--pretrain_cnn_path={pth}",
                      f"--token_to_word_path={dictionary}", *TINY)
    cfg = milnce_weights.config_from_state_dict(state)
    assert cfg.space_to_depth and cfg.embedding_dim == 8
    model = milnce_model.build_milnce_model(cfg)
    milnce_weights.load_torch_state_dict(model, state)
    expected = numpy_retrieval_metrics(*direct_retrieval_embeddings(
        model, data["msrvtt_files"],
        milnce_weights.text_encoder(list(reference.WORDS))))
    got = results["MSR-VTT text->video"]
    assert {k: got[k] for k in expected} == pytest.approx(expected)


def milnce_eval_title(dataset):
    return {"msrvtt": "MSR-VTT", "youcook": "YouCook2"}[dataset]


@pytest.mark.slow
def test_eval_hmdb_matches_sklearn(data, weights, tmp_path, capsys):
    folder, model, _ = weights
    out = str(tmp_path / "hmdb.json")
    results = run_cli(eval_hmdb, f"--eval_video_root={data['hmdb']}",
                      f"--pretrain_cnn_path={folder}",
                      f"--output_json={out}", *TINY)
    features, labels, splits = direct_hmdb_features(model,
                                                    data["hmdb_files"])
    assert sorted(labels) == [0, 0, 1, 1, 2, 2, 3, 3]
    expected = sklearn_probe(features, labels, splits, WINDOWS)
    assert {k: results[f"split{k}"] for k in expected} == expected
    assert results["num_test"] == {"split1": 4, "split2": 4, "split3": 2}
    assert results["mean"] == pytest.approx(np.mean(list(expected.values())))
    printed = capsys.readouterr().out
    assert "mean" in printed and "top-1" in printed
    assert json.load(open(out))["results"]["split1"] == results["split1"]
    # The library's features are the per-record model's.
    got, got_labels, got_splits = milnce_eval.hmdb_features(
        model, data["hmdb_files"], CLIP_CFG, 3)
    assert got.shape == (8, WINDOWS, 1024)
    np.testing.assert_allclose(got, features, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got_labels, labels)
    np.testing.assert_array_equal(got_splits, splits)


@pytest.mark.slow
def test_extract_features_from_a_video_folder_converts_once(
        data, weights, tmp_path, capfd):
    folder, model, _ = weights
    cache = str(tmp_path / "cache")
    first = str(tmp_path / "features")
    paths = run_cli(extract_features, f"--video_dir={data['flat']}",
                    f"--output_dir={first}", f"--records_cache={cache}",
                    f"--pretrain_cnn_path={folder}",
                    f"--short_side={SHORT_SIDE}", *TINY)
    assert [os.path.basename(p) for p in paths] == [
        f"v{i}.npz" for i in range(len(CLIPS))]
    assert sorted(os.listdir(first)) == [f"v{i}.npz" for i in range(4)]
    shards = sorted(glob.glob(os.path.join(cache, "videos-*.tfrecord")))
    assert len(shards) == 1
    records = [video_writer.parse_video_example(r.numpy())
               for r in tf.data.TFRecordDataset(shards)]
    for path, record in zip(paths, records):
        saved = np.load(path)
        frames = len(record["frames"])
        windows = -(-frames // 4)  # ceil: the last window zero-padded
        assert saved["mixed_5c"].shape == (windows, 1024)
        assert saved["video_embedding"].shape == (windows, 8)
        np.testing.assert_allclose(
            saved["start_time"], record["start_us"] / 1e6
            + np.arange(windows) * 4 / 5.0, atol=1e-5)
    # The features are the model's on the reader's windows.
    rows = next(iter(reader.feature_windows_dataset(shards, CLIP_CFG, 64)))
    first_video = rows["video_index"].numpy() == 0
    out = model({"video": rows["video"][first_video],
                 "text": tf.zeros([int(first_video.sum()), 1, 1], tf.int32)})
    np.testing.assert_allclose(np.load(paths[0])["video_embedding"],
                               out["video_embedding"], rtol=1e-4, atol=1e-5)
    capfd.readouterr()
    shard_time = os.stat(shards[0]).st_mtime_ns
    second = str(tmp_path / "again")
    run_cli(extract_features, f"--video_dir={data['flat']}",
            f"--output_dir={second}", f"--records_cache={cache}",
            f"--pretrain_cnn_path={folder}", "--layers=mixed_5c",
            "--format=tfrecord", f"--short_side={SHORT_SIDE}", *TINY)
    assert "converted earlier" in capfd.readouterr().out  # no converter run
    assert os.stat(shards[0]).st_mtime_ns == shard_time
    assert os.listdir(second) == ["features-00000-of-00001.tfrecord"]
    parsed = [milnce_eval.parse_feature_example(r.numpy())
              for r in tf.data.TFRecordDataset(
                  os.path.join(second, "features-00000-of-00001.tfrecord"))]
    assert [media_id for media_id, _ in parsed] == ["v0", "v1", "v2", "v3"]
    for (_, arrays), path in zip(parsed, paths):
        assert sorted(arrays) == ["mixed_5c", "start_time"]
        np.testing.assert_array_equal(arrays["mixed_5c"],
                                      np.load(path)["mixed_5c"])
        np.testing.assert_array_equal(arrays["start_time"],
                                      np.load(path)["start_time"])


@pytest.mark.slow
def test_eval_raw_video_folder_is_converted_into_the_default_cache(
        data, weights):
    folder, _, _ = weights
    args = [f"--pretrain_cnn_path={folder}", f"--short_side={SHORT_SIDE}",
            *TINY]
    from_raw = run_cli(eval_msrvtt, f"--eval_video_root={data['flat']}",
                       f"--eval_csv={data['msrvtt_csv']}", *args)
    cache = os.path.join(data["flat"], "vidmodels_records", "msrvtt")
    shards = glob.glob(os.path.join(cache, "msrvtt-*.tfrecord"))
    assert len(shards) == 1
    # The same records as the library conversion: the same results.
    assert from_raw == run_cli(eval_msrvtt,
                               f"--eval_video_root={data['msrvtt']}", *args)


def test_user_errors(data, weights, tmp_path):
    folder, _, _ = weights
    with pytest.raises(UserInputError, match="--pretrain_cnn_path"):
        run_cli(eval_msrvtt, f"--eval_video_root={data['msrvtt']}", *TINY)
    with pytest.raises(UserInputError, match="matches no file"):
        run_cli(eval_youcook, f"--eval_video_root={tmp_path}/none-*",
                f"--pretrain_cnn_path={folder}", *TINY)
    with pytest.raises(UserInputError, match="exactly one input"):
        run_cli(extract_features, f"--output_dir={tmp_path}",
                f"--pretrain_cnn_path={folder}", *TINY)
    with pytest.raises(UserInputError, match="vocab"):
        run_cli(eval_msrvtt, f"--eval_video_root={data['msrvtt']}",
                f"--pretrain_cnn_path={folder}",
                f"--token_to_word_path={tmp_path}/missing.txt", *TINY)
