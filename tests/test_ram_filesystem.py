"""Every path a user gives works on any tf.io.gfile filesystem: each
family's whole flow (convert from the release's files, train with
checkpoints, evaluate; YouTube-8M also predicts and ensembles) on
TensorFlow's in-memory ram:// filesystem, which needs no network."""

import json
import os
import uuid

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from input_pipeline import records
from tfrecord_tools.demo_data import write_demo_dataset
from yt8m import ensemble, inference, submission, train
from yt8m import eval as yeval

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_NETVLAD = ["--model=NetVLADModelLF", "--frame_features",
                 "--feature_names=rgb,audio", "--feature_sizes=1024,128",
                 "--num_classes=20", "--netvlad_cluster_size=8",
                 "--netvlad_hidden_size=32", "--iterations=10"]


@pytest.fixture
def ram_root():
    """A fresh ram:// folder, deleted afterwards (ram:// files live in the
    process's memory until deleted)."""
    root = f"ram://{uuid.uuid4().hex}"
    yield root
    if tf.io.gfile.exists(root):
        tf.io.gfile.rmtree(root)


def run_cli(module, *args):
    FLAGS.unparse_flags()
    return module.main(FLAGS(["prog", *args]))


def test_yt8m_flow_on_ram(ram_root):
    root = ram_root
    data = f"{root}/data"
    write_demo_dataset(data, num_classes=20, num_train=24, num_validate=10,
                       num_test=6, min_frames=4, max_frames=12,
                       num_shards=(2, 1, 1), seed=0, num_segment_videos=0)
    shards = records.list_files(f"{data}/train*.tfrecord", "--pattern")
    assert len(shards) == 2
    assert records.manifest_record_count(shards) == 24  # from the manifest
    train_dir = f"{root}/run"
    step = run_cli(train, f"--train_data_pattern={data}/train*.tfrecord",
                   f"--train_dir={train_dir}", *SMALL_NETVLAD,
                   "--batch_size=8", "--max_steps=4",
                   "--checkpoint_every_steps=2", "--log_every_steps=2")
    assert step == 4
    assert tf.train.latest_checkpoint(train_dir).endswith("ckpt-4")
    with tf.io.gfile.GFile(f"{train_dir}/train_state.json") as f:
        assert json.load(f)["step"] == 4
    result = run_cli(yeval, f"--eval_data_pattern={data}/validate*.tfrecord",
                     f"--train_dir={train_dir}", "--batch_size=8")
    assert result["num_videos"] == 10
    assert tf.io.gfile.exists(f"{train_dir}/eval/metrics_step4.json")
    outs = []
    for k in range(2):
        out = f"{root}/pred{k}.csv"
        run_cli(inference, f"--input_data_pattern={data}/validate*.tfrecord",
                f"--train_dir={train_dir}", f"--output_file={out}",
                f"--output_labels_file={root}/labels.csv", "--top_k=20",
                "--batch_size=8")
        outs.append(out)
    ids, classes, scores = submission.read_video_predictions(outs[0])
    assert len(ids) == 10
    FLAGS.unparse_flags()
    FLAGS(["prog", f"--input_files={','.join(outs)}",
           f"--output_file={root}/ensemble.csv",
           f"--labels_file={root}/labels.csv"])
    ensemble.main(["yt8m.ensemble"])
    e_ids, e_classes, e_scores = submission.read_video_predictions(
        f"{root}/ensemble.csv")
    # no temporary file left beside the outputs
    assert not [p for p in tf.io.gfile.listdir(root) if p.startswith(".")]
    assert sorted(e_ids) == sorted(ids)
    order = {v: i for i, v in enumerate(ids)}
    np.testing.assert_allclose(
        np.sort(e_scores, axis=1),
        np.sort(scores[[order[v] for v in e_ids]], axis=1), atol=1e-5)


