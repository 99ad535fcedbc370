"""Stage `load`: the source model, callable eagerly with the config's names.

Which Keras reads a file is decided by the file itself (a `.keras` archive is
Keras 3; an `.h5` says which Keras wrote it; a SavedModel is loaded by TensorFlow),
never by a process-wide switch such as TF_USE_LEGACY_KERAS.
"""
from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

from pipeline.spec import ModelConfig
from pipeline.errors import ModelError
from pipeline.records import LoadedModel
from pipeline.stages.sourcedeps import source_dependencies
from pipeline.usercode import bad_input, call_user, first_line, import_user_module, import_user_ref


def build_missing(config: ModelConfig) -> None:
    """Run the config's `build` recipe when the model file does not exist yet."""
    source = config.source
    if source.path is None or source.path.exists() or source.build is None:
        return
    key = ("source", "build")
    recipe = import_user_ref(config, key, source.build, "build recipe")
    print(f"[{config.name}] building missing model {source.path} with {source.build}", flush=True)
    call_user(config, key, f"build recipe '{source.build}'", recipe, source.path)
    if not source.path.exists():
        raise bad_input(config, key, f"build recipe {source.build} ran but did not create {source.path}; it must write the model to the path it is given")


def import_source_modules(config: ModelConfig) -> dict:
    """Import `source.modules` (which register custom layers) and resolve `source.custom_objects`.

    Runs in the worker before the model file is read: Keras finds a registered class
    only once the module that registers it was imported in that process.
    """
    source = config.source
    for i, module in enumerate(getattr(source, "modules", ()) or ()):
        import_user_module(config, ("source", "modules", i), module, "custom layer module")
    objects = {}
    for name, ref in getattr(source, "custom_objects", ()) or ():
        objects[name] = import_user_ref(config, ("source", "custom_objects", name), ref, f"custom object '{name}'")
    return objects


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


def model_file_refusal(kind: str, path: Path) -> str | None:
    """Why the .keras or .h5 file at `path` is refused before Keras opens it, or None:
    a zip bomb, a member named outside the archive, sizes beyond the memory, an .h5 dataset
    that declares far more than it stores or keeps its data in other files (pipeline.archives).
    A file that is no archive at all is left to Keras, whose error says what it is."""
    import zipfile

    from pipeline.archives import ArchiveRefused, check_h5, check_members, open_zip
    from pipeline.stages.data import _available_memory

    if kind not in ("keras", "h5") or not path.is_file():
        return None
    try:
        if kind == "keras":
            with open_zip(path, ".keras archive") as archive:
                check_members(archive, _available_memory(), ".keras archive")
        else:
            check_h5(path, _available_memory())
    except ArchiveRefused as exc:
        return str(exc)
    except (OSError, KeyError, RuntimeError, EOFError, zipfile.BadZipFile):
        return None
    return None


def check_model_file(config: ModelConfig) -> None:
    """Raise bad input (exit 2, at `source.path`) for a model file `model_file_refusal` refuses."""
    source = config.source
    why = model_file_refusal(source.kind, source.path) if source is not None and source.path is not None else None
    if why:
        raise bad_input(config, ("source", "path"), f"refused model {source.path}: {why}. Fix: point `source.path` at a model file written by model.save()")


def _tf_keras_safe_mode():
    """tf-keras reads an .h5 with Keras's safe mode unset, so a Python lambda saved in a Lambda
    layer would be rebuilt from the file's bytecode and run; its scope sets it. One private
    name of tf-keras (tfship.compat.keras)."""
    from tfship.compat.keras import tf_keras_safe_mode

    return tf_keras_safe_mode()


