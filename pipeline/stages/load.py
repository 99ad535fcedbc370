"""Stage `load`: the source model, callable eagerly with the config's names.

Which Keras reads a file is decided by the file itself (a `.keras` archive is
Keras 3; an `.h5` says which Keras wrote it; a SavedModel is loaded by TensorFlow),
never by a process-wide switch such as TF_USE_LEGACY_KERAS.
"""
from __future__ import annotations

import importlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.spec import ModelConfig
from pipeline.errors import ModelError
from pipeline.records import LoadedModel


def import_ref(ref: str, what: str) -> Any:
    """Resolve 'package.module:attr' with a clear error."""
    module_name, _, attr = ref.partition(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # factories live in the project, like `examples.*`
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"cannot import {what} '{ref}': {exc}. Expected an importable module (run from the project root, or install it).") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ModelError(f"{what} '{ref}': module '{module_name}' has no attribute '{attr}'") from None


def build_missing(config: ModelConfig) -> None:
    """Run the config's `build` recipe when the model file does not exist yet."""
    source = config.source
    if source.path is None or source.path.exists() or source.build is None:
        return
    recipe = import_ref(source.build, "build recipe")
    print(f"[{config.name}] building missing model {source.path} with {source.build}", flush=True)
    recipe(source.path)
    if not source.path.exists():
        raise ModelError(f"build recipe {source.build} ran but did not create {source.path}")


def h5_keras_major(path: Path) -> int:
    """Which Keras wrote an .h5 file: 2 (tf-keras) or 3."""
    import h5py

    with h5py.File(path, "r") as f:
        version = f.attrs.get("keras_version", b"")
        if isinstance(version, bytes):
            version = version.decode()
        if not version and "model_config" in f.attrs:
            cfg = f.attrs["model_config"]
            cfg = cfg.decode() if isinstance(cfg, bytes) else cfg
            version = json.loads(cfg).get("keras_version", "")
    return 3 if str(version).startswith("3") else 2


def _keras_call(model: Any, config: ModelConfig) -> Any:
    names = config.input_names
    model_inputs = [getattr(t, "name", "").split(":")[0] for t in (getattr(model, "inputs", None) or [])]
    by_name = sorted(model_inputs) == sorted(names)

    def call(inputs: dict) -> Any:
        if len(names) == 1:
            args = inputs[names[0]]
        elif by_name:
            args = {n: inputs[n] for n in names}
        else:  # positional, in the config's order
            args = [inputs[n] for n in names]
        return model(args, training=False)

    return call


def _name_outputs(result: Any, config: ModelConfig, where: str) -> dict:
    """Map whatever the model returns onto the config's output names."""
    outs = config.outputs
    if isinstance(result, dict):
        named = {}
        for o in outs:
            key = o.source or o.name
            if key not in result:
                raise ModelError(
                    f"{where} returned outputs {sorted(result)}, but the config asks for '{key}'. "
                    f"Fix `outputs:` in {config.file} (use {{name: {o.name}, source: <one of {sorted(result)}>}})."
                )
            named[o.name] = result[key]
        return named
    items = list(result) if isinstance(result, (list, tuple)) else [result]
    if len(items) != len(outs):
        raise ModelError(f"{where} returned {len(items)} output(s) but the config names {len(outs)}: {[o.name for o in outs]}. Fix `outputs:` in {config.file}.")
    return {o.name: t for o, t in zip(outs, items)}


def _source_file(obj: Any) -> Path | None:
    try:
        target = obj if inspect.isfunction(obj) else type(obj)
        return Path(inspect.getsourcefile(target))
    except (TypeError, OSError):
        return None


def load_model(config: ModelConfig) -> LoadedModel:
    """Load the source model and return an eager callable with config names."""
    source = config.source
    build_missing(config)
    if source.kind == "keras":
        import keras

        obj = _wrap_load(lambda: keras.saving.load_model(source.path, compile=False), source.path)
        flavour = "keras3"
    elif source.kind == "h5":
        major = h5_keras_major(source.path)
        if major == 3:
            import keras

            obj = _wrap_load(lambda: keras.saving.load_model(source.path, compile=False), source.path)
            flavour = "keras3"
        else:
            import tf_keras

            obj = _wrap_load(lambda: tf_keras.models.load_model(source.path, compile=False), source.path)
            flavour = "tf_keras"
    elif source.kind == "saved_model":
        import tensorflow as tf

        loaded = _wrap_load(lambda: tf.saved_model.load(str(source.path)), source.path)
        if source.signature not in loaded.signatures:
            raise ModelError(
                f"SavedModel {source.path} has no signature '{source.signature}'; it has: {', '.join(loaded.signatures) or 'none'}. "
                f"Set `source.signature` in {config.file}."
            )
        fn = loaded.signatures[source.signature]
        expected = set(fn.structured_input_signature[1])
        if expected != set(config.input_names):
            raise ModelError(
                f"SavedModel signature '{source.signature}' takes inputs {sorted(expected)}, but {config.file} names {list(config.input_names)}. "
                "Name the config's inputs after the signature's."
            )
        return LoadedModel(
            obj=loaded,
            flavour="saved_model",
            call=lambda inputs: _name_outputs(fn(**{n: tf.convert_to_tensor(v) for n, v in inputs.items()}), config, f"signature '{source.signature}'"),
            source_file=source.path,
        )
    else:
        factory = import_ref(source.factory, "model factory")
        obj = factory()
        flavour = _flavour_of(obj)
        if flavour in ("module", "function"):
            names = config.input_names
            fn = obj

            def call(inputs: dict) -> dict:
                return _name_outputs(fn(*[inputs[n] for n in names]), config, source.factory)

            return LoadedModel(obj=obj, flavour=flavour, call=call, source_file=_source_file(obj))
    keras_call = _keras_call(obj, config)
    return LoadedModel(
        obj=obj,
        flavour=flavour,
        call=lambda inputs: _name_outputs(keras_call(inputs), config, f"model '{config.name}'"),
        source_file=_source_file(obj) if source.kind == "factory" else source.path,
    )


def _flavour_of(obj: Any) -> str:
    import keras
    import tensorflow as tf

    try:
        import tf_keras
    except ImportError:  # pragma: no cover - tf-keras is a declared dependency
        tf_keras = None
    if isinstance(obj, keras.Model) or isinstance(obj, keras.layers.Layer):
        return "keras3"
    if tf_keras is not None and isinstance(obj, tf_keras.layers.Layer):
        return "tf_keras"
    if isinstance(obj, tf.Module) and callable(obj):
        return "module"
    if callable(obj):
        return "function"
    raise ModelError(f"model factory returned {type(obj).__name__}, expected a Keras model, a callable tf.Module or a function")


def _wrap_load(load: Any, path: Path) -> Any:
    try:
        return load()
    except Exception as exc:  # third-party loaders raise anything; name the file and the cause
        raise ModelError(f"cannot load model {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
