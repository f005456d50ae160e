"""Tests of the MIL-NCE converter (tfrecord_tools.milnce_writer).

The videos are the REAL clips of kinetics/data/clips (see its README.txt);
the caption and list CSVs are written by the tests; the corrupt video is
made by the tests (random bytes).
"""

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import features as F
from tfrecord_tools import cli, conversion
from tfrecord_tools import milnce_writer as mw

av = pytest.importorskip("av")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIPS = os.path.join(REPO_ROOT, "kinetics", "data", "clips")
CARPHONE = os.path.join(CLIPS, "answering questions",
                        "carphone_distorted.mp4")  # 176x144, 4.004 s
CRICKET = os.path.join(CLIPS, "playing cricket",
                       "v_CricketShot_g04_c01.mp4")  # 224x224, 3.16 s
BUNNY = os.path.join(CLIPS, "yawning",
                     "bigbuckbunny_000001_000005.mp4")  # 320x180, 4.0 s
DURATIONS = {CARPHONE: 4.004, CRICKET: 3.16, BUNNY: 4.0}
SOURCE_FRAMES = {CARPHONE: 120, CRICKET: 79}
SIZES_256 = {CARPHONE: (256, 313), CRICKET: (256, 256), BUNNY: (256, 455)}


# -- helpers ------------------------------------------------------------------


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def copy(src, dest):
    os.makedirs(os.path.dirname(str(dest)), exist_ok=True)
    shutil.copyfile(src, dest)


def parsed_records(result):
    return [mw.parse_milnce_example(r.numpy())
            for r in tf.data.TFRecordDataset(result.paths)]


def read_rejects(result):
    with open(result.rejects_path) as f:
        return {r["item"]: r["reason"] for r in map(json.loads, f)}


def shard_bytes(directory):
    """{file name: bytes} of the visible output files."""
    return {n: open(os.path.join(directory, n), "rb").read()
            for n in sorted(os.listdir(directory)) if not n.startswith(".")}


def run_main(*args):
    """Parses args into the converter's own FLAGS and calls its main."""
    mw.FLAGS.unparse_flags()
    return mw.main(mw.FLAGS(["prog", *[str(a) for a in args]]))


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


CAPTIONS = {  # video id -> rows of its caption file (file order kept)
    "carphone_distorted": [("0.5", "2.25", "connect the cable"),
                           ("3", "3.9", "now the phone rings"),
                           ("1.5", "2", "an earlier caption later in file")],
    "v_CricketShot_g04_c01": [("0", "3.16", "a batsman plays a shot")],
}


@pytest.fixture
def howto_tree(tmp_path):
    """videos/ (one in a sub-folder), captions/ and the list CSV."""
    videos, captions = tmp_path / "videos", tmp_path / "captions"
    copy(CARPHONE, videos / "carphone_distorted.mp4")
    copy(CRICKET, videos / "sub" / "v_CricketShot_g04_c01.mp4")
    captions.mkdir()
    for video_id, rows in CAPTIONS.items():
        write_csv(captions / f"{video_id}.csv", ["start", "end", "text"],
                  rows)
    listed = ["carphone_distorted.mp4", "sub/v_CricketShot_g04_c01.mp4"]
    csv_path = write_csv(tmp_path / "howto100m_videos.csv", ["video_path"],
                         [[p] for p in listed])
    return str(videos), str(captions), csv_path


# -- HowTo100M ----------------------------------------------------------------


