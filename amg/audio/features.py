"""Speech → per-video-frame features that describe *what* is said, not who says it or through which channel.

Video frame i covers audio [i/25, (i+1)/25) s; every block has exactly one row per frame. Blocks:

- mel (4*n_mels): log-mel power of the four 10 ms windows in the frame, band-limited to fmin-fmax, with each
  band standardised over the utterance's speech frames (removes the speaker's and channel's spectral tilt).
- embedding (96): Google's speech embedding of the 775 ms around the frame, on audio brought to a reference
  speech level, standardised over the utterance's speech frames (or with fixed reference statistics).
- vad (1): Silero's speech probability.
- energy (1): band energy in dB relative to the utterance's speech level, /10.

Levels are relative to the utterance's own speech level (loud and quiet recordings match) and everything more
than `floor_db` below it reads as the floor, so digital silence and room noise both give the same "silence"
values. Without enough detected speech for statistics (silence, music, very short input), fixed reference
statistics take their place, so nothing is ever normalised by the spread of noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from amg.audio import models, reference, spectral
from amg.config import FPS, AudioFeatureConfig, read_saved_config, save_config
from amg.core.errors import AmgError
from amg.core.fsutil import load_npz, save_npz
from amg.core.layout import Layout
from amg.media.audio import clean_samples, load_audio

SAMPLE_RATE = models.SAMPLE_RATE
FRAME_HOP = SAMPLE_RATE // FPS  # 640 samples per video frame
WINDOWS_PER_FRAME = FRAME_HOP // spectral.HOP  # 4 mel windows per video frame
# Bumped whenever the computation changes, so that features cached by older code are recomputed.
FEATURE_VERSION = 1

# Speech statistics need this much detected speech (0.4 s) to be trusted; below it the references are used.
MIN_SPEECH_FRAMES = 10
# ITU-T P.56's nominal active speech level: the level assumed when no speech is detected, and the level the
# embedding model's input is brought to.
REFERENCE_SPEECH_DBFS = -26.0
# Typical spread of a mel band's level over speech frames: the reference when there are no statistics.
REFERENCE_BAND_STD_DB = 10.0
# Smallest spread a band or embedding dimension is divided by: a band that is nearly constant (empty in
# phone audio, say) must not have its noise blown up to unit variance.
MIN_BAND_STD_DB = 3.0
MIN_EMBEDDING_STD = 1.0  # a tenth of the embedding's typical spread (reference.EMBEDDING_STD)
ENERGY_SCALE_DB = 10.0


@dataclass
class AudioFeatures:
    """Per-video-frame audio features: `values[:, blocks[name]]` is one block; `vad` is always present."""

    values: np.ndarray  # (T, D) float32
    blocks: dict[str, slice]
    vad: np.ndarray  # (T,) float32 speech probability

    def __len__(self) -> int:
        return len(self.values)

    def block(self, name: str) -> np.ndarray:
        return self.values[:, self.blocks[name]]

    def take(self, frames: slice) -> AudioFeatures:
        """The features of a stretch of frames (a held-out tail, say)."""
        return AudioFeatures(self.values[frames], self.blocks, self.vad[frames])

    def save(self, path: str | Path) -> None:
        names = list(self.blocks)
        bounds = np.array([[self.blocks[n].start, self.blocks[n].stop] for n in names], np.int64).reshape(-1, 2)
        save_npz(
            path,
            values=self.values,
            vad=self.vad,
            block_names=np.array(names, dtype=str),
            block_bounds=bounds,
            version=np.array(FEATURE_VERSION),
        )

    @classmethod
    def load(cls, path: str | Path) -> AudioFeatures:
        data = load_npz(path)
        try:
            if int(data["version"]) != FEATURE_VERSION:
                raise AmgError(f"{path} holds audio features of an older version; recompute them.")
            blocks = {str(n): slice(int(a), int(b)) for n, (a, b) in zip(data["block_names"], data["block_bounds"])}
            return cls(values=data["values"], blocks=blocks, vad=data["vad"])
        except KeyError as e:
            raise AmgError(f"Cannot read audio features from {path} ({e}); delete it to recompute.") from e


def _db(power: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(power)


@dataclass
class SpeechStats:
    """What the blocks are normalised with: the speech level and the spread of the speech frames' mel bands and
    embeddings. Offline they are the utterance's own (`utterance_stats`); a live stream estimates them as the
    speech comes in (amg.audio.stream)."""

    level_dbfs: float  # mean band power over speech frames; cfg.floor_db below it reads as the floor
    mel_mean: np.ndarray  # (n_mels,) dB
    mel_std: np.ndarray  # (n_mels,)
    embedding_mean: np.ndarray  # (96,)
    embedding_std: np.ndarray  # (96,)


def reference_stats(cfg: AudioFeatureConfig, level_dbfs: float = REFERENCE_SPEECH_DBFS) -> SpeechStats:
    """The statistics assumed without enough detected speech (silence, music, the first words of a stream)."""
    flat = flat_band_db(cfg)
    return SpeechStats(
        level_dbfs,
        np.full(cfg.n_mels, level_dbfs + flat),
        np.full(cfg.n_mels, REFERENCE_BAND_STD_DB),
        np.array(reference.EMBEDDING_MEAN),
        np.array(reference.EMBEDDING_STD),
    )


def flat_band_db(cfg: AudioFeatureConfig) -> float:
    """Filters are normalised to mean power density, so a flat spectrum at level L reads L + this in every band."""
    return -10.0 * math.log10(spectral.mel_filterbank(cfg.n_mels, SAMPLE_RATE, cfg.fmin, cfg.fmax).shape[1])


def band_power(samples: np.ndarray, n_windows: int, cfg: AudioFeatureConfig, first: int = 0) -> np.ndarray:
    """(n_windows, n_bins) power of the FFT bins inside fmin-fmax of 10 ms windows `first`, `first` + 1, ..."""
    power = spectral.power_spectrum(samples, n_windows, first)
    return power[:, spectral.band_bins(SAMPLE_RATE, cfg.fmin, cfg.fmax)]


def frame_band_power(power: np.ndarray) -> np.ndarray:
    """(T,) mean square of the band-limited signal per video frame."""
    return power.sum(axis=1).reshape(-1, WINDOWS_PER_FRAME).mean(axis=1)


def speech_frames(vad: np.ndarray, cfg: AudioFeatureConfig) -> np.ndarray | None:
    """(T,) bool speech frames, or None when there are too few for statistics."""
    speech = vad >= cfg.vad_threshold
    return speech if speech.sum() >= MIN_SPEECH_FRAMES else None


def log_mel(power: np.ndarray, level_dbfs: float, cfg: AudioFeatureConfig) -> np.ndarray:
    """(4T, n_mels) log-mel power in dB, with everything `cfg.floor_db` below the speech level read as the floor."""
    filters = spectral.mel_filterbank(cfg.n_mels, SAMPLE_RATE, cfg.fmin, cfg.fmax)
    floor = 10.0 ** ((level_dbfs - cfg.floor_db + flat_band_db(cfg)) / 10.0)
    return _db(power @ filters.T + floor)


def embedding_gain(level_dbfs: float) -> float:
    """The gain that brings speech at `level_dbfs` to the reference level the embedding model is fed at."""
    return 10.0 ** ((REFERENCE_SPEECH_DBFS - level_dbfs) / 20.0)


def spread(values: np.ndarray, min_std: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread (floored at `min_std`) of the rows of speech frames."""
    return values.mean(axis=0), np.maximum(values.std(axis=0), min_std)


