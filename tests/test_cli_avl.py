"""End-to-end runs of the AVLnet CLIs (avl.train, avl.eval, avl.demo) on
shards written by our converters from the demo release (REAL LibriVox
speech, SYNTHETIC visual features: tfrecord_tools.avl_demo_data)."""

import glob
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from avl import eval as aeval
from avl import evaluation
from avl import flags as aflags
from avl import train
from avl.models import AVLConfig, build_model
from howto import demo as howto_demo
from tfrecord_tools import avl_demo_data, howto_eval_sets, howto_writer
from vidcore import losses, metrics
from vidcore.errors import UserInputError
from vidcore.training import restore_model_weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = os.path.join(REPO, "configs", "avl")
WORD_VECTORS = howto_demo.WORD_VECTORS  # 10-d, real word2vec format
DIMS = (16, 16)
TEST_CLIPS = 16  # 8 held-out videos x 2


def run_cli(module, *args):
    """Parses ``args`` as the module's command line and runs its main."""
    fv = aflags.FLAGS
    fv.unparse_flags()
    return module.main(fv(["prog", *args]))


def _msrvtt_pickle(clips, path):
    """The release's MSR-VTT test layout (2d_pooled, 3d_pooled, audio,
    eval_caption, caption list); the first clip has no audio."""
    entries = [{"id": c["id"], "2d_pooled": c["2d"], "3d_pooled": c["3d"],
                "audio": None if i == 0 else c["audio"],
                "eval_caption": c["caption"], "caption": [c["caption"]]}
               for i, c in enumerate(clips)]
    with open(path, "wb") as f:
        pickle.dump(entries, f)


@pytest.fixture(scope="module")
def avl_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("avl")
    release, shards = str(root / "release"), str(root / "shards")
    avl_demo_data.write_demo_release(release, num_videos=16,
                                     num_test_videos=TEST_CLIPS // 2,
                                     dims=DIMS)
    settings = howto_writer.VideoSettings(
        features_path=os.path.join(release, "features_2d"),
        features_path_3d=os.path.join(release, "features_3d"),
        feature_dim_2d=DIMS[0], feature_dim_3d=DIMS[1],
        features_path_audio=os.path.join(release, "audio"))
    howto_writer.convert_videos(
        os.path.join(release, "videos.csv"),
        os.path.join(release, "captions.json"), settings, shards,
        num_shards=2, progress=False)
    test_pickle = os.path.join(release, avl_demo_data.TEST_FILE)
    howto_eval_sets.convert_eval_set("youcook", test_pickle, None, shards,
                                     dims=DIMS, allow_pickle=True,
                                     progress=False)
    with open(test_pickle, "rb") as f:
        clips = pickle.load(f)
    msrvtt = os.path.join(release, "msrvtt_test.pkl")
    _msrvtt_pickle(clips, msrvtt)
    howto_eval_sets.convert_eval_set("msrvtt", msrvtt, None, shards,
                                     dims=DIMS, allow_pickle=True,
                                     progress=False)
    return {"release": release, "shards": shards,
            "train": os.path.join(shards, "train-*"),
            "youcook": os.path.join(shards, "youcook_val-*"),
            "msrvtt": os.path.join(shards, "msrvtt_test-*")}


SMALL = ["--feature_dim=32", "--embd_dim=32", "--batch_size=8",
         "--n_pair=2", "--howto_audio_frames=100", "--lr=0.001",
         "--verbose=0", "--youcook_num_frames_multiplier=1",
         "--msrvtt_num_frames_multiplier=1", "--batch_size_val=16"]


@pytest.fixture(scope="module")
def trained(avl_data, tmp_path_factory):
    ckpt = str(tmp_path_factory.mktemp("ckpt"))
    step = run_cli(train, f"--train_data={avl_data['train']}", *SMALL,
                   "--epochs=1", "--eval_youcook=1",
                   f"--youcook_val_path={avl_data['youcook']}",
                   f"--checkpoint_dir={ckpt}")
    assert step == 16 // 8
    return ckpt


