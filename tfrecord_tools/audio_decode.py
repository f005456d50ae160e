"""Audio decoding for AVLnet: any file PyAV reads -> 16 kHz mono float32.

The original prepared its audio in two shell steps, `ffmpeg -i video -vn
audio.wav` (the audio track at its own rate) and `sox audio.wav out.wav gain
-4 channels 1 rate 16000`, then read `out.wav` with librosa. Here one PyAV
pass does the decoding and resampling, so a wav, a video file's audio track
or any other container FFmpeg reads gives the waveform directly:

* the first audio stream is decoded from its first sample on (the samples
  in order, as ffmpeg writes them to a wav; a stream starting after the
  video is not shifted);
* FFmpeg's resampler converts it to float32 at `sample_rate`, keeping the
  channels (`av.AudioResampler(format="fltp", rate=...)`); for 16-bit PCM
  this is x / 32768, the values `librosa.load` and Python's `wave` give;
* channels are averaged, as sox's `channels 1` and `librosa.load(mono=True)`
  do. (FFmpeg's own stereo -> mono layout conversion scales by 1/sqrt(2)
  instead of 1/2, which is why the layout is not converted by the
  resampler.)

The sox gain of -4 dB is applied with the spectrogram
(`vidcore.audio.log_mel_spectrogram(gain_db=-4)`), not here. The resampler
is FFmpeg's (swresample), not sox's: a source at another rate gives
slightly different samples than the original's sox step, which
`DecodedAudio.resampled` reports so that callers can log it. PyAV is
imported lazily (pip install 'vidmodels[video]').
"""

import dataclasses

import numpy as np

from tfrecord_tools import video_decode
from vidcore import audio as core_audio

# The video decoder's container helpers (same package, one home): opening
# local or tf.io.gfile paths, the exceptions that mean "cannot be decoded",
# and the decoder's message in one line.
_open_container = video_decode._open_container
_decode_errors = video_decode._decode_errors
_describe = video_decode._describe


class AudioError(video_decode.VideoError):
    """A file has no audio stream or its audio cannot be decoded."""


@dataclasses.dataclass
class DecodedAudio:
    """One file's audio, mono at the asked rate.

    Attributes:
        waveform: float32 numpy array [N] (N may be 0: an empty stream).
        sample_rate: samples per second of `waveform`.
        source_rate: the audio stream's own sample rate.
        source_channels: the audio stream's channel count.
    """

    waveform: np.ndarray
    sample_rate: int
    source_rate: int
    source_channels: int

    @property
    def resampled(self):
        """True when the source's rate differs (FFmpeg resampled it)."""
        return self.source_rate != self.sample_rate

    @property
    def duration(self):
        """Seconds of audio."""
        return len(self.waveform) / self.sample_rate


def decode_audio(path, sample_rate=core_audio.SAMPLE_RATE):
    """Decodes the first audio stream of `path` to mono float32.

    Args:
        path: a wav, a video or any file FFmpeg reads (local path or any
            tf.io.gfile path such as gs://).
        sample_rate: output samples per second.

    Returns:
        DecodedAudio.

    Raises:
        AudioError: the file cannot be opened, has no audio stream, or its
            audio fails to decode (the message names the file and gives the
            decoder's own words).
        InputError: PyAV is not installed.
    """
    av = video_decode.import_av()
    errors = _decode_errors(av)
    try:
        container, handle = _open_container(av, path)
    except errors as e:
        raise AudioError(f"cannot open {path}: {_describe(e)}") from None
    try:
        return _decode_open(av, container, path, sample_rate, errors)
    finally:
        container.close()
        if handle is not None:
            handle.close()


def _decode_open(av, container, path, sample_rate, errors):
    """decode_audio on an open container."""
    if not container.streams.audio:
        raise AudioError(f"{path}: no audio stream (streams: "
                         f"{[s.type for s in container.streams]})")
    stream = container.streams.audio[0]
    source_rate = int(stream.rate or stream.codec_context.sample_rate or 0)
    resampler = av.AudioResampler(format="fltp", rate=sample_rate)
    chunks, decoded = [], 0  # chunks: [channels, n] float32 arrays
    try:
        for frame in container.decode(stream):
            decoded += frame.samples
            chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
        chunks.extend(f.to_ndarray() for f in resampler.resample(None))
    except errors as e:
        seconds = decoded / source_rate if source_rate else 0.0
        raise AudioError(
            f"{path}: audio decoding failed after {seconds:.3f} s: "
            f"{_describe(e)}") from None
    channels = max([c.shape[0] for c in chunks]
                   or [getattr(stream.codec_context, "channels", 0) or 1])
    if chunks:
        planar = np.concatenate(chunks, axis=1)  # [channels, N]
        waveform = planar.mean(axis=0, dtype=np.float64).astype(np.float32)
    else:
        waveform = np.zeros([0], np.float32)
    return DecodedAudio(waveform=waveform, sample_rate=sample_rate,
                        source_rate=source_rate or sample_rate,
                        source_channels=int(channels))
