"""Edge TPU: a full-integer int8 TFLite model with a static batch of 1, checked
statically against the Edge TPU's constraints, run in LiteRT on the CPU for parity.

Files: `model.tflite` (what `edgetpu_compiler` takes), plus `model_edgetpu.tflite`
and `edgetpu_compiler.log` when `edgetpu_compiler` is on PATH.

Parity runs `model.tflite` in LiteRT on the CPU; `model_edgetpu.tflite` needs an Edge
TPU to run, so parity never runs it. It is shipped only when the compiler exited 0
within `compiler_timeout` seconds and the file it wrote has the same inputs and outputs
(shapes, types, quantization) as `model.tflite`; the report's `unchecked_files` (and
the release manifest) say that it was not run and what was checked instead. A compiler
that fails, times out, or writes nothing readable makes the variant an error: nothing
of it is published.

The model is converted from a SavedModel whose signature fixes the batch at 1
(Edge TPU needs static shapes), written with the pipeline's `write_saved_model`
so Keras 3 weights are tracked. Calibration is the tflite `int8` variant's
(`calibration_samples` samples of the parity data); parity uses the same
quantized budget as the tflite `int8` variant:

| atol | rtol | steps | range_fraction | mismatch_fraction | min_top1 | max_accuracy_drop |
|------|------|-------|----------------|-------------------|----------|-------------------|
| 1e-3 | 0    | 3     | 0.05           | 0.01              | 0.95     | 0.02              |

`info.placement` has one row per op (index, op, runs_on edgetpu|cpu, reasons),
checked against: static shapes, at most 3 dimensions greater than 1 (only the
innermost three), int8/uint8 tensors (int32 only for constant biases), and the
supported-operations list below. The Edge TPU compiler maps ops until the first it
cannot run; that op and every op after it run on the CPU, so
`info.first_cpu_op` names that op. Without `edgetpu_compiler` the placement is
tfship's static estimate and the report says so.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.errors import ConversionError, IncompatibleModel
from pipeline.runtimes.litert import LiteRTRunner, io_quantization
from pipeline.target import Artifact, BuildInputs, Target
from targets.support.litert import INT8_TOLERANCE
from targets.support.repair import Recipe

# Source: Coral documentation, "TensorFlow models on the Edge TPU", section
# "Supported operations" (coral.ai/docs/edgetpu/models-intro/#supported-operations),
# transcribed for compiler 16 / runtime 14 and named with TFLite builtin operator
# names. Value: the documented limitation tfship does not check itself ("" = none).
EDGETPU_SUPPORTED_OPS = {
    "ADD": "",
    "AVERAGE_POOL_2D": "no fused activation function",
    "CONCATENATION": "no fused activation function; a constant input must be all zeros with only 2 inputs",
    "CONV_2D": "same dilation in x and y",
    "DEPTHWISE_CONV_2D": "same dilation in x and y",
    "EXPAND_DIMS": "",
    "FULLY_CONNECTED": "default weights format only; output tensor one-dimensional",
    "L2_NORMALIZATION": "",
    "LOGISTIC": "",
    "LSTM": "unidirectional only",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "",
    "MAXIMUM": "",
    "MAX_POOL_2D": "no fused activation function",
    "MEAN": "no reduction in the batch dimension; reduction along x and/or y only",
    "MINIMUM": "",
    "MUL": "",
    "PACK": "no packing in the batch dimension",
    "PAD": "no padding in the batch dimension; padding along x and/or y only",
    "PRELU": "alpha must be constant",
    "QUANTIZE": "",
    "REDUCE_MAX": "no reduction in the batch dimension",
    "REDUCE_MIN": "no reduction in the batch dimension",
    "RELU": "",
    "RELU6": "",
    "RELU_N1_TO_1": "",
    "RESHAPE": "some reshapes of large tensors are not mapped",
    "RESIZE_BILINEAR": "3-D input/output; may stay on CPU to avoid precision loss",
    "RESIZE_NEAREST_NEIGHBOR": "3-D input/output; may stay on CPU to avoid precision loss",
    "RSQRT": "",
    "SLICE": "",
    "SOFTMAX": "1-D input of at most 16,000 elements",
    "SPACE_TO_DEPTH": "",
    "SPLIT": "no splitting in the batch dimension",
    "SQUARED_DIFFERENCE": "",
    "SQUEEZE": "",
    "STRIDED_SLICE": "",
    "SUB": "",
    "SUM": "reduction along x and/or y only",
    "TANH": "",
    "TRANSPOSE": "",
    "TRANSPOSE_CONV": "",
}
SOFTMAX_MAX_ELEMENTS = 16000
NOT_FOUND = "not found on PATH; placement is tfship's static estimate"


@dataclass(frozen=True)
class EdgeTPUOptions:
    io: Literal["int8", "uint8"] = "uint8"  # model input/output type
    calibration_samples: int = 64  # representative samples for int8 calibration
    repair: bool = False  # when model.tflite fails parity, search for an int8 recipe that passes
    repair_conversions: int = 8
    repair_seconds: float = 300.0
    recipes: tuple[Recipe, ...] = ()  # extra int8 files (`<name>.tflite`) built from a recipe
    compiler_timeout: float = 600.0  # seconds edgetpu_compiler may take before the variant is an error


def op_reasons(op: dict) -> list[str]:
    """Why one op cannot run on the Edge TPU ([] = it can)."""
    reasons = []
    if op["op"] not in EDGETPU_SUPPORTED_OPS:
        reasons.append(f"{op['op']} is not on the Edge TPU supported-operations list")
    for role in ("inputs", "outputs"):
        for i, tensor in enumerate(op[role]):
            label = f"{role[:-1]} {i}"
            shape = tensor["shape"]
            if any(d < 0 for d in shape):
                reasons.append(f"{label} has a dynamic shape {shape}")
            big = [d for d in shape[:-3] if d > 1]
            if big and not tensor["constant"]:  # the rule is about activations; conv filters are 4-D
                reasons.append(f"{label} shape {shape} has a dimension > 1 outside the innermost three")
            allowed = ("int8", "uint8") + (("int32",) if tensor["constant"] and role == "inputs" else ())
            if tensor["type"] not in allowed:
                reasons.append(f"{label} is {tensor['type']}, expected int8/uint8")
    if op["op"] == "SOFTMAX" and op["inputs"]:
        shape = op["inputs"][0]["shape"]
        elements = 1
        for d in shape:
            elements *= max(d, 1)
        if elements > SOFTMAX_MAX_ELEMENTS:
            reasons.append(f"softmax over {elements} elements (limit {SOFTMAX_MAX_ELEMENTS})")
    return reasons


def placement(ops: list[dict]) -> tuple[list[dict], dict | None]:
    """Per-op table and the first op that falls back to the CPU (None = all on the Edge TPU)."""
    rows, first = [], None
    for op in ops:
        reasons = op_reasons(op)
        if first is None and reasons:
            first = {"index": op["index"], "op": op["op"], "reasons": reasons}
        if first is not None and not reasons:
            reasons = [f"after op {first['index']} ({first['op']}), which runs on the CPU"]
        rows.append({"index": op["index"], "op": op["op"], "runs_on": "cpu" if first is not None else "edgetpu", "reasons": reasons})
    return rows, first


EDGETPU_CUSTOM_OP = "edgetpu-custom-op"


def run_edgetpu_compiler(model: Path, out_dir: Path, timeout: float = 600.0) -> dict:
    """Compile `model` with `edgetpu_compiler` when it is on PATH. Raises ConversionError
    when the compiler fails, times out, or writes no file whose inputs and outputs are
    `model`'s: a compiled file nothing vouches for is never shipped. The compiled file,
    or on failure whatever it wrote, is removed then; its log stays in the message."""
    compiler = shutil.which("edgetpu_compiler")
    if compiler is None:
        return {"edgetpu_compiler": NOT_FOUND}
    compiled = out_dir / f"{model.stem}_edgetpu.tflite"
    try:
        done = subprocess.run([compiler, "-s", "-o", str(out_dir), str(model)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        compiled.unlink(missing_ok=True)
        raise ConversionError(f"edgetpu_compiler ({compiler}) did not finish within {timeout:g} s{_log_tail(_text(exc.stdout) + _text(exc.stderr))}. "
                              "Nothing of the edgetpu target was published. Fix: raise the target's `compiler_timeout`, or compile a smaller model") from None
    log = (done.stdout + done.stderr).replace(str(out_dir), ".")  # the staging folder is no path to ship
    (out_dir / "edgetpu_compiler.log").write_text(log)
    if done.returncode != 0:
        compiled.unlink(missing_ok=True)
        raise ConversionError(f"edgetpu_compiler ({compiler}) exited with code {done.returncode} on {model.name}{_log_tail(log)}. "
                              "Nothing of the edgetpu target was published; model.tflite passed no Edge TPU compile. Fix what the compiler reports above")
    if not compiled.exists():
        raise ConversionError(f"edgetpu_compiler ({compiler}) exited 0 but wrote no {compiled.name}{_log_tail(log)}. Nothing of the edgetpu target was published")
    try:
        check = compiled_file_check(model.read_bytes(), compiled.read_bytes())
    except ConversionError as exc:
        compiled.unlink()
        raise ConversionError(f"edgetpu_compiler ({compiler}) exited 0, but {compiled.name} {exc}{_log_tail(log)}. Nothing of the edgetpu target was published") from None
    return {"edgetpu_compiler": compiler, "edgetpu_compiler_exit_code": 0, "edgetpu_compiler_log": log[-4000:], "compiled_file": compiled.name, "compiled_check": check}


def _text(output) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else (output or "")


def _log_tail(log: str, lines: int = 8) -> str:
    tail = [line for line in log.strip().splitlines() if line.strip()][-lines:]
    return (": " + " | ".join(tail)) if tail else " (it printed nothing)"


def _io_tensors(content: bytes) -> list[tuple]:
    """(role, shape, type, scales, zero points) of the main subgraph's inputs and outputs."""
    from targets.support import litert

    model = litert.read_model(content)
    graph = model.subgraphs[0]
    rows = []
    for role, indices in (("input", graph.inputs), ("output", graph.outputs)):
        for i in indices if indices is not None else []:
            t = graph.tensors[i]
            q = t.quantization
            scales = tuple(round(float(x), 9) for x in (q.scale if q is not None and q.scale is not None else ()))
            zeros = tuple(int(x) for x in (q.zeroPoint if q is not None and q.zeroPoint is not None else ()))
            rows.append((role, tuple(int(d) for d in (t.shape if t.shape is not None else ())), int(t.type), scales, zeros))
    return rows


