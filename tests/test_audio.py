"""AVLnet's audio front end: log-mel parity with librosa, decoding, the CLI.

The reference spectrogram is librosa run exactly as the original's
`LoadAudio` (audio_to_spectrograms.py) runs it, with the padding mode of the
librosa it ran with ("reflect", see vidcore.audio), on REAL speech: two
LibriVox clips copied to tests/data/librivox (see NOTICE.md). The video with
an audio track is the Big Buck Bunny excerpt of kinetics/data/clips.
"""

import json
import os
import subprocess
import sys
import wave

import numpy as np
import pytest
import tensorflow as tf

from tfrecord_tools import audio_decode
from tfrecord_tools import audio_spectrograms as aspec
from tfrecord_tools import cli
from vidcore import audio

librosa = pytest.importorskip("librosa")
scipy_windows = pytest.importorskip("scipy.signal.windows")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRIVOX = os.path.join(REPO_ROOT, "tests", "data", "librivox")
SPEECH = [os.path.join(LIBRIVOX, f"sense_and_sensibility_01_austen_64kb-"
                       f"{k}.wav") for k in ("0880", "0890")]
BUNNY = os.path.join(REPO_ROOT, "kinetics", "data", "clips", "yawning",
                     "bigbuckbunny_000001_000005.mp4")
CRICKET = os.path.join(REPO_ROOT, "kinetics", "data", "clips",
                       "playing cricket", "v_CricketShot_g04_c01.mp4")
GAIN = np.float32(10.0 ** (-4.0 / 20.0))
TOLERANCE_DB = 1e-3


def librosa_load_audio(y, pad_mode="reflect"):
    """The original's LoadAudio on a loaded waveform, with librosa.

    Same calls and arguments (keyword-only in today's librosa), the window
    function the original passes (scipy's hamming, symmetric), and
    `pad_mode` made explicit (librosa <= 0.8 padded with "reflect").
    """
    if y.size == 0:
        y = np.zeros(200)
    y = y - y.mean()
    y = np.append(y[0], y[1:] - 0.97 * y[:-1])
    stft = librosa.stft(y, n_fft=400, hop_length=160, win_length=400,
                        window=scipy_windows.hamming, pad_mode=pad_mode)
    spec = np.abs(stft) ** 2
    mel_basis = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40, fmin=20)
    return librosa.power_to_db(np.dot(mel_basis, spec), ref=np.max)


def read_wav(path):
    """(int16 samples [N, channels], rate) with Python's wave module."""
    with wave.open(path, "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        return data.reshape(-1, w.getnchannels()), w.getframerate()


def write_wav(path, samples, rate):
    """Writes int16 samples [N, channels]."""
    with wave.open(path, "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(samples, np.int16).tobytes())


# -- fixed matrices -----------------------------------------------------------


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [
    (16000, 400, 40, 20.0, None),  # AVLnet's
    (22050, 512, 64, 0.0, 8000.0),
    (8000, 256, 20, 100.0, 3000.0),
])
def test_mel_filterbank_equals_librosa_slaney(sr, n_fft, n_mels, fmin, fmax):
    ours = audio.mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin,
                              fmax=fmax, dtype=np.float64)
    assert ours.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-15)


def test_mel_filterbank_is_not_tensorflows_htk_matrix():
    htk = tf.signal.linear_to_mel_weight_matrix(
        40, 201, 16000, 20.0, 8000.0).numpy().T  # [40, 201]
    assert np.abs(audio.mel_filterbank() - htk).max() > 0.01


def test_mel_scale_equals_librosa():
    hz = np.array([0.0, 20.0, 500.0, 999.0, 1000.0, 1001.0, 4000.0, 8000.0])
    np.testing.assert_allclose(audio.hz_to_mel(hz), librosa.hz_to_mel(hz),
                               rtol=1e-12)
    mel = np.linspace(0.0, 45.0, 19)
    np.testing.assert_allclose(audio.mel_to_hz(mel), librosa.mel_to_hz(mel),
                               rtol=1e-12)


