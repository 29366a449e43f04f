"""The landmark mesh warp: move real frames of the avatar so that their face lands on target landmarks.

A backward, piecewise-affine map over a triangulation of control points:

    face      the 468 face-mesh vertices with MediaPipe's tessellation, plus strips that close the holes the
              tessellation leaves at the mouth and the eyes (so lips and lids stretch over the opening instead
              of leaving it to whatever triangle lies behind);
    outside   the face oval, points on the neck (between the lower jaw and each shoulder), the visible
              shoulders and hips, points on the chest that move with the shoulders, and points on the crop's
              border, Delaunay-triangulated per target frame (the outside changes shape too much for a fixed
              topology to stay fold-free), so the whole crop deforms smoothly and its border stays put.
    torso     the chest points and the border below the shoulders read the source through the similarity that
              takes the target's shoulders onto the source's: shirt, collar and tie move as one piece with the
              torso instead of stretching between the jaw and a fixed border (on obama_clip2 they held most of
              the generator's error).

The target frame is rasterised once (which triangle covers each pixel centre, amg.conditioning.rasterize, nearer face
triangles on top); each source frame then needs only one 2x3 affine per triangle, gathered per pixel into a
cv2.remap map. Training and inference both call `warp_frames`, so the generator sees the same warps in both.

Coordinates: landmarks and body points are continuous crop pixels of `source_size` (pixel i spans [i, i+1));
the maps use OpenCV's convention (pixel i's centre at i) at the output `size`.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

from amg.conditioning.draw import (
    EYE_RINGS,
    FACE_OVAL_RING,
    LEFT_JAW_LOW,
    LEFT_SHOULDER,
    MESH_TRIANGLES,
    RIGHT_JAW_LOW,
    RIGHT_SHOULDER,
    visible_body_points,
)
from amg.conditioning.rasterize import ONE, TriangleSet
from amg.tracking import topology

N_FACE = topology.NUM_LANDMARKS  # mesh vertices; the refined iris points are left to the eye strips
# Fractions along each jaw→shoulder segment where neck control points sit.
_NECK_FRACTIONS = (1 / 3, 2 / 3)
_BORDER_POINTS_PER_SIDE = 4
# Chest control points as (along, down) in the shoulder frame: `along` from the right shoulder (0) to the left
# (1), `down` below the shoulder line in shoulder widths. The four above the line sit on the collar beside the
# neck, which moves with the torso, not with the jaw (obama_clip2's held-out warp: 26.7 dB with them, 25.9
# without; andrew_ng_clip1 27.2 and 26.9; cnn_anchor_71s 24.8 and 24.6).
_CHEST_POINTS = np.array(
    [(0.25, 0.0), (0.5, 0.0), (0.75, 0.0), (0.25, 0.3), (0.5, 0.3), (0.75, 0.3)]
    + [(0.15, -0.12), (0.3, -0.12), (0.7, -0.12), (0.85, -0.12)]
)
# Inner-lip corners, and each eye's two canthi (outer, inner), where a hole's ring is split into two chains.
_HOLE_CORNERS = {
    "mouth": (78, 308),
    "left_eye": (topology.LEFT_EYE_OUTER, 362),
    "right_eye": (topology.RIGHT_EYE_OUTER, 133),
}


def _ring_chains(ring: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """The two paths from corner a to corner b around a closed ring."""
    ring = np.roll(ring, -int(np.flatnonzero(ring == a)[0]))
    split = int(np.flatnonzero(ring == b)[0])
    return ring[: split + 1], np.append(ring[split:], a)[::-1]


def hole_strip(ring: np.ndarray, a: int, b: int) -> np.ndarray:
    """Triangles that zip the two chains of a hole's ring together from corner a to corner b, (F, 3).

    Each step advances the chain that lags in relative position, so chains of unequal length zip evenly; a
    strip stays fold-free however far the hole opens, as long as its two lips (or lids) do not cross.
    """
    upper, lower = _ring_chains(ring, a, b)
    triangles, i, j = [], 0, 0
    while i < len(upper) - 1 or j < len(lower) - 1:
        if j == len(lower) - 1 or (i < len(upper) - 1 and (i + 1) / len(upper) <= (j + 1) / len(lower)):
            triangles.append((upper[i], upper[i + 1], lower[j]))
            i += 1
        else:
            triangles.append((upper[i], lower[j + 1], lower[j]))
            j += 1
    return np.array([t for t in triangles if len(set(t)) == 3], np.intp)


def _hole_triangles() -> np.ndarray:
    rings = {"mouth": topology.LIPS_INNER}
    for ring in EYE_RINGS:
        rings["left_eye" if topology.LEFT_EYE_OUTER in ring else "right_eye"] = ring
    return np.concatenate([hole_strip(rings[name], *corners) for name, corners in _HOLE_CORNERS.items()])


FACE_TRIANGLES: np.ndarray = np.concatenate([MESH_TRIANGLES, _hole_triangles()])


def border_points(size: int) -> np.ndarray:
    """Fixed points around the crop, on the outermost pixels' outer edges so that the triangulation's hull
    covers every pixel centre: (16, 2) in OpenCV pixel coordinates."""
    lo, hi = -0.5, size - 0.5
    t = np.linspace(lo, hi, _BORDER_POINTS_PER_SIDE + 1)
    inner = t[1:-1]
    return np.concatenate(
        [
            np.c_[t, np.full_like(t, lo)],
            np.c_[t, np.full_like(t, hi)],
            np.c_[np.full_like(inner, lo), inner],
            np.c_[np.full_like(inner, hi), inner],
        ]
    )


def chest_points(body: np.ndarray) -> np.ndarray:
    """The chest control points (len(_CHEST_POINTS), 2) of a body (4, 2|3), in its coordinates."""
    right = body[RIGHT_SHOULDER, :2]
    along = body[LEFT_SHOULDER, :2] - right
    down = np.array([-along[1], along[0]])  # along turned by +90 degrees: image y grows downwards
    if down[1] < 0:
        down = -down
    return right + _CHEST_POINTS[:, :1] * along + _CHEST_POINTS[:, 1:] * down


def shoulder_similarity(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """The 2x3 similarity taking the target's two shoulder points (2, 2) onto the source's."""
    t, s = target[:, 0] + 1j * target[:, 1], source[:, 0] + 1j * source[:, 1]
    a = (s[1] - s[0]) / (t[1] - t[0]) if t[1] != t[0] else 1.0
    b = s[0] - a * t[0]
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def control_points(landmarks: np.ndarray, body: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A frame's moving control points in OpenCV pixels of the output: the 468 mesh vertices, then per side
    the neck points, then the 4 body points (shoulders, hips), then the chest points; and which of the
    body-derived points are usable (finite, visible), (P,) bool. `landmarks` (N, 2|3) and `body` (4, 2|3)
    are source-crop pixels."""
    face = landmarks[:N_FACE, :2].astype(np.float64)
    visible = visible_body_points(np.asarray(body, np.float64))
    torso = np.asarray(body, np.float64)[:, :2]
    extra, usable = [], []
    for jaw, shoulder in ((RIGHT_JAW_LOW, RIGHT_SHOULDER), (LEFT_JAW_LOW, LEFT_SHOULDER)):
        for f in _NECK_FRACTIONS:
            extra.append(face[jaw] + f * (torso[shoulder] - face[jaw]))
            usable.append(visible[shoulder])
    extra.extend(torso)
    usable.extend(visible)
    shoulders = bool(visible[LEFT_SHOULDER] and visible[RIGHT_SHOULDER])
    extra.extend(chest_points(torso) if shoulders else np.zeros((len(_CHEST_POINTS), 2)))
    usable.extend([shoulders] * len(_CHEST_POINTS))
    points = np.concatenate([face, np.nan_to_num(np.array(extra))]) * scale - 0.5
    return points, np.concatenate([np.ones(N_FACE, bool), usable])


