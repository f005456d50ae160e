"""One conversion mechanism for every family: items -> sharded TFRecords.

A converter supplies a list of picklable *items* (dicts, tuples, ...) and a
pure, picklable, top-level function `convert(item) -> list of serialized
records` (use `functools.partial` to bind settings). `convert` raises
`Reject(reason)` for an item that cannot be converted (missing file, wrong
size, ...): the item is recorded in the rejects file and the run goes on. Any
other exception is a bug or a systemic problem (disk full, permission): the
run stops, keeps the shards finished so far and raises one `ConversionError`
that names the item.

Items are assigned to shards in contiguous blocks (`sharded_writer.
shard_sizes`); a shard is the unit of work. Converting shard k converts its
items in order and writes their records through `sharded_writer.
ShardedWriter` (hidden temporary file, renamed when complete), then writes a
small hidden completion record `.{shard name}.done.json` (record count,
rejects, a fingerprint of the shard's item ids and the conversion options).
A shard whose final file and matching completion record both exist is
skipped, so a run that was interrupted (Ctrl-C, crash, killed worker) redoes
only the unfinished shards when run again with the same arguments.

Two runners execute the same shard function, so their shards are
byte-identical:

* `local` (default): in-process for `num_workers=1`, else a process pool
  (`concurrent.futures.ProcessPoolExecutor` over a "spawn" multiprocessing
  context: TensorFlow and fork() do not mix, and unlike `multiprocessing.
  Pool` the executor notices a worker that was killed instead of waiting
  for it forever); a progress bar counts items.
* `beam`: an Apache Beam pipeline (`pip install 'vidmodels[beam]'`):
  `ReadFromText(plan) -> Reshuffle -> Map(convert shard) -> collect`, on
  the DirectRunner unless `beam_runner` / `beam_options` say otherwise
  (e.g. `beam_options="--direct_num_workers=2"` or Dataflow options). The
  driver first writes the plan, one line per pending shard (its index,
  name, items and fingerprint, pickled and base64-encoded), to the hidden
  file `.{prefix}.beam-plan.txt` in the output directory; the pipeline
  reads it, so its submitted graph has the same size whatever the number
  of items (a `Create` of the jobs embedded all items in the graph, and
  Dataflow refuses graphs over about 10 MB). What every shard shares
  (`convert`, `item_id`, output directory, prefix, compression) is one
  argument of the Convert step. The output directory must be reachable
  from every Beam worker (e.g. a gs:// path on Dataflow); the plan and
  results files are removed when the pipeline has finished.

After all shards, `manifest-{prefix}.json` (shard names, record counts, the
conversion options) and `rejects-{prefix}.jsonl` (one JSON object per
rejected item: `item`, `reason`) are written atomically, also when nothing
was rejected, so that nothing is dropped silently. A conversion that ends
with no record at all (every item rejected) is an error, not a result: it
writes the rejects file, removes the empty shards and their completion
records, writes no manifest, and raises a `ConversionError` naming the
rejects file (the CLIs exit with status 1).

Library use:

    result = conversion.convert_items(
        items, functools.partial(convert_video, settings=settings),
        output_dir, "train", num_shards=64, num_workers=8,
        options={"feature_rate_3d": 1.5})
    print(result.summary())

`convert` and `item_id` must be picklable (module-level functions, not
lambdas or closures) because pool and Beam workers receive them pickled.
"""

import base64
import concurrent.futures
import dataclasses
import hashlib
import itertools
import json
import multiprocessing
import os
import pickle
import shlex
import signal
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence

from absl import flags
import tensorflow as tf
from tqdm import tqdm

from tfrecord_tools import cli
from tfrecord_tools import sharded_writer
from vidcore import cli as core_cli
from vidcore import progress as core_progress
from vidcore.files import (write_json_atomic, write_lines_atomic,
                           write_text_atomic)

RUNNERS = ("local", "beam")
DONE_TEMPLATE = ".{name}.done.json"
REJECTS_TEMPLATE = "rejects-{prefix}.jsonl"
_BEAM_RESULTS_TEMPLATE = ".{prefix}.beam-results.json"
_BEAM_PLAN_TEMPLATE = ".{prefix}.beam-plan.txt"
_BEAM_EXTRA_HINT = "pip install 'vidmodels[beam]'"


