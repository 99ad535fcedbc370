"""Benchmark stage: how fast each exported artifact runs, next to the eager model and
the plain `tf.function` graph it was exported from.

`tfship bench` times what `export` already wrote (it never re-exports): every
artifact of every target in `artifacts/<model>/report.json` (each variant too), and
two baselines computed from the source model: `eager` (the loaded model called
eagerly) and `graph` (the signature-fixed tf.function). Each is timed at batch 1 and
at a larger batch (`--batch`, default 32); a batch an artifact cannot take (a static
batch-1 model) is skipped and the report says why.

How one figure is measured: warm up (at least `warmup_runs` calls or a short time),
then time every call with `perf_counter_ns` until at least `min_runs` calls and
`min_seconds` have passed and the median over all calls moved by less than 2% when
the latest window (the last fifth of the calls, at least 10) was added; or until
`max_seconds` runs out (the figure is then marked `stable: false`). Python's garbage
collector is paused while timing, as `timeit` does. p50/p90/p99 are in ms;
throughput is batch / p50 in samples per second; speedup is eager p50 / p50 at the
same batch.

What is timed: the leanest call each runtime allows, inputs prepared once.
A target may provide it (`Target.bench_callable`); when it keeps the base-class
default, which goes through `open()` and its input and output conversions, and the
artifact is a file this module knows how to drive (`.tflite` in LiteRT, `.onnx` in
onnxruntime, a SavedModel folder in TensorFlow), the runtime is driven directly:
LiteRT with tensors set once and `invoke()` timed, onnxruntime `run` with prebuilt
feeds, TensorFlow the serving signature on prebuilt tensors. `driver` in the report
says which was used.

Harness overhead: at batch 1 every artifact whose runtime is known is also run in
bare `for` loops around that runtime call (one clock read per loop), alternating
with the harness's own per-call timing of the same number of calls, so load from
other processes hits both alike. The report gives the bare-loop figure, the
harness's, their difference (which should stay within 5%), and the bench p50 next
to the bare loop.

When driving the file directly fails at a batch (e.g. a signature that serves only
some batch sizes), the target's own runner is timed instead and the report says so.
A batch the artifact cannot take at all (a static input shape, or `fixed_batch` or
`batch` in its recorded info) is skipped, with the reason.

Threads: the same count for every runtime (`--threads`, default: the CPUs this
process may use): TensorFlow intra-op threads (inter-op 1, as onnxruntime runs
nodes sequentially and LiteRT has no inter-op pool), LiteRT `num_threads`,
onnxruntime `intra_op_num_threads`. TensorFlow fixes its pools when it first runs an
op, so the count only applies in a process that has not run TensorFlow yet
(`tfship bench` sets it first); the report records the counts actually in effect.
"""
from __future__ import annotations

import gc
import inspect
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pipeline.errors import ConfigError, IntegrityError, PipelineError, Problem
from pipeline.execute.console import log, peak_rss_mb
from pipeline.reports.model import now, read_report, report_path, verify_files, write_report

if TYPE_CHECKING:  # the CLI imports this module to list its command: numpy and the rest load on use
    import numpy as np

    from pipeline.spec import ModelConfig

DEFAULT_BATCH = 32
DEFAULT_MAX_SECONDS = 2.0
STABLE_CHANGE = 0.02  # a figure is stable when the last window moves the median by less than this
HARNESS_BUDGET = 0.05  # the harness may add at most this fraction over a bare loop
BASELINES = ("eager", "graph")


class BenchError(PipelineError):
    """Nothing to benchmark, or the report no longer describes the files on disk."""

    exit_code = 1


class BatchUnsupported(Exception):
    """The artifact cannot run this batch size (e.g. a static batch-1 model)."""


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


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1



# --------------------------------------------------------------------------- timing


def _ms(ns: float) -> float:
    """Nanoseconds as milliseconds with 5 significant digits (a fixed number of
    decimals would flatten microsecond figures)."""
    return float(f"{ns / 1e6:.5g}")


