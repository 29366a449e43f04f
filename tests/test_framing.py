"""render.framing: the generated crop in the avatar video's own frame, over real frames that follow its body."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from amg.cli import main as amg_main
from amg.config import RenderConfig
from amg.core.errors import AmgError
from amg.core.layout import Layout
from amg.core.split import held_out_split
from amg.evaluation.native import NATIVE_PICTURE, gradient_energy, native_scores, seam_band, to_source_boxes
from amg.media import iter_frames
from amg.media.output import Backdrops, FullFramePaster
from amg.tracking.framing import SourceFraming
from amg.tracking.tracks import Tracks

from conftest import link_shared


def _body_at(x: float) -> np.ndarray:
    """Shoulders and hips at horizontal position x (crop pixels), all seen."""
    return np.array([[x, 50, 1], [x + 30, 50, 1], [x, 90, 1], [x + 30, 90, 1]], np.float32)


def test_backdrops_follow_the_body_with_whole_frames_held_against_flicker():
    frames = [np.full((48, 64, 3), 40 * k, np.uint8) for k in range(4)]  # bank frame k: its body at 10 + 20k
    bank = np.stack([_body_at(10 + 20 * k) for k in range(4)])
    path = np.concatenate([np.full(20, 10.0), np.linspace(10, 70, 40), np.full(20, 70.0)])  # a known motion
    jitter = np.where(np.arange(len(path)) % 2, 3.0, -3.0)  # and a tracker's shake, between bank poses
    backdrops = Backdrops(frames, bank, np.stack([_body_at(x) for x in path + jitter]))
    chosen = [int(backdrops()[0, 0, 0]) // 40 for _ in path]
    assert chosen[0] == 0 and chosen[-1] == 3  # it follows the body from the first bank pose to the last
    assert chosen == sorted(chosen)  # never back and forth
    runs = np.diff(np.flatnonzero(np.diff(chosen) != 0))
    assert (runs >= Backdrops.HOLD).all()  # each choice is held, the shake notwithstanding
    # A live stream gives each frame's body as it makes it, keeping no history: the same choices.
    body = {}
    streamed = Backdrops(frames, bank, lambda: body["now"])
    streamed_chosen = []
    for x in path + jitter:
        body["now"] = _body_at(x)
        streamed_chosen.append(int(streamed()[0, 0, 0]) // 40)
    assert streamed_chosen == chosen


@pytest.fixture(scope="module")
def half_frame_avatar(obama_avatar, tmp_path_factory):
    """obama_avatar's tracks with a crop window of the middle of its frame (as a half-body video has), so
    there is a frame around the crop to fill."""
    layout, name = obama_avatar
    other = Layout(tmp_path_factory.mktemp("half_frame"))
    link_shared(other, "video", name, "video/obama_clip2.mp4")
    tracks = Tracks.load(layout.tracks(name))
    other.tracks(name).parent.mkdir(parents=True, exist_ok=True)
    dataclasses.replace(tracks, window=np.array([64, 32, 128])).save(other.tracks(name))
    return other, name


def test_source_framing_fills_the_frame_from_training_frames_only(half_frame_avatar):
    layout, name = half_frame_avatar
    n_frames = Tracks.load(layout.tracks(name)).n_frames
    framing = SourceFraming.of(layout, name, holdout=0.15, feather=0.08)
    train, _ = held_out_split(n_frames, 0.15)
    assert len(framing.frames) == SourceFraming.BANK_FRAMES and framing.index.max() < train.stop  # never the tail
    assert framing.frames[0].shape == (256, 256, 3)
    bodies = np.repeat(framing.body[:1], 5, axis=0)  # the first bank frame's pose
    paste = framing.paster(bodies)
    frame = paste(np.full((64, 64, 3), 255, np.uint8))
    assert frame.shape == (256, 256, 3)  # the source's size
    assert (frame[:, :60] == framing.frames[0][:, :60]).all()  # outside the window: that real frame, untouched
    assert (frame[60:100, 120:140] == 255).all()  # inside: the generated crop


def test_a_crop_window_that_is_the_whole_frame_renders_the_crop_itself(obama_avatar):
    layout, name = obama_avatar  # 256-px video, its window the whole frame
    framing = SourceFraming.of(layout, name, holdout=0.15, feather=0.08)
    assert framing.frames == []  # nothing to decode: no frame shows around the crop
    crop = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert framing.paster(np.zeros((1, 4, 3)))(crop) is crop  # as before: the crop is the frame
    assert framing.paster(np.zeros((1, 4, 3)))(crop[::4, ::4]).shape == (256, 256, 3)  # a 64-px generator's


def test_a_bad_framing_is_one_error_line(tmp_path, capsys):
    with pytest.raises(AmgError, match="render.framing"):
        RenderConfig(framing="wide")
    (tmp_path / "input_data").mkdir()
    assert amg_main(["run", str(tmp_path), "a", "b", "--set", "render.framing=wide"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "framing" in err[0]


def _scene(shift: int, disc_x: int) -> np.ndarray:
    """A textured still background (moved `shift` px to the right) and a bright disc at `disc_x`: 160x120."""
    rng = np.random.default_rng(7)
    texture = cv2.resize(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), (160 + 8, 120))
    frame = np.ascontiguousarray(texture[:, 8 - shift : 168 - shift])
    cv2.circle(frame, (disc_x, 60), 12, (255, 255, 255), -1)
    return frame


def test_the_composite_is_seamless_where_the_crop_matches_its_backdrop_and_the_seam_measure_sees_a_mismatch():
    window = np.array([40, 20, 80])
    moving = [_scene(0, 70 + 2 * t) for t in range(6)]  # the disc moves 2 px a frame inside the window
    paster = FullFramePaster(moving[0], window, feather=0.15)  # one still backdrop: the disc where it started
    band = seam_band(paster, (160, 120))
    assert band.any() and not band[:, :40].any() and not band[:, 121:].any()  # along the window's border only
    for real in moving:
        crop = real[20:100, 40:120]  # a perfect generator at 1:1
        composite = paster(crop)
        assert (composite == real).all()  # the crop's motion, the backdrop's stillness: no seam at all
        assert gradient_energy(composite, band) == pytest.approx(gradient_energy(real, band))
    # A crop brighter than its backdrop pasted with a hard edge shows a seam: the band's energy rises. The same
    # mismatch faded over the feather does not; a blurred crop (or two frames blended: ghosts) lowers it.
    brighter = cv2.add(moving[3][20:100, 40:120], 40)
    hard = FullFramePaster(moving[3], window, feather=0.01)
    hard_band = seam_band(FullFramePaster(moving[3], window, feather=0.06), (160, 120))
    assert gradient_energy(hard(brighter), hard_band) > 1.2 * gradient_energy(moving[3], hard_band)
    assert gradient_energy(paster(brighter), band) < 1.1 * gradient_energy(moving[3], band)
    blurred = paster(cv2.GaussianBlur(moving[3][20:100, 40:120], (0, 0), 3))
    assert gradient_energy(blurred, band) < 0.8 * gradient_energy(moving[3], band)


def test_boxes_in_crop_pixels_land_on_the_source_frame():
    boxes = np.array([[64, 64, 128, 192]])  # in a 256 crop of a 512-px window at (100, 50) of a 1280x720 frame
    assert to_source_boxes(boxes, np.array([100, 50, 512]), 256, (1280, 720)).tolist() == [[228, 178, 356, 434]]
    assert to_source_boxes(boxes, np.array([1000, 500, 512]), 256, (1280, 720)).tolist() == [[1128, 628, 1256, 720]]


def test_native_scores_rank_the_real_crop_over_the_nearest_frame_and_say_none_for_a_whole_frame_crop(
    half_frame_avatar, obama_avatar
):
    layout, name = half_frame_avatar
    tracks = Tracks.load(layout.tracks(name))
    start = held_out_split(tracks.n_frames, 0.15)[1].start
    x0, y0, side = tracks.window
    source = list(iter_frames(layout.video_source(name)))
    crops = [f[y0 : y0 + side, x0 : x0 + side] for f in source[start:]]  # a perfect generator, 1:1
    nearest = np.zeros(len(crops), int)  # the first frame, a different moment
    scores = native_scores(layout, name, tracks, start, 0.15, 0.08, ((c, c) for c in crops), nearest)
    assert scores["size"] == [256, 256] and scores["window"] == [64, 32, 128]
    generated, copied = scores["generated"], scores["nearest_frame"]
    assert generated["face_psnr"] > copied["face_psnr"] + 3 and generated["face_ssim"] > copied["face_ssim"]
    assert generated["face_sharpness_vs_real"] == pytest.approx(1, abs=0.02)  # the real pixels themselves
    assert 0.5 < generated["seam_energy_vs_real"] < 1.5
    assert set(scores["real"]) == {"face_sharpness", "mouth_sharpness", "seam_energy"}
    # Without the source-resolution detail (here the crops through half their size), the still-frame
    # baseline's face is scored as that crop enlarged; the rendered one keeps its own.
    halved = [cv2.resize(crop, (side // 2, side // 2), interpolation=cv2.INTER_AREA) for crop in crops]
    with_plain = native_scores(layout, name, tracks, start, 0.15, 0.08, zip(crops, halved), nearest)
    assert with_plain["generated"] == generated
    assert with_plain["over_still"]["face_sharpness_vs_real"] < 0.6 * scores["over_still"]["face_sharpness_vs_real"]
    assert with_plain["over_still"]["face_psnr"] < generated["face_psnr"]
    strip = cv2.imread(str(layout.eval_dir(name) / NATIVE_PICTURE))  # real | generated | over still | nearest
    height, width = strip.shape[:2]
    assert width % 4 == 0 and 40 < width // 4 < 256 and 40 < height <= 256
    whole_frame = Tracks.load(obama_avatar[0].tracks(obama_avatar[1]))
    assert native_scores(*obama_avatar, whole_frame, start, 0.15, 0.08, zip(crops, crops), nearest) is None
