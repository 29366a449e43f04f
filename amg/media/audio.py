"""Audio loading (any format, or a video's audio track) and WAV writing."""

from __future__ import annotations

import itertools
import wave

import av
import numpy as np

from amg.errors import MediaError
from amg.fsutil import atomic_path
from amg.media.video import PathLike, open_input


def load_audio(path: PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio track of an audio or video file to float32 mono in [-1, 1] at `sample_rate`."""
    with open_input(path, "media file") as container:
        if not container.streams.audio:
            raise MediaError(f"{path} has no audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        # The final None flushes the samples the resampler holds back until it knows the input has ended.
        frames = itertools.chain(container.decode(stream), [None])
        chunks = [out.to_ndarray()[0] for frame in frames for out in resampler.resample(frame)]
    if sum(len(chunk) for chunk in chunks) == 0:
        raise MediaError(f"{path} has an audio track but no audio samples could be decoded")
    # Lossy decoders overshoot full scale slightly; callers rely on the documented range.
    return np.clip(np.concatenate(chunks), -1.0, 1.0)


def write_wav(path: PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono float samples as a 16-bit PCM WAV, atomically; values outside [-1, 1] are clipped."""
    samples = np.asarray(samples, np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples of shape (n,), got {samples.shape}")
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
