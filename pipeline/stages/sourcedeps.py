"""The user code a model file's load depends on, for the stage cache's fast path.

A `.keras`, `.h5` or SavedModel file decides the model together with the code its
load runs: the modules `source.modules` and `source.custom_objects` name, the modules
that define the classes of the loaded layers, and whatever user modules those import
(found by following module globals: imported modules, and the modules of imported
functions and classes). Like a compiler's dependency file, the list is recorded when
the target is built and its files' hashes are compared on the next run, without
importing TensorFlow. A layer class whose code has no file (defined in a notebook or
an interactive session) cannot be hashed: such a source is not self-contained, and a
cache hit then needs the model built and fingerprinted.
"""
from __future__ import annotations

import sys
from pathlib import Path
from types import FunctionType, ModuleType
from typing import Any, Iterable

from pipeline.usercode import is_user_file


def _layers(obj: Any) -> list:
    """Every layer of a Keras model (nested ones included); [] for other objects."""
    from tfship.compat.keras import flatten_layers

    layers = flatten_layers(obj)  # Keras 3 and tf-keras
    if layers is not None:
        return layers
    found, stack = [], [obj]
    while stack:
        layer = stack.pop()
        found.append(layer)
        stack.extend(getattr(layer, "layers", None) or [])
    return found


def _module_file(module: ModuleType) -> str | None:
    return getattr(module, "__file__", None)


def _packages_of(name: str) -> Iterable[ModuleType]:
    """`a.b.c` imports `a` and `a.b` too."""
    parts = name.split(".")
    for i in range(1, len(parts)):
        module = sys.modules.get(".".join(parts[:i]))
        if module is not None:
            yield module


def source_dependencies(obj: Any, module_names: Iterable[str]) -> tuple[tuple[Path, ...], bool]:
    """(user module files, self-contained) for a model loaded from a file."""
    roots: list[ModuleType] = []
    self_contained = True
    for name in module_names:
        if name in sys.modules:
            roots.append(sys.modules[name])
    for layer in _layers(obj) if obj is not None else []:
        cls = type(layer)
        module = sys.modules.get(cls.__module__)
        file = _module_file(module) if module is not None else None
        if file is None:
            if cls.__module__ not in sys.builtin_module_names and not cls.__module__.startswith(("keras", "tf_keras", "tensorflow")):
                self_contained = False  # code tfship cannot read back: a notebook's class
            continue
        if is_user_file(file):
            roots.append(module)
    files: set[Path] = set()
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        module = stack.pop()
        if module.__name__ in seen:
            continue
        seen.add(module.__name__)
        file = _module_file(module)
        if file is None or not is_user_file(file):
            continue
        files.add(Path(file).resolve())
        stack.extend(_packages_of(module.__name__))
        for value in list(vars(module).values()):
            if isinstance(value, ModuleType):
                stack.append(value)
                continue
            owner = value.__module__ if isinstance(value, type) or isinstance(value, FunctionType) else None
            if isinstance(owner, str) and owner in sys.modules and owner not in seen:
                stack.append(sys.modules[owner])
    return tuple(sorted(files)), self_contained
