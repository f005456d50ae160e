"""howto.convert_milnce / howto.milnce_weights: a MIL-NCE PyTorch
checkpoint -> our Keras model, with parity.

The reference is a compact PyTorch module written here with the module
names and forward pass of the released ``s3dg.S3D`` (STConv3D, SelfGating,
InceptionBlock, the TF-"SAME" max pools, the space-to-depth stem and
``text_module`` = Sentence_Embedding), so its ``state_dict()`` has the
release's keys. Random weights: batch-norm gamma U(0.5, 1), beta
U(0.5, 1.5), running statistics calibrated on random clips and perturbed
(as tests/test_backbones_s3d.py explains, otherwise float32 round-off
grows through ~40 batch norms). Both the release form (space-to-depth,
plain state dict) and the original training's checkpoint form
({"state_dict", "optimizer", "scheduler", "epoch"}, ``module.`` prefixes,
no space-to-depth) go through the CLI; ``video_embedding``, ``mixed_5c``
and ``text_embedding`` (from the same sentences, tokenised by each side)
must agree within 1e-4 with PyTorch in float32.
"""

import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from howto import convert_milnce, milnce_weights  # noqa: E402
from howto.milnce_model import MilNCEConfig, build_milnce_model  # noqa: E402
from vidcore import cli  # noqa: E402
from vidcore.errors import UserInputError  # noqa: E402

TOL = 1e-4
MAX_WORDS = 8
WORDS = ["the", "cut", "onion", "into", "small", "pieces", "add", "salt",
         "and", "pepper", "stir", "pan", "heat", "oil", "it's", "a", "then",
         "wash", "tomato", "slice"]
SENTENCES = ["Cut the onion into small pieces", "add SALT and pepper!",
             "heat the oil, then stir it's done in a pan pan pan",
             "unknown words only", "wash the tomato and slice it then cut"]


# ------------------------------------------ the release's module, compact --
class STConv3D(nn.Module):
    def __init__(self, cin, cout, kernel, stride=1, padding=0,
                 separable=False):
        super().__init__()
        self.separable = separable
        if separable:  # 1xkxk then kx1x1, stride/padding 1-D here
            k = kernel[0]
            self.conv1 = nn.Conv3d(cin, cout, (1, k, k), (1, stride, stride),
                                   (0, padding, padding), bias=False)
            self.bn1 = nn.BatchNorm3d(cout)
            self.conv2 = nn.Conv3d(cout, cout, (k, 1, 1), (stride, 1, 1),
                                   (padding, 0, 0), bias=False)
            self.bn2 = nn.BatchNorm3d(cout)
        else:
            self.conv1 = nn.Conv3d(cin, cout, kernel, stride, padding,
                                   bias=False)
            self.bn1 = nn.BatchNorm3d(cout)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x))) if self.separable else x


class SelfGating(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc = nn.Linear(dim, dim)

    def forward(self, x):
        gate = torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))
        return x * gate[:, :, None, None, None]


class InceptionBlock(nn.Module):
    def __init__(self, cin, b0, b1a, b1b, b2a, b2b, b3):
        super().__init__()
        self.conv_b0 = STConv3D(cin, b0, (1, 1, 1))
        self.conv_b1_a = STConv3D(cin, b1a, (1, 1, 1))
        self.conv_b1_b = STConv3D(b1a, b1b, (3, 3, 3), 1, 1, separable=True)
        self.conv_b2_a = STConv3D(cin, b2a, (1, 1, 1))
        self.conv_b2_b = STConv3D(b2a, b2b, (3, 3, 3), 1, 1, separable=True)
        self.maxpool_b3 = nn.MaxPool3d(3, 1, 1)
        self.conv_b3_b = STConv3D(cin, b3, (1, 1, 1))
        for i, width in enumerate((b0, b1b, b2b, b3)):
            setattr(self, f"gating_b{i}", SelfGating(width))
        self.output_dim = b0 + b1b + b2b + b3

    def forward(self, x):
        branches = (self.conv_b0(x), self.conv_b1_b(self.conv_b1_a(x)),
                    self.conv_b2_b(self.conv_b2_a(x)),
                    self.conv_b3_b(self.maxpool_b3(x)))
        return torch.cat([getattr(self, f"gating_b{i}")(b)
                          for i, b in enumerate(branches)], dim=1)


