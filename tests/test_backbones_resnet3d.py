"""R3D-18 / MC3-18 / R(2+1)D-18: sizes, torchvision parity, weight loading."""

import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from vidcore import backbones
from vidcore.backbones import resnet3d

BUILDERS = {
    "r3d_18": resnet3d.r3d_18,
    "mc3_18": resnet3d.mc3_18,
    "r2plus1d_18": resnet3d.r2plus1d_18,
}

# specs/kinetics.md, 400 classes, BN running statistics excluded.
SPEC_PARAMS = {
    "r3d_18": 33_371_472,
    "mc3_18": 11_695_440,
    "r2plus1d_18": 31_505_325,
}

ANY_SHAPE = (None, None, None, 3)


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def _torchvision_video():
    """Imports torchvision.models.video in a process that already runs
    TensorFlow (tests/conftest.py imports it first).

    torchvision imports torch._dynamo, which loads triton when installed;
    libtriton.so and TensorFlow's native libraries crash the process
    (segmentation fault) when both are loaded. Triton is only a GPU kernel
    compiler, so these CPU tests hide it: torch treats an ImportError as
    "no triton"."""
    pytest.importorskip("torch")
    if "triton" not in sys.modules:
        sys.modules["triton"] = None  # makes `import triton` raise
    return pytest.importorskip("torchvision.models.video")


def _random_torch_model(name, num_classes, seed):
    """torchvision model in eval mode with random conv weights, random BN
    gamma/beta/running statistics and an fc layer large enough that the
    logits are O(1) (so the comparison is not trivially small)."""
    video = _torchvision_video()
    import torch
    torch.manual_seed(seed)
    model = getattr(video, name)(weights=None, num_classes=num_classes)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        model.fc.weight.normal_(0.0, 0.05)
        model.fc.bias.normal_(0.0, 0.1)
    return model.eval()


def _numpy_state_dict(torch_model):
    return {k: v.detach().cpu().numpy()
            for k, v in torch_model.state_dict().items()}


def _state_dict_from_keras(model):
    """The inverse conversion (Keras -> torch layout), so that loading can be
    tested without torch."""
    state = {}
    for layer in model.layers:
        prefix = layer.name.replace("_", ".")
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.Conv3D):
            # keras [t, h, w, in, out] -> torch [out, in, t, h, w]
            state[f"{prefix}.weight"] = np.transpose(weights[0],
                                                     (4, 3, 0, 1, 2))
        elif isinstance(layer, keras.layers.BatchNormalization):
            for suffix, value in zip(
                    ("weight", "bias", "running_mean", "running_var"),
                    weights):
                state[f"{prefix}.{suffix}"] = value
            state[f"{prefix}.num_batches_tracked"] = np.array(7)
        elif isinstance(layer, keras.layers.Dense):
            state[f"{prefix}.weight"] = weights[0].T
            state[f"{prefix}.bias"] = weights[1]
        else:
            assert not weights, layer.name
    return state


