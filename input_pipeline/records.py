"""Shard listing and integrity-checked TFRecord streams (format-agnostic).

Every shard is read through ``TFRecordDataset(...).ignore_errors()`` and the
bytes of the records it yields are added up: a shard whose records do not
account for its whole size was truncated or holds a corrupt record (after
which TFRecord cannot resynchronise). By default that ends the run with an
error naming the shard; with ``skip_corrupt`` the rest of the shard is
skipped, counted and logged. Nothing is dropped silently.
"""

import json
import os
import sys

import numpy as np

import tensorflow as tf
from absl import logging

from vidcore.errors import DataError
from vidcore.files import glob, parent_dir

# A TFRecord frame: uint64 length, uint32 length CRC, data, uint32 data CRC.
RECORD_OVERHEAD_BYTES = 16


def list_files(pattern, flag_name="data pattern"):
    """Sorted files matching a glob (or comma-separated globs).

    Args:
        pattern: glob(s); local paths or any tf.io.gfile filesystem.
        flag_name: how to name the pattern in the error message.

    Raises:
        DataError: when nothing matches.
    """
    files = []
    for part in [p.strip() for p in str(pattern).split(",") if p.strip()]:
        files.extend(glob(part))
    files = sorted(set(files))
    if not files:
        raise DataError(f"no files match {flag_name}={pattern!r}")
    return files


def file_sizes(files):
    """Sizes in bytes (tf.io.gfile, so remote filesystems work too)."""
    return [tf.io.gfile.stat(f).length for f in files]


class CorruptionCounter:
    """Counts what ``skip_corrupt`` streams skipped (host-side variables).

    Attributes:
        skipped_records: records that could not be parsed.
        corrupt_shards: shards whose tail could not be read.
    """

    def __init__(self):
        with tf.init_scope(), tf.device("/cpu:0"):
            self.skipped_records = tf.Variable(0, dtype=tf.int64,
                                               trainable=False)
            self.corrupt_shards = tf.Variable(0, dtype=tf.int64,
                                              trainable=False)

    def result(self):
        return {"skipped_records": int(self.skipped_records.numpy()),
                "corrupt_shards": int(self.corrupt_shards.numpy())}


def _record_name(path, index):
    return tf.strings.join([path, ":record ", tf.strings.as_string(index)])


def checked_records(path, size):
    """Records of one shard as (serialized, name); fails on a bad shard.

    ``name`` is "<path>:record <i>", passed to the parse ops so that a parse
    error names the shard and the record.

    Raises (when iterated):
        tf.errors.InvalidArgumentError naming the shard when its records do
        not account for its ``size`` bytes (truncated or corrupt).
    """
    raw = tf.data.TFRecordDataset(path).ignore_errors().enumerate()
    end = tf.data.Dataset.from_tensors((tf.constant(-1, tf.int64),
                                        tf.constant(b"")))
    stream = raw.concatenate(end)

    def account(consumed, element):
        index, record = element
        is_end = index < 0
        consumed += tf.where(is_end, tf.constant(0, tf.int64),
                             tf.cast(tf.strings.length(record), tf.int64)
                             + RECORD_OVERHEAD_BYTES)
        return consumed, (index, record, consumed)

    def check(index, record, consumed):
        assertion = _assert_shard_complete(path, index >= 0, consumed, size)
        with tf.control_dependencies([assertion]):
            return index >= 0, record, _record_name(path, index)

    stream = stream.scan(tf.constant(0, tf.int64), account).map(check)
    return stream.filter(lambda keep, r, n: keep).map(lambda k, r, n: (r, n))


def size_table(files):
    """Lookup table shard path -> size in bytes (for :func:`checked_records`
    inside tf.data functions)."""
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(files)),
            tf.constant(file_sizes(files), tf.int64)),
        default_value=-1)


def ordered_records(files):
    """(serialized, name) of every record, shard after shard in the given
    order, each shard integrity-checked (:func:`checked_records`)."""
    table = size_table(files)
    return tf.data.Dataset.from_tensor_slices(list(files)).flat_map(
        lambda path: checked_records(path, table.lookup(path)))


