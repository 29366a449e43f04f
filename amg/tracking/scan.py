"""First look at an avatar video: is there one usable face, and which fixed window frames head and shoulders."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

import cv2
import numpy as np

from amg.core.errors import TrackingError
from amg.tracking.models import FaceDetector

log = logging.getLogger(__name__)


# The smallest crop chosen from the source: a smaller window is resampled up to it (the trackers and the generator
# were made for 256 px).
MIN_AUTO_SIZE = 256
# How much narrower than wanted a crop window may become to hold the source's pixels 1:1 (fitted_to_crop): the
# window's margins (crop_window keeps 2.2 face heights around the face's travel, at least min_crop_scale face
# heights) have room for it.
ONE_TO_ONE_SLACK = 0.1


@dataclass(frozen=True)
class CropWindow:
    """A square window in the source frame's display pixels; every later stage works inside it."""

    x0: int
    y0: int
    side: int

    def crop(self, frame: np.ndarray, size: int) -> np.ndarray:
        """Cut the window out of `frame` and resample it to size x size (area filter when shrinking)."""
        window = frame[self.y0 : self.y0 + self.side, self.x0 : self.x0 + self.side]
        interp = cv2.INTER_AREA if size < self.side else cv2.INTER_LINEAR
        return cv2.resize(window, (size, size), interpolation=interp)

    def as_array(self) -> np.ndarray:
        return np.array([self.x0, self.y0, self.side], np.int32)


