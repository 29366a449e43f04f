"""Topology index sets, robust similarity fits, neutral shape, head pose, PCA expression model, gap filling."""

from __future__ import annotations

import numpy as np
import pytest
from mediapipe.python.solutions import face_mesh_connections as mp_connections
from scipy.spatial.transform import Rotation

from amg.tracking import topology
from amg.tracking.fitting import (
    ExpressionModel,
    HeadPose,
    build_neutral_shape,
    decode,
    encode,
    fit_expression_model,
    fit_head_pose,
    head_frame_residuals,
    interpolate_invalid,
    interpolate_pose,
    interpolate_rotations,
    reconstruct_landmarks,
    reconstruction_error,
    rigid_prior_weights,
    robust_similarity,
    rotations_from_euler_degrees,
    rotations_from_rotvecs,
    umeyama,
)

from conftest import SHARED_DATA

N_POINTS = 478
PORTRAIT = SHARED_DATA / "image" / "obama_portrait.jpg"


def face_cloud(rng: np.random.Generator) -> np.ndarray:
    """A face-sized cloud (pixels, radius ~ 80) already in the anatomical head frame.

    Points lie on the camera-facing half of an ellipsoid; the few anatomical points the head frame is built
    from are placed where they are on a face (eyes level, forehead above the chin, all in the x-y plane).
    """
    directions = rng.normal(size=(N_POINTS, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    directions[:, 2] = -np.abs(directions[:, 2])
    cloud = directions * (70.0, 95.0, 45.0)
    cloud[topology.RIGHT_EYE_OUTER] = (-45.0, -20.0, -20.0)
    cloud[topology.LEFT_EYE_OUTER] = (45.0, -20.0, -20.0)
    cloud[topology.FOREHEAD_TOP] = (0.0, -95.0, -15.0)
    cloud[topology.CHIN] = (0.0, 95.0, -15.0)
    return cloud


def random_poses(rng: np.random.Generator, n_frames: int, max_degrees: float = 30.0):
    angles = rng.uniform(-max_degrees, max_degrees, size=(n_frames, 3))
    return rng.uniform(0.8, 1.3, n_frames), rotations_from_euler_degrees(angles), rng.uniform(100, 160, (n_frames, 3))


def rotation_error_degrees(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(Rotation.from_matrix(np.swapaxes(a, -1, -2) @ b).magnitude())


def add_gross_outliers(rng: np.random.Generator, points: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Move a random `fraction` of each frame's points 20-60 px in a random direction."""
    points = points.copy()
    n_frames, n_points, _ = points.shape
    for frame in points:
        chosen = rng.choice(n_points, int(fraction * n_points), replace=False)
        offsets = rng.normal(size=(len(chosen), 3))
        offsets *= rng.uniform(20, 60, (len(chosen), 1)) / np.linalg.norm(offsets, axis=1, keepdims=True)
        frame[chosen] += offsets
    return points


# ---------------------------------------------------------------------------------------------------------- topology


def test_lip_rings_split_mediapipe_lips_into_outer_and_inner_closed_contours():
    edges = {frozenset(e) for e in mp_connections.FACEMESH_LIPS}
    assert len(topology.LIPS_OUTER) == len(topology.LIPS_INNER) == 20
    assert set(topology.LIPS_OUTER).isdisjoint(topology.LIPS_INNER)
    assert set(topology.LIPS_OUTER) | set(topology.LIPS_INNER) == set(topology.LIPS)
    for ring in (topology.LIPS_OUTER, topology.LIPS_INNER):
        # Consecutive entries (and last-to-first) are mesh edges: a closed polygon in drawing order.
        assert all(frozenset((a, b)) in edges for a, b in zip(ring, np.roll(ring, -1)))
    assert {topology.MOUTH_RIGHT_CORNER, topology.MOUTH_LEFT_CORNER, 0, 17} <= set(topology.LIPS_OUTER)
    assert {topology.UPPER_LIP_INNER_MID, topology.LOWER_LIP_INNER_MID, 78, 308} <= set(topology.LIPS_INNER)


def test_region_sets_come_from_mediapipe_and_rigid_points_avoid_expressive_regions():
    assert topology.NUM_LANDMARKS == 468 and topology.NUM_LANDMARKS_REFINED == 478
    assert list(topology.IRISES) == list(range(468, 478))
    assert {topology.RIGHT_EYE_OUTER, 133} <= {i for e in mp_connections.FACEMESH_RIGHT_EYE for i in e}
    assert {topology.LEFT_EYE_OUTER, 362} <= {i for e in mp_connections.FACEMESH_LEFT_EYE for i in e}
    assert {topology.FOREHEAD_TOP, topology.CHIN} <= set(topology.FACE_OVAL)
    assert set(topology.RIGID).isdisjoint(topology.LIPS)
    assert set(topology.RIGID).isdisjoint(topology.JAW)
    assert set(topology.RIGID).isdisjoint(topology.BROWS)
    upper_oval = set(topology.FACE_OVAL) & set(topology.RIGID)
    assert set(topology.JAW) | upper_oval == set(topology.FACE_OVAL)
    assert max(topology.RIGID) < topology.NUM_LANDMARKS
    weights = rigid_prior_weights(N_POINTS)
    assert weights[topology.RIGID].min() > 10 * weights[topology.LIPS].max()
    assert weights[topology.IRISES].max() == 0
    assert rigid_prior_weights(topology.NUM_LANDMARKS).shape == (468,)


def test_mouth_opening_and_width_measure_lip_gaps():
    landmarks = np.zeros((2, N_POINTS, 3))
    landmarks[:, topology.MOUTH_LEFT_CORNER, 0] = 50.0
    lower_inner = topology.INNER_LIP_VERTICAL_PAIRS[:, 1]
    landmarks[1, lower_inner, 1] = 12.0
    np.testing.assert_allclose(topology.mouth_opening(landmarks), [0.0, 12.0])
    np.testing.assert_allclose(topology.mouth_width(landmarks), [50.0, 50.0])


# ---------------------------------------------------------------------------------------------------------- umeyama


def test_umeyama_recovers_exact_similarity_and_ignores_zero_weight_points():
    rng = np.random.default_rng(0)
    src = face_cloud(rng)
    scale, rotation, translation = random_poses(rng, 4)
    dst = scale[:, None, None] * src @ np.swapaxes(rotation, 1, 2) + translation[:, None]
    weights = np.ones(N_POINTS)
    weights[:50] = 0.0
    dst[:, :50] += 1000.0  # garbage where the weight is zero
    s, r, t = umeyama(src, dst, weights)
    np.testing.assert_allclose(s, scale, rtol=1e-10)
    np.testing.assert_allclose(r, rotation, atol=1e-10)
    np.testing.assert_allclose(t, translation, atol=1e-8)
    s0, r0, t0 = umeyama(src, dst[0], weights)  # unbatched in, unbatched out
    assert np.ndim(s0) == 0 and r0.shape == (3, 3) and t0.shape == (3,)
    np.testing.assert_allclose(r0, rotation[0], atol=1e-10)


def test_umeyama_returns_a_proper_rotation_for_mirrored_points():
    rng = np.random.default_rng(1)
    src = face_cloud(rng)
    mirrored = src * (-1.0, 1.0, 1.0)
    s, r, _ = umeyama(src, mirrored)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert s > 0


def test_robust_similarity_ignores_gross_outliers_that_bias_plain_umeyama():
    rng = np.random.default_rng(2)
    src = face_cloud(rng)
    n_frames = 30
    scale, rotation, translation = random_poses(rng, n_frames)
    clean = scale[:, None, None] * src @ np.swapaxes(rotation, 1, 2) + translation[:, None]
    dst = add_gross_outliers(rng, clean + rng.normal(0, 0.5, clean.shape))
    prior = rigid_prior_weights(N_POINTS)

    s, r, t = robust_similarity(src, dst, prior)
    assert rotation_error_degrees(r, rotation).max() < 1.0
    assert np.abs(s / scale - 1).max() < 0.01
    assert np.linalg.norm(t - translation, axis=1).max() < 0.5

    s_ls, r_ls, t_ls = umeyama(src, dst)
    assert rotation_error_degrees(r_ls, rotation).max() > 2 * rotation_error_degrees(r, rotation).max()
    translation_error = np.linalg.norm(t - translation, axis=1).max()
    assert np.linalg.norm(t_ls - translation, axis=1).max() > 2 * translation_error


# ---------------------------------------------------------------------------------------------------------- neutral, pose


def synthetic_video(rng: np.random.Generator, n_frames: int = 120, noise: float = 0.3):
    """Landmarks of a face cloud talking (mouth/jaw modes), posed per frame, with noise and NaN frames."""
    shape = face_cloud(rng)
    moving = np.concatenate([topology.LIPS, topology.JAW])
    modes = np.zeros((3, N_POINTS, 3))
    modes[:, moving] = rng.normal(0, 1, (3, len(moving), 3))
    # Half the frames neutral, the rest a random expression: the per-point median is the neutral face.
    coeffs = rng.normal(0, 6, (n_frames, 3)) * (rng.random((n_frames, 1)) < 0.5)
    head_shapes = shape + np.einsum("tk,knd->tnd", coeffs, modes)
    scale, rotation, translation = random_poses(rng, n_frames, max_degrees=25)
    landmarks = scale[:, None, None] * head_shapes @ np.swapaxes(rotation, 1, 2) + translation[:, None]
    landmarks += rng.normal(0, noise, landmarks.shape)
    valid = rng.random(n_frames) > 0.1
    valid[[0, -1]] = True
    landmarks[~valid] = np.nan  # what capture writes for frames without a face
    return shape, landmarks, valid, (scale, rotation, translation)


def test_neutral_shape_recovers_the_face_up_to_similarity_in_the_anatomical_frame():
    rng = np.random.default_rng(3)
    shape, landmarks, valid, _ = synthetic_video(rng)
    neutral = build_neutral_shape(landmarks, valid)

    np.testing.assert_allclose(neutral.mean(axis=0), 0.0, atol=1e-12)
    assert np.sqrt((neutral**2).sum(axis=1).mean()) == pytest.approx(1.0)
    s, r, t = umeyama(neutral, shape)
    rms_radius = np.sqrt(((shape - shape.mean(axis=0)) ** 2).sum(axis=1).mean())
    residual = np.linalg.norm(s * neutral @ r.T + t - shape, axis=1)
    assert residual.max() < 0.01 * rms_radius
    # The shape was built in the anatomical frame, so the neutral needs no rotation to match it.
    assert rotation_error_degrees(r, np.eye(3)) < 0.5
    assert s == pytest.approx(rms_radius, rel=0.005)


def test_head_pose_recovers_generated_angles_and_interpolates_missing_frames():
    rng = np.random.default_rng(4)
    shape, landmarks, valid, (scale, rotation, translation) = synthetic_video(rng)
    neutral = build_neutral_shape(landmarks, valid)
    pose = fit_head_pose(landmarks, valid, neutral)

    assert np.array_equal(pose.valid, valid)
    rms_radius = np.sqrt(((shape - shape.mean(axis=0)) ** 2).sum(axis=1).mean())
    expected = Rotation.from_matrix(rotation).as_euler("YXZ", degrees=True)
    np.testing.assert_allclose(pose.euler_degrees()[valid], expected[valid], atol=0.5)
    np.testing.assert_allclose(pose.scales[valid], scale[valid] * rms_radius, rtol=0.005)
    # Every frame gets a finite pose; a missing frame lies between its neighbours.
    assert np.isfinite(pose.rotations).all() and np.isfinite(pose.translations).all()
    gap = np.flatnonzero(~valid)[0]
    before, after = np.flatnonzero(valid[:gap])[-1], gap + np.flatnonzero(valid[gap:])[0]
    lo, hi = (
        np.minimum(pose.translations[before], pose.translations[after]),
        np.maximum(pose.translations[before], pose.translations[after]),
    )
    assert np.all((pose.translations[gap] >= lo - 1e-9) & (pose.translations[gap] <= hi + 1e-9))
    np.testing.assert_allclose(rotations_from_rotvecs(pose.rotvecs()), pose.rotations, atol=1e-12)
    round_trip = HeadPose.from_rotvecs(pose.rotvecs(), pose.translations, pose.scales, pose.valid)
    np.testing.assert_allclose(round_trip.rotations, pose.rotations, atol=1e-12)


def test_euler_convention_signs_follow_the_documented_image_motion():
    nose = np.array([0.0, 0.0, -1.0])  # in front of the face, towards the camera
    yaw, pitch, roll = rotations_from_euler_degrees(np.array([[20, 0, 0], [0, 20, 0], [0, 0, 20]]))
    assert (yaw @ nose)[0] < 0  # yaw > 0: nose to the image's left
    assert (pitch @ nose)[1] > 0  # pitch > 0: nose down
    assert (roll @ np.array([1.0, 0.0, 0.0]))[1] > 0  # roll > 0: clockwise on screen (y down)
    pose = HeadPose(np.stack([yaw, pitch, roll]), np.zeros((3, 3)), np.ones(3), np.ones(3, bool))
    np.testing.assert_allclose(pose.euler_degrees(), np.diag([20.0, 20.0, 20.0]), atol=1e-9)


# ---------------------------------------------------------------------------------------------------------- expression


def low_rank_residuals(rng: np.random.Generator, n_frames: int, k_true: int, noise: float):
    modes = np.linalg.qr(rng.normal(size=(N_POINTS * 3, k_true)))[0].T
    coeffs = rng.normal(size=(n_frames, k_true)) * np.linspace(5.0, 1.0, k_true)
    mean = rng.normal(0, 0.1, N_POINTS * 3)
    flat = mean + coeffs @ modes + rng.normal(0, noise, (n_frames, N_POINTS * 3))
    return flat.reshape(n_frames, N_POINTS, 3)


def test_pca_captures_a_low_rank_expression_space_to_the_noise_level():
    rng = np.random.default_rng(5)
    noise = 0.01
    residuals = low_rank_residuals(rng, 300, 5, noise)
    neutral = rng.normal(size=(N_POINTS, 3))

    full = fit_expression_model(residuals, neutral, k=48)
    assert full.n_components == 48
    assert full.explained_variance_ratio[:5].sum() > 0.99
    assert np.all(np.diff(full.explained_variance) <= 0)

    model = fit_expression_model(residuals, neutral, k=5)
    np.testing.assert_allclose(model.basis @ model.basis.T, np.eye(5), atol=1e-10)
    coeffs = encode(model, residuals)
    assert coeffs.shape == (300, 5)
    error = decode(model, coeffs) - neutral - residuals
    assert np.sqrt((error**2).mean()) < 1.05 * noise
    model4 = fit_expression_model(residuals, neutral, k=4)
    error4 = decode(model4, encode(model4, residuals)) - neutral - residuals
    assert np.sqrt((error4**2).mean()) > 2 * noise  # one mode short leaves its variance behind


def test_pca_components_are_capped_by_rank_and_ignore_invalid_frames():
    rng = np.random.default_rng(6)
    residuals = low_rank_residuals(rng, 6, 5, 0.0)
    residuals[2] = np.nan
    valid = np.ones(6, bool)
    valid[2] = False
    model = fit_expression_model(residuals, np.zeros((N_POINTS, 3)), k=48, valid=valid)
    assert model.n_components == 4  # 5 frames, centred: rank 4
    assert np.isfinite(model.basis).all()


def test_expression_model_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    model = fit_expression_model(low_rank_residuals(rng, 40, 5, 0.01), rng.normal(size=(N_POINTS, 3)), k=8)
    path = tmp_path / "sub" / "expression.npz"
    model.save(path)
    loaded = ExpressionModel.load(path)
    assert [p.name for p in path.parent.iterdir()] == ["expression.npz"]  # no temporary left behind
    for name in ("neutral", "mean", "basis", "explained_variance"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert loaded.total_variance == model.total_variance


def fit_video(landmarks: np.ndarray, valid: np.ndarray, k: int):
    """The fitting chain as the preprocess stage runs it: neutral, pose, PCA, coefficients filled over gaps."""
    neutral = build_neutral_shape(landmarks, valid)
    pose = fit_head_pose(landmarks, valid, neutral)
    residuals = head_frame_residuals(landmarks, pose, neutral)
    model = fit_expression_model(residuals, neutral, k, valid=valid)
    coeffs = interpolate_invalid(encode(model, residuals), valid)
    return model, pose, coeffs


def test_fitted_model_reconstructs_tracked_landmarks_to_about_the_noise_level():
    rng = np.random.default_rng(8)
    noise = 0.3
    _, landmarks, valid, _ = synthetic_video(rng, n_frames=100, noise=noise)
    model, pose, coeffs = fit_video(landmarks, valid, k=48)
    assert model.n_components == 48
    assert np.isfinite(coeffs).all()  # frames without a face were interpolated

    error = reconstruction_error(reconstruct_landmarks(model, pose, coeffs), landmarks, valid)
    # 2-D noise distance has mean 1.25 * noise; the 48 components also absorb a little of the noise.
    assert error["mean_px"] < 1.3 * noise
    assert error["lips_mean_px"] < 1.3 * noise
    assert error["p95_px"] < 3.0 * noise
    assert error["lips_p95_px"] < 3.0 * noise
    model2, pose2, coeffs2 = fit_video(landmarks, valid, k=2)  # fewer modes than the 3 true ones
    error2 = reconstruction_error(reconstruct_landmarks(model2, pose2, coeffs2), landmarks, valid)
    assert error2["lips_mean_px"] > 2 * error["lips_mean_px"]


# ---------------------------------------------------------------------------------------------------------- gaps


def test_interpolate_invalid_fills_gaps_linearly_and_holds_the_ends():
    values = np.array([np.nan, 0.0, np.nan, np.nan, 3.0, np.nan])
    valid = ~np.isnan(values)
    np.testing.assert_allclose(interpolate_invalid(values, valid), [0, 0, 1, 2, 3, 3])
    tracks = np.stack([values, 10 * values], axis=1)[:, None, :].repeat(4, axis=1)  # (T, 4, 2)
    filled = interpolate_invalid(tracks, valid)
    assert filled.shape == tracks.shape
    np.testing.assert_allclose(filled[:, 2, 1], [0, 0, 10, 20, 30, 30])


def test_interpolate_rotations_slerps_across_a_gap():
    angles = np.radians([0.0, 0.0, 0.0, 90.0, 0.0])
    rotations = Rotation.from_rotvec(angles[:, None] * [0.0, 0.0, 1.0]).as_matrix()
    valid = np.array([True, False, False, True, False])
    rotations[1] = np.nan  # never read
    filled = interpolate_rotations(rotations, valid)
    np.testing.assert_allclose(Rotation.from_matrix(filled).as_rotvec()[:, 2], np.radians([0, 30, 60, 90, 90]))
    pose = HeadPose(rotations, np.zeros((5, 3)), np.array([1.0, np.nan, np.nan, 4.0, np.nan]), valid)
    np.testing.assert_allclose(interpolate_pose(pose).scales, [1.0, 2 ** (2 / 3), 2 ** (4 / 3), 4.0, 4.0])


# ---------------------------------------------------------------------------------------------------------- real face


@pytest.mark.skipif(not PORTRAIT.exists(), reason=f"real portrait not available at {PORTRAIT}")
def test_real_mediapipe_landmarks_fit_the_topology_and_a_frontal_portrait_has_small_angles():
    import cv2
    from mediapipe.python.solutions import face_mesh

    image = cv2.cvtColor(cv2.imread(str(PORTRAIT)), cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    with face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1) as mesh:
        result = mesh.process(image)
    assert result.multi_face_landmarks, "MediaPipe found no face in the portrait"
    points = result.multi_face_landmarks[0].landmark
    landmarks = np.array([[(p.x * width, p.y * height, p.z * width) for p in points]])
    assert landmarks.shape == (1, topology.NUM_LANDMARKS_REFINED, 3)
    assert max(topology.LIPS.max(), topology.RIGID.max(), topology.FACE_OVAL.max()) < landmarks.shape[1]

    face_height = np.linalg.norm(landmarks[0, topology.CHIN] - landmarks[0, topology.FOREHEAD_TOP])
    opening = topology.mouth_opening(landmarks)[0]
    assert 0 <= opening < 0.15 * face_height
    assert topology.mouth_width(landmarks)[0] > opening
    # Subject's right eye and mouth corner appear on the image's left.
    assert landmarks[0, topology.RIGHT_EYE_OUTER, 0] < landmarks[0, topology.LEFT_EYE_OUTER, 0]
    assert landmarks[0, topology.MOUTH_RIGHT_CORNER, 0] < landmarks[0, topology.MOUTH_LEFT_CORNER, 0]

    valid = np.ones(1, bool)
    neutral = build_neutral_shape(landmarks, valid)
    pose = fit_head_pose(landmarks, valid, neutral)
    assert np.abs(pose.euler_degrees()).max() < 10.0
    assert pose.scales[0] == pytest.approx(0.3 * face_height, rel=0.5)  # RMS radius ~ a third of face height
