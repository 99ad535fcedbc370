"""YAML that remembers where every value came from, and refuses YAML made to hurt.

`load_located(path)` returns plain Python values plus a table from key path
(`("targets", 1, "variants")`) to the 1-based line of that value, so every config
problem can name file, line and key.

Configs come from pull requests, so the reader is bounded before it does any work: a
file over `MAX_CONFIG_BYTES`, nesting deeper than `MAX_DEPTH`, or aliases that repeat
more than `MAX_ALIAS_VALUES` values in all (nine anchors of ten aliases each are a
billion values in a few hundred bytes) raise `YAMLLimit` with the line where it happened.
Aliases are counted as they are read: each one adds the size of what it repeats.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer

KeyPath = tuple[Any, ...]

MAX_CONFIG_BYTES = 256 * 1024  # a model config is a few KB; this is a generous ceiling
MAX_DEPTH = 64  # a config nests about 6 levels (targets[0].tolerances.int8.y.atol)
MAX_ALIAS_VALUES = 10_000  # values aliases may repeat in one file, in all


class YAMLLimit(Exception):
    """The file is refused before it is read in full: too big, too deep, or aliases that multiply."""

    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


# libyaml scans and parses in C (40x faster than PyYAML's pure-Python reader, so even the
# largest file admitted is read in well under a second); the composer stays in Python so
# that depth and aliases are checked node by node.
PURE_PYTHON_READERS = (yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser)
try:
    from yaml.cyaml import CParser

    READERS: tuple = (CParser,)
except ImportError:  # PyYAML built without libyaml
    READERS = PURE_PYTHON_READERS


class _BoundedComposer(Composer):
    """SafeLoader's constructor and resolver over a composer that counts depth and aliases;
    `bounded_loader(readers)` puts libyaml's parser (or PyYAML's reader, scanner and parser) under it."""

    _readers: tuple = READERS

    def __init__(self, text: str):
        if self._readers == PURE_PYTHON_READERS:
            yaml.reader.Reader.__init__(self, text)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
        else:
            self._readers[0].__init__(self, text)
        Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._depth = 0
        self._alias_values = 0
        self._sizes: dict[int, int] = {}

    def dispose(self) -> None:
        for reader in self._readers:
            if "dispose" in vars(reader):
                reader.dispose(self)

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            repeated = self.anchors.get(event.anchor)
            if repeated is not None:
                self._count_alias(event, repeated)
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YAMLLimit(
                    event.start_mark.line + 1,
                    f"values nested more than {MAX_DEPTH} levels deep; a model config needs a handful. "
                    "Fix: flatten the value (this refusal guards against files made to exhaust the parser)",
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _count_alias(self, event: yaml.AliasEvent, node: yaml.Node) -> None:
        size = self._expanded_size(node)
        self._alias_values += size
        if self._alias_values > MAX_ALIAS_VALUES:
            raise YAMLLimit(
                event.start_mark.line + 1,
                f"the alias *{event.anchor} repeats {size:,} value(s); with the aliases before it, aliases repeat "
                f"{self._alias_values:,} values, and a config may repeat at most {MAX_ALIAS_VALUES:,} that way "
                "(anchors that alias each other multiply: a 'billion laughs' file). Fix: write the values out, or alias fewer of them",
            )

    def _expanded_size(self, root: yaml.Node) -> int:
        """Values under `root` once every alias is written out; each node is sized once."""
        sizes = self._sizes
        stack = [(root, False)]
        while stack:
            node, ready = stack.pop()
            if id(node) in sizes:
                continue
            children = _children(node)
            if ready:
                sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            else:
                stack.append((node, True))
                stack.extend((c, False) for c in children if id(c) not in sizes)
        return sizes[id(root)]


def bounded_loader(readers: tuple = READERS) -> type:
    return type("BoundedLoader", (_BoundedComposer, *readers, yaml.constructor.SafeConstructor, yaml.resolver.Resolver), {"_readers": readers})


_BoundedLoader = bounded_loader()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


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


def _convert(node: yaml.Node, path: KeyPath, lines: dict, dups: list, loader: _BoundedComposer) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YAMLLimit(key_node.start_mark.line + 1, "a key is a list or a mapping; expected a plain name (e.g. `targets:`)")
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


def read_config_text(path: Path) -> str:
    """The file's text, read only when it is a regular file of at most MAX_CONFIG_BYTES.

    A FIFO would block the run forever and /dev/zero would fill the memory; both are
    refused from `stat` alone (opening a FIFO blocks, so it is not opened)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, pipe or socket"
        raise YAMLLimit(None, f"not a regular file ({kind}); expected a model YAML file")
    with open(path, "rb") as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)  # never more, whatever stat said
    if len(raw) > MAX_CONFIG_BYTES:
        raise YAMLLimit(
            raw[:MAX_CONFIG_BYTES].count(b"\n") + 1,
            f"{max(info.st_size, len(raw)):,} bytes; a model config may be at most {MAX_CONFIG_BYTES:,} bytes (they are a few KB) "
            "and this line passes that. Fix: point at the right file",
        )
    return raw.decode("utf-8")


def load_located(path: Path, loader_class: type = _BoundedLoader) -> Located:
    """Parse `path`; raise YAMLLimit (too big, too deep, aliases that multiply), or
    yaml.YAMLError (with its own mark) on syntax errors."""
    text = read_config_text(Path(path))
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        dups: list[tuple[KeyPath, int]] = []
        value = None if node is None else _convert(node, (), lines, dups, loader)
    finally:
        loader.dispose()
    return Located(value, lines, dups)
