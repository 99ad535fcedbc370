"""ONNX through tf2onnx, run in onnxruntime: `onnx/model.onnx`.

The graph's inputs and outputs carry exactly the config's names, in the config's
order, with their dtypes and a symbolic batch dimension named `batch`.

Variants:
  ""          `model.onnx`, straight from tf2onnx (always built).
  "optimized" `model.optimized.onnx`, the same graph after onnxruntime's offline
              optimizer (only with `optimize: true`); it gets its own parity run.

With external data (`large_model: true`, or automatically when the weights do not
fit in one 2 GB protobuf) the weights go to `model.onnx.data` (and
`model.optimized.onnx.data`) beside the graph, as ONNX external data.

The graph's inputs are the signature's only: values the serving function captures
(variables, and constant tensors such as normalization statistics or DSP kernels)
are folded in. From 32 MB of weights, or with external data, the large ones are
lifted out of the graph tf2onnx converts and attached as initializers by name
(targets/support/onnx_lift.py): tf2onnx's own passes would copy every constant
once per pass (4.4 GB peak for 50 MB of weights; 0.85 GB lifted).
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import extras
from pipeline.errors import ConversionError, IncompatibleModel, IntegrityError
from pipeline.runtimes.onnxruntime import OnnxRuntimeRunner
from pipeline.target import Artifact, BuildInputs, Target
from pipeline.tolerance import FP32
from targets.support import onnx_lift, sizes

# tf2onnx 1.17 tests opsets 14..18 and has no handlers above 18.
MIN_OPSET = 14
MAX_OPSET = 18

MODEL_FILE = "model.onnx"
OPTIMIZED_FILE = "model.optimized.onnx"
DATA_SUFFIX = ".data"  # external weights live in <graph file>.data
BATCH_DIM = "batch"
# The batch a model is converted at when tf2onnx needs static shapes (see build()).
STATIC_BATCH = 1

# A protobuf message cannot be serialized past 2 GiB; leave room for the graph itself.
EXTERNAL_DATA_BYTES = 1_800_000_000
# onnxruntime's optimized copy moves initializers of at least this many bytes to its
# data file (tf2onnx's own cut-off for the plain model is 1024 elements).
EXTERNAL_TENSOR_MIN_BYTES = 1024
# Models with at least this many bytes of weights convert with their large weights
# lifted out of tf2onnx's graph (its passes copy every constant once per pass).
LIFT_MODEL_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class OnnxOptions:
    opset: int = 17
    optimize: bool = False  # also write model.optimized.onnx (onnxruntime offline optimizer)
    large_model: bool = False  # force the external-data layout even for a small model


# --------------------------------------------------------------------------- conversion helpers


class _Tf2OnnxLog(logging.Handler):
    """Collects tf2onnx's error records: its only report of unmapped ops and failed nodes."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.unsupported: dict[str, list[str]] = {}  # op type -> TF node names
        self.failed: list[str] = []  # "node (op): reason"

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "Tensorflow op [%s: %s] is not supported" and len(record.args) == 2:
            node, op = record.args
            self.unsupported.setdefault(str(op), []).append(str(node))
        elif str(record.msg).startswith("Failed to convert node"):
            reason = ""
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            node = _layer_path(str(record.args[0])) if record.args else "?"
            self.failed.append(f"{node}: {reason}" if reason else node)


@contextlib.contextmanager
def _capture_tf2onnx_log():
    handler = _Tf2OnnxLog()
    logger = logging.getLogger("tf2onnx")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _lowest_opset_supporting(op: str) -> int | None:
    """The lowest ONNX opset for which tf2onnx has a handler for TF op `op`."""
    from tfship.compat.tf2onnx import get_opsets, onnx_domain

    for version, handlers in enumerate(get_opsets().get(onnx_domain, [])):
        if op in handlers:
            return version
    return None


def _layer_path(node: str) -> str:
    """A TF node name without the call wrappers tracing adds, so the Keras layer shows:
    `StatefulPartitionedCall/functional_1/special_gamma_1/Lgamma` -> `functional_1/special_gamma_1/Lgamma`."""
    parts = node.split("/")
    while len(parts) > 1 and parts[0] in ("StatefulPartitionedCall", "PartitionedCall"):
        parts = parts[1:]
    return "/".join(parts)


