"""Worker processes: conversions and parity run outside the CLI process.

A worker is spawned, not forked: TensorFlow is not fork-safe. One worker serves one
model, so TensorFlow's import and the shared stages (load, trace, SavedModel,
reference) are paid once per model, not per target. When a worker dies (segfault,
abort, out of memory), the target it was building becomes an `error` with the
signal and the tail of the worker's stderr, and a fresh worker takes the model's
remaining targets.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

STDERR_TAIL_LINES = 20


def _die_with_parent() -> None:
    """A worker must not outlive a killed parent: it would publish into a folder whose
    lock is free again, under a run that is no longer there (Linux: PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_main(config_file: str, targets: list[str], artifacts_root: str, log_path: str, sys_path: list[str], conn, parent_pid: int = 0, repair: dict | None = None) -> None:
    """Entry point of a spawned worker: build `targets` of one model, sending each entry."""
    _die_with_parent()
    if parent_pid and os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    log = open(log_path, "a", buffering=1)
    os.dup2(log.fileno(), 2)  # C++ libraries write to fd 2 directly; keep it for the crash report
    sys.stderr = log
    sys.path[:0] = [p for p in sys_path if p not in sys.path]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pipeline import progress
    from pipeline.config import load_config
    from pipeline.execute.build import run_targets
    from targets import REGISTRY

    progress.set_sink(lambda event: conn.send(("progress", "", event)))
    config = load_config(Path(config_file), REGISTRY)

    def on_event(kind: str, name: str, payload: dict) -> None:
        conn.send((kind, name, payload))

    run_targets(config, targets, Path(artifacts_root), on_event, repair)
    conn.send(("done", "", {}))
    conn.close()


@contextlib.contextmanager
def _caller_script_hidden():
    """Spawn re-runs the parent's `__main__` script in the child unless it has no path;
    a worker needs nothing from it, and a script that calls the Python API at top
    level (no `if __name__ == "__main__":` guard) would export again inside its worker."""
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if hasattr(main, k)}
    for key in saved:
        setattr(main, key, None) if key == "__spec__" else delattr(main, key)
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(main, key, value)


@dataclass
class ModelJob:
    config_file: Path
    model: str
    targets: list[str]
    log_path: Path
    repair: dict[str, list[str]] = field(default_factory=dict)  # {target: [variant]} to repair when they fail
    entries: dict[str, dict] = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    bad_input: dict | None = None  # the model itself is bad input: nothing may be recorded


def _signal_name(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    interesting = [line for line in text if line.strip()]
    return "\n".join(interesting[-lines:])


class _Running:
    def __init__(self, job: ModelJob, remaining: list[str], artifacts_root: Path, ctx, on_target=None):
        self.job = job
        self.on_target = on_target or (lambda job, name, entry: None)
        self.remaining = list(remaining)
        parent, child = ctx.Pipe(duplex=False)
        self.conn = parent
        self.log_offset = job.log_path.stat().st_size if job.log_path.exists() else 0
        self.process = ctx.Process(
            target=_worker_main,
            args=(str(job.config_file), self.remaining, str(artifacts_root), str(job.log_path), list(sys.path), child, os.getpid(), job.repair),
            daemon=True,
        )
        with _caller_script_hidden():
            self.process.start()
        child.close()
        self.done = False

    def drain(self, echo) -> None:
        try:
            while self.conn.poll():
                kind, name, payload = self.conn.recv()
                if kind == "target":
                    self.job.entries[name] = payload
                    if name in self.remaining:
                        self.remaining.remove(name)
                    self.on_target(self.job, name, payload)
                elif kind == "run":
                    self.job.run.update(payload)
                elif kind == "model_error":
                    for target in self.remaining:
                        self.job.entries[target] = dict(payload)
                        self.on_target(self.job, target, dict(payload))
                    self.remaining = []
                elif kind == "bad_input":
                    self.job.bad_input = payload
                    self.remaining = []
                elif kind == "log":
                    echo(payload["line"])
                elif kind == "progress":
                    from pipeline import progress

                    progress.emit(payload)
                elif kind == "done":
                    self.done = True
        except (EOFError, OSError):
            pass


def run_jobs(jobs: list[ModelJob], artifacts_root: Path, max_workers: int, echo, on_model_done, on_target=None) -> None:
    """Run model jobs in at most `max_workers` spawned workers, respawning after a crash.

    `on_target(job, name, entry)` is called as each target's entry arrives (to publish it at
    once); `on_model_done(job)` when a model has no target left."""
    ctx = mp.get_context("spawn")
    queue = [(job, list(job.targets)) for job in jobs]
    running: list[_Running] = []
    while queue or running:
        while queue and len(running) < max(1, max_workers):
            job, remaining = queue.pop(0)
            job.log_path.parent.mkdir(parents=True, exist_ok=True)
            running.append(_Running(job, remaining, artifacts_root, ctx, on_target))
        time.sleep(0.05)
        for worker in list(running):
            worker.drain(echo)
            if worker.process.is_alive() and not worker.done:
                continue
            worker.process.join(timeout=30)
            worker.drain(echo)
            running.remove(worker)
            if worker.remaining and not worker.done:
                crashed = worker.remaining.pop(0)
                tail = _tail(worker.job.log_path)
                cause = _signal_name(worker.process.exitcode)
                worker.job.entries[crashed] = {
                    "status": "error",
                    "error": "WorkerDied",
                    "exit_code": 1,
                    "message": f"the worker building '{crashed}' died ({cause}); last lines of its stderr:\n{tail}",
                    "signal": cause,
                }
                if on_target is not None:
                    on_target(worker.job, crashed, dict(worker.job.entries[crashed]))
                echo(f"[{worker.job.model}] {crashed}: error: worker died ({cause})")
                if worker.remaining:
                    queue.insert(0, (worker.job, worker.remaining))
                    continue
            if not any(r.job is worker.job for r in running) and not any(j is worker.job for j, _ in queue):
                on_model_done(worker.job)
