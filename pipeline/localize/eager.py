"""The eager side of localization: every layer's output of the source model.

Keras functional and Sequential models expose their layer graph: a second model
with every single-use layer's output as an extra output gives them all in one
eager call. Subclassed models (and layers called from Python code) have no such
graph; their sub-layers are observed while the model runs, in call order, and a
truncated model stops at the k-th of them (what bisection exports).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from pipeline.records import LoadedModel


@dataclass(frozen=True)
class EagerLayer:
    index: int
    name: str
    predecessors: tuple[str, ...]


def _keras_module(loaded: LoadedModel):
    if loaded.flavour == "keras3":
        import keras

        return keras
    if loaded.flavour == "tf_keras":
        import tf_keras

        return tf_keras
    return None


def is_graph_network(loaded: LoadedModel) -> bool:
    """A Keras functional or Sequential model whose layer outputs can be read directly."""
    keras = _keras_module(loaded)
    if keras is None:
        return False
    model = loaded.obj
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return False
    from tfship.compat.keras import functional_class

    return isinstance(model, functional_class(loaded.flavour))


def _parents(layer, flavour: str) -> list[str]:
    from tfship.compat.keras import inbound_nodes

    nodes = inbound_nodes(layer, flavour)
    if not nodes:
        return []
    node = nodes[0]
    if flavour == "keras3":
        return [getattr(p, "operation", None).name for p in getattr(node, "parent_nodes", []) if getattr(p, "operation", None) is not None]
    inbound = getattr(node, "inbound_layers", [])
    inbound = inbound if isinstance(inbound, (list, tuple)) else [inbound]
    return [layer.name for layer in inbound]


def graph_layers(loaded: LoadedModel) -> list[tuple[EagerLayer, Any]]:
    """(layer record, its symbolic output) for every single-use, single-output layer, in order."""
    from tfship.compat.keras import inbound_nodes

    model = loaded.obj
    rows = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        if len(inbound_nodes(layer, loaded.flavour)) != 1:
            continue  # a shared layer has one output per call: no single tensor to compare
        try:
            output = layer.output
        except (AttributeError, ValueError, RuntimeError):
            continue
        if isinstance(output, (list, tuple, dict)):
            continue
        rows.append((EagerLayer(len(rows), layer.name, tuple(_parents(layer, loaded.flavour))), output))
    return rows


def _feed(model, input_names: tuple[str, ...], inputs: dict[str, np.ndarray]):
    model_inputs = [getattr(t, "name", "").split(":")[0] for t in model.inputs]
    if len(model_inputs) == 1:
        return [inputs[input_names[0]]]  # the structure Keras 3 expects: a list of its one input
    if sorted(model_inputs) == sorted(input_names):
        return [inputs[name] for name in model_inputs]
    return [inputs[name] for name in input_names]


def probe_model(loaded: LoadedModel, outputs: list):
    keras = _keras_module(loaded)
    return keras.Model(loaded.obj.inputs, outputs)


def graph_layer_outputs(loaded: LoadedModel, input_names: tuple[str, ...], inputs: dict[str, np.ndarray]) -> tuple[list[EagerLayer], dict[str, np.ndarray]]:
    """Every layer's eager output on `inputs`, in one call of a probe model."""
    rows = graph_layers(loaded)
    if not rows:
        return [], {}
    probe = probe_model(loaded, [out for _, out in rows])
    values = probe(_feed(loaded.obj, input_names, inputs), training=False)
    values = values if isinstance(values, (list, tuple)) else [values]
    return [layer for layer, _ in rows], {layer.name: np.asarray(v) for (layer, _), v in zip(rows, values)}


