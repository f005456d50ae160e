"""Writes an AVLnet demo in the RELEASE file layouts: REAL speech, SYNTHETIC
visual features.

The speech is real: three LibriVox recordings of "Sense and Sensibility"
(``avl/data/librivox/``, 16.4 s in all, public domain; see NOTICE.md), cut
into one-second pieces (16). Everything visual is SYNTHETIC, made so that
audio -> video retrieval can be learnt and nothing more:

* each speech piece p gets a random "scene" z_p (``hidden`` numbers);
* a "video" plays ``pieces_per_video`` pieces drawn at random (with
  replacement), each at a random gain, over faint white noise; its 2D
  frames (1 per second) and 3D frames (1.5 per second) show the scene of
  the piece playing at that time: ``normalize(R_s z_p + noise_std * n)``
  with R_s a random matrix per stream and n ~ N(0, I), stored float16;
* captions: each second's caption is the transcript of the recording its
  piece was cut from, the words spread evenly over the recording's seconds
  (no forced alignment; AVLnet itself does not read captions, its text
  variants do).

Training videos, in the layout the AVLnet training instructions give
(``tfrecord_tools.howto_writer --features_path_audio`` reads it)::

  videos.csv                   video_id
  captions.json                {video_id: {"start", "end", "text"}}
  features_2d/<id>.npy         float16 [T, dim_2d]   (1 frame / s)
  features_3d/<id>.npy         float16 [1.5 T, dim_3d]
  audio/<id>.wav               16 kHz mono 16-bit PCM, T seconds

Test clips, as the release's YouCook2 pickle (a list of dicts "id",
"video_id", "caption", "2d", "3d" (the clip's max-pooled features) and
"audio" (its log-mel spectrogram [40, frames], vidcore.audio of the clip's
own waveform, as the release computed each clip's); read by
``tfrecord_tools.howto_eval_sets --allow_pickle``), cut from held-out videos
(new draws of the same pieces, new gains and noise)::

  test_clips.pkl

  python -m tfrecord_tools.avl_demo_data --output_dir=demo_out/avl/release
"""

import csv
import os
import pickle
import wave

import numpy as np
from absl import flags

from tfrecord_tools import audio_decode
from tfrecord_tools import cli
from vidcore import audio as core_audio
from vidcore import text
from vidcore.files import write_json_atomic

SPEECH_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "avl", "data", "librivox")
RATES = {"2d": 1.0, "3d": 1.5}  # frames per second, as the release's
TEST_FILE = "test_clips.pkl"
README_FILE = "README.txt"