def test_window_is_scipys_symmetric_hamming_not_tf_periodic():
    np.testing.assert_allclose(audio.hamming_window(400),
                               scipy_windows.hamming(400), atol=1e-15)
    assert audio.hamming_window(400)[-1] == pytest.approx(0.08)
    periodic = tf.signal.hamming_window(400, dtype=tf.float64).numpy()
    assert np.abs(audio.hamming_window(400) - periodic).max() > 1e-3


# -- waveform steps -----------------------------------------------------------


def test_dc_removal_and_preemphasis_by_hand():
    # mean 3 -> [-2, -1, 0, 3]; y[0] kept, y[n] = x[n] - 0.97 x[n-1].
    out = audio.remove_dc_and_preemphasize(
        tf.constant([1.0, 2.0, 3.0, 6.0], tf.float64)).numpy()
    np.testing.assert_allclose(out, [-2.0, -1.0 + 1.94, 0.97, 3.0],
                               atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 150, 200, 201, 1000])
def test_center_pad_equals_numpy(n):
    x = np.arange(1, n + 1, dtype=np.float64)
    for mode in ("reflect", "constant"):
        np.testing.assert_array_equal(
            audio.center_pad(tf.constant(x), 200, mode).numpy(),
            np.pad(x, 200, mode=mode))


# -- the spectrogram ----------------------------------------------------------


