"""`amg eval`'s measures on cases whose answer is known, its held-out bookkeeping, and its report logic."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml

from amg.config import GanConfig, MotionConfig, config_to_dict, read_saved_config, save_config, trained_holdouts
from amg.core import images
from amg.core.errors import AmgError
from amg.core.layout import Layout
from amg.evaluation import metrics
from amg.evaluation.evaluate import (
    check_unseen,
    held_out_start,
    measure_frames,
    mouth_timing,
    speaking_frames,
    summarise,
)
from amg.evaluation.mouth import TEETH_SHARE, inner_mouth_mask, mouth_blur, teeth_share
from amg.evaluation.report import better, comparison, relative_to_real
from amg.evaluation.sync import mouth_signals
from amg.gan.baselines import nearest_landmark_index
from amg.media import probe_video
from amg.tracking import topology
from amg.tracking.boxes import face_boxes
from amg.tracking.topology import NUM_LANDMARKS_REFINED

from conftest import require_shared


def _random_landmarks(rng, n_frames: int = 5) -> np.ndarray:
    return rng.uniform(50, 200, (n_frames, NUM_LANDMARKS_REFINED, 3)).astype(np.float32)


def test_psnr_is_infinite_and_ssim_one_for_identical_frames():
    frame = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert images.psnr(frame, frame) == float("inf")
    assert images.ssim(frame, frame) == pytest.approx(1.0)


def test_noise_lowers_psnr_and_ssim_the_more_the_stronger():
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8), (9, 9), 3)
    scores = []
    for sigma in (5, 20):
        noisy = np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)
        scores.append((images.psnr(noisy, image), images.ssim(noisy, image)))
    assert scores[0][0] == pytest.approx(20 * np.log10(255 / 5), abs=0.5)  # PSNR of N(0, σ=5) noise
    assert scores[0][0] > scores[1][0] + 10 and scores[0][1] > scores[1][1] + 0.2


def test_lip_distance_is_zero_for_the_same_mouth_anywhere_and_grows_with_its_shape():
    lips = _random_landmarks(np.random.default_rng(2))
    moved = lips + np.array([30.0, -12.0, 4.0], np.float32)  # the same mouth elsewhere: head motion, not lips
    assert np.allclose(metrics.lip_distance(lips, lips), 0)
    assert np.allclose(metrics.lip_distance(moved, lips), 0, atol=1e-4)
    wider = lips.copy()
    centre = lips[:, topology.LIPS, :2].mean(axis=1, keepdims=True)
    wider[:, topology.LIPS, :2] = centre + 1.1 * (lips[:, topology.LIPS, :2] - centre)
    expected = 0.1 * np.linalg.norm(lips[:, topology.LIPS, :2] - centre, axis=-1).mean(axis=1)
    assert np.allclose(metrics.lip_distance(wider, lips), expected, rtol=1e-4)
    missing = lips.copy()
    missing[1] = np.nan
    assert np.isnan(metrics.lip_distance(missing, lips)[1]) and np.isfinite(metrics.lip_distance(missing, lips)[0])


def test_jitter_is_zero_for_steady_motion_and_measures_shaking():
    base = _random_landmarks(np.random.default_rng(3), 1)
    steady = base + np.arange(10)[:, None, None] * np.array([2.0, 1.0, 0.0], np.float32)
    assert metrics.landmark_jitter(steady) == pytest.approx(0, abs=1e-4)
    shaking = base + (np.arange(10) % 2 * 2 - 1)[:, None, None] * np.array([1.0, 0.0, 0.0], np.float32)
    assert metrics.landmark_jitter(shaking) == pytest.approx(4.0)  # x: -1, +1, -1: second difference 4
    shaking[4] = np.nan  # undetected frame: the triples touching it are skipped, not counted as motion
    assert metrics.landmark_jitter(shaking) == pytest.approx(4.0)


def test_sharpness_drops_with_blur():
    image = np.random.default_rng(4).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(image, (7, 7), 2)
    assert images.sharpness(image, (10, 10, 70, 70)) > 10 * images.sharpness(blurred, (10, 10, 70, 70))


def test_face_boxes_hold_the_face_oval_at_the_target_size():
    landmarks = _random_landmarks(np.random.default_rng(5), 3)
    boxes = face_boxes(landmarks, source_size=512, size=256)
    oval = landmarks[:, topology.FACE_OVAL, :2] / 2
    assert (boxes[:, :2] <= oval.min(axis=1)).all() and (boxes[:, 2:] >= oval.max(axis=1)).all()
    assert boxes.min() >= 0 and boxes.max() <= 256


def test_one_frame_scorer_scores_the_whole_frame_and_each_box_and_averages_per_frame():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    frames = real.copy()
    frames[1, 16:, 16:] = 255 - frames[1, 16:, 16:]  # the second frame is wrong in one corner only
    boxes = {"corner": np.array([[16, 16, 32, 32]] * 2), "clean": np.array([[0, 0, 16, 16]] * 2)}
    one = images.frame_scores(frames[1], real[1], {name: tuple(b[1]) for name, b in boxes.items()})
    assert set(one) == {"psnr", "ssim", "corner_psnr", "corner_ssim", "clean_psnr", "clean_ssim"}
    assert one["clean_psnr"] == float("inf") and one["corner_psnr"] < one["psnr"] < 20
    both = images.mean_frame_scores(frames, real, boxes)
    assert both["ssim"] == pytest.approx((1 + one["ssim"]) / 2)  # a frame's score, then the mean over frames
    assert both["clean_ssim"] == pytest.approx(1.0) and both["corner_ssim"] < 0.5


def test_nearest_landmark_index_finds_the_exact_training_frame():
    rng = np.random.default_rng(6)
    train = _random_landmarks(rng, 40)
    query = train[[7, 31, 7]] + rng.normal(0, 0.01, (3, *train.shape[1:])).astype(np.float32)
    assert nearest_landmark_index(train, query, chunk=2).tolist() == [7, 31, 7]


def test_held_out_start_uses_the_training_split_rounding_and_refuses_short_tails():
    assert held_out_start(752, 0.15) == 752 - 113  # as GanData and MotionData.split round it
    with pytest.raises(AmgError, match="at least"):
        held_out_start(200, 0.15)
    with pytest.raises(AmgError, match="between 0 and 1"):
        held_out_start(752, 1.5)


def test_check_unseen_refuses_a_tail_the_avatar_trained_on(tmp_path):
    layout = Layout(tmp_path)
    layout.checkpoint_dir("a").mkdir(parents=True)
    save_config(MotionConfig(), layout.motion_config("a"), run={"holdout": 0.15})
    save_config(GanConfig(), layout.gan_config("a"), run={"holdout": 0.1})
    holdouts = trained_holdouts(layout, "a")
    assert holdouts == {"motion": 0.15, "gan": 0.1}
    check_unseen(layout, "a", 1000, held_out_start(1000, 0.1), holdouts)  # the GAN saw frames up to 900: fine
    with pytest.raises(AmgError, match="gan model"):
        check_unseen(layout, "a", 1000, held_out_start(1000, 0.15), holdouts)  # the tail from 850 was in its training


def test_holdouts_of_an_older_avatar_are_read_from_its_stage_sections(tmp_path):
    """An older AMG saved one holdout per motion model and one in the GAN's config: the smallest counts."""
    layout = Layout(tmp_path)
    layout.checkpoint_dir("a").mkdir(parents=True)
    motion = config_to_dict(MotionConfig())
    for model, holdout in (("expression", 0.2), ("pose", 0.15), ("body", 0.3), ("pose2face", 0.2)):
        motion[model]["holdout"] = holdout
    layout.motion_config("a").write_text(yaml.safe_dump(motion))
    layout.gan_config("a").write_text(yaml.safe_dump(config_to_dict(GanConfig()) | {"holdout": 0.25}))
    assert trained_holdouts(layout, "a") == {"motion": 0.15, "gan": 0.25}
    assert read_saved_config(GanConfig, layout.gan_config("a")) == GanConfig()  # the retired field is ignored


