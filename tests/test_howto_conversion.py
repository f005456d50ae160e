"""Tests of the conversion mechanism and the HowTo100M converters.

All features here are SYNTHETIC (random numbers written by the tests); the
MSR-VTT and YouCook2 caption files are real copies (tests/data, see
NOTICE.md).
"""

import csv
import functools
import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import features as F
from tfrecord_tools import cli
from tfrecord_tools import conversion
from tfrecord_tools import howto_eval_sets as eval_sets
from tfrecord_tools import howto_writer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.join(REPO_ROOT, "howto", "data")  # real caption files
MSRVTT_CSV = os.path.join(DATA_DIR, "msrvtt_test.csv")
YOUCOOK_CSV = os.path.join(DATA_DIR, "validation_youcook.csv")
DIM_2D, DIM_3D = 8, 4  # small synthetic feature sizes

try:
    import apache_beam  # noqa: F401
    HAVE_BEAM = True
except ImportError:
    HAVE_BEAM = False


# -- helpers ------------------------------------------------------------------


def run_main(module, *args):
    """Parses args into the module's own FLAGS and calls its main."""
    module.FLAGS.unparse_flags()
    argv = module.FLAGS(["prog", *[str(a) for a in args]])
    return module.main(argv)


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def shard_bytes(directory):
    """{file name: bytes} of the visible output files."""
    return {n: open(os.path.join(directory, n), "rb").read()
            for n in sorted(os.listdir(directory)) if not n.startswith(".")}


def read_records(paths):
    return [r.numpy() for r in tf.data.TFRecordDataset(list(paths))]


def read_rejects(directory, prefix):
    with open(os.path.join(directory, f"rejects-{prefix}.jsonl")) as f:
        return {r["item"]: r["reason"] for r in map(json.loads, f)}


