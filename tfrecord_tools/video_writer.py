"""Raw videos -> SequenceExample shards of JPEG frames (Kinetics / UCF101).

Library:
  VideoSettings(fps, short_side, jpeg_quality)     conversion settings
  read_label_map(path)                             class names, one a line
  list_video_folder(video_dir, label_map, ...)     -> (items, class names)
  read_video_csv(csv_path, video_root, label_map)  -> (items, class names)
  decode_clip(path, settings, start, end)          -> DecodedClip
  make_video_example(clip, media_id, data_path, label_index, label)
  parse_video_example(serialized)                  -> dict (numpy side)
  convert_video(item, settings)                    -> [serialized record]
  convert_folder(video_dir, output_dir, ...)       -> ConversionResult
  convert_csv(csv_path, output_dir, ...)           -> ConversionResult

The record layout is the raw-video section of `input_pipeline.features`
(DMVR / TF Model Garden keys): one SequenceExample per video, or per CSV
segment, with one JPEG per stored frame in the `image/encoded` feature list
and the media id, source path, label, segment times, frame rate and size,
and the source's own frame rate and duration in the context.

Inputs:

* `--video_dir`: one sub-folder per class (Kinetics, UCF101, HMDB-51
  layout), videos anywhere below it. The class index is the position of the
  folder's name in the sorted folder names (as torchvision's `find_classes`;
  empty class folders count), or its line in `--label_map` (one class name a
  line, e.g. Kinetics' label_map.txt) when given; a folder name matches a
  label-map name exactly or with its underscores read as spaces
  ("playing_cricket" -> "playing cricket"), and a class folder that is not
  in the label map is an error. Files with another extension than
  `--extensions` inside class folders are listed in the rejects file;
  hidden files and folders (".name") are ignored, and so are non-video
  files directly in `--video_dir` (a README, a CSV); a video directly in
  `--video_dir` is an error (it has no class).
* `--csv`: a CSV with header `path,label,start,end` (`label`, `start`,
  `end` optional columns; empty start/end = whole video, empty label =
  unlabelled, e.g. a test set). Relative paths resolve against
  `--video_root`, else the CSV's folder. Class indices as above, from the
  sorted label names of the CSV when there is no label map.
* `--csv` in the official Kinetics layout (header with `youtube_id`,
  `time_start`, `time_end`, optional `label`, `split`, `is_cc`): each row
  names the downloaded, already trimmed file
  `{youtube_id}_{time_start:06d}_{time_end:06d}.<video extension>`, looked
  up anywhere below `--video_root` (default: the CSV's folder); the whole
  file is converted. A row whose file is missing (videos removed from
  YouTube) is rejected, not an error.

Frames (the rules the tests check):

* Timestamps are the decoded frames' presentation times, in seconds from
  the video stream's start time. A segment [start, end) (whole video: start
  0, end = the video's end, i.e. the last frame's timestamp plus its
  duration) is resampled to `fps`: stored frame k shows the last decoded
  frame whose timestamp is <= start + k / fps (the first frame when none
  is), for every k with start + k / fps < end; so a whole video of D
  seconds gives ceil(D * fps) frames (torchvision's nearest-lower index
  resampling for constant-rate video). Arithmetic is exact (fractions).
  `fps=0` keeps every decoded frame with start <= timestamp < end.
* Frames are resized (swscale bilinear, by PyAV) so that the short side is
  `short_side` (up or down) and the long side is
  round(long * short_side / short) (nearest integer, halves up), from the
  coded size (sample aspect ratio and rotation metadata are ignored). The
  size of the first stored frame is used for all of them. `short_side=0`
  keeps the size.
* Each frame is JPEG-encoded by `tf.io.encode_jpeg` (libjpeg-turbo, 4:2:0,
  `jpeg_quality`): TensorFlow is a dependency already, and it encodes
  faster than Pillow here (0.24 vs 0.47 ms per 301x128 frame).
* A segment end beyond the video's end is clamped to it (the written end
  timestamp says where the frames stop); a segment that starts at or after
  the end is rejected.

Rejected videos (listed with the reason in `rejects-<prefix>.jsonl`): a
file that cannot be opened (missing, unreadable, not a video: PyAV's own
message), no video stream, no decoded frames, a decoding error part-way
(nothing of that video is written), a segment outside the video, a file
with another extension than `--extensions` in a class folder, a Kinetics
row without its file.

CLI (needs PyAV: pip install 'vidmodels[video]'):

  python -m tfrecord_tools.video_writer --video_dir=kinetics400/train \
      --label_map=label_map.txt --output_dir=out --num_shards=256 \
      --num_workers=8      # or --runner=beam --beam_options="..."
  python -m tfrecord_tools.video_writer --csv=segments.csv \
      --video_root=videos --output_dir=out --prefix=test --fps=15
"""

