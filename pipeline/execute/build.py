"""The worker half of a run: load -> trace -> savedmodel -> data -> reference ->
target.build -> parity, for one model and its targets; each target's report entry
goes back to the parent through `on_event`.

One target failing never stops the others. Each target builds into a staging folder
that replaces `artifacts/<model>/<target>/` only when the target finished (passed or
failed parity); an error or a crash leaves the previous artifacts as they were.
"""
from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline import progress
from pipeline.errors import PipelineError, TargetUnavailable
from pipeline.execute.console import log, peak_rss_mb, set_log_sink
from pipeline.execute.stored import ReferenceCases
from pipeline.fsutil import expand_files, file_records, publish_dir, staging_dir
from pipeline.parity import evaluate, judge_runtime_precision, reference_stats
from pipeline.records import LoadedModel, ParityData, TracedModel
from pipeline.stages.fingerprint import ModelFingerprint
from pipeline.reports.model import now
from pipeline.spec import ModelConfig, TargetConfig
from pipeline.target import Artifact, BuildInputs, Target
from pipeline.tolerance import Tolerance


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
    reference: ReferenceCases
    stats: dict[str, dict]
    pool_mask: tuple[bool, ...]
    timings: dict[str, dict] = field(default_factory=dict)
    reference_check: dict = field(default_factory=dict)
    fingerprint: ModelFingerprint | None = None
    data_fingerprint: str = ""

    def close(self) -> None:
        """Drop what the shared stages left on disk for this run (a spilled reference)."""
        self.reference.close()


