"""Sharded, atomic, resumable TFRecord writing (shared by every family).

Each shard is written to a hidden temporary file in the output directory
(`.<name>.partial`, which no `prefix*` glob matches) and renamed to its final
name only once all of its records are written. A file under a final shard
name is therefore always complete: an error or interrupt deletes the open
temporary file(s) and leaves every shard finished before it in place.

Record -> shard assignment is deterministic:

* contiguous blocks (when `num_records` is known): shard k holds records
  [start_k, start_k + size_k) with sizes differing by at most one, the
  larger shards first. Shards are finished one after another, so a failed
  run keeps its finished shards and `resume=True` skips them next time.
* round-robin (when `num_records` is None, i.e. a stream of unknown length):
  record i goes to shard i % num_shards; all shards are open at once and are
  all finished at the end (nothing to resume).

After a successful close a manifest `manifest-{prefix}.json` lists the shard
names and their record counts. (Its name deliberately does not start with the
prefix, so that a reader pattern such as `train*` never matches it.)
"""

import bisect
import itertools
import os

import tensorflow as tf

from tfrecord_tools import cli
from vidcore.files import write_json_atomic

# `train-00000-of-00004.tfrecord`
DEFAULT_NAME_TEMPLATE = "{prefix}-{index:05d}-of-{num_shards:05d}.tfrecord"
# YouTube-8M's own shard names: `train0000.tfrecord`.
YT8M_NAME_TEMPLATE = "{prefix}{index:04d}.tfrecord"
MANIFEST_TEMPLATE = "manifest-{prefix}.json"
PARTIAL_TEMPLATE = ".{name}.partial"


def shard_sizes(num_records, num_shards):
    """Record counts of contiguous-block sharding.

    Args:
        num_records: total number of records.
        num_shards: number of shards.

    Returns:
        List of `num_shards` ints summing to `num_records`; the first
        `num_records % num_shards` shards hold one record more.
    """
    base, extra = divmod(num_records, num_shards)
    return [base + (1 if k < extra else 0) for k in range(num_shards)]


def shard_names(prefix, num_shards, name_template=DEFAULT_NAME_TEMPLATE):
    """File names of the shards (no directory).

    Args:
        prefix: shard name prefix, e.g. "train".
        num_shards: number of shards.
        name_template: format string using {prefix}, {index}, {num_shards}.

    Returns:
        List of `num_shards` distinct names.

    Raises:
        InputError: the template does not give distinct names.
    """
    try:
        names = [
            name_template.format(prefix=prefix, index=k, num_shards=num_shards)
            for k in range(num_shards)
        ]
    except (KeyError, IndexError, ValueError) as e:
        raise cli.InputError(
            f"shard name template {name_template!r} is invalid ({e}); it may "
            "use {prefix}, {index} and {num_shards}") from None
    if len(set(names)) != len(names):
        raise cli.InputError(
            f"shard name template {name_template!r} gives the same name to "
            f"several of {num_shards} shards; include {{index}}")
    return names


