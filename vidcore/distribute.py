"""Distribution strategy and mixed-precision set-up shared by every family.

No home-made distribution: these are thin, explicit wrappers over
tf.distribute so that every CLI accepts the same ``--strategy`` and
``--mixed_precision`` values and fails with one clear message otherwise.
"""

import json
import os

import keras
import tensorflow as tf
from absl import logging

from vidcore.errors import UserInputError

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def make_strategy(name="auto", tpu_address=""):
    """Creates the tf.distribute strategy called ``name``.

    Args:
        name: 'auto' (mirrored when more than one GPU is visible, else
            default), 'default' (one device), 'mirrored' (all local GPUs, or
            all local logical devices of one type), 'multi_worker'
            (MultiWorkerMirroredStrategy configured by the TF_CONFIG
            environment variable) or 'tpu'.
        tpu_address: TPU name or grpc address for 'tpu' ('' = local / env).

    Returns:
        A tf.distribute.Strategy.

    Raises:
        ValueError: unknown name, or 'multi_worker' without TF_CONFIG.
    """
    if name not in STRATEGIES:
        raise UserInputError(f"unknown --strategy={name!r}; expected one of "
                         f"{', '.join(STRATEGIES)}")
    if name == "auto":
        name = ("mirrored" if len(tf.config.list_physical_devices("GPU")) > 1
                else "default")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [
            d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise UserInputError("--strategy=multi_worker needs the TF_CONFIG "
                             "environment variable (cluster and task)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def configure_mixed_precision(policy="float32"):
    """Sets the global Keras dtype policy.

    On a machine without GPU, mixed_float16 is hundreds of times slower
    unless Grappler's 'remapping' optimisation is disabled (it fuses float16
    ops into kernels that have no fast CPU implementation); this function
    disables it there and says so. mixed_bfloat16 is the better CPU choice.

    Args:
        policy: 'float32', 'mixed_float16' or 'mixed_bfloat16'.
    """
    if policy not in PRECISIONS:
        raise UserInputError(f"unknown --mixed_precision={policy!r}; expected one"
                         f" of {', '.join(PRECISIONS)}")
    keras.mixed_precision.set_global_policy(policy)
    if policy == "mixed_float16" and not tf.config.list_physical_devices(
            "GPU"):
        tf.config.optimizer.set_experimental_options({"remapping": False})
        logging.warning("mixed_float16 without a GPU: Grappler remapping is "
                        "disabled (otherwise float16 on CPU is extremely "
                        "slow); mixed_bfloat16 is faster on CPUs")


def task_info(strategy):
    """(task_type, task_id) of this process; (None, 0) without a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def num_input_pipelines(strategy):
    """Input pipelines ``distribute_datasets_from_function`` makes: one per
    worker (host) in a cluster, else one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    jobs = resolver.cluster_spec().as_dict()
    return max(1, sum(len(jobs.get(job, [])) for job in ("chief", "worker")))


def is_chief(strategy):
    """True on the process that writes checkpoints, summaries and outputs."""
    task_type, task_id = task_info(strategy)
    if task_type is None or task_type == "chief":
        return True
    if task_type != "worker":
        return False
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    return "chief" not in cluster and task_id == 0


def describe(strategy, per_replica_batch_size):
    """One log line: strategy, replicas, per-replica and global batch."""
    replicas = strategy.num_replicas_in_sync
    return (f"strategy={type(strategy).__name__} replicas={replicas} "
            f"batch={per_replica_batch_size} per replica, "
            f"global batch={per_replica_batch_size * replicas}")