import dataclasses
import functools
import random

import tensorflow as tf
from absl import flags

from input_pipeline import features as F
from tfrecord_tools import cli, conversion, tf_features
from tfrecord_tools.video_decode import (  # noqa: F401 (public API)
    IMAGE_FORMAT,
    DecodedClip,
    VideoError,
    VideoSettings,
    decode_clip,
    import_av,
    output_size,
)
from tfrecord_tools.video_inputs import (  # noqa: F401 (public API)
    CSV_COLUMNS,
    KINETICS_COLUMNS,
    KINETICS_NAME,
    VIDEO_EXTENSIONS,
    list_video_folder,
    read_label_map,
    read_video_csv,
)

_US = 1_000_000  # microseconds per second


# -- records ------------------------------------------------------------------


def make_video_example(clip, media_id, data_path, label_index=None,
                       label=None):
    """Builds one raw-video record (keys of `input_pipeline.features`).

    Args:
        clip: DecodedClip.
        media_id: the video (or segment) id.
        data_path: the source file as given by the input.
        label_index: class index, or None (unlabelled).
        label: class name, or None; written under both the DMVR key
            (`clip/label/string`) and the Model Garden key
            (`clip/label/text`).

    Returns:
        tf.train.SequenceExample.

    Raises:
        InputError: a clip without frames.
    """
    if not clip.frames:
        raise cli.InputError(f"{media_id}: no frames to write")
    context = {
        F.VIDEO_MEDIA_ID: tf_features.bytes_feature([media_id]),
        F.VIDEO_DATA_PATH: tf_features.bytes_feature([data_path]),
        F.VIDEO_START_TIMESTAMP: tf_features.int64_feature(
            [round(clip.start * _US)]),
        F.VIDEO_END_TIMESTAMP: tf_features.int64_feature(
            [round(clip.end * _US)]),
        F.VIDEO_FRAME_RATE: tf_features.float_feature([clip.frame_rate]),
        F.VIDEO_HEIGHT: tf_features.int64_feature([clip.height]),
        F.VIDEO_WIDTH: tf_features.int64_feature([clip.width]),
        F.VIDEO_FORMAT: tf_features.bytes_feature([IMAGE_FORMAT]),
        F.VIDEO_SOURCE_FRAME_RATE: tf_features.float_feature(
            [clip.source_frame_rate]),
        F.VIDEO_SOURCE_DURATION: tf_features.float_feature(
            [clip.source_duration]),
    }
    if label_index is not None:
        context[F.VIDEO_LABEL_INDEX] = tf_features.int64_feature(
            [int(label_index)])
    if label is not None:
        context[F.VIDEO_LABEL_STRING] = tf_features.bytes_feature([label])
        context[F.VIDEO_LABEL_TEXT] = tf_features.bytes_feature([label])
    frames = tf.train.FeatureList(
        feature=[tf_features.bytes_feature([f]) for f in clip.frames])
    return tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(
            feature_list={F.VIDEO_IMAGE_ENCODED: frames}))


def parse_video_example(serialized):
    """Reads a record written by make_video_example (numpy side, for tests
    and inspection; the tf.data reader is `input_pipeline.video`).

    Args:
        serialized: the record's bytes.

    Returns:
        Dict: "frames" (list of JPEG bytes), "media_id", "data_path",
        "label_index" (int or None), "label" and "label_text" (str or
        None), "start_us", "end_us", "height", "width" (int), "frame_rate",
        "source_frame_rate", "source_duration" (float), "format" (str).
    """
    example = tf.train.SequenceExample.FromString(serialized)
    ctx = example.context.feature

    def one(key, kind):
        if key not in ctx:
            return None
        value = getattr(ctx[key], kind).value[0]
        return value.decode("utf-8") if isinstance(value, bytes) else value

    frames = example.feature_lists.feature_list[F.VIDEO_IMAGE_ENCODED]
    return {
        "frames": [f.bytes_list.value[0] for f in frames.feature],
        "media_id": one(F.VIDEO_MEDIA_ID, "bytes_list"),
        "data_path": one(F.VIDEO_DATA_PATH, "bytes_list"),
        "label_index": one(F.VIDEO_LABEL_INDEX, "int64_list"),
        "label": one(F.VIDEO_LABEL_STRING, "bytes_list"),
        "label_text": one(F.VIDEO_LABEL_TEXT, "bytes_list"),
        "start_us": one(F.VIDEO_START_TIMESTAMP, "int64_list"),
        "end_us": one(F.VIDEO_END_TIMESTAMP, "int64_list"),
        "frame_rate": one(F.VIDEO_FRAME_RATE, "float_list"),
        "height": one(F.VIDEO_HEIGHT, "int64_list"),
        "width": one(F.VIDEO_WIDTH, "int64_list"),
        "format": one(F.VIDEO_FORMAT, "bytes_list"),
        "source_frame_rate": one(F.VIDEO_SOURCE_FRAME_RATE, "float_list"),
        "source_duration": one(F.VIDEO_SOURCE_DURATION, "float_list"),
    }


