"""Raw videos + captions -> MIL-NCE SequenceExample shards (HowTo100M,
MSR-VTT, YouCook2, HMDB-51).

MIL-NCE trains S3D-G end to end from raw video, so its records are the
raw-video records of `tfrecord_tools.video_writer` (JPEG frames at a fixed
rate, same decoding, resampling and resizing rules, same keys) with the
captions added to the context, written through the same conversion
mechanism (local workers with a progress bar or `--runner=beam`, atomic
shards, manifest, resume, rejects file).

Library:
  default_settings(dataset)                 -> VideoSettings (fps 5, or 0
                                               for hmdb; short side 256)
  read_items(dataset, video_path, csv_path, caption_root, segment_margin)
                                            -> (items, class names)
  read_captions(path)                       -> [(start, end, text)]
  make_milnce_example(clip, media_id, data_path, captions, label_index,
                      label, splits)        -> tf.train.SequenceExample
  parse_milnce_example(serialized)          -> dict (numpy side)
  convert_item(item, settings)              -> [serialized record]
  convert_dataset(dataset, output_dir, video_path, csv_path, caption_root,
                  settings, ...)            -> conversion.ConversionResult

Record layout (raw-video and MIL-NCE sections of `input_pipeline.features`):
the raw-video context and frames of `video_writer.make_video_example`
(`clip/media_id`, `clip/data_path`, `clip/start/timestamp` and
`clip/end/timestamp` in microseconds, `image/frame_rate`, `image/height`,
`image/width`, `image/format`, `clip/source/frame_rate`,
`clip/source/duration`, `clip/label/*` where there is a class, one JPEG per
stored frame in `image/encoded`), plus `caption/string`, `caption/start`,
`caption/end` ([n] each, seconds on the source video's timeline: stored
frame k shows time start_timestamp / 1e6 + k / frame_rate) and, for
HMDB-51, `clip/split` ([3]: 0 unused, 1 train, 2 test).

Datasets (`--dataset`):

* `howto100m` (training): `--train_csv`, the original's video list (a
  `video_path` column, as `csv/howto100m_videos.csv`, or one path a line),
  paths relative to `--video_path`; `--caption_root` holds
  `<video_id>.csv` per video (video id = the file name up to its first dot,
  as the original's `split('.')[0]`) with columns start,end,text. One
  record per video (media id = video id) with ALL its captions in file
  order; the whole video is stored.
* `msrvtt` (1k-A test): `--csv` key,vid_key,video_id,sentence (default: the
  packaged `howto/data/msrvtt_test.csv`), video `<video_path>/<video_id>.mp4`.
  One record per row: the whole video, one caption from 0 to the video's
  end (its decoded duration, = the record's end timestamp; the original
  asks ffprobe for the container's duration, which can differ by an audio
  tail).
* `youcook` (validation): `--csv` end,start,task,text,video_id (default: the
  packaged `howto/data/validation_youcook.csv`); the video is the first of
  `<video_path>/validation/<task>/<video_id>.{mp4,mkv,webm}` (the original's
  layout), then `<video_path>/<video_id>.{mp4,mkv,webm}` (a flat folder).
  One record per row, media id `<video_id>_<start>_<end>` (`_2` added to a
  repeated row): the segment [start, end + `--segment_margin`] (3.3 s by
  default: the last 16-frame window at 5 fps that evaluation takes, 3.2 s +
  the original's 0.1 s of slack, can start at the caption's start when the
  caption is short), its end clamped to the video's end; the caption keeps
  its own start and end.
* `hmdb` (linear probe): `--csv` video_id,label,split1,split2,split3
  (default: the packaged `howto/data/hmdb51.csv`); the video is
  `<video_path>/<class>/<video_id>`, class = the label without its `_test`
  suffix (the original's `label[:-5]`). One record per video, every decoded
  frame (`--fps` 0 by default), class index = position of the class in the
  sorted class names of the CSV (the manifest's options list them), class
  name, and the three splits; no caption.

Defaults: `--fps` 5 (0 for hmdb), `--short_side` 256, JPEG quality 90.
Lists are read in order and converted in that order unless
`--shuffle_seed` is given (contiguous shards in list order).

Rejected items (listed with the reason in `rejects-<prefix>.jsonl`, never
an error): a missing video file (all its candidate paths named), an
unreadable video (PyAV's message: not a video, no video stream, decoding
failed, a segment that starts after the video's end), a missing caption
file, a malformed caption file (`file:line`: a start or end that is not a
number, an end before its start, a line with a missing column, a header
without start,end,text), a caption file without captions. A malformed line
of the list or evaluation CSV itself is an error (`file:line`): a test set
must not shrink unnoticed.

CLI (needs PyAV: pip install 'vidmodels[video]'):

  python -m tfrecord_tools.milnce_writer --train_csv=howto100m_videos.csv \\
      --video_path=videos --caption_root=howto100m_captions \\
      --output_dir=records --num_shards=1024 --num_workers=16
      # or --runner=beam --beam_options="..."
  python -m tfrecord_tools.milnce_writer --dataset=youcook \\
      --video_path=youcook2 --output_dir=records
"""

