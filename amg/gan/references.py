"""The avatar's own frames the generator copies texture from (saved with the avatar as gan_references.npz).

Texture (skin, teeth, hair, clothes) cannot be inferred from landmark drawings, and memorising it takes more
training steps than a CPU affords. So, as Live Speech Portraits does with its candidate images, the generator
sees real frames of the avatar:

    fixed references  a few training frames of diverse mouth states (closed, half open, wide open: teeth),
                      each the one nearest the median head pose in its band of mouth opening;
    pose bank         training frames spread over the video; for each generated frame the one nearest in
                      head pose is given too, so most of the picture only has to be moved, not invented.

Only frames of the training part are ever used, so held-out metrics stay honest.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from amg.fsutil import NpzRecord
from amg.tracking import topology
from amg.tracking.tracks import Tracks

# Mouth-opening quantiles of the fixed references: spread from closed to the widest the avatar opens.
REFERENCE_QUANTILES = (0.05, 0.5, 0.97, 0.75, 0.25, 0.9)


@dataclass
class AvatarReferences(NpzRecord):
    """All images at the generator's size; landmarks and body in crop pixels of `source_size`."""

    background: np.ndarray  # (H, W, 3) uint8 background plate
    ref_frames: np.ndarray  # (R, H, W, 3) uint8 fixed references
    ref_landmarks: np.ndarray  # (R, N, 3)
    ref_body: np.ndarray  # (R, 4, 3)
    bank_frames: np.ndarray  # (M, H, W, 3) uint8
    bank_landmarks: np.ndarray  # (M, N, 3)
    bank_body: np.ndarray  # (M, 4, 3)
    bank_poses: np.ndarray  # (M, 6) normalised head pose (pose_features / pose_std)
    bank_index: np.ndarray  # (M,) frame numbers in the avatar video
    pose_std: np.ndarray  # (6,)
    source_size: int

    def nearest_pose(self, poses: np.ndarray, frame_index: np.ndarray | None = None, exclusion: int = 0) -> np.ndarray:
        """Bank entry nearest in head pose for each of `poses` (T, 6, unnormalised).

        With `frame_index` (training), bank frames within `exclusion` frames of the frame itself are skipped:
        else the generator would learn to copy its answer from the bank.
        """
        d = (((poses / self.pose_std)[:, None, :] - self.bank_poses[None]) ** 2).sum(-1)
        if frame_index is not None:
            d[np.abs(frame_index[:, None] - self.bank_index[None]) < exclusion] = np.inf
        return d.argmin(axis=1)


def pose_features(rotation: np.ndarray, translation: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(T, 6): rotation vector, translation in the image plane, log scale: what places the head in the crop."""
    return np.concatenate([rotation, translation[:, :2], np.log(scale)[:, None]], axis=1).astype(np.float32)


def choose_reference_frames(tracks: Tracks, train: slice, n: int) -> np.ndarray:
    """Frame numbers of `n` fixed references: mouth-opening quantiles, each nearest the median pose."""
    frames = np.arange(train.start or 0, train.stop)[tracks.tracked[train]]
    opening = topology.mouth_opening(tracks.landmarks[frames])
    poses = pose_features(tracks.rotation[frames], tracks.translation[frames], tracks.scale[frames])
    pose_distance = np.linalg.norm((poses - np.median(poses, axis=0)) / (poses.std(axis=0) + 1e-6), axis=1)
    chosen: list[int] = []
    band = max(len(frames) // 20, 1)  # 5 % of the frames nearest each opening quantile
    for q in REFERENCE_QUANTILES[:n]:
        candidates = np.argsort(np.abs(opening - np.quantile(opening, q)))[:band]
        candidates = [c for c in candidates if frames[c] not in chosen] or list(candidates)
        chosen.append(int(frames[min(candidates, key=lambda c: pose_distance[c])]))
    return np.array(chosen)


def choose_bank_frames(n_train: int, bank_size: int) -> np.ndarray:
    """Evenly spaced training frames: spread over the whole video, they cover its range of head poses."""
    return np.unique(np.linspace(0, n_train - 1, min(bank_size, n_train)).round().astype(int))


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, S, S, C) uint8 → (T, size, size, C), area filter when shrinking."""
    if frames.shape[1] == size:
        return frames
    interp = cv2.INTER_AREA if size < frames.shape[1] else cv2.INTER_LINEAR
    resized = [cv2.resize(f, (size, size), interpolation=interp) for f in frames]
    return np.stack(resized).reshape(len(frames), size, size, *frames.shape[3:])


def build_references(
    tracks: Tracks, frames: np.ndarray, background: np.ndarray, train: slice, n_references: int, bank_size: int
) -> AvatarReferences:
    """Pick the references and the pose bank from the training frames (`frames` already at the GAN size)."""
    size = frames.shape[1]
    refs = choose_reference_frames(tracks, train, n_references)
    bank = choose_bank_frames(train.stop - (train.start or 0), bank_size) + (train.start or 0)
    poses = pose_features(tracks.rotation, tracks.translation, tracks.scale)
    pose_std = poses[train].std(axis=0) + 1e-6
    return AvatarReferences(
        background=resize_frames(background[None], size)[0],
        ref_frames=frames[refs],
        ref_landmarks=tracks.landmarks[refs],
        ref_body=tracks.body[refs],
        bank_frames=frames[bank],
        bank_landmarks=tracks.landmarks[bank],
        bank_body=tracks.body[bank],
        bank_poses=poses[bank] / pose_std,
        bank_index=bank,
        pose_std=pose_std,
        source_size=tracks.size,
    )
