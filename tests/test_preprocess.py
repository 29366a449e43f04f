"""Stage 1 on real footage: values, not just 'it ran'. One clip is preprocessed once per session."""

from __future__ import annotations

import itertools
import json
import logging
import os

import cv2
import numpy as np
import pytest

from amg.cli import main as amg_main
from amg.conditioning.warp import shoulder_similarity
from amg.config import PreprocessConfig
from amg.core.errors import AmgError, MediaError, TrackingError
from amg.core.layout import Layout
from amg.media import iter_frames, load_audio, probe_video, write_video
from amg.tracking import smoothing, topology
from amg.tracking.capture import RawTracks
from amg.tracking.preprocess import fit_tracks, preprocess
from amg.tracking.torso import torso_mask
from amg.tracking.tracks import Tracks

from conftest import require_shared

CLIP = "video/hdtf_aoc_8s.mp4"  # 8 s, 512x512, MPEG-4 Part 2, frontal woman talking


def link_video(layout: Layout, name: str, source) -> None:
    """Put a shared clip into a DATAROOT by symlink: tests read the shared media in place."""
    folder = layout.video_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}{source.suffix}").symlink_to(source)


@pytest.fixture(scope="session")
def processed(tmp_path_factory):
    source = require_shared(CLIP)
    layout = Layout(tmp_path_factory.mktemp("dataroot"))
    link_video(layout, "aoc", source)
    report = preprocess(layout, "aoc", PreprocessConfig())
    return layout, "aoc", report, Tracks.load(layout.tracks("aoc"))


def test_frame_count_and_audio_length_match_the_duration(processed):
    layout, name, report, tracks = processed
    duration = probe_video(require_shared(CLIP)).duration
    assert abs(tracks.n_frames - duration * 25) <= 1
    assert probe_video(layout.frames_video(name)).n_frames() == tracks.n_frames
    audio = load_audio(layout.audio_wav(name))
    assert abs(len(audio) / 16000 - duration) < 0.1
    frames_info = probe_video(layout.frames_video(name))
    # Its half-body window is the whole 512-px frame: the crop keeps every source pixel (preprocess.size 0).
    assert report["crop_window"] == {"x0": 0, "y0": 0, "side": 512} and tracks.size == 512
    assert (frames_info.width, frames_info.height, frames_info.has_audio) == (512, 512, True)


def test_every_frame_has_478_landmarks_inside_the_crop(processed):
    _, _, report, tracks = processed
    assert tracks.landmarks.shape == (tracks.n_frames, 478, 3)
    assert report["tracked_fraction"] > 0.98
    xy = tracks.landmarks[..., :2]
    assert np.isfinite(tracks.landmarks).all()
    assert xy.min() > 0 and xy.max() < tracks.size
    # Half-body framing: the face takes a fraction of the crop, not all of it.
    face_height = np.ptp(xy[..., 1], axis=1).mean() / tracks.size
    assert 0.2 < face_height < 0.7


def test_pose_and_expression_reconstruct_the_tracked_landmarks(processed):
    _, _, report, _ = processed
    # The fit explains the smoothed landmarks with a rigid pose + 48 PCA modes of this avatar's own face:
    # what is left is tracker noise the basis cannot express. At 256 px a face spans ~120 px and MediaPipe's
    # own frame-to-frame noise is ~0.3-0.5 px, so anything above 1 px mean would mean a broken fit.
    assert report["reconstruction_px"]["mean_px"] < 1.0
    assert report["reconstruction_px"]["p95_px"] < 2.0
    assert report["expression_variance_explained"] > 0.9


def test_head_pose_of_a_frontal_clip_is_plausible(processed):
    _, _, report, tracks = processed
    yaw, pitch, roll = np.median(tracks.euler_deg, axis=0)
    assert abs(yaw) < 15 and abs(pitch) < 20 and abs(roll) < 10
    assert np.ptp(tracks.euler_deg, axis=0).max() < 45  # a talking head moves, but not by more than this
    assert np.all(tracks.scale > 0)


def test_smoothing_removes_jitter_without_lagging_the_mouth(processed):
    _, _, report, tracks = processed
    jitter = report["jitter_px"]
    assert jitter["landmarks_smoothed"] < 0.7 * jitter["landmarks_raw"]
    assert jitter["translation_smoothed"] < jitter["translation_raw"]
    assert report["mouth"]["lag_frames"] == 0
    assert report["mouth"]["attenuation"] > 0.85
    opening = topology.mouth_opening(tracks.landmarks)
    assert opening.max() > 5 * max(np.percentile(opening, 5), 0.5)  # she talks: the mouth opens and closes


def test_shoulders_are_tracked_below_the_face(processed):
    _, _, _, tracks = processed
    shoulders = tracks.body[:, :2]
    chin_y = tracks.landmarks[:, 152, 1]
    assert np.isfinite(shoulders).all()
    assert (shoulders[:, :, 1].mean(axis=1) > chin_y).mean() > 0.95
    assert np.all(shoulders[:, 0, 0] > shoulders[:, 1, 0])  # left shoulder is on the image's right


