"""Stage 3 orchestration: `amg train --stage motion` and `amg motion` (speech → predicted tracks + preview)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from amg.audio.features import features_for_audio
from amg.concurrency import prefetch
from amg.config import MotionConfig, MotionOptions, read_saved_config, save_config
from amg.errors import AmgError
from amg.fsutil import NpzRecord, write_text
from amg.layout import Layout
from amg.media import VideoWriter, load_audio
from amg.motion import headpose
from amg.motion.body import Head2Body, train_head2body
from amg.motion.data import MotionData, load_motion_data
from amg.motion.eyes import EyeModel, blink_statistics
from amg.motion.expression import Audio2ExpressionModel, baseline_predictions, evaluate_expressions, train_audio2expression
from amg.tracking import fitting, topology
from amg.tracking.preview import draw_tracks
from amg.tracking.tracks import Tracks
from amg.training import is_finished, load_checkpoint

log = logging.getLogger(__name__)



def motion_trained(layout: Layout, name: str) -> bool:
    """Every motion model of avatar `name` has a finished checkpoint."""
    return (
        is_finished(layout.audio2expression(name))
        and is_finished(layout.audio2headpose(name))
        and layout.head2body(name).is_file()
        and layout.eye_model(name).is_file()
    )


def untrained_motion_error(layout: Layout, name: str) -> AmgError:
    """Why avatar `name` cannot predict motion: a checkpoint that is there but damaged says so (raised from
    here), else the models were never trained."""
    for path in (layout.audio2expression(name), layout.audio2headpose(name)):
        if path.is_file():
            load_checkpoint(path)  # raises DamagedFileError naming the file and how to retrain it
    return AmgError(f"Avatar {name!r} has no trained motion models: run `amg train ... --stage motion` first.")


def train_motion(layout: Layout, name: str, cfg: MotionConfig, force: bool = False) -> dict:
    """Train (or resume, or skip if finished) Audio→Expression, Audio→Head pose, head→body and the eye model for
    `name`."""
    saved = read_saved_config(MotionConfig, layout.motion_config(name))
    if saved is not None and saved != cfg and not force:
        if replace(saved, eyes=cfg.eyes) == cfg:  # the eye model is fitted in a second: refit it alone
            log.warning("Avatar %r has another eye-model config; refitting the eye model alone.", name)
            layout.eye_model(name).unlink(missing_ok=True)
        else:
            log.warning("Avatar %r was trained with another motion config; retraining with the new one.", name)
            force = True
    if force:
        for path in (layout.audio2expression(name), layout.audio2headpose(name), layout.head2body(name),
                     layout.eye_model(name)):  # fmt: skip
            path.unlink(missing_ok=True)
    if motion_trained(layout, name):
        log.info("Motion models of %r are already trained (use --force to retrain).", name)
        return json.loads(layout.motion_report(name).read_text()) if layout.motion_report(name).is_file() else {}

    save_config(cfg, layout.motion_config(name))
    data = load_motion_data(layout, name, cfg.features)
    logs = layout.logs_dir(name)
    report: dict = {"video": name, "frames": data.n_frames}
    if not is_finished(layout.audio2expression(name)):
        report["audio2expression"] = train_audio2expression(
            data, cfg.expression, layout.audio2expression(name), logs / "audio2expression"
        )
    train, val = data.split(cfg.expression.holdout)
    if val.stop > val.start:
        report["audio2expression_baselines"] = {
            name_: evaluate_expressions(data, pred, val) for name_, pred in baseline_predictions(data, train).items()
        }
    if not is_finished(layout.audio2headpose(name)):
        report["audio2headpose"] = headpose.train_audio2pose(
            data, cfg.pose, layout.audio2headpose(name), logs / "audio2headpose"
        )
    if not layout.head2body(name).is_file():
        body = train_head2body(data.tracks, cfg.body, layout.head2body(name), layout.head2body_plot(name))
        report["head2body"] = body.metrics
    if not layout.eye_model(name).is_file():
        report["eyes"] = fit_eye_model(data, cfg, layout.eye_model(name))
    write_text(layout.motion_report(name), json.dumps(report, indent=2))
    return report


def fit_eye_model(data: MotionData, cfg: MotionConfig, path: Path) -> dict[str, float]:
    """Fit the blink, brow and gaze model on the training frames (the expression network's split), save it, and
    return its numbers beside the tracked frames' blink statistics."""
    train, _ = data.split(cfg.expression.holdout)
    model = EyeModel.fit(data.tracks, data.face_model, data.features, train, cfg.eyes)
    model.save(path)
    tracked = blink_statistics(topology.eye_opening(data.tracks.landmarks[train]), model.open_median, cfg.eyes)
    log.info("Eye model: %d blinks in the training frames (%.1f per minute), pause preference %.2f.",
             model.n_blinks, model.blinks_per_minute, model.pause_gain)  # fmt: skip
    return {"blink_shapes": model.n_blinks, "interval_shape": model.interval_shape, "pause_gain": model.pause_gain,
            **{f"tracked_{k}": v for k, v in tracked.items()}}  # fmt: skip


@dataclass
class MotionTracks(NpzRecord):
    """Predicted motion for one driving audio, in the avatar's crop pixels at 25 fps: the renderer's input."""

    expression: np.ndarray  # (T, K)
    rotation: np.ndarray  # (T, 3) rotation vectors
    translation: np.ndarray  # (T, 3)
    scale: np.ndarray  # (T,)
    body: np.ndarray  # (T, 4, 2) shoulders and hips
    landmarks: np.ndarray  # (T, N, 3) face landmarks reconstructed from pose + expression
    vad: np.ndarray  # (T,) speech probability of the driving audio
    size: int

    @property
    def n_frames(self) -> int:
        return len(self.expression)


def tracked_motion(
    tracks: Tracks, frames: slice, landmarks: np.ndarray | None = None, expression: np.ndarray | None = None
) -> MotionTracks:
    """The motion of a stretch of the avatar's own video: its tracked pose and body, with its tracked landmarks
    and expressions unless others are given (say, predicted from its speech)."""
    return MotionTracks(
        expression=(tracks.expression[frames] if expression is None else expression).astype(np.float32),
        rotation=tracks.rotation[frames], translation=tracks.translation[frames], scale=tracks.scale[frames],
        body=tracks.body[frames],
        landmarks=(tracks.landmarks[frames] if landmarks is None else landmarks).astype(np.float32),
        vad=np.ones(len(tracks.scale[frames]), np.float32), size=tracks.size,
    )  # fmt: skip


def predict_motion(layout: Layout, audio_name: str, video_name: str, options: MotionOptions | None = None) -> MotionTracks:
    """Speech `audio_name` → the avatar's expression, head pose and body per frame (saved beside the output):
    the mouth, jaw and cheeks from the lip-sync network, the eyes, brows and gaze from the eye model."""
    options = options or MotionOptions()
    if not motion_trained(layout, video_name):
        raise untrained_motion_error(layout, video_name)
    cfg = read_saved_config(MotionConfig, layout.motion_config(video_name)) or MotionConfig()
    features = features_for_audio(layout, audio_name, cfg.features)
    tracks = Tracks.load(layout.tracks(video_name))
    face_model = fitting.ExpressionModel.load(layout.face_model(video_name))
    speech = fitting.decode(face_model, Audio2ExpressionModel(layout.audio2expression(video_name))(features))
    eyes = EyeModel.load(layout.eye_model(video_name))
    shapes = eyes.animate(speech, features, options.seed, options.blink_rate if options.blinks == "natural" else 0.0)
    pose_model = headpose.Audio2PoseModel(layout.audio2headpose(video_name)) if options.pose == "generate" else None
    poses = headpose.make_poses(
        options.pose, tracks, len(features), model=pose_model, features=features,
        seed=options.seed, temperature=options.temperature, intensity=options.intensity,
    )  # fmt: skip
    body = Head2Body.load(layout.head2body(video_name)).predict(poses.rotation, poses.translation, poses.scale)
    motion = MotionTracks(
        # The coefficients closest to the shapes, for the record: the landmarks are the shapes themselves (the
        # eye model's upper face need not lie in the span of the face model's components).
        expression=fitting.encode(face_model, shapes - face_model.neutral).astype(np.float32),
        rotation=poses.rotation.astype(np.float32),
        translation=poses.translation.astype(np.float32),
        scale=poses.scale.astype(np.float32),
        body=body.astype(np.float32),
        landmarks=poses.head_pose().to_image(shapes).astype(np.float32),
        vad=features.vad,
        size=tracks.size,
    )
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
        frames, motion.landmarks, fitting.rotations_from_rotvecs(motion.rotation),
        np.ones(motion.n_frames, bool), motion.body,
    )  # fmt: skip
    path = layout.motion_preview(audio_name, video_name)
    with VideoWriter(path, fps=25, audio=audio) as out:
        for frame in prefetch(drawn):
            out.write(frame)
    return path