class MaxPoolTFSame(nn.Module):
    """Zero padding max(k - s, 0) split floor/ceil, then ceil-mode pool."""

    def __init__(self, kernel, stride):
        super().__init__()
        pads = []
        for k, s in zip(reversed(kernel), reversed(stride)):  # W, H, T
            along = max(k - s, 0)
            pads += [along // 2, along - along // 2]
        self.pad = nn.ConstantPad3d(tuple(pads), 0)
        self.pool = nn.MaxPool3d(kernel, stride, ceil_mode=True)

    def forward(self, x):
        return self.pool(self.pad(x))


class SentenceEmbedding(nn.Module):
    def __init__(self, embd_dim, num_embeddings, word_dim, dictionary,
                 max_words, hidden=2048):
        super().__init__()
        self.word_embd = nn.Embedding(num_embeddings, word_dim)
        self.fc1 = nn.Linear(word_dim, hidden)
        self.fc2 = nn.Linear(hidden, embd_dim)
        self.word_to_token = {w: i + 1 for i, w in enumerate(dictionary)}
        self.max_words = max_words

    def words_to_ids(self, sentences):
        rows = []
        for sentence in sentences:
            ids = [self.word_to_token[w]
                   for w in re.findall(r"[\w']+", sentence.lower())
                   if w in self.word_to_token][:self.max_words]
            rows.append(ids + [0] * (self.max_words - len(ids)))
        return torch.tensor(rows, dtype=torch.long)

    def forward(self, sentences):
        x = self.word_embd(self.words_to_ids(sentences))
        x = F.relu(self.fc1(x))
        return self.fc2(torch.max(x, dim=1)[0])


BLOCKS = (("3b", 64, 96, 128, 16, 32, 32), ("3c", 128, 128, 192, 32, 96, 64),
          ("4b", 192, 96, 208, 16, 48, 64), ("4c", 160, 112, 224, 24, 64, 64),
          ("4d", 128, 128, 256, 24, 64, 64),
          ("4e", 112, 144, 288, 32, 64, 64),
          ("4f", 256, 160, 320, 32, 128, 128),
          ("5b", 256, 160, 320, 32, 128, 128),
          ("5c", 384, 192, 384, 48, 128, 128))


class S3D(nn.Module):
    def __init__(self, dictionary, space_to_depth, num_embeddings, word_dim,
                 num_classes=512):
        super().__init__()
        self.space_to_depth = space_to_depth
        if space_to_depth:
            self.conv1 = STConv3D(24, 64, (2, 4, 4), 1, (1, 2, 2))
        else:
            self.conv1 = STConv3D(3, 64, (3, 7, 7), 2, (1, 3, 3))
        self.conv_2b = STConv3D(64, 64, (1, 1, 1))
        self.conv_2c = STConv3D(64, 192, (3, 3, 3), 1, 1, separable=True)
        self.gating = SelfGating(192)
        self.maxpool_2a = MaxPoolTFSame((1, 3, 3), (1, 2, 2))
        self.maxpool_3a = MaxPoolTFSame((1, 3, 3), (1, 2, 2))
        self.maxpool_4a = MaxPoolTFSame((3, 3, 3), (2, 2, 2))
        self.maxpool_5a = MaxPoolTFSame((2, 2, 2), (2, 2, 2))
        cin = 192
        for name, *widths in BLOCKS:
            block = InceptionBlock(cin, *widths)
            setattr(self, f"mixed_{name}", block)
            cin = block.output_dim
        self.fc = nn.Linear(cin, num_classes)
        self.text_module = SentenceEmbedding(
            num_classes, num_embeddings, word_dim, dictionary, MAX_WORDS)

    def forward_video(self, x):
        if self.space_to_depth:
            b, c, t, h, w = x.shape
            x = x.view(b, c, t // 2, 2, h // 2, 2, w // 2, 2)
            x = x.permute(0, 3, 5, 7, 1, 2, 4, 6).contiguous().view(
                b, 8 * c, t // 2, h // 2, w // 2)
            x = self.conv1(x)[:, :, 1:, 1:, 1:]
        else:
            x = self.conv1(x)
        x = self.maxpool_2a(x)
        x = self.gating(self.conv_2c(self.conv_2b(x)))
        x = self.maxpool_3a(x)
        for name, *_ in BLOCKS:
            if name == "4b":
                x = self.maxpool_4a(x)
            if name == "5b":
                x = self.maxpool_5a(x)
            x = getattr(self, f"mixed_{name}")(x)
        features = x.mean(dim=(2, 3, 4))
        return {"video_embedding": self.fc(features), "mixed_5c": features}


def _randomised_s3d(space_to_depth, clip_shape, seed):
    """The reference in eval mode with random weights and batch-norm
    statistics calibrated on random clips of ``clip_shape`` (channels
    first), then perturbed."""
    torch.manual_seed(seed)
    net = S3D(WORDS, space_to_depth, num_embeddings=len(WORDS) + 3,
              word_dim=12).eval()

    def calibrate(bn, args):
        var, mean = torch.var_mean(args[0], dim=(0, 2, 3, 4))
        bn.running_mean.copy_(mean + 0.1 * var.sqrt() * (
            torch.rand_like(mean) * 2 - 1))
        bn.running_var.copy_(var * (torch.rand_like(var) * 0.45 + 0.8))

    hooks = []
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm3d):
                module.weight.uniform_(0.5, 1.0)
                module.bias.uniform_(0.5, 1.5)
                hooks.append(module.register_forward_pre_hook(calibrate))
        net.forward_video(torch.rand((8,) + clip_shape[1:]))
        for hook in hooks:
            hook.remove()
        # Text biases large enough that padding slots matter in the max.
        net.text_module.fc1.bias.uniform_(-1.0, 1.0)
    return net


def _run_cli(*args):
    convert_milnce.FLAGS.unparse_flags()
    argv = convert_milnce.FLAGS(["prog", *args])
    return cli.guarded(convert_milnce.main)(argv)


def _max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64)
                               - np.asarray(b, np.float64))))


