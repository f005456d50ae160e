"""End-to-end runs of the HowTo100M CLIs on shards written by our converters
(real captions, SYNTHETIC features from tfrecord_tools.howto_demo_data)."""

import glob
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from howto import eval as heval
from howto import flags as hflags
from howto import train
from tfrecord_tools import howto_demo_data, howto_eval_sets, howto_writer
from vidcore import text
from vidcore.errors import UserInputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = os.path.join(REPO, "configs", "howto")
WORD_VECTORS = howto_demo_data.WORD_VECTORS


def run_cli(module, *args):
    """Parses ``args`` as the module's command line and runs its main."""
    fv = hflags.FLAGS
    fv.unparse_flags()
    argv = fv(["prog", *args])
    return module.main(argv)


def _convert(release, shards, dims, num_shards=2):
    settings = howto_writer.VideoSettings(
        features_path=os.path.join(release, "features_2d"),
        features_path_3d=os.path.join(release, "features_3d"),
        feature_dim_2d=dims[0], feature_dim_3d=dims[1])
    howto_writer.convert_videos(
        os.path.join(release, "videos.csv"),
        os.path.join(release, "captions.json"), settings, shards,
        num_shards=num_shards, progress=False)
    howto_eval_sets.convert_eval_set(
        "msrvtt", os.path.join(release, "msrvtt_test.csv"),
        os.path.join(release, "msrvtt_test_features.npz"), shards,
        dims=dims, progress=False)


@pytest.fixture(scope="module")
def howto_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("howto")
    release, shards = str(root / "release"), str(root / "shards")
    howto_demo_data.write_demo_release(release, dims=(16, 16), max_videos=64)
    _convert(release, shards, (16, 16))
    return {"shards": shards, "train": os.path.join(shards, "train-*"),
            "test": os.path.join(shards, "msrvtt_test-*")}


SMALL = ["--we_dim=10", "--feature_dim=32", "--embd_dim=64", "--n_pair=4",
         "--batch_size=8", "--lr=0.003", "--batch_size_val=256",
         "--verbose=0"]


@pytest.fixture(scope="module")
def trained(howto_data, tmp_path_factory):
    ckpt = str(tmp_path_factory.mktemp("ckpt"))
    step = run_cli(train, f"--train_data={howto_data['train']}",
                   f"--word2vec_path={WORD_VECTORS}", *SMALL, "--epochs=3",
                   "--eval_msrvtt=1",
                   f"--msrvtt_test_path={howto_data['test']}",
                   f"--checkpoint_dir={ckpt}")
    assert step == 3 * (64 // 8)
    return ckpt


def test_train_writes_checkpoints_record_and_epoch_evals(trained):
    assert tf.train.latest_checkpoint(trained).endswith("ckpt-24")
    record = json.load(open(os.path.join(trained, "model_config.json")))
    assert record["model"]["embd_dim"] == 64
    assert record["word2vec_path"] == os.path.abspath(WORD_VECTORS)
    state = json.load(open(os.path.join(trained, "train_state.json")))
    assert state["done"] and state["step"] == 24
    events = glob.glob(os.path.join(trained, "events.out.*"))
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(events[0])
            for v in e.summary.value}
    assert "eval/MSR-VTT text->video/R@1" in tags
    assert {"loss/label", "learning_rate", "examples_per_second"} <= tags


def test_eval_beats_chance_and_writes_json(trained, howto_data, tmp_path):
    out = str(tmp_path / "r.json")
    results = run_cli(heval, "--eval_msrvtt=1",
                      f"--msrvtt_test_path={howto_data['test']}",
                      f"--checkpoint_dir={trained}", "--video_to_text",
                      f"--output_json={out}")
    t2v = results["MSR-VTT text->video"]
    assert t2v["num_queries"] == 1000
    # Chance: R@10 = 1%, median rank ~500.
    assert t2v["R@10"] > 5.0 and t2v["MedR"] < 250
    assert "MSR-VTT video->text" in results
    saved = json.load(open(out))
    assert saved["recall_unit"] == "percent"
    assert saved["results"]["MSR-VTT text->video"] == t2v