def _shoulders(points: np.ndarray) -> np.ndarray:
    """The (right, left) shoulder rows of control_points' output."""
    first_body = N_FACE + 2 * len(_NECK_FRACTIONS)
    return points[[first_body + RIGHT_SHOULDER, first_body + LEFT_SHOULDER]]


class TargetMesh:
    """One target frame rasterised: its triangles and which covers each pixel; warps any source onto it."""

    def __init__(self, landmarks: np.ndarray, body: np.ndarray, size: int, source_size: int):
        self.size, self.scale = size, size / source_size
        moving, self.usable = control_points(landmarks, body, self.scale)
        border = border_points(size)
        self.torso_border = np.zeros(len(border), bool)
        self.shoulders = _shoulders(moving)
        chest = np.arange(len(moving) - len(_CHEST_POINTS), len(moving))
        if self.usable[chest].all():
            # Chest points under the face (a head bowed low) would fold the mesh: they are left out.
            oval = moving[FACE_OVAL_RING].astype(np.float32)
            inside = [cv2.pointPolygonTest(oval, tuple(map(float, p)), False) >= 0 for p in moving[chest]]
            self.usable[chest] = ~np.array(inside)
            self.torso_border = border[:, 1] > self.shoulders[:, 1].max()
        # The maps are computed from the same fixed-point corners the rasteriser sees, so the triangle that
        # covers a pixel and the affine that moves it agree.
        fixed = np.round(np.concatenate([moving, border]) * ONE).astype(np.int32)
        self.points = fixed / ONE
        outer = np.concatenate(
            [FACE_OVAL_RING, N_FACE + np.flatnonzero(self.usable[N_FACE:]), len(moving) + np.arange(len(border))]
        )
        outside = outer[Delaunay(self.points[outer]).simplices]
        self.triangles = np.concatenate([outside, FACE_TRIANGLES])
        triangle_set = TriangleSet(self.triangles)
        # Outside triangles below the face's; face triangles nearest (smallest depth) on top, so where a turned
        # head folds the mesh (nose over the far cheek) each pixel shows the surface that faces the camera.
        depth = (
            landmarks[:, 2].take(FACE_TRIANGLES).sum(axis=1)
            if landmarks.shape[1] > 2
            else np.zeros(len(FACE_TRIANGLES))
        )
        priority = np.empty(len(self.triangles), np.int32)
        order = np.concatenate([np.arange(len(outside)), len(outside) + np.argsort(-depth, kind="stable")])
        priority[order] = np.arange(len(self.triangles), dtype=np.int32)
        self.index = triangle_set.index_map(fixed, priority, size)
        self._pixel_triangle = self.index.astype(np.intp)  # -1 (no triangle) reads the identity appended last
        self._barycentric = self._barycentric_matrices()

    def _barycentric_matrices(self) -> np.ndarray:
        """(F, 3, 3): per triangle, the matrix taking a target pixel (x, y, 1) to its barycentric weights (the
        inverse of [[x0 x1 x2], [y0 y1 y2], [1 1 1]], in closed form: a batched inverse costs 3x more).
        Degenerate triangles cover no pixel (the rasteriser empties them); they get zeros."""
        (x0, x1, x2), (y0, y1, y2) = self.points[self.triangles].transpose(2, 1, 0)  # each (F,)
        det = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        inv_det = np.divide(1.0, det, out=np.zeros_like(det), where=np.abs(det) > 1e-9)
        rows = [
            (y1 - y2, x2 - x1, x1 * y2 - x2 * y1),
            (y2 - y0, x0 - x2, x2 * y0 - x0 * y2),
            (y0 - y1, x1 - x0, x0 * y1 - x1 * y0),
        ]
        return np.stack([np.stack(row, axis=-1) for row in rows], axis=1) * inv_det[:, None, None]

    def maps(self, sources: list[tuple[np.ndarray, np.ndarray]], out: np.ndarray | None = None) -> np.ndarray:
        """Backward maps for source frames given as (landmarks, body) pairs: (K, size, size, 2) float32 (into
        `out` when given), the source pixel each target pixel reads. Body points a source lacks stay where the
        target has them."""
        # Each coefficient gathered per pixel into a contiguous plane, then the same float32 products and sums in
        # the same order as a gather of whole 6-vectors (the one copy is the interleaving of x and y).
        coefficients = np.ascontiguousarray(self.affines(sources).transpose(2, 0, 1))  # (6, K, F + 1)
        a0, a1, a2, b0, b1, b2 = (np.take(c, self._pixel_triangle, axis=1) for c in coefficients)  # (K, H, W)
        x = np.arange(self.size, dtype=np.float32)
        y = x[:, None]
        maps = np.empty((len(sources), self.size, self.size, 2), np.float32) if out is None else out
        for plane, (u, v, w) in ((maps[..., 0], (a0, a1, a2)), (maps[..., 1], (b0, b1, b2))):
            u *= x
            v *= y
            u += v
            u += w
            plane[...] = u
        return maps

    def affines(self, sources: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """(K, F + 1, 6) float32: per source and triangle, the 2x3 affine taking a target pixel to the source
        pixel it reads (row-major); the last row, for pixels no triangle covers, the identity."""
        n_moving = len(self.usable)
        border = self.points[n_moving:]
        affines = []
        for landmarks, body in sources:
            moving, usable = control_points(landmarks, body, self.scale)
            source_border = border
            if self.torso_border.any() and usable[-len(_CHEST_POINTS)]:
                torso = shoulder_similarity(self.shoulders, _shoulders(moving))
                moved = border @ torso[:, :2].T + torso[:, 2]
                source_border = np.where(self.torso_border[:, None], moved, border)
            moving = np.where(usable[:, None], moving, self.points[:n_moving])
            corners = np.concatenate([moving, source_border])[self.triangles]  # (F, 3, 2) source corners
            affine = np.einsum("fci,fcj->fij", corners, self._barycentric)  # (F, 2, 3)
            # Index -1 (no triangle: only off the hull, which border points rule out) reads the pixel itself.
            affines.append(np.concatenate([affine.reshape(-1, 6), [[1, 0, 0, 0, 1, 0]]]).astype(np.float32))
        return np.stack(affines)


def fixed_point(backward_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A float backward map (H, W, 2) in OpenCV's fixed-point form (CV_16SC2 and its interpolation table): what
    cv2.remap converts a float map to internally, once per call; converted once, a map that resamples several
    images is converted once (the results are identical)."""
    return cv2.convertMaps(backward_map, None, cv2.CV_16SC2)


def remap(
    image: np.ndarray,
    backward_map: np.ndarray | tuple[np.ndarray, np.ndarray],
    interpolation: int = cv2.INTER_LINEAR,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Sample `image` (H, W[, C], C <= 8 any dtype cv2 takes) at `backward_map` (H, W, 2) float, or its
    `fixed_point` form, bilinear unless `interpolation` says otherwise; into `out` (contiguous, the result's
    shape) when given."""
    map1, map2 = backward_map if isinstance(backward_map, tuple) else (backward_map, None)
    result = cv2.remap(image, map1, map2, interpolation, dst=out, borderMode=cv2.BORDER_REPLICATE)
    return result.reshape(image.shape[:2] + image.shape[2:]) if result.ndim < image.ndim else result


def warp_frames(
    images: np.ndarray,
    landmarks: np.ndarray,
    body: np.ndarray,
    target_landmarks: np.ndarray,
    target_body: np.ndarray,
    source_size: int,
) -> np.ndarray:
    """Warp K source images (K, H, W, C) with their landmarks (K, N, 3) and body (K, 4, 3) onto one target's
    landmarks (N, 3) and body (4, 3): (K, H, W, C), same dtype."""
    mesh = TargetMesh(target_landmarks, target_body, images.shape[1], source_size)
    maps = mesh.maps(list(zip(landmarks, body)))
    return np.stack([remap(image, m) for image, m in zip(images, maps)])
