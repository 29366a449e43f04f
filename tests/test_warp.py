"""The landmark mesh warp: known motions are recovered, landmarks land on landmarks, every pixel is mapped."""

from __future__ import annotations

import cv2
import numpy as np

from amg.conditioning.warp import FACE_TRIANGLES, N_FACE, TargetMesh, fixed_point, hole_strip, remap, warp_frames
from amg.tracking import topology

SIZE = 256


def _affine(degrees: float, scale: float, shift: tuple[float, float], centre: np.ndarray) -> np.ndarray:
    """2x3 matrix of a rotation and scale about `centre`, then a shift (continuous pixel coordinates)."""
    m = cv2.getRotationMatrix2D(tuple(float(c) for c in centre), degrees, scale)
    m[:, 2] += shift
    return m


def _apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    out = points.copy()
    out[..., :2] = points[..., :2] @ m[:, :2].T + m[:, 2]
    return out


def _face_interior(landmarks: np.ndarray, erode: int = 4) -> np.ndarray:
    """(SIZE, SIZE) bool: pixel centres well inside the face oval."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    hull = cv2.convexHull(np.round(landmarks[topology.FACE_OVAL, :2] - 0.5).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return cv2.erode(mask, np.ones((2 * erode + 1,) * 2, np.uint8)).astype(bool)


def test_a_known_affine_motion_of_the_face_is_recovered_within_half_a_pixel(tracked):
    landmarks, body = tracked[0][0], tracked[1][0]
    centre = landmarks[:N_FACE, :2].mean(axis=0)
    m = _affine(4.0, 1.05, (3.3, -2.1), centre)
    target, target_body = _apply(m, landmarks), _apply(m, body)
    backward = TargetMesh(target, target_body, SIZE, SIZE).maps([(landmarks, body)])[0]

    # Expected: pixel centre i (continuous i + 0.5) reads the source at M^-1 (i + 0.5), in index units - 0.5.
    inverse = cv2.invertAffineTransform(m)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) + 0.5
    expected = (
        np.stack(
            [
                inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2],
                inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2],
            ],
            axis=-1,
        )
        - 0.5
    )
    inside = _face_interior(target)
    assert inside.sum() > 5000  # a real face, not a few pixels
    error = np.linalg.norm(backward[inside] - expected[inside], axis=-1)
    assert error.max() < 0.5 and error.mean() < 0.1

    # And in pixels: a smooth texture warped by the mesh matches the same texture moved by OpenCV.
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (SIZE, SIZE, 3)).astype(np.float32), (0, 0), 3)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    warped = warp_frames(texture[None], landmarks[None], body[None], target, target_body, SIZE)[0]
    moved = cv2.warpAffine(texture, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    diff = np.abs(warped.astype(int) - moved.astype(int))[inside]
    assert diff.mean() < 1.5


def test_landmarks_land_on_landmarks_between_two_real_frames(tracked):
    """Warping frame a onto frame b's landmarks: the map at each of b's mesh points reads a's same point."""
    (landmarks, body) = tracked
    a, b = 0, 3
    backward = TargetMesh(landmarks[b], body[b], SIZE, SIZE).maps([(landmarks[a], body[a])])[0]
    at = landmarks[b, :N_FACE, :2] - 0.5  # OpenCV pixel coordinates of b's points
    read = cv2.remap(backward, at[:, 0].astype(np.float32)[None], at[:, 1].astype(np.float32)[None], cv2.INTER_LINEAR)[
        0
    ]
    error = np.linalg.norm(read - (landmarks[a, :N_FACE, :2] - 0.5), axis=-1)
    assert np.median(error) < 0.1 and np.percentile(error, 95) < 0.5


def test_every_pixel_is_covered_and_the_crop_border_stays_put(tracked):
    landmarks, body = tracked[0][2], tracked[1][2]
    mesh = TargetMesh(landmarks, body, SIZE, SIZE)
    assert (mesh.index >= 0).all()
    # Moving the face moves the face, not the crop's corners.
    shifted = landmarks.copy()
    shifted[:, :2] += (6.0, 4.0)
    backward = mesh.maps([(shifted, body)])[0]
    corners = backward[[0, 0, -1, -1], [0, -1, 0, -1]]
    np.testing.assert_allclose(corners, [[0, 0], [SIZE - 1, 0], [0, SIZE - 1], [SIZE - 1, SIZE - 1]], atol=1e-3)
    nose = np.round(landmarks[topology.NOSE_TIP, :2] - 0.5).astype(int)
    np.testing.assert_allclose(backward[nose[1], nose[0]] - nose, (6.0, 4.0), atol=0.3)


def test_hole_strips_close_the_mouth_and_eyes_without_new_points(tracked):
    strip = hole_strip(topology.LIPS_INNER, 78, 308)
    assert len(strip) == len(topology.LIPS_INNER) - 2  # a ring of n points zips into n - 2 triangles
    assert set(np.unique(strip)) == set(topology.LIPS_INNER.tolist())
    assert FACE_TRIANGLES.max() < N_FACE
    # Open the mouth: the pixels between the lips belong to the strip, which stretches the lips' own pixels.
    landmarks, body = tracked[0][0].copy(), tracked[1][0]
    slit = (landmarks[13, 1] + landmarks[14, 1]) / 2
    jaw = landmarks[:, 1] > slit  # the lower lip, chin and jaw drop together
    jaw[[78, 308]] = False  # the corners stay
    landmarks[jaw, 1] += 10.0
    mesh = TargetMesh(landmarks, body, SIZE, SIZE)
    centre = np.round((landmarks[13, :2] + landmarks[14, :2]) / 2 - 0.5).astype(int)
    triangle = mesh.triangles[mesh.index[centre[1], centre[0]]]
    assert set(triangle.tolist()) <= set(topology.LIPS_INNER.tolist())


def test_maps_are_each_pixels_triangle_affine_and_fixed_point_maps_resample_identically(tracked):
    """The maps' coefficient-plane gather is the per-pixel affine of the triangle covering each pixel, to the bit;
    a map converted once to OpenCV's fixed-point form resamples exactly as the float map does."""
    landmarks, body = tracked[0], tracked[1]
    mesh = TargetMesh(landmarks[2], body[2], SIZE, SIZE)
    sources = [(landmarks[i], body[i]) for i in (0, 5)]
    maps = mesh.maps(sources)
    out = np.full_like(maps, np.nan)
    assert mesh.maps(sources, out=out) is out
    np.testing.assert_array_equal(out, maps)
    # The reference: each pixel's 2x3 affine (that of the triangle covering it) applied to its centre.
    per_pixel = mesh.affines(sources).take(mesh.index, axis=1)  # (K, H, W, 6)
    x = np.arange(SIZE, dtype=np.float32)
    y = x[:, None]
    np.testing.assert_array_equal(maps[..., 0], per_pixel[..., 0] * x + per_pixel[..., 1] * y + per_pixel[..., 2])
    np.testing.assert_array_equal(maps[..., 1], per_pixel[..., 3] * x + per_pixel[..., 4] * y + per_pixel[..., 5])
    rng = np.random.default_rng(0)
    for channels, interpolation in ((3, cv2.INTER_CUBIC), (4, cv2.INTER_LINEAR), (1, cv2.INTER_LINEAR)):
        image = rng.integers(0, 256, (SIZE, SIZE, channels), np.uint8)
        fixed = fixed_point(maps[0])
        np.testing.assert_array_equal(remap(image, fixed, interpolation), remap(image, maps[0], interpolation))
