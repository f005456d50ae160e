"""Runs a per-replica function over a dataset and brings the results home.

Used by evaluation and inference of every family: the dataset yields global
batches padded to a fixed size (see input_pipeline.records.pad_batch), the
strategy splits each one evenly over its replicas, and the per-replica
outputs come back as numpy arrays concatenated in replica order, which is
the order of the rows in the batch. So every record is processed exactly
once and in order, with one device or many.
"""

import numpy as np
import tensorflow as tf


def run_batches(strategy, dataset, replica_fn, sum_keys=()):
    """Yields one dict of numpy arrays per batch of ``dataset``.

    Args:
        strategy: tf.distribute.Strategy (the default one for one device).
        dataset: tf.data.Dataset of global batches whose size is a multiple
            of ``strategy.num_replicas_in_sync``.
        replica_fn: (*element) -> dict of tensors, run on each replica.
            Row-wise outputs have the batch as first axis.
        sum_keys: outputs that are per-replica totals (e.g. column sums):
            they are added up across replicas instead of concatenated.

    Yields:
        dict of numpy arrays.
    """
    distributed = strategy.experimental_distribute_dataset(dataset)

    @tf.function
    def step(element):
        return strategy.run(replica_fn, args=tuple(element))

    for element in distributed:
        local = strategy.experimental_local_results(step(element))
        out = {}
        for key in local[0]:
            parts = [np.asarray(r[key]) for r in local]
            out[key] = (np.sum(parts, axis=0) if key in sum_keys
                        else np.concatenate(parts, axis=0))
        yield out
