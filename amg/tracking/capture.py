"""The one pass over the avatar video that needs the pixels: crop, landmarks, body, matte, normalised frames.

Everything downstream (fitting, smoothing, background, preview, training) reads what this pass writes, so the
source video, whatever its codec or size, is decoded exactly twice (scan + capture) and never again.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from tqdm import tqdm

from amg.config import PreprocessConfig
from amg.core.fsutil import load_npz, save_npz
from amg.core.progress import report
from amg.media import VideoWriter
from amg.tracking.background import BackgroundSampler
from amg.tracking.models import BodyTracker, FaceMeshTracker, PersonMatter
from amg.tracking.scan import CropWindow

# Frames in flight between the face-mesh thread and the matte/body worker: enough to absorb the pose model's
# 50 ms spikes (it runs on every k-th frame) without holding more than a few crops in memory.
_PIPELINE_DEPTH = 8


@dataclass
class StageTimer:
    """Seconds spent per sub-stage, to report frames/s of each (decode, face, pose, matte, encode)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def timed(self, name: str, iterable: Iterable):
        """Iterate `iterable`, charging the time spent producing each item to `name`."""
        iterator = iter(iterable)
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            self.seconds[name] += time.perf_counter() - start
            yield item

    def call(self, name: str, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        self.seconds[name] += time.perf_counter() - start
        return result


@dataclass
class RawTracks:
    """Per-frame tracker output, in pixels of the size x size crop. Frames without a face are NaN."""

    landmarks: np.ndarray  # (T, N, 3) float32
    face_found: np.ndarray  # (T,) bool
    body: np.ndarray  # (T, 4, 3) float32: x, y, visibility of shoulders and hips (pose run every k-th frame)
    body_found: np.ndarray  # (T,) bool: a pose was run and found on this frame
    window: CropWindow
    size: int
    background: np.ndarray  # (size, size, 3) uint8 background plate
    background_holes: float  # fraction of the plate that was never uncovered and had to be inpainted
    first_frame: int = 0  # the source video's frame the capture starts at (amg.tracking.preprocess: the face's span)

    def save(self, path: Path, capture_key: str) -> None:
        """Save with `capture_key`, the options that produced it, so a re-run knows whether it can reuse it."""
        save_npz(
            path,
            landmarks=self.landmarks,
            face_found=self.face_found,
            body=self.body,
            body_found=self.body_found,
            window=self.window.as_array(),
            size=np.int32(self.size),
            background=self.background,
            background_holes=np.float32(self.background_holes),
            first_frame=np.int64(self.first_frame),
            capture_key=np.str_(capture_key),
        )

    @classmethod
    def load(cls, path: Path) -> tuple["RawTracks", str]:
        z = load_npz(path)
        raw = cls(
            landmarks=z["landmarks"],
            face_found=z["face_found"],
            body=z["body"],
            body_found=z["body_found"],
            window=CropWindow(*(int(v) for v in z["window"])),
            size=int(z["size"]),
            background=z["background"],
            background_holes=float(z["background_holes"]),
            first_frame=int(z.get("first_frame", 0)),  # captures of an older AMG started at the first frame
        )
        return raw, str(z["capture_key"])


def pick_face(faces: list[np.ndarray], expected_centre: np.ndarray) -> np.ndarray | None:
    """The detected face whose centre is nearest to where the avatar's face is expected."""
    if not faces:
        return None
    distances = [np.linalg.norm(face[:, :2].mean(axis=0) - expected_centre) for face in faces]
    return faces[int(np.argmin(distances))]


def tracking_resolution(window: CropWindow, cfg: PreprocessConfig) -> int:
    """Face mesh input side: up to `track_size` if the source has that many pixels, never below `size`."""
    return max(cfg.size, min(cfg.track_size, window.side))


def capture(
    frames: Iterable[np.ndarray],
    n_frames: int,
    window: CropWindow,
    face_centre: np.ndarray,
    cfg: PreprocessConfig,
    frames_path: Path,
    matte_path: Path,
    audio: np.ndarray | None,
    timer: StageTimer,
) -> RawTracks:
    """Track every frame, write the normalised crop video (with audio) and the matte video, and sample the
    background plate.

    MediaPipe graphs are single-threaded and release the GIL, so on 2 cores the matte and body models run
    in a worker thread a few frames behind the face mesh, which runs here with decoding and encoding.
    """
    size, track_res = cfg.size, tracking_resolution(window, cfg)
    mesh = FaceMeshTracker(refine_landmarks=cfg.refine_landmarks)
    body_tracker, matter = BodyTracker(), PersonMatter()
    landmarks = np.full((n_frames, mesh.n_points, 3), np.nan, np.float32)
    body = np.full((n_frames, 4, 3), np.nan, np.float32)
    expected = face_centre.astype(np.float32)
    background = BackgroundSampler(n_frames, cfg.background_samples, cfg.matte_threshold)

    def matte_and_body(i: int, crop: np.ndarray) -> np.ndarray:
        if i % cfg.pose_every == 0:
            body[i] = _track_body(body_tracker, crop, cfg.pose_size, timer)
        return timer.call("matte", matter, crop)

    pending: deque[tuple[int, np.ndarray, Future]] = deque()
    try:
        with (
            ThreadPoolExecutor(max_workers=1) as worker,
            VideoWriter(frames_path, fps=cfg.fps, audio=audio, sample_rate=cfg.sample_rate) as frame_out,
            VideoWriter(matte_path, fps=cfg.fps, preset="ultrafast") as matte_out,
        ):

            def write_oldest() -> None:
                index, crop, future = pending.popleft()
                matte = future.result()
                timer.call("background", background.offer, index, crop, matte)
                timer.call("encode", frame_out.write, crop)
                timer.call("encode", matte_out.write, _gray_to_rgb(matte))

            for i, frame in enumerate(tqdm(frames, total=n_frames, desc="Tracking", unit="frame")):
                if i >= n_frames:
                    break
                report("preprocess", i + 1, n_frames)
                crop = timer.call("crop", window.crop, frame, size)
                pending.append((i, crop, worker.submit(matte_and_body, i, crop)))
                track_image = crop if track_res == size else timer.call("crop", window.crop, frame, track_res)
                face = pick_face(timer.call("face", mesh, track_image), expected * track_res / size)
                if face is not None:
                    landmarks[i] = face * (size / track_res)
                    expected = landmarks[i, :, :2].mean(axis=0)
                if len(pending) > _PIPELINE_DEPTH:
                    write_oldest()
            while pending:
                write_oldest()
    finally:
        mesh.close()
        body_tracker.close()
        matter.close()
    face_found = ~np.isnan(landmarks[:, 0, 0])
    body_found = ~np.isnan(body[:, 0, 0])
    plate, holes = timer.call("background", background.plate)
    return RawTracks(landmarks, face_found, body, body_found, window, size, plate, holes)


def _track_body(tracker: BodyTracker, crop: np.ndarray, pose_size: int, timer: StageTimer) -> np.ndarray:
    """Pose on a downscaled crop (it is the costliest model; shoulders need no more pixels), in crop pixels."""
    size = crop.shape[0]
    small = crop if pose_size >= size else cv2.resize(crop, (pose_size, pose_size), interpolation=cv2.INTER_AREA)
    found = timer.call("pose", tracker, small)
    if found is None:
        return np.full((4, 3), np.nan, np.float32)
    found[:, :2] *= size / small.shape[0]
    return found


def _gray_to_rgb(matte: np.ndarray) -> np.ndarray:
    gray = np.clip(matte * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)
