"""End-to-end runs of the YouTube-8M CLIs on shards written by our writer."""

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from vidcore import metrics
from yt8m import eval as yeval
from yt8m import export, inference, submission, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
SMALL_NETVLAD = ["--model=NetVLADModelLF", "--frame_features",
                 "--feature_names=rgb,audio", "--feature_sizes=1024,128",
                 "--num_classes=20", "--netvlad_cluster_size=8",
                 "--netvlad_hidden_size=32", "--iterations=10",
                 "--netvlad_relu=False", "--gating", "--moe_prob_gating",
                 "--bn_momentum=0.9"]


def run_cli(module, *args):
    """Parses ``args`` as the module's command line and runs its main."""
    FLAGS.unparse_flags()
    argv = FLAGS(["prog", *args])
    return module.main(argv)


@pytest.fixture(scope="module")
def trained(demo_data, tmp_path_factory):
    train_dir = str(tmp_path_factory.mktemp("netvlad"))
    step = run_cli(train, f"--train_data_pattern={demo_data}/train*.tfrecord",
                   f"--train_dir={train_dir}", *SMALL_NETVLAD,
                   "--batch_size=16", "--base_learning_rate=0.003",
                   "--max_steps=60", "--checkpoint_every_steps=30",
                   "--log_every_steps=10", "--seed=0")
    assert step == 60
    return train_dir


def _validate(demo_data):
    return f"{demo_data}/validate0*.tfrecord"


def _chance_gap(labels_file, num_classes=20):
    ids, label_lists = submission.read_labels(labels_file)
    labels = np.zeros((len(ids), num_classes), bool)
    for i, classes in enumerate(label_lists):
        labels[i, list(classes)] = True
    rng = np.random.default_rng(0)
    return metrics.global_average_precision(rng.random(labels.shape), labels)


def test_train_records_flags_and_checkpoints(trained):
    with open(os.path.join(trained, "model_flags.json")) as f:
        record = json.load(f)
    assert record["model_config"]["model"] == "NetVLADModelLF"
    assert record["feature_names"] == ["rgb", "audio"]
    assert tf.train.latest_checkpoint(trained).endswith("ckpt-60")
    state = json.load(open(os.path.join(trained, "train_state.json")))
    assert state["done"] and state["step"] == 60


def test_eval_inference_and_gap_above_chance(trained, demo_data, tmp_path):
    result = run_cli(yeval, f"--eval_data_pattern={_validate(demo_data)}",
                     f"--train_dir={trained}", "--batch_size=16")
    assert result["num_videos"] == 37
    assert set(result) >= {"gap", "map", "hit_at_one", "perr", "avg_loss"}
    path = os.path.join(trained, "eval", "metrics_step60.json")
    assert json.load(open(path))["gap"] == result["gap"]
    assert glob.glob(os.path.join(trained, "eval", "events.out.*"))

    out = str(tmp_path / "val.csv")
    labels = str(tmp_path / "labels.csv")
    run_cli(inference, f"--input_data_pattern={_validate(demo_data)}",
            f"--train_dir={trained}", f"--output_file={out}",
            f"--output_labels_file={labels}", "--top_k=20",
            "--batch_size=16")
    assert result["gap"] > _chance_gap(labels) + 0.2
    ids, classes, scores = submission.read_video_predictions(out)
    assert len(ids) == len(set(ids)) == 37
    assert (np.diff(scores, axis=1) <= 0).all()
    # The file's GAP (top 20 of 20 classes) equals the evaluation's, up to
    # the file's 6 significant digits: scores near 1 round to equal values,
    # and their ties may order differently (seen once: 4.8e-5 apart).
    label_ids, label_lists = submission.read_labels(labels)
    assert list(label_ids) == list(ids)
    gap = metrics.global_average_precision_sparse(scores, classes,
                                                  [set(l) for l in
                                                   label_lists], top_k=20)
    assert gap == pytest.approx(result["gap"], abs=1e-4)


