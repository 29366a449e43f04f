"""Validate the offline sync measure (amg.evaluation.sync) on real talking-head footage before trusting it.

    python benchmarks/sync_validation.py --root /tmp/amg-bench [CLIP ...] [--ablation]

Each CLIP must be preprocessed under ROOT (`amg preprocess ROOT CLIP`). Protocol, per clip: contiguous test
segments of about 5 s; for each, a SyncModel is fitted on the clip's frames outside the segment and outside a
1 s guard band either side (the speech embedding hears 775 ms, so neighbouring frames share audio with the
segment), then the segment's real mouth signals (from the raw tracker landmarks) are measured against:

  own          the clip's own audio: expected offset 0
  other voice  the own audio resampled by 5/6 and by 6/5 (pitch and formants x1.2 and /1.2, a crude other
               speaker saying the same words; the 20 % tempo change is undone on the feature time axis):
               expected offset 0. Generated footage is driven by other voices than the avatar's, and the
               model only ever sees the avatar's own voice when fitted.
  shift k      the own audio k = -6, -3, +3, +6 frames away, so that the mouth moves k frames later than the
               speech: expected offset k (frames whose shifted audio would fall outside the clip are left out)
  unrelated    a same-length window of every other clip's speech and of every shared speech file long
               enough (a seeded random window that is at least half speech, so that silence does not make the
               negatives easy)

Reported for the measure and for the baseline (mouth opening against the speech energy envelope, the same lag
search and confidence, on levels as first tried and on frame-to-frame changes as the measure does): how often
the offset is exact (=) or within a frame (±1); the mean confidence; the AUC of the confidence between in-sync
segments and unrelated audio (1 = always apart, 0.5 = chance); and TPR, the share of in-sync segments above
the threshold, the confidence that 95 % of unrelated windows stay below.

--ablation also fits variants of the measure (feature blocks, audio context, ridge alpha, levels instead of
changes) and prints the table that chose amg.evaluation.sync's defaults (a few more minutes).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.signal
import scipy.stats

from amg.audio import FPS, SAMPLE_RATE, AudioFeatures, compute_features, features_for_video
from amg.config import AudioFeatureConfig
from amg.core.layout import Layout
from amg.evaluation.sync import (
    DEFAULT_ALPHA,
    DEFAULT_BLOCKS,
    DEFAULT_CONTEXT,
    SyncModel,
    SyncResult,
    lagged_correlation,
    measure_sync,
    mouth_signals,
    sync_from_correlation,
)
from amg.media.audio import load_audio
from amg.tracking.tracks import Tracks

from shared_data import SHARED

DEFAULT_CLIPS = [
    "obama_clip1",
    "obama_clip2",
    "kristi_noem",
    "hdtf_katie_hill_8s",
    "andrew_ng_clip1",
    "andrew_ng_clip2",
    "feifei_li_clip1",
]
SPEECH_DIR = SHARED / "audio"
SPEECH_SUFFIXES = (".wav", ".flac", ".mp3")
MAX_SPEECH_SECONDS = 60.0
SEGMENT_FRAMES = 5 * FPS
GUARD_FRAMES = FPS
SHIFTS = (-6, -3, 3, 6)
VOICE_RESAMPLING = ((5, 6), (6, 5))
MAX_LAG = 15
MIN_SPEECH_FRACTION = 0.5
UNRELATED_FPR = 0.05

Measure = Callable[[SyncModel, AudioFeatures, np.ndarray, np.ndarray], SyncResult]


@dataclass
class Clip:
    name: str
    features: AudioFeatures
    voices: list[AudioFeatures]  # the same speech in other voices, on the clip's frame axis
    signals: np.ndarray  # (T, 3)
    valid: np.ndarray  # (T,) bool


@dataclass
class Trial:
    condition: str  # own, voice, shift, unrelated
    expected: int  # offset expected (own, voice, shift)
    clip: str
    result: SyncResult


def rows(features: AudioFeatures, index: np.ndarray) -> AudioFeatures:
    return AudioFeatures(features.values[index], features.blocks, features.vad[index])


def other_voice(samples: np.ndarray, up: int, down: int, n_frames: int) -> AudioFeatures:
    """Features of `samples` played down/up times faster (pitch and formants too), read on the original frames."""
    features = compute_features(scipy.signal.resample_poly(samples, up, down), AudioFeatureConfig())
    source, target = np.arange(len(features)), np.arange(n_frames) * up / down

    def retime(x: np.ndarray) -> np.ndarray:
        return np.interp(target, source, x).astype(np.float32)

    return AudioFeatures(
        np.stack([retime(c) for c in features.values.T], axis=1), features.blocks, retime(features.vad)
    )


def load_clips(root: Path, names: list[str]) -> list[Clip]:
    layout = Layout(root)
    missing = [n for n in names if not layout.tracks(n).is_file() or not layout.audio_wav(n).is_file()]
    if missing:
        sys.exit(
            f"error: {root} lacks the preprocessed clip(s) {', '.join(missing)} (tracks.npz and audio.wav); "
            f"run `amg preprocess {root} NAME` for each, or name other clips."
        )
    clips = []
    for name in names:
        tracks = Tracks.load(layout.tracks(name))
        features = features_for_video(layout, name, AudioFeatureConfig(), tracks.n_frames)
        samples = load_audio(layout.audio_wav(name), SAMPLE_RATE)
        voices = [other_voice(samples, up, down, tracks.n_frames) for up, down in VOICE_RESAMPLING]
        clips.append(Clip(name, features, voices, mouth_signals(tracks.landmarks_raw), tracks.tracked.astype(bool)))
    return clips


def load_speech(folder: Path) -> dict[str, AudioFeatures]:
    """Features of the shared speech files (first minute of each); none if the folder is absent."""
    if not folder.is_dir():
        print(f"note: {folder} not found; unrelated audio comes from the other clips only")
        return {}
    files = sorted(p for p in folder.iterdir() if p.suffix in SPEECH_SUFFIXES)
    return {
        p.stem: compute_features(
            load_audio(p, SAMPLE_RATE)[: int(MAX_SPEECH_SECONDS * SAMPLE_RATE)], AudioFeatureConfig()
        )
        for p in files
    }


def segments(n_frames: int) -> list[np.ndarray]:
    return np.array_split(np.arange(n_frames), max(2, round(n_frames / SEGMENT_FRAMES)))


def speech_window(features: AudioFeatures, length: int, rng: np.random.Generator) -> np.ndarray | None:
    """Frame indices of a random window of `length` frames that is mostly speech, or None if there is none."""
    if len(features) < length:
        return None
    speech = np.convolve(features.vad >= 0.5, np.ones(length), mode="valid") / length
    starts = np.flatnonzero(speech >= MIN_SPEECH_FRACTION)
    return None if len(starts) == 0 else np.arange(length) + rng.choice(starts)


def sync_model(model: SyncModel, audio: AudioFeatures, signals: np.ndarray, valid: np.ndarray) -> SyncResult:
    return measure_sync(model, audio, signals, MAX_LAG, valid)


def sync_model_levels(model: SyncModel, audio: AudioFeatures, signals: np.ndarray, valid: np.ndarray) -> SyncResult:
    """The measure correlating levels rather than frame-to-frame changes (ablation)."""
    measured = np.where(valid[:, None], signals, np.nan)
    return sync_from_correlation(*lagged_correlation(model.predict(audio), measured, MAX_LAG))


def energy_baseline(changes: bool) -> Measure:
    """Mouth opening against the speech energy envelope, over the same lags (no model)."""

    def measure(model: SyncModel, audio: AudioFeatures, signals: np.ndarray, valid: np.ndarray) -> SyncResult:
        energy, opening = audio.block("energy")[:, 0], np.where(valid, signals[:, 0], np.nan)
        if changes:
            energy, opening = np.diff(energy), np.diff(opening)
        return sync_from_correlation(*lagged_correlation(energy, opening, MAX_LAG))

    return measure


def evaluate(
    clips: list[Clip], speech: dict[str, AudioFeatures], fit_args: dict, measures: dict[str, Measure]
) -> dict[str, list[Trial]]:
    """Every measure's trials over every clip's test segments (see the module docstring)."""
    trials: dict[str, list[Trial]] = {name: [] for name in measures}
    rng = np.random.default_rng(0)
    for clip in clips:
        unrelated = [c.features for c in clips if c is not clip] + list(speech.values())
        n_frames = len(clip.features)
        for segment in segments(n_frames):
            train = clip.valid.copy()
            train[max(0, segment[0] - GUARD_FRAMES) : segment[-1] + 1 + GUARD_FRAMES] = False
            model = SyncModel.fit(clip.features, clip.signals, train, **fit_args)
            cases = [("own", 0, rows(clip.features, segment), clip.valid[segment])]
            cases += [("voice", 0, rows(voice, segment), clip.valid[segment]) for voice in clip.voices]
            for k in SHIFTS:
                index = segment + k
                inside = (index >= 0) & (index < n_frames)
                cases.append(
                    ("shift", k, rows(clip.features, np.clip(index, 0, n_frames - 1)), clip.valid[segment] & inside)
                )
            for other in unrelated:
                window = speech_window(other, len(segment), rng)
                if window is not None:
                    cases.append(("unrelated", 0, rows(other, window), clip.valid[segment]))
            for condition, expected, audio, valid in cases:
                for name, measure in measures.items():
                    result = measure(model, audio, clip.signals[segment], valid)
                    trials[name].append(Trial(condition, expected, clip.name, result))
    return trials


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    ranks = scipy.stats.rankdata(np.concatenate([positive, negative]))
    return float(
        (ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative))
    )


def select(trials: list[Trial], condition: str, expected: int | None = None) -> list[Trial]:
    return [t for t in trials if t.condition == condition and expected in (None, t.expected)]


def confidences(trials: list[Trial]) -> np.ndarray:
    return np.array([t.result.confidence for t in trials])


def hits(trials: list[Trial]) -> str:
    """Share of trials whose offset is exact, and within one frame."""
    error = np.abs(np.array([t.result.offset - t.expected for t in trials]))
    return f"{np.mean(error == 0):4.0%} /{np.mean(error <= 1):5.0%}"


def separation(trials: list[Trial], condition: str) -> str:
    """AUC of the confidence between `condition` (in sync) and unrelated audio."""
    return f"{auc(confidences(select(trials, condition)), confidences(select(trials, 'unrelated'))):5.3f}"


def print_table(title: str, columns: list[tuple[str, int]], lines: dict[str, list[str]]) -> None:
    width = max(len(name) for name in lines)
    print(f"\n{title}\n{'':{width}}  " + "  ".join(f"{h:>{w}}" for h, w in columns))
    for name, cells in lines.items():
        print(f"{name:{width}}  " + "  ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, columns)))


def offset_table(trials: dict[str, list[Trial]]) -> None:
    columns = [("own", 11), ("voice", 11)] + [(f"shift {k:+d}", 11) for k in SHIFTS]
    lines = {
        name: [hits(select(t, "own")), hits(select(t, "voice"))] + [hits(select(t, "shift", k)) for k in SHIFTS]
        for name, t in trials.items()
    }
    print_table("Offsets recovered (share exact / share within ±1 frame)", columns, lines)


def confidence_table(trials: dict[str, list[Trial]]) -> None:
    columns = [
        ("conf own", 8),
        ("voice", 5),
        ("unrel", 5),
        ("AUC own", 7),
        ("AUC voice", 9),
        ("threshold", 9),
        ("TPR own", 7),
    ]
    lines = {}
    for name, t in trials.items():
        threshold = np.quantile(confidences(select(t, "unrelated")), 1 - UNRELATED_FPR)
        own = confidences(select(t, "own"))
        lines[name] = [f"{np.mean(confidences(select(t, c))):.3f}" for c in ("own", "voice", "unrelated")]
        lines[name] += [
            separation(t, "own"),
            separation(t, "voice"),
            f"{threshold:.3f}",
            f"{np.mean(own > threshold):.0%}",
        ]
    print_table(
        f"Confidence, in sync vs unrelated audio (threshold: {1 - UNRELATED_FPR:.0%} of unrelated windows "
        "below it; TPR: in-sync segments above it)",
        columns,
        lines,
    )


def clip_table(trials: list[Trial], clips: list[Clip]) -> None:
    columns = [("segments", 8), ("own offset", 11), ("conf own", 8), ("unrel", 5), ("AUC own", 7)]
    lines = {}
    for clip in clips:
        mine = [t for t in trials if t.clip == clip.name]
        own, unrelated = select(mine, "own"), select(mine, "unrelated")
        lines[clip.name] = [
            str(len(own)),
            hits(own),
            f"{np.mean(confidences(own)):.3f}",
            f"{np.mean(confidences(unrelated)):.3f}",
            separation(mine, "own"),
        ]
    print_table("Sync model per clip", columns, lines)


def ablation_table(clips: list[Clip], speech: dict[str, AudioFeatures], default: list[Trial]) -> None:
    variants: dict[str, tuple[dict, Measure]] = {
        "embedding,vad,energy": ({"blocks": "embedding,vad,energy"}, sync_model),
        "mel,vad,energy": ({"blocks": "mel,vad,energy"}, sync_model),
        "energy": ({"blocks": "energy"}, sync_model),
        "context 1": ({"context": 1}, sync_model),
        "context 5": ({"context": 5}, sync_model),
        "alpha 0.3": ({"alpha": 0.3}, sync_model),
        "alpha 30": ({"alpha": 30.0}, sync_model),
        "levels, not changes": ({}, sync_model_levels),
    }
    trials = {"default": default}
    for name, (fit_args, measure) in variants.items():
        trials[name] = evaluate(clips, speech, fit_args, {name: measure})[name]
    columns = [("own", 11), ("voice", 11), ("shifts", 11), ("AUC own", 7), ("AUC voice", 9)]
    lines = {
        name: [
            hits(select(t, "own")),
            hits(select(t, "voice")),
            hits(select(t, "shift")),
            separation(t, "own"),
            separation(t, "voice"),
        ]
        for name, t in trials.items()
    }
    print_table("Ablation: one setting changed from the default (offsets exact / within ±1 frame)", columns, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="data root holding the preprocessed clips")
    parser.add_argument("clips", nargs="*", default=DEFAULT_CLIPS, help="preprocessed clips (default: %(default)s)")
    parser.add_argument("--speech-dir", type=Path, default=SPEECH_DIR, help="more unrelated speech (audio files)")
    parser.add_argument("--ablation", action="store_true", help="also evaluate variants of the measure")
    args = parser.parse_args()
    if len(args.clips) < 2:
        sys.exit("error: name at least two clips (each one's speech is unrelated audio for the others)")
    clips = load_clips(args.root, args.clips)
    speech = load_speech(args.speech_dir)
    measures = {
        "sync model": sync_model,
        "baseline, levels": energy_baseline(False),
        "baseline, changes": energy_baseline(True),
    }
    trials = evaluate(clips, speech, {}, measures)
    default = trials["sync model"]
    print(
        f"{len(clips)} clips, {sum(len(c.features) for c in clips) / FPS:.0f} s, {len(select(default, 'own'))} "
        f"test segments of ~{SEGMENT_FRAMES / FPS:.0f} s, {len(select(default, 'unrelated'))} unrelated windows "
        f"({len(clips) - 1} other clips, {len(speech)} speech files); lags ±{MAX_LAG} frames"
    )
    print(
        f"sync model: blocks {DEFAULT_BLOCKS}, context ±{DEFAULT_CONTEXT} frames, ridge alpha {DEFAULT_ALPHA}; "
        "baseline: mouth opening vs energy envelope"
    )
    offset_table(trials)
    confidence_table(trials)
    clip_table(default, clips)
    if args.ablation:
        ablation_table(clips, speech, default)


if __name__ == "__main__":
    main()
