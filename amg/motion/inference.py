"""Stage 3 at inference: speech → the avatar's motion (`amg run`, `amg motion`), and its preview video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from amg.audio.features import features_for_audio
from amg.config import FPS, MotionOptions
from amg.core.checkpoints import is_finished, load_checkpoint
from amg.core.concurrency import prefetch
from amg.core.errors import AmgError
from amg.core.layout import Layout
from amg.core.progress import report
from amg.media import VideoWriter, load_audio
from amg.motion.stream import MotionModels, recorded_motion
from amg.motion.tracks import MotionTracks
from amg.tracking import fitting
from amg.tracking.preview import draw_tracks

# The motion models that are networks, with resumable checkpoints; the others are fitted files (npz).
NETWORKS = ("expression", "pose")


def motion_trained(layout: Layout, name: str) -> bool:
    """Every motion model of avatar `name` has a finished checkpoint."""
    return all(
        is_finished(path) if key in NETWORKS else path.is_file() for key, path in layout.motion_models(name).items()
    )


def untrained_motion_error(layout: Layout, name: str) -> AmgError:
    """Why avatar `name` cannot predict motion: a checkpoint that is there but damaged says so (raised from
    here), else the models were never trained."""
    for path in (layout.audio2expression(name), layout.audio2headpose(name)):
        if path.is_file():
            load_checkpoint(path)  # raises DamagedFileError naming the file and how to retrain it
    return AmgError(f"Avatar {name!r} has no trained motion models: run `amg train ... --stage motion` first.")


def predict_motion(
    layout: Layout, audio_name: str, video_name: str, options: MotionOptions | None = None
) -> MotionTracks:
    """Speech `audio_name` → the avatar's expression, head pose and body per frame (saved beside the output):
    the mouth, jaw and cheeks from the lip-sync network, the eyes, brows and gaze from the eye model."""
    options = options or MotionOptions()
    if not motion_trained(layout, video_name):
        raise untrained_motion_error(layout, video_name)
    models = MotionModels.load(layout, video_name, options.pose)
    features = features_for_audio(layout, audio_name, models.cfg.features)
    parts = []
    with tqdm(total=len(features), desc="Motion", unit="frame") as bar:
        for part in recorded_motion(models, options, features):
            parts.append(part)
            bar.update(part.n_frames)
            report("motion", bar.n, len(features))
    motion = MotionTracks.concatenate(parts)
    motion.save(layout.motion_tracks(audio_name, video_name))
    return motion


def write_motion_preview(layout: Layout, audio_name: str, video_name: str, motion: MotionTracks) -> Path:
    """The predicted landmarks, head axes and shoulders over the avatar's (dimmed) background, with the speech."""
    import cv2

    background = cv2.imread(str(layout.background(video_name)))
    canvas = (cv2.cvtColor(background, cv2.COLOR_BGR2RGB) * 0.35).astype(np.uint8)
    audio = load_audio(layout.audio_source(audio_name))
    frames = (canvas.copy() for _ in range(motion.n_frames))
    drawn = draw_tracks(
        frames,
        motion.landmarks,
        fitting.rotations_from_rotvecs(motion.rotation),
        np.ones(motion.n_frames, bool),
        motion.body,
    )
    path = layout.motion_preview(audio_name, video_name)
    with VideoWriter(path, fps=FPS, audio=audio) as out:
        for frame in prefetch(drawn):
            out.write(frame)
    return path
