"""Where the MIL-NCE CLIs find their records: shards, or raw videos
converted on first use.

The published commands name folders of raw videos (``--video_path``,
``--eval_video_root``). The CLIs accept those as they are: the first run
converts them once with ``tfrecord_tools.milnce_writer`` (run as its own
process, so its progress bar and rejects file are the converter's own, and
so no family imports the conversion tools) into a records folder, and later
runs reuse it (the converter resumes and skips finished shards). A glob of
shards, or a folder that already holds them, is read directly.
"""

import json
import os
import subprocess
import sys

import tensorflow as tf

from vidcore.errors import UserInputError

RECORD_PATTERN = "*.tfrecord*"
CONVERTER = "tfrecord_tools.milnce_writer"


def _glob(pattern):
    # tf.io.gfile.glob also matches hidden files: the converter's
    # ".<shard>.done.json" completion records and ".partial" shards.
    return sorted(p for p in tf.io.gfile.glob(pattern)
                  if not os.path.basename(p).startswith("."))


def shard_files(path):
    """The TFRecord shards that ``path`` names, or [] when it names none.

    Args:
        path: a glob of shards, a shard, or a folder holding shards.
    """
    if any(c in path for c in "*?["):
        return _glob(path)
    if tf.io.gfile.isdir(path):
        return _glob(os.path.join(path, RECORD_PATTERN))
    if tf.io.gfile.exists(path) and ".tfrecord" in os.path.basename(path):
        return [path]
    return []


def converted_records(dataset, video_root, output_dir, flag_name,
                      converter_args=(), prefix=None, converter=CONVERTER):
    """Shards of ``dataset`` converted from the raw videos of ``video_root``.

    Runs the converter (``python -m tfrecord_tools.milnce_writer``) unless
    ``output_dir`` holds a finished conversion of it with the same frame
    settings (:func:`finished_conversion`: then no process is started), and
    returns the shards. The converter resumes: an interrupted conversion
    continues.

    Args:
        dataset: converter ``--dataset`` (howto100m, msrvtt, youcook, hmdb).
        video_root: the folder of raw videos.
        output_dir: where the shards go.
        flag_name: the CLI flag that named ``video_root`` (for messages).
        converter_args: more converter flags (``--fps=5``, ``--csv=...``).
        prefix: shard file prefix (default: the dataset name).
        converter: the converter module; ``tfrecord_tools.video_writer``
            (captionless videos, for feature extraction) takes no
            ``--dataset``: pass ``dataset=None`` and a ``prefix``.

    Returns:
        Sorted list of shard paths.

    Raises:
        UserInputError: ``video_root`` is not a folder, or the conversion
            failed or wrote nothing.
    """
    if not tf.io.gfile.isdir(video_root):
        raise UserInputError(
            f"--{flag_name}={video_root} is neither TFRecord shards nor a "
            f"folder of videos")
    prefix = prefix or dataset
    finished = finished_conversion(output_dir, prefix, converter_args)
    if finished:
        print(f"Reusing {len(finished)} shard(s) converted earlier from "
              f"--{flag_name}={video_root} in {output_dir}", flush=True)
        return finished
    command = [sys.executable, "-m", converter,
               *([f"--dataset={dataset}", f"--video_path={video_root}"]
                 if dataset else []),
               f"--output_dir={output_dir}", f"--prefix={prefix}",
               *converter_args]
    print(f"Converting the videos of --{flag_name}={video_root} once into "
          f"{output_dir} (reused by later runs):", flush=True)
    done = subprocess.run(command, check=False)
    if done.returncode:
        raise UserInputError(
            f"converting --{flag_name}={video_root} failed (exit status "
            f"{done.returncode}; the converter's message is above): "
            f"{' '.join(command[1:])}")
    files = _glob(os.path.join(output_dir, f"{prefix}-{RECORD_PATTERN}"))
    if not files:
        raise UserInputError(f"converting --{flag_name}={video_root} wrote "
                             f"no shards into {output_dir}")
    return files


def _option_values(converter_args):
    """{option: value} of ``--name=value`` converter flags."""
    return dict(arg[2:].split("=", 1) for arg in converter_args
                if arg.startswith("--") and "=" in arg)


def finished_conversion(output_dir, prefix, converter_args=()):
    """The shards of a finished conversion in ``output_dir`` made with the
    same frame settings, or [] (then the converter runs, and resumes).

    A conversion is finished when its manifest (written last) lists shards
    that all exist; ``--fps`` and ``--short_side`` among ``converter_args``
    must equal the manifest's options, so changed settings convert again.
    """
    manifest = os.path.join(output_dir, f"manifest-{prefix}.json")
    if not tf.io.gfile.exists(manifest):
        return []
    try:
        with tf.io.gfile.GFile(manifest) as f:
            data = json.load(f)
        names = [shard["name"] for shard in data["shards"]]
        options = data.get("options", {})
    except (ValueError, KeyError, TypeError):
        return []
    wanted = _option_values(converter_args)
    for key in ("fps", "short_side"):
        if key in wanted and key in options and (
                float(wanted[key]) != float(options[key])):
            return []
    files = [os.path.join(output_dir, name) for name in names]
    if not files or not all(tf.io.gfile.exists(f) for f in files):
        return []
    return sorted(files)


def records_or_convert(path, dataset, cache_dir, flag_name,
                       converter_args=()):
    """Shards named by ``path``, or those converted from its raw videos.

    Args:
        path: a glob / folder of shards, or a folder of raw videos.
        dataset: converter ``--dataset`` for raw videos.
        cache_dir: where raw videos are converted to.
        flag_name: the CLI flag that gave ``path``.
        converter_args: more converter flags.

    Returns:
        Sorted list of shard paths.
    """
    if not path:
        raise UserInputError(f"--{flag_name} is required")
    files = shard_files(path)
    if files:
        return files
    if any(c in path for c in "*?["):
        raise UserInputError(f"--{flag_name}={path} matches no file")
    return converted_records(dataset, path, cache_dir, flag_name,
                             converter_args)


def default_cache(video_root, name):
    """<video_root>/vidmodels_records/<name>, or ./vidmodels_records/<name>
    when the video folder is not writable."""
    base = os.path.join(video_root, "vidmodels_records")
    try:
        tf.io.gfile.makedirs(base)
        probe = os.path.join(base, ".write_test")
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("")
        tf.io.gfile.remove(probe)
    except (tf.errors.OpError, OSError):
        base = os.path.abspath("vidmodels_records")
    return os.path.join(base, name)
