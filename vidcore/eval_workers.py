"""Evaluation and inference split over the workers of a cluster.

Training under ``--strategy=multi_worker`` keeps every worker in lock-step
(MultiWorkerMirroredStrategy). Evaluation and inference need no collective:
every record is read once, by one worker. So the evaluation CLIs read the
same TF_CONFIG, and

1. each worker takes a contiguous block of the sorted shards
   (:meth:`Workers.shard_files`: deterministic, the first ``n % k`` workers
   take one shard more; a worker may get none when there are fewer shards
   than workers),
2. runs the one-process code on its block, with its local devices,
3. publishes its share (numpy arrays, and text files written beside) under
   a hidden name in a directory every worker can reach (any tf.io.gfile
   filesystem: a shared disk, gs://, s3://, hdfs://),
4. and the chief waits for all shares, concatenates them in worker order
   (which is the shards' order, so the result is what one process gives) and
   writes the outputs; then it removes the shares.

A worker that fails publishes its error instead, and the chief stops with
that worker's message instead of waiting for ever; a share that does not
arrive within ``--worker_timeout_secs`` stops the chief with the names of
the missing workers. Share names carry a key of the run (tool, inputs,
weights), so a share left by an interrupted earlier run of other inputs is
never merged.
"""

import dataclasses
import hashlib
import io
import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import flags, logging

from vidcore import flag_help
from vidcore.errors import UserInputError
from vidcore.files import write_bytes_atomic

POLL_SECS = 1.0
_MEMBER_TYPES = ("chief", "worker")


def define_flags(flag_values=None):
    """Defines ``--worker_timeout_secs`` on ``flag_values`` (once).

    Args:
        flag_values: the CLI's FlagValues (default absl's global FLAGS).
    """
    flag_values = flags.FLAGS if flag_values is None else flag_values
    if "worker_timeout_secs" in flag_values:
        return
    flag_help.flag_topic("distribution", flag_values)
    flags.DEFINE_integer(
        "worker_timeout_secs", 3600,
        "With --strategy=multi_worker: how long the chief waits, after its "
        "own share, for the other workers' shares before it stops with an "
        "error naming the missing workers.", flag_values=flag_values)


@dataclasses.dataclass(frozen=True)
class Workers:
    """This process's place among the evaluation workers.

    Attributes:
        index: 0 for the chief (or the first worker when the cluster has no
            chief), then the workers in TF_CONFIG order.
        count: number of processes sharing the work (1: no cluster).
    """

    index: int = 0
    count: int = 1

    @classmethod
    def from_strategy(cls, strategy_name, tf_config=None):
        """The workers of ``--strategy``: a cluster for 'multi_worker'
        (read from TF_CONFIG), else one process.

        Args:
            strategy_name: the CLI's --strategy value.
            tf_config: TF_CONFIG's JSON text (default: the environment's).

        Raises:
            UserInputError: TF_CONFIG missing or malformed, or this task is
                not one of the cluster's chief/worker tasks.
        """
        if strategy_name != "multi_worker":
            return cls()
        text = os.environ.get("TF_CONFIG") if tf_config is None else tf_config
        if not text:
            raise UserInputError("--strategy=multi_worker needs the TF_CONFIG "
                                 "environment variable (cluster and task)")
        try:
            config = json.loads(text)
            cluster = config["cluster"]
            task = (config["task"]["type"], int(config["task"]["index"]))
        except (ValueError, KeyError, TypeError) as e:
            raise UserInputError(f"TF_CONFIG is not a cluster and task: "
                                 f"{text!r} ({e})") from e
        members = [(kind, i) for kind in _MEMBER_TYPES
                   for i in range(len(cluster.get(kind, [])))]
        if task not in members:
            raise UserInputError(
                f"TF_CONFIG task {task[0]}:{task[1]} is not a chief or "
                f"worker of the cluster {sorted(cluster)}; evaluation runs "
                f"on the chief and workers only")
        return cls(members.index(task), len(members))

    @property
    def is_chief(self):
        """True on the process that merges the shares and writes outputs."""
        return self.index == 0

    @property
    def is_split(self):
        """True when several processes share the work."""
        return self.count > 1

    def local_strategy_name(self, strategy_name):
        """The strategy this process runs its share under: its own devices
        ('auto') instead of a cluster-wide 'multi_worker'."""
        return "auto" if strategy_name == "multi_worker" else strategy_name

    def check_shared_output(self, output, flag_name):
        """Raises when the work is split but there is no output path, whose
        directory (reached by every worker) carries the shares.

        Args:
            output: the output path the CLI will write ("" for none).
            flag_name: the flag that sets it, named in the error.
        """
        if self.is_split and not output:
            raise UserInputError(
                f"--strategy=multi_worker needs {flag_name} (in a directory "
                f"every worker reaches: the workers' shares go there)")

    def shard_files(self, files):
        """This worker's contiguous block of ``files`` (in their order).

        The first ``len(files) % count`` workers take one file more; blocks
        in worker order concatenate back to ``files``.
        """
        files = list(files)
        base, extra = divmod(len(files), self.count)
        start = self.index * base + min(self.index, extra)
        end = start + base + (1 if self.index < extra else 0)
        return files[start:end]

    def announce(self, num_videos, unit="videos"):
        """Prints ``worker I: N videos`` when the work is split."""
        if self.is_split:
            print(f"worker {self.index}: {num_videos} {unit}", flush=True)