def test_eval_loop_stops_after_the_final_checkpoint(trained, demo_data,
                                                   tmp_path):
    result = run_cli(yeval, f"--eval_data_pattern={_validate(demo_data)}",
                     f"--train_dir={trained}", "--run_once=False",
                     "--eval_timeout_secs=30", f"--eval_dir={tmp_path}",
                     "--batch_size=16")
    assert result["step"] == 60
    assert os.path.exists(tmp_path / "metrics_step60.json")


def test_inference_mirrored_ragged_batches_equal_one_device(trained,
                                                           demo_data,
                                                           tmp_path):
    files = {}
    for strategy, batch in [("default", 16), ("mirrored", 5)]:
        files[strategy] = str(tmp_path / f"{strategy}.csv")
        run_cli(inference, f"--input_data_pattern={_validate(demo_data)}",
                f"--train_dir={trained}", f"--output_file={files[strategy]}",
                f"--strategy={strategy}", f"--batch_size={batch}",
                "--top_k=5")
    one = submission.read_video_predictions(files["default"])
    two = submission.read_video_predictions(files["mirrored"])
    assert list(one[0]) == list(two[0])  # 37 = 3 x (2 x 5) + 7: ragged
    np.testing.assert_array_equal(one[1], two[1])
    np.testing.assert_allclose(one[2], two[2], rtol=1e-4)


def _worker_shares(procs):
    """{worker index: videos} from each process's ``worker I: N videos``."""
    shares = {}
    for proc in procs:
        found = re.findall(r"^worker (\d+): (\d+) videos$", proc.stdout,
                           re.MULTILINE)
        assert len(found) == 1, proc.stdout
        shares[int(found[0][0])] = int(found[0][1])
    return shares


def test_eval_split_over_two_workers_equals_one_process(
        trained, demo_data, tmp_path, run_workers):
    args = [f"--eval_data_pattern={_validate(demo_data)}",
            f"--train_dir={trained}", "--batch_size=16"]
    one = run_cli(yeval, *args, f"--eval_dir={tmp_path / 'one'}")
    procs = run_workers(["yt8m.eval", *args,
                         f"--eval_dir={tmp_path / 'two'}"], 2)
    shares = _worker_shares(procs)
    assert sorted(shares) == [0, 1] and min(shares.values()) > 0
    assert sum(shares.values()) == one["num_videos"] == 37
    assert "Metrics written" in procs[0].stdout
    assert "Metrics written" not in procs[1].stdout
    split = json.load(open(tmp_path / "two" / "metrics_step60.json"))
    for key in ("gap", "map", "hit_at_one", "perr", "avg_loss"):
        assert split[key] == pytest.approx(one[key], rel=0, abs=1e-9), key
    assert split["num_videos"] == 37
    assert not [n for n in os.listdir(tmp_path / "two") if n.startswith(".")]


def test_inference_split_with_a_worker_without_shards_equals_one_process(
        trained, demo_data, tmp_path, run_workers):
    shard = f"{demo_data}/validate0000.tfrecord"
    args = [f"--input_data_pattern={shard}", f"--train_dir={trained}",
            "--batch_size=16", "--top_k=5"]
    run_cli(inference, *args, f"--output_file={tmp_path / 'one.csv'}",
            f"--output_labels_file={tmp_path / 'one_labels.csv'}")
    out = tmp_path / "split"
    out.mkdir()
    procs = run_workers(["yt8m.inference", *args,
                         f"--output_file={out / 'two.csv'}",
                         f"--output_labels_file={out / 'two_labels.csv'}"],
                        2)
    shares = _worker_shares(procs)
    assert shares[1] == 0 and shares[0] > 0  # one shard, two workers
    for one, two in (("one.csv", "split/two.csv"),
                     ("one_labels.csv", "split/two_labels.csv")):
        assert (tmp_path / one).read_bytes() == (tmp_path / two).read_bytes()
    ids, _, _ = submission.read_video_predictions(str(out / "two.csv"))
    assert len(ids) == len(set(ids)) == shares[0]
    assert sorted(os.listdir(out)) == ["two.csv", "two_labels.csv"]