def test_the_torso_is_registered_and_the_shoulders_follow_its_pixels(obama_avatar):
    layout, name = obama_avatar
    report = json.loads(layout.preprocess_report(name).read_text())
    torso = report["torso"]
    assert torso["registered"] and torso["correlation_median"] > 0.95
    assert torso["failed_frames"] < 0.03 * report["frames"]  # a few implausible answers, kept out
    raw, _ = RawTracks.load(layout.raw_tracks(name))
    pose_only, _, _ = fit_tracks(raw, PreprocessConfig(register_torso=False))
    tracks = Tracks.load(layout.tracks(name))
    registered, detected = tracks.body[:, :2, :2], pose_only.body[:, :2, :2]
    # Near the pose model's shoulders (it places them on average), and steady.
    assert np.median(np.linalg.norm(registered - detected, axis=-1)) < 6.0
    assert smoothing.jitter(registered) < 0.5
    # What matters: the torso of a reference frame, moved by the shoulders' motion, lands on each frame's torso
    # far better with the registered shoulders than with the pose model's.
    frames = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in iter_frames(layout.frames_video(name))])
    ref = torso["reference_frame"]
    matte = next(itertools.islice(iter_frames(layout.matte_video(name)), ref, None))[..., 0]
    mask = torso_mask(matte, tracks.landmarks[ref], 1.0) > 0
    errors = {"registered": [], "pose model": []}
    for t in range(0, len(frames), 25):
        for label, body in (("registered", registered), ("pose model", detected)):
            # Backward map: frame t's pixel reads the reference where the similarity of the shoulders sends it.
            m = shoulder_similarity(body[t, [1, 0]], body[ref, [1, 0]])
            moved = cv2.warpAffine(frames[ref], m, (256, 256), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            errors[label].append(np.abs(moved.astype(float) - frames[t])[mask].mean())
    assert np.mean(errors["registered"]) < 0.7 * np.mean(errors["pose model"])


def test_a_face_only_crop_keeps_the_pose_models_shoulders_and_says_why(processed):
    _, _, report, tracks = processed
    assert report["torso"] == {"registered": False, "reason": "too little torso in the crop"}
    raw_body = fit_tracks(RawTracks.load(processed[0].raw_tracks(processed[1]))[0], PreprocessConfig())[0].body
    np.testing.assert_array_equal(tracks.body, raw_body)


def test_matte_background_and_preview(processed):
    layout, name, report, tracks = processed
    matte = next(iter_frames(layout.matte_video(name)))[:, :, 0]
    middle = tracks.size // 2
    assert matte[middle, middle] > 200 and matte[5, 5] < 60  # person in the middle, background in the corner
    plate = cv2.imread(str(layout.background(name)))
    assert plate.shape == (tracks.size, tracks.size, 3)
    assert report["background_inpainted_fraction"] < 0.6
    assert probe_video(layout.tracking_preview(name)).n_frames() == tracks.n_frames
    json.loads(layout.preprocess_report(name).read_text())


def test_rerun_skips_cached_work_and_force_redoes_it(processed, caplog):
    layout, name, _, _ = processed
    before = os.stat(layout.tracks(name)).st_mtime_ns
    with caplog.at_level(logging.INFO):
        preprocess(layout, name, PreprocessConfig())
    assert "already preprocessed" in caplog.text
    assert os.stat(layout.tracks(name)).st_mtime_ns == before
    # The preview is no part of the tracks: without it nothing is redone, and asked for again it is only drawn.
    preprocess(layout, name, PreprocessConfig(preview=False))
    layout.tracking_preview(name).unlink()
    preprocess(layout, name, PreprocessConfig())
    assert os.stat(layout.tracks(name)).st_mtime_ns == before
    assert probe_video(layout.tracking_preview(name)).n_frames() == Tracks.load(layout.tracks(name)).n_frames
    # A smoothing-only change refits from the cached capture pass instead of re-tracking.
    capture_time = os.stat(layout.raw_tracks(name)).st_mtime_ns
    preprocess(layout, name, PreprocessConfig(smooth_window=9, preview=False))
    assert os.stat(layout.raw_tracks(name)).st_mtime_ns == capture_time
    assert os.stat(layout.tracks(name)).st_mtime_ns != before
    preprocess(layout, name, PreprocessConfig())  # back to the defaults for the other tests


def test_size_512_works(tmp_path):
    layout = Layout(tmp_path)
    link_video(layout, "may", require_shared("video/may_5s.mp4"))
    report = preprocess(layout, "may", PreprocessConfig(size=512, preview=False, background_samples=20))
    tracks = Tracks.load(layout.tracks("may"))
    assert tracks.size == 512 and tracks.landmarks[..., :2].max() < 512
    assert probe_video(layout.frames_video("may")).width == 512
    assert report["reconstruction_px"]["mean_px"] < 2.0  # the 1 px bound at 256, scaled to 512
    # `amg preprocess` again without --size keeps the avatar's 512 px: nothing is redone.
    before = layout.tracks("may").stat().st_mtime_ns
    assert amg_main(["preprocess", str(tmp_path), "may"]) == 0
    assert layout.tracks("may").stat().st_mtime_ns == before and Tracks.load(layout.tracks("may")).size == 512


def _video_from_image(path, image_rgb, seconds=3.0):
    write_video(path, (image_rgb for _ in range(int(seconds * 25))))


def test_several_faces_track_the_largest_central_one_with_a_warning(tmp_path, caplog):
    group = cv2.cvtColor(cv2.imread(str(require_shared("image/insightface_group_t1.jpg"))), cv2.COLOR_BGR2RGB)
    layout = Layout(tmp_path)
    layout.video_dir("group").mkdir(parents=True)
    _video_from_image(layout.video_dir("group") / "group.mp4", group)
    with caplog.at_level(logging.WARNING):
        report = preprocess(layout, "group", PreprocessConfig(preview=False, background_samples=10))
    assert "Several faces" in caplog.text
    assert report["tracked_fraction"] > 0.9
    window = report["crop_window"]
    # The chosen face is the most central of the large ones, so the window sits near the image centre.
    centre_x = window["x0"] + window["side"] / 2
    assert abs(centre_x - group.shape[1] / 2) < group.shape[1] / 4


def test_video_without_a_face_stops_with_a_clear_message(tmp_path):
    layout = Layout(tmp_path)
    layout.video_dir("noface").mkdir(parents=True)
    rng = np.random.default_rng(0)
    frames = (cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), np.uint8), (31, 31), 0) for _ in range(75))
    write_video(layout.video_dir("noface") / "noface.mp4", frames)
    with pytest.raises(TrackingError, match="No face found"):
        preprocess(layout, "noface", PreprocessConfig())
    assert not layout.tracks("noface").exists()


