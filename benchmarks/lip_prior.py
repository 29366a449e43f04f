"""Issue 30: would a speaker-independent lip prior, learned from many people, help each avatar's lip-sync network
on speech it has not heard? (Measured, not shipped: docs/decisions.md, "A lip prior from many people".)

    python benchmarks/lip_prior.py [--targets obama_clip2 kristi_noem andrew_ng_clip1 cnn_anchor_71s]
                                   [--variants base speeds norm noisy] [--as-input]
    python benchmarks/lip_prior.py --knobs seed=1 steps=500 steps=3000 window=128 hidden=128 ...

The prior learns from the shared clips whose licences would let its weights ship inside the package (MIT,
Apache-2.0 and CC BY 4.0 repositories: PRIOR_CLIPS; andrew_ng_clip1/2 and feifei_li_clip2 are left out for their
0.4-s audio offset, HDTF, MEAD and cnn_anchor_71s for research-only or non-commercial terms). For each target the
prior never sees the target's person (every clip whose name starts as the target's does is left out).
The prior: a temporal conv net (the lip-sync network's, 128 wide) from the speech features to the 8 principal
components of the lips' head-frame motion over all its clips (each clip's mean lip shape subtracted).

Zero-shot (every variant): a ridge from the prior's output to the target's own lip motion, fitted on the target's
training part, and the inner-lip opening's correlation with the tracked one on the held-out tail (the last 15%).
Variants: base; speeds (the clips also at 0.9x and 1.1x speed); norm (each clip's lip motion scaled to unit
spread); noisy (dropout 0.3, feature noise 0.3).
As input (--as-input, the base prior): the target's lip-sync network (default config, calibration on) trained
without and with the prior's output as a feature block: held-out lip error, opening correlation, spread and mean
against the tracked mouth, and driven by three voices the prior never heard (CROSS), the correlation with their
own tracked mouths (best lag within ±2 frames) and the spread over the avatar's own training frames'.
Knobs (--knobs, no prior): the targets' lip-sync networks trained with each motion.expression field changed
alone (and the default), the same scores, means over the targets (docs/decisions.md, "Lip-sync network
variants"). Clips are linked, not copied, into /tmp/amg-bench-lips (kept: re-runs skip preprocessing).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from amg.audio.features import AudioFeatures
from amg.config import Audio2ExpressionConfig, AvatarConfig, MotionConfig, PreprocessConfig
from amg.core.layout import Layout
from amg.core.training import set_cosine_lr
from amg.evaluation.sync import lagged_correlation
from amg.motion.data import MotionData, gather_windows, load_motion_data, window_starts
from amg.motion.expression.inference import Audio2ExpressionModel
from amg.motion.expression.networks import TemporalConvNet
from amg.motion.expression.train import evaluate_expressions, lip_landmarks, speed_perturbed, train_audio2expression
from amg.tracking import topology
from amg.tracking.preprocess import preprocess

from shared_data import SHARED, link_shared

ROOT = Path("/tmp/amg-bench-lips")
PRIOR_CLIPS = [
    *("obama_clip1", "obama_clip2", "obama_clip3", "obama_halfbody_34s", "kristi_noem", "feifei_li_clip1"),
    *("feifei_li_clip3", "trump_10s", "may_5s", "retalking_face1", "retalking_face2", "retalking_face4"),
    *("grid_bbaf2n", "grid_brbk7n", "grid_lbax4n", "grid_lbbc2a", "grid_lrwp9a", "grid_lwbsza", "grid_sbia1a"),
    *("vox_00086", "vox_00098", "vox_796100172", "jfk_debate_7s", "jackie_chan_7s"),
    *("latentsync_demo1", "latentsync_demo2"),
]  # vox_00015 is not here: its face is in the picture for 1.2 s at a stretch, too short for stage 1
CROSS = ["hdtf_katie_hill_8s", "hdtf_radio34_8s", "mead_w015_level_1_neutral_030"]
VARIANTS = {
    "base": {},
    "speeds": {"speeds": (0.9, 1.1)},
    "norm": {"unit_spread": True},
    "noisy": {"dropout": 0.3, "noise": 0.3},
}
LIPS = list(topology.LIPS)
UPPER, LOWER = LIPS.index(topology.UPPER_LIP_INNER_MID), LIPS.index(topology.LOWER_LIP_INNER_MID)
COMPONENTS, STEPS, BATCH, WINDOW = 8, 3000, 32, 64


class Clips:
    """The shared clips, tracked once into ROOT, and their motion data."""

    def __init__(self) -> None:
        self.layout = Layout(ROOT)
        self.cfg = MotionConfig().features
        self.loaded: dict[str, MotionData] = {}

    def __getitem__(self, clip: str) -> MotionData:
        if clip not in self.loaded:
            source = next(p for p in sorted((SHARED / "video").glob(f"{clip}.*")) if p.suffix != ".wav")
            link_shared(f"video/{source.name}", self.layout.video_dir(clip) / source.name)
            preprocess(self.layout, clip, PreprocessConfig(preview=False))
            self.loaded[clip] = load_motion_data(self.layout, clip, self.cfg, AvatarConfig().holdout)
        return self.loaded[clip]


def lip_motion(data: MotionData, coeffs: np.ndarray | None = None) -> np.ndarray:
    """(T, L*3) the lips' head-frame positions less their mean over the video, in neutral-face units."""
    model, coeffs = data.face_model, data.tracks.expression if coeffs is None else coeffs
    lips = (model.mean + coeffs @ model.basis).reshape(len(coeffs), -1, 3)[:, LIPS].reshape(len(coeffs), -1)
    return (lips - lip_motion_mean(data)).astype(np.float32)


