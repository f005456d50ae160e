"""AVLnet models: parameter counts at the published sizes, ResDAVEnet's
output lengths and pooling against numpy, config errors, the loss and
retrieval pairs, mixed precision and the .keras round trip.

(Equality with the original's PyTorch modules, weights converted:
tests/test_avl_convert_torch.py.)"""

import math

import keras
import numpy as np
import pytest

from avl import models
from avl.models import AVLConfig, build_model
from vidcore.backbones.resdavenet import ValidFramesMeanPool, resdavenet
from vidcore.errors import UserInputError
from vidcore.layers.embedding import GatedEmbeddingUnit
from vidcore.training import count_trainable_params

TRI = dict(tri_modal=True)
FUSED = dict(tri_modal=True, tri_modal_fuse=True)


def _inputs(cfg, n=2, frames=48, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {"video": rng.normal(size=(n, cfg.feature_dim)).astype("f4"),
              "audio": rng.normal(size=(n, 40, frames)).astype("f4"),
              "nframes": np.full((n,), frames, np.int32)}
    if cfg.tri_modal:
        inputs["text"] = rng.normal(
            size=(n, cfg.max_words, cfg.we_dim)).astype("f4")
    return inputs


def test_published_sizes_parameter_counts_and_outputs():
    """The original's parameters that receive a gradient (its totals less
    the unused BatchNorm2d(1) and, in Text-Fused, GU_audio; see
    tests/test_avl_convert_torch.py), at the published sizes."""
    cases = [
        (AVLConfig(embd_dim=4096), 84_531_200, {"audio", "video"}),
        (AVLConfig(embd_dim=6144, **TRI), 193_353_728,
         {"audio", "video", "text", "audio_video"}),
        (AVLConfig(embd_dim=4096, **FUSED), 114_515_968,
         {"audio_text", "video"}),
    ]
    for cfg, count, keys in cases:
        model = build_model(cfg)
        assert count_trainable_params(model) == count, cfg.variant
        assert count_trainable_params(model.get_layer("DAVEnet")) \
            == 44_670_976
        out = model(_inputs(cfg))
        assert set(out) == keys
        for key, value in out.items():
            assert value.shape == (2, cfg.embd_dim) and \
                value.dtype == "float32", key
        for pair in models.loss_pairs(cfg) + (models.retrieval_pair(cfg),):
            assert set(pair) <= keys
        if cfg.tri_modal and not cfg.tri_modal_fuse:
            np.testing.assert_allclose(
                out["audio_video"], out["audio"] + out["video"], rtol=1e-6)
        del model, out
        keras.backend.clear_session(free_memory=True)


def test_loss_and_retrieval_pairs_follow_the_original():
    assert models.loss_pairs(AVLConfig()) == (("audio", "video"),)
    assert models.loss_pairs(AVLConfig(**TRI)) == (
        ("audio", "video"), ("audio", "text"), ("text", "video"))
    assert models.loss_pairs(AVLConfig(fuse_videoaudio_additive=True,
                                       **TRI)) == (("text", "audio_video"),)
    assert models.loss_pairs(AVLConfig(**FUSED)) == (("audio_text", "video"),)
    assert models.retrieval_pair(AVLConfig()) == ("audio", "video")
    assert models.retrieval_pair(AVLConfig(**TRI)) == ("text", "audio_video")
    assert models.retrieval_pair(AVLConfig(**FUSED)) == ("audio_text",
                                                         "video")


@pytest.mark.parametrize("kwargs, message", [
    (dict(tri_modal_fuse=True), "--tri_modal_fuse=1 needs --tri_modal=1"),
    (dict(fuse_videoaudio_additive=True),
     "--fuse_videoaudio_additive=1 needs --tri_modal=1"),
    (dict(fuse_videoaudio_additive=True, **FUSED),
     "--fuse_videoaudio_additive=1 needs .* --tri_modal_fuse=0"),
    (dict(embd_dim=0), "--embd_dim must be positive, got 0"),
    (dict(embd_dim=1, **FUSED), "--embd_dim >= 2"),
])
def test_bad_configs(kwargs, message):
    with pytest.raises(UserInputError, match=message):
        build_model(AVLConfig(**kwargs))


def test_config_round_trip_and_unknown_keys():
    cfg = AVLConfig(embd_dim=64, **FUSED)
    assert AVLConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.variant == "text_fused"
    with pytest.raises(UserInputError, match="unknown model settings"):
        AVLConfig.from_dict({"embd_dim": 8, "sentence_dimension": 3})


@pytest.mark.parametrize("frames", [16, 37, 50, 100, 1000])
def test_resdavenet_output_length_is_ceil_t_over_16(frames):
    """Four stride-2 stages with PyTorch padding: ceil(T / 2) each time."""
    model = resdavenet(stem_width=4, widths=(4, 8, 8, 16), pooling=False)
    out = model(np.random.default_rng(0).normal(
        size=(2, 40, frames)).astype("f4"))
    steps = frames
    for _ in range(4):
        steps = math.ceil(steps / 2)
    assert tuple(out.shape) == (2, steps, 16)


def test_resdavenet_layers_are_named_as_the_torch_modules():
    model = resdavenet(stem_width=4, widths=(4, 8), blocks=(2, 1))
    names = {layer.name for layer in model.layers if layer.weights}
    assert names == {
        "conv1", "bn1",
        "layer1_0_conv1", "layer1_0_bn1", "layer1_0_conv2", "layer1_0_bn2",
        "layer1_0_downsample_0", "layer1_0_downsample_1",
        "layer1_1_conv1", "layer1_1_bn1", "layer1_1_conv2", "layer1_1_bn2",
        "layer2_0_conv1", "layer2_0_bn1", "layer2_0_conv2", "layer2_0_bn2",
        "layer2_0_downsample_0", "layer2_0_downsample_1"}
    with pytest.raises(ValueError, match="one entry per stage"):
        resdavenet(widths=(4, 8), blocks=(2,))


def _reference_pool(features, nframes, frames, mask):
    """numpy: mean over the first min(T', max(1, n // round(T / T')))
    steps (Python's round: half to even), or over all steps."""
    steps = features.shape[1]
    ratio = round(frames / steps)
    out = []
    for x, n in zip(features, nframes):
        valid = min(steps, max(1, n // ratio)) if mask else steps
        out.append(x[:valid].mean(axis=0))
    return np.stack(out)


@pytest.mark.parametrize("frames, steps", [(50, 4), (100, 7), (64, 4)])
def test_valid_frames_mean_pool_against_numpy(frames, steps):
    rng = np.random.default_rng(frames)
    features = rng.normal(size=(5, steps, 3)).astype("f4")
    nframes = np.array([1, 15, 37, frames, 5 * frames], np.int32)
    spectrogram = np.zeros((5, 40, frames), "f4")
    plain = ValidFramesMeanPool()
    masked = ValidFramesMeanPool(mask_padding_in_training=True)
    valid = _reference_pool(features, nframes, frames, mask=True)
    everything = _reference_pool(features, nframes, frames, mask=False)
    assert np.abs(valid - everything).max() > 0.1  # the cases differ
    for layer, training, want in [(plain, False, valid),
                                  (plain, True, everything),
                                  (masked, False, valid),
                                  (masked, True, valid)]:
        got = layer(features, nframes, spectrogram, training=training)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    config = masked.get_config()
    assert ValidFramesMeanPool.from_config(config).mask_padding_in_training


def test_gated_embedding_unit_without_l2_normalisation():
    x = np.random.default_rng(0).normal(size=(3, 5)).astype("f4") * 4
    plain = GatedEmbeddingUnit(6, l2_normalize=False)
    y = np.asarray(plain(x))
    gate = plain.gate
    z = x @ np.asarray(plain.fc.kernel) + np.asarray(plain.fc.bias)
    want = z / (1 + np.exp(-(z @ np.asarray(gate.gating_weights)
                             + np.asarray(gate.gating_biases))))
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.linalg.norm(y, axis=1), 1.0)
    clone = GatedEmbeddingUnit.from_config(plain.get_config())
    assert clone.l2_normalize is False and clone.normalize is None
    normalised = GatedEmbeddingUnit(6)
    np.testing.assert_allclose(np.linalg.norm(normalised(x), axis=1), 1.0,
                               rtol=1e-5)


def test_mixed_precision_embeddings_are_float32():
    cfg = AVLConfig(embd_dim=8, feature_dim=12, we_dim=6, max_words=4, **TRI)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model(cfg)
        out = model(_inputs(cfg), training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("GU_video").compute_dtype == "float16"
    for key, value in out.items():
        assert value.dtype == "float32", key
        assert np.all(np.isfinite(value)), key


def test_keras_file_round_trip(tmp_path):
    """Every custom layer (ValidFramesMeanPool, FusedGatedUnit, GEU without
    L2) survives a .keras save and load with the same outputs."""
    cfg = AVLConfig(embd_dim=8, feature_dim=12, we_dim=6, max_words=4,
                    **FUSED)
    model = build_model(cfg)
    path = str(tmp_path / "fused.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    inputs = _inputs(cfg)
    inputs["nframes"] = np.array([7, 48], np.int32)
    want, got = model(inputs), loaded(inputs)
    assert set(got) == {"audio_text", "video"}
    for key in want:
        np.testing.assert_array_equal(np.asarray(got[key]),
                                      np.asarray(want[key]))