def synthetic_frames(seed, num_frames, dim, dtype=np.float16):
    """SYNTHETIC L2-normalised frame features."""
    x = np.random.default_rng(seed).normal(size=(num_frames, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)


# Module-level convert functions (picklable for pool and Beam workers).


def echo_convert(item):
    """item: dict id, n (records), reject (reason or None), fail."""
    if item.get("reject"):
        raise conversion.Reject(item["reject"])
    if item.get("fail"):
        raise ValueError("simulated bug")
    return [f"{item['id']}:{j}".encode() for j in range(item["n"])]


def flaky_convert(item, marker):
    """Fails on the item with fail_once=True the first time only."""
    if item.get("fail_once") and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("simulated crash")
    return echo_convert(item)


def dying_convert(item):
    """Kills its worker process (simulates an OOM kill)."""
    if item.get("fail"):
        os._exit(3)
    return echo_convert(item)


def echo_items(n=11):
    items = [{"id": f"it{i}", "n": i % 3} for i in range(n)]
    if n > 4:
        items[4]["reject"] = "item 4 is bad"
    return items


# -- record layouts -----------------------------------------------------------


def test_video_example_round_trip_float16_exact_and_tf_parse():
    captions = {"start": [0.0, 2.5, 7.25], "end": [2.0, 7.0, 9.5],
                "text": ["open the box", "", "pour ümlaut, water"]}
    frames_2d = synthetic_frames(0, 10, DIM_2D)
    frames_3d = synthetic_frames(1, 15, DIM_3D).astype(np.float32) * 3
    example = howto_writer.make_video_example(
        "vid_1", captions, {"2d": howto_writer.Stream(frames_2d, 1.0),
                            "3d": (frames_3d, 1.5)})
    serialized = example.SerializeToString()
    back = howto_writer.parse_video_example(serialized)
    assert back["video_id"] == "vid_1"
    assert back["captions"] == captions
    np.testing.assert_array_equal(back["streams"]["2d"].frames, frames_2d)
    assert back["streams"]["2d"].frames.tobytes() == frames_2d.astype(
        "<f2").tobytes()  # bit-exact float16
    np.testing.assert_array_equal(back["streams"]["3d"].frames,
                                  frames_3d.astype(np.float16))  # rounded
    assert back["streams"]["3d"].rate == 1.5
    # The layout documented in input_pipeline.features parses with TF ops.
    context = {F.HOWTO_VIDEO_ID: tf.io.FixedLenFeature([], tf.string),
               F.HOWTO_CAPTION_START: tf.io.VarLenFeature(tf.float32),
               F.HOWTO_CAPTION_TEXT: tf.io.VarLenFeature(tf.string),
               F.howto_rate_key("3d"): tf.io.FixedLenFeature([], tf.float32),
               F.howto_dim_key("2d"): tf.io.FixedLenFeature([], tf.int64)}
    sequence = {F.howto_frames_key("2d"):
                tf.io.FixedLenSequenceFeature([], tf.string)}
    ctx, seq = tf.io.parse_single_sequence_example(serialized, context,
                                                   sequence)
    assert ctx[F.howto_dim_key("2d")].numpy() == DIM_2D
    assert ctx[F.howto_rate_key("3d")].numpy() == 1.5
    decoded = tf.io.decode_raw(seq[F.howto_frames_key("2d")], tf.float16)
    np.testing.assert_array_equal(decoded.numpy(), frames_2d)


@pytest.mark.parametrize("captions, frames, pattern", [
    ({"start": [3.0], "end": [1.0], "text": ["x"]}, None,
     r"caption 0 starts after it ends \(3.0 > 1.0\)"),
    ({"start": [], "end": [], "text": []}, None, "empty captions"),
    ({"start": [1.0], "end": [2.0]}, None, r"captions lack \['text'\]"),
    ({"start": ["a"], "end": [2.0], "text": ["x"]}, None,
     "caption 0 start 'a' is not a number"),
    (None, np.full((2, 3), np.nan, np.float32), "contain NaN"),
    (None, np.full((2, 3), 1e6, np.float32), "float16 range"),
    (None, np.zeros((0, 3), np.float16), "no frames"),
    (None, np.zeros((3,), np.float16), r"expected \[num_frames, dim\]"),
])
def test_video_example_bad_input(captions, frames, pattern):
    captions = captions or {"start": [0.0], "end": [1.0], "text": ["x"]}
    frames = np.zeros((2, 3), np.float16) if frames is None else frames
    with pytest.raises(cli.InputError, match=pattern):
        howto_writer.make_video_example("v", captions, {"2d": (frames, 1.0)})


def test_clip_example_round_trip_and_max_pooling():
    pooled_2d = np.random.default_rng(0).normal(size=DIM_2D).astype(
        np.float32)
    frames_3d = synthetic_frames(1, 5, DIM_3D)
    example = eval_sets.make_clip_example(
        "clip7", "vid", ["a man cooks", "café"], {"2d": pooled_2d,
                                                  "3d": frames_3d})
    back = eval_sets.parse_clip_example(example.SerializeToString())
    assert back["clip_id"] == "clip7" and back["video_id"] == "vid"
    assert back["texts"] == ["a man cooks", "café"]
    np.testing.assert_array_equal(back["pooled"]["2d"], pooled_2d)
    np.testing.assert_array_equal(back["pooled"]["3d"],
                                  frames_3d.max(axis=0).astype(np.float32))
    with pytest.raises(cli.InputError, match="caption 1 is empty"):
        eval_sets.make_clip_example("c", None, ["x", " "], {"2d": pooled_2d})


# -- conversion mechanism -----------------------------------------------------


def test_conversion_shards_rejects_manifest_and_summary(tmp_path):
    items = echo_items()
    result = conversion.convert_items(items, echo_convert, str(tmp_path),
                                      "train", 3, progress=False,
                                      options={"k": 1})
    names = [f"train-0000{k}-of-00003.tfrecord" for k in range(3)]
    assert [s["name"] for s in result.shards] == names
    assert [s["items"] for s in result.shards] == [4, 4, 3]  # contiguous
    records = read_records(result.paths)
    expected = [r for i in items if not i.get("reject")
                for r in echo_convert(i)]
    assert records == expected  # input order, nothing dropped
    assert read_rejects(tmp_path, "train") == {"it4": "item 4 is bad"}
    manifest = json.load(open(tmp_path / "manifest-train.json"))
    assert manifest["num_records"] == len(expected) == result.num_records
    assert manifest["num_rejects"] == 1 and manifest["options"] == {"k": 1}
    assert [s["records"] for s in manifest["shards"]] == [
        s["records"] for s in result.shards]
    assert re.fullmatch(
        rf"Wrote {len(expected)} records from 11 items to 3 shards in \S+; "
        r"1 rejected \(reasons in \S+rejects-train\.jsonl\)",
        result.summary())
    # No temporary files left; completion records are hidden.
    hidden = sorted(n for n in os.listdir(tmp_path) if n.startswith("."))
    assert hidden == [f".{n}.done.json" for n in names]


def test_conversion_error_names_item_and_keeps_finished_shards(tmp_path):
    items = echo_items()
    items[9]["fail"] = True  # in shard 2
    with pytest.raises(conversion.ConversionError,
                       match=r"item 'it9' of shard train-00002-of-00003"
                             r"\.tfrecord failed: ValueError: simulated bug"
                       ) as info:
        conversion.convert_items(items, echo_convert, str(tmp_path), "train",
                                 3, progress=False)
    assert "echo_convert" in info.value.worker_traceback
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord",
         ".train-00000-of-00003.tfrecord.done.json",
         ".train-00001-of-00003.tfrecord.done.json"])  # no partial, manifest


