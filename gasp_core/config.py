"""Typed configs from plain mappings (params.yaml sections, YAML files, CLI overrides).

:func:`from_dict` builds a dataclass from a mapping, recursing into nested dataclasses, and fails
loudly on unknown keys, missing required keys and values outside a ``Literal``: a misspelt
parameter never silently does nothing. Stage scripts pass ``strict=True``: then every field must be given
(params.yaml is the full composition of configs/, so a key it lacks is config drift, not a default), and
Hydra's ``???`` (a value the chosen config group leaves for the user) is named as unset.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")


class ConfigError(ValueError):
    """A config section that does not match its dataclass."""


MISSING_VALUE = "???"  # OmegaConf's mandatory-value marker, as Hydra composition dumps it


def _convert(tp: Any, value: Any, where: str, strict: bool = False) -> Any:
    if isinstance(value, str) and value == MISSING_VALUE:
        raise ConfigError(
            f"{where} is not set ('???' in the composed config): give it in configs/ or with -S {where}=..."
        )
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        if tp is type(None) or (origin in (Union, types.UnionType) and type(None) in args) or tp is Any:
            return None
        raise ConfigError(f"{where}: null is not allowed (expected {tp})")
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, where, strict)
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return from_dict(tp, value, where, strict)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        items = [_convert(item, v, f"{where}[{i}]", strict) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str, strict: bool = False) -> T:
    """``cls(**data)`` with nested dataclasses built too; ``where`` names the section in errors. ``strict``: every
    field must be present, defaults or not (what stage scripts reading params.yaml ask for)."""
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {data!r}")
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # T is a dataclass type
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(fields)}")
    missing = sorted(
        n
        for n, f in fields.items()
        if n not in data and (strict or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING))
    )
    if missing:
        raise ConfigError(f"missing key(s) {missing} in {where}")
    return cls(**{name: _convert(hints[name], value, f"{where}.{name}", strict) for name, value in data.items()})