def test_export_serving_signature(trained, demo_data, tmp_path):
    run_cli(export, f"--train_dir={trained}",
            f"--export_dir={tmp_path / 'export'}", "--top_k=5")
    loaded = tf.saved_model.load(str(tmp_path / "export" / "saved_model"))
    serve = loaded.signatures["serving_default"]
    shard = sorted(glob.glob(_validate(demo_data)))[0]
    raw = [r.numpy() for r in tf.data.TFRecordDataset(shard).take(4)]
    out = serve(serialized_examples=tf.constant(raw))
    assert out["class_indexes"].shape == (4, 5)
    predictions = str(tmp_path / "val.csv")
    run_cli(inference, f"--input_data_pattern={shard}",
            f"--train_dir={trained}", f"--output_file={predictions}",
            "--top_k=5", "--batch_size=16")
    ids, classes, scores = submission.read_video_predictions(predictions)
    served_ids = [v.decode() for v in out["video_id"].numpy()]
    rows = [list(ids).index(v) for v in served_ids]
    np.testing.assert_array_equal(out["class_indexes"].numpy(), classes[rows])
    np.testing.assert_allclose(out["predictions"].numpy(), scores[rows],
                               rtol=1e-4)
    import keras
    import yt8m.models  # noqa: F401  (registers the layers)
    model = keras.saving.load_model(str(tmp_path / "export" / "model.keras"))
    assert model.output_shape == (None, 20)


def test_segment_inference_and_eval(trained, demo_data, tmp_path):
    whitelist = tmp_path / "classes.csv"
    whitelist.write_text("Index\n" + "\n".join(map(str, range(20))) + "\n")
    out = str(tmp_path / "segments.csv")
    pattern = f"{demo_data}/validate_segments*.tfrecord"
    run_cli(inference, f"--input_data_pattern={pattern}",
            f"--train_dir={trained}", f"--output_file={out}",
            "--segment_labels", f"--segment_label_ids_file={whitelist}",
            "--batch_size=32")
    ranked = submission.read_segment_predictions(out)
    assert ranked and all(start % 5 == 0 for segs in ranked.values()
                          for _, start in segs)
    result = run_cli(yeval, f"--eval_data_pattern={pattern}",
                     f"--train_dir={trained}", "--segment_labels",
                     f"--segment_label_ids_file={whitelist}",
                     "--batch_size=32")
    assert 0.0 < result["segment_map"] <= 1.0
    assert result["num_rated_pairs"] > 0


def test_published_style_inference_flags_are_accepted(trained, demo_data,
                                                      tmp_path, caplog):
    """The published inference commands repeat the training flags; the
    record in train_dir wins where they disagree."""
    out = str(tmp_path / "p.csv")
    run_cli(inference, f"--output_file={out}",
            f"--input_data_pattern={_validate(demo_data)}",
            "--model=NetVLADModelLF", f"--train_dir={trained}",
            "--frame_features=True", '--feature_names=rgb,audio',
            '--feature_sizes=1024,128', "--batch_size=64",
            "--base_learning_rate=0.0002", "--netvlad_cluster_size=256",
            "--netvlad_hidden_size=1024", "--moe_l2=1e-6", "--iterations=300",
            "--learning_rate_decay=0.8", "--netvlad_relu=False",
            "--gating=True", "--moe_prob_gating=True", "--run_once=True",
            "--top_k=50")
    assert len(submission.read_video_predictions(out)[0]) == 37


def test_resume_continues_from_latest_checkpoint(trained, demo_data,
                                                 tmp_path):
    import shutil
    copy = str(tmp_path / "copy")
    shutil.copytree(trained, copy)
    step = run_cli(train, f"--train_data_pattern={demo_data}/train*.tfrecord",
                   f"--train_dir={copy}", *SMALL_NETVLAD, "--batch_size=16",
                   "--max_step=70")  # the published spelling of max_steps
    assert step == 70
    assert json.load(open(os.path.join(copy, "train_state.json")))[
        "step"] == 70
    other = [a.replace("--netvlad_hidden_size=32", "--netvlad_hidden_size=64")
             for a in SMALL_NETVLAD]
    with pytest.raises(ValueError, match="netvlad_hidden_size"):
        run_cli(train, f"--train_data_pattern={demo_data}/train*.tfrecord",
                f"--train_dir={copy}", *other, "--max_steps=80")


