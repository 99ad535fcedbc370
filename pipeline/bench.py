"""Benchmark stage: how fast each exported artifact runs, next to the eager model and
the plain `tf.function` graph it was exported from.

`tfship bench` times what `export` already wrote (it never re-exports): every
artifact of every target in `artifacts/<model>/report.json` (each variant too), and
two baselines computed from the source model: `eager` (the loaded model called
eagerly) and `graph` (the signature-fixed tf.function). Each is timed at batch 1 and
at a larger batch (`--batch`, default 32); a batch an artifact cannot take (a static
batch-1 model) is skipped and the report says why.

How one figure is measured: see `pipeline.timing`.

What is timed: the runtime call alone, inputs prepared once, through the same runner
parity uses (`Target.open(...)`, from `pipeline.runtimes`): `Runner.prepare(inputs)`
puts a batch in place (LiteRT tensors set once, onnxruntime feeds built once,
OpenVINO input tensors set once on the request, TensorFlow tensors prebuilt) and the returned call is what `measure` times. `call`
in the report says which call that was. A batch the artifact cannot take in one call
(a static input shape, a fixed or largest compiled batch, or `fixed_batch`/`batch`
in its recorded info) is skipped, with the reason.

Harness overhead: at batch 1 the same call also runs in bare `for` loops (one clock
read per loop), alternating with the harness's own per-call timing of the same
number of calls, so load from other processes hits both alike. The report gives
the bare-loop figure, the harness's, their difference (which should stay within
5%), and the bench p50 next to the bare loop (`pipeline.timing`).

Threads: the same count for every runtime (`--threads`, default: the CPUs this
process may use): TensorFlow intra-op threads (inter-op 1, as onnxruntime runs
nodes sequentially and LiteRT has no inter-op pool), LiteRT `num_threads`,
onnxruntime `intra_op_num_threads`, OpenVINO `INFERENCE_NUM_THREADS`, IREE's local-task workers
(`--task_topology_group_count`). TensorFlow fixes its pools when it first runs an
op, so the count only applies in a process that has not run TensorFlow yet
(`tfship bench` sets it first); the report records the counts actually in effect.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pipeline.errors import ConfigError, IntegrityError, PipelineError, Problem
from pipeline.execute.console import log, peak_rss_mb
from pipeline.reports.model import now, read_report, report_path, variant_label, verify_files, write_report
from pipeline.reports.records import iter_records
from pipeline.runtimes.base import available_cpus
from pipeline.timing import STABLE_CHANGE, harness_overhead, measure

if TYPE_CHECKING:  # the CLI imports this module to list its command: numpy and the rest load on use
    import numpy as np

    from pipeline.spec import ModelConfig

DEFAULT_BATCH = 32
DEFAULT_MAX_SECONDS = 2.0
BASELINES = ("eager", "graph")


class BenchError(PipelineError):
    """Nothing to benchmark, or the report no longer describes the files on disk."""

    exit_code = 1


@dataclass(frozen=True)
class BenchOptions:
    batch: int = DEFAULT_BATCH  # the larger batch, timed besides batch 1
    threads: int | None = None  # None: the CPUs this process may use
    max_seconds: float = DEFAULT_MAX_SECONDS  # per figure (one artifact at one batch)
    min_runs: int = 20
    min_seconds: float = 0.25
    warmup_runs: int = 5
    warmup_seconds: float = 0.2
    bare_loop: bool = True

    def resolved_threads(self) -> int:
        return self.threads if self.threads else available_cpus()

    def batches(self, config: ModelConfig) -> tuple[int, ...]:
        fixed = {s.fixed_batch for s in config.inputs if s.batched and s.fixed_batch is not None}
        if fixed:  # the model itself only takes its own batch
            return tuple(sorted(fixed))
        if not any(s.batched for s in config.inputs):
            return (1,)
        return tuple(sorted({1, self.batch}))

    def check(self) -> None:
        problems = []
        if self.batch < 1:
            problems.append(Problem("", None, "--batch", f"expected a batch size of at least 1, got {self.batch}"))
        if self.threads is not None and self.threads < 1:
            problems.append(Problem("", None, "--threads", f"expected at least 1 thread, got {self.threads}"))
        if not self.max_seconds > 0:
            problems.append(Problem("", None, "--max-seconds", f"expected a positive number of seconds, got {self.max_seconds}"))
        if problems:
            raise ConfigError(problems)


# --------------------------------------------------------------------------- inputs


def batch_inputs(config: ModelConfig, pool: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """`batch` samples from the data pool (wrapping around a smaller pool); an
    unbatched input keeps its first value."""
    import numpy as np

    out = {}
    for spec in config.inputs:
        values = np.asarray(pool[spec.name])
        if spec.batched:
            idx = np.arange(batch) % len(values)
            out[spec.name] = np.ascontiguousarray(values[idx])
        else:
            out[spec.name] = np.asarray(values[0], order="C")  # not ascontiguousarray: it turns a scalar into [1]
    return out


# --------------------------------------------------------------------------- artifacts


@dataclass(frozen=True)
class ArtifactRef:
    """One recorded artifact of the report: where it lives and what it is."""

    target: str
    variant: str  # the key under the target's `variants`
    record: dict  # the variant record holding `artifact`, `files`, `status`

    @property
    def label(self) -> str:
        return variant_label(self.target, self.variant, self.record)

    @property
    def fingerprint(self) -> tuple:
        return tuple(sorted((f["path"], f["sha256"]) for f in self.record.get("files", [])))


def recorded_artifacts(report: dict, only: list[str] | None = None) -> list[ArtifactRef]:
    return [ArtifactRef(r.target, r.key, r.entry) for r in iter_records(report) if r.has_artifact and (only is None or r.target in only)]


def _static_batch_from_info(info: dict) -> int | None:
    """A batch the target recorded as fixed (`fixed_batch`, or `batch` on a static model)."""
    for key in ("fixed_batch", "batch"):
        value = info.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _runner_call(runner, inputs: dict[str, np.ndarray], label: str):
    """The runner's prepared call; a runner that is a plain callable (an in-house target
    written before `pipeline.runtimes`) is timed whole."""
    if hasattr(runner, "prepare"):
        return runner.prepare(inputs, chunked=False)
    from pipeline.runtimes import Call

    return Call(lambda: runner(inputs), lambda out: out, f"{label} runner called on prepared inputs")


def benchmark_artifact(ref: ArtifactRef, model_dir: Path, config: ModelConfig, pool: dict, options: BenchOptions, eager: dict) -> dict:
    """Time one artifact at each batch through the runner parity uses; `eager` holds the
    eager baseline's figures by batch."""
    from pipeline.runtimes import BatchUnsupported
    from pipeline.target import Artifact
    from pipeline.tolerance import Tolerance
    from targets import REGISTRY

    threads = options.resolved_threads()
    target = REGISTRY.get(ref.target)
    art = ref.record["artifact"]
    artifact = Artifact(variant=art["variant"], files=tuple(art["files"]), tolerance=Tolerance(**art["tolerance"]), info=ref.record.get("info", {}))
    target_dir = model_dir / ref.target
    static = _static_batch_from_info(artifact.info)
    result: dict = {"measured": now(), "file": f"{ref.target}/{artifact.files[0]}" if artifact.files else None, "batches": {}, "skipped": {}}
    started = time.perf_counter()
    try:
        runner = target.open(target_dir, artifact, threads=threads)
    except Exception as exc:  # an artifact that cannot run here is reported, not fatal
        result["skipped"] = {"all": f"cannot open: {_first_line(exc)}"}
        return result
    label = f"{getattr(runner, 'runtime', '') or ref.target}"
    batch1_inputs = None
    for batch in options.batches(config):
        key = str(batch)
        if static is not None and batch != static:
            result["skipped"][key] = f"static batch {static}: the artifact only takes batches of {static}"
            continue
        inputs = batch_inputs(config, pool, batch)
        try:
            call = _runner_call(runner, inputs, ref.target)
            call()
        except BatchUnsupported as exc:
            result["skipped"][key] = str(exc)
            continue
        except Exception as exc:  # an artifact that cannot run here is reported, not fatal
            result["skipped"][key] = f"cannot run: {_first_line(exc)}"
            continue
        figure = measure(call, options, batch)
        base = (eager.get(key) or {}).get("p50_ms")
        figure["speedup_vs_eager"] = float(f"{base / figure['p50_ms']:.4g}") if base and figure["p50_ms"] else None
        result["batches"][key] = figure
        result.setdefault("driver", "runtime")
        result.setdefault("call", f"{label} {call.what}")
        result.setdefault("threads", dict(getattr(runner, "threads", {}) or {"requested": threads}))
        if batch == 1:
            batch1_inputs = inputs
    if options.bare_loop and batch1_inputs is not None:
        try:
            call = _runner_call(runner, batch1_inputs, ref.target)  # again: a larger batch may have replaced its tensors
            result["bare_loop"] = harness_overhead(call, f"{label} {call.what}", result["batches"]["1"], options.max_seconds)
        except Exception as exc:  # the bare loop is evidence, not a result: say why it is missing
            result["bare_loop"] = {"skipped": f"cannot run the call in a bare loop: {_first_line(exc)}"}
    if not result["skipped"]:
        del result["skipped"]
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