def read_keras_file(path: Path, kind: str, custom_objects: dict | None = None) -> tuple[Any, str]:
    """(model, flavour) from a .keras or .h5 file, with Keras's safe mode on in both Keras
    flavours: a saved Python lambda is refused, never run (a model file is input)."""
    if kind == "keras" or h5_keras_major(path) == 3:
        import keras

        return keras.saving.load_model(path, compile=False, custom_objects=custom_objects or None, safe_mode=True), "keras3"
    import tf_keras

    with _tf_keras_safe_mode():
        return tf_keras.models.load_model(path, compile=False, custom_objects=custom_objects or None), "tf_keras"


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
        for i, o in enumerate(outs):
            key = o.source or o.name
            if key not in result:
                raise bad_input(
                    config, ("outputs", i),
                    f"{where} returned outputs {sorted(result)}, but the config asks for '{key}'. "
                    f"Fix: name one of the model's outputs, e.g. {{name: {o.name}, source: {sorted(result)[0] if result else '<output>'}}}.",
                )
            named[o.name] = result[key]
        return named
    items = list(result) if isinstance(result, (list, tuple)) else [result]
    if len(items) != len(outs):
        raise bad_input(config, ("outputs",), f"{where} returned {len(items)} output(s) but the config names {len(outs)}: {[o.name for o in outs]}. Fix: list one name per model output, in the model's order.")
    return {o.name: t for o, t in zip(outs, items)}


def _source_file(obj: Any) -> Path | None:
    try:
        target = obj if inspect.isfunction(obj) else type(obj)
        return Path(inspect.getsourcefile(target))
    except (TypeError, OSError):
        return None


def variable_bytes(variable) -> int:
    """Bytes one variable holds (a tf.Variable or a Keras 3 variable, whose dtype is a
    string): its static shape, else the shape of its value (a variable declared with an
    unknown shape). Raises when neither can be read."""
    import numpy as np
    import tensorflow as tf

    try:
        dims = [int(d) for d in variable.shape]  # an unknown rank or dimension raises here
    except (TypeError, ValueError):
        dims = list(np.shape(variable.numpy()))
    return int(np.prod(dims, dtype=np.int64)) * tf.as_dtype(variable.dtype).size


def load_model(config: ModelConfig) -> LoadedModel:
    """Load the source model and return an eager callable with config names."""
    source = config.source
    build_missing(config)
    custom_objects = import_source_modules(config)
    if source.kind in ("keras", "h5"):
        check_model_file(config)  # before Keras reads a byte of it
        obj, flavour = _wrap_load(config, lambda: read_keras_file(source.path, source.kind, custom_objects))
    elif source.kind == "saved_model":
        import tensorflow as tf

        loaded = _wrap_load(config, lambda: tf.saved_model.load(str(source.path)))
        if source.signature not in loaded.signatures:
            raise bad_input(
                config, ("source", "signature") if config_has_key(config, ("source", "signature")) else ("source", "path"),
                f"SavedModel {source.path} has no signature '{source.signature}'; it has: {', '.join(loaded.signatures) or 'none'}. "
                "Fix: set `source.signature` to one of those.",
            )
        fn = loaded.signatures[source.signature]
        expected = set(fn.structured_input_signature[1])
        if expected != set(config.input_names):
            raise bad_input(
                config, ("inputs",),
                f"SavedModel signature '{source.signature}' takes inputs {sorted(expected)}, but the config names {list(config.input_names)}. "
                "Fix: name the config's inputs after the signature's.",
            )
        dependencies, _ = source_dependencies(None, _named_modules(config))
        return LoadedModel(
            obj=loaded,
            flavour="saved_model",
            call=lambda inputs: _name_outputs(fn(**{n: tf.convert_to_tensor(v) for n, v in inputs.items()}), config, f"signature '{source.signature}'"),
            source_file=source.path,
            dependencies=dependencies,
            self_contained=True,  # tf.saved_model.load runs no user code
        )
    else:
        key = ("source", "factory")
        factory = import_user_ref(config, key, source.factory, "model factory")
        obj = call_user(config, key, f"model factory '{source.factory}'", factory, fix="Fix the factory, or point `source.factory` at a working one.")
        flavour = _flavour_of(obj, config)
        if flavour in ("module", "function"):
            names = config.input_names
            fn = obj

            def call(inputs: dict) -> dict:
                return _name_outputs(fn(*[inputs[n] for n in names]), config, source.factory)

            return LoadedModel(obj=obj, flavour=flavour, call=call, source_file=_source_file(obj))
    keras_call = _keras_call(obj, config)
    dependencies, self_contained = source_dependencies(obj, _named_modules(config)) if source.kind != "factory" else ((), False)
    return LoadedModel(
        obj=obj,
        flavour=flavour,
        call=lambda inputs: _name_outputs(keras_call(inputs), config, f"model '{config.name}'"),
        source_file=_source_file(obj) if source.kind == "factory" else source.path,
        dependencies=dependencies,
        self_contained=self_contained,
    )