def run_key(*parts):
    """A short hash of what defines a run (tool, inputs, weights, options):
    the shares of one run carry it, so those of another are never merged.

    Args:
        parts: JSON-serialisable values; a path of an existing file also
            contributes its size and modification time (a checkpoint
            rewritten in place changes the key).
    """
    described = []
    for part in parts:
        described.append(part)
        if isinstance(part, str) and part and not part.endswith("/"):
            for path in (part, part + ".index"):
                if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
                    stat = tf.io.gfile.stat(path)
                    described.append([path, stat.length, stat.mtime_nsec])
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


class ShareExchange:
    """Hands the workers' shares to the chief through files.

    Args:
        workers: Workers of this process.
        directory: a directory every worker can reach (created if needed).
        name: what is shared, e.g. "eval-step60" (part of the file names).
        key: run_key(...) of the run.
        timeout_secs: how long the chief waits for the other shares.
    """

    def __init__(self, workers, directory, name, key, timeout_secs=3600):
        self.workers = workers
        self.directory = directory
        self.name = name
        self.key = key
        self.timeout_secs = timeout_secs

    def path(self, index, suffix="npz"):
        """The hidden file of worker ``index``'s share (or a text part of
        it, with another suffix)."""
        return os.path.join(
            self.directory, f".{self.name}-{self.key}.worker-{index:05d}-of-"
            f"{self.workers.count:05d}.{suffix}")

    def _failure_path(self, index):
        return self.path(index, "failed")

    def publish(self, arrays):
        """Writes this worker's share (a dict of numpy arrays; scalars
        too) atomically."""
        tf.io.gfile.makedirs(self.directory)
        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
        write_bytes_atomic(self.path(self.workers.index), buffer.getvalue())
        stale = self._failure_path(self.workers.index)
        if tf.io.gfile.exists(stale):  # left by a failed earlier attempt
            tf.io.gfile.remove(stale)

    def publish_failure(self, error):
        """Tells the chief that this worker failed, and why."""
        tf.io.gfile.makedirs(self.directory)
        write_bytes_atomic(self._failure_path(self.workers.index),
                           f"{type(error).__name__}: {error}".encode("utf-8"))

    def gather(self, own_share):
        """Chief: waits for every other worker's share and returns all of
        them in worker order (``own_share`` first), as dicts of numpy
        arrays.

        Raises:
            UserInputError: a worker failed, or shares are still missing
                after ``timeout_secs``.
        """
        pending = set(range(1, self.workers.count))
        shares = {0: own_share}
        deadline = time.monotonic() + self.timeout_secs
        announced = False
        while pending:
            for index in sorted(pending):
                failed = self._failure_path(index)
                if tf.io.gfile.exists(failed):
                    with tf.io.gfile.GFile(failed, "rb") as f:
                        reason = f.read().decode("utf-8", "replace")
                    tf.io.gfile.remove(failed)
                    raise UserInputError(f"worker {index} failed: {reason}")
                path = self.path(index)
                if tf.io.gfile.exists(path):
                    with tf.io.gfile.GFile(path, "rb") as f:
                        with np.load(io.BytesIO(f.read())) as data:
                            shares[index] = {k: data[k] for k in data.files}
                    pending.discard(index)
            if not pending:
                break
            if time.monotonic() > deadline:
                raise UserInputError(
                    f"workers {sorted(pending)} sent no share within "
                    f"{self.timeout_secs} s (--worker_timeout_secs); "
                    f"expected {self.path(min(pending))}")
            if not announced:
                logging.info("waiting for the shares of workers %s in %s",
                             sorted(pending), self.directory)
                announced = True
            time.sleep(POLL_SECS)
        return [shares[i] for i in range(self.workers.count)]

    def remove(self, suffixes=("npz",)):
        """Chief: deletes every worker's share files with these suffixes
        (after merging; the chief has no "npz" share file)."""
        for index in range(self.workers.count):
            for suffix in suffixes:
                path = self.path(index, suffix)
                if tf.io.gfile.exists(path):
                    tf.io.gfile.remove(path)


def share_work(workers, exchange, compute):
    """Runs this worker's share and hands it over.

    Args:
        workers: Workers.
        exchange: ShareExchange (unused when the work is not split).
        compute: () -> dict of numpy arrays, this worker's share.

    Returns:
        (this worker's share, the list of all shares in worker order on the
        chief or None on the other workers); with one process the list is
        just its own share.
    """
    if not workers.is_split:
        share = compute()
        return share, [share]
    try:
        share = compute()
    except BaseException as e:
        exchange.publish_failure(e)
        raise
    if not workers.is_chief:
        exchange.publish(share)
        return share, None
    return share, exchange.gather(share)
