"""XLA helpers shared by the `xla` and `tpu` targets: compiler IR dumps, the XLA
compile gate, the TPU-incompatible op scan and the bfloat16 emulation on CPU.

TensorFlow is imported inside functions: the target registry imports the targets
(and so this module) while configs are validated, before TensorFlow loads.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConversionError, IncompatibleModel
from pipeline.runtimes.iree import main_types, tensor_type

# --------------------------------------------------------------------------- inputs


def batch_of(pool: np.ndarray, batch: int) -> np.ndarray:
    """`batch` rows taken cyclically from a calibration pool [N, ...]."""
    reps = -(-batch // len(pool))
    return np.concatenate([pool] * reps, axis=0)[:batch] if reps > 1 else pool[:batch]


def fit_axis(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    """`array` cut or zero-padded to `size` along `axis`."""
    have = array.shape[axis]
    if have >= size:
        return np.take(array, np.arange(size), axis=axis)
    pad = [(0, 0)] * array.ndim
    pad[axis] = (0, size - have)
    return np.pad(array, pad)


def static_inputs(config: Any, calibration: dict[str, np.ndarray], batch: int, dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Representative inputs at a static batch size (and sizes of the dynamic dimensions,
    fitted from the pool's), in the config's dtypes."""
    out = {}
    for spec in config.inputs:
        pool = np.asarray(calibration[spec.name])
        if not spec.batched:
            out[spec.name] = pool[0]  # an unbatched input holds one value per sample
            continue
        value = batch_of(pool, batch).astype(spec.dtype, copy=False)
        for axis, name in spec.dynamic_dims:
            if dims and name in dims:
                value = fit_axis(value, axis, dims[name])
        out[spec.name] = value
    return out


def shape_text(batch: int, dims: dict[str, int] | None = None) -> str:
    """`batch 8` or `batch 8, seq=32`: a static shape in messages."""
    return ", ".join([f"batch {batch}", *(f"{k}={v}" for k, v in (dims or {}).items())])


def shape_dir(batch: int, dims: dict[str, int] | None = None) -> str:
    """`b8` or `b8-seq32`: the IR folder of one static shape."""
    return "-".join([f"b{batch}", *(f"{k}{v}" for k, v in (dims or {}).items())])


def ir_batches(config: Any, requested: tuple[int, ...]) -> tuple[int, ...]:
    """Static batch sizes to compile: the fixed batch of the model when it has one."""
    fixed = {s.fixed_batch for s in config.inputs if s.batched} - {None}
    if fixed:
        return (fixed.pop(),)
    return tuple(sorted(set(requested)))


# --------------------------------------------------------------------------- compiler IR

IR_FORMS = ("frozen", "parameters")
# A FileLineColLoc in MLIR's location syntax: `"path":line:col` (and a range's `to ...`).
_MLIR_FILE_LOC = re.compile(r'"(?:[^"\\]|\\.)*":\d+:\d+(?: to (?:\d+)?:\d+)?')
# HLO op metadata naming the Python frame that created the op.
_HLO_SOURCE = re.compile(r' source_file="(?:[^"\\]|\\.)*"| source_(?:end_)?(?:line|column)=\d+')
# TensorFlow names functions with a process-wide counter (`while_body_2224`, `__inference_serve_4455`):
# a digit run after `_` in a symbol is renumbered in order of appearance, so the same model gives
# the same names in any process.
_MHLO_COPY = re.compile(r"mhlo\.copy (%[\w#]+) : (tensor<[^>]*>)")
_COUNTER = re.compile(r"(?<=_)\d{2,}(?=[_.]|$)")


def _renumbered(names: list[str], keep: set[str]) -> dict[str, str]:
    """Symbol -> the same symbol with its counters renumbered u1, u2, ... in order of appearance."""
    counters: dict[str, str] = {}

    def number(match: re.Match) -> str:
        return counters.setdefault(match.group(0), f"u{len(counters) + 1}")

    mapping = {name: (name if name in keep else _COUNTER.sub(number, name)) for name in dict.fromkeys(names)}
    if len(set(mapping.values())) != len(mapping):  # never seen; a collision would change the program
        return {name: name for name in mapping}
    return mapping