def test_dry_run_prints_parameter_count(capsys):
    count = run_cli(train, "--dry_run", "--flagfile="
                    f"{REPO}/configs/yt8m/gated_dbof.flags",
                    "--num_classes=4716")
    assert count == 41_543_128
    assert "Trainable parameters: 41,543,128" in capsys.readouterr().out


def test_skip_corrupt_records_in_eval(trained, demo_data, tmp_path):
    import shutil
    for path in glob.glob(_validate(demo_data)):
        shutil.copy(path, tmp_path)
    last = sorted(glob.glob(str(tmp_path / "validate0*.tfrecord")))[-1]
    data = open(last, "rb").read()
    open(last, "wb").write(data[:-100])
    pattern = str(tmp_path / "validate0*.tfrecord")
    with pytest.raises(tf.errors.InvalidArgumentError, match="truncated"):
        run_cli(yeval, f"--eval_data_pattern={pattern}",
                f"--train_dir={trained}", f"--eval_dir={tmp_path}/e1",
                "--batch_size=16")
    result = run_cli(yeval, f"--eval_data_pattern={pattern}",
                     f"--train_dir={trained}", "--skip_corrupt_records",
                     f"--eval_dir={tmp_path}/e2", "--batch_size=16")
    assert result["corrupt_shards"] == 1 and result["num_videos"] == 36
    saved = json.load(open(tmp_path / "e2" / "metrics_step60.json"))
    assert saved["corrupt_shards"] == 1


def _cli(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO,
                          capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_bad_input_gives_one_clear_line(demo_data, tmp_path):
    proc = _cli("yt8m.train", f"--train_data_pattern={demo_data}/train*",
                f"--train_dir={tmp_path}", "--model=NetVLADModelLF",
                "--frame_features", "--feature_names=rgb,audio",
                "--feature_sizes=1024,64", "--max_steps=1")
    assert proc.returncode == 1
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1
    assert "'audio' has 128 values per frame but --feature_sizes says 64" in \
        lines[0] and "train0000.tfrecord" in lines[0]
    proc = _cli("yt8m.eval", "--eval_data_pattern=/nonexistent/*.tfrecord",
                f"--train_dir={tmp_path}")
    assert proc.returncode == 1 and "model_flags.json not found" in \
        proc.stderr


@pytest.mark.xdist_group("memory_heavy")
@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(
    os.path.basename(p) for p in glob.glob(f"{REPO}/configs/yt8m/*.flags")))
def test_published_command_runs(preset, demo_data, tmp_path):
    """Each published command (its preset: model, sizes, optimiser), data
    path changed, one step at a batch of 8, then evaluation; in a fresh
    process each: one training step of a 333 M parameter model with Adam
    needs more than 7 GB, which a process of its own hands back when it
    ends. At the published batch (128 videos of 300 frames) the GRU's step
    alone took 15.6 GB on the CPU."""
    proc = _cli("yt8m.train", f"--flagfile={REPO}/configs/yt8m/{preset}",
                f"--train_data_pattern={demo_data}/train*.tfrecord",
                f"--train_dir={tmp_path}", "--max_steps=1", "--batch_size=8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Training finished at step 1" in proc.stdout
    proc = _cli("yt8m.eval", f"--eval_data_pattern={_validate(demo_data)}",
                f"--train_dir={tmp_path}", "--batch_size=64")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "num_videos  37" in proc.stdout


@pytest.mark.slow
def test_quick_demo(tmp_path):
    proc = _cli("yt8m.demo", f"--workdir={tmp_path}", "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ensemble" in proc.stdout and os.path.exists(
        tmp_path / "submission.csv")
