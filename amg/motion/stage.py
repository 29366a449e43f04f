"""Stage 3 orchestration: `amg train --stage motion` and `amg motion` (speech → predicted tracks + preview)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from amg.audio.features import features_for_audio
from amg.concurrency import prefetch
from amg.config import FPS, MotionConfig, MotionOptions, model_fields, read_saved_config, save_config
from amg.errors import AmgError
from amg.fsutil import write_text
from amg.layout import Layout
from amg.media import VideoWriter, load_audio
from amg.motion import headpose
from amg.motion.body import train_head2body
from amg.motion.data import MotionData, load_motion_data
from amg.motion.expression import (
    baseline_predictions,
    evaluate_expressions,
    train_audio2expression,
)
from amg.motion.eyes import EyeModel, blink_statistics
from amg.motion.pose2face import train_pose2face
from amg.motion.stream import MotionModels, recorded_motion
from amg.motion.tracks import MotionTracks
from amg.progress import report
from amg.tracking import fitting, topology
from amg.tracking.preview import draw_tracks
from amg.training import checkpoint_done, is_finished, load_checkpoint

log = logging.getLogger(__name__)


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


def _new_features(saved: MotionConfig | None, cfg: MotionConfig) -> bool:
    """Whether `cfg` reads other audio features than the saved config (or there is none): every model retrains."""
    return saved is None or model_fields(saved.features) != model_fields(cfg.features)


def stale_motion_models(layout: Layout, name: str, cfg: MotionConfig) -> list[str]:
    """The motion models of `name` that `cfg` has to train: missing or unfinished ones, networks with fewer
    steps than `cfg` asks (they continue), and models made with other model fields (they start again; new
    audio features change them all)."""
    saved = read_saved_config(MotionConfig, layout.motion_config(name))
    if _new_features(saved, cfg):
        return list(layout.motion_models(name))
    stale = []
    for key, path in layout.motion_models(name).items():
        if key in NETWORKS:
            done = checkpoint_done(path, getattr(cfg, key))
        else:
            done = path.is_file() and model_fields(getattr(saved, key)) == model_fields(getattr(cfg, key))
        if not done:
            stale.append(key)
    return stale


def train_motion(layout: Layout, name: str, cfg: MotionConfig, force: bool = False) -> dict:
    """Train what `cfg` asks of avatar `name`'s motion models (Audio→Expression, Audio→Head pose, head→body, the
    eye model): each one alone, resuming or extending a network whose schedule changed; `force`: all again."""
    files = layout.motion_models(name)
    saved = read_saved_config(MotionConfig, layout.motion_config(name))
    stale = list(files) if force else stale_motion_models(layout, name, cfg)
    old_report = json.loads(layout.motion_report(name).read_text()) if layout.motion_report(name).is_file() else {}
    if not stale:
        log.info("Motion models of %r are already trained (use --force to retrain).", name)
        return old_report
    from_scratch = force or _new_features(saved, cfg)
    for key in stale:
        if from_scratch or key not in NETWORKS:  # the networks' checkpoints decide for themselves
            files[key].unlink(missing_ok=True)
    log.info("Training the motion model(s) %s of %r.", ", ".join(stale), name)

    save_config(cfg, layout.motion_config(name))
    data = load_motion_data(layout, name, cfg.features)
    logs = layout.logs_dir(name)
    report: dict = {**old_report, "video": name, "frames": data.n_frames}
    if "expression" in stale:
        report["audio2expression"] = train_audio2expression(
            data, cfg.expression, files["expression"], logs / "audio2expression"
        )
        train, val = data.split(cfg.expression.holdout)
        if val.stop > val.start:
            baselines = baseline_predictions(data, train)
            report["audio2expression_baselines"] = {k: evaluate_expressions(data, p, val) for k, p in baselines.items()}
    if "pose" in stale:
        report["audio2headpose"] = headpose.train_audio2pose(data, cfg.pose, files["pose"], logs / "audio2headpose")
    if "body" in stale:
        report["head2body"] = train_head2body(data.tracks, cfg.body, files["body"], layout.head2body_plot(name)).metrics
    if "pose2face" in stale:
        report["pose2face"] = train_pose2face(data.tracks, data.face_model, cfg.pose2face, files["pose2face"]).metrics
    if "eyes" in stale:
        report["eyes"] = fit_eye_model(data, cfg, files["eyes"])
    write_text(layout.motion_report(name), json.dumps(report, indent=2))
    return report


def fit_eye_model(data: MotionData, cfg: MotionConfig, path: Path) -> dict[str, float]:
    """Fit the blink, brow and gaze model on the training frames (the expression network's split), save it, and
    return its numbers beside the tracked frames' blink statistics."""
    train, _ = data.split(cfg.expression.holdout)
    model = EyeModel.fit(data.tracks, data.face_model, data.features, train, cfg.eyes)
    model.save(path)
    tracked = blink_statistics(topology.eye_opening(data.tracks.landmarks[train]), model.open_median, cfg.eyes)
    log.info(
        "Eye model: %d blinks in the training frames (%.1f per minute), pause preference %.2f.",
        model.n_blinks,
        model.blinks_per_minute,
        model.pause_gain,
    )
    return {
        "blink_shapes": model.n_blinks,
        "interval_shape": model.interval_shape,
        "pause_gain": model.pause_gain,
        **{f"tracked_{k}": v for k, v in tracked.items()},
    }


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