class Reject(Exception):
    """Raised by a `convert` function for an item it cannot convert.

    The item is listed in the rejects file with `str(reject)` as reason and
    the conversion goes on with the next item.
    """

    def __init__(self, reason):
        """Args: reason: one line saying what is wrong and where."""
        super().__init__(reason)
        self.reason = reason

    def __reduce__(self):  # picklable with its one argument
        return (type(self), (self.reason,))


class ConversionError(cli.ToolError):
    """An item or shard failed with an error other than `Reject`.

    Shards finished before it are kept; running the same conversion again
    resumes. `worker_traceback` holds the failing worker's traceback text
    (also chained as the exception's cause).
    """

    def __init__(self, message, worker_traceback=None):
        super().__init__(message)
        self.worker_traceback = worker_traceback


class _WorkerTraceback(Exception):
    """Carries a worker's formatted traceback as an exception cause."""


# -- items and shard jobs -------------------------------------------------


def default_item_id(item):
    """Id of an item: `item["id"]` for dicts, `item[0]` for tuples/lists.

    Args:
        item: a dict with an "id" key, a tuple/list whose first element is
            the id, or anything else (its str()).

    Returns:
        The id as str.
    """
    if isinstance(item, dict) and "id" in item:
        return str(item["id"])
    if isinstance(item, (tuple, list)) and item:
        return str(item[0])
    return str(item)


@dataclasses.dataclass
class ShardJob:
    """Everything a worker needs to convert and write one shard.

    Attributes:
        index: shard index.
        name: shard file name (no directory).
        output_dir: output directory.
        prefix: shard name prefix (for messages).
        items: this shard's items, in order.
        convert: `convert(item) -> list of bytes`.
        item_id: `item_id(item) -> str`.
        fingerprint: hash of the shard's item ids and the options; a
            completion record with another fingerprint does not count.
        compression: None, "GZIP" or "ZLIB".
    """

    index: int
    name: str
    output_dir: str
    prefix: str
    items: List[Any]
    convert: Callable[[Any], Sequence[bytes]]
    item_id: Callable[[Any], str]
    fingerprint: str
    compression: Optional[str] = None

    @property
    def path(self):
        return os.path.join(self.output_dir, self.name)

    @property
    def done_path(self):
        return os.path.join(self.output_dir,
                            DONE_TEMPLATE.format(name=self.name))


