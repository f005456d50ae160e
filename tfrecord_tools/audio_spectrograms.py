"""Audio or video files -> one AVLnet log-mel spectrogram `.npz` per file.

The step the AVLnet authors ran before training (`audio_to_spectrograms.py`,
"save spectrograms in npz format ... half-precision"), for a folder of files
or a list: each input's first audio stream is decoded and resampled to
16 kHz mono (`audio_decode`), and `vidcore.audio.log_mel_spectrogram`
(-4 dB gain, 40 mel bands, 100 frames per second) turns it into a float16
[40, T] array.

Inputs (`--input`):

* a folder: every file under it (recursively) with an audio or video
  extension (.wav .flac .mp3 .m4a .aac .ogg .opus .mp4 .m4v .mkv .webm .avi
  .mov .mpg .mpeg .3gp, any case);
* a CSV with a `path` column (other columns ignored), e.g. the original's
  `--train_csv` (`HowTo100M_1166_videopaths.txt`): relative paths are read
  under `--input_root` (default: the CSV's folder); a path without a media
  extension means `<path>.wav`, the training instructions' layout
  (`<root>/<path>{_2d.npz,_3d.npz,.wav}`).

Outputs, under `--output_dir`, at the input's relative path with its
extension replaced (`a/b/VIDEO_ID.wav` -> `a/b/VIDEO_ID_spec.npz`; an
absolute CSV path keeps only its file name):

* `<stem>_spec.npz`: `arr_0` = float16 [40, T] (the key and the name
  suffix the original's loader reads: `np.load(...)['arr_0']` of
  `<video_id>_spec.npz`, so its files and ours are interchangeable; note
  that its loader looks for `<root>/<path>/<video_id>_spec.npz`, one folder
  per video below the CSV's path, where its instructions' other files sit
  at `<root>/<path>{_2d.npz,_3d.npz,.wav}`) and
  `nframes` = int64, the valid frames (T, or fewer with `--target_length`,
  whose padding frames are zeros as in the original's `LoadAudio`);
* `spectrograms.json`: the options and the counts of the last run;
* `rejects-spectrograms.jsonl`: one JSON object per input that could not be
  converted (`item`, `reason`: missing, unreadable, no audio stream),
  written also when empty, so nothing is dropped silently.

Each `.npz` is written atomically (hidden temporary name, then renamed), so
an existing output is complete: running the same command again skips it
and converts only the rest. Running into an output folder made with other
options is an error. A source at another sample rate is resampled by
FFmpeg (counted in the summary, the first ones logged).

Why not `conversion.convert_items`: that mechanism writes TFRecord shards
with per-shard completion records; here every input has its own small
output file, whose existence already records completion. A thread pool is
enough: FFmpeg decoding and the TensorFlow kernels run outside the GIL, and
threads share one compiled spectrogram function (no process start-up, no
pickling).

Library:
  list_inputs(input_path, input_root)       -> [(source, relative stem)]
  file_spectrogram(source, settings)        -> (spectrogram, nframes, audio)
  convert_file(source, output_path, settings) -> SpectrogramInfo
  convert_files(items, output_dir, settings, num_workers) -> Summary
  load_spectrogram_npz(path)                -> (float16 [40, T], nframes)

CLI:
  python -m tfrecord_tools.audio_spectrograms --input=wavs/ \
      --output_dir=spectrograms/ --num_workers=4
"""

import concurrent.futures
import csv
import dataclasses
import functools
import io
import json
import os
import sys

from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from tfrecord_tools import audio_decode
from tfrecord_tools import cli
from vidcore import audio as core_audio
from vidcore import progress as core_progress
from vidcore.files import write_bytes_atomic, write_json_atomic

MEDIA_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg",
                    ".opus", ".mp4", ".m4v", ".mkv", ".webm", ".avi",
                    ".mov", ".mpg", ".mpeg", ".3gp")
