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
