"""Face landmarks re-detected on frames (real or generated) with the same MediaPipe face mesh stage 1 uses, so
generated and real frames are measured by one instrument."""

from __future__ import annotations

from types import TracebackType

import cv2
import numpy as np

from amg.tracking.models import FaceMeshTracker
from amg.tracking.topology import NUM_LANDMARKS_REFINED

DETECTION_SIZE = 256


class LandmarkDetector:
    """Face mesh over a stream of frames of one sequence (tracking mode: frame t seeds frame t+1).

    Returns (478, 3) pixels per frame, or NaNs where no face is found: a generated frame without a detectable
    face is a failure the metrics must count (see `found` in the reports), not a frame to skip silently.
    """

    def __init__(self) -> None:
        self._tracker = FaceMeshTracker(refine_landmarks=True, max_faces=1)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(478, 3) landmarks in `frame`'s pixels. Frames smaller than DETECTION_SIZE are enlarged first: the
        face mesh misses or misplaces faces only a few dozen pixels wide (a 64 or 128 px generator)."""
        size = frame.shape[0]
        zoom = max(DETECTION_SIZE / size, 1.0)
        if zoom > 1:
            frame = cv2.resize(frame, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
        faces = self._tracker(frame)
        if not faces:
            return np.full((NUM_LANDMARKS_REFINED, 3), np.nan, np.float32)
        return faces[0] / np.float32(zoom)

    def close(self) -> None:
        self._tracker.close()

    def __enter__(self) -> LandmarkDetector:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