DEFAULT_EXTENSION = ".wav"
OUTPUT_SUFFIX = "_spec.npz"
NPZ_SPECTROGRAM_KEY = "arr_0"
NPZ_NFRAMES_KEY = "nframes"
MANIFEST_NAME = "spectrograms.json"
REJECTS_NAME = "rejects-spectrograms.jsonl"
CSV_PATH_COLUMN = "path"


@dataclasses.dataclass(frozen=True)
class SpectrogramSettings:
    """How spectrograms are made (see vidcore.audio.log_mel_spectrogram).

    Attributes:
        gain_db: gain before the analysis (the original's sox -4 dB).
        pad_mode: "reflect" (the original's librosa) or "constant".
        target_length: 0 keeps every frame; N > 0 pads with zeros or cuts
            to N frames (`LoadAudio(target_length=N)`).
    """

    gain_db: float = core_audio.GAIN_DB
    pad_mode: str = "reflect"
    target_length: int = 0

    def check(self):
        """Raises InputError for a setting out of range."""
        if self.pad_mode not in core_audio.PAD_MODES:
            raise cli.InputError(f"--pad_mode must be one of "
                                 f"{list(core_audio.PAD_MODES)}, got "
                                 f"{self.pad_mode!r}")
        if self.target_length < 0:
            raise cli.InputError(f"--target_length must be >= 0, got "
                                 f"{self.target_length}")

    def options(self):
        """The settings and fixed analysis parameters, for the manifest."""
        return {"gain_db": self.gain_db, "pad_mode": self.pad_mode,
                "target_length": self.target_length,
                "sample_rate": core_audio.SAMPLE_RATE,
                "num_mel_bins": core_audio.NUM_MEL_BINS,
                "frames_per_second": core_audio.FRAMES_PER_SECOND,
                "dtype": "float16"}


@dataclasses.dataclass
class SpectrogramInfo:
    """What converting one file gave.

    Attributes:
        frames: stored frames (T, or target_length).
        nframes: valid frames.
        source_rate: the source's sample rate (resampled if not 16 kHz).
    """

    frames: int
    nframes: int
    source_rate: int


@dataclasses.dataclass
class Summary:
    """Counts of one run (rejects: list of {"item", "reason"})."""

    written: int
    skipped: int
    resampled: int
    rejects: list
    rejects_path: str

    def line(self):
        """One line for the user."""
        text = (f"{self.written} spectrograms written, {self.skipped} "
                f"already there, {len(self.rejects)} rejected")
        if self.resampled:
            text += (f"; {self.resampled} sources resampled to "
                     f"{core_audio.SAMPLE_RATE} Hz")
        if self.rejects:
            text += f" (reasons in {self.rejects_path})"
        return text


# -- inputs -------------------------------------------------------------------


def _is_media(path):
    return os.path.splitext(path)[1].lower() in MEDIA_EXTENSIONS


def _folder_inputs(folder):
    items = []
    for root, _, files in tf.io.gfile.walk(folder):
        for name in files:
            if _is_media(name):
                source = os.path.join(root, name)
                rel = os.path.relpath(source, folder)
                items.append((source, os.path.splitext(rel)[0]))
    return sorted(items, key=lambda item: item[1])


def _csv_inputs(csv_path, input_root):
    root = os.path.dirname(csv_path) if input_root is None else input_root
    with tf.io.gfile.GFile(csv_path, "r") as f:
        rows = csv.reader(io.StringIO(f.read()))
        header = [h.strip() for h in next(rows, [])]
        if CSV_PATH_COLUMN not in header:
            raise cli.InputError(
                f"{csv_path}: expected a header with a '{CSV_PATH_COLUMN}' "
                f"column, got {header}")
        items = []
        for _, row in cli.csv_table_rows(csv_path, header, rows):
            path = row[CSV_PATH_COLUMN]
            if not path:
                continue
            if not _is_media(path):
                path += DEFAULT_EXTENSION
            if os.path.isabs(path) or "://" in path:
                items.append((path, os.path.splitext(
                    os.path.basename(path))[0]))
            else:
                items.append((os.path.join(root, path),
                              os.path.splitext(path)[0]))
    return items