def measure(fn: Callable[[], Any], options: BenchOptions, batch: int) -> dict:
    """Warm up, then time `fn` call by call until the median is stable or time runs out."""
    import numpy as np

    max_s = options.max_seconds
    min_s = min(options.min_seconds, max_s / 2)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        warm_start = time.perf_counter()
        warm_budget = min(options.warmup_seconds, max_s / 4)
        warmup = 0
        while warmup < options.warmup_runs or time.perf_counter() - warm_start < warm_budget:
            fn()
            warmup += 1
            if time.perf_counter() - warm_start >= max_s / 4 or warmup >= 1000:
                break
        samples: list[int] = []
        begin = time.perf_counter()
        checked_at = 0
        stable = False
        clock = time.perf_counter_ns
        while True:
            t0 = clock()
            fn()
            samples.append(clock() - t0)
            n = len(samples)
            elapsed = time.perf_counter() - begin
            if n >= options.min_runs and elapsed >= min_s:
                window = max(10, n // 5)
                if n - checked_at >= window:
                    checked_at = n
                    before = float(np.median(samples[: n - window]))
                    after = float(np.median(samples))
                    if before > 0 and abs(after - before) <= STABLE_CHANGE * before:
                        stable = True
                        break
            if elapsed >= max_s or n >= 1_000_000:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    arr = np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "batch": batch,
        "p50_ms": _ms(p50),
        "p90_ms": _ms(p90),
        "p99_ms": _ms(p99),
        "mean_ms": _ms(arr.mean()),
        "min_ms": _ms(arr.min()),
        "throughput_sps": float(f"{batch / (p50 / 1e9):.5g}") if p50 > 0 else None,
        "runs": len(samples),
        "warmup_runs": warmup,
        "seconds": round(float(arr.sum()) / 1e9, 4),
        "stable": stable,
    }


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
            out[spec.name] = np.ascontiguousarray(values[0])
    return out


# --------------------------------------------------------------------------- threads


def configure_tensorflow_threads(threads: int) -> dict:
    """Size TensorFlow's pools (only possible before it runs its first op) and
    return the counts in effect."""
    import tensorflow as tf

    note = None
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        note = "TensorFlow had already run in this process, so its thread pools kept their size"
    return tensorflow_threads(note)


def tensorflow_threads(note: str | None = None) -> dict:
    import tensorflow as tf

    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    record = {
        "runtime": "TensorFlow",
        # 0 means TensorFlow's default: one thread per CPU
        "intra_op_parallelism_threads": intra or available_cpus(),
        "inter_op_parallelism_threads": inter or available_cpus(),
    }
    if note:
        record["note"] = note
    return record


# --------------------------------------------------------------------------- runtimes


@dataclass
class RuntimeCall:
    """One runtime call with its inputs already in place."""

    call: Callable[[], Any]
    runtime: str
    what: str
    threads: dict = field(default_factory=dict)


def artifact_path(target_dir: Path, files: tuple[str, ...]) -> Path | None:
    for name in files:
        path = target_dir / name
        if path.suffix in (".tflite", ".onnx") or (path / "saved_model.pb").is_file():
            return path
    return None


def runtime_call(path: Path, inputs: dict[str, np.ndarray], threads: int) -> RuntimeCall | None:
    """The bare runtime call for a known artifact kind; None for a kind this module
    cannot drive. Raises BatchUnsupported for a batch a static model cannot take."""
    if path.suffix == ".tflite":
        return _litert_call(path, inputs, threads)
    if path.suffix == ".onnx":
        return _onnxruntime_call(path, inputs, threads)
    if (path / "saved_model.pb").is_file():
        return _saved_model_call(path, inputs)
    return None


def _static_batch_check(name: str, dims: list, batch: int, value: np.ndarray) -> None:
    import numpy as np

    if value.ndim == 0 or not dims:
        return
    first = dims[0]
    if isinstance(first, (int, np.integer)) and int(first) > 0 and int(first) != batch:
        raise BatchUnsupported(f"input '{name}' has a static batch of {int(first)}")


