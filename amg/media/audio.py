"""Audio loading (any format, or a video's audio track) and WAV writing."""

from __future__ import annotations

import itertools
import logging
import wave

import av
import numpy as np

from amg.core.errors import MediaError
from amg.core.fsutil import atomic_path
from amg.media.video import PathLike, open_input

log = logging.getLogger(__name__)

# The longest audio `load_audio` decodes unless told otherwise. A compressed file's size says nothing about its
# decoded length (2.7 MB of FLAC hold 4 h of silence, 0.9 GB as float32), so decoding stops at a duration, not
# at a file size: 2 h are 460 MB at 16 kHz, and 2 h of speech take 2 h to render anyway.
MAX_AUDIO_S = 2 * 3600.0

# Decoders and containers disagree on the last frame's padding by a few tens of ms; a stream that ends this much
# earlier than its container says was cut short (a truncated download, say).
TRUNCATION_TOLERANCE_S = 0.25


class AudioTooLong(MediaError):
    """The audio decodes to more than the caller allows."""

    def __init__(self, path: PathLike, max_seconds: float):
        super().__init__(f"{path} lasts longer than the limit of {max_seconds:.0f} s")
        self.max_seconds = max_seconds


def load_audio(path: PathLike, sample_rate: int = 16000, max_seconds: float = MAX_AUDIO_S) -> np.ndarray:
    """Decode the first audio track of an audio or video file to float32 mono in [-1, 1] at `sample_rate`.

    Raises AudioTooLong as soon as the decoded audio passes `max_seconds`, so memory stays bounded whatever the
    file holds; warns when the stream ends well before the duration its container declares (a truncated file).
    """
    limit = int(max_seconds * sample_rate)
    with open_input(path, "media file") as container:
        if not container.streams.audio:
            raise MediaError(f"{path} has no audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        # The final None flushes the samples the resampler holds back until it knows the input has ended.
        frames = itertools.chain(container.decode(stream), [None])
        chunks, n_samples = [], 0
        for out in (out for frame in frames for out in resampler.resample(frame)):
            n_samples += out.samples
            if n_samples > limit:
                raise AudioTooLong(path, max_seconds)
            chunks.append(out.to_ndarray()[0])
        declared_s = _declared_duration(stream)
    if n_samples == 0:
        raise MediaError(f"{path} has an audio track but no audio samples could be decoded")
    _warn_if_truncated(path, n_samples / sample_rate, declared_s)
    samples = np.concatenate(chunks)
    if not np.isfinite(samples).all():  # a float WAV can hold NaN or inf: no encoder or model takes them
        log.warning(
            "%s holds %d samples that are not numbers: read as silence or full scale.",
            path,
            (~np.isfinite(samples)).sum(),
        )
    # Lossy decoders overshoot full scale slightly; callers rely on the documented range.
    return clean_samples(samples)


def clean_samples(samples: np.ndarray) -> np.ndarray:
    """Mono float32 samples in [-1, 1]: NaN read as silence, ±inf and values past full scale as full scale
    (lossy decoders overshoot slightly; float files and synthetic input may hold anything)."""
    samples = np.asarray(samples, np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples of shape (n,), got {samples.shape}")
    return np.clip(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)


def _declared_duration(stream: av.AudioStream) -> float | None:
    """The audio stream's own declared duration. Not the container's: in a video that is the longest stream's,
    and an audio track a little shorter than its picture is not a damaged file."""
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def _warn_if_truncated(path: PathLike, decoded_s: float, declared_s: float | None) -> None:
    if declared_s is not None and decoded_s < declared_s - TRUNCATION_TOLERANCE_S:
        log.warning(
            "%s declares %.1f s of audio but only %.1f s could be decoded: the file is truncated or damaged.",
            path,
            declared_s,
            decoded_s,
        )


def write_wav(path: PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono float samples as a 16-bit PCM WAV, atomically; values outside [-1, 1] are clipped."""
    pcm = np.round(clean_samples(samples) * 32767).astype("<i2")
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
