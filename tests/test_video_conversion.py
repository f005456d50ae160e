"""Tests of the raw-video converter (tfrecord_tools.video_writer).

The videos are REAL clips (kinetics/data/clips, see its README.txt for
sources, licences and what was re-encoded); the corrupt, empty, audio-only
and random-byte files are made by the tests from them.
"""

import csv
import fractions
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
from tfrecord_tools import cli, conversion, video_decode
from tfrecord_tools import video_writer as vw

av = pytest.importorskip("av")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIPS = os.path.join(REPO_ROOT, "kinetics", "data", "clips")
SEGMENTS_CSV = os.path.join(CLIPS, "segments.csv")
CLASSES = ["answering questions", "playing cricket", "riding a bike",
           "yawning"]
CARPHONE = "answering questions/carphone_distorted.mp4"
CRICKET = "playing cricket/v_CricketShot_g04_c01.mp4"
BIKES = "riding a bike/bikes_000004_000008.mp4"
BUNNY = "yawning/bigbuckbunny_000001_000005.mp4"
CLIP_FILES = [CARPHONE, CRICKET, BIKES, BUNNY]  # class order
# (height, width) at short side 128: long side rounded to nearest.
SIZES_128 = {CARPHONE: (128, 156), CRICKET: (128, 128), BIKES: (128, 301),
             BUNNY: (128, 228)}
Fr = fractions.Fraction


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


def read_parsed(result_or_dir):
    """Parsed records of a conversion result (or all shards of a dir)."""
    if isinstance(result_or_dir, conversion.ConversionResult):
        paths = result_or_dir.paths
    else:
        paths = sorted(str(p) for p in result_or_dir.glob("*.tfrecord"))
    return [vw.parse_video_example(r.numpy())
            for r in tf.data.TFRecordDataset(paths)]


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_rejects(directory, prefix="train"):
    with open(os.path.join(directory, f"rejects-{prefix}.jsonl")) as f:
        return {r["item"]: r["reason"] for r in map(json.loads, f)}


def source_frames(path):
    """PyAV's own decode: [(timestamp s, duration s, VideoFrame)]."""
    container = av.open(path)
    stream = container.streams.video[0]
    origin = stream.start_time or 0
    out = [((f.pts - origin) * stream.time_base,
            f.duration * stream.time_base, f)
           for f in container.decode(stream)]
    container.close()
    return out


def expected_indices(times, fps, start=0, end=None):
    """Source frame index of each stored frame, by the documented rule.

    Stored frame k: the last source frame with timestamp <= start + k/fps
    (the first one if none), for every k with start + k/fps < end.
    """
    start = Fr(start)
    if end is None:
        end = times[-1][0] + times[-1][1]
    out, k = [], 0
    while start + Fr(k) / fps < end:
        t = start + Fr(k) / fps
        out.append(max([j for j, (ts, _, _) in enumerate(times) if ts <= t],
                       default=0))
        k += 1
    return out


def jpeg_of(frame, height, width, quality=90):
    """The converter's documented frame pipeline, done directly."""
    rgb = frame.reformat(width=width, height=height, format="rgb24",
                         interpolation="BILINEAR").to_ndarray()
    return tf.io.encode_jpeg(rgb, quality=quality).numpy()


def decode(jpeg):
    return tf.io.decode_jpeg(jpeg).numpy()


def copy_clip(name, dest):
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copyfile(os.path.join(CLIPS, name), dest)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def audio_only_file(path):
    """A real AAC-in-MP4 file without a video stream (0.5 s of a tone)."""
    out = av.open(str(path), "w", format="mp4")
    stream = out.add_stream("aac", rate=22050)
    stream.layout = "mono"
    t = np.arange(11025, dtype=np.float32) / 22050
    samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for i in range(0, len(samples), 1024):
        frame = av.AudioFrame.from_ndarray(samples[None, i:i + 1024],
                                           format="fltp", layout="mono")
        frame.sample_rate = 22050
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()