import csv
import dataclasses
import functools
import os

from absl import flags
import tensorflow as tf

from input_pipeline import features as F
from tfrecord_tools import cli, conversion, tf_features
from tfrecord_tools import milnce_inputs
from tfrecord_tools import video_writer
from tfrecord_tools.howto_writer import read_caption_csv
from tfrecord_tools.milnce_inputs import DATASETS  # noqa: F401 (public API)
from tfrecord_tools.video_decode import (
    VideoError, VideoSettings, decode_clip, import_av)

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "howto", "data")
PACKAGED_CSVS = {
    "msrvtt": os.path.join(DATA_DIR, "msrvtt_test.csv"),
    "youcook": os.path.join(DATA_DIR, "validation_youcook.csv"),
    "hmdb": os.path.join(DATA_DIR, "hmdb51.csv"),
}
DEFAULT_PREFIXES = {"howto100m": "train", "msrvtt": "msrvtt_test",
                    "youcook": "youcook_val", "hmdb": "hmdb51"}
DEFAULT_FPS = {"howto100m": 5.0, "msrvtt": 5.0, "youcook": 5.0,
               "hmdb": 0.0}
DEFAULT_SHORT_SIDE = 256
DEFAULT_SEGMENT_MARGIN = 3.3  # 16 frames at 5 fps + the original's 0.1 s


def default_settings(dataset, fps=None, short_side=None, jpeg_quality=90):
    """The dataset's VideoSettings, with any value overridden.

    Args:
        dataset: one of DATASETS.
        fps: stored frames per second (None: 5, or 0 = every decoded frame
            for hmdb).
        short_side: stored short side (None: 256).
        jpeg_quality: JPEG quality.

    Returns:
        VideoSettings.
    """
    _check_dataset(dataset)
    return VideoSettings(
        fps=DEFAULT_FPS[dataset] if fps is None else fps,
        short_side=DEFAULT_SHORT_SIDE if short_side is None else short_side,
        jpeg_quality=jpeg_quality)


def _check_dataset(dataset):
    if dataset not in DATASETS:
        raise cli.InputError(f"--dataset must be one of {DATASETS}, got "
                             f"{dataset!r}")


