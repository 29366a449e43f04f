"""The conditioning renderer: shapes, locality, lip opening, translation and scale consistency, z-order."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from mediapipe.python.solutions import face_mesh_connections
from scipy.spatial.transform import Rotation

from amg.conditioning import N_CHANNELS, conditioning_to_rgb, render_conditioning, render_sequence
from amg.conditioning.draw import EYES, MESH, MESH_TRIANGLES, MOUTH, OUTLINE, _mesh_shading, _to_fixed_point
from amg.tracking import topology

SOURCE = 256
NO_BODY = np.full((4, 3), np.nan)


@pytest.fixture(scope="module")
def face(tracked) -> np.ndarray:
    """The first tracked frame's landmarks: a frontal face with the lips together."""
    landmarks = tracked[0][0]
    assert topology.mouth_opening(landmarks[None, :, :2])[0] < 1.5
    return landmarks


def yawed(landmarks: np.ndarray, degrees: float) -> np.ndarray:
    """The face turned about the vertical axis through its centre."""
    centre = landmarks[: topology.NUM_LANDMARKS].mean(axis=0)
    rotation = Rotation.from_euler("y", degrees, degrees=True).as_matrix()
    return (landmarks - centre) @ rotation.T + centre


def lower_inner_lip(landmarks: np.ndarray) -> list[int]:
    """Inner-ring points of the lower lip: from the right inner corner 78 to the left one 308, via 14."""
    ring = list(topology.LIPS_INNER)
    lower = ring[ring.index(78) + 1 : ring.index(308)]
    assert topology.LOWER_LIP_INNER_MID in lower and topology.UPPER_LIP_INNER_MID not in lower
    return lower


def inner_mouth_pixels(landmarks: np.ndarray, body: np.ndarray) -> int:
    return int((render_conditioning(landmarks, body, 256, SOURCE)[..., MOUTH] == 255).sum())


def filled_hull(mask: np.ndarray) -> np.ndarray:
    """The convex hull of a mask's nonzero pixels, filled (the face with its eye and mouth holes closed)."""
    hull = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(cv2.findNonZero(mask.astype(np.uint8))), 1)
    return hull.astype(bool)


def test_mesh_triangles_are_the_faces_of_mediapipes_tessellation():
    edges = {frozenset(edge) for edge in face_mesh_connections.FACEMESH_TESSELATION}
    assert 850 <= len(MESH_TRIANGLES) <= 900
    assert len({frozenset(tri) for tri in MESH_TRIANGLES}) == len(MESH_TRIANGLES)
    for tri in MESH_TRIANGLES:
        assert all(frozenset(pair) in edges for pair in itertools.combinations(tri, 2))
    # A surface: every edge borders one face (the face oval, eye and lip holes) or two.
    triangle_edges = np.sort(MESH_TRIANGLES[:, [[0, 1], [1, 2], [0, 2]]].reshape(-1, 2), axis=1)
    assert np.unique(triangle_edges, axis=0, return_counts=True)[1].max() == 2
    # Euler characteristic of a disc with three holes (two eyes, mouth): V - E + F = 1 - 3.
    assert topology.NUM_LANDMARKS - len(edges) + len(MESH_TRIANGLES) == -2


@pytest.mark.parametrize("size", [64, 256])
def test_shapes_and_dtypes(face, tracked, size):
    cond = render_conditioning(face, tracked[1][0], size, SOURCE)
    assert cond.shape == (size, size, N_CHANNELS) and cond.dtype == np.uint8
    assert all(cond[..., channel].any() for channel in range(N_CHANNELS))

    sequence = render_sequence(tracked[0][:3], tracked[1][:3, :, :2], size, SOURCE)
    assert sequence.shape == (3, size, size, N_CHANNELS) and sequence.dtype == np.uint8
    np.testing.assert_array_equal(sequence[1], render_conditioning(tracked[0][1], tracked[1][1, :, :2], size, SOURCE))

    rgb = conditioning_to_rgb(sequence)
    assert rgb.shape == (3, size, size, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0], conditioning_to_rgb(sequence[0]))


