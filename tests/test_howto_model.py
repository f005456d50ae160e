"""HowTo100M embedding model and max-margin loss: parameter counts, layer
maths against numpy, loss against the spec's formula, and the cross-replica
loss against one device."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from howto.models import ModelConfig, build_model, encoders
from vidcore import losses
from vidcore.layers.embedding import GatedEmbeddingUnit, SentenceMaxPool
from vidcore.training import count_trainable_params


@pytest.mark.parametrize("embd_dim,expected", [
    (2048, 21_596_160), (4096, 68_358_144), (6144, 140_285_952)])
def test_parameter_counts_equal_spec(embd_dim, expected):
    model = build_model(ModelConfig(embd_dim=embd_dim, feature_dim=4096))
    assert count_trainable_params(model) == expected


def _l2(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_layers_match_numpy():
    rng = np.random.default_rng(0)
    geu = GatedEmbeddingUnit(6)
    x = rng.normal(size=(4, 5)).astype("f4")
    y = geu(x).numpy()
    w, b = geu.fc.kernel.numpy(), geu.fc.bias.numpy()
    gw = geu.gate.gating_weights.numpy()
    gb = geu.gate.gating_biases.numpy()
    h = x @ w + b
    np.testing.assert_allclose(y, _l2(h * _sigmoid(h @ gw + gb)), atol=1e-6)

    pool = SentenceMaxPool(7)
    words = rng.normal(size=(3, 4, 5)).astype("f4")
    words[:, 2:] = 0.0  # zero padding: not masked, as in the original
    out = pool(words).numpy()
    ref = np.maximum(words @ pool.fc.kernel.numpy() + pool.fc.bias.numpy(),
                     0).max(axis=1)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    masked = SentenceMaxPool(7, mask_padding=True)
    masked.build(words.shape)
    masked.fc.set_weights(pool.fc.get_weights())
    ref_masked = np.maximum(words[:, :2] @ pool.fc.kernel.numpy()
                            + pool.fc.bias.numpy(), 0).max(axis=1)
    np.testing.assert_allclose(masked(words).numpy(), ref_masked, atol=1e-6)


def test_model_serialises_and_encoders_share_weights(tmp_path):
    cfg = ModelConfig(embd_dim=8, feature_dim=6, we_dim=5, max_words=4)
    model = build_model(cfg)
    rng = np.random.default_rng(1)
    inputs = {"video": rng.normal(size=(3, 6)).astype("f4"),
              "text": rng.normal(size=(3, 4, 5)).astype("f4")}
    out = model(inputs)
    np.testing.assert_allclose(np.linalg.norm(out["text"], axis=1), 1,
                               rtol=1e-5)
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.models.load_model(path)
    for key in ("text", "video"):
        np.testing.assert_allclose(again(inputs)[key], out[key], atol=1e-6)
    text_enc, video_enc = encoders(model)
    np.testing.assert_allclose(text_enc(inputs["text"]), out["text"],
                               atol=1e-6)
    np.testing.assert_allclose(video_enc(inputs["video"]), out["video"],
                               atol=1e-6)


# --------------------------------------------------------------------------- #
# Loss.
# --------------------------------------------------------------------------- #
def _reference_loss(s, margin, weights=None):
    """The spec: mean(relu(m + S - diag[:,None]) + relu(m + S - diag[None,:]))
    times the weight matrix, elementwise."""
    d = np.diag(s)
    terms = (np.maximum(margin + s - d[:, None], 0)
             + np.maximum(margin + s - d[None, :], 0))
    if weights is not None:
        terms = terms * weights
    return terms.mean()


def _reference_weights(b, p, rate):
    e = 1 - rate
    alpha = e / ((b - 1) * (1 - e))
    w = (1 - alpha) * np.eye(b) + alpha
    return np.kron(w, np.ones((p, p))) * (b * (1 - e))


def test_weight_matrix_matches_kron_formula():
    for b, p, r in ((4, 3, 0.5), (2, 1, 0.3), (5, 2, 0.8)):
        np.testing.assert_allclose(
            losses.negative_weight_matrix(b, p, r).numpy(),
            _reference_weights(b, p, r), rtol=1e-6)
    # Same-video pairs (the positive included) and other-video pairs carry
    # the shares r and 1 - r of the total weight.
    for r in (0.5, 0.3):
        w = _reference_weights(4, 3, r)
        same = np.kron(np.eye(4), np.ones((3, 3))).astype(bool)
        assert np.isclose(w[same].sum() / w.sum(), r)
    with pytest.raises(ValueError):
        losses.negative_weight_values(1, 0.5)


def test_max_margin_matches_reference_and_hand_value():
    s = np.array([[0.9, 0.2], [0.5, 0.4]], "f4")
    # d = [0.9, 0.4]; row terms relu(0.1 + s - d_i): [[.1, 0], [.2, .1]];
    # column terms relu(0.1 + s - d_j): [[.1, 0], [0, .1]]; mean of the sums.
    assert np.isclose(losses.max_margin_ranking_loss(s, 0.1).numpy(),
                      (0.2 + 0.0 + 0.2 + 0.2) / 4)
    rng = np.random.default_rng(2)
    s = rng.normal(size=(12, 12)).astype("f4")
    w = _reference_weights(4, 3, 0.5).astype("f4")
    np.testing.assert_allclose(losses.max_margin_ranking_loss(s, 0.1).numpy(),
                               _reference_loss(s, 0.1), rtol=1e-6)
    np.testing.assert_allclose(
        losses.max_margin_ranking_loss(s, 0.2, w).numpy(),
        _reference_loss(s, 0.2, w), rtol=1e-6)


@pytest.mark.parametrize("weighting", [False, True])
def test_cross_replica_loss_one_device_equals_reference(weighting):
    rng = np.random.default_rng(3)
    b, p = 4, 3
    text = _l2(rng.normal(size=(b * p, 8))).astype("f4")
    video = _l2(rng.normal(size=(b * p, 8))).astype("f4")
    per_video = losses.cross_replica_max_margin(
        text, video, p, margin=0.1, negative_weighting=weighting)
    assert per_video.shape == (b,)
    total = tf.nn.compute_average_loss(per_video, global_batch_size=b)
    w = _reference_weights(b, p, 0.5) if weighting else None
    np.testing.assert_allclose(total.numpy(),
                               _reference_loss(text @ video.T, 0.1, w),
                               rtol=1e-5)


def test_cross_replica_loss_and_gradients_match_one_device():
    """2 replicas x 2 videos == 1 device x 4 videos (negatives are gathered
    from the whole global batch, gradients flow back through the gather)."""
    rng = np.random.default_rng(4)
    b, p, dim = 4, 2, 6
    x_text = rng.normal(size=(b * p, dim)).astype("f4")
    x_video = rng.normal(size=(b * p, dim)).astype("f4")
    w0 = rng.normal(size=(dim, dim)).astype("f4")

    def loss_and_grad(strategy):
        with strategy.scope():
            w = tf.Variable(w0)

        def replica(t, v):
            with tf.GradientTape() as tape:
                te = tf.math.l2_normalize(t @ w, axis=-1)
                ve = tf.math.l2_normalize(v @ w, axis=-1)
                per = losses.cross_replica_max_margin(
                    te, ve, p, negative_weighting=True)
                loss = tf.nn.compute_average_loss(per, global_batch_size=b)
            grad = tape.gradient(loss, w)
            ctx = tf.distribute.get_replica_context()
            return (ctx.all_reduce("sum", loss), ctx.all_reduce("sum", grad))

        n = strategy.num_replicas_in_sync
        per = b * p // n

        def value_fn(ctx):
            i = ctx.replica_id_in_sync_group
            return (x_text[i * per:(i + 1) * per],
                    x_video[i * per:(i + 1) * per])

        t = strategy.experimental_distribute_values_from_function(
            lambda ctx: value_fn(ctx)[0])
        v = strategy.experimental_distribute_values_from_function(
            lambda ctx: value_fn(ctx)[1])
        loss, grad = strategy.run(tf.function(replica), args=(t, v))
        local = strategy.experimental_local_results
        return local(loss)[0].numpy(), local(grad)[0].numpy()

    one_loss, one_grad = loss_and_grad(tf.distribute.get_strategy())
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(cpus) == 2
    two_loss, two_grad = loss_and_grad(tf.distribute.MirroredStrategy(cpus))
    np.testing.assert_allclose(two_loss, one_loss, rtol=1e-5)
    np.testing.assert_allclose(two_grad, one_grad, rtol=1e-4, atol=1e-6)
    te = _l2(x_text @ w0)
    ve = _l2(x_video @ w0)
    np.testing.assert_allclose(
        one_loss, _reference_loss(te @ ve.T, 0.1, _reference_weights(b, p,
                                                                    0.5)),
        rtol=1e-5)
