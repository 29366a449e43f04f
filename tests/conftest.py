"""Fixtures shared by the whole test suite."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

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


@pytest.fixture(scope="session")
def obama_avatar(tmp_path_factory):
    """A DATAROOT with obama_clip2 (30 s, in sync) preprocessed as video 'obama2' (no preview, to save time)."""
    from amg.config import PreprocessConfig
    from amg.layout import Layout
    from amg.tracking.preprocess import preprocess

    layout = Layout(tmp_path_factory.mktemp("avatar"))
    link_shared(layout, "video", "obama2", "video/obama_clip2.mp4")
    preprocess(layout, "obama2", PreprocessConfig(preview=False))
    return layout, "obama2"
