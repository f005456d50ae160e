"""Splitting evaluation over workers: who takes which shards, how shares
reach the chief, and merges that equal one process."""

import json

import numpy as np
import pytest

from vidcore import eval_workers, metrics
from vidcore.errors import UserInputError
from yt8m import submission


def _config(cluster, kind, index):
    return json.dumps({"cluster": cluster, "task": {"type": kind,
                                                     "index": index}})


def test_workers_from_tf_config():
    cluster = {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"],
               "ps": ["h3:1"]}
    assert eval_workers.Workers.from_strategy("mirrored") == \
        eval_workers.Workers(0, 1)
    found = [eval_workers.Workers.from_strategy(
        "multi_worker", _config(cluster, kind, i))
        for kind, i in (("chief", 0), ("worker", 0), ("worker", 1))]
    assert [(w.index, w.count, w.is_chief) for w in found] == [
        (0, 3, True), (1, 3, False), (2, 3, False)]
    no_chief = eval_workers.Workers.from_strategy(
        "multi_worker", _config({"worker": ["a:1", "b:1"]}, "worker", 0))
    assert no_chief.is_chief and no_chief.count == 2
    assert no_chief.local_strategy_name("multi_worker") == "auto"
    no_chief.check_shared_output("out/r.json", "--output_json")
    eval_workers.Workers().check_shared_output("", "--output_json")
    with pytest.raises(UserInputError, match="needs --output_json"):
        no_chief.check_shared_output("", "--output_json")
    with pytest.raises(UserInputError, match="ps:0 is not a chief or worker"):
        eval_workers.Workers.from_strategy("multi_worker",
                                           _config(cluster, "ps", 0))
    with pytest.raises(UserInputError, match="not a cluster and task"):
        eval_workers.Workers.from_strategy("multi_worker", "{}")


@pytest.mark.parametrize("num_files,count", [(7, 3), (2, 2), (1, 2),
                                             (0, 2), (5, 1)])
def test_shard_blocks_are_contiguous_and_cover_every_file(num_files, count):
    files = [f"s{i:02d}" for i in range(num_files)]
    blocks = [eval_workers.Workers(i, count).shard_files(files)
              for i in range(count)]
    assert sum(blocks, []) == files
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes,
                                                            reverse=True)


def _exchanges(tmp_path, count=3, key="k", timeout=5):
    return [eval_workers.ShareExchange(eval_workers.Workers(i, count),
                                       str(tmp_path), "eval", key, timeout)
            for i in range(count)]


def test_shares_reach_the_chief_in_worker_order(tmp_path):
    chief, one, two = _exchanges(tmp_path)
    two.publish({"x": np.arange(2), "n": np.int64(2)})
    one.publish({"x": np.arange(0), "n": np.int64(0)})
    shares = chief.gather({"x": np.arange(5), "n": np.int64(5)})
    assert [int(s["n"]) for s in shares] == [5, 0, 2]
    np.testing.assert_array_equal(shares[2]["x"], [0, 1])
    chief.remove()
    assert not list(tmp_path.iterdir())


def test_a_failed_worker_stops_the_chief_with_its_message(tmp_path):
    chief, one, _ = _exchanges(tmp_path)
    with pytest.raises(ValueError):
        eval_workers.share_work(one.workers, one, lambda: (_ for _ in ()).
                                throw(ValueError("shard 3 is corrupt")))
    with pytest.raises(UserInputError,
                       match="worker 1 failed: ValueError: shard 3 is"):
        chief.gather({})


def test_missing_shares_time_out_naming_the_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(eval_workers, "POLL_SECS", 0.01)
    chief, one, _ = _exchanges(tmp_path, timeout=0.05)
    one.publish({"n": np.int64(1)})
    with pytest.raises(UserInputError, match=r"workers \[2\] sent no share"):
        chief.gather({})


def test_shares_of_another_run_are_not_merged(tmp_path, monkeypatch):
    monkeypatch.setattr(eval_workers, "POLL_SECS", 0.01)
    old = _exchanges(tmp_path, count=2, key=eval_workers.run_key("a"))
    old[1].publish({"n": np.int64(1)})
    new = _exchanges(tmp_path, count=2, key=eval_workers.run_key("b"),
                     timeout=0.05)
    with pytest.raises(UserInputError, match="sent no share"):
        new[0].gather({})


def test_run_key_changes_when_a_named_file_changes(tmp_path):
    path = tmp_path / "ckpt-1.index"
    path.write_bytes(b"a")
    before = eval_workers.run_key("eval", str(tmp_path / "ckpt-1"))
    path.write_bytes(b"ab")
    assert eval_workers.run_key("eval", str(tmp_path / "ckpt-1")) != before


def _summaries(rng, num_videos, num_classes, batch):
    labels = rng.random((num_videos, num_classes)) < 0.1
    scores = rng.random((num_videos, num_classes)).astype(np.float32)
    scores[:, :3] = np.round(scores[:, :3], 1)  # ties across workers
    return [metrics.topk_summary_numpy(scores[i:i + batch],
                                       labels[i:i + batch], 5)
            for i in range(0, num_videos, batch)]


def test_merged_metric_states_equal_one_accumulator():
    rng = np.random.default_rng(0)
    summaries = _summaries(rng, 90, 12, 8)
    whole = metrics.StreamingYT8MMetrics(12, 5)
    parts = [metrics.StreamingYT8MMetrics(12, 5) for _ in range(3)]
    for i, summary in enumerate(summaries):
        whole.update(summary)
        parts[min(i // 4, 2)].update(summary)
    merged = metrics.StreamingYT8MMetrics(12, 5)
    for part in parts + [metrics.StreamingYT8MMetrics(12, 5)]:  # + empty
        merged.merge(part.state())
    assert merged.result() == whole.result()
    with pytest.raises(ValueError, match="cannot merge"):
        metrics.StreamingYT8MMetrics(13, 5).merge(whole.state())


def test_concatenated_prediction_files_keep_order_and_refuse_repeats(
        tmp_path):
    parts = []
    for i, ids in enumerate((["a", "b"], [], ["c"])):
        path = str(tmp_path / f"part{i}.csv")
        submission.write_labels(path, ids, [[1, 2]] * len(ids))
        parts.append(path)
    out = str(tmp_path / "all.csv.gz")
    assert submission.concatenate_files(out, parts,
                                        submission.LABELS_HEADER) == 3
    ids, labels = submission.read_labels(out)
    assert list(ids) == ["a", "b", "c"]
    with pytest.raises(submission.PredictionFileError,
                       match="'a' of .*part0.csv is already in"):
        submission.concatenate_files(str(tmp_path / "twice.csv"),
                                     parts + parts[:1],
                                     submission.LABELS_HEADER)
    assert not (tmp_path / "twice.csv").exists()
    with pytest.raises(submission.PredictionFileError, match="header"):
        submission.concatenate_files(str(tmp_path / "x.csv"), parts,
                                     submission.VIDEO_HEADER)