# --------------------------------------------------------------------------- baselines


def benchmark_baselines(config: ModelConfig, loaded, traced, pool: dict, options: BenchOptions) -> dict:
    """The eager model and the plain tf.function graph, at each batch."""
    import tensorflow as tf

    from pipeline.runtimes.savedmodel import tensorflow_threads

    out = {}
    for kind in BASELINES:
        result: dict = {"measured": now(), "batches": {}, "threads": tensorflow_threads()}
        result["call"] = "model called eagerly (training=False) on prebuilt tensors" if kind == "eager" else "signature-fixed tf.function on prebuilt tensors"
        for batch in options.batches(config):
            inputs = batch_inputs(config, pool, batch)
            tensors = {name: tf.constant(value) for name, value in inputs.items()}
            if kind == "eager":
                fn = _eager_call(loaded, tensors)
            else:
                fn = _graph_call(traced, config, tensors)
            fn()
            figure = measure(fn, options, batch)
            result["batches"][str(batch)] = figure
        out[kind] = result
    eager = out["eager"]["batches"]
    for kind in BASELINES:
        for key, figure in out[kind]["batches"].items():
            base = eager[key]["p50_ms"]
            figure["speedup_vs_eager"] = float(f"{base / figure['p50_ms']:.4g}") if figure["p50_ms"] else None
    return out


