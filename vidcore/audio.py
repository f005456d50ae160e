"""Log-mel spectrograms of AVLnet's audio branch, as TensorFlow ops.

AVLnet (Rouditchenko et al., Interspeech 2021) feeds its ResDAVEnet audio
branch 40-band log-mel spectrograms at 100 frames per second, computed by
the authors' `audio_to_spectrograms.py` (`LoadAudio`) with librosa on 16 kHz
mono wav files that sox had made with `gain -4 channels 1 rate 16000`.
`log_mel_spectrogram` here computes the same numbers with TensorFlow ops, so
one function serves the converters (eagerly) and `tf.data` readers (in a
graph), with no librosa at run time. The steps, all of the original's:

1. gain: the waveform times 10 ** (gain_db / 20) (sox's `gain -4`; here a
   plain factor, without sox's requantisation to 16 bits);
2. an empty waveform becomes 200 zeros (as `LoadAudio`);
3. DC removal (subtract the mean), then pre-emphasis
   y[0] = x[0], y[n] = x[n] - 0.97 x[n - 1];
4. STFT with librosa's `center=True` framing: the signal is padded by
   n_fft // 2 = 200 samples on each side, frame t covers padded samples
   [160 t, 160 t + 400), so T = 1 + num_samples // 160 frames; each frame is
   multiplied by a SYMMETRIC 400-point Hamming window (the original passes
   `scipy.signal.hamming`, whose default is `sym=True`; TensorFlow's
   `tf.signal.hamming_window` is the periodic one) and transformed by a
   400-point real FFT (201 bins); power = |X|^2;
5. 40 mel bands from 20 Hz to 8 kHz: librosa's `filters.mel` matrix (Slaney
   mel scale, Slaney area normalisation; see `mel_filterbank`), NOT
   `tf.signal.linear_to_mel_weight_matrix` (HTK scale, no normalisation);
6. decibels as librosa's `power_to_db(S, ref=np.max, amin=1e-10,
   top_db=80)`: 10 log10(max(S, amin)) - 10 log10(max(max(S), amin)),
   then floored at its own maximum minus 80 dB.

Padding mode of step 4. librosa padded with `np.pad(mode="reflect")` up to
0.8.x and pads with zeros ("constant") since 0.9.0 (changelog #1382). The
original calls `librosa.filters.mel(sr, n_fft, ...)` with positional
arguments, which librosa 0.9.0 and >= 0.10 reject, and was released in June
2021 (tested with PyTorch 1.3/1.4), before librosa 0.9 (February 2022): its
spectrograms were made with librosa <= 0.8, i.e. with "reflect". That is the
default here; `pad_mode="constant"` gives librosa >= 0.9's default. The two
differ only in the first and last two frames.

Precision: the waveform is float32 (as `librosa.load`); steps 3-6 run in
float64 (librosa <= 0.8 also took its FFT in double precision) and the
result is float32. Against librosa 0.11 with the original's calls, the
difference on real speech is 1e-4 to 6e-4 dB, librosa's own float32
rounding (0.11 computes in float32); given float64 samples, librosa agrees
with this function to 4e-6 dB, the float32 rounding of the result.

Frame/time helpers follow librosa's `time_to_frames` / `frames_to_time` with
hop 160 and n_fft 400, which the original's samplers use to cut windows.
"""

import math

import numpy as np
import tensorflow as tf

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
WIN_LENGTH = 400
HOP_LENGTH = 160  # 10 ms
NUM_MEL_BINS = 40
FMIN = 20.0
PREEMPHASIS = 0.97
GAIN_DB = -4.0  # sox `gain -4` of the original's wav preparation
AMIN = 1e-10
TOP_DB = 80.0
FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH  # 100.0
EMPTY_AUDIO_SAMPLES = 200  # an empty waveform becomes this many zeros
PAD_MODES = ("reflect", "constant")

