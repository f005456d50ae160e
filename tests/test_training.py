"""The shared training loop: strategies, clipping, checkpoints, precision."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from vidcore import distribute, losses, training
from vidcore.errors import UserInputError
from yt8m.models import ModelConfig, build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = ModelConfig(model="MoeModel", num_classes=6, feature_sizes=(10,),
                  moe_num_mixtures=2, moe_l2=1e-3, moe_prob_gating=True,
                  bn_momentum=0.9)


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10)).astype("float32")
    y = rng.random((n, 6)) < 0.3
    return x, y


def _dataset_fn(ctx, seed):
    x, y = _data()
    ds = tf.data.Dataset.from_tensor_slices(({"features": x}, y))
    return ds.repeat().batch(ctx.get_per_replica_batch_size(8))


def _trainer(strategy, train_dir, max_steps, per_replica, clip=0.05,
             every=1000, precision_loss_scale=False, optimizer="adam"):
    keras.utils.set_random_seed(1)
    return training.Trainer(
        strategy,
        training.LoopConfig(train_dir=str(train_dir),
                            per_replica_batch_size=per_replica,
                            max_steps=max_steps, checkpoint_every_steps=every,
                            log_every_steps=2, verbose=False),
        build_model=lambda: build_model(CFG),
        build_optimizer=lambda gb: training.make_optimizer(
            optimizer, 0.05, clip_norm=clip, loss_scale=precision_loss_scale),
        per_example_loss=losses.multilabel_cross_entropy,
        dataset_fn=_dataset_fn)


def test_mirrored_two_devices_equals_one_device(tmp_path):
    """Same data, same init: 2 replicas x 4 = 1 device x 8, with clipping
    active (gradients are reduced before they are clipped) and batch norm
    (statistics of the global batch), moving statistics included."""
    # SGD: the update is linear in the gradient, so float rounding in the
    # reductions stays at rounding level (Adam divides by sqrt(v) ~ 0).
    one = _trainer(distribute.make_strategy("default"), tmp_path / "one", 5,
                   per_replica=8, optimizer="sgd")
    mirrored = distribute.make_strategy("mirrored")
    assert mirrored.num_replicas_in_sync == 2
    two = _trainer(mirrored, tmp_path / "two", 5, per_replica=4,
                   optimizer="sgd")
    for a, b in zip(one.model.get_weights(), two.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # The gradient is large enough for clip_norm=0.05 to matter (checked on
    # a copy: a training-mode call updates batch-norm statistics).
    x, y = _data()
    keras.utils.set_random_seed(1)
    probe = build_model(CFG)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(losses.multilabel_cross_entropy(
            y[:8], probe({"features": x[:8]}, training=True)))
    grads = tape.gradient(loss, probe.trainable_variables)
    assert max(float(tf.norm(g)) for g in grads) > 0.1
    assert one.train() == 5 and two.train() == 5
    for a, b in zip(one.model.get_weights(), two.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_clipping_is_per_tensor():
    opt = training.make_optimizer("sgd", 1.0, clip_norm=1.0)
    a = tf.Variable([0.0, 0.0])
    b = tf.Variable([0.0])
    opt.apply([tf.constant([3.0, 4.0]), tf.constant([0.5])], [a, b])
    np.testing.assert_allclose(a.numpy(), [-0.6, -0.8], rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), [-0.5], rtol=1e-6)


def test_clipping_equals_keras_and_squares_no_copy():
    """The per-tensor clip (TF1's tf.clip_by_norm) equals Keras' to float
    rounding, leaves gradients under the norm exactly as they are, and
    takes the norm from L2Loss rather than a squared copy."""
    rng = np.random.default_rng(0)
    ours = training.make_optimizer("tf1_adam", 0.1, clip_norm=1.0)
    keras_adam = keras.optimizers.Adam(0.1, clipnorm=1.0)
    for scale in (0.01, 3.0, 1e4):
        g = tf.constant(rng.normal(size=(37, 11)) * scale, tf.float32)
        want = g.numpy() * 1.0 / max(np.linalg.norm(g.numpy()), 1.0)
        got = ours._clip_by_norm(g).numpy()
        np.testing.assert_allclose(got, keras_adam._clip_by_norm(g),
                                   rtol=2e-7, atol=0)
        np.testing.assert_allclose(got, want, rtol=2e-7, atol=0)
        if scale < 0.1:  # norm under the clip: untouched
            np.testing.assert_array_equal(got, g.numpy())
    np.testing.assert_array_equal(ours._clip_by_norm(tf.zeros([3])), 0.0)
    graph = tf.function(ours._clip_by_norm).get_concrete_function(
        tf.TensorSpec([5, 5], tf.float32)).graph
    ops = {op.type for op in graph.get_operations()}
    assert "L2Loss" in ops and "Square" not in ops


def test_checkpoint_and_resume(tmp_path):
    strategy = distribute.make_strategy("default")
    first = _trainer(strategy, tmp_path, 4, per_replica=8, every=2)
    assert first.train() == 4
    saved = [w.copy() for w in first.model.get_weights()]
    state = training.read_train_state(str(tmp_path))
    assert state["step"] == 4 and state["done"]
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-4")
    assert os.path.exists(str(tmp_path / "ckpt-2.index"))

    second = _trainer(strategy, tmp_path, 7, per_replica=8, every=2)
    assert second.restore() == 4
    for a, b in zip(saved, second.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(second.optimizer.iterations.numpy()) == 4
    assert second.train() == 7
    assert training.read_train_state(str(tmp_path))["step"] == 7
    # Already at max_steps: nothing to do.
    third = _trainer(strategy, tmp_path, 7, per_replica=8, every=2)
    assert third.train() == 7


def test_tensorboard_scalars(tmp_path):
    _trainer(distribute.make_strategy("default"), tmp_path, 4,
             per_replica=8).train()
    events = [f for f in os.listdir(tmp_path) if f.startswith("events")]
    assert events
    tags = set()
    for event in tf.compat.v1.train.summary_iterator(
            str(tmp_path / events[0])):
        tags.update(v.tag for v in event.summary.value)
    assert {"loss/label", "learning_rate", "examples_per_second"} <= tags


def test_staircase_learning_rate():
    schedule = keras.optimizers.schedules.ExponentialDecay(
        2e-4, decay_steps=4_000_000 / 80, decay_rate=0.8, staircase=True)
    for step, expected in [(0, 2e-4), (49_999, 2e-4), (50_000, 1.6e-4),
                           (125_000, 2e-4 * 0.8 ** 2)]:
        np.testing.assert_allclose(float(schedule(step)), expected,
                                   rtol=1e-6)


def test_cross_entropy_formula():
    p = np.array([[0.9, 0.2, 0.0], [0.5, 1.0, 0.1]], np.float32)
    y = np.array([[1, 0, 0], [0, 1, 1]], np.float32)
    eps = 1e-5
    expected = -(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)).sum(1)
    np.testing.assert_allclose(losses.multilabel_cross_entropy(y, p),
                               expected, rtol=1e-6)


def test_mixed_bfloat16_training(tmp_path):
    distribute.configure_mixed_precision("mixed_bfloat16")
    try:
        trainer = _trainer(distribute.make_strategy("default"), tmp_path, 3,
                           per_replica=8)
        assert trainer.train() == 3
        assert trainer.model.trainable_weights[0].dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_mixed_float16_disables_cpu_remapping(tmp_path):
    distribute.configure_mixed_precision("mixed_float16")
    try:
        assert tf.config.optimizer.get_experimental_options()[
            "remapping"] is False
        trainer = _trainer(distribute.make_strategy("default"), tmp_path, 2,
                           per_replica=8, precision_loss_scale=True)
        assert isinstance(trainer.optimizer,
                          keras.optimizers.LossScaleOptimizer)
        assert trainer.train() == 2
    finally:
        keras.mixed_precision.set_global_policy("float32")
        tf.config.optimizer.set_experimental_options({"remapping": True})


def test_strategy_and_precision_errors(monkeypatch):
    with pytest.raises(UserInputError, match="unknown --strategy='gpu'"):
        distribute.make_strategy("gpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserInputError, match="TF_CONFIG"):
        distribute.make_strategy("multi_worker")
    with pytest.raises(UserInputError, match="mixed_precision"):
        distribute.configure_mixed_precision("float8")


def test_chief_detection(monkeypatch):
    class Resolver:
        task_type, task_id = "worker", 1
    strategy = type("S", (), {"cluster_resolver": Resolver()})()
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["a:1", "b:2"]}}))
    assert not distribute.is_chief(strategy)
    Resolver.task_id = 0
    assert distribute.is_chief(strategy)
    assert distribute.is_chief(distribute.make_strategy("default"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_two_processes_end_identical(tmp_path, demo_data):
    """Two local workers under MultiWorkerMirroredStrategy (TF_CONFIG on
    127.0.0.1) train together and end with identical weights."""
    cluster = {"worker": [f"127.0.0.1:{_free_port()}",
                          f"127.0.0.1:{_free_port()}"]}
    train_dir = tmp_path / "run"
    args = [sys.executable, "-m", "yt8m.train", "--strategy=multi_worker",
            f"--train_data_pattern={demo_data}/train*.tfrecord",
            f"--train_dir={train_dir}", "--model=GatedDbofModelLF",
            "--frame_features", "--feature_names=rgb,audio",
            "--feature_sizes=1024,128", "--num_classes=20", "--batch_size=4",
            "--dbof_cluster_size=16", "--dbof_hidden_size=8",
            "--iterations=6", "--max_steps=4", "--checkpoint_every_steps=2",
            "--keep_worker_checkpoints", "--seed=3"]
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": REPO, "TF_CONFIG": json.dumps(
                   {"cluster": cluster,
                    "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(args, env=env, cwd=REPO,
                                      stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    assert "replicas=2" in outputs[0]
    chief = tf.train.load_checkpoint(str(train_dir / "ckpt-4"))
    worker = tf.train.load_checkpoint(
        str(train_dir / ".workers" / "worker_1" / "ckpt-4"))
    # Every tensor: weights, batch-norm statistics, optimizer moments, step.
    names = sorted(chief.get_variable_to_shape_map())
    assert sorted(worker.get_variable_to_shape_map()) == names
    assert len(names) > 30
    for name in names:
        np.testing.assert_array_equal(chief.get_tensor(name),
                                      worker.get_tensor(name), err_msg=name)
    first = tf.train.load_checkpoint(str(train_dir / "ckpt-2"))
    assert any(not np.array_equal(first.get_tensor(n), chief.get_tensor(n))
               for n in names)


def _numpy_adam(w, grads, lr, one_minus_b1, one_minus_b2, eps=1e-8):
    """Adam in float64 with the given "1 - beta" factors:
    m += (g - m)(1 - b1), v += (g^2 - v)(1 - b2)."""
    w, m, v = w.astype(np.float64), np.zeros_like(w, np.float64), 0.0
    for t, g in enumerate(grads, start=1):
        alpha = lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        m = m + (g - m) * one_minus_b1
        v = v + (g * g - v) * one_minus_b2
        w = w - m * alpha / (np.sqrt(v) + eps)
    return w


def _apply_step(opt, var):
    @tf.function
    def step(g):
        opt.apply([g], [var])
    return step


def test_tf1_adam_runs_the_fused_kernel_with_adams_update():
    """TF1Adam (YouTube-8M) runs TF1's ApplyAdam kernel; Adam (the PyTorch
    families) keeps Keras' update. Both equal the float64 formula within
    float32 rounding over 5 steps (their "1 - beta_2" factors, 0.000999987
    and 0.001, part by less than that here), and each other. A sparse
    gradient takes Keras' path."""
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(300,)).astype(np.float32)
    grads = [rng.normal(size=(300,)).astype(np.float32) for _ in range(5)]
    want = _numpy_adam(w0, grads, 0.01, 0.1, 0.001)
    finals = {}
    for name in ("tf1_adam", "adam"):
        var = keras.Variable(w0)
        opt = training.make_optimizer(name, 0.01)
        opt.build([var])
        step = _apply_step(opt, var)
        for g in grads:
            step(tf.constant(g))
        finals[name] = np.asarray(var.numpy())
        np.testing.assert_allclose(finals[name], want, rtol=0, atol=1e-6,
                                   err_msg=name)
        ops = {op.type for op in step.get_concrete_function(
            tf.TensorSpec([300], tf.float32)).graph.get_operations()}
        assert ("ResourceApplyAdam" in ops) == (name == "tf1_adam"), name
    np.testing.assert_allclose(finals["tf1_adam"], finals["adam"], rtol=0,
                               atol=1e-6)
    assert type(training.make_optimizer("tf1_adam", 0.1)) is \
        training.TF1Adam
    var = keras.Variable(np.ones((4, 3), np.float32))
    opt = training.make_optimizer("tf1_adam", 0.1)
    opt.build([var])
    opt.apply([tf.IndexedSlices(tf.ones([1, 3]), tf.constant([2]),
                                tf.constant([4, 3]))], [var])
    moved = np.asarray(var.numpy())
    assert np.allclose(moved[[0, 1, 3]], 1.0) and np.all(moved[2] < 1.0)


def test_tf1_adam_updates_every_replicas_copy(tmp_path):
    """Under MirroredStrategy the fused kernel updates each replica's copy
    of a mirrored variable (inside strategy.extended.update): after
    training the copies are equal, and moved."""
    strategy = distribute.make_strategy("mirrored")
    trainer = _trainer(strategy, tmp_path, 3, per_replica=4,
                       optimizer="tf1_adam")
    start = [v.numpy() for v in trainer.model.trainable_variables]
    assert trainer.train() == 3
    moved = False
    for variable, before in zip(trainer.model.trainable_variables, start):
        copies = [np.asarray(c) for c in strategy.experimental_local_results(
            variable.value)]
        assert len(copies) == 2
        np.testing.assert_array_equal(copies[0], copies[1])
        moved = moved or not np.array_equal(copies[0], before)
    assert moved


def test_adam_epsilon_is_the_published_default():
    """TF1's AdamOptimizer and PyTorch's Adam use 1e-8 (Keras: 1e-7)."""
    from vidcore.training import make_optimizer
    assert make_optimizer("adam", 0.1).epsilon == 1e-8
    assert make_optimizer("adam", 0.1, epsilon=1e-3).epsilon == 1e-3
