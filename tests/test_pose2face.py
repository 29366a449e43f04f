"""head pose → face (amg.motion.pose2face): recovers a known linear coupling, leaves the lips alone, does not
extrapolate, and its file loads only as what it wrote."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from amg.config import Pose2FaceConfig
from amg.core.errors import DamagedFileError
from amg.motion.body import head_features
from amg.motion.pose.inference import PoseSequence
from amg.motion.pose2face import Pose2Face, lip_distance_gain
from amg.tracking import fitting, topology

N_POINTS, N_FRAMES, SIZE = 478, 400, 256
LIPS = np.asarray(topology.LIPS)


def synthetic_face(rng: np.random.Generator) -> fitting.ExpressionModel:
    """A face whose lips lie within 0.2 of (0, -0.5) and whose other points are spread over [-1, 1]²; the
    identity basis, so coefficients are the shape offsets themselves."""
    neutral = rng.uniform(-1, 1, (N_POINTS, 3))
    angle = np.linspace(0, 2 * np.pi, len(LIPS), endpoint=False)
    neutral[LIPS, :2] = np.stack([0.2 * np.cos(angle), -0.5 + 0.2 * np.sin(angle)], axis=1)
    dim = 3 * N_POINTS
    return fitting.ExpressionModel(neutral, np.zeros(dim), np.eye(dim), np.ones(dim), float(dim))


def synthetic_tracks(rng: np.random.Generator, face: fitting.ExpressionModel, weights: np.ndarray):
    """Tracks whose face away from the lips moves linearly with the head (by `weights`, on standardised pose
    features), and whose lips move at random (speech, which the head does not predict)."""
    poses = PoseSequence(
        rng.normal(0, 0.1, (N_FRAMES, 3)),
        np.concatenate([rng.normal(128, 5, (N_FRAMES, 2)), np.zeros((N_FRAMES, 1))], axis=1),
        rng.normal(60, 2, N_FRAMES),
    )
    x = head_features(poses.rotation, poses.translation, poses.scale, SIZE)
    standard = (x - x.mean(0)) / x.std(0)
    offsets = (standard @ weights).reshape(N_FRAMES, N_POINTS, 3)
    offsets[:, LIPS] = rng.normal(0, 0.05, (N_FRAMES, len(LIPS), 3))
    expression = offsets.reshape(N_FRAMES, -1)
    tracks = SimpleNamespace(
        rotation=poses.rotation, translation=poses.translation, scale=poses.scale, size=SIZE, expression=expression
    )
    return tracks, poses, offsets


@pytest.fixture(scope="module")
def coupled():
    rng = np.random.default_rng(0)
    face = synthetic_face(rng)
    weights = rng.normal(0, 0.01, (6, 3 * N_POINTS))
    tracks, poses, offsets = synthetic_tracks(rng, face, weights)
    model = Pose2Face.fit(tracks, face, slice(0, N_FRAMES), Pose2FaceConfig(ridge=1e-6))
    return face, poses, offsets, model


def test_the_gain_is_zero_on_the_lips_and_one_far_from_them():
    face = synthetic_face(np.random.default_rng(1))
    gain = lip_distance_gain(face.neutral)
    distance = np.linalg.norm(face.neutral[:, :2] - [0, -0.5], axis=1)
    assert np.all(gain[LIPS] == 0)
    assert np.all(gain[distance >= 0.4 + 1e-6] == 1)
    assert np.all((gain > 0) == (distance > 0.2 + 1e-6))


def test_a_known_coupling_is_recovered_away_from_the_lips_and_the_lips_are_untouched(coupled):
    face, poses, offsets, model = coupled
    predicted = model(poses)
    gain = lip_distance_gain(face.neutral)
    expected = offsets * gain[None, :, None]
    far = gain == 1
    assert np.abs(predicted[:, far] - offsets[:, far]).max() < 1e-4
    np.testing.assert_allclose(predicted, expected, atol=1e-4)
    assert np.all(predicted[:, LIPS] == 0)
    # The size of what was recovered: the coupling is not zero (a model that did nothing would pass the above
    # only if the offsets were zero).
    assert np.abs(predicted[:, far]).mean() > 0.005


def test_a_head_turned_beyond_the_training_range_gets_the_offsets_of_the_range_edge(coupled):
    _, poses, _, model = coupled
    turned = poses.take(slice(0, 1))
    edge = PoseSequence(
        turned.rotation + [[0.0, poses.rotation[:, 1].max() - turned.rotation[0, 1], 0.0]],
        turned.translation,
        turned.scale,
    )
    beyond = PoseSequence(edge.rotation + [[0.0, 0.5, 0.0]], edge.translation, edge.scale)
    np.testing.assert_allclose(model(beyond), model(edge), atol=1e-9)


def test_the_model_saves_as_an_npz_and_garbage_in_its_place_is_reported(coupled, tmp_path):
    _, poses, _, model = coupled
    model.metrics = {"val_face_px": 0.5}
    path = tmp_path / "pose2face.npz"
    model.save(path)
    loaded = Pose2Face.load(path)
    assert loaded.cfg == model.cfg and loaded.metrics == {"val_face_px": 0.5}
    np.testing.assert_array_equal(loaded(poses), model(poses))
    path.write_bytes(b"\x80\x04garbage, not what AMG wrote")
    with pytest.raises(DamagedFileError, match="pose2face.npz"):
        Pose2Face.load(path)