@pytest.mark.parametrize("path", SPEECH, ids=["0880", "0890"])
def test_log_mel_equals_librosa_on_real_speech(path):
    y, sr = librosa.load(path, sr=None)
    assert sr == 16000 and y.size > 40000
    ref = librosa_load_audio(y * GAIN)
    ours = audio.log_mel_spectrogram(y).numpy()
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (40, 1 + y.size // 160)
    assert np.abs(ours - ref).max() < TOLERANCE_DB
    assert ref.min() < -60.0  # the clip spans a real dynamic range
    # Most of that difference is today's librosa computing in float32;
    # librosa <= 0.8 (the original's) took the FFT in double precision.
    # Given float64 samples librosa does so too, and agrees to the float32
    # rounding of our output (values down to -80 dB: ulp 7.6e-6).
    ref64 = librosa_load_audio((y * GAIN).astype(np.float64))
    assert np.abs(ours - ref64).max() < 2e-5


def test_log_mel_inside_tf_data_equals_eager():
    y, _ = librosa.load(SPEECH[0], sr=None)
    ds = tf.data.Dataset.from_tensors(y).map(audio.log_mel_spectrogram)
    graph = next(iter(ds)).numpy()
    np.testing.assert_array_equal(graph,
                                  audio.log_mel_spectrogram(y).numpy())


def test_padding_mode_reflect_is_tested_and_constant_available():
    y, _ = librosa.load(SPEECH[0], sr=None)
    reflect = librosa_load_audio(y * GAIN, "reflect")
    constant = librosa_load_audio(y * GAIN, "constant")
    ours_constant = audio.log_mel_spectrogram(y, pad_mode="constant").numpy()
    assert np.abs(ours_constant - constant).max() < TOLERANCE_DB
    # The modes differ (in the edge frames) by far more than the tolerance,
    # so the parity test above pins the mode.
    assert np.abs(reflect - constant).max() > 1.0
    np.testing.assert_array_equal(reflect[:, 2:-2], constant[:, 2:-2])


@pytest.mark.filterwarnings("ignore:n_fft=400 is too large")
@pytest.mark.parametrize("n", [0, 1, 5, 150, 199, 200, 401, 1000])
def test_short_and_empty_audio_as_the_original(n):
    rng = np.random.default_rng(n)
    y = (0.1 * rng.standard_normal(n)).astype(np.float32)
    ref = librosa_load_audio(y * GAIN)
    ours = audio.log_mel_spectrogram(y).numpy()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < TOLERANCE_DB
    if n == 0:  # zeros(200): two frames of 0 dB
        np.testing.assert_array_equal(ours, np.zeros([40, 2], np.float32))


def test_gain_is_a_factor_on_the_waveform():
    y, _ = librosa.load(SPEECH[0], sr=None)
    quiet = (y * np.float32(1e-4)).astype(np.float32)
    # With ref = max the gain only shows where the amin floor is reached.
    ours = audio.log_mel_spectrogram(quiet, gain_db=-60.0).numpy()
    ref = librosa_load_audio(quiet * np.float32(1e-3))
    assert np.abs(ours - ref).max() < TOLERANCE_DB
    assert np.abs(ours - audio.log_mel_spectrogram(quiet, gain_db=0.0)
                  .numpy()).max() > 1.0


def test_pad_or_truncate_as_zero_pad_audio():
    spec = np.arange(40 * 7, dtype=np.float32).reshape(40, 7)

    @tf.function(input_signature=[tf.TensorSpec([40, None], tf.float32),
                                  tf.TensorSpec([], tf.int32)])
    def cut(s, target):
        return audio.pad_or_truncate(s, target)

    for target in (3, 7, 10):
        out, nframes = cut(spec, target)
        expected = (spec[:, :target] if target <= 7 else np.pad(
            spec, ((0, 0), (0, target - 7))))
        np.testing.assert_array_equal(out.numpy(), expected)
        assert int(nframes) == min(7, target)
    out, nframes = audio.pad_or_truncate(spec, 12)
    assert out.shape == (40, 12) and int(nframes) == 7


# -- frames and times ---------------------------------------------------------


def test_time_to_frames_and_back_equal_librosa():
    times = np.array([0.0, 0.005, 0.0125, 0.0126, 0.7, 1.0, 3.21, 12.345,
                      59.999, 600.0, 3599.5])
    expected = librosa.time_to_frames(times, sr=16000, hop_length=160,
                                      n_fft=400)
    np.testing.assert_array_equal(audio.time_to_frames(times).numpy(),
                                  expected)
    assert expected[0] == -2  # negative near 0, as librosa
    frames = np.array([0, 1, 99, 100, 1000, 360000])
    np.testing.assert_allclose(
        audio.frames_to_time(frames).numpy(),
        librosa.frames_to_time(frames, sr=16000, hop_length=160, n_fft=400))
    # The original's window length in seconds: int(frames_to_time(1000)).
    assert int(audio.frames_to_time(1000)) == 10


def test_time_to_frames_of_float32_times_with_3_decimals():
    # As stated in the docstring: float32 times with at most 3 decimals
    # below 8,388 s give the frames of the exact (float64) times.
    millis = np.arange(0, 8_388_000, dtype=np.int64)  # every millisecond
    exact = librosa.time_to_frames(millis / 1000.0, sr=16000,
                                   hop_length=160, n_fft=400)
    from_float32 = audio.time_to_frames(
        (millis / 1000.0).astype(np.float32)).numpy()
    np.testing.assert_array_equal(from_float32, exact)


def test_spectrogram_bytes_round_trip_and_windows():
    spec = np.random.default_rng(0).normal(-40, 10, [40, 9]).astype(
        np.float32)
    data = audio.encode_spectrogram(spec)
    assert len(data) == 9 * 40 * 2
    as_f16 = spec.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(audio.decode_spectrogram(data).numpy(),
                                  as_f16)
    np.testing.assert_array_equal(
        audio.decode_spectrogram(data, start=3, max_frames=4).numpy(),
        as_f16[:, 3:7])
    np.testing.assert_array_equal(  # clipped at the end
        audio.decode_spectrogram(data, start=7, max_frames=5).numpy(),
        as_f16[:, 7:])
    assert audio.decode_spectrogram(data, start=20).shape == (40, 0)


# -- decoding -----------------------------------------------------------------


def test_decode_wav_equals_wave_module():
    pytest.importorskip("av")
    samples, rate = read_wav(SPEECH[0])
    decoded = audio_decode.decode_audio(SPEECH[0])
    assert rate == 16000 and not decoded.resampled
    assert decoded.waveform.dtype == np.float32
    assert decoded.waveform.shape == (samples.shape[0],)
    np.testing.assert_array_equal(decoded.waveform,
                                  samples[:, 0].astype(np.float32) / 32768.0)


def test_decoded_wav_spectrogram_equals_librosa_load_audio():
    pytest.importorskip("av")
    y, _ = librosa.load(SPEECH[1], sr=None)
    decoded = audio_decode.decode_audio(SPEECH[1])
    ours = audio.log_mel_spectrogram(decoded.waveform).numpy()
    assert np.abs(ours - librosa_load_audio(y * GAIN)).max() < TOLERANCE_DB


def test_stereo_is_averaged_like_sox_channels_1(tmp_path):
    pytest.importorskip("av")
    n = 3200
    left = (8000 * np.sin(np.arange(n) * 0.05)).astype(np.int16)
    right = (5000 * np.cos(np.arange(n) * 0.031)).astype(np.int16)
    path = str(tmp_path / "stereo.wav")
    write_wav(path, np.stack([left, right], axis=1), 16000)
    decoded = audio_decode.decode_audio(path)
    assert decoded.source_channels == 2
    np.testing.assert_allclose(
        decoded.waveform, (left / 32768.0 + right / 32768.0) / 2, atol=1e-7)


def test_empty_wav_decodes_to_no_samples_and_zeros_spectrogram(tmp_path):
    pytest.importorskip("av")
    path = str(tmp_path / "empty.wav")
    write_wav(path, np.zeros([0, 1], np.int16), 16000)
    decoded = audio_decode.decode_audio(path)
    assert decoded.waveform.shape == (0,) and decoded.source_channels == 1
    np.testing.assert_array_equal(
        audio.log_mel_spectrogram(decoded.waveform).numpy(),
        np.zeros([40, 2], np.float32))


def test_decode_video_audio_track_resampled_to_16k():
    pytest.importorskip("av")
    decoded = audio_decode.decode_audio(BUNNY)
    assert decoded.source_rate == 22050 and decoded.resampled
    assert decoded.sample_rate == 16000
    # A 4 s excerpt (+ the AAC frame padding): about 4 s x 16000 samples.
    assert 4.0 <= decoded.duration <= 4.1
    assert np.abs(decoded.waveform).max() > 0.01  # real sound, not silence
    spec = audio.log_mel_spectrogram(decoded.waveform)
    assert spec.shape == (40, 1 + decoded.waveform.size // 160)


def test_decode_errors_name_the_file(tmp_path):
    pytest.importorskip("av")
    with pytest.raises(audio_decode.AudioError,
                       match=r"v_CricketShot.*no audio stream"):
        audio_decode.decode_audio(CRICKET)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav at all" * 10)
    with pytest.raises(audio_decode.AudioError, match=r"cannot open .*bad"):
        audio_decode.decode_audio(str(bad))


# -- the CLI ------------------------------------------------------------------


def _folder(tmp_path):
    """speech wav, video with audio, video without audio, garbage."""
    folder = tmp_path / "in"
    (folder / "cat" / "sub").mkdir(parents=True)
    for name, source in (("cat/sub/speech.wav", SPEECH[0]),
                         ("bunny.mp4", BUNNY), ("silent_film.mp4", CRICKET)):
        (folder / name).write_bytes(open(source, "rb").read())
    (folder / "broken.wav").write_bytes(b"RIFF0000garbage")
    (folder / "notes.txt").write_text("not media")
    return folder


def test_cli_end_to_end(tmp_path):
    pytest.importorskip("av")
    folder, out = _folder(tmp_path), tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "tfrecord_tools.audio_spectrograms",
               f"--input={folder}", f"--output_dir={out}",
               "--num_workers=2", "--progress=false"]
    proc = subprocess.run(command, capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ("2 spectrograms written, 0 already there, 2 rejected; 1 sources "
            "resampled") in proc.stdout
    spec, nframes = aspec.load_spectrogram_npz(
        str(out / "cat" / "sub" / "speech_spec.npz"))
    y, _ = librosa.load(SPEECH[0], sr=None)
    assert spec.dtype == np.float16 and nframes == spec.shape[1]
    ref = librosa_load_audio(y * GAIN)
    assert spec.shape == ref.shape
    assert np.abs(spec.astype(np.float32) - ref).max() < 0.05  # float16
    # The original's loader reads our file as is.
    assert np.load(out / "cat" / "sub" / "speech_spec.npz")["arr_0"].shape \
        == ref.shape
    assert (out / "bunny_spec.npz").exists()
    rejects = [json.loads(line) for line in
               (out / "rejects-spectrograms.jsonl").read_text().splitlines()]
    assert [os.path.basename(r["item"]) for r in rejects] == [
        "broken.wav", "silent_film.mp4"]
    assert "no audio stream" in rejects[1]["reason"]
    manifest = json.loads((out / "spectrograms.json").read_text())
    assert manifest["options"]["pad_mode"] == "reflect"
    # Again (in this process): everything already there is skipped.
    items = aspec.list_inputs(str(folder))
    again = aspec.convert_files(items, str(out), progress=False)
    assert (again.written, again.skipped, len(again.rejects)) == (0, 2, 2)
    # Other options into the same folder: refused, naming the change.
    with pytest.raises(cli.InputError,
                       match="pad_mode 'reflect' -> 'constant'"):
        aspec.convert_files(items, str(out),
                            aspec.SpectrogramSettings(pad_mode="constant"),
                            progress=False)


def test_csv_input_original_layout_and_target_length(tmp_path):
    pytest.importorskip("av")
    root = tmp_path / "wavs"
    (root / "food" / "video_j").mkdir(parents=True)
    (root / "food" / "video_j" / "jEyaTUyJ-rs.wav").write_bytes(
        open(SPEECH[1], "rb").read())
    listing = tmp_path / "videopaths.txt"
    listing.write_text("path\nfood/video_j/jEyaTUyJ-rs\nfood/video_j/gone\n")
    items = aspec.list_inputs(str(listing), str(root))
    assert items[0] == (str(root / "food" / "video_j" / "jEyaTUyJ-rs.wav"),
                        "food/video_j/jEyaTUyJ-rs")
    out = tmp_path / "out"
    summary = aspec.convert_files(
        items, str(out), aspec.SpectrogramSettings(target_length=300),
        progress=False)
    assert summary.written == 1 and len(summary.rejects) == 1
    assert "gone.wav does not exist" in summary.rejects[0]["reason"]
    spec, nframes = aspec.load_spectrogram_npz(
        str(out / "food" / "video_j" / "jEyaTUyJ-rs_spec.npz"))
    full = audio.log_mel_spectrogram(
        audio_decode.decode_audio(SPEECH[1]).waveform).numpy()
    assert spec.shape == (40, 300) and nframes == 300 < full.shape[1]
    np.testing.assert_array_equal(spec, full[:, :300].astype(np.float16))


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(cli.MissingInputError, match="does not exist"):
        aspec.list_inputs(str(tmp_path / "nowhere"))
    listing = tmp_path / "list.csv"
    listing.write_text("video_id\nabc\n")
    with pytest.raises(cli.InputError, match="'path' column"):
        aspec.list_inputs(str(listing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(cli.InputError, match="no input files"):
        aspec.list_inputs(str(tmp_path / "empty"))
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "a.wav").write_bytes(b"")
    (clash / "a.mp4").write_bytes(b"")
    with pytest.raises(cli.InputError, match="would both be written"):
        aspec.list_inputs(str(clash))
