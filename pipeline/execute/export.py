"""The parent half of a run: decide what must be rebuilt (no TensorFlow needed), run
the workers, merge their entries into each model's report."""
from __future__ import annotations

from pathlib import Path

from pipeline import progress
from pipeline.execute.console import log
from pipeline.reports.model import merge_report, now, read_report
from pipeline.spec import ModelConfig


def export(
    configs: list[ModelConfig], only: list[str] | None, artifacts_root: Path, jobs: int = 1, force: bool = False,
    repair: dict[str, list[str]] | None = None, in_process: bool = False,
) -> int:
    """Parent side: decide what must be rebuilt (no TensorFlow needed), run workers, write reports.

    `repair` ({target: [variant]}, from `tfship repair`) rebuilds those targets with a repair
    search on the named variants; their entries get no cache key (the config alone would
    not rebuild the repaired variant). `in_process` runs the workers' half here instead
    (a live model exists only in this process)."""
    from pipeline.cache import checked, source_digest
    from pipeline.config import require_selected
    from pipeline.execute.workers import ModelJob, run_jobs
    from pipeline.plan import make_plan
    from pipeline.reports.model import tool_versions
    from pipeline.stages.data import make_parity_data

    require_selected(configs, only)  # what the selected targets need: checked before anything runs
    for config in configs:
        if config.data.kind == "npz":
            make_parity_data(config)  # NumPy only: bad data is a config error before anything is written
    started = now()
    plan = make_plan(configs, only, artifacts_root, tool_versions(), force=force, repair=repair)
    jobs_to_run, reused, codes = [], {}, []
    for model in plan.models:
        config = model.config
        model_dir = artifacts_root / config.name
        entries = model.previous.get("targets") or {}
        kept = {name: dict(entries[name], rebuilt=False) for name in model.to_reuse}
        keys = {j.target: j.key for j in model.jobs}
        reused[config.name] = (kept, keys, model.still_valid)
        for name, entry in kept.items():
            log(config.name, f"{name}: up to date ({entry['status']}), reused")
        if model.to_build:
            jobs_to_run.append(ModelJob(config.file, config.name, model.to_build, model_dir / ".logs" / "worker.log", repair=dict(repair or {})))
        elif kept:
            # Nothing ran: what the last run learned about the model still describes these artifacts.
            model_facts = dict(model.previous.get("run", {}).get("model", {}), source_sha256=source_digest(config))
            run = {"started": started, "finished": now(), "targets": list(kept), "rebuilt": [], "reused": list(kept), "model": model_facts}
            merge_report(model_dir, config.name, config.sha256, str(config.file), run, kept, model.still_valid)
            codes.append(exit_code_for(kept))
    if not jobs_to_run:
        log("tfship", "nothing changed: every selected target is up to date")
        return max(codes, default=0) if 2 not in codes else 2
    by_name = {c.name: c for c in configs}

    def on_model_done(job: ModelJob) -> None:
        config = by_name[job.model]
        kept, keys, still_valid = reused[job.model]
        entries = dict(kept)
        for name, entry in job.entries.items():
            entry["rebuilt"] = True
            entry["cache_key"] = keys.get(name) if checked(entry) and name not in (repair or {}) else None
            entries[name] = entry
        run = {"started": started, "finished": now(), "targets": list(entries), "rebuilt": list(job.entries), "reused": list(kept), **job.run}
        run.setdefault("model", {})["source_sha256"] = source_digest(config)  # after the worker built any missing model
        merge_report(artifacts_root / job.model, config.name, config.sha256, str(config.file), run, entries, still_valid)
        codes.append(exit_code_for(entries))

    def echo(line: str) -> None:
        progress.note_line(line)

    for job in jobs_to_run:
        (artifacts_root / job.model).mkdir(parents=True, exist_ok=True)
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        job.log_path.write_text("")
    if in_process:
        from pipeline.execute.inprocess import run_jobs_in_process

        run_jobs_in_process(jobs_to_run, artifacts_root, echo, on_model_done, by_name)
    else:
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