def list_inputs(input_path, input_root=None):
    """The files to convert and their outputs' relative stems.

    Args:
        input_path: a folder, or a CSV with a `path` column.
        input_root: CSV only: folder of relative paths (default: the CSV's
            folder).

    Returns:
        List of (source path, relative output stem), e.g.
        ("wavs/a/b/id.wav", "a/b/id").

    Raises:
        MissingInputError: `input_path` does not exist.
        InputError: a CSV without a `path` column or with a malformed line,
            no input file at all, or two inputs with one output.
    """
    if not tf.io.gfile.exists(input_path):
        raise cli.MissingInputError(f"--input: {input_path} does not exist")
    if tf.io.gfile.isdir(input_path):
        items = _folder_inputs(input_path)
    else:
        items = _csv_inputs(input_path, input_root)
    if not items:
        raise cli.InputError(
            f"{input_path}: no input files (folder: files ending in one of "
            f"{' '.join(MEDIA_EXTENSIONS)}; CSV: rows in the "
            f"'{CSV_PATH_COLUMN}' column)")
    seen = {}
    for source, stem in items:
        if stem in seen:
            raise cli.InputError(
                f"{source} and {seen[stem]} would both be written to "
                f"{stem}{OUTPUT_SUFFIX}")
        seen[stem] = source
    return items


# -- conversion ---------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _spectrogram_function(gain_db, pad_mode):
    """One compiled log-mel function per setting (shared by the threads)."""
    return tf.function(
        functools.partial(core_audio.log_mel_spectrogram, gain_db=gain_db,
                          pad_mode=pad_mode),
        input_signature=[tf.TensorSpec([None], tf.float32)])


def spectrogram_npz_bytes(spectrogram, nframes):
    """The bytes of one output `.npz` (uncompressed, as `np.savez`).

    Args:
        spectrogram: float array [40, T] (stored as float16).
        nframes: valid frames.

    Returns:
        bytes.
    """
    buffer = io.BytesIO()
    np.savez(buffer, **{
        NPZ_SPECTROGRAM_KEY: np.asarray(spectrogram, np.float16),
        NPZ_NFRAMES_KEY: np.int64(nframes)})
    return buffer.getvalue()


def file_spectrogram(source, settings=SpectrogramSettings()):
    """Decodes one file and computes its spectrogram (no file written).

    The one path from a file to a spectrogram, for this tool and for record
    converters that embed spectrograms.

    Args:
        source: audio or video file.
        settings: SpectrogramSettings.

    Returns:
        (float32 numpy array [40, T] (T = target_length if set), valid
        frames, audio_decode.DecodedAudio). A source at another sample rate
        is logged (the first ten) and flagged in `DecodedAudio.resampled`.

    Raises:
        MissingInputError: `source` does not exist.
        audio_decode.AudioError: it cannot be decoded or has no audio.
    """
    if not tf.io.gfile.exists(source):
        raise cli.MissingInputError(f"{source} does not exist")
    decoded = audio_decode.decode_audio(source, core_audio.SAMPLE_RATE)
    if decoded.resampled:
        logging.log_first_n(
            logging.INFO, "%s: audio at %d Hz resampled to %d Hz", 10,
            source, decoded.source_rate, decoded.sample_rate)
    spectrogram = _spectrogram_function(settings.gain_db, settings.pad_mode)(
        tf.constant(decoded.waveform))  # [40, T]
    nframes = int(spectrogram.shape[1])
    if settings.target_length:
        spectrogram, valid = core_audio.pad_or_truncate(
            spectrogram, settings.target_length)
        nframes = int(valid)
    return spectrogram.numpy(), nframes, decoded


