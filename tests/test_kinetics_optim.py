"""The torchvision recipe's optimisation, checked against PyTorch itself:
warm-up + step-decay schedule, SGD's momentum form, coupled weight decay."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from vidcore import schedules, training

torch = pytest.importorskip("torch")


def _torch_lrs(base, steps, ipe, warmup_epochs, milestones, gamma, decay,
               method):
    """Learning rate at each step as the recipe's schedulers compute it."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base, momentum=0.9)
    main = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=[ipe * (m - warmup_epochs) for m in milestones],
        gamma=gamma)
    if warmup_epochs:
        cls = (torch.optim.lr_scheduler.LinearLR if method == "linear"
               else torch.optim.lr_scheduler.ConstantLR)
        kwargs = ({"start_factor": decay} if method == "linear"
                  else {"factor": decay})
        warm = cls(opt, total_iters=ipe * warmup_epochs, **kwargs)
        sched = torch.optim.lr_scheduler.SequentialLR(
            opt, [warm, main], milestones=[ipe * warmup_epochs])
    else:
        sched = main
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(lrs)


@pytest.mark.parametrize("method,warmup", [("linear", 2), ("constant", 2),
                                           ("linear", 0)])
def test_schedule_equals_torchvision_recipe(method, warmup):
    ipe, milestones = 7, [4, 6, 9]
    expected = _torch_lrs(0.08, 80, ipe, warmup, milestones, 0.1, 0.001,
                          method)
    ours = schedules.WarmupMultiStepDecay(
        0.08, warmup_steps=ipe * warmup, warmup_factor=0.001,
        warmup_method=method, milestones=[ipe * m for m in milestones],
        gamma=0.1)
    got = np.array([float(ours(s)) for s in range(80)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9)


def test_schedule_serialises_and_checks_arguments():
    s = schedules.WarmupMultiStepDecay(0.1, 10, 0.01, "constant", [20], 0.5)
    again = schedules.WarmupMultiStepDecay.from_config(s.get_config())
    assert [float(again(i)) for i in (0, 9, 10, 25)] == pytest.approx(
        [0.001, 0.001, 0.1, 0.05])
    with pytest.raises(ValueError, match="warmup_method"):
        schedules.WarmupMultiStepDecay(0.1, warmup_method="cosine")
    with pytest.raises(ValueError, match="increase"):
        schedules.WarmupMultiStepDecay(0.1, milestones=[5, 3])


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=32).astype(np.int32)
    w = rng.normal(size=(5, 3)).astype(np.float32) * 0.3
    b = rng.normal(size=3).astype(np.float32) * 0.1
    return x, y, w, b


def _torch_weights(steps, batch, lr_fn, momentum, wd):
    x, y, w, b = _data()
    lin = torch.nn.Linear(5, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w.T.copy()))
        lin.bias.copy_(torch.from_numpy(b))
    opt = torch.optim.SGD(lin.parameters(), lr=1.0, momentum=momentum,
                          weight_decay=wd)
    for step in range(steps):
        lo = (step * batch) % 32
        for g in opt.param_groups:
            g["lr"] = lr_fn(step)
        loss = torch.nn.functional.cross_entropy(
            lin(torch.from_numpy(x[lo:lo + batch])),
            torch.from_numpy(y[lo:lo + batch]).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lin.weight.detach().numpy().T, lin.bias.detach().numpy()


@pytest.mark.parametrize("replicas", [1, 2])
def test_trainer_sgd_equals_torch_sgd(tmp_path, replicas):
    """Trainer + torch_sgd + coupled weight decay + the recipe's schedule
    take the same steps as torch.optim.SGD(momentum, weight_decay), also
    with the global batch split over two replicas."""
    x, y, w, b = _data()
    batch, steps = 8, 12
    sched = schedules.WarmupMultiStepDecay(
        0.5, warmup_steps=4, warmup_factor=0.1, milestones=[8], gamma=0.1)
    expected = _torch_weights(steps, batch, lambda s: float(sched(s)), 0.9,
                              1e-2)
    strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
                if replicas == 2 else tf.distribute.get_strategy())

    def build_model():
        inp = keras.Input((5,))
        dense = keras.layers.Dense(3)
        model = keras.Model(inp, dense(inp))
        dense.set_weights([w, b])
        return model

    def dataset_fn(ctx, seed):
        del seed
        ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat()
        ds = ds.batch(batch)  # global batches, in order
        if ctx.num_replicas_in_sync > 1:
            ds = ds.unbatch().batch(ctx.get_per_replica_batch_size(batch))
        return ds

    def per_example_loss(labels, logits):
        return keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True)

    trainer = training.Trainer(
        strategy, training.LoopConfig(
            train_dir=str(tmp_path), per_replica_batch_size=batch // replicas,
            max_steps=steps, verbose=False),
        build_model=build_model,
        build_optimizer=lambda gb: training.make_optimizer(
            "torch_sgd", sched, momentum=0.9),
        per_example_loss=per_example_loss, dataset_fn=dataset_fn,
        weight_decay=1e-2)
    trainer.train()
    got_w, got_b = trainer.model.layers[-1].get_weights()
    np.testing.assert_allclose(got_w, expected[0], rtol=2e-4, atol=2e-6)
    np.testing.assert_allclose(got_b, expected[1], rtol=2e-4, atol=2e-6)


def test_keras_sgd_differs_from_torch_after_a_rate_change():
    """Why torch_sgd exists: Keras' SGD folds the rate into the velocity."""
    var_k = tf.Variable([1.0])
    var_t = tf.Variable([1.0])
    keras_sgd = keras.optimizers.SGD(learning_rate=1.0, momentum=0.9)
    torch_sgd = training.TorchSGD(learning_rate=1.0, momentum=0.9)
    for lr in (1.0, 0.1):
        keras_sgd.learning_rate.assign(lr)
        torch_sgd.learning_rate.assign(lr)
        keras_sgd.apply([tf.constant([1.0])], [var_k])
        torch_sgd.apply([tf.constant([1.0])], [var_t])
    # torch: buf 1 -> 1.9; w = 1 - 1*1 - 0.1*1.9 = -0.19
    # keras: v -1 -> -0.9-0.1 = -1.0; w = 1 - 1 - 1.0 = -1.0
    assert float(var_t[0]) == pytest.approx(-0.19)
    assert float(var_k[0]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        training.TorchSGD(learning_rate=0.1, momentum=0.9, nesterov=True)