def module_symbol(model_name: str) -> str:
    """The IR module's name: the model's, as an identifier (an IREE module is called by it)."""
    name = re.sub(r"\W", "_", model_name)
    return name if re.match(r"[A-Za-z_]", name) else f"m_{name}"


def portable_stablehlo(text: str, module: str) -> str:
    """StableHLO text without the build machine in it and in StableHLO only.

    File locations (TensorFlow's Python frames: absolute paths of the venv) become
    `unknown`, name locations stay (they carry the layer names), the module is named
    `module` and function counters are renumbered. `mhlo.copy`, which XLA leaves in its
    StableHLO output and StableHLO has no op for, becomes the identity it is (a reshape
    to the same type), so any StableHLO consumer reads the file."""
    text = _MLIR_FILE_LOC.sub("unknown", text)
    text = _MHLO_COPY.sub(r"stablehlo.reshape \1 : (\2) -> \2", text)
    text = re.sub(r"^module @[\w.$-]+", f"module @{module}", text, count=1, flags=re.M)
    names = re.findall(r"func\.func (?:private |public )?@([\w.$-]+)", text)
    mapping = _renumbered(names, keep={"main"})
    return re.sub(r"@([A-Za-z_][\w.$-]*)", lambda m: "@" + mapping.get(m.group(1), m.group(1)), text)


def portable_hlo(text: str, module: str) -> str:
    """HLO text without the build machine in it (see portable_stablehlo)."""
    text = _HLO_SOURCE.sub("", text)
    text = re.sub(r"^HloModule [^\s,]+", f"HloModule {module}", text, count=1, flags=re.M)
    names = re.findall(r"^(?:ENTRY )?%([\w.-]+) \(", text, flags=re.M)
    mapping = _renumbered(names, keep=set())
    return re.sub(r"%([\w.-]+)", lambda m: "%" + mapping.get(m.group(1), m.group(1)), text)


def write_compiler_ir(fn: Any, args: list, folder: Path, rel: str, module: str) -> list[str]:
    """Write `hlo.txt` and `stablehlo.mlir` of a jit_compile tf.function at these args,
    free of the build machine's paths and of process counters (portable_stablehlo)."""
    from tfship.compat.tensorflow import compiler_ir

    folder.mkdir(parents=True, exist_ok=True)
    getter = fn.experimental_get_compiler_ir(*args)
    (folder / "hlo.txt").write_text(portable_hlo(compiler_ir(getter, "hlo"), module))
    (folder / "stablehlo.mlir").write_text(portable_stablehlo(compiler_ir(getter, "stablehlo"), module))
    return [f"{rel}/hlo.txt", f"{rel}/stablehlo.mlir"]


@dataclass(frozen=True)
class IrArgument:
    """One argument of the IR's `main` beyond the model's inputs: a captured variable (or
    constant) of the traced function, in the order XLA takes them."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    value: Any  # the tf.Variable, or the captured tensor

    def numpy(self) -> np.ndarray:
        return np.asarray(self.value.numpy())


def ir_arguments(concrete: Any) -> list[IrArgument]:
    """The captured inputs of a concrete function, which XLA appends to the model's inputs
    (`XLA_Args`) in this order, named by the variable they read."""
    import tensorflow as tf

    variables = {id(v.handle): v for v in concrete.graph.variables}
    out = []
    for index, captured in enumerate(concrete.captured_inputs):
        variable = variables.get(id(captured))
        if variable is None and captured.dtype == tf.resource:
            raise ConversionError(
                f"the traced function captures a resource that is not a variable (a lookup table?) as argument {index}; "
                "XLA cannot take it as a weight. Expected only variables and constants to be captured."
            )
        value = variable if variable is not None else captured
        name = variable.name.split(":")[0] if variable is not None else f"captured_constant_{index}"
        out.append(IrArgument(name, tuple(int(d) for d in value.shape), value.dtype.name, value))
    return out


def frozen_jit_function(fn: Any, args: list) -> tuple[Any, list[str]]:
    """A jit_compile function computing `fn` at these args with every variable frozen into a
    constant, so its IR's `main` takes only the model's inputs; and the output names in the
    order `main` returns them."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = fn.get_concrete_function(*args)
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False)
    names = sorted(concrete.structured_outputs)  # a dict's flat order: its keys sorted
    specs = [tf.TensorSpec(a.shape, a.dtype, name=s.name) for a, s in zip(args, concrete.structured_input_signature[0])]

    def frozen_serve(*inputs):
        return dict(zip(names, tf.nest.flatten(frozen(*inputs))))

    jit = tf.function(frozen_serve, input_signature=specs, jit_compile=True)
    left = jit.get_concrete_function().captured_inputs
    if left:
        raise ConversionError(f"freezing left {len(left)} captured input(s) (resources that are not variables); the frozen IR would still need them as arguments")
    return jit, names


