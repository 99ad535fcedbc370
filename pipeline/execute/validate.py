"""`validate`: re-check exported artifacts on disk (hashes, then parity) without re-exporting."""
from __future__ import annotations

from pathlib import Path

from pipeline.errors import IntegrityError
from pipeline.execute.build import RunContext, check_parity, prepare
from pipeline.execute.console import log
from pipeline.reports.model import read_report, variant_label, verify_files
from pipeline.spec import ModelConfig
from pipeline.target import Artifact
from pipeline.tolerance import Tolerance


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
        for key, record in (entry.get("variants") or {}).items():
            if "artifact" not in record:
                continue
            art = record["artifact"]
            artifact = Artifact(variant=art["variant"], files=tuple(art["files"]), tolerance=Tolerance(**art["tolerance"]), info=record.get("info", {}))
            parity = check_parity(ctx, prep, target, target_cfg, ctx.model_dir / name, artifact)
            label = variant_label(name, key, record)
            log(config.name, f"{label}: parity {'passed' if parity['passed'] else 'FAILED: ' + '; '.join(parity['failures'])}")
            if not parity["passed"]:
                code = 1
    return code
