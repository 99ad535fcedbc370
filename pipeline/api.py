"""The Python API: what the command line does, callable on a model that lives in a
notebook. `tfship` re-exports these; the CLI commands are thin layers over them.

    import tfship
    result = tfship.export(model, targets=["savedmodel", "tflite", "onnx"])
    result.passed, result["tflite"].variants["float32"].metrics["probs"]["max_abs"]

`export` writes what a YAML config would say (the model's inputs and outputs as
the model declares them, the parity data as a .npz) into `<out>/.source/`, checks
it with the same loader, then runs the same stages and targets: in this process by
default, in a spawned worker with `isolate=True` (the live model is saved first).
Bad input raises a `PipelineError` with exit_code 2 and writes nothing.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from pipeline.errors import ModelError

SOURCE_DIR = ".source"
DEFAULT_SAMPLES = 64
PATH_SUFFIXES = (".keras", ".h5", ".hdf5")


# --------------------------------------------------------------------------- adapters to the core


def load_config(path: str | Path):
    """A model config from YAML, every problem collected (ConfigError, exit 2)."""
    from pipeline.config import load_config as load
    from targets import REGISTRY

    return load(Path(path), REGISTRY)


def _read_report(model_dir: Path) -> dict | None:
    from pipeline.reports.model import read_report

    return read_report(model_dir)


# --------------------------------------------------------------------------- config from a live model


def _data_arrays(data: Any, inputs: tuple[dict, ...], samples: int) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Arrays, a tuple (arrays, labels), a list/array per input, or an iterable of batches."""
    names = [s["name"] for s in inputs]
    labels = None
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], np.ndarray):
        data, labels = data
    if isinstance(data, np.ndarray) or (hasattr(data, "numpy") and hasattr(data, "shape")):
        data = [data]
    if isinstance(data, Mapping):
        arrays = {k: np.asarray(v) for k, v in data.items()}
    elif isinstance(data, list) and len(data) == len(names) and all(hasattr(a, "shape") for a in data):
        arrays = {n: np.asarray(a) for n, a in zip(names, data)}
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        arrays, collected, n = {}, {n: [] for n in names}, 0
        for i, batch in enumerate(data):
            if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[0], Mapping):
                batch = batch[0]
            if not isinstance(batch, Mapping):
                batch = dict(zip(names, batch if isinstance(batch, (list, tuple)) else [batch]))
            for name in names:
                if name not in batch:
                    raise ModelError(f"data: batch {i} has no array for input '{name}' (it has: {', '.join(sorted(batch))})")
                collected[name].append(np.asarray(batch[name]))
            n += len(collected[names[0]][-1])
            if n >= samples:
                break
        if not n:
            raise ModelError("data: the generator yielded no batches")
        arrays = {name: np.concatenate(parts)[:samples] for name, parts in collected.items()}
    else:
        raise ModelError(f"data: expected {{input: array}}, a list of arrays in input order, (arrays, labels) or an iterable of batches, got {type(data).__name__}")
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ModelError(f"data: no array for input(s) {missing}; it has: {', '.join(sorted(arrays)) or 'nothing'}")
    return {n: arrays[n] for n in names}, None if labels is None else np.asarray(labels).reshape(-1)