def lip_motion_mean(data: MotionData) -> np.ndarray:
    model = data.face_model
    return (model.mean + data.tracks.expression.mean(axis=0) @ model.basis).reshape(-1, 3)[LIPS].reshape(-1)


def prior_sequences(clips: Clips, names: list[str], speeds: tuple[float, ...], unit_spread: bool):
    features, motions = [], []
    for name in names:
        data = clips[name]
        motion = lip_motion(data)
        spread = motion.std() if unit_spread else 1.0
        features.append(data.features.values)
        motions.append(motion / spread)
        for speed in speeds:
            values, coeffs = speed_perturbed(data, slice(0, data.n_frames), speed)
            n = min(len(values), len(coeffs))
            features.append(values[:n])
            motions.append(lip_motion(data, coeffs[:n]) / spread)
    return features, motions


def train_prior(features: list[np.ndarray], motions: list[np.ndarray], dropout=0.1, noise=0.1, seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    bounds = np.cumsum([0] + [len(f) for f in features])
    spans = sorted((slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])), key=lambda s: s.start - s.stop)
    motion = np.concatenate(motions)
    _, singular, basis = np.linalg.svd(motion - motion.mean(0), full_matrices=False)
    targets = (motion - motion.mean(0)) @ basis[:COMPONENTS].T
    targets = torch.from_numpy((targets / targets.std(0)).astype(np.float32))
    inputs = torch.from_numpy(np.concatenate(features).astype(np.float32))
    net = TemporalConvNet(inputs.shape[1], COMPONENTS, 128, (1, 2, 4, 8, 1), dropout)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    for step in range(STEPS):
        set_cosine_lr(optimizer, 1e-3, step, STEPS)
        starts = torch.from_numpy(window_starts(rng, BATCH, WINDOW, spans))
        x = gather_windows(inputs, starts, WINDOW)
        loss = ((net(x + noise * torch.randn_like(x)) - gather_windows(targets, starts, WINDOW)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    explained = float((singular[:COMPONENTS] ** 2).sum() / (singular**2).sum())
    return net.eval(), explained, len(motion)


def prior_output(net: torch.nn.Module, features: AudioFeatures) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(features.values)[None])[0].numpy()


def zero_shot(net: torch.nn.Module, data: MotionData) -> tuple[float, float]:
    """The held-out opening's correlation and spread ratio of a ridge from the prior to the target's lips."""
    train, tail = data.split
    x = np.c_[prior_output(net, data.features), np.ones(data.n_frames)]
    y = lip_motion(data)
    weights = np.linalg.solve(x[train].T @ x[train] + 1e-2 * np.eye(x.shape[1]), x[train].T @ y[train])
    guess, truth = ((x @ weights)[tail].reshape(-1, len(LIPS), 3), y[tail].reshape(-1, len(LIPS), 3))
    open_guess, open_truth = (a[:, LOWER, 1] - a[:, UPPER, 1] for a in (guess, truth))
    return float(np.corrcoef(open_guess, open_truth)[0, 1]), float(open_guess.std() / open_truth.std())


def with_prior(data: MotionData, net: torch.nn.Module) -> MotionData:
    f = data.features
    values = np.concatenate([f.values, prior_output(net, f)], axis=1)
    blocks = {**f.blocks, "lip_prior": slice(f.values.shape[1], values.shape[1])}
    return replace(data, features=AudioFeatures(values, blocks, f.vad))


def lip_sync_scores(
    clips: Clips, data: MotionData, net: torch.nn.Module | None, tag: str, cfg: Audio2ExpressionConfig
) -> dict[str, float]:
    path = ROOT / f"a2e_{tag}.pt"
    path.unlink(missing_ok=True)
    train_audio2expression(data, cfg, path, None)
    model = Audio2ExpressionModel(path)
    train, tail = data.split
    predicted = model(data.features)
    scores = evaluate_expressions(data, predicted, tail)
    real = topology.mouth_opening(lip_landmarks(data, data.tracks.expression[tail], tail))
    scores["opening_mean_ratio"] = float(
        topology.mouth_opening(lip_landmarks(data, predicted[tail], tail)).mean() / real.mean()
    )
    own = topology.mouth_opening(lip_landmarks(data, data.tracks.expression[train], train)).std()
    corrs, spreads = [], []
    for other in CROSS:
        voice = clips[other] if net is None else with_prior(clips[other], net)
        coeffs = model(voice.features)
        opening = topology.mouth_opening(lip_landmarks(data, coeffs, np.zeros(len(coeffs), int)))
        corrs.append(lagged_correlation(opening, topology.mouth_opening(voice.tracks.landmarks), 2)[1].max())
        spreads.append(opening.std() / own)
    scores["cross_corr"], scores["cross_spread"] = float(np.mean(corrs)), float(np.mean(spreads))
    return scores


def knobs_table(clips: Clips, targets: list[str], knobs: list[str]) -> None:
    default = MotionConfig().expression
    print("| variant | lip error (px) | opening r | spread / real | other voices: r | their spread / own |")
    print("|---|---|---|---|---|---|")
    for knob in ["default", *knobs]:
        field, _, value = knob.partition("=")
        cfg = default if knob == "default" else replace(default, **{field: type(getattr(default, field))(value)})
        rows = [lip_sync_scores(clips, clips[t], None, f"{t}_knob", cfg) for t in targets]
        keys = ("lips_px", "opening_corr", "opening_spread_ratio", "cross_corr", "cross_spread")
        print(f"| {knob} | " + " | ".join(f"{np.mean([r[k] for r in rows]):.3f}" for k in keys) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--targets", nargs="+", default=["obama_clip2", "kristi_noem", "andrew_ng_clip1", "cnn_anchor_71s"]
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--as-input", action="store_true", help="also train each target's lip-sync network with it")
    parser.add_argument("--knobs", nargs="+", metavar="FIELD=VALUE", help="only the knobs table, for these changes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clips = Clips()
    if args.knobs:
        knobs_table(clips, args.targets, args.knobs)
        return
    print("| target | variant | prior's clips / frames | lip PCA variance | zero-shot opening r | spread / real |")
    print("|---|---|---|---|---|---|")
    for target in args.targets:
        person = target.split("_")[0]
        names = [name for name in PRIOR_CLIPS if not name.startswith(person)]
        for variant in args.variants:
            options = dict(VARIANTS[variant])
            sequences = prior_sequences(clips, names, options.pop("speeds", ()), options.pop("unit_spread", False))
            start = time.time()
            net, explained, frames = train_prior(*sequences, **options)
            r, spread = zero_shot(net, clips[target])
            print(
                f"| {target} | {variant} | {len(names)} / {frames} | {explained:.3f} | {r:.3f} | {spread:.2f} |"
                f" ({time.time() - start:.0f} s)",
                flush=True,
            )
            if args.as_input and variant == "base":
                for tag, data in (("without", clips[target]), ("with", with_prior(clips[target], net))):
                    prior = None if tag == "without" else net
                    scores = lip_sync_scores(clips, data, prior, f"{target}_{tag}", MotionConfig().expression)
                    print(
                        f"|   {target} lip sync {tag} the prior: "
                        + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
                    )


if __name__ == "__main__":
    main()