def truncated_graph_call(loaded: LoadedModel, input_names: tuple[str, ...], layer_name: str) -> Callable[[dict], dict]:
    """A call that computes the model up to `layer_name` and returns {"probe": its output}."""
    output = dict((layer.name, out) for layer, out in graph_layers(loaded))[layer_name]
    probe = probe_model(loaded, [output])

    def call(inputs: dict) -> dict:
        value = probe(_feed(loaded.obj, input_names, inputs), training=False)
        return {"probe": value[0] if isinstance(value, (list, tuple)) else value}

    return call


# --------------------------------------------------------------------------- subclassed models


class _Stop(BaseException):
    """Raised by a hooked layer to cut the model short. A BaseException, so neither
    Keras's error decoration nor tracing's `except Exception` handlers touch it."""


def leaf_layers(loaded: LoadedModel) -> list:
    """Every sub-layer without sub-layers of its own (nested models are walked)."""
    found, seen, stack = [], set(), list(reversed(getattr(loaded.obj, "layers", None) or []))
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        children = [c for c in (getattr(layer, "layers", None) or []) if c is not layer]
        if children:
            stack.extend(reversed(children))
        else:
            found.append(layer)
    return found


class _Hooks:
    """Wraps sub-layers' `call` on the instances while active; records outputs in call order."""

    def __init__(self, layers: list, stop_after: int | None = None):
        self.layers = layers
        self.stop_after = stop_after
        self.calls: list[tuple[str, Any]] = []
        self.captured = None

    def __enter__(self):
        for layer in self.layers:
            original = layer.call

            def wrapped(*args, _original=original, _layer=layer, **kwargs):
                out = _original(*args, **kwargs)
                if not any(name == _layer.name for name, _ in self.calls):
                    self.calls.append((_layer.name, out))
                    if self.stop_after is not None and len(self.calls) - 1 == self.stop_after:
                        self.captured = out
                        raise _Stop()
                return out

            object.__setattr__(layer, "call", wrapped)
        return self

    def __exit__(self, *exc):
        for layer in self.layers:
            try:
                object.__delattr__(layer, "call")
            except AttributeError:
                pass
        return False


def called_layers(loaded: LoadedModel, inputs: dict[str, np.ndarray]) -> tuple[list[EagerLayer], dict[str, np.ndarray]]:
    """Leaf layers in the order one eager call reaches them, with their outputs."""
    import tensorflow as tf

    with _Hooks(leaf_layers(loaded)) as hooks:
        loaded.call({k: tf.constant(v) for k, v in inputs.items()})
    rows, values = [], {}
    for name, out in hooks.calls:
        if isinstance(out, (list, tuple, dict)):
            continue
        rows.append(EagerLayer(len(rows), name, (rows[-1].name,) if rows else ()))
        values[name] = np.asarray(out)
    return rows, values


def truncated_hooked_call(loaded: LoadedModel, order: list[str], layer_name: str) -> Callable[[dict], dict]:
    """A call that runs the model until the layer `layer_name` (the k-th called) returns."""
    by_name = {layer.name: layer for layer in leaf_layers(loaded)}
    wanted = order.index(layer_name)

    def call(inputs: dict) -> dict:
        hooks = _Hooks([by_name[n] for n in order if n in by_name], stop_after=None)
        hooks.stop_after = wanted
        with hooks:
            try:
                loaded.call(inputs)
            except _Stop:
                return {"probe": hooks.captured}
        raise RuntimeError(f"layer '{layer_name}' was not called")

    return call


# --------------------------------------------------------------------------- names


def layer_of(scope: str, layer_names: set[str]) -> str | None:
    """The layer a graph tensor or op belongs to, from its name scope.

    Tracing scopes ops as `<model>_1/<layer>_1/<op>`; the deepest scope part that
    names a layer (exactly, else without the `_<n>` uniquifying suffix) wins.
    """
    parts = scope.split(":")[0].split("/")
    for part in reversed(parts[:-1] if len(parts) > 1 else parts):
        if part in layer_names:
            return part
        base = re.sub(r"_\d+$", "", part)
        if base in layer_names:
            return base
    return None