# Slaney mel scale (Auditory Toolbox, as librosa with htk=False): linear
# below 1 kHz at 3 mel per 200 Hz, logarithmic above with 27 mel per
# factor 6.4 of frequency.
_LINEAR_HZ_PER_MEL = 200.0 / 3.0
_LOG_START_HZ = 1000.0
_LOG_START_MEL = _LOG_START_HZ / _LINEAR_HZ_PER_MEL  # 15.0
_LOG_MEL_STEP = math.log(6.4) / 27.0


# --------------------------------------------------------------------------- #
# Fixed matrices (numpy, float64).
# --------------------------------------------------------------------------- #
def hz_to_mel(hz):
    """Frequency in Hz -> Slaney mel (librosa's `hz_to_mel`, htk=False).

    mel = f / (200/3) below 1 kHz, 15 + ln(f / 1000) / (ln(6.4) / 27) above.

    Args:
        hz: number or numpy array.

    Returns:
        float64 numpy array of the same shape.
    """
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _LINEAR_HZ_PER_MEL
    with np.errstate(divide="ignore"):
        log = _LOG_START_MEL + np.log(np.maximum(hz, 1e-300) / _LOG_START_HZ
                                      ) / _LOG_MEL_STEP
    return np.where(hz >= _LOG_START_HZ, log, linear)


def mel_to_hz(mel):
    """Slaney mel -> Hz, the inverse of `hz_to_mel`.

    Args:
        mel: number or numpy array.

    Returns:
        float64 numpy array of the same shape.
    """
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _LINEAR_HZ_PER_MEL
    log = _LOG_START_HZ * np.exp(_LOG_MEL_STEP * (mel - _LOG_START_MEL))
    return np.where(mel >= _LOG_START_MEL, log, linear)


def mel_filterbank(sample_rate=SAMPLE_RATE, n_fft=N_FFT,
                   num_mel_bins=NUM_MEL_BINS, fmin=FMIN, fmax=None):
    """Mel filterbank equal to `librosa.filters.mel` (htk=False, slaney).

    Written out because TensorFlow's `linear_to_mel_weight_matrix` uses the
    HTK mel scale without normalisation, and librosa is only a test
    dependency. Band m (0-based) is a triangle over FFT bin frequencies
    f_k = k * sample_rate / n_fft, with corners at the band edges
    e_0 < e_1 < ... < e_{M+1}, equally spaced on the Slaney mel scale from
    fmin to fmax:

        w[m, k] = max(0, min((f_k - e_m) / (e_{m+1} - e_m),
                             (e_{m+2} - f_k) / (e_{m+2} - e_{m+1})))
                  * 2 / (e_{m+2} - e_m)

    The last factor (Slaney normalisation) gives every triangle unit area
    in Hz, so each band averages power rather than sums it.

    Args:
        sample_rate: audio sample rate in Hz.
        n_fft: FFT length (n_fft // 2 + 1 frequency bins).
        num_mel_bins: number of bands M.
        fmin: lowest band edge in Hz.
        fmax: highest band edge in Hz (None: sample_rate / 2).

    Returns:
        float64 numpy array [num_mel_bins, n_fft // 2 + 1].
    """
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    bin_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)  # [K]
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax),
                                  num_mel_bins + 2))  # [M + 2]
    widths = np.diff(edges)  # [M + 1]
    # [M + 2, K]: distance from each edge to each bin frequency.
    offsets = edges[:, None] - bin_hz[None, :]
    rising = -offsets[:-2] / widths[:-1, None]  # [M, K]
    falling = offsets[2:] / widths[1:, None]  # [M, K]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    area_norm = 2.0 / (edges[2:] - edges[:-2])  # [M]
    return weights * area_norm[:, None]


def hamming_window(length=WIN_LENGTH):
    """Symmetric Hamming window (`scipy.signal.windows.hamming(length)`).

    w[n] = 0.54 - 0.46 cos(2 pi n / (length - 1)), n = 0 .. length - 1.

    Args:
        length: window length (> 1).

    Returns:
        float64 numpy array [length].
    """
    n = np.arange(length, dtype=np.float64)
    return 0.54 - 0.46 * np.cos(2.0 * np.pi * n / (length - 1))