def test_resume_after_interruption_redoes_only_unfinished_shards(tmp_path):
    items = echo_items(12)
    items[6]["fail_once"] = True  # shard 1 of 3 (items 4-7)
    marker = str(tmp_path / "crashed")
    convert = functools.partial(flaky_convert, marker=marker)
    out, ref = tmp_path / "out", tmp_path / "ref"
    with pytest.raises(conversion.ConversionError, match="simulated crash"):
        conversion.convert_items(items, convert, str(out), "train", 3,
                                 progress=False)
    first = out / "train-00000-of-00003.tfrecord"
    os.utime(first, (1, 1))
    inode = os.stat(first).st_ino
    assert not (out / "train-00001-of-00003.tfrecord").exists()
    result = conversion.convert_items(items, convert, str(out), "train", 3,
                                      progress=False)
    assert result.resumed == ["train-00000-of-00003.tfrecord"]
    assert os.stat(first).st_mtime == 1 and os.stat(first).st_ino == inode
    conversion.convert_items(items, convert, str(ref), "train", 3,
                             progress=False)
    assert shard_bytes(out) == shard_bytes(ref)  # shards, manifest, rejects
    # Other options (or items) change the fingerprint: nothing is kept.
    again = conversion.convert_items(items, convert, str(out), "train", 3,
                                     progress=False, options={"dim": 2})
    assert again.resumed == []


def test_final_file_without_completion_record_is_redone(tmp_path):
    items = echo_items(4)
    conversion.convert_items(items, echo_convert, str(tmp_path), "t", 2,
                             progress=False)
    os.remove(tmp_path / ".t-00001-of-00002.tfrecord.done.json")
    result = conversion.convert_items(items, echo_convert, str(tmp_path),
                                      "t", 2, progress=False)
    assert result.resumed == ["t-00000-of-00002.tfrecord"]


def test_beam_runner_without_beam_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # import fails
    with pytest.raises(cli.InputError,
                       match=r"--runner=beam needs Apache Beam.*"
                             r"pip install 'vidmodels\[beam\]'"):
        conversion.convert_items(echo_items(), echo_convert, str(tmp_path),
                                 "t", 2, runner="beam")
    assert not os.listdir(tmp_path)


@pytest.mark.skipif(not HAVE_BEAM, reason="apache-beam is not installed "
                    "(pip install 'vidmodels[beam]')")
def test_beam_runner_failure_names_item_like_local(tmp_path):
    items = echo_items()
    items[9]["fail"] = True
    with pytest.raises(conversion.ConversionError,
                       match=r"item 'it9' of shard train-00002-of-00003"
                             r"\.tfrecord failed: ValueError: simulated bug"):
        conversion.convert_items(items, echo_convert, str(tmp_path), "train",
                                 3, runner="beam")
    assert not (tmp_path / "manifest-train.json").exists()
    assert (tmp_path / "train-00000-of-00003.tfrecord").exists()


@pytest.mark.slow  # starts a process pool (TensorFlow import per worker)
def test_killed_worker_is_one_clear_error(tmp_path):
    items = echo_items(6)
    items[5]["fail"] = True
    with pytest.raises(conversion.ConversionError,
                       match="a worker process died unexpectedly"):
        conversion.convert_items(items, dying_convert, str(tmp_path), "t", 2,
                                 num_workers=2, progress=False)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".partial")]


# -- HowTo100M training videos ------------------------------------------------

GOOD_VIDEOS = ("vidA", "vidB", "vidC", "vidD")
# video id -> (expected reject reason pattern)
REJECTED_VIDEOS = {
    "noFeat": r"missing 2D feature file: none of \[.*noFeat\.npy",
    "wrongDim2d": r"wrongDim2d\.npy: feature size 16 \(shape \[3, 16\]\), "
                  r"expected 8 \(--feature_dim_2d=8\)",
    "wrongDim3d": r"wrongDim3d\.npy: feature size 8 .*expected 4 "
                  r"\(--feature_dim_3d=4\)",
    "nanFeat": r"nanFeat\.npy: features contain NaN",
    "unreadable": r"unreadable\.npy: unreadable feature file",
    "noCaption": r"no captions for this video in \S+captions\.json",
    "emptyCaption": r"empty captions",
    "startAfterEnd": r"caption 1 starts after it ends \(5\.0 > 4\.0\)",
}


def _captions(k):
    return {"start": [0.0, 2.0 + k], "end": [3.0, 6.0 + k],
            "text": [f"step one of {k}", f"then, step two {k}"]}


