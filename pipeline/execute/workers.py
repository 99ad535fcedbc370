"""Worker processes: conversions and parity run outside the CLI process.

A worker is spawned, not forked: TensorFlow is not fork-safe. With one worker (`-j 1`),
as many models as workers, or one target to build, one worker serves one model: TensorFlow's import and the
shared stages (load, trace, SavedModel, reference) are paid once per model, and its
targets run in turn. With more workers than models, a model with several targets is
split into jobs: one worker runs the shared stages and writes their records to disk
(pipeline.execute.shared), then its targets are balanced over up to `max_workers`
target workers (each loads the model again and reads the data and the reference from
disk); a target whose group does not fit in memory is retried in a worker of its own.

Before a job starts, memory admission control (pipeline.execute.admission) checks
that its estimate fits: it waits while other jobs run, and a job that cannot fit
even alone becomes its targets' error, naming what it needs and what the machine has.

When a worker dies (segfault, abort, out of memory), the target it was building
becomes an `error` with the signal and the tail of its stderr; a fresh worker takes
the model's remaining targets (a dead shared-stages worker is every target's error).
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


def _worker_main(
    config_file: str, targets: list[str], artifacts_root: str, log_path: str, sys_path: list[str], conn, parent_pid: int = 0,
    repair: dict | None = None, kind: str = "model", manifest: str | None = None, verify: dict | None = None,
) -> None:
    """Entry point of a spawned worker: build `targets` of one model, sending each entry.
    `kind`: "model" (shared stages, then every target), "shared" (the shared stages, to
    disk) or "target" (one target, from the shared stages' `manifest`)."""
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

    if kind == "shared":
        from pipeline.execute.shared import run_shared

        run_shared(config, targets, Path(artifacts_root), on_event, verify)
    elif kind == "target":
        from pipeline.execute.shared import run_target

        run_target(config, targets, Path(artifacts_root), Path(manifest), on_event, repair)
    else:
        run_targets(config, targets, Path(artifacts_root), on_event, repair, verify)
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
    weight_bytes: int = 0  # the model's weights as stored (admission estimates; 0 when unknown)
    pool_bytes: int = 0  # the parity pool
    factors: dict[str, float] = field(default_factory=dict)  # admission factors the targets set themselves
    shared: dict | None = None  # {"manifest": path, "weight_bytes": n} once the shared stages are on disk
    verify: dict[str, dict] = field(default_factory=dict)  # {target: recorded fingerprints}: reused when the model still has them


@dataclass
class Unit:
    """One worker's job: a whole model ("model"), its shared stages ("shared") or some of
    its targets from the shared stages on disk ("target")."""

    job: ModelJob
    kind: str
    targets: list[str]

    def estimate(self) -> int | None:
        """Peak memory estimate; None when the shared stages could not size the weights
        (admission then runs this unit alone)."""
        from pipeline.execute.admission import estimate

        shared = self.job.shared or {}
        if "weight_bytes" in shared and shared["weight_bytes"] is None and not self.job.weight_bytes:
            return None
        weights = shared.get("weight_bytes") or self.job.weight_bytes
        if self.kind == "shared":
            return estimate([], weights, self.job.pool_bytes, shared_stages=True)
        return estimate(self.targets, weights, self.job.pool_bytes, shared_stages=self.kind == "model", factors_by_target=self.job.factors)


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
    def __init__(self, unit: Unit, artifacts_root: Path, ctx, on_target=None, on_unchanged=None):
        job = unit.job
        self.unit = unit
        self.job = job
        self.on_target = on_target or (lambda job, name, entry: None)
        self.on_unchanged = on_unchanged or (lambda job, name, payload: None)
        self.remaining = list(unit.targets)
        self.estimate = unit.estimate()
        parent, child = ctx.Pipe(duplex=False)
        self.conn = parent
        # Each worker writes its own stderr file (appended to the model's log when it ends):
        # the tail of a dead worker's stderr is its own, whatever ran beside it.
        self.log_path = job.log_path.with_name(f"{job.log_path.name}.{unit.kind}.{os.getpid()}.{id(self)}")
        self.process = ctx.Process(
            target=_worker_main,
            args=(str(job.config_file), self.remaining, str(artifacts_root), str(self.log_path), list(sys.path), child, os.getpid(), job.repair,
                  unit.kind, (job.shared or {}).get("manifest"), job.verify if unit.kind != "target" else None),
            daemon=True,
        )
        with _caller_script_hidden():
            self.process.start()
        child.close()
        self.done = False

    def close_log(self) -> None:
        """Append this worker's stderr to the model's log."""
        try:
            text = self.log_path.read_bytes()
        except OSError:
            return
        with open(self.job.log_path, "ab") as log:
            log.write(text)
        self.log_path.unlink(missing_ok=True)

    def drain(self, echo) -> None:
        try:
            while self.conn.poll():
                kind, name, payload = self.conn.recv()
                if kind == "target":
                    self.job.entries[name] = payload
                    if name in self.remaining:
                        self.remaining.remove(name)
                    self.on_target(self.job, name, payload)
                elif kind == "unchanged":
                    if name in self.remaining:
                        self.remaining.remove(name)
                    self.on_unchanged(self.job, name, payload)
                elif kind == "run":
                    self.job.run.update(payload)
                elif kind == "shared":
                    self.job.shared = payload
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

                    progress.emit(dict(payload, worker=self.process.pid))
                elif kind == "done":
                    self.done = True
        except (EOFError, OSError):
            pass


def run_jobs(jobs: list[ModelJob], artifacts_root: Path, max_workers: int, echo, on_model_done, on_target=None, on_unchanged=None) -> None:
    """Run model jobs in at most `max_workers` spawned workers, respawning after a crash.

    With fewer models than `max_workers`, a model with several targets runs as a
    shared-stages job, then its targets balanced over the workers. `on_target(job,
    name, entry)` is called as each target's entry arrives (to publish it at once),
    `on_unchanged(job, name, fingerprints)` when a target to verify still holds;
    `on_model_done(job)` when a model has no target left."""
    from pipeline.execute import admission

    ctx = mp.get_context("spawn")
    workers = max(1, max_workers)
    # Models in parallel cost nothing extra; splitting a model costs one model load per
    # extra worker: split only when there are fewer models to build than workers.
    split = len(jobs) < workers
    queue = [Unit(job, "shared" if split and len(job.targets) > 1 else "model", list(job.targets)) for job in jobs]
    running: list[_Running] = []

    def record(job: ModelJob, name: str, entry: dict) -> None:
        job.entries[name] = entry
        if on_target is not None:
            on_target(job, name, dict(entry))

    def finished(job: ModelJob) -> None:
        if any(r.job is job for r in running) or any(u.job is job for u in queue):
            return
        if job.shared:
            _finish_shared(job, artifacts_root)
        on_model_done(job)

    def refuse(unit: Unit, reason: str) -> None:
        for name in unit.targets:
            record(unit.job, name, {"status": "error", "error": "InsufficientMemory", "exit_code": 1, "message": f"{name}: not started: {reason}"})
            echo(f"[{unit.job.model}] {name}: error: not started: {reason}")

    def admit() -> None:
        """Start queued units, in order, while workers are free and memory allows."""
        index = 0
        while index < len(queue) and len(running) < workers:
            unit = queue[index]
            decision = admission.decide(unit.estimate(), [(r.estimate, r.process.pid) for r in running])
            if decision.start:
                queue.pop(index)
                unit.job.log_path.parent.mkdir(parents=True, exist_ok=True)
                running.append(_Running(unit, artifacts_root, ctx, on_target, on_unchanged))
                continue
            if decision.refuse is None:
                index += 1  # wait for memory; a smaller job behind it may fit now
                continue
            queue.pop(index)
            if unit.kind in ("model", "target") and len(unit.targets) > 1:
                # Alone, each target may fit where all of them in turn do not: split it.
                queue[index:index] = [Unit(unit.job, unit.kind, [t]) for t in unit.targets]
                continue
            refuse(unit, decision.refuse)
            finished(unit.job)

    while queue or running:
        admit()
        time.sleep(0.05)
        for worker in list(running):
            worker.drain(echo)
            if worker.process.is_alive() and not worker.done:
                continue
            worker.process.join(timeout=30)
            worker.drain(echo)
            running.remove(worker)
            tail = _tail(worker.log_path)
            worker.close_log()
            job = worker.job
            cause = _signal_name(worker.process.exitcode)
            if worker.unit.kind == "shared":
                if job.shared and worker.remaining:
                    # The shared stages are on disk: the targets over the workers, before other models' jobs.
                    queue[0:0] = [Unit(job, "target", group) for group in balance(worker.remaining, workers)]
                elif worker.remaining:
                    for name in worker.remaining:
                        record(job, name, _died(name, cause, tail, "the shared stages (load, trace, SavedModel, reference) for it"))
                    echo(f"[{job.model}] error: the worker running the shared stages died ({cause})")
                finished(job)
                continue
            if worker.remaining and not worker.done:
                crashed = worker.remaining.pop(0)
                record(job, crashed, _died(crashed, cause, tail, f"'{crashed}'"))
                echo(f"[{job.model}] {crashed}: error: worker died ({cause})")
                if worker.remaining:
                    queue.insert(0, Unit(job, worker.unit.kind, worker.remaining))
                    continue
            finished(job)


# Relative time of each target's build and parity (a 32x32 CNN with six targets here:
# tflite's five variants 24 s, edgetpu 8 s, xla and tpu 4 s, onnx 0.6 s, savedmodel 0.2 s),
# to balance a model's targets over its workers.
TARGET_WORK = {"tflite": 24.0, "edgetpu": 8.0, "xla": 4.0, "tpu": 4.0, "onnx": 1.0, "savedmodel": 0.5}


def balance(targets: list[str], workers: int) -> list[list[str]]:
    """Targets in at most `workers` groups of about equal work (largest first onto the
    lightest group); each group keeps the config's order."""
    count = max(1, min(workers, len(targets)))
    groups: list[list[str]] = [[] for _ in range(count)]
    work = [0.0] * count
    for name in sorted(targets, key=lambda t: -TARGET_WORK.get(t, max(TARGET_WORK.values()))):
        lightest = work.index(min(work))
        groups[lightest].append(name)
        work[lightest] += TARGET_WORK.get(name, max(TARGET_WORK.values()))
    order = {name: i for i, name in enumerate(targets)}
    return [sorted(g, key=order.__getitem__) for g in groups if g]


def _died(name: str, cause: str, tail: str, building: str) -> dict:
    return {
        "status": "error",
        "error": "WorkerDied",
        "exit_code": 1,
        "message": f"the worker building {building} died ({cause}); last lines of its stderr:\n{tail}",
        "signal": cause,
    }


def _finish_shared(job: ModelJob, artifacts_root: Path) -> None:
    """The model's last target is done: publish the canonical SavedModel when a target
    was published from it, and drop the shared stages' files."""
    import json
    import shutil

    from pipeline.fsutil import publish_dir

    manifest = Path(job.shared["manifest"])
    try:
        record = json.loads(manifest.read_text())
    except (OSError, ValueError):
        record = {}
    saved_model = Path(record["saved_model_dir"]) if record.get("saved_model_dir") else None
    try:
        if saved_model is not None and saved_model.is_dir() and any("staged" in e for e in job.entries.values()):
            publish_dir(saved_model, artifacts_root / job.model / ".stages" / "savedmodel")
    finally:
        if saved_model is not None:
            shutil.rmtree(saved_model.parent, ignore_errors=True)
        for part in ("inputs", "reference"):
            folder = (record.get(part) or {}).get("folder")
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(manifest.parent, ignore_errors=True)