def record_seed(seed, name, file_pass):
    """Stateless seed of one record in one pass over its shard: the run's
    seed and a hash of (record name, pass number), so what is drawn for a
    record does not depend on the order in which parallel reads deliver
    records.

    Returns:
        int64 [2].
    """
    key = tf.strings.join([name, "#", tf.strings.as_string(file_pass)])
    digest = tf.strings.to_hash_bucket_fast(key, 2 ** 62)
    return tf.stack([tf.constant(seed, tf.int64), digest])


def describe_record(name, media_id):
    """"<shard>:record <i> (id <media_id>)" for error messages."""
    return tf.strings.join([name, " (id ", media_id, ")"])


def _assert_shard_complete(path, not_at_end, consumed, size):
    """Assert op: at the end of a shard its records account for its size."""
    ok = tf.logical_or(not_at_end, tf.equal(consumed, size))
    return tf.debugging.Assert(
        ok, ["TFRecord shard", path, "is truncated or corrupt: its "
             "readable records end at byte", consumed, "of", size,
             "(re-download or re-write it, or pass "
             "--skip_corrupt_records to skip what cannot be read)"])


def checked_records_blockwise(path, size, block_size=32):
    """:func:`checked_records` with the accounting done per block of records.

    Same elements, order and error as :func:`checked_records`, but the
    shard is read in blocks of ``block_size`` records and the byte
    accounting and record names are computed once per block (vectorised),
    then the block is split into records again. ``checked_records`` runs
    three small functions per record (scan, map, filter): on YouTube-8M
    frame-level videos (~240 KB) that cost about 70 us of CPU per record
    on top of the ~80 us of reading it, against ~15 us here
    (bench/bench_reader.py --profile). The next block is read while the
    current one is consumed, so a deterministic interleave does not wait
    for a whole block at a shard's turn (up to three blocks per shard in
    memory: ~30 MB for full-length YouTube-8M videos).

    Args:
        path: the shard (string tensor).
        size: its size in bytes (int64 tensor).
        block_size: records per accounting step.

    Returns:
        Dataset of (serialized, name) string pairs.
    """
    blocks = tf.data.TFRecordDataset(path).ignore_errors().batch(block_size)
    # An empty block marks the end of the shard; unbatch drops it.
    end = tf.data.Dataset.from_tensors(tf.zeros([0], tf.string))

    def account(state, block):
        consumed, first = state
        count = tf.size(block, out_type=tf.int64)
        consumed += tf.reduce_sum(tf.cast(tf.strings.length(block), tf.int64))
        consumed += RECORD_OVERHEAD_BYTES * count
        assertion = _assert_shard_complete(path, count > 0, consumed, size)
        with tf.control_dependencies([assertion]):
            names = _record_name(path, first + tf.range(count))  # [count]
            return (consumed, first + count), (tf.identity(block), names)

    zero = tf.constant(0, tf.int64)
    stream = blocks.concatenate(end).scan((zero, zero), account)
    return stream.prefetch(1).unbatch()


