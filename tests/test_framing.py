"""render.framing: the generated crop in the avatar video's own frame, over real frames that follow its body."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from amg.cli import main as amg_main
from amg.config import RenderConfig
from amg.core.errors import AmgError
from amg.core.layout import Layout
from amg.core.split import held_out_split
from amg.media.output import Backdrops
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