# -- rules --------------------------------------------------------------------


@pytest.mark.parametrize("height, width, short, expected", [
    (144, 176, 128, (128, 156)),   # 156.44 -> 156
    (136, 320, 128, (128, 301)),   # 301.18 -> 301
    (180, 320, 128, (128, 228)),   # 227.56 -> 228
    (224, 224, 128, (128, 128)),
    (320, 180, 128, (228, 128)),   # portrait
    (4, 6, 3, (3, 5)),             # 4.5 -> 5: halves round up
    (720, 1280, 0, (720, 1280)),   # 0 keeps the size
    (100, 150, 200, (200, 300)),   # upscaling too
])
def test_output_size_short_side_and_nearest_long_side(height, width, short,
                                                      expected):
    assert vw.output_size(height, width, short) == expected


@pytest.mark.parametrize("name, fps, start, end", [
    (CARPHONE, 15, None, None),    # 29.97 -> 15 fps: j = floor(2000 k/1001)
    (CRICKET, 40, None, None),     # 25 -> 40 fps: frames repeat
    (BUNNY, 15, 1.3, 3.1),         # segment: decoded after a seek
])
def test_resampling_picks_last_frame_at_or_before_each_time(name, fps, start,
                                                            end):
    path = os.path.join(CLIPS, name)
    settings = vw.VideoSettings(fps=fps)
    clip = vw.decode_clip(path, settings, start, end)
    times = source_frames(path)
    indices = expected_indices(times, Fr(fps),
                               video_decode.exact(start) if start else 0,
                               video_decode.exact(end) if end else None)
    assert len(clip.frames) == len(indices)
    height, width = SIZES_128[name]
    assert (clip.height, clip.width) == (height, width)
    assert clip.frames == [jpeg_of(times[j][2], height, width)
                           for j in indices]  # byte-exact
    if name == CARPHONE:  # torchvision's nearest-lower index formula
        assert len(indices) == math.ceil(Fr(4004, 1000) * 15) == 61
        assert indices == [int(k * 2000 / 1001) for k in range(61)]


# -- folder input -------------------------------------------------------------


@pytest.fixture(scope="module")
def folder_result(tmp_path_factory):
    """The shipped clips folder converted in class/path order."""
    out = tmp_path_factory.mktemp("folder")
    result = vw.convert_folder(CLIPS, str(out), shuffle_seed=None,
                               num_shards=2, progress=False)
    return result, read_parsed(result)


def test_folder_converts_every_clip_with_labels_and_context(folder_result):
    result, parsed = folder_result
    assert result.rejects == [] and result.num_records == 4
    assert [p["data_path"] for p in parsed] == CLIP_FILES
    manifest = read_json(result.manifest_path)
    assert manifest["options"]["classes"] == CLASSES
    for p, name in zip(parsed, CLIP_FILES):
        label = name.split("/")[0]
        times = source_frames(os.path.join(CLIPS, name))
        end = times[-1][0] + times[-1][1]
        assert p["media_id"] == os.path.splitext(os.path.basename(name))[0]
        assert p["label"] == p["label_text"] == label
        assert p["label_index"] == CLASSES.index(label)
        assert (p["start_us"], p["end_us"]) == (0, round(end * 1_000_000))
        assert len(p["frames"]) == math.ceil(end * 15)  # duration * fps
        assert p["frame_rate"] == 15.0 and p["format"] == "JPEG"
        assert (p["height"], p["width"]) == SIZES_128[name]
        shapes = {decode(f).shape for f in p["frames"]}
        assert shapes == {SIZES_128[name] + (3,)}
        stream = av.open(os.path.join(CLIPS, name)).streams.video[0]
        assert p["source_frame_rate"] == pytest.approx(
            float(stream.average_rate))
        assert p["source_duration"] == pytest.approx(float(end))
    frames = {p["data_path"]: len(p["frames"]) for p in parsed}
    assert frames == {CARPHONE: 61, CRICKET: 48, BIKES: 60, BUNNY: 60}