def speech_level_dbfs(mean_power: float) -> float:
    """The speech level of a mean band power over speech frames."""
    return float(_db(max(mean_power, 1e-20)))


def utterance_stats(power: np.ndarray, speech: np.ndarray | None, cfg: AudioFeatureConfig) -> SpeechStats:
    """The level and mel statistics of a whole utterance (`speech`: its speech frames, None for too few); the
    embedding's are the reference ones until `compute_features` has the embeddings."""
    if speech is None:
        return reference_stats(cfg)
    level = speech_level_dbfs(frame_band_power(power)[speech].mean())
    stats = reference_stats(cfg, level)
    speech_windows = log_mel(power, level, cfg)[np.repeat(speech, WINDOWS_PER_FRAME)]
    stats.mel_mean, stats.mel_std = spread(speech_windows, MIN_BAND_STD_DB)
    return stats


def assemble_features(
    cfg: AudioFeatureConfig,
    power: np.ndarray,
    vad: np.ndarray,
    embedding: np.ndarray | None,
    stats: SpeechStats,
) -> AudioFeatures:
    """The normalised blocks of `cfg`, side by side, from the band power (4T windows), the speech probability
    (T,) and the raw embeddings (T, 96) of T frames."""
    builders: dict[str, Callable[[], np.ndarray]] = {
        "mel": lambda: ((log_mel(power, stats.level_dbfs, cfg) - stats.mel_mean) / stats.mel_std).reshape(
            len(vad), WINDOWS_PER_FRAME * cfg.n_mels
        ),
        "embedding": lambda: (embedding - stats.embedding_mean) / stats.embedding_std,
        "vad": lambda: vad[:, None],
        "energy": lambda: _energy(power, stats.level_dbfs, cfg)[:, None],
    }
    parts = [builders[name]().astype(np.float32) for name in cfg.blocks]
    widths = np.cumsum([0] + [p.shape[1] for p in parts])
    blocks = {name: slice(int(a), int(b)) for name, a, b in zip(cfg.blocks, widths[:-1], widths[1:])}
    return AudioFeatures(values=np.concatenate(parts, axis=1), blocks=blocks, vad=vad)