def _check_parity(net, model, encoder, clip):
    """Same clip ([B, C, T, H, W]) and SENTENCES through both."""
    with torch.no_grad():
        want = net.forward_video(torch.from_numpy(clip))
        want_text = net.text_module(SENTENCES).numpy()
    video = np.ascontiguousarray(np.transpose(clip, (0, 2, 3, 4, 1)))
    ids = encoder.word_ids(tf.strings.lower(SENTENCES), MAX_WORDS)
    np.testing.assert_array_equal(  # same tokenisation
        ids.numpy(), net.text_module.words_to_ids(SENTENCES).numpy())
    out = model({"video": video,
                 "text": ids.numpy().reshape(1, len(SENTENCES), MAX_WORDS)},
                training=False)
    assert float(np.std(want["mixed_5c"].numpy())) > 0.05  # a real signal
    diffs = {
        "video_embedding": _max_diff(out["video_embedding"],
                                     want["video_embedding"]),
        "mixed_5c": _max_diff(out["mixed_5c"], want["mixed_5c"]),
        "text_embedding": _max_diff(out["text_embedding"][0], want_text)}
    assert max(diffs.values()) < TOL, diffs
    return diffs


@pytest.mark.parametrize("space_to_depth, clip_shape", [
    (True, (1, 3, 8, 64, 64)),     # the release: plain state dict
    (False, (1, 3, 8, 64, 64)),    # a training checkpoint
])
def test_converted_model_matches_pytorch(tmp_path, capsys, space_to_depth,
                                         clip_shape):
    net = _randomised_s3d(space_to_depth, clip_shape, seed=3)
    state = net.state_dict()
    if space_to_depth:
        pth = tmp_path / "s3d_howto100m.pth"
        torch.save(state, pth)
    else:  # main_distributed.py's checkpoint, DDP-wrapped model
        optimizer = torch.optim.Adam(net.parameters(), 1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                      lambda step: 1.0)
        pth = tmp_path / "epoch0003.pth.tar"
        torch.save({"epoch": 3,
                    "state_dict": {f"module.{k}": v
                                   for k, v in state.items()},
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict()}, pth)
    dictionary = tmp_path / "s3d_dict.npy"
    np.save(dictionary, np.array(WORDS))
    out = tmp_path / "converted"
    # The release case also writes a .keras file.
    keras_file = tmp_path / "k" / "milnce.keras"
    extra = [f"--keras_file={keras_file}"] if space_to_depth else []
    _run_cli(f"--pth={pth}", f"--dict={dictionary}", f"--output_dir={out}",
             *extra)
    assert f"space_to_depth {space_to_depth}" in capsys.readouterr().out
    assert sorted(p for p in os.listdir(out) if not p.startswith("ckpt-1."))\
        == ["checkpoint", "model_config.json", "vocab.txt"]
    cfg = milnce_weights.pretrained_config(str(out))
    assert cfg == MilNCEConfig(space_to_depth=space_to_depth,
                               vocab_size=len(WORDS) + 3, word_dim=12)
    assert milnce_weights.pretrained_config(str(pth)) == cfg
    encoder = milnce_weights.load_vocabulary(str(out))
    clip = np.random.default_rng(4).uniform(size=clip_shape).astype("f4")
    # From the written checkpoint, and the .keras file (release) or the
    # .pth.tar directly (training checkpoint).
    restored = build_milnce_model(cfg)
    milnce_weights.load_pretrained(restored, str(out))
    _check_parity(net, restored, encoder, clip)
    if space_to_depth:
        _check_parity(net, keras.saving.load_model(str(keras_file)), encoder,
                      clip)
    else:
        direct = build_milnce_model(cfg)
        assert milnce_weights.load_pretrained(direct, str(pth)) == str(pth)
        _check_parity(net, direct, encoder, clip)
    # A second conversion into the same directory is refused.
    with pytest.raises(SystemExit):
        _run_cli(f"--pth={pth}", f"--dict={dictionary}",
                 f"--output_dir={out}")
    assert "already holds a checkpoint" in capsys.readouterr().err