def test_first_frame_is_close_to_pyav_decode_resized_independently(
        folder_result):
    _, parsed = folder_result
    for p in parsed:
        container = av.open(os.path.join(CLIPS, p["data_path"]))
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
        container.close()
        ref = tf.image.resize(rgb[None].astype(np.float32),
                              (p["height"], p["width"]),
                              antialias=True)[0].numpy()
        stored = decode(p["frames"][0]).astype(np.float32)
        mae = np.abs(stored - ref).mean()
        # Of 255: measured 1.6-3.0 (mostly JPEG q90 on detailed frames;
        # the two resize kernels differ by about 1).
        assert mae < 4.0, (p["data_path"], mae)
        flipped = np.abs(stored - ref[:, ::-1]).mean()
        assert flipped > 3 * mae, (p["data_path"], mae, flipped)


def test_record_layout_parses_with_tf_ops(folder_result):
    result, _ = folder_result
    serialized = next(iter(tf.data.TFRecordDataset(result.paths[:1])))
    context = {k: tf.io.FixedLenFeature([], d) for k, d in [
        (F.VIDEO_MEDIA_ID, tf.string), (F.VIDEO_LABEL_INDEX, tf.int64),
        (F.VIDEO_LABEL_STRING, tf.string), (F.VIDEO_LABEL_TEXT, tf.string),
        (F.VIDEO_START_TIMESTAMP, tf.int64),
        (F.VIDEO_END_TIMESTAMP, tf.int64), (F.VIDEO_FRAME_RATE, tf.float32),
        (F.VIDEO_HEIGHT, tf.int64), (F.VIDEO_WIDTH, tf.int64),
        (F.VIDEO_FORMAT, tf.string), (F.VIDEO_DATA_PATH, tf.string),
        (F.VIDEO_SOURCE_FRAME_RATE, tf.float32),
        (F.VIDEO_SOURCE_DURATION, tf.float32)]}
    sequence = {F.VIDEO_IMAGE_ENCODED:
                tf.io.FixedLenSequenceFeature([], tf.string)}
    ctx, seq = tf.io.parse_single_sequence_example(serialized, context,
                                                   sequence)
    assert ctx[F.VIDEO_MEDIA_ID].numpy() == b"carphone_distorted"
    assert ctx[F.VIDEO_END_TIMESTAMP].numpy() == 4_004_000
    frames = tf.map_fn(tf.io.decode_jpeg, seq[F.VIDEO_IMAGE_ENCODED],
                       fn_output_signature=tf.uint8)
    assert frames.shape == (61, 128, 156, 3)


def test_label_map_sets_indices_and_matches_underscored_folders(tmp_path):
    root = tmp_path / "videos"
    copy_clip(CRICKET, root / "playing_cricket" / "a.mp4")
    copy_clip(CARPHONE, root / "yawning" / "b.mp4")
    label_map = tmp_path / "labels.txt"
    label_map.write_text("abseiling\nplaying cricket\nzumba\nyawning\n\n")
    items, classes = vw.list_video_folder(str(root), str(label_map))
    assert classes == ["abseiling", "playing cricket", "zumba", "yawning"]
    assert [(i["data_path"], i["label"], i["label_index"]) for i in items] \
        == [("playing_cricket/a.mp4", "playing cricket", 1),
            ("yawning/b.mp4", "yawning", 3)]
    (root / "surfing").mkdir()
    with pytest.raises(cli.InputError,
                       match=r"class folders not in the label map \S+"
                             r"labels\.txt: \['surfing'\]"):
        vw.list_video_folder(str(root), str(label_map))


