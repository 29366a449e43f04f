"""The conditioning image: face and body landmarks drawn as the multi-channel picture the generator reads.

Training draws it from tracked landmarks and inference from predicted ones, so it is a pure function of the
landmarks (no pixels of the video, no state between frames): whatever the generator learns to read on the
training frames it finds again, drawn the same way, at inference. Each channel holds one kind of cue, so the
generator never has to untangle, say, a lip contour from a face-oval line drawn at the same place and value:

0. Shaded face mesh. MediaPipe's tessellation triangles, each shaded by how squarely it faces the camera and
   painted back to front. It gives the generator the head's 3-D shape and pose (cheek and nose shading turn
   with the head), which flat contours alone do not. Values 40..255, so even a face seen edge-on stands
   apart from the background 0.
1. Mouth. Lips filled at 120, the inner mouth (the opening between the inner lip contours, where teeth and
   tongue show) at 255, and both lip contours as lines at 200. Lip-sync lives in this channel: how far the
   mouth is open and how the lips are shaped must be readable here without ambiguity.
2. Eyes and brows. Eye openings filled at 150, irises (only with the 478-point refined mesh) at 255 clipped
   to the eye opening so a blink hides them, brows as thick lines at 90. Gaze, blinks and brow raises.
3. Outline and body. Face oval at 255, nose lines at 160, and the shoulders (line between them, neck lines
   from the lower jaw down to each shoulder, torso sides down to the hips) at 200. It tells the generator
   where the head sits on the body, which the face channels cannot.

Landmarks are pixels of a square crop of side `source_size`; the image is drawn at `size`, any size. Lines
and fills are drawn with OpenCV in fixed point (`_SHIFT` fractional bits, anti-aliased) so that sub-pixel
motion of the landmarks shows as smooth changes of the edges rather than as one-pixel jumps, and line widths
grow with `size` so a render at 128 looks like a render at 256 downsampled. The mesh alone is rasterised in
NumPy (amg.conditioning.rasterize: one OpenCV call per triangle would exceed the frame budget), and the mouth is supersampled so that
its 255 pixels measure the lip opening exactly.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict

import cv2
import numpy as np
from mediapipe.python.solutions import face_mesh_connections as _mp

from amg.conditioning.rasterize import ONE as _ONE
from amg.conditioning.rasterize import SHIFT as _SHIFT
from amg.conditioning.rasterize import TriangleSet
from amg.tracking import topology
from amg.tracking.topology import _closed_contours

N_CHANNELS = 4
MESH, MOUTH, EYES, OUTLINE = range(N_CHANNELS)

# Channel values (see the module docstring).
_MESH_DARKEST = 40
_LIPS, _INNER_MOUTH, _LIP_LINE = 120, 255, 200
_EYE, _IRIS, _BROW = 150, 255, 90
_FACE_OVAL, _NOSE_LINE, _BODY_LINE = 255, 160, 200

# The mouth is drawn hard-edged at this many times the resolution, then averaged down (see _draw_mouth).
_MOUTH_SUPERSAMPLING = 4

# Body rows as the tracker stores them, and the visibility below which a body point is not drawn.
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP = range(4)
_MIN_VISIBILITY = 0.5
# Lower-jaw points on the face oval, about halfway between the chin and the jaw angle, where the neck leaves
# the head on a frontal face (below the mouth corners, outside them). Subject's right = image left.
RIGHT_JAW_LOW, LEFT_JAW_LOW = 136, 365
# (body point, body point) and (jaw point, body point) segments of the body drawing.
_BODY_SEGMENTS = ((LEFT_SHOULDER, RIGHT_SHOULDER), (LEFT_SHOULDER, LEFT_HIP), (RIGHT_SHOULDER, RIGHT_HIP))
_NECK_SEGMENTS = ((RIGHT_JAW_LOW, RIGHT_SHOULDER), (LEFT_JAW_LOW, LEFT_SHOULDER))


def _mesh_triangles(edges: topology.Edges) -> np.ndarray:
    """The faces of the triangle mesh whose edge list is `edges`, (F, 3) vertex indices.

    MediaPipe publishes only the tessellation's edges. Every face is a 3-clique of the edge graph, but a few
    3-cliques are not faces: three vertices around a small fan can be pairwise connected without a triangle
    between them. In a surface mesh an edge borders at most two faces, and such a false triangle is made of
    edges that each already border two real faces, so cliques whose every edge is over-shared are dropped
    (one at a time, since dropping one relieves its edges).
    """
    neighbours: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    triangles = sorted(
        {tuple(sorted((a, b, c))) for a in neighbours for b in neighbours[a] for c in neighbours[a] & neighbours[b]}
    )
    shared = Counter(pair for tri in triangles for pair in itertools.combinations(tri, 2))
    while over_shared := [tri for tri in triangles if all(shared[p] > 2 for p in itertools.combinations(tri, 2))]:
        triangles.remove(over_shared[0])
        shared.subtract(itertools.combinations(over_shared[0], 2))
    return np.array(triangles, np.intp)


def _segments(edges: topology.Edges) -> np.ndarray:
    """An edge set as (E, 2) vertex pairs, for drawing open curves (brows, nose) segment by segment."""
    return np.array(sorted(edges), np.intp)


MESH_TRIANGLES: np.ndarray = _mesh_triangles(_mp.FACEMESH_TESSELATION)
EYE_RINGS: list[np.ndarray] = _closed_contours(_mp.FACEMESH_LEFT_EYE) + _closed_contours(_mp.FACEMESH_RIGHT_EYE)
FACE_OVAL_RING: np.ndarray = _closed_contours(_mp.FACEMESH_FACE_OVAL)[0]
BROW_SEGMENTS: np.ndarray = _segments(_mp.FACEMESH_LEFT_EYEBROW | _mp.FACEMESH_RIGHT_EYEBROW)
NOSE_SEGMENTS: np.ndarray = _segments(_mp.FACEMESH_NOSE)
# The tessellation as the rasteriser's triangle set (its corners, (3, F), also give the mesh's shading).
MESH_TRIANGLE_SET: TriangleSet = TriangleSet(MESH_TRIANGLES)
_TRIANGLE_CORNERS: np.ndarray = MESH_TRIANGLE_SET.corners
# Refined-mesh irises: per eye a centre point followed by its 4 contour points.
IRIS_POINTS: np.ndarray = topology.IRISES.reshape(2, 5)


def line_width(size: int) -> int:
    """Base line thickness in pixels at image side `size`: 1 up to 128, 2 at 256, 4 at 512."""
    return max(1, round(size / 128))


def _to_fixed_point(xy: np.ndarray, scale: float) -> np.ndarray:
    """Source-crop pixels -> OpenCV fixed-point pixels of the output image.

    Landmarks are continuous coordinates (pixel i spans [i, i+1)); OpenCV puts pixel i's centre at i. The
    half-pixel offset keeps renders at different sizes aligned with each other.
    """
    return np.round((xy * scale - 0.5) * _ONE).astype(np.int32)


def _mesh_shading(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per mesh triangle: its shade 40..255 and its painting priority (0 = farthest, painted first).

    The shade is Lambert's law with the light at the camera, |n_z| of the unit normal: |n_z| rather than n_z
    because the clique-built triangles have no consistent winding, and a face turned away still must not
    vanish. The priority orders triangles by mean depth (larger z = farther), which is exact enough for the
    only overlaps a face mesh has at moderate yaw: a nose side and the far cheek behind it.
    """
    x, y, z = (landmarks[:, axis].take(_TRIANGLE_CORNERS) for axis in range(3))  # each (3, F)
    ux, uy, uz = x[1] - x[0], y[1] - y[0], z[1] - z[0]
    vx, vy, vz = x[2] - x[0], y[2] - y[0], z[2] - z[0]
    nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
    facing = np.abs(nz) / np.maximum(np.sqrt(nx * nx + ny * ny + nz * nz), 1e-12)
    shades = np.round(_MESH_DARKEST + (255 - _MESH_DARKEST) * facing).astype(np.uint8)
    priority = np.empty(len(shades), np.int32)
    priority[np.argsort(-z.sum(axis=0), kind="stable")] = np.arange(len(shades), dtype=np.int32)
    return shades, priority