def _energy(power: np.ndarray, level_dbfs: float, cfg: AudioFeatureConfig) -> np.ndarray:
    level = _db(frame_band_power(power) + 10.0 ** ((level_dbfs - cfg.floor_db) / 10.0))
    return (level - level_dbfs) / ENERGY_SCALE_DB


def compute_features(
    samples: np.ndarray, cfg: AudioFeatureConfig, n_frames: int | None = None, stats: SpeechStats | None = None
) -> AudioFeatures:
    """Features of 16 kHz mono `samples`: `n_frames` rows (the video's frame count), else one per started 40 ms;
    normalised with the utterance's own statistics, or with `stats`."""
    return features_and_stats(samples, cfg, n_frames, stats)[0]


def features_and_stats(
    samples: np.ndarray, cfg: AudioFeatureConfig, n_frames: int | None = None, stats: SpeechStats | None = None
) -> tuple[AudioFeatures, SpeechStats]:
    """`compute_features`, and the statistics it normalised with."""
    samples = clean_samples(samples)
    if n_frames is None:
        n_frames = math.ceil(len(samples) / FRAME_HOP)
    if n_frames <= 0:
        raise AmgError("No audio to compute features from (empty input or zero frames requested).")
    power = band_power(samples, n_frames * WINDOWS_PER_FRAME, cfg)
    vad = models.speech_probability(samples, n_frames, FRAME_HOP)
    speech = speech_frames(vad, cfg)
    own = stats is None
    if own:  # the level first: the embedding model is fed speech brought to the reference level
        stats = utterance_stats(power, speech, cfg)
    embedding = None
    if "embedding" in cfg.blocks:
        embedding = models.speech_embedding(samples, n_frames, FRAME_HOP, embedding_gain(stats.level_dbfs))
        if own and cfg.embedding_normalize and speech is not None:
            stats.embedding_mean, stats.embedding_std = spread(embedding[speech], MIN_EMBEDDING_STD)
    return assemble_features(cfg, power, vad, embedding, stats), stats


def _load_cache(
    cache: Path, config_path: Path, source: Path, cfg: AudioFeatureConfig, n_frames: int | None
) -> AudioFeatures | None:
    """The cached features if they were made from the current `source` with `cfg` (and have n_frames rows)."""
    if read_saved_config(AudioFeatureConfig, config_path) != cfg or not cache.is_file():
        return None
    if cache.stat().st_mtime < source.stat().st_mtime:
        return None  # the input was replaced after the features were computed
    try:
        features = AudioFeatures.load(cache)
    except AmgError:
        return None  # unreadable, or written by an older version
    return features if n_frames is None or len(features) == n_frames else None


def _cached(
    cache: Path, config_path: Path, source: Path, cfg: AudioFeatureConfig, n_frames: int | None, force: bool
) -> AudioFeatures:
    """Features from `cache` if still valid, else computed from `source` and saved there."""
    features = None if force else _load_cache(cache, config_path, source, cfg, n_frames)
    if features is not None:
        return features
    features = compute_features(load_audio(source, SAMPLE_RATE), cfg, n_frames)
    # The config is removed first and written last, so an interrupted write never pairs new features with an
    # old config that still matches.
    config_path.unlink(missing_ok=True)
    features.save(cache)
    save_config(cfg, config_path)
    return features


def features_for_audio(layout: Layout, audio_name: str, cfg: AudioFeatureConfig, force: bool = False) -> AudioFeatures:
    """Features of the driving speech `audio_name`, cached beside it."""
    source = layout.audio_source(audio_name)
    folder = layout.audio_dir(audio_name)
    return _cached(folder / "features.npz", folder / "features_config.yaml", source, cfg, None, force)


def features_for_video(
    layout: Layout, video_name: str, cfg: AudioFeatureConfig, n_frames: int, force: bool = False
) -> AudioFeatures:
    """Features of the avatar video's own speech (its preprocessed audio.wav), one row per video frame."""
    source = layout.audio_wav(video_name)
    if not source.is_file():
        raise AmgError(
            f"No preprocessed audio for video {video_name!r} at {source}: run preprocessing on it first "
            "(if it has been preprocessed, the video has no audio track, and an avatar needs its speech)."
        )
    folder = layout.preprocess_dir(video_name)
    return _cached(folder / "audio_features.npz", folder / "audio_features_config.yaml", source, cfg, n_frames, force)