def _eager_call(loaded, tensors: dict) -> Callable[[], Any]:
    # TensorFlow on CPU returns once the outputs are computed, as the artifacts' runtimes do.
    def call():
        return loaded.call(tensors)

    return call


def _graph_call(traced, config: ModelConfig, tensors: dict) -> Callable[[], Any]:
    args = [tensors[name] for name in config.input_names]
    function = traced.function

    def call():
        return function(*args)

    return call


# --------------------------------------------------------------------------- the stage


def host_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cpus": available_cpus(), "python": platform.python_version()}


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def benchmark_model(config: ModelConfig, artifacts_root: Path, options: BenchOptions, targets: list[str] | None = None, prepared=None) -> dict:
    """Time the model's recorded artifacts and the baselines; merge the figures into
    report.json and report.md; return the updated report.

    `prepared` (a `pipeline.execute.build.Prepared`) lets a caller that already loaded and
    traced the model skip doing it again.
    """
    model_dir = artifacts_root / config.name
    report = read_report(model_dir)
    if report is None:
        raise BenchError(f"{config.name}: no report at {report_path(model_dir)}; run `tfship export --model {config.name}` first")
    if report.get("config_sha256") not in (None, config.sha256):
        raise BenchError(
            f"{config.name}: {config.file} changed since the artifacts in {model_dir} were exported "
            f"(config sha256 {config.sha256[:12]}, report {str(report.get('config_sha256'))[:12]}); run `tfship export --model {config.name}` first"
        )
    refs = recorded_artifacts(report, targets)
    for name in sorted(set(targets or ()) - set(report.get("targets", {}))):
        log(config.name, f"{name}: not in {report_path(model_dir)}; export it first (`tfship export --model {config.name} --target {name}`)")
    changed = verify_files(model_dir, {"targets": {r.target: report["targets"][r.target] for r in refs}})
    if changed:
        raise IntegrityError(f"{config.name}: {len(changed)} file(s) differ from report.json, so their figures would describe other files: " + "; ".join(changed) + f". Run `tfship export --model {config.name}`.")

    timings: dict[str, dict] = {}

    def stage(name: str, fn, *args):
        t0 = time.perf_counter()
        value = fn(*args)
        timings[name] = {"seconds": round(time.perf_counter() - t0, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}
        return value

    load_before = _load_average()
    threads = options.resolved_threads()
    from pipeline.runtimes.savedmodel import configure_tensorflow_threads

    tf_threads = stage("threads", configure_tensorflow_threads, threads)
    if prepared is not None:
        loaded, traced, pool = prepared.loaded, prepared.traced, prepared.data.pool
    else:
        from pipeline.stages.data import make_parity_data
        from pipeline.stages.load import load_model
        from pipeline.stages.trace import trace_model

        data = stage("data", make_parity_data, config)
        pool = data.pool
        loaded = stage("load", load_model, config)
        traced = stage("trace", trace_model, config, loaded, data)
    log(config.name, f"timing baselines (eager, graph) at batch {', '.join(map(str, options.batches(config)))} with {threads} thread(s)")
    baselines = stage("baselines", benchmark_baselines, config, loaded, traced, pool, options)
    eager = {k: v for k, v in baselines["eager"]["batches"].items()}
    results: dict[tuple[str, str], tuple[tuple, dict]] = {}
    for ref in refs:
        if ref.record.get("status") != "passed":
            bench = {"measured": now(), "skipped": {"all": f"status {ref.record.get('status')}: only artifacts that passed parity are timed"}}
        else:
            from targets import REGISTRY

            if ref.target not in REGISTRY:
                bench = {"measured": now(), "skipped": {"all": f"target '{ref.target}' is not registered here"}}
            else:
                bench = stage(f"artifact:{ref.label}", benchmark_artifact, ref, model_dir, config, pool, options, eager)
        results[(ref.target, ref.variant)] = (ref.fingerprint, bench)
        log(config.name, f"{ref.label}: {_summary_line(bench)}")
    settings = {
        "batches": list(options.batches(config)),
        "threads": threads,
        "max_seconds": options.max_seconds,
        "min_runs": options.min_runs,
        "min_seconds": options.min_seconds,
        "warmup_runs": options.warmup_runs,
        "stable_change": STABLE_CHANGE,
    }
    load = {"before": load_before, "after": _load_average()}
    run = {"measured": now(), "load_average": load, "config_sha256": config.sha256, "settings": settings, "host": host_info(), "tensorflow_threads": tf_threads, "timings": timings}
    return merge_benchmark(model_dir, results, baselines, run)


def merge_benchmark(model_dir: Path, results: dict, baselines: dict, run: dict) -> dict:
    """Re-read the report and add the figures to the records whose files are still
    the ones timed; write report.json and report.md atomically, under the model's lock
    (an export publishing meanwhile must not lose its entries to this write)."""
    from pipeline.publication import ModelLock

    with ModelLock(model_dir.parent, model_dir.name, echo=lambda line: print(line, file=sys.stderr, flush=True)):
        return _merge_benchmark_locked(model_dir, results, baselines, run)


def _merge_benchmark_locked(model_dir: Path, results: dict, baselines: dict, run: dict) -> dict:
    report = read_report(model_dir)
    if report is None:
        raise BenchError(f"{report_path(model_dir)} disappeared while benchmarking")
    for (name, variant), (fingerprint, bench) in results.items():
        entry = report.get("targets", {}).get(name)
        if entry is None:
            continue
        record = (entry.get("variants") or {}).get(variant)
        if record is None or ArtifactRef(name, variant, record).fingerprint != fingerprint:
            log(report.get("model", "?"), f"{name}/{variant}: rebuilt while timing; its figures were dropped")
            continue
        record["benchmark"] = bench
    report["baselines"] = baselines
    report["benchmark"] = run
    write_report(model_dir, report)
    return report


def _summary_line(bench: dict) -> str:
    parts = []
    for key, figure in (bench.get("batches") or {}).items():
        speed = figure.get("speedup_vs_eager")
        parts.append(f"batch {key} p50 {figure['p50_ms']:.3g} ms" + (f" ({speed:.2f}x eager)" if speed else ""))
    for key, why in (bench.get("skipped") or {}).items():
        parts.append(f"{'batch ' + key if key != 'all' else 'not timed'}: {why}")
    return "; ".join(parts) or "-"
