"""Which audio feature blocks carry *what is said* rather than who says it or over which channel.

    python benchmarks/audio_features.py [--variants default raw_embedding ...]

Per block (mel, embedding, vad, energy) and config variant, on the shared speech clips:

  r_8k     per-dimension Pearson r over frames between a clip and the same clip resampled to 8 kHz and back
  r_phone  same, through a phone line: 8 kHz, 300-3400 Hz band-pass, G.711 mu-law companding
  r_noise  same, with white noise added at 20 dB SNR
  r_gain   same, 30 dB quieter (should be ~1: levels are relative to the utterance's speech level)
  r_voice  same, with pitch and formants moved by x1.2 and /1.2 (resampling: a crude other-sex voice; it also
           changes the speaking rate by 20 %, undone on the feature time axis), mean of both
  grid_rho Spearman rho, over the 21 pairs of the 7 GRID clips (7 different speakers, same grammar), between the
           number of shared words (same slot) and the DTW distance of the block: more negative = the block
           follows the words across speakers
  spk_id   frame-level speaker identification by a Gaussian per speaker fitted on the first half of each clip,
           tested on the second halves (chance = 1/N): lower = less speaker (and recording) identity
  sil_auc  AUC separating a 1 s inserted pause (white noise 35 dB below the clip's level, a quiet room) from
           speech frames, projecting on the speech-minus-pause mean direction of the other clips

Also prints the feature extraction speed on a 60 s clip. Clips are cut to 20 s to keep this quick.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time

import numpy as np
import scipy.signal
import scipy.stats

from amg.audio import FPS, SAMPLE_RATE, AudioFeatures, compute_features, reference
from amg.config import AudioFeatureConfig
from amg.media.audio import load_audio

from shared_data import SHARED

SPEECH_CLIPS = [
    "audio/librispeech_1320_male.mp3",
    "audio/librispeech_3575_female.mp3",
    "audio/vctk_p240_female.mp3",
    "audio/cmu_arctic_a0007.wav",
    "audio/hdtf_radio31.wav",
    "audio/hdtf_radio34_002.wav",
    "audio/hdtf_radio36.wav",
    "audio/musetalk_eng_60s.wav",
    "audio/asterisk_allison_demo_instruct_73s.wav",
    "audio/jfk_inaugural_11s.flac",
    "audio/voca_test_sentence.wav",
]
GRID_CLIPS = ["bbaf2n", "brbk7n", "lbax4n", "lbbc2a", "lrwp9a", "lwbsza", "sbia1a"]
MAX_SECONDS = 20.0
# Alternatives to the defaults, each on the blocks it changes.
VARIANTS = {
    "default": {},
    "reference_embedding_stats": {"embedding_normalize": False, "blocks": "embedding"},
    "band_300_3400": {"fmin": 300.0, "fmax": 3400.0, "n_mels": 20, "blocks": "mel,energy"},
    "band_8k": {"fmax": 8000.0, "n_mels": 40, "blocks": "mel,energy"},
    "mel16": {"n_mels": 16, "blocks": "mel"},
    "mel40": {"n_mels": 40, "blocks": "mel"},
    "mel64": {"n_mels": 64, "blocks": "mel"},
}


def block_names(cfg: AudioFeatureConfig) -> list[str]:
    return cfg.blocks.split(",")


def load(relpath: str) -> np.ndarray:
    return load_audio(SHARED / relpath, SAMPLE_RATE)[: int(MAX_SECONDS * SAMPLE_RATE)]


# --- perturbations -------------------------------------------------------------------------------------
def to_8k(x: np.ndarray) -> np.ndarray:
    return scipy.signal.resample_poly(scipy.signal.resample_poly(x, 1, 2), 2, 1)[: len(x)]


def phone_line(x: np.ndarray) -> np.ndarray:
    narrow = scipy.signal.resample_poly(x, 1, 2)
    sos = scipy.signal.butter(4, [300, 3400], btype="bandpass", fs=SAMPLE_RATE // 2, output="sos")
    narrow = np.clip(scipy.signal.sosfilt(sos, narrow), -1, 1)
    mu = 255.0
    companded = np.sign(narrow) * np.log1p(mu * np.abs(narrow)) / np.log1p(mu)
    quantised = np.round(companded * 127) / 127  # 8-bit G.711
    expanded = np.sign(quantised) * ((1 + mu) ** np.abs(quantised) - 1) / mu
    return scipy.signal.resample_poly(expanded, 2, 1)[: len(x)]


def add_noise(x: np.ndarray, snr_db: float = 20.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    noise_rms = np.sqrt(np.mean(x**2)) * 10 ** (-snr_db / 20)
    return x + rng.normal(0, noise_rms, len(x))


def quieter(x: np.ndarray) -> np.ndarray:
    return x * 10 ** (-30 / 20)


def other_voice(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """Played faster (up < down) or slower: pitch and formants scale by down/up, like a shorter vocal tract."""
    return scipy.signal.resample_poly(x, up, down)


# --- metrics -------------------------------------------------------------------------------------------
def mean_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over dimensions of the Pearson r over frames (dimensions constant in either are skipped)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    sa, sb = np.sqrt((a**2).sum(0)), np.sqrt((b**2).sum(0))
    ok = (sa > 1e-6) & (sb > 1e-6)
    return float(np.mean((a * b).sum(0)[ok] / (sa * sb)[ok])) if ok.any() else float("nan")


def retime(features: np.ndarray, rate: float, n_frames: int) -> np.ndarray:
    """Features of audio played `rate` times faster, read back on the original time axis."""
    src = np.arange(len(features))
    return np.stack([np.interp(np.arange(n_frames) / rate, src, col) for col in features.T], axis=1)


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    cost = np.sqrt(((a[:, None] - b[None]) ** 2).mean(-1))
    acc = np.full((len(a) + 1, len(b) + 1), np.inf)
    acc[0, 0] = 0
    for i in range(1, len(a) + 1):
        row = acc[i]
        for j in range(1, len(b) + 1):
            row[j] = cost[i - 1, j - 1] + min(acc[i - 1, j], row[j - 1], acc[i - 1, j - 1])
    return float(acc[-1, -1] / (len(a) + len(b)))


def speech_span(vad: np.ndarray) -> slice:
    idx = np.flatnonzero(vad > 0.5)
    return slice(idx[0], idx[-1] + 1) if len(idx) else slice(0, len(vad))


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    ranks = scipy.stats.rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


# --- per-block evaluation ------------------------------------------------------------------------------
def robustness(
    clips: dict[str, np.ndarray], clean_features: dict[str, AudioFeatures], cfg: AudioFeatureConfig
) -> dict[str, dict[str, float]]:
    perturbations = {"r_8k": to_8k, "r_phone": phone_line, "r_noise": add_noise, "r_gain": quieter}
    scores: dict[str, dict[str, list[float]]] = {b: {} for b in block_names(cfg)}
    for name, x in clips.items():
        clean = clean_features[name]
        n = len(clean)
        for metric, perturb in perturbations.items():
            other = compute_features(perturb(x), cfg, n)
            for b in block_names(cfg):
                scores[b].setdefault(metric, []).append(mean_correlation(clean.block(b), other.block(b)))
        for up, down in ((5, 6), (6, 5)):
            shifted = compute_features(other_voice(x, up, down), cfg)
            for b in block_names(cfg):
                back = retime(shifted.block(b), down / up, n)
                scores[b].setdefault("r_voice", []).append(mean_correlation(clean.block(b), back))
    return {b: {m: float(np.mean(v)) for m, v in ms.items()} for b, ms in scores.items()}


def gaussian_loglik(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Per-frame log-likelihood of `test` under a Gaussian fitted to `train` (covariance shrunk to be stable)."""
    mean = train.mean(0)
    cov = np.atleast_2d(np.cov(train, rowvar=False))
    cov = 0.9 * cov + (0.1 * np.trace(cov) / len(cov) + 1e-3) * np.eye(len(cov))
    diff = test - mean
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (logdet + np.einsum("ij,ij->i", diff @ np.linalg.inv(cov), diff))


