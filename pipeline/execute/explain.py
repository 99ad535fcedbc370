"""Explain artifacts on disk: localize, layer by layer, where each exported artifact
diverges from the eager model, whether its parity passed or not.

Files are checked against the report first (as `validate` does); the per-layer
table goes to the console and into report.json / report.md beside the verdict,
which it never changes.
"""
from __future__ import annotations

import sys
from pathlib import Path

from pipeline.errors import ConfigError, IntegrityError, Problem


def _table(loc: dict) -> list[str]:
    lines = [f"    {'#':>3}  {'layer':24} {'max_abs':>10} {'rel.range':>10} {'cosine':>10} {'SQNR dB':>8}  over"]
    for row in loc.get("layers", []):
        sqnr = row.get("sqnr_db")
        sqnr_text = f"{sqnr:8.1f}" if isinstance(sqnr, (int, float)) else f"{str(sqnr):>8}"
        cosine = row.get("cosine")
        lines.append(
            f"    {row['index']:>3}  {row['layer'][:24]:24} {row['max_abs']:10.3g} {row['rel_error']:10.3g} "
            f"{(cosine if cosine is not None else float('nan')):10.6f} {sqnr_text}  {'YES' if row['over_budget'] else 'no'}"
        )
    return lines


def explain_model(config, artifacts_root: Path, only: list[str] | None) -> int:
    from pipeline.execute.build import RunContext, check_parity, localize, prepare
    from pipeline.publication import check_model_tree
    from pipeline.reports.model import read_report, verify_files, write_report
    from pipeline.target import Artifact
    from pipeline.tolerance import Tolerance
    from targets import REGISTRY

    check_model_tree(artifacts_root, config.name)
    ctx = RunContext(config, artifacts_root)
    report = read_report(ctx.model_dir)
    if report is None:
        raise ConfigError([Problem(str(config.file), None, "", f"no report at {ctx.model_dir / 'report.json'}: run `tfship export --model {config.name}` first")])
    unknown = [t for t in (only or []) if t not in report.get("targets", {})]
    if unknown:
        raise ConfigError([Problem("", None, "--target", f"model '{config.name}' has no exported target {', '.join(unknown)}; exported: {', '.join(sorted(report.get('targets', {})))}")])
    changed = verify_files(ctx.model_dir, report)
    if changed:
        raise IntegrityError(f"{config.name}: {len(changed)} file(s) differ from report.json: " + "; ".join(changed))
    prep = prepare(ctx)
    explained = 0
    for name, entry in sorted(report.get("targets", {}).items()):
        if (only and name not in only) or entry.get("status") not in ("passed", "failed") or name not in REGISTRY:
            continue
        target = REGISTRY.get(name)
        try:
            target_cfg = config.target(name)
        except KeyError:
            continue
        records = entry.get("variants") or {"": entry}
        for variant, record in records.items():
            if record.get("status") not in ("passed", "failed"):
                continue
            art = record["artifact"]
            artifact = Artifact(variant=art["variant"], files=tuple(art["files"]), tolerance=Tolerance(**art["tolerance"]), info=record.get("info", {}))
            parity = check_parity(ctx, prep, target, target_cfg, ctx.model_dir / name, artifact)
            loc = localize(ctx, prep, target, target_cfg, ctx.model_dir / name, artifact, parity)
            if loc is None:
                continue
            record["localization"] = loc.to_json()
            verdict = "passed" if parity["passed"] else "FAILED"
            print(f"[{config.name}] {loc.summary()} (parity {verdict})")
            print("\n".join(_table(record["localization"])))
            explained += 1
    write_report(ctx.model_dir, report)
    if not explained:
        print(f"[{config.name}] nothing to explain: no exported artifact with a parity record", file=sys.stderr)
    return 0
