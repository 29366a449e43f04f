"""Where a mouth's spread is lost between the person's frames and the avatar's motion, for a trained avatar.

    python benchmarks/mouth_spread.py DATAROOT AVATAR [VOICE ...]

Mouth opening (px at 256, amg.tracking.topology.mouth_opening) of the tracked landmarks the lip-sync network
learns from, over the training part and the held-out tail (the avatar's saved holdout), against the landmarks
`predict_motion` makes for each driving speech VOICE (all frames and voiced ones). `amg eval` re-detects the
landmarks of the real held-out frames instead: its "real" spread over this tail's tracked one is what tracking
(the face model's fit and smoothing) keeps.
"""

from __future__ import annotations

import argparse

import numpy as np

from amg.audio.features import features_for_audio, features_for_video
from amg.config import MotionOptions, trained_holdouts
from amg.core.layout import Layout
from amg.core.split import held_out_split
from amg.motion.inference import predict_motion
from amg.motion.stream import MotionModels
from amg.tracking import topology
from amg.tracking.tracks import Tracks

VOICED = 0.5  # speech probability above which a frame counts as voiced


def spread(opening: np.ndarray) -> str:
    return f"mean {opening.mean():5.2f}  std {opening.std():4.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataroot")
    parser.add_argument("avatar")
    parser.add_argument("voices", nargs="*")
    args = parser.parse_args()
    layout = Layout(args.dataroot)
    tracks = Tracks.load(layout.tracks(args.avatar))
    models = MotionModels.load(layout, args.avatar, "generated")
    holdout = trained_holdouts(layout, args.avatar).get("motion", 0.0)
    train, tail = held_out_split(tracks.n_frames, holdout)
    opening = topology.mouth_opening(tracks.landmarks) * 256 / tracks.size
    voiced = features_for_video(layout, args.avatar, models.cfg.features, tracks.n_frames).vad > VOICED
    print(f"{args.avatar}, holdout {holdout:g}: mouth opening in px at 256")
    print(f"  tracked, training part        {spread(opening[train])}")
    print(f"  tracked, training part voiced {spread(opening[train][voiced[train]])}")
    print(f"  tracked, held-out tail        {spread(opening[tail])}")
    for voice in args.voices:
        motion = predict_motion(layout, voice, args.avatar, MotionOptions())
        predicted = topology.mouth_opening(motion.landmarks) * 256 / motion.size
        vad = features_for_audio(layout, voice, models.cfg.features).vad[: len(predicted)] > VOICED
        print(f"  {voice}: predicted {spread(predicted)}; voiced ({vad.mean():.0%}) {spread(predicted[vad])}")


if __name__ == "__main__":
    main()