def _unsupported_message(model: str, opset: int, log: _Tf2OnnxLog) -> str:
    lines = [f"tf2onnx cannot convert model '{model}' to ONNX opset {opset}:"]
    higher = []
    for op, nodes in sorted(log.unsupported.items()):
        lowest = _lowest_opset_supporting(op)
        if lowest is None:
            verdict = f"no ONNX opset up to {MAX_OPSET} supports it in tf2onnx"
        elif lowest <= MAX_OPSET and lowest > opset:
            verdict = f"opset {lowest} or higher supports it"
            higher.append(lowest)
        else:
            verdict = f"tf2onnx has a handler from opset {lowest} but it did not apply here"
        shown = ", ".join(_layer_path(n) for n in nodes[:3]) + (f" and {len(nodes) - 3} more" if len(nodes) > 3 else "")
        lines.append(f"  - TF op {op} at {shown}: {verdict}")
    for failure in log.failed:
        lines.append(f"  - conversion of node {failure}")
    if higher and len(higher) == len(log.unsupported) and not log.failed:
        lines.append(f"Fix: set `opset: {max(higher)}` for the onnx target (allowed {MIN_OPSET}..{MAX_OPSET}).")
    else:
        lines.append(
            "Fix: replace those operations in the model with ones ONNX supports (the path names the layer), "
            + (f"or raise `opset` (allowed {MIN_OPSET}..{MAX_OPSET}) where it helps, " if higher else "")
            + "or drop the onnx target for this model."
        )
    return "\n".join(lines)