def test_yt8m_converter_reads_features_and_labels_on_ram(ram_root):
    """tfrecord_tools.yt8m_writer: per-video .npz features and the labels
    CSV on ram://, shards written there, read back by the reader."""
    import io

    from input_pipeline import yt8m as reader
    from tfrecord_tools import yt8m_writer

    root = ram_root
    rng = np.random.default_rng(0)
    rows = ["video_id,labels"]
    for k in range(5):
        buffer = io.BytesIO()
        np.savez(buffer, rgb=rng.normal(size=(3 + k, 1024)),
                 audio=rng.normal(size=(3 + k, 128)))
        with tf.io.gfile.GFile(f"{root}/feats/v{k}.npz", "wb") as f:
            f.write(buffer.getvalue())
        rows.append(f"v{k},{k} {k + 1}")
    with tf.io.gfile.GFile(f"{root}/labels.csv", "w") as f:
        f.write("\n".join(rows) + "\n")
    yt8m_writer.convert_directory(f"{root}/feats", f"{root}/labels.csv",
                                  f"{root}/shards", num_shards=2,
                                  num_classes=20, progress=False)
    shards = records.list_files(f"{root}/shards/train*.tfrecord", "--p")
    assert len(shards) == 2 and records.count_records(shards) == 5
    cfg = reader.ReaderConfig(feature_names=("rgb", "audio"),
                              feature_sizes=(1024, 128), num_classes=20,
                              frame_features=True, max_frames=300)
    source = reader.Source.from_pattern(f"{root}/shards/train*", cfg)
    labels = np.concatenate([b[1].numpy() for b in reader.evaluation_dataset(
        source, cfg, 5)])
    assert labels.sum() == 10
    assert _no_hidden_leftovers(f"{root}/shards")


def test_word_vectors_on_ram(tmp_path, ram_root):
    """Word vectors (text, gzipped word2vec binary, saved directory) read
    from and saved to ram://."""
    import gzip

    from vidcore.text import WordVectors

    root = ram_root
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat"]
    vectors = rng.normal(size=(3, 4)).astype(np.float32)
    text = "".join(w + " " + " ".join(f"{x:.6f}" for x in v) + "\n"
                   for w, v in zip(words, vectors))
    with tf.io.gfile.GFile(f"{root}/glove.txt", "w") as f:
        f.write(text)
    binary = b"3 4\n" + b"".join(w.encode() + b" " + v.tobytes() + b"\n"
                                  for w, v in zip(words, vectors))
    with tf.io.gfile.GFile(f"{root}/w2v.bin.gz", "wb") as f:
        f.write(gzip.compress(binary))
    glove = WordVectors.load(f"{root}/glove.txt")
    w2v = WordVectors.load(f"{root}/w2v.bin.gz")
    assert glove.words == words and w2v.words == words
    np.testing.assert_allclose(glove.vectors, vectors, atol=1e-6)
    np.testing.assert_array_equal(w2v.vectors, vectors)
    w2v.save(f"{root}/saved")
    back = WordVectors.load(f"{root}/saved")
    assert back.words == words
    np.testing.assert_array_equal(back.vectors, vectors)


# -- the other families --------------------------------------------------


def _copy_tree(src, dst):
    """Copies a local folder to any tf.io.gfile path (here ram://)."""
    for dirpath, _, names in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = dst if rel == "." else f"{dst}/{rel}"
        tf.io.gfile.makedirs(target)
        for name in names:
            tf.io.gfile.copy(os.path.join(dirpath, name), f"{target}/{name}",
                             overwrite=True)


def _run(flag_values, module, *args):
    flag_values.unparse_flags()
    try:
        return module.main(flag_values(["prog", *args]))
    finally:
        flag_values.unparse_flags()


def _no_hidden_leftovers(directory):
    """No temporary file of an atomic write is left in ``directory``."""
    return not [n for n in tf.io.gfile.listdir(directory)
                if n.endswith(".partial") or ".tmp-" in n]


def test_howto100m_flow_on_ram(tmp_path, ram_root):
    """Release files (video list, caption JSON, per-video .npy features,
    MSR-VTT CSV and .npz), word vectors, shards, checkpoints and results
    all on ram://."""
    from howto import eval as heval
    from howto import flags as hflags
    from howto import train as htrain
    from tfrecord_tools import howto_demo_data, howto_eval_sets, howto_writer

    local = str(tmp_path / "release")
    howto_demo_data.write_demo_release(local, dims=(16, 16), max_videos=16)
    root = ram_root
    release, shards = f"{root}/release", f"{root}/shards"
    _copy_tree(local, release)
    tf.io.gfile.copy(howto_demo_data.WORD_VECTORS, f"{root}/w2v.bin")
    settings = howto_writer.VideoSettings(
        features_path=f"{release}/features_2d",
        features_path_3d=f"{release}/features_3d", feature_dim_2d=16,
        feature_dim_3d=16)
    howto_writer.convert_videos(f"{release}/videos.csv",
                                f"{release}/captions.json", settings, shards,
                                num_shards=2, progress=False)
    howto_eval_sets.convert_eval_set(
        "msrvtt", f"{release}/msrvtt_test.csv",
        f"{release}/msrvtt_test_features.npz", shards, dims=(16, 16),
        progress=False)
    ckpt = f"{root}/ckpt"
    test = ["--eval_msrvtt=1", f"--msrvtt_test_path={shards}/msrvtt_test-*"]
    step = _run(hflags.FLAGS, htrain, f"--train_data={shards}/train-*",
                f"--word2vec_path={root}/w2v.bin", "--we_dim=10",
                "--feature_dim=32", "--embd_dim=32", "--n_pair=4",
                "--batch_size=8", "--batch_size_val=256", "--verbose=0",
                "--epochs=1", *test, f"--checkpoint_dir={ckpt}")
    assert step == 2 and tf.train.latest_checkpoint(ckpt).endswith("ckpt-2")
    results = _run(hflags.FLAGS, heval, *test, f"--checkpoint_dir={ckpt}",
                   f"--output_json={root}/retrieval.json")
    with tf.io.gfile.GFile(f"{root}/retrieval.json") as f:
        assert json.load(f)["results"] == json.loads(json.dumps(results))
    assert results["MSR-VTT text->video"]["num_queries"] == 1000
    assert _no_hidden_leftovers(root) and _no_hidden_leftovers(ckpt)


