"""What a live model takes and returns, read from the model itself.

Inputs come from what the model declares: a Keras model's input tensors (Keras 3 or
tf-keras), a `tf.function`'s `input_signature`, a `tf.Module`'s `__call__` signature;
or from the caller's `inputs=`. Outputs are named after what one eager call on zeros
returns: a dict's keys, a Keras model's output names, else `output_0`, `output_1`...
Every gap is bad input that says which argument fills it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from pipeline.errors import ModelError

INPUTS_HELP = "pass inputs= as {name: (shape, dtype)} or a list of tf.TensorSpec, e.g. inputs={'x': ((None, 28, 28), 'float32')}"


@dataclass(frozen=True)
class ModelFacts:
    name: str
    flavour: str  # keras3 | tf_keras | module | function
    inputs: tuple[dict, ...]  # {name, shape, dtype}, YAML-ready
    outputs: tuple  # names, or {name, source} when the model's own key differs


def _identifier(text: str, fallback: str) -> str:
    name = re.sub(r"\W", "_", str(text or "").split(":")[0]).strip("_")
    if not name or name[0].isdigit():
        name = f"{fallback}_{name}" if name else fallback
    return name


def flavour_of(obj: Any) -> str:
    import keras
    import tensorflow as tf
    import tf_keras

    if isinstance(obj, keras.layers.Layer):
        return "keras3"
    if isinstance(obj, tf_keras.layers.Layer):
        return "tf_keras"
    if isinstance(obj, tf.Module) and callable(obj):
        return "module"
    if callable(obj):
        return "function"
    raise ModelError(f"model: expected a Keras model (Keras 3 or tf-keras), a callable tf.Module, a tf.function or a path, got {type(obj).__name__}")


def _dtype_name(dtype: Any) -> str:
    name = getattr(dtype, "name", None) or str(dtype)
    return "string" if name in ("string", "object") else name


def _spec_dict(name: str, shape: Any, dtype: Any) -> dict:
    dims = list(shape.as_list()) if hasattr(shape, "as_list") else list(shape)
    return {"name": name, "shape": [None if d is None else int(d) for d in dims], "dtype": _dtype_name(dtype)}


def specs_from_user(inputs: Any) -> list[dict]:
    if isinstance(inputs, Mapping):
        out = []
        for name, spec in inputs.items():
            if hasattr(spec, "shape") and hasattr(spec, "dtype"):
                out.append(_spec_dict(name, spec.shape, spec.dtype))
            elif isinstance(spec, (tuple, list)) and len(spec) == 2:
                out.append(_spec_dict(name, spec[0], spec[1]))
            else:
                raise ModelError(f"inputs['{name}']: expected (shape, dtype) or a tf.TensorSpec, got {spec!r}; {INPUTS_HELP}")
        return out
    if isinstance(inputs, (list, tuple)):
        out = []
        for i, spec in enumerate(inputs):
            if not (hasattr(spec, "shape") and hasattr(spec, "dtype")):
                raise ModelError(f"inputs[{i}]: expected a tf.TensorSpec, got {spec!r}; {INPUTS_HELP}")
            out.append(_spec_dict(_identifier(getattr(spec, "name", None), f"input_{i}"), spec.shape, spec.dtype))
        return out
    raise ModelError(f"inputs: expected a mapping or a list of tf.TensorSpec, got {type(inputs).__name__}; {INPUTS_HELP}")


def _signature_specs(function: Any) -> list[dict] | None:
    import inspect

    signature = getattr(function, "input_signature", None)
    if not signature:
        return None
    try:
        arg_names = [p for p in inspect.signature(function.python_function).parameters if p != "self"]
    except (TypeError, ValueError, AttributeError):
        arg_names = []
    out = []
    for i, spec in enumerate(signature):
        if not hasattr(spec, "shape"):
            return None  # nested structures are not a flat signature
        fallback = arg_names[i] if i < len(arg_names) else f"input_{i}"
        out.append(_spec_dict(_identifier(spec.name or fallback, f"input_{i}"), spec.shape, spec.dtype))
    return out


def _declared_inputs(obj: Any, flavour: str) -> list[dict] | None:
    if flavour in ("keras3", "tf_keras"):
        try:
            tensors = list(obj.inputs or [])
        except (AttributeError, ValueError):  # a subclassed model that was never called
            tensors = []
        if not tensors:
            return None
        return [_spec_dict(_identifier(t.name, f"input_{i}"), t.shape, t.dtype) for i, t in enumerate(tensors)]
    if flavour == "module":
        return _signature_specs(getattr(obj, "__call__", None))
    return _signature_specs(obj)


def _zeros(inputs: list[dict]) -> list:
    import numpy as np

    feeds = []
    for spec in inputs:
        shape = [1 if d is None else d for d in spec["shape"]]
        feeds.append(np.full(shape, b"", dtype=object) if spec["dtype"] == "string" else np.zeros(shape, dtype=spec["dtype"]))
    return feeds


def _call_once(obj: Any, flavour: str, inputs: list[dict]) -> Any:
    import tensorflow as tf

    feeds = [tf.constant(v) for v in _zeros(inputs)]
    try:
        if flavour in ("keras3", "tf_keras"):
            names = [s["name"] for s in inputs]
            return obj(feeds[0] if len(feeds) == 1 else dict(zip(names, feeds)) if _keras_by_name(obj, names) else feeds, training=False)
        return obj(*feeds)
    except Exception as exc:  # user code: name the call and the cause
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelError(
            f"calling the model once on zeros shaped like its inputs {[(s['name'], s['shape'], s['dtype']) for s in inputs]} failed: "
            f"{type(exc).__name__}: {first}. Check inputs= (names, shapes, dtypes)."
        ) from None


def _keras_by_name(obj: Any, names: list[str]) -> bool:
    declared = [_identifier(getattr(t, "name", ""), "") for t in (getattr(obj, "inputs", None) or [])]
    return sorted(declared) == sorted(names)


def _output_names(obj: Any, flavour: str, result: Any, outputs: Any) -> tuple:
    if isinstance(result, Mapping):
        keys = list(result)
        if outputs is None:
            return tuple(k if _identifier(k, "output") == k else {"name": _identifier(k, "output"), "source": k} for k in keys)
    else:
        keys = list(result) if isinstance(result, (list, tuple)) else [result]
    if outputs is not None:
        if isinstance(outputs, Mapping):
            return tuple({"name": name, "source": source} for name, source in outputs.items())
        outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        if not isinstance(result, Mapping) and len(outputs) != len(keys):
            raise ModelError(f"outputs: the model returns {len(keys)} output(s), outputs= names {len(outputs)}: {outputs}")
        return tuple(outputs)
    declared = list(getattr(obj, "output_names", None) or []) if flavour in ("keras3", "tf_keras") else []
    if len(declared) == len(keys):
        names = [_identifier(n, f"output_{i}") for i, n in enumerate(declared)]
        if len(set(names)) == len(names):
            return tuple(names)
    return tuple(f"output_{i}" for i in range(len(keys))) if len(keys) > 1 else ("output",)


def _default_name(obj: Any, flavour: str) -> str:
    if flavour in ("keras3", "tf_keras"):
        raw = getattr(obj, "name", "") or "model"
    else:
        raw = getattr(obj, "__name__", None) or getattr(getattr(obj, "python_function", None), "__name__", None) or getattr(obj, "name", None) or type(obj).__name__
    return _identifier(raw, "model").lower()


def describe(obj: Any, inputs: Any = None, outputs: Any = None, name: str | None = None) -> ModelFacts:
    """Name, inputs and outputs of a live model, ready for a config."""
    flavour = flavour_of(obj)
    specs = specs_from_user(inputs) if inputs is not None else _declared_inputs(obj, flavour)
    if not specs:
        what = {"module": "its __call__ is not a tf.function with an input_signature", "function": "it has no input_signature"}.get(flavour, "the model was never built on an input")
        raise ModelError(f"cannot tell the model's inputs: {what}. {INPUTS_HELP[0].upper() + INPUTS_HELP[1:]}")
    result = _call_once(obj, flavour, specs)
    return ModelFacts(name or _default_name(obj, flavour), flavour, tuple(specs), _output_names(obj, flavour, result, outputs))