def read_items(dataset, video_path, csv_path=None, caption_root=None,
               segment_margin=DEFAULT_SEGMENT_MARGIN):
    """The conversion items of a dataset (see the module docstring).

    Args:
        dataset: one of DATASETS.
        video_path: folder of the videos.
        csv_path: the list / caption CSV (None: the packaged CSV; required
            for howto100m).
        caption_root: howto100m only: folder of `<video_id>.csv`.
        segment_margin: youcook only: seconds converted past a caption's
            end.

    Returns:
        (items, class names): class names only for hmdb, else [].

    Raises:
        MissingInputError, InputError: bad input (one precise message).
    """
    _check_dataset(dataset)
    if dataset == "howto100m":
        if not csv_path:
            raise cli.InputError(
                "--dataset=howto100m needs --train_csv (the video list)")
        return milnce_inputs.read_howto100m(csv_path, video_path,
                                            caption_root), []
    if caption_root:
        raise cli.InputError(
            f"--caption_root is for --dataset=howto100m; {dataset} reads "
            "its captions from --csv")
    csv_path = csv_path or PACKAGED_CSVS[dataset]
    if dataset == "msrvtt":
        return milnce_inputs.read_msrvtt(csv_path, video_path), []
    if dataset == "youcook":
        return milnce_inputs.read_youcook(csv_path, video_path,
                                          segment_margin), []
    return milnce_inputs.read_hmdb(csv_path, video_path)


# -- records ------------------------------------------------------------------


def read_captions(path):
    """Reads one video's caption file (columns start,end,text, any order).

    Args:
        path: `<caption_root>/<video_id>.csv`.

    Returns:
        [(start, end, text)] in file order, at least one.

    Raises:
        MissingInputError: no such file.
        InputError: unreadable or malformed (names file:line), or no
            captions.
    """
    if not tf.io.gfile.exists(path):
        raise cli.MissingInputError(f"no caption file {path}")
    try:
        captions = read_caption_csv(path)
    except csv.Error as e:  # e.g. a NUL byte: not a caption table
        raise cli.InputError(f"{path}: malformed CSV ({e})") from None
    if not captions["text"]:
        raise cli.InputError(f"{path}: no captions (only a header)")
    return list(zip(captions["start"], captions["end"], captions["text"]))


def make_milnce_example(clip, media_id, data_path, captions=(),
                        label_index=None, label=None, splits=None):
    """Builds one MIL-NCE record: a raw-video record plus captions/splits.

    Args:
        clip: video_decode.DecodedClip.
        media_id: the video (or segment) id.
        data_path: the source file as the input names it.
        captions: [(start, end, text)], seconds on the source's timeline;
            empty = no caption keys (HMDB-51).
        label_index: class index, or None.
        label: class name, or None.
        splits: [3] ints (0 unused, 1 train, 2 test), or None.

    Returns:
        tf.train.SequenceExample.

    Raises:
        InputError: a clip without frames.
    """
    example = video_writer.make_video_example(clip, media_id, data_path,
                                              label_index, label)
    context = example.context.feature
    if captions:
        starts, ends, texts = zip(*captions)
        context[F.VIDEO_CAPTION_STRING].CopyFrom(
            tf_features.bytes_feature(texts))
        context[F.VIDEO_CAPTION_START].CopyFrom(
            tf_features.float_feature([float(s) for s in starts]))
        context[F.VIDEO_CAPTION_END].CopyFrom(
            tf_features.float_feature([float(e) for e in ends]))
    if splits is not None:
        context[F.VIDEO_SPLITS].CopyFrom(
            tf_features.int64_feature([int(s) for s in splits]))
    return example


def parse_milnce_example(serialized):
    """Reads a record written by make_milnce_example (numpy side, for tests
    and inspection; the tf.data reader is `input_pipeline.milnce`).

    Args:
        serialized: the record's bytes.

    Returns:
        The dict of `video_writer.parse_video_example` plus
        "caption_text" (list of str), "caption_start", "caption_end" (lists
        of float; all empty without captions) and "splits" (list of 3 ints,
        or None).
    """
    parsed = video_writer.parse_video_example(serialized)
    context = tf.train.SequenceExample.FromString(serialized).context.feature

    def values(key, kind):
        return list(getattr(context[key], kind).value) if key in context \
            else []

    parsed["caption_text"] = [
        t.decode("utf-8") for t in values(F.VIDEO_CAPTION_STRING,
                                          "bytes_list")]
    parsed["caption_start"] = values(F.VIDEO_CAPTION_START, "float_list")
    parsed["caption_end"] = values(F.VIDEO_CAPTION_END, "float_list")
    parsed["splits"] = values(F.VIDEO_SPLITS, "int64_list") or None
    return parsed


