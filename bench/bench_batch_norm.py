"""Batch-norm training step: vidcore BatchNorm against Keras'.

One training-mode forward + backward (gradients of sum(w * BN(x)) for x,
gamma and beta, moving statistics updated) inside a tf.function, per layer:

- keras: keras.layers.BatchNormalization(synchronized=False)
- keras sync: keras.layers.BatchNormalization(synchronized=True)
  (E[x^2] - E[x]^2, three all-reduces)
- vidcore sync: vidcore.layers.normalization.batch_norm() (the default)
- vidcore local: batch_norm(synchronized=False)

on one device, and with --replicas=2 under MirroredStrategy over two
logical CPU devices (same global batch). Each cell is the best of --rounds
rounds of --steps steps, all layers timed in the same process, interleaved
round by round, so machine load hits them alike: wall time, and the
process's CPU time (all threads), which a loaded machine disturbs less.

    python bench/bench_batch_norm.py [--replicas=2]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SHAPES = {  # name -> global input shape
    "video [8,8,28,28,64]": (8, 8, 28, 28, 64),
    "video [8,4,14,14,256]": (8, 4, 14, 14, 256),
    "frames [1024,1024]": (1024, 1024),
}


def _layers():
    import keras

    from vidcore.layers.normalization import batch_norm
    return {
        "keras": lambda: keras.layers.BatchNormalization(),
        "keras sync": lambda: keras.layers.BatchNormalization(
            synchronized=True),
        "vidcore sync": lambda: batch_norm(),
        "vidcore local": lambda: batch_norm(synchronized=False),
    }


def _step_fn(strategy, layer):
    def replica_step(x, w):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(w * layer(x, training=True))
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        return tf.reduce_sum(grads[0]) + tf.reduce_sum(grads[1])

    @tf.function
    def step(x, w):
        return strategy.run(replica_step, args=(x, w))
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * args.replicas)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = (tf.distribute.MirroredStrategy(devices)
                if args.replicas > 1 else tf.distribute.get_strategy())
    rng = np.random.default_rng(0)
    print(f"replicas: {args.replicas}; best of {args.rounds} rounds x "
          f"{args.steps} steps; ms per training step (forward + backward)")
    print(f"{'input, time':30s}" + "".join(f"{n:>15s}" for n in _layers()))
    for shape_name, shape in SHAPES.items():
        per_replica = (shape[0] // args.replicas, *shape[1:])
        x = rng.normal(size=per_replica).astype(np.float32)
        w = rng.normal(size=per_replica).astype(np.float32)
        steps = {}
        for name, make in _layers().items():
            with strategy.scope():
                layer = make()
                layer.build((None, *shape[1:]))
            steps[name] = _step_fn(strategy, layer)
            steps[name](x, w)  # trace and warm up
        wall = dict.fromkeys(steps, float("inf"))
        cpu = dict.fromkeys(steps, float("inf"))
        for _ in range(args.rounds):
            for name, step in steps.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                for _ in range(args.steps):
                    out = step(x, w)
                strategy.experimental_local_results(out)[0].numpy()
                wall[name] = min(wall[name],
                                 (time.perf_counter() - start) / args.steps)
                cpu[name] = min(cpu[name], (time.process_time() - start_cpu)
                                / args.steps)
        for label, best in (("wall", wall), ("cpu", cpu)):
            print(f"{shape_name + ' ' + label:30s}"
                  + "".join(f"{best[n] * 1e3:15.2f}" for n in steps))
    with open("/proc/loadavg") as f:
        print("loadavg:", f.read().strip())


if __name__ == "__main__":
    main()