def _write_npz_if_changed(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Same arrays, same file bytes: the stage cache hashes this file."""
    if path.is_file():
        with np.load(path, allow_pickle=False) as old:
            if set(old.files) == set(arrays) and all(np.array_equal(old[k], v) and old[k].dtype == v.dtype for k, v in arrays.items()):
                return
    np.savez(path, **arrays)


def _target_item(entry: Any) -> tuple[str, dict]:
    """'tflite', {'name': 'tflite', ...} or {'tflite': {...}}: (name, options)."""
    if not isinstance(entry, Mapping):
        return entry, {}
    if "name" in entry:
        return entry["name"], {k: v for k, v in entry.items() if k != "name"}
    if len(entry) == 1:
        (name, options), = entry.items()
        return name, dict(options or {})
    raise ModelError(f"targets: {dict(entry)!r} names no target; expected a name, {{'name': ..., <options>}} or {{<name>: {{<options>}}}}")


def _target_entries(targets: Any, tolerances: Mapping | None, output_names: list[str]) -> list:
    if isinstance(targets, str):
        targets = [targets]
    items = list(targets.items()) if isinstance(targets, Mapping) else [_target_item(t) for t in targets]
    tolerances = dict(tolerances or {})
    shared = {k: v for k, v in tolerances.items() if k in output_names}
    unknown = [k for k in tolerances if k not in output_names and k not in dict(items)]
    if unknown:
        raise ModelError(f"tolerances: {unknown} are neither outputs ({', '.join(output_names)}) nor selected targets ({', '.join(n for n, _ in items)})")
    entries = []
    for name, options in items:
        options = dict(options or {})
        merged = {**shared, **tolerances.get(name, {})}
        if merged:
            options["tolerances"] = merged
        entries.append({"name": name, **options} if options else name)
    return entries


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _save_for_worker(obj: Any, flavour: str, folder: Path) -> dict:
    """isolate=True: the worker loads a saved copy (Keras 3 .keras, tf-keras .h5, SavedModel)."""
    if flavour == "keras3":
        path = folder / "model.keras"
        obj.save(path)
    elif flavour == "tf_keras":
        path = folder / "model.h5"
        obj.save(path)
    else:
        import tensorflow as tf

        path = folder / "saved_model"
        function = obj.__call__ if flavour == "module" else obj
        tf.saved_model.save(obj if flavour == "module" else tf.Module(), str(path), signatures={"serving_default": function.get_concrete_function()})
    return {"path": path.name}


def _config_text(raw: dict) -> str:
    import yaml

    from pipeline import live

    if live.is_live(raw["source"].get("factory")):
        head = "# written by tfship.export: the run of a model that lived in its Python process (named by its content digest)\n"
    else:
        head = "# written by tfship.export; `tfship export -c <this file>` repeats the run\n"
    return head + yaml.safe_dump(raw, sort_keys=False)


def _stage_config(raw: dict, arrays: dict | None, folder: Path, obj: Any, facts, isolate: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if arrays is not None:
        _write_npz_if_changed(folder / "data.npz", arrays)
    if isolate and obj is not None:
        raw = dict(raw, source=_save_for_worker(obj, facts.flavour, folder))
    path = folder / "model.yaml"
    text = _config_text(raw)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def _model_config(model: Any, *, inputs, outputs, targets, data, out, tolerances, isolate, name, samples, classifier):
    """(config, out folder): the config checked in a scratch folder before anything is written under `out`."""
    from pipeline import live
    from pipeline.describe import describe

    source: dict
    obj = None
    if isinstance(model, (str, Path)):
        path = Path(model)
        if path.suffix in (".yaml", ".yml"):
            raise ModelError(f"{path} is a config")  # handled by export() before this point
        if not path.exists():
            raise ModelError(f"model: {path} does not exist; expected a .keras or .h5 file, a SavedModel folder, or a live model")
        source = {"path": str(path.resolve())}
        if path.is_dir():
            from pipeline.inspection import inspect_artifact

            sig = inspect_artifact(path, run=False).serving
            facts_inputs = inputs or {t.name: (t.shape, t.dtype) for t in sig.inputs}
            from pipeline.describe import ModelFacts, specs_from_user

            specs = specs_from_user(facts_inputs)
            out_names = list(outputs) if outputs else [t.name for t in sig.outputs]
            facts = ModelFacts(name or path.name.lower().replace(".", "_"), "saved_model", tuple(specs), tuple(out_names))
        elif path.suffix in PATH_SUFFIXES:
            from pipeline.stages.load import model_file_refusal, read_keras_file

            kind = "keras" if path.suffix == ".keras" else "h5"
            why = model_file_refusal(kind, path)
            if why:
                raise ModelError(f"model: refused {path}: {why}")
            loaded, _ = read_keras_file(path, kind)
            facts = describe(loaded, inputs, outputs, name or path.stem)
        else:
            raise ModelError(f"model: cannot tell the format of {path}; expected .keras, .h5 or a SavedModel folder")
    else:
        facts = describe(model, inputs, outputs, name)
        obj = model
        source = {"factory": live.register(model)}
    out = Path(out) if out is not None else Path("artifacts") / facts.name
    model_name = out.name
    arrays, labels = (None, None) if data is None else _data_arrays(data, facts.inputs, samples)
    output_names = [o if isinstance(o, str) else o["name"] for o in facts.outputs]
    data_section: dict = {"samples": samples}
    if arrays is None:
        wanting = [s for s in facts.inputs if not s["dtype"].startswith(("float", "bfloat")) and s["dtype"] != "bool"]
        if wanting:
            s = wanting[0]
            raise ModelError(f"input '{s['name']}' is {s['dtype']}: synthetic data cannot know its valid values; pass data={{'{s['name']}': array}} (or a generator of batches)")
    else:
        if labels is not None:
            arrays = dict(arrays, labels=labels)
            data_section["labels"] = "labels"
        data_section = {"npz": "data.npz", **data_section, "samples": min(samples, min(len(a) for a in arrays.values()))}
    if classifier:
        data_section["classifier"] = classifier
    raw = {
        "name": model_name,
        "source": source,
        "inputs": [dict(s) for s in facts.inputs],
        "outputs": [o if isinstance(o, str) else dict(o) for o in facts.outputs],
        "data": data_section,
        "targets": _target_entries(targets, tolerances, output_names),
    }
    raw = _plain(raw)
    from pipeline.config import require_selected

    with tempfile.TemporaryDirectory(prefix="tfship-check-") as scratch:
        # Checked where nothing matters first: bad input writes nothing under `out`.
        require_selected([load_config(_stage_config(raw, arrays, Path(scratch), None, facts, False))], None)
    from pipeline.publication import check_model_tree

    check_model_tree(out.parent, out.name)  # .source is written before the run takes the model's lock
    final = _stage_config(raw, arrays, out / SOURCE_DIR, obj, facts, isolate)
    return load_config(final), out


def export(
    model: Any,
    *,
    inputs: Any = None,
    outputs: Any = None,
    targets: Any = ("savedmodel",),
    data: Any = None,
    out: str | Path | None = None,
    tolerances: Mapping | None = None,
    isolate: bool = False,
    name: str | None = None,
    samples: int = DEFAULT_SAMPLES,
    classifier: str | None = None,
    force: bool = False,
    strict: bool = False,
    progress: int | None = None,
):
    """Export a model to `targets` and prove each artifact computes what the model does.

    model: a Keras model (Keras 3 or tf-keras), a callable tf.Module, a tf.function, or a
        path (.keras, .h5, SavedModel folder). inputs: {name: (shape, dtype)} or a list of
        tf.TensorSpec when the model does not declare them. outputs: names in order, or
        {name: the model's own key}. targets: names, or {name: options} as in YAML.
    data: None (synthetic, uniform [0, 1) per float input), {input: array [N, ...]},
        (arrays, labels), or an iterable of batches; the first `samples` are used.
    out: folder of this model's artifacts (default artifacts/<model name>).
    tolerances: {output: {atol: ..}} for every target, or {target: {output: {..}}}.
    isolate: run in a spawned worker (crash isolation) on a saved copy of the model.
    strict: weak evidence (a near-constant reference output) fails the run.
    progress: progress.QUIET / NORMAL / VERBOSE (default NORMAL) on stderr.
    Returns an ExportResult; raises PipelineError (exit_code 2) on bad input.
    """
    if isinstance(model, (str, Path)) and Path(model).suffix in (".yaml", ".yml") or hasattr(model, "targets") and hasattr(model, "source"):
        # A YAML config (or one loaded with load_config): the run `tfship export -c` makes.
        from pipeline.config import require_selected

        config = load_config(model) if isinstance(model, (str, Path)) else model
        out = Path(out) if out is not None else Path("artifacts") / config.name
        if out.name != config.name:
            raise ModelError(f"out: a config's artifacts go to <root>/{config.name}; got {out}")
        only = None if targets == ("savedmodel",) else ([targets] if isinstance(targets, str) else list(targets))
        require_selected([config], only)
        return run_configs([config], out.parent, only, force=force, in_process=not isolate, strict=strict, level=progress)[0]
    config, out = _model_config(
        model, inputs=inputs, outputs=outputs, targets=targets, data=data, out=out, tolerances=tolerances,
        isolate=isolate, name=name, samples=samples, classifier=classifier,
    )
    return run_configs([config], out.parent, None, force=force, in_process=not isolate, strict=strict, level=progress)[0]


def run_configs(configs, root: Path, only, *, force=False, in_process=False, strict=False, level=None, jobs=1):
    """Export loaded configs; one ExportResult per config (the CLI's `export` calls this)."""
    from pipeline import progress
    from pipeline.execute.export import export as run_export, exit_code_for
    from pipeline.results import from_report
    from pipeline.reports.verdict_lines import run_fails_on_weak_evidence

    view = progress.make_view(level=progress.NORMAL if level is None else level)
    previous = progress.set_sink(view)
    try:
        code = run_export(configs, only, Path(root), jobs=jobs, force=force, in_process=in_process, strict=strict)
    finally:
        progress.set_sink(previous)
        view.close()
    results = []
    for config in configs:
        model_dir = Path(root) / config.name
        report = _read_report(model_dir) or {"model": config.name, "targets": {}}
        selected = [t.name for t in config.targets if only is None or t.name in only]
        entries = {n: e for n, e in (report.get("targets") or {}).items() if n in selected}
        model_code = exit_code_for(entries) if entries else code
        if len(configs) == 1:  # a failure that is never recorded (a full disk) leaves the old entries: the run's code decides
            model_code = max(model_code, code)
        result = from_report(report, model_dir, selected, model_code, strict)
        if strict and model_code == 0 and run_fails_on_weak_evidence(result.verdicts):
            result = from_report(report, model_dir, selected, 1, strict)
        results.append(result)
    return results


def compare(reference, *artifacts, data=None, **options):
    """Parity of artifacts (SavedModel, .tflite, .onnx) against a reference artifact."""
    from pipeline.compare import compare as run_compare

    return run_compare(reference, *artifacts, data=data, **options)


def inspect(path):
    """The facts of an artifact and whether tfship's runtimes run it."""
    from pipeline.inspection import inspect_artifact

    return inspect_artifact(path)


def validate(model: Any, artifacts: str | Path = "artifacts") -> int:
    """Re-check exported artifacts on disk: file hashes, then parity, without re-exporting.
    `model` is a config path, a loaded config, or the folder an export wrote (its .source
    config is used). Returns the exit code: 0 passed, 1 failed or changed."""
    from pipeline.execute.validate import validate_model

    if isinstance(model, (str, Path)):
        path = Path(model)
        if path.is_dir() and (path / SOURCE_DIR / "model.yaml").is_file():
            config, root = load_config(path / SOURCE_DIR / "model.yaml"), path.parent
        else:
            config, root = load_config(path), Path(artifacts)
    else:
        config, root = model, Path(artifacts)
    return validate_model(config, root)
