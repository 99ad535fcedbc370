"""Every private API tfship uses, behind one shim per library.

tfship freezes, converts and inspects models through internals of TensorFlow, Keras,
tf2onnx, LiteRT, ai-edge-quantizer and OpenVINO/NNCF that no release promises to keep.
Each library's module here (tensorflow, keras, tf2onnx, litert, quantizer, openvino)
lists the internals it needs in one table, resolves them all the first time one is
asked for, and raises MissingInternal with one line naming the internal, the library's
version and the versions tfship was tested with when one is gone. Internals that live
on instances (an attribute a constructor sets) are checked where they are read.
Where a public way exists in some supported version, the shim uses it there.

Nothing here imports an optional library at module import time.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from pipeline.errors import MissingInternal

# The versions each library was measured with (README, "Supported versions").
TESTED = {
    "tensorflow": "2.19 - 2.21",
    "keras": "3.15",
    "tf-keras": "2.19 - 2.21",
    "tf2onnx": "1.17",
    "ai-edge-litert": "2.3",
    "ai-edge-quantizer": "0.10",
    "openvino": "2026.4",
    "nncf": "3.4",
}


@dataclass(frozen=True)
class Internal:
    """One private name: `module` imported, then `attribute` (dotted) read from it."""

    module: str
    attribute: str = ""
    use: str = ""

    @property
    def path(self) -> str:
        return f"{self.module}.{self.attribute}" if self.attribute else self.module


def version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def missing(distribution: str, what: str, use: str, tested: str | None = None) -> MissingInternal:
    """The one-line error for an internal of `distribution` that is not there; `tested`:
    the versions that have it when narrower than the library's tested range."""
    return MissingInternal(
        f"{distribution} {version_of(distribution)} has no {what} (tfship uses it for {use}); "
        f"tfship is tested with {distribution} {tested or TESTED[distribution]}: install a version in that range"
    )


class Shim:
    """A library's internals, resolved together once."""

    def __init__(self, distribution: str, internals: dict[str, Internal]):
        self.distribution = distribution
        self.internals = internals
        self._values: dict[str, Any] | None = None

    def check(self) -> dict[str, Any]:
        """Resolve every internal (once); MissingInternal names the first one missing."""
        if self._values is None:
            values = {}
            for key, internal in self.internals.items():
                try:
                    value = importlib.import_module(internal.module)
                    for part in filter(None, internal.attribute.split(".")):
                        value = getattr(value, part)
                except (ImportError, AttributeError) as exc:
                    raise missing(self.distribution, internal.path, internal.use) from exc
                values[key] = value
            self._values = values
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self.check()[key]

    def module_attribute(self, name: str) -> Any:
        """A shim module's `__getattr__`: `from tfship.compat.tensorflow import saved_model_pb2`."""
        if name in self.internals:
            return self[name]
        raise AttributeError(name)

    def attribute(self, obj: Any, name: str, use: str) -> Any:
        """`obj.name`, an internal that lives on instances: checked where it is read."""
        if not hasattr(obj, name):
            raise missing(self.distribution, f"{type(obj).__module__}.{type(obj).__qualname__}.{name}", use)
        return getattr(obj, name)