@pytest.mark.slow
def test_a_face_that_leaves_half_way_makes_the_avatar_of_the_part_with_it_and_says_so(tmp_path, caplog):
    """may_5s, then 4 s of the empty picture: the avatar is the first 5 s (tracks, frames, speech), not a video
    whose held-out tail has no face."""
    source = require_shared("video/may_5s.mp4")
    frames = list(iter_frames(source, 25))
    speech = load_audio(source)
    empty = cv2.GaussianBlur(frames[0], (0, 0), 25)  # the room, blurred past any face
    layout = Layout(tmp_path)
    layout.video_dir("walks").mkdir(parents=True)
    n_empty = 100
    audio = np.concatenate([speech[: len(frames) * 640], np.zeros(n_empty * 640, np.float32)])
    write_video(layout.video_dir("walks") / "walks.mp4", frames + [empty] * n_empty, audio=audio)
    with caplog.at_level(logging.WARNING):
        report = preprocess(layout, "walks", PreprocessConfig(preview=False, background_samples=20))
    assert "The face leaves the picture in video 'walks'" in caplog.text
    start, stop = report["face_span_s"]
    assert start == 0 and abs(stop - len(frames) / 25) <= 0.2 and report["source_duration_s"] > stop + 3.5
    tracks = Tracks.load(layout.tracks("walks"))
    assert tracks.first_frame == 0 and tracks.n_frames == round(stop * 25) and tracks.tracked.mean() > 0.95
    assert probe_video(layout.frames_video("walks")).n_frames(25) == tracks.n_frames
    assert len(load_audio(layout.audio_wav("walks"))) == tracks.n_frames * 640


def test_bad_inputs_give_clear_errors(tmp_path):
    layout = Layout(tmp_path)
    with pytest.raises(AmgError, match="No video file for 'missing'"):
        preprocess(layout, "missing", PreprocessConfig())
    layout.video_dir("text").mkdir(parents=True)
    (layout.video_dir("text") / "text.mp4").write_text("this is not a video\n" * 100)
    with pytest.raises(MediaError, match="not a readable video"):
        preprocess(layout, "text", PreprocessConfig())
    layout.video_dir("short").mkdir(parents=True)
    write_video(layout.video_dir("short") / "short.mp4", (np.zeros((64, 64, 3), np.uint8) for _ in range(20)))
    with pytest.raises(TrackingError, match="too short"):
        preprocess(layout, "short", PreprocessConfig())


def test_cli_reports_errors_in_one_line_without_a_traceback(tmp_path, capsys):
    assert amg_main(["preprocess", str(tmp_path), "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No video file for 'nope'") and "Traceback" not in err
    assert amg_main(["preprocess", str(tmp_path), "../etc"]) == 2
    assert "Invalid video name" in capsys.readouterr().err
