"""Keras internals (Keras 3 as `keras`, Keras 2 as `tf_keras`): the functional model
class, nested layers, a layer's inbound nodes, the layer that made a symbolic tensor,
and tf-keras's safe-mode scope."""
from __future__ import annotations

from typing import Any

from tfship.compat import Internal, Shim

_LAYERS = "listing every nested layer of a model"
_GRAPH = "reading the layer graph of a functional model (layer localization)"

KERAS = Shim("keras", {
    "functional": Internal("keras.src.models.functional", "Functional", _GRAPH),
    "flatten_layers": Internal("keras", "Layer._flatten_layers", _LAYERS),
})
TF_KERAS = Shim("tf-keras", {
    "functional": Internal("tf_keras.src.engine.functional", "Functional", _GRAPH),
    "flatten_layers": Internal("tf_keras", "layers.Layer._flatten_layers", _LAYERS),
    "safe_mode_scope": Internal("tf_keras.src.saving.serialization_lib", "SafeModeScope", "reading .h5 files with Keras's safe mode on"),
})


def flavour_of(obj: Any) -> str | None:
    """'keras3' or 'tf_keras' for a Keras object (its classes' modules say), else None."""
    for cls in type(obj).__mro__:
        root = (cls.__module__ or "").split(".")[0]
        if root == "tf_keras":
            return "tf_keras"
        if root == "keras":
            return "keras3"
    return None


def _shim(flavour: str) -> Shim:
    return TF_KERAS if flavour == "tf_keras" else KERAS


def functional_class(flavour: str) -> type:
    return _shim(flavour)["functional"]


def flatten_layers(obj: Any) -> list | None:
    """Every layer of a Keras model, itself and nested ones included; None for other objects."""
    flavour = flavour_of(obj)
    if flavour is None or not hasattr(obj, "_flatten_layers"):
        return None
    _shim(flavour).check()
    return list(obj._flatten_layers(include_self=True, recursive=True))


def inbound_nodes(layer: Any, flavour: str) -> list:
    """The nodes that call `layer` in its model's graph (tf-keras has a public property)."""
    if flavour == "tf_keras":
        return list(layer.inbound_nodes or [])
    return list(KERAS.attribute(layer, "_inbound_nodes", _GRAPH) or [])


def producing_layer(tensor: Any) -> str | None:
    """The name of the layer (operation) that produced a symbolic Keras tensor."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        flavour = flavour_of(tensor) or "keras3"
        _shim(flavour).attribute(tensor, "_keras_history", "naming the layer behind each model output")
    op = getattr(history, "operation", None) or getattr(history, "layer", None)
    return getattr(op, "name", None)


def tf_keras_safe_mode():
    """tf-keras's safe-mode scope, entered on (a saved Python lambda is refused, never run)."""
    return TF_KERAS["safe_mode_scope"](True)
