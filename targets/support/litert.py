"""LiteRT / TFLite helpers shared by the `tflite` and `edgetpu` targets.

- `Conversion` (frozen) describes one conversion; `convert()` runs the TFLite
  converter on a SavedModel (never on concrete functions: a Keras 3 model converted
  that way loses its weights and outputs NaN).
- `check_calibration()` / `representative_dataset()`: calibration samples checked
  against the input signature, fed one sample at a time.
- `list_ops()`: what is in a flatbuffer, for reports (running one is
  `pipeline.runtimes.litert`).
- `debug_quantization()`: `tf.lite.experimental.QuantizationDebugger`, worst layers first.

Nothing here imports TensorFlow at module import time.
"""
from __future__ import annotations

import csv
import io
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from pipeline.errors import ConversionError, IncompatibleModel
from pipeline.tolerance import INT8

VARIANTS = ("float32", "float16", "dynamic_range", "int8", "int16x8")
CALIBRATED = ("int8", "int16x8")  # variants that need a representative dataset

# Full-integer int8 budget, shared by the tflite `int8` variant and edgetpu.
INT8_TOLERANCE = INT8  # the int8 precision class (pipeline.tolerance)


@dataclass(frozen=True)
class Conversion:
    """One TFLite conversion of a SavedModel signature."""

    variant: str  # one of VARIANTS
    io: str = "float32"  # int8 | uint8 | float32: model I/O type of the `int8` variant
    allow_select_tf_ops: bool = False
    denylisted_nodes: tuple[str, ...] = ()  # tensors kept in float (int8 only)
    calibration_samples: int = 100
    signature: str = "serving_default"
    float_fallback: bool = False  # int8/int16x8: ops without an integer kernel stay float


# --------------------------------------------------------------------------- calibration


def check_calibration(inputs: Iterable[Any], calibration: dict[str, np.ndarray], needed: int, where: str) -> None:
    """Raise IncompatibleModel when calibration arrays do not fit the input specs.

    `inputs` are the config's InputSpecs; `needed` is how many samples the
    representative dataset will draw.
    """
    for spec in inputs:
        expected = f"[N, {', '.join(str(d) for d in spec.shape[1:])}] {spec.dtype}" if spec.shape else f"[N] {spec.dtype}"
        if spec.name not in calibration:
            raise IncompatibleModel(
                f"{where}: no calibration data for input '{spec.name}'; expected an array {expected}. "
                "Give data for every input under `data:` in the model's config."
            )
        array = np.asarray(calibration[spec.name])
        shape_ok = array.ndim == max(len(spec.shape), 1) and all(
            d is None or d == a for d, a in zip(spec.shape[1:], array.shape[1:])
        )
        if not shape_ok:
            raise IncompatibleModel(
                f"{where}: calibration data for input '{spec.name}' has shape {list(array.shape)}, expected {expected}. "
                "Fix the `data:` section of the model's config so its arrays match `inputs:`."
            )
        if spec.dtype == "string":  # bytes/str objects: any NumPy text or object array
            if array.dtype.kind not in "OSU":
                raise IncompatibleModel(
                    f"{where}: calibration data for input '{spec.name}' is {array.dtype}, expected strings. "
                    "Fix the `data:` section of the model's config so its dtypes match `inputs:`."
                )
        elif np.dtype(array.dtype) != np.dtype(spec.dtype):
            same_kind = np.issubdtype(array.dtype, np.floating) == np.issubdtype(np.dtype(spec.dtype), np.floating)
            if not same_kind:
                raise IncompatibleModel(
                    f"{where}: calibration data for input '{spec.name}' is {array.dtype}, expected {expected}. "
                    "Fix the `data:` section of the model's config so its dtypes match `inputs:`."
                )
        if len(array) < needed:
            raise IncompatibleModel(
                f"{where}: calibration needs {needed} samples for input '{spec.name}' but the data has {len(array)}. "
                f"Raise `data.samples` to at least {needed} or lower the target's `calibration_samples`."
            )


