"""Is what `artifacts/<model>/` holds built from the model there is now?

`release` asks before it bundles anything (`validate` answers the same question from
the model it loads for parity): a target built from another model is stale, whatever
its verdict said. A self-contained model file is answered from its bytes and the user
modules its load ran (no TensorFlow); a factory's model, or a file whose layers come
from code tfship cannot hash, is built and traced in this process and fingerprinted.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.spec import ModelConfig


def stale_targets(config: ModelConfig, report: dict) -> dict[str, str]:
    """{target: why} for every recorded target with files that another model built."""
    from pipeline.cache import changed_dependencies, source_digest

    entries = {n: e for n, e in (report.get("targets") or {}).items() if e.get("files")}
    if not entries:
        return {}
    stale: dict[str, str] = {}
    current = source_digest(config)
    by_fingerprint = []
    for name, entry in entries.items():
        if config.source.kind != "factory" and entry.get("source_sha256") not in (None, current):
            stale[name] = f"the model file {config.source.path} changed since it was built"
            continue
        changed = changed_dependencies(entry)
        if changed:
            stale[name] = "user code the model's load imports changed since it was built: " + ", ".join(changed)
        elif config.source.kind == "factory" or entry.get("source_dependencies") is None or entry.get("source_sha256") is None:
            by_fingerprint.append(name)
    if by_fingerprint:
        from pipeline.execute.validate import stale_against

        stale.update(stale_against({"targets": {n: entries[n] for n in by_fingerprint}}, current_fingerprint(config), set(by_fingerprint)))
    return stale


def current_fingerprint(config: ModelConfig):
    """Load and trace the model in this process; its fingerprint."""
    from pipeline.stages.fingerprint import fingerprint_model
    from pipeline.stages.load import load_model
    from pipeline.stages.trace import trace_model

    return fingerprint_model(trace_model(config, load_model(config)))


def refuse_stale(configs: list[ModelConfig], artifacts: Path) -> None:
    """ReleaseRefused (exit 1) naming every stale target of every model."""
    from pipeline.release import ReleaseRefused
    from pipeline.reports.model import read_report

    lines = []
    for config in configs:
        for name, why in stale_targets(config, read_report(artifacts / config.name) or {}).items():
            lines.append(f"{config.name}/{name}: stale: {why}")
    if lines:
        raise ReleaseRefused(
            "release refused: artifacts built from a model that is not the current one would ship under their old verdicts:\n  "
            + "\n  ".join(lines)
            + "\nFix: run `tfship export` for these models (it rebuilds stale targets), then release again."
        )