def _events(ckpt):
    return [e for path in sorted(glob.glob(os.path.join(ckpt, "events.*")))
            for e in tf.compat.v1.train.summary_iterator(path)]


def test_train_writes_checkpoints_records_and_epoch_evals(trained, capsys):
    assert tf.train.latest_checkpoint(trained).endswith("ckpt-2")
    cfg, word2vec = aflags.read_run_record(trained)
    assert cfg == AVLConfig(embd_dim=32, feature_dim=32)
    assert word2vec == ""
    state = json.load(open(os.path.join(trained, "train_state.json")))
    assert state["done"] and state["step"] == 2 and state["epoch"] == 1
    tags = {v.tag for e in _events(trained) for v in e.summary.value}
    assert "eval/YouCook2 audio->video/R@1" in tags
    assert {"loss/label", "learning_rate"} <= tags


def _embeddings(ckpt, files, audio_frames=1024):
    """(audio, video, has_audio) of every clip, with the model alone."""
    cfg, _ = aflags.read_run_record(ckpt)
    model = build_model(cfg)
    restore_model_weights(model, ckpt)
    streams = ("2d", "3d")
    from input_pipeline import avl as reader
    clip_cfg = reader.AVLClipConfig(streams=streams, dims=DIMS,
                                    eval_audio_frames=audio_frames)
    return evaluation.embed_clip_set(
        tf.distribute.get_strategy(), model, files, clip_cfg, None, 5,
        ("audio", "video"))


def _numpy_metrics(queries, items, total):
    """R@K over ``total`` queries and the median rank of the ranked ones,
    ties counted against (vidcore's pessimistic rule), in numpy."""
    s = queries.astype(np.float64) @ items.astype(np.float64).T
    ranks = (s >= np.diag(s)[:, None]).sum(axis=1)
    return {f"R@{k}": 100.0 * np.sum(ranks <= k) / total for k in (1, 5, 10)
            } | {"MedR": float(np.median(ranks))}


@pytest.mark.parametrize("lang", [0, 1])
def test_eval_matches_numpy_in_both_directions(trained, avl_data, tmp_path,
                                               lang):
    out = str(tmp_path / "r.json")
    results = run_cli(aeval, "--eval_youcook=1",
                      f"--youcook_val_path={avl_data['youcook']}",
                      "--youcook_num_frames_multiplier=1",
                      f"--eval_lang_retrieval={lang}",
                      f"--checkpoint_dir={trained}", f"--output_json={out}")
    name = "YouCook2 video->audio" if lang else "YouCook2 audio->video"
    got = results[name]
    assert got["num_queries"] == TEST_CLIPS and got["without_audio"] == 0
    audio, video, has_audio = _embeddings(
        trained, sorted(glob.glob(avl_data["youcook"])))
    assert has_audio.all() and len(audio) == TEST_CLIPS
    want = _numpy_metrics(video, audio, TEST_CLIPS) if lang else \
        _numpy_metrics(audio, video, TEST_CLIPS)
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    assert json.load(open(out))["results"][name] == got


def test_msrvtt_clips_without_audio_are_misses(trained, avl_data, capsys):
    # The shards hold 16 clips, one without audio; the "split" has 20.
    results = run_cli(aeval, "--eval_msrvtt=1",
                      f"--msrvtt_test_path={avl_data['msrvtt']}",
                      "--msrvtt_num_frames_multiplier=1",
                      "--msrvtt_test_clips=20", f"--checkpoint_dir={trained}",
                      f"--output_json={os.devnull}")
    got = results["MSR-VTT audio->video"]
    assert got["num_queries"] == 20 and got["without_audio"] == 5
    audio, video, has_audio = _embeddings(
        trained, sorted(glob.glob(avl_data["msrvtt"])))
    assert has_audio.tolist() == [False] + [True] * (TEST_CLIPS - 1)
    want = _numpy_metrics(audio[1:], video[1:], 20)
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    assert "5 of 20 clips have no audio and count as misses" in \
        capsys.readouterr().out