# ------------------------------------------------------------ the pieces --

def _small_state_dict(space_to_depth=False):
    """Random numpy state dict with the release's keys (no forward)."""
    torch.manual_seed(0)
    net = S3D(WORDS, space_to_depth, num_embeddings=len(WORDS) + 1,
              word_dim=4, num_classes=8)
    return {k: v.numpy() for k, v in net.state_dict().items()}


def test_config_from_state_dict_and_errors():
    state = _small_state_dict()
    cfg = milnce_weights.config_from_state_dict(state, sync_bn=True)
    assert cfg == MilNCEConfig(embedding_dim=8, space_to_depth=False,
                               vocab_size=len(WORDS) + 1, word_dim=4,
                               text_hidden=2048, sync_bn=True)
    bad = dict(state)
    bad["conv1.conv1.weight"] = np.zeros((64, 5, 3, 7, 7), "f4")
    with pytest.raises(UserInputError, match=r"\[64, 24, 2, 4, 4\]"):
        milnce_weights.config_from_state_dict(bad)
    bad = dict(state)
    del bad["fc.weight"]
    with pytest.raises(UserInputError, match="no tensor 'fc.weight'"):
        milnce_weights.config_from_state_dict(bad)


def test_load_errors_leave_the_model_unchanged():
    state = _small_state_dict()
    cfg = milnce_weights.config_from_state_dict(state)
    model = build_milnce_model(cfg)
    before = [w.copy() for w in model.get_weights()]
    # A wrong text tensor, an extra text tensor.
    bad = dict(state)
    bad["text_module.fc2.weight"] = np.zeros((8, 7), "f4")
    bad["text_module.extra"] = np.zeros(3, "f4")
    with pytest.raises(UserInputError, match=r"text_module.fc2.weight: "
                       r"expected \(8, 2048\).*unexpected tensor "
                       r"text_module.extra"):
        milnce_weights.load_torch_state_dict(model, bad)
    # A trunk problem after the text module checked out.
    bad = dict(state)
    del bad["mixed_4c.conv_b0.bn1.running_var"]
    with pytest.raises(UserInputError, match="mixed_4c.conv_b0.bn1."
                       "running_var.*config_from_state_dict"):
        milnce_weights.load_torch_state_dict(model, bad)
    # The space-to-depth weights into the RGB-stem model.
    with pytest.raises(UserInputError, match="conv1.conv1.weight"):
        milnce_weights.load_torch_state_dict(
            model, _small_state_dict(space_to_depth=True))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    milnce_weights.load_torch_state_dict(model, state)
    np.testing.assert_array_equal(
        model.get_layer("text_module").get_layer("fc1").kernel.numpy(),
        state["text_module.fc1.weight"].T)
    np.testing.assert_array_equal(
        model.get_layer("text_module").get_layer("word_embd")
        .embeddings.numpy(), state["text_module.word_embd.weight"])