def _litert_call(path: Path, inputs: dict[str, np.ndarray], threads: int) -> RuntimeCall | None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        return None  # several subgraphs: `invoke()` would not pick the signature's
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    details = runner.get_input_details()
    del runner  # it holds views of the input tensors, which would block resizing them
    if set(details) != set(inputs):
        return None
    for name, detail in details.items():
        _static_batch_check(name, list(detail["shape_signature"]), len(inputs[name]) if inputs[name].ndim else 1, inputs[name])
    feeds = {name: _litert_feed(details[name], value) for name, value in inputs.items()}
    for name, value in feeds.items():
        if tuple(details[name]["shape"]) != value.shape:
            interpreter.resize_tensor_input(details[name]["index"], list(value.shape), strict=False)
    interpreter.allocate_tensors()
    for name, value in feeds.items():
        interpreter.set_tensor(details[name]["index"], value)
    return RuntimeCall(interpreter.invoke, "LiteRT", "Interpreter.invoke() (tensors set once)", {"runtime": "LiteRT", "num_threads": threads})


def _litert_feed(detail: dict, value: np.ndarray) -> np.ndarray:
    """Float data for an integer model input is quantized with the input's own scale."""
    import numpy as np

    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.integer) and np.issubdtype(value.dtype, np.floating):
        params = detail.get("quantization_parameters") or {}
        scales = params.get("scales")
        scale, zero_point = (float(scales[0]), int(params["zero_points"][0])) if scales is not None and len(scales) == 1 else detail["quantization"]
        if scale:
            info = np.iinfo(dtype)
            return np.clip(np.round(value / scale + zero_point), info.min, info.max).astype(dtype)
    return np.ascontiguousarray(value.astype(dtype, copy=False))


def _ort_numpy_types() -> dict:
    import numpy as np

    return {
        "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
        "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16,
        "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
    }


def _onnxruntime_call(path: Path, inputs: dict[str, np.ndarray], threads: int) -> RuntimeCall | None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    declared = {i.name: i for i in session.get_inputs()}
    if set(declared) != set(inputs):
        return None
    feeds = {}
    for name, value in inputs.items():
        _static_batch_check(name, list(declared[name].shape), len(value) if value.ndim else 1, value)
        dtype = _ort_numpy_types().get(declared[name].type)
        feeds[name] = value if dtype is None or value.dtype == dtype else value.astype(dtype)
    outputs = [o.name for o in session.get_outputs()]
    used = session.get_session_options()
    return RuntimeCall(
        lambda: session.run(outputs, feeds),
        "onnxruntime",
        "InferenceSession.run() (feeds built once)",
        {"runtime": "onnxruntime", "intra_op_num_threads": used.intra_op_num_threads, "inter_op_num_threads": used.inter_op_num_threads},
    )


def _saved_model_call(path: Path, inputs: dict[str, np.ndarray]) -> RuntimeCall | None:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    if "serving_default" not in loaded.signatures:
        return None
    fn = loaded.signatures["serving_default"]
    spec = fn.structured_input_signature[1]
    if set(spec) != set(inputs):
        return None
    for name, value in inputs.items():
        _static_batch_check(name, spec[name].shape.as_list(), len(value) if value.ndim else 1, value)
    tensors = {name: tf.constant(value.astype(spec[name].dtype.as_numpy_dtype, copy=False)) for name, value in inputs.items()}

    def call():
        return fn(**tensors)

    call.keep_alive = loaded  # the signature's variables live as long as the loaded object
    return RuntimeCall(call, "TensorFlow", "SavedModel serving_default on prebuilt tensors", tensorflow_threads())


# --------------------------------------------------------------------------- artifacts


@dataclass(frozen=True)
class ArtifactRef:
    """One recorded artifact of the report: where it lives and what it is."""

    target: str
    variant: str
    record: dict  # the report entry holding `artifact`, `files`, `status`

    @property
    def label(self) -> str:
        return f"{self.target}/{self.variant}" if self.variant else self.target

    @property
    def fingerprint(self) -> tuple:
        return tuple(sorted((f["path"], f["sha256"]) for f in self.record.get("files", [])))


def recorded_artifacts(report: dict, only: list[str] | None = None) -> list[ArtifactRef]:
    refs = []
    for name, entry in sorted(report.get("targets", {}).items()):
        if only is not None and name not in only:
            continue
        records = entry.get("variants") or ({"": entry} if "artifact" in entry else {})
        for variant, record in records.items():
            if "artifact" in record:
                refs.append(ArtifactRef(name, variant, record))
    return refs