class _Stopwatch:
    def __init__(self, model: str = "") -> None:
        self.timings: dict[str, dict] = {}
        self.model = model

    def run(self, name: str, fn, *args):
        progress.stage(self.model, "", name)
        start = time.perf_counter()
        result = fn(*args)
        self.timings[name] = {"seconds": round(time.perf_counter() - start, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}
        return result


def run_eager(loaded: LoadedModel, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import tensorflow as tf

    outputs = loaded.call({k: tf.constant(v) for k, v in inputs.items()})
    return {k: np.asarray(v) for k, v in outputs.items()}


@dataclass(frozen=True)
class BuiltModel:
    """The model as this run built it: data, load, trace and what it computes (fingerprints)."""

    loaded: LoadedModel
    traced: TracedModel
    data: ParityData
    fingerprint: ModelFingerprint
    data_fingerprint: str
    timings: dict[str, dict]


def build_model(ctx: RunContext) -> BuiltModel:
    """The stages every later one needs, and the fingerprints that decide whether anything
    must be built. Raises ModelError (exit 2) when the model cannot be loaded or traced."""
    from pipeline.stages.data import make_parity_data
    from pipeline.stages.fingerprint import data_fingerprint, fingerprint_model
    from pipeline.stages.load import load_model
    from pipeline.stages.trace import trace_model

    watch = _Stopwatch(ctx.config.name)
    config = ctx.config
    data = watch.run("data", make_parity_data, config)
    loaded = watch.run("load", load_model, config)
    traced = watch.run("trace", trace_model, config, loaded, data)
    fingerprint = watch.run("fingerprint", fingerprint_model, traced)
    return BuiltModel(loaded, traced, data, fingerprint, data_fingerprint(data), watch.timings)


def prepare(ctx: RunContext, model: BuiltModel | None = None, saved_model: bool = True) -> Prepared:
    """Shared stages. Raises ModelError (exit 2) when the model cannot be loaded or traced,
    or its reference is unusable. Every check that needs TensorFlow runs before anything is
    written: the canonical SavedModel stays in a staging folder until `keep_saved_model`."""
    from pipeline.stages.data import is_pool_case
    from pipeline.stages.reference import check_reference
    from pipeline.stages.savedmodel import export_saved_model

    model = model or build_model(ctx)
    watch = _Stopwatch(ctx.config.name)
    watch.timings.update(model.timings)
    config = ctx.config
    loaded, traced, data = model.loaded, model.traced, model.data
    reference = ReferenceCases(ctx.model_dir / ".stages")
    try:
        watch.run("reference", _run_reference, config, loaded, data, reference)
        pool_mask = tuple(is_pool_case(label) for label, _ in data.cases)
        stats = reference_stats(reference, list(pool_mask))
        check_reference_finite(config, stats, reference)
        # Before anything is exported or judged: the reference must agree with itself (else exit 2).
        self_check = watch.run("reference_check", check_reference, config, loaded, data, reference, stats, run_eager)
    except BaseException:
        reference.close()
        raise
    saved_model_dir = None
    if saved_model:
        staged = staging_dir(ctx.model_dir / ".stages", "savedmodel")
        try:
            watch.run("savedmodel", export_saved_model, staged / "model", loaded, traced)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            reference.close()
            raise
        saved_model_dir = staged / "model"
    return Prepared(loaded, traced, saved_model_dir, data, reference, stats, pool_mask, watch.timings, self_check, model.fingerprint, model.data_fingerprint)


def model_identity(loaded: LoadedModel, fingerprint: ModelFingerprint, data_fp: str) -> dict:
    """What a target's entry records about the model and data it was built from."""
    from pipeline.fsutil import sha256_file

    dependencies = [{"path": str(p), "sha256": sha256_file(p)} for p in loaded.dependencies] if loaded.self_contained else None
    return {"model_fingerprint": fingerprint.to_json(), "data_fingerprint": data_fp, "source_dependencies": dependencies}


def settle_verified(config: ModelConfig, model: BuiltModel, target_names: list[str], verify: dict[str, dict], on_event) -> list[str]:
    """Targets to verify whose recorded fingerprints equal the model's are reported
    `unchanged` (the parent reuses them); returns the targets still to build."""
    from pipeline.stages.fingerprint import ModelFingerprint

    current = model.fingerprint.to_json()
    remaining = []
    for name in target_names:
        expected = verify.get(name)
        if expected is None:
            remaining.append(name)
            continue
        old = expected.get("model") or {}
        differs = ModelFingerprint.differences(old, current)
        data_changed = expected.get("data") != model.data_fingerprint
        if not differs and not data_changed:
            on_event("unchanged", name, {"model_fingerprint": current, "data_fingerprint": model.data_fingerprint})
            continue
        why = []
        if differs:
            why.append(f"built from model {str(old.get('digest'))[:12]}, the model is now {current['digest'][:12]} ({' and '.join(differs)} differ)")
        if data_changed:
            why.append("the parity data the generator gives changed")
        log(config.name, f"{name}: stale: {'; '.join(why)}: rebuilding")
        remaining.append(name)
    return remaining


def _run_reference(config: ModelConfig, loaded: LoadedModel, data: ParityData, reference: ReferenceCases) -> None:
    """The eager outputs of every case, one case at a time (kept on disk once large)."""
    from pipeline.usercode import call_user, source_key

    for _, inputs in data.cases:
        reference.append(call_user(config, source_key(config), f"model '{config.name}' (run eagerly on the parity data)", run_eager, loaded, inputs))


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


def dynamic_dims_view(config) -> dict:
    """Every dynamic non-batch dimension: the inputs and axes that carry it and the
    sizes parity tested (for report.json)."""
    view: dict[str, dict] = {}
    tested = dict(config.data.shapes)
    for spec in config.inputs:
        for axis, name in spec.dynamic_dims:
            entry = view.setdefault(name, {"axes": [], "tested": sorted({d[name] for d in config.shape_sets})})
            entry["axes"].append({"input": spec.name, "axis": axis})
            if name not in tested:
                entry["default_sizes"] = True
    return view


def _tolerance_for(target_cfg: TargetConfig, artifact: Artifact):
    def lookup(output: str) -> Tolerance:
        return artifact.tolerance.override(target_cfg.tolerance_overrides(artifact.variant, output))

    return lookup


def check_parity(ctx: RunContext, prep: Prepared, target: Target, target_cfg: TargetConfig, target_dir: Path, artifact: Artifact) -> dict:
    """Run the artifact from disk on every case and compare with the eager reference."""
    runner = target.open(target_dir, artifact)
    progress.stage(ctx.config.name, target.name, f"parity {artifact.variant}".strip(), total=len(prep.data.cases))

    def produced():  # one case at a time: each is compared and dropped before the next runs
        for _, inputs in prep.data.cases:
            out = {k: np.asarray(v) for k, v in runner(inputs).items()}
            progress.advance(ctx.config.name, target.name)  # before the yield: the last case counts too
            yield out

    labels = [label for label, _ in prep.data.cases]
    result = evaluate(
        labels,
        prep.reference,
        produced(),
        _tolerance_for(target_cfg, artifact),
        dict(getattr(runner, "output_steps", {}) or {}),
        prep.stats,
        list(prep.pool_mask),
        classifier=ctx.config.data.classifier,
        labels=prep.data.labels,
    )
    # A runtime that reads back the precision it computed in (OpenVINO) is judged on it too.
    return judge_runtime_precision(result, getattr(runner, "precision", None))


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
    unchecked = {"unchecked": dict(artifact.unchecked)} if artifact.unchecked else {}
    record = {
        "artifact": {"variant": artifact.variant, "files": list(artifact.files), "tolerance": artifact.tolerance.__dict__, **unchecked},
        "files": files,
        "bytes": sum(f["bytes"] for f in files),
        "info": artifact.info,
    }
    if artifact.unchecked:  # shipped files parity never ran: the report says so beside them
        record["unchecked_files"] = {f"{target_name}/{name}": why for name, why in artifact.unchecked.items()}
    return record


def _variant_error_entry(artifact: Artifact, exc: BaseException | None = None) -> dict:
    """Report record of a variant that could not be built or run (no files)."""
    error = dict(artifact.error or {})
    if exc is not None and not isinstance(exc, PipelineError):
        error["message"] = f"unexpected {type(exc).__name__}: {error.get('message', '')}"
        error["traceback_tail"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])
    return {"status": "error", **error, "files": [], "bytes": 0, "info": artifact.info,
            "artifact": {"variant": artifact.variant, "files": [], "tolerance": artifact.tolerance.__dict__}}


def _drop_files(staged: Path, files: tuple[str, ...], others: list[Artifact]) -> None:
    """Remove an unrunnable variant's files (those no other variant lists) so they are not published."""
    kept = set(expand_files(staged, [f for a in others for f in a.files]))
    for path in expand_files(staged, list(files)):
        if path not in kept:
            path.unlink(missing_ok=True)


def _fold_variants(variant_entries: dict[str, dict], target_name: str) -> dict:
    """Every artifact under `variants`, a target with one artifact too (one report shape).
    Each of the target's files says which parity run executed it, or that none did."""
    from pipeline.reports.records import file_checks

    statuses = [v["status"] for v in variant_entries.values()]
    status = next((s for s in ("error", "failed", "passed") if s in statuses), "skipped")
    files = [f for v in variant_entries.values() for f in v.get("files", [])]
    unique = list({f["path"]: f for f in files}.values())
    # An unnamed artifact beside named ones (e.g. model.onnx beside model.optimized.onnx) is the default.
    entry = {"status": status, "files": unique, "variants": {(v or "default"): e for v, e in variant_entries.items()}}
    checks = file_checks(target_name, entry)
    entry["files"] = [{**f, **checks.get(f["path"], {})} for f in unique]
    errors = {(v or "default"): e for v, e in variant_entries.items() if e["status"] == "error"}
    if errors:  # the target is in error for these variants only; the others were checked and published
        entry["message"] = "; ".join(f"{v}: {e.get('message', '')}" for v, e in errors.items())
        entry["exit_code"] = max(e.get("exit_code", 1) for e in errors.values())
        entry["error"] = next(iter(errors.values())).get("error")
    return entry


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
        progress.stage(ctx.config.name, target.name, "convert")
        artifacts = target.build(job)
        build_s = time.perf_counter() - t0
        variant_entries: dict[str, dict] = {}
        parity_s = 0.0
        to_repair = set(repair) | set(target.repair_variants(target_cfg.options))
        for artifact in artifacts:  # grows while it runs: repaired variants are checked like the others
            t1 = time.perf_counter()
            label = f"{target.name}/{artifact.variant or 'default'}" if len(artifacts) > 1 else target.name
            if artifact.error is not None:  # this variant could not be built; the others stand
                if artifact.candidate is not None:  # a fix the error offers: say whether it passes here
                    artifact = _check_candidate(ctx, prep, target, target_cfg, staged, artifact)
                variant_entries[artifact.variant] = _variant_error_entry(artifact)
                log(ctx.config.name, f"{label}: error: {artifact.error['message']}")
                if artifact.variant in to_repair:  # a conversion refused on one op: a recipe may still convert
                    artifacts += _repair_variant(ctx, prep, target, target_cfg, job, artifact, variant_entries[artifact.variant])
                continue
            record = _artifact_record(artifact, staged, target.name)
            try:
                parity = check_parity(ctx, prep, target, target_cfg, staged, artifact)
            except TargetUnavailable as exc:  # built, but this machine cannot run it: say so, check the rest
                record.update(status="skipped", message=str(exc))
                variant_entries[artifact.variant] = record
                log(ctx.config.name, f"{label}: parity skipped: {exc}")
                continue
            except Exception as exc:  # this variant cannot be run: an error of its own, the others stand
                variant_entries[artifact.variant] = _variant_error_entry(Artifact.failed(artifact.variant, exc, artifact.info), exc)
                _drop_files(staged, artifact.files, [a for a in artifacts if a is not artifact])
                log(ctx.config.name, f"{label}: error: {variant_entries[artifact.variant]['message']}")
                continue
            finally:
                parity_s += time.perf_counter() - t1
            record["parity"] = parity
            record["status"] = "passed" if parity["passed"] else "failed"
            if not parity["passed"]:
                progress.stage(ctx.config.name, target.name, f"diagnose {artifact.variant}".strip())
                diagnosis = target.diagnose(job, artifact, parity)
                if diagnosis:
                    record["diagnosis"] = diagnosis
            variant_entries[artifact.variant] = record
            worst = max((m.get("max_abs") or 0.0 for m in parity["outputs"].values()), default=0.0)
            reason = (record.get("diagnosis") or {}).get("reason")
            log(ctx.config.name, f"{label}: {record['status']} (max_abs {worst:.3g})" + ("" if parity["passed"] else f": {'; '.join(parity['failures'])}") + (f". {reason}" if reason else ""))
            if not parity["passed"]:
                localization = localize(ctx, prep, target, target_cfg, staged, artifact, parity)
                if localization is not None:
                    record["localization"] = localization.to_json()
                    log(ctx.config.name, "  where: " + localization.summary())
            if not parity["passed"] and artifact.variant in to_repair:
                artifacts += _repair_variant(ctx, prep, target, target_cfg, job, artifact, record)
        entry = _fold_variants(variant_entries, target.name)
        entry.update({"timings": {"build_s": round(build_s, 3), "parity_s": round(parity_s, 3)}, "started": started, "finished": now(), "optional": target_cfg.optional})
        if prep.fingerprint is not None:
            entry.update(model_identity(prep.loaded, prep.fingerprint, prep.data_fingerprint))
        entry["staged"] = str(staged)  # published by the parent with its report record (pipeline.publication)
        progress.finish(ctx.config.name, target.name, entry["status"])
        return entry
    except BaseException as exc:  # one target failing never stops the others
        shutil.rmtree(staged, ignore_errors=True)
        if isinstance(exc, KeyboardInterrupt):
            raise
        entry = _error_entry(exc, started)
        brief = "refused: the model or its config does not fit this target (the reason follows at the end)" if entry["exit_code"] == 2 else f"error: {entry['message']}"
        log(ctx.config.name, f"{target.name}: {brief}")
        progress.finish(ctx.config.name, target.name, "error")
        return entry


def _check_candidate(ctx: RunContext, prep: Prepared, target: Target, target_cfg: TargetConfig, staged: Path, artifact: Artifact) -> Artifact:
    """Run the parity check on the file a failed variant's offered fix gives, and state the
    outcome in the variant's error: a fix is offered only with its result on this model.
    The candidate's files are removed: the user opts in through the option."""
    candidate = artifact.candidate
    try:
        parity = check_parity(ctx, prep, target, target_cfg, staged, candidate.artifact)
    except Exception as exc:  # the candidate cannot be run: that is its outcome, the variant stays an error
        detail = " ".join(str(exc).split())[:400]
        if not isinstance(exc, PipelineError):
            detail = f"unexpected {type(exc).__name__}: {detail}"
        outcome = f"Checked here: the file {candidate.option} gives cannot be run: {detail}. No fix that passes was found."
        checked = {"option": candidate.option, "status": "error", "message": detail}
    else:
        worst = max((m.get("max_abs") or 0.0 for m in parity["outputs"].values()), default=0.0)
        if parity["passed"]:
            outcome = f"Checked here: with {candidate.option} the file passes parity (max_abs {worst:.3g}); set it to publish that variant."
        else:
            outcome = f"Checked here: with {candidate.option} the file fails parity ({'; '.join(parity['failures'])[:400]}). No fix that passes was found."
        checked = {"option": candidate.option, "status": "passed" if parity["passed"] else "failed", "max_abs": worst, "failures": parity["failures"]}
    finally:
        for name in candidate.artifact.files:
            (staged / name).unlink(missing_ok=True)
    error = dict(artifact.error or {})
    error["message"] = f"{error.get('message', '').rstrip()} {outcome}"
    info = {**artifact.info, "fix_checked": checked}
    return Artifact(variant=artifact.variant, files=(), tolerance=artifact.tolerance, info=info, error=error)


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


def run_targets(
    config: ModelConfig, target_names: list[str], artifacts_root: Path, on_event, repair: dict[str, list[str]] | None = None, verify: dict[str, dict] | None = None,
) -> None:
    """Worker side: shared stages once, then each target; every result goes to `on_event`.

    `repair` ({target: [variant]}) asks for a repair search on those variants when they fail.
    `verify` ({target: recorded fingerprints}) names targets reused when the model built
    now has those fingerprints (event `unchanged`), rebuilt otherwise."""
    from targets import REGISTRY

    set_log_sink(lambda line: on_event("log", "", {"line": line}))
    ctx = RunContext(config, artifacts_root)
    log(config.name, f"{'checking' if verify else 'building'} {', '.join(target_names)}")
    try:
        model = build_model(ctx)
        target_names = settle_verified(config, model, target_names, verify or {}, on_event)
        if not target_names:
            progress.finish(config.name, "", "unchanged")
            return
        prep = prepare(ctx, model)
    except Exception as exc:  # the model itself is unusable: every chosen target errors
        report_model_error(config, exc, on_event)
        return
    chosen = [config.target(name) for name in target_names]
    progress.finish(config.name, "", "ready")
    on_event("run", "", {"model": model_facts(config, prep), "timings": dict(prep.timings)})
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
        prep.close()


def report_model_error(config: ModelConfig, exc: Exception, on_event) -> None:
    """The shared stages failed: bad input (exit 2, printed once by the parent), or every chosen target's error."""
    entry = _error_entry(exc, now())
    if entry["exit_code"] == 2:  # bad input: nothing was written; the parent prints it once
        if not entry["message"].startswith(str(config.file)):
            from pipeline.usercode import config_where, source_key

            entry["message"] = f"{config_where(config, source_key(config))}: {entry['message']}"
        on_event("bad_input", "", entry)
        return
    log(config.name, f"error: {entry['message']}")
    progress.finish(config.name, "", "error")
    on_event("model_error", "", entry)


def model_facts(config: ModelConfig, prep: Prepared) -> dict:
    """What the shared stages learned about the model, for the report's run record."""
    return {
        "flavour": prep.loaded.flavour,
        "tracing_count": prep.traced.tracing_count,
        "retrace_checked_at_batch_sizes": list(prep.traced.batch_sizes_checked),
        **(
            {"dynamic_dims": dynamic_dims_view(config), "retrace_checked_at_shapes": [dict(d) for d in config.shape_sets]}
            if config.dynamic_dims
            else {}
        ),
        "reference": prep.stats,
        "reference_check": prep.reference_check,
        "cases": [label for label, _ in prep.data.cases],
        **({"fingerprint": prep.fingerprint.to_json(), "data_fingerprint": prep.data_fingerprint} if prep.fingerprint is not None else {}),
    }