def test_comparison_rules():
    assert better("higher", 25.0, 22.0, None) and better("lower", 1.0, 2.0, None)
    assert better("zero", -1.0, 3.0, None) and not better("zero", 4.0, 3.0, None)
    assert better("real", 90.0, 40.0, 100.0) and better("real", 110.0, 130.0, 100.0)
    assert better("real", 1.0, 2.0, None) is None and better("higher", float("nan"), 1.0, None) is None
    assert better("higher", float("inf"), 30.0, None)
    rows = comparison(
        {
            "real": {"jitter_px": 0.5},
            "generated": {"psnr": 25.0, "ssim": 0.80, "jitter_px": 0.6},
            "copy": {"psnr": 22.0, "ssim": 0.78, "jitter_px": 1.5},
            "warp": {"psnr": 24.0, "ssim": 0.85, "jitter_px": 0.7},
        }
    )
    # The difference is to the strongest baseline (the warp); "better" means better than every baseline.
    assert rows["psnr"]["difference"] == pytest.approx(1.0) and rows["psnr"]["generated_better"]
    assert rows["ssim"]["better_than_copy"] and not rows["ssim"]["better_than_warp"]
    assert rows["ssim"]["generated_better"] is False
    assert rows["jitter_px"]["generated_better"] and rows["jitter_px"]["real"] == 0.5