@dataclass(frozen=True)
class FaceScan:
    """Faces seen on the sampled frames (every `every`-th) of a video."""

    frame_size: tuple[int, int]  # (width, height)
    every: int
    n_sampled: int
    face_frames: np.ndarray  # (n_with_face,) the frame number of each sampled frame with a face
    face_counts: np.ndarray  # (n_with_face,) the faces found on it
    main_boxes: np.ndarray  # (n_with_face, 4) x0, y0, x1, y1 of the chosen face on each frame that has one

    @property
    def n_with_face(self) -> int:
        return len(self.face_frames)

    @property
    def n_with_several(self) -> int:
        return int((self.face_counts > 1).sum())

    @property
    def face_height(self) -> float:
        """The main face's median box height, in source pixels."""
        return float(np.median(self.main_boxes[:, 3] - self.main_boxes[:, 1]))

    @property
    def centres(self) -> np.ndarray:
        """(n_with_face, 2) centre of the main face on each sampled frame that has one."""
        return box_centres(self.main_boxes)

    @property
    def face_fraction(self) -> float:
        return self.n_with_face / max(self.n_sampled, 1)

    def within(self, span: slice) -> FaceScan:
        """What the scan saw of the frames `span`."""
        first_sampled = -(-span.start // self.every) * self.every
        inside = (self.face_frames >= span.start) & (self.face_frames < span.stop)
        return FaceScan(
            self.frame_size,
            self.every,
            len(range(first_sampled, span.stop, self.every)),
            self.face_frames[inside],
            self.face_counts[inside],
            self.main_boxes[inside],
        )

    def face_span(self, n_frames: int, max_gap: int) -> slice:
        """The longest part of the video (of `n_frames`) in which the face is never missing for more than
        `max_gap` frames: shorter gaps (a turn of the head, a hand before the face) are tracked through and
        interpolated; a longer one, or a longer stretch without the face at either end, cuts the video there."""
        frames = self.face_frames
        cuts = np.flatnonzero(np.diff(frames) > max_gap)
        firsts, lasts = np.concatenate([[0], cuts + 1]), np.concatenate([cuts, [len(frames) - 1]])
        starts = np.where((firsts == 0) & (frames[0] <= max_gap), 0, frames[firsts])
        last_frame = n_frames - 1
        stops = np.where((lasts == len(frames) - 1) & (last_frame - frames[-1] <= max_gap), n_frames, frames[lasts] + 1)
        longest = int(np.argmax(stops - starts))
        return slice(int(starts[longest]), int(stops[longest]))


def box_centres(boxes: np.ndarray) -> np.ndarray:
    """(n, 2) centres of boxes (n, 4) given as x0, y0, x1, y1."""
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def main_face_index(boxes: np.ndarray, frame_size: tuple[int, int]) -> int:
    """The largest, most central face: size relative to the frame minus half its distance from the centre."""
    w, h = frame_size
    heights = (boxes[:, 3] - boxes[:, 1]) / h
    centres = box_centres(boxes)
    off_centre = np.hypot((centres[:, 0] - w / 2) / w, (centres[:, 1] - h / 2) / h)
    return int(np.argmax(heights - 0.5 * off_centre))


def scan_faces(frames: Iterable[np.ndarray], every: int) -> FaceScan:
    """Run the face detector on every `every`-th frame and keep the main face of each."""
    n_sampled = 0
    face_frames, face_counts, main_boxes = [], [], []
    frame_size = (0, 0)
    detector = FaceDetector()
    try:
        for i, frame in enumerate(frames):
            if i % every:
                continue
            frame_size = (frame.shape[1], frame.shape[0])
            boxes, _ = detector(frame)
            n_sampled += 1
            if len(boxes):
                face_frames.append(i)
                face_counts.append(len(boxes))
                main_boxes.append(boxes[main_face_index(boxes, frame_size)])
    finally:
        detector.close()
    return FaceScan(
        frame_size,
        every,
        n_sampled,
        np.asarray(face_frames, np.int64),
        np.asarray(face_counts, np.int64),
        np.asarray(main_boxes, np.float32).reshape(-1, 4),
    )


def check_faces(scan: FaceScan, min_fraction: float, video_name: str) -> None:
    """Stop on videos without a usable face; warn once when several people are in the picture."""
    if scan.n_with_face == 0:
        raise TrackingError(
            f"No face found in video {video_name!r} ({scan.n_sampled} frames checked). "
            "AMG needs a video of one person talking to the camera, face visible."
        )
    if scan.face_fraction < min_fraction:
        raise TrackingError(
            f"A face is visible in only {scan.face_fraction:.0%} of video {video_name!r} "
            f"(at least {min_fraction:.0%} needed). Trim the parts without the speaker's face and try again."
        )
    if scan.n_with_several:
        log.warning(
            "Several faces in %d of %d checked frames of %r: tracking the largest, most central one.",
            scan.n_with_several,
            scan.n_sampled,
            video_name,
        )


def crop_window(scan: FaceScan, scale: float, face_center_y: float, min_scale: float, max_side: int) -> CropWindow:
    """A fixed square window around the main face with room for the shoulders (half-body framing).

    The side is `scale` face heights, widened to cover the face's horizontal travel over the video; the face
    centre sits at `face_center_y` of the side from the top, so the window extends down to the shoulders.
    A window of more than `max_side` source pixels (what the crop keeps) narrows toward the head, down to
    `min_scale` face heights: the face keeps its source's detail instead of the background keeping its width.
    The window is kept inside the frame (shrunk if the frame is too small), never padded: padding would
    teach the GAN to draw borders.
    """
    w, h = scan.frame_size
    face_h, centres = scan.face_height, scan.centres
    travel_x = float(np.percentile(centres[:, 0], 95) - np.percentile(centres[:, 0], 5))
    travel = travel_x + 2.2 * face_h
    side = min(max(scale * face_h, travel), max(max_side, min_scale * face_h, travel))
    side = int(round(min(side, w, h)))
    return _placed(scan, side, face_offset(side, scale * face_h, face_center_y))


def face_offset(side: int, nominal_side: float, face_center_y: float) -> float:
    """How far below a window's top the face centre sits: `face_center_y` of the window's side, or of the
    `nominal_side` it was narrowed from, but not below the window's middle. A narrowed window so loses its
    bottom (the shoulders, which the source framing paints from the avatar's own full-resolution frames) and
    keeps the room above the face: latentsync_demo2 (1080x1920, its window narrowed to 2.4 face heights) had
    its hair cut by the window's top, and blended there with the backdrop frame's, at 0.38 of the side."""
    return min(face_center_y * max(side, nominal_side), max(side / 2, face_center_y * side))


def _placed(scan: FaceScan, side: int, face_offset: float) -> CropWindow:
    """A window of `side` around the scan's median face, its centre `face_offset` below the window's top,
    inside the frame."""
    w, h = scan.frame_size
    cx, cy = np.median(scan.centres, axis=0)
    x0 = int(round(np.clip(cx - side / 2, 0, w - side)))
    y0 = int(round(np.clip(cy - face_offset, 0, h - side)))
    return CropWindow(x0, y0, side)


def fitted_to_crop(
    window: CropWindow, scan: FaceScan, scale: float, face_center_y: float, crop_side: int
) -> CropWindow:
    """`window` narrowed to the crop's own side where that is at most ONE_TO_ONE_SLACK narrower: the crop then
    holds the source's pixels 1:1, where resampling a few percent down and back up for the paste keeps little
    more than half the face's finest detail (obama_halfbody_34s: its real 512-px crops of a 557-px window,
    pasted back, 0.58x the source face's Laplacian energy bilinearly, 0.76x bicubically)."""
    if not crop_side < window.side <= crop_side * (1 + ONE_TO_ONE_SLACK):
        return window
    nominal = max(window.side, scale * scan.face_height)
    return _placed(scan, crop_side, face_offset(crop_side, nominal, face_center_y))


def crop_size(window_side: int, size: int, max_size: int) -> int:
    """The crop's side in pixels: `size` if one is set, else the window's own side (1:1 with the source) in steps
    of 64 (the generator halves it six times), at least 256 (as every crop was) and at most `max_size`."""
    if size:
        return size
    return min(max_size, max(MIN_AUTO_SIZE, window_side // 64 * 64))
