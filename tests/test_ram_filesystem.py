"""Every path a YouTube-8M user gives works on any tf.io.gfile filesystem:
the whole flow (write the records, train, evaluate, predict, ensemble) on
TensorFlow's in-memory ram:// filesystem, which needs no network."""

import json
import uuid

import numpy as np
import tensorflow as tf
from absl import flags

from input_pipeline import records
from tfrecord_tools.demo_data import write_demo_dataset
from yt8m import ensemble, inference, submission, train
from yt8m import eval as yeval

FLAGS = flags.FLAGS
SMALL_NETVLAD = ["--model=NetVLADModelLF", "--frame_features",
                 "--feature_names=rgb,audio", "--feature_sizes=1024,128",
                 "--num_classes=20", "--netvlad_cluster_size=8",
                 "--netvlad_hidden_size=32", "--iterations=10"]


def run_cli(module, *args):
    FLAGS.unparse_flags()
    return module.main(FLAGS(["prog", *args]))


def test_yt8m_flow_on_ram():
    root = f"ram://{uuid.uuid4().hex}"
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


def test_word_vectors_on_ram(tmp_path):
    """Word vectors (text, gzipped word2vec binary, saved directory) read
    from and saved to ram://."""
    import gzip

    from vidcore.text import WordVectors

    root = f"ram://{uuid.uuid4().hex}"
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
