"""howto.convert_torch: a PyTorch HowTo100M state dict -> Keras model.

The reference is a PyTorch module written here with the layer names and
forward pass of the released HowTo100M ``model.Net`` (including the
BatchNorm1d that each Context_Gating creates but never uses), with random
weights; the converted Keras model must give the same embeddings.
"""

import json
import os
import sys

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from howto import convert_torch  # noqa: E402
from howto.models import ModelConfig, build_model  # noqa: E402
from vidcore import cli  # noqa: E402
from vidcore.errors import UserInputError  # noqa: E402
from vidcore.training import restore_model_weights  # noqa: E402

TOL = 1e-5
SMALL = dict(embd_dim=32, feature_dim=24, we_dim=10)
MAX_WORDS = 5


# --------------------------- reference PyTorch model ----------------------- #
class TorchContextGating(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.batch_norm = nn.BatchNorm1d(dim)  # created, unused in forward

    def forward(self, x):
        return F.glu(torch.cat((x, self.fc(x)), 1), 1)


class TorchGatedEmbeddingUnit(nn.Module):
    def __init__(self, input_dim, output_dim):
        super().__init__()
        self.fc = nn.Linear(input_dim, output_dim)
        self.cg = TorchContextGating(output_dim)

    def forward(self, x):
        return F.normalize(self.cg(self.fc(x)))


class TorchSentenceMaxpool(nn.Module):
    def __init__(self, word_dim, output_dim):
        super().__init__()
        self.fc = nn.Linear(word_dim, output_dim)

    def forward(self, x):
        return torch.max(F.relu(self.fc(x)), dim=1)[0]


class TorchNet(nn.Module):
    def __init__(self, embd_dim, feature_dim, we_dim, sentence_dim=None):
        super().__init__()
        sentence_dim = sentence_dim or embd_dim
        self.text_pooling = TorchSentenceMaxpool(we_dim, sentence_dim)
        self.GU_text = TorchGatedEmbeddingUnit(sentence_dim, embd_dim)
        self.GU_video = TorchGatedEmbeddingUnit(feature_dim, embd_dim)

    def forward(self, video, text):
        """(text embedding, video embedding, similarity text @ video.T)."""
        video = self.GU_video(video)
        text = self.GU_text(self.text_pooling(text))
        return text, video, torch.matmul(text, video.t())


def make_torch_net(seed=0, **dims):
    torch.manual_seed(seed)
    net = TorchNet(**dims)
    with torch.no_grad():
        for unit in (net.GU_text, net.GU_video):
            bn = unit.cg.batch_norm  # random values: must be ignored
            bn.weight.normal_()
            bn.bias.normal_()
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.1, 5.0)
            bn.num_batches_tracked.fill_(7)
    return net.eval()


def random_inputs(cfg, n=6, seed=1):
    rng = np.random.default_rng(seed)
    video = rng.normal(size=(n, cfg.feature_dim)).astype(np.float32)
    text = rng.normal(size=(n, cfg.max_words, cfg.we_dim)).astype(np.float32)
    text[0, 2:] = 0.0  # zero-padded word slots
    text[1, 1:] = 0.0
    text[2, cfg.max_words - 1:] = 0.0
    return video, text


def torch_outputs(net, video, text):
    with torch.no_grad():
        t, v, s = net(torch.from_numpy(video), torch.from_numpy(text))
    return t.numpy(), v.numpy(), s.numpy()


def keras_outputs(model, video, text):
    out = model({"video": video, "text": text})
    t, v = np.asarray(out["text"]), np.asarray(out["video"])
    return t, v, t @ v.T


def assert_same_outputs(net, model, cfg, n=6):
    video, text = random_inputs(cfg, n)
    for name, want, got in zip(("text", "video", "similarity"),
                               torch_outputs(net, video, text),
                               keras_outputs(model, video, text)):
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=name)
    # The test is not vacuous: embeddings are unit-norm, and the similarities
    # differ by far more than the tolerance.
    t, _, s = keras_outputs(model, video, text)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    assert np.ptp(s) > 100 * TOL