def representative_dataset(calibration: dict[str, np.ndarray], inputs: Iterable[Any], samples: int, on_sample=None):
    """A converter `representative_dataset`: one sample per step, keyed by input name.
    `on_sample()` is called after each sample (progress)."""
    specs = list(inputs)

    def generate():
        for i in range(samples):
            yield {spec.name: np.asarray(calibration[spec.name][i : i + 1]).astype(object if spec.dtype == "string" else spec.dtype) for spec in specs}
            if on_sample is not None:
                on_sample()

    return generate


# --------------------------------------------------------------------------- conversion


def _converter(saved_model_dir: Path, conv: Conversion, representative=None):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=[conv.signature])
    builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if conv.variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif conv.variant == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif conv.variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        builtins = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if conv.io != "float32":
            converter.inference_input_type = tf.as_dtype(conv.io)
            converter.inference_output_type = tf.as_dtype(conv.io)
    elif conv.variant == "int16x8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        builtins = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif conv.variant != "float32":
        raise ValueError(f"unknown TFLite variant {conv.variant!r}")
    if conv.float_fallback and conv.variant in CALIBRATED:
        builtins = builtins + [tf.lite.OpsSet.TFLITE_BUILTINS]
    select = [tf.lite.OpsSet.SELECT_TF_OPS] if conv.allow_select_tf_ops else []
    converter.target_spec.supported_ops = builtins + select
    return converter


def convert(saved_model_dir: Path, conv: Conversion, representative=None, layer_names: Iterable[str] = (), input_names: Iterable[str] = ()) -> tuple[bytes, float]:
    """Convert one variant; returns (flatbuffer, seconds).

    Ops without a TFLite kernel raise IncompatibleModel naming the op and the layer
    (`layer_names` are the Keras layer names used to resolve graph node names).
    """
    start = time.perf_counter()
    converter = _converter(saved_model_dir, conv, representative)
    content = run_converter(converter, conv, saved_model_dir, layer_names, representative, input_names)
    return content, time.perf_counter() - start


def run_converter(converter, conv: Conversion, saved_model_dir: Path, layer_names: Iterable[str] = (), representative=None, input_names: Iterable[str] = ()) -> bytes:
    """`converter.convert()`, its failures explained in the model's terms."""
    from tfship.compat.tensorflow import ConverterError

    try:
        with warnings.catch_warnings():
            # The converter's own calibration step runs the deprecated tf.lite.Interpreter.
            warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated", category=UserWarning)
            if conv.denylisted_nodes:
                return _convert_with_denylist(converter, conv, representative, list(input_names))
            return converter.convert()
    except ConverterError as exc:
        raise explain_converter_error(exc, conv, layer_names) from exc
    except Exception as exc:  # the converter raises RuntimeError/ValueError too
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        error = ConversionError(f"TFLite {conv.variant} conversion of {saved_model_dir} failed: {type(exc).__name__}: {first}")
        error.reason = first.rstrip(".")
        raise error from exc


def convert_child_main(job_file: str) -> None:
    """Child process of convert_isolated: convert, write back (bytes, seconds) or the error."""
    import pickle

    with open(job_file, "rb") as f:
        saved_model_dir, conv, calibration, inputs, samples, layer_names, input_names = pickle.load(f)
    try:
        result = ("ok", convert(saved_model_dir, conv, representative_dataset(calibration, inputs, samples), layer_names, input_names))
    except Exception as exc:  # sent to the parent, which raises it as its own
        result = ("error", exc if isinstance(exc, (ConversionError, IncompatibleModel)) else ConversionError(f"{type(exc).__name__}: {exc}"))
    with open(job_file + ".out", "wb") as f:
        pickle.dump(result, f)