# -- conversion ---------------------------------------------------------------


def _find_video(candidates):
    """(path, data_path) of the first existing candidate, else Reject."""
    for path, data_path in candidates:
        if tf.io.gfile.exists(path):
            return path, data_path
    raise conversion.Reject(
        "no video file: looked for " + ", ".join(p for p, _ in candidates))


def convert_item(item, settings):
    """Converts one item (a video or segment) into its record.

    Args:
        item: dict from `read_items` (see milnce_inputs.make_item).
        settings: VideoSettings.

    Returns:
        [serialized SequenceExample].

    Raises:
        conversion.Reject: missing or unreadable video, missing, malformed
            or empty caption file (reason given).
    """
    path, data_path = _find_video(item["candidates"])
    captions = item["captions"] or []
    if item["caption_file"]:
        try:
            captions = read_captions(item["caption_file"])
        except cli.ToolError as e:
            raise conversion.Reject(str(e)) from None
    try:
        clip = decode_clip(path, settings, item["start"], item["end"])
    except VideoError as e:
        raise conversion.Reject(str(e)) from None
    captions = [(start, clip.end if end is None else end, text)
                for start, end, text in captions]
    example = make_milnce_example(
        clip, item["media_id"], data_path, captions, item["label_index"],
        item["label"], item["splits"])
    return [example.SerializeToString(deterministic=True)]


def convert_dataset(dataset, output_dir, video_path, csv_path=None,
                    caption_root=None, settings=None, num_shards=1,
                    num_workers=1, progress=True, prefix=None,
                    segment_margin=DEFAULT_SEGMENT_MARGIN, shuffle_seed=None,
                    **conversion_kwargs):
    """Converts one dataset's videos into sharded MIL-NCE records.

    Running it again with the same arguments converts only what is missing
    (nothing when complete), so it also serves "convert on first use".

    Args:
        dataset: "howto100m", "msrvtt", "youcook" or "hmdb".
        output_dir: output directory.
        video_path: folder of the videos.
        csv_path: the video list (howto100m, required) or the evaluation
            CSV (None: the packaged copy).
        caption_root: howto100m: folder of `<video_id>.csv` caption files.
        settings: VideoSettings (None: default_settings(dataset)).
        num_shards: number of shards.
        num_workers: local runner: worker processes.
        progress: show a progress bar.
        prefix: shard name prefix (None: DEFAULT_PREFIXES[dataset]).
        segment_margin: youcook: seconds converted past a caption's end.
        shuffle_seed: seed of the item order, None = list order.
        **conversion_kwargs: runner, beam_runner, beam_options (see
            conversion.convert_items).

    Returns:
        conversion.ConversionResult; the manifest's options hold the
        dataset, inputs and settings (and the class names for hmdb).

    Raises:
        InputError, MissingInputError: bad input (one precise message).
        conversion.ConversionError: an unexpected error on an item, or
            every item rejected.
    """
    settings = settings or default_settings(dataset)
    settings.check()
    items, classes = read_items(dataset, video_path, csv_path, caption_root,
                                segment_margin)
    import_av()  # fail before any work
    items = video_writer.shuffle_items(items, shuffle_seed)
    options = {"source": f"milnce_{dataset}", "dataset": dataset,
               "csv": csv_path or PACKAGED_CSVS.get(dataset),
               "video_path": video_path, "caption_root": caption_root,
               **dataclasses.asdict(settings), "shuffle_seed": shuffle_seed}
    if dataset == "youcook":
        options["segment_margin"] = segment_margin
    if dataset == "hmdb":
        options["classes"] = classes
    return conversion.convert_items(
        items, functools.partial(convert_item, settings=settings),
        output_dir, prefix or DEFAULT_PREFIXES[dataset], num_shards,
        options=options, num_workers=num_workers, progress=progress,
        **conversion_kwargs)


# -- CLI ----------------------------------------------------------------------

