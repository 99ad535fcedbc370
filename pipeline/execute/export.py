"""The parent half of a run: decide what must be rebuilt (no TensorFlow needed), run
the workers, publish each finished target with its report record, under one lock per model.

Bad input found by a worker (exit 2) and a full disk are printed, never recorded: the
previous artifacts and their report entries stay as they were.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from pipeline import progress
from pipeline.errors import ModelError
from pipeline.execute.console import log
from pipeline.reports.model import merge_report, now, read_report
from pipeline.spec import ModelConfig


def export(
    configs: list[ModelConfig], only: list[str] | None, artifacts_root: Path, jobs: int = 1, force: bool = False,
    repair: dict[str, list[str]] | None = None, in_process: bool = False, strict: bool = False,
) -> int:
    """Parent side: decide what must be rebuilt (no TensorFlow needed), run workers, publish.

    `repair` ({target: [variant]}, from `tfship repair`) rebuilds those targets with a repair
    search on the named variants; their entries get no cache key (the config alone would
    not rebuild the repaired variant). `in_process` runs the workers' half here instead
    (a live model exists only in this process). `strict` fails a passed artifact whose
    budget the tolerance audit found loose."""
    from pipeline.config import require_selected
    from pipeline.errors import ConfigError, Problem
    from pipeline.publication import ModelLock, check_writable, reconcile
    from pipeline.reports.model import tool_versions
    from pipeline.stages.data import check_pool_memory, make_parity_data
    from pipeline.stages.load import check_model_file

    require_selected(configs, only)  # what the selected targets need: checked before anything runs
    for config in configs:
        check_model_file(config)  # a hostile .keras or .h5 is refused before a worker starts
        if config.data.kind == "npz":
            make_parity_data(config)  # NumPy only: bad data is a config error before anything is written
        else:
            check_pool_memory(config)
    selected = [c for c in configs if any(only is None or t.name in only for t in c.targets)]
    if not selected:
        log("tfship", "nothing to do: no selected model configures the selected targets")
        return 0
    unwritable = check_writable(artifacts_root)
    if unwritable:
        raise ConfigError([Problem("", None, "--artifacts", f"{unwritable}; expected a folder tfship can write in. Fix: make it writable, or pass --artifacts <another folder>")])
    versions = tool_versions()
    root_existed = artifacts_root.exists()
    codes: list[int] = []
    refusals: list[str] = []  # bad input found by the workers, raised once everything else is done
    with contextlib.ExitStack() as locks:
        for config in sorted(selected, key=lambda c: c.name):  # one order for everyone: no deadlock between runs
            locks.enter_context(ModelLock(artifacts_root, config.name, echo=lambda line: print(line, file=sys.stderr, flush=True)))
        existed = {c.name: (artifacts_root / c.name).exists() for c in selected}
        for config in selected:
            for done in reconcile(artifacts_root / config.name, {t.name for t in config.targets}):
                log(config.name, f"recovered from an interrupted run: {done}")
        _export_locked(selected, only, artifacts_root, jobs, force, repair or {}, versions, codes, existed, in_process, refusals, strict)
    if not root_existed and artifacts_root.is_dir() and not any(artifacts_root.iterdir()):
        artifacts_root.rmdir()  # bad input: leave no trace, not even the folder
    if refusals:
        raise ModelError("\nerror: ".join(refusals))
    return max(codes, default=0) if 2 not in codes else 2


def _export_locked(
    configs, only, artifacts_root: Path, jobs: int, force: bool, repair: dict, versions: dict, codes: list[int], existed: dict, in_process: bool, refusals: list[str],
    strict: bool = False,
) -> None:
    """Everything that reads or writes the models' folders: runs under their locks."""
    from pipeline.audit import apply_strict
    from pipeline.cache import checked, key_parts, source_digest
    from pipeline.execute.admission import target_factors, weight_bytes_of_source
    from pipeline.stages.data import pool_bytes
    from pipeline.execute.workers import ModelJob, run_jobs
    from pipeline.plan import make_plan
    from pipeline.publication import publish_target, read_record
    from pipeline.usercode import config_where

    started = now()
    plan = make_plan(configs, only, artifacts_root, versions, force=force, repair=repair)
    jobs_to_run, reused = [], {}
    for model in plan.models:
        config = model.config
        model_dir = artifacts_root / config.name
        entries = model.previous.get("targets") or {}
        kept = {name: dict(entries[name], rebuilt=False) for name in model.to_reuse}
        keys = {j.target: j.key for j in model.jobs}
        reused[config.name] = (kept, keys, model.still_valid)
        for name, entry in kept.items():
            log(config.name, f"{name}: up to date ({entry['status']}), reused")
        for job in model.jobs:
            if job.action == "verify":
                log(config.name, f"{job.target}: checking the model's fingerprint ({job.reason})")
        if model.to_build or model.to_verify:
            # The worker's stderr goes to a temp file: bad input must leave nothing in the artifacts.
            fd, log_path = tempfile.mkstemp(prefix=f"tfship-{config.name}-worker-", suffix=".log")
            os.close(fd)
            weights = weight_bytes_of_source(config.source.path)
            jobs_to_run.append(ModelJob(
                config.file, config.name, [j.target for j in model.jobs if j.action != "reuse"], Path(log_path), repair=dict(repair),
                weight_bytes=weights, pool_bytes=pool_bytes(config), factors=target_factors(config, weights), verify=model.to_verify,
            ))
        elif kept:
            # Nothing ran: what the last run learned about the model still describes these artifacts.
            model_facts = dict(model.previous.get("run", {}).get("model", {}), source_sha256=source_digest(config))
            run = {"started": started, "finished": now(), "state": "finished", "targets": list(kept), "rebuilt": [], "reused": list(kept), "model": model_facts}
            merge_report(model_dir, config.name, config.sha256, str(config.file), run, apply_strict(kept) if strict else kept, model.still_valid)
            codes.append(exit_code_for(kept))
    if not jobs_to_run:
        log("tfship", "nothing changed: every selected target is up to date")
        return
    by_name = {c.name: c for c in configs}
    previous = {m.config.name: m.previous for m in plan.models}
    recorded: dict[str, dict[str, dict]] = {job.model: {} for job in jobs_to_run}
    verified: dict[str, list[str]] = {job.model: [] for job in jobs_to_run}
    refused: dict[str, dict[str, dict]] = {job.model: {} for job in jobs_to_run}

    def run_so_far(job: ModelJob, state: str) -> dict:
        kept = reused[job.model][0]
        done = recorded[job.model]
        run = {"started": started, "finished": now() if state == "finished" else None, "state": state,
               "targets": list({**kept, **done}), "rebuilt": list(done), "reused": list(kept), **job.run}
        if "model" not in job.run:  # every target held: the last run's facts still describe the model
            run["model"] = dict(previous[job.model].get("run", {}).get("model", {}))
        run["model"]["source_sha256"] = source_digest(by_name[job.model])  # after the worker built any missing model
        return run

    def on_unchanged(job: ModelJob, name: str, fingerprints: dict) -> None:
        """A target to verify still holds: the model built now has the fingerprints it was built from."""
        kept = reused[job.model][0]
        entry = (previous[job.model].get("targets") or {})[name]
        kept[name] = dict(entry, rebuilt=False)
        verified[job.model].append(name)
        log(job.model, f"{name}: up to date ({entry['status']}), reused: the model's fingerprint {fingerprints['model_fingerprint']['digest'][:12]} is the one it was built from")

    def on_target(job: ModelJob, name: str, entry: dict) -> None:
        """Publish one finished target and record it at once: a kill after this loses nothing."""
        config = by_name[job.model]
        kept, keys, still_valid = reused[job.model]
        model_dir = artifacts_root / job.model
        entry = dict(entry, rebuilt=True)
        staged = entry.pop("staged", None)
        if staged is None and entry.get("status") == "error" and (entry.get("exit_code") == 2 or entry.get("error") == "DiskFull"):
            # Bad input, or a full disk (which says nothing about the model): reported, never
            # recorded; the previous artifacts and their record stay as they were.
            refused[job.model][name] = entry
            return
        entry["cache_key"] = keys.get(name) if checked(entry) and name not in repair else None
        entry["cache_key_parts"] = key_parts(config, config.target(name), versions) if entry["cache_key"] else None
        entry["source_sha256"] = source_digest(config)  # what the next run and a release compare the model file with
        if strict:
            entry = apply_strict({name: entry})[name]
        if staged:
            entry = publish_target(Path(staged), model_dir / name, entry)
        else:
            record = read_record(model_dir / name)
            if record is not None:  # the previous export's folder stays: say which one it is
                entry["kept_publication"] = record.get("publication")
        recorded[job.model][name] = entry
        merge_report(model_dir, config.name, config.sha256, str(config.file), run_so_far(job, "running"), {**kept, **recorded[job.model]}, still_valid)

    def on_model_done(job: ModelJob) -> None:
        config = by_name[job.model]
        kept, _, still_valid = reused[job.model]
        model_dir = artifacts_root / job.model
        if job.bad_input:
            refusals.append(job.bad_input["message"])
        for name, e in refused[job.model].items():
            if e.get("exit_code") == 2:
                refusals.append(f"{config_where(config, ('targets', _target_index(config, name)))}: {name}: {e['message']}")
            else:  # a full disk
                print(f"error: {name}: {e['message']}", file=sys.stderr, flush=True)
        if recorded[job.model]:
            merge_report(model_dir, config.name, config.sha256, str(config.file), run_so_far(job, "finished"), {**kept, **recorded[job.model]}, still_valid)
            _keep_log(job.log_path, model_dir / ".logs" / "worker.log")
        elif verified[job.model]:  # nothing rebuilt: the checked targets stand as they were
            merge_report(model_dir, config.name, config.sha256, str(config.file), run_so_far(job, "finished"), apply_strict(kept) if strict else kept, still_valid)
            job.log_path.unlink(missing_ok=True)
        else:
            job.log_path.unlink(missing_ok=True)
            if not existed[job.model]:
                _remove_empty_tree(model_dir)
        codes.append(exit_code_for({**kept, **recorded[job.model], **refused[job.model]}) if not job.bad_input else 2)

    def echo(line: str) -> None:
        progress.note_line(line)

    try:
        if in_process:
            from pipeline.execute.inprocess import run_jobs_in_process

            run_jobs_in_process(jobs_to_run, artifacts_root, echo, on_model_done, by_name, on_target=on_target, on_unchanged=on_unchanged)
        else:
            run_jobs(jobs_to_run, artifacts_root, jobs, echo, on_model_done, on_target=on_target, on_unchanged=on_unchanged)
    finally:
        for job in jobs_to_run:
            job.log_path.unlink(missing_ok=True)
            for worker_log in job.log_path.parent.glob(job.log_path.name + ".*"):  # workers' own stderr files
                worker_log.unlink(missing_ok=True)
    if not any(recorded.values()) and not any(refused.values()) and not any(job.bad_input for job in jobs_to_run):
        log("tfship", "nothing changed: every selected target is up to date (the models were built again and their fingerprints hold)")


def _target_index(config: ModelConfig, name: str) -> int:
    return next(i for i, t in enumerate(config.targets) if t.name == name)


def _keep_log(temp_log: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(temp_log, dest)
    temp_log.unlink(missing_ok=True)


def _remove_empty_tree(folder: Path) -> None:
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()


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
