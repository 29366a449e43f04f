"""Torso registration: where the shirt, collar and tie are in every frame, from their own pixels.

The pose model finds the shoulders only roughly (a few pixels of noise, run on every k-th frame and
interpolated), and the image stage warps the torso by them (amg.conditioning.warp): on obama_clip2 the collar and
tie then held most of the generator's error. The torso's texture says far more precisely how it moved, so
every frame's torso is registered to one reference frame's with an affine ECC alignment (OpenCV's
findTransformECC, coarse to fine, each frame starting from the previous frame's answer), over a mask of the
reference's person below the chin and away from the face. The body points become the reference points moved
by each frame's affine, the reference points placed where they best fit all of the pose model's detections:
the pose model says where the shoulders are on average, the pixels how they moved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from tqdm import tqdm

from amg.media import iter_frames, pick_frames, probe_video
from amg.tracking import topology
from amg.tracking.smoothing import smooth_series

log = logging.getLogger(__name__)

# ECC works on the crop at this side at most (finer adds nothing for a torso), after a pass at half of it.
_REGISTRATION_SIDE = 256
_ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
_ECC_BLUR = 5
# Affine rather than Euclidean: on cnn_anchor_71s the warp then errs 15% less in the crop's lowest quarter.
_MOTION = cv2.MOTION_AFFINE
# Savitzky-Golay window (frames) over each affine parameter: ECC's frame-to-frame noise (about 1 px/frame² at
# the shoulders on obama_clip2) averaged away; a torso moves slowly.
_SMOOTH_WINDOW = 7
# The mask starts this far (a fraction of the crop) below the chin and keeps this far (pixels at 256) from the
# face oval, so that a nodding head does not drag the torso with it.
_BELOW_CHIN = 0.04
_FACE_MARGIN = 7
# Fewer torso pixels than this fraction of the crop, or a mask less tall than this fraction of it (a face-only
# framing, where a strip along the bottom lets the affine's vertical scale run away): the pose model's points
# are kept.
_MIN_MASK_FRACTION = 0.02
_MIN_MASK_HEIGHT = 0.1
# A torso does not turn, shear or grow by more than this between two frames of one shot (entries of the
# affine's linear part minus the identity), nor move by more than this fraction of the crop: a larger answer is
# ECC locking onto something else, and the frame counts as failed.
_MAX_DEFORMATION = 0.15
_MAX_SHIFT = 0.25
# More failed frames than this fraction: the registration is not used.
_MAX_FAILED = 0.2
# A registered shoulder further than this fraction of the crop from the pose model's (median over frames)
# means the registration lost the torso: the pose model's points are kept.
_MAX_MEDIAN_DISAGREEMENT = 0.06
_VISIBLE = 0.5


@dataclass
class TorsoRegistration:
    affines: np.ndarray  # (T, 2, 3) reference crop pixels → frame crop pixels
    correlation: np.ndarray  # (T,) ECC's correlation coefficient of each frame with the reference (NaN: failed)


def reference_frame(translation: np.ndarray, tracked: np.ndarray) -> int:
    """The tracked frame whose head position is nearest the median one: a typical pose to register against."""
    candidates = np.flatnonzero(tracked) if tracked.any() else np.arange(len(translation))
    median = np.median(translation[candidates, :2], axis=0)
    return int(candidates[np.argmin(((translation[candidates, :2] - median) ** 2).sum(axis=1))])


def torso_mask(matte: np.ndarray, landmarks: np.ndarray, scale: float) -> np.ndarray:
    """(H, W) uint8: the person in `matte` below the chin and away from the face oval; `landmarks` (N, 2+) in
    crop pixels, `scale` = matte side / crop side."""
    side = matte.shape[0]
    mask = (matte > 127).astype(np.uint8)
    mask[: int(landmarks[topology.CHIN, 1] * scale + _BELOW_CHIN * side)] = 0
    oval = cv2.convexHull((landmarks[topology.FACE_OVAL, :2] * scale).astype(np.float32)).astype(np.int32)
    face = np.zeros_like(mask)
    cv2.fillPoly(face, [oval], 1)
    margin = max(1, round(_FACE_MARGIN * side / 256))
    face = cv2.dilate(face, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    mask[face > 0] = 0
    return mask


def register_frames(reference: np.ndarray, mask: np.ndarray, frames: Iterable[np.ndarray]) -> TorsoRegistration:
    """Affine ECC of each grey frame (H, W) float32 onto `reference` over `mask`, coarse (half size) to fine,
    each frame starting from the previous one's answer (a failed frame keeps it)."""
    half = (reference.shape[1] // 2, reference.shape[0] // 2)
    reference_half = cv2.resize(reference, half, interpolation=cv2.INTER_AREA)
    mask_half = cv2.resize(mask, half, interpolation=cv2.INTER_NEAREST)
    affine = np.eye(2, 3, dtype=np.float32)
    affines, correlation = [], []
    for frame in frames:
        guess = affine * np.array([[1, 1, 0.5]], np.float32)
        try:
            _, guess = cv2.findTransformECC(
                reference_half,
                cv2.resize(frame, half, interpolation=cv2.INTER_AREA),
                guess,
                _MOTION,
                _ECC_CRITERIA,
                mask_half,
                _ECC_BLUR,
            )
            guess *= np.array([[1, 1, 2]], np.float32)
            rho, found = cv2.findTransformECC(reference, frame, guess, _MOTION, _ECC_CRITERIA, mask, _ECC_BLUR)
            if plausible(found, reference.shape[0]):
                affine = found
            else:
                rho = np.nan
        except cv2.error:  # no convergence (a hand in front of the chest, a cut): keep the last answer
            rho = np.nan
        affines.append(affine.copy())
        correlation.append(rho)
    return TorsoRegistration(np.stack(affines).astype(np.float64), np.array(correlation, np.float64))


def plausible(affine: np.ndarray, side: int) -> bool:
    """A torso's motion, not ECC locked onto something else (see _MAX_DEFORMATION)."""
    deformation = np.abs(affine[:, :2] - np.eye(2)).max()
    return bool(deformation <= _MAX_DEFORMATION and np.abs(affine[:, 2]).max() <= _MAX_SHIFT * side)


def place_points(affines: np.ndarray, observed: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The reference point p (2,) that, moved by each frame's affine (T, 2, 3), best fits the observations
    (T, 2) where `valid` (least squares over the frames); NaN where nothing is valid."""
    a, b = affines[valid, :, :2], affines[valid, :, 2]
    if not len(a):
        return np.full(2, np.nan)
    lhs = np.einsum("tji,tjk->ik", a, a)
    rhs = np.einsum("tji,tj->i", a, observed[valid] - b)
    return np.linalg.solve(lhs, rhs)


def registered_body(
    body: np.ndarray, detected: np.ndarray, detected_found: np.ndarray, registration: TorsoRegistration
) -> np.ndarray:
    """Body points (T, 4, 3) that follow the registered torso: each point's reference position fitted to the
    pose model's detections (`detected` (T, 4, 3), found on `detected_found`), moved by each frame's affine;
    visibility from `body` (the smoothed tracks)."""
    out = body.copy()
    for j in range(body.shape[1]):
        valid = detected_found & np.isfinite(detected[:, j, :2]).all(axis=1) & (detected[:, j, 2] >= _VISIBLE)
        if valid.sum() < 2:  # never seen (a hip below the crop): its smoothed track stays
            continue
        p = place_points(registration.affines, detected[:, j, :2], valid)
        out[:, j, :2] = registration.affines[:, :, :2] @ p + registration.affines[:, :, 2]
    return out


def _grey(frame: np.ndarray, side: int) -> np.ndarray:
    if frame.shape[0] != side:
        frame = cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)


def register_torso(
    frames_video: Path,
    matte_video: Path,
    landmarks: np.ndarray,
    translation: np.ndarray,
    tracked: np.ndarray,
    crop_size: int,
) -> tuple[TorsoRegistration | None, dict]:
    """Register the torso of every frame of the preprocessed crop video (streamed: memory does not grow with
    its length); returns the registration in crop pixels, or None when the crop shows too little torso, and
    numbers for the report."""
    n = min(probe_video(frames_video).n_frames(), len(landmarks))
    side = min(crop_size, _REGISTRATION_SIDE)
    scale = side / crop_size
    ref = reference_frame(translation[:n], tracked[:n])
    frame, matte = (pick_frames(iter_frames(video), [ref]).get(ref) for video in (frames_video, matte_video))
    if frame is None or matte is None:
        return None, {"registered": False, "reason": "the reference frame could not be decoded"}
    reference = _grey(frame, side)
    mask = torso_mask(cv2.resize(matte[..., 0], (side, side)), landmarks[ref], scale)
    rows = np.flatnonzero(mask.any(axis=1))
    if mask.mean() < _MIN_MASK_FRACTION or not len(rows) or rows[-1] - rows[0] < _MIN_MASK_HEIGHT * side:
        return None, {"registered": False, "reason": "too little torso in the crop"}
    frames = (_grey(f, side) for f in iter_frames(frames_video))
    progress = tqdm(frames, total=n, desc="Registering the torso", unit="frame", leave=False)
    registration = register_frames(reference, mask, (f for _, f in zip(range(n), progress)))
    # Back to crop pixels: the affines act on coordinates scaled by `scale` both ways.
    registration.affines[:, :, 2] /= scale
    registration.affines = smooth_series(registration.affines.reshape(n, 6), _SMOOTH_WINDOW).reshape(n, 2, 3)
    failed = int(np.isnan(registration.correlation).sum())
    stats = {
        "registered": True,
        "reference_frame": ref,
        "mask_fraction": float(mask.mean()),
        "failed_frames": failed,
        "correlation_median": float(np.nanmedian(registration.correlation)) if failed < n else float("nan"),
    }
    if failed > _MAX_FAILED * n:
        log.warning(
            "The torso could not be registered on %d of %d frames: keeping the pose model's shoulders.", failed, n
        )
        return None, stats | {"registered": False, "reason": "too many frames failed"}
    return registration, stats


def torso_body(
    body: np.ndarray,
    detected: np.ndarray,
    detected_found: np.ndarray,
    registration: TorsoRegistration | None,
    crop_size: int,
) -> tuple[np.ndarray, dict]:
    """The body points to keep: registered ones, unless the registration is missing or disagrees with the pose
    model so much that it must have lost the torso."""
    if registration is None:
        return body, {}
    registered = registered_body(body, detected, detected_found, registration)
    shoulders = slice(0, 2)
    gap = np.linalg.norm(registered[:, shoulders, :2] - body[:, shoulders, :2], axis=-1)
    disagreement = float(np.nanmedian(gap)) if np.isfinite(gap).any() else float("nan")
    stats = {"shoulder_change_px_median": disagreement}
    if not disagreement <= _MAX_MEDIAN_DISAGREEMENT * crop_size:
        log.warning("The torso registration disagrees with the pose model: keeping the pose model's shoulders.")
        return body, stats | {"registered": False, "reason": "disagrees with the pose model"}
    return registered.astype(body.dtype), stats