def skipping_records(path, size, parse_one, counter):
    """Parsed records of one shard, skipping (and counting) what is bad.

    A record that ``parse_one`` fails on is skipped and counted; an
    unreadable tail of the shard (truncation, corrupt record) is skipped and
    the shard counted. Both are reported on stderr with the shard's name.

    Args:
        path, size: the shard and its size in bytes.
        parse_one: (serialized, name) -> structure of tensors with fully
            static shapes (pad variable-length parts).
        counter: CorruptionCounter to update.

    Returns:
        Dataset of parse_one's outputs for the good records.
    """
    raw = tf.data.TFRecordDataset(path).ignore_errors().enumerate()
    spec = tf.data.Dataset.from_tensors(tf.constant(b"")).map(
        lambda r: parse_one(r, tf.constant(""))).element_spec
    dummy = lambda: tf.nest.map_structure(  # noqa: E731
        lambda s: tf.zeros(s.shape, s.dtype), spec)

    def try_parse(index, record):
        attempt = tf.data.Dataset.from_tensors(record).map(
            lambda r: (parse_one(r, _record_name(path, index)),
                       tf.constant(True))).ignore_errors()
        parsed, ok = attempt.reduce((dummy(), tf.constant(False)),
                                    lambda state, x: x)
        nbytes = tf.cast(tf.strings.length(record), tf.int64) + RECORD_OVERHEAD_BYTES
        return index, nbytes, parsed, ok

    end = tf.data.Dataset.from_tensors(
        (tf.constant(-1, tf.int64), tf.constant(0, tf.int64), dummy(),
         tf.constant(False)))
    stream = raw.map(try_parse).concatenate(end)

    def account(state, element):
        consumed, bad = state
        index, nbytes, parsed, ok = element
        consumed += nbytes
        bad += tf.cast(tf.logical_and(index >= 0, tf.logical_not(ok)),
                       tf.int64)
        return (consumed, bad), (index, parsed, ok, consumed, bad)

    def finish(index, parsed, ok, consumed, bad):
        def report():
            corrupt = tf.cast(tf.not_equal(consumed, size), tf.int64)
            with tf.control_dependencies([
                    counter.skipped_records.assign_add(bad),
                    counter.corrupt_shards.assign_add(corrupt)]):
                return tf.cond(bad + corrupt > 0,
                               lambda: _print_skip(path, bad, consumed, size),
                               lambda: tf.constant(True))

        done = tf.cond(index < 0, report, lambda: tf.constant(True))
        with tf.control_dependencies([done]):
            return tf.identity(ok), parsed

    zero = tf.constant(0, tf.int64)
    stream = stream.scan((zero, zero), account).map(finish)
    return stream.filter(lambda ok, p: ok).map(lambda ok, p: p)


def _print_skip(path, bad_records, consumed, size):
    tf.print("WARNING: skipped in", path, ":", bad_records,
             "unparsable record(s); readable bytes", consumed, "of", size,
             output_stream=sys.stderr)
    return tf.constant(True)


def pad_batch(structure, batch_size):
    """Pads every tensor of a (possibly short) batch to ``batch_size`` rows.

    Returns:
        (padded structure, mask) with mask bool [batch_size], True for real
        rows. Static shapes keep every replica's share of the last batch
        equal under MirroredStrategy.
    """
    leaves = tf.nest.flatten(structure)
    n = tf.shape(leaves[0])[0]

    def pad(t):
        paddings = [[0, batch_size - n]] + [[0, 0]] * (t.shape.rank - 1)
        out = tf.pad(t, paddings)
        out.set_shape([batch_size] + t.shape.as_list()[1:])
        return out

    mask = tf.sequence_mask(n, batch_size)
    return tf.nest.map_structure(pad, structure), mask


ID_BYTES = 64


def encode_ids(ids, width=ID_BYTES):
    """string [B] -> uint8 [B, width] (zero-padded), so that ids can travel
    through tf.distribute with numeric tensors (strings cannot live on
    accelerators). Fails, naming the id, if one is longer than ``width``."""
    length = tf.strings.length(ids)
    check = tf.debugging.Assert(
        tf.reduce_all(length <= width),
        [f"video id longer than {width} bytes:",
         tf.boolean_mask(ids, length > width)], summarize=2)
    with tf.control_dependencies([check]):
        return tf.io.decode_raw(ids, tf.uint8, fixed_length=width)


def decode_ids(array):
    """uint8 [B, width] from ``encode_ids`` -> list of python str."""
    array = np.asarray(array, dtype=np.uint8)
    return [bytes(row).rstrip(b"\0").decode("utf-8") for row in array]


def training_file_dataset(files, input_context=None, seed=0, num_epochs=None):
    """Shuffled, repeated dataset of shard paths for one input pipeline.

    With several input pipelines (multi-worker), each takes every k-th shard,
    so workers read disjoint data; that needs at least one shard per worker.

    Args:
        files: list of shard paths.
        input_context: tf.distribute.InputContext or None.
        seed: shuffle seed.
        num_epochs: passes over the shards (None: forever).

    Returns:
        tf.data.Dataset of tf.string paths.

    Raises:
        DataError: fewer shards than input pipelines.
    """
    ds = tf.data.Dataset.from_tensor_slices(list(files))
    if input_context and input_context.num_input_pipelines > 1:
        if len(files) < input_context.num_input_pipelines:
            raise DataError(
                f"{len(files)} shard(s) for "
                f"{input_context.num_input_pipelines} input pipelines: each "
                f"worker needs at least one shard")
        ds = ds.shard(input_context.num_input_pipelines,
                      input_context.input_pipeline_id)
    return ds.shuffle(len(files), seed=seed,
                      reshuffle_each_iteration=True).repeat(num_epochs)


