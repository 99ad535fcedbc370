"""`validate`: re-check exported artifacts on disk (hashes, then parity) without re-exporting."""
from __future__ import annotations

import sys
from pathlib import Path

from pipeline.errors import IntegrityError
from pipeline.execute.build import RunContext, check_parity, prepare
from pipeline.execute.console import log
from pipeline.reports.model import read_report, verify_files
from pipeline.reports.records import iter_records
from pipeline.spec import ModelConfig
from pipeline.target import Artifact
from pipeline.tolerance import Tolerance


def validate_model(config: ModelConfig, artifacts_root: Path, checks: list | None = None) -> int:
    """Re-check artifacts on disk: stale records, hashes, then parity, without re-exporting.
    Each parity check is appended to `checks` when given ({target, passed, failures, max_abs}).
    Holds the model's lock: an export running meanwhile finishes first."""
    from pipeline.publication import ModelLock

    ctx = RunContext(config, artifacts_root)
    path = ctx.model_dir / "report.json"
    if not path.exists():
        log(config.name, f"no report at {path}: run `tfship export --model {config.name}` first")
        return 1
    with ModelLock(artifacts_root, config.name, echo=lambda line: print(line, file=sys.stderr, flush=True)):
        return _validate_locked(ctx, config, checks)


def stale_against(report: dict, fingerprint, targets: set[str]) -> dict[str, str]:
    """{target: why} for recorded targets built from a model other than `fingerprint`'s."""
    from pipeline.stages.fingerprint import ModelFingerprint

    current = fingerprint.to_json()
    stale = {}
    for name, entry in (report.get("targets") or {}).items():
        if name not in targets or not entry.get("files"):
            continue
        old = entry.get("model_fingerprint")
        if not old:
            stale[name] = "no model fingerprint recorded: it cannot say which model it was built from"
            continue
        differs = ModelFingerprint.differences(old, current)
        if differs:
            stale[name] = f"built from model {old['digest'][:12]}, the model is now {current['digest'][:12]} ({' and '.join(differs)} differ)"
    return stale


def _validate_locked(ctx: RunContext, config: ModelConfig, checks: list | None) -> int:
    from pipeline.cache import checked
    from pipeline.publication import stale_targets
    from targets import REGISTRY

    report = read_report(ctx.model_dir)
    if report is None:
        raise IntegrityError(
            f"{ctx.model_dir / 'report.json'} is not a tfship report (not JSON, or not its format); "
            f"run `tfship export --model {config.name} --force` to rebuild and rewrite it"
        )
    # A kill between publishing a target and recording it: name exactly which target.
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
    configured = {t.name for t in config.targets}
    stale = stale_against(report, prep.fingerprint, configured)
    for name, why in stale.items():
        log(config.name, f"{name}: stale: {why}; run `tfship export` to rebuild it")
        if checks is not None:
            checks.append({"target": name, "passed": False, "stale": True, "failures": [f"stale: {why}"], "max_abs": None})
        code = 1
    for record in iter_records(report):
        name = record.target
        if not checked(record.target_entry) or name not in REGISTRY or name not in configured or not record.has_artifact:
            continue
        if name in stale or record.entry.get("status") not in ("passed", "failed"):
            continue  # a verdict about another model, or nothing published (an errored or skipped variant)
        art = record.entry["artifact"]
        artifact = Artifact(variant=art["variant"], files=tuple(art["files"]), tolerance=Tolerance(**art["tolerance"]), info=record.entry.get("info", {}))
        parity = check_parity(ctx, prep, REGISTRY.get(name), config.target(name), ctx.model_dir / name, artifact)
        log(config.name, f"{record.label}: parity {'passed' if parity['passed'] else 'FAILED: ' + '; '.join(parity['failures'])}")
        if checks is not None:
            worst = max((m.get("max_abs") or 0.0 for m in parity["outputs"].values()), default=None)
            checks.append({"target": record.label, "passed": parity["passed"], "failures": parity["failures"], "max_abs": worst})
        if not parity["passed"]:
            code = 1
    return code
