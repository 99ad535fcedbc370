"""The plan as data: configs + the stage cache -> which (model, target) jobs build and why.

`export` runs the plan, `export --dry-run` prints it, and `matrix` lists its jobs for a
CI fan-out. Making a plan never imports TensorFlow and writes nothing.

Reasons a target builds: `forced` (--force), `repair` (a repair search was asked for),
`new` (no entry in the report), `model not built yet` (no cache key: the model file a
`build:` function writes does not exist yet), `changed: <what>` (the key differs: model
config, target options, data, tool versions or the code that shapes the artifact), `last run errored`,
`files changed` (an artifact on disk no longer matches its recorded sha256), `no cache`
(planned without an artifacts folder). A target that does not build is `up to date`, or
`verify` when its entry holds by the key but the model (a factory's, a live one) or its
data (a generator's) is user code's product: the run builds the model, fingerprints it,
and reuses the target only when the fingerprints equal the ones it was built from.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.cache import checked, key_of, key_parts, needs_fingerprint, reusable
from pipeline.reports.model import read_report
from pipeline.spec import ModelConfig

BUILD, REUSE, VERIFY = "build", "reuse", "verify"


@dataclass(frozen=True)
class Job:
    """One (model, target) unit of work."""

    model: str
    target: str
    action: str  # build | reuse | verify
    reason: str
    key: str | None  # the stage cache key (None: cannot be computed yet)
    expected: dict | None = None  # verify: {"model": digest, "data": digest} the target was built from


@dataclass(frozen=True)
class ModelPlan:
    config: ModelConfig
    jobs: tuple[Job, ...]  # the selected targets, in config order
    still_valid: frozenset[str]  # every configured target whose recorded entry still holds
    previous: dict  # the report as it was when the plan was made ({} when none)

    @property
    def to_build(self) -> list[str]:
        return [j.target for j in self.jobs if j.action == BUILD]

    @property
    def to_reuse(self) -> list[str]:
        return [j.target for j in self.jobs if j.action == REUSE]

    @property
    def to_verify(self) -> dict[str, dict]:
        """{target: the fingerprints it was built from} for targets reused only if they still hold."""
        return {j.target: j.expected for j in self.jobs if j.action == VERIFY}


@dataclass(frozen=True)
class Plan:
    models: tuple[ModelPlan, ...]

    @property
    def jobs(self) -> list[Job]:
        return [j for m in self.models for j in m.jobs]

    def lines(self) -> list[str]:
        rows = [f"{'model':12} {'target':12} {'action':7} {'key':12}  reason"]
        for j in self.jobs:
            rows.append(f"{j.model:12} {j.target:12} {j.action:7} {(j.key or '-')[:12]:12}  {j.reason}")
        return rows


def _why_not_reusable(entry: dict | None, key: str | None, parts: dict | None) -> str:
    if not entry:
        return "new"
    if key is None:
        return "model not built yet"
    if entry.get("cache_key") != key:
        old = entry.get("cache_key_parts") or {}
        differs = [name for name, value in (parts or {}).items() if old.get(name) != value]
        return f"changed: {', '.join(differs)}" if old and differs else "changed"
    if not checked(entry):
        return "last run errored"
    return "files changed"


def _verification(config: ModelConfig, entry: dict) -> tuple[str, dict] | None:
    """(reason, expected fingerprints) when a reusable entry must be checked against the model."""
    why = needs_fingerprint(config, entry)
    if not why:
        return None
    return "; ".join(why) + ": built and fingerprinted before reuse", {
        "model": entry.get("model_fingerprint"),
        "data": entry.get("data_fingerprint"),
    }


def make_plan(
    configs: list[ModelConfig],
    only: list[str] | None,
    artifacts_root: Path | None,
    versions: dict[str, str],
    force: bool = False,
    repair: dict[str, list[str]] | None = None,
) -> Plan:
    """Decide every selected (model, target): build or reuse, with the reason and the key.

    `artifacts_root=None` plans without a cache: every selected target builds."""
    models = []
    for config in configs:
        chosen = [t for t in config.targets if only is None or t.name in only]
        if not chosen:
            continue
        model_dir = artifacts_root / config.name if artifacts_root is not None else None
        previous = (read_report(model_dir) or {}) if model_dir is not None else {}
        entries = previous.get("targets") or {}
        parts = {t.name: key_parts(config, t, versions) for t in config.targets}
        keys = {t.name: key_of(t.name, parts[t.name]) for t in config.targets}
        valid = frozenset(
            t.name for t in config.targets if model_dir is not None and reusable(entries.get(t.name), keys[t.name], model_dir)
        )
        jobs = []
        for t in chosen:
            if model_dir is None:
                action, reason = BUILD, "no cache"
            elif force:
                action, reason = BUILD, "forced"
            elif t.name in (repair or {}):
                action, reason = BUILD, "repair"
            elif t.name in valid:
                check = _verification(config, entries[t.name])
                if check is None:
                    action, reason = REUSE, "up to date"
                elif check[1]["model"] is None or check[1]["data"] is None:
                    action, reason = BUILD, "no fingerprint recorded for the model it was built from"
                else:
                    action, reason = VERIFY, check[0]
                    jobs.append(Job(config.name, t.name, action, reason, keys[t.name], check[1]))
                    continue
            else:
                action, reason = BUILD, _why_not_reusable(entries.get(t.name), keys[t.name], parts[t.name])
            jobs.append(Job(config.name, t.name, action, reason, keys[t.name]))
        models.append(ModelPlan(config, tuple(jobs), valid, previous))
    return Plan(tuple(models))
