"""The Beam runner reads its shard plan from a file: the submitted pipeline
has one size whatever the number of items, and its counters report the
records written and the items rejected."""

import functools

import pytest

from tfrecord_tools import conversion

beam = pytest.importorskip("apache_beam")


def _convert_id(item, reject_every=0):
    """A record per item: its id; Reject for every `reject_every`-th."""
    if reject_every and item["n"] % reject_every == 0:
        raise conversion.Reject(f"item {item['n']} rejected")
    return [item["id"].encode()]


def _item_id(item):
    return item["id"]


def _items(n):
    """Synthetic HowTo100M-like video list items."""
    return [{"id": f"v{k:07d}", "path": f"videos/{k % 97}/v{k:07d}.mp4",
             "task": None, "n": k} for k in range(n)]


def _jobs(n, output_dir, num_shards=64, reject_every=0):
    return conversion.plan_shards(
        _items(n), functools.partial(_convert_id, reject_every=reject_every),
        str(output_dir), "train", num_shards, item_id=_item_id)


def _pipeline_bytes(jobs, output_dir):
    plan = str(output_dir / ".train.beam-plan.txt")
    conversion.write_lines_atomic(plan, map(conversion.plan_line, jobs))
    pipeline = conversion.build_beam_pipeline(
        plan, conversion.SharedJobFields(str(output_dir), "train",
                                         jobs[0].convert, jobs[0].item_id),
        str(output_dir / "results.json"),
        conversion.beam_pipeline_options())
    return len(pipeline.to_runner_api().SerializeToString())


def _create_pipeline_bytes(jobs):
    """The former design: the jobs themselves in a Create."""
    pipeline = beam.Pipeline(options=conversion.beam_pipeline_options())
    _ = (pipeline | beam.Create(jobs) | beam.Reshuffle()
         | beam.Map(conversion.convert_shard))
    return len(pipeline.to_runner_api().SerializeToString())


def test_submitted_pipeline_does_not_grow_with_the_items(tmp_path):
    small = _pipeline_bytes(_jobs(1_000, tmp_path), tmp_path)
    large = _pipeline_bytes(_jobs(100_000, tmp_path), tmp_path)
    # Equal but for a few tens of bytes of pickled identifiers, which
    # differ between any two builds (41,267 and 41,279 for the same jobs).
    assert abs(large - small) < 1_000
    # The measurement sees what a Create of the jobs embedded.
    assert (_create_pipeline_bytes(_jobs(100_000, tmp_path))
            > _create_pipeline_bytes(_jobs(1_000, tmp_path)) + 1_000_000)


def test_plan_line_round_trip(tmp_path):
    job = _jobs(1_000, tmp_path, num_shards=7)[3]
    shared = conversion.SharedJobFields(str(tmp_path), "train", job.convert,
                                        job.item_id)
    line = conversion.plan_line(job)
    assert "\n" not in line
    back = conversion.job_from_plan_line(line + "\n", shared)
    assert (back.index, back.name, back.items, back.fingerprint,
            back.output_dir, back.prefix) == (
                job.index, job.name, job.items, job.fingerprint,
                job.output_dir, job.prefix)


def test_counters_report_records_rejects_and_shards(tmp_path):
    jobs = _jobs(40, tmp_path, num_shards=4, reject_every=5)
    plan = str(tmp_path / ".train.beam-plan.txt")
    conversion.write_lines_atomic(plan, map(conversion.plan_line, jobs))
    pipeline = conversion.build_beam_pipeline(
        plan, conversion.SharedJobFields(str(tmp_path), "train",
                                         jobs[0].convert, jobs[0].item_id),
        str(tmp_path / "results.json"), conversion.beam_pipeline_options())
    result = pipeline.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics()
                .query()["counters"]
                if c.key.metric.namespace == conversion.BEAM_COUNTER_NAMESPACE}
    assert counters == {"records_written": 32, "items_rejected": 8,
                        "shards_done": 4}


def test_convert_items_on_beam_removes_its_plan_and_results(tmp_path):
    jobs_items = _items(30)
    result = conversion.convert_items(
        jobs_items, functools.partial(_convert_id, reject_every=0),
        str(tmp_path), "train", 3, runner="beam",
        beam_options="--direct_num_workers=1")
    assert result.num_records == 30
    hidden = sorted(p.name for p in tmp_path.iterdir()
                    if p.name.startswith(".") and "beam" in p.name)
    assert hidden == []