def test_fps_zero_keeps_every_frame_and_short_side_zero_the_size():
    clip = vw.decode_clip(os.path.join(CLIPS, CARPHONE),
                          vw.VideoSettings(fps=0, short_side=0))
    assert len(clip.frames) == 120
    assert clip.frame_rate == pytest.approx(30000 / 1001)
    assert (clip.height, clip.width) == (144, 176)
    segment = vw.decode_clip(os.path.join(CLIPS, CARPHONE),
                             vw.VideoSettings(fps=0), 1.0, 2.0)
    assert len(segment.frames) == 30  # frames 30..59: 1 <= j*1001/30000 < 2


# -- CSV input ----------------------------------------------------------------


def test_csv_segments_frame_counts_and_unlabelled_rows(tmp_path):
    result = vw.convert_csv(SEGMENTS_CSV, str(tmp_path), shuffle_seed=None,
                            progress=False)
    parsed = read_parsed(result)
    assert result.rejects == []
    got = [(p["media_id"], p["label"], p["label_index"], p["start_us"],
            p["end_us"], len(p["frames"])) for p in parsed]
    assert got == [
        ("v_CricketShot_g04_c01_0_2", "playing cricket", 1, 0, 2_000_000,
         30),
        ("v_CricketShot_g04_c01_1.5_3.16", "playing cricket", 1, 1_500_000,
         3_160_000, 25),  # ceil(1.66 * 15)
        ("bigbuckbunny_000001_000005_0.5_3.5", "yawning", 3, 500_000,
         3_500_000, 45),
        ("bikes_000004_000008_1_3", "riding a bike", 2, 1_000_000,
         3_000_000, 30),
        ("carphone_distorted", "answering questions", 0, 0, 4_004_000, 61),
        ("carphone_distorted_2_4", None, None, 2_000_000, 4_000_000, 30),
    ]
    assert parsed[-1]["label_text"] is None
    assert parsed[0]["data_path"] == CRICKET  # the path as given
    # A segment's first frame is the source frame at its start time.
    times = source_frames(os.path.join(CLIPS, BIKES))
    assert parsed[3]["frames"][0] == jpeg_of(times[25][2], 128, 301)


def test_csv_video_root_clamped_end_and_rejected_segments(tmp_path):
    csv_path = write_csv(tmp_path / "list.csv", ["path", "start", "end"], [
        [CARPHONE, "3", "10"],        # end past the video: clamped
        [CARPHONE, "5", ""],          # starts after the end: rejected
        ["missing/none.mp4", "", ""],  # no such file: rejected
        [os.path.join(CLIPS, CRICKET), "", "1"],  # absolute path
    ])
    result = vw.convert_csv(csv_path, str(tmp_path / "out"),
                            video_root=CLIPS, shuffle_seed=None,
                            progress=False)
    parsed = read_parsed(result)
    assert [(p["media_id"], p["end_us"], len(p["frames"]), p["label"])
            for p in parsed] == [
        ("carphone_distorted_3_10", 4_004_000, 16, None),  # ceil(1.004*15)
        ("v_CricketShot_g04_c01_0_1", 1_000_000, 15, None)]
    rejects = read_rejects(tmp_path / "out")
    assert re.search(r"carphone_distorted\.mp4: segment \[5, end\) s "
                     r"starts at or after the end of the video \(4\.004 s\)",
                     rejects[f"{CARPHONE}@5_end"])
    assert re.search(r"cannot open \S+none\.mp4: FileNotFoundError: .*No "
                     r"such file", rejects["missing/none.mp4"])


