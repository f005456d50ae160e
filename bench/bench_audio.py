"""Spectrograms per second: AVLnet's log-mel in TensorFlow vs librosa.

Clips: --clips clips of --seconds seconds of REAL speech (the LibriVox clips
in tests/data/librivox, concatenated and cut, each clip starting at another
offset), 16 kHz float32, already in memory (no decoding).

Rows, all in this process on the same clips, best of --rounds rounds, the
rows taking turns in each round:

* librosa: the original's `LoadAudio` steps with librosa (DC, pre-emphasis,
  `librosa.stft` with scipy's hamming and reflect padding, mel matrix
  product, `power_to_db(ref=np.max)`), one clip after another; the mel
  matrix is built once, not per clip as the original does;
* tf function: `vidcore.audio.log_mel_spectrogram` as one compiled
  `tf.function` over a [None] waveform, called per clip (what the
  converters do);
* tf.data map: the same function in `tf.data.Dataset.map` with
  `num_parallel_calls=AUTOTUNE` over the clips (what a reader would do).

It also prints the largest difference between the TF and librosa results
over the clips (dB). Needs librosa (the `test` extra).

Usage:
  python bench/bench_audio.py [--clips 64] [--seconds 10] [--rounds 5]
"""
import argparse
import datetime
import glob
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from vidcore import audio  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    return parser.parse_args()


def speech_clips(num_clips, seconds):
    """[num_clips] float32 arrays of real speech, 16 kHz."""
    import librosa  # pylint: disable=import-outside-toplevel
    paths = sorted(glob.glob(str(ROOT / "tests" / "data" / "librivox" /
                                 "*.wav")))
    speech = np.concatenate([librosa.load(p, sr=None)[0] for p in paths])
    length = int(seconds * audio.SAMPLE_RATE)
    reps = int(np.ceil((length + len(speech)) / len(speech)))
    tape = np.tile(speech, reps)
    step = max(1, len(speech) // max(num_clips, 1))
    return [np.ascontiguousarray(tape[i * step % len(speech):][:length])
            for i in range(num_clips)]


def librosa_spectrogram(y, mel_basis):
    """The original's LoadAudio steps (gain applied as vidcore does)."""
    import librosa  # pylint: disable=import-outside-toplevel
    from scipy.signal import windows  # pylint: disable=import-outside-toplevel
    y = y * np.float32(10.0 ** (audio.GAIN_DB / 20.0))
    y = y - y.mean()
    y = np.append(y[0], y[1:] - 0.97 * y[:-1])
    stft = librosa.stft(y, n_fft=400, hop_length=160, win_length=400,
                        window=windows.hamming, pad_mode="reflect")
    return librosa.power_to_db(np.dot(mel_basis, np.abs(stft) ** 2),
                               ref=np.max)


def main():
    args = parse_args()
    import librosa  # pylint: disable=import-outside-toplevel
    clips = speech_clips(args.clips, args.seconds)
    mel_basis = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40, fmin=20)
    function = tf.function(audio.log_mel_spectrogram,
                           input_signature=[tf.TensorSpec([None],
                                                          tf.float32)])
    dataset = tf.data.Dataset.from_tensor_slices(np.stack(clips)).map(
        function, num_parallel_calls=tf.data.AUTOTUNE)

    def run_librosa():
        return [librosa_spectrogram(c, mel_basis) for c in clips]

    def run_function():
        return [function(c).numpy() for c in clips]

    def run_dataset():
        return [s.numpy() for s in dataset]

    rows = {"librosa (original's steps)": run_librosa,
            "tf function, clip by clip": run_function,
            "tf.data map, AUTOTUNE": run_dataset}
    reference = run_librosa()
    for name, fn in rows.items():  # warm-up and cross-check
        diff = max(float(np.abs(a - b).max())
                   for a, b in zip(fn(), reference))
        print(f"# {name}: max |diff| vs librosa {diff:.2e} dB")
    best = {name: float("inf") for name in rows}
    for _ in range(args.rounds):
        for name, fn in rows.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}"
          f" UTC, TensorFlow {tf.__version__}, librosa {librosa.__version__},"
          f" load average {open('/proc/loadavg').read().split()[:3]}")
    print(f"# {args.clips} clips of {args.seconds:g} s, best of "
          f"{args.rounds} rounds")
    print("| path | spectrograms/s | x librosa |")
    print("|---|---|---|")
    base = args.clips / best["librosa (original's steps)"]
    for name in rows:
        rate = args.clips / best[name]
        print(f"| {name} | {rate:.1f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