def test_eval_split_over_two_workers_equals_one_process(
        trained, howto_data, tmp_path, run_workers):
    release = os.path.join(os.path.dirname(howto_data["shards"]), "release")
    shards = str(tmp_path / "shards")
    howto_eval_sets.convert_eval_set(
        "msrvtt", os.path.join(release, "msrvtt_test.csv"),
        os.path.join(release, "msrvtt_test_features.npz"), shards,
        dims=(16, 16), num_shards=3, progress=False)
    args = ["--eval_msrvtt=1", f"--msrvtt_test_path={shards}/msrvtt_test-*",
            f"--checkpoint_dir={trained}", "--video_to_text",
            "--batch_size_val=256"]
    one = run_cli(heval, *args, f"--output_json={tmp_path / 'one.json'}")
    out = tmp_path / "split"
    out.mkdir()
    procs = run_workers(["howto.eval", *args,
                         f"--output_json={out / 'two.json'}"], 2)
    counts = [int(p.stdout.split("worker ")[1].split(":")[1].split()[0])
              for p in procs]
    assert counts[0] > 0 and counts[1] > 0 and sum(counts) == 1000
    split = json.load(open(out / "two.json"))["results"]
    assert split == json.loads(json.dumps(one))
    assert os.listdir(out) == ["two.json"]


def test_training_resumes_and_lr_decays_per_epoch(trained, howto_data):
    step = run_cli(train, f"--train_data={howto_data['train']}",
                   f"--word2vec_path={WORD_VECTORS}", *SMALL, "--epochs=4",
                   f"--checkpoint_dir={trained}", "--lr_decay=0.5")
    assert step == 32
    events = sorted(glob.glob(os.path.join(trained, "events.out.*")))
    lrs = {e.step: float(tf.make_ndarray(v.tensor)) for path in events
           for e in tf.compat.v1.train.summary_iterator(path)
           for v in e.summary.value if v.tag == "learning_rate"}
    # Logged after the step's update: epoch 4's steps 25..31 use 0.003*0.5^3.
    assert np.isclose(lrs[30], 0.003 * 0.5 ** 3, rtol=1e-5)


def test_fine_tune_clips_from_pretrained_checkpoint(trained, howto_data,
                                                    tmp_path):
    ckpt = str(tmp_path / "ft")
    step = run_cli(train, "--msrvtt=1",
                   f"--msrvtt_train_path={howto_data['test']}",
                   f"--word2vec_path={WORD_VECTORS}", *SMALL, "--epochs=1",
                   "--batch_size=32", "--max_steps=2", "--negative_weighting=0",
                   f"--pretrain_path={trained}", f"--checkpoint_dir={ckpt}")
    assert step == 2


def test_mirrored_two_replicas(howto_data, tmp_path):
    step = run_cli(train, f"--train_data={howto_data['train']}",
                   f"--word2vec_path={WORD_VECTORS}", *SMALL, "--epochs=1",
                   "--max_steps=3", "--strategy=mirrored",
                   f"--checkpoint_dir={tmp_path / 'm'}")
    assert step == 3


@pytest.mark.parametrize("preset,count", [
    ("howto100m_pretrain", 68_358_144), ("msrvtt_scratch", 68_358_144),
    ("msrvtt_finetune", 140_285_952), ("eval_pretrained", 140_285_952)])
def test_presets_dry_run_parameter_counts(preset, count):
    assert run_cli(train, f"--flagfile={PRESETS}/{preset}.flags",
                   "--dry_run") == count


def test_user_errors(howto_data, tmp_path):
    with pytest.raises(UserInputError, match="howto_writer"):
        run_cli(train, "--features_path_2D=/data/2d")
    with pytest.raises(UserInputError, match="feature_dim"):
        run_cli(train, f"--train_data={howto_data['train']}",
                f"--word2vec_path={WORD_VECTORS}", "--we_dim=10",
                "--feature_dim=4096")
    with pytest.raises(UserInputError, match="we_dim"):
        run_cli(train, f"--train_data={howto_data['train']}",
                f"--word2vec_path={WORD_VECTORS}", "--feature_dim=32")
    with pytest.raises(UserInputError, match="msrvtt_test_path"):
        run_cli(heval, "--eval_msrvtt=1", f"--checkpoint_dir={tmp_path}")
    with pytest.raises(UserInputError, match="model_config.json"):
        run_cli(heval, "--eval_msrvtt=1",
                f"--msrvtt_test_path={howto_data['test']}",
                f"--checkpoint_dir={tmp_path}")
    with pytest.raises(UserInputError, match="nothing to evaluate"):
        run_cli(heval, f"--checkpoint_dir={tmp_path}")


