"""The eye model (amg.motion.eyes) on obama_clip2's real tracks, and the image path drawing closed eyes closed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from amg.audio.features import AudioFeatures, features_for_video
from amg.conditioning.warp import warp_frames
from amg.config import EyesConfig, MotionConfig
from amg.evaluation.landmarks import LandmarkDetector
from amg.gan.candidates import CandidatePicker, head_pose_features
from amg.gan.references import choose_bank_frames
from amg.media import pick_frames, resized_frames
from amg.motion.eyes import EyeAnimator, EyeModel, blink_runs, blink_statistics, upper_face_weights
from amg.tracking import fitting, topology
from amg.tracking.tracks import Tracks

pytestmark = pytest.mark.slow  # real stages on real footage, seconds each: `pytest -m 'not slow'` skips them

CFG = EyesConfig()


@pytest.fixture(scope="module")
def fitted(obama_avatar):
    layout, name = obama_avatar
    tracks = Tracks.load(layout.tracks(name))
    features = features_for_video(layout, name, MotionConfig().features, tracks.n_frames)
    face_model = fitting.ExpressionModel.load(layout.face_model(name))
    train = slice(0, int(round(tracks.n_frames * 0.85)))
    return tracks, face_model, features, train, EyeModel.fit(tracks, face_model, features, train, CFG)


def _features(n: int, vad: np.ndarray | None = None) -> AudioFeatures:
    """Features of `n` frames with only a VAD (the eye model reads the VAD and, when there is one, the energy)."""
    vad = np.ones(n, np.float32) if vad is None else vad.astype(np.float32)
    return AudioFeatures(vad[:, None], {"vad": slice(0, 1)}, vad)


def test_blink_runs_are_dips_under_the_ratio_and_long_closures_are_not_blinks():
    opening = np.full(100, 0.3)
    opening[10:13] = 0.1  # a blink
    opening[40] = 0.17  # a one-frame blink (under 0.6 × 0.3 = 0.18)
    opening[50:52] = 0.2  # a dip that stays over the threshold
    opening[60:90] = 0.05  # eyes closed for 1.2 s: not a blink
    opening[95] = np.nan  # an untracked frame is not a blink
    runs = blink_runs(opening, 0.3, 0.6, 25)
    assert runs.tolist() == [[10, 13], [40, 41]]


def test_upper_face_weights_take_the_eyes_brows_and_irises_and_leave_the_mouth_to_speech(fitted):
    _, face_model, _, _, _ = fitted
    weights = upper_face_weights(face_model.neutral)
    assert (weights[topology.EYES] == 1).all() and (weights[topology.BROWS] == 1).all()
    assert (weights[topology.IRISES] == 1).all()
    assert (weights[topology.LIPS] == 0).all() and weights[topology.CHIN] == 0
    assert 0 <= weights[topology.NOSE_TIP] < 1
    assert ((weights > 0) & (weights < 1)).sum() > 10  # a smooth seam across the cheeks, not a cut


def test_the_model_learns_the_avatars_blinks_from_its_own_tracks(fitted):
    tracks, _, _, train, model = fitted
    tracked = blink_runs(topology.eye_opening(tracks.landmarks[train]), model.open_median, CFG.blink_ratio, 25)
    assert len(tracked) >= 5  # obama_clip2 blinks about 19 times a minute
    assert model.blinks_per_minute == pytest.approx(len(tracked) / (train.stop / 25 / 60))
    assert model.n_blinks >= len(tracked) - 2  # only blinks cut by the training part's edges are left out
    assert (model.blink_lengths == (tracked[:, 1] - tracked[:, 0]).max() + 2 * CFG.blink_pad).any()
    assert CFG.min_interval_shape <= model.interval_shape <= CFG.max_interval_shape
    assert 1 <= model.pause_gain <= CFG.max_pause_gain
    assert ((0 <= model.drift_rho) & (model.drift_rho < 1)).all() and (model.drift_std > 0).all()


def test_blinks_keep_the_rate_and_the_gap_favour_pauses_and_do_not_depend_on_chunking(fitted):
    model = dataclasses.replace(fitted[-1], blinks_per_minute=20.0, interval_shape=3.0, pause_gain=3.0)
    n = 25 * 600  # ten minutes
    pauses = (np.arange(n) // 50) % 4 == 0  # a 2-s pause every 8 s: a quarter of the frames
    energy = np.sin(np.arange(n) / 30.0)
    animator = EyeAnimator(model, seed=3)
    whole = animator.advance(pauses, energy)
    onsets = np.array(animator.onsets)
    assert len(onsets) / 10 == pytest.approx(20, rel=0.1)
    assert np.diff(onsets).min() >= animator.dead_time
    assert pauses[onsets].mean() > 0.4  # three times likelier per frame in a pause: 3/6 of the blinks
    even = EyeAnimator(dataclasses.replace(model, pause_gain=1.0), seed=3)
    even.advance(pauses, energy)
    assert pauses[even.onsets].mean() == pytest.approx(0.25, abs=0.08)
    # A live stream feeds the frames in chunks of any size: the same eyes, to the last bit of rounding.
    chunked, cuts = EyeAnimator(model, seed=3), np.cumsum(np.random.default_rng(0).integers(1, 40, n // 10))
    parts = [chunked.advance(pauses[a:b], energy[a:b]) for a, b in zip(np.r_[0, cuts], np.r_[cuts, n]) if b > a]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-12)
    assert chunked.onsets == animator.onsets


def test_sampled_blinks_match_the_tracked_rate_duration_and_opening(fitted):
    tracks, face_model, _, train, model = fitted
    tracked = blink_statistics(topology.eye_opening(tracks.landmarks[train]), model.open_median, CFG)
    speech = fitting.decode(face_model, np.repeat(tracks.expression[train].mean(0)[None], 25 * 60, 0))
    rates = []
    for seed in range(5):
        sampled = blink_statistics(
            topology.eye_opening(model.animate(speech, _features(len(speech)), seed)), model.open_median, CFG
        )
        rates.append(sampled["blinks_per_minute"])
        assert sampled["blink_frames_median"] == pytest.approx(tracked["blink_frames_median"], rel=0.3)
        assert sampled["opening_q50"] == pytest.approx(tracked["opening_q50"], rel=0.05)
        assert sampled["opening_min"] < 0.5 * tracked["opening_q50"]  # the lids really come down
    assert np.mean(rates) == pytest.approx(tracked["blinks_per_minute"], rel=0.2)
    off = topology.eye_opening(model.animate(speech, _features(len(speech)), 0, blink_rate=0.0))
    assert len(blink_runs(off, model.open_median, CFG.blink_ratio, 25)) == 0
    assert off.std() > 0.002  # without blinks the lids and brows still drift: no stare
    double = topology.eye_opening(model.animate(speech, _features(len(speech)), 0, blink_rate=2.0))
    assert len(blink_runs(double, model.open_median, CFG.blink_ratio, 25)) > 1.5 * np.mean(rates)


def test_the_eye_candidate_warped_onto_closed_eyes_shows_closed_eyes(obama_avatar):
    """The image path: for targets with the eyes shut (the deepest frame of each blink) and open, the eye slot's
    frame warped onto the target's landmarks is re-detected with the target's eye state."""
    layout, name = obama_avatar
    tracks = Tracks.load(layout.tracks(name))
    train = slice(0, int(round(tracks.n_frames * 0.85)))
    opening = topology.eye_opening(tracks.landmarks)
    median = float(np.median(opening[train]))
    runs = blink_runs(opening[train], median, CFG.blink_ratio, 25)
    closed = np.array([start + np.argmin(opening[start:stop]) for start, stop in runs])
    open_ = np.flatnonzero(np.abs(opening[train] - median) < 0.01)[::40][: len(closed)]
    targets = np.concatenate([closed, open_])

    bank = choose_bank_frames(tracks, train, 640)
    poses = head_pose_features(tracks.rotation, tracks.translation, tracks.scale)
    picker = CandidatePicker(tracks.landmarks[bank], poses[bank], bank, 3, hysteresis=0.0)
    # Frames within a second of the target are no candidates (as in training): the blink is not its own source.
    eyes_slot = [
        bank[picker.pick(tracks.landmarks[[t]], poses[[t]], np.array([t]), exclusion=25)[0, 2]] for t in targets
    ]
    frames = pick_frames(resized_frames(layout.frames_video(name), tracks.size), np.array(eyes_slot))
    detected = []
    for target, source in zip(targets, eyes_slot):
        warped = warp_frames(
            frames[source][None],
            tracks.landmarks[[source]],
            tracks.body[[source]],
            tracks.landmarks[target],
            tracks.body[target],
            tracks.size,
        )[0]
        detector = LandmarkDetector()  # one per frame: these are not a sequence
        detected.append(topology.eye_opening(detector(warped)[None])[0])
        detector.close()
    detected = np.array(detected)
    n = len(closed)
    assert np.isfinite(detected).all()
    assert detected[:n].mean() < 0.7 * detected[n:].mean()  # shut eyes come out shut...
    assert np.corrcoef(detected, opening[targets])[0, 1] > 0.7  # ...and every eye state follows the target
