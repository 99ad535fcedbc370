"""Running model jobs in this process instead of spawned workers.

A notebook's live model exists only here, so `export(..., isolate=False)` runs the
worker's half of a run (shared stages once, then each target) in the calling
process, with the same events the workers send: entries, run facts, logs and
progress. One target failing still never stops the others; what a crash in native
code would take down is this process (use isolate=True for crash isolation).
"""
from __future__ import annotations

from pathlib import Path


def run_jobs_in_process(jobs, artifacts_root: Path, echo, on_model_done, configs: dict, on_target=None, on_unchanged=None) -> None:
    """Same contract as `workers.run_jobs`; `configs` maps model name -> ModelConfig."""
    on_target = on_target or (lambda job, name, entry: None)
    on_unchanged = on_unchanged or (lambda job, name, payload: None)
    from pipeline import progress
    from pipeline.execute.build import run_targets
    from pipeline.execute.console import set_log_sink

    for job in jobs:
        remaining = list(job.targets)

        def on_event(kind: str, name: str, payload: dict, job=job, remaining=remaining) -> None:
            if kind == "target":
                job.entries[name] = payload
                if name in remaining:
                    remaining.remove(name)
                on_target(job, name, payload)
            elif kind == "unchanged":
                if name in remaining:
                    remaining.remove(name)
                on_unchanged(job, name, payload)
            elif kind == "run":
                job.run.update(payload)
            elif kind == "model_error":
                for target in remaining:
                    job.entries[target] = dict(payload)
                    on_target(job, target, dict(payload))
                remaining.clear()
            elif kind == "bad_input":
                job.bad_input = payload
                remaining.clear()
            elif kind == "log":
                echo(payload["line"])
            elif kind == "progress":
                progress.emit(payload)

        try:
            run_targets(configs[job.model], list(job.targets), artifacts_root, on_event, job.repair or None, job.verify or None)
        finally:
            set_log_sink(None)
        on_model_done(job)