# -- conversion ---------------------------------------------------------------


def convert_video(item, settings):
    """Converts one item (a video or segment) into its record.

    Args:
        item: dict from list_video_folder / read_video_csv.
        settings: VideoSettings.

    Returns:
        [serialized SequenceExample].

    Raises:
        conversion.Reject: the video cannot be converted (reason given).
    """
    if item.get("skip"):
        raise conversion.Reject(item["skip"])
    try:
        clip = decode_clip(item["path"], settings, item.get("start"),
                           item.get("end"))
    except VideoError as e:
        raise conversion.Reject(str(e)) from None
    example = make_video_example(clip, item["media_id"], item["data_path"],
                                 item.get("label_index"), item.get("label"))
    return [example.SerializeToString(deterministic=True)]


def shuffle_items(items, seed):
    """A copy of items in a seeded random order (None: input order).

    Contiguous shards of a class-sorted list would hold one or two classes
    each; shuffling spreads the classes over the shards.

    Args:
        items: list.
        seed: int seed, or None to keep the order.

    Returns:
        New list.
    """
    items = list(items)
    if seed is not None:
        random.Random(seed).shuffle(items)
    return items


def _convert(items, classes, source, settings, output_dir, prefix,
             num_shards, shuffle_seed, conversion_kwargs, **options):
    """Shared tail of convert_folder / convert_csv."""
    settings.check()
    import_av()  # fail before any work
    items = shuffle_items(items, shuffle_seed)
    options = {"source": source, **options,
               **dataclasses.asdict(settings),
               "shuffle_seed": shuffle_seed, "classes": classes}
    return conversion.convert_items(
        items, functools.partial(convert_video, settings=settings),
        output_dir, prefix, num_shards, options=options,
        **conversion_kwargs)


def convert_folder(video_dir, output_dir, settings=None,
                   label_map=None, extensions=VIDEO_EXTENSIONS,
                   shuffle_seed=0, prefix="train", num_shards=1,
                   **conversion_kwargs):
    """Converts a one-folder-per-class video tree into sharded records.

    Args:
        video_dir: directory with one sub-folder per class.
        output_dir: output directory.
        settings: VideoSettings (default: VideoSettings()).
        label_map: None, a label-map file path or a list of class names.
        extensions: video file extensions.
        shuffle_seed: seed of the item order, None = class/path order.
        prefix: shard name prefix.
        num_shards: number of shards.
        **conversion_kwargs: runner, num_workers, beam_runner, beam_options,
            progress (see conversion.convert_items).

    Returns:
        conversion.ConversionResult; its manifest's options hold the class
        names in index order ("classes").

    Raises:
        InputError, MissingInputError: bad input (one precise message).
        conversion.ConversionError: an unexpected error on an item.
    """
    settings = settings or VideoSettings()
    settings.check()
    items, classes = list_video_folder(video_dir, label_map, extensions)
    return _convert(items, classes, "video_folder", settings, output_dir,
                    prefix, num_shards, shuffle_seed, conversion_kwargs,
                    video_dir=video_dir, extensions=list(extensions),
                    label_map=_option_label_map(label_map))