def speaker_id(clips: dict[str, np.ndarray], cfg: AudioFeatureConfig) -> dict[str, float]:
    """Frame-level Gaussian speaker ID: fitted on each clip's first half, tested on the second halves.

    The halves are separate utterances (features computed on each alone), so per-utterance normalisation
    cannot leak one half's statistics into the other.
    """
    halves = [
        (compute_features(x[: len(x) // 2], cfg), compute_features(x[len(x) // 2 :], cfg)) for x in clips.values()
    ]
    result = {}
    for b in block_names(cfg):
        train = [h.block(b)[h.vad > 0.5] for h, _ in halves]
        hits = []
        for truth, (_, test_half) in enumerate(halves):
            test = test_half.block(b)[test_half.vad > 0.5]
            loglik = np.stack([gaussian_loglik(t, test) for t in train], axis=1)
            hits.append(np.mean(loglik.argmax(1) == truth))
        result[b] = float(np.mean(hits))
    return result


def grid_content(cfg: AudioFeatureConfig) -> dict[str, float]:
    feats = {}
    for code in GRID_CLIPS:
        f = compute_features(load(f"video/grid_{code}.mpg"), cfg)
        feats[code] = (f, speech_span(f.vad))
    result = {}
    for b in block_names(cfg):
        overlap, distance = [], []
        for p, q in itertools.combinations(GRID_CLIPS, 2):
            (fp, sp), (fq, sq) = feats[p], feats[q]
            overlap.append(sum(a == c for a, c in zip(p, q)))
            distance.append(dtw_distance(fp.block(b)[sp], fq.block(b)[sq]))
        result[b] = float(scipy.stats.spearmanr(overlap, distance)[0])
    return result


def silence_separability(
    clips: dict[str, np.ndarray], clean_features: dict[str, AudioFeatures], cfg: AudioFeatureConfig
) -> dict[str, float]:
    rng = np.random.default_rng(1)
    per_clip = []
    for name, x in clips.items():
        gap = rng.normal(0, np.sqrt(np.mean(x**2)) * 10 ** (-35 / 20), SAMPLE_RATE).astype(np.float32)
        half = len(x) // 2 // (SAMPLE_RATE // FPS) * (SAMPLE_RATE // FPS)
        f = compute_features(np.concatenate([x[:half], gap, x[half:]]), cfg)
        clean = clean_features[name]
        in_gap = np.zeros(len(f), bool)
        in_gap[half // (SAMPLE_RATE // FPS) + 3 : (half + SAMPLE_RATE) // (SAMPLE_RATE // FPS) - 3] = True
        speech = np.insert(clean.vad > 0.8, half // (SAMPLE_RATE // FPS), np.zeros(FPS, bool))[: len(f)]
        per_clip.append((f, speech, in_gap))
    result = {}
    for b in block_names(cfg):
        aucs = []
        for k, (f, speech, in_gap) in enumerate(per_clip):
            others = [p for i, p in enumerate(per_clip) if i != k]
            direction = np.mean([o.block(b)[s].mean(0) - o.block(b)[g].mean(0) for o, s, g in others], axis=0)
            score = f.block(b) @ direction
            aucs.append(auc(score[speech], score[in_gap]))
        result[b] = float(np.mean(aucs))
    return result


def speed(cfg: AudioFeatureConfig) -> str:
    x = load_audio(SHARED / "audio/musetalk_eng_60s.wav", SAMPLE_RATE)
    lines = []
    for blocks in ("vad", "mel", "energy", "embedding", cfg.blocks):
        start = time.perf_counter()
        n = len(compute_features(x, dataclasses.replace(cfg, blocks=blocks)))
        seconds = time.perf_counter() - start
        real_time = len(x) / SAMPLE_RATE / seconds
        lines.append(f"  {blocks:<26} {seconds:6.2f} s  {n / seconds:7.0f} frames/s  {real_time:5.1f}x real time")
    return "\n".join(lines)


def embedding_reference_source() -> str:
    """Source of amg/audio/reference.py: raw embedding statistics over the speech frames of all clips here."""
    cfg = AudioFeatureConfig(blocks="embedding", embedding_normalize=False)
    sources = SPEECH_CLIPS + [f"video/grid_{code}.mpg" for code in GRID_CLIPS]
    frames = []
    for relpath in sources:
        f = compute_features(load(relpath), cfg)
        frames.append(f.values[f.vad >= cfg.vad_threshold])
    # Without per-utterance statistics the block is scaled by the current reference: undo that exactly.
    pooled = np.concatenate(frames) * np.array(reference.EMBEDDING_STD) + np.array(reference.EMBEDDING_MEAN)

    def as_tuple(values: np.ndarray) -> str:
        return "(\n" + "".join(f"    {', '.join(f'{v:.3f}' for v in row)},\n" for row in values.reshape(-1, 8)) + ")"

    return f'''"""Fixed reference statistics of the speech embedding, used where an utterance has too little speech for its own.

Mean and standard deviation of the raw embedding (audio at the reference speech level) over the speech frames
of {len(sources)} clips (about as many speakers, men and women; studio, broadcast and 8 kHz phone audio;
{len(pooled)} frames). Regenerate with `python benchmarks/audio_features.py --reference > amg/audio/reference.py`.
"""

EMBEDDING_MEAN = {as_tuple(pooled.mean(0))}

EMBEDDING_STD = {as_tuple(pooled.std(0))}
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--reference", action="store_true", help="print amg/audio/reference.py instead")
    args = parser.parse_args()
    if args.reference:
        print(embedding_reference_source(), end="")
        return
    clips = {c: load(c) for c in SPEECH_CLIPS if (SHARED / c).is_file()}
    metrics = ["r_8k", "r_phone", "r_noise", "r_gain", "r_voice", "grid_rho", "spk_id", "sil_auc"]
    print(f"{len(clips)} speech clips (<= {MAX_SECONDS:g} s each), 7 GRID clips; spk_id chance = {1 / len(clips):.2f}")
    for name in args.variants:
        cfg = AudioFeatureConfig(**VARIANTS[name])
        clean = {c: compute_features(x, cfg) for c, x in clips.items()}
        table = robustness(clips, clean, cfg)
        for metric, values in (
            ("grid_rho", grid_content(cfg)),
            ("spk_id", speaker_id(clips, cfg)),
            ("sil_auc", silence_separability(clips, clean, cfg)),
        ):
            for b in block_names(cfg):
                table[b][metric] = values[b]
        print(f"\nvariant {name}: {VARIANTS[name] or 'defaults'}")
        print(f"  {'block':<10}" + "".join(f"{m:>9}" for m in metrics))
        for b in block_names(cfg):
            print(f"  {b:<10}" + "".join(f"{table[b][m]:9.3f}" for m in metrics))
    if not args.no_speed:
        print("\nspeed on a 60 s clip (vad and the band spectrum are always computed):")
        print(speed(AudioFeatureConfig()))


if __name__ == "__main__":
    main()
