"""The runner: config -> load -> trace -> savedmodel -> data -> reference ->
target.build -> parity -> report, for each model and target.

One target failing never stops the others. Each target builds into a staging folder
that replaces `artifacts/<model>/<target>/` only when the target finished (passed or
failed parity); an error or a crash leaves the previous artifacts as they were.
"""
from __future__ import annotations

import os
import resource
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import ModelConfig, TargetConfig
from pipeline.errors import IntegrityError, PipelineError, TargetUnavailable
from pipeline.fsutil import expand_files, file_records, publish_dir, sha256_file, staging_dir
from pipeline.publication import RECORD_NAME
from pipeline.parity import evaluate, reference_stats
from pipeline.records import LoadedModel, ParityData, TracedModel
from pipeline.report import merge_report, now, read_report
from pipeline.target import Artifact, BuildInputs, Target
from pipeline.tolerance import Tolerance


_log_sink = None  # a worker sends its progress lines to the parent through this


def log(model: str, message: str) -> None:
    line = f"[{model}] {message}"
    if _log_sink is not None:
        _log_sink(line)
    else:
        print(line, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass(frozen=True)
class RunContext:
    """What every stage of one model's run may read. Frozen: stages return records."""

    config: ModelConfig
    artifacts_root: Path

    @property
    def model_dir(self) -> Path:
        return self.artifacts_root / self.config.name


@dataclass(frozen=True)
class Prepared:
    """The shared stages' records for one model."""

    loaded: LoadedModel
    traced: TracedModel
    saved_model_dir: Path
    data: ParityData
    reference: tuple[dict[str, np.ndarray], ...]
    stats: dict[str, dict]
    pool_mask: tuple[bool, ...]
    timings: dict[str, dict] = field(default_factory=dict)
    reference_check: dict = field(default_factory=dict)


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, dict] = {}

    def run(self, name: str, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        self.timings[name] = {"seconds": round(time.perf_counter() - start, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}
        return result


def run_eager(loaded: LoadedModel, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import tensorflow as tf

    outputs = loaded.call({k: tf.constant(v) for k, v in inputs.items()})
    return {k: np.asarray(v) for k, v in outputs.items()}


def prepare(ctx: RunContext, saved_model: bool = True) -> Prepared:
    """Shared stages. Raises ModelError (exit 2) when the model cannot be loaded or traced,
    or its reference is unusable. Every check that needs TensorFlow runs before anything is
    written: the canonical SavedModel stays in a staging folder until `keep_saved_model`."""
    from pipeline.stages.data import is_pool_case, make_parity_data
    from pipeline.stages.load import load_model
    from pipeline.stages.reference import check_reference
    from pipeline.stages.savedmodel import export_saved_model
    from pipeline.stages.trace import trace_model
    from pipeline.usercode import call_user, source_key

    watch = _Stopwatch()
    config = ctx.config
    data = watch.run("data", make_parity_data, config)
    loaded = watch.run("load", load_model, config)
    traced = watch.run("trace", trace_model, config, loaded)
    reference = watch.run(
        "reference",
        lambda: tuple(call_user(config, source_key(config), f"model '{config.name}' (run eagerly on the parity data)", run_eager, loaded, inputs) for _, inputs in data.cases),
    )
    pool_mask = tuple(is_pool_case(label) for label, _ in data.cases)
    stats = reference_stats(list(reference), list(pool_mask))
    check_reference_finite(config, stats, reference)
    # Before anything is exported or judged: the reference must agree with itself (else exit 2).
    self_check = watch.run("reference_check", check_reference, config, loaded, data, reference, stats, run_eager)
    saved_model_dir = None
    if saved_model:
        staged = staging_dir(ctx.model_dir / ".stages", "savedmodel")
        try:
            watch.run("savedmodel", export_saved_model, staged / "model", loaded, traced)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        saved_model_dir = staged / "model"
    return Prepared(loaded, traced, saved_model_dir, data, reference, stats, pool_mask, watch.timings, self_check)


def keep_saved_model(ctx: RunContext, prep: Prepared, keep: bool) -> None:
    """Publish the canonical SavedModel under .stages/ when a target was published from it; else drop it."""
    if prep.saved_model_dir is None:
        return
    staged = prep.saved_model_dir.parent
    try:
        if keep:
            publish_dir(prep.saved_model_dir, ctx.model_dir / ".stages" / "savedmodel")
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def check_reference_finite(config: ModelConfig, stats: dict[str, dict], reference) -> None:
    """A NaN/Inf reference makes parity meaningless (NaN compared with NaN): refuse it unless expected."""
    from pipeline.usercode import bad_input

    for index, spec in enumerate(config.outputs):
        count = stats.get(spec.name, {}).get("nonfinite", 0)
        if not count or spec.allow_nonfinite:
            continue
        total = sum(int(np.size(case[spec.name])) for case in reference)
        raise bad_input(
            config, ("outputs", index),
            f"the eager model's output '{spec.name}' holds {count} NaN/Inf value(s) of {total} over the parity data: "
            "parity against a non-finite reference proves nothing. Fix the model or its data (a log or division of zero, "
            f"weights that overflow), or, if such values are intended, write the output as `{{name: {spec.name}, allow_nonfinite: true}}` "
            "(the artifact must then give NaN/Inf at the same elements).",
        )


def _tolerance_for(target_cfg: TargetConfig, artifact: Artifact):
    def lookup(output: str) -> Tolerance:
        return artifact.tolerance.override(target_cfg.tolerance_overrides(artifact.variant, output))

    return lookup


def check_parity(ctx: RunContext, prep: Prepared, target: Target, target_cfg: TargetConfig, target_dir: Path, artifact: Artifact) -> dict:
    """Run the artifact from disk on every case and compare with the eager reference."""
    runner = target.open(target_dir, artifact)
    produced = []
    for _, inputs in prep.data.cases:
        out = runner(inputs)
        produced.append({k: np.asarray(v) for k, v in out.items()})
    labels = [label for label, _ in prep.data.cases]
    return evaluate(
        labels,
        list(prep.reference),
        produced,
        _tolerance_for(target_cfg, artifact),
        dict(getattr(runner, "output_steps", {}) or {}),
        prep.stats,
        list(prep.pool_mask),
        classifier=ctx.config.data.classifier,
        labels=prep.data.labels,
    )


def _error_entry(exc: BaseException, started: str) -> dict:
    from pipeline.publication import DISK_FULL
    from pipeline.usercode import strip_ansi

    if isinstance(exc, PipelineError):
        return {"status": "error", "error": type(exc).__name__, "exit_code": exc.exit_code, "message": strip_ansi(str(exc)), "started": started, "finished": now()}
    if (isinstance(exc, OSError) and exc.errno in DISK_FULL) or "No space left on device" in str(exc):
        where = f" writing {exc.filename}" if getattr(exc, "filename", None) else ""
        return {"status": "error", "error": "DiskFull", "exit_code": 1, "message": f"no space left on the device{where}: free space and run the export again; the previous artifacts are unchanged", "started": started, "finished": now()}
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return {
        "status": "error",
        "error": type(exc).__name__,
        "exit_code": 1,
        "message": f"unexpected {type(exc).__name__}: {exc}",
        "traceback_tail": "".join(tb[-3:]),
        "started": started,
        "finished": now(),
    }


def _artifact_record(artifact: Artifact, target_dir: Path, target_name: str) -> dict:
    """Files are recorded relative to artifacts/<model>/, where they will live once published."""
    files = [{**f, "path": f"{target_name}/{f['path']}"} for f in file_records(target_dir, artifact.files, target_dir)]
    return {
        "artifact": {"variant": artifact.variant, "files": list(artifact.files), "tolerance": artifact.tolerance.__dict__, "info": artifact.info},
        "files": files,
        "bytes": sum(f["bytes"] for f in files),
        "info": artifact.info,
    }


def _fold_variants(variant_entries: dict[str, dict]) -> dict:
    """One artifact: its fields are the target's. Several: under `variants`."""
    statuses = [v["status"] for v in variant_entries.values()]
    status = next((s for s in ("error", "failed", "passed") if s in statuses), "skipped")
    if list(variant_entries) == [""]:
        entry = dict(variant_entries[""])
        entry["status"] = status
        return entry
    files = [f for v in variant_entries.values() for f in v.get("files", [])]
    unique = list({f["path"]: f for f in files}.values())
    # An unnamed artifact beside named ones (e.g. model.onnx beside model.optimized.onnx) is the default.
    return {"status": status, "files": unique, "variants": {(v or "default"): e for v, e in variant_entries.items()}}


def build_target(ctx: RunContext, prep: Prepared, target: Target, target_cfg: TargetConfig, repair: tuple[str, ...] = ()) -> dict:
    """Build, check and publish one target; returns its report entry (never raises PipelineError).

    A failed variant named by the target's options (or by `repair`) starts the target's
    repair search; what it finds is published beside it as a variant of its own."""
    model_dir = ctx.model_dir
    started = now()
    staged = staging_dir(model_dir, target.name)
    try:
        job = BuildInputs(
            model=ctx.config,
            target=target_cfg,
            out_dir=staged,
            saved_model_dir=prep.saved_model_dir,
            traced=prep.traced.function,
            loaded=prep.loaded,
            calibration=prep.data.pool,
            labels=prep.data.labels,
        )
        t0 = time.perf_counter()
        artifacts = target.build(job)
        build_s = time.perf_counter() - t0
        variant_entries: dict[str, dict] = {}
        parity_s = 0.0
        to_repair = set(repair) | set(target.repair_variants(target_cfg.options))
        for artifact in artifacts:  # grows while it runs: repaired variants are checked like the others
            t1 = time.perf_counter()
            record = _artifact_record(artifact, staged, target.name)
            label = f"{target.name}/{artifact.variant or 'default'}" if len(artifacts) > 1 else target.name
            try:
                parity = check_parity(ctx, prep, target, target_cfg, staged, artifact)
            except TargetUnavailable as exc:  # built, but this machine cannot run it: say so, check the rest
                record.update(status="skipped", message=str(exc))
                variant_entries[artifact.variant] = record
                log(ctx.config.name, f"{label}: parity skipped: {exc}")
                continue
            finally:
                parity_s += time.perf_counter() - t1
            record["parity"] = parity
            record["status"] = "passed" if parity["passed"] else "failed"
            if not parity["passed"]:
                diagnosis = target.diagnose(job, artifact, parity)
                if diagnosis:
                    record["diagnosis"] = diagnosis
            variant_entries[artifact.variant] = record
            worst = max((m.get("max_abs") or 0.0 for m in parity["outputs"].values()), default=0.0)
            log(ctx.config.name, f"{label}: {record['status']} (max_abs {worst:.3g})" + ("" if parity["passed"] else f": {'; '.join(parity['failures'])}"))
            if not parity["passed"] and artifact.variant in to_repair:
                artifacts += _repair_variant(ctx, prep, target, target_cfg, job, artifact, record)
        entry = _fold_variants(variant_entries)
        entry.update({"timings": {"build_s": round(build_s, 3), "parity_s": round(parity_s, 3)}, "started": started, "finished": now(), "optional": target_cfg.optional})
        entry["staged"] = str(staged)  # published by the parent with its report record (pipeline.publication)
        return entry
    except BaseException as exc:  # one target failing never stops the others
        shutil.rmtree(staged, ignore_errors=True)
        if isinstance(exc, KeyboardInterrupt):
            raise
        entry = _error_entry(exc, started)
        brief = "refused: the model or its config does not fit this target (the reason follows at the end)" if entry["exit_code"] == 2 else f"error: {entry['message']}"
        log(ctx.config.name, f"{target.name}: {brief}")
        return entry


def _repair_variant(ctx: RunContext, prep: Prepared, target: Target, target_cfg: TargetConfig, job: BuildInputs, artifact: Artifact, record: dict) -> list[Artifact]:
    """Run the target's repair search on a failed variant; its record goes in the variant's entry."""

    def verify(candidate: Artifact) -> dict:
        return check_parity(ctx, prep, target, target_cfg, job.out_dir, candidate)

    outcome = target.repair(job, artifact, record, verify, lambda line: log(ctx.config.name, f"{target.name}/{line}"))
    if outcome is None:
        return []
    repaired, search = outcome
    record["repair"] = search
    return list(repaired)


def run_targets(config: ModelConfig, target_names: list[str], artifacts_root: Path, on_event, repair: dict[str, list[str]] | None = None) -> None:
    """Worker side: shared stages once, then each target; every result goes to `on_event`.

    `repair` ({target: [variant]}) asks for a repair search on those variants when they fail."""
    global _log_sink
    from targets import REGISTRY

    _log_sink = lambda line: on_event("log", "", {"line": line})
    ctx = RunContext(config, artifacts_root)
    chosen = [config.target(name) for name in target_names]
    log(config.name, f"building {', '.join(target_names)}")
    try:
        prep = prepare(ctx)
    except Exception as exc:  # the model itself is unusable: every chosen target errors
        entry = _error_entry(exc, now())
        if entry["exit_code"] == 2:  # bad input: nothing was written; the parent prints it once
            if not entry["message"].startswith(str(config.file)):
                from pipeline.usercode import config_where, source_key

                entry["message"] = f"{config_where(config, source_key(config))}: {entry['message']}"
            on_event("bad_input", "", entry)
            return
        log(config.name, f"error: {entry['message']}")
        on_event("model_error", "", entry)
        return
    timings = dict(prep.timings)
    on_event(
        "run",
        "",
        {
            "model": {
                "flavour": prep.loaded.flavour,
                "tracing_count": prep.traced.tracing_count,
                "retrace_checked_at_batch_sizes": list(prep.traced.batch_sizes_checked),
                "reference": prep.stats,
                "reference_check": prep.reference_check,
                "cases": [label for label, _ in prep.data.cases],
            },
            "timings": timings,
        },
    )
    built = False
    try:
        for target_cfg in chosen:
            t0 = time.perf_counter()
            entry = build_target(ctx, prep, REGISTRY.get(target_cfg.name), target_cfg, tuple((repair or {}).get(target_cfg.name, ())))
            entry.setdefault("timings", {})["wall_s"] = round(time.perf_counter() - t0, 3)
            entry["timings"]["peak_rss_mb"] = round(peak_rss_mb(), 1)
            built = built or "staged" in entry
            on_event("target", target_cfg.name, entry)
    finally:
        keep_saved_model(ctx, prep, built)


def export(configs: list[ModelConfig], only: list[str] | None, artifacts_root: Path, jobs: int = 1, force: bool = False, repair: dict[str, list[str]] | None = None) -> int:
    """Parent side: decide what must be rebuilt (no TensorFlow needed), run workers, publish
    each finished target with its report record, under one lock per model.

    `repair` ({target: [variant]}, from `tfship repair`) rebuilds those targets with a repair
    search on the named variants; their entries get no cache key (the config alone would
    not rebuild the repaired variant)."""
    import contextlib

    from pipeline.errors import ConfigError, Problem
    from pipeline.publication import ModelLock, check_writable, reconcile
    from pipeline.report import tool_versions
    from pipeline.stages.data import check_pool_memory, make_parity_data

    for config in configs:
        if config.data.kind == "npz":
            make_parity_data(config)  # NumPy only: bad data is a config error before anything is written
        else:
            check_pool_memory(config)
    selected = [c for c in configs if any(only is None or t.name in only for t in c.targets)]
    if not selected:
        log("tfship", "nothing to do: no selected model configures the selected targets")
        return 0
    unwritable = check_writable(artifacts_root)
    if unwritable:
        raise ConfigError([Problem("", None, "--artifacts", f"{unwritable}; expected a folder tfship can write in. Fix: make it writable, or pass --artifacts <another folder>")])
    versions = tool_versions()
    started = now()
    root_existed = artifacts_root.exists()
    codes: list[int] = []
    with contextlib.ExitStack() as locks:
        for config in sorted(selected, key=lambda c: c.name):  # one order for everyone: no deadlock between runs
            locks.enter_context(ModelLock(artifacts_root, config.name, echo=lambda line: print(line, file=sys.stderr, flush=True)))
        existed = {c.name: (artifacts_root / c.name).exists() for c in selected}
        for config in selected:
            for done in reconcile(artifacts_root / config.name, {t.name for t in config.targets}):
                log(config.name, f"recovered from an interrupted run: {done}")
        _export_locked(selected, only, artifacts_root, jobs, force, versions, started, codes, existed, repair or {})
    if not root_existed and artifacts_root.is_dir() and not any(artifacts_root.iterdir()):
        artifacts_root.rmdir()  # bad input: leave no trace, not even the folder
    return max(codes, default=0) if 2 not in codes else 2


def _export_locked(selected, only, artifacts_root: Path, jobs: int, force: bool, versions: dict, started: str, codes: list[int], existed: dict, repair: dict) -> None:
    import tempfile

    from pipeline.cache import reusable, source_digest, target_key
    from pipeline.publication import publish_target, read_record
    from pipeline.usercode import config_where
    from pipeline.workers import ModelJob, run_jobs

    jobs_to_run, reused = [], {}
    for config in selected:
        chosen = [t for t in config.targets if only is None or t.name in only]
        model_dir = artifacts_root / config.name
        previous_report = read_report(model_dir) or {}
        previous = previous_report.get("targets", {})
        keys = {t.name: target_key(config, t, versions) for t in chosen}
        kept = {
            t.name: dict(previous[t.name], rebuilt=False)
            for t in chosen
            if not force and t.name not in (repair or {}) and reusable(previous.get(t.name), keys[t.name], model_dir)
        }
        reused[config.name] = (kept, keys)
        todo = [t.name for t in chosen if t.name not in kept]
        for name, entry in kept.items():
            log(config.name, f"{name}: up to date ({entry['status']}), reused")
        if todo:
            fd, log_path = tempfile.mkstemp(prefix=f"tfship-{config.name}-worker-", suffix=".log")
            os.close(fd)
            jobs_to_run.append(ModelJob(config.file, config.name, todo, Path(log_path), repair=dict(repair or {})))
        elif kept:
            # Nothing ran: what the last run learned about the model still describes these artifacts.
            model_facts = dict(previous_report.get("run", {}).get("model", {}), source_sha256=source_digest(config))
            run = {"started": started, "finished": now(), "state": "finished", "targets": list(kept), "rebuilt": [], "reused": list(kept), "model": model_facts}
            merge_report(model_dir, config.name, config.sha256, str(config.file), run, kept)
            codes.append(exit_code_for(kept))
    if not jobs_to_run:
        log("tfship", "nothing changed: every selected target is up to date")
        return
    by_name = {c.name: c for c in selected}
    recorded: dict[str, dict[str, dict]] = {job.model: {} for job in jobs_to_run}
    refused: dict[str, dict[str, dict]] = {job.model: {} for job in jobs_to_run}

    def run_so_far(job: ModelJob, state: str) -> dict:
        kept, _ = reused[job.model]
        done = recorded[job.model]
        run = {"started": started, "finished": now() if state == "finished" else None, "state": state,
               "targets": list({**kept, **done}), "rebuilt": list(done), "reused": list(kept), **job.run}
        run.setdefault("model", {})["source_sha256"] = source_digest(by_name[job.model])  # after the worker built any missing model
        return run

    def on_target(job: ModelJob, name: str, entry: dict) -> None:
        """Publish one finished target and record it at once: a kill after this loses nothing."""
        config = by_name[job.model]
        kept, keys = reused[job.model]
        model_dir = artifacts_root / job.model
        entry = dict(entry, rebuilt=True)
        staged = entry.pop("staged", None)
        if entry.get("status") == "error" and (entry.get("exit_code") == 2 or entry.get("error") == "DiskFull"):
            # Bad input, or a full disk (which says nothing about the model): reported, never
            # recorded; the previous artifacts and their record stay as they were.
            refused[job.model][name] = entry
            return
        entry["cache_key"] = keys.get(name) if entry.get("status") in ("passed", "failed") and name not in repair else None
        if staged:
            entry = publish_target(Path(staged), model_dir / name, entry)
        else:
            record = read_record(model_dir / name)
            if record is not None:  # the previous export's folder stays: say which one it is
                entry["kept_publication"] = record.get("publication")
        recorded[job.model][name] = entry
        merge_report(model_dir, config.name, config.sha256, str(config.file), run_so_far(job, "running"), {**kept, **recorded[job.model]})

    def on_model_done(job: ModelJob) -> None:
        config = by_name[job.model]
        kept, _ = reused[job.model]
        model_dir = artifacts_root / job.model
        messages = [job.bad_input["message"]] if job.bad_input else []
        messages += [
            f"{config_where(config, ('targets', _target_index(config, name)))}: {name}: {e['message']}" if e.get("exit_code") == 2 else f"{name}: {e['message']}"
            for name, e in refused[job.model].items()
        ]
        for message in messages:
            print(f"error: {message}", file=sys.stderr, flush=True)
        if recorded[job.model]:
            merge_report(model_dir, config.name, config.sha256, str(config.file), run_so_far(job, "finished"), {**kept, **recorded[job.model]})
            _keep_log(job.log_path, model_dir / ".logs" / "worker.log")
        else:
            job.log_path.unlink(missing_ok=True)
            if not existed[job.model]:
                _remove_empty_tree(model_dir)
        codes.append(exit_code_for({**kept, **recorded[job.model], **refused[job.model]}) if not job.bad_input else 2)

    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        run_jobs(jobs_to_run, artifacts_root, jobs, echo, on_model_done, on_target=on_target)
    finally:
        for job in jobs_to_run:
            job.log_path.unlink(missing_ok=True)


def _target_index(config: ModelConfig, name: str) -> int:
    return next(i for i, t in enumerate(config.targets) if t.name == name)


def _keep_log(temp_log: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(temp_log, dest)
    temp_log.unlink(missing_ok=True)


def _remove_empty_tree(folder: Path) -> None:
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()


def export_model(config: ModelConfig, target_names: list[str] | None, artifacts_root: Path, force: bool = False) -> tuple[dict, int]:
    """Export one model (through a worker, with the stage cache); returns (report, exit code)."""
    code = export([config], target_names, artifacts_root, jobs=1, force=force)
    return read_report(artifacts_root / config.name) or {}, code


def exit_code_for(entries: dict[str, dict]) -> int:
    codes = [0]
    for entry in entries.values():
        if entry["status"] == "error":
            codes.append(entry.get("exit_code", 1))
        elif entry["status"] == "failed":
            codes.append(1)
    return 2 if 2 in codes else max(codes)


# ------------------------------------------------------------------ validate


def verify_files(model_dir: Path, report: dict) -> list[str]:
    """Files whose bytes differ from the report (or that are gone)."""
    changed = []
    for name, entry in report.get("targets", {}).items():
        for f in entry.get("files", []):
            path = model_dir / f["path"]
            if not path.is_file():
                changed.append(f"{f['path']} (missing)")
            elif sha256_file(path) != f["sha256"]:
                changed.append(f"{f['path']} (sha256 {sha256_file(path)[:12]}, recorded {f['sha256'][:12]})")
        target_dir = model_dir / name
        if target_dir.is_dir() and entry.get("files"):
            recorded = {f["path"] for f in entry["files"]}
            for path in expand_files(model_dir, [name]):
                rel = path.relative_to(model_dir).as_posix()
                if rel not in recorded and path.name != RECORD_NAME:
                    changed.append(f"{rel} (not in the report)")
    return changed


def validate_model(config: ModelConfig, artifacts_root: Path) -> int:
    """Re-check artifacts on disk: hashes first, then parity, without re-exporting."""
    from pipeline.publication import ModelLock

    ctx = RunContext(config, artifacts_root)
    path = ctx.model_dir / "report.json"
    if not path.exists():
        log(config.name, f"no report at {path}: run `tfship export --model {config.name}` first")
        return 1
    with ModelLock(artifacts_root, config.name, echo=lambda line: print(line, file=sys.stderr, flush=True)):
        return _validate_locked(ctx, config)


def _validate_locked(ctx: RunContext, config: ModelConfig) -> int:
    from pipeline.publication import stale_targets
    from targets import REGISTRY

    report = read_report(ctx.model_dir)
    if report is None:
        raise IntegrityError(
            f"{ctx.model_dir / 'report.json'} is not a tfship report (not JSON, or not its format); "
            f"run `tfship export --model {config.name} --force` to rebuild and rewrite it"
        )
    stale = stale_targets(ctx.model_dir, report, {t.name for t in config.targets})
    if stale:
        lines = [f"{name}: {why}" for name, why in stale.items()]
        log(config.name, "report.json is stale for " + ", ".join(stale) + ":\n  " + "\n  ".join(lines))
        raise IntegrityError(f"{config.name}: report.json is stale for {', '.join(stale)}; run `tfship export --model {config.name}` to record what is on disk")
    changed = verify_files(ctx.model_dir, report)
    if changed:
        log(config.name, "artifact files changed since export:\n  " + "\n  ".join(changed))
        raise IntegrityError(f"{config.name}: {len(changed)} file(s) differ from report.json: " + "; ".join(changed))
    log(config.name, "all recorded files match their sha256")
    prep = prepare(ctx, saved_model=False)
    code = 0
    for name, entry in report.get("targets", {}).items():
        if entry.get("status") not in ("passed", "failed") or name not in REGISTRY:
            continue
        target = REGISTRY.get(name)
        try:
            target_cfg = config.target(name)
        except KeyError:
            continue
        records = entry.get("variants") or {"": entry}
        for variant, record in records.items():
            art = record["artifact"]
            artifact = Artifact(variant=art["variant"], files=tuple(art["files"]), tolerance=Tolerance(**art["tolerance"]), info=art.get("info", {}))
            parity = check_parity(ctx, prep, target, target_cfg, ctx.model_dir / name, artifact)
            label = f"{name}/{variant}" if variant else name
            log(config.name, f"{label}: parity {'passed' if parity['passed'] else 'FAILED: ' + '; '.join(parity['failures'])}")
            if not parity["passed"]:
                code = 1
    return code
