"""The real media the benchmarks read, in place: ../shared/data beside the repository (its SOURCES.md)."""

from __future__ import annotations

import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_file(relpath: str) -> Path:
    """The shared media file at `relpath`; exits saying what is missing when this clone has no ../shared/data."""
    source = SHARED / relpath
    if not source.is_file():
        sys.exit(f"shared media not found: {source} (the benchmarks read ../shared/data beside the repository)")
    return source


def link_shared(relpath: str, target: Path) -> None:
    """Make `target` a link to the shared media file at `relpath` (one already there is kept, and one that points
    nowhere, left by a run in a clone without the media, is replaced)."""
    source = shared_file(relpath)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() and not target.exists():
        target.unlink()
    if not target.exists():
        target.symlink_to(source)