# --------------------------------------------------------------------------- #
# The published commands, with only the data paths changed (full sizes:
# 2048-d 2D and 3D features, 300-d word vectors; tiny step counts).
# --------------------------------------------------------------------------- #
def _write_word2vec(path, words, dim, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(f"{len(words)} {dim}\n".encode())
        for w in words:
            f.write(w.encode("utf-8") + b" ")
            f.write(struct.pack(f"<{dim}f", *rng.normal(size=dim)))
            f.write(b"\n")


@pytest.fixture(scope="module")
def full_size(tmp_path_factory):
    root = tmp_path_factory.mktemp("howto_full")
    release, shards = str(root / "release"), str(root / "shards")
    howto_demo_data.write_demo_release(release, dims=(2048, 2048),
                                       max_videos=32)
    _convert(release, shards, (2048, 2048), num_shards=1)
    rows = open(os.path.join(release, "msrvtt_test.csv")).read()
    captions = json.load(open(os.path.join(release, "captions.json")))
    words = sorted({w for t in [rows] + [c for v in captions.values()
                                         for c in v["text"]]
                    for w in text.python_tokenize(t)})
    vectors = str(root / "vectors.bin")
    _write_word2vec(vectors, words, 300)
    return {"train": os.path.join(shards, "train-*"),
            "test": os.path.join(shards, "msrvtt_test-*"), "vectors": vectors}


def _cli(module, *args):
    """Runs ``python -m module args`` in a process of its own (whose memory
    goes back when it ends); stdout, after asserting exit status 0."""
    proc = subprocess.run([sys.executable, "-m", module, *args],
                          capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


# The published sizes (68 M parameters, batches of 2,048 clip pairs of
# 4,096 features) take about 4.4 GB: in processes of their own, one after
# another with the other memory-heavy tests (conftest.py).
@pytest.mark.xdist_group("memory_heavy")
@pytest.mark.slow
def test_published_howto100m_command_runs(full_size, tmp_path):
    out = _cli("howto.train", f"--flagfile={PRESETS}/howto100m_pretrain.flags",
               f"--train_data={full_size['train']}",
               f"--word2vec_path={full_size['vectors']}",
               f"--checkpoint_dir={tmp_path}", "--max_steps=1")
    assert "Training finished at step 1" in out


@pytest.mark.xdist_group("memory_heavy")
@pytest.mark.slow
def test_published_msrvtt_command_runs(full_size, tmp_path):
    out = _cli("howto.train", f"--flagfile={PRESETS}/msrvtt_scratch.flags",
               f"--msrvtt_train_path={full_size['test']}",
               f"--msrvtt_test_path={full_size['test']}",
               f"--word2vec_path={full_size['vectors']}",
               f"--checkpoint_dir={tmp_path}", "--max_steps=2",
               "--batch_size_val=500")
    assert "Training finished at step 2" in out
    _cli("howto.eval", f"--flagfile={PRESETS}/eval_pretrained.flags",
         "--eval_youcook=0", "--eval_lsmdc=0",
         f"--msrvtt_test_path={full_size['test']}",
         f"--checkpoint_dir={tmp_path}")
    results = json.load(open(tmp_path / "retrieval.json"))["results"]
    assert results["MSR-VTT text->video"]["num_queries"] == 1000


@pytest.mark.slow
def test_demo_quick_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "howto.demo", f"--workdir={tmp_path}",
         "--quick"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "text->video: R@1" in proc.stdout
    results = json.load(open(tmp_path / "model" / "retrieval.json"))
    assert results["results"]["MSR-VTT text->video"]["R@10"] > 5.0


def test_eval_of_a_pytorch_state_dict_equals_checkpoint_eval(
        trained, howto_data, tmp_path):
    """howto.eval --pretrain_path=<.pth> (the released model's route): a
    state dict with the authors' key names, made from our trained weights,
    scores exactly like the checkpoint."""
    torch = pytest.importorskip("torch")
    from howto.models import build_model
    from vidcore.training import restore_model_weights
    cfg, _ = hflags.read_model_record(trained)
    model = build_model(cfg)
    restore_model_weights(model, trained)
    state = {}
    for branch, torch_name in (("GU_video", "GU_video"),
                               ("GU_text", "GU_text")):
        layer = model.get_layer(branch)
        state[f"{torch_name}.fc.weight"] = layer.fc.kernel.numpy().T
        state[f"{torch_name}.fc.bias"] = layer.fc.bias.numpy()
        state[f"{torch_name}.cg.fc.weight"] = (
            layer.gate.gating_weights.numpy().T)
        state[f"{torch_name}.cg.fc.bias"] = layer.gate.gating_biases.numpy()
    pool = model.get_layer("text_pooling")
    state["text_pooling.fc.weight"] = pool.fc.kernel.numpy().T
    state["text_pooling.fc.bias"] = pool.fc.bias.numpy()
    path = str(tmp_path / "model.pth")
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v))
                for k, v in state.items()}, path)
    common = ["--eval_msrvtt=1", f"--msrvtt_test_path={howto_data['test']}",
              "--video_to_text"]
    ours = run_cli(heval, *common, f"--checkpoint_dir={trained}",
                   f"--output_json={tmp_path / 'a.json'}")
    released = run_cli(heval, *common, f"--pretrain_path={path}",
                       f"--word2vec_path={WORD_VECTORS}", "--we_dim=10",
                       "--feature_dim=32", "--embd_dim=64")
    assert released == ours