def test_howto100m_captions_round_trip_and_frames_at_5_fps(howto_tree,
                                                           tmp_path):
    videos, captions, csv_path = howto_tree
    result = mw.convert_dataset("howto100m", str(tmp_path / "out"), videos,
                                csv_path, captions, progress=False)
    assert result.rejects == [] and result.num_records == 2
    parsed = parsed_records(result)
    assert [p["media_id"] for p in parsed] == ["carphone_distorted",
                                               "v_CricketShot_g04_c01"]
    assert [p["data_path"] for p in parsed] == [
        "carphone_distorted.mp4", "sub/v_CricketShot_g04_c01.mp4"]
    for p, source in zip(parsed, [CARPHONE, CRICKET]):
        rows = CAPTIONS[p["media_id"]]
        assert p["caption_text"] == [t for _, _, t in rows]  # file order
        np.testing.assert_array_equal(
            p["caption_start"], np.float32([float(s) for s, _, _ in rows]))
        np.testing.assert_array_equal(
            p["caption_end"], np.float32([float(e) for _, e, _ in rows]))
        assert p["splits"] is None and p["label_index"] is None
        assert p["frame_rate"] == 5.0
        assert (p["start_us"], p["end_us"]) == (
            0, round(DURATIONS[source] * 1e6))
        assert len(p["frames"]) == math.ceil(DURATIONS[source] * 5)
        assert (p["height"], p["width"]) == SIZES_256[source]
        assert tf.io.decode_jpeg(p["frames"][-1]).shape == \
            SIZES_256[source] + (3,)
    assert [len(p["frames"]) for p in parsed] == [21, 16]
    options = json.load(open(result.manifest_path))["options"]
    assert options["fps"] == 5.0 and options["short_side"] == 256
    assert options["dataset"] == "howto100m"


def test_caption_keys_parse_with_tf_ops(howto_tree, tmp_path):
    videos, captions, csv_path = howto_tree
    result = mw.convert_dataset("howto100m", str(tmp_path / "out"), videos,
                                csv_path, captions, progress=False,
                                settings=mw.default_settings(
                                    "howto100m", short_side=32))
    serialized = next(iter(tf.data.TFRecordDataset(result.paths)))
    context = {F.VIDEO_CAPTION_STRING: tf.io.VarLenFeature(tf.string),
               F.VIDEO_CAPTION_START: tf.io.VarLenFeature(tf.float32),
               F.VIDEO_CAPTION_END: tf.io.VarLenFeature(tf.float32),
               F.VIDEO_START_TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
               F.VIDEO_FRAME_RATE: tf.io.FixedLenFeature([], tf.float32)}
    sequence = {F.VIDEO_IMAGE_ENCODED:
                tf.io.FixedLenSequenceFeature([], tf.string)}
    ctx, seq = tf.io.parse_single_sequence_example(serialized, context,
                                                   sequence)
    assert ctx[F.VIDEO_CAPTION_STRING].values.numpy().tolist() == [
        t.encode() for _, _, t in CAPTIONS["carphone_distorted"]]
    np.testing.assert_array_equal(ctx[F.VIDEO_CAPTION_END].values.numpy(),
                                  np.float32([2.25, 3.9, 2.0]))
    assert seq[F.VIDEO_IMAGE_ENCODED].shape == (21,)


def test_plain_list_without_header(howto_tree, tmp_path):
    videos, captions, _ = howto_tree
    plain = tmp_path / "list.txt"
    plain.write_text("carphone_distorted.mp4\n\n"
                     "sub/v_CricketShot_g04_c01.mp4\n")
    items, classes = mw.read_items("howto100m", videos, str(plain),
                                   captions)
    assert classes == []
    assert [(i["id"], i["media_id"], i["caption_file"]) for i in items] == [
        ("carphone_distorted.mp4", "carphone_distorted",
         os.path.join(captions, "carphone_distorted.csv")),
        ("sub/v_CricketShot_g04_c01.mp4", "v_CricketShot_g04_c01",
         os.path.join(captions, "v_CricketShot_g04_c01.csv"))]
    plain.write_text("a.mp4\nb.mp4,extra\n")
    with pytest.raises(cli.InputError,
                       match=r"list\.txt:2: malformed line 'b\.mp4,extra'"):
        mw.read_items("howto100m", videos, str(plain), captions)
    plain.write_text("video_path\nx/a.mp4\ny/a.mp4\n")
    with pytest.raises(cli.InputError,
                       match=r"list\.txt:3: duplicate video id 'a' \(first "
                             r"at \S+list\.txt:2\)"):
        mw.read_items("howto100m", videos, str(plain), captions)