def test_set_metrics_counts_missing_audio_as_misses():
    # 4 clips, the second without audio; identity embeddings rank every
    # ranked clip first: R@1 = 3 of 5 clips of the split.
    eye = np.eye(4, dtype=np.float32)
    m = evaluation.set_metrics(eye, eye, np.array([1, 0, 1, 1], bool), 5)
    assert m["R@1"] == pytest.approx(60.0) and m["MedR"] == 1.0
    assert m["num_queries"] == 5 and m["without_audio"] == 2
    with pytest.raises(UserInputError, match="none of the 2 clips"):
        evaluation.set_metrics(eye[:2], eye[:2], np.zeros(2, bool))
    with pytest.raises(UserInputError, match="more than the 3"):
        evaluation.set_metrics(eye, eye, np.ones(4, bool), 3)


@pytest.mark.parametrize("variant", [
    dict(), dict(tri_modal=True), dict(tri_modal=True, tri_modal_fuse=True),
    dict(tri_modal=True, fuse_videoaudio_additive=True)])
def test_loss_is_the_clip_mean_of_the_summed_mms(variant):
    """Per-video values averaged by the Trainer (sum / videos) give the
    summed MMS of the whole batch of videos x n_pair clips."""
    cfg = AVLConfig(embd_dim=8, **variant)
    rng = np.random.default_rng(0)
    videos, n_pair = 3, 4
    names = ("audio", "video", "text", "audio_video", "audio_text")
    outputs = {k: tf.constant(rng.normal(size=(videos * n_pair, 8)),
                              tf.float32) for k in names}
    per_video = train.mms_loss_fn(cfg, n_pair)(None, outputs)
    assert per_video.shape == (videos,)
    from avl.models import loss_pairs
    want = sum(float(losses.masked_margin_softmax(
        tf.matmul(outputs[a], outputs[b], transpose_b=True)))
        for a, b in loss_pairs(cfg))
    assert float(tf.reduce_sum(per_video)) / videos == pytest.approx(
        want, rel=1e-5)


def test_training_resumes_and_lr_decays_per_epoch(trained, avl_data):
    step = run_cli(train, f"--train_data={avl_data['train']}", *SMALL,
                   "--epochs=2", "--lr_decay=0.5", "--n_display=1",
                   f"--checkpoint_dir={trained}")
    assert step == 4
    lrs = {e.step: float(tf.make_ndarray(v.tensor)) for e in _events(trained)
           for v in e.summary.value if v.tag == "learning_rate"}
    # Epoch 2 (steps 3, 4) runs at lr * 0.5.
    assert lrs[4] == pytest.approx(0.001 * 0.5, rel=1e-5)


@pytest.mark.slow
def test_fine_tune_on_clips_from_our_checkpoint(trained, avl_data, tmp_path,
                                                capsys):
    step = run_cli(train, "--youcook=1",
                   f"--youcook_train_path={avl_data['youcook']}",
                   "--eval_youcook=1",
                   f"--youcook_val_path={avl_data['youcook']}", *SMALL,
                   "--epochs=1", f"--pretrain_path={trained}",
                   f"--checkpoint_dir={tmp_path / 'ft'}")
    assert step == TEST_CLIPS // 8
    out = capsys.readouterr().out
    assert "Epoch 0 (step 0)" in out and "Epoch 1 (step 2)" in out


@pytest.mark.slow
def test_text_variants_train_on_caption_spans_and_evaluate(avl_data,
                                                           tmp_path):
    words = [f"--word2vec_path={WORD_VECTORS}", "--we_dim=10",
             "--max_words=8"]
    fused = str(tmp_path / "fused")
    assert run_cli(train, f"--train_data={avl_data['train']}", *SMALL,
                   *words, "--tri_modal=1", "--tri_modal_fuse=1",
                   "--random_audio_windows=0", "--min_time=3",
                   "--max_steps=1", "--epochs=1",
                   f"--checkpoint_dir={fused}") == 1
    results = run_cli(aeval, "--eval_youcook=1",
                      f"--youcook_val_path={avl_data['youcook']}",
                      "--youcook_num_frames_multiplier=1",
                      f"--checkpoint_dir={fused}")
    assert list(results) == ["YouCook2 audio+text->video"]
    tri = str(tmp_path / "tri")
    assert run_cli(train, "--youcook=1",
                   f"--youcook_train_path={avl_data['youcook']}", *SMALL,
                   *words, "--tri_modal=1", "--fuse_videoaudio_additive=1",
                   "--max_steps=1", "--epochs=1",
                   f"--checkpoint_dir={tri}") == 1
    results = run_cli(aeval, "--eval_youcook=1",
                      f"--youcook_val_path={avl_data['youcook']}",
                      "--youcook_num_frames_multiplier=1",
                      "--eval_lang_retrieval=1", f"--checkpoint_dir={tri}")
    assert list(results) == ["YouCook2 audio+video->text"]