def convert_isolated(saved_model_dir: Path, conv: Conversion, calibration: dict[str, np.ndarray], inputs: Iterable[Any], samples: int,
                     layer_names: Iterable[str] = (), input_names: Iterable[str] = ()) -> tuple[bytes, float]:
    """A calibrated conversion in a child process: the converter's calibrator can crash the
    process (seen: a Keras LSTM under int8 calibration dies with SIGSEGV), and one variant
    crashing must not take the target's other variants with it. A fresh interpreter, not
    a fork: TensorFlow is not fork-safe (and workers are daemonic, so no multiprocessing)."""
    import os
    import pickle
    import signal
    import subprocess
    import sys
    import tempfile

    inputs = list(inputs)
    calibration = {spec.name: np.asarray(calibration[spec.name][:samples]) for spec in inputs}
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding targets/ and pipeline/
    with tempfile.TemporaryDirectory(prefix="tfship-convert-") as scratch:
        job_file = os.path.join(scratch, "job.pkl")
        with open(job_file, "wb") as f:
            pickle.dump((Path(saved_model_dir), conv, calibration, inputs, samples, list(layer_names), list(input_names)), f)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])]))
        code = "import sys; from targets.support.litert import convert_child_main; convert_child_main(sys.argv[1])"
        proc = subprocess.run([sys.executable, "-c", code, job_file], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if not os.path.exists(job_file + ".out"):
            name = signal.Signals(-proc.returncode).name if proc.returncode < 0 else f"exit code {proc.returncode}"
            error = ConversionError(f"TFLite {conv.variant} conversion of {saved_model_dir} crashed the converter ({name}) during calibration")
            error.reason = f"the TFLite converter crashed ({name}) while calibrating {conv.variant}"
            raise error
        with open(job_file + ".out", "rb") as f:
            kind, value = pickle.load(f)
    if kind == "error":
        raise value
    return value


def _convert_with_denylist(converter, conv: Conversion, representative, input_names: list[str]) -> bytes:
    """Full-integer model with the listed tensors kept in float (selective quantization)."""
    import tensorflow as tf

    if conv.variant != "int8":
        raise ConversionError(f"denylisted_nodes applies to the int8 variant only, not {conv.variant}")
    if conv.io == "uint8":
        raise IncompatibleModel("denylisted_nodes supports int8 or float32 model I/O, not uint8; set `int8_io: int8` or `float32`")
    converter.inference_input_type = tf.float32
    converter.inference_output_type = tf.float32
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=list(conv.denylisted_nodes), fully_quantize=conv.io == "int8"
    )
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=_positional(representative, input_names), debug_options=options
    )
    _align_inputs(debugger, input_names)
    return debugger.get_nondebug_quantized_model()


_LOC_OP = re.compile(r"loc\(callsite\(fused\[\"(\w+):\", \"([^\"@]+)(?:@[^\"]*)?\"\][^\n]*?'tf\.(\w+)' op is neither a custom op nor a flex op")
_SELECT_LINE = re.compile(r"TF Select ops: ([^\n]+)")
_CUSTOM_LINE = re.compile(r"Custom ops: ([^\n]+)")


def keras_layer_names(obj) -> list[str]:
    """Every layer name of a Keras model (nested models included); [] for other objects."""
    names, stack = [], [obj]
    while stack:
        item = stack.pop()
        for layer in getattr(item, "layers", None) or []:
            names.append(layer.name)
            stack.append(layer)
    return names


def layer_of(node: str, layer_names: Iterable[str]) -> str | None:
    """The Keras layer a graph node belongs to: the deepest scope naming a layer.

    Keras 3 uniquifies name scopes with a `_1` suffix, so that suffix is tried off too.
    """
    names = set(layer_names)
    found = None
    for part in node.split("/")[:-1]:
        base = re.sub(r"_\d+$", "", part)
        if part in names:
            found = part
        elif base in names:
            found = base
    return found


def _ops_with_nodes(text: str) -> dict[str, list[str]]:
    nodes: dict[str, list[str]] = {}
    for _, node, op in _LOC_OP.findall(text):
        nodes.setdefault(op, [])
        if node not in nodes[op]:
            nodes[op].append(node)
    return nodes