def test_each_reject_kind_is_listed_with_its_reason(howto_tree, tmp_path):
    videos, captions, _ = howto_tree
    bad = {  # video id -> caption file text
        "nonnumber": "start,end,text\n1,2,fine\n1.5,soon,not a time\n",
        "reversed": "start,end,text\n1,2,fine\n\n3,2.5,ends first\n",
        "short_row": "start,end,text\n1,2,fine\n2,3\n",
        "no_column": "start,text\n1,no end column\n",
        "empty": "start,end,text\n",
    }
    listed = ["carphone_distorted.mp4", "unreadable.mp4", "missing.mp4",
              "no_captions.mp4"] + [f"{v}.mp4" for v in bad]
    for name in listed[3:]:
        copy(CARPHONE, os.path.join(videos, name))
    for video_id, text in bad.items():
        with open(os.path.join(captions, f"{video_id}.csv"), "w") as f:
            f.write(text)
    with open(os.path.join(videos, "unreadable.mp4"), "wb") as f:
        f.write(np.random.default_rng(0).integers(
            0, 256, 4000, np.uint8).tobytes())
    with open(os.path.join(captions, "unreadable.csv"), "w") as f:
        f.write("start,end,text\n0,1,a caption\n")
    csv_path = write_csv(tmp_path / "list.csv", ["video_path"],
                         [[p] for p in listed])
    result = mw.convert_dataset(
        "howto100m", str(tmp_path / "out"), videos, csv_path, captions,
        settings=mw.default_settings("howto100m", short_side=32),
        progress=False)
    assert [p["media_id"] for p in parsed_records(result)] == [
        "carphone_distorted"]
    cap = re.escape(captions + os.sep)
    patterns = {
        "unreadable.mp4": r"cannot open \S+unreadable\.mp4: InvalidDataError",
        "missing.mp4": r"^no video file: looked for \S+missing\.mp4$",
        "no_captions.mp4": rf"^no caption file {cap}no_captions\.csv$",
        "nonnumber.mp4": rf"^{cap}nonnumber\.csv:3: end 'soon' is not a "
                         r"number",
        "reversed.mp4": rf"^{cap}reversed\.csv:4: caption starts after it "
                        r"ends \(3\.0 > 2\.5\)",
        "short_row.mp4": rf"^{cap}short_row\.csv:3: malformed line '2,3': "
                         r"expected 3 fields, got 2",
        "no_column.mp4": rf"^{cap}no_column\.csv:1: expected a header with "
                         r"columns start,end,text",
        "empty.mp4": rf"^{cap}empty\.csv: no captions",
    }
    rejects = read_rejects(result)
    assert sorted(rejects) == sorted(patterns)
    for item, pattern in patterns.items():
        assert re.search(pattern, rejects[item]), (item, rejects[item])
    manifest = json.load(open(result.manifest_path))
    assert manifest["num_records"] == 1 and manifest["num_rejects"] == 8


def test_resume_converts_nothing_the_second_time(howto_tree, tmp_path):
    videos, captions, csv_path = howto_tree
    out = str(tmp_path / "out")
    settings = mw.default_settings("howto100m", short_side=32)
    first = mw.convert_dataset("howto100m", out, videos, csv_path, captions,
                               settings=settings, num_shards=2,
                               progress=False)
    files = shard_bytes(out)
    assert first.resumed == [] and len(files) == 4  # 2 shards + 2 lists
    shutil.rmtree(videos)  # a second conversion could not decode anything
    os.makedirs(videos)
    again = mw.convert_dataset("howto100m", out, videos, csv_path, captions,
                               settings=settings, num_shards=2,
                               progress=False)
    assert again.resumed == [os.path.basename(p) for p in first.paths]
    assert again.num_records == 2 and shard_bytes(out) == files
    # Other settings are another conversion: nothing is reused.
    with pytest.raises(conversion.ConversionError,
                       match="all 2 inputs were rejected"):
        mw.convert_dataset("howto100m", out, videos, csv_path, captions,
                           settings=mw.default_settings("howto100m",
                                                        short_side=48),
                           num_shards=2, progress=False)


def test_local_and_beam_runners_write_identical_shards(howto_tree, tmp_path):
    pytest.importorskip("apache_beam")
    videos, captions, csv_path = howto_tree
    settings = mw.default_settings("howto100m", fps=2, short_side=32)
    for runner in ("local", "beam"):
        mw.convert_dataset("howto100m", str(tmp_path / runner), videos,
                           csv_path, captions, settings=settings,
                           num_shards=2, progress=False, runner=runner,
                           beam_options="--direct_num_workers=1")
    local = shard_bytes(tmp_path / "local")
    assert len(local) == 4 and shard_bytes(tmp_path / "beam") == local