# --------------------------------------------------------------------------- #
# TensorFlow ops.
# --------------------------------------------------------------------------- #
def remove_dc_and_preemphasize(waveform, coefficient=PREEMPHASIS):
    """Subtracts the mean, then y[0] = x[0], y[n] = x[n] - c x[n - 1].

    Args:
        waveform: float tensor [N], N >= 1.
        coefficient: pre-emphasis coefficient c.

    Returns:
        Tensor [N] of the waveform's dtype.
    """
    centred = waveform - tf.reduce_mean(waveform)
    return tf.concat(
        [centred[:1], centred[1:] - coefficient * centred[:-1]], axis=0)


def center_pad(waveform, pad, mode="reflect"):
    """Pads `pad` samples on each side as `np.pad(waveform, pad, mode)`.

    "reflect" mirrors about the end samples without repeating them
    (x[2], x[1], x[0], x[1], ...), continuing periodically when `pad` is
    longer than the signal, as numpy does; "constant" pads zeros.

    Args:
        waveform: tensor [N], N >= 1.
        pad: samples to add on each side (python int).
        mode: "reflect" or "constant".

    Returns:
        Tensor [N + 2 * pad].
    """
    if mode == "constant":
        return tf.pad(waveform, [[pad, pad]])
    if mode != "reflect":
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {mode!r}")
    n = tf.shape(waveform, out_type=tf.int64)[0]
    positions = tf.range(-pad, n + pad, dtype=tf.int64)  # [N + 2 pad]
    period = tf.maximum(2 * (n - 1), 1)
    folded = tf.math.floormod(positions, period)
    index = tf.where(folded < n, folded, period - folded)
    return tf.gather(waveform, index)


def num_frames(num_samples, hop_length=HOP_LENGTH):
    """Frames of a centred STFT of `num_samples` samples: 1 + N // hop.

    Args:
        num_samples: int or integer tensor (after the empty-audio rule, so
            >= 1).
        hop_length: hop in samples.

    Returns:
        Same type as `num_samples`.
    """
    return 1 + num_samples // hop_length