def compiled_file_check(model: bytes, compiled: bytes) -> dict:
    """What can be checked of a compiled file without an Edge TPU: it is a TFLite model
    whose inputs and outputs (shapes, types, quantization) are the parity-checked
    model's, and how many ops the compiler put into Edge TPU custom ops."""
    from targets.support import litert

    try:
        io = _io_tensors(compiled)
        ops = litert.list_ops(compiled)
    except Exception as exc:  # the flatbuffer reader's own error: the file is no TFLite model
        raise ConversionError(f"is not a readable TFLite model ({type(exc).__name__}: {str(exc)[:200]})") from None
    expected = _io_tensors(model)
    if io != expected:
        raise ConversionError(f"has other inputs/outputs than model.tflite (shape, type, quantization): {io} against {expected}")
    custom = sum(op["op"] == EDGETPU_CUSTOM_OP for op in ops)
    return {"same_io_as": "model.tflite", "edgetpu_custom_ops": custom, "cpu_ops": len(ops) - custom}


def _calibration_crash(static_saved_model: Path, conv, layers: list[str], reason: str) -> str:
    """The message for a calibrator crash: where the model loops (the converter names nothing)."""
    from dataclasses import replace

    from targets.support import litert

    loops: list[str] = []
    try:
        float_model, _ = litert.convert(static_saved_model, replace(conv, variant="float32"), None, layers)
        loops = litert.layers_of_tensors(litert.op_output_names(float_model, "WHILE"), layers)
    except (ConversionError, IncompatibleModel):
        pass
    where = f"calibration of a model with WHILE loops in layer{'s' if len(loops) > 1 else ''} {', '.join(repr(w) for w in loops)}" if loops else "calibration"
    return (
        f"Edge TPU int8: {where}: {reason} (the model converted at the Edge TPU's batch of 1). "
        "No fix was found: the Edge TPU needs every op in int8, so there is no float fallback for it; the "
        "tflite target's float variants of the same model are unaffected."
    )