def _static_batch_from_info(info: dict) -> int | None:
    """A batch the target recorded as fixed (`fixed_batch`, or `batch` on a static model)."""
    for key in ("fixed_batch", "batch"):
        value = info.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _call_target(target, target_dir: Path, artifact, inputs: dict[str, np.ndarray], threads: int) -> tuple[Callable, dict]:
    params = inspect.signature(target.bench_callable).parameters
    if "threads" in params:
        return target.bench_callable(target_dir, artifact, inputs, threads=threads), {"requested": threads}
    return target.bench_callable(target_dir, artifact, inputs), {"note": "the target's bench_callable takes no thread count: its runtime's default applies"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def benchmark_artifact(ref: ArtifactRef, model_dir: Path, config: ModelConfig, pool: dict, options: BenchOptions, eager: dict) -> dict:
    """Time one artifact at each batch; `eager` holds the eager baseline's figures by batch."""
    from pipeline.target import Artifact, Target
    from pipeline.tolerance import Tolerance
    from targets import REGISTRY

    threads = options.resolved_threads()
    target = REGISTRY.get(ref.target)
    art = ref.record["artifact"]
    artifact = Artifact(variant=art["variant"], files=tuple(art["files"]), tolerance=Tolerance(**art["tolerance"]), info=art.get("info", {}))
    target_dir = model_dir / ref.target
    overridden = type(target).bench_callable is not Target.bench_callable
    path = artifact_path(target_dir, artifact.files)
    static = _static_batch_from_info(artifact.info)
    result: dict = {"measured": now(), "file": f"{ref.target}/{path.relative_to(target_dir).as_posix()}" if path is not None else None, "batches": {}, "skipped": {}}
    started = time.perf_counter()
    lean_batch1 = timed_batch1 = None
    for batch in options.batches(config):
        key = str(batch)
        if static is not None and batch != static:
            result["skipped"][key] = f"static batch {static}: the artifact only takes batches of {static}"
            continue
        inputs = batch_inputs(config, pool, batch)
        rc, lean_error = None, None
        if not overridden and path is not None:
            try:
                rc = runtime_call(path, inputs, threads)
                if rc is not None:
                    rc.call()
            except BatchUnsupported as exc:
                result["skipped"][key] = str(exc)
                continue
            except Exception as exc:  # the target's own runner may still manage (e.g. by splitting the batch)
                rc, lean_error = None, exc
        try:
            if rc is not None:
                fn, driver, thread_info, what = rc.call, "runtime", rc.threads, f"{rc.runtime} {rc.what}"
            else:
                fn, thread_info = _call_target(target, target_dir, artifact, inputs, threads)
                driver, what = "target", f"{ref.target}.bench_callable" + ("" if overridden else " (open() runner)")
                fn()
        except BatchUnsupported as exc:
            result["skipped"][key] = str(exc)
            continue
        except Exception as exc:  # an artifact that cannot run here is reported, not fatal
            direct = f"; driving {result['file']} directly: {_first_line(lean_error)}" if lean_error is not None else ""
            result["skipped"][key] = f"cannot run: {_first_line(exc)}{direct}"
            continue
        if lean_error is not None:
            result.setdefault("notes", []).append(f"batch {batch}: timed through the target's runner, as driving {result['file']} directly failed: {_first_line(lean_error)}")
        figure = measure(fn, options, batch)
        base = (eager.get(key) or {}).get("p50_ms")
        figure["speedup_vs_eager"] = float(f"{base / figure['p50_ms']:.4g}") if base and figure["p50_ms"] else None
        result["batches"][key] = figure
        if "driver" not in result:
            result.update(driver=driver, call=what, threads=thread_info)
        elif result["driver"] != driver:  # this batch took the other path: say so where its figure is
            figure.update(driver=driver, call=what, threads=thread_info)
        if batch == 1:
            timed_batch1, lean_batch1 = fn, rc
    if options.bare_loop and timed_batch1 is not None and path is not None:
        try:
            rc = lean_batch1 or runtime_call(path, batch_inputs(config, pool, 1), threads)
        except Exception as exc:  # the bare loop is evidence, not a result: say why it is missing
            result["bare_loop"] = {"skipped": f"cannot drive the runtime directly: {_first_line(exc)}"}
        else:
            if rc is not None:
                result["bare_loop"] = harness_overhead(timed_batch1, rc, result["batches"]["1"], options)
            else:
                result["bare_loop"] = {"skipped": f"{result['file']}: its signature does not match the config's inputs, so the runtime is not driven directly"}
    elif options.bare_loop and timed_batch1 is not None:
        result["bare_loop"] = {"skipped": "no file this benchmark can drive directly (.tflite, .onnx, SavedModel)"}
    if not result["skipped"]:
        del result["skipped"]
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def harness_overhead(timed: Callable[[], Any], rc: RuntimeCall, figure: dict, options: BenchOptions, chunk_seconds: float = 0.002) -> dict:
    """The harness's own cost: its per-call figures next to a bare loop around the runtime call.

    Bare chunks (a plain `for` loop, one clock read per chunk) alternate with harness
    chunks (one clock read around each call, as `measure` does) of the same length,
    so load from other processes hits both alike; `overhead` is the median over
    rounds of harness mean / bare mean - 1. `timed` is what the benchmark timed (the
    runtime call itself, or the target's callable). The bench figure (p50) is also
    set next to the median bare chunk, which is what a reader compares by eye.
    """
    import numpy as np

    budget = min(1.0, options.max_seconds / 2)
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(3):
            rc.call()
            timed()
        per_call = max((time.perf_counter() - t0) / 6, 1e-7)
        n = max(10, int(chunk_seconds / per_call))
        rounds = int(min(250, max(5, budget / (2 * n * per_call))))
        bare_means, harness_means = [], []
        for r in range(rounds):
            for kind in (("bare", "harness") if r % 2 == 0 else ("harness", "bare")):
                if kind == "bare":
                    start = clock()
                    for _ in range(n):
                        rc.call()
                    bare_means.append((clock() - start) / n)
                else:
                    total = 0
                    for _ in range(n):
                        start = clock()
                        timed()
                        total += clock() - start
                    harness_means.append(total / n)
    finally:
        if gc_was_enabled:
            gc.enable()
    bare = np.asarray(bare_means)
    ratios = np.asarray(harness_means) / bare
    overhead = float(np.median(ratios)) - 1.0
    bare_ms = float(np.median(bare)) / 1e6
    return {
        "batch": 1,
        "call": f"{rc.runtime} {rc.what}",
        "bare_loop_ms": _ms(bare_ms * 1e6),
        "harness_mean_ms": _ms(float(np.median(harness_means))),
        "overhead": round(overhead, 4),
        "within_budget": abs(overhead) <= HARNESS_BUDGET,
        "budget": HARNESS_BUDGET,
        "bench_p50_ms": figure["p50_ms"],
        "bench_p50_vs_bare": round(figure["p50_ms"] / bare_ms - 1.0, 4) if bare_ms > 0 else None,
        "rounds": rounds,
        "calls_per_chunk": n,
    }


# --------------------------------------------------------------------------- baselines


def benchmark_baselines(config: ModelConfig, loaded, traced, pool: dict, options: BenchOptions) -> dict:
    """The eager model and the plain tf.function graph, at each batch."""
    import tensorflow as tf

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
    tf_threads = stage("threads", configure_tensorflow_threads, threads)
    if prepared is not None:
        loaded, traced, pool = prepared.loaded, prepared.traced, prepared.data.pool
    else:
        from pipeline.stages.data import make_parity_data
        from pipeline.stages.load import load_model
        from pipeline.stages.trace import trace_model

        pool = stage("data", make_parity_data, config).pool
        loaded = stage("load", load_model, config)
        traced = stage("trace", trace_model, config, loaded)
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
        record = (entry.get("variants") or {}).get(variant) if entry.get("variants") else (entry if variant == "" else None)
        if record is None or ArtifactRef(name, variant, record).fingerprint != fingerprint:
            log(report.get("model", "?"), f"{name}{'/' + variant if variant else ''}: rebuilt while timing; its figures were dropped")
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