@pytest.mark.slow
def test_released_pth_and_its_conversion_evaluate_alike(avl_data, tmp_path):
    """avl.eval/avl.train --pretrain_path=<.pth> (the release's route): a
    state dict with the release's names scores as its avl.convert_torch
    directory does, and a model of other sizes is one clear error."""
    pytest.importorskip("torch")
    import test_avl_convert_torch as reference  # the release-named module
    from avl import convert_torch
    net = reference.make_torch_net(embd_dim=32, feature_dim=32, we_dim=300)
    pth = reference.save(net.state_dict(), tmp_path / "AVLnet_release.pth")
    converted = convert_torch.convert(pth, str(tmp_path / "converted"))
    common = ["--eval_youcook=1", f"--youcook_val_path={avl_data['youcook']}",
              "--youcook_num_frames_multiplier=1"]
    from_pth = run_cli(aeval, *common, f"--pretrain_path={pth}")
    assert run_cli(aeval, *common, f"--pretrain_path={converted}") == from_pth
    assert run_cli(train, f"--train_data={avl_data['train']}", *SMALL,
                   f"--pretrain_path={pth}", "--max_steps=1",
                   f"--checkpoint_dir={tmp_path / 'ft'}") == 1
    with pytest.raises(UserInputError, match="needs --embd_dim=32"):
        run_cli(train, f"--train_data={avl_data['train']}", *SMALL,
                "--embd_dim=64", f"--pretrain_path={pth}",
                f"--checkpoint_dir={tmp_path / 'bad'}")


@pytest.mark.parametrize("preset,count", [
    ("avlnet_howto100m", 84_531_200),
    ("avlnet_text_tri_howto100m", 193_353_728),
    ("avlnet_text_fused_howto100m", 114_515_968)])
def test_presets_dry_run_parameter_counts(preset, count):
    assert run_cli(train, f"--flagfile={PRESETS}/{preset}.flags",
                   "--dry_run") == count


@pytest.mark.slow
@pytest.mark.parametrize("preset,count", [
    ("avlnet_youcook_finetune", 84_531_200),
    ("avlnet_msrvtt_scratch", 61_456_384),
    ("text_fused_msrvtt_finetune", 114_515_968),
    ("avlnet_youcook_scratch", 84_531_200),
    ("avlnet_msrvtt_finetune", 84_531_200),
    ("text_tri_youcook_finetune", 193_353_728),
    ("text_tri_msrvtt_finetune", 193_353_728),
    ("text_fused_youcook_finetune", 114_515_968)])
def test_other_presets_dry_run_parameter_counts(preset, count):
    assert run_cli(train, f"--flagfile={PRESETS}/{preset}.flags",
                   "--dry_run") == count


def _parse(*args):
    aflags.FLAGS.unparse_flags()
    aflags.FLAGS(["prog", *args])


def test_apex_level_is_mixed_precision():
    _parse("--apex_level=1")
    assert aflags.precision_from_flags() == "mixed_float16"
    _parse()
    assert aflags.precision_from_flags() == "float32"
    _parse("--apex_level=1", "--mixed_precision=mixed_float16")
    assert aflags.precision_from_flags() == "mixed_float16"
    _parse("--apex_level=0", "--mixed_precision=mixed_float16")
    with pytest.raises(UserInputError, match="pass one of them"):
        aflags.precision_from_flags()
    _parse("--apex_level=2")
    with pytest.raises(UserInputError, match="apex O1"):
        aflags.check_flags()


