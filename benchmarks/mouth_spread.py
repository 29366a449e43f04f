"""Where a mouth's spread is lost between the person's frames and the avatar's motion, for a trained avatar.

    python benchmarks/mouth_spread.py DATAROOT AVATAR [VOICE ...] [--render]

Mouth opening (px at 256, amg.tracking.topology.mouth_opening in the image plane, as `amg eval` measures it)
of the tracked landmarks the lip-sync network learns from, over the training part and the held-out tail (the
avatar's saved holdout), against the landmarks `predict_motion` makes for each driving speech VOICE (all frames
and voiced ones). `amg eval` re-detects the landmarks of the real held-out frames instead: its "real" spread over
this tail's tracked one is what tracking (the face model's fit and smoothing) keeps.

With --render, the held-out tail is also rendered twice by the trained generator, as `amg eval` renders it:
driven by its tracked motion and by the motion predicted from its own speech. Each render's re-detected mouth
opening against the real frames' (mean, spread, the slope and correlation of a frame-by-frame fit) tells an
image-stage loss (the tracked render falls short of the real frames) from a lip-sync one (only the predicted
render does). The two renders are written beside `amg eval`'s (tracked.mp4, held_out.mp4).
"""

from __future__ import annotations

import argparse

import numpy as np

from amg.audio.features import AudioFeatures, features_for_audio, features_for_video
from amg.config import MotionOptions, trained_holdouts
from amg.core.layout import Layout
from amg.core.split import held_out_split
from amg.motion.inference import predict_motion
from amg.motion.stream import MotionModels
from amg.tracking import topology
from amg.tracking.tracks import Tracks

SOURCES = ("real", "driving", "generated", "warp")  # as amg eval names them (warp: its mesh-warp baseline)

VOICED = 0.5  # speech probability above which a frame counts as voiced


def spread(opening: np.ndarray) -> str:
    return f"mean {opening.mean():5.2f}  std {opening.std():4.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataroot")
    parser.add_argument("avatar")
    parser.add_argument("voices", nargs="*")
    parser.add_argument("--render", action="store_true", help="render the tail from tracked and predicted motion")
    args = parser.parse_args()
    layout = Layout(args.dataroot)
    tracks = Tracks.load(layout.tracks(args.avatar))
    models = MotionModels.load(layout, args.avatar, "generated")
    holdouts = trained_holdouts(layout, args.avatar)
    holdout = holdouts.get("motion", 0.0)
    train, tail = held_out_split(tracks.n_frames, holdout)
    opening = topology.mouth_opening(tracks.landmarks[..., :2]) * 256 / tracks.size
    features = features_for_video(layout, args.avatar, models.cfg.features, tracks.n_frames)
    voiced = features.vad > VOICED
    print(f"{args.avatar}, holdout {holdout:g}: mouth opening in px at 256")
    print(f"  tracked, training part        {spread(opening[train])}")
    print(f"  tracked, training part voiced {spread(opening[train][voiced[train]])}")
    print(f"  tracked, held-out tail        {spread(opening[tail])}")
    for voice in args.voices:
        motion = predict_motion(layout, voice, args.avatar, MotionOptions())
        predicted = topology.mouth_opening(motion.landmarks[..., :2]) * 256 / motion.size
        vad = features_for_audio(layout, voice, models.cfg.features).vad[: len(predicted)] > VOICED
        print(f"  {voice}: predicted {spread(predicted)}; voiced ({vad.mean():.0%}) {spread(predicted[vad])}")
    if args.render:
        render_tail(layout, args.avatar, tracks, features, holdouts.get("gan", holdout))


def render_tail(layout: Layout, avatar: str, tracks: Tracks, features: AudioFeatures, holdout: float) -> None:
    """The held-out tail rendered from its tracked and its predicted motion (from `features`, the avatar video's
    speech), re-detected as `amg eval` does."""
    from itertools import islice

    from amg.evaluation.evaluate import Evaluator, Sequence, held_out_start, self_driven
    from amg.evaluation.records import EvalOptions
    from amg.media import resized_frames
    from amg.motion.tracks import tracked_motion

    options = EvalOptions(holdout=holdout)
    start = held_out_start(tracks.n_frames, holdout)
    evaluator = Evaluator(layout, avatar, tracks, start, options)
    evaluator.fit_sync(features, tracks, start)
    predicted = self_driven(layout, avatar, tracks, start, features)
    tracked = Sequence("tracked", tracked_motion(tracks, slice(start, None)), predicted.features, predicted.audio)
    print(f"Rendered held-out tail ({tracks.n_frames - start} frames), re-detected: opening in px at 256")
    for sequence in (tracked, predicted):
        real = islice(resized_frames(layout.frames_video(avatar), evaluator.size), start, tracks.n_frames)
        opening = evaluator.evaluate(sequence, real).opening
        print(f"  from {'tracked' if sequence is tracked else 'predicted'} motion")
        for source in SOURCES:
            slope, corr = fit_to_real(opening[source], opening["real"])
            print(f"    {source:9s} {spread(opening[source])}  slope {slope:4.2f}  corr {corr:4.2f}")


def fit_to_real(opening: np.ndarray, real: np.ndarray) -> tuple[float, float]:
    """The slope of `opening` regressed on the real frames' opening, and their correlation."""
    slope = np.polyfit(real, opening, 1)[0]
    return float(slope), float(np.corrcoef(real, opening)[0, 1])


if __name__ == "__main__":
    main()
