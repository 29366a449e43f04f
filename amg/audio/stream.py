"""Audio features of a live stream: the blocks of amg.audio.features, frame by frame as the speech arrives.

Every value is computed with the offline code on the samples it depends on, so a frame's mel, energy and
speech probability are the ones the whole recording gives, as soon as their 10 ms windows and the VAD chunk
past the frame's middle are in (72 ms after the frame ends). The speech embedding's window reaches 387 ms past
its frame: until that audio is in, a frame's embedding is *provisional* (the future zero-padded, as at the end
of a file) and is recomputed at every read; after, it is final and kept. The embeddings are computed when
read, in one model call per read (the model's cost is mostly per call).

What a stream cannot have is the utterance's statistics (its speech level and the spread of its mel bands and
embeddings). It estimates them from the speech frames so far, starting from the reference statistics, or is
given fixed ones (a known microphone; the tests' comparison with the offline features).
"""

from __future__ import annotations

import math

import numpy as np

from amg.audio import models, spectral
from amg.audio.features import (
    FRAME_HOP,
    MIN_BAND_STD_DB,
    MIN_EMBEDDING_STD,
    MIN_SPEECH_FRAMES,
    WINDOWS_PER_FRAME,
    AudioFeatures,
    SpeechStats,
    assemble_features,
    band_power,
    embedding_gain,
    frame_band_power,
    log_mel,
    reference_stats,
    speech_level_dbfs,
)
from amg.config import AudioFeatureConfig
from amg.media.audio import clean_samples

