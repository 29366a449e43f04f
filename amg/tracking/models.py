"""Thin wrappers around the MediaPipe `solutions` models that ship inside the mediapipe==0.10.21 wheel.

Nothing is downloaded: these graphs load their .tflite files from site-packages. Each wrapper takes an RGB
uint8 image and returns plain NumPy arrays in the image's pixel units, so the rest of AMG never touches
MediaPipe's protobuf results.
"""

from __future__ import annotations

import os

# MediaPipe's C++ side logs a page of INFO/WARNING lines per graph; keep the user's terminal for progress bars.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from mediapipe.python.solutions import face_detection, face_mesh, pose, selfie_segmentation  # noqa: E402

# MediaPipe pose indices of the body points AMG tracks: left/right shoulder, left/right hip.
BODY_POINTS = (11, 12, 23, 24)
BODY_NAMES = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")


class FaceDetector:
    """Full-range face detector: boxes (x0, y0, x1, y1) in pixels and scores for every face in an image."""

    def __init__(self, min_confidence: float = 0.5):
        # model_selection=1 is the full-range model: it also finds the small faces of wide, half-body shots.
        self._model = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = image.shape[:2]
        result = self._model.process(image)
        boxes, scores = [], []
        for det in result.detections or ():
            b = det.location_data.relative_bounding_box
            boxes.append((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h))
            scores.append(det.score[0])
        return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32)

    def close(self) -> None:
        self._model.close()


class FaceMeshTracker:
    """Face mesh in tracking mode (the landmarks of frame t seed frame t+1): 478 points with depth."""

    def __init__(self, refine_landmarks: bool = True, max_faces: int = 2):
        # Two faces, not one: if a second person enters the crop we still get the avatar's face and pick it
        # by position instead of letting the tracker jump to whoever it saw first.
        self._model = face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=max_faces,
            refine_landmarks=refine_landmarks,
            min_detection_confidence=0.5,
            min_tracking_confidence=0.5,
        )
        self.n_points = 478 if refine_landmarks else 468

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        """All faces in `image`, each (N, 3): x, y in pixels, z in the same pixel scale as x (MediaPipe's)."""
        h, w = image.shape[:2]
        result = self._model.process(image)
        faces = []
        for face in result.multi_face_landmarks or ():
            pts = np.array([(p.x, p.y, p.z) for p in face.landmark], np.float32)
            faces.append(pts * np.array([w, h, w], np.float32))
        return faces

    def close(self) -> None:
        self._model.close()


class BodyTracker:
    """MediaPipe pose (model_complexity=1, the only one the wheel ships): shoulders and hips in pixels."""

    def __init__(self):
        self._model = pose.Pose(static_image_mode=False, model_complexity=1, enable_segmentation=False)

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """(4, 3): x, y in pixels (may lie outside the image: hips often do) and visibility in [0, 1]."""
        h, w = image.shape[:2]
        result = self._model.process(image)
        if result.pose_landmarks is None:
            return None
        marks = result.pose_landmarks.landmark
        return np.array([(marks[i].x * w, marks[i].y * h, marks[i].visibility) for i in BODY_POINTS], np.float32)

    def close(self) -> None:
        self._model.close()


class PersonMatter:
    """Selfie segmentation: a soft person matte in [0, 1] at the image's size."""

    def __init__(self):
        # model_selection=0 is the square 256x256 "general" model, matching AMG's square crops.
        self._model = selfie_segmentation.SelfieSegmentation(model_selection=0)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self._model.process(image).segmentation_mask

    def close(self) -> None:
        self._model.close()
