"""Target-level jobs: the shared stages of a model once, on disk; then each target in a
worker of its own.

`run_shared` (one worker per model) loads, traces, exports the canonical SavedModel,
makes the parity data and runs the eager reference, then writes the data and the
reference beside the staged SavedModel with a manifest (case labels, pool mask,
reference statistics, self-check, stage timings, and the model's and the data's
fingerprints). `run_target` (one worker per group of targets: the parent balances the
targets over the workers it may start) loads and traces the model again (converters
need the live model), reads the data and the reference from disk, memory-mapped,
checks that the model it built has the manifest's fingerprint, and builds, checks and stages each of its targets as
`run_targets` does. The parent publishes each target with its report record, and
the canonical SavedModel when the last target of the model is done.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np

from pipeline import progress
from pipeline.execute.build import Prepared, RunContext, _error_entry, build_model, build_target, model_facts, prepare, report_model_error, settle_verified
from pipeline.execute.console import log, peak_rss_mb, set_log_sink
from pipeline.execute.stored import ReferenceCases
from pipeline.fsutil import staging_dir
from pipeline.records import ParityData
from pipeline.reports.model import now
from pipeline.spec import ModelConfig

MANIFEST = "manifest.json"


def weight_bytes(loaded, model: str = "") -> int | None:
    """Bytes of the loaded model's variables (0 when it has none); None, said in the log,
    when they cannot be counted: memory admission then runs this model's targets alone."""
    from pipeline.stages.load import variable_bytes

    try:
        return sum(variable_bytes(v) for v in getattr(loaded.obj, "variables", ()) or ())
    except Exception as exc:  # a variable without a readable value, a `variables` that raises: unknown, not 0
        from pipeline.usercode import first_line

        log(model, f"the model's weights could not be sized ({type(exc).__name__}: {first_line(exc)[:200]}); "
                   "memory admission runs its targets alone, with nothing else beside them")
        return None


def run_shared(config: ModelConfig, target_names: list[str], artifacts_root: Path, on_event, verify: dict[str, dict] | None = None) -> None:
    """Worker side: the shared stages once; their records go to disk, the manifest's path to
    `on_event('shared')`. Targets to verify whose fingerprints still hold are reported
    `unchanged` first; when none is left to build, nothing is written."""
    set_log_sink(lambda line: on_event("log", "", {"line": line}))
    ctx = RunContext(config, artifacts_root)
    log(config.name, "shared stages")
    try:
        model = build_model(ctx)
        if not settle_verified(config, model, target_names, verify or {}, on_event):
            progress.finish(config.name, "", "unchanged")
            return
        prep = prepare(ctx, model)
    except Exception as exc:  # the model itself is unusable: every chosen target errors
        report_model_error(config, exc, on_event)
        return
    folder = staging_dir(ctx.model_dir / ".stages", "shared")
    try:
        t0 = time.perf_counter()
        inputs = ReferenceCases(folder, in_memory_bytes=0)
        for _, case in prep.data.cases:
            inputs.append(case)
        for name, values in prep.data.pool.items():
            np.save(folder / f"pool.{_safe(name)}.npy", np.asarray(values), allow_pickle=np.asarray(values).dtype == object)
        if prep.data.labels is not None:
            np.save(folder / "labels.npy", prep.data.labels)
        timings = dict(prep.timings)
        timings["shared_write"] = {"seconds": round(time.perf_counter() - t0, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}
        manifest = {
            "fingerprint": prep.fingerprint.to_json(),
            "data_fingerprint": prep.data_fingerprint,
            "saved_model_dir": str(prep.saved_model_dir),
            "cases": [label for label, _ in prep.data.cases],
            "inputs": inputs.persist(),
            "reference": prep.reference.persist(),
            "pool": {name: [f"pool.{_safe(name)}.npy", np.asarray(values).dtype != object] for name, values in prep.data.pool.items()},
            "labels": "labels.npy" if prep.data.labels is not None else None,
            "pool_mask": list(prep.pool_mask),
            "stats": prep.stats,
            "reference_check": prep.reference_check,
            "timings": timings,
            "weight_bytes": weight_bytes(prep.loaded, config.name),
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, default=_plain))
    except BaseException:
        remove_shared(folder)
        prep.reference.close()
        if prep.saved_model_dir is not None:
            shutil.rmtree(prep.saved_model_dir.parent, ignore_errors=True)
        raise
    progress.finish(config.name, "", "ready")
    on_event("run", "", {"model": model_facts(config, prep), "timings": timings})
    on_event("shared", "", {"manifest": str(folder / MANIFEST), "weight_bytes": manifest["weight_bytes"]})