def test_dictionary_and_vocabulary(tmp_path):
    path = tmp_path / "dict.npy"
    np.save(path, np.array(WORDS))
    assert milnce_weights.read_dictionary(str(path)) == WORDS
    milnce_weights.save_vocabulary(WORDS, str(tmp_path / "v"))
    assert milnce_weights.read_vocabulary(str(tmp_path / "v")) == WORDS
    encoder = milnce_weights.load_vocabulary(str(tmp_path / "v" /
                                                 "vocab.txt"))
    np.testing.assert_array_equal(
        encoder.word_ids(["onion salt zebra the"], 5).numpy(),
        [[3, 8, 1, 0, 0]])
    # A repeated word keeps its last id, as the release's dict comprehension.
    encoder = milnce_weights.text_encoder(["a", "b", "a"])
    assert encoder.word_ids(["a b a"], 3).numpy().tolist() == [[3, 2, 3]]
    # Object arrays need allow_pickle.
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array(WORDS, dtype=object), allow_pickle=True)
    with pytest.raises(UserInputError, match="allow_pickle"):
        milnce_weights.read_dictionary(str(objects))
    assert milnce_weights.read_dictionary(str(objects),
                                          allow_pickle=True) == WORDS
    with pytest.raises(UserInputError, match="does not exist"):
        milnce_weights.read_dictionary(str(tmp_path / "missing.npy"))
    np.save(tmp_path / "table.npy", np.zeros((2, 3)))
    with pytest.raises(UserInputError, match="1-D array of words"):
        milnce_weights.read_dictionary(str(tmp_path / "table.npy"))
    with pytest.raises(UserInputError, match="line break"):
        milnce_weights.save_vocabulary(["a\nb"], str(tmp_path / "w"))
    with pytest.raises(UserInputError, match="needs a word table|at least"):
        milnce_weights.check_dictionary(
            WORDS, MilNCEConfig(vocab_size=len(WORDS)), "d.npy")
    assert milnce_weights.check_dictionary(
        ["a", "b", "a"], MilNCEConfig(vocab_size=4), "d.npy") == ["a"]