def _randomise_keras(model, seed):
    """Random values for every weight (BN variances kept positive)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        new = []
        for w in layer.get_weights():
            value = rng.normal(0.0, 0.05, w.shape)
            if isinstance(layer, keras.layers.BatchNormalization):
                value = rng.uniform(0.5, 1.5, w.shape)
            new.append(value.astype(w.dtype))
        layer.set_weights(new)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_parameter_counts_match_spec_and_torchvision(name):
    model = BUILDERS[name](input_shape=ANY_SHAPE)
    assert _count(model.trainable_weights) == SPEC_PARAMS[name]
    # Non-trainable weights are exactly the BN running mean and variance.
    bn_channels = sum(int(layer.gamma.shape[0]) for layer in model.layers
                      if isinstance(layer, keras.layers.BatchNormalization))
    assert _count(model.non_trainable_weights) == 2 * bn_channels
    video = _torchvision_video()
    torch_model = getattr(video, name)(weights=None)
    assert sum(p.numel() for p in torch_model.parameters()) == (
        SPEC_PARAMS[name])


def test_r2plus1d_midplanes_follow_block_input_width():
    model = resnet3d.r2plus1d_18(input_shape=ANY_SHAPE)
    # layer2.0: in 64, out 128 -> 64*128*27 // (64*9 + 3*128) = 230, used by
    # both convolutions of the block; layer2.1: in 128 -> 288.
    assert model.get_layer("layer2_0_conv1_0_0").filters == 230
    assert model.get_layer("layer2_0_conv2_0_0").filters == 230
    assert model.get_layer("layer2_1_conv1_0_0").filters == 288
    assert model.get_layer("stem_0").filters == 45
    # MC3 keeps the time axis in layers 2-4 (1x3x3, stride (1, 2, 2)).
    mc3 = resnet3d.mc3_18(input_shape=ANY_SHAPE)
    assert mc3.get_layer("layer3_0_conv1_0").kernel_size == (1, 3, 3)
    assert mc3.get_layer("layer3_0_conv1_0").strides == (1, 2, 2)
    assert mc3.get_layer("layer3_0_downsample_0").strides == (1, 2, 2)
    assert mc3.get_layer("layer1_0_conv1_0").kernel_size == (3, 3, 3)


def test_output_shapes_and_registry():
    model = backbones.build("r3d_18", num_classes=7,
                            input_shape=(8, 32, 32, 3))
    assert model.output_shape == (None, 7)
    clip = np.zeros((1, 8, 32, 32, 3), np.float32)
    assert model(clip).shape == (1, 7)
    features = backbones.build("mc3_18", include_top=False,
                               input_shape=ANY_SHAPE)
    assert features.output_shape == (None, 512)
    # Any T/H/W works with the None input shape (global average pooling).
    assert features(np.zeros((2, 5, 23, 41, 3), np.float32)).shape == (
        2, 512)


@pytest.mark.parametrize("kwargs, message", [
    ({"input_shape": (16, 112, 112)}, "input_shape"),
    ({"input_shape": (16, 112, 112, None)}, "channel"),
    ({"input_shape": (0, 112, 112, 3)}, "T must be"),
    ({"num_classes": 0}, "num_classes"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resnet3d.r3d_18(**kwargs)


@pytest.mark.parametrize("name, num_classes", [
    ("r3d_18", 5), ("mc3_18", 5), ("r2plus1d_18", 5), ("mc3_18", 400)])
def test_logits_match_torchvision(name, num_classes):
    torch = pytest.importorskip("torch")
    torch_model = _random_torch_model(name, num_classes, seed=1)
    clip = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator()
                       .manual_seed(2))
    with torch.no_grad():
        expected = torch_model(clip).numpy()
    model = BUILDERS[name](num_classes=num_classes,
                           input_shape=(8, 32, 32, 3))
    backbones.load_torchvision_weights(name, model,
                                       _numpy_state_dict(torch_model))
    # torch [B, C, T, H, W] -> keras [B, T, H, W, C]
    got = model(clip.permute(0, 2, 3, 4, 1).numpy(), training=False).numpy()
    assert got.shape == expected.shape == (2, num_classes)
    assert np.abs(expected).max() > 0.5  # a meaningful scale
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_features_match_torchvision_on_odd_sizes():
    torch = pytest.importorskip("torch")
    torch_model = _random_torch_model("r2plus1d_18", 400, seed=3)
    state = _numpy_state_dict(torch_model)  # with the fc.* weights
    torch_model.fc = torch.nn.Identity()
    # Odd sizes: every stride-2 layer sees an odd or even input somewhere.
    clip = torch.randn(2, 3, 7, 29, 35,
                       generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = torch_model(clip).numpy()
    model = resnet3d.r2plus1d_18(include_top=False, input_shape=ANY_SHAPE)
    resnet3d.load_torchvision_weights(model, state, skip_top=True)
    # torch [B, C, T, H, W] -> keras [B, T, H, W, C]
    got = model(clip.permute(0, 2, 3, 4, 1).numpy(), training=False).numpy()
    assert got.shape == expected.shape == (2, 512)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_load_without_torch_round_trips_outputs():
    source = resnet3d.r2plus1d_18(num_classes=3, input_shape=ANY_SHAPE)
    _randomise_keras(source, seed=5)
    target = resnet3d.r2plus1d_18(num_classes=3, input_shape=ANY_SHAPE)
    resnet3d.load_torchvision_weights(target, _state_dict_from_keras(source))
    clip = np.random.default_rng(6).normal(
        size=(1, 4, 20, 20, 3)).astype(np.float32)
    np.testing.assert_array_equal(target(clip).numpy(),
                                  source(clip).numpy())


def test_skip_top_loads_backbone_and_keeps_head():
    source = resnet3d.mc3_18(num_classes=400, input_shape=ANY_SHAPE)
    _randomise_keras(source, seed=7)
    state = _state_dict_from_keras(source)
    target = resnet3d.mc3_18(num_classes=7, input_shape=ANY_SHAPE)
    head_before = [w.copy() for w in target.get_layer("fc").get_weights()]
    # Without skip_top the 400-class head does not fit a 7-class model.
    with pytest.raises(ValueError, match=r"(?s)fc\.weight.*skip_top=True"):
        resnet3d.load_torchvision_weights(target, state)
    resnet3d.load_torchvision_weights(target, state, skip_top=True)
    for layer in source.layers:
        if layer.weights and layer.name != "fc":
            for got, want in zip(target.get_layer(layer.name).get_weights(),
                                 layer.get_weights()):
                np.testing.assert_array_equal(got, want)
    for got, want in zip(target.get_layer("fc").get_weights(), head_before):
        np.testing.assert_array_equal(got, want)
    # A headless model needs skip_top=True for a full state dict too.
    headless = resnet3d.mc3_18(include_top=False, input_shape=ANY_SHAPE)
    with pytest.raises(ValueError, match="unexpected keys: fc.bias, fc.weight"):
        resnet3d.load_torchvision_weights(headless, state)
    resnet3d.load_torchvision_weights(headless, state, skip_top=True)


def test_bad_state_dicts_raise_naming_the_keys():
    model = resnet3d.mc3_18(num_classes=4, input_shape=ANY_SHAPE)
    good = _state_dict_from_keras(model)
    before = [w.copy() for w in model.get_weights()]

    missing = dict(good)
    del missing["layer3.1.conv2.1.running_var"]
    with pytest.raises(ValueError,
                       match=r"missing keys: layer3\.1\.conv2\.1\.running_var"):
        resnet3d.load_torchvision_weights(model, missing)

    extra = dict(good, **{"layer5.0.conv1.0.weight": np.zeros(3)})
    with pytest.raises(ValueError,
                       match=r"unexpected keys: layer5\.0\.conv1\.0\.weight"):
        resnet3d.load_torchvision_weights(model, extra)

    wrong = dict(good)
    wrong["layer2.0.downsample.0.weight"] = np.zeros((128, 64, 3, 1, 1))
    with pytest.raises(
            ValueError,
            match=(r"shape mismatch for layer2\.0\.downsample\.0\.weight: "
                   r"expected \(128, 64, 1, 1, 1\) \(torch layout\), got "
                   r"\(128, 64, 3, 1, 1\)")):
        resnet3d.load_torchvision_weights(model, wrong)

    # All problems are reported at once, and nothing was assigned.
    everything = dict(wrong, **{"layer5.0.conv1.0.weight": np.zeros(3)})
    del everything["stem.1.weight"]
    with pytest.raises(ValueError) as info:
        resnet3d.load_torchvision_weights(model, everything)
    for key in ("stem.1.weight", "layer5.0.conv1.0.weight",
                "layer2.0.downsample.0.weight"):
        assert key in str(info.value)
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_keras_file_round_trip(tmp_path):
    model = resnet3d.mc3_18(num_classes=3, input_shape=ANY_SHAPE)
    _randomise_keras(model, seed=8)
    path = tmp_path / "mc3.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    clip = np.random.default_rng(9).normal(
        size=(2, 4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(clip).numpy(), model(clip).numpy())
    # The architecture alone also round-trips through JSON.
    rebuilt = keras.models.model_from_json(model.to_json())
    rebuilt.set_weights(model.get_weights())
    np.testing.assert_array_equal(rebuilt(clip).numpy(), model(clip).numpy())


@pytest.mark.slow
def test_sync_bn_matches_single_device_global_batch():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    if len(devices) < 2:
        pytest.skip("needs two logical CPU devices (tests/conftest.py)")
    rng = np.random.default_rng(10)
    clips = rng.normal(size=(4, 4, 16, 16, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 1])
    # Per-replica batches differ in distribution, so local statistics would
    # give different moving averages than the global batch.
    clips[2:] = clips[2:] * 2.0 + 1.0

    reference = resnet3d.mc3_18(num_classes=3, input_shape=(4, 16, 16, 3))
    initial = reference.get_weights()
    reference(clips, training=True)  # one BN update on the global batch

    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model = resnet3d.mc3_18(num_classes=3, input_shape=(4, 16, 16, 3),
                                sync_bn=True)
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(
                          from_logits=True))
    assert all(layer.synchronized for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization))
    history = model.fit(clips, labels, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for name in ("stem_1", "layer2_0_conv1_1", "layer4_1_conv2_1"):
        got = model.get_layer(name).get_weights()
        want = reference.get_layer(name).get_weights()
        # moving mean and variance (indices 2, 3): global-batch statistics
        np.testing.assert_allclose(got[2], want[2], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got[3], want[3], rtol=1e-4, atol=1e-5)
