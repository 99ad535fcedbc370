"""The artifact side of localization: every intermediate tensor of an artifact, in
its own runtime.

- LiteRT: the shipped .tflite, opened with all tensors preserved; quantized
  tensors are dequantized with their own scale and zero point.
- onnxruntime: a debug copy of the graph with every intermediate value added as
  a graph output.
- OpenVINO: the IR read again with every intermediate node output added as a model
  output, compiled with the artifact's own precision hint (the debug IR is saved).
- TensorFlow graphs (SavedModel, XLA, TPU): the serving function frozen and
  inlined into one GraphDef (a debug copy), pruned with extra fetches; XLA
  artifacts run that graph with jit_compile, so XLA compiles and fuses it again.
- StableHLO (the xla target's `stablehlo` variant): a debug copy of one shape's
  `stablehlo.mlir` whose `main` also returns the values of its body, compiled and
  run by IREE again. The locations XLA keeps name each op's TensorFlow op, and so
  its layer.

Debug copies are written into the `debug_dir` given (beside the report), never
into the artifact's folder.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.runtimes.litert import QUANTIZED_TYPES, scale_zero_point


@dataclass(frozen=True)
class TensorInfo:
    """One intermediate tensor of an artifact.

    `scopes`: names that carry the producing op's name scope (a TFLite tensor name
    lists every fused op, separated by ';'). `consumers`: scopes of the ops that
    read it (empty for a model output). `order`: execution (or graph) order.
    """

    name: str
    scopes: tuple[str, ...]
    consumers: tuple[str, ...]
    order: int
    is_output: bool = False
    output_name: str | None = None  # the config's output name, for model outputs


class TensorProbe(Protocol):
    kind: str
    fixed_batch: int | None
    debug_files: tuple[str, ...]

    def tensors(self) -> list[TensorInfo]: ...

    def run(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, tuple[np.ndarray, dict | None]]:
        """Values of `names` (float, dequantized) and their quantization (or None)."""
        ...


# --------------------------------------------------------------------------- LiteRT




class LiteRTProbe:
    kind = "litert"

    def __init__(self, path: Path, output_names: tuple[str, ...], signature: str = "serving_default"):
        import warnings

        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        with warnings.catch_warnings():  # "intended for debugging purposes only": that is the purpose here
            warnings.simplefilter("ignore", UserWarning)
            self._interpreter = Interpreter(model_path=str(self.path), experimental_preserve_all_tensors=True)
        self._runner = self._interpreter.get_signature_runner(signature)
        self._inputs = self._runner.get_input_details()
        self._outputs = self._runner.get_output_details()
        self._output_names = output_names
        batches = {int(d["shape_signature"][0]) for d in self._inputs.values() if len(d["shape_signature"])}
        self.fixed_batch = next(iter(batches)) if len(batches) == 1 and -1 not in batches else None
        self.debug_files: tuple[str, ...] = ()

    def tensors(self) -> list[TensorInfo]:
        details = {d["index"]: d for d in self._interpreter.get_tensor_details()}
        ops = self._interpreter._get_ops_details()  # noqa: SLF001 - the documented way to read op order and wiring
        output_index = {int(d["index"]): name for name, d in self._outputs.items()}
        consumers: dict[int, list[str]] = {}  # tensor -> scopes of the ops reading it (named by their outputs)
        for op in ops:
            outs = [details[int(t)]["name"] for t in op["outputs"] if t >= 0]
            for t in op["inputs"]:
                if t >= 0:
                    for name in outs:
                        consumers.setdefault(int(t), []).extend(_tflite_scopes(name))
        rows = []
        for order, op in enumerate(ops):
            for t in op["outputs"]:
                if t < 0:
                    continue
                detail = details[int(t)]
                if np.dtype(detail["dtype"]).kind not in "fiu":
                    continue
                out_name = output_index.get(int(t))
                rows.append(
                    TensorInfo(
                        name=str(int(t)),
                        scopes=tuple(_tflite_scopes(detail["name"])),
                        consumers=tuple(consumers.get(int(t), [])),
                        order=order,
                        is_output=out_name is not None,
                        output_name=out_name,
                    )
                )
        self._names = {str(int(d["index"])): d["name"] for d in details.values()}
        return rows

    def display_name(self, name: str) -> str:
        return self._names.get(name, name)

    def _feed(self, name: str, value: np.ndarray) -> np.ndarray:
        detail = self._inputs[name]
        dtype = detail["dtype"]
        value = np.asarray(value)
        if dtype in QUANTIZED_TYPES and np.issubdtype(value.dtype, np.floating):
            scale, zero_point = scale_zero_point(detail)
            info = np.iinfo(dtype)
            return np.clip(np.round(value / scale + zero_point), info.min, info.max).astype(dtype)
        return value.astype(dtype, copy=False)

    def run(self, inputs, names):
        self._runner(**{n: self._feed(n, v) for n, v in inputs.items()})
        details = {str(int(d["index"])): d for d in self._interpreter.get_tensor_details()}
        out = {}
        for name in names:
            detail = details[name]
            value = np.asarray(self._interpreter.get_tensor(int(name)))
            quant = None
            if value.dtype in QUANTIZED_TYPES:
                scale, zero_point = scale_zero_point(detail)
                if scale:
                    quant = {"dtype": np.dtype(value.dtype).name, "scale": scale, "zero_point": zero_point}
                    value = (value.astype(np.float32) - zero_point) * scale
            out[name] = (value.astype(np.float32, copy=True), quant)
        return out


def _tflite_scopes(name: str) -> list[str]:
    return [part for part in name.split(";") if part]


# --------------------------------------------------------------------------- onnxruntime


class OnnxProbe:
    kind = "onnxruntime"
    fixed_batch = None

    def __init__(self, path: Path, input_names: tuple[str, ...], output_names: tuple[str, ...], debug_dir: Path):
        import onnx

        self.path = Path(path)
        self._model = onnx.load(str(self.path))
        self._input_names = input_names
        self._output_names = output_names
        self._debug_dir = Path(debug_dir)
        self._session = None
        self.debug_files: tuple[str, ...] = ()

    def tensors(self) -> list[TensorInfo]:
        graph = self._model.graph
        initializers = {i.name for i in graph.initializer}
        consumers: dict[str, list[str]] = {}
        for node in graph.node:
            for value in node.input:
                consumers.setdefault(value, []).append(node.name)
        outputs = {o.name for o in graph.output}
        rows = []
        for order, node in enumerate(graph.node):
            if node.op_type in ("Constant",):
                continue
            for value in node.output:
                if not value or value in initializers:
                    continue
                rows.append(
                    TensorInfo(
                        name=value,
                        scopes=(node.name, value),
                        consumers=tuple(consumers.get(value, [])),
                        order=order,
                        is_output=value in outputs,
                        output_name=value if value in outputs else None,
                    )
                )
        return rows

    def display_name(self, name: str) -> str:
        return name

    def run(self, inputs, names):
        import onnx
        import onnxruntime as ort

        from pipeline.localize.debugcopy import write_bytes

        graph_outputs = {o.name for o in self._model.graph.output}
        extra = [n for n in names if n not in graph_outputs]
        debug = onnx.ModelProto()
        debug.CopyFrom(self._model)
        for name in extra:
            debug.graph.output.append(onnx.ValueInfoProto(name=name))
        path = self._debug_dir / "model.debug.onnx"
        write_bytes(path, debug.SerializeToString())
        self.debug_files = (path.name,)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        declared = {i.name: i for i in session.get_inputs()}
        feeds = {}
        for name in self._input_names:
            value = np.asarray(inputs[name])
            if declared[name].type == "tensor(float)" and value.dtype != np.float32:
                value = value.astype(np.float32)
            feeds[name] = value
        values = session.run(list(names), feeds)
        return {n: (np.asarray(v, dtype=np.float32) if np.asarray(v).dtype.kind in "fiu" else np.asarray(v), None) for n, v in zip(names, values)}


# --------------------------------------------------------------------------- OpenVINO


class OpenVINOProbe:
    """An OpenVINO IR with every computed node output fetched. Node names are the
    TensorFlow frontend's (`functional_1/dense_1/MatMul`), so they carry the Keras
    layer's scope; nodes computed from constants alone (weight decompression) are not
    tensors of the model's data flow and are left out."""

    kind = "openvino"
    fixed_batch = None

    def __init__(self, path: Path, output_names: tuple[str, ...], hint: str | None, debug_dir: Path):
        from pipeline.runtimes.openvino import require_openvino

        self._ov = require_openvino("localizing an OpenVINO IR")
        self.path = Path(path)
        self._output_names = output_names
        self._hint = hint
        self._debug_dir = Path(debug_dir)
        self.debug_files: tuple[str, ...] = ()

    def _read(self):
        return self._ov.Core().read_model(str(self.path))

    @staticmethod
    def _computed(model) -> list:
        constant = set()
        computed = []
        for op in model.get_ordered_ops():
            kind = op.get_type_name()
            sources = [op.input_value(i).get_node().get_friendly_name() for i in range(op.get_input_size())]
            if kind == "Constant" or (kind not in ("Parameter",) and sources and all(s in constant for s in sources)):
                constant.add(op.get_friendly_name())
            elif kind not in ("Parameter", "Result"):
                computed.append(op)
        return computed

    def tensors(self) -> list[TensorInfo]:
        model = self._read()
        results = {}
        for result in model.get_results():
            source = result.input_value(0)
            names = [n for n in source.get_names() if n in self._output_names] or list(result.output(0).get_names())
            results[(source.get_node().get_friendly_name(), source.get_index())] = names[0] if names else None
        rows = []
        for order, op in enumerate(self._computed(model)):
            node = op.get_friendly_name()
            for port in range(op.get_output_size()):
                element = op.get_output_element_type(port)
                if element.is_dynamic() or not (element.is_real() or element.is_integral_number()):
                    continue
                consumers = tuple(t.get_node().get_friendly_name() for t in op.output(port).get_target_inputs() if t.get_node().get_type_name() != "Result")
                out_name = results.get((node, port))
                rows.append(TensorInfo(name=f"{node}:{port}", scopes=(node,), consumers=consumers, order=order,
                                       is_output=out_name is not None, output_name=out_name))
        return rows

    def display_name(self, name: str) -> str:
        return name

    def run(self, inputs, names):
        model = self._read()
        by_node = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
        wanted = []
        for name in names:
            node, port = name.rsplit(":", 1)
            wanted.append(by_node[node].output(int(port)))
        added = model.add_outputs(wanted)
        self._debug_dir.mkdir(parents=True, exist_ok=True)
        self._ov.save_model(model, str(self._debug_dir / "model.debug.xml"), compress_to_fp16=False)
        self.debug_files = ("model.debug.xml", "model.debug.bin")
        config = {"INFERENCE_PRECISION_HINT": self._hint} if self._hint else {}
        compiled = self._ov.Core().compile_model(model, "CPU", config)
        feeds = {}
        for port in compiled.inputs:
            value = np.asarray(inputs[port.get_any_name()])
            feeds[port.get_any_name()] = value.astype(port.get_element_type().to_dtype(), copy=False)
        results = compiled(feeds)
        position = {(o.get_node().get_friendly_name(), o.get_index()): i for i, o in enumerate(model.outputs)}
        out = {}
        for name, port in zip(names, added):
            value = np.asarray(results[compiled.outputs[position[(port.get_node().get_friendly_name(), port.get_index())]]])
            out[name] = (value.astype(np.float32) if value.dtype.kind in "fiu" else value, None)
        return out