def xla_gate(fn: Any, args: list, batch: int | str, model_name: str, what: str) -> None:
    """Prove XLA compiles `fn` at a static shape on CPU, or say which op it cannot compile.
    `batch` is the static batch, or a shape_text()."""
    try:
        fn.experimental_get_compiler_ir(*args)(stage="hlo")
    except Exception as exc:  # XLA raises InvalidArgumentError/UnimplementedError/... with the op in the text
        text = str(exc)
        op = re.search(r"No registered '(\w+)' OpKernel", text) or re.search(r"unsupported operations[^:]*: (\w+)", text)
        first = next((line for line in text.splitlines() if line.strip()), type(exc).__name__)
        raise IncompatibleModel(
            f"{what}: XLA cannot compile model '{model_name}' at static {batch if isinstance(batch, str) else f'batch {batch}'} on CPU"
            f"{f' (op {op.group(1)})' if op else ''}: {first.strip()[:400]}. "
            "Expected every op to have an XLA kernel and every shape to be static. "
            "Fix: replace the op with XLA-compilable TensorFlow ops, or export with a target that does not need XLA (savedmodel)."
        ) from exc


def timed_compile(fn: Any, args: list) -> tuple[float, Any]:
    """Run a jit_compile function twice: (compile seconds, outputs of the first run)."""
    start = time.perf_counter()
    first = fn(*args)
    first_call = time.perf_counter() - start
    start = time.perf_counter()
    fn(*args)
    steady = time.perf_counter() - start
    return max(first_call - steady, 0.0), first


def to_numpy(outputs: dict) -> dict[str, np.ndarray]:
    return {name: np.asarray(t.numpy() if hasattr(t, "numpy") else t) for name, t in outputs.items()}


def determinism_check(fn: Any, args: list, model_name: str, where: str) -> dict:
    """Two runs of the compiled function on the same input must be bitwise equal.

    A difference is raised as ConversionError: a serving artifact whose answer depends
    on the run cannot be checked by any parity budget, so it is not exported.
    """
    first = to_numpy(fn(*args))
    second = to_numpy(fn(*args))
    differs = {}
    for name in first:
        a, b = first[name], second[name]
        if a.tobytes() != b.tobytes():
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64)) if a.dtype.kind in "fiu" else None
            differs[name] = float(np.nanmax(diff)) if diff is not None and diff.size else None
    if differs:
        detail = ", ".join(f"'{n}' (max |difference| {d})" for n, d in differs.items())
        raise ConversionError(
            f"{where}: two runs of the XLA-compiled function of model '{model_name}' on the same input differ: {detail}. "
            "Expected bitwise-equal outputs. Fix: remove nondeterministic ops (unseeded random ops, atomics) from the model."
        )
    return {"runs": 2, "bitwise_equal": True, "outputs": sorted(first)}


