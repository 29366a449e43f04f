"""Atomic file writes: a reader never sees a half-written output, an interrupted job leaves no debris."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import tempfile
import typing
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

from amg.core.layout import damaged_file

# The process umask, read once at import (reading it means setting it, which is not thread-safe later on).
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the suffix so that writers which pick a format from it (PyAV, OpenCV) work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's process id in the name tells a part still being written from one left by a killed process.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); outputs get the permissions any new file of the user gets.
    os.chmod(tmp, 0o666 & ~_UMASK)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
        remove_abandoned_parts(path)
    finally:
        tmp_path.unlink(missing_ok=True)


def remove_abandoned_parts(path: Path) -> None:
    """Delete the temporary files of `path` whose writer is gone (killed with SIGKILL, or the machine lost
    power: no `finally` ran to delete them)."""
    for part in path.parent.glob(f".{glob.escape(path.stem)}.*.part{glob.escape(path.suffix)}"):
        pid = part.name[len(path.stem) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _process_exists(int(pid)):
            part.unlink(missing_ok=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write a compressed .npz atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an .npz AMG wrote (no pickled objects: loading never runs code). A damaged file (cut
    short, overwritten) raises DamagedFileError saying how to make it again."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise damaged_file(Path(path), exc) from None


class NpzRecord:
    """Mixin for dataclasses of arrays: atomic save to and load from one .npz file.

    Fields annotated `int`, `float` or `bool` come back as Python scalars; everything else as arrays.
    """

    def save(self, path: str | os.PathLike) -> None:
        save_npz(path, **{f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)})

    @classmethod
    def load(cls, path: str | os.PathLike):
        hints = typing.get_type_hints(cls)
        arrays = load_npz(path)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in arrays]
        if missing:
            raise damaged_file(Path(path), KeyError(f"no {', '.join(missing)}"))
        values = {f.name: arrays[f.name] for f in dataclasses.fields(cls)}
        for name, value in values.items():
            if hints[name] in (int, float, bool):
                values[name] = hints[name](value)
        return cls(**values)