class EdgeTPUTarget(Target):
    name = "edgetpu"
    description = "Edge TPU: full-integer int8 TFLite, batch 1, per-op placement check"
    Options = EdgeTPUOptions

    def check_options(self, options: EdgeTPUOptions, model: dict) -> list[tuple[str, str]]:
        problems = []
        if options.calibration_samples < 1:
            problems.append(("calibration_samples", "expected a positive number of samples"))
        if not options.compiler_timeout > 0:
            problems.append(("compiler_timeout", "expected a positive number of seconds"))
        for spec in model.get("inputs", ()):
            if spec.dynamic_dims:
                names = ", ".join(f"'{name}' (axis {axis})" for axis, name in spec.dynamic_dims)
                problems.append(("", f"input '{spec.name}' has dynamic dimension(s) {names}; the Edge TPU runs static shapes only. "
                                 f"Export a fixed shape for this target: a config whose input '{spec.name}' gives every dimension but the batch as a number"))
        data = model.get("data")
        if data is not None and data.samples < options.calibration_samples:
            problems.append(
                ("calibration_samples", f"calibration uses {options.calibration_samples} samples but `data.samples` is {data.samples}; raise data.samples or lower calibration_samples")
            )
        return problems + _check_recipes(options, data)

    def variants(self, options: EdgeTPUOptions) -> tuple[str, ...]:
        return ("",) + tuple(r.name for r in options.recipes) if options.recipes else ("",)

    def repair_variants(self, options: EdgeTPUOptions) -> tuple[str, ...]:
        return ("",) if options.repair else ()

    def build(self, job: BuildInputs) -> list[Artifact]:
        from pipeline.stages.savedmodel import write_saved_model
        from pipeline.stages.trace import make_function
        from targets.support import litert

        options: EdgeTPUOptions = job.target.options
        where = f"model '{job.model.name}', edgetpu calibration"
        litert.check_calibration(job.model.inputs, job.calibration, options.calibration_samples, where)
        layers = litert.keras_layer_names(job.loaded.obj)
        conv = litert.Conversion(variant="int8", io=options.io, calibration_samples=options.calibration_samples)
        with tempfile.TemporaryDirectory(prefix="tfship-edgetpu-") as scratch:
            static = Path(scratch) / "batch1"
            write_saved_model(static, job.loaded, {"serving_default": make_function(job.model, job.loaded, batch=1)})
            # In a child process: the calibrator can crash (a Keras RNN under int8: SIGSEGV).
            try:
                content, seconds = litert.convert_isolated(static, conv, job.calibration, job.model.inputs, options.calibration_samples, layers, job.model.input_names)
            except ConversionError as exc:
                if "crashed" not in (getattr(exc, "reason", None) or ""):
                    raise
                raise ConversionError(_calibration_crash(static, conv, layers, exc.reason)) from exc
            except IncompatibleModel as exc:
                select = (getattr(exc, "ops", None) or {}).get("select_tf_ops")
                if not select:
                    raise
                # The tflite advice (allow Select TF ops) does not apply: the Edge TPU compiler
                # maps builtin int8 ops only, and a Flex op cannot be quantized or compiled.
                text = str(exc).split(". Rewrite those layers")[0]
                raise IncompatibleModel(
                    f"Edge TPU: {text}. The Edge TPU runs builtin int8 ops only; Select TF ops (Flex) cannot be quantized for it, "
                    "so no fix was found within tfship: the model must compute those layers with builtin ops "
                    "(e.g. text processing outside the model, feeding token ids)."
                ) from exc
        model = job.out_dir / "model.tflite"
        model.write_bytes(content)
        ops = litert.list_ops(content)
        rows, first = placement(ops)
        runner = LiteRTRunner(model, job.model.output_names)
        info = {
            "size_bytes": len(content),
            "conversion_seconds": round(seconds, 2),
            "batch": 1,
            "outputs": list(job.model.output_names),
            "ops": litert.op_counts(ops),
            "quantization": io_quantization(runner, job.model.input_names),
            "calibration_samples": options.calibration_samples,
            "placement": rows,
            "ops_on_edgetpu": sum(r["runs_on"] == "edgetpu" for r in rows),
            "ops_on_cpu": sum(r["runs_on"] == "cpu" for r in rows),
            "first_cpu_op": first,
            "supported_ops_source": "Coral docs, 'TensorFlow models on the Edge TPU', Supported operations",
        }
        try:
            info.update(run_edgetpu_compiler(model, job.out_dir, options.compiler_timeout))
        except ConversionError as exc:  # a visible error of this variant; nothing of it is published
            for name in ("model.tflite", "model_edgetpu.tflite", "edgetpu_compiler.log"):
                (job.out_dir / name).unlink(missing_ok=True)
            artifacts = [Artifact.failed("", exc, info)]
        else:
            files = ["model.tflite"] + [f for f in ("model_edgetpu.tflite", "edgetpu_compiler.log") if (job.out_dir / f).exists()]
            unchecked = {"edgetpu_compiler.log": "the Edge TPU compiler's log"} if "edgetpu_compiler.log" in files else {}
            if "compiled_file" in info:
                check = info["compiled_check"]
                unchecked[info["compiled_file"]] = (
                    "not run by parity: it runs only on an Edge TPU. Parity ran model.tflite, the int8 model it was compiled from. "
                    f"Checked instead: edgetpu_compiler exited 0; same inputs and outputs (shapes, types, quantization) as model.tflite; "
                    f"{check['edgetpu_custom_ops']} Edge TPU custom op(s), {check['cpu_ops']} op(s) left for the CPU"
                )
            artifacts = [Artifact(variant="", files=tuple(files), tolerance=INT8_TOLERANCE, info=info, unchecked=unchecked)]
        if options.recipes:
            from targets.support import repair

            float_content = _batch1_float(job)
            for artifact in repair.build_recipe_variants(job, options.recipes, options.calibration_samples, float_content, {"int8": INT8_TOLERANCE}, "edgetpu"):
                artifacts.append(_with_placement(job, artifact))
        return artifacts

    def open(self, target_dir: Path, artifact: Artifact, threads: int | None = None):
        # Parity runs the CPU model (model.tflite); the compiled file needs an Edge TPU.
        return LiteRTRunner(Path(target_dir) / artifact.files[0], artifact.info.get("outputs") or (), threads=threads)

    def tensor_probe(self, target_dir, artifact, model, debug_dir):
        from pipeline.localize.probes import LiteRTProbe

        return LiteRTProbe(Path(target_dir) / artifact.files[0], tuple(artifact.info.get("outputs") or ()))

    def diagnose(self, job: BuildInputs, artifact: Artifact, parity: dict) -> dict | None:
        from targets.support import litert

        options: EdgeTPUOptions = job.target.options
        samples = min(options.calibration_samples, min(len(v) for v in job.calibration.values()))
        representative = litert.representative_dataset(job.calibration, job.model.inputs, samples)
        conv = litert.Conversion(variant="int8", io=options.io)
        try:
            table = litert.debug_quantization(job.saved_model_dir, conv, representative, job.model.input_names, litert.keras_layer_names(job.loaded.obj))
        except Exception as exc:  # the debugger is best effort: the failure itself stands
            return {"quantization_debugger": f"could not run: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}
        table["note"] = "the Edge TPU runs every op in int8: a layer kept in float would leave the TPU"
        return {"quantization_debugger": table}

    def repair(self, job: BuildInputs, artifact: Artifact, entry: dict, verify, log):
        """Recipes for the Edge TPU: integer activations only (no 16-bit, no float inputs);
        a layer kept in float and every op after it run on the CPU, as `placement` says."""
        from targets.support import repair

        options: EdgeTPUOptions = job.target.options
        if artifact.variant:
            return None
        if "repaired" in {r.name for r in options.recipes}:
            log("repair skipped: the recipe `repaired` is configured and checked on its own")
            return None
        repaired, record = repair.repair_variant(
            job, artifact, entry, verify, log, base="int8", name="repaired", float_content=_batch1_float(job),
            calibrated=options.calibration_samples, budget=repair.Budget(options.repair_conversions, options.repair_seconds),
            tolerance=INT8_TOLERANCE, target="edgetpu", edge=True, refuse=_nothing_on_the_tpu,
        )
        if repaired is None:
            return [], record
        repaired = _with_placement(job, repaired)
        record["ops_on_edgetpu"] = repaired.info["ops_on_edgetpu"]
        record["ops_on_cpu"] = repaired.info["ops_on_cpu"]
        record["first_cpu_op"] = repaired.info["first_cpu_op"]
        on, total = repaired.info["ops_on_edgetpu"], len(repaired.info["placement"])
        first = repaired.info["first_cpu_op"] or {}
        record["summary"] += f"; {on} of {total} ops would run on the Edge TPU" + (f" (from op {first.get('index')} {first.get('op')} on, the CPU)" if on < total else "")
        log(f"repair edgetpu: {on} of {total} ops of {repaired.files[0]} would run on the Edge TPU")
        return [repaired], record


def _nothing_on_the_tpu(content: bytes) -> str:
    """A file whose first op already runs on the CPU is not an Edge TPU model, whatever its parity."""
    from targets.support import litert

    rows, _ = placement(litert.list_ops(content))
    if rows and not any(r["runs_on"] == "edgetpu" for r in rows):
        return f"passes parity, but none of its {len(rows)} ops would run on the Edge TPU ({'; '.join(rows[0]['reasons'][:1])})"
    return ""


def _batch1_float(job: BuildInputs) -> bytes:
    """float32 flatbuffer of the batch-1 signature every recipe starts from."""
    from pipeline.stages.savedmodel import write_saved_model
    from pipeline.stages.trace import make_function
    from targets.support import repair

    with tempfile.TemporaryDirectory(prefix="tfship-edgetpu-") as scratch:
        static = Path(scratch) / "batch1"
        write_saved_model(static, job.loaded, {"serving_default": make_function(job.model, job.loaded, batch=1)})
        return repair.float_flatbuffer(job, saved_model_dir=static)


def _with_placement(job: BuildInputs, artifact: Artifact) -> Artifact:
    """A recipe's file with the Edge TPU placement of its ops (float ops run on the CPU)."""
    from targets.support import litert

    ops = litert.list_ops((job.out_dir / artifact.files[0]).read_bytes())
    rows, first = placement(ops)
    artifact.info.update(
        placement=rows,
        ops_on_edgetpu=sum(r["runs_on"] == "edgetpu" for r in rows),
        ops_on_cpu=sum(r["runs_on"] == "cpu" for r in rows),
        first_cpu_op=first,
        batch=1,
        edgetpu_compiler="not run on recipe files; placement is tfship's static estimate",
    )
    return artifact


def _check_recipes(options: EdgeTPUOptions, data) -> list[tuple]:
    from targets.support.repair import check_recipe

    problems = []
    for i, recipe in enumerate(options.recipes):
        if recipe.base != "int8":
            problems.append((("recipes", i, "base"), f"the Edge TPU runs int8 only; expected base: int8, got {recipe.base}"))
        if recipe.int16_layers:
            problems.append((("recipes", i, "int16_layers"), "the Edge TPU has no 16-bit activations; remove this key"))
        if recipe.float_inputs:
            problems.append((("recipes", i, "float_inputs"), "the Edge TPU takes integer inputs; remove this key"))
        if [r.name for r in options.recipes].count(recipe.name) > 1:
            problems.append((("recipes", i, "name"), f"recipe '{recipe.name}' is listed twice"))
        for key, message in check_recipe(recipe, ("model",), getattr(data, "samples", None)):
            problems.append((("recipes", i, key), message))
    if options.repair_conversions < 1:
        problems.append(("repair_conversions", "expected at least 1 conversion"))
    if options.repair_seconds <= 0:
        problems.append(("repair_seconds", "expected a positive number of seconds"))
    return problems


TARGET = EdgeTPUTarget()
