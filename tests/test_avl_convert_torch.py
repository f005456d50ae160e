"""avl.convert_torch: released PyTorch AVLnet state dicts -> Keras models.

The reference is a PyTorch ``Net`` written here from the layer names,
shapes and forward pass of the released ``model.py`` / ``model_davenet.py``
(including what the original builds and never uses: ResDavenet's
1-channel ``batchnorm1`` and Text-Fused's ``GU_audio``), with random
weights and batch-norm statistics; the converted Keras model must give the
same embeddings (max abs difference < 1e-4, float32) for the three
variants. The same module at the published sizes (on PyTorch's ``meta``
device: shapes, no memory) has the spec's parameter counts, which exceed
ours by exactly the unused tensors.
"""

import json
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from avl import convert_torch  # noqa: E402
from avl.models import AVLConfig, build_model  # noqa: E402
from vidcore import cli  # noqa: E402
from vidcore.errors import UserInputError  # noqa: E402
from vidcore.training import (count_trainable_params,  # noqa: E402
                              restore_model_weights)

TOL = 1e-4
SMALL = dict(embd_dim=16, feature_dim=24, we_dim=10)
MAX_WORDS = 5
VARIANTS = {"avlnet": dict(), "text_tri": dict(tri_modal=True),
            "text_fused": dict(tri_modal=True, tri_modal_fuse=True)}