def convert_file(source, output_path, settings=SpectrogramSettings()):
    """`file_spectrogram`, written to `output_path` atomically.

    Args:
        source: audio or video file.
        output_path: the `.npz` to write (its folder is created).
        settings: SpectrogramSettings.

    Returns:
        SpectrogramInfo.

    Raises:
        MissingInputError: `source` does not exist.
        audio_decode.AudioError: it cannot be decoded or has no audio.
    """
    spectrogram, nframes, decoded = file_spectrogram(source, settings)
    tf.io.gfile.makedirs(os.path.dirname(output_path) or ".")
    write_bytes_atomic(output_path, spectrogram_npz_bytes(spectrogram,
                                                          nframes))
    return SpectrogramInfo(frames=spectrogram.shape[1], nframes=nframes,
                           source_rate=decoded.source_rate)


def load_spectrogram_npz(path):
    """Reads one of our `.npz` files or one of the original's.

    Args:
        path: a `<stem>_spec.npz` (ours: `arr_0` and `nframes`; the
            original's: `arr_0` only, every frame valid).

    Returns:
        (float16 numpy array [40, T], int valid frames).

    Raises:
        InputError: no `arr_0` array or not [40, T].
    """
    with tf.io.gfile.GFile(path, "rb") as f:
        data = np.load(io.BytesIO(f.read()), allow_pickle=False)
        if NPZ_SPECTROGRAM_KEY not in data.files:
            raise cli.InputError(f"{path}: no '{NPZ_SPECTROGRAM_KEY}' array "
                                 f"(arrays: {data.files})")
        spectrogram = data[NPZ_SPECTROGRAM_KEY]
        nframes = (int(data[NPZ_NFRAMES_KEY]) if NPZ_NFRAMES_KEY in data.files
                   else None)
    if spectrogram.ndim != 2 or spectrogram.shape[0] != \
            core_audio.NUM_MEL_BINS:
        raise cli.InputError(
            f"{path}: expected a [{core_audio.NUM_MEL_BINS}, T] spectrogram, "
            f"got shape {list(spectrogram.shape)}")
    frames = spectrogram.shape[1]
    return (spectrogram.astype(np.float16, copy=False),
            frames if nframes is None else nframes)