# -- evaluation sets ----------------------------------------------------------


def test_msrvtt_one_caption_over_the_whole_video(tmp_path):
    videos = tmp_path / "msrvtt"
    copy(CARPHONE, videos / "video7.mp4")
    copy(CRICKET, videos / "video9.mp4")
    csv_path = write_csv(tmp_path / "msrvtt_test.csv",
                         ["key", "vid_key", "video_id", "sentence"],
                         [["ret0", "msr9", "video9", "a man plays cricket"],
                          ["ret1", "msr8", "video8", "not downloaded"],
                          ["ret2", "msr7", "video7", "someone on a phone"]])
    result = mw.convert_dataset("msrvtt", str(tmp_path / "out"),
                                str(videos), csv_path, progress=False)
    assert os.path.basename(result.paths[0]).startswith("msrvtt_test-")
    parsed = parsed_records(result)
    assert [p["media_id"] for p in parsed] == ["video9", "video7"]
    for p, source in zip(parsed, [CRICKET, CARPHONE]):
        assert p["caption_start"] == [0.0]
        assert p["caption_end"] == [np.float32(DURATIONS[source])]
        assert p["end_us"] == round(DURATIONS[source] * 1e6)
        assert len(p["frames"]) == math.ceil(DURATIONS[source] * 5)
    assert [p["caption_text"] for p in parsed] == [
        ["a man plays cricket"], ["someone on a phone"]]
    assert read_rejects(result) == {
        "video8": f"no video file: looked for {videos / 'video8.mp4'}"}


def test_packaged_csvs_are_the_defaults(tmp_path):
    items, _ = mw.read_items("msrvtt", str(tmp_path))
    assert len(items) == 1000 and items[0]["media_id"] == "video9770"
    assert items[0]["captions"] == [
        (0.0, None, "a person is connecting something to system")]
    items, _ = mw.read_items("youcook", str(tmp_path))
    assert len(items) == 3350
    assert items[0]["media_id"] == "xHr8X2Wpmno_47_60"
    assert (items[0]["start"], items[0]["end"]) == (47.0, 63.3)
    ids = [i["media_id"] for i in items]
    assert len(set(ids)) == 3350 and "oJZUxU9szWA_120_252_2" in ids
    items, classes = mw.read_items("hmdb", str(tmp_path))
    assert len(items) == 6766 and len(classes) == 51
    assert classes[:2] == ["brush_hair", "cartwheel"]
    assert items[0]["candidates"][0][1] == os.path.join(
        "brush_hair", "April_09_brush_hair_u_nm_np1_ba_goo_0.avi")
    assert (items[0]["label_index"], items[0]["splits"]) == (0, [1, 1, 2])
    train = [sum(i["splits"][k] == 1 for i in items) for k in range(3)]
    test = [sum(i["splits"][k] == 2 for i in items) for k in range(3)]
    assert train == [3570] * 3 and test == [1530] * 3  # the spec's counts