def _fingerprint(ids, options, num_shards):
    """Hex digest identifying one shard's inputs."""
    text = json.dumps({"ids": list(ids), "options": options,
                       "num_shards": num_shards}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def plan_shards(items, convert, output_dir, prefix, num_shards,
                item_id=default_item_id, options=None,
                name_template=sharded_writer.DEFAULT_NAME_TEMPLATE,
                compression=None):
    """Splits items into contiguous shard jobs.

    Args:
        items: list of picklable items.
        convert: picklable `convert(item) -> list of serialized records`.
        output_dir: output directory.
        prefix: shard name prefix.
        num_shards: number of shards (>= 1).
        item_id: picklable `item_id(item) -> str`.
        options: JSON-serialisable dict of the settings that change the
            output (part of each shard's fingerprint).
        name_template: shard file name format.
        compression: None, "GZIP" or "ZLIB".

    Returns:
        List of `num_shards` ShardJob.

    Raises:
        InputError: num_shards < 1 or a bad name template.
    """
    if num_shards < 1:
        raise cli.InputError(f"--num_shards must be >= 1, got {num_shards}")
    items = list(items)
    names = sharded_writer.shard_names(prefix, num_shards, name_template)
    sizes = sharded_writer.shard_sizes(len(items), num_shards)
    starts = [0] + list(itertools.accumulate(sizes))
    jobs = []
    for k, name in enumerate(names):
        shard_items = items[starts[k]:starts[k + 1]]
        fingerprint = _fingerprint(
            [item_id(i) for i in shard_items], options or {}, num_shards)
        jobs.append(ShardJob(k, name, output_dir, prefix, shard_items,
                             convert, item_id, fingerprint, compression))
    return jobs


# -- one shard -------------------------------------------------------------


class _ItemFailed(Exception):
    """Internal: a non-Reject exception while converting or writing."""

    def __init__(self, item, error):
        super().__init__(item)
        self.item = item
        self.error = error
        self.traceback = traceback.format_exc()


def _literal_template(name):
    """A ShardedWriter name template that formats to exactly `name`."""
    return name.replace("{", "{{").replace("}", "}}")


def _write_shard(job, progress):
    """Converts job.items into job's shard file; returns the rejects list."""
    rejects = []
    writer = sharded_writer.ShardedWriter(
        job.output_dir, job.prefix, 1, name_template=_literal_template(
            job.name), compression=job.compression, write_manifest=False)
    with writer:  # an exception aborts: the temporary file is removed
        for item in job.items:
            iid = job.item_id(item)
            try:
                records = job.convert(item)
                _check_records(records)
                for record in records:
                    writer.write(record)
            except Reject as r:
                rejects.append({"item": iid, "reason": str(r.reason)})
            except Exception as e:  # noqa: BLE001 - reported by the caller
                raise _ItemFailed(iid, e) from e
            if progress is not None:
                progress(1)
    return writer.counts[0], rejects


def _check_records(records):
    """Raises TypeError unless `records` is a list/tuple of bytes."""
    if not isinstance(records, (list, tuple)) or not all(
            isinstance(r, bytes) for r in records):
        raise TypeError(
            "convert() must return a list of serialized records (bytes), "
            f"got {type(records).__name__}")


def convert_shard(job, progress=None):
    """Converts one shard and writes its file and completion record.

    Args:
        job: a ShardJob.
        progress: optional callable(n) called after each item.

    Returns:
        Dict with "index", "name", "items", "records", "rejects" (list of
        {"item", "reason"}) and "failure": None, or a dict with "item"
        (id or None), "error" (one line) and "traceback" when an error other
        than Reject stopped the shard (its file is then not written).
    """
    result = {"index": job.index, "name": job.name, "items": len(job.items),
              "records": 0, "rejects": [], "failure": None}
    try:
        result["records"], result["rejects"] = _write_shard(job, progress)
        _write_json_atomic(job.done_path, {
            "name": job.name, "index": job.index,
            "fingerprint": job.fingerprint, "items": len(job.items),
            "records": result["records"], "rejects": result["rejects"]})
    except _ItemFailed as f:
        result["failure"] = {"item": f.item, "error": _one_line(f.error),
                             "traceback": f.traceback}
    except Exception as e:  # noqa: BLE001 - e.g. rename failed
        result["failure"] = {"item": None, "error": _one_line(e),
                             "traceback": traceback.format_exc()}
    return result


def _one_line(error):
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def read_done(job):
    """The completion record of `job`'s shard, or None if not complete.

    A shard counts as complete when its final file exists and its completion
    record exists, parses and carries the job's fingerprint.

    Args:
        job: a ShardJob.

    Returns:
        Result dict as returned by `convert_shard`, or None.
    """
    if not (tf.io.gfile.exists(job.path)
            and tf.io.gfile.exists(job.done_path)):
        return None
    try:
        with tf.io.gfile.GFile(job.done_path, "r") as f:
            done = json.load(f)
    except (ValueError, OSError, tf.errors.OpError):
        return None  # damaged record: convert the shard again
    if done.get("fingerprint") != job.fingerprint:
        return None
    return {"index": job.index, "name": job.name, "items": done["items"],
            "records": done["records"], "rejects": done["rejects"],
            "failure": None}


def _write_json_atomic(path, obj, lines=False):
    """Writes JSON (or JSON lines for a list) to path via temp + rename."""
    if lines:
        write_text_atomic(path, "".join(
            json.dumps(o, sort_keys=True) + "\n" for o in obj))
    else:
        write_json_atomic(path, obj, indent=1)


def _remove_partial(job):
    """Removes the temporary file of a shard whose worker was stopped."""
    partial = os.path.join(job.output_dir, sharded_writer.PARTIAL_TEMPLATE
                           .format(name=job.name))
    try:
        if tf.io.gfile.exists(partial):
            tf.io.gfile.remove(partial)
    except (OSError, tf.errors.OpError):
        pass  # hidden and overwritten by the next run


# -- local runner ------------------------------------------------------------

_WORKER_PROGRESS = None  # multiprocessing queue, set in pool workers


def _init_worker(queue):
    """Pool worker initializer: progress queue; Ctrl-C handled by parent."""
    global _WORKER_PROGRESS
    _WORKER_PROGRESS = queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_convert_shard(job):
    """convert_shard in a pool worker, reporting progress to the parent."""
    return convert_shard(job, progress=_WORKER_PROGRESS.put)


def _run_in_process(jobs, bar):
    """Converts the jobs one after another in this process."""
    results = []
    for job in jobs:
        result = convert_shard(job, progress=bar.update)
        results.append(result)
        if result["failure"]:
            break
    return results


def _run_pool(jobs, num_workers, bar):
    """Converts the jobs in a spawn process pool; stops at the first failure.

    Returns:
        Results of the shards that finished or failed.

    Raises:
        ConversionError: a worker process died.
        KeyboardInterrupt: after stopping the workers.
    """
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    executor = concurrent.futures.ProcessPoolExecutor(
        max_workers=num_workers, mp_context=ctx, initializer=_init_worker,
        initargs=(queue,))
    futures = {executor.submit(_worker_convert_shard, job): job
               for job in jobs}
    results = []
    pending = set(futures)
    stopped_early = True
    try:
        while pending:
            done, pending = concurrent.futures.wait(
                pending, timeout=0.2,
                return_when=concurrent.futures.FIRST_COMPLETED)
            _drain(queue, bar)
            for future in done:
                results.append(_future_result(future, results))
            if any(r["failure"] for r in results):
                break
        else:
            stopped_early = False
            _drain(queue, bar)
            bar.update(bar.total - bar.n)  # counts still in the queue's pipe
    finally:
        _stop_pool(executor, futures, stopped_early)
        queue.close()
        queue.cancel_join_thread()
    return results


def _future_result(future, results):
    """A finished future's result dict; a dead worker becomes an error."""
    try:
        return future.result()
    except concurrent.futures.BrokenExecutor:
        finished = sum(1 for r in results if not r["failure"])
        raise ConversionError(
            "a worker process died unexpectedly (killed, or out of memory?); "
            f"the {finished} shards finished in this run and those of "
            "earlier runs are kept: run the same command again to convert "
            "the rest") from None


def _drain(queue, bar):
    """Moves progress counts from the workers' queue to the progress bar."""
    count = 0
    while True:
        try:
            count += queue.get_nowait()
        except Exception:  # noqa: BLE001 - queue.Empty (or closed)
            break
    if count:
        bar.update(count)


def _stop_pool(executor, futures, kill):
    """Shuts the pool down; with kill, stops running workers at once."""
    if not kill:
        executor.shutdown(wait=True)
        return
    for future in futures:
        future.cancel()
    if hasattr(executor, "terminate_workers"):  # Python >= 3.14
        executor.terminate_workers()
    else:
        for process in list(getattr(executor, "_processes", {}).values()):
            if process.is_alive():
                process.terminate()
    executor.shutdown(wait=True, cancel_futures=True)
    for future, job in futures.items():
        if (future.cancelled() or not future.done()
                or future.exception() is not None):
            _remove_partial(job)  # its worker was stopped mid-shard


def run_local(jobs, num_workers=1, progress=True):
    """Converts shard jobs in this process or a process pool.

    Args:
        jobs: ShardJob list (the pending ones).
        num_workers: 1 converts in this process; more starts a spawn pool of
            min(num_workers, len(jobs)) processes, each converting whole
            shards.
        progress: show a progress bar over items.

    Returns:
        List of result dicts (see `convert_shard`); conversion stops at the
        first failure, so later shards may have no result.
    """
    total = sum(len(j.items) for j in jobs)
    desc = jobs[0].prefix if jobs else ""
    # Into a file or a pipe (a demo's log) a new state at most every 10 s.
    interval = 0.1 if core_progress.is_terminal(sys.stderr) else 10.0
    with tqdm(total=total, desc=f"{desc} items", unit="item",
              disable=not progress, file=sys.stderr,
              mininterval=interval) as bar:
        workers = min(num_workers, len(jobs))
        if workers <= 1:
            return _run_in_process(jobs, bar)
        return _run_pool(jobs, workers, bar)


# -- Beam runner -------------------------------------------------------------


def _import_beam():
    """Imports apache_beam or raises one clear error naming the extra."""
    try:
        import apache_beam as beam  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise cli.InputError(
            f"--runner=beam needs Apache Beam, which is not installed ({e}); "
            f"install the extra: {_BEAM_EXTRA_HINT}") from None
    return beam


def _write_beam_results(results, path):
    """Beam step: saves the collected shard results for the driver."""
    _write_json_atomic(path, sorted(results, key=lambda r: r["index"]))
    return len(results)


@dataclasses.dataclass(frozen=True)
class SharedJobFields:
    """The ShardJob fields every shard of one conversion shares (the Beam
    Convert step's argument; the plan file holds the rest)."""

    output_dir: str
    prefix: str
    convert: Callable[[Any], Sequence[bytes]]
    item_id: Callable[[Any], str]
    compression: Optional[str] = None


def _shared_fields(jobs):
    first = jobs[0]
    return SharedJobFields(first.output_dir, first.prefix, first.convert,
                           first.item_id, first.compression)


def plan_line(job):
    """One line of a Beam plan file: the shard's own fields (index, name,
    items, fingerprint), pickled and base64-encoded (no newline)."""
    payload = (job.index, job.name, job.items, job.fingerprint)
    return base64.b64encode(pickle.dumps(payload, protocol=4)).decode("ascii")


def job_from_plan_line(line, shared):
    """The ShardJob of a plan line (plan_line's inverse).

    The plan is written by the conversion's own driver into its output
    directory and read back by its pipeline; it is not an input format.
    """
    index, name, items, fingerprint = pickle.loads(
        base64.b64decode(line.strip()))
    return ShardJob(index, name, shared.output_dir, shared.prefix, items,
                    shared.convert, shared.item_id, fingerprint,
                    shared.compression)


BEAM_COUNTER_NAMESPACE = "vidmodels.conversion"


def _convert_plan_line(line, shared):
    """Beam step: converts the shard of one plan line and counts its
    records, rejects and shards in Beam counters (a cluster's UI shows
    them while the pipeline runs)."""
    from apache_beam.metrics import Metrics  # noqa: E501 pylint: disable=import-outside-toplevel
    result = convert_shard(job_from_plan_line(line, shared))
    Metrics.counter(BEAM_COUNTER_NAMESPACE, "records_written").inc(
        result["records"])
    Metrics.counter(BEAM_COUNTER_NAMESPACE, "items_rejected").inc(
        len(result["rejects"]))
    Metrics.counter(BEAM_COUNTER_NAMESPACE, "shards_done" if not
                    result["failure"] else "shards_failed").inc()
    return result


def beam_pipeline_options(beam_runner="DirectRunner", beam_options=""):
    """PipelineOptions of --beam_runner and --beam_options."""
    _import_beam()
    from apache_beam.options import pipeline_options  # noqa: E501 pylint: disable=import-outside-toplevel
    try:
        argv = [f"--runner={beam_runner}"] + shlex.split(beam_options or "")
    except ValueError as e:
        raise cli.InputError(
            f"--beam_options={beam_options!r}: cannot split ({e})") from None
    return pipeline_options.PipelineOptions(argv)


def build_beam_pipeline(plan_path, shared, results_path, options):
    """The conversion pipeline, not yet run: ReadFromText(plan) ->
    Reshuffle -> Map(convert shard) -> collect the results into
    ``results_path``. Its size does not depend on the plan's content.

    Args:
        plan_path: the plan file (lines of plan_line).
        shared: SharedJobFields.
        results_path: where the collected shard results are written.
        options: PipelineOptions.

    Returns:
        apache_beam.Pipeline.
    """
    beam = _import_beam()
    pipeline = beam.Pipeline(options=options)
    _ = (pipeline
         | "Plan" >> beam.io.ReadFromText(plan_path)
         | "Spread" >> beam.Reshuffle()
         | "Convert" >> beam.Map(_convert_plan_line, shared)
         | "Collect" >> beam.combiners.ToList()
         | "Save" >> beam.Map(_write_beam_results, results_path))
    return pipeline


def run_beam(jobs, beam_runner="DirectRunner", beam_options=""):
    """Converts shard jobs in an Apache Beam pipeline.

    Args:
        jobs: ShardJob list (the pending ones).
        beam_runner: Beam runner name (DirectRunner, DataflowRunner,
            FlinkRunner, SparkRunner, ...).
        beam_options: further pipeline options as one command-line string,
            e.g. "--direct_num_workers=2 --direct_running_mode=multi_processing"
            (a --runner in it overrides `beam_runner`).

    Returns:
        List of result dicts (see `convert_shard`), one per job.

    Raises:
        InputError: Beam is not installed or the options do not parse.
        ConversionError: the pipeline failed.
    """
    if not jobs:
        return []
    options = beam_pipeline_options(beam_runner, beam_options)
    shared = _shared_fields(jobs)
    results_path = os.path.join(shared.output_dir, _BEAM_RESULTS_TEMPLATE
                                .format(prefix=shared.prefix))
    plan_path = os.path.join(shared.output_dir, _BEAM_PLAN_TEMPLATE
                             .format(prefix=shared.prefix))
    write_lines_atomic(plan_path, (plan_line(j) for j in jobs))
    try:
        pipeline = build_beam_pipeline(plan_path, shared, results_path,
                                       options)
        pipeline.run().wait_until_finish()
    except Exception as e:  # noqa: BLE001 - any runner's failure
        raise ConversionError(
            f"the Beam pipeline ({beam_runner}) failed: {_one_line(e)[:500]}; "
            "the shards finished so far are kept: run the same command "
            "again to convert the rest") from e
    with tf.io.gfile.GFile(results_path, "r") as f:
        results = json.load(f)
    tf.io.gfile.remove(results_path)
    tf.io.gfile.remove(plan_path)
    return results


# -- driver ----------------------------------------------------------------


@dataclasses.dataclass
class ConversionResult:
    """What a conversion wrote.

    Attributes:
        output_dir: output directory.
        prefix: shard name prefix.
        shards: per shard dict with "name", "items", "records", "rejects"
            (count), in shard order.
        rejects: list of {"item", "reason"} in item order.
        resumed: names of shards kept from an earlier run.
        manifest_path: path of the manifest.
        rejects_path: path of the rejects file.
    """

    output_dir: str
    prefix: str
    shards: List[Dict[str, Any]]
    rejects: List[Dict[str, str]]
    resumed: List[str]
    manifest_path: str
    rejects_path: str

    @property
    def num_records(self):
        return sum(s["records"] for s in self.shards)

    @property
    def num_items(self):
        return sum(s["items"] for s in self.shards)

    @property
    def paths(self):
        """Shard paths, in order."""
        return [os.path.join(self.output_dir, s["name"]) for s in self.shards]

    def summary(self):
        """One line: records, shards, rejects (and resumed shards)."""
        line = (f"Wrote {self.num_records} records from {self.num_items} "
                f"items to {len(self.shards)} shards in {self.output_dir}; "
                f"{len(self.rejects)} rejected")
        if self.rejects:
            line += f" (reasons in {self.rejects_path})"
        if self.resumed:
            line += (f"; {len(self.resumed)} shards kept from an earlier "
                     "run")
        return line


def _raise_failure(result, job):
    """Raises the ConversionError for a failed shard result."""
    failure = result["failure"]
    where = (f"item {failure['item']!r} of shard {job.name}"
             if failure["item"] is not None else f"shard {job.name}")
    message = (f"converting {where} failed: {failure['error']}; the shards "
               "finished so far are kept: fix the cause and run the same "
               "command again to convert the rest")
    raise ConversionError(message, failure["traceback"]) from (
        _WorkerTraceback(failure["traceback"]))


def _write_outputs(jobs, results, output_dir, prefix, options):
    """Writes the manifest and the rejects file; returns ConversionResult."""
    by_index = {r["index"]: r for r in results}
    shards, rejects = [], []
    for job in jobs:
        r = by_index[job.index]
        shards.append({"name": job.name, "items": r["items"],
                       "records": r["records"], "rejects": len(r["rejects"])})
        rejects.extend(r["rejects"])
    manifest_path = os.path.join(
        output_dir, sharded_writer.MANIFEST_TEMPLATE.format(prefix=prefix))
    rejects_path = os.path.join(output_dir,
                                REJECTS_TEMPLATE.format(prefix=prefix))
    _write_json_atomic(rejects_path, rejects, lines=True)
    _write_json_atomic(manifest_path, {
        "prefix": prefix, "num_shards": len(jobs),
        "num_records": sum(s["records"] for s in shards),
        "num_items": sum(s["items"] for s in shards),
        "num_rejects": len(rejects), "assignment": "contiguous",
        "rejects_file": os.path.basename(rejects_path),
        "options": options or {}, "shards": shards})
    return ConversionResult(output_dir, prefix, shards, rejects, [],
                            manifest_path, rejects_path)


def _nothing_converted(jobs, results, output_dir, prefix):
    """Cleans up a conversion without records; returns its error.

    Writes the rejects file (the reasons), removes the empty shards and
    their completion records (so no reader finds an empty dataset and a
    run with fixed inputs converts everything again) and any manifest of an
    earlier run under the same prefix.

    Returns:
        ConversionError naming the rejects file.
    """
    rejects = [r for result in sorted(results, key=lambda r: r["index"])
               for r in result["rejects"]]
    rejects_path = os.path.join(output_dir,
                                REJECTS_TEMPLATE.format(prefix=prefix))
    _write_json_atomic(rejects_path, rejects, lines=True)
    manifest_path = os.path.join(
        output_dir, sharded_writer.MANIFEST_TEMPLATE.format(prefix=prefix))
    for path in [p for j in jobs for p in (j.path, j.done_path)] + [
            manifest_path]:
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
    num_items = sum(len(j.items) for j in jobs)
    if not num_items:
        what = "there were no inputs to convert"
    elif len(rejects) == num_items:
        what = f"all {num_items} inputs were rejected"
    else:
        what = (f"{num_items} inputs gave no records ({len(rejects)} "
                "rejected)")
    return ConversionError(
        f"{what}: nothing was written to {output_dir}; the reasons are in "
        f"{rejects_path}")


def convert_items(items, convert, output_dir, prefix, num_shards,
                  item_id=default_item_id, options=None, runner="local",
                  num_workers=1, beam_runner="DirectRunner", beam_options="",
                  name_template=sharded_writer.DEFAULT_NAME_TEMPLATE,
                  compression=None, progress=True):
    """Converts items into sharded TFRecords, resuming finished shards.

    Args:
        items: list of picklable items.
        convert: picklable top-level function (or functools.partial of one)
            `convert(item) -> list of serialized records`; raises Reject for
            a bad item. Must be deterministic for resume and for identical
            output across runners.
        output_dir: output directory (created if missing).
        prefix: shard name prefix, e.g. "train".
        num_shards: number of shards (>= 1).
        item_id: picklable `item_id(item) -> str` for rejects and errors.
        options: JSON-serialisable dict of the inputs/settings that change
            the output; stored in the manifest and part of the resume check.
        runner: "local" or "beam".
        num_workers: local runner: worker processes (1 = this process).
        beam_runner: Beam runner name.
        beam_options: extra Beam pipeline options (one command-line string).
        name_template: shard file name format ({prefix}, {index},
            {num_shards}).
        compression: None, "GZIP" or "ZLIB".
        progress: local runner: show a progress bar.

    Returns:
        ConversionResult.

    Raises:
        InputError: bad arguments, or Beam asked for but not installed.
        ConversionError: an item or shard failed with an error other than
            Reject (finished shards are kept), or no item gave a record
            (see the module docstring).
    """
    if runner not in RUNNERS:
        raise cli.InputError(f"--runner must be one of {RUNNERS}, got "
                             f"{runner!r}")
    if num_workers < 1:
        raise cli.InputError(f"--num_workers must be >= 1, got {num_workers}")
    if runner == "beam":
        _import_beam()  # fail before any work
    tf.io.gfile.makedirs(output_dir)
    jobs = plan_shards(items, convert, output_dir, prefix, num_shards,
                       item_id=item_id, options=options,
                       name_template=name_template, compression=compression)
    kept = {j.index: read_done(j) for j in jobs}
    kept = {k: r for k, r in kept.items() if r is not None}
    pending = [j for j in jobs if j.index not in kept]
    if runner == "beam":
        results = run_beam(pending, beam_runner, beam_options)
    else:
        results = run_local(pending, num_workers, progress)
    for result in results:
        if result["failure"]:
            _raise_failure(result, jobs[result["index"]])
    done = {r["index"]: r for r in results}
    missing = [j.name for j in pending if j.index not in done]
    if missing:  # cannot happen without a failure; never drop silently
        raise ConversionError(f"shards {missing} were not converted")
    results = list(kept.values()) + results
    if not any(r["records"] for r in results):
        raise _nothing_converted(jobs, results, output_dir, prefix)
    result = _write_outputs(jobs, results, output_dir, prefix, options)
    result.resumed = [jobs[k].name for k in sorted(kept)]
    return result


# -- shared CLI flags --------------------------------------------------------


def define_flags(flag_values, default_prefix="train", default_num_shards=1):
    """Defines the conversion flags on a CLI's own FlagValues.

    --output_dir (required), --prefix, --num_shards, --num_workers,
    --runner=local|beam, --beam_runner, --beam_options, --progress.

    Args:
        flag_values: the CLI module's `flags.FlagValues`.
        default_prefix: default shard name prefix.
        default_num_shards: default number of shards.
    """
    core_cli.flag_topic("output", flag_values)
    flags.DEFINE_string("output_dir", None, "Directory for the shards.",
                        flag_values=flag_values)
    flags.DEFINE_string(
        "prefix", default_prefix,
        "Shard name prefix: <prefix>-00000-of-00004.tfrecord, ...",
        flag_values=flag_values)
    flags.DEFINE_integer("num_shards", default_num_shards,
                         "Number of shards (contiguous blocks of items).",
                         lower_bound=1, flag_values=flag_values)
    core_cli.flag_topic("conversion", flag_values)
    flags.DEFINE_integer(
        "num_workers", 1,
        "Local runner: worker processes, each converting whole shards "
        "(1 = in this process).", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_enum(
        "runner", "local", list(RUNNERS),
        "local: this machine (with --num_workers); beam: an Apache Beam "
        f"pipeline ({_BEAM_EXTRA_HINT}).", flag_values=flag_values)
    flags.DEFINE_string(
        "beam_runner", "DirectRunner",
        "--runner=beam: Beam runner (DirectRunner, DataflowRunner, "
        "FlinkRunner, SparkRunner, ...).", flag_values=flag_values)
    flags.DEFINE_string(
        "beam_options", "",
        "--runner=beam: further pipeline options as one string, e.g. "
        "\"--direct_num_workers=2 --direct_running_mode=multi_processing\" "
        "or Dataflow's --project/--region/--temp_location.",
        flag_values=flag_values)
    flags.DEFINE_boolean("progress", True, "Show a progress bar.",
                         flag_values=flag_values)
    flags.mark_flag_as_required("output_dir", flag_values=flag_values)


def flag_kwargs(flag_values):
    """convert_items keyword arguments from flags made by `define_flags`.

    Args:
        flag_values: parsed FlagValues.

    Returns:
        Dict with output_dir, prefix, num_shards, runner, num_workers,
        beam_runner, beam_options, progress.
    """
    names = ("output_dir", "prefix", "num_shards", "runner", "num_workers",
             "beam_runner", "beam_options", "progress")
    return {n: flag_values[n].value for n in names}
