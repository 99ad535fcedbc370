"""The parent half of a run: decide what must be rebuilt (no TensorFlow needed), run
the workers, merge their entries into each model's report."""
from __future__ import annotations

import sys
from pathlib import Path

from pipeline.execute.console import log
from pipeline.reports.model import merge_report, now, read_report
from pipeline.spec import ModelConfig


def export(configs: list[ModelConfig], only: list[str] | None, artifacts_root: Path, jobs: int = 1, force: bool = False, repair: dict[str, list[str]] | None = None, strict: bool = False) -> int:
    """Parent side: decide what must be rebuilt (no TensorFlow needed), run workers, write reports.

    `repair` ({target: [variant]}, from `tfship repair`) rebuilds those targets with a repair
    search on the named variants; their entries get no cache key (the config alone would
    not rebuild the repaired variant). `strict` fails a passed artifact whose budget the
    tolerance audit found loose."""
    from pipeline.audit import apply_strict
    from pipeline.cache import reusable, source_digest, target_key
    from pipeline.execute.workers import ModelJob, run_jobs
    from pipeline.reports.model import tool_versions

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
