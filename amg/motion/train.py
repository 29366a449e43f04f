"""Stage 3's training: `amg train --stage motion` fits every motion model of an avatar that its config leaves
something to train in (Audio→Expression, Audio→Head pose, head→body, pose→face, the eye model)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from amg.config import MotionConfig, model_fields, read_saved_config, save_config, saved_holdout
from amg.core.checkpoints import TrainingRun, checkpoint_done
from amg.core.fsutil import write_text
from amg.core.layout import Layout
from amg.motion.body import train_head2body
from amg.motion.data import MotionData, load_motion_data
from amg.motion.expression.train import baseline_predictions, evaluate_expressions, train_audio2expression
from amg.motion.eyes import EyeModel, blink_statistics
from amg.motion.inference import NETWORKS
from amg.motion.pose.train import train_audio2pose
from amg.motion.pose2face import train_pose2face
from amg.tracking import topology

log = logging.getLogger(__name__)


def _new_data(layout: Layout, name: str, cfg: MotionConfig, holdout: float) -> bool:
    """Whether `cfg` reads other audio features, or `holdout` other frames, than the saved config (or there is
    none): every model retrains."""
    saved = read_saved_config(MotionConfig, layout.motion_config(name))
    if saved is None or model_fields(saved.features) != model_fields(cfg.features):
        return True
    return saved_holdout(layout.motion_config(name)) not in (None, holdout)


def stale_motion_models(layout: Layout, name: str, cfg: MotionConfig, holdout: float) -> list[str]:
    """The motion models of `name` that `cfg` has to train, holding out `holdout` of the video: missing or
    unfinished ones, networks with fewer steps than `cfg` asks (they continue), and models made with other model
    fields (they start again; new audio features or another holdout change them all)."""
    if _new_data(layout, name, cfg, holdout):
        return list(layout.motion_models(name))
    saved = read_saved_config(MotionConfig, layout.motion_config(name))
    stale = []
    for key, path in layout.motion_models(name).items():
        if key in NETWORKS:
            done = checkpoint_done(path, getattr(cfg, key), holdout)
        else:
            done = path.is_file() and model_fields(getattr(saved, key)) == model_fields(getattr(cfg, key))
        if not done:
            stale.append(key)
    return stale


def train_motion(layout: Layout, name: str, cfg: MotionConfig, run: TrainingRun, force: bool = False) -> dict:
    """Train what `cfg` asks of avatar `name`'s motion models (Audio→Expression, Audio→Head pose, head→body,
    pose→face, the eye model) on all but the `run.holdout` tail of its video: each one alone, resuming or
    extending a network whose schedule changed; `force`: all again. They train in fp32 whatever `run.precision`:
    these small single-threaded networks gain little from bf16 (docs/decisions.md). The config is saved beside them
    once all are trained: until then, the one there describes the models it was saved with."""
    files, holdout = layout.motion_models(name), run.holdout
    stale = list(files) if force else stale_motion_models(layout, name, cfg, holdout)
    old_report = json.loads(layout.motion_report(name).read_text()) if layout.motion_report(name).is_file() else {}
    if not stale:
        log.info("Motion models of %r are already trained (use --force to retrain).", name)
        return old_report
    from_scratch = force or _new_data(layout, name, cfg, holdout)
    data = load_motion_data(layout, name, cfg.features, holdout)  # what the options make of the video, first
    for key in stale:
        if from_scratch or key not in NETWORKS:  # the networks' checkpoints decide for themselves
            files[key].unlink(missing_ok=True)
    log.info("Training the motion model(s) %s of %r.", ", ".join(stale), name)
    logs = layout.logs_dir(name)
    report: dict = {**old_report, "video": name, "frames": data.n_frames}
    if "expression" in stale:
        report["audio2expression"] = train_audio2expression(
            data, cfg.expression, files["expression"], logs / "audio2expression"
        )
        train, val = data.split
        if val.stop > val.start:
            baselines = baseline_predictions(data, train)
            report["audio2expression_baselines"] = {k: evaluate_expressions(data, p, val) for k, p in baselines.items()}
    if "pose" in stale:
        report["audio2headpose"] = train_audio2pose(data, cfg.pose, files["pose"], logs / "audio2headpose")
    if "body" in stale:
        body = train_head2body(data.tracks, data.split, cfg.body, files["body"], layout.head2body_plot(name))
        report["head2body"] = body.metrics
    if "pose2face" in stale:
        face = train_pose2face(data.tracks, data.split, data.face_model, cfg.pose2face, files["pose2face"])
        report["pose2face"] = face.metrics
    if "eyes" in stale:
        report["eyes"] = fit_eye_model(data, cfg, files["eyes"])
    write_text(layout.motion_report(name), json.dumps(report, indent=2))
    save_config(cfg, layout.motion_config(name), run=run.record("fp32"))
    return report


def fit_eye_model(data: MotionData, cfg: MotionConfig, path: Path) -> dict[str, float]:
    """Fit the blink, brow and gaze model on the training frames (the expression network's split), save it, and
    return its numbers beside the tracked frames' blink statistics."""
    train, _ = data.split
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