def test_official_kinetics_csv_with_video_root(tmp_path):
    root = tmp_path / "k400"
    copy_clip(BUNNY, root / "train" / "yawning" / os.path.basename(BUNNY))
    copy_clip(BIKES, root / "train" / "riding_a_bike" /
              os.path.basename(BIKES))
    csv_path = write_csv(
        tmp_path / "train.csv",
        ["label", "youtube_id", "time_start", "time_end", "split"],
        [["riding a bike", "bikes", "4", "8", "train"],
         ["yawning", "bigbuckbunny", "1", "5", "train"],
         ["yawning", "removedVideo", "10", "20", "train"]])
    label_map = tmp_path / "labels.txt"
    label_map.write_text("riding a bike\nyawning\n")
    result = vw.convert_csv(csv_path, str(tmp_path / "out"),
                            video_root=str(root), label_map=str(label_map),
                            shuffle_seed=None, progress=False)
    parsed = read_parsed(result)
    assert [(p["media_id"], p["data_path"], p["label_index"],
             len(p["frames"])) for p in parsed] == [
        ("bikes_000004_000008",
         "train/riding_a_bike/bikes_000004_000008.mp4", 0, 60),
        ("bigbuckbunny_000001_000005",
         "train/yawning/bigbuckbunny_000001_000005.mp4", 1, 60)]
    reason = read_rejects(tmp_path / "out")["removedVideo_000010_000020"]
    assert reason.startswith("no video file removedVideo_000010_000020.* ")


# -- rejects ------------------------------------------------------------------


