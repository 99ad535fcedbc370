"""YAML that remembers where every value came from.

`load_located(path)` returns plain Python values plus a table from key path
(`("targets", 1, "variants")`) to the 1-based line of that value, so every config
problem can name file, line and key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[Any, ...]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader whose compose step we drive ourselves to keep node marks."""


def format_key(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class Located:
    """Parsed YAML document plus the line of every key path."""

    def __init__(self, value: Any, lines: dict[KeyPath, int], duplicates: list[tuple[KeyPath, int]]):
        self.value = value
        self.lines = lines
        self.duplicates = duplicates

    def line(self, path: KeyPath) -> int | None:
        # Fall back to the nearest enclosing key that has a line.
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


def _convert(node: yaml.Node, path: KeyPath, lines: dict, dups: list, loader: yaml.SafeLoader) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            child = path + (key,)
            if key in out:
                dups.append((child, key_node.start_mark.line + 1))
            out[key] = _convert(value_node, child, lines, dups, loader)
            lines[child] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), lines, dups, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_located(path: Path) -> Located:
    """Parse `path`; raise yaml.YAMLError (with its own mark) on syntax errors."""
    text = Path(path).read_text(encoding="utf-8")
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        dups: list[tuple[KeyPath, int]] = []
        value = None if node is None else _convert(node, (), lines, dups, loader)
    finally:
        loader.dispose()
    return Located(value, lines, dups)
