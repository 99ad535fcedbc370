"""Stage `savedmodel`: the canonical SavedModel every target converts from.

Keras 3 variables are not tf.Module-trackable: a Keras 3 model stored inside a
tf.Module saves without its weights (and converts into a weightless .tflite that
outputs NaN). So the module tracks the underlying tf.Variables explicitly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.records import LoadedModel, TracedModel


def tracking_module(loaded: LoadedModel) -> Any:
    """A tf.Module that owns every variable of the loaded model, whatever its flavour."""
    import tensorflow as tf

    module = tf.Module()
    if loaded.flavour == "keras3":
        module.keras_variables = [v.value for v in loaded.obj.weights]
        # Lookup tables (TextVectorization, StringLookup) are TensorFlow resources held by
        # the layers, not weights: untracked, the export refuses the function using them.
        module.keras_resources = keras_resources(loaded.obj)
    elif loaded.flavour in ("tf_keras", "module", "saved_model"):
        module.model = loaded.obj
    return module


def keras_resources(model: Any) -> list:
    """Every TensorFlow resource (a lookup table) a Keras 3 layer of `model` holds."""
    import tensorflow as tf

    from tfship.compat.keras import flatten_layers

    layers = flatten_layers(model) or [model]
    found: dict[int, Any] = {}
    for layer in layers:
        for value in vars(layer).values():
            if isinstance(value, tf.saved_model.experimental.TrackableResource):
                found.setdefault(id(value), value)
    return list(found.values())


def write_saved_model(path: Path, loaded: LoadedModel, signatures: dict[str, Any], functions: dict[str, Any] | None = None, options: Any = None) -> Path:
    """Save `signatures` (name -> tf.function or concrete function) with the model's variables.

    `functions` are extra tf.functions stored as attributes (e.g. a TPU function to alias).
    """
    import tensorflow as tf

    module = tracking_module(loaded)
    for name, fn in (functions or {}).items():
        setattr(module, name, fn)
    concrete = {name: (fn.get_concrete_function() if hasattr(fn, "get_concrete_function") else fn) for name, fn in signatures.items()}
    if loaded.flavour == "function":
        # A bare function owns nothing: track the variables its graph captured (a
        # notebook's tf.function closing over tf.Variables, or over a Keras model).
        captured = {id(v): v for c in concrete.values() for v in c.variables}
        module.captured_variables = list(captured.values())
    tf.saved_model.save(module, str(path), signatures=concrete, options=options)
    return path


def export_saved_model(path: Path, loaded: LoadedModel, traced: TracedModel) -> Path:
    """The canonical SavedModel: `serving_default` with the config's input and output names."""
    return write_saved_model(path, loaded, {"serving_default": traced.function}, functions={"serve": traced.function})
