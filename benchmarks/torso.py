"""Torso registration and the torso-rigid warp, measured by the no-learning warp baseline on held-out frames.

    python benchmarks/torso.py [--root /tmp/amg-bench] [--clips obama_clip2 andrew_ng_clip1 ...]

For each preprocessed clip (`amg preprocess ROOT CLIP` first): the tracks are fitted again from the cached
capture pass with and without torso registration (amg.tracking.torso), and every 2nd frame of the held-out
tail is rendered as the mesh warp of the training frame nearest in its 2-D landmarks (the warp baseline of
`gan_report.json`). Prints the warp's PSNR over the whole crop and its mean squared error in the crop's lowest
quarter (collar, tie, shirt), with the pose model's shoulders and with the registered ones, and the ECC report.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from amg.config import PreprocessConfig, read_saved_config
from amg.core.images import psnr
from amg.core.layout import Layout
from amg.core.split import held_out_split
from amg.gan.baselines import Baselines
from amg.media import iter_frames
from amg.tracking.capture import RawTracks
from amg.tracking.preprocess import fit_tracks, register_body
from amg.tracking.tracks import Tracks


def warp_baseline(tracks: Tracks, frames: np.ndarray, holdout: float) -> dict:
    """The warp baseline of gan_report.json (amg.gan.baselines) on every 2nd held-out frame."""
    train, val = held_out_split(len(frames), holdout)
    test = np.arange(val.start, val.stop)[::2]
    baselines = Baselines(tracks.landmarks, tracks.landmarks, tracks.body, tracks.size, train)
    warped = np.stack(list(baselines.render(lambda _index: frames, tracks.landmarks[test], tracks.body[test])["warp"]))
    error = ((warped.astype(float) - frames[test]) ** 2).mean(axis=-1)
    lowest = frames.shape[1] * 3 // 4
    return {"psnr": psnr(warped, frames[test]), "lowest_quarter_mse": float(error[:, lowest:].mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/amg-bench")
    parser.add_argument(
        "--clips", nargs="+", default=["obama_clip2", "andrew_ng_clip1", "kristi_noem", "cnn_anchor_71s"]
    )
    parser.add_argument("--holdout", type=float, default=0.15)
    args = parser.parse_args()
    layout = Layout(args.root)
    print(f"{'clip':18} {'warp PSNR pose model / registered':>34} {'lowest-quarter MSE':>22}  torso registration")
    for clip in args.clips:
        cfg = read_saved_config(PreprocessConfig, layout.preprocess_config(clip)) or PreprocessConfig()
        raw, _ = RawTracks.load(layout.raw_tracks(clip))
        tracks, _, _ = fit_tracks(raw, cfg)
        pose_model_body = tracks.body.copy()
        report = register_body(layout, clip, tracks, raw, cfg)
        frames = np.stack(list(iter_frames(layout.frames_video(clip))))[: tracks.n_frames]
        before, after = (
            warp_baseline(replace(tracks, body=body), frames, args.holdout) for body in (pose_model_body, tracks.body)
        )
        print(
            f"{clip:18} {before['psnr']:16.2f} / {after['psnr']:.2f} dB"
            f" {before['lowest_quarter_mse']:12.1f} / {after['lowest_quarter_mse']:.1f}  {report}"
        )


if __name__ == "__main__":
    main()
