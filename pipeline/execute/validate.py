"""`validate`: re-check exported artifacts on disk (hashes, then parity) without re-exporting."""
from __future__ import annotations

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
    """Re-check artifacts on disk: hashes first, then parity, without re-exporting.
    Each parity check is appended to `checks` when given ({target, passed, failures, max_abs})."""
    from pipeline.cache import checked
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
    configured = {t.name for t in config.targets}
    for record in iter_records(report):
        name = record.target
        if not checked(record.target_entry) or name not in REGISTRY or name not in configured or not record.has_artifact:
            continue
        if record.entry.get("status") not in ("passed", "failed"):
            continue  # nothing was published for an errored or skipped variant
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