def write_stablehlo_ir(fn: Any, args: list, config: Any, folder: Path, rel: str, form: str, module: str) -> tuple[list[str], list[IrArgument], dict]:
    """The IR of one compiled shape in `form` (IR_FORMS): `hlo.txt`, `stablehlo.mlir`, and
    the signature of its `main` (written by the caller, which knows where the weights go).

    frozen: every weight is a constant of the IR, `main` takes the model's inputs only.
    parameters: `main` takes the model's inputs, then one argument per weight
    (returned as IrArgument, in argument order)."""
    concrete = fn.get_concrete_function(*args)
    if form == "frozen":
        compiled, _ = frozen_jit_function(fn, args)
        arguments: list[IrArgument] = []
    else:
        compiled, arguments = fn, ir_arguments(concrete)
    files = write_compiler_ir(compiled, args, folder, rel, module)
    outputs = concrete.structured_outputs
    inputs = [
        {"index": i, "kind": "input", "name": spec.name, "shape": [int(d) for d in a.shape], "dtype": a.dtype.name, "batched": spec.batched}
        for i, (spec, a) in enumerate(zip(config.inputs, args))
    ]
    weights = [
        {"index": len(inputs) + i, "kind": "weight", "name": w.name, "shape": list(w.shape), "dtype": w.dtype}
        for i, w in enumerate(arguments)
    ]
    results = [{"index": i, "name": name, "shape": [int(d) for d in outputs[name].shape], "dtype": outputs[name].dtype.name} for i, name in enumerate(sorted(outputs))]
    expected = inputs + weights
    try:
        types, _ = main_types((folder / "stablehlo.mlir").read_text())
    except ValueError as exc:
        raise ConversionError(f"{rel}/stablehlo.mlir: {exc}; expected XLA's entry function") from exc
    wanted = [tensor_type(a["shape"], a["dtype"]) for a in expected]
    if len(types) != len(expected) or any(w is not None and w != t for w, t in zip(wanted, types)):
        raise ConversionError(
            f"{rel}/stablehlo.mlir: `main` takes {len(types)} argument(s) ({', '.join(types[:6])}{', ...' if len(types) > 6 else ''}); "
            f"expected the {len(inputs)} input(s) then {len(weights)} weight(s) the traced function captures, in that order. "
            "The arguments cannot be named; report this with the TensorFlow version."
        )
    signature = {"module": module, "function": "main", "form": form, "arguments": expected, "results": results}
    return files, arguments, signature


def bind_weights(ir_dir: Path, folder: str, arguments: list[IrArgument], signature: dict, written: dict) -> list[str]:
    """Write the weights one shape's `main` takes and name each argument's `.npz` key in its
    `signature`; returns the files written (relative to the target folder).

    Every shape's function captures the same variables, so `ir/weights.npz` is written once
    and shared (`written` remembers it across shapes); a shape capturing others would get
    its own `ir/<shape>/weights.npz`."""
    if not arguments:
        return []
    identity = tuple((a.name, a.shape, a.dtype) for a in arguments)
    files = []
    if identity in written:
        path, keys = written[identity]
    else:
        path = "../weights.npz" if not written else "weights.npz"
        keys = write_weights((ir_dir / folder / path).resolve(), arguments)
        written[identity] = (path, keys)
        files.append("ir/weights.npz" if path == "../weights.npz" else f"ir/{folder}/weights.npz")
    signature["weights_file"] = path
    for entry, key in zip([a for a in signature["arguments"] if a["kind"] == "weight"], keys):
        entry["key"] = key
    return files


def write_weights(path: Path, arguments: list[IrArgument]) -> list[str]:
    """The weights of `arguments` as an `.npz`, in argument order, under unique keys (the
    variable names); the same weights give the same bytes (fixed member times)."""
    import zipfile

    keys: list[str] = []
    for argument in arguments:
        key, n = argument.name, 1
        while key in keys:
            key, n = f"{argument.name}_{n}", n + 1
        keys.append(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, argument in zip(keys, arguments):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(argument.numpy(), order="C"), allow_pickle=False)  # 0-d stays 0-d
    return keys


# --------------------------------------------------------------------------- TPU op scan

