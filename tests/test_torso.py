"""Torso registration: known motions of a textured torso are recovered, body points follow them, and the warp
moves the torso with the shoulders."""

from __future__ import annotations

import cv2
import numpy as np

from amg.conditioning.warp import TargetMesh, shoulder_similarity
from amg.tracking import topology
from amg.tracking.torso import place_points, register_frames, registered_body, torso_body, torso_mask

SIZE = 256


def _texture(seed: int = 0) -> np.ndarray:
    """A smooth random grey texture (SIZE, SIZE) float32, like cloth at this scale."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.random((SIZE, SIZE)).astype(np.float32), (0, 0), 2.5)
    return cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)


def _motion(degrees: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    m = cv2.getRotationMatrix2D((SIZE / 2, SIZE * 0.8), degrees, scale)
    m[:, 2] += shift
    return m


def _fake_face(chin_y: float) -> np.ndarray:
    """Landmarks (478, 3) whose face oval is a circle above `chin_y` (only the oval and the chin are read)."""
    landmarks = np.zeros((topology.NUM_LANDMARKS + 10, 3))
    angles = np.linspace(0, 2 * np.pi, len(topology.FACE_OVAL), endpoint=False)
    landmarks[topology.FACE_OVAL, 0] = SIZE / 2 + 40 * np.cos(angles)
    landmarks[topology.FACE_OVAL, 1] = chin_y - 40 + 40 * np.sin(angles)
    landmarks[topology.CHIN, :2] = (SIZE / 2, chin_y)
    return landmarks


def test_the_mask_is_the_person_below_the_chin_away_from_the_face():
    matte = np.zeros((SIZE, SIZE), np.uint8)
    matte[60:, 40:216] = 255
    mask = torso_mask(matte, _fake_face(chin_y=140), 1.0)
    rows = np.flatnonzero(mask.any(axis=1))
    assert rows.min() >= int(140 + 0.04 * SIZE)  # nothing above the chin (plus its margin)
    assert mask[:, :40].sum() == 0 and mask[:, 216:].sum() == 0  # nothing outside the person
    assert mask[230, 128] == 1 and mask.mean() > 0.2


def test_known_affine_motions_of_a_textured_torso_are_recovered_within_half_a_pixel():
    reference = _texture()
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[150:240, 30:226] = 1
    motions = [_motion(0, 1, (0, 0)), _motion(1.5, 1.01, (2.3, -1.2)), _motion(3.0, 1.03, (4.1, -2.6))]
    motions.append(_motion(-2.0, 0.98, (-3.0, 1.7)))
    # Frame t shows the reference moved by motion t: frame(A x) = reference(x), which ECC's affine returns.
    frames = [cv2.warpAffine(reference, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR) for m in motions]
    registration = register_frames(reference, mask, frames)
    assert (registration.correlation > 0.99).all()
    ys, xs = np.nonzero(mask)
    points = np.c_[xs, ys].astype(np.float64)
    for found, true in zip(registration.affines, motions):
        error = np.linalg.norm(points @ (found[:, :2] - true[:, :2]).T + (found[:, 2] - true[:, 2]), axis=1)
        assert error.max() < 0.5


def test_a_failed_frame_keeps_the_previous_motion():
    reference = _texture()
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[150:240, 30:226] = 1
    moved = cv2.warpAffine(reference, _motion(1.0, 1.0, (2.0, 1.0)), (SIZE, SIZE))
    flat = np.full((SIZE, SIZE), 128, np.float32)  # nothing to align: ECC cannot converge
    registration = register_frames(reference, mask, [moved, flat])
    assert np.isnan(registration.correlation[1]) and np.isfinite(registration.correlation[0])
    np.testing.assert_array_equal(registration.affines[1], registration.affines[0])


def test_reference_points_are_placed_where_they_fit_all_noisy_detections():
    rng = np.random.default_rng(1)
    draws = rng.normal([0, 1, 0, 0], [2, 0.02, 4, 4], (200, 4))  # degrees, scale, shift
    motions = np.stack([_motion(a, s, (dx, dy)) for a, s, dx, dy in draws])
    true_point = np.array([180.0, 210.0])
    observed = motions[:, :, :2] @ true_point + motions[:, :, 2] + rng.normal(0, 3.0, (200, 2))
    valid = np.ones(200, bool)
    valid[::3] = False  # the pose model runs on some frames only
    placed = place_points(motions, observed, valid)
    assert np.linalg.norm(placed - true_point) < 0.6  # 3 px of detector noise averaged away
    assert np.isnan(place_points(motions, observed, np.zeros(200, bool))).all()


def test_body_points_follow_the_torso_and_a_lost_registration_keeps_the_pose_model():
    from amg.tracking.torso import TorsoRegistration

    t = 50
    rng = np.random.default_rng(2)
    motions = np.stack([_motion(0.0, 1.0, (dx, 0.0)) for dx in np.linspace(0, 10, t)])
    registration = TorsoRegistration(motions, np.ones(t))
    reference = np.array([[200.0, 200.0], [56.0, 200.0], [190.0, 330.0], [66.0, 330.0]])  # hips below the crop
    truth = reference[None] + motions[:, None, :, 2]
    detected = np.concatenate([truth + rng.normal(0, 3, truth.shape), np.ones((t, 4, 1))], axis=2)
    detected[:, 2:, 2] = 0.1  # hips: not visible
    smoothed = detected.copy()
    body = registered_body(smoothed, detected, np.ones(t, bool), registration)
    np.testing.assert_allclose(body[:, :2, :2], truth[:, :2], atol=1.5)  # the detections err 3 px per frame
    np.testing.assert_array_equal(body[:, 2:], smoothed[:, 2:])  # never seen: the smoothed track stays
    np.testing.assert_array_equal(body[:, :, 2], smoothed[:, :, 2])  # visibility is the pose model's
    kept, _ = torso_body(smoothed, detected, np.ones(t, bool), None, SIZE)
    assert kept is smoothed
    lost = TorsoRegistration(motions * np.array([[1, 1, 8.0]]), np.ones(t))  # drifted far from the detections
    kept, stats = torso_body(smoothed, detected, np.ones(t, bool), lost, SIZE)
    assert kept is smoothed and stats["registered"] is False


def test_the_warp_moves_the_torso_with_the_shoulders(tracked):
    """The face still, the body moved by a similarity: below the shoulders each pixel reads the source at the
    similarity's inverse (within half a pixel), so shirt and collar move as one piece."""
    landmarks, body = tracked[0][0], tracked[1][0]
    m = cv2.getRotationMatrix2D(tuple(body[:2, :2].mean(axis=0)), 2.0, 1.02)
    m[:, 2] += (3.0, 2.0)
    target_body = body.copy()
    target_body[:, :2] = body[:, :2] @ m[:, :2].T + m[:, 2]
    backward = TargetMesh(landmarks, target_body, SIZE, SIZE).maps([(landmarks, body)])[0]
    inverse = cv2.invertAffineTransform(m)
    bottom = np.c_[np.arange(SIZE), np.full(SIZE, SIZE - 1)].astype(np.float64)  # the crop's last row
    expected = (bottom + 0.5) @ inverse[:, :2].T + inverse[:, 2] - 0.5
    error = np.linalg.norm(backward[SIZE - 1] - expected, axis=1)
    assert error.max() < 0.5
    # The similarity the warp uses is the one the shoulders define.
    found = shoulder_similarity(target_body[[1, 0], :2], body[[1, 0], :2])
    np.testing.assert_allclose(found, inverse, atol=1e-9)
