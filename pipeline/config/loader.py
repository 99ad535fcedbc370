"""The config loader: YAML in, frozen `pipeline.spec` dataclasses out, every problem
collected with file, line and key path.

Nothing here imports TensorFlow: the whole plan (every model, every target, every
option) is validated first, so a typo costs milliseconds and writes nothing. The
target registry is handed in by the caller; this package never imports `targets`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from pipeline import extras
from pipeline.errors import ConfigError, Problem
from pipeline.tolerance import TOLERANCE_KEYS, Tolerance
from pipeline.config.validate import Collector, check_value, closest, describe, factory_ref, parse_dataclass
from pipeline.config.yamlsrc import KeyPath, YAMLLimit, format_key, load_located
from pipeline.spec import BATCH_DIM, DEFAULT_DIM_VALUES, DataConfig, InputSpec, ModelConfig, OutputSpec, SourceConfig, SyntheticInput, TargetConfig, config_as_dict

DTYPES = ("float32", "float16", "bfloat16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool", "string")
DISTRIBUTIONS = ("uniform", "normal", "integers")


def _parse_source(col: Collector, raw: Any, base: Path) -> SourceConfig | None:
    path = ("source",)
    raw = col.mapping(raw, path, "model source: path or factory")
    if raw is None:
        return None
    col.keys(raw, path, ("path", "factory", "build", "signature", "modules", "custom_objects"))
    if ("path" in raw) == ("factory" in raw):
        col.add(path, "give exactly one of 'path' (a .keras, .h5 or SavedModel directory) or 'factory' (module:function)")
        return None
    signature = raw.get("signature", "serving_default")
    if not isinstance(signature, str):
        col.add(path + ("signature",), f"expected a string, got {describe(signature)}")
    build = factory_ref(col, raw["build"], path + ("build",)) if "build" in raw else None
    modules, custom_objects = _parse_custom_code(col, raw, path)
    if "factory" in raw:
        factory = factory_ref(col, raw["factory"], path + ("factory",))
        return SourceConfig(kind="factory", factory=factory, build=build, modules=modules, custom_objects=custom_objects) if factory else None
    value = raw["path"]
    if not isinstance(value, str):
        col.add(path + ("path",), f"expected a file path, got {describe(value)}")
        return None
    file = (base / value).resolve()
    if value.endswith(".keras"):
        kind = "keras"
    elif value.endswith((".h5", ".hdf5")):
        kind = "h5"
    elif file.is_dir() or not file.suffix:
        kind = "saved_model"
    else:
        col.add(path + ("path",), f"cannot tell the model format of '{value}'; expected a .keras file, a .h5 file or a SavedModel directory")
        return None
    if not file.exists() and build is None:
        col.add(path + ("path",), f"model file not found: {file}; fix the path, or add 'build: module:function' that creates it")
    elif kind == "saved_model" and file.exists() and not (file / "saved_model.pb").exists():
        col.add(path + ("path",), f"{file} is a directory without saved_model.pb; expected a SavedModel directory")
    return SourceConfig(
        kind=kind, path=file, build=build, signature=signature if isinstance(signature, str) else "serving_default",
        modules=modules, custom_objects=custom_objects,
    )


def _parse_custom_code(col: Collector, raw: dict, path: KeyPath) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """`modules: [pkg.layers]` and `custom_objects: {MyLayer: pkg.layers:MyLayer}`."""
    modules: list[str] = []
    if "modules" in raw:
        value = raw["modules"]
        if not isinstance(value, list):
            col.add(path + ("modules",), f"expected a list of module names (e.g. [mypackage.layers]), got {describe(value)}")
        else:
            for i, module in enumerate(value):
                if isinstance(module, str) and all(part.isidentifier() for part in module.split(".")):
                    modules.append(module)
                else:
                    col.add(path + ("modules", i), f"expected a dotted module name (e.g. mypackage.layers), got {describe(module)}")
    objects: list[tuple[str, str]] = []
    if "custom_objects" in raw:
        value = col.mapping(raw["custom_objects"], path + ("custom_objects",), "class name -> module:attribute")
        for name, ref in (value or {}).items():
            ref = factory_ref(col, ref, path + ("custom_objects", name))
            if ref:
                objects.append((str(name), ref))
    return tuple(modules), tuple(objects)


def _parse_inputs(col: Collector, raw: Any) -> tuple[InputSpec, ...]:
    path = ("inputs",)
    if not isinstance(raw, list) or not raw:
        col.add(path, f"expected a non-empty list of inputs ({{name, shape, dtype}}), got {describe(raw)}")
        return ()
    specs, seen = [], set()
    for i, item in enumerate(raw):
        p = path + (i,)
        item = col.mapping(item, p, "an input: name, shape, dtype")
        if item is None:
            continue
        col.keys(item, p, ("name", "shape", "dtype"), required=("name", "shape", "dtype"))
        name, shape, dtype = item.get("name"), item.get("shape"), item.get("dtype", "float32")
        ok = True
        if not isinstance(name, str) or not name.isidentifier():
            col.add(p + ("name",), f"expected an identifier-like name, got {describe(name)}")
            ok = False
        elif name in seen:
            col.add(p + ("name",), f"duplicate input name '{name}'")
            ok = False
        dims: tuple = ()
        if not isinstance(shape, list) or not all(_is_dim(d) for d in shape):
            col.add(p + ("shape",), f"expected a list of positive integers, null (dynamic) or a dimension name (dynamic, shared by inputs), got {describe(shape)}")
            ok = False
        elif shape and isinstance(shape[0], str):
            col.add(p + ("shape", 0), f"the leading dimension is the batch: write null (dynamic) or a number, not the name {shape[0]!r}")
            ok = False
        elif BATCH_DIM in shape[1:]:
            col.add(p + ("shape",), f"'{BATCH_DIM}' names the leading dimension; give the other dynamic dimensions another name")
            ok = False
        else:
            dims = tuple(d if isinstance(d, str) else None for d in shape)
            shape = [None if isinstance(d, str) else d for d in shape]
        if dtype not in DTYPES:
            col.add(p + ("dtype",), f"unknown dtype {dtype!r}{closest(str(dtype), DTYPES)}; expected one of: {', '.join(DTYPES)}")
            ok = False
        if ok:
            seen.add(name)
            specs.append(InputSpec(name, tuple(shape), dtype, dims if any(dims) else ()))
    return tuple(specs)


def _is_dim(d: Any) -> bool:
    return d is None or (isinstance(d, str) and d.isidentifier()) or (isinstance(d, int) and not isinstance(d, bool) and d > 0)


def _parse_outputs(col: Collector, raw: Any) -> tuple[OutputSpec, ...]:
    path = ("outputs",)
    if not isinstance(raw, list) or not raw:
        col.add(path, f"expected a non-empty list of output names, got {describe(raw)}")
        return ()
    specs, seen = [], set()
    for i, item in enumerate(raw):
        p = path + (i,)
        if isinstance(item, str):
            name, source = item, None
        elif isinstance(item, dict):
            col.keys(item, p, ("name", "source", "allow_nonfinite"), required=("name",))
            name, source = item.get("name"), item.get("source")
            if source is not None and not isinstance(source, str):
                col.add(p + ("source",), f"expected the model's own output name, got {describe(source)}")
                continue
            allow = item.get("allow_nonfinite", False)
            if not isinstance(allow, bool):
                col.add(p + ("allow_nonfinite",), f"expected true or false, got {describe(allow)}")
                continue
        else:
            col.add(p, f"expected an output name or {{name, source}}, got {describe(item)}")
            continue
        if not isinstance(name, str) or not name.isidentifier():
            col.add(p, f"expected an identifier-like output name, got {describe(name)}")
            continue
        if name in seen:
            col.add(p, f"duplicate output name '{name}'")
            continue
        seen.add(name)
        specs.append(OutputSpec(name, source, bool(isinstance(item, dict) and item.get("allow_nonfinite", False))))
    return tuple(specs)


def _parse_data(col: Collector, raw: Any, base: Path, inputs: tuple[InputSpec, ...], outputs: tuple[OutputSpec, ...]) -> DataConfig | None:
    path = ("data",)
    raw = {} if raw is None else col.mapping(raw, path, "parity data")
    if raw is None:
        return None
    col.keys(raw, path, ("inputs", "npz", "generator", "labels", "seed", "samples", "batch_sizes", "classifier", "shapes", "allow_nonfinite"))
    kinds = [k for k in ("npz", "generator") if k in raw]
    if len(kinds) > 1 or (kinds and "inputs" in raw):
        col.add(path, "give at most one data source: 'inputs' (synthetic), 'npz' or 'generator'")
        return None
    kind = kinds[0] if kinds else "synthetic"
    values: dict[str, Any] = {"kind": kind}
    for key, hint in (("seed", int), ("samples", int), ("allow_nonfinite", bool)):
        if key in raw:
            ok, v = check_value(col, raw[key], hint, path + (key,))
            if ok:
                values[key] = v
    if values.get("samples", 64) < 1:
        col.add(path + ("samples",), "expected at least 1 sample")
    names = {i.name for i in inputs}
    if kind == "synthetic":
        synth = raw.get("inputs", {}) or {}
        if col.mapping(synth, path + ("inputs",), "input name -> distribution") is not None:
            parsed = []
            for name, spec in synth.items():
                p = path + ("inputs", name)
                if name not in names:
                    col.add(p, f"no input named '{name}'; inputs are: {', '.join(sorted(names))}")
                    continue
                spec = col.mapping(spec, p, "distribution, low, high, mean, std")
                if spec is None:
                    continue
                dist = parse_dataclass(col, SyntheticInput, spec, p)
                if dist is None:
                    continue
                if dist.distribution not in DISTRIBUTIONS:
                    col.add(p + ("distribution",), f"unknown distribution {dist.distribution!r}; expected one of: {', '.join(DISTRIBUTIONS)}")
                elif dist.distribution != "normal" and dist.high <= dist.low:
                    col.add(p, f"expected low < high, got low={dist.low} high={dist.high}")
                parsed.append((name, dist))
            values["synthetic"] = tuple(parsed)
            given = {name for name, _ in parsed}
            for index, spec in enumerate(inputs):
                if spec.name in given:
                    continue
                # Point at data.inputs when it is there, else at the input itself.
                where = path + ("inputs",) if "inputs" in raw else ("inputs", index)
                if spec.dtype == "string":
                    col.add(where, f"input '{spec.name}' is a string: synthetic data cannot make it; give 'npz' or 'generator' data")
                elif spec.dtype.startswith(("int", "uint")):
                    col.add(where, f"integer input '{spec.name}' needs its value range under data.inputs, e.g. `{spec.name}: {{distribution: integers, low: 0, high: <vocabulary size>}}`")
    elif kind == "npz":
        if isinstance(raw["npz"], str):
            file = (base / raw["npz"]).resolve()
            if not file.is_file():
                col.add(path + ("npz",), f"data file not found: {file}")
            values["npz"] = file
        else:
            col.add(path + ("npz",), f"expected a .npz file path, got {describe(raw['npz'])}")
    else:
        values["generator"] = factory_ref(col, raw["generator"], path + ("generator",))
    if "labels" in raw:
        if kind != "npz" or not isinstance(raw["labels"], str):
            col.add(path + ("labels",), "'labels' names the labels array inside the npz file; generators return labels themselves")
        else:
            values["labels"] = raw["labels"]
    if "classifier" in raw:
        out_names = [o.name for o in outputs]
        if raw["classifier"] not in out_names:
            col.add(path + ("classifier",), f"expected the name of the output holding class scores, one of: {', '.join(out_names)}")
        else:
            values["classifier"] = raw["classifier"]
    values["shapes"] = _parse_shapes(col, raw.get("shapes"), path + ("shapes",), inputs, kind)
    fixed = {i.fixed_batch for i in inputs if i.batched}
    if "batch_sizes" in raw:
        ok, sizes = check_value(col, raw["batch_sizes"], tuple[int, ...], path + ("batch_sizes",))
        if ok:
            if not sizes or any(s < 1 for s in sizes):
                col.add(path + ("batch_sizes",), "expected a non-empty list of positive batch sizes")
            static = [b for b in fixed if b is not None]
            if static and any(s != static[0] for s in sizes):
                col.add(path + ("batch_sizes",), f"the model's batch dimension is fixed at {static[0]}; batch_sizes must all be {static[0]}")
            values["batch_sizes"] = sizes
    else:
        static = [b for b in fixed if b is not None]
        # Batch 1 and an odd batch > 1: catches code that silently assumes batch 1.
        values["batch_sizes"] = (static[0],) if static else (1, 3)
    return DataConfig(**values)


def _parse_tolerances(col: Collector, raw: Any, path: KeyPath, outputs: set[str], variants: tuple[str, ...]) -> tuple:
    """`{output: {atol: ..}}` or `{variant: {output: {atol: ..}}}`; stored flat as 'variant/output'."""
    if col.mapping(raw, path, "output name -> tolerance") is None:
        return ()
    flat: list[tuple[str, tuple]] = []

    def one(key: str, spec: Any, p: KeyPath) -> None:
        spec = col.mapping(spec, p, f"tolerance keys: {', '.join(TOLERANCE_KEYS)}")
        if spec is None:
            return
        tol = parse_dataclass(col, Tolerance, spec, p)
        for bad in [k for k in spec if tol is not None and k in TOLERANCE_KEYS and getattr(tol, k) is not None and not 0 <= getattr(tol, k) < float("inf")]:
            col.add(p + (bad,), f"expected a finite number >= 0, got {spec[bad]!r}: a negative or infinite budget is no check at all")
            tol = None
        if tol is not None:
            flat.append((key, tuple((k, getattr(tol, k)) for k in spec if k in TOLERANCE_KEYS)))

    for key, spec in raw.items():
        if key in outputs:
            one(key, spec, path + (key,))
        elif key in variants and isinstance(spec, dict):
            for out, sub in spec.items():
                if out not in outputs:
                    col.add(path + (key, out), f"no output named '{out}'; outputs are: {', '.join(sorted(outputs))}")
                else:
                    one(f"{key}/{out}", sub, path + (key, out))
        else:
            choices = sorted(outputs) + [v for v in variants if v]
            col.add(path + (key,), f"'{key}' is neither an output nor a variant of this target; expected one of: {', '.join(choices)}")
    return tuple(flat)


def _parse_shapes(col: Collector, raw: Any, path: tuple, inputs: tuple[InputSpec, ...], kind: str) -> tuple:
    """`data.shapes`: the concrete values parity tests each dynamic non-batch dimension at.
    Every dynamic dimension gets DEFAULT_DIM_VALUES unless listed; npz data has the one
    shape its arrays have."""
    names = list(dict.fromkeys(name for spec in inputs for _, name in spec.dynamic_dims))
    if raw is None:
        return tuple((name, DEFAULT_DIM_VALUES) for name in names) if kind != "npz" else ()
    if kind == "npz":
        col.add(path, "npz data has the one shape its arrays have; 'shapes' applies to synthetic and generator data")
        return ()
    if col.mapping(raw, path, "dimension name -> list of sizes") is None:
        return ()
    out = dict((name, DEFAULT_DIM_VALUES) for name in names)
    for name, sizes in raw.items():
        p = path + (name,)
        if name not in names:
            known = ", ".join(names) if names else "none (give an input a dimension as null or a name)"
            col.add(p, f"no dynamic dimension named {name!r}{closest(str(name), names)}; dynamic dimensions: {known}")
            continue
        ok, sizes = check_value(col, sizes, tuple[int, ...], p)
        if ok and (not sizes or any(v < 1 for v in sizes)):
            col.add(p, "expected a non-empty list of positive sizes, e.g. [7, 32, 128]")
        elif ok:
            out[name] = sizes
    return tuple(out.items())


def _parse_targets(col: Collector, raw: Any, model: dict, registry, deferred: list | None = None) -> tuple[TargetConfig, ...]:
    """`deferred` receives (target, Problem) for what a target needs from the model
    (its `check_options`): those count only when the target is selected."""
    path = ("targets",)
    if not isinstance(raw, list) or not raw:
        col.add(path, f"expected a non-empty list of targets; known: {', '.join(registry.names())}")
        return ()
    out, seen = [], set()
    for i, item in enumerate(raw):
        p = path + (i,)
        if isinstance(item, str):
            name, opts = item, {}
        elif isinstance(item, dict) and "name" in item:
            name, opts = item["name"], {k: v for k, v in item.items() if k != "name"}
        else:
            col.add(p, f"expected a target name or a mapping with 'name'; known: {', '.join(registry.names())}")
            continue
        if name not in registry:
            col.add(p, f"unknown target {name!r}{closest(str(name), registry.names())}; known: {', '.join(registry.names())}")
            continue
        if name in seen:
            col.add(p, f"target '{name}' is listed twice")
            continue
        seen.add(name)
        target = registry.get(name)
        generic = {k: opts.pop(k) for k in ("tolerances", "optional") if k in opts}
        before = len(col.problems)
        options = parse_dataclass(col, target.Options, opts, p)
        needs = extras.target_problem(name)  # the target's extra: a problem only when it is selected
        for key, message in ([("", needs)] if needs else []) + (target.check_options(options, model) if options is not None else []):
            key_path = p + (key if isinstance(key, tuple) else (key,) if key else ())  # a tuple key: a nested path
            if deferred is None:
                col.add(key_path, message)
            else:
                line = col.located.line(key_path) if col.located else None
                deferred.append((name, Problem(str(col.file), line, format_key(key_path), message)))
        optional = generic.get("optional", False)
        if not isinstance(optional, bool):
            col.add(p + ("optional",), f"expected true or false, got {describe(optional)}")
        # The unnamed artifact of a target with several is called 'default' in reports and overrides.
        variants = tuple(v or "default" for v in target.variants(options)) if options is not None else ()
        tolerances = _parse_tolerances(col, generic["tolerances"], p + ("tolerances",), set(model["outputs"]), variants) if "tolerances" in generic else ()
        if len(col.problems) == before:
            out.append(TargetConfig(name=name, options=options, tolerances=tolerances, optional=bool(optional)))
    return tuple(out)


MODEL_KEYS = ("name", "source", "inputs", "outputs", "data", "targets")


def _sha256_of(config: ModelConfig) -> str:
    view = config_as_dict(config)
    for key in ("sha256", "file"):  # where the file lives does not change what it asks for
        view.pop(key, None)
    return hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()


def load_config(file: Path, registry) -> ModelConfig:
    """Read and validate one model config against `registry` (the known targets);
    raise ConfigError listing every problem."""
    file = Path(file)
    col = Collector(file, None)
    try:
        located = load_located(file)
    except YAMLLimit as exc:
        raise ConfigError([Problem(str(file), exc.line, "", f"refused: {exc.message}")]) from None
    except OSError as exc:
        raise ConfigError([Problem(str(file), None, "", f"cannot read config: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1 if isinstance(exc.object, bytes) else None
        raise ConfigError([Problem(str(file), line, "", f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save the config as UTF-8")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise ConfigError([Problem(str(file), line, "", f"invalid YAML: {getattr(exc, 'problem', exc)}")]) from None
    col.located = located
    raw = located.value
    if not isinstance(raw, dict):
        col.problems.append(Problem(str(file), located.line(()) or 1, "", f"expected a mapping with keys {', '.join(MODEL_KEYS)}, got {describe(raw)}"))
        raise ConfigError(col.problems)
    for dup_path, line in located.duplicates:
        col.problems.append(Problem(str(file), line, format_key(dup_path), "key given twice"))
    col.keys(raw, (), MODEL_KEYS, required=("source", "inputs", "outputs", "targets"))
    name = raw.get("name", file.stem)
    if not isinstance(name, str) or not name.replace("-", "_").isidentifier():
        col.add(("name",), f"expected a model name made of letters, digits, '_' or '-', got {describe(name)}")
    base = file.resolve().parent
    source = _parse_source(col, raw.get("source"), base) if "source" in raw else None
    inputs = _parse_inputs(col, raw.get("inputs"))
    outputs = _parse_outputs(col, raw.get("outputs"))
    data = _parse_data(col, raw.get("data"), base, inputs, outputs)
    model_view = {"name": name, "inputs": inputs, "outputs": [o.name for o in outputs], "data": data}
    deferred: list = []
    targets = _parse_targets(col, raw.get("targets"), model_view, registry, deferred) if "targets" in raw else ()
    if col.problems:
        raise ConfigError(col.problems)
    config = ModelConfig(name=name, file=file, source=source, inputs=inputs, outputs=outputs, data=data, targets=targets, target_problems=tuple(deferred))
    return dataclasses.replace(config, sha256=_sha256_of(config))


def require_selected(configs: list[ModelConfig], only: list[str] | None) -> None:
    """Raise ConfigError for what the selected targets (None: all) need and lack."""
    problems = [problem for config in configs for name, problem in config.target_problems if only is None or name in only]
    if problems:
        raise ConfigError(problems)


def load_configs(files: list[Path], registry) -> list[ModelConfig]:
    """Load every config, collecting problems across all files before raising."""
    configs, problems = [], []
    for file in files:
        try:
            configs.append(load_config(file, registry))
        except ConfigError as exc:
            problems.extend(exc.problems)
    names = [c.name for c in configs]
    for c in configs:
        if names.count(c.name) > 1:
            problems.append(Problem(str(c.file), None, "name", f"model name '{c.name}' is used by more than one config"))
    if problems:
        raise ConfigError(problems)
    return configs
