"""howto.milnce_model: the published parameter counts, the text branch
against a numpy re-derivation of the release's Sentence_Embedding, the
[B, K, L] candidate folding, the frozen word table, and a .keras round
trip of the whole model."""

import keras
import numpy as np
import pytest

from howto import milnce_model as mm
from vidcore.errors import UserInputError
from vidcore.layers.axes import MergeLeadingAxes, SplitLeadingAxis

SMALL = dict(embedding_dim=16, vocab_size=30, word_dim=8, text_hidden=24)


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.mark.parametrize("space_to_depth, trainable", [
    (False, 11_315_408), (True, 11_336_336)])
def test_published_parameter_counts(space_to_depth, trainable):
    model = mm.build_milnce_model(mm.MilNCEConfig(
        space_to_depth=space_to_depth))
    counts = mm.parameter_counts(model)
    assert counts.trainable == trainable == _count(model.trainable_weights)
    assert counts.trunk == (9_146_000 if space_to_depth else 9_125_072)
    assert counts.video_fc == 524_800
    assert counts.text == 1_665_536
    assert counts.word_table == 19_875_000 == 66_250 * 300
    # The frozen table is the only non-trainable weight besides the
    # batch-norm statistics.
    frozen = [w for w in model.non_trainable_weights
              if "moving" not in w.path]
    assert [tuple(w.shape) for w in frozen] == [(66_250, 300)]


def test_trainable_word_table_counts_as_text():
    model = mm.build_milnce_model(mm.MilNCEConfig(
        train_word_embeddings=True, **SMALL))
    counts = mm.parameter_counts(model)
    table = 30 * 8
    assert counts.word_table == table
    assert counts.text == table + (8 * 24 + 24) + (24 * 16 + 16)


def _numpy_text(ids, table, w1, b1, w2, b2):
    """Sentence_Embedding.forward on ids: embed, relu(fc1), max over ALL
    word slots (padding too), fc2 (Keras kernels [in, out])."""
    out = []
    for row in ids:
        hidden = np.maximum(table[row] @ w1 + b1, 0.0)  # [L, H]
        out.append(hidden.max(axis=0) @ w2 + b2)
    return np.stack(out)


def test_text_module_matches_release_formula_and_folds_candidates():
    cfg = mm.MilNCEConfig(**SMALL)
    model = mm.build_milnce_model(cfg)
    rng = np.random.default_rng(0)
    text_net = model.get_layer("text_module")
    table = rng.normal(size=(30, 8)).astype("f4")
    mm.set_word_embeddings(model, table)
    fc1, fc2 = text_net.get_layer("fc1"), text_net.get_layer("fc2")
    # Biases large enough that a padding slot's relu(b) can win the max.
    fc1.set_weights([rng.normal(size=(8, 24)).astype("f4"),
                     rng.normal(size=24).astype("f4") * 2])
    fc2.set_weights([rng.normal(size=(24, 16)).astype("f4"),
                     rng.normal(size=16).astype("f4")])
    ids = rng.integers(1, 30, size=(3, 2, 6)).astype("i4")
    ids[:, :, 4:] = 0  # padding at the end
    ids[0, 1] = 0  # an empty caption: only padding
    video = rng.uniform(size=(3, 4, 32, 32, 3)).astype("f4")
    out = model({"video": video, "text": ids})
    assert tuple(out["text_embedding"].shape) == (3, 2, 16)
    assert tuple(out["video_embedding"].shape) == (3, 16)
    assert tuple(out["mixed_5c"].shape) == (3, 1024)
    want = _numpy_text(ids.reshape(6, 6), table, *fc1.get_weights(),
                       *fc2.get_weights()).reshape(3, 2, 16)
    np.testing.assert_allclose(np.asarray(out["text_embedding"]), want,
                               rtol=1e-5, atol=1e-5)
    # Padding slots take part in the max (masking them changes the result).
    masked = _numpy_text(ids[1:2, 0, :4], table, *fc1.get_weights(),
                         *fc2.get_weights())
    assert not np.allclose(masked, want[1, 0])
    # The sub-models alone give the same.
    np.testing.assert_allclose(np.asarray(text_net(ids[:, 1])), want[:, 1],
                               rtol=1e-5, atol=1e-5)
    video_out = model.get_layer("s3dg")(video)
    np.testing.assert_allclose(np.asarray(video_out["video_embedding"]),
                               np.asarray(out["video_embedding"]), atol=1e-6)


def test_axis_layers_fold_and_unfold():
    x = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype("f4")
    merged = MergeLeadingAxes()(x)
    np.testing.assert_array_equal(np.asarray(merged), x.reshape(6, 4))
    back = SplitLeadingAxis()(merged * 2, x)
    np.testing.assert_array_equal(np.asarray(back), x * 2)
    assert MergeLeadingAxes().compute_output_shape((2, 3, 4)) == (6, 4)
    assert SplitLeadingAxis().compute_output_shape(
        (6, 5), (2, 3, 4)) == (2, 3, 5)


def test_word_table_is_frozen_by_default_and_checked():
    model = mm.build_milnce_model(mm.MilNCEConfig(**SMALL))
    assert not model.get_layer("text_module").get_layer(
        "word_embd").trainable
    assert all("word_embd" not in w.path for w in model.trainable_weights)
    with pytest.raises(UserInputError, match=r"\(29, 8\).*\(30, 8\)"):
        mm.set_word_embeddings(model, np.zeros((29, 8)))


@pytest.mark.parametrize("field, value", [
    ("embedding_dim", 0), ("vocab_size", 1), ("word_dim", 2.5),
    ("text_hidden", True)])
def test_config_rejects_bad_sizes(field, value):
    with pytest.raises(UserInputError, match=field):
        mm.MilNCEConfig(**{field: value})
    with pytest.raises(UserInputError, match="unknown"):
        mm.MilNCEConfig.from_dict({"embedding": 3})
    assert mm.MilNCEConfig.from_dict(
        mm.MilNCEConfig(**SMALL).to_dict()) == mm.MilNCEConfig(**SMALL)


@pytest.mark.parametrize("space_to_depth", [False, True])
def test_keras_round_trip(tmp_path, space_to_depth):
    model = mm.build_milnce_model(mm.MilNCEConfig(
        space_to_depth=space_to_depth, **SMALL))
    rng = np.random.default_rng(1)
    inputs = {"video": rng.uniform(size=(2, 4, 32, 32, 3)).astype("f4"),
              "text": rng.integers(0, 30, size=(2, 3, 5)).astype("i4")}
    want = model(inputs)
    path = str(tmp_path / "milnce.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    got = loaded(inputs)
    for key in ("video_embedding", "mixed_5c", "text_embedding"):
        np.testing.assert_array_equal(np.asarray(got[key]),
                                      np.asarray(want[key]))
    assert not loaded.get_layer("text_module").get_layer(
        "word_embd").trainable
    assert mm.parameter_counts(loaded) == mm.parameter_counts(model)
