"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

# Real media (see its SOURCES.md) lives beside the repository, not in it: /work/shared/data for /work/main.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require_shared(relpath: str) -> Path:
    """The shared media file at `relpath`, or skip the calling test (or fixture) with the reason."""
    path = SHARED_DATA / relpath
    if not path.is_file():
        pytest.skip(f"shared test media not found at {path}")
    return path


@pytest.fixture
def shared_media() -> Callable[[str], Path]:
    """A function mapping a path relative to the shared media folder to that file, or skipping the test."""
    return require_shared


def link_shared(layout, kind: str, name: str, relpath: str) -> Path:
    """Put a shared media file into a DATAROOT as input `name` (a symlink: shared media are read in place)."""
    source = require_shared(relpath)
    folder = layout.video_dir(name) if kind == "video" else layout.audio_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}{source.suffix}"
    if not target.exists():
        target.symlink_to(source)
    return target


@pytest.fixture(scope="session", autouse=True)
def _amg_home(tmp_path_factory):
    """AMG's user folder (the C2PA signing key, made on first use) is the test session's own, not ~/.config."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AMG_HOME", str(tmp_path_factory.mktemp("amg_home")))
        yield


@pytest.fixture(scope="session")
def obama_avatar(tmp_path_factory):
    """A DATAROOT with obama_clip2 (30 s, in sync) preprocessed as video 'obama2' (no preview, to save time)."""
    from amg.config import PreprocessConfig
    from amg.core.layout import Layout
    from amg.tracking.preprocess import preprocess

    layout = Layout(tmp_path_factory.mktemp("avatar"))
    link_shared(layout, "video", "obama2", "video/obama_clip2.mp4")
    preprocess(layout, "obama2", PreprocessConfig(preview=False))
    return layout, "obama2"


@pytest.fixture(scope="session")
def tracked() -> tuple[np.ndarray, np.ndarray]:
    """Landmarks (T, 478, 3) and body (T, 4, 3) tracked on six frames (every 10th) of a real 256x256 clip.

    The project's own tracker wrappers on six frames take a couple of seconds, where the full preprocessed
    avatar fixture takes a minute; the renderer and the warp only need real landmarks.
    """
    from amg.media import iter_frames
    from amg.tracking.models import BodyTracker, FaceMeshTracker

    frames = list(itertools.islice(iter_frames(require_shared("video/obama_clip2.mp4")), 0, 60, 10))
    assert frames[0].shape[:2] == (256, 256)
    face_tracker, body_tracker = FaceMeshTracker(max_faces=1), BodyTracker()
    try:
        landmarks = np.stack([face_tracker(frame)[0] for frame in frames]).astype(np.float64)
        body = np.stack([body_tracker(frame) for frame in frames]).astype(np.float64)
    finally:
        face_tracker.close()
        body_tracker.close()
    return landmarks, body


# The fast preset, shrunk further: 64 px, a few dozen steps (the test checks plumbing, not beauty).
TINY = {
    "gan.size": 64,
    "gan.n_levels": 4,
    "gan.steps": 30,
    "gan.eval_every": 30,
    "gan.eval_frames": 4,
    "gan.bank_size": 60,
    "motion.expression.steps": 300,
    "motion.pose.steps": 200,
    "enhance.steps": 10,
    "enhance.eval_every": 10,
    "enhance.max_frames": 60,
}


def speech_after_silence(layout, name: str, source) -> float:
    """2 s of silence, then 4 s of another speaker; returns the duration in seconds."""
    from amg.media import load_audio, write_wav

    speech = load_audio(source)[: 16000 * 4]
    samples = np.concatenate([np.zeros(32000, np.float32), speech])
    folder = layout.audio_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    write_wav(folder / f"{name}.wav", samples, 16000)
    return len(samples) / 16000


@pytest.fixture(scope="session")
def first_run(obama_avatar, tmp_path_factory):
    """obama_avatar trained at TINY settings by `amg run` on 2 s of silence and 4 s of another voice ("male_gap");
    (layout, avatar name, the video, the stages trained, the speech's duration)."""
    from amg.config import AvatarConfig, MotionOptions, load_config, preset_overrides
    from amg.core.layout import Layout
    from amg.pipeline import run

    preprocessed, name = obama_avatar
    # Its own checkpoints beside the shared preprocessing: other modules train obama_avatar's motion otherwise.
    layout = Layout(tmp_path_factory.mktemp("first_run"))
    (layout.root / "input_data").symlink_to(preprocessed.root / "input_data")
    duration = speech_after_silence(layout, "male_gap", require_shared("audio/librispeech_1320_male.mp3"))
    cfg = load_config(AvatarConfig, None, preset_overrides("fast"), **TINY)
    path, trained = run(layout, "male_gap", name, cfg, MotionOptions(pose="static"))
    return layout, name, path, trained, duration
