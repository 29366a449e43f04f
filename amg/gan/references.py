"""The avatar's own frames the generator starts from (saved with the avatar as gan_references.npz).

Texture (skin, teeth, hair, clothes) cannot be inferred from landmark drawings, and learning to move pixels
takes more steps than a CPU affords, while a landmark mesh warp (amg.conditioning.warp) moves them exactly and for
free. So per generated frame a few real training frames are retrieved and warped onto the target landmarks,
and the generator only blends and refines them (amg.gan.networks). The bank holds the candidates:

    frames, mattes   training frames at the generator's size, with their person mattes;
    landmarks, body  their tracked landmarks and shoulders (what the warp moves them by);
    poses            their head poses (what retrieval compares first).

Only frames of the training part are ever in the bank, so held-out metrics stay honest. Retrieval itself is
amg.gan.candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from amg.core.fsutil import NpzRecord
from amg.gan.candidates import head_pose_features
from amg.tracking import topology
from amg.tracking.tracks import Tracks

# Share of the bank reserved for the extremes of mouth and eye opening when a long video must be thinned out:
# wide-open mouths (teeth) and closed eyes are rare, and the warp cannot invent what no candidate shows.
EXTREME_SHARE = 0.25


@dataclass
class AvatarReferences(NpzRecord):
    """All images at the generator's size; landmarks and body in crop pixels of `source_size`."""

    background: np.ndarray  # (H, W, 3) uint8 background plate
    frames: np.ndarray  # (M, H, W, 3) uint8 candidate frames
    mattes: np.ndarray  # (M, H, W) uint8 their person mattes
    landmarks: np.ndarray  # (M, N, 3)
    body: np.ndarray  # (M, 4, 3)
    poses: np.ndarray  # (M, 6) head pose features (amg.gan.candidates.head_pose_features)
    index: np.ndarray  # (M,) frame numbers in the avatar video
    source_size: int


def choose_bank_frames(tracks: Tracks, train: slice, bank_size: int) -> np.ndarray:
    """Frame numbers of the candidate bank: every tracked training frame when they fit, else evenly spaced
    ones (they cover the video's range of head poses) plus the frames nearest the quantiles of mouth and eye
    opening (they cover the rare extremes: teeth, blinks)."""
    frames = np.arange(train.start or 0, train.stop)[tracks.tracked[train]]
    if len(frames) <= bank_size:
        return frames
    n_extreme = int(bank_size * EXTREME_SHARE) // 2
    chosen = [frames[np.linspace(0, len(frames) - 1, bank_size - 2 * n_extreme).round().astype(int)]]
    landmarks = tracks.landmarks[frames]
    for signal in (topology.mouth_opening(landmarks[..., :2]), topology.eye_opening(landmarks)):
        order = np.argsort(signal, kind="stable")
        chosen.append(frames[order[np.linspace(0, len(order) - 1, n_extreme).round().astype(int)]])
    return np.unique(np.concatenate(chosen))


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, S, S[, C]) uint8 → (T, size, size[, C]), area filter when shrinking."""
    if frames.shape[1] == size:
        return frames
    interp = cv2.INTER_AREA if size < frames.shape[1] else cv2.INTER_LINEAR
    resized = [cv2.resize(f, (size, size), interpolation=interp) for f in frames]
    return np.stack(resized).reshape(len(frames), size, size, *frames.shape[3:])


def build_references(
    tracks: Tracks, frames: np.ndarray, mattes: np.ndarray, background: np.ndarray, train: slice, bank_size: int
) -> AvatarReferences:
    """The candidate bank from the training frames (`frames` and `mattes` already at the GAN size)."""
    size = frames.shape[1]
    bank = choose_bank_frames(tracks, train, bank_size)
    return AvatarReferences(
        background=resize_frames(background[None], size)[0],
        frames=frames[bank],
        mattes=mattes[bank],
        landmarks=tracks.landmarks[bank],
        body=tracks.body[bank],
        poses=head_pose_features(tracks.rotation[bank], tracks.translation[bank], tracks.scale[bank]),
        index=bank,
        source_size=tracks.size,
    )