def test_user_errors(avl_data, tmp_path):
    with pytest.raises(UserInputError, match="howto_writer"):
        run_cli(train, "--features_path_audio=/data/audio")
    with pytest.raises(UserInputError, match="--allow_pickle"):
        run_cli(train, "--youcook=1",
                "--youcook_train_path=data/youcook_train_audio.pkl")
    with pytest.raises(UserInputError, match="only 0"):
        run_cli(train, "--loss=1", "--dry_run")
    with pytest.raises(UserInputError, match="feature_dim"):
        run_cli(train, f"--train_data={avl_data['train']}",
                "--feature_dim=4096", f"--checkpoint_dir={tmp_path}")
    with pytest.raises(UserInputError, match="word2vec_path"):
        run_cli(train, f"--train_data={avl_data['train']}", *SMALL,
                "--tri_modal=1", f"--checkpoint_dir={tmp_path}")
    with pytest.raises(UserInputError, match="expected videos records"):
        run_cli(train, f"--train_data={avl_data['youcook']}", *SMALL,
                f"--checkpoint_dir={tmp_path}")
    with pytest.raises(UserInputError, match="youcook_val_path"):
        run_cli(aeval, "--eval_youcook=1", f"--checkpoint_dir={tmp_path}")
    with pytest.raises(UserInputError, match="model_config.json"):
        run_cli(aeval, "--eval_youcook=1",
                f"--youcook_val_path={avl_data['youcook']}",
                f"--checkpoint_dir={tmp_path}")
    with pytest.raises(UserInputError, match="nothing to evaluate"):
        run_cli(aeval, f"--checkpoint_dir={tmp_path}")


@pytest.mark.slow
def test_shards_without_audio_are_one_line_error(avl_data, tmp_path):
    release = avl_data["release"]
    settings = howto_writer.VideoSettings(
        features_path=os.path.join(release, "features_2d"),
        features_path_3d=os.path.join(release, "features_3d"),
        feature_dim_2d=DIMS[0], feature_dim_3d=DIMS[1])
    howto_writer.convert_videos(
        os.path.join(release, "videos.csv"),
        os.path.join(release, "captions.json"), settings, str(tmp_path),
        num_shards=1, progress=False)
    proc = subprocess.run(
        [sys.executable, "-m", "avl.train",
         f"--train_data={tmp_path}/train-*", "--feature_dim=32",
         f"--checkpoint_dir={tmp_path / 'ckpt'}"],
        capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "without audio" in lines[-1]
    assert "--features_path_audio" in lines[-1]


@pytest.mark.parametrize("module", [
    "avl.train", pytest.param("avl.eval", marks=pytest.mark.slow),
    pytest.param("avl.demo", marks=pytest.mark.slow)])
def test_help_exits_0(module):
    proc = subprocess.run([sys.executable, "-m", module, "--help"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--workdir" in proc.stdout if module == "avl.demo" else \
        "--howto_audio_frames" in proc.stdout


@pytest.mark.slow
def test_demo_quick_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "avl.demo", f"--workdir={tmp_path}",
         "--quick"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    assert "Audio -> video on 48 held-out clips" in proc.stdout
    assert "(chance: R@1 2.1%" in proc.stdout
    saved = json.load(open(tmp_path / "model" / "retrieval.json"))
    assert saved["results"]["YouCook2 audio->video"]["num_queries"] == 48


@pytest.mark.slow
def test_mirrored_two_replicas(avl_data, tmp_path):
    step = run_cli(train, f"--train_data={avl_data['train']}", *SMALL,
                   "--epochs=1", "--strategy=mirrored",
                   f"--checkpoint_dir={tmp_path / 'm'}")
    assert step == 2


def test_metrics_helper_matches_vidcore():
    """The numpy reference above agrees with vidcore on a case with ties."""
    q = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    ranks = metrics.retrieval_ranks(q, q)
    assert ranks.tolist() == [2, 2, 1]
    assert _numpy_metrics(q, q, 3)["MedR"] == 2.0