def _first_error(text: str) -> str:
    """The converter's first `error:` line (MLIR prefixes it with a location), else its first line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in lines:
        if "error:" in line:
            return line.split("error:", 1)[1].strip() or line
    return lines[0] if lines else ""


_LOCATED = re.compile(r"loc\(callsite\(fused\[\"(\w+):\", \"([^\"@]+)(?:@[^\"]*)?\"\].*?\)\): (?:error: )?(.+)")


def located_conversion_error(text: str, conv: Conversion, layer_names: Iterable[str]) -> ConversionError | None:
    """A converter error on one graph node: its op, its Keras layer and the converter's reason."""
    match = _LOCATED.search(text)
    if not match:
        return None
    op, node, reason = match.group(1), match.group(2), match.group(3).strip().rstrip(".")
    layer = layer_of(node, layer_names)
    where = f"layer '{layer}' (node {node})" if layer else f"node {node}"
    error = ConversionError(f"TFLite {conv.variant} conversion failed: {op} in {where}: {reason}")
    error.op, error.layers, error.reason = op, [layer] if layer else [], reason
    return error


def explain_converter_error(exc: Exception, conv: Conversion, layer_names: Iterable[str]) -> Exception:
    text = str(exc)
    layer_names = list(layer_names)
    nodes = _ops_with_nodes(text)
    select = sorted({o.strip() for m in _SELECT_LINE.findall(text) for o in m.split(",")})
    custom = sorted({o.strip() for m in _CUSTOM_LINE.findall(text) for o in m.split(",")})
    if not select and not custom:
        return located_conversion_error(text, conv, layer_names) or ConversionError(f"TFLite {conv.variant} conversion failed: {_first_error(text) or type(exc).__name__}")

    def describe(op: str) -> str:
        where = []
        for node in nodes.get(op, []):
            layer = layer_of(node, layer_names)
            where.append(f"layer '{layer}' (node {node})" if layer else f"node {node}")
        return f"{op} in {', '.join(where)}" if where else op

    parts = []
    if custom:
        parts.append(
            "ops with neither a TFLite kernel nor a Select TF (Flex) kernel: "
            + "; ".join(describe(o) for o in custom)
            + ". Rewrite those layers with ops TFLite supports"
            + (" (here they compute in float64: compute in float32)" if "f64>" in text else "")
        )
    if select and not conv.allow_select_tf_ops:
        parts.append(
            "ops that need Select TF ops (Flex): "
            + "; ".join(describe(o) for o in select)
            + ". Rewrite those layers with TFLite builtin ops, or set `allow_select_tf_ops: true` on the tflite target "
            "(the .tflite file then needs the Flex delegate at run time)"
        )
    if not parts:
        return ConversionError(f"TFLite {conv.variant} conversion failed: {_first_error(text) or type(exc).__name__}")
    error = IncompatibleModel(f"TFLite {conv.variant} conversion refused: " + "; and ".join(parts) + ".")
    error.ops = {"select_tf_ops": select, "custom_ops": custom, "nodes": nodes}
    return error


# --------------------------------------------------------------------------- variant failures

_UNSUPPORTED_QUANT = re.compile(r"Quantization to (\S+) not yet supported for op: '(\w+)'")
_PREPARE = re.compile(r"Node number (\d+) \((\w+)\) failed to prepare")


def unsupported_quantized_op(text: str) -> str | None:
    """The builtin op the quantizer has no kernel for ('PRELU'), from its message."""
    match = _UNSUPPORTED_QUANT.search(text)
    return match.group(2) if match else None


_UNCALIBRATED = re.compile(r"Failed for tensor (\S+)")


def uncalibrated_tensor(text: str) -> str | None:
    """The tensor the calibrator recorded no range for, from its message."""
    match = _UNCALIBRATED.search(text)
    return match.group(1).rstrip(".") if match else None