def test_load_pretrained_rejects_unknown_paths(tmp_path):
    model = build_milnce_model(MilNCEConfig(
        embedding_dim=8, vocab_size=5, word_dim=4, text_hidden=6))
    with pytest.raises(UserInputError, match="not a PyTorch checkpoint"):
        milnce_weights.load_pretrained(model, str(tmp_path / "nothing"))
    with pytest.raises(UserInputError, match="no checkpoint"):
        milnce_weights.load_pretrained(model, str(tmp_path))
    with pytest.raises(UserInputError, match="does not exist"):
        milnce_weights.load_pretrained(model, str(tmp_path / "x.pth"))
    with pytest.raises(UserInputError, match="does not exist"):
        milnce_weights.load_pretrained(model, str(tmp_path / "x.keras"))
    # A .keras file: its weights, or a one-line error for another config.
    path = str(tmp_path / "m.keras")
    model.save(path)
    other = build_milnce_model(MilNCEConfig(
        embedding_dim=8, vocab_size=5, word_dim=4, text_hidden=6))
    assert milnce_weights.load_pretrained(other, path) == path
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    wider = build_milnce_model(MilNCEConfig(
        embedding_dim=8, vocab_size=5, word_dim=4, text_hidden=7))
    with pytest.raises(UserInputError, match="does not fit the model"):
        milnce_weights.load_pretrained(wider, path)


def test_cli_user_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _run_cli("--pth=x.pth", f"--output_dir={tmp_path}")
    assert "--dict is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run_cli("--pth=x.pth", "--dict=d.npy", f"--output_dir={tmp_path}",
                 "--keras_file=model.h5")
    assert "must end in .keras" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run_cli(f"--pth={tmp_path / 'x.pth'}", f"--dict={tmp_path}/d.npy",
                 f"--output_dir={tmp_path / 'out'}")
    assert "does not exist" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")


def test_word_table_and_run_record(tmp_path):
    from vidcore.text import WordVectors
    rng = np.random.default_rng(5)
    table = rng.normal(size=(len(WORDS) + 2, 6)).astype("f4")
    torch.save(torch.from_numpy(table), tmp_path / "word2vec.pth")
    np.save(tmp_path / "dict.npy", np.array(WORDS))
    words, got = milnce_weights.load_word_table(
        str(tmp_path / "word2vec.pth"), str(tmp_path / "dict.npy"))
    assert words == WORDS
    np.testing.assert_array_equal(got, table)
    with pytest.raises(UserInputError, match="dictionary"):
        milnce_weights.load_word_table(str(tmp_path / "word2vec.pth"))
    torch.save(torch.zeros(4, 6), tmp_path / "short.pth")
    with pytest.raises(UserInputError, match="only 4 rows"):
        milnce_weights.load_word_table(str(tmp_path / "short.pth"),
                                       str(tmp_path / "dict.npy"))
    torch.save({"w": torch.zeros(2)}, tmp_path / "dict_of.pth")
    with pytest.raises(UserInputError, match="expected a tensor"):
        milnce_weights.load_word_table(str(tmp_path / "dict_of.pth"),
                                       str(tmp_path / "dict.npy"))
    # Word vectors that carry their words: row 0 is the zero padding row.
    WordVectors(WORDS[:3], table[:3]).save(str(tmp_path / "vectors"))
    words, got = milnce_weights.load_word_table(str(tmp_path / "vectors"))
    assert words == WORDS[:3]
    np.testing.assert_array_equal(got, np.concatenate(
        [np.zeros((1, 6), "f4"), table[:3]]))
    # The run record gives the config and the words back.
    cfg = MilNCEConfig(vocab_size=len(WORDS) + 2, word_dim=6)
    milnce_weights.save_run_record(str(tmp_path / "run"), cfg, WORDS)
    assert milnce_weights.pretrained_config(str(tmp_path / "run")) == cfg
    assert milnce_weights.pretrained_config(
        str(tmp_path / "run" / "ckpt-7")) == cfg
    assert milnce_weights.read_vocabulary(str(tmp_path / "run")) == WORDS
