"""The target registry: one module per target, refused duplicates, known names listed.

Importing this package must stay cheap: target modules import TensorFlow and their
converters lazily, inside their functions.
"""
from __future__ import annotations

import importlib
import os

from pipeline.target import Target

# name -> module that defines it. Adding a target = adding a file and a line here.
_MODULES = {
    "savedmodel": "targets.savedmodel",
    "tflite": "targets.tflite",
    "edgetpu": "targets.edgetpu",
    "onnx": "targets.onnx",
    "xla": "targets.xla",
    "tpu": "targets.tpu",
    "openvino": "targets.openvino",
}


class Registry:
    def __init__(self) -> None:
        self._targets: dict[str, Target] = {}

    def register(self, target: Target) -> Target:
        if target.name in self._targets:
            raise ValueError(f"target '{target.name}' is registered twice")
        self._targets[target.name] = target
        return target

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def names(self) -> list[str]:
        return sorted(self._targets)

    def get(self, name: str) -> Target:
        try:
            return self._targets[name]
        except KeyError:
            raise KeyError(f"unknown target {name!r}; known: {', '.join(self.names())}") from None


REGISTRY = Registry()

# In-house targets live outside this package: TFSHIP_TARGET_MODULES=pkg.mod[,pkg.other]
# names modules that each define TARGET; they register like the built-in ones.
_EXTRA = [m.strip() for m in os.environ.get("TFSHIP_TARGET_MODULES", "").split(",") if m.strip()]

for _module in list(_MODULES.values()) + _EXTRA:
    REGISTRY.register(importlib.import_module(_module).TARGET)