@pytest.fixture(scope="module")
def portrait_frames():
    """30 frames of a real portrait (a face the face mesh finds), 256 px."""
    image = cv2.imread(str(require_shared("image/obama_portrait.jpg")))
    h, w = image.shape[:2]
    side = min(h, w)
    square = image[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
    frame = cv2.cvtColor(cv2.resize(square, (256, 256), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    return np.stack([frame] * 30)


def test_measure_frames_scores_identical_streams_perfectly_and_writes_the_side_by_side(tmp_path, portrait_frames):
    frames = portrait_frames
    n = len(frames)
    mouth = np.tile([96, 150, 160, 214], (n, 1))
    face = np.tile([40, 20, 216, 250], (n, 1))
    conditioning = np.zeros((n, 256, 256, 4), np.uint8)
    blurred = np.stack([cv2.GaussianBlur(f, (9, 9), 3) for f in frames])
    path = tmp_path / "side.mp4"
    audio = np.zeros(n * 640, np.float32)
    measured = measure_frames(
        {"real": iter(frames), "generated": iter(frames), "copy": iter(blurred)},
        iter(conditioning),
        mouth,
        face,
        audio,
        path,
        reference="real",
    )
    generated, baseline = measured["generated"], measured["copy"]
    assert np.isinf(generated["psnr"]).all() and np.allclose(generated["ssim"], 1)
    assert np.isfinite(baseline["psnr"]).all() and baseline["face_ssim"].mean() < 0.95
    found = np.isfinite(generated["landmarks"]).all(axis=(1, 2))
    assert found.all()  # the face mesh finds the portrait's face in every frame
    assert np.allclose(metrics.lip_distance(generated["landmarks"], measured["real"]["landmarks"]), 0, atol=1e-3)
    assert baseline["mouth_sharpness"].mean() < 0.5 * generated["mouth_sharpness"].mean()
    assert baseline["mouth_blur"].mean() > generated["mouth_blur"].mean() + 0.05  # blur seen with no reference
    assert np.allclose(generated["face_lpips"], 0, atol=1e-6) and baseline["face_lpips"].mean() > 0.05
    # A still portrait does not flicker; the same portrait shifted by 2 px every other frame does.
    assert len(generated["face_flicker"]) == n - 1 and np.all(generated["face_flicker"] == 0)
    shaky = np.stack([np.roll(f, 2 * (i % 2), axis=1) for i, f in enumerate(frames[:3])])
    assert metrics.texture_flicker(shaky[0], shaky[1], (40, 20, 216, 250)) > 2.0
    info = probe_video(path)
    assert (info.width, info.height) == (4 * 256, 256) and abs(info.duration - n / 25) < 1e-3


def test_pick_frames_keeps_the_wanted_frames_and_decodes_no_further():
    from amg.media import pick_frames

    stream = iter([np.full((2, 2, 3), i, np.uint8) for i in range(10)])
    picked = pick_frames(stream, np.array([7, 2, 2]))
    assert sorted(picked) == [2, 7] and picked[7][0, 0, 0] == 7
    assert next(stream)[0, 0, 0] == 8  # the stream was read up to frame 7 only
    assert pick_frames(iter([]), np.array([], int)) == {}


def test_banks_of_one_video_are_made_in_one_pass():
    """Two consumers of one video (a render's backdrops and its face boxes): each gets its frames as its `keep`
    makes them, from a single pass that stops at the last frame either wants; a bank that wants none is made of
    nothing."""
    from amg.media import FrameBank, make_banks

    read = []
    stream = (read.append(i) or np.full((4, 4, 3), i, np.uint8) for i in range(20))
    whole = FrameBank(np.array([3, 9]), lambda kept: {i: int(f[0, 0, 0]) for i, f in kept.items()})
    corner = FrameBank(np.array([9, 12, 3]), lambda kept: kept, keep=lambda i, frame: frame[:1, :1].copy())
    empty = FrameBank(np.zeros(0, int), lambda kept: len(kept))
    made = make_banks(stream, [whole, corner, empty])
    assert made[0] == {3: 3, 9: 9} and made[2] == 0
    assert sorted(made[1]) == [3, 9, 12] and all(f.shape == (1, 1, 3) and f[0, 0, 0] == i for i, f in made[1].items())
    assert read == list(range(13))  # one pass, up to frame 12


def _speaking_landmarks(n_frames: int = 200, scale: float = 1.0, delay: int = 0) -> np.ndarray:
    """Landmarks of a face whose lower lip drops by an opening that varies like speech (several rates), its
    mouth opened `scale` times as wide, `delay` frames later."""
    rng = np.random.default_rng(7)
    base = rng.uniform(60, 190, (NUM_LANDMARKS_REFINED, 3)).astype(np.float32)
    upper, lower = topology.INNER_LIP_VERTICAL_PAIRS[:, 0], topology.INNER_LIP_VERTICAL_PAIRS[:, 1]
    base[lower, :2] = base[upper, :2]  # closed lips: the lower inner lip on the upper one
    t = np.arange(n_frames + 10) / 25
    opening = 4 + 3 * np.sin(2 * np.pi * 3.1 * t) + 2 * np.sin(2 * np.pi * 1.3 * t + 1) + rng.normal(0, 0.3, len(t))
    landmarks = np.repeat(base[None], n_frames, axis=0)
    landmarks[:, lower, 1] += scale * np.clip(opening, 0, None)[10 - delay : 10 - delay + n_frames, None]
    return landmarks


def test_a_mouth_half_as_open_scores_an_opening_ratio_near_one_half():
    real, half = _speaking_landmarks(), _speaking_landmarks(scale=0.5)
    measured = {source: {"landmarks": lm} for source, lm in (("real", real), ("generated", half))}
    summaries = relative_to_real({s: summarise(m, 256, None) for s, m in measured.items()})
    assert summaries["generated"]["opening_mean_ratio"] == pytest.approx(0.5, abs=0.02)
    assert summaries["generated"]["opening_spread_ratio"] == pytest.approx(0.5, abs=0.02)
    assert "opening_mean_ratio" not in summaries["real"]
    # Closer to 1 wins: a mouth 0.5x as open loses to one 0.9x as open, and to one 1.2x as open.
    assert better("one", 0.9, 0.5, None) and better("one", 1.2, 0.5, None) and not better("one", 0.5, 1.2, None)


def test_the_opening_is_compared_over_the_speaking_frames():
    """A voice with a long pause: the mouth rests shut there (the silence gate) and moves as the person's mouth
    does while it speaks. Over all frames its spread would read wider than the person's; over the speaking
    frames, which the issue compares, it is the person's."""
    real = _speaking_landmarks()
    paused = real.copy()
    upper, lower = topology.INNER_LIP_VERTICAL_PAIRS[:, 0], topology.INNER_LIP_VERTICAL_PAIRS[:, 1]
    paused[120:, lower] = paused[120:, upper]  # shut for the last 80 frames
    vad = np.r_[np.full(120, 0.9), np.full(80, 0.05)]
    speaking = speaking_frames(vad, len(paused))
    assert speaking.sum() == 120 and speaking_frames(vad[:150], 200).sum() == 120  # short VAD: the rest silent
    spoken = relative_to_real(
        {
            "real": summarise({"landmarks": real[:120]}, 256, None),
            "generated": summarise({"landmarks": paused}, 256, None, speaking=speaking),
        }
    )["generated"]
    assert spoken["opening_mean_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert spoken["opening_spread_ratio"] == pytest.approx(1.0, abs=1e-6)
    whole = relative_to_real(
        {
            "real": summarise({"landmarks": real[:120]}, 256, None),
            "generated": summarise({"landmarks": paused}, 256, None),
        }
    )["generated"]
    assert whole["opening_mean_ratio"] < 0.7 and whole["opening_spread_ratio"] > 1.05


def test_a_mouth_three_frames_late_is_found_three_frames_late():
    real, late = _speaking_landmarks(), _speaking_landmarks(delay=3)
    assert np.allclose(late[3:], real[:-3])
    assert mouth_timing(mouth_signals(real), mouth_signals(late), 10).offset == 3
    summaries = relative_to_real({"real": {"sync_offset": 1.0}, "generated": {"sync_offset": 4.0}})
    assert summaries["generated"]["sync_offset_to_real"] == 3.0


def test_a_blurred_mouth_loses_sharpness_and_scores_a_higher_blur(portrait_frames):
    frame, box = portrait_frames[0], (96, 150, 160, 214)
    blurred = cv2.GaussianBlur(frame, (9, 9), 3)
    assert mouth_blur(blurred, box) > mouth_blur(frame, box) + 0.1
    assert images.sharpness(blurred, box) < 0.5 * images.sharpness(frame, box)


def _mouth_picture(teeth: bool) -> tuple[np.ndarray, np.ndarray]:
    """A skin-coloured 128-px picture with an open mouth (inner lip ring of 8 points) that holds white teeth
    or a dark inside, and its landmarks."""
    frame = np.full((128, 128, 3), (200, 150, 130), np.uint8)
    landmarks = np.full((NUM_LANDMARKS_REFINED, 3), 64.0, np.float32)
    angles = np.linspace(0, 2 * np.pi, len(topology.LIPS_INNER), endpoint=False)
    landmarks[topology.LIPS_INNER, 0] = 64 + 20 * np.cos(angles)
    landmarks[topology.LIPS_INNER, 1] = 80 + 8 * np.sin(angles)
    inside = inner_mouth_mask(landmarks, frame.shape[:2])
    frame[inside] = (60, 20, 25)  # the dark inside of a mouth
    if teeth:
        frame[inside & (np.arange(128)[:, None] < 80)] = (245, 245, 240)  # the upper teeth
    return frame, landmarks


def test_teeth_are_seen_in_an_open_mouth_that_shows_them_and_not_in_a_dark_or_closed_one():
    box = (34, 62, 94, 98)
    with_teeth, landmarks = _mouth_picture(teeth=True)
    dark, _ = _mouth_picture(teeth=False)
    assert teeth_share(with_teeth, landmarks, box) > 0.3 > TEETH_SHARE
    assert teeth_share(dark, landmarks, box) < 0.05
    closed = landmarks.copy()
    closed[topology.LIPS_INNER, 1] = 80
    assert teeth_share(with_teeth, closed, box) == 0.0
    assert np.isnan(teeth_share(with_teeth, np.full_like(landmarks, np.nan), box))