# --------------------------- reference PyTorch model ----------------------- #
class TorchBlock(nn.Module):
    """SpeechBasicBlock: (1, 9) convs with padding (0, 4), BN, ReLU."""

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, (1, 9), stride=stride,
                               padding=(0, 4), bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, (1, 9), padding=(0, 4),
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class TorchResDavenet(nn.Module):
    def __init__(self):
        super().__init__()
        self.batchnorm1 = nn.BatchNorm2d(1)  # created, unused in forward
        self.conv1 = nn.Conv2d(1, 128, (40, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(128)
        inplanes = 128
        for i, planes in enumerate((128, 256, 512, 1024), start=1):
            setattr(self, f"layer{i}", nn.Sequential(
                TorchBlock(inplanes, planes, 2), TorchBlock(planes, planes, 1)))
            inplanes = planes

    def forward(self, x):  # [B, 40, T] -> [B, 1024, T']
        x = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x.squeeze(2)


class TorchContextGating(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc = nn.Linear(dim, dim)

    def forward(self, x):
        return F.glu(torch.cat((x, self.fc(x)), 1), 1)


class TorchGEU(nn.Module):
    def __init__(self, input_dim, output_dim):
        super().__init__()
        self.fc = nn.Linear(input_dim, output_dim)
        self.cg = TorchContextGating(output_dim)

    def forward(self, x):
        return self.cg(self.fc(x))


class TorchFusedGatedUnit(nn.Module):
    def __init__(self, input_dim, output_dim):
        super().__init__()
        self.fc_audio = nn.Linear(input_dim, output_dim)
        self.fc_text = nn.Linear(input_dim, output_dim)
        self.cg = TorchContextGating(output_dim)

    def forward(self, audio, text):
        return self.cg(self.fc_audio(audio) + self.fc_text(text))


class TorchSentenceMaxpool(nn.Module):
    def __init__(self, word_dim, output_dim):
        super().__init__()
        self.fc = nn.Linear(word_dim, output_dim)

    def forward(self, x):
        return torch.max(F.relu(self.fc(x)), dim=1)[0]


class TorchNet(nn.Module):
    """The released Net: same attributes, created in the same cases."""

    def __init__(self, embd_dim, feature_dim, we_dim, tri_modal=False,
                 tri_modal_fuse=False):
        super().__init__()
        self.DAVEnet = TorchResDavenet()
        self.DAVEnet_projection = nn.Linear(1024, embd_dim)
        self.GU_audio = TorchGEU(1024, 1024)
        self.GU_video = TorchGEU(feature_dim, embd_dim)
        if tri_modal and not tri_modal_fuse:
            self.text_pooling_caption = TorchSentenceMaxpool(we_dim, embd_dim)
            self.GU_text_captions = TorchGEU(embd_dim, embd_dim)
        elif tri_modal_fuse:
            self.DAVEnet_projection = nn.Linear(1024, embd_dim // 2)
            self.text_pooling_caption = TorchSentenceMaxpool(
                we_dim, embd_dim // 2)
            self.GU_audio_text = TorchFusedGatedUnit(embd_dim // 2, embd_dim)
        self.tri_modal = tri_modal
        self.tri_modal_fuse = tri_modal_fuse

    def forward(self, video, audio_input, nframes, text=None):
        video = self.GU_video(video)
        audio = self.DAVEnet(audio_input)
        if self.training:
            audio = audio.mean(dim=2)  # padding included
        else:
            ratio = round(audio_input.size(-1) / audio.size(-1))
            audio = torch.stack([
                audio[i, :, :max(1, int(nframes[i]) // ratio)].mean(dim=1)
                for i in range(audio.shape[0])])
        if self.tri_modal_fuse:
            audio = self.DAVEnet_projection(audio)
            text = self.text_pooling_caption(text)
            return {"audio_text": self.GU_audio_text(audio, text),
                    "video": video}
        audio = self.DAVEnet_projection(self.GU_audio(audio))
        out = {"audio": audio, "video": video}
        if self.tri_modal:
            out["text"] = self.GU_text_captions(
                self.text_pooling_caption(text))
        return out


def make_torch_net(seed=0, **kwargs):
    """A released-style net with random weights and batch-norm statistics
    that keep activations of order 1 (statistics of a random batch, then
    perturbed), so that 1e-4 is a tight tolerance."""
    torch.manual_seed(seed)
    net = TorchNet(**kwargs)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.momentum = 1.0  # running stats := the next batch's stats
        net.train()
        net.DAVEnet(torch.randn(4, 40, 96))
        for bn in bns:
            bn.momentum = 0.1
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
            bn.running_mean.add_(torch.randn_like(bn.running_mean) * 0.1)
            bn.running_var.mul_(torch.empty_like(bn.running_var)
                                .uniform_(0.8, 1.25))
            bn.num_batches_tracked.fill_(11)
    return net.eval()


def random_inputs(cfg, n=4, frames=100, seed=1):
    """Spectrograms zero-padded after nframes (as the original's loader),
    nframes covering: under one pooled step, partial, exact, beyond T."""
    rng = np.random.default_rng(seed)
    nframes = np.array([5, 37, frames, 3 * frames][:n], np.int32)
    audio = rng.normal(size=(n, 40, frames)).astype(np.float32)
    for i, count in enumerate(nframes):
        audio[i, :, count:] = 0.0
    inputs = {"video": rng.normal(size=(n, cfg.feature_dim)).astype("f4"),
              "audio": audio, "nframes": nframes}
    if cfg.tri_modal:
        text = rng.normal(size=(n, cfg.max_words, cfg.we_dim)).astype("f4")
        text[0, 2:] = 0.0  # zero-padded word slots
        inputs["text"] = text
    return inputs


def torch_outputs(net, inputs, training=False):
    net.train(training)
    args = [torch.from_numpy(inputs[k]) for k in ("video", "audio")]
    args.append(torch.from_numpy(inputs["nframes"].astype(np.int64)))
    if "text" in inputs:
        args.append(torch.from_numpy(inputs["text"]))
    with torch.no_grad():
        out = net(*args)
    net.eval()
    return {k: v.numpy() for k, v in out.items()}


def assert_same_outputs(net, model, cfg, training=False):
    # 50 frames: 4 output steps and a pooling ratio of round(12.5) = 12
    # (half to even, as Python); 100: 7 steps, ratio 14; 64: 4 steps, 16.
    frames = {"avlnet": 50, "text_tri": 100, "text_fused": 64}[cfg.variant]
    inputs = random_inputs(cfg, frames=frames)
    want = torch_outputs(net, inputs, training)
    got = {k: np.asarray(v) for k, v in
           model(inputs, training=training).items()}
    assert set(want) <= set(got)
    for key, value in want.items():
        assert got[key].shape == value.shape, key
        np.testing.assert_allclose(got[key], value, rtol=0, atol=TOL,
                                   err_msg=key)
        # Not vacuous: the embeddings differ between examples by far more
        # than the tolerance.
        assert np.ptp(value, axis=0).max() > 1000 * TOL, key


def save(obj, path):
    torch.save(obj, str(path))
    return str(path)


@pytest.fixture(scope="module", params=list(VARIANTS))
def released(request, tmp_path_factory):
    """(variant, torch net, .pth path) with DataParallel-prefixed keys, as
    a checkpoint saved from the training's nn.DataParallel."""
    net = make_torch_net(seed=len(request.param), **SMALL,
                         **VARIANTS[request.param])
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    pth = tmp_path_factory.mktemp("pth") / f"{request.param}.pth"
    return request.param, net, save(state, pth)


def used_parameters(net, variant):
    """Parameters of a reference net less those the original never uses."""
    unused = ("DAVEnet.batchnorm1.",) + (
        ("GU_audio.",) if variant == "text_fused" else ())
    return sum(p.numel() for k, p in net.named_parameters()
               if not k.startswith(unused))


# ------------------------------- equivalence ------------------------------- #
def test_convert_matches_pytorch(released):
    variant, net, pth = released
    state_dict = convert_torch.read_state_dict(pth)
    assert not any(k.startswith("module.") for k in state_dict)
    cfg = convert_torch.config_from_state_dict(state_dict, MAX_WORDS)
    want = dict(SMALL, **VARIANTS[variant])
    if variant == "avlnet":  # no text branch: we_dim is not stored
        want["we_dim"] = AVLConfig().we_dim
    assert cfg == AVLConfig(max_words=MAX_WORDS, **want)
    assert cfg.variant == variant
    model = build_model(cfg)
    assert count_trainable_params(model) == used_parameters(net, variant)
    skipped = convert_torch.load_torch_state_dict(model, state_dict)
    # Skipped: exactly the tensors the original never uses.
    unused = [f"DAVEnet.batchnorm1.{s}" for s in
              ("bias", "num_batches_tracked", "running_mean", "running_var",
               "weight")]
    if variant == "text_fused":
        unused += [f"GU_audio.{p}.{s}" for p in ("cg.fc", "fc")
                   for s in ("bias", "weight")]
    assert skipped == sorted(unused)
    assert_same_outputs(net, model, cfg)
    if variant == "avlnet":
        # Training mode: both normalise with the batch's statistics and
        # average the audio over every step, padding included.
        assert_same_outputs(net, model, cfg, training=True)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_published_sizes_differ_only_by_unused_tensors(variant):
    """The reference module at the published sizes (meta device: shapes
    only) has the spec's totals; its used parameters are the counts our
    models have (tests/test_avl_models.py builds them at full size)."""
    embd_dim = {"avlnet": 4096, "text_tri": 6144, "text_fused": 4096}
    spec_total = {"avlnet": 84_531_202, "text_tri": 193_353_730,
                  "text_fused": 116_615_170}
    ours = {"avlnet": 84_531_200, "text_tri": 193_353_728,
            "text_fused": 114_515_968}
    with torch.device("meta"):
        net = TorchNet(embd_dim[variant], 4096, 300, **VARIANTS[variant])
    assert sum(p.numel() for p in net.parameters()) == spec_total[variant]
    assert sum(p.numel() for p in net.DAVEnet.parameters()) == 44_670_978
    assert used_parameters(net, variant) == ours[variant]
    # The difference: BatchNorm2d(1) (2) and, in Text-Fused, GU_audio.
    assert spec_total[variant] - ours[variant] == (
        2 + (2 * (1024 * 1024 + 1024) if variant == "text_fused" else 0))


# --------------------------------- errors ---------------------------------- #
@pytest.fixture(scope="module")
def avlnet_state():
    net = make_torch_net(seed=3, **SMALL)
    return {k: v.numpy() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def avlnet_model():
    return build_model(AVLConfig(max_words=MAX_WORDS, **SMALL))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("GU_audio.cg.fc.bias"),
     r"missing tensors \['GU_audio.cg.fc.bias'\]"),
    (lambda d: d.update({"text_pooling_caption.fc.weight":
                         np.zeros((16, 10), "f4")}),
     r"unexpected tensors \['text_pooling_caption.fc.weight'\]"),
    (lambda d: d.update({"DAVEnet_projection.weight": np.zeros((8, 1024),
                                                               "f4")}),
     r"DAVEnet_projection.weight has shape \(8, 1024\), expected "
     r"\(16, 1024\)"),
    (lambda d: d.pop("DAVEnet.layer3.1.bn2.running_var"),
     r"keys under DAVEnet.\): .*missing keys: layer3.1.bn2.running_var"),
    (lambda d: d.update({"DAVEnet.layer2.0.conv1.weight":
                         np.zeros((256, 128, 1, 7), "f4")}),
     r"shape mismatch for layer2.0.conv1.weight: expected "
     r"\(256, 128, 1, 9\)"),
])
def test_mismatch_is_one_error_and_leaves_the_model_unchanged(
        avlnet_state, avlnet_model, edit, message):
    before = [w.copy() for w in avlnet_model.get_weights()]
    state_dict = dict(avlnet_state)
    edit(state_dict)
    with pytest.raises(UserInputError, match=message) as e:
        convert_torch.load_torch_state_dict(avlnet_model, state_dict)
    assert "\n" not in str(e.value)
    for a, b in zip(before, avlnet_model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_config_needs_the_video_branch():
    with pytest.raises(UserInputError, match="no tensor 'GU_video.fc"):
        convert_torch.config_from_state_dict({})


# ----------------------------------- CLI ----------------------------------- #
def run_cli(*args):
    convert_torch.FLAGS.unparse_flags()
    argv = convert_torch.FLAGS(["prog", *args])
    return cli.guarded(convert_torch.main)(argv)


def test_cli_end_to_end(tmp_path, capsys):
    net = make_torch_net(seed=7, tri_modal=True, tri_modal_fuse=True,
                         **SMALL)
    pth = save(net.state_dict(), tmp_path / "fused.pth")
    out = tmp_path / "conv"
    run_cli(f"--pth={pth}", f"--output_dir={out}", f"--max_words={MAX_WORDS}")
    assert (f"(text_fused, embd_dim 16) to a TF checkpoint in {out}"
            in capsys.readouterr().out)
    assert sorted(p for p in os.listdir(out) if not p.startswith("ckpt-1.")) \
        == ["checkpoint", "model_config.json"]
    # A fresh model restored from the written checkpoint.
    cfg = convert_torch.load_config(str(out))
    model = build_model(cfg)
    restore_model_weights(model, str(out))
    assert_same_outputs(net, model, cfg)
    # A second run into the same directory refuses to add a checkpoint.
    with pytest.raises(SystemExit) as e:
        run_cli(f"--pth={pth}", f"--output_dir={out}")
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a checkpoint" in err[0]


def test_cli_help_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["avl-convert-torch", "--help"])
    with pytest.raises(SystemExit) as e:
        convert_torch.run()
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: ")
    assert "Convert the released PyTorch AVLnet models" in text
    for flag in ("--pth", "--output_dir", "--max_words", "--keras_file"):
        assert flag in text
