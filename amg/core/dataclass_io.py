"""Typed configs (dataclasses) to and from plain dicts and YAML: nested configs, dotted keys (`--set
gan.steps=500`), one range rule for numbers (with the bounds a class declares in `LIMITS`), unknown keys
refused, and the split between a config's *model* fields (what trained weights depend on) and its *schedule*
(`SCHEDULE`: steps, rates, cadences)."""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from amg.core.errors import AmgError
from amg.core.fsutil import write_text

C = TypeVar("C")

# The ceilings of the one range rule: no option means anything beyond them. A count past a 32-bit integer
# overflows the libraries underneath (numpy's seeds, OpenCV's sizes); the largest float option is min_duration_s.
MAX_INT = 2**31 - 1
MAX_FLOAT = 1e6


def config_from_dict(cls: type[C], values: dict[str, Any] | None, prefix: str = "") -> C:
    """Build `cls` from defaults plus `values`; unknown keys are an error (typos must not pass silently), except
    the class's `RETIRED` fields, which files written by an older AMG still hold and which are ignored.

    Nested configs take a mapping (`{"expression": {"steps": 500}}`, as in YAML) or dotted keys
    (`{"expression.steps": 500}`, as from `--set`).
    """
    retired = getattr(cls, "RETIRED", ())
    values = {k: v for k, v in nest_dotted_keys(values or {}).items() if k not in retired}
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise AmgError(
            f"Unknown {cls.__name__} option(s): {', '.join(prefix + u for u in unknown)}. "
            f"Known: {', '.join(sorted(prefix + k for k in known))}."
        )
    limits = getattr(cls, "LIMITS", {})
    kwargs = {k: _coerce(v, hints[k], prefix + k, limits.get(k)) for k, v in values.items() if v is not None}
    return cls(**kwargs)


def nest_dotted_keys(values: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in values.items():
        head, dot, rest = key.partition(".")
        if not dot:
            nested[key] = value
            continue
        sub = nested.setdefault(head, {})
        if not isinstance(sub, dict):
            raise AmgError(f"Config {head}: cannot set {key!r} on the value {sub!r}.")
        sub[rest] = value
    return nested


def _coerce(value: Any, tp: Any, name: str, bounds: tuple[float, float] | None = None) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], name, bounds)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise AmgError(f"Config {name}: expected a mapping of {tp.__name__} options, got {value!r}.")
        return config_from_dict(tp, value, prefix=f"{name}.")
    if tp is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise AmgError(f"Config {name}: expected true/false, got {value!r}.")
        return bool(value)
    if origin is tuple:  # tuple[X, ...]: a YAML list, or "a, b" from --set
        item = typing.get_args(tp)[0]
        return tuple(_coerce(v, item, f"{name}[{i}]", bounds) for i, v in enumerate(as_items(value)))
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise AmgError(f"Config {name}: use one of {', '.join(map(str, allowed))}, got {value!r}.")
        return value
    if tp is str:
        return str(value)
    if tp in (int, float):
        return _in_range(_number(value, tp, name), name, bounds)
    return value


def _number(value: Any, tp: type, name: str) -> int | float:
    """`value` as an int or float; a bool (YAML's `yes`) or a fraction for an int is the wrong type, not 1 or 7."""
    try:
        if isinstance(value, bool) or (tp is int and isinstance(value, float) and not value.is_integer()):
            raise TypeError
        return tp(value)
    except (TypeError, ValueError, OverflowError):
        raise AmgError(f"Config {name}: expected {tp.__name__}, got {value!r}.") from None


def as_items(value: Any) -> tuple:
    """A list option's items: a sequence as it is, or a comma-separated string split and stripped."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(value)


def _in_range(number: int | float, name: str, bounds: tuple[float, float] | None = None) -> int | float:
    """The one range rule every numeric option follows: sizes, counts, steps, weights, rates and durations are
    finite and never negative, periods (`*_every`: an action every N steps or frames) at least 1, and nothing
    passes MAX_INT or MAX_FLOAT; `bounds`, from the class's LIMITS, narrow that to what the option's network or
    algorithm works with (a generator's size, a dropout below 1)."""
    low = 1 if name.rsplit(".", 1)[-1].endswith("_every") else 0
    low, high = bounds or (low, MAX_INT if isinstance(number, int) else MAX_FLOAT)
    finite = isinstance(number, int) or math.isfinite(number)  # an int is (and may be too large for a float)
    if not finite or number < low:
        raise AmgError(f"Config {name}: expected a finite number >= {_shown(low)}, got {number!r}.")
    if number > high:
        raise AmgError(f"Config {name}: expected a number <= {_shown(high)}, got {number!r}.")
    return number


def _shown(bound: int | float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


def model_fields(config: Any) -> dict[str, Any]:
    """`config` as a dict without its schedule fields (a class's SCHEDULE), nested configs alike: what the
    weights trained with it depend on. Two configs with equal model fields can continue each other's training."""
    schedule = getattr(config, "SCHEDULE", ())
    return {
        f.name: model_fields(value) if dataclasses.is_dataclass(value) else value
        for f in dataclasses.fields(config)
        if f.name not in schedule
        for value in [getattr(config, f.name)]
    }


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


# The key under which a saved config's file records facts of the run that used it (the frames it held out),
# which are not options of the config itself.
RUN_KEY = "run"


def save_config(config: Any, path: str | os.PathLike, run: dict[str, Any] | None = None) -> None:
    """Save a config as YAML beside the artifact it produced, with the `run` record (e.g. its holdout)."""
    header = f"# {type(config).__name__} used to produce the files in this folder\n"
    values = _plain(config_to_dict(config)) | ({RUN_KEY: run} if run else {})
    write_text(path, header + yaml.safe_dump(values, sort_keys=False))


def _plain(value: Any) -> Any:
    """Tuples as lists, nested: YAML's safe dumper writes only plain types."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def read_saved_config(cls: type[C], path: str | os.PathLike) -> C | None:
    """The config saved at `path`, or None if absent or no longer readable as `cls`."""
    values = read_saved_values(path)
    if values is None:
        return None
    try:
        return config_from_dict(cls, {k: v for k, v in values.items() if k != RUN_KEY})
    except (AmgError, TypeError):
        return None


def read_saved_values(path: str | os.PathLike) -> dict[str, Any] | None:
    """The plain mapping saved at `path` (config and run record), or None if absent or unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return None
    return values if isinstance(values, dict) else None
