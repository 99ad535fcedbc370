"""The runner: config -> load -> trace -> savedmodel -> data -> reference ->
target.build -> parity -> report, for each model and target.

One target failing never stops the others. Each target builds into a staging folder
that replaces `artifacts/<model>/<target>/` only when the target finished (passed or
failed parity); an error or a crash leaves the previous artifacts as they were.
"""
from __future__ import annotations

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


def prepare(ctx: RunContext) -> Prepared:
    """Shared stages. Raises ModelError (exit 2) when the model cannot be loaded or traced."""
    from pipeline.stages.data import is_pool_case, make_parity_data
    from pipeline.stages.load import load_model
    from pipeline.stages.reference import check_reference
    from pipeline.stages.savedmodel import export_saved_model
    from pipeline.stages.trace import trace_model

    watch = _Stopwatch()
    config = ctx.config
    data = watch.run("data", make_parity_data, config)
    loaded = watch.run("load", load_model, config)
    traced = watch.run("trace", trace_model, config, loaded)
    reference = watch.run("reference", lambda: tuple(run_eager(loaded, inputs) for _, inputs in data.cases))
    pool_mask = tuple(is_pool_case(label) for label, _ in data.cases)
    stats = reference_stats(list(reference), list(pool_mask))
    # Before anything is exported or judged: the reference must agree with itself (else exit 2).
    self_check = watch.run("reference_check", check_reference, config, loaded, data, reference, stats, run_eager)
    stage_root = ctx.model_dir / ".stages"
    staged = staging_dir(stage_root, "savedmodel")
    saved_model_dir = stage_root / "savedmodel"
    try:
        watch.run("savedmodel", export_saved_model, staged / "model", loaded, traced)
        publish_dir(staged / "model", saved_model_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return Prepared(loaded, traced, saved_model_dir, data, reference, stats, pool_mask, watch.timings, self_check)


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


def localize(ctx: RunContext, prep: Prepared, target: Target, target_cfg: TargetConfig, target_dir: Path, artifact: Artifact, parity: dict):
    """The first layer where a failed artifact diverges (None when it cannot be said).

    Localization explains a failure; it never changes the verdict, so its own
    failure is recorded and the run goes on."""
    from pipeline.localize import Localization, localize_failure, pick_inputs

    try:
        return localize_failure(
            ctx.model_dir, ctx.config, prep.loaded, target, target_cfg, target_dir, artifact, parity, prep.stats,
            _tolerance_for(target_cfg, artifact), pick_inputs(prep.data.cases, prep.pool_mask), prep.data.pool,
        )
    except Exception as exc:  # the parity verdict stands; say why there is no layer table
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return Localization(target=target.name, variant=artifact.variant, method="none", note=f"localization failed: {type(exc).__name__}: {first}")


def _error_entry(exc: BaseException, started: str) -> dict:
    if isinstance(exc, PipelineError):
        return {"status": "error", "error": type(exc).__name__, "exit_code": exc.exit_code, "message": str(exc), "started": started, "finished": now()}
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
            if not parity["passed"]:
                localization = localize(ctx, prep, target, target_cfg, staged, artifact, parity)
                if localization is not None:
                    record["localization"] = localization.to_json()
                    log(ctx.config.name, "  where: " + localization.summary())
            if not parity["passed"] and artifact.variant in to_repair:
                artifacts += _repair_variant(ctx, prep, target, target_cfg, job, artifact, record)
        entry = _fold_variants(variant_entries)
        entry.update({"timings": {"build_s": round(build_s, 3), "parity_s": round(parity_s, 3)}, "started": started, "finished": now(), "optional": target_cfg.optional})
        publish_dir(staged, model_dir / target.name)
        return entry
    except BaseException as exc:  # one target failing never stops the others
        shutil.rmtree(staged, ignore_errors=True)
        if isinstance(exc, KeyboardInterrupt):
            raise
        entry = _error_entry(exc, started)
        log(ctx.config.name, f"{target.name}: error: {entry['message']}")
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
    ctx.model_dir.mkdir(parents=True, exist_ok=True)
    log(config.name, f"building {', '.join(target_names)}")
    try:
        prep = prepare(ctx)
    except Exception as exc:  # the model itself is unusable: every chosen target errors
        entry = _error_entry(exc, now())
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
    for target_cfg in chosen:
        t0 = time.perf_counter()
        entry = build_target(ctx, prep, REGISTRY.get(target_cfg.name), target_cfg, tuple((repair or {}).get(target_cfg.name, ())))
        entry.setdefault("timings", {})["wall_s"] = round(time.perf_counter() - t0, 3)
        entry["timings"]["peak_rss_mb"] = round(peak_rss_mb(), 1)
        on_event("target", target_cfg.name, entry)


def export(configs: list[ModelConfig], only: list[str] | None, artifacts_root: Path, jobs: int = 1, force: bool = False, repair: dict[str, list[str]] | None = None, strict: bool = False) -> int:
    """Parent side: decide what must be rebuilt (no TensorFlow needed), run workers, write reports.

    `repair` ({target: [variant]}, from `tfship repair`) rebuilds those targets with a repair
    search on the named variants; their entries get no cache key (the config alone would
    not rebuild the repaired variant)."""
    from pipeline.audit import apply_strict
    from pipeline.cache import reusable, source_digest, target_key
    from pipeline.report import tool_versions
    from pipeline.workers import ModelJob, run_jobs

    from pipeline.stages.data import make_parity_data

    for config in configs:
        if config.data.kind == "npz":
            make_parity_data(config)  # NumPy only: bad data is a config error before anything is written
    versions = tool_versions()
    started = now()
    jobs_to_run, reused, codes = [], {}, []
    for config in configs:
        chosen = [t for t in config.targets if only is None or t.name in only]
        if not chosen:
            continue
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
            jobs_to_run.append(ModelJob(config.file, config.name, todo, model_dir / ".logs" / "worker.log", repair=dict(repair or {})))
        elif kept:
            # Nothing ran: what the last run learned about the model still describes these artifacts.
            model_facts = dict(previous_report.get("run", {}).get("model", {}), source_sha256=source_digest(config))
            run = {"started": started, "finished": now(), "targets": list(kept), "rebuilt": [], "reused": list(kept), "model": model_facts}
            merge_report(model_dir, config.name, config.sha256, str(config.file), run, apply_strict(kept) if strict else kept)
            codes.append(exit_code_for(kept))
    if not jobs_to_run:
        log("tfship", "nothing changed: every selected target is up to date")
        return max(codes, default=0) if 2 not in codes else 2
    by_name = {c.name: c for c in configs}

    def on_model_done(job: ModelJob) -> None:
        config = by_name[job.model]
        kept, keys = reused[job.model]
        entries = dict(kept)
        for name, entry in job.entries.items():
            entry["rebuilt"] = True
            entry["cache_key"] = keys.get(name) if entry.get("status") in ("passed", "failed") and name not in (repair or {}) else None
            entries[name] = entry
        run = {"started": started, "finished": now(), "targets": list(entries), "rebuilt": list(job.entries), "reused": list(kept), **job.run}
        run.setdefault("model", {})["source_sha256"] = source_digest(config)  # after the worker built any missing model
        if strict:
            apply_strict(entries)
        merge_report(artifacts_root / job.model, config.name, config.sha256, str(config.file), run, entries)
        codes.append(exit_code_for(entries))

    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    for job in jobs_to_run:
        (artifacts_root / job.model).mkdir(parents=True, exist_ok=True)
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        job.log_path.write_text("")
    run_jobs(jobs_to_run, artifacts_root, jobs, echo, on_model_done)
    return max(codes, default=0) if 2 not in codes else 2


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
                if rel not in recorded:
                    changed.append(f"{rel} (not in the report)")
    return changed


def validate_model(config: ModelConfig, artifacts_root: Path) -> int:
    """Re-check artifacts on disk: hashes first, then parity, without re-exporting."""
    from targets import REGISTRY

    ctx = RunContext(config, artifacts_root)
    report = read_report(ctx.model_dir)
    if report is None:
        log(config.name, f"no report at {ctx.model_dir / 'report.json'}: run `tfship export --model {config.name}` first")
        return 1
    changed = verify_files(ctx.model_dir, report)
    if changed:
        log(config.name, "artifact files changed since export:\n  " + "\n  ".join(changed))
        raise IntegrityError(f"{config.name}: {len(changed)} file(s) differ from report.json: " + "; ".join(changed))
    log(config.name, "all recorded files match their sha256")
    prep = prepare(ctx)
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