def _convert(function, signature, opset: int, lift_min_bytes: float, model_name: str):
    """tf2onnx on `function`, with its error log (unmapped ops, failed nodes)."""
    with _capture_tf2onnx_log() as log:
        try:
            converted = onnx_lift.convert_function(function, signature, opset, lift_min_bytes)
        except Exception as exc:
            raise ConversionError(
                f"tf2onnx failed to convert model '{model_name}' at opset {opset}: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            ) from exc
    return converted, log


def _dynamic_batch(config) -> bool:
    return any(spec.batched and spec.shape and spec.shape[0] is None for spec in config.inputs)


def _walk_graphs(graph):
    """The graph and every subgraph (If/Loop/Scan bodies) below it."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _walk_graphs(attr.g)
            for sub in attr.graphs:
                yield from _walk_graphs(sub)


def _rename_value(model, old: str, new: str) -> None:
    """Rename one value (edge) everywhere it is produced or consumed."""
    for graph in _walk_graphs(model.graph):
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new
            for i, name in enumerate(node.output):
                if name == old:
                    node.output[i] = new
        for value in list(graph.input) + list(graph.output) + list(graph.value_info):
            if value.name == old:
                value.name = new
        for init in graph.initializer:
            if init.name == old:
                init.name = new


def _rename_values(model, pairs: list[tuple[str, str]]) -> None:
    """Rename several values at once; through placeholder names first, so a swap or a
    name taken by another value of the list cannot merge two values."""
    pairs = [(old, new) for old, new in pairs if old != new]
    for i, (old, _) in enumerate(pairs):
        _rename_value(model, old, f"__tfship_rename_{i}__")
    for i, (_, new) in enumerate(pairs):
        _rename_value(model, f"__tfship_rename_{i}__", new)


def _fix_loop_bodies(model) -> None:
    """Give every Loop body's iteration count and condition inputs a scalar shape.

    tf2onnx leaves them without a shape for a tf.while_loop, and onnxruntime then refuses
    to run the Loop ("Initialize Loop subgraph input 0 has unknown shape"); both are
    scalars by the ONNX Loop specification."""
    for graph in _walk_graphs(model.graph):
        for node in graph.node:
            if node.op_type != "Loop":
                continue
            for attr in node.attribute:
                if attr.name == "body":
                    for value in attr.g.input[:2]:
                        tensor_type = value.type.tensor_type
                        if not tensor_type.HasField("shape"):
                            tensor_type.shape.SetInParent()


def _fix_interface(model, input_names: list[str], output_names: list[str], converted_output_order: list[str], lifted: set[str] = frozenset()) -> None:
    """Give the graph the config's input/output names in config order and a named batch dim.

    tf2onnx renames the traced function's tensors after their structured names, but
    that can miss (e.g. a value it cannot rename), leaving `x:0` / `Identity:0`;
    positions are then mapped through the traced function's own output order.
    """
    graph = model.graph
    not_inputs = {i.name for i in graph.initializer} | set(lifted)
    real_inputs = [v for v in graph.input if v.name not in not_inputs]
    if len(real_inputs) != len(input_names):
        raise ConversionError(
            f"tf2onnx produced {len(real_inputs)} graph inputs {[v.name for v in real_inputs]} for the config's "
            f"{len(input_names)} inputs {input_names}"
        )
    _rename_values(model, [(v.name, wanted) for v, wanted in zip(real_inputs, input_names)])
    if len(graph.output) != len(converted_output_order):
        raise ConversionError(
            f"tf2onnx produced {len(graph.output)} graph outputs {[v.name for v in graph.output]} for the config's "
            f"{len(output_names)} outputs {output_names}"
        )
    current = [v.name for v in graph.output]
    if sorted(current) != sorted(output_names):
        _rename_values(model, list(zip(current, converted_output_order)))
    by_name = {v.name: v for v in graph.output}
    ordered = [type(by_name[n])() for n in output_names]
    for copy, name in zip(ordered, output_names):
        copy.CopyFrom(by_name[name])
    del graph.output[:]
    graph.output.extend(ordered)
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM


def _name_dynamic_dims(model, config) -> None:
    """Every dynamic input axis gets the config's symbolic name (`seq` shared by ids and
    mask, `image_1` for an unnamed one), so runtimes and readers see which agree."""
    by_name = {v.name: v for v in model.graph.input}
    for spec in config.inputs:
        value = by_name.get(spec.name)
        if value is None:
            continue
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if axis < len(spec.shape) and spec.shape[axis] is None and not dim.HasField("dim_value"):
                dim.dim_param = spec.axis_name(axis)


def _check(path: Path, model_name: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # the checker raises ValidationError or InferenceError
        text = str(exc).strip()
        raise ConversionError(
            f"onnx.checker rejected {path.name} for model '{model_name}': {text}\n"
            "The converted graph is not valid ONNX; the message names the node. Try another `opset`, "
            "or simplify the operation named there."
        ) from exc


def _interface(source) -> tuple[list[dict], list[dict], dict[str, int]]:
    """Inputs and outputs (name, dtype, shape) and op counts, of a saved file or of the
    ModelProto just written (whose weights may have gone to the file only)."""
    import onnx

    model = onnx.load(str(source), load_external_data=False) if isinstance(source, Path) else source

    def describe(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None) for d in t.shape.dim]
            out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type != onnx.TensorProto.STRING else "string", "shape": shape})
        return out

    initializers = {i.name for i in model.graph.initializer}
    ops: dict[str, int] = {}
    for node in model.graph.node:
        key = f"{node.domain}.{node.op_type}" if node.domain else node.op_type
        ops[key] = ops.get(key, 0) + 1
    return describe([v for v in model.graph.input if v.name not in initializers]), describe(model.graph.output), dict(sorted(ops.items()))


def _verify_interface(path: Path, config, model=None, static_batch: int | None = None) -> tuple[list[dict], list[dict], dict[str, int]]:
    inputs, outputs, ops = _interface(model if model is not None else path)
    problems = []
    if [i["name"] for i in inputs] != list(config.input_names):
        problems.append(f"inputs {[i['name'] for i in inputs]} != config {list(config.input_names)}")
    if [o["name"] for o in outputs] != list(config.output_names):
        problems.append(f"outputs {[o['name'] for o in outputs]} != config {list(config.output_names)}")
    for got, spec in zip(inputs, config.inputs):
        if got["dtype"] != spec.dtype:
            problems.append(f"input '{spec.name}' has dtype {got['dtype']}, config says {spec.dtype}")
        if len(got["shape"]) != len(spec.shape):
            problems.append(f"input '{spec.name}' has rank {len(got['shape'])}, config shape is {list(spec.shape)}")
            continue
        for axis, (g, w) in enumerate(zip(got["shape"], spec.shape)):
            if w is None and axis == 0 and static_batch is not None and g == static_batch:
                continue
            if w is None and not isinstance(g, str):
                problems.append(f"input '{spec.name}' dim {axis} is fixed at {g}, config says dynamic")
            elif w is not None and g != w:
                problems.append(f"input '{spec.name}' dim {axis} is {g}, config says {w}")
    if problems:
        raise ConversionError(f"{path.name} does not match the config's interface: " + "; ".join(problems))
    return inputs, outputs, ops


def _optimize(source: Path, target: Path, external: bool) -> list[str]:
    """Run onnxruntime's offline optimizer (extended level, CPU) and save the result."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # EXTENDED fuses into onnxruntime contrib ops but stays independent of this
    # CPU's instruction set; ALL would add layout transforms tied to this machine.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    files = [target.name]
    if external:
        data_name = target.name + DATA_SUFFIX
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", data_name)
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", str(EXTERNAL_TENSOR_MIN_BYTES))
        files.append(data_name)
    try:
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ConversionError(f"onnxruntime could not optimize {source.name}: {type(exc).__name__}: {exc}") from exc
    return [f for f in files if (target.parent / f).exists()]