def power_spectrogram(waveform, n_fft=N_FFT, hop_length=HOP_LENGTH,
                      win_length=WIN_LENGTH, pad_mode="reflect"):
    """|STFT|^2 with librosa's centred framing and a symmetric Hamming window.

    Args:
        waveform: float tensor [N] (N >= 1); the dtype of the computation.
        n_fft: FFT length.
        hop_length: hop in samples.
        win_length: window length (<= n_fft, centred in the frame).
        pad_mode: "reflect" (librosa <= 0.8) or "constant" (>= 0.9).

    Returns:
        Tensor [T, n_fft // 2 + 1] of the waveform's dtype,
        T = 1 + N // hop_length.
    """
    dtype = waveform.dtype
    window = np.zeros(n_fft)
    start = (n_fft - win_length) // 2
    window[start:start + win_length] = hamming_window(win_length)
    padded = center_pad(waveform, n_fft // 2, pad_mode)
    frames = tf.signal.frame(padded, n_fft, hop_length)  # [T, n_fft]
    frames *= tf.constant(window, dtype)
    spectrum = tf.signal.rfft(frames, [n_fft])  # [T, n_fft // 2 + 1]
    return tf.math.square(tf.math.real(spectrum)) + tf.math.square(
        tf.math.imag(spectrum))


def power_to_db(power, amin=AMIN, top_db=TOP_DB):
    """librosa's `power_to_db(S, ref=np.max, amin, top_db)`.

    Args:
        power: non-negative float tensor (any shape).
        amin: floor of the power (and of the reference).
        top_db: values below the maximum minus top_db are raised to it
            (None: no floor).

    Returns:
        Tensor of the same shape and dtype, in dB relative to the maximum
        (so <= 0).
    """
    scale = tf.constant(10.0 / math.log(10.0), power.dtype)
    floor = tf.constant(amin, power.dtype)
    db = scale * tf.math.log(tf.maximum(power, floor))
    # log is increasing, so the reference's dB is the largest value: taken
    # from the same tensor, the maximum is exactly 0 dB.
    db -= tf.reduce_max(db)
    if top_db is not None:
        db = tf.maximum(db, tf.reduce_max(db) - top_db)
    return db


def log_mel_spectrogram(waveform, sample_rate=SAMPLE_RATE, gain_db=GAIN_DB,
                        pad_mode="reflect", num_mel_bins=NUM_MEL_BINS,
                        fmin=FMIN, n_fft=N_FFT, hop_length=HOP_LENGTH,
                        win_length=WIN_LENGTH, preemphasis=PREEMPHASIS):
    """AVLnet's log-mel spectrogram of one mono waveform (module docstring).

    Works eagerly and inside `tf.function` / `tf.data` with any length.

    Args:
        waveform: float tensor or array [N], mono, at `sample_rate`, in
            [-1, 1] as `librosa.load` returns; N may be 0.
        sample_rate: the waveform's sample rate (the original: 16000; the
            mel bands and hop are defined in samples at that rate).
        gain_db: gain applied first (the original's sox `gain -4`); 0 for a
            wav that already went through the original's sox step.
        pad_mode: "reflect" (the original's librosa <= 0.8) or "constant"
            (librosa >= 0.9).
        num_mel_bins: mel bands.
        fmin: lowest mel band edge in Hz.
        n_fft: FFT length.
        hop_length: hop in samples.
        win_length: Hamming window length.
        preemphasis: pre-emphasis coefficient.

    Returns:
        float32 tensor [num_mel_bins, T], T = 1 + max(N, 200) // hop_length
        where N = 0 counts as 200 (the original's empty-audio rule).
    """
    mel = tf.constant(
        mel_filterbank(sample_rate, n_fft, num_mel_bins, fmin).T,
        tf.float64)  # [K, M]
    waveform = tf.convert_to_tensor(waveform)
    waveform = tf.cast(tf.reshape(waveform, [-1]), tf.float32)  # [N]
    waveform *= 10.0 ** (gain_db / 20.0)
    waveform = tf.cond(
        tf.size(waveform) > 0, lambda: waveform,
        lambda: tf.zeros([EMPTY_AUDIO_SAMPLES], tf.float32))
    emphasised = remove_dc_and_preemphasize(tf.cast(waveform, tf.float64),
                                            preemphasis)
    power = power_spectrogram(emphasised, n_fft, hop_length, win_length,
                              pad_mode)  # [T, K]
    mel_power = tf.matmul(power, mel)  # [T, M]
    return tf.transpose(tf.cast(power_to_db(mel_power), tf.float32))


# --------------------------------------------------------------------------- #
# Fixed-length windows and frame/time conversions.
# --------------------------------------------------------------------------- #
def pad_or_truncate(spectrogram, target_frames):
    """The original's `_zero_pad_audio`: zero-pad or cut to target frames.

    Args:
        spectrogram: tensor [M, T].
        target_frames: wanted frame count (python int or scalar tensor).

    Returns:
        (tensor [M, target_frames] of the input's dtype, int32 scalar: the
        valid frames min(T, target_frames), the original's `nframes`).
    """
    spectrogram = tf.convert_to_tensor(spectrogram)
    target = tf.cast(target_frames, tf.int32)
    frames = tf.shape(spectrogram)[1]
    kept = spectrogram[:, :target]  # [M, min(T, target)]
    padded = tf.pad(kept, [[0, 0], [0, tf.maximum(target - frames, 0)]])
    if isinstance(target_frames, int):
        padded = tf.ensure_shape(padded, [spectrogram.shape[0],
                                          target_frames])
    return padded, tf.minimum(frames, target)


def time_to_frames(times, sample_rate=SAMPLE_RATE, hop_length=HOP_LENGTH,
                   n_fft=N_FFT):
    """librosa's `time_to_frames(times, sr, hop_length, n_fft)` in TF.

    frame = floor((trunc(t * sample_rate) - n_fft // 2) / hop_length);
    may be negative for t < (n_fft // 2) / sample_rate (the original clamps
    or slices with it as it is). The product is taken in float64. The
    original read times as float64; a float32 time (e.g. from a TFRecord
    float feature) gives the same frame for times with at most 3 decimals
    below 8,388 s (its rounding error stays under the 8 samples between
    such a time's sample and the nearest frame boundary); pass float64
    otherwise.

    Args:
        times: seconds, float tensor or array of any shape.
        sample_rate: samples per second.
        hop_length: hop in samples.
        n_fft: FFT length (offset n_fft // 2 samples).

    Returns:
        int64 tensor of the same shape.
    """
    times = tf.cast(tf.convert_to_tensor(times), tf.float64)
    samples = tf.cast(times * sample_rate, tf.int64)  # truncates toward 0
    return tf.math.floordiv(samples - n_fft // 2, hop_length)


def frames_to_time(frames, sample_rate=SAMPLE_RATE, hop_length=HOP_LENGTH,
                   n_fft=N_FFT):
    """librosa's `frames_to_time`: (frame * hop + n_fft // 2) / rate.

    Args:
        frames: integer tensor or array of any shape.
        sample_rate: samples per second.
        hop_length: hop in samples.
        n_fft: FFT length.

    Returns:
        float64 tensor of the same shape, seconds.
    """
    frames = tf.cast(tf.convert_to_tensor(frames), tf.float64)
    return (frames * hop_length + n_fft // 2) / sample_rate


# --------------------------------------------------------------------------- #
# Storage in records (layout: AVLnet section of input_pipeline.features).
# --------------------------------------------------------------------------- #
def encode_spectrogram(spectrogram):
    """[M, T] spectrogram -> bytes: float16 little-endian, time-major.

    Frame after frame (the transpose [T, M]), so that a window of frames is
    one contiguous byte range that `decode_spectrogram` can cut before
    decoding. Runs in numpy (conversion time).

    Args:
        spectrogram: float array or eager tensor [M, T].

    Returns:
        bytes, T * M * 2 of them.
    """
    spectrogram = np.asarray(spectrogram)
    if spectrogram.ndim != 2:
        raise ValueError(f"expected a [bands, frames] spectrogram, got "
                         f"shape {spectrogram.shape}")
    return np.ascontiguousarray(spectrogram.T, dtype="<f2").tobytes()


def decode_spectrogram(data, num_mel_bins=NUM_MEL_BINS, start=0,
                       max_frames=None):
    """Bytes of `encode_spectrogram` -> float32 [M, n], optionally a window.

    Only the window's bytes are decoded: frames [start, start + max_frames)
    clipped to the stored ones (fewer, or none, near the end; a negative
    start counts as 0).

    Args:
        data: tf.string scalar.
        num_mel_bins: bands M per frame.
        start: first frame (int or int scalar tensor).
        max_frames: frames wanted (None: to the end).

    Returns:
        float32 tensor [M, n].
    """
    frame_bytes = 2 * num_mel_bins
    stored = tf.cast(tf.strings.length(data), tf.int64) // frame_bytes
    first = tf.clip_by_value(tf.cast(start, tf.int64), 0, stored)
    count = stored - first if max_frames is None else tf.clip_by_value(
        tf.cast(max_frames, tf.int64), 0, stored - first)
    window = tf.strings.substr(data, first * frame_bytes,
                               count * frame_bytes)
    values = tf.io.decode_raw(window, tf.float16, little_endian=True)
    frames = tf.reshape(values, [-1, num_mel_bins])  # [n, M]
    return tf.transpose(tf.cast(frames, tf.float32))  # [M, n]
