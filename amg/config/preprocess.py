"""Stage 1's options: how the avatar video becomes a crop, tracks, matte and background plate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from amg.config.limits import FRACTION
from amg.core.constants import FPS, SAMPLE_RATE
from amg.core.errors import AmgError


@dataclass
class PreprocessConfig:
    """Stage 1: avatar video → crop, tracks, matte, background plate."""

    # Bounds narrower than the one range rule (amg.core.dataclass_io): what the trackers work with.
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "sample_rate": (8000, 48000),
        "size": (64, 2048),  # smaller crops leave the face mesh too few pixels
        "track_size": (64, 4096),
        "crop_scale": (1.0, 10.0),  # face heights
        "crop_face_center_y": FRACTION,
        "min_face_fraction": FRACTION,
        "pose_size": (64, 1024),
        "n_expression": (1, 256),
        "background_samples": (1, 10_000),
        "matte_threshold": FRACTION,
    }

    fps: int = FPS  # the frame rate the avatar video is resampled to; AMG works at FPS only
    sample_rate: int = SAMPLE_RATE
    # Side of the square crop the later stages work at (256 by default; 512 works too).
    size: int = 256
    # Face mesh runs on the crop resampled to this side (if the source has the pixels): more pixels on the face
    # than `size` gives sub-pixel landmarks at no extra model cost (the mesh model sees a fixed 192² face ROI).
    track_size: int = 512
    refine_landmarks: bool = True  # 478 points: refined lips and irises (lip-sync needs the lips most)
    # Half-body framing: the crop side and the face centre's height in it, in units of the face box height.
    crop_scale: float = 3.2
    crop_face_center_y: float = 0.38
    # Face detection runs on every k-th frame of the scan pass (faces move slowly; the mesh tracks per frame).
    scan_every: int = 5
    min_face_fraction: float = 0.5
    min_duration_s: float = 180.0  # shorter videos are accepted with a warning
    # MediaPipe pose costs ~50 ms per frame: run it on every k-th frame and interpolate (shoulders move slowly).
    pose_every: int = 10
    pose_size: int = 256
    # PCA expression basis.
    n_expression: int = 48
    # Temporal smoothing (see amg.tracking.smoothing): a Savitzky-Golay-style filter whose window stays short
    # on the mouth (5 frames: with polyorder 2 a 3-frame window would not smooth at all) so that fast lip
    # closures are not lagged or flattened.
    smooth_window: int = 7
    smooth_window_mouth: int = 5
    smooth_polyorder: int = 2
    # Background plate: temporal median over this many evenly spaced frames.
    background_samples: int = 120
    matte_threshold: float = 0.5
    # Body points that follow the torso's own pixels (amg.tracking.torso) instead of the pose model's alone.
    register_torso: bool = True
    preview: bool = True

    def __post_init__(self) -> None:
        if self.fps != FPS:  # the audio features (40 ms per frame) and every model assume it
            raise AmgError(f"Config fps: AMG works at {FPS} frames/s, got {self.fps}.")