def _named_modules(config: ModelConfig) -> list[str]:
    """The modules the config names for the load: `source.modules` and those of `custom_objects`."""
    source = config.source
    return list(source.modules or ()) + [ref.partition(":")[0] for _, ref in source.custom_objects or ()]


def _flavour_of(obj: Any, config: ModelConfig) -> str:
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
    raise bad_input(
        config, ("source", "factory"),
        f"model factory '{config.source.factory}' returned {type(obj).__name__} {repr(obj)[:60]}; "
        "expected a Keras model, a callable tf.Module or a function. Fix: return the model itself.",
    )


def config_has_key(config: ModelConfig, key: tuple) -> bool:
    from pipeline.usercode import config_line

    return config_line(config.file, key) != config_line(config.file, key[:-1])


_CLASS_NAME = re.compile(r"['\"]class_name['\"]: ['\"](\w+)['\"]")


def _missing_class(text: str) -> str | None:
    """The custom class Keras could not find, from its own wording."""
    if not any(marker in text for marker in ("Could not locate class", "Unknown layer", "Unknown object", "could not be deserialized", "custom_objects")):
        return None
    match = re.search(r"Could not locate class '(\w+)'", text) or re.search(r"Unknown (?:layer|object)(?: type)?: '?(\w+)'?", text)
    if match:
        return match.group(1)
    names = [n for n in _CLASS_NAME.findall(text) if n not in ("Functional", "Sequential", "Model", "InputLayer")]
    return names[0] if names else "a custom class"


def _wrap_load(config: ModelConfig, load: Any) -> Any:
    """Third-party loaders raise anything: name the file, the cause, what was expected and the fix."""
    from pipeline.usercode import strip_ansi

    path = config.source.path
    try:
        return load()
    except Exception as exc:
        text = strip_ansi(str(exc))
        cause = f"{type(exc).__name__}: {first_line(exc)}"
        if "safe_mode" in text and "lambda" in text.lower():
            raise bad_input(
                config, ("source", "path"),
                f"refused model {path}: it holds a Lambda layer with a Python lambda, which Keras would rebuild from the file's bytecode "
                "and run; tfship keeps Keras's safe mode on, so a model file never runs code. Fix: replace the Lambda with a custom layer "
                "(@keras.saving.register_keras_serializable, its module under `source.modules`), or build the model in your own code "
                "with `source.factory`",
            ) from None
        missing = _missing_class(text)
        if missing:
            raise bad_input(
                config, ("source", "path"),
                f"cannot load model {path}: it uses the custom class '{missing}', which is not registered in this process ({cause[:300]}). "
                "Fix: add `modules: [<your module that defines it>]` under `source:` (tfship imports them before loading; "
                "the class must be decorated with @keras.saving.register_keras_serializable), or for a tf-keras .h5 "
                f"`custom_objects: {{{missing}: <module>:<attribute>}}`.",
            ) from None
        expected = {
            "keras": "a complete Keras 3 `.keras` archive written by model.save()",
            "h5": "a full-model `.h5` file written by model.save() (not save_weights())",
            "saved_model": "a SavedModel directory written by tf.saved_model.save()",
        }.get(config.source.kind, "a saved model")
        size = path.stat().st_size if path is not None and path.is_file() else None
        state = "a directory" if path is not None and path.is_dir() and config.source.kind != "saved_model" else (f"{size} bytes" if size is not None else "")
        raise bad_input(
            config, ("source", "path"),
            f"cannot load model {path}{f' ({state})' if state else ''}: {cause[:300]}. Expected {expected}. "
            "Fix: re-save the model, or point `source.path` at the right file.",
        ) from None