def _rasterize_mesh(points: np.ndarray, shades: np.ndarray, priority: np.ndarray, size: int) -> np.ndarray:
    """Fill every mesh triangle with its shade, higher priority (nearer) on top; 0 where no triangle is."""
    shade_by_triangle = np.append(shades, np.uint8(0))  # index -1 (no triangle) picks the background 0
    return shade_by_triangle.take(MESH_TRIANGLE_SET.index_map(points, priority, size))


def _draw_mouth(canvas: np.ndarray, points: np.ndarray, width: int) -> None:
    """Channel 1: lips, both lip contours over them, then the inner mouth on top.

    The inner mouth is painted last so that its 255 pixels are exactly the opening between the lips: a
    closed mouth, whose inner polygon collapses to a line, leaves the lip line and no 255 at all, and a
    slightly open one already shows a band of 255 as wide as the opening's fully covered pixels. OpenCV's
    anti-aliased fills cannot do this (they outline a polygon with a one-pixel anti-aliased rim, which
    swallows a narrow opening and draws a collapsed one as a line), so the mouth is drawn hard-edged at
    _MOUTH_SUPERSAMPLING times the resolution in a window around the lips and averaged down: each pixel ends
    up with its true coverage.
    """
    factor = _MOUTH_SUPERSAMPLING
    outer = points[topology.LIPS_OUTER]
    margin = width + 1
    x0, y0 = np.maximum((outer.min(axis=0) >> _SHIFT) - margin, 0)
    x1, y1 = np.minimum((outer.max(axis=0) >> _SHIFT) + margin + 1, canvas.shape[::-1])
    if x1 <= x0 or y1 <= y0:
        return
    # Output pixel i covers subpixels factor*i .. factor*i + factor-1, whose centre is factor*i + (factor-1)/2.
    fine = factor * (points - np.array([x0, y0], np.int32) * _ONE) + (factor - 1) * _ONE // 2
    outer, inner = fine[topology.LIPS_OUTER], fine[topology.LIPS_INNER]
    window = np.zeros((factor * (y1 - y0), factor * (x1 - x0)), np.uint8)
    cv2.fillPoly(window, [outer], _LIPS, cv2.LINE_8, _SHIFT)
    cv2.polylines(window, [outer, inner], True, _LIP_LINE, factor * width, cv2.LINE_8, _SHIFT)
    cv2.fillPoly(window, [inner], _INNER_MOUTH, cv2.LINE_8, _SHIFT)
    canvas[y0:y1, x0:x1] = cv2.resize(window, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)