# --------------------------------------------------------------------------- StableHLO (IREE)

_MLIR_NAME = re.compile(r'"((?:[^"\\]|\\.)*)"(?!:\d)')  # a name location's string (not a file location's)


def _location_scopes(location) -> tuple[str, ...]:
    """The op names a location carries (XLA fuses several, `;`-joined when it merged ops)."""
    names = []
    for text in _MLIR_NAME.findall(str(location)):
        names += [part for part in text.split(";") if part]
    return tuple(dict.fromkeys(names))


class StableHloProbe:
    """One shape's StableHLO (the largest batch at the typical shape set), with the values
    of `main`'s top-level ops returned as extra results, compiled by IREE."""

    kind = "iree"

    def __init__(self, ir_dir: Path, model, debug_dir: Path):
        from pipeline.runtimes.iree import require_iree, signatures_in
        from pipeline.stages.data import primary_shape_set

        require_iree("localization of the StableHLO")
        dims = primary_shape_set(model)
        found = [s for s in signatures_in(ir_dir) if (s.data.get("dims") or {}) == dims] or signatures_in(ir_dir)
        self._signature = max(found, key=lambda s: s.batch or 0)
        self.fixed_batch = self._signature.batch
        self._text = (self._signature.folder / "stablehlo.mlir").read_text()
        self._debug_dir = Path(debug_dir)
        self._values: dict[str, tuple[int, int]] = {}  # tensor name -> (op index in main, result index)
        self.debug_files: tuple[str, ...] = ()

    @staticmethod
    def _main(module):
        from iree.compiler import ir

        for op in module.body.operations:
            if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == "main":
                return op
        raise ValueError("the StableHLO has no func.func @main")

    def tensors(self) -> list[TensorInfo]:
        from iree.compiler import ir

        rows = []
        results = self._signature.results
        with ir.Context():
            module = ir.Module.parse(self._text)
            ops = list(self._main(module).regions[0].blocks[0].operations)
            returned = {}
            for i, value in enumerate(ops[-1].operands):
                returned.setdefault(_value_key(value), results[i]["name"] if i < len(results) else None)
            for index, op in enumerate(ops[:-1]):
                if op.operation.name == "stablehlo.constant":
                    continue
                scopes = _location_scopes(op.location)
                for k, result in enumerate(op.results):
                    if not isinstance(result.type, ir.RankedTensorType):
                        continue
                    element = str(result.type.element_type)
                    if not element.startswith(("f", "bf", "i", "ui")) or element == "i1":
                        continue
                    name = f"%{index}#{k}"
                    self._values[name] = (index, k)
                    consumers = tuple(dict.fromkeys(s for use in result.uses for s in _location_scopes(use.owner.location)))
                    output = returned.get(_value_key(result))
                    rows.append(TensorInfo(name=name, scopes=scopes, consumers=consumers, order=index, is_output=output is not None, output_name=output))
        self._scopes = {row.name: row.scopes for row in rows}
        return rows

    def display_name(self, name: str) -> str:
        scopes = self._scopes.get(name) or ()
        return f"{scopes[-1]} ({name})" if scopes else name

    def run(self, inputs, names):
        from iree.compiler import ir
        from iree.compiler.dialects import func

        from pipeline.localize.debugcopy import write_text
        from pipeline.runtimes.iree import LoadedModule, Signature, compile_stablehlo, device

        with ir.Context():
            module = ir.Module.parse(self._text)
            main = self._main(module)
            ops = list(main.regions[0].blocks[0].operations)
            extra = [ops[self._values[n][0]].results[self._values[n][1]] for n in names]
            ret = ops[-1]
            with ir.InsertionPoint(ret), ret.location:
                func.ReturnOp(list(ret.operands) + extra)
            ret.erase()
            signature_type = ir.FunctionType(ir.TypeAttr(main.attributes["function_type"]).value)
            main.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(signature_type.inputs, list(signature_type.results) + [v.type for v in extra]))
            text = str(module)
        path = write_text(self._debug_dir / "stablehlo.debug.mlir", text)
        self.debug_files = (path.name,)
        results = self._signature.results + [{"index": len(self._signature.results) + i, "name": n} for i, n in enumerate(names)]
        signature = Signature(self._signature.folder, {**self._signature.data, "results": results})
        loaded = LoadedModule(signature, compile_stablehlo(path, f"the debug copy {path.name}"), device())
        values = loaded.call(inputs).outputs()
        return {n: (np.asarray(values[n]), None) for n in names}