@pytest.fixture(scope="module")
def howto_data(tmp_path_factory):
    """SYNTHETIC HowTo100M-style features, captions and video list."""
    root = tmp_path_factory.mktemp("howto")
    d2, d3 = root / "feat2d", root / "feat3d"
    (d2 / "cooking").mkdir(parents=True)
    d3.mkdir()
    videos, captions = {}, {}
    for k, vid in enumerate(GOOD_VIDEOS + tuple(REJECTED_VIDEOS)):
        f2 = synthetic_frames(k, 3 + k, DIM_2D)
        f3 = synthetic_frames(100 + k, 4 + k, DIM_3D)
        if vid == "vidB":  # npz (first array), in a task sub-directory
            np.savez(d2 / "cooking" / f"{vid}.npz", frames=f2, other=f3)
        elif vid == "wrongDim2d":
            np.save(d2 / f"{vid}.npy", synthetic_frames(k, 3, 16))
        elif vid == "nanFeat":
            f2 = f2.copy()
            f2[1, 2] = np.nan
            np.save(d2 / f"{vid}.npy", f2)
        elif vid == "unreadable":
            (d2 / f"{vid}.npy").write_bytes(b"not numpy")
        elif vid != "noFeat":
            np.save(d2 / f"{vid}.npy", f2)
        if vid == "wrongDim3d":
            f3 = synthetic_frames(k, 2, 8)
        np.save(d3 / f"{vid}.npy", f3)
        videos[vid] = (f2, f3)
        captions[vid] = _captions(k)
    del captions["noCaption"]
    captions["emptyCaption"] = {"start": [], "end": [], "text": []}
    captions["startAfterEnd"]["start"][1] = 5.0
    captions["startAfterEnd"]["end"][1] = 4.0
    with open(root / "captions.json", "w") as f:
        json.dump(captions, f)
    with open(root / "videos.csv", "w") as f:
        f.write("video_id,task,rank\n")
        for vid in videos:
            f.write(f"{vid},{'cooking' if vid == 'vidB' else ''},1\n")
    return {"root": root, "videos": videos, "captions": captions,
            "flags": [f"--csv={root / 'videos.csv'}",
                      f"--features_path={d2}", f"--features_path_3D={d3}",
                      f"--caption_path={root / 'captions.json'}",
                      f"--feature_dim_2d={DIM_2D}",
                      f"--feature_dim_3d={DIM_3D}", "--progress=false"]}


def test_howto_writer_cli_round_trip_and_every_reject(howto_data, tmp_path,
                                                      capsys):
    out = tmp_path / "out"
    rc = run_main(howto_writer, *howto_data["flags"], f"--output_dir={out}",
                  "--num_shards=3")
    assert rc == 0
    summary = capsys.readouterr().out.strip()
    assert re.fullmatch(r"Wrote 4 records from 12 items to 3 shards in \S+; "
                        r"8 rejected \(reasons in \S+\)", summary), summary
    records = read_records(
        sorted(str(p) for p in out.glob("train-*.tfrecord")))
    parsed = [howto_writer.parse_video_example(r) for r in records]
    assert [p["video_id"] for p in parsed] == list(GOOD_VIDEOS)
    for p in parsed:
        f2, f3 = howto_data["videos"][p["video_id"]]
        assert p["captions"] == howto_data["captions"][p["video_id"]]
        assert p["streams"]["2d"].frames.tobytes() == f2.tobytes()
        assert p["streams"]["3d"].frames.tobytes() == f3.tobytes()
        assert p["streams"]["2d"].rate == 1.0
        assert p["streams"]["3d"].rate == 1.5
    rejects = read_rejects(out, "train")
    assert sorted(rejects) == sorted(REJECTED_VIDEOS)
    for vid, pattern in REJECTED_VIDEOS.items():
        assert re.search(pattern, rejects[vid]), (vid, rejects[vid])
    manifest = json.load(open(out / "manifest-train.json"))
    assert manifest["options"]["feature_rate_3d"] == 1.5
    assert manifest["num_rejects"] == 8


def test_howto_writer_2d_only_and_csv_caption_dir(tmp_path):
    feats = tmp_path / "f2"
    caps = tmp_path / "caps"
    feats.mkdir()
    caps.mkdir()
    lines = {"good": 'start,end,text\n0,2.5,"chop, then fry"\n3,4,\n',
             "badLine": "start,end,text\n0,1,a\n2,3,b,extra\n",
             "badNumber": "start,end,text\n0,1,a\nx,3,b\n",
             "badOrder": "start,end,text\n0,1,a\n9,3,b\n",
             "noHeader": "0,1,a\n",
             "onlyHeader": "start,end,text\n"}
    for k, (vid, text) in enumerate(lines.items()):
        (caps / f"{vid}.csv").write_text(text)
        np.save(feats / f"{vid}.npy", synthetic_frames(k, 4, DIM_2D))
    np.save(feats / "noCsv.npy", synthetic_frames(9, 4, DIM_2D))
    (tmp_path / "ids.txt").write_text("\n".join(list(lines) + ["noCsv"]))
    settings = howto_writer.VideoSettings(str(feats), feature_dim_2d=DIM_2D)
    result = howto_writer.convert_videos(
        str(tmp_path / "ids.txt"), str(caps), settings, str(tmp_path / "o"),
        progress=False)
    (record,) = read_records(result.paths)
    parsed = howto_writer.parse_video_example(record)
    assert parsed["captions"] == {"start": [0.0, 3.0], "end": [2.5, 4.0],
                                  "text": ["chop, then fry", ""]}
    assert list(parsed["streams"]) == ["2d"]  # --features_path_3D=""
    rejects = read_rejects(tmp_path / "o", "train")
    assert re.search(r"badLine\.csv:3: malformed line 'b,extra'|"
                     r"badLine\.csv:3: malformed line '2,3,b,extra': "
                     r"expected 3 fields, got 4", rejects["badLine"])
    assert re.search(r"badNumber\.csv:3: start 'x' is not a number",
                     rejects["badNumber"])
    assert re.search(r"badOrder\.csv:3: caption starts after it ends",
                     rejects["badOrder"])
    assert re.search(r"noHeader\.csv:1: expected a header with columns "
                     r"start,end,text", rejects["noHeader"])
    assert re.search(r"onlyHeader\.csv: empty captions",
                     rejects["onlyHeader"])
    assert re.search(r"no caption file \S+noCsv\.csv", rejects["noCsv"])


