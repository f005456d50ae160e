"""vidcore.backbones.s3d: parameter counts, the custom layers against numpy
and PyTorch, S3D logits/features against torchvision, S3D-G against a
PyTorch reference written here from the MIL-NCE spec, the weight loader's
errors, and a Keras round trip.

Random networks are well conditioned only with care: batch-norm gamma is
U(0.5, 1), beta U(0.5, 1.5), and the running statistics are calibrated on
random clips (layer by layer, given the statistics already set upstream),
then perturbed (mean +- 0.1 std, variance x U(0.8, 1.25)). Otherwise
float32 round-off is amplified through the ~40 batch-normalised layers far
beyond 1e-4 (PyTorch float32 itself then differs from float64 by more).
Small clips calibrate on 8-16 clips and compare with a float64 reference.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from vidcore.backbones import s3d as s3d_lib
from vidcore.backbones import torch_weights

TOL = 1e-4  # logits at 14 x 224 x 224 (measured ~1e-5)
# Small clips leave few positions per channel in the last blocks, which
# conditions random networks worse: there float32 PyTorch itself differs
# from float64 by up to ~6e-5 (Keras: up to ~6e-5 as well).
SMALL_CLIP_TOL = 2e-4


def _count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _to_keras_clip(clip):
    # [B, C, T, H, W] -> [B, T, H, W, C]
    return np.ascontiguousarray(np.transpose(clip, (0, 2, 3, 4, 1)))


# ------------------------------------------------------------------ counts --

def test_parameter_counts():
    assert _count(s3d_lib.s3d(num_classes=400)) == 8_320_048
    trunk = s3d_lib.s3dg(include_embedding=False)
    assert _count(trunk) == 9_125_072
    full = s3d_lib.s3dg(embedding_dim=512)
    assert _count(full) - _count(trunk) == 524_800
    s2d = s3d_lib.s3dg(space_to_depth=True, include_embedding=False)
    assert _count(s2d) == 9_146_000


# ---------------------------------------------------------- custom layers --

@pytest.mark.parametrize("pool, stride, pad, ceil", [
    ((1, 3, 3), (1, 2, 2), (0, 1, 1), False),
    ((3, 3, 3), (2, 2, 2), (1, 1, 1), False),
    ((3, 3, 3), (1, 1, 1), (1, 1, 1), False),
    ((2, 2, 2), (2, 2, 2), (0, 0, 0), True),
    ((3, 3, 3), (2, 2, 2), (0, 0, 0), True),
    ((1, 3, 3), (1, 2, 2), (0, 0, 0), True),
    ((3, 3, 3), (2, 2, 2), (1, 1, 1), True),
])
def test_torch_max_pool_matches_pytorch(pool, stride, pad, ceil):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    layer = s3d_lib.TorchMaxPool3D(pool, stride, pad, ceil_mode=ceil)
    dynamic = tf.function(
        layer, input_signature=[tf.TensorSpec([None] * 4 + [2])])
    for t, h, w in ((5, 7, 8), (4, 6, 9), (3, 3, 4), (1, 2, 3)):
        # Negative values: -inf padding must never win the max.
        clip = rng.normal(size=(2, 2, t, h, w)).astype("float32") - 3.0
        try:
            want = torch.nn.functional.max_pool3d(
                torch.from_numpy(clip), pool, stride, pad,
                ceil_mode=ceil).numpy()
        except RuntimeError:  # PyTorch: output size is too small
            with pytest.raises(ValueError, match="too small"):
                layer(_to_keras_clip(clip))
            continue
        want = _to_keras_clip(want)
        got = layer(_to_keras_clip(clip))
        assert tuple(got.shape) == want.shape
        assert layer.compute_output_shape(
            _to_keras_clip(clip).shape) == want.shape
        np.testing.assert_array_equal(np.asarray(got), want)
        np.testing.assert_array_equal(
            dynamic(_to_keras_clip(clip)).numpy(), want)


def test_torch_max_pool_rejects_bad_arguments_and_small_inputs():
    with pytest.raises(ValueError, match="padding <= pool_size / 2"):
        s3d_lib.TorchMaxPool3D(3, 1, padding=2)
    layer = s3d_lib.TorchMaxPool3D(3, 2, name="pool_x")
    with pytest.raises(ValueError, match="pool_x.*input T = 2"):
        layer(np.zeros((1, 2, 5, 5, 1), "float32"))


def test_self_gating_formula():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 2, 4, 5, 6)).astype("float32")
    layer = s3d_lib.SelfGating()
    layer.build(x.shape)
    kernel = rng.normal(size=(6, 6)).astype("float32")
    bias = rng.normal(size=(6,)).astype("float32")
    layer.set_weights([kernel, bias])
    logits = x.mean(axis=(1, 2, 3)) @ kernel + bias
    want = x * (1.0 / (1.0 + np.exp(-logits)))[:, None, None, None, :]
    np.testing.assert_allclose(np.asarray(layer(x)), want, rtol=1e-5,
                               atol=1e-6)
    assert [tuple(w.shape) for w in layer.weights] == [(6, 6), (6,)]


def test_space_to_depth_matches_numpy_reference():
    rng = np.random.default_rng(3)
    b, t, h, w, c = 2, 4, 6, 8, 3
    x = rng.normal(size=(b, t, h, w, c)).astype("float32")
    want = np.zeros((b, t // 2, h // 2, w // 2, 8 * c), "float32")
    for dt in range(2):
        for dh in range(2):
            for dw in range(2):
                block = (dt * 2 + dh) * 2 + dw
                want[..., block * c:(block + 1) * c] = x[
                    :, dt::2, dh::2, dw::2, :]
    layer = s3d_lib.SpaceToDepth3D(2)
    np.testing.assert_array_equal(np.asarray(layer(x)), want)
    dynamic = tf.function(
        layer, input_signature=[tf.TensorSpec([None, None, None, None, c])])
    np.testing.assert_array_equal(dynamic(x).numpy(), want)
    with pytest.raises(ValueError, match="H = 5 is not a multiple"):
        layer(np.zeros((1, 4, 5, 4, 3), "float32"))


# ------------------------------------------------------------------- S3D-G --

def test_s3dg_output_shapes():
    model = s3d_lib.s3dg(embedding_dim=32)
    out = model(np.zeros((2, 8, 64, 64, 3), "float32"))
    assert set(out) == {"mixed_5c", "video_embedding"}
    assert tuple(out["mixed_5c"].shape) == (2, 1024)
    assert tuple(out["video_embedding"].shape) == (2, 32)
    s2d = s3d_lib.s3dg(embedding_dim=16, space_to_depth=True)
    out = s2d(np.zeros((1, 16, 96, 96, 3), "float32"))
    assert tuple(out["mixed_5c"].shape) == (1, 1024)
    assert tuple(out["video_embedding"].shape) == (1, 16)
    # Without the embedding: the 1024-d features; odd sizes work.
    trunk = s3d_lib.s3dg(include_embedding=False)
    assert tuple(trunk(np.zeros((1, 5, 33, 47, 3), "float32")).shape) == (
        1, 1024)


def _random_state_dict(model, rng):
    """Random numpy weights under the torch names the loader expects."""
    state = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        for key, shape, _ in torch_weights.weight_plan(layer, s3d_lib._torch_path(layer)):
            if ".bn" in key:  # batch norm
                low, high = {"weight": (0.5, 1.0), "bias": (0.5, 1.5),
                             "running_mean": (-0.1, 0.1),
                             "running_var": (0.5, 1.5)}[key.split(".")[-1]]
                value = rng.uniform(low, high, shape)
            elif len(shape) == 1:  # Linear bias
                value = rng.uniform(-0.1, 0.1, shape)
            else:  # conv or Linear kernel, He-normal
                fan_in = int(np.prod(shape[1:]))
                value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
            state[key] = value.astype("float32")
    return state


def _torch_s3dg(state, clip, space_to_depth, calibrate=False):
    """S3D-G of the MIL-NCE release in PyTorch (channels first), written
    from the spec. ``state``: torch tensors. With ``calibrate``, each batch
    norm first sets its running statistics to those of its input."""
    import torch
    fn = torch.nn.functional

    def bn(x, p):
        if calibrate:
            var, mean = torch.var_mean(x, dim=(0, 2, 3, 4))
            std = var.sqrt()
            state[f"{p}.running_mean"] = mean + 0.1 * std * (
                torch.rand_like(mean) * 2 - 1)
            state[f"{p}.running_var"] = var * (
                torch.rand_like(var) * 0.45 + 0.8)
        return fn.batch_norm(x, state[f"{p}.running_mean"],
                             state[f"{p}.running_var"], state[f"{p}.weight"],
                             state[f"{p}.bias"], False, 0.0, 1e-5)

    def unit(x, p, stride=1, padding=0):
        x = fn.conv3d(x, state[f"{p}.conv1.weight"], None, stride, padding)
        return fn.relu(bn(x, f"{p}.bn1"))

    def separable(x, p):
        x = fn.conv3d(x, state[f"{p}.conv1.weight"], None, 1, (0, 1, 1))
        x = fn.relu(bn(x, f"{p}.bn1"))
        x = fn.conv3d(x, state[f"{p}.conv2.weight"], None, 1, (1, 0, 0))
        return fn.relu(bn(x, f"{p}.bn2"))

    def gate(x, p):
        g = torch.sigmoid(fn.linear(x.mean(dim=(2, 3, 4)),
                                    state[f"{p}.fc.weight"],
                                    state[f"{p}.fc.bias"]))
        return x * g[:, :, None, None, None]

    def same_pool(x, kernel, stride):
        pads = []
        for k, s in zip(reversed(kernel), reversed(stride)):  # W, H, T
            along = max(k - s, 0)
            pads += [along // 2, along - along // 2]
        return fn.max_pool3d(fn.pad(x, pads), kernel, stride,
                             ceil_mode=True)

    def inception(x, p):
        b0 = unit(x, f"{p}.conv_b0")
        b1 = separable(unit(x, f"{p}.conv_b1_a"), f"{p}.conv_b1_b")
        b2 = separable(unit(x, f"{p}.conv_b2_a"), f"{p}.conv_b2_b")
        b3 = unit(fn.max_pool3d(x, 3, 1, 1), f"{p}.conv_b3_b")
        branches = [gate(b, f"{p}.gating_b{i}")
                    for i, b in enumerate((b0, b1, b2, b3))]
        return torch.cat(branches, dim=1)

    x = clip
    if space_to_depth:
        b, c, t, h, w = x.shape
        x = x.reshape(b, c, t // 2, 2, h // 2, 2, w // 2, 2)
        x = x.permute(0, 3, 5, 7, 1, 2, 4, 6).reshape(
            b, 8 * c, t // 2, h // 2, w // 2)
        x = unit(x, "conv1", 1, (1, 2, 2))[:, :, 1:, 1:, 1:]
    else:
        x = unit(x, "conv1", 2, (1, 3, 3))
    x = same_pool(x, (1, 3, 3), (1, 2, 2))
    x = unit(x, "conv_2b")
    x = gate(separable(x, "conv_2c"), "gating")
    x = same_pool(x, (1, 3, 3), (1, 2, 2))
    for block in ("3b", "3c", "4b", "4c", "4d", "4e", "4f", "5b", "5c"):
        if block == "4b":
            x = same_pool(x, (3, 3, 3), (2, 2, 2))
        if block == "5b":
            x = same_pool(x, (2, 2, 2), (2, 2, 2))
        x = inception(x, f"mixed_{block}")
    features = x.mean(dim=(2, 3, 4))
    return features, fn.linear(features, state["fc.weight"],
                               state["fc.bias"])


@pytest.mark.parametrize("space_to_depth, shape", [
    (False, (2, 3, 9, 65, 71)),   # odd sizes: ceil-mode pools matter
    (True, (1, 3, 10, 70, 66)),
])
def test_s3dg_matches_pytorch_reference(space_to_depth, shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    model = s3d_lib.s3dg(embedding_dim=24, space_to_depth=space_to_depth)
    state = {k: torch.from_numpy(v)
             for k, v in _random_state_dict(model, rng).items()}
    # Statistics from 8 clips, the first ones being the test clips.
    batch = rng.uniform(0.0, 1.0, (8,) + shape[1:]).astype("float32")
    clip = batch[:shape[0]]
    with torch.no_grad():
        _torch_s3dg(state, torch.from_numpy(batch), space_to_depth,
                    calibrate=True)
        # The reference runs in float64.
        want_f, want_e = _torch_s3dg(
            {k: v.double() for k, v in state.items()},
            torch.from_numpy(clip).double(), space_to_depth)
    numpy_state = {k: v.numpy() for k, v in state.items()}
    numpy_state["conv1.bn1.num_batches_tracked"] = np.array(0)
    numpy_state["text_module.fc1.weight"] = np.zeros((4, 3), "float32")
    s3d_lib.load_torchvision_weights(model, numpy_state)
    out = model(_to_keras_clip(clip), training=False)
    assert float(np.std(want_f.numpy())) > 0.05  # not a vanished signal
    np.testing.assert_allclose(np.asarray(out["mixed_5c"]), want_f.numpy(),
                               rtol=0, atol=SMALL_CLIP_TOL)
    np.testing.assert_allclose(np.asarray(out["video_embedding"]),
                               want_e.numpy(), rtol=0, atol=SMALL_CLIP_TOL)


def test_s3dg_keras_round_trip(tmp_path):
    model = s3d_lib.s3dg(embedding_dim=8, space_to_depth=True)
    clip = np.random.default_rng(5).uniform(
        size=(1, 4, 32, 32, 3)).astype("float32")
    want = model(clip)
    path = str(tmp_path / "s3dg.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    got = loaded(clip)
    for key in ("mixed_5c", "video_embedding"):
        np.testing.assert_allclose(np.asarray(got[key]),
                                   np.asarray(want[key]), rtol=0, atol=1e-6)


# --------------------------------------------------------- torchvision S3D --

def _randomised_torchvision_s3d(num_classes, calibration_clip, seed):
    """torchvision S3D, eval mode, with random gamma/beta and batch-norm
    statistics calibrated on ``calibration_clip`` (layer by layer, each
    from its input given the statistics already set upstream), then the
    variances scaled by U(0.8, 1.25)."""
    torch = pytest.importorskip("torch")
    video = pytest.importorskip("torchvision.models.video")
    torch.manual_seed(seed)
    net = video.s3d(weights=None, num_classes=num_classes).eval()

    def calibrate(bn, args):
        var, mean = torch.var_mean(args[0], dim=(0, 2, 3, 4))
        bn.running_mean.copy_(mean + 0.1 * var.sqrt() * (
            torch.rand_like(mean) * 2 - 1))
        bn.running_var.copy_(var * (torch.rand_like(var) * 0.45 + 0.8))

    hooks = []
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.weight.uniform_(0.5, 1.0)
                module.bias.uniform_(0.5, 1.5)
                hooks.append(module.register_forward_pre_hook(calibrate))
        net.features(torch.from_numpy(calibration_clip))
    for hook in hooks:
        hook.remove()
    return net


def _numpy_state(net):
    return {k: v.detach().numpy() for k, v in net.state_dict().items()}


@pytest.mark.slow
def test_s3d_logits_match_torchvision():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    net = _randomised_torchvision_s3d(
        400, rng.normal(size=(1, 3, 8, 112, 112)).astype("float32"), 0)
    clip = rng.normal(size=(1, 3, 14, 224, 224)).astype("float32")
    with torch.no_grad():
        want = net(torch.from_numpy(clip)).numpy()
    model = s3d_lib.s3d(num_classes=400, input_shape=(14, 224, 224, 3))
    s3d_lib.load_torchvision_weights(model, _numpy_state(net))
    got = np.asarray(model(_to_keras_clip(clip), training=False))
    assert got.shape == (1, 400)
    assert float(np.std(want)) > 0.05
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_s3d_features_match_torchvision():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    # Statistics from 16 clips, the first two being the test clips.
    batch = rng.normal(size=(16, 3, 9, 66, 70)).astype("float32")
    clip = batch[:2]
    net = _randomised_torchvision_s3d(10, batch, 1)
    state = _numpy_state(net)
    with torch.no_grad():  # reference in float64
        want = net.double().features(
            torch.from_numpy(clip).double()).mean(dim=(2, 3, 4)).numpy()
    model = s3d_lib.s3d(include_top=False, input_shape=(None, None, None, 3))
    s3d_lib.load_torchvision_weights(model, state, skip_top=True)
    got = np.asarray(model(_to_keras_clip(clip), training=False))
    assert float(np.std(want)) > 0.05
    np.testing.assert_allclose(got, want, rtol=0, atol=SMALL_CLIP_TOL)


@pytest.fixture(scope="module")
def s3d_pair():
    """A torchvision S3D (10 classes) and a Keras S3D with any clip size."""
    video = pytest.importorskip("torchvision.models.video")
    net = video.s3d(weights=None, num_classes=10)
    model = s3d_lib.s3d(num_classes=10, input_shape=(None, None, None, 3))
    return _numpy_state(net), model


def test_loader_copies_every_weight(s3d_pair):
    state, model = s3d_pair
    s3d_lib.load_torchvision_weights(model, state)
    conv = model.get_layer("features_5_branch1_1_0_0")
    np.testing.assert_array_equal(
        conv.kernel.numpy(),
        np.transpose(state["features.5.branch1.1.0.0.weight"],
                     (2, 3, 4, 1, 0)))
    bn = model.get_layer("features_15_branch3_1_1")
    np.testing.assert_array_equal(
        bn.moving_variance.numpy(), state["features.15.branch3.1.1.running_var"])
    head = model.get_layer("classifier_1")
    np.testing.assert_array_equal(head.bias.numpy(),
                                  state["classifier.1.bias"])
    wanted = {k for k in state if not k.endswith("num_batches_tracked")}
    planned = {key for layer in model.layers if layer.weights
               for key, _, _ in torch_weights.weight_plan(layer, s3d_lib._torch_path(layer))}
    assert planned == wanted


def test_loader_errors(s3d_pair):
    state, model = s3d_pair
    before = [w.numpy().copy() for w in model.weights]
    bad = dict(state)
    del bad["features.3.1.1.running_mean"]
    bad["features.99.weight"] = np.zeros(3, "float32")
    bad["features.0.0.0.weight"] = np.zeros((64, 3, 1, 7, 5), "float32")
    with pytest.raises(ValueError) as info:
        s3d_lib.load_torchvision_weights(model, bad)
    message = str(info.value)
    assert "missing keys: features.3.1.1.running_mean" in message
    assert "unexpected keys: features.99.weight" in message
    assert ("shape mismatch for features.0.0.0.weight: expected "
            "(64, 3, 1, 7, 7) (torch layout), got (64, 3, 1, 7, 5)"
            in message)
    # Nothing was assigned.
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, new.numpy())
    with pytest.raises(ValueError, match="not built by vidcore"):
        s3d_lib.load_torchvision_weights(
            keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]),
            state)


def test_loader_skip_top_for_other_classes(s3d_pair):
    state, _ = s3d_pair
    model = s3d_lib.s3d(num_classes=7, input_shape=(None, None, None, 3))
    with pytest.raises(ValueError,
                       match=r"(?s)classifier\.1\.weight.*skip_top=True"):
        s3d_lib.load_torchvision_weights(model, state)
    head = [w.numpy().copy()
            for w in model.get_layer("classifier_1").weights]
    s3d_lib.load_torchvision_weights(model, state, skip_top=True)
    for old, new in zip(head, model.get_layer("classifier_1").weights):
        np.testing.assert_array_equal(old, new.numpy())
    np.testing.assert_array_equal(
        model.get_layer("features_2_1").gamma.numpy(),
        state["features.2.1.weight"])
    # A headless model needs skip_top for a full state dict.
    trunk = s3d_lib.s3d(include_top=False,
                        input_shape=(None, None, None, 3))
    with pytest.raises(ValueError, match="unexpected keys: classifier"):
        s3d_lib.load_torchvision_weights(trunk, state)


def test_s3d_rejects_clips_too_small_for_the_head():
    with pytest.raises(ValueError, match="at least 2 x 7 x 7"):
        s3d_lib.s3d(input_shape=(8, 112, 112, 3))
    with pytest.raises(ValueError, match="input_shape must be"):
        s3d_lib.s3dg(input_shape=(8, 112, 112))
    with pytest.raises(ValueError, match="num_classes must be"):
        s3d_lib.s3d(num_classes=0)


def test_float16_max_pool_runs_on_cpu_and_is_exact():
    """TensorFlow has no float16 MaxPool3D kernel on the CPU: the layer pools
    float16 in float32 there (the max of float16 values is exact)."""
    x = np.random.default_rng(0).normal(size=(1, 5, 7, 6, 3))
    layer = s3d_lib.TorchMaxPool3D((3, 3, 3), (2, 2, 2), ceil_mode=True,
                                   dtype="mixed_float16")
    want = np.asarray(layer(tf.constant(x, tf.float32)))
    got = layer(tf.constant(x, tf.float16))
    assert got.dtype == tf.float16
    np.testing.assert_array_equal(
        np.asarray(got), want.astype(np.float16))