def save(obj, path):
    torch.save(obj, str(path))
    return str(path)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small released-style net and its state dict saved plainly."""
    tmp = tmp_path_factory.mktemp("pth")
    net = make_torch_net(**SMALL)
    return net, save(net.state_dict(), tmp / "small.pth")


def converted_model(pth, tmp_path, max_words=MAX_WORDS):
    out = convert_torch.convert(pth, str(tmp_path / "out"),
                                max_words=max_words)
    cfg = convert_torch.load_config(out)
    model = build_model(cfg)
    restore_model_weights(model, out)
    return cfg, model


# ------------------------------- equivalence ------------------------------- #
def test_convert_matches_pytorch(small, tmp_path):
    net, pth = small
    cfg, model = converted_model(pth, tmp_path)
    assert cfg == ModelConfig(max_words=MAX_WORDS, sentence_dim=-1, **SMALL)
    with open(tmp_path / "out" / "model_config.json") as f:
        assert json.load(f) == cfg.to_dict()
    assert_same_outputs(net, model, cfg)


def test_dataparallel_prefix_and_wrapped_dicts(small, tmp_path):
    net, pth = small
    prefixed = {f"module.{k}": v for k, v in net.state_dict().items()}
    plain = convert_torch.read_state_dict(pth)
    assert all(a.dtype == np.float32 for a in plain.values())
    for i, obj in enumerate([prefixed, {"state_dict": prefixed, "epoch": 3},
                             {"model": net.state_dict()}]):
        got = convert_torch.read_state_dict(save(obj, tmp_path / f"{i}.pth"))
        assert sorted(got) == sorted(plain)
        for k in plain:
            np.testing.assert_array_equal(got[k], plain[k])
    # End to end from the DataParallel-style file.
    cfg, model = converted_model(save(prefixed, tmp_path / "dp.pth"),
                                 tmp_path)
    assert_same_outputs(net, model, cfg)


def test_load_into_model_skips_only_batch_norm(small):
    net, pth = small
    state_dict = convert_torch.read_state_dict(pth)
    cfg = convert_torch.infer_config(state_dict, max_words=MAX_WORDS)
    model = build_model(cfg)
    skipped = convert_torch.load_into_model(model, state_dict)
    assert skipped == sorted(
        f"{b}.cg.batch_norm.{s}" for b in ("GU_text", "GU_video")
        for s in ("weight", "bias", "running_mean", "running_var",
                  "num_batches_tracked"))
    assert_same_outputs(net, model, cfg)
    # Without the BatchNorm tensors at all: same result, nothing skipped.
    no_bn = {k: v for k, v in state_dict.items() if "batch_norm" not in k}
    model2 = build_model(cfg)
    assert convert_torch.load_into_model(model2, no_bn) == []
    assert_same_outputs(net, model2, cfg)


def test_sentence_dim_differs_from_embedding(tmp_path):
    net = make_torch_net(seed=3, sentence_dim=16, **SMALL)
    pth = save(net.state_dict(), tmp_path / "s.pth")
    cfg, model = converted_model(pth, tmp_path, max_words=7)
    assert (cfg.sentence_dim, cfg.max_words) == (16, 7)
    assert_same_outputs(net, model, cfg)


def test_realistic_size(tmp_path):
    """Released feature sizes (4096-d video, 300-d word2vec, 20 words) with
    D = 512 (the released D = 6144 model only adds size and minutes)."""
    net = make_torch_net(seed=5, embd_dim=512, feature_dim=4096, we_dim=300)
    pth = save(net.state_dict(), tmp_path / "big.pth")
    cfg, model = converted_model(pth, tmp_path, max_words=20)
    assert (cfg.embd_dim, cfg.feature_dim, cfg.we_dim) == (512, 4096, 300)
    assert_same_outputs(net, model, cfg, n=8)


# --------------------------------- errors ---------------------------------- #
def _edited(net, tmp_path, edit):
    state_dict = dict(net.state_dict())
    edit(state_dict)
    return save(state_dict, tmp_path / "edited.pth")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("GU_text.cg.fc.bias"),
     r"missing tensors \['GU_text.cg.fc.bias'\]"),
    (lambda d: d.update({"GU_text.extra.weight": torch.zeros(3)}),
     r"unexpected tensors \['GU_text.extra.weight'\]"),
    (lambda d: d.update({"GU_text.fc.weight": torch.zeros(32, 33)}),
     r"GU_text.fc.weight has shape \(32, 33\), expected \(32, 32\)"),
    (lambda d: d.pop("GU_video.fc.weight"),
     r"no tensor 'GU_video.fc.weight'"),
])
def test_mismatched_state_dict(small, tmp_path, edit, message):
    pth = _edited(small[0], tmp_path, edit)
    with pytest.raises(UserInputError, match=message):
        convert_torch.convert(pth, str(tmp_path / "out"), max_words=MAX_WORDS)
    assert not (tmp_path / "out").exists()


def test_load_error_leaves_model_unchanged(small):
    state_dict = convert_torch.read_state_dict(small[1])
    cfg = convert_torch.infer_config(state_dict, max_words=MAX_WORDS)
    model = build_model(cfg)
    before = [w.copy() for w in model.get_weights()]
    state_dict["GU_video.cg.fc.bias"] = np.zeros(5, np.float32)
    state_dict["text_pooling.fc.extra"] = np.zeros(2, np.float32)
    with pytest.raises(UserInputError) as e:
        convert_torch.load_into_model(model, state_dict)
    assert "GU_video.cg.fc.bias has shape (5,), expected (32,)" in str(e.value)
    assert "unexpected tensors ['text_pooling.fc.extra']" in str(e.value)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_files(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        convert_torch.read_state_dict(str(tmp_path / "missing.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserInputError, match="not a readable PyTorch"):
        convert_torch.read_state_dict(str(garbage))
    with pytest.raises(UserInputError, match="expected a PyTorch state dict"):
        convert_torch.read_state_dict(save([1, 2], tmp_path / "list.pth"))
    with pytest.raises(UserInputError, match="'epoch' is a int"):
        convert_torch.read_state_dict(
            save({"epoch": 3, "w": torch.zeros(2)}, tmp_path / "mixed.pth"))


def test_torch_missing(monkeypatch, small):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(UserInputError,
                       match=r"pip install 'vidmodels\[torch\]'"):
        convert_torch.read_state_dict(small[1])


# ----------------------------------- CLI ----------------------------------- #
def run_cli(*args):
    convert_torch.FLAGS.unparse_flags()
    argv = convert_torch.FLAGS(["prog", *args])
    return cli.guarded(convert_torch.main)(argv)


def test_cli_end_to_end(small, tmp_path, capsys):
    net, pth = small
    out, keras_file = tmp_path / "conv", tmp_path / "k" / "howto.keras"
    run_cli(f"--pth={pth}", f"--output_dir={out}", f"--max_words={MAX_WORDS}",
            f"--keras_file={keras_file}")
    assert f"TF checkpoint in {out}" in capsys.readouterr().out
    assert sorted(p for p in os.listdir(out) if not p.startswith("ckpt-1.")) \
        == ["checkpoint", "model_config.json"]
    # A fresh model restored from the written checkpoint.
    cfg = convert_torch.load_config(str(out))
    model = build_model(cfg)
    restore_model_weights(model, str(out))
    assert_same_outputs(net, model, cfg)
    # The .keras file gives the same outputs as well.
    loaded = keras.saving.load_model(str(keras_file))
    video, text = random_inputs(cfg)
    for a, b in zip(keras_outputs(model, video, text),
                    keras_outputs(loaded, video, text)):
        np.testing.assert_array_equal(a, b)
    # A second run into the same directory refuses to add a checkpoint.
    with pytest.raises(SystemExit) as e:
        run_cli(f"--pth={pth}", f"--output_dir={out}")
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a checkpoint" in err[0]


@pytest.mark.parametrize("args, message", [
    (["--pth=/nonexistent/x.pth", "--output_dir={tmp}"],
     "error: PyTorch checkpoint /nonexistent/x.pth does not exist"),
    (["--output_dir={tmp}"], "error: --pth is required"),
    (["--pth={pth}"], "error: --output_dir is required"),
    (["--pth={pth}", "--output_dir={tmp}", "--keras_file={tmp}/m.h5"],
     "must end in .keras"),
])
def test_cli_user_errors(small, tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path / "o", pth=small[1]) for a in args]
    with pytest.raises(SystemExit) as e:
        run_cli(*args)
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