def training_records(files, input_context=None, seed=0, deterministic=False,
                     max_cycle=8):
    """Records of a training pass stream: shards shuffled per pass and split
    between input pipelines (:func:`training_file_dataset`, repeated
    forever), read interleaved, each integrity-checked.

    Args:
        files: shard paths.
        input_context: tf.distribute.InputContext or None.
        seed: shard shuffle seed.
        deterministic: fixed interleave order.
        max_cycle: at most this many shards read at a time.

    Returns:
        Dataset of (serialized, name, file_pass int64): ``file_pass`` counts
        the shards handed to this pipeline so far (with ``name`` it keys
        :func:`record_seed`).
    """
    files = list(files)
    table = size_table(files)
    paths = training_file_dataset(files, input_context, seed)

    def per_file(file_pass, path):
        return checked_records(path, table.lookup(path)).map(
            lambda serialized, name: (serialized, name, file_pass))

    return paths.enumerate().interleave(
        per_file, cycle_length=min(len(files), max_cycle),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def manifest_record_count(files):
    """Total records of the shards according to the converters' manifests
    (``manifest-*.json`` beside them, written by tfrecord_tools), or None
    when a shard is not listed in one."""
    counts = {}
    for directory in {parent_dir(f) for f in files}:
        try:
            manifests = glob(f"{directory}/manifest-*.json")
        except tf.errors.OpError:
            continue
        for manifest in manifests:
            try:
                with tf.io.gfile.GFile(manifest, "r") as fh:
                    data = json.load(fh)
                for shard in data.get("shards", []):
                    counts[f"{directory}/{shard['name']}"] = int(
                        shard["records"])
            except (OSError, ValueError, KeyError, TypeError,
                    tf.errors.OpError):
                continue
    try:
        return sum(counts[f"{parent_dir(f)}/{os.path.basename(f)}"]
                   for f in files)
    except KeyError:
        return None


def shuffle_buffer_size(files, requested, input_context=None):
    """Records in one input pipeline's shuffle buffer: ``requested``, but
    no more than that pipeline reads in one pass over its shards (counted
    by the converters' manifests; ``requested`` when none lists them).

    The training streams repeat before they shuffle, so a buffer larger
    than one pass only fills with copies of the same records from later
    passes: 32 full-size HowTo100M videos (2.5 MB each) in a 1,024-record
    buffer held 2.5 GB of host memory for no gain in randomness.

    Args:
        files: shard paths of the whole stream.
        requested: the buffer asked for (records).
        input_context: tf.distribute.InputContext; pipeline i reads shards
            i, i+k, ... (:func:`training_file_dataset`).
    """
    files = list(files)
    if input_context and input_context.num_input_pipelines > 1:
        files = files[input_context.input_pipeline_id::
                      input_context.num_input_pipelines]
    count = manifest_record_count(files) if files else None
    if count is None or count >= requested:
        return requested
    logging.info("shuffle buffer: %d records (one pass of this input "
                 "pipeline's shards) instead of %d", count, requested)
    return max(count, 1)


def count_records(files):
    """Number of records in the shards, by reading them (prefer
    :func:`manifest_record_count`)."""
    return int(tf.data.TFRecordDataset(list(files)).reduce(
        tf.constant(0, tf.int64), lambda c, _: c + 1))


def steps_per_epoch(files, global_batch, unit="records"):
    """Full global batches in one pass over the shards (the records from
    the converters' manifests, else counted).

    Raises:
        DataError: fewer records than one global batch.
    """
    count = manifest_record_count(files)
    if count is None:
        logging.info("no converter manifest lists these shards: counting "
                     "records (pass --steps_per_epoch to skip this)")
        count = count_records(files)
    if count < global_batch:
        raise DataError(f"{count} training {unit} are fewer than one global "
                        f"batch of {global_batch}; lower --batch_size")
    return count // global_batch