def test_howto_writer_pickle_needs_allow_pickle(howto_data, tmp_path,
                                                capsys):
    pkl = tmp_path / "caption.pickle"
    with open(pkl, "wb") as f:  # the release's layout: numpy arrays
        pickle.dump({v: {k: np.array(c[k]) for k in c}
                     for v, c in howto_data["captions"].items()}, f)
    flags_ = [f for f in howto_data["flags"] if "caption_path" not in f]
    flags_ += [f"--caption_path={pkl}", f"--output_dir={tmp_path / 'o'}"]
    assert run_main(howto_writer, *flags_) == 1
    line = one_error_line(capsys)
    assert re.search(r"--caption_path=\S+caption\.pickle is a pickle file; "
                     r"unpickling can run code .* --allow_pickle", line)
    assert not (tmp_path / "o").exists()
    assert run_main(howto_writer, *flags_, "--allow_pickle") == 0
    assert "Wrote 4 records" in capsys.readouterr().out


@pytest.mark.parametrize("text, pattern", [
    ("video_id,task\nv1,a\nv2\n", r"videos\.csv:3: malformed line 'v2': "
                                  r"expected 2 fields \(video_id,task\)"),
    ("video_id\nv1\nv1\n", r"videos\.csv:3: duplicate video id 'v1' "
                           r"\(first at \S+videos\.csv:2\)"),
    ("v1\nv2,x\n", r"videos\.csv:2: malformed line 'v2,x': expected one "
                   r"video id a line"),
    ("video_id\n\n", r"videos\.csv: no videos listed"),
])
def test_video_list_errors_name_file_and_line(howto_data, tmp_path, text,
                                              pattern, capsys):
    (tmp_path / "videos.csv").write_text(text)
    flags_ = [f for f in howto_data["flags"] if not f.startswith("--csv")]
    rc = run_main(howto_writer, *flags_, f"--csv={tmp_path / 'videos.csv'}",
                  f"--output_dir={tmp_path / 'o'}")
    assert rc == 1
    assert re.search(pattern, one_error_line(capsys))


@pytest.mark.parametrize("flag, pattern", [
    ("--features_path=/no/such/dir",
     r"--features_path: no such directory /no/such/dir"),
    ("--features_path_3D=/no/3d", r"--features_path_3D: no such directory"),
    ("--caption_path=/no/caps.json",
     r"--caption_path: no such file or directory /no/caps\.json"),
    ("--caption_path={csv}", r"--caption_path=\S+videos\.csv: unknown "
                             r"caption format"),
    ("--feature_rate_3d=0", r"--feature_rate_3d must be > 0, got 0\.0"),
])
def test_howto_writer_flag_errors(howto_data, tmp_path, flag, pattern,
                                  capsys):
    flag = flag.format(csv=howto_data["root"] / "videos.csv")
    name = flag.split("=")[0]
    flags_ = [f for f in howto_data["flags"] if not f.startswith(name + "=")]
    assert run_main(howto_writer, *flags_, flag,
                    f"--output_dir={tmp_path / 'o'}") == 1
    assert re.search(pattern, one_error_line(capsys))
    assert not (tmp_path / "o").exists()


def test_video_list_path_column(tmp_path):
    (tmp_path / "v.csv").write_text(
        "path\nNone/cook/abc.npy\ncook/def\n")
    videos = howto_writer.read_video_list(str(tmp_path / "v.csv"))
    assert [v["id"] for v in videos] == ["abc", "def"]
    assert howto_writer.feature_candidates("/f", "abc", None,
                                           videos[0]["path"]) == [
        "/f/cook/abc.npy"]
    assert howto_writer.feature_candidates("/f", "def", None,
                                           videos[1]["path"]) == [
        "/f/cook/def.npy", "/f/cook/def.npz"]