# Ops and dtypes that the TPU does not run, in one place. Sources:
# - tensorflow/core/tpu/tpu_defs.h `kTpuAllTypes`: the dtypes XLA:TPU kernels are
#   registered for; DT_STRING, DT_COMPLEX128 and resource-free host types are absent.
# - Cloud TPU docs, "TensorFlow ops available on Cloud TPU"
#   (https://cloud.google.com/tpu/docs/tensorflow-ops): Python callbacks, file I/O,
#   summaries, queues and tf.data ops run on the host only.
# - float64: recent TF lists DT_DOUBLE in kTpuAllTypes, but the TPU has no float64
#   units (XLA emulates it at a large cost) and the Inference Converter's bfloat16
#   pass does not cover it; TPU serving models must not carry float64 tensors.
TPU_INCOMPATIBLE_DTYPES = {
    "float64": "float64 tensors: the TPU has no float64 arithmetic units",
    "complex128": "complex128 tensors: not a TPU type (tpu_defs.h kTpuAllTypes)",
    "string": "string tensors: not a TPU type (tpu_defs.h kTpuAllTypes); string ops run on the host only",
    "variant": "variant tensors of tf.data: the input pipeline runs on the host",
}
TPU_DTYPE_FIX = {
    "float64": "compute in float32 (remove the cast to float64, or give the layer dtype='float32')",
    "complex128": "use complex64 or split real and imaginary parts in float32",
    "string": "move text processing out of the model (preprocess on the client or in a CPU-side signature) and feed numbers",
    "variant": "move the data pipeline out of the model",
}
TPU_HOST_ONLY_OPS = {
    "PyFunc": "tf.numpy_function / tf.py_function run Python on the host",
    "PyFuncStateless": "tf.numpy_function runs Python on the host",
    "EagerPyFunc": "tf.py_function runs Python on the host",
    "Print": "printing runs on the host",
    "PrintV2": "tf.print runs on the host",
    "ReadFile": "file I/O runs on the host",
    "WriteFile": "file I/O runs on the host",
    "MatchingFiles": "file I/O runs on the host",
    "WriteSummary": "summaries run on the host",
    "WriteScalarSummary": "summaries run on the host",
    "WriteHistogramSummary": "summaries run on the host",
    "WriteImageSummary": "summaries run on the host",
    "HashTableV2": "lookup tables live on the host",
    "MutableHashTableV2": "lookup tables live on the host",
    "LookupTableFindV2": "lookup tables live on the host",
    "FIFOQueueV2": "queues run on the host",
    "RandomShuffleQueueV2": "queues run on the host",
    "IteratorGetNext": "tf.data runs on the host",
}
# Ops tf2xla compiles to nothing ("Ignoring Assert operator"): they compile for the
# TPU, and their check does not run there.
XLA_NO_OPS = {
    "Assert": "tf2xla compiles Assert as a no-op, so the model compiles for the TPU and this check does not run there",
}
_STRING_FORMATTING_OPS = {"AsString", "StringFormat"}
_VARIANT_CONTROL_FLOW = {"While", "StatelessWhile", "If", "StatelessIf", "Case", "StatelessCase",
                         "PartitionedCall", "StatefulPartitionedCall", "Enter", "Exit", "Merge", "Switch", "NextIteration"}
TPU_OP_FIX = "replace it with TensorFlow math ops (or move it out of the model, before or after the TPU function)"
# Graph plumbing that carries any dtype without computing on it.
_PLUMBING = {"Placeholder", "NoOp", "Identity", "IdentityN", "Const", "ReadVariableOp", "VarHandleOp", "_Arg", "_Retval"}
TPU_SCAN_SOURCE = "tensorflow/core/tpu/tpu_defs.h kTpuAllTypes; https://cloud.google.com/tpu/docs/tensorflow-ops"


@dataclass(frozen=True)
class OpFinding:
    op: str  # node name
    op_type: str
    layer: str
    reason: str
    fix: str

    def text(self) -> str:
        return f"op {self.op_type} '{self.op}' in {self.layer}: {self.reason}. Fix: {self.fix}"


