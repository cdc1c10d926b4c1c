"""One source for each default: a config dataclass field that a stage parses from params.yaml either has no default or
defaults to the value of the default composition of configs/ (config.yaml with its default groups: the demo preset
and the tiny model). A library caller that leaves a field out then gets what the pipeline runs, not a second,
drifting copy of it."""

import ast
import dataclasses
import importlib
import types
import typing

import pytest
import yaml

from gasp_core.config import MISSING_VALUE, ConfigError, _convert
from gasp_core.params import ROOT, compose

NO_DEFAULT = object()


def stage_sections() -> dict[tuple[str, ...], type]:
    """params.yaml section -> the dataclass a stage script parses it into, found in the scripts themselves: the
    ``from_dict(Cls, params[...])`` and ``*_config_from_dict(params[...])`` calls (the return annotation names the
    class), and ``compute_config(params)``."""
    found: dict[tuple[str, ...], type] = {}
    for script in sorted((ROOT / "stages").glob("*.py")):
        tree = ast.parse(script.read_text())
        where = {
            a.asname or a.name: node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gasp_core")
            for a in node.names
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in where):
                continue
            fn = node.func.id
            if fn == "from_dict":
                cls_name = node.args[0]
                assert isinstance(cls_name, ast.Name)
                cls, data = getattr(importlib.import_module(where[cls_name.id]), cls_name.id), node.args[1]
            elif fn.endswith("_config_from_dict"):
                parse = getattr(importlib.import_module(where[fn]), fn)
                cls, data = typing.get_type_hints(parse)["return"], node.args[0]
            elif fn == "compute_config":
                from gasp_core.parallel import compute_config_from_dict

                found[("compute",)] = typing.get_type_hints(compute_config_from_dict)["return"]
                continue
            else:
                continue
            keys: list[str] = []
            while isinstance(data, ast.Subscript):
                assert isinstance(data.slice, ast.Constant), f"{script}: {ast.unparse(data)}"
                keys.insert(0, data.slice.value)
                data = data.value
            assert isinstance(data, ast.Name) and data.id == "params", f"{script}: {ast.unparse(node)}"
            found[tuple(keys)] = cls
    return found


def _dataclass_of(tp) -> type | None:
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _dataclass_of(inner[0]) if len(inner) == 1 else None
    return None


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return NO_DEFAULT


def _as_parsed(tp, value, where: str):
    """The composed value as the stage's ``from_dict`` turns it into the field's type (``???`` stays itself)."""
    try:
        return _convert(tp, value, where)
    except ConfigError:
        return MISSING_VALUE if value == MISSING_VALUE else value


def disagreements(cls: type, composed: dict, where: str, instance=None) -> list[str]:
    """Fields of ``cls`` (recursively) whose default differs from ``composed``; ``instance``: the default of the field
    that holds ``cls`` in its parent, whose values are the defaults too."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{where}.{f.name}"
        if f.name not in composed:
            continue  # a stage parses strictly and names the missing key itself
        value, nested = composed[f.name], _dataclass_of(hints[f.name])
        defaults = [("", _default(f))]
        if instance is not None:
            defaults.append((f" (in its parent's default {type(instance).__name__})", getattr(instance, f.name)))
        if nested is not None and isinstance(value, dict):
            for _, d in defaults:
                out += disagreements(nested, value, name, d if dataclasses.is_dataclass(d) else None)
            continue
        expected = _as_parsed(hints[f.name], value, name)
        for context, d in defaults:
            if d is not NO_DEFAULT and d != expected:
                out.append(
                    f"{name}: {cls.__module__}.{cls.__name__}.{f.name} defaults to {d!r}{context}; configs/ compose {expected!r}"
                )
    return sorted(set(out))


@pytest.fixture(scope="module")
def composed(tmp_path_factory) -> dict:
    return yaml.safe_load(compose(tmp_path_factory.mktemp("params") / "params.yaml").read_text())


SECTIONS = stage_sections()


def test_every_stage_config_is_walked():
    assert {"ingest", "teacher", "dino_targets", "occupancy_labels", "pretrain", "task_labels", "finetune"} <= {
        s[0] for s in SECTIONS
    }
    assert ("pretrain", "model", "voxelizer") in SECTIONS and ("compute",) in SECTIONS


@pytest.mark.parametrize(
    "section",
    sorted(SECTIONS),
    ids=".".join,
)
def test_dataclass_defaults_are_the_composed_defaults(section, composed):
    value = composed
    for key in section:
        value = value[key]
    cls = SECTIONS[section]
    assert not disagreements(cls, value, ".".join(section)), "\n".join(disagreements(cls, value, ".".join(section)))


def test_disagreements_are_found_at_any_depth():
    @dataclasses.dataclass
    class Inner:
        a: int = 1
        b: tuple[float, ...] = ()

    @dataclasses.dataclass
    class Outer:
        inner: Inner = dataclasses.field(default_factory=lambda: Inner(a=2))
        c: str = "x"
        d: int | None = None
        required: int = dataclasses.field(default=0)

    composed = {"inner": {"a": 2, "b": [1, 2]}, "c": "x", "d": None, "required": 0}
    found = disagreements(Outer, composed, "s")
    assert any(m.startswith("s.inner.a:") and "Inner.a defaults to 1;" in m for m in found)
    assert any(m.startswith("s.inner.b:") for m in found)
    assert not any(m.startswith("s.inner.a:") and "parent" in m for m in found)
    assert disagreements(Outer, {**composed, "inner": {"a": 1, "b": []}}, "s") == [
        "s.inner.a: tests.test_config_defaults.Inner.a defaults to 2 (in its parent's default Inner); configs/ compose 1"
    ]
