"""Where an avatar's config comes from: the code's defaults, a preset (YAML data in amg/config/presets/), the
`--config` file and `--set` overrides, in that order; `+N` increments over what the avatar was trained with."""

from __future__ import annotations

import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

from amg.core.dataclass_io import RUN_KEY, config_from_dict, nest_dotted_keys, read_saved_values
from amg.core.errors import AmgError
from amg.core.fsutil import read_user_text
from amg.core.layout import Layout

C = TypeVar("C")

# The presets shipped as amg/config/presets/NAME.yaml, from the fastest to the best.
PRESETS: tuple[str, ...] = ("fast", "default", "quality")


def preset_overrides(preset: str) -> dict[str, Any]:
    """The dotted-key overrides (`gan.size`, `motion.expression.steps`, ...) preset `preset` makes to AvatarConfig."""
    if preset not in PRESETS:
        raise AmgError(f"Unknown preset {preset!r}: choose one of {', '.join(PRESETS)}.")
    return dict(_flatten(_preset_values(preset)))


@cache
def _preset_values(preset: str) -> dict[str, Any]:
    text = resources.files("amg.config").joinpath("presets", f"{preset}.yaml").read_text()
    return yaml.safe_load(text) or {}


def _flatten(values: dict[str, Any], prefix: str = ""):
    """(dotted key, value) pairs of a nested mapping's leaves (an empty mapping has none)."""
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def load_config(
    cls: type[C], yaml_path: str | os.PathLike | None = None, defaults: dict[str, Any] | None = None, **overrides: Any
) -> C:
    """The code's defaults, then `defaults` (a preset's), then the YAML file, then explicit overrides (None means
    'not given'). Each layer may use nested mappings or dotted keys; later layers win key by key."""
    layers = [defaults or {}, _read_yaml(yaml_path) if yaml_path is not None else {}]
    layers.append({k: v for k, v in overrides.items() if v is not None})
    values: dict[str, Any] = {}
    for layer in layers:
        _deep_merge(values, nest_dotted_keys(layer))
    _refuse_stage_holdouts(values)
    return config_from_dict(cls, values)


def _refuse_stage_holdouts(values: dict[str, Any], prefix: str = "") -> None:
    """Older AMG had a holdout per stage; one avatar-level `holdout` replaced them (AvatarConfig). Saved files
    that still hold them are read without them; a user who sets one is told where it went."""
    for key, value in values.items():
        if isinstance(value, dict):
            _refuse_stage_holdouts(value, f"{prefix}{key}.")
        elif key == "holdout" and prefix:
            raise AmgError(
                f"Config {prefix}holdout: the held-out tail is one option for the whole avatar now; "
                f"use `holdout: {value}` at the top level (--set holdout={value})."
            )


def _read_yaml(yaml_path: str | os.PathLike) -> dict[str, Any]:
    path = Path(yaml_path)
    if not path.is_file():
        raise AmgError(f"Config file not found: {path}")
    try:
        loaded = yaml.safe_load(read_user_text(path)) or {}
    except yaml.YAMLError as exc:
        raise AmgError(f"Config file {path} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise AmgError(f"Config file {path} must hold a mapping of option: value.")
    return loaded


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], nest_dotted_keys(value))
        else:
            base[key] = value


def resolve_increments(overrides: dict[str, str], saved: Callable[[str], Any | None]) -> dict[str, str]:
    """Overrides with every `key=+N` made absolute: N more than the value the avatar was trained with, from
    `saved(section)`, its saved config of that section (`gan.steps=+500`: train 500 steps more)."""
    resolved = {}
    for key, value in overrides.items():
        if isinstance(value, str) and value.startswith("+"):
            section, _, rest = key.partition(".")
            current = saved(section)
            if current is None:
                raise AmgError(f"--set {key}={value}: the avatar has no trained {section} to add to; give a number.")
            try:
                for part in rest.split("."):
                    current = getattr(current, part)
                increment = type(current)(value[1:])
            except (AttributeError, TypeError, ValueError):
                raise AmgError(f"--set {key}={value}: expected a number to add to a numeric option.") from None
            value = str(current + increment)
        resolved[key] = value
    return resolved


def saved_holdout(path: str | os.PathLike) -> float | None:
    """The held-out fraction a stage was trained without, from the config saved beside it (None if unknown).
    An older AMG kept one per motion model, in the models' sections: the smallest is the most any of them saw."""
    values = read_saved_values(path)
    if values is None:
        return None
    run = values.get(RUN_KEY)
    if isinstance(run, dict) and "holdout" in run:
        return float(run["holdout"])
    legacy = list(_holdouts(values))
    return min(legacy) if legacy else None


def trained_holdouts(layout: Layout, avatar: str) -> dict[str, float]:
    """Each stage that holds out its video's tail itself and has a saved config for `avatar` (trained, or being
    trained): the fraction of the tail that stage never saw. The motion models and the image GAN hold it out;
    the face refiner trains on the GAN's training frames, so the GAN's split is its own."""
    saved = {"motion": saved_holdout(layout.motion_config(avatar)), "gan": saved_holdout(layout.gan_config(avatar))}
    return {stage: holdout for stage, holdout in saved.items() if holdout is not None}


def _holdouts(values: dict[str, Any]):
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _holdouts(value)
        elif key == "holdout" and isinstance(value, (int, float)):
            yield float(value)