def keras_layer_names(obj: Any) -> set[str]:
    """Names of every layer of a Keras model (nested models included); empty otherwise."""
    names: set[str] = set()
    stack = [obj]
    while stack:
        layer = stack.pop()
        for sub in getattr(layer, "layers", None) or []:
            if getattr(sub, "name", None) and sub.name not in names:
                names.add(sub.name)
                stack.append(sub)
    return names


def layer_of(node_name: str, layer_names: set[str]) -> str:
    """The Keras layer a graph node belongs to, from its name scope.

    Keras 3 scopes ops as `<model>_1/<layer>_1/<op>`; the deepest scope part that
    names a layer (with or without the `_<n>` uniquifying suffix) wins.
    """
    parts = node_name.split("/")[:-1]
    for part in reversed(parts):
        for candidate in (part, re.sub(r"_\d+$", "", part)):
            if candidate in layer_names:
                return f"layer '{candidate}'"
    if parts:
        return f"name scope '{'/'.join(parts)}' (no Keras layer)"
    return "the model's top-level code (no Keras layer)"


def _function_defs(graph_def: Any) -> list:
    return list(graph_def.library.function)


def _graph_nodes(concrete: Any):
    """(node name, op type, output/attr dtypes) of the traced function and of every
    function it calls (tf.cond/while bodies, inner tf.functions)."""
    import tensorflow as tf

    graph = concrete.graph
    for op in graph.get_operations():
        if op.type == "Placeholder" and any(o.dtype == tf.resource for o in op.outputs):
            continue
        yield op.name, op.type, [o.dtype.name for o in op.outputs] + _attr_dtypes(op.node_def)
    for fdef in _function_defs(graph.as_graph_def()):
        for node in fdef.node_def:
            yield node.name, node.op, _attr_dtypes(node)


def _attr_dtypes(node: Any) -> list[str]:
    import tensorflow as tf

    types = []
    for key in ("T", "dtype", "DstT", "out_type", "Tout", "output_types"):
        if key in node.attr:
            attr = node.attr[key]
            values = list(attr.list.type) if attr.HasField("list") else [attr.type]
            types.extend(tf.dtypes.as_dtype(v).name for v in values if v)
    return types


def scan_tpu_ops(concrete: Any, layer_names: set[str]) -> list[OpFinding]:
    """Every op of the traced function, and of the functions it calls, that a TPU does not run.

    Ops that tf2xla compiles to nothing (XLA_NO_OPS) are not findings, whatever their
    dtypes: `ignored_ops()` lists them for the report.
    """
    findings: list[OpFinding] = []
    seen: set[tuple[str, str]] = set()
    for name, op_type, dtypes in _graph_nodes(concrete):
        key = (name, op_type)
        if key in seen or op_type in XLA_NO_OPS:
            continue
        if op_type in TPU_HOST_ONLY_OPS:
            seen.add(key)
            findings.append(OpFinding(name, op_type, layer_of(name, layer_names), TPU_HOST_ONLY_OPS[op_type], TPU_OP_FIX))
            continue
        if op_type in _PLUMBING and op_type != "Placeholder":
            continue
        for dtype in dtypes:
            if dtype == "variant" and _compiles_variant(op_type):
                continue
            if dtype in TPU_INCOMPATIBLE_DTYPES:
                seen.add(key)
                findings.append(OpFinding(name, op_type, layer_of(name, layer_names), TPU_INCOMPATIBLE_DTYPES[dtype], dtype_fix(dtype, op_type)))
                break
    return findings


def _compiles_variant(op_type: str) -> bool:
    """TensorLists (an RNN's per-step buffers) and the control flow carrying them are
    variant tensors that tf2xla compiles when their sizes are static, which the XLA
    compile at every batch size then proves; only tf.data's variants are host-only."""
    return op_type.startswith("TensorList") or op_type in _VARIANT_CONTROL_FLOW