def _convert_howto(howto_data, out, *extra):
    assert run_main(howto_writer, *howto_data["flags"], *extra,
                    f"--output_dir={out}", "--num_shards=3") == 0
    files = shard_bytes(out)
    assert len(files) == 5  # 3 shards, manifest, rejects
    return files


@pytest.mark.skipif(not HAVE_BEAM, reason="apache-beam is not installed "
                    "(pip install 'vidmodels[beam]')")
def test_beam_direct_runner_writes_the_same_shards_as_local(howto_data,
                                                            tmp_path):
    local = _convert_howto(howto_data, tmp_path / "local")
    beam = _convert_howto(howto_data, tmp_path / "beam", "--runner=beam",
                          "--beam_options=--direct_num_workers=1")
    assert beam == local


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_BEAM, reason="apache-beam is not installed "
                    "(pip install 'vidmodels[beam]')")
def test_beam_multi_processing_writes_the_same_shards_as_local(howto_data,
                                                              tmp_path):
    """The DirectRunner with two worker processes (each unpickles the plan
    lines and the shared convert function) writes the local shards."""
    local = _convert_howto(howto_data, tmp_path / "local")
    beam = _convert_howto(
        howto_data, tmp_path / "beam", "--runner=beam",
        "--beam_options=--direct_num_workers=2 "
        "--direct_running_mode=multi_processing")
    assert beam == local


def test_two_workers_write_the_same_shards_as_one(howto_data, tmp_path):
    """`python -m` entry point with two spawn workers (summary on stdout,
    rc 0) writes the same files as one worker in this process. One spawn
    pool in the suite: each worker starts a Python that imports
    TensorFlow."""
    assert run_main(howto_writer, *howto_data["flags"], "--num_shards=2",
                    f"--output_dir={tmp_path / 'one'}",
                    "--num_workers=1") == 0
    one = shard_bytes(tmp_path / "one")
    assert len(one) == 4  # 2 shards, manifest, rejects
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecord_tools.howto_writer",
         *howto_data["flags"], f"--output_dir={tmp_path / 'out'}",
         "--num_shards=2", "--num_workers=2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.match(r"Wrote 4 records from 12 items to 2 shards",
                    proc.stdout.strip().splitlines()[-1]), proc.stdout
    assert len(read_rejects(tmp_path / "out", "train")) == 8
    assert shard_bytes(tmp_path / "out") == one


# -- evaluation / fine-tuning sets --------------------------------------------