def test_kinetics_flow_on_ram(ram_root):
    """Videos (PyAV reads them through tf.io.gfile), label map, segment
    CSV, shards, checkpoints, accuracies and the predictions CSV on
    ram://."""
    from kinetics import eval as keval
    from kinetics import flags as kflags
    from kinetics import train as ktrain
    from tfrecord_tools import video_inputs, video_writer

    clips_dir = os.path.join(REPO, "kinetics", "data", "clips")
    classes = sorted(d for d in os.listdir(clips_dir)
                     if os.path.isdir(os.path.join(clips_dir, d)))
    root = ram_root
    clips, data = f"{root}/clips", f"{root}/data"
    _copy_tree(clips_dir, clips)
    with tf.io.gfile.GFile(f"{root}/label_map.txt", "w") as f:
        f.write("\n".join(classes) + "\n")
    label_map = video_inputs.read_label_map(f"{root}/label_map.txt")
    settings = video_writer.VideoSettings(fps=15, short_side=48)
    video_writer.convert_folder(clips, f"{data}/train", settings,
                                label_map=label_map, prefix="train",
                                num_shards=2, progress=False)
    with tf.io.gfile.GFile(f"{clips}/segments.csv") as f:
        labelled = [line for line in f if line.split(",")[1]]
    with tf.io.gfile.GFile(f"{root}/labelled.csv", "w") as f:
        f.write("".join(labelled))
    result = video_writer.convert_csv(
        f"{root}/labelled.csv", f"{data}/val", settings, video_root=clips,
        label_map=label_map, prefix="val", num_shards=1, progress=False)
    assert not result.rejects
    run = f"{root}/run"
    tiny = ["--clip_len=4", "--resize=32,42", "--crop_size=28",
            "--batch_size=4"]
    step = _run(kflags.FLAGS, ktrain, f"--data_path={data}",
                "--model=r2plus1d_18", *tiny, "--clips_per_video=2",
                "--epochs=1", "--lr_warmup_epochs=0", f"--output_dir={run}")
    assert step == 2 and tf.train.latest_checkpoint(run).endswith("ckpt-2")
    results = _run(kflags.FLAGS, keval, f"--data_path={data}",
                   f"--output_dir={run}", "--clips_per_video=3",
                   "--batch_size=4", f"--predictions_csv={root}/p.csv")
    assert results["num_videos"] == len(labelled) - 1  # minus the header
    with tf.io.gfile.GFile(f"{run}/eval.json") as f:
        assert json.load(f)["results"] == results
    with tf.io.gfile.GFile(f"{root}/p.csv") as f:
        assert len(f.read().splitlines()) == results["num_videos"] + 1
    assert _no_hidden_leftovers(root) and _no_hidden_leftovers(run)