@pytest.mark.parametrize("size", [128, 512])
def test_other_sizes_render(face, size):
    assert render_conditioning(face, NO_BODY, size, SOURCE).shape == (size, size, N_CHANNELS)


def test_nothing_is_drawn_outside_the_landmarks(face):
    cond = render_conditioning(face, NO_BODY, 256, SOURCE)
    x0, y0 = np.floor(face[:, :2].min(axis=0)).astype(int) - 3
    x1, y1 = np.ceil(face[:, :2].max(axis=0)).astype(int) + 3
    outside = np.ones((256, 256), bool)
    outside[y0:y1, x0:x1] = False
    assert not cond[outside].any()
    assert cond[~outside].any(axis=0).all()

    assert not render_conditioning(np.full_like(face, np.nan), NO_BODY, 256, SOURCE).any()


def test_mouth_channel_separates_lips_from_the_opening(face):
    lower = lower_inner_lip(face)
    closed = face.copy()
    # Lips pressed together: every inner-lip point on the line between the inner corners.
    inner = topology.LIPS_INNER
    closed[inner, 1] = np.interp(closed[inner, 0], face[[78, 308], 0], face[[78, 308], 1])
    assert inner_mouth_pixels(closed, NO_BODY) == 0
    mouth = render_conditioning(closed, NO_BODY, 256, SOURCE)[..., MOUTH]
    assert (mouth == 120).sum() > 100  # the lips are there, filled

    areas = []
    for drop in (0.0, 2.0, 4.0, 8.0):
        opened = closed.copy()
        opened[lower, 1] += drop
        areas.append(inner_mouth_pixels(opened, NO_BODY))
    assert areas[0] == 0 and all(a < b for a, b in zip(areas, areas[1:]))
    # Open by 8 px across a ~40 px wide mouth: a few hundred pixels of opening.
    mouth_width = topology.mouth_width(face[None])[0]
    assert 0.3 * 8 * mouth_width < areas[-1] < 8 * mouth_width


def test_translation_moves_the_image(face, tracked):
    body = tracked[1][0]
    shift = np.array([8.0, 8.0])
    reference = render_conditioning(face, body, 256, SOURCE)
    moved_face, moved_body = face.copy(), body.copy()
    moved_face[:, :2] += shift
    moved_body[:, :2] += shift
    moved = render_conditioning(moved_face, moved_body, 256, SOURCE)
    expected = np.roll(reference, (8, 8), axis=(0, 1))
    interior = np.s_[16:-16, 16:-16]
    assert np.abs(moved[interior].astype(int) - expected[interior]).mean() < 0.01
    assert (moved[interior] != expected[interior]).any(axis=-1).mean() < 0.001


def test_smaller_render_matches_the_larger_one_downsampled(face, tracked):
    body = tracked[1][0]
    large = render_conditioning(face, body, 256, SOURCE)
    small = render_conditioning(face, body, 128, SOURCE)
    downsampled = cv2.resize(large, (128, 128), interpolation=cv2.INTER_AREA)
    difference = np.abs(small.astype(int) - downsampled).mean(axis=(0, 1))
    assert (difference < 4).all(), difference
    # ...and rendering from a larger source crop only rescales the coordinates.
    doubled_face, doubled_body = face * 2, body.copy()
    doubled_body[:, :2] *= 2
    np.testing.assert_array_equal(render_conditioning(doubled_face, doubled_body, 256, 2 * SOURCE), large)