def op_output_names(content: bytes, op_type: str | None = None, index: int | None = None) -> list[str]:
    """Output tensor names of the main subgraph's ops of one type (or the op at `index`)."""
    model = read_model(content)
    names = _builtin_names()
    graph = model.subgraphs[0]
    out = []
    for i, op in enumerate(graph.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        if (index is not None and i == index) or (index is None and kind == op_type):
            for t in op.outputs if op.outputs is not None else []:
                name = graph.tensors[t].name
                out.append(name.decode() if isinstance(name, bytes) else str(name))
    return out


def layers_of_tensors(tensor_names: Iterable[str], layer_names: Iterable[str]) -> list[str]:
    """Keras layers named by TFLite tensor names (`model_1/layer_1/op;...`), first seen first."""
    found: list[str] = []
    layer_names = list(layer_names)
    for tensor in tensor_names:
        for part in tensor.split(";"):
            layer = layer_of(part + "/x", layer_names)
            if layer and layer not in found:
                found.append(layer)
                break
    return found


def check_prepares(content: bytes | Path, signature: str = "serving_default") -> None:
    """Raise RuntimeError when LiteRT cannot prepare (allocate) the model's signature
    (`content` is the flatbuffer, or the path of its file)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(content)) if isinstance(content, Path) else Interpreter(model_content=content)
    interpreter.get_signature_runner(signature)
    interpreter.allocate_tensors()


def prepare_failure(exc: Exception, content: bytes, layer_names: Iterable[str]) -> tuple[str, list[str], str]:
    """(op, layers, LiteRT's own reason) for a model LiteRT failed to prepare."""
    text = " ".join(str(exc).split())
    match = _PREPARE.search(text)
    reason = text.split("Node number")[0].strip().rstrip(".") or text
    reason = re.sub(r"^\S+\.cc:\d+ ", "", reason)
    if not match:
        return "", [], reason
    layers = layers_of_tensors(op_output_names(content, index=int(match.group(1))), layer_names)
    return match.group(2), layers, reason


# --------------------------------------------------------------------------- inspection


def _builtin_names() -> dict[int, str]:
    from tfship.compat.litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def _tensor_type_names() -> dict[int, str]:
    from tfship.compat.litert import schema_py_generated as schema

    return {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_") and isinstance(v, int)}


def read_model(content: bytes):
    from tfship.compat.litert import schema_py_generated as schema

    return schema.ModelT.InitFromPackedBuf(bytearray(content), 0)


def list_ops(content: bytes) -> list[dict]:
    """Every operator of the main subgraph in execution order, with tensor details."""
    model = read_model(content)
    names = _builtin_names()
    types = _tensor_type_names()
    graph = model.subgraphs[0]
    ops = []
    for index, op in enumerate(graph.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = names.get(builtin, str(builtin))
        if name == "CUSTOM":
            name = code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)

        def describe(indices):
            out = []
            for t in indices if indices is not None else []:
                if t < 0:
                    continue
                tensor = graph.tensors[t]
                shape = [int(d) for d in (tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape if tensor.shape is not None else [])]
                q = tensor.quantization
                quantized = q is not None and q.scale is not None and len(q.scale) > 0
                is_const = model.buffers[tensor.buffer].data is not None if tensor.buffer < len(model.buffers) else False
                out.append({"type": types.get(tensor.type, str(tensor.type)), "shape": shape, "quantized": bool(quantized), "constant": bool(is_const)})
            return out

        ops.append({"index": index, "op": name, "inputs": describe(op.inputs), "outputs": describe(op.outputs)})
    return ops


def op_counts(ops: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in ops:
        counts[op["op"]] = counts.get(op["op"], 0) + 1
    return dict(sorted(counts.items()))


def flex_ops(ops: list[dict]) -> list[str]:
    return sorted({op["op"] for op in ops if op["op"].startswith("Flex")})


# --------------------------------------------------------------------------- debugging


def _positional(representative, names: list[str]):
    """The debugger feeds positional lists; the converter's dataset is keyed by name.

    `names` is read lazily: `_align_inputs` puts it in the model's input order once
    the debugger has built its interpreter (before it draws any sample).
    """

    def generate():
        for sample in representative():
            yield [sample[n] for n in names]

    return generate


def _rounded_to_zero(float_tensors, quant_tensors, scale, zero_point) -> float:
    """Fraction of a tensor's non-zero float values that quantize to zero."""
    f = np.concatenate([np.ravel(t) for t in float_tensors])
    q = np.concatenate([np.ravel(t) for t in quant_tensors])
    nonzero = np.abs(f) > 0
    return float(np.mean(q[nonzero] == zero_point)) if nonzero.any() else 0.0


def _align_inputs(debugger, names: list[str]) -> None:
    from tfship.compat.tensorflow import debugger_input_details

    order = [d["name"] for d in debugger_input_details(debugger)]
    aligned = [next((n for n in names if o in (f"serving_default_{n}:0", n)), None) for o in order]
    if None not in aligned and sorted(aligned) == sorted(names):
        names[:] = aligned


def debug_quantization(saved_model_dir: Path, conv: Conversion, representative, input_names: Iterable[str], layer_names: Iterable[str] = (), top: int = 5) -> dict:
    """Run QuantizationDebugger on the calibrated model; worst layers by RMSE/scale first.

    RMSE/scale is the root-mean-square error between the float and the
    quantized-then-dequantized tensor in units of that tensor's quantization step:
    about 0.29 (1/sqrt(12)) is plain rounding error; much more means errors pile up
    there. `rounded_to_zero` is the fraction of non-zero float values that became
    zero: high when an outlier stretched the tensor's range so far that the step
    swallows ordinary values.
    """
    import tensorflow as tf

    converter = _converter(saved_model_dir, Conversion(variant="int8", io="float32", signature=conv.signature), representative)
    converter.inference_input_type = tf.float32
    converter.inference_output_type = tf.float32
    names = list(input_names)
    options = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics={"rounded_to_zero": _rounded_to_zero})
    with warnings.catch_warnings():
        # The debugger itself runs the deprecated tf.lite.Interpreter.
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated", category=UserWarning)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=_positional(representative, names), debug_options=options
        )
        _align_inputs(debugger, names)
        debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    buffer.seek(0)
    rows = []
    for row in csv.DictReader(buffer):
        scale = float(row["scale"])
        rmse = float(row["mean_squared_error"]) ** 0.5
        tensor = row["tensor_name"]
        rows.append(
            {
                "tensor": tensor,
                "layer": layer_of(tensor.split(";")[0] + "/x", layer_names) or tensor.split(";")[0],
                "op": row["op_name"],
                "rmse_over_scale": round(rmse / scale, 3) if scale else None,
                "rounded_to_zero": round(float(row["rounded_to_zero"]), 3),
                "rmse": float(f"{rmse:.4g}"),
                "scale": float(f"{scale:.4g}"),
                "max_abs_error": float(f"{float(row['max_abs_error']):.4g}"),
            }
        )
    rows.sort(key=lambda r: -(r["rmse_over_scale"] or 0))
    worst = rows[:top]
    # Plain rounding costs about 0.29 steps RMS; a tensor whose step swallows most
    # of its non-zero values (an outlier range) is damaged even when that ratio is
    # low. Softmax/logistic outputs have a fixed 1/256 step, so small probabilities
    # rounding to zero there is expected, not an outlier.
    culprits = [
        r
        for r in worst
        if (r["rmse_over_scale"] or 0) > 1.0 or (r["rounded_to_zero"] > 0.5 and r["op"] not in ("SOFTMAX", "LOGISTIC"))
    ]
    # No advice here: a fix is printed only once a repair search has built and verified it.
    return {"worst_layers": worst, "layers_checked": len(rows), "denylist_candidates": [r["tensor"] for r in culprits]}
