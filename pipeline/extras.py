"""Optional dependency groups (extras) and the door that names them.

`pip install tfship` is the core: load, trace, SavedModel, XLA and TPU, all on
TensorFlow alone. Each other target's converter and runtime is an extra:

    tfship[onnx]      onnx, onnxruntime, tf2onnx
    tfship[tflite]    ai-edge-litert, ai-edge-quantizer (tflite and edgetpu)
    tfship[openvino]  openvino, nncf
    tfship[all]       every extra

A target whose extra is missing is refused while the config is validated (before
TensorFlow loads, exit 2), and a runtime asked to open such an artifact raises
MissingExtra with the same install command. Nothing here imports an optional package:
presence is read from the import system's finders.
"""
from __future__ import annotations

import importlib.util

from pipeline.errors import MissingExtra

# extra -> (import name, distribution name) of every package it brings
EXTRAS: dict[str, tuple[tuple[str, str], ...]] = {
    "onnx": (("onnx", "onnx"), ("onnxruntime", "onnxruntime"), ("tf2onnx", "tf2onnx")),
    "tflite": (("ai_edge_litert", "ai-edge-litert"), ("ai_edge_quantizer", "ai-edge-quantizer")),
    "openvino": (("openvino", "openvino"), ("nncf", "nncf")),
}

# target -> the extra it needs and the import names it cannot start without (None: all of
# the extra's); targets not listed run on the core install. The openvino int8 variant's
# NNCF is checked by the target itself (its float variants run without it).
TARGET_EXTRAS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "onnx": ("onnx", None),
    "tflite": ("tflite", None),
    "edgetpu": ("tflite", None),
    "openvino": ("openvino", ("openvino",)),
}


def install_command(extra: str) -> str:
    return f"pip install 'tfship[{extra}]'"


def installed(module: str) -> bool:
    """Whether `module` can be imported here, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # blocked, or a broken installation
        return False


def missing(extra: str, modules: tuple[str, ...] | None = None) -> list[str]:
    """The distributions of `extra` (or only those importing as `modules`) not installed."""
    return [dist for module, dist in EXTRAS[extra] if (modules is None or module in modules) and not installed(module)]


def target_problem(target: str) -> str | None:
    """A config problem when `target` cannot run here for want of its extra, else None."""
    if target not in TARGET_EXTRAS:
        return None
    extra, modules = TARGET_EXTRAS[target]
    absent = missing(extra, modules)
    if not absent:
        return None
    return (f"the {target} target needs the `{extra}` extra ({', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not installed); "
            f"install it with `{install_command(extra)}`")


def require(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise MissingExtra (exit 2) naming the install command when `extra` is incomplete."""
    absent = missing(extra, modules)
    if absent:
        raise MissingExtra(f"{what} needs {', '.join(absent)}, which {'is' if len(absent) == 1 else 'are'} not installed; "
                           f"install it with `{install_command(extra)}`")