def test_youcook_segments_with_margin_clamped_to_the_video(tmp_path):
    videos = tmp_path / "youcook"
    copy(BUNNY, videos / "validation" / "101" / "bunnyid.mp4")
    copy(CRICKET, videos / "cricketid.mkv")  # flat folder, other extension
    rows = [["2", "1", "101", "peel the carrots", "bunnyid"],
            ["1", "0.5", "113", "mix the batter", "cricketid"],
            ["2", "1", "101", "the same step twice", "bunnyid"],
            ["12", "10", "101", "after the end", "bunnyid"],
            ["5", "4", "101", "no such video", "otherid"]]
    csv_path = write_csv(tmp_path / "validation_youcook.csv",
                         ["end", "start", "task", "text", "video_id"], rows)
    result = mw.convert_dataset("youcook", str(tmp_path / "out"),
                                str(videos), csv_path, progress=False)
    parsed = parsed_records(result)
    assert [(p["media_id"], p["data_path"]) for p in parsed] == [
        ("bunnyid_1_2", "validation/101/bunnyid.mp4"),
        ("cricketid_0.5_1", "cricketid.mkv"),
        ("bunnyid_1_2_2", "validation/101/bunnyid.mp4")]
    bunny, cricket, again = parsed
    # [1, 2 + 3.3] clamped to the 4 s video; [0.5, 1 + 3.3] to 3.16 s.
    assert (bunny["start_us"], bunny["end_us"]) == (1_000_000, 4_000_000)
    assert len(bunny["frames"]) == math.ceil((4.0 - 1) * 5) == 15
    assert (cricket["start_us"], cricket["end_us"]) == (500_000, 3_160_000)
    assert len(cricket["frames"]) == math.ceil((3.16 - 0.5) * 5) == 14
    assert (bunny["caption_start"], bunny["caption_end"]) == ([1.0], [2.0])
    assert (cricket["caption_start"], cricket["caption_end"]) == ([0.5],
                                                                  [1.0])
    assert cricket["caption_text"] == ["mix the batter"]
    assert again["frames"] == bunny["frames"]
    rejects = read_rejects(result)
    assert re.search(r"bunnyid\.mp4: segment \[10, 15\.3\) s starts at or "
                     r"after the end of the video \(4 s\)",
                     rejects["bunnyid_10_12"])
    assert rejects["otherid_4_5"].startswith(
        f"no video file: looked for {videos}/validation/101/otherid.mp4, ")
    assert rejects["otherid_4_5"].endswith(f"{videos}/otherid.webm")
    # A shorter margin stores a shorter segment.
    short = mw.convert_dataset("youcook", str(tmp_path / "short"),
                               str(videos), csv_path, progress=False,
                               segment_margin=0.0)
    assert parsed_records(short)[0]["end_us"] == 2_000_000


def test_hmdb_every_frame_label_and_splits(tmp_path):
    videos = tmp_path / "hmdb"
    copy(CRICKET, videos / "swing_baseball" / "cricket_0.avi")
    copy(CARPHONE, videos / "talk" / "carphone_1.avi")
    csv_path = write_csv(
        tmp_path / "hmdb51.csv",
        ["video_id", "label", "split1", "split2", "split3"],
        [["carphone_1.avi", "talk_test", "1", "2", "0"],
         ["cricket_0.avi", "swing_baseball_test", "2", "0", "1"],
         ["gone_2.avi", "brush_hair_test", "1", "1", "1"]])
    assert mw.default_settings("hmdb").fps == 0.0
    result = mw.convert_dataset("hmdb", str(tmp_path / "out"), str(videos),
                                csv_path, progress=False)
    assert os.path.basename(result.paths[0]).startswith("hmdb51-")
    parsed = parsed_records(result)
    classes = ["brush_hair", "swing_baseball", "talk"]  # sorted
    assert json.load(open(result.manifest_path))["options"]["classes"] == \
        classes
    expected = [("carphone_1", CARPHONE, "talk", [1, 2, 0]),
                ("cricket_0", CRICKET, "swing_baseball", [2, 0, 1])]
    for p, (media_id, source, label, splits) in zip(parsed, expected):
        assert p["media_id"] == media_id
        assert (p["label"], p["label_index"]) == (label,
                                                  classes.index(label))
        assert p["splits"] == splits
        assert len(p["frames"]) == SOURCE_FRAMES[source]  # every frame
        assert (p["height"], p["width"]) == SIZES_256[source]
        assert p["caption_text"] == [] and p["caption_start"] == []
    assert parsed[0]["data_path"] == os.path.join("talk", "carphone_1.avi")
    assert list(read_rejects(result)) == ["gone_2.avi"]


