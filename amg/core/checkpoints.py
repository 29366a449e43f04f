"""Checkpoints: written atomically, read with a clear error when damaged, and compared with a config to tell
whether anything is left to train (a changed schedule continues, a changed model starts again)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from amg.core.dataclass_io import config_from_dict, model_fields
from amg.core.errors import AmgError, DamagedFileError
from amg.core.fsutil import atomic_path
from amg.core.layout import damaged_file


@dataclass(frozen=True)
class TrainingRun:
    """What a training is told besides its model's config: the video's tail it never sees (another holdout
    trains it again) and the number format it computes in (amg.core.precision; any precision resumes any other,
    the weights being fp32 in all). Neither is a model field: both are saved with the checkpoint and the stage's
    config as its run record."""

    holdout: float
    precision: str = "auto"

    def record(self, precision: str) -> dict[str, Any]:
        """The run record, with the precision the training resolved `precision` to (e.g. auto → bf16)."""
        return {"holdout": self.holdout, "precision": precision}


# Files that describe a checkpoint (its stage's config, the GAN's candidate bank), each with the function that
# writes it to a given path.
Companions = Mapping[Path, Callable[[Path], None]]


def save_checkpoint(path: Path, companions: Companions | None = None, **content: Any) -> None:
    """torch.save to a temporary file, then rename: a crash mid-write never corrupts the last checkpoint. The
    `companions` are written to temporary files first and renamed with it, only once every one is written: a
    failed write (a full disk) leaves the old checkpoint beside the old files that describe it."""
    with contextlib.ExitStack() as stack:
        for companion, write in (companions or {}).items():
            write(stack.enter_context(atomic_path(companion)))
        # Through a Python file, so that a failed write is the OSError it is (a path makes it a RuntimeError).
        with stack.enter_context(atomic_path(path)).open("wb") as f:
            torch.save(content, f)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint at `path`; DamagedFileError (saying how to retrain) when it cannot be read."""
    try:
        # weights_only=False: AMG checkpoints hold plain dicts of arrays and config values written by AMG itself.
        state = torch.load(path, map_location=device, weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch.load fails in many ways (zip, pickle, EOF) on a cut file
        raise damaged_file(Path(path), exc) from None
    if not isinstance(state, dict):
        raise damaged_file(Path(path), TypeError(f"holds a {type(state).__name__}, not an AMG checkpoint"))
    return state


def is_finished(path: Path) -> bool:
    """A finished checkpoint exists at `path` (a damaged one is not: training puts it aside and starts again)."""
    if not path.is_file():
        return False
    try:
        return bool(load_checkpoint(path).get("finished", False))
    except DamagedFileError:
        return False


def set_aside(path: Path) -> Path:
    """Rename a damaged file to FILE.damaged beside it, so that a new one does not overwrite what may be saved."""
    damaged = path.with_name(path.name + ".damaged")
    os.replace(path, damaged)
    return damaged


def same_model(saved: dict[str, Any] | None, config: Any) -> bool:
    """Whether a checkpoint's saved config dict has the model fields of `config` (see amg.config.model_fields)."""
    if not isinstance(saved, dict):
        return False
    try:
        return model_fields(config_from_dict(type(config), saved)) == model_fields(config)
    except AmgError:  # a field that no longer exists, or a value the config refuses now
        return False


def same_training(state: dict[str, Any], config: Any, holdout: float | None) -> bool:
    """Whether checkpoint `state` was trained with the model fields of `config` on the same frames: all but the
    `holdout` tail (None: not compared)."""
    if holdout is not None and checkpoint_holdout(state) not in (None, holdout):
        return False
    return same_model(state.get("config"), config)


def checkpoint_holdout(state: dict[str, Any]) -> float | None:
    """The held-out fraction a checkpoint was trained without (an older AMG kept it in the stage's config)."""
    run = state.get("run") or {}
    return run["holdout"] if "holdout" in run else (state.get("config") or {}).get("holdout")


def checkpoint_done(path: Path, config: Any, holdout: float | None = None) -> bool:
    """A finished checkpoint at `path` trained with `config`'s model fields for at least its steps, holding out
    `holdout`: nothing to train. (A larger `steps` extends a finished training; another model field or holdout
    trains it again.)"""
    if not path.is_file():
        return False
    try:
        state = load_checkpoint(path)
    except DamagedFileError:
        return False  # training puts it aside and starts again
    done = bool(state.get("finished")) and int(state.get("step", 0)) >= config.steps
    return done and same_training(state, config, holdout)
