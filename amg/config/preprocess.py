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
        "size": (0, 2048),  # 0: from the source; below 64 px the face mesh has too few pixels (__post_init__)
        "max_size": (64, 2048),
        "track_size": (64, 4096),
        "crop_scale": (1.0, 10.0),  # face heights
        "min_crop_scale": (1.0, 10.0),
        "crop_face_center_y": FRACTION,
        "min_face_fraction": FRACTION,
        "pose_size": (64, 1024),
        "n_expression": (1, 256),
        "background_samples": (1, 10_000),
        "matte_threshold": FRACTION,
    }

    fps: int = FPS  # the frame rate the avatar video is resampled to; AMG works at FPS only
    sample_rate: int = SAMPLE_RATE
    # Side of the square crop the later stages work at. 0: the crop window's own side in source pixels (the face
    # at its source's pixel density), in steps of 64, at least 256 and at most `max_size` (what 2 CPU cores can
    # train and render; a GPU affords more). A 256-px source is cropped at 256 as it always was.
    size: int = 0
    max_size: int = 512
    # Face mesh runs on the crop resampled to this side (if the source has the pixels): more pixels on the face
    # than `size` gives sub-pixel landmarks at no extra model cost (the mesh model sees a fixed 192² face ROI).
    track_size: int = 512
    refine_landmarks: bool = True  # 478 points: refined lips and irises (lip-sync needs the lips most)
    # Half-body framing: the crop side in face box heights, and the face centre's height in it as a share of
    # the side (of the unnarrowed side where the window narrows: amg.tracking.scan.face_offset).
    crop_scale: float = 3.2
    crop_face_center_y: float = 0.38
    # Where that window holds more source pixels than the crop keeps (an HD or half-body video), it narrows toward
    # the head, down to this many face heights (head, neck and the top of the shoulders): the face keeps its
    # source's detail and the rest of the frame comes from the source itself (render.framing = source).
    min_crop_scale: float = 2.4
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
        if 0 < self.size < 64:
            raise AmgError(f"Config size: {self.size} px leaves the face mesh too few pixels: use 64 or more, or 0.")
        if self.fps != FPS:  # the audio features (40 ms per frame) and every model assume it
            raise AmgError(f"Config fps: AMG works at {FPS} frames/s, got {self.fps}.")