def _draw_eyes(canvas: np.ndarray, landmarks: np.ndarray, points: np.ndarray, scale: float, width: int) -> None:
    """Channel 2: eye openings, irises clipped to them (so lids cover them), brows as lines twice as thick."""
    cv2.fillPoly(canvas, [points[ring] for ring in EYE_RINGS], _EYE, cv2.LINE_AA, _SHIFT)
    if len(landmarks) >= topology.NUM_LANDMARKS_REFINED:
        irises = np.zeros_like(canvas)
        centres = landmarks[IRIS_POINTS[:, 0], :2]
        radii = np.linalg.norm(landmarks[IRIS_POINTS[:, 1:], :2] - centres[:, None], axis=2).mean(axis=1)
        fixed_radii = np.round(radii * scale * _ONE).astype(int)
        for centre, radius in zip(points[IRIS_POINTS[:, 0]].tolist(), fixed_radii.tolist()):
            cv2.circle(irises, tuple(centre), radius, _IRIS, -1, cv2.LINE_AA, _SHIFT)
        # Clip the irises to the eye openings: full inside, fading with the openings' anti-aliased rims.
        opening = cv2.convertScaleAbs(canvas, alpha=255 / _EYE)
        cv2.max(canvas, cv2.min(irises, opening), dst=canvas)
    cv2.polylines(canvas, list(points[BROW_SEGMENTS]), False, _BROW, 2 * width, cv2.LINE_AA, _SHIFT)


def visible_body_points(body: np.ndarray) -> np.ndarray:
    """(4,) bool: body points with finite coordinates and, where visibility is given, visibility >= 0.5."""
    visible = np.isfinite(body[:, :2]).all(axis=1)
    if body.shape[1] > 2:
        visible &= body[:, 2] >= _MIN_VISIBILITY  # False for a NaN visibility too
    return visible


