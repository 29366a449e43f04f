"""Typed stage configurations: defaults in code, overridable from YAML and the CLI, saved beside outputs."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from amg.errors import AmgError
from amg.fsutil import write_text

C = TypeVar("C")


@dataclass
class PreprocessConfig:
    """Stage 1: avatar video → crop, tracks, matte, background plate."""

    fps: int = 25
    sample_rate: int = 16000
    # Side of the square crop the later stages work at (256 by default; 512 works too).
    size: int = 256
    # Face mesh runs on the crop resampled to this side (if the source has the pixels): more pixels on the face
    # than `size` gives sub-pixel landmarks at no extra model cost (the mesh model sees a fixed 192² face ROI).
    track_size: int = 512
    refine_landmarks: bool = True  # 478 points: refined lips and irises (lip-sync needs the lips most)
    # Half-body framing: the crop side and the face centre's height in it, in units of the face box height.
    crop_scale: float = 3.2
    crop_face_center_y: float = 0.38
    # Face detection runs on every k-th frame of the scan pass (faces move slowly; the mesh tracks per frame).
    scan_every: int = 5
    min_face_fraction: float = 0.5
    min_duration_s: float = 180.0  # shorter videos are accepted with a warning
    # MediaPipe pose costs ~50 ms per frame: run it on every k-th frame and interpolate (shoulders move slowly).
    pose_every: int = 5
    pose_size: int = 256
    # PCA expression basis.
    n_expression: int = 48
    # Temporal smoothing (see amg.tracking.smoothing): a Savitzky-Golay-style filter whose window stays short
    # on the mouth (5 frames: with polyorder 2 a 3-frame window would not smooth at all) so that fast lip
    # closures are not lagged or flattened.
    smooth_window: int = 7
    smooth_window_mouth: int = 5
    smooth_polyorder: int = 2
    # Background plate: temporal median over this many evenly spaced frames.
    background_samples: int = 120
    matte_threshold: float = 0.5
    preview: bool = True


def _coerce(value: Any, tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], name)
    if tp is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise AmgError(f"Config {name}: expected true/false, got {value!r}.")
        return bool(value)
    if tp in (int, float, str):
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise AmgError(f"Config {name}: expected {tp.__name__}, got {value!r}.") from None
    return value


def config_from_dict(cls: type[C], values: dict[str, Any] | None) -> C:
    """Build `cls` from defaults plus `values`; unknown keys are an error (typos must not pass silently)."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise AmgError(f"Unknown {cls.__name__} option(s): {', '.join(unknown)}. Known: {', '.join(sorted(known))}.")
    kwargs = {k: _coerce(v, hints[k], k) for k, v in values.items() if v is not None}
    return cls(**kwargs)


def load_config(cls: type[C], yaml_path: str | os.PathLike | None = None, **overrides: Any) -> C:
    """Defaults, then the YAML file (if any), then explicit overrides (None means 'not given')."""
    values: dict[str, Any] = {}
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise AmgError(f"Config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise AmgError(f"Config file {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise AmgError(f"Config file {path} must hold a mapping of option: value.")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(cls, values)


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Save a config as YAML beside the artifact it produced."""
    header = f"# {type(config).__name__} used to produce the files in this folder\n"
    write_text(path, header + yaml.safe_dump(config_to_dict(config), sort_keys=False))


def read_saved_config(cls: type[C], path: str | os.PathLike) -> C | None:
    """The config saved at `path`, or None if absent or no longer readable as `cls`."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return config_from_dict(cls, yaml.safe_load(path.read_text()) or {})
    except (AmgError, yaml.YAMLError, TypeError):
        return None


__all__ = [
    "PreprocessConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "read_saved_config",
    "save_config",
]