@pytest.mark.parametrize("dataset, header, rows, pattern", [
    ("youcook", ["end", "start", "task", "text", "video_id"],
     [["3", "x", "1", "t", "v"]], r"yc\.csv:2: start 'x' is not a number"),
    ("youcook", ["end", "start", "task", "text", "video_id"],
     [["3", "1", "1", "t", "v"], ["1", "3", "1", "t", "v"]],
     r"yc\.csv:3: end 1 is before start 3"),
    ("youcook", ["end", "start", "text", "video_id"],
     [["3", "1", "t", "v"]], r"yc\.csv:1: header .* lacks columns \['task'\]"),
    ("msrvtt", ["key", "video_id", "sentence"], [["k", "v", "a", "b"]],
     r"yc\.csv:2: malformed line 'k,v,a,b': expected 3 fields"),
    ("hmdb", ["video_id", "label", "split1", "split2", "split3"],
     [["a.avi", "x_test", "1", "3", "0"]],
     r"yc\.csv:2: split2 must be 0 \(unused\), 1 \(train\) or 2 \(test\), "
     r"got '3'"),
])
def test_evaluation_csv_errors_name_file_and_line(tmp_path, dataset, header,
                                                  rows, pattern):
    csv_path = write_csv(tmp_path / "yc.csv", header, rows)
    with pytest.raises(cli.InputError, match=pattern):
        mw.read_items(dataset, str(tmp_path), csv_path)


# -- CLI ----------------------------------------------------------------------


def test_cli_end_to_end_and_user_errors(howto_tree, tmp_path, capsys):
    videos, captions, csv_path = howto_tree
    out = tmp_path / "out"
    args = [f"--train_csv={csv_path}", f"--video_path={videos}",
            f"--caption_root={captions}", f"--output_dir={out}",
            "--short_side=32", "--fps=2", "--progress=false"]
    assert run_main(*args) == 0
    assert re.fullmatch(r"Wrote 2 records from 2 items to 1 shards in \S+; "
                        r"0 rejected", capsys.readouterr().out.strip())
    parsed = [mw.parse_milnce_example(r.numpy()) for r in
              tf.data.TFRecordDataset(str(out / "train-00000-of-00001."
                                                "tfrecord"))]
    assert [len(p["frames"]) for p in parsed] == [9, 7]  # ceil(D * 2)
    assert parsed[0]["height"] == 32
    assert run_main(*args) == 0
    assert "1 shards kept from an earlier run" in capsys.readouterr().out
    assert run_main(*args, "--csv=x.csv") == 1
    assert "the HowTo100M video list is --train_csv" in one_error_line(
        capsys)
    assert run_main("--dataset=msrvtt", f"--video_path={tmp_path / 'no'}",
                    f"--output_dir={out}") == 1
    assert re.search(r"--video_path: no such directory \S+no$",
                     one_error_line(capsys))
    assert run_main("--dataset=hmdb", f"--video_path={videos}",
                    f"--caption_root={captions}",
                    f"--output_dir={out}") == 1
    assert "--caption_root is for --dataset=howto100m" in one_error_line(
        capsys)
    assert run_main(f"--train_csv={csv_path}", f"--video_path={videos}",
                    f"--output_dir={out}") == 1
    assert "needs --caption_root" in one_error_line(capsys)


def test_help_exits_0_and_lists_the_dataset_flags():
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecord_tools.milnce_writer", "--help"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for flag in ("--dataset", "--train_csv", "--csv", "--video_path",
                 "--caption_root", "--segment_margin", "--fps",
                 "--short_side", "--output_dir", "--runner"):
        assert f"\n  {flag}" in proc.stdout, flag
    assert "input flags:" in proc.stdout and "frames flags:" in proc.stdout


@pytest.mark.slow  # a fresh interpreter plus a spawn pool
def test_two_workers_write_the_same_shards_as_one(howto_tree, tmp_path):
    """`python -m` with two spawn workers (items and the convert function
    pickled into them) writes the same files as one worker here."""
    videos, captions, csv_path = howto_tree
    args = [f"--train_csv={csv_path}", f"--video_path={videos}",
            f"--caption_root={captions}", "--num_shards=2", "--fps=2",
            "--short_side=32"]
    assert run_main(*args, f"--output_dir={tmp_path / 'one'}",
                    "--progress=false") == 0
    one = shard_bytes(tmp_path / "one")
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecord_tools.milnce_writer", *args,
         f"--output_dir={tmp_path / 'two'}", "--num_workers=2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith(
        "Wrote 2 records from 2 items to 2 shards")
    assert len(one) == 4 and shard_bytes(tmp_path / "two") == one