def _check_manifest(output_dir, options):
    """Refuses an output folder made with other options."""
    path = os.path.join(output_dir, MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        return
    with tf.io.gfile.GFile(path, "r") as f:
        previous = json.load(f).get("options")
    if previous != options:
        previous = previous or {}
        changed = ", ".join(
            f"{key} {previous.get(key)!r} -> {options.get(key)!r}"
            for key in sorted(set(previous) | set(options))
            if previous.get(key) != options.get(key))
        raise cli.InputError(
            f"{output_dir} holds spectrograms made with other options "
            f"({changed}): use another --output_dir")


def _convert_one(item, output_dir, settings):
    """Thread task: (item, SpectrogramInfo or None if skipped, reject)."""
    source, stem = item
    output_path = os.path.join(output_dir, stem + OUTPUT_SUFFIX)
    if tf.io.gfile.exists(output_path):
        return item, None, None
    try:
        return item, convert_file(source, output_path, settings), None
    except (audio_decode.AudioError, cli.MissingInputError) as e:
        return item, None, {"item": source, "reason": str(e)}


def convert_files(items, output_dir, settings=SpectrogramSettings(),
                  num_workers=1, progress=True):
    """Converts every item not converted yet (see the module docstring).

    Args:
        items: list of (source path, relative output stem), as list_inputs.
        output_dir: output folder.
        settings: SpectrogramSettings.
        num_workers: threads.
        progress: show a progress bar.

    Returns:
        Summary.

    Raises:
        InputError: bad settings, an output folder made with other options,
            or every input rejected (after writing the rejects file).
    """
    settings.check()
    options = settings.options()
    tf.io.gfile.makedirs(output_dir)
    _check_manifest(output_dir, options)
    bar = core_progress.Progbar(len(items), unit_name="file",
                                verbose=1 if progress else 0)
    written = skipped = resampled = 0
    rejects = {}
    with concurrent.futures.ThreadPoolExecutor(max(1, num_workers)) as pool:
        futures = [pool.submit(_convert_one, item, output_dir, settings)
                   for item in items]
        try:
            for done, future in enumerate(
                    concurrent.futures.as_completed(futures), 1):
                item, info, reject = future.result()
                if reject is not None:
                    rejects[item] = reject
                elif info is None:
                    skipped += 1
                else:
                    written += 1
                    resampled += info.source_rate != core_audio.SAMPLE_RATE
                bar.update(done)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    bar.finish()
    ordered = [rejects[item] for item in items if item in rejects]
    rejects_path = os.path.join(output_dir, REJECTS_NAME)
    _write_jsonl_atomic(rejects_path, ordered)
    if written + skipped == 0:
        raise cli.InputError(f"no input could be converted: all "
                             f"{len(items)} rejected (reasons in "
                             f"{rejects_path})")
    write_json_atomic(os.path.join(output_dir, MANIFEST_NAME), {
        "options": options, "inputs": len(items), "written": written,
        "skipped": skipped, "rejected": len(ordered),
        "resampled": resampled, "rejects_file": REJECTS_NAME})
    return Summary(written, skipped, resampled, ordered, rejects_path)


def _write_jsonl_atomic(path, objects):
    """Writes one JSON object per line, atomically (also when empty)."""
    text = "".join(json.dumps(o, sort_keys=True) + "\n" for o in objects)
    write_bytes_atomic(path, text.encode("utf-8"))


# -- CLI ----------------------------------------------------------------------

FLAGS = flags.FlagValues()
cli.flag_topic("input", FLAGS)
flags.DEFINE_string(
    "input", None,
    "A folder of audio/video files (searched recursively), or a CSV with a "
    "'path' column (e.g. the original's --train_csv; a path without a media "
    "extension means <path>.wav).", flag_values=FLAGS)
flags.DEFINE_string(
    "input_root", None,
    "CSV input: folder of its relative paths (default: the CSV's folder).",
    flag_values=FLAGS)
cli.flag_topic("output", FLAGS)
flags.DEFINE_string("output_dir", None,
                    "Folder for the <stem>_spec.npz files.",
                    flag_values=FLAGS)
flags.DEFINE_integer(
    "target_length", 0,
    "0: keep every frame (as the HowTo100M training spectrograms); N > 0: "
    "pad with zeros or cut to N frames, nframes = valid frames.",
    lower_bound=0, flag_values=FLAGS)
cli.flag_topic("spectrogram", FLAGS)
flags.DEFINE_float(
    "gain_db", core_audio.GAIN_DB,
    "Gain in dB before the analysis (the original's sox 'gain -4'; 0 for "
    "wavs that already went through that step).", flag_values=FLAGS)
flags.DEFINE_enum(
    "pad_mode", "reflect", list(core_audio.PAD_MODES),
    "Edge padding of the centred STFT: reflect (librosa <= 0.8, which made "
    "the original's spectrograms) or constant (librosa >= 0.9).",
    flag_values=FLAGS)
cli.flag_topic("conversion", FLAGS)
flags.DEFINE_integer("num_workers", 2, "Threads converting files.",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_boolean("progress", True, "Show a progress bar.",
                     flag_values=FLAGS)
for _name in ("input", "output_dir"):
    flags.mark_flag_as_required(_name, flag_values=FLAGS)


@cli.handle_errors
def main(argv):
    """Converts per the module FLAGS (which must be parsed)."""
    if len(argv) > 1:
        raise cli.InputError(f"unexpected arguments {argv[1:]}")
    settings = SpectrogramSettings(FLAGS.gain_db, FLAGS.pad_mode,
                                   FLAGS.target_length)
    items = list_inputs(FLAGS.input, FLAGS.input_root)
    summary = convert_files(items, FLAGS.output_dir, settings,
                            FLAGS.num_workers, FLAGS.progress)
    print(summary.line())
    sys.stdout.flush()
    return 0


def run():
    """Console-script entry point."""
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
