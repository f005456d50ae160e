"""Prediction files (yt8m.submission) and the ensemble CLI (yt8m.ensemble)."""
import gzip
import json
import os

import numpy as np
import pytest
from absl import flags

from vidcore import cli, metrics
from yt8m import ensemble, submission

FLAGS = flags.FLAGS
HEADER = submission.VIDEO_HEADER


def _write_text(path, lines, header=HEADER):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join([header] + list(lines)) + "\n")
    return str(path)


def _run_cli(args):
    """Parses ``args`` into the global flags and runs ensemble.main."""
    FLAGS.unparse_flags()
    FLAGS(["yt8m.ensemble"] + args)
    try:
        return ensemble.main(["yt8m.ensemble"])
    finally:
        FLAGS.unparse_flags()


def _as_dict(path):
    """{video id: [(class, score), ...]} of a prediction file."""
    ids, classes, scores = submission.read_video_predictions(path)
    return {i: [(int(c), float(s)) for c, s in zip(cr, sr) if c >= 0]
            for i, cr, sr in zip(ids.tolist(), classes, scores)}


# --------------------------------------------------------------------------
# Video prediction files.
# --------------------------------------------------------------------------
def test_round_trip_keeps_string_ids_sorts_and_pads(tmp_path):
    ids = ["0001", "1e5", "nan", "6l0e", "NA"]
    classes = np.array([[1, 2, 3], [4, 5, -1], [7, 8, 9], [10, -1, -1],
                        [-1, -1, -1]])
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.7, 0.0], [0.2, 0.25, 0.3],
                       [1e-7, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    path = str(tmp_path / "p.csv")
    assert submission.write_video_predictions(path, ids, classes, scores) == 5
    with open(path) as f:
        assert f.read().splitlines() == [
            HEADER, "0001,2 0.9 3 0.5 1 0.1", "1e5,5 0.7 4 0.3",
            "nan,9 0.3 8 0.25 7 0.2", "6l0e,10 1e-07", "NA,"]
    read_ids, read_classes, read_scores = submission.read_video_predictions(
        path)
    assert read_ids.tolist() == ids and read_ids.dtype.kind == "U"
    assert read_classes.dtype == np.int32 and read_scores.dtype == np.float32
    np.testing.assert_array_equal(read_classes[0], [2, 3, 1])
    np.testing.assert_array_equal(read_classes[3], [10, -1, -1])
    np.testing.assert_array_equal(read_classes[4], [-1, -1, -1])
    np.testing.assert_allclose(read_scores[1], [0.7, 0.3, 0.0])

    submission.write_video_predictions(path, ids, classes, scores, top_k=2)
    _, top2, _ = submission.read_video_predictions(path)
    np.testing.assert_array_equal(top2[:3], [[2, 3], [5, 4], [9, 8]])


def test_confidences_are_written_as_percent_6g(tmp_path):
    values = np.array([0.123456789, 0.5, 1e-4, 9.99999e-5, 0.99999951,
                       0.9999994, 1.0, 0.0, 2.5, 3e-9, 0.00012345678],
                      np.float32)
    n = values.size
    path = str(tmp_path / "p.csv")
    submission.write_video_predictions(
        path, [f"v{i}" for i in range(n)], np.zeros((n, 1), int),
        values[:, None])
    with open(path) as f:
        written = [line.split(" ")[1] for line in f.read().splitlines()[1:]]
    assert written == ["%.6g" % float(v) for v in values]


def test_top_k_predictions_breaks_ties_by_lower_class():
    scores = np.array([[0.1, 0.5, 0.5, 0.9, 0.5],
                       [0.2, 0.2, 0.2, 0.2, 0.2],
                       [0.3, np.nan, -np.inf, 0.1, 0.7]], np.float32)
    classes, top = submission.top_k_predictions(scores, 3)
    np.testing.assert_array_equal(classes, [[3, 1, 2], [0, 1, 2], [4, 0, 3]])
    np.testing.assert_allclose(top[0], [0.9, 0.5, 0.5])
    classes, _ = submission.top_k_predictions(scores, 4)
    np.testing.assert_array_equal(classes[2], [4, 0, 3, -1])


def test_gzip_and_bytes_ids(tmp_path):
    path = str(tmp_path / "p.csv.gz")
    submission.write_video_predictions(path, np.array([b"a", b"b"]),
                                       [[1], [2]], [[0.5], [0.25]])
    with gzip.open(path, "rt") as f:
        assert f.read() == f"{HEADER}\na,1 0.5\nb,2 0.25\n"
    ids, classes, _ = submission.read_video_predictions(path)
    assert ids.tolist() == ["a", "b"] and classes.ravel().tolist() == [1, 2]


def test_reading_in_many_blocks_matches_one_block(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"{i:04d}" for i in range(300)]
    classes = np.argsort(rng.random((300, 40)), axis=1)[:, :7]
    classes[::7, 4:] = -1
    path = str(tmp_path / "p.csv")
    submission.write_video_predictions(path, ids, classes,
                                       rng.random((300, 7)))
    whole = submission.read_video_predictions(path)
    parts = submission.read_video_predictions(path, chunk_bytes=100)
    for a, b in zip(whole, parts):
        np.testing.assert_array_equal(a, b)
    with open(path) as f:
        lines = f.read().splitlines()
    lines[250] = lines[250] + " 17"
    with pytest.raises(submission.PredictionFileError, match="line 251"):
        submission.read_video_predictions(_write_text(path, lines[1:]),
                                          chunk_bytes=100)


@pytest.mark.parametrize("line, reason", [
    ("x,1 0.5 2", "odd number of values"),
    ("x 1 0.5", "exactly one ','"),
    ("x,1 0.5,3 0.2", "exactly one ','"),
    (",1 0.5", "empty video id"),
    ("x,1 abc", "'abc' is not a finite decimal number"),
    ("x,1 nan", "'nan' is not a finite"),
    ("x,1.5 0.3", "labels must be non-negative integers"),
    ("x,-1 0.3", "labels must be non-negative integers"),
    ("x,1 inf", "confidences must be finite"),
    ("x,4 0.2 4 0.1", "a label appears twice"),
])
def test_malformed_line_names_file_line_and_content(tmp_path, line, reason):
    path = _write_text(tmp_path / "bad.csv", ["a,1 0.5", "", line, "z,2 0.1"])
    with pytest.raises(submission.PredictionFileError) as error:
        submission.read_video_predictions(path)
    message = str(error.value)
    assert f"{path}, line 4:" in message
    assert reason in message
    assert repr(line) in message
    assert "\n" not in message


def test_header_and_duplicate_ids_are_refused(tmp_path):
    bad_header = _write_text(tmp_path / "h.csv", ["a,1 0.5"],
                             header="id,preds")
    with pytest.raises(submission.PredictionFileError,
                       match="line 1: unexpected header"):
        submission.read_video_predictions(bad_header)
    dup = _write_text(tmp_path / "d.csv", ["a,1 0.5", "b,2 0.5", "a,3 0.1"])
    with pytest.raises(submission.PredictionFileError,
                       match=r"'a' appears twice \(lines 2 and 4\)"):
        submission.read_video_predictions(dup)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        submission.read_video_predictions(str(tmp_path / "nope.csv"))
    with pytest.raises(submission.PredictionFileError, match="'a'"):
        submission.write_video_predictions(str(tmp_path / "w.csv"),
                                           ["a", "a"], [[1], [2]],
                                           [[0.1], [0.2]])
    with pytest.raises(submission.PredictionFileError, match="'a,b'"):
        submission.write_video_predictions(str(tmp_path / "w.csv"),
                                           ["a,b"], [[1]], [[0.1]])


def test_writer_is_atomic(tmp_path):
    path = str(tmp_path / "out.csv")
    writer = submission.VideoPredictionWriter(path, top_k=1)
    writer.write_batch(["a", "b"], [[1, 2], [3, 4]], [[0.1, 0.2], [0.4, 0.3]])
    writer.write_batch(["c"], [[5, 6]], [[0.5, 0.6]])
    assert not os.path.exists(path)
    with pytest.raises(submission.PredictionFileError, match="'b' written"):
        writer.write_batch(["b"], [[1]], [[0.5]])
    writer.close()
    assert writer.num_written == 3
    with open(path) as f:
        assert f.read() == f"{HEADER}\na,2 0.2\nb,3 0.4\nc,6 0.6\n"

    # An interrupted run leaves the previous file untouched and no temp file.
    with pytest.raises(RuntimeError):
        with submission.VideoPredictionWriter(path) as writer:
            writer.write_batch(["x"], [[1]], [[0.9]])
            raise RuntimeError("interrupted")
    with open(path) as f:
        assert f.read().startswith(f"{HEADER}\na,2 0.2")
    assert os.listdir(tmp_path) == ["out.csv"]


# --------------------------------------------------------------------------
# Labels and segment files.
# --------------------------------------------------------------------------
def test_labels_round_trip(tmp_path):
    path = str(tmp_path / "labels.csv")
    submission.write_labels(path, ["0001", "1e5", "x"],
                            [[5, 1], np.array([3]), []])
    with open(path) as f:
        assert f.read() == "VideoId,Labels\n0001,1 5\n1e5,3\nx,\n"
    ids, lists = submission.read_labels(path)
    assert ids.tolist() == ["0001", "1e5", "x"]
    assert [list(x) for x in lists] == [[1, 5], [3], []]
    _, matrix = submission.read_label_matrix(path)
    np.testing.assert_array_equal(matrix, [[1, 5], [3, -1], [-1, -1]])
    bad = _write_text(tmp_path / "bad.csv", ["a,1 2", "b,3 x"],
                      header=submission.LABELS_HEADER)
    with pytest.raises(submission.PredictionFileError, match="line 3"):
        submission.read_labels(bad)


def test_segment_file_round_trip(tmp_path):
    path = str(tmp_path / "segments.csv")
    ranked = {7: ["6l0e:35", ("0001", 120)], 3: [("Xa9b", 0)], 11: []}
    assert submission.write_segment_predictions(path, ranked) == 3
    with open(path) as f:
        assert f.read() == ("Class,Segments\n3,Xa9b:0\n7,6l0e:35 0001:120\n"
                            "11,\n")
    assert submission.read_segment_predictions(path) == {
        3: [("Xa9b", 0)], 7: [("6l0e", 35), ("0001", 120)], 11: []}
    bad = _write_text(tmp_path / "bad.csv", ["3,a:1", "4,b:x"],
                      header=submission.SEGMENT_HEADER)
    with pytest.raises(submission.PredictionFileError,
                       match="line 3: .*start_time"):
        submission.read_segment_predictions(bad)


# --------------------------------------------------------------------------
# Ensemble.
# --------------------------------------------------------------------------
@pytest.fixture
def two_files(tmp_path):
    """Two small hand-made files (rows in different orders) and labels."""
    a = _write_text(tmp_path / "a.csv", ["0001,1 0.9 2 0.5", "nan,3 0.4"])
    b = _write_text(tmp_path / "b.csv", ["nan,4 0.8 3 0.2",
                                         "0001,2 0.7 5 0.1"])
    labels = _write_text(tmp_path / "labels.csv",
                         ["nan,4", "0001,1", "extra,2"],
                         header=submission.LABELS_HEADER)
    return tmp_path, a, b, labels


def test_ensemble_equal_weights_is_the_mean_missing_counts_zero(two_files):
    tmp_path, a, b, _ = two_files
    out = str(tmp_path / "out.csv")
    result = _run_cli([f"--input_files={a},{b}", f"--output_file={out}"])
    assert result["weights"] == [0.5, 0.5]
    got = _as_dict(out)
    assert list(got) == ["0001", "nan"]            # first file's order
    expected = {"0001": [(2, 0.6), (1, 0.45), (5, 0.05)],
                "nan": [(4, 0.4), (3, 0.3)]}
    for video, pairs in expected.items():
        assert [c for c, _ in got[video]] == [c for c, _ in pairs]
        np.testing.assert_allclose([s for _, s in got[video]],
                                   [s for _, s in pairs], rtol=1e-6)

    _run_cli([f"--input_files={a},{b}", f"--output_file={out}",
              "--top_k=1"])
    assert {k: [c for c, _ in v] for k, v in _as_dict(out).items()} == {
        "0001": [2], "nan": [4]}


def test_ensemble_weights_are_normalised(two_files):
    tmp_path, a, b, _ = two_files
    out = str(tmp_path / "out.csv")
    result = _run_cli([f"--input_files={a},{b}", "--weights=3,1",
                       f"--output_file={out}"])
    assert result["weights"] == [0.75, 0.25]
    got = _as_dict(out)
    expected = {"0001": [(1, 0.675), (2, 0.55), (5, 0.025)],
                "nan": [(3, 0.35), (4, 0.2)]}
    for video, pairs in expected.items():
        assert [c for c, _ in got[video]] == [c for c, _ in pairs]
        np.testing.assert_allclose([s for _, s in got[video]],
                                   [s for _, s in pairs], rtol=1e-6)


def test_ensemble_refuses_different_video_sets(two_files):
    tmp_path, a, _, _ = two_files
    other = _write_text(tmp_path / "c.csv", ["0001,1 0.5", "6l0e,2 0.5"])
    with pytest.raises(submission.PredictionFileError) as error:
        _run_cli([f"--input_files={a},{other}",
                  f"--output_file={tmp_path / 'out.csv'}"])
    message = str(error.value)
    assert "'nan'" in message and a in message and other in message
    subset = _write_text(tmp_path / "d.csv", ["0001,1 0.5"])
    with pytest.raises(submission.PredictionFileError, match="'nan'"):
        _run_cli([f"--input_files={subset},{a}",
                  f"--output_file={tmp_path / 'out.csv'}"])
    assert not os.path.exists(tmp_path / "out.csv")


def test_ensemble_reports_gap_with_labels(two_files, capsys):
    tmp_path, a, b, labels = two_files
    result = _run_cli([f"--input_files={a},{b}", f"--labels_file={labels}"])
    # a: pooled 0.9 (hit) 0.5 0.4 -> 1/2 * 1; b: 0.8 (hit) 0.7 0.2 0.1.
    # ensemble: 0.6, 0.45 (hit, 1/2), 0.4 (hit, 2/3), 0.3, 0.05.
    np.testing.assert_allclose(result["input_gaps"], [0.5, 0.5])
    np.testing.assert_allclose(result["ensemble_gap"], 0.5 * (1 / 2 + 2 / 3))
    printed = capsys.readouterr().out
    assert "GAP@20" in printed and "0.58333" in printed and a in printed


def test_ensemble_gap_matches_vidcore_metrics(tmp_path):
    rng = np.random.default_rng(1)
    n, v = 200, 30
    truth = rng.random((n, v)) < 0.1
    ids = [f"{i:03d}" for i in range(n)]
    files = []
    for m, noise in enumerate([0.6, 1.0]):
        dense = truth * 0.5 + rng.random((n, v)) * noise
        classes, scores = submission.top_k_predictions(dense, 8)
        order = rng.permutation(n) if m else np.arange(n)
        path = str(tmp_path / f"m{m}.csv")
        submission.write_video_predictions(path, np.array(ids)[order],
                                           classes[order], scores[order])
        files.append(path)
    labels = str(tmp_path / "labels.csv")
    submission.write_labels(labels, ids, [np.flatnonzero(t) for t in truth])
    out = str(tmp_path / "out.csv")
    result = _run_cli([f"--input_files={','.join(files)}", "--top_k=5",
                       f"--labels_file={labels}", f"--output_file={out}"])
    truth_lists = [np.flatnonzero(t) for t in truth]
    for m, path in enumerate(files):
        read_ids, classes, scores = submission.read_video_predictions(path)
        order = np.argsort(read_ids.astype(int))
        if m == 0:
            expected = metrics.global_average_precision_sparse(
                scores[order], classes[order], truth_lists, top_k=5)
            assert result["input_gaps"][0] == pytest.approx(expected,
                                                            abs=1e-12)
    dense = np.zeros((n, v), np.float32)
    for path in files:
        read_ids, classes, scores = submission.read_video_predictions(path)
        rows = read_ids.astype(int)[:, None]
        np.add.at(dense, (np.broadcast_to(rows, classes.shape), classes),
                  scores / 2)
    expected = metrics.global_average_precision(dense, truth, top_k=5)
    assert result["ensemble_gap"] == pytest.approx(expected, abs=1e-6)


def test_fit_weights_beats_equal_weights_and_favours_good_model(tmp_path):
    rng = np.random.default_rng(0)
    n, v = 600, 40
    truth = rng.random((n, v)) < 0.06
    truth[np.arange(n), rng.integers(0, v, n)] = True
    ids = np.array([f"{i:04d}" for i in range(n)])
    files = []
    for name, signal in [("noisy", 0.15), ("good", 0.6)]:
        dense = truth * signal + rng.random((n, v))
        classes, scores = submission.top_k_predictions(dense / dense.max(), 10)
        path = str(tmp_path / f"{name}.csv")
        submission.write_video_predictions(path, ids, classes, scores)
        files.append(path)
    labels = str(tmp_path / "labels.csv")
    submission.write_labels(labels, ids, [np.flatnonzero(t) for t in truth])
    weights_json = str(tmp_path / "weights.json")
    out = str(tmp_path / "out.csv")
    result = _run_cli([f"--input_files={','.join(files)}",
                       f"--labels_file={labels}", "--fit_weights",
                       f"--weights_output={weights_json}",
                       f"--output_file={out}", "--chunk_size=128"])
    assert result["ensemble_gap"] >= result["equal_weights_gap"]
    assert result["ensemble_gap"] > max(result["input_gaps"]) - 1e-12
    assert result["weights"][1] > 0.7
    assert sum(result["weights"]) == pytest.approx(1.0)
    with open(weights_json) as f:
        saved = json.load(f)
    assert saved["weights"] == result["weights"]
    assert saved["ensemble_gap"] == result["ensemble_gap"]
    # Applying the saved weights reproduces the fitted ensemble's GAP.
    again = _run_cli([f"--input_files={','.join(files)}",
                      f"--labels_file={labels}",
                      f"--weights={saved['weights_flag']}"])
    assert again["ensemble_gap"] == pytest.approx(result["ensemble_gap"],
                                                  abs=1e-4)


def test_fit_weights_coordinate_ascent_is_deterministic():
    target = np.array([0.7, 0.2, 0.1])
    evaluate = lambda w: -float(np.abs(w - target).sum())
    weights, best, equal, count = ensemble.fit_weights(evaluate, 3)
    assert best >= equal and best > -0.02
    np.testing.assert_allclose(weights, target, atol=0.01)
    again = ensemble.fit_weights(evaluate, 3)
    np.testing.assert_array_equal(again[0], weights)
    # A flat objective keeps the equal weights.
    flat = ensemble.fit_weights(lambda w: 1.0, 4)
    np.testing.assert_array_equal(flat[0], np.full(4, 0.25))


@pytest.mark.parametrize("args, message", [
    (["--input_files={a},{b}", "--weights=1", "--output_file={out}"],
     "--weights has 1 values but --input_files has 2 files"),
    (["--input_files={a},{b}", "--fit_weights", "--output_file={out}"],
     "--fit_weights needs --labels_file"),
    (["--input_files={a},{missing}", "--output_file={out}"],
     "input file not found: {missing}"),
    (["--input_files={a}"], "--output_file is required"),
    (["--input_files={a},{b}", "--weights=1,x", "--output_file={out}"],
     "expected comma-separated numbers"),
])
def test_cli_errors_are_one_line(two_files, capsys, args, message):
    tmp_path, a, b, _ = two_files
    names = dict(a=a, b=b, out=tmp_path / "out.csv",
                 missing=tmp_path / "missing.csv")
    FLAGS.unparse_flags()
    FLAGS(["yt8m.ensemble"] + [arg.format(**names) for arg in args])
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.guarded(ensemble.main)(["yt8m.ensemble"])
    finally:
        FLAGS.unparse_flags()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert message.format(**names) in err
    assert not os.path.exists(names["out"])