class ShardedWriter:
    """Writes serialized records into atomically finished shards.

    Usage (contiguous blocks, resumable):

        with ShardedWriter(out, "train", 4, num_records=len(items),
                           name_template=YT8M_NAME_TEMPLATE,
                           resume=True) as w:
            for item in items:
                if w.needs_next():
                    w.write(make_record(item).SerializeToString())
                else:
                    w.skip()  # its shard is already complete on disk
        counts = w.counts

    Leaving the `with` block normally closes the writer (finishes shards,
    writes the manifest); leaving it with an exception aborts (removes the
    temporary files of unfinished shards, keeps finished ones, no manifest).
    """

    def __init__(self, output_dir, prefix, num_shards, num_records=None,
                 name_template=DEFAULT_NAME_TEMPLATE, resume=False,
                 compression=None, write_manifest=True):
        """Opens the writer.

        Args:
            output_dir: directory for the shards (created if missing; any path
                `tf.io.gfile` understands).
            prefix: shard name prefix, e.g. "train".
            num_shards: number of shards (>= 1).
            num_records: total number of records when known: selects contiguous
                blocks; None selects round-robin.
            name_template: shard file name format ({prefix}, {index},
                {num_shards}).
            resume: contiguous mode only: keep shards that already exist under
                their final name (assumed to come from an earlier run over
                the same inputs) and skip their records.
            compression: None, "GZIP" or "ZLIB" (TFRecord compression).
            write_manifest: write `manifest-{prefix}.json` on close.

        Raises:
            InputError: invalid arguments.
        """
        if num_shards < 1:
            raise cli.InputError(f"num_shards must be >= 1, got {num_shards}")
        if num_records is not None and num_records < 0:
            raise cli.InputError(
                f"num_records must be >= 0, got {num_records}")
        if resume and num_records is None:
            raise cli.InputError(
                "resume needs num_records (contiguous sharding)")
        self.output_dir = output_dir
        self.prefix = prefix
        self.num_shards = num_shards
        self.num_records = num_records
        self.names = shard_names(prefix, num_shards, name_template)
        self.paths = [os.path.join(output_dir, n) for n in self.names]
        self.manifest_path = os.path.join(
            output_dir, MANIFEST_TEMPLATE.format(prefix=prefix))
        self.counts = [0] * num_shards
        self._options = tf.io.TFRecordOptions(
            compression_type=compression or "")
        self._write_manifest = write_manifest
        self._writers = {}  # shard index -> open tf.io.TFRecordWriter
        self._next = 0  # index of the next record
        self._closed = False
        tf.io.gfile.makedirs(output_dir)
        if num_records is None:
            self._sizes = None
            self._done = [False] * num_shards
        else:
            self._sizes = shard_sizes(num_records, num_shards)
            self._starts = [0] + list(itertools.accumulate(self._sizes))[:-1]
            self._done = [resume and tf.io.gfile.exists(p) for p in self.paths]
            for k, done in enumerate(self._done):
                if done:
                    self.counts[k] = self._sizes[k]

    @property
    def mode(self):
        """Sharding mode: "contiguous" or "round_robin"."""
        return "round_robin" if self._sizes is None else "contiguous"

    @property
    def resumed_shards(self):
        """Names of shards kept from an earlier run (resume)."""
        return [n for n, d in zip(self.names, self._done) if d]

    def shard_of(self, index):
        """Shard index that record `index` goes to."""
        if self._sizes is None:
            return index % self.num_shards
        # Empty shards (sizes 0) come last and start at num_records.
        return max(0, bisect.bisect_right(self._starts, index) - 1)

    def needs_next(self):
        """False when the next record's shard is already complete (resume)."""
        self._check_next()
        return not self._done[self.shard_of(self._next)]

    def skip(self):
        """Advances past the next record without writing it (resume only)."""
        if self.needs_next():
            raise RuntimeError(
                f"record {self._next} belongs to unfinished shard "
                f"{self.names[self.shard_of(self._next)]}; write it")
        self._advance()

    def write(self, serialized):
        """Writes the next record.

        Args:
            serialized: the record's bytes, e.g.
                `example.SerializeToString()`.
        """
        if not self.needs_next():
            raise RuntimeError(
                f"record {self._next} belongs to complete shard "
                f"{self.names[self.shard_of(self._next)]}; skip() it")
        k = self.shard_of(self._next)
        writer = self._writers.get(k)
        if writer is None:
            writer = tf.io.TFRecordWriter(self._partial(k), self._options)
            self._writers[k] = writer
        writer.write(serialized)
        self.counts[k] += 1
        self._advance()

    def close(self):
        """Finishes all shards and writes the manifest.

        Returns:
            Dict shard name -> record count.

        Raises:
            InputError: contiguous mode and fewer records than `num_records`.
        """
        if self._closed:
            return dict(zip(self.names, self.counts))
        if self._sizes is not None and self._next != self.num_records:
            self.abort()
            raise cli.InputError(
                f"{self.prefix}: got {self._next} records, expected "
                f"{self.num_records}; unfinished shards were not written")
        for k in range(self.num_shards):
            if not self._done[k]:
                self._finish(k)
        self._closed = True
        if self._write_manifest:
            self._save_manifest()
        return dict(zip(self.names, self.counts))

    def abort(self):
        """Removes temp files of unfinished shards; finished shards stay."""
        for k, writer in list(self._writers.items()):
            writer.close()
            self._writers.pop(k)
            if tf.io.gfile.exists(self._partial(k)):
                tf.io.gfile.remove(self._partial(k))
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    # -- internals --------------------------------------------------------

    def _partial(self, k):
        return os.path.join(self.output_dir,
                            PARTIAL_TEMPLATE.format(name=self.names[k]))

    def _check_next(self):
        if self._closed:
            raise RuntimeError("ShardedWriter is closed")
        if self._sizes is not None and self._next >= self.num_records:
            raise cli.InputError(
                f"{self.prefix}: more records than the {self.num_records} "
                "announced")

    def _advance(self):
        """Moves to the next record; finishes a contiguous shard when full."""
        k = self.shard_of(self._next)
        self._next += 1
        if (self._sizes is not None and not self._done[k]
            and self._next == self._starts[k] + self._sizes[k]):
            self._finish(k)

    def _finish(self, k):
        """Closes shard k's temp file (empty if no records) and renames it."""
        writer = self._writers.pop(k, None)
        if writer is None:  # no record went to this shard: still write it
            writer = tf.io.TFRecordWriter(self._partial(k), self._options)
        writer.close()
        tf.io.gfile.rename(self._partial(k), self.paths[k], overwrite=True)
        self._done[k] = True

    def _save_manifest(self):
        manifest = {
            "prefix": self.prefix,
            "num_shards": self.num_shards,
            "num_records": sum(self.counts),
            "assignment": self.mode,
            "shards": [{"name": n, "records": c}
                       for n, c in zip(self.names, self.counts)],
        }
        write_json_atomic(self.manifest_path, manifest, indent=1)


def write_sharded(records, output_dir, prefix, num_shards, num_records=None,
                  name_template=DEFAULT_NAME_TEMPLATE, compression=None):
    """Writes an iterable of serialized records into shards.

    Args:
        records: iterable of bytes.
        output_dir: output directory.
        prefix: shard name prefix.
        num_shards: number of shards.
        num_records: len(records) when known (contiguous blocks); None for
            round-robin. If None and `records` has a len(), it is used.
        name_template: shard file name format.
        compression: None, "GZIP" or "ZLIB".

    Returns:
        Dict shard path -> record count.
    """
    if num_records is None and hasattr(records, "__len__"):
        num_records = len(records)
    with ShardedWriter(output_dir, prefix, num_shards, num_records=num_records,
                       name_template=name_template,
                       compression=compression) as writer:
        for record in records:
            writer.write(record)
    return dict(zip(writer.paths, writer.counts))