def convert_csv(csv_path, output_dir, settings=None,
                video_root=None, label_map=None,
                extensions=VIDEO_EXTENSIONS, shuffle_seed=0, prefix="train",
                num_shards=1, **conversion_kwargs):
    """Converts the videos / segments listed in a CSV into sharded records.

    Args:
        csv_path: the CSV (see read_video_csv).
        output_dir: output directory.
        settings: VideoSettings.
        video_root: base of relative paths (None = the CSV's folder).
        label_map: None, a label-map file path or a list of class names.
        extensions: Kinetics layout: possible video file extensions.
        shuffle_seed: seed of the item order, None = CSV order.
        prefix: shard name prefix.
        num_shards: number of shards.
        **conversion_kwargs: see convert_folder.

    Returns:
        conversion.ConversionResult.

    Raises:
        InputError, MissingInputError: bad input (one precise message).
        conversion.ConversionError: an unexpected error on an item.
    """
    settings = settings or VideoSettings()
    settings.check()
    items, classes = read_video_csv(csv_path, video_root, label_map,
                                    extensions)
    return _convert(items, classes, "video_csv", settings, output_dir,
                    prefix, num_shards, shuffle_seed, conversion_kwargs,
                    csv=csv_path, video_root=video_root,
                    label_map=_option_label_map(label_map))


def _option_label_map(label_map):
    return label_map if label_map is None or isinstance(label_map, str) \
        else "<list>"


# -- CLI ----------------------------------------------------------------------

FLAGS = flags.FlagValues()
cli.flag_topic("input", FLAGS)
flags.DEFINE_string(
    "video_dir", None,
    "Input: a directory with one sub-folder per class (Kinetics / UCF101 "
    "layout). Exactly one of --video_dir and --csv.", flag_values=FLAGS)
flags.DEFINE_string(
    "csv", None,
    "Input: a CSV with header path,label,start,end (label, start, end "
    "optional; seconds; empty = whole video / unlabelled) or the official "
    "Kinetics columns label,youtube_id,time_start,time_end,split.",
    flag_values=FLAGS)
flags.DEFINE_string(
    "video_root", None,
    "--csv: directory of relative paths and Kinetics files (default: the "
    "CSV's folder).", flag_values=FLAGS)
flags.DEFINE_string(
    "label_map", None,
    "Class names, one a line (class index = line number - 1), e.g. "
    "Kinetics' label_map.txt. Default: the sorted folder / label names.",
    flag_values=FLAGS)
flags.DEFINE_float(
    "fps", 15.0,
    "Stored frames per second (frame k = last frame at or before k/fps); "
    "0 keeps every decoded frame.", lower_bound=0.0, flag_values=FLAGS)
flags.DEFINE_integer(
    "short_side", 128,
    "Resize so that the short side has this many pixels (aspect kept); 0 "
    "keeps the size.", lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of stored frames.",
                     lower_bound=1, upper_bound=100, flag_values=FLAGS)
flags.DEFINE_string(
    "extensions", ",".join(VIDEO_EXTENSIONS),
    "Video file extensions (other files in class folders are rejected).",
    flag_values=FLAGS)
flags.DEFINE_integer(
    "shuffle_seed", 0,
    "Seed of the order in which videos are spread over the shards; -1 "
    "keeps the input order (class then path, or CSV order).",
    lower_bound=-1, flag_values=FLAGS)
conversion.define_flags(FLAGS, default_prefix="train")


@cli.handle_errors
def main(argv):
    """Converts per the module FLAGS (which must be parsed)."""
    if len(argv) > 1:
        raise cli.InputError(f"unexpected arguments {argv[1:]}")
    if bool(FLAGS.video_dir) == bool(FLAGS.csv):
        raise cli.InputError(
            "give exactly one input: --video_dir (one sub-folder per class) "
            "or --csv")
    if FLAGS.video_root and not FLAGS.csv:
        raise cli.InputError("--video_root needs --csv")
    extensions = tuple(
        e if e.startswith(".") else f".{e}"
        for e in cli.parse_name_list(FLAGS.extensions))
    if not extensions:
        raise cli.InputError("--extensions: no extension given")
    settings = VideoSettings(fps=FLAGS.fps, short_side=FLAGS.short_side,
                             jpeg_quality=FLAGS.jpeg_quality)
    seed = None if FLAGS.shuffle_seed < 0 else FLAGS.shuffle_seed
    kwargs = conversion.flag_kwargs(FLAGS)
    if FLAGS.video_dir:
        result = convert_folder(
            FLAGS.video_dir, settings=settings, label_map=FLAGS.label_map,
            extensions=extensions, shuffle_seed=seed, **kwargs)
    else:
        result = convert_csv(
            FLAGS.csv, settings=settings, video_root=FLAGS.video_root,
            label_map=FLAGS.label_map, extensions=extensions,
            shuffle_seed=seed, **kwargs)
    print(result.summary())
    return 0


def run():
    """Console-script entry point."""
    cli.run(main, FLAGS)


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy, so that the convert
    # function reaches pool and Beam workers pickled by its module path.
    from tfrecord_tools import video_writer as _module  # noqa: PLW0406
    _module.run()
