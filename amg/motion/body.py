"""head→body: shoulders and hips follow the head. A ridge regression from head pose to body landmarks.

The seed's head2body regressor, kept linear on purpose: a few minutes of video give a few thousand strongly
correlated frames, and a linear map cannot invent body motion the head does not imply.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from amg.config import Head2BodyConfig
from amg.core.fsutil import atomic_path, load_npz, save_npz
from amg.core.layout import damaged_file
from amg.motion.pose.inference import PoseSequence, pose_vectors
from amg.tracking.smoothing import smooth_series
from amg.tracking.tracks import Tracks


def head_features(rotation: np.ndarray, translation: np.ndarray, scale: np.ndarray, size: int) -> np.ndarray:
    """(T, 6) resolution-independent head pose: the same vector the head-motion model generates."""
    return pose_vectors(PoseSequence(rotation, translation, scale), size)


def fit_ridge(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, ...]:
    """Ridge regression of `y` on standardised `x`: weights, x's mean and spread, y's mean."""
    x_mean, x_std, y_mean = x.mean(0), x.std(0) + 1e-8, y.mean(0)
    xs = (x - x_mean) / x_std
    weights = np.linalg.solve(xs.T @ xs + ridge * np.eye(xs.shape[1]), xs.T @ (y - y_mean))
    return weights, x_mean, x_std, y_mean


class Head2Body:
    """Linear map from head pose to the (x, y) of shoulders and hips, in pixels of the avatar's crop."""

    def __init__(
        self,
        weights: np.ndarray,
        x_mean: np.ndarray,
        x_std: np.ndarray,
        y_mean: np.ndarray,
        size: int,
        cfg: Head2BodyConfig,
        metrics: dict[str, float] | None = None,
    ):
        self.weights, self.x_mean, self.x_std, self.y_mean = weights, x_mean, x_std, y_mean
        self.size, self.cfg, self.metrics = size, cfg, metrics or {}

    @classmethod
    def fit(cls, tracks: Tracks, frames: slice, cfg: Head2BodyConfig) -> "Head2Body":
        x = head_features(tracks.rotation, tracks.translation, tracks.scale, tracks.size)[frames]
        y = tracks.body[frames, :, :2].reshape(len(x), -1) / tracks.size
        return cls(*fit_ridge(x, y, cfg.ridge), tracks.size, cfg)

    def predict(self, rotation: np.ndarray, translation: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """(T, 4, 2) shoulder and hip positions in crop pixels, smoothed over time."""
        x = (head_features(rotation, translation, scale, self.size) - self.x_mean) / self.x_std
        y = smooth_series(x @ self.weights + self.y_mean, self.cfg.smooth_window, 2)
        return (y * self.size).reshape(len(x), -1, 2)

    def save(self, path: Path) -> None:
        """Arrays and, as JSON text, the config and metrics: an npz loads without running any code (a pickle
        does not)."""
        meta = json.dumps({"config": asdict(self.cfg), "metrics": self.metrics})
        save_npz(
            path,
            weights=self.weights,
            x_mean=self.x_mean,
            x_std=self.x_std,
            y_mean=self.y_mean,
            size=np.int64(self.size),
            meta=np.str_(meta),
        )

    @classmethod
    def load(cls, path: Path) -> "Head2Body":
        z = load_npz(path)
        try:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in ("weights", "x_mean", "x_std", "y_mean")}
            return cls(**arrays, size=int(z["size"]), cfg=Head2BodyConfig(**meta["config"]), metrics=meta["metrics"])
        except (KeyError, TypeError, ValueError) as exc:  # an npz, but not one Head2Body wrote
            raise damaged_file(path, exc) from None


def body_error_px(predicted: np.ndarray, tracks: Tracks, frames: slice) -> float:
    """Mean shoulder error in pixels at 256 (hips are often outside the crop, so they are not scored)."""
    truth = tracks.body[frames, :2, :2]
    return float(np.linalg.norm(predicted[:, :2] - truth, axis=-1).mean() * 256 / tracks.size)


def train_head2body(
    tracks: Tracks, split: tuple[slice, slice], cfg: Head2BodyConfig, path: Path, plot_path: Path
) -> Head2Body:
    """Fit on the video's first part, score on its held-out tail (`split`: training and held-out frames), refit
    on everything, save model and plot."""
    train, val = split
    n_val = val.stop - val.start
    held_out = Head2Body.fit(tracks, train, cfg)
    predicted = held_out.predict(tracks.rotation, tracks.translation, tracks.scale)
    still = np.broadcast_to(tracks.body[train, :, :2].mean(0), predicted.shape)
    metrics = {
        "val_shoulder_px": body_error_px(predicted[val], tracks, val) if n_val else float("nan"),
        "val_shoulder_px_mean_baseline": body_error_px(still[val], tracks, val) if n_val else float("nan"),
    }
    model = Head2Body.fit(tracks, slice(0, tracks.n_frames), cfg)
    model.metrics = metrics
    model.save(path)
    plot_head2body(tracks, predicted, n_val, plot_path)
    return model


def plot_head2body(tracks: Tracks, predicted: np.ndarray, n_val: int, path: Path) -> None:
    """Tracked vs predicted shoulder coordinates over time, the held-out tail shaded (the seed's head2body_test.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(tracks.n_frames) / tracks.fps
    fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    for ax, coord, label in zip(axes, (0, 1), ("x", "y")):
        for point, name in ((0, "left shoulder"), (1, "right shoulder")):
            line = ax.plot(t, tracks.body[:, point, coord], lw=1, label=f"{name} tracked")[0]
            ax.plot(t, predicted[:, point, coord], "--", lw=1, color=line.get_color(), label=f"{name} predicted")
        if n_val:
            ax.axvspan(t[-n_val], t[-1], color="0.9", zorder=0, label="held out")
        ax.set_ylabel(f"{label} (px)")
    axes[0].legend(fontsize=7, ncol=3)
    axes[1].set_xlabel("time (s)")
    fig.suptitle("head→body: shoulders predicted from head pose")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
