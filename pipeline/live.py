"""Models that live in this Python process (a notebook's freshly trained model).

A live object is registered under a token derived from its content (class, code and
weights), and the config names it as the factory `pipeline.live:<token>`: the load
stage imports that like any factory and gets the object back, so an in-process run
goes through exactly the stages a YAML config does. The same weights and code give
the same token, hence the same config and cache key: re-exporting an unchanged
model reuses its artifacts; training it further rebuilds them.
"""
from __future__ import annotations

import hashlib
import inspect
from typing import Any

_OBJECTS: dict[str, Any] = {}
MODULE = __name__


def _source_of(obj: Any) -> str:
    target = obj
    for attr in ("python_function", "__wrapped__"):
        target = getattr(target, attr, target)
    for candidate in (target, type(target)):
        try:
            return inspect.getsource(candidate)
        except (TypeError, OSError):
            continue
    return ""


def _variables(obj: Any) -> list:
    for attr in ("weights", "variables"):
        found = getattr(obj, attr, None)
        if found is not None and not callable(found):
            return list(found)
    function = getattr(obj, "python_function", obj)
    closure = getattr(function, "__closure__", None) or ()
    found = []
    for cell in closure:
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if hasattr(value, "numpy") and hasattr(value, "assign"):
            found.append(value)
        elif hasattr(value, "variables") and not callable(getattr(value, "variables")):
            found += list(value.variables)
    return found


def content_digest(obj: Any) -> str:
    """sha256 of the object's class, source code and variable values."""
    import numpy as np

    digest = hashlib.sha256()
    digest.update(f"{type(obj).__module__}.{type(obj).__qualname__}".encode())
    digest.update(_source_of(obj).encode())
    for variable in _variables(obj):
        value = np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)
        digest.update(str(getattr(variable, "path", getattr(variable, "name", ""))).encode())
        digest.update(str(value.dtype).encode() + str(value.shape).encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def register(obj: Any) -> str:
    """Keep `obj` for this process's runs; returns its factory reference 'pipeline.live:<token>'."""
    token = f"model_{content_digest(obj)[:20]}"
    _OBJECTS[token] = obj
    return f"{MODULE}:{token}"


def is_live(ref: str | None) -> bool:
    return bool(ref) and ref.startswith(f"{MODULE}:")


def __getattr__(name: str):
    """`pipeline.live:<token>` resolves to a factory returning the registered object."""
    if name in _OBJECTS:
        obj = _OBJECTS[name]
        return lambda: obj
    raise AttributeError(f"no live model '{name}' in this process (live models cannot cross into a worker process; use isolate=False)")
