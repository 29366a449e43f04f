"""Where the face is refined: one steady square crop box per frame, and the seamless paste back.

The box must not shake or breathe, or the refined face would swim against the rest of the frame: its side is
fixed for a whole sequence (the median face extent) and its centre is smoothed over time. Crops are taken and
pasted with sub-pixel affine warps, so a smoothly moving box moves the pixels smoothly too.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.signal import savgol_filter

from amg.core.images import feather_mask
from amg.tracking import topology


def face_crop_boxes(
    landmarks: np.ndarray, source_size: int, size: int, margin: float, smooth_window: int
) -> np.ndarray:
    """(T, N, 2|3) landmarks in a `source_size` crop → (T, 3) boxes cx, cy, side in pixels of a `size` frame."""
    points = landmarks[:, topology.FACE_OVAL, :2] * (size / source_size)
    low, high = points.min(axis=1), points.max(axis=1)
    centre = (low + high) / 2
    side = float(np.median((high - low).max(axis=1))) * (1 + 2 * margin)
    window = min(smooth_window, len(centre) - (1 - len(centre) % 2))  # odd, no longer than the sequence
    if window >= 3:
        centre = savgol_filter(centre, window, polyorder=2, axis=0, mode="interp")
    return np.column_stack([centre, np.full(len(centre), side)]).astype(np.float64)


def refine_size(side: float, scale: float) -> int:
    """The refiner's square input side for a face box of `side` generator pixels: `scale` x, a multiple of 8."""
    return max(8, int(round(side * scale / 8)) * 8)


def _crop_matrix(box: np.ndarray, out_size: int, frame_scale: float = 1.0) -> np.ndarray:
    """Affine map from frame pixels (of a frame `frame_scale` x the boxes' frame) to crop pixels."""
    cx, cy, side = box * frame_scale
    s = out_size / side
    return np.array([[s, 0, out_size / 2 - s * cx], [0, s, out_size / 2 - s * cy]])


def crop_face(frame: np.ndarray, box: np.ndarray, out_size: int, frame_scale: float = 1.0) -> np.ndarray:
    """The box's pixels resampled to out_size² (edges replicated where the box leaves the frame)."""
    matrix = _crop_matrix(box, out_size, frame_scale)
    return cv2.warpAffine(frame, matrix, (out_size, out_size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


class FacePaster:
    """Pastes refined face crops back into (optionally upscaled) frames, with no visible seam.

    The crop fades into the frame over a smoothstep border; before that, its mean colour in the fading border is
    matched to the frame's there, so even a refiner that shifts the colour a little leaves no edge and no flicker.
    """

    def __init__(self, out_size: int, feather: float, upscale: int = 1):
        self.out_size, self.upscale = out_size, upscale
        self.mask = feather_mask(out_size, feather * out_size)
        self.border = (self.mask > 0) & (self.mask < 1)

    def colour_matched(self, refined: np.ndarray, base: np.ndarray) -> np.ndarray:
        """`refined` shifted per channel so its mean over the fading border equals `base`'s there."""
        shift = base[self.border].mean(axis=0) - refined[self.border].astype(np.float32).mean(axis=0)
        return np.clip(refined + shift, 0, 255).astype(np.uint8)

    def __call__(self, frame: np.ndarray, refined: np.ndarray, base: np.ndarray, box: np.ndarray) -> np.ndarray:
        """frame (H, W, 3) at the generator's size, refined and base crops (out_size², base = the frame's own
        crop, the refiner's input) → the frame at `upscale` x its size with the refined face in it."""
        height, width = frame.shape[:2]
        size = (width * self.upscale, height * self.upscale)
        canvas = frame if self.upscale == 1 else cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC)
        inverse = cv2.invertAffineTransform(_crop_matrix(box, self.out_size, self.upscale))
        face = cv2.warpAffine(self.colour_matched(refined, base), inverse, size, flags=cv2.INTER_CUBIC)
        alpha = cv2.warpAffine(self.mask, inverse, size, flags=cv2.INTER_LINEAR)[..., None]
        return (alpha * face + (1 - alpha) * canvas + 0.5).astype(np.uint8)