def _npz_features(path, clip_ids, skip=(), seed=0, pooled=True):
    """SYNTHETIC pooled features as an npz with arrays <stream>/<clip>."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for c in clip_ids:
        if c in skip:
            continue
        shape_2d = (DIM_2D,) if pooled else (3, DIM_2D)
        arrays[f"2d/{c}"] = rng.normal(size=shape_2d).astype(np.float32)
        arrays[f"3d/{c}"] = rng.normal(size=DIM_3D).astype(np.float16)
    np.savez(path, **arrays)
    return arrays


def _eval_flags(tmp_path, *args):
    return [*args, f"--output_dir={tmp_path / 'out'}",
            f"--feature_dim_2d={DIM_2D}", f"--feature_dim_3d={DIM_3D}",
            "--progress=false"]


def test_msrvtt_test_set_on_real_captions(tmp_path, capsys):
    with open(MSRVTT_CSV) as f:
        rows = list(csv.DictReader(f))
    ids = [r["video_id"] for r in rows]
    arrays = _npz_features(tmp_path / "feats.npz", ids, skip=ids[5:7])
    rc = run_main(eval_sets, *_eval_flags(
        tmp_path, "--dataset=msrvtt", f"--captions={MSRVTT_CSV}",
        f"--features={tmp_path / 'feats.npz'}"))
    assert rc == 0
    assert "Wrote 998 records from 1000 items to 1 shards" in (
        capsys.readouterr().out)
    records = read_records([tmp_path / "out" /
                            "msrvtt_test-00000-of-00001.tfrecord"])
    parsed = [eval_sets.parse_clip_example(r) for r in records]
    kept = [r for r in rows if r["video_id"] not in ids[5:7]]
    assert [p["clip_id"] for p in parsed] == [r["video_id"] for r in kept]
    assert [p["texts"] for p in parsed] == [[r["sentence"]] for r in kept]
    assert parsed[0]["video_id"] == parsed[0]["clip_id"] == "video9770"
    np.testing.assert_array_equal(parsed[0]["pooled"]["2d"],
                                  arrays["2d/video9770"])
    np.testing.assert_array_equal(
        parsed[0]["pooled"]["3d"],
        arrays["3d/video9770"].astype(np.float32))
    rejects = read_rejects(tmp_path / "out", "msrvtt_test")
    assert sorted(rejects) == sorted(ids[5:7])
    assert re.search(r"no 2d feature for this clip in \S+feats\.npz",
                     rejects[ids[5]])


def test_youcook_csv_on_real_captions(tmp_path):
    with open(YOUCOOK_CSV) as f:
        rows = list(csv.DictReader(f))
    clip_ids, counts = [], {}
    for r in rows:
        k = counts.get(r["video_id"], 0)
        counts[r["video_id"]] = k + 1
        clip_ids.append(f"{r['video_id']}_{k}")
    assert len(set(clip_ids)) == len(rows) == 3350
    _npz_features(tmp_path / "f.npz", clip_ids, pooled=False)
    result = eval_sets.convert_eval_set(
        "youcook", YOUCOOK_CSV, str(tmp_path / "f.npz"), str(tmp_path / "o"),
        dims=(DIM_2D, DIM_3D), progress=False)
    assert result.num_records == 3350 and not result.rejects
    first = eval_sets.parse_clip_example(read_records(result.paths[:1])[0])
    assert first == {**first, "clip_id": "xHr8X2Wpmno_0",
                     "video_id": "xHr8X2Wpmno",
                     "texts": ["pick the ends off the verdalago"]}
    assert os.path.basename(result.paths[0]).startswith("youcook_val-")


def test_youcook_pickle_needs_allow_pickle(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = [{"id": f"yc{i}", "video_id": "ytvid", "caption": f"step {i}",
             "2d": rng.normal(size=DIM_2D).astype(np.float32),
             "3d": (rng.normal(size=DIM_3D) if i else
                    np.full(DIM_3D, np.nan)).astype(np.float32)}
            for i in range(3)]
    with open(tmp_path / "youcook_val.pkl", "wb") as f:
        pickle.dump(data, f)
    flags_ = _eval_flags(tmp_path, "--dataset=youcook",
                         f"--captions={tmp_path / 'youcook_val.pkl'}")
    assert run_main(eval_sets, *flags_) == 1
    assert "--allow_pickle" in one_error_line(capsys)
    assert run_main(eval_sets, *flags_, "--allow_pickle") == 0
    out = tmp_path / "out"
    parsed = [eval_sets.parse_clip_example(r) for r in read_records(
        [out / "youcook_val-00000-of-00001.tfrecord"])]
    assert [(p["clip_id"], p["video_id"], p["texts"]) for p in parsed] == [
        ("yc1", "ytvid", ["step 1"]), ("yc2", "ytvid", ["step 2"])]
    assert re.search(r"clip 'yc0' stream 3d: feature contains NaN",
                     read_rejects(out, "youcook_val")["yc0"])


def test_lsmdc_tsv_and_malformed_line(tmp_path, capsys):
    lines = ["0001_Movie_00.00.01.000-00.00.02.000\t1\t2\t1\t2\tSomeone "
             "opens \"the\" door.",
             "0001_Movie_00.00.03.000-00.00.04.000\t1\t2\t1\t2\tHe sits."]
    (tmp_path / "lsmdc.tsv").write_text("\n".join(lines) + "\n")
    ids = [line.split("\t")[0] for line in lines]
    _npz_features(tmp_path / "f.npz", ids)
    flags_ = _eval_flags(tmp_path, "--dataset=lsmdc",
                         f"--features={tmp_path / 'f.npz'}")
    assert run_main(eval_sets, *flags_,
                    f"--captions={tmp_path / 'lsmdc.tsv'}") == 0
    parsed = [eval_sets.parse_clip_example(r) for r in read_records(
        [tmp_path / "out" / "lsmdc_test-00000-of-00001.tfrecord"])]
    assert [p["texts"] for p in parsed] == [['Someone opens "the" door.'],
                                            ["He sits."]]
    (tmp_path / "bad.tsv").write_text(lines[0] + "\nclip2\tonly two\n")
    assert run_main(eval_sets, *flags_,
                    f"--captions={tmp_path / 'bad.tsv'}") == 1
    assert re.search(r"bad\.tsv:2: malformed line: expected at least 6 "
                     r"tab-separated fields", one_error_line(capsys))


def test_msrvtt_train_all_sentences_per_video(tmp_path):
    (tmp_path / "train.csv").write_text("video_id\nvideo1\nvideo2\nvideo3\n")
    sentences = [{"video_id": "video2", "caption": "a dog runs"},
                 {"video_id": "video1", "caption": "a cat"},
                 {"video_id": "video2", "caption": "a dog plays"},
                 {"video_id": "video9", "caption": "not in the split"}]
    (tmp_path / "info.json").write_text(json.dumps({"sentences": sentences}))
    _npz_features(tmp_path / "f.npz", ["video1", "video2", "video3"])
    result = eval_sets.convert_eval_set(
        "msrvtt", str(tmp_path / "train.csv"), str(tmp_path / "f.npz"),
        str(tmp_path / "o"), split="train", json_path=str(tmp_path /
                                                          "info.json"),
        dims=(DIM_2D, DIM_3D), progress=False)
    parsed = [eval_sets.parse_clip_example(r)
              for r in read_records(result.paths)]
    assert [(p["clip_id"], p["texts"]) for p in parsed] == [
        ("video1", ["a cat"]), ("video2", ["a dog runs", "a dog plays"])]
    assert os.path.basename(result.paths[0]).startswith("msrvtt_train-")
    assert result.rejects == [{"item": "video3",
                               "reason": "clip 'video3': no caption"}]


def test_generic_csv_with_feature_directory_and_rejects(tmp_path):
    (tmp_path / "clips.csv").write_text(
        "clip_id,video_id,text\nc1,v1,first\nc2,v1,second\nc1,v1,again\n"
        "c3,v2,x\nc4,v2,y\nc5,v3,z\n")
    rng = np.random.default_rng(0)
    for stream, dim in (("2d", DIM_2D), ("3d", DIM_3D)):
        (tmp_path / "f" / stream).mkdir(parents=True)
        for clip in ("c1", "c2", "c3", "c4"):
            size = dim + 1 if (clip, stream) == ("c3", "3d") else dim
            np.save(tmp_path / "f" / stream / f"{clip}.npy",
                    rng.normal(size=size).astype(np.float32))
    (tmp_path / "f" / "2d" / "c4.npy").write_bytes(b"garbage")
    result = eval_sets.convert_eval_set(
        "csv", str(tmp_path / "clips.csv"), str(tmp_path / "f"),
        str(tmp_path / "o"), dims=(DIM_2D, DIM_3D), progress=False)
    parsed = [eval_sets.parse_clip_example(r)
              for r in read_records(result.paths)]
    assert [(p["clip_id"], p["video_id"], p["texts"]) for p in parsed] == [
        ("c1", "v1", ["first", "again"]), ("c2", "v1", ["second"])]
    rejects = {r["item"]: r["reason"] for r in result.rejects}
    assert re.search(r"c3\.npy: clip 'c3' stream 3d: feature size 5, "
                     r"expected 4 \(--feature_dim_3d=4\)", rejects["c3"])
    assert re.search(r"c4\.npy: unreadable feature file", rejects["c4"])
    assert re.search(r"missing 2d feature file \S+c5\.npy", rejects["c5"])


def test_eval_set_user_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "c.csv").write_text("clip_id,text\nc1,a,b\n")
    cases = [
        (["--dataset=csv", f"--captions={tmp_path / 'c.csv'}",
          f"--features={tmp_path}"],
         r"c\.csv:2: malformed line 'c1,a,b': expected 2 fields"),
        (["--dataset=youcook", f"--captions={MSRVTT_CSV}",
          f"--features={tmp_path}"],
         r"msrvtt_test\.csv:1: header .* lacks columns \['text'\]"),
        (["--dataset=lsmdc", "--split=train", f"--captions={MSRVTT_CSV}"],
         r"only --dataset=msrvtt has a train split"),
        (["--dataset=msrvtt", f"--captions={MSRVTT_CSV}",
          f"--features={tmp_path / 'nothing.npz'}"],
         r"--features: no such file or directory \S+nothing\.npz"),
        (["--dataset=msrvtt", f"--captions={MSRVTT_CSV}",
          f"--features={tmp_path / 'c.csv'}"],
         r"expected a \.pth, an \.npz or a directory"),
    ]
    for args, pattern in cases:
        assert run_main(eval_sets, *_eval_flags(tmp_path, *args)) == 1, args
        assert re.search(pattern, one_error_line(capsys)), args


def test_pth_features(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch not installed")
    ids = ["video9770", "video9771"]
    torch.save({"2d": {i: torch.ones(DIM_2D, dtype=torch.float16)
                       for i in ids},
                "3d": {ids[0]: torch.zeros(DIM_3D)}}, tmp_path / "f.pth")
    (tmp_path / "c.csv").write_text(
        "key,vid_key,video_id,sentence\nr0,m0,video9770,a\nr1,m1,video9771,b\n")
    result = eval_sets.convert_eval_set(
        "msrvtt", str(tmp_path / "c.csv"), str(tmp_path / "f.pth"),
        str(tmp_path / "o"), dims=(DIM_2D, DIM_3D), progress=False)
    (record,) = read_records(result.paths)
    parsed = eval_sets.parse_clip_example(record)
    np.testing.assert_array_equal(parsed["pooled"]["2d"], np.ones(DIM_2D))
    assert [r["item"] for r in result.rejects] == ["video9771"]


def test_pth_without_torch_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import fails
    (tmp_path / "f.pth").write_bytes(b"x")
    with pytest.raises(cli.InputError,
                       match=r"f\.pth: reading \.pth features needs PyTorch "
                             r"\(pip install 'vidmodels\[torch\]'\)"):
        eval_sets.load_features(str(tmp_path / "f.pth"), ("2d",), ["c"])
