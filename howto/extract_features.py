"""MIL-NCE features of your own videos: ``python -m howto.extract_features``.

  python -m howto.extract_features --video_dir=my_videos \\
      --output_dir=features --pretrain_cnn_path=s3d_howto100m.pth \\
      --batch_size=16

Every video of ``--video_dir`` (searched recursively; files whose type is
not video are ignored) or of ``--csv`` (a list as
``tfrecord_tools.video_writer --csv`` reads it: a header ``path`` plus
optional ``label,start,end`` columns, relative paths against the CSV's
folder) is cut into consecutive, non-overlapping windows of
``--num_frames`` frames at ``--fps`` (16 at 5 fps: 3.2 s) covering the
whole video, the last one padded with black frames; each window's centre
square is resized to ``--video_size`` and goes through S3D-G.

Output (``--format=npz``, the default): one ``<video id>.npz`` per video
in ``--output_dir`` (the id is the file name without its extension),
holding one float32 array [windows, size] per layer of ``--layers``
(``mixed_5c``: 1024, ``video_embedding``: 512) and ``start_time``
[windows] (seconds into the video). Read it with
``np.load(path)["mixed_5c"]``. Files are written atomically, in input
order, with a progress bar. ``--format=tfrecord`` writes one
SequenceExample per video (media id, one feature list per layer, window
start times; keys in ``input_pipeline.features``) into
``<output_dir>/features-00000-of-00001.tfrecord`` instead
(``howto.milnce_eval.parse_feature_example`` reads a record).

The videos are first converted once into TFRecords (JPEG frames at
``--fps``, short side ``--short_side``) by ``tfrecord_tools.video_writer``
into ``--records_cache`` (default ``<video_dir>/vidmodels_records/videos``
or ``<csv folder>/vidmodels_records/videos``, or
``./vidmodels_records/videos`` when that folder is not writable); a later
run on the same videos reuses them. ``--batch_size`` counts windows.
``--pretrain_cnn_path`` takes the released ``.pth``, an original training
checkpoint, a ``howto.convert_milnce`` folder or one of our run folders.
"""

import mimetypes
import os

import tensorflow as tf
from absl import flags

from howto import milnce_data, milnce_eval, milnce_eval_cli
from howto import milnce_flags as mflags
from vidcore import cli
from vidcore import files as vfiles
from vidcore.errors import UserInputError
from vidcore.files import write_text_atomic

FLAGS = milnce_eval_cli.FLAGS
cli.flag_topic("data", FLAGS)
flags.DEFINE_string(
    "video_dir", "",
    "Folder of videos (searched recursively). One of --video_dir, --csv.",
    flag_values=FLAGS)
flags.DEFINE_string(
    "csv", "",
    "CSV of videos with a header path[,label,start,end] (relative paths "
    "against the CSV's folder). One of --video_dir, --csv.",
    flag_values=FLAGS)
cli.flag_topic("evaluation output", FLAGS)
flags.DEFINE_string("output_dir", "",
                    "Folder of the <video id>.npz feature files.",
                    flag_values=FLAGS)
flags.DEFINE_list("layers", list(milnce_eval.LAYERS),
                  "Layers saved: mixed_5c (1024), video_embedding (512).",
                  flag_values=FLAGS)
flags.DEFINE_enum("format", "npz", list(milnce_eval.FORMATS),
                  "npz: one <video id>.npz per video; tfrecord: one record "
                  "per video in one shard.", flag_values=FLAGS)

CACHE_NAME = "videos"
LIST_NAME = "videos.csv"
CONVERTER = "tfrecord_tools.video_writer"


def list_videos(video_dir):
    """Video files below ``video_dir`` (any tf.io.gfile filesystem; by
    type, hidden ones skipped), sorted."""
    found = []
    for root, dirs, files in tf.io.gfile.walk(video_dir):
        dirs[:] = sorted(d for d in (d.rstrip("/") for d in dirs)
                         if not d.startswith(".")
                         and d != "vidmodels_records")
        for name in files:
            kind = mimetypes.guess_type(name)[0] or ""
            if not name.startswith(".") and kind.startswith("video/"):
                found.append(vfiles.display_path(os.path.join(root, name)))
    return sorted(found)


def input_records():
    """Shards of the input videos, converted on first use."""
    if bool(FLAGS.video_dir) == bool(FLAGS.csv):
        raise UserInputError("give exactly one input: --video_dir (a folder "
                             "of videos) or --csv (a list of videos)")
    source = FLAGS.video_dir or FLAGS.csv
    flag_name = "video_dir" if FLAGS.video_dir else "csv"
    if FLAGS.video_dir:
        if not tf.io.gfile.isdir(source):
            raise UserInputError(f"--video_dir={source} is not a folder")
        videos = list_videos(source)
        if not videos:
            raise UserInputError(f"--video_dir={source} holds no video file")
        base = source
    else:
        if not tf.io.gfile.exists(source):
            raise UserInputError(f"--csv={source} does not exist")
        base = vfiles.parent_dir(source)
    cache = FLAGS.records_cache or milnce_data.default_cache(base, CACHE_NAME)
    tf.io.gfile.makedirs(cache)
    csv_path = source
    if FLAGS.video_dir:
        csv_path = os.path.join(cache, LIST_NAME)
        write_text_atomic(csv_path, "path\n" + "".join(
            '"' + v.replace('"', '""') + '"\n' for v in videos))
    args = [f"--csv={csv_path}", f"--fps={FLAGS.fps}",
            f"--short_side={FLAGS.short_side}", "--shuffle_seed=-1"]
    return milnce_data.converted_records(
        None, base, cache, flag_name, args, prefix=CACHE_NAME,
        converter=CONVERTER)


def main(argv):
    del argv
    mflags.log_torch_only_flags()
    if not FLAGS.output_dir:
        raise UserInputError("--output_dir is required (the folder of the "
                             "feature files)")
    files = input_records()
    strategy = milnce_eval_cli.make_strategy()
    model, _, loaded = milnce_eval_cli.load_model(strategy)
    paths = milnce_eval.extract_features(
        model, files, milnce_eval_cli.eval_clip_config(), FLAGS.batch_size,
        FLAGS.output_dir, layers=FLAGS.layers, format=FLAGS.format,
        strategy=strategy,
        progress=bool(FLAGS.verbose),
        options=milnce_eval_cli.reader_options())
    print(f"wrote {', '.join(FLAGS.layers)} features ({FLAGS.format}; "
          f"weights {loaded}) to {FLAGS.output_dir}")
    return paths


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
