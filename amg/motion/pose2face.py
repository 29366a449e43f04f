"""head pose → face: the jaw line, chin and cheeks follow the head. A ridge regression from head pose to the
head-frame offsets of the face points away from the lips.

In an avatar's tracks the face away from the lips moves with the head: the tracker's face oval is the outline
of the face (it slides over the jaw as the head turns), and the rigid pose fit leaves some of the head's motion
in the expression. Speech cannot predict that part, so the lip-sync network learns its average and the jaw line
drifts from where the rendered head puts it (on obama_clip2's held-out tail the predicted jaw line was 1.76 px
from the tracked one, the training frames' mean jaw line 1.78 px: hardly better than none). The head pose being
rendered (tracked, or generated from speech) predicts it (1.30 px with it). The lips keep the lip-sync
network's shape: the offsets fade in from nothing at the lips' outer edge to the whole offset at twice its
distance from the mouth's centre.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from amg.config import Pose2FaceConfig
from amg.core.fsutil import load_npz, save_npz
from amg.core.layout import damaged_file
from amg.motion.body import fit_ridge, head_features
from amg.motion.pose.inference import PoseSequence
from amg.tracking import fitting, topology
from amg.tracking.tracks import Tracks


def lip_distance_gain(neutral: np.ndarray) -> np.ndarray:
    """(N,) how much of the pose's offset each point of the neutral face takes: 0 on the lips, rising linearly
    with the (x, y) distance from their centre to 1 at twice the lips' reach."""
    lips = np.asarray(topology.LIPS)
    distance = np.linalg.norm(neutral[:, :2] - neutral[lips, :2].mean(axis=0), axis=1)
    reach = distance[lips].max()
    return np.clip((distance - reach) / reach, 0.0, 1.0)


class Pose2Face:
    """Linear map from head pose to head-frame offsets (from their mean) of the face points away from the lips."""

    ARRAYS = ("weights", "x_mean", "x_std", "x_low", "x_high", "points", "gain")

    def __init__(
        self,
        weights: np.ndarray,
        x_mean: np.ndarray,
        x_std: np.ndarray,
        x_low: np.ndarray,
        x_high: np.ndarray,
        points: np.ndarray,
        gain: np.ndarray,
        n_points: int,
        size: int,
        cfg: Pose2FaceConfig,
        metrics: dict[str, float] | None = None,
    ):
        self.weights, self.x_mean, self.x_std = weights, x_mean, x_std
        self.x_low, self.x_high = x_low, x_high
        self.points, self.gain, self.n_points = points, gain, n_points
        self.size, self.cfg, self.metrics = size, cfg, metrics or {}

    @classmethod
    def fit(cls, tracks: Tracks, face_model: fitting.ExpressionModel, frames: slice, cfg: Pose2FaceConfig) -> Pose2Face:
        gain = lip_distance_gain(face_model.neutral)
        points = np.flatnonzero(gain > 0)
        x = head_features(tracks.rotation, tracks.translation, tracks.scale, tracks.size)[frames]
        shapes = fitting.decode(face_model, tracks.expression[frames])[:, points]
        y = shapes.reshape(len(x), -1)
        weights, x_mean, x_std, _ = fit_ridge(x, y, cfg.ridge * len(x))
        standard = (x - x_mean) / x_std
        low, high = standard.min(axis=0), standard.max(axis=0)
        return cls(weights, x_mean, x_std, low, high, points, gain[points], len(gain), tracks.size, cfg)

    def __call__(self, poses: PoseSequence) -> np.ndarray:
        """(T, N, 3) head-frame offsets to add to the face's shapes; zero on the lips. Poses beyond the
        training frames' range count as its edge: a linear map must not extrapolate a head turned further."""
        x = head_features(poses.rotation, poses.translation, poses.scale, self.size)
        standard = np.clip((x - self.x_mean) / self.x_std, self.x_low, self.x_high)
        offsets = np.zeros((len(x), self.n_points, 3))
        offsets[:, self.points] = (standard @ self.weights).reshape(len(x), -1, 3) * self.gain[:, None]
        return offsets

    def save(self, path: Path) -> None:
        """Arrays and, as JSON text, the config and metrics (an npz loads without running code)."""
        meta = json.dumps({"config": asdict(self.cfg), "metrics": self.metrics})
        arrays = {k: getattr(self, k) for k in self.ARRAYS}
        save_npz(path, **arrays, n_points=np.int64(self.n_points), size=np.int64(self.size), meta=np.str_(meta))

    @classmethod
    def load(cls, path: Path) -> Pose2Face:
        z = load_npz(path)
        try:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in cls.ARRAYS}
            return cls(
                **arrays,
                n_points=int(z["n_points"]),
                size=int(z["size"]),
                cfg=Pose2FaceConfig(**meta["config"]),
                metrics=meta["metrics"],
            )
        except (KeyError, TypeError, ValueError) as exc:  # an npz, but not one Pose2Face wrote
            raise damaged_file(path, exc) from None


def face_error_px(
    model: Pose2Face, face_model: fitting.ExpressionModel, tracks: Tracks, frames: slice, shapes: np.ndarray
) -> float:
    """Mean image distance (px at 256) of the model's points from the tracked ones on `frames`, when the tracked
    shapes' coupled points are replaced by those of `shapes` (T, N, 3), head frame."""
    pose = PoseSequence.from_tracks(tracks, frames).head_pose()
    truth = fitting.decode(face_model, tracks.expression[frames])
    guess = truth.copy()
    guess[:, model.points] = shapes[:, model.points]
    error = pose.to_image(guess)[:, model.points, :2] - pose.to_image(truth)[:, model.points, :2]
    return float(np.linalg.norm(error, axis=-1).mean() * 256 / tracks.size)


def train_pose2face(
    tracks: Tracks, split: tuple[slice, slice], face_model: fitting.ExpressionModel, cfg: Pose2FaceConfig, path: Path
) -> Pose2Face:
    """Fit on the video's first part only (`split`: training and held-out frames; `amg eval` renders the tail
    with it), score on the tail against the training frames' mean face, save."""
    train, val = split
    model = Pose2Face.fit(tracks, face_model, train, cfg)
    if val.stop > val.start:
        mean = fitting.decode(face_model, tracks.expression[train]).mean(axis=0)
        coupled = mean + model(PoseSequence.from_tracks(tracks, val))
        still = np.broadcast_to(mean, coupled.shape)
        model.metrics = {
            "val_face_px": face_error_px(model, face_model, tracks, val, coupled),
            "val_face_px_mean_baseline": face_error_px(model, face_model, tracks, val, still),
        }
    model.save(path)
    return model
