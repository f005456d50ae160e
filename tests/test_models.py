"""YouTube-8M model builders: parameter counts of the spec, every model runs,
serialisation round trips, configuration errors."""

import dataclasses

import keras
import numpy as np
import pytest

from vidcore.errors import UserInputError
from yt8m.models import (FRAME_LEVEL_MODELS, VIDEO_LEVEL_MODELS, ModelConfig,
                         build_model, count_trainable_params)

PUBLISHED = {
    "gated_netvlad": dict(model="NetVLADModelLF", netvlad_cluster_size=256,
                          netvlad_hidden_size=1024, iterations=300,
                          netvlad_relu=False, gating=True,
                          moe_prob_gating=True),
    "gated_netrvlad": dict(model="NetVLADModelLF", netvlad_cluster_size=256,
                           netvlad_hidden_size=1024, iterations=300,
                           netvlad_relu=False, gating=True,
                           moe_prob_gating=True, lightvlad=True),
    "gated_netfv": dict(model="NetFVModelLF", fv_cluster_size=128,
                        fv_hidden_size=1024, iterations=300, fv_relu=False,
                        gating=True, moe_prob_gating=True,
                        fv_couple_weights=False),
    "gated_dbof": dict(model="GatedDbofModelLF", dbof_cluster_size=4096,
                       dbof_hidden_size=1024, iterations=300,
                       dbof_relu=False),
    "soft_dbof": dict(model="SoftDbofModelLF", dbof_cluster_size=8000,
                      dbof_hidden_size=1024, iterations=300, dbof_relu=False),
    "gru": dict(model="GruModel", gru_cells=1200),
    "lstm": dict(model="LstmModel", iterations=150,
                 lstm_random_sequence=True),
}
# The YouTube-8M spec's table of trainable parameter counts (V=4716, V=3862).
EXPECTED = {
    "gated_netvlad": (333_229_888, 321_528_380),
    "gated_netrvlad": (332_951_360, 321_249_852),
    "gated_netfv": (333_090_240, 321_388_732),
    "gated_dbof": (41_543_128, 37_168_940),
    "soft_dbof": (41_712_680, 37_338_492),
    "gru": (73_715_832, 63_466_124),
    "lstm": (113_902_808, 96_411_180),
}
FRAME = dict(frame_features=True, feature_sizes=(1024, 128), moe_l2=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_counts(name):
    for classes, expected in zip((4716, 3862), EXPECTED[name]):
        model = build_model(ModelConfig(num_classes=classes, **FRAME,
                                        **PUBLISHED[name]))
        assert count_trainable_params(model) == expected
        del model
        keras.backend.clear_session()


SMALL = dict(num_classes=7, feature_sizes=(12, 4), max_frames=9, iterations=5,
             netvlad_cluster_size=4, netvlad_hidden_size=6, fv_cluster_size=4,
             fv_hidden_size=6, dbof_cluster_size=16, dbof_hidden_size=6,
             gru_cells=5, lstm_cells=5, gating=True, moe_prob_gating=True)


def small_config(model, **extra):
    values = {**SMALL, "frame_features": model in FRAME_LEVEL_MODELS, **extra}
    return ModelConfig(model=model, **values)


def small_inputs(cfg, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    if cfg.frame_features:
        return {"frames": rng.integers(0, 256, (batch, cfg.max_frames, 16))
                .astype("uint8"),
                "num_frames": np.array([1, 5, cfg.max_frames][:batch],
                                       "int32")}
    return {"features": rng.normal(size=(batch, 16)).astype("float32")}


ALL_MODELS = list(FRAME_LEVEL_MODELS) + list(VIDEO_LEVEL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_predicts_probabilities(name):
    cfg = small_config(name)
    model = build_model(cfg)
    x = small_inputs(cfg)
    for training in (True, False):
        p = np.asarray(model(x, training=training))
        assert p.shape == (3, 7) and p.dtype == np.float32
        assert np.all((p >= 0) & (p <= 1))
    # Evaluation is deterministic (evenly spaced frames, moving statistics).
    np.testing.assert_array_equal(model(x, training=False),
                                  model(x, training=False))


def test_padding_frames_do_not_change_predictions():
    cfg = small_config("FrameLevelLogisticModel")
    model = build_model(cfg)
    x = small_inputs(cfg)
    y = dict(x, frames=x["frames"].copy())
    y["frames"][0, 1:] = 255  # beyond num_frames=1: padding
    np.testing.assert_allclose(model(x), model(y), rtol=1e-6)


@pytest.mark.parametrize("name", ["NetVLADModelLF", "GatedDbofModelLF",
                                  "LstmModel", "MoeModel"])
def test_keras_file_round_trip(name, tmp_path):
    cfg = small_config(name)
    model = build_model(cfg)
    x = small_inputs(cfg)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x, training=False),
                               model(x, training=False), rtol=1e-5, atol=1e-6)


def test_lstm_outputs():
    full = build_model(small_config("LstmModel"))
    last = build_model(small_config("LstmModel", lstm_output="last_h"))
    assert full.get_layer("classifier").input.shape[-1] == 4 * 5
    assert last.get_layer("classifier").input.shape[-1] == 5


def test_gru_matches_tf1_cell_layout():
    model = build_model(small_config("GruModel"))
    gru = model.get_layer("gru_0")
    bias = gru.cell.bias.numpy()
    # 3H biases (reset_after=False), gates start at 1, candidate at 0.
    np.testing.assert_array_equal(bias, [1.0] * 10 + [0.0] * 5)


def test_config_round_trip_and_errors():
    cfg = small_config("NetFVModelLF")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(UserInputError, match="unknown --model='Nope'"):
        build_model(dataclasses.replace(cfg, model="Nope"))
    with pytest.raises(UserInputError, match="frame-level model"):
        build_model(dataclasses.replace(cfg, frame_features=False))
    with pytest.raises(UserInputError, match="video-level model"):
        build_model(small_config("MoeModel", frame_features=True))
    with pytest.raises(ValueError, match="unknown model settings"):
        ModelConfig.from_dict({"model": "MoeModel", "bogus": 1})


def test_mixed_bfloat16_model():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        cfg = small_config("NetVLADModelLF")
        out = build_model(cfg)(small_inputs(cfg), training=True)
        assert out.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