def _safe(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def _plain(value):
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def remove_shared(folder: Path) -> None:
    """Drop the shared stages' files (data, reference) and the staged SavedModel's folder if unpublished."""
    manifest = folder / MANIFEST
    if manifest.exists():
        try:
            record = json.loads(manifest.read_text())
            for part in ("inputs", "reference"):
                shutil.rmtree(record[part]["folder"], ignore_errors=True)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    shutil.rmtree(folder, ignore_errors=True)


def read_shared(ctx: RunContext, manifest_path: Path, loaded, traced) -> Prepared:
    """The shared stages' records, read back from disk (memory-mapped) for one target job."""
    from pipeline.stages.fingerprint import ModelFingerprint

    record = json.loads(Path(manifest_path).read_text())
    fingerprint = ModelFingerprint(**record["fingerprint"])  # the model the shared stages were made from
    folder = Path(manifest_path).parent
    inputs = ReferenceCases.opened(record["inputs"])
    cases = _Cases(record["cases"], inputs)
    pool = {name: np.load(folder / file, mmap_mode="r" if mappable else None, allow_pickle=not mappable) for name, (file, mappable) in record["pool"].items()}
    labels = np.load(folder / record["labels"]) if record["labels"] else None
    data = ParityData(pool=pool, labels=labels, cases=cases)
    return Prepared(
        loaded, traced, Path(record["saved_model_dir"]), data, ReferenceCases.opened(record["reference"]),
        record["stats"], tuple(record["pool_mask"]), record["timings"], record["reference_check"], fingerprint, record["data_fingerprint"],
    )


class _Cases:
    """(label, {input: array}) per parity case, each read from disk when asked for."""

    def __init__(self, labels: list[str], inputs: ReferenceCases) -> None:
        self.labels, self.inputs = labels, inputs

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.labels[index], self.inputs[index]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


def _check_same_model(prep: Prepared) -> None:
    """The model this worker built must be the one the shared stages were made from."""
    from pipeline.errors import PipelineError
    from pipeline.stages.fingerprint import fingerprint_model

    fingerprint = fingerprint_model(prep.traced)
    if fingerprint.digest != prep.fingerprint.digest:
        raise PipelineError(
            f"the model built for this target (fingerprint {fingerprint.digest[:12]}) is not the one the shared stages on disk "
            f"were made from ({prep.fingerprint.digest[:12]}): it changed while this run was building it (its file, "
            "checkpoint or code). Run the export again."
        )


def run_target(config: ModelConfig, target_names: list[str], artifacts_root: Path, manifest: Path, on_event, repair: dict | None = None) -> None:
    """Worker side: some targets of a model whose shared stages are on disk, in turn."""
    from pipeline.stages.load import load_model
    from pipeline.stages.trace import trace_model
    from targets import REGISTRY

    set_log_sink(lambda line: on_event("log", "", {"line": line}))
    ctx = RunContext(config, artifacts_root)
    log(config.name, f"building {', '.join(target_names)} from the shared stages")
    t0 = time.perf_counter()
    try:
        progress.stage(config.name, target_names[0], "load")
        loaded = load_model(config)
        prep = read_shared(ctx, manifest, loaded, None)
        progress.stage(config.name, target_names[0], "trace")
        prep = dataclasses.replace(prep, traced=trace_model(config, loaded, prep.data))  # proved on the same data
        _check_same_model(prep)
    except Exception as exc:  # the shared stages passed with this model: this is these targets' error
        entry = _error_entry(exc, now())
        for name in target_names:
            log(config.name, f"{name}: error: {entry['message']}")
            progress.finish(config.name, name, "error")
            on_event("target", name, dict(entry))
        return
    reload_s = round(time.perf_counter() - t0, 3)
    for name in target_names:
        target_cfg = config.target(name)
        t1 = time.perf_counter()
        entry = build_target(ctx, prep, REGISTRY.get(target_cfg.name), target_cfg, tuple((repair or {}).get(name, ())))
        entry.setdefault("timings", {})["wall_s"] = round(time.perf_counter() - t1, 3)
        entry["timings"]["worker_reload_s"] = reload_s  # this worker's load + trace + read of the shared stages
        entry["timings"]["peak_rss_mb"] = round(peak_rss_mb(), 1)
        on_event("target", name, entry)
