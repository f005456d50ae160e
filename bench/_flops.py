"""Model FLOPs and dense-matmul peak, shared by the training benchmarks.

A benchmark reports a model's FLOP/s as a fraction of the dense matmul
FLOP/s measured in the same run (same device, same precision), so the
fraction stays meaningful on a loaded CPU as on a GPU.

Model FLOPs are counted by TensorFlow's graph profiler on the forward pass
(a matmul counts 2*m*n*k); the profiler counts the body of a while loop once,
so recurrent layers are counted on a copy of the model with the loop
unrolled. A training step is taken as 3x the forward pass (forward + two
backward matmuls per forward matmul): TRAIN_TO_FORWARD.
"""

import time

TRAIN_TO_FORWARD = 3


def forward_flops(model, inputs):
    """Float ops of one forward pass of ``model`` on ``inputs`` (training
    mode; traced only, nothing runs).

    Args:
        model: a keras.Model.
        inputs: its input structure (tensors or arrays with static shapes).

    Returns:
        The graph profiler's total float ops (int).
    """
    import keras
    import tensorflow as tf

    def unrolled(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.RNN):
            config["unroll"] = True
        return layer.__class__.from_config(config)

    if any(isinstance(l, keras.layers.RNN) for l in model.layers):
        model = keras.models.clone_model(model, clone_function=unrolled)
    spec = tf.nest.map_structure(
        lambda x: tf.TensorSpec(x.shape, x.dtype), inputs)
    graph = tf.function(lambda x: model(x, training=True)).get_concrete_function(
        spec).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    info = tf.compat.v1.profiler.profile(graph, options=opts)
    return int(info.total_float_ops)


def forward_flops_per_example(model, inputs):
    """Float ops of one forward pass / the batch size (first input's axis 0).

    Args:
        model: a keras.Model.
        inputs: its input structure (tensors with static shapes).
    """
    import tensorflow as tf
    batch = next(iter(tf.nest.flatten(inputs))).shape[0]
    return forward_flops(model, inputs) / batch


def matmul_peak(n=2048, dtype="float32", chain=1, repeats=10,
                strategy=None):
    """Dense matmul FLOP/s: best of ``repeats`` calls, each a chain of
    ``chain`` dependent n x n x n products (``x <- x @ b``, so none can be
    merged or skipped).

    Args:
        n: matrix size (large enough to saturate the device).
        dtype: the inputs' dtype ('float32', 'float16', 'bfloat16'); float32
            matmuls use TensorFloat-32 where TensorFlow enables it (Ampere
            and later GPUs, the default).
        chain: products per call (amortises the call and the host sync on
            fast devices).
        repeats: timed calls (after one warm-up call).
        strategy: run the chain on every replica of this tf.distribute
            strategy at once and count all of them; None: the default
            device.

    Returns:
        FLOP/s (float), summed over replicas.
    """
    import tensorflow as tf

    def operands(_=None):
        # b / sqrt(n) keeps the rows' norms about constant along the chain.
        a = tf.cast(tf.random.normal([n, n]), dtype)
        b = tf.cast(tf.random.normal([n, n]) / n ** 0.5, dtype)
        return a, b

    def products(a, b):
        x = a
        for _ in range(chain):
            x = tf.matmul(x, b)  # [n, n]
        return tf.reduce_sum(tf.cast(x[:1], tf.float32))

    if strategy is None:
        a, b = operands()
        run = tf.function(lambda: products(a, b))
        replicas = 1
    else:
        a = strategy.experimental_distribute_values_from_function(
            lambda ctx: operands()[0])
        b = strategy.experimental_distribute_values_from_function(
            lambda ctx: operands()[1])
        run = tf.function(lambda: strategy.reduce(
            "SUM", strategy.run(products, args=(a, b)), axis=None))
        replicas = strategy.num_replicas_in_sync
    run()
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        run().numpy()
        best = max(best, replicas * chain * 2 * n ** 3
                   / (time.perf_counter() - start))
    return best