# --------------------------------------------------------------------------- target


class OnnxTarget(Target):
    name = "onnx"
    description = "ONNX via tf2onnx (config names, chosen opset), checked and run in onnxruntime"
    Options = OnnxOptions

    def variants(self, options) -> tuple[str, ...]:
        return ("", "optimized") if options.optimize else ("",)

    def check_options(self, options, model) -> list[tuple[str, str]]:
        problems = []
        if not MIN_OPSET <= options.opset <= MAX_OPSET:
            problems.append(("opset", f"opset {options.opset} is outside what tf2onnx 1.17 supports; allowed {MIN_OPSET}..{MAX_OPSET}"))
        for spec in model.get("inputs", ()):
            if spec.dtype == "bfloat16":
                problems.append(("", f"input '{spec.name}' is bfloat16, which onnxruntime cannot be fed from numpy; use float32 inputs for the onnx target"))
        return problems

    def build(self, job: BuildInputs) -> list[Artifact]:
        extras.require("onnx", "the onnx target")
        import onnx
        import tensorflow as tf
        import tf2onnx
        from pipeline.stages.trace import input_signature

        options = job.target.options
        config = job.model
        input_names, output_names = list(config.input_names), list(config.output_names)
        traced = job.traced
        signature = input_signature(config)

        def serve(*args):
            outputs = traced(*args)
            # One Identity per output: two config outputs backed by the same tensor
            # (or by an input) would otherwise share one ONNX value and one name.
            return {name: tf.identity(outputs[name], name=name) for name in output_names}

        function = tf.function(serve, input_signature=signature)
        # tf2onnx's outputs follow the traced function's flattened outputs: dict keys, sorted.
        converted_order = sorted(output_names)
        size = sizes.weight_size(traced)
        # Weights that cannot be sized are written as external data: it holds any size,
        # where one protobuf stops at 2 GB.
        external = options.large_model or size.at_least(EXTERNAL_DATA_BYTES + 1)
        unsized = "" if size.known or options.large_model else size.note("they were written as external data beside the graph, which holds any size")

        # Large weights are lifted out of the graph tf2onnx converts and attached by name
        # afterwards (targets/support/onnx_lift.py): tf2onnx's passes copy every constant.
        if external:
            lift_min_bytes = EXTERNAL_TENSOR_MIN_BYTES
        elif size.at_least(LIFT_MODEL_BYTES):
            lift_min_bytes = onnx_lift.LIFT_MIN_BYTES
        else:
            lift_min_bytes = float("inf")

        start = time.perf_counter()
        converted, log = _convert(function, signature, options.opset, lift_min_bytes, config.name)
        static_batch, dynamic_failures = None, list(log.failed)
        if log.failed and _dynamic_batch(config):
            # A tf2onnx handler that needs a shape it cannot infer with a dynamic batch
            # (RFFT -> ComplexAbs: "expected the first dimension to be 2"): convert with
            # the batch fixed at 1; onnxruntime runs a larger batch one sample at a time.
            batch1 = tf.function(serve, input_signature=input_signature(config, batch=STATIC_BATCH))
            retry, retry_log = _convert(batch1, input_signature(config, batch=STATIC_BATCH), options.opset, lift_min_bytes, config.name)
            if retry_log.unsupported or retry_log.failed:
                first = _unsupported_message(config.name, options.opset, log).splitlines()
                again = _unsupported_message(config.name, options.opset, retry_log).splitlines()[1:-1]
                tried = f"Tried: converting with the batch fixed at {STATIC_BATCH} (every shape static); tf2onnx still fails:"
                raise IncompatibleModel("\n".join(first[:-1] + [tried] + again + first[-1:]))
            converted, log, static_batch = retry, retry_log, STATIC_BATCH
        seconds = time.perf_counter() - start
        if log.unsupported or log.failed:
            raise IncompatibleModel(_unsupported_message(config.name, options.opset, log))

        _fix_interface(converted.model, input_names, output_names, converted_order, set(converted.lifted))
        _fix_loop_bodies(converted.model)
        _name_dynamic_dims(converted.model, config)
        path = job.out_dir / MODEL_FILE
        files = onnx_lift.attach(converted, path, external, MODEL_FILE + DATA_SUFFIX)
        _check(path, config.name)
        inputs, outputs, ops = _verify_interface(path, config, converted.model, static_batch)
        del converted
        info = {
            "opset": options.opset,
            "inputs": inputs,
            "outputs": outputs,
            "file_bytes": sum((job.out_dir / f).stat().st_size for f in files),
            "external_data": external,
            "conversion_seconds": round(seconds, 3),
            "tf2onnx_version": tf2onnx.__version__,
            "onnx_ops": ops,
        }
        if unsized:
            info["note_size"] = unsized
        if static_batch:
            info["static_batch"] = static_batch
            info["fixed_dims"] = [{"input": spec.name, "axis": 0, "name": spec.axis_name(0), "size": static_batch}
                                  for spec in config.inputs if spec.batched and spec.shape and spec.shape[0] is None]
            info["note_static_batch"] = (
                f"converted with the batch fixed at {static_batch}: with a dynamic batch tf2onnx cannot convert "
                + "; ".join(dynamic_failures) + "; onnxruntime runs a larger batch one sample at a time"
            )
        artifacts = [Artifact(variant="", files=tuple(files), tolerance=FP32, info=info)]

        if options.optimize:
            opt_path = job.out_dir / OPTIMIZED_FILE
            start = time.perf_counter()
            opt_files = _optimize(path, opt_path, external)
            opt_seconds = time.perf_counter() - start
            _check(opt_path, config.name)
            opt_inputs, opt_outputs, opt_ops = _verify_interface(opt_path, config, static_batch=static_batch)
            opt_info = dict(info, inputs=opt_inputs, outputs=opt_outputs, onnx_ops=opt_ops,
                            file_bytes=sum((job.out_dir / f).stat().st_size for f in opt_files),
                            optimizer="onnxruntime ORT_ENABLE_EXTENDED", optimize_seconds=round(opt_seconds, 3))
            artifacts.append(Artifact(variant="optimized", files=tuple(opt_files), tolerance=FP32, info=opt_info))
        return artifacts

    def open(self, target_dir: Path, artifact: Artifact, threads: int | None = None) -> OnnxRuntimeRunner:
        info = artifact.info or {}
        inputs = [i["name"] for i in info.get("inputs", [])] or None
        outputs = [o["name"] for o in info.get("outputs", [])] or None
        return OnnxRuntimeRunner(Path(target_dir) / artifact.files[0], inputs, outputs, threads=threads)

    def tensor_probe(self, target_dir, artifact, model, debug_dir):
        from pipeline.localize.probes import OnnxProbe

        # The debug copy (every intermediate value added as a graph output) goes to debug_dir.
        return OnnxProbe(Path(target_dir) / artifact.files[0], model.input_names, model.output_names, debug_dir)

    def options_for_variant(self, options, variant):
        import dataclasses

        return dataclasses.replace(options, optimize=variant == "optimized")

    def diagnose(self, job: BuildInputs, artifact: Artifact, parity: dict) -> dict | None:
        info = artifact.info or {}
        return {"opset": info.get("opset"), "onnx_ops": info.get("onnx_ops"), "external_data": info.get("external_data")}


TARGET = OnnxTarget()
