"""The collecting validator: checks YAML values against type hints and frozen dataclasses,
recording every problem with file, line and key path instead of stopping at the first."""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pipeline.config.yamlsrc import KeyPath, Located, format_key
from pipeline.errors import Problem


class Collector:
    """Collects problems with file, line and key path while a config is read."""

    def __init__(self, file: Path, located: Located | None):
        self.file = file
        self.located = located
        self.problems: list[Problem] = []

    def add(self, path: KeyPath, message: str) -> None:
        line = self.located.line(path) if self.located else None
        self.problems.append(Problem(str(self.file), line, format_key(path), message))

    def keys(self, mapping: dict, path: KeyPath, allowed: typing.Iterable[str], required: typing.Iterable[str] = ()) -> None:
        allowed = tuple(allowed)
        for key in mapping:
            if key not in allowed:
                hint = closest(str(key), allowed)
                self.add(path + (key,), f"unknown key '{key}'{hint}; allowed here: {', '.join(allowed)}")
        for key in required:
            if key not in mapping:
                self.add(path, f"missing required key '{key}'")

    def mapping(self, value: Any, path: KeyPath, what: str) -> dict | None:
        if isinstance(value, dict):
            return value
        self.add(path, f"expected a mapping ({what}), got {describe(value)}")
        return None


def describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {value!r}"


def closest(word: str, choices: typing.Iterable[str]) -> str:
    import difflib

    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def check_value(col: Collector, value: Any, hint: Any, path: KeyPath) -> tuple[bool, Any]:
    """Check `value` against a type hint; returns (ok, converted value)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return True, None
        inner = [a for a in args if a is not type(None)]
        for candidate in inner:
            sub = Collector(col.file, col.located)
            ok, converted = check_value(sub, value, candidate, path)
            if ok:
                return True, converted
        return check_value(col, value, inner[0], path)
    if origin is Literal:
        if value in args:
            return True, value
        hint_text = closest(str(value), [str(a) for a in args])
        col.add(path, f"invalid value {value!r}{hint_text}; expected one of: {', '.join(map(str, args))}")
        return False, None
    if origin is dict:  # {name: value}: keys are names, values checked against the value type
        if not isinstance(value, dict):
            col.add(path, f"expected a mapping, got {describe(value)}")
            return False, None
        out, ok_all = {}, True
        for key, item in value.items():
            ok, converted = check_value(col, item, args[1], path + (key,))
            ok_all &= ok and isinstance(key, str)
            out[key] = converted
        return ok_all, out
    if origin is tuple:
        items = value if isinstance(value, list) else None
        if items is None:
            col.add(path, f"expected a list, got {describe(value)}")
            return False, None
        elem = args[0]
        out, ok_all = [], True
        for i, item in enumerate(items):
            ok, converted = check_value(col, item, elem, path + (i,))
            ok_all &= ok
            out.append(converted)
        return ok_all, tuple(out)
    if dataclasses.is_dataclass(hint):  # a nested options record, e.g. one item of a list
        if not isinstance(value, dict):
            col.add(path, f"expected a mapping with keys: {', '.join(f.name for f in dataclasses.fields(hint))}; got {describe(value)}")
            return False, None
        parsed = parse_dataclass(col, hint, value, path)
        return parsed is not None, parsed
    if hint is bool:
        if isinstance(value, bool):
            return True, value
        col.add(path, f"expected true or false, got {describe(value)}")
        return False, None
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value
        col.add(path, f"expected an integer, got {describe(value)}")
        return False, None
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):
            try:  # YAML 1.1 reads `1e-5` (no dot) as a string
                return True, float(value)
            except ValueError:
                pass
        col.add(path, f"expected a number, got {describe(value)}")
        return False, None
    if hint is str:
        if isinstance(value, str):
            return True, value
        col.add(path, f"expected a string, got {describe(value)}")
        return False, None
    raise TypeError(f"unsupported option type {hint!r} at {format_key(path)}")


def parse_dataclass(col: Collector, cls: type, raw: dict, path: KeyPath) -> Any:
    """Build a frozen options dataclass from a YAML mapping; unknown keys are problems."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    col.keys(raw, path, fields)
    values, ok_all = {}, True
    for name, f in fields.items():
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                col.add(path, f"missing required key '{name}'")
                ok_all = False
            continue
        ok, converted = check_value(col, raw[name], hints[name], path + (name,))
        ok_all &= ok
        if ok:
            values[name] = converted
    if not ok_all:
        return None
    return cls(**values)


def factory_ref(col: Collector, value: Any, path: KeyPath) -> str | None:
    if isinstance(value, str) and value.count(":") == 1 and all(value.split(":")):
        return value
    col.add(path, f"expected 'module:function' (e.g. examples.affine:build), got {describe(value)}")
    return None