def _value_key(value) -> str:
    """An SSA value's identity while its module lives (the Python wrappers are not unique)."""
    return value.get_name()


# --------------------------------------------------------------------------- TensorFlow graphs

_GRAPH_SKIP = {"Const", "Placeholder", "NoOp", "VarHandleOp", "ReadVariableOp", "Assert"}
_XLA_ATTRS = ("_XlaMustCompile", "_noinline")


def inlined_graph_def(concrete, suffix: str = "_tfship_debug"):
    """Freeze a concrete function and inline every function call into one GraphDef.

    Returns (graph_def, output tensor names in the function's flat output order).
    An XLA-compiled call (`_XlaMustCompile`) is not inlined by Grappler; the
    attribute is dropped from a renamed copy first (the probe compiles the whole
    inlined graph with XLA again when it runs).
    """
    import tensorflow as tf
    from tfship.compat.tensorflow import convert_variables_to_constants_v2

    frozen_fn = convert_variables_to_constants_v2(concrete)
    frozen = frozen_fn.graph.as_graph_def()
    if not len(frozen.library.function):
        return frozen, [t.name for t in frozen_fn.outputs]
    graph_def = tf.compat.v1.GraphDef()
    graph_def.CopyFrom(frozen)
    renamed = {}
    for fdef in graph_def.library.function:
        for key in _XLA_ATTRS:
            if key in fdef.attr:
                del fdef.attr[key]
        renamed[fdef.signature.name] = fdef.signature.name + suffix
        fdef.signature.name = renamed[fdef.signature.name]

    def rename_calls(nodes):
        for node in nodes:
            for key in _XLA_ATTRS:
                if key in node.attr:
                    del node.attr[key]
            for attr in node.attr.values():
                if attr.HasField("func") and attr.func.name in renamed:
                    attr.func.name = renamed[attr.func.name]

    rename_calls(graph_def.node)
    for fdef in graph_def.library.function:
        rename_calls(fdef.node_def)
    inputs = [t.name for t in frozen_fn.inputs]
    outputs = [t.name for t in frozen_fn.outputs]

    def imported():
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(imported, [])
    pruned = wrapped.prune(
        feeds=[wrapped.graph.get_tensor_by_name(n) for n in inputs],
        fetches=[wrapped.graph.get_tensor_by_name(n) for n in outputs],
    )
    final = convert_variables_to_constants_v2(pruned)
    return final.graph.as_graph_def(), [t.name for t in final.outputs]