# 16 kHz samples of one 8 kHz VAD chunk, and the margin either side that makes its resampling exact (past the
# 20-sample reach of resample_poly's filter; even, so that the 2:1 phases line up).
VAD_SPAN = models.VAD_CHUNK * (models.SAMPLE_RATE // models.VAD_RATE)
RESAMPLE_MARGIN = 64
# A frame's 10 ms windows end this many samples after the frame starts (the last window's centre + half a window).
POWER_REACH = (WINDOWS_PER_FRAME - 1) * spectral.HOP + spectral.HOP // 2 + spectral.WINDOW // 2
# An embedding window reaches this many samples before its frame starts and after.
EMBEDDING_LEFT, EMBEDDING_RIGHT = models.embedding_reach(FRAME_HOP)
EMBEDDING_REACH_FRAMES = math.ceil(EMBEDDING_LEFT / FRAME_HOP)


class _Rows:
    """The last rows of a growing (T, ...) array, addressed by absolute frame number."""

    def __init__(self, keep: int):
        self.keep = keep
        self.base = 0
        self.data: np.ndarray | None = None

    @property
    def stop(self) -> int:
        return self.base + (0 if self.data is None else len(self.data))

    def extend(self, rows: np.ndarray) -> None:
        self.data = rows if self.data is None else np.concatenate([self.data, rows])
        if len(self.data) > 2 * self.keep:  # trimmed now and then, not at every append
            drop = len(self.data) - self.keep
            self.data, self.base = self.data[drop:], self.base + drop

    def get(self, start: int, stop: int) -> np.ndarray:
        if start < self.base:
            raise ValueError(f"frame {start} is no longer kept (the oldest is {self.base})")
        return self.data[start - self.base : stop - self.base]


class _RunningStats:
    """Sums over the speech frames so far, for the stream's estimate of the utterance statistics."""

    def __init__(self, cfg: AudioFeatureConfig):
        self.cfg = cfg
        self.frames = 0
        self.power = 0.0
        self.mel = np.zeros((2, cfg.n_mels))
        self.embeddings = 0
        self.embedding = np.zeros((2, models.EMBEDDING_DIM))

    def add_frames(self, power: np.ndarray, speech: np.ndarray, level_dbfs: float) -> None:
        if not speech.any():
            return
        self.frames += int(speech.sum())
        self.power += float(frame_band_power(power)[speech].sum())
        mel = log_mel(power, level_dbfs, self.cfg)[np.repeat(speech, WINDOWS_PER_FRAME)].astype(float)
        self.mel += [mel.sum(axis=0), (mel**2).sum(axis=0)]

    def add_embeddings(self, embedding: np.ndarray, speech: np.ndarray) -> None:
        rows = embedding[speech].astype(float)
        self.embeddings += len(rows)
        self.embedding += [rows.sum(axis=0), (rows**2).sum(axis=0)]

    def current(self) -> SpeechStats:
        if self.frames < MIN_SPEECH_FRAMES:
            return reference_stats(self.cfg)
        stats = reference_stats(self.cfg, speech_level_dbfs(self.power / self.frames))
        stats.mel_mean, stats.mel_std = _spread(self.mel, self.frames * WINDOWS_PER_FRAME, MIN_BAND_STD_DB)
        if self.cfg.embedding_normalize and self.embeddings >= MIN_SPEECH_FRAMES:
            stats.embedding_mean, stats.embedding_std = _spread(self.embedding, self.embeddings, MIN_EMBEDDING_STD)
        return stats


def _spread(sums: np.ndarray, count: int, min_std: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread (floored at `min_std`, as offline) from sums of values and of their squares."""
    mean = sums[0] / count
    return mean, np.maximum(np.sqrt(np.maximum(sums[1] / count - mean**2, 0.0)), min_std)


class FeatureStream:
    """Features of speech pushed in chunks (16 kHz mono); `available` frames can be read with `window`.

    `keep`: frames kept for reading back (the motion stage's history); older ones are dropped, so memory stays
    flat however long the stream runs.
    """

    def __init__(self, cfg: AudioFeatureConfig, stats: SpeechStats | None = None, keep: int = 500):
        self.cfg = cfg
        self.fixed_stats = stats
        self.running = _RunningStats(cfg)
        self.with_embedding = "embedding" in cfg.blocks
        self.detector = models.SpeechDetector()
        self.audio = np.zeros(0, np.float32)
        self.audio_start = 0  # absolute sample number of audio[0] (a multiple of FRAME_HOP)
        self.received = 0
        self.finished = False
        self.vad_chunks = _Rows(keep)  # speech probability per 8 kHz chunk
        self.power = _Rows(keep * WINDOWS_PER_FRAME)
        self.vad = _Rows(keep)
        self.embedding = _Rows(keep)  # raw (unnormalised), final rows only

    @property
    def available(self) -> int:
        """Frames whose mel, energy and speech probability are final."""
        return self.vad.stop

    @property
    def oldest(self) -> int:
        """The oldest frame `window` can still read."""
        return max(self.vad.base, self.power.base // WINDOWS_PER_FRAME, self.embedding.base)

    def stats(self) -> SpeechStats:
        return self.fixed_stats or self.running.current()

    def push(self, samples: np.ndarray) -> None:
        if self.finished:
            raise ValueError("the stream has finished")
        samples = clean_samples(samples)
        self.audio = np.concatenate([self.audio, samples])
        self.received += len(samples)
        self._advance()

    def finish(self) -> None:
        """No more audio: the last frames are made as the end of a file makes them."""
        self.finished = True
        self._advance()

    @property
    def n_frames(self) -> int:
        """Frames of the whole stream so far (every started 40 ms)."""
        return math.ceil(self.received / FRAME_HOP)

    def _samples(self, start: int, stop: int) -> np.ndarray:
        """Absolute samples [start, stop), zero before the stream's start and past what has been received."""
        out = np.zeros(stop - start, np.float32)
        lo, hi = max(start, self.audio_start), min(stop, self.audio_start + len(self.audio))
        if hi > lo:
            out[lo - start : hi - start] = self.audio[lo - self.audio_start : hi - self.audio_start]
        return out

    def _advance(self) -> None:
        self._run_vad()
        self._add_frames()
        self._drop_old_audio()

    def _run_vad(self) -> None:
        first = self.vad_chunks.stop
        if self.finished:
            narrow_length = -(-min(self.received, self.n_frames * FRAME_HOP) // 2)
            stop = max(1, -(-narrow_length // models.VAD_CHUNK))
        else:
            stop = (self.received - RESAMPLE_MARGIN) // VAD_SPAN
        if stop <= first:
            return
        start_sample = first * VAD_SPAN - RESAMPLE_MARGIN
        narrow = models.narrowband(self._samples(start_sample, stop * VAD_SPAN + RESAMPLE_MARGIN))
        narrow = narrow[RESAMPLE_MARGIN // 2 : RESAMPLE_MARGIN // 2 + (stop - first) * models.VAD_CHUNK]
        if self.finished:  # the file's last chunk is padded with zeros after resampling, not resampled zeros
            narrow[max(narrow_length - first * models.VAD_CHUNK, 0) :] = 0.0
        self.vad_chunks.extend(self.detector(narrow.reshape(-1, models.VAD_CHUNK)))

    def _add_frames(self) -> None:
        first = self.vad.stop
        if self.finished:
            stop = self.n_frames
        else:
            by_power = (self.received - POWER_REACH) // FRAME_HOP + 1
            # A frame's probability is interpolated from the chunks either side of its middle.
            centres = models.vad_chunk_centres(1, self.vad_chunks.stop - 1)[0]
            by_vad = int((centres - FRAME_HOP / 2) // FRAME_HOP) + 1
            stop = min(by_power, by_vad)
        if stop <= first:
            return
        power = band_power(
            self.audio,
            (stop - first) * WINDOWS_PER_FRAME,
            self.cfg,
            (first * FRAME_HOP - self.audio_start) // spectral.HOP,
        )
        chunks = self.vad_chunks.get(self.vad_chunks.base, self.vad_chunks.stop)
        frame_centres = np.arange(first, stop) * FRAME_HOP + FRAME_HOP / 2
        centres = models.vad_chunk_centres(len(chunks), self.vad_chunks.base)
        vad = np.interp(frame_centres, centres, chunks, right=0.0).astype(np.float32)
        level = self.stats().level_dbfs
        self.running.add_frames(power, vad >= self.cfg.vad_threshold, level)
        self.power.extend(power)
        self.vad.extend(vad)

    def _embeddings(self, start: int, stop: int, gain: float) -> np.ndarray:
        """Raw embeddings of frames [start, stop) from the audio received so far."""
        first = max(start - EMBEDDING_REACH_FRAMES, 0)
        end = min(stop * FRAME_HOP + EMBEDDING_RIGHT, self.received)
        segment = self._samples(first * FRAME_HOP, max(end, first * FRAME_HOP))
        return models.speech_embedding(segment, stop - first, FRAME_HOP, gain)[start - first :]

    def _final_embeddings(self) -> int:
        """Frames whose embedding window has all its audio."""
        if self.finished:
            return self.available
        return min((self.received - EMBEDDING_RIGHT) // FRAME_HOP + 1, self.available)

    def _embedding_rows(self, start: int, stop: int, gain: float) -> np.ndarray:
        """Raw embeddings of frames [start, stop): the kept final ones, the others computed now (in one call,
        the model's cost is mostly per call); those computed now that are final are kept."""
        first = self.embedding.stop
        if stop <= first:
            return self.embedding.get(start, stop)
        new = self._embeddings(first, stop, gain)
        final = max(min(self._final_embeddings(), stop), first)
        if final > first:
            self.running.add_embeddings(new[: final - first], self.vad.get(first, final) >= self.cfg.vad_threshold)
            self.embedding.extend(new[: final - first])
        kept = self.embedding.get(start, first) if start < first else np.zeros((0, new.shape[1]), np.float32)
        return np.concatenate([kept, new[max(start - first, 0) :]])

    def _drop_old_audio(self) -> None:
        # Kept: what the provisional embeddings still read (and the VAD's margin before its next chunk).
        embedded = self.embedding.stop if self.with_embedding else self.vad.stop
        keep_from = min((embedded - EMBEDDING_REACH_FRAMES) * FRAME_HOP, self.vad_chunks.stop * VAD_SPAN - FRAME_HOP)
        keep_from = max(keep_from // FRAME_HOP * FRAME_HOP, self.audio_start)
        if keep_from - self.audio_start > 10 * FRAME_HOP:
            self.audio = self.audio[keep_from - self.audio_start :]
            self.audio_start = keep_from

    def window(self, start: int, stop: int) -> AudioFeatures:
        """Normalised features of frames [start, stop) (within [oldest, available)), with the statistics of now."""
        if not self.oldest <= start < stop <= self.available:
            raise ValueError(f"frames {start}-{stop} are not readable (kept: {self.oldest}-{self.available})")
        stats = self.stats()
        embedding = None
        if self.with_embedding:
            embedding = self._embedding_rows(start, stop, embedding_gain(stats.level_dbfs))
        power = self.power.get(start * WINDOWS_PER_FRAME, stop * WINDOWS_PER_FRAME)
        return assemble_features(self.cfg, power, self.vad.get(start, stop), embedding, stats)