def speech_pieces(speech_dir=SPEECH_DIR):
    """The recordings cut into one-second pieces.

    Returns:
        (pieces float32 [P, 16000], captions [P] str): piece p's caption is
        the share of its recording's transcript that falls on its second.
    """
    pieces, captions = [], []
    second = core_audio.SAMPLE_RATE
    for name in sorted(os.listdir(speech_dir)):
        if not name.endswith(".wav"):
            continue
        wav = audio_decode.decode_audio(os.path.join(speech_dir, name))
        with open(os.path.join(speech_dir, name[:-4] + ".txt"),
                  encoding="utf-8") as f:
            words = text.python_tokenize(f.read())
        count = len(wav.waveform) // second
        for k in range(count):
            pieces.append(wav.waveform[k * second:(k + 1) * second])
            share = words[len(words) * k // count:
                          len(words) * (k + 1) // count]
            captions.append(" ".join(share))
    return np.stack(pieces).astype(np.float32), captions


class SceneFeatures:
    """The synthetic piece -> frame-feature function (module docstring).

    Args:
        num_pieces: P.
        dims: {stream: feature size}.
        hidden: size of a scene z_p.
        noise_std: per-frame noise.
        seed: seed of the scenes and the matrices R_s.
    """

    def __init__(self, num_pieces, dims, hidden=16, noise_std=0.5, seed=0):
        rng = np.random.default_rng(seed)
        self.scenes = rng.normal(0, 1, (num_pieces, hidden))
        self.r = {s: rng.normal(0, 1 / np.sqrt(hidden), (hidden, d))
                  for s, d in dims.items()}
        self.noise_std = noise_std

    def frames(self, rng, stream, piece_ids):
        """float32 [len(piece_ids), dim] L2-normalised frames."""
        x = self.scenes[piece_ids] @ self.r[stream]
        x += self.noise_std * rng.normal(0, 1, x.shape)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def make_video(rng, pieces, fn, length):
    """One synthetic video: (waveform [length s], piece of each second,
    {stream: frames})."""
    order = rng.integers(0, len(pieces), length)  # [length]
    gains = 10.0 ** (rng.uniform(-6.0, 0.0, length) / 20.0)  # dB -> x
    wave_ = (pieces[order] * gains[:, None]).reshape(-1)  # [length * 16000]
    wave_ += rng.normal(0, 1e-3, wave_.shape)
    frames = {}
    for stream, rate in RATES.items():
        seconds = (np.arange(int(length * rate)) / rate).astype(int)
        frames[stream] = fn.frames(rng, stream, order[seconds])
    return np.clip(wave_, -1, 1).astype(np.float32), order, frames


def write_wav(path, waveform):
    """16-bit PCM mono at 16 kHz."""
    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(core_audio.SAMPLE_RATE)
        f.writeframes((waveform * 32767).astype("<i2").tobytes())


def _test_clip(video_id, k, waveform, frames, start, seconds, caption):
    """One release-style clip dict: the window [start, start + seconds]."""
    first = start * core_audio.SAMPLE_RATE
    clip = waveform[first:first + seconds * core_audio.SAMPLE_RATE]
    out = {"id": f"{video_id}_{k}", "video_id": video_id, "caption": caption,
           "audio": core_audio.log_mel_spectrogram(clip).numpy()}
    for stream, rate in RATES.items():
        # HowTo100M's pooling range: frames [int(s * r), int(e * r)].
        lo, hi = int(start * rate), int((start + seconds) * rate)
        out[stream] = frames[stream][lo:hi + 1].max(axis=0).astype(
            np.float32)
    return out


def write_demo_release(output_dir, num_videos=128, num_test_videos=24,
                       clips_per_test_video=2, pieces_per_video=10,
                       clip_seconds=2, dims=(64, 64), noise_std=0.5, seed=0):
    """Writes the demo files (module docstring).

    Args:
        output_dir: output directory (created).
        num_videos: training videos.
        num_test_videos: held-out videos the test clips are cut from.
        clips_per_test_video: test clips per held-out video.
        pieces_per_video: seconds (speech pieces) per video.
        clip_seconds: seconds per test clip.
        dims: (2D size, 3D size) of the synthetic features.
        noise_std: per-frame noise.
        seed: random seed (same seed, same bytes).

    Returns:
        dict of counts.
    """
    if clip_seconds * clips_per_test_video > pieces_per_video:
        raise cli.InputError("test clips do not fit in a video: "
                             "clip_seconds * clips_per_test_video > "
                             "pieces_per_video")
    rng = np.random.default_rng(seed)
    pieces, piece_captions = speech_pieces()
    fn = SceneFeatures(len(pieces), {"2d": dims[0], "3d": dims[1]},
                       noise_std=noise_std, seed=seed)
    for sub in ("features_2d", "features_3d", "audio"):
        os.makedirs(os.path.join(output_dir, sub), exist_ok=True)
    captions = {}
    ids = [f"video{i:04d}" for i in range(num_videos)]
    for video_id in ids:
        waveform, order, frames = make_video(rng, pieces, fn,
                                             pieces_per_video)
        write_wav(os.path.join(output_dir, "audio", f"{video_id}.wav"),
                  waveform)
        for stream in RATES:
            np.save(os.path.join(output_dir, f"features_{stream}",
                                 f"{video_id}.npy"),
                    frames[stream].astype(np.float16))
        captions[video_id] = {
            "start": [float(t) for t in range(pieces_per_video)],
            "end": [float(t + 1) for t in range(pieces_per_video)],
            "text": [piece_captions[p] for p in order]}
    write_json_atomic(os.path.join(output_dir, "captions.json"), captions,
                      indent=None)
    with open(os.path.join(output_dir, "videos.csv"), "w", newline="",
              encoding="utf-8") as f:
        csv.writer(f).writerows([["video_id"]] + [[v] for v in ids])

    clips = []
    for i in range(num_test_videos):
        video_id = f"test{i:04d}"
        waveform, order, frames = make_video(rng, pieces, fn,
                                             pieces_per_video)
        # Non-overlapping windows at random whole seconds.
        slots = rng.permutation(pieces_per_video // clip_seconds)
        for k, slot in enumerate(sorted(slots[:clips_per_test_video])):
            start = int(slot * clip_seconds)
            caption = " ".join(piece_captions[p]
                               for p in order[start:start + clip_seconds])
            clips.append(_test_clip(video_id, k, waveform, frames,
                                    start, clip_seconds, caption))
    with open(os.path.join(output_dir, TEST_FILE), "wb") as f:
        pickle.dump(clips, f)
    with open(os.path.join(output_dir, README_FILE), "w",
              encoding="utf-8") as f:
        f.write(__doc__)
    return {"videos": num_videos, "pieces": len(pieces),
            "seconds": num_videos * pieces_per_video,
            "test_clips": len(clips), "dims": tuple(dims)}


FLAGS = flags.FlagValues()
cli.flag_topic("data", FLAGS)
flags.DEFINE_string("output_dir", None, "Output directory.", flag_values=FLAGS)
flags.DEFINE_integer("num_videos", 128, "Training videos.", flag_values=FLAGS)
flags.DEFINE_integer("num_test_videos", 24,
                     "Held-out videos the test clips come from.",
                     flag_values=FLAGS)
flags.DEFINE_list("dims", ["64", "64"], "2D,3D synthetic feature sizes.",
                  flag_values=FLAGS)
flags.DEFINE_float("noise_std", 0.5, "Per-frame noise.", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Random seed.", flag_values=FLAGS)


@cli.handle_errors
def main(argv):
    if len(argv) > 1:
        raise cli.InputError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.output_dir:
        raise cli.InputError("--output_dir is required")
    dims = tuple(cli.parse_int_list(",".join(FLAGS.dims), "dims"))
    info = write_demo_release(FLAGS.output_dir, num_videos=FLAGS.num_videos,
                              num_test_videos=FLAGS.num_test_videos,
                              dims=dims, noise_std=FLAGS.noise_std,
                              seed=FLAGS.seed)
    print(f"wrote {info['videos']} videos ({info['seconds']} s drawn from "
          f"{info['pieces']} one-second pieces of REAL LibriVox speech) and "
          f"{info['test_clips']} test clips, with SYNTHETIC visual features, "
          f"to {FLAGS.output_dir}")


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