class GraphProbe:
    """A frozen, inlined TensorFlow graph (the debug copy) with extra fetches."""

    def __init__(self, graph_def, inputs: dict[str, str], outputs: dict[str, str], debug_dir: Path, jit: bool = False, fixed_batch: int | None = None, kind: str = "tf-graph"):
        from pipeline.localize.debugcopy import write_bytes, write_text

        self.kind = kind
        self._graph_def = graph_def
        self._inputs = inputs  # config input name -> tensor name
        self._outputs = outputs  # config output name -> tensor name
        self._jit = jit
        self.fixed_batch = fixed_batch
        debug_dir = Path(debug_dir)
        write_bytes(debug_dir / "graph.pb", graph_def.SerializeToString())
        write_text(debug_dir / "io.json", json.dumps({"inputs": inputs, "outputs": outputs, "jit_compile": jit}, indent=2))
        self.debug_files = ("graph.pb", "io.json")

    def tensors(self) -> list[TensorInfo]:
        import tensorflow as tf

        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(self._graph_def, name="")
        outputs = {t: name for name, t in self._outputs.items()}
        rows = []
        for order, op in enumerate(graph.get_operations()):
            if op.type in _GRAPH_SKIP or (op.type == "Identity" and op.name.startswith("Func/")):
                continue
            for tensor in op.outputs:
                if not (tensor.dtype.is_floating or tensor.dtype.is_integer):
                    continue
                rows.append(
                    TensorInfo(
                        name=tensor.name,
                        scopes=(op.name,),
                        consumers=tuple(c.name for c in tensor.consumers()),
                        order=order,
                        is_output=tensor.name in outputs,
                        output_name=outputs.get(tensor.name),
                    )
                )
        return rows

    def display_name(self, name: str) -> str:
        return name

    def run(self, inputs, names):
        import tensorflow as tf

        graph_def = self._graph_def

        def imported():
            tf.compat.v1.import_graph_def(graph_def, name="")

        wrapped = tf.compat.v1.wrap_function(imported, [])
        order = list(self._inputs)
        fn = wrapped.prune(
            feeds=[wrapped.graph.get_tensor_by_name(self._inputs[n]) for n in order],
            fetches=[wrapped.graph.get_tensor_by_name(n) for n in names],
        )
        if self._jit:
            fn = tf.function(fn, jit_compile=True)
        values = fn(*[tf.constant(inputs[n]) for n in order])
        return {n: (np.asarray(v), None) for n, v in zip(names, values)}