def test_corrupt_empty_and_non_video_files_are_rejected_with_reasons(
        tmp_path):
    root = tmp_path / "videos"
    copy_clip(CARPHONE, root / "good" / "carphone.mp4")
    copy_clip(CRICKET, root / "good" / "cricket.mp4")
    bad = root / "bad"
    bad.mkdir()
    with open(os.path.join(CLIPS, BIKES), "rb") as f:
        data = f.read()
    (bad / "truncated.mp4").write_bytes(data[:len(data) // 2])
    (bad / "random.mp4").write_bytes(
        np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "notes.txt").write_text("not a video")
    (bad / ".hidden.mp4").write_bytes(b"ignored")
    audio_only_file(bad / "audio.mp4")
    result = vw.convert_folder(str(root), str(tmp_path / "out"),
                               shuffle_seed=None, progress=False)
    parsed = read_parsed(result)
    assert [p["data_path"] for p in parsed] == ["good/carphone.mp4",
                                                "good/cricket.mp4"]
    assert [len(p["frames"]) for p in parsed] == [61, 48]
    rejects = read_rejects(tmp_path / "out")
    patterns = {
        "bad/truncated.mp4": r"truncated\.mp4: decoding failed after \d+ "
                             r"frames \(t=\d\.\d+ s\): InvalidDataError:",
        "bad/random.mp4": r"cannot open \S+random\.mp4: InvalidDataError: "
                          r".*Invalid data found",
        "bad/empty.mp4": r"cannot open \S+empty\.mp4: InvalidDataError",
        "bad/audio.mp4": r"audio\.mp4: no video stream \(streams: "
                         r"\['audio'\]\)",
        "bad/notes.txt": r"not a video file: extension '\.txt' is not one "
                         r"of --extensions=\.mp4,",
    }
    assert sorted(rejects) == sorted(patterns)
    for item, pattern in patterns.items():
        assert re.search(pattern, rejects[item]), (item, rejects[item])
    manifest = read_json(result.manifest_path)
    assert manifest["num_records"] == 2 and manifest["num_rejects"] == 5


# -- user errors --------------------------------------------------------------


@pytest.mark.parametrize("header, rows, pattern", [
    (["path", "label", "start", "end"], [[CARPHONE, "a", "", ""],
                                         [CARPHONE, "a", "1"]],
     r"list\.csv:3: malformed line .*expected 4 fields"),
    (["path", "label"], [["", "a"]], r"list\.csv:2: empty path"),
    (["path", "start"], [[CARPHONE, "soon"]],
     r"list\.csv:2: start 'soon' is not a number of seconds"),
    (["path", "start", "end"], [[CARPHONE, "3", "2"]],
     r"list\.csv:2: segment end 2\.0 is not after its start 3\.0"),
    (["path", "strat"], [[CARPHONE, "1"]],
     r"list\.csv:1: unknown or repeated columns \['strat'\]"),
    (["video", "label"], [[CARPHONE, "a"]],
     r"list\.csv:1: expected a header with columns path,label,start,end"),
    (["path"], [[CARPHONE], [CARPHONE]],
     (r"list\.csv:3: duplicate media id 'carphone_distorted' \(first at "
      r"\S+list\.csv:2\)")),
    (["label", "youtube_id", "time_start", "time_end"],
     [["a", "x", "1.5", "10"]],
     r"list\.csv:2: time_start must be whole seconds, got '1\.5'"),
])
def test_csv_errors_name_file_and_line(tmp_path, header, rows, pattern):
    csv_path = write_csv(tmp_path / "list.csv", header, rows)
    with pytest.raises(cli.InputError, match=pattern):
        vw.read_video_csv(csv_path, video_root=CLIPS)


def test_unknown_class_and_bad_label_map_are_errors(tmp_path):
    csv_path = write_csv(tmp_path / "list.csv", ["path", "label"],
                         [[CARPHONE, "yawning"], [CRICKET, "cricket"]])
    label_map = tmp_path / "labels.txt"
    label_map.write_text("yawning\nplaying cricket\n")
    with pytest.raises(cli.InputError,
                       match=r"list\.csv:3: unknown class name 'cricket': "
                             r"not in the label map \S+labels\.txt"):
        vw.read_video_csv(csv_path, CLIPS, str(label_map))
    label_map.write_text("a\n\nb\n")
    with pytest.raises(cli.InputError, match=r"labels\.txt:2: blank line"):
        vw.read_label_map(str(label_map))
    label_map.write_text("a\nb\na\n")
    with pytest.raises(cli.InputError,
                       match=r"labels\.txt:3: duplicate class name 'a' "
                             r"\(first at line 1\)"):
        vw.read_label_map(str(label_map))


def test_missing_inputs_and_bad_folders_are_errors(tmp_path):
    with pytest.raises(cli.MissingInputError,
                       match=r"--video_dir: no such directory \S+nowhere"):
        vw.list_video_folder(str(tmp_path / "nowhere"))
    with pytest.raises(cli.MissingInputError, match=r"--csv: no such file"):
        vw.read_video_csv(str(tmp_path / "none.csv"))
    copy_clip(CARPHONE, tmp_path / "flat" / "a.mp4")
    with pytest.raises(cli.InputError,
                       match=r"video files outside a class folder "
                             r"\(\['a\.mp4'\]\)"):
        vw.list_video_folder(str(tmp_path / "flat"))
    copy_clip(CARPHONE, tmp_path / "dup" / "x" / "a.mp4")
    copy_clip(CRICKET, tmp_path / "dup" / "y" / "a.mp4")
    with pytest.raises(cli.InputError, match=r"duplicate media id 'a'"):
        vw.list_video_folder(str(tmp_path / "dup"))
    with pytest.raises(cli.InputError, match=r"--jpeg_quality must be in"):
        vw.convert_folder(CLIPS, str(tmp_path / "o"),
                          vw.VideoSettings(jpeg_quality=0))


def test_missing_pyav_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import fails
    with pytest.raises(cli.InputError,
                       match=r"decoding videos needs PyAV.*"
                             r"pip install 'vidmodels\[video\]'"):
        vw.convert_folder(CLIPS, str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()


# -- CLI, runners, resume -----------------------------------------------------


def _convert_cli(out, *extra):
    assert run_main(vw, f"--video_dir={CLIPS}", f"--output_dir={out}",
                    "--num_shards=2", "--progress=false", *extra) == 0
    files = shard_bytes(out)
    assert len(files) == 4  # 2 shards, manifest, rejects
    return files


def test_cli_end_to_end_resume_and_errors(tmp_path, capsys):
    label_map = tmp_path / "labels.txt"
    label_map.write_text("\n".join(["yawning", "abseiling"] + CLASSES[:3])
                         + "\n")
    out = tmp_path / "out"
    first = _convert_cli(out, f"--label_map={label_map}", "--fps=5",
                         "--short_side=64", "--jpeg_quality=80")
    summary = capsys.readouterr().out.strip()
    assert re.fullmatch(r"Wrote 4 records from 4 items to 2 shards in \S+; "
                        r"0 rejected", summary), summary
    parsed = {p["media_id"]: p for p in read_parsed(out)}
    assert len(parsed["carphone_distorted"]["frames"]) == 21  # ceil(20.02)
    assert parsed["bigbuckbunny_000001_000005"]["label_index"] == 0
    assert parsed["bikes_000004_000008"]["label_index"] == 4
    assert parsed["bikes_000004_000008"]["width"] == 151  # 320*64/136
    # The same command again keeps both shards (resume).
    again = _convert_cli(out, f"--label_map={label_map}", "--fps=5",
                         "--short_side=64", "--jpeg_quality=80")
    assert again == first
    assert "2 shards kept from an earlier run" in capsys.readouterr().out
    # User errors: one line, rc 1.
    assert run_main(vw, f"--video_dir={CLIPS}", f"--csv={SEGMENTS_CSV}",
                    f"--output_dir={out}") == 1
    assert "give exactly one input" in one_error_line(capsys)
    assert run_main(vw, f"--csv={tmp_path / 'no.csv'}",
                    f"--output_dir={out}") == 1
    assert re.search(r"--csv: no such file \S+no\.csv",
                     one_error_line(capsys))


def test_csv_cli_with_shuffled_order(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_main(vw, f"--csv={SEGMENTS_CSV}", f"--output_dir={out}",
                    "--progress=false", "--fps=2", "--short_side=32") == 0
    assert capsys.readouterr().out.startswith("Wrote 6 records from 6 items")
    ids = [p["media_id"] for p in read_parsed(out)]
    assert sorted(ids) == sorted(
        ["v_CricketShot_g04_c01_0_2", "v_CricketShot_g04_c01_1.5_3.16",
         "bigbuckbunny_000001_000005_0.5_3.5", "bikes_000004_000008_1_3",
         "carphone_distorted", "carphone_distorted_2_4"])
    assert ids == [i["media_id"] for i in vw.shuffle_items(
        vw.read_video_csv(SEGMENTS_CSV)[0], 0)]


@pytest.mark.slow  # Beam pipeline start-up
def test_beam_direct_runner_writes_the_same_shards_as_local(tmp_path):
    pytest.importorskip("apache_beam")
    local = _convert_cli(tmp_path / "local")
    beam = _convert_cli(tmp_path / "beam", "--runner=beam",
                        "--beam_options=--direct_num_workers=1")
    assert beam == local


@pytest.mark.slow  # a fresh interpreter plus a spawn pool
def test_two_workers_write_the_same_shards_as_one(tmp_path):
    """`python -m` entry point with two spawn workers writes the same files
    as one worker in this process (one spawn pool: each worker starts a
    Python that imports TensorFlow)."""
    args = [f"--csv={SEGMENTS_CSV}", "--num_shards=2", "--fps=2",
            "--short_side=32"]
    assert run_main(vw, *args, f"--output_dir={tmp_path / 'one'}",
                    "--num_workers=1", "--progress=false") == 0
    one = shard_bytes(tmp_path / "one")
    assert len(one) == 4  # 2 shards, manifest, rejects
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecord_tools.video_writer", *args,
         f"--output_dir={tmp_path / 'out'}", "--num_workers=2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.match(r"Wrote 6 records from 6 items to 2 shards",
                    proc.stdout.strip().splitlines()[-1]), proc.stdout
    assert shard_bytes(tmp_path / "out") == one