def test_avlnet_flow_on_ram(tmp_path, ram_root):
    """Per-video features and wav audio, captions, the YouCook2 test
    pickle, shards, checkpoints and results on ram://."""
    from avl import eval as aeval
    from avl import flags as aflags
    from avl import train as atrain
    from tfrecord_tools import avl_demo_data, howto_eval_sets, howto_writer

    local = str(tmp_path / "release")
    avl_demo_data.write_demo_release(local, num_videos=16,
                                     num_test_videos=8, dims=(16, 16))
    root = ram_root
    release, shards = f"{root}/release", f"{root}/shards"
    _copy_tree(local, release)
    settings = howto_writer.VideoSettings(
        features_path=f"{release}/features_2d",
        features_path_3d=f"{release}/features_3d", feature_dim_2d=16,
        feature_dim_3d=16, features_path_audio=f"{release}/audio")
    howto_writer.convert_videos(f"{release}/videos.csv",
                                f"{release}/captions.json", settings, shards,
                                num_shards=2, progress=False)
    howto_eval_sets.convert_eval_set(
        "youcook", f"{release}/{avl_demo_data.TEST_FILE}", None, shards,
        dims=(16, 16), allow_pickle=True, progress=False)
    ckpt = f"{root}/ckpt"
    test = ["--eval_youcook=1", f"--youcook_val_path={shards}/youcook_val-*",
            "--youcook_num_frames_multiplier=1", "--batch_size_val=16"]
    step = _run(aflags.FLAGS, atrain, f"--train_data={shards}/train-*",
                "--feature_dim=32", "--embd_dim=32", "--batch_size=8",
                "--n_pair=2", "--howto_audio_frames=100", "--verbose=0",
                "--epochs=1", *test, f"--checkpoint_dir={ckpt}")
    assert step == 2 and tf.train.latest_checkpoint(ckpt).endswith("ckpt-2")
    results = _run(aflags.FLAGS, aeval, *test, f"--pretrain_path={ckpt}",
                   f"--output_json={root}/retrieval.json")
    with tf.io.gfile.GFile(f"{root}/retrieval.json") as f:
        saved = json.load(f)["results"]
    assert saved == json.loads(json.dumps(results))
    assert _no_hidden_leftovers(root) and _no_hidden_leftovers(ckpt)


def test_milnce_flow_on_ram(tmp_path, ram_root):
    """Raw videos (PyAV through tf.io.gfile), the video list and caption
    CSVs, word vectors, shards, checkpoints and results on ram://.

    The CLIs' convert-on-first-use of a raw folder runs the converter as
    its own process, which cannot see this process's ram:// (it would see
    gs:// or a shared disk): here the converter runs in this process, then
    training and evaluation read its shards."""
    from howto import eval_youcook, milnce_demo, milnce_train
    from howto import milnce_flags as mflags
    from tfrecord_tools import milnce_writer

    local = str(tmp_path / "user")
    videos, train_csv, captions, eval_csv = milnce_demo.write_user_layout(
        local)
    root = ram_root
    _copy_tree(local, root)
    tf.io.gfile.copy(milnce_demo.WORD_VECTORS, f"{root}/w2v.bin")

    def on_ram(path):
        return f"{root}/{os.path.relpath(path, local)}"

    for dataset, out, csv_path in (("howto100m", "records", train_csv),
                                   ("youcook", "eval_records", eval_csv)):
        result = milnce_writer.convert_dataset(
            dataset, f"{root}/{out}", on_ram(videos), on_ram(csv_path),
            caption_root=on_ram(captions) if dataset == "howto100m" else None,
            settings=milnce_writer.default_settings(dataset, fps=5,
                                                    short_side=40),
            progress=False)
        assert result.paths and not result.rejects
    clip = ["--num_frames=4", "--fps=5", "--video_size=32", "--short_side=40"]
    evaluation = [f"--eval_video_root={root}/eval_records",
                  f"--eval_csv={on_ram(eval_csv)}", "--num_windows_test=2"]
    step = _run(mflags.FLAGS, milnce_train,
                f"--video_path={root}/records/*.tfrecord", *clip,
                "--min_time=1.6", "--num_candidates=2",
                f"--word2vec_path={root}/w2v.bin", "--batch_size=4",
                "--warmup_steps=1", "--steps_per_epoch=2", "--epochs=1",
                "--num_thread_reader=0", f"--checkpoint_root={root}",
                "--checkpoint_dir=model", "--verbose=0")
    assert step == 2
    assert tf.train.latest_checkpoint(f"{root}/model").endswith("ckpt-2")
    results = _run(mflags.FLAGS, eval_youcook, *evaluation,
                   f"--pretrain_cnn_path={root}/model", *clip,
                   "--batch_size=4", f"--output_json={root}/retrieval.json")
    with tf.io.gfile.GFile(f"{root}/retrieval.json") as f:
        saved = json.load(f)["results"]
    assert saved["YouCook2 text->video"]["num_queries"] == 4
    assert saved == json.loads(json.dumps(results))
    assert _no_hidden_leftovers(root)
