"""End-to-end runs of the Kinetics CLIs on shards of REAL clips
(kinetics/data/clips) written by tfrecord_tools.video_writer."""

import glob
import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import video as reader
from kinetics import convert_torchvision, models, train
from kinetics import eval as keval
from kinetics import flags as kflags
from tfrecord_tools import video_writer
from vidcore import training
from vidcore.errors import UserInputError

pytest.importorskip("av")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIPS = os.path.join(REPO, "kinetics", "data", "clips")
PRESETS = os.path.join(REPO, "configs", "kinetics")
CLASSES = sorted(d for d in os.listdir(CLIPS)
                 if os.path.isdir(os.path.join(CLIPS, d)))

# Tiny clips so that R(2+1)D-18 trains in seconds on a CPU.
TINY = ["--clip_len=4", "--resize=32,42", "--crop_size=28",
        "--clips_per_video=2", "--batch_size=4", "--print_freq=1"]


def run_cli(module, *args):
    """Parses ``args`` as the module's command line and runs its main."""
    fv = kflags.FLAGS
    fv.unparse_flags()
    argv = fv(["prog", *args])
    return module.main(argv)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """train/: the 4 clips (one per class folder); val/: the segments CSV
    (6 segments, one unlabelled); both with the same class list."""
    root = str(tmp_path_factory.mktemp("kinetics_data"))
    settings = video_writer.VideoSettings(fps=15, short_side=48)
    video_writer.convert_folder(CLIPS, os.path.join(root, "train"), settings,
                                label_map=CLASSES, prefix="train",
                                num_shards=2, progress=False)
    labelled = os.path.join(root, "labelled.csv")
    with open(os.path.join(CLIPS, "segments.csv")) as src, \
            open(labelled, "w") as dst:
        for line in src:
            if line.split(",")[1]:  # drop the unlabelled row
                dst.write(line)
    video_writer.convert_csv(labelled, os.path.join(root, "val"), settings,
                             video_root=CLIPS, label_map=CLASSES,
                             prefix="val", num_shards=1, progress=False)
    return root


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run"))
    step = run_cli(train, f"--data_path={data}", "--model=r2plus1d_18",
                   *TINY, "--epochs=2", "--lr_warmup_epochs=1",
                   "--lr_milestones=1", f"--output_dir={out}")
    assert step == 2 * (4 * 2 // 4)
    return out


def test_dry_run_prints_the_spec_parameter_counts(capsys):
    for model, count in (("r3d_18", 33_371_472), ("mc3_18", 11_695_440),
                         ("r2plus1d_18", 31_505_325), ("s3d", 8_320_048)):
        assert run_cli(train, f"--model={model}", "--dry_run") == count
        assert f"Trainable parameters: {count:,}" in capsys.readouterr().out


def test_train_records_config_checkpoints_and_epoch_evaluation(trained):
    cfg = models.read_config(trained)
    assert (cfg.model, cfg.num_classes, cfg.clip_len, cfg.crop_size,
            cfg.resize) == ("r2plus1d_18", 4, 4, 28, (32, 42))
    assert list(cfg.class_names) == CLASSES
    assert tf.train.latest_checkpoint(trained).endswith("ckpt-4")
    events = glob.glob(os.path.join(trained, "events.out.tfevents.*"))
    tags = set()
    for path in events:
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    assert {"loss/label", "learning_rate", "eval/video_acc@1",
            "eval/clip_acc@1"} <= tags


def test_eval_reports_clip_and_video_accuracy(trained, data, tmp_path):
    preds = str(tmp_path / "p.csv")
    results = run_cli(keval, f"--data_path={data}", f"--output_dir={trained}",
                      "--clips_per_video=3", "--batch_size=4",
                      f"--predictions_csv={preds}")
    assert results["num_videos"] == 5 and results["num_clips"] == 15
    for key in ("clip_acc@1", "clip_acc@5", "video_acc@1", "video_acc@5"):
        assert 0.0 <= results[key] <= 100.0
    assert results["video_acc@5"] == 100.0  # 4 classes: top-5 holds all
    saved = json.loads(pathlib.Path(trained, "eval.json").read_text())
    assert saved["results"] == results
    rows = pathlib.Path(preds).read_text().splitlines()
    assert rows[0] == "video_id,label,top5" and len(rows) == 6
    assert all(r.split(",")[1] in CLASSES for r in rows[1:])


def test_eval_split_over_two_workers_equals_one_process(trained, data,
                                                        tmp_path,
                                                        run_workers):
    # train/ has two shards: one per worker.
    args = [f"--data_path={data}", "--val_dir=train",
            f"--output_dir={trained}", "--clips_per_video=3",
            "--batch_size=4"]
    one = run_cli(keval, *args, f"--output_json={tmp_path / 'one.json'}",
                  f"--predictions_csv={tmp_path / 'one.csv'}")
    out = tmp_path / "split"
    out.mkdir()
    procs = run_workers(["kinetics.eval", *args,
                         f"--output_json={out / 'two.json'}",
                         f"--predictions_csv={out / 'two.csv'}"], 2)
    assert [p.stdout.count(f"worker {i}: 2 videos")
            for i, p in enumerate(procs)] == [1, 1]
    split = json.loads((out / "two.json").read_text())["results"]
    assert split.keys() == one.keys()
    for key, value in one.items():
        assert split[key] == pytest.approx(value, rel=0, abs=1e-9), key
    assert (out / "two.csv").read_text() == (tmp_path / "one.csv").read_text()
    assert sorted(os.listdir(out)) == ["two.csv", "two.json"]


def test_resume_continues_and_refuses_another_model(trained, data, tmp_path):
    import shutil
    copy = str(tmp_path / "copy")
    shutil.copytree(trained, copy)
    step = run_cli(train, f"--data_path={data}", "--model=r2plus1d_18",
                   *TINY, "--max_steps=6", "--eval_each_epoch=false",
                   f"--output_dir={copy}")
    assert step == 6
    with pytest.raises(UserInputError, match="holds a run of model"):
        run_cli(train, f"--data_path={data}", "--model=mc3_18", *TINY,
                "--max_steps=7", f"--output_dir={copy}")
    # --resume into a fresh directory takes weights, optimizer and step.
    fresh = str(tmp_path / "fresh")
    step = run_cli(train, f"--data_path={data}", "--model=r2plus1d_18",
                   *TINY, "--max_steps=7", "--eval_each_epoch=false",
                   f"--resume={copy}", f"--output_dir={fresh}")
    assert step == 7


def test_two_replicas_with_sync_bn(data, tmp_path):
    step = run_cli(train, f"--data_path={data}", "--model=mc3_18", *TINY,
                   "--strategy=mirrored", "--sync_bn", "--batch_size=2",
                   "--max_steps=2", "--eval_each_epoch=false",
                   f"--output_dir={tmp_path}")
    assert step == 2
    assert json.loads((tmp_path / "train_state.json").read_text())[
        "replicas"] == 2


def test_errors_name_the_problem(data, tmp_path):
    with pytest.raises(UserInputError, match="--data_path is required"):
        run_cli(train, *TINY, f"--output_dir={tmp_path}")
    with pytest.raises(UserInputError, match="--resize must be two"):
        run_cli(train, f"--data_path={data}", "--resize=64", "--max_steps=1",
                f"--output_dir={tmp_path}")
    with pytest.raises(UserInputError, match="larger than the resized"):
        run_cli(train, f"--data_path={data}", "--resize=32,42",
                "--crop_size=40", f"--output_dir={tmp_path}")
    with pytest.raises(UserInputError, match="no \\*.tfrecord shards"):
        os.makedirs(tmp_path / "empty" / "train")
        run_cli(train, f"--data_path={tmp_path / 'empty'}",
                f"--output_dir={tmp_path}")
    with pytest.raises(UserInputError, match="lr_milestones"):
        run_cli(train, f"--data_path={data}", *TINY, "--lr_milestones=a",
                f"--output_dir={tmp_path}")
    with pytest.raises(UserInputError, match="no model_config.json"):
        run_cli(keval, f"--data_path={data}", f"--output_dir={tmp_path}")


def test_validation_classes_must_match_the_model(data, tmp_path):
    other = str(tmp_path / "other")
    video_writer.convert_folder(
        CLIPS, os.path.join(other, "train"),
        video_writer.VideoSettings(fps=15, short_side=48),
        label_map=list(reversed(CLASSES)), prefix="train", progress=False)
    os.symlink(os.path.join(data, "val"), os.path.join(other, "val"))
    with pytest.raises(UserInputError, match="same --label_map"):
        run_cli(train, f"--data_path={other}", *TINY, "--max_steps=1",
                f"--output_dir={tmp_path / 'run'}")


# --------------------------------------------------------------------------- #
# torchvision weights: conversion CLI, evaluation and fine-tuning from them.

def _torchvision_state(tmp_path, name, num_classes):
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision.models.video")
    torch.manual_seed(0)
    net = getattr(tv, name)(weights=None, num_classes=num_classes).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    path = str(tmp_path / f"{name}.pth")
    torch.save(net.state_dict(), path)
    return net, path


def test_converted_weights_give_torchvision_logits_on_real_clips(data,
                                                                  tmp_path):
    """convert_torchvision -> checkpoint; the Keras model on clips from our
    reader gives the logits of torchvision's model on the same clips."""
    torch = pytest.importorskip("torch")
    net, pth = _torchvision_state(tmp_path, "r2plus1d_18", 4)
    out = str(tmp_path / "converted")
    run_cli_convert("--model=r2plus1d_18", f"--weights={pth}",
                    f"--output_dir={out}", "--clip_len=4")
    cfg = models.read_config(out)
    assert (cfg.num_classes, cfg.crop_size, cfg.resize) == (4, 112,
                                                            (128, 171))
    model = models.build_model(cfg)
    training.restore_model_weights(model, out)
    clip_cfg = reader.VideoClipConfig(clip_len=4, frame_rate=15,
                                      clips_per_video=1, resize=(128, 171),
                                      crop_size=112)
    shards = sorted(glob.glob(os.path.join(data, "val", "*.tfrecord*")))
    clips, *_ = next(iter(reader.evaluation_dataset(shards, clip_cfg, 2)))
    ours = model(clips, training=False).numpy()
    with torch.no_grad():
        theirs = net(torch.from_numpy(
            np.transpose(clips.numpy(), (0, 4, 1, 2, 3)).copy())).numpy()
    assert np.max(np.abs(ours - theirs)) < 1e-4
    # eval straight from the converted directory, and from the .pth
    run_cli(keval, f"--data_path={data}", f"--output_dir={out}",
            "--clips_per_video=1", "--batch_size=2")
    results = run_cli(keval, f"--data_path={data}", "--model=r2plus1d_18",
                      f"--weights={pth}", "--clip_len=4",
                      "--clips_per_video=1", "--batch_size=2")
    assert results["num_videos"] == 5
    with pytest.raises(UserInputError, match="already holds a checkpoint"):
        run_cli_convert("--model=r2plus1d_18", f"--weights={pth}",
                        f"--output_dir={out}")
    with pytest.raises(UserInputError, match="not a torchvision s3d"):
        run_cli_convert("--model=s3d", f"--weights={pth}",
                        f"--output_dir={tmp_path / 'x'}")


def run_cli_convert(*args):
    fv = convert_torchvision.FLAGS
    fv.unparse_flags()
    return convert_torchvision.main(fv(["prog", *args]))


def test_finetune_from_torchvision_weights_with_new_classes(data, tmp_path):
    _, pth = _torchvision_state(tmp_path, "mc3_18", 400)
    step = run_cli(train, f"--data_path={data}", "--model=mc3_18", *TINY,
                   f"--weights={pth}", "--max_steps=1",
                   "--eval_each_epoch=false",
                   f"--output_dir={tmp_path / 'ft'}")
    assert step == 1
    assert models.read_config(str(tmp_path / "ft")).num_classes == 4


# --------------------------------------------------------------------------- #
# Presets: the recipe's commands with only the paths changed (plus one step
# and a small batch: full-size clips on a CPU).

def _cli(module, *args, env=None):
    return subprocess.run([sys.executable, "-m", module, *args],
                          check=False, capture_output=True, text=True,
                          cwd=REPO, env={**os.environ,
                                         "TF_CPP_MIN_LOG_LEVEL": "2",
                                         **(env or {})})


def _one_worker_tf_config():
    """TF_CONFIG of a one-worker cluster on a free local port."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    return json.dumps({"cluster": {"worker": [f"localhost:{port}"]},
                       "task": {"type": "worker", "index": 0}})


@pytest.mark.xdist_group("memory_heavy")
@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(os.listdir(PRESETS)))
def test_presets_run(preset, data, tmp_path):
    args = [f"--flagfile={PRESETS}/{preset}", f"--data_path={data}",
            f"--output_dir={tmp_path}", "--max_steps=1", "--batch_size=1",
            "--eval_each_epoch=false"]
    if preset.startswith("finetune"):
        _, pth = _torchvision_state(tmp_path, "r2plus1d_18", 400)
        args.append(f"--weights={pth}")
    with open(os.path.join(PRESETS, preset)) as f:
        multi_worker = "--strategy=multi_worker" in f.read()
    proc = _cli("kinetics.train", *args, env={
        "TF_CONFIG": _one_worker_tf_config()} if multi_worker else None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Training finished at step 1" in proc.stdout


@pytest.mark.slow
def test_quick_demo(tmp_path):
    proc = _cli("kinetics.demo", f"--workdir={tmp_path}", "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "video accuracy" in proc.stdout
    assert os.path.exists(tmp_path / "predictions.csv")