def test_body_lines_skip_missing_and_invisible_points(face, tracked):
    body = tracked[1][0]
    assert (body[:2, 2] > 0.5).all(), "both shoulders should be visible on this frame"
    with_body = render_conditioning(face, body, 256, SOURCE)[..., OUTLINE]
    without = render_conditioning(face, NO_BODY, 256, SOURCE)[..., OUTLINE]
    below_face = np.s_[int(face[:, 1].max()) + 4 :, :]
    assert with_body[below_face].any()
    assert not without[below_face].any()

    invisible = body.copy()
    invisible[:, 2] = 0.1
    np.testing.assert_array_equal(render_conditioning(face, invisible, 256, SOURCE)[..., OUTLINE], without)
    one_nan = body.copy()
    one_nan[1, :2] = np.nan  # right shoulder lost: the shoulder line and its neck line go, the left neck stays
    partial = render_conditioning(face, one_nan, 256, SOURCE)[..., OUTLINE]
    assert 0 < (partial[below_face] > 0).sum() < (with_body[below_face] > 0).sum()
    # Two-column body (no visibility) draws the same as a fully visible one.
    visible = body.copy()
    visible[:, 2] = 1.0
    np.testing.assert_array_equal(
        render_conditioning(face, body[:, :2], 256, SOURCE), render_conditioning(face, visible, 256, SOURCE)
    )


def test_irises_need_the_refined_mesh(face):
    refined = render_conditioning(face, NO_BODY, 256, SOURCE)[..., EYES]
    base = render_conditioning(face[: topology.NUM_LANDMARKS], NO_BODY, 256, SOURCE)[..., EYES]
    assert (refined == 255).sum() > 20
    assert base.max() < 255 and base.any()


def reference_painter(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Channel 0 the slow, obvious way: OpenCV fills one triangle at a time, farthest first."""
    shades, priority = _mesh_shading(landmarks)
    points = _to_fixed_point(landmarks[:, :2], size / SOURCE)
    image = np.zeros((size, size), np.uint8)
    for triangle in np.argsort(priority):
        cv2.fillConvexPoly(image, points[MESH_TRIANGLES[triangle]], int(shades[triangle]), cv2.LINE_8, 4)
    return image


def fraction_unlike(image: np.ndarray, reference: np.ndarray) -> float:
    """Share of pixels outside the reference's 3x3 neighbourhood range (forgives edge-pixel rules only)."""
    kernel = np.ones((3, 3), np.uint8)
    low, high = cv2.erode(reference, kernel).astype(int) - 1, cv2.dilate(reference, kernel).astype(int) + 1
    return float(((image < low) | (image > high)).mean())


@pytest.mark.parametrize("yaw", [-30.0, 30.0])
def test_mesh_is_painted_nearest_on_top(face, yaw):
    turned = yawed(face, yaw)
    mesh = render_conditioning(turned, NO_BODY, 256, SOURCE)[..., MESH]
    reference = reference_painter(turned, 256)
    assert fraction_unlike(mesh, reference) < 0.003
    # The check can tell: painting front to back (depth flipped) puts the far cheek over the nose.
    flipped = render_conditioning(turned * [1, 1, -1], NO_BODY, 256, SOURCE)[..., MESH]
    assert fraction_unlike(flipped, reference) > 0.005


def test_mesh_seen_from_behind_still_renders(face):
    turned = yawed(face, 180.0)
    mesh = render_conditioning(turned, NO_BODY, 256, SOURCE)[..., MESH]
    silhouette = filled_hull(mesh > 0)
    assert silhouette.sum() > 5000
    assert (mesh[silhouette] >= 40).mean() > 0.9  # all but the eye and mouth holes


def test_real_tracked_faces_render_plausibly(tracked):
    landmarks, body = tracked
    for cond in render_sequence(landmarks, body, 256, SOURCE):
        mesh, mouth, eyes = cond[..., MESH] > 0, cond[..., MOUTH] > 0, cond[..., EYES] > 0
        assert 0.05 < mesh.mean() < 0.40
        assert cond[..., MESH][mesh].min() >= 40
        face_region = filled_hull(mesh)
        assert mouth.any() and eyes.any()
        assert face_region[mouth].all() and face_region[eyes].all()
        # The brows and eyes sit above the mouth.
        assert np.nonzero(eyes)[0].mean() < np.nonzero(mouth)[0].mean()
    # The clip's speaker opens his mouth on some of these frames and not on others.
    openings = (render_sequence(landmarks, body, 256, SOURCE)[..., MOUTH] == 255).sum(axis=(1, 2))
    assert openings.min() < 20 and openings.max() > 100
