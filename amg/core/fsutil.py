"""Atomic file writes: a reader never sees a half-written output, an interrupted job leaves no debris; and the
text files users write, in whatever Unicode encoding their editor saved."""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import glob
import hashlib
import os
import tempfile
import typing
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

from amg.core.errors import AmgError
from amg.core.layout import damaged_file

# The process umask, read once at import (reading it means setting it, which is not thread-safe later on).
_UMASK = os.umask(0)
os.umask(_UMASK)


def amg_home() -> Path:
    """AMG's user folder: its C2PA signing identity, the engines measured on this machine."""
    return Path(os.environ.get("AMG_HOME") or Path.home() / ".config" / "amg")


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


def file_digest(path: Path) -> str:
    """The SHA-256 of the file at `path`, in hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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
    """Write a compressed .npz atomically (what np.savez_compressed writes, with the zip closed here when a write
    fails: numpy leaves that to the garbage collector, whose failure to close it prints a traceback)."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


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

    Fields annotated `int`, `float` or `bool` come back as Python scalars; everything else as arrays. A field with a
    default may be missing (a file written before the field was added): it gets its default.
    """

    def save(self, path: str | os.PathLike) -> None:
        save_npz(path, **{f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)})

    @classmethod
    def load(cls, path: str | os.PathLike):
        hints = typing.get_type_hints(cls)
        arrays = load_npz(path)
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [name for name in required if name not in arrays]
        if missing:
            raise damaged_file(Path(path), KeyError(f"no {', '.join(missing)}"))
        values = {f.name: arrays[f.name] for f in dataclasses.fields(cls) if f.name in arrays}
        for name, value in values.items():
            if hints[name] in (int, float, bool):
                values[name] = hints[name](value)
        return cls(**values)


# Byte-order marks, the UTF-32 ones first (UTF-32 LE's begins with UTF-16 LE's).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def read_user_text(path: str | os.PathLike) -> str:
    """A text file a person made (a config, a manifest): UTF-8, or UTF-16, UTF-32 or UTF-8 with a byte-order mark
    (Windows editors' "Unicode", Excel's "CSV UTF-8"); AmgError when it is none of them."""
    data = Path(path).read_bytes()
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise AmgError(
            f"{path} is not UTF-8 or UTF-16 text (byte {exc.start}: {exc.reason}): save it as UTF-8."
        ) from None