def ignored_ops(concrete: Any, layer_names: set[str]) -> list[str]:
    """The ops XLA compiles to nothing, one line each (op type, layer, what that means)."""
    lines = []
    for name, op_type, _ in _graph_nodes(concrete):
        if op_type in XLA_NO_OPS:
            line = f"{op_type} in {layer_of(name, layer_names)}: {XLA_NO_OPS[op_type]}"
            if line not in lines:
                lines.append(line)
    return lines


def dtype_fix(dtype: str, op_type: str) -> str:
    """The fix for a TPU-incompatible dtype, in terms of the op that carries it."""
    if dtype == "string" and op_type in _STRING_FORMATTING_OPS:
        return f"{op_type} turns numbers into text inside the model: return the numbers and format them on the client"
    return TPU_DTYPE_FIX[dtype]


def tpu_gate_error(model_name: str, findings: list[OpFinding]) -> IncompatibleModel:
    """One line per (layer, reason): the first op in full, the others of that layer by type."""
    groups: dict[tuple[str, str], list[OpFinding]] = {}
    for f in findings:
        groups.setdefault((f.layer, f.reason), []).append(f)
    lines = []
    for group in list(groups.values())[:10]:
        also = sorted({f.op_type for f in group[1:]} - {group[0].op_type})
        lines.append(f"  - {group[0].text()}" + (f" (same problem in this layer: {', '.join(also)})" if also else ""))
    more = f"\n  ... and {len(groups) - 10} more layers" if len(groups) > 10 else ""
    return IncompatibleModel(
        f"model '{model_name}' uses {len(findings)} op(s) a TPU does not run (checked on CPU before writing anything; list from {TPU_SCAN_SOURCE}):\n"
        + "\n".join(lines)
        + more
    )


# --------------------------------------------------------------------------- bfloat16 emulation

BF16_EMULATION_NOTE = (
    "bfloat16 emulation on CPU of the converter's bfloat16 optimization: the graph is frozen, every float32 "
    "constant (weights included) is rounded to bfloat16, and the float32 output of every op is rounded to "
    "bfloat16 (round to nearest even), so every tensor holds a bfloat16 value while each op computes in "
    "float32 internally. MatMul/Conv therefore multiply bfloat16 operands (exact in float32) and accumulate "
    "in float32, like the TPU matrix unit, and the model's outputs are bfloat16 values."
)
# Ops that only pass a tensor through: rounding their output again changes nothing.
# Frozen control flow (tf.while_loop/tf.cond lowered to Enter/Merge/Switch/NextIteration/
# Exit) passes values through too, and a Cast after NextIteration would break the loop's
# back edge (NextIteration -> Merge) and leave an illegal cycle.
_PASS_THROUGH = {"Identity", "IdentityN", "Const", "NoOp", "Reshape", "Squeeze", "ExpandDims", "StopGradient",
                 "Enter", "Exit", "Merge", "Switch", "NextIteration", "LoopCond",
                 "RefEnter", "RefExit", "RefMerge", "RefSwitch", "RefNextIteration"}


def frozen_graph_def(concrete: Any) -> Any:
    """The function frozen into one GraphDef (variables as constants, control flow lowered),
    built once: TF's convert_variables_to_constants_v2 also builds a frozen function and
    its graph, two more copies of every weight."""
    from targets.support import freezing

    try:
        return freezing.frozen_graph_def(concrete, lower_control_flow=True, aggressive_inlining=False)
    except Exception as exc:
        raise ConversionError(f"cannot freeze the traced function for the bfloat16 emulation: {type(exc).__name__}: {exc}") from exc


def _shapes_only(graph_def: Any) -> Any:
    """A copy of `graph_def` whose large constants hold one value (a splat of the same
    shape and type): enough to import it and read every tensor's type, at no weight cost."""
    import tensorflow as tf

    light = tf.compat.v1.GraphDef()
    light.versions.CopyFrom(graph_def.versions)
    light.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        copy = light.node.add()
        if node.op == "Const" and node.attr["value"].tensor.ByteSize() > 4096:
            tensor = node.attr["value"].tensor
            copy.name, copy.op, copy.device = node.name, node.op, node.device
            copy.input.extend(node.input)
            copy.attr["dtype"].CopyFrom(node.attr["dtype"])
            shape = [d.size for d in tensor.tensor_shape.dim]
            copy.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.zeros((), tf.as_dtype(tensor.dtype).as_numpy_dtype), shape=shape))
        else:
            copy.CopyFrom(node)
    return light