def saved_model_probe(path: Path, input_names: tuple[str, ...], debug_dir: Path, signature: str = "serving_default", jit: bool = False, kind: str = "tf-graph") -> GraphProbe:
    """The SavedModel's serving signature, frozen and inlined."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return function_probe(loaded.signatures[signature], input_names, debug_dir, jit, None, kind)


def function_probe(concrete, input_names: tuple[str, ...], debug_dir: Path, jit: bool, fixed_batch: int | None, kind: str) -> GraphProbe:
    import tensorflow as tf

    graph_def, flat_outputs = inlined_graph_def(concrete)
    placeholders = [n.name for n in graph_def.node if n.op == "Placeholder"]
    if all(name in placeholders for name in input_names):
        inputs = {name: f"{name}:0" for name in input_names}
    else:  # positional: the function's own argument order
        inputs = {name: f"{p}:0" for name, p in zip(input_names, placeholders)}
    structured = concrete.structured_outputs
    keys = tf.nest.flatten(sorted(structured)) if isinstance(structured, dict) else [f"output_{i}" for i in range(len(flat_outputs))]
    outputs = dict(zip(keys, flat_outputs))
    return GraphProbe(graph_def, inputs, outputs, debug_dir, jit=jit, fixed_batch=fixed_batch, kind=kind)


def frozen_graph_probe(folder: Path, debug_dir: Path, kind: str) -> GraphProbe:
    """A frozen graph already on disk (graph.pb + io.json with tensor names)."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((Path(folder) / "graph.pb").read_bytes())
    io = json.loads((Path(folder) / "io.json").read_text())
    return GraphProbe(graph_def, io["inputs"], io["outputs"], debug_dir, jit=False, kind=kind)