def _draw_outline(canvas: np.ndarray, points: np.ndarray | None, body: np.ndarray, scale: float, width: int) -> None:
    """Channel 3: face oval and nose lines (when there is a face), then shoulders, neck and torso sides."""
    visible = visible_body_points(body)
    body_points = _to_fixed_point(np.where(visible[:, None], body[:, :2], 0.0), scale)
    segments = [body_points[[a, b]] for a, b in _BODY_SEGMENTS if visible[a] and visible[b]]
    if points is not None:
        cv2.polylines(canvas, [points[FACE_OVAL_RING]], True, _FACE_OVAL, width, cv2.LINE_AA, _SHIFT)
        cv2.polylines(canvas, list(points[NOSE_SEGMENTS]), False, _NOSE_LINE, width, cv2.LINE_AA, _SHIFT)
        segments += [np.stack([points[jaw], body_points[arm]]) for jaw, arm in _NECK_SEGMENTS if visible[arm]]
    if segments:
        cv2.polylines(canvas, segments, False, _BODY_LINE, width, cv2.LINE_AA, _SHIFT)


def render_conditioning(landmarks: np.ndarray, body: np.ndarray, size: int, source_size: int) -> np.ndarray:
    """One frame's conditioning image, (size, size, N_CHANNELS) uint8.

    `landmarks` (N, 3), N = 468 or 478, and `body` (4, 2) or (4, 3) (x, y[, visibility]: left shoulder,
    right shoulder, left hip, right hip) are pixels of a square crop of side `source_size`. Body points that
    are NaN or not visible are left out; face landmarks with any NaN (no face) leave the face channels empty.
    """
    landmarks = np.asarray(landmarks, np.float64)
    body = np.asarray(body, np.float64)
    scale = size / source_size
    width = line_width(size)
    # OpenCV draws into single-channel images; they are interleaved once at the end.
    channels = [np.zeros((size, size), np.uint8) for _ in range(N_CHANNELS)]
    has_face = bool(np.isfinite(landmarks).all())
    points = _to_fixed_point(landmarks[:, :2], scale) if has_face else None
    if has_face:
        channels[MESH] = _rasterize_mesh(points, *_mesh_shading(landmarks), size)
        _draw_mouth(channels[MOUTH], points, width)
        _draw_eyes(channels[EYES], landmarks, points, scale, width)
    _draw_outline(channels[OUTLINE], points, body, scale, width)
    return cv2.merge(channels)


def render_sequence(landmarks: np.ndarray, body: np.ndarray, size: int, source_size: int) -> np.ndarray:
    """Conditioning images of a whole sequence: landmarks (T, N, 3), body (T, 4, 2|3) -> (T, size, size, C)."""
    if len(landmarks) != len(body):
        raise ValueError(f"{len(landmarks)} frames of landmarks but {len(body)} of body points")
    frames = np.empty((len(landmarks), size, size, N_CHANNELS), np.uint8)
    for t, (face, torso) in enumerate(zip(landmarks, body)):
        frames[t] = render_conditioning(face, torso, size, source_size)
    return frames


# Preview colours: the mesh as grey, each cue channel painted over it in its own colour (RGB).
_PREVIEW_MESH_GAIN = 0.6
_PREVIEW_COLOURS = {MOUTH: (255, 60, 60), EYES: (60, 255, 90), OUTLINE: (70, 170, 255)}


def conditioning_to_rgb(cond: np.ndarray) -> np.ndarray:
    """(..., H, W, N_CHANNELS) uint8 -> (..., H, W, 3) uint8: a colour picture for previews and sample grids.

    The shaded mesh is the grey base; mouth (red), eyes and brows (green) and outline and body (blue) are
    blended over it with their channel value as opacity, so lips, inner mouth and lines stay distinguishable.
    """
    cond = np.asarray(cond)
    if cond.shape[-1] != N_CHANNELS:
        raise ValueError(f"expected {N_CHANNELS} channels, got shape {cond.shape}")
    picture = np.repeat(cond[..., MESH, None].astype(np.float32) * _PREVIEW_MESH_GAIN, 3, axis=-1)
    for channel, colour in _PREVIEW_COLOURS.items():
        opacity = cond[..., channel, None].astype(np.float32) / 255
        picture += opacity * (np.asarray(colour, np.float32) - picture)
    return np.round(picture).astype(np.uint8)