FLAGS = flags.FlagValues()
cli.flag_topic("input", FLAGS)
flags.DEFINE_enum(
    "dataset", "howto100m", list(DATASETS),
    "howto100m: training videos + caption files (--train_csv, "
    "--caption_root); msrvtt, youcook, hmdb: the evaluation sets (--csv). "
    "Shard prefix by default: train, msrvtt_test, youcook_val, hmdb51.",
    flag_values=FLAGS)
flags.DEFINE_string(
    "train_csv", None,
    "howto100m: the video list, a CSV with a video_path column (the "
    "original's csv/howto100m_videos.csv) or one path a line, relative to "
    "--video_path.", flag_values=FLAGS)
flags.DEFINE_string(
    "csv", None,
    "msrvtt / youcook / hmdb: the evaluation CSV (msrvtt_test.csv, "
    "validation_youcook.csv, hmdb51.csv); default: the packaged copy in "
    "howto/data.", flag_values=FLAGS)
flags.DEFINE_string(
    "video_path", None,
    "Folder of the videos (howto100m: the list's paths are relative to it; "
    "msrvtt: <video_id>.mp4; youcook: validation/<task>/<video_id>.<ext> or "
    "<video_id>.<ext>; hmdb: <class>/<video_id>).", flag_values=FLAGS)
flags.DEFINE_string(
    "caption_root", None,
    "howto100m: folder of <video_id>.csv caption files (start,end,text).",
    flag_values=FLAGS)
flags.DEFINE_float(
    "segment_margin", DEFAULT_SEGMENT_MARGIN,
    "youcook: seconds converted past each caption's end (enough for a "
    "16-frame window at 5 fps starting at a short caption's start).",
    lower_bound=0.0, flag_values=FLAGS)
flags.DEFINE_integer(
    "shuffle_seed", -1,
    "Seed of the order in which items are spread over the shards; -1 keeps "
    "the list order.", lower_bound=-1, flag_values=FLAGS)
cli.flag_topic("frames", FLAGS)
flags.DEFINE_float(
    "fps", None,
    "Stored frames per second (frame k = last frame at or before k/fps); 0 "
    "keeps every decoded frame. Default: 5, or 0 for hmdb.",
    lower_bound=0.0, flag_values=FLAGS)
flags.DEFINE_integer(
    "short_side", DEFAULT_SHORT_SIDE,
    "Resize so that the short side has this many pixels (aspect kept); 0 "
    "keeps the size.", lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of stored frames.",
                     lower_bound=1, upper_bound=100, flag_values=FLAGS)
conversion.define_flags(FLAGS, default_prefix=None)


@cli.handle_errors
def main(argv):
    """Converts per the module FLAGS (which must be parsed)."""
    if len(argv) > 1:
        raise cli.InputError(f"unexpected arguments {argv[1:]}")
    dataset = FLAGS.dataset
    if dataset == "howto100m" and FLAGS.csv:
        raise cli.InputError(
            "--csv is for msrvtt, youcook and hmdb; the HowTo100M video list "
            "is --train_csv")
    if dataset != "howto100m" and FLAGS.train_csv:
        raise cli.InputError(f"--train_csv is for --dataset=howto100m; "
                             f"{dataset} takes --csv")
    settings = default_settings(dataset, FLAGS.fps, FLAGS.short_side,
                                FLAGS.jpeg_quality)
    result = convert_dataset(
        dataset, video_path=FLAGS.video_path,
        csv_path=FLAGS.train_csv if dataset == "howto100m" else FLAGS.csv,
        caption_root=FLAGS.caption_root, settings=settings,
        segment_margin=FLAGS.segment_margin,
        shuffle_seed=None if FLAGS.shuffle_seed < 0 else FLAGS.shuffle_seed,
        **conversion.flag_kwargs(FLAGS))
    print(result.summary())
    return 0


def run():
    """Console-script entry point."""
    cli.run(main, FLAGS)


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy, so that the convert
    # function reaches pool and Beam workers pickled by its module path.
    from tfrecord_tools import milnce_writer as _module  # noqa: PLW0406
    _module.run()