def round_to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 -> nearest bfloat16 (ties to even) -> float32."""
    import tensorflow as tf

    return tf.cast(tf.cast(tf.constant(values, tf.float32), tf.bfloat16), tf.float32).numpy()


def _cast(name: str, source: str, src: int, dst: int) -> Any:
    from tfship.compat.tensorflow import attr_value_pb2, node_def_pb2

    node = node_def_pb2.NodeDef(name=name, op="Cast", input=[source])
    node.attr["SrcT"].CopyFrom(attr_value_pb2.AttrValue(type=src))
    node.attr["DstT"].CopyFrom(attr_value_pb2.AttrValue(type=dst))
    node.attr["Truncate"].CopyFrom(attr_value_pb2.AttrValue(b=False))
    return node


def bf16_emulation_graph_def(graph_def: Any) -> tuple[Any, dict]:
    """Rewrite a frozen GraphDef, in place, so every float32 tensor holds a bfloat16 value
    (see BF16_EMULATION_NOTE)."""
    import tensorflow as tf
    from tfship.compat.tensorflow import types_pb2

    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(_shapes_only(graph_def), name="")
    float_outputs = {op.name: [i for i, t in enumerate(op.outputs) if t.dtype == tf.float32] for op in graph.get_operations()}
    del graph

    out = graph_def  # rewritten in place: one copy of the weights
    constants = 0
    for node in out.node:
        if node.op == "Const" and node.attr["dtype"].type == types_pb2.DT_FLOAT:
            values = tf.make_ndarray(node.attr["value"].tensor)
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(round_to_bf16(values), dtype=tf.float32, shape=values.shape))
            constants += 1
    names = {n.name for n in out.node}
    rounded: dict[str, str] = {}  # "node:k" -> name of the node holding its bfloat16 value
    new_nodes = []
    for node in out.node:
        if node.op in _PASS_THROUGH:
            continue
        for k in float_outputs.get(node.name, []):
            base = f"{node.name}/bf16_{k}"
            while base in names:
                base += "_"
            source = node.name if k == 0 else f"{node.name}:{k}"
            down = _cast(base + "/to_bf16", source, types_pb2.DT_FLOAT, types_pb2.DT_BFLOAT16)
            up = _cast(base + "/to_f32", down.name, types_pb2.DT_BFLOAT16, types_pb2.DT_FLOAT)
            names.update({down.name, up.name})
            new_nodes.extend([down, up])
            rounded[f"{node.name}:{k}"] = up.name
    for node in out.node:
        for i, src in enumerate(node.input):
            if src.startswith("^"):
                continue
            key = src if ":" in src else f"{src}:0"
            if key in rounded:
                node.input[i] = rounded[key]
    out.node.extend(new_nodes)
    return out, {"constants_rounded": constants, "tensors_rounded": len(rounded)}


def graph_io(concrete: Any, config: Any) -> dict:
    """Tensor names of the graph's inputs and outputs, keyed by the config's names.

    Freezing keeps the names of every node that is not a variable read.
    """
    inputs = {spec.name: t.name for spec, t in zip(config.inputs, concrete.inputs)}
    outputs = {name: t.name for name, t in concrete.structured_outputs.items()}
    return {"inputs": inputs, "outputs": outputs}


def write_bf16_emulation(concrete: Any, config: Any, folder: Path) -> dict:
    """Write `graph.pb` (rewritten frozen graph) and `io.json` (tensor names) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    graph_def, counts = bf16_emulation_graph_def(frozen_graph_def(concrete))
    (folder / "graph.pb").write_bytes(graph_def.SerializeToString())
    io = graph_io(concrete, config)
    (folder / "io.json").write_text(json.dumps(io, indent=2))
    return counts
