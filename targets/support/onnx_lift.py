"""tf2onnx on a graph whose large weights are lifted out, then attached by name.

Why: tf2onnx keeps every constant inside its own graph objects, and each of its
optimizer passes rewrites every node's protobuf; with large weights the memory grows
by one copy of the weights per pass (measured: +1x per pass, 24 passes, 4.4 GB peak
for 50 MB of weights). So the function is frozen here with its large captured values
(variables, or constant tensors the function captured) turned into Placeholders of
the same dtype and shape instead of Consts: tf2onnx then converts a graph of a few
kilobytes, and the real values become ONNX initializers under the placeholders'
names, written once, inline or as external data.

Small captured values (shapes, axes, normalization statistics, DSP kernels) are
folded in as constants, as tf2onnx's own freezing does; the graph's inputs are the
function's signature inputs only, never its captures.

Weight-only chains tf2onnx adds around a non-constant kernel (Transpose, Reshape,
Cast, Identity, Squeeze, Unsqueeze of an initializer) are evaluated here in numpy,
so the file holds the kernels in the layout the ops read, as from tf2onnx alone.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Captured values at least this large are lifted out of the graph tf2onnx sees
# (when lifting is on); smaller ones stay constants tf2onnx can fold and read.
LIFT_MIN_BYTES = 64 * 1024


@dataclass
class Lifted:
    """A captured value kept out of the converted graph: read once, when attached."""

    source: Any  # tf.Variable or EagerTensor
    shape: tuple[int, ...]
    dtype: Any  # numpy dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def value(self) -> np.ndarray:
        return np.asarray(self.source.numpy()).reshape(self.shape)


@dataclass
class Converted:
    model: Any  # onnx.ModelProto; lifted values are still graph inputs until attach()
    lifted: dict[str, Lifted] = field(default_factory=dict)  # ONNX value name -> value
    input_names: list[str] = field(default_factory=list)  # the signature's TF tensor names


class _ShapeOnly:
    """Stands in for a lifted value in TF's freezing: the right shape (a While loop
    copies it into its output shapes) and a single zero as content, which TF writes
    as a one-value splat Const instead of the full tensor."""

    def __init__(self, shape: tuple[int, ...], dtype) -> None:
        self.shape, self.dtype = shape, np.dtype(dtype)

    def __array__(self, dtype=None, copy=None):
        return np.zeros((), dtype or self.dtype)


def _frozen_graph_def(concrete, lift_min_bytes: float) -> tuple[Any, dict[str, Lifted]]:
    """The function frozen into one GraphDef (control flow kept, calls inlined), with
    captured values of at least `lift_min_bytes` as Placeholders rather than Consts."""
    import tensorflow as tf
    from tfship.compat.tensorflow import attr_value_pb2, tensor_shape_pb2

    from targets.support import freezing

    lifted: dict[str, Lifted] = {}

    def stand_in(name, value):
        """A shape-only stand-in for a large value; its Const becomes a Placeholder below."""
        dtype, shape = value.dtype, value.shape
        nbytes = (shape.num_elements() or 0) * dtype.size if shape.is_fully_defined() else 0
        if nbytes >= lift_min_bytes and dtype.is_numpy_compatible and dtype != tf.string:
            lifted[name] = Lifted(value, tuple(shape.as_list()), dtype.as_numpy_dtype)
            return _ShapeOnly(tuple(shape.as_list()), dtype.as_numpy_dtype)
        return None

    graph_def = freezing.frozen_graph_def(concrete, stand_in, lower_control_flow=False, aggressive_inlining=True)
    for node in graph_def.node:
        if node.name in lifted:
            item = lifted[node.name]
            dtype_attr = attr_value_pb2.AttrValue(type=tf.as_dtype(item.dtype).as_datatype_enum)
            shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in item.shape])
            node.op = "Placeholder"
            node.ClearField("attr")
            node.attr["dtype"].CopyFrom(dtype_attr)
            node.attr["shape"].shape.CopyFrom(shape)
    return graph_def, lifted


def _allow_inlining(graph_def) -> None:
    """Let grappler inline functions marked for XLA compilation.

    Keras 3 runs a grouped convolution (ConvNeXt's 7x7 `groups=channels` Conv2D) through a
    `tf.function(jit_compile=True)`: its FunctionDef carries `_XlaMustCompile` and
    `_noinline`, so freezing and tf2onnx's grappler pass keep it as a StatefulPartitionedCall,
    which tf2onnx cannot convert. Without the marks the call is inlined like any other and
    its ops (Conv2D, ...) convert; the computation is the same."""
    for function in graph_def.library.function:
        for key in ("_XlaMustCompile", "_noinline"):
            if key in function.attr:
                del function.attr[key]
        for node in function.node_def:
            if "_XlaMustCompile" in node.attr:
                del node.attr["_XlaMustCompile"]
    for node in graph_def.node:
        if "_XlaMustCompile" in node.attr:
            del node.attr["_XlaMustCompile"]


def _hide_shapes(graph_def, names: set[str]) -> dict:
    shapes = {}
    for node in graph_def.node:
        if node.name in names:
            shapes[node.name] = node.attr["shape"].shape.SerializeToString()
            node.attr["shape"].shape.Clear()
            node.attr["shape"].shape.unknown_rank = True
    return shapes


def _restore_shapes(graph_def, shapes: dict) -> None:
    found = set()
    for node in graph_def.node:
        if node.name in shapes:
            node.attr["shape"].shape.ParseFromString(shapes[node.name])
            found.add(node.name)
    missing = set(shapes) - found
    if missing:  # grappler keeps fed placeholders; anything else is a converter change
        raise RuntimeError(f"grappler dropped the lifted placeholders {sorted(missing)[:3]}")


def convert_function(function, signature, opset: int, lift_min_bytes: float = LIFT_MIN_BYTES) -> Converted:
    """tf2onnx on `function` (a tf.function with `signature`): graph inputs are the
    signature's inputs, then one per lifted value (named `<placeholder>:0`)."""
    import tensorflow as tf
    from tfship.compat.tf2onnx import convert_common, fix_freezing_errors_part2, tensor_names_from_structed, tf_optimize, tf_session

    from targets.support import tf2onnx_ops

    concrete = function.get_concrete_function(*signature)
    # The signature's own inputs come first; the rest of `inputs` are captures.
    input_names = [t.name for t in concrete.inputs[: len(signature)]]
    output_names = [t.name for t in concrete.outputs if t.dtype != tf.resource]
    tensors_to_rename = tensor_names_from_structed(concrete, input_names, output_names)

    with tf.device("/cpu:0"):
        graph_def, lifted = _frozen_graph_def(concrete, lift_min_bytes)
        graph_def = fix_freezing_errors_part2(graph_def)
        _allow_inlining(graph_def)
        lifted_names = [f"{name}:0" for name in lifted]
        with tf.Graph().as_default() as tf_graph:
            with tf_session(graph=tf_graph):
                tf.import_graph_def(graph_def, name="")
            # Grappler allocates memory for placeholders of known shape (measured: +1x
            # the lifted bytes); their shapes are hidden from it and restored after.
            shapes = _hide_shapes(graph_def, set(lifted))
            graph_def = tf_optimize(input_names + lifted_names, output_names, graph_def)
            _restore_shapes(graph_def, shapes)
        model, _ = convert_common(
            graph_def,
            name=concrete.name,
            continue_on_error=True,
            opset=opset,
            input_names=input_names + lifted_names,
            output_names=output_names,
            tensors_to_rename=tensors_to_rename,
            large_model=False,
            custom_op_handlers=tf2onnx_ops.handlers(),
        )
    return Converted(model=model, lifted={f"{name}:0": item for name, item in lifted.items()}, input_names=input_names)


# --------------------------------------------------------------------------- attaching


_FOLDABLE = {"Transpose", "Reshape", "Cast", "Identity", "Squeeze", "Unsqueeze"}


def _constant_inputs(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer if init.data_location != 1 and _small(init)}
    for node in graph.node:
        if node.op_type == "Constant" and len(node.output) == 1:
            for attr in node.attribute:
                if attr.name == "value" and attr.HasField("t"):
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _small(init) -> bool:
    return int(np.prod(init.dims, dtype=np.int64)) <= 64


def _fold(node, value: np.ndarray, small: dict[str, np.ndarray]) -> np.ndarray | None:
    """numpy for a weight-only node, or None when this node cannot be folded here."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    extra = [small.get(name) for name in node.input[1:] if name]
    if any(e is None for e in extra):
        return None
    if node.op_type == "Identity":
        return value
    if node.op_type == "Transpose":
        return np.ascontiguousarray(np.transpose(value, attrs.get("perm")))
    if node.op_type == "Cast":
        return value.astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
    if node.op_type == "Reshape" and extra and not attrs.get("allowzero"):
        shape = [value.shape[i] if d == 0 else int(d) for i, d in enumerate(extra[0])]
        return value.reshape(shape)
    if node.op_type == "Squeeze":
        axes = extra[0] if extra else attrs.get("axes")
        return np.squeeze(value, axis=tuple(int(a) for a in axes) if axes is not None else None)
    if node.op_type == "Unsqueeze":
        axes = extra[0] if extra else attrs.get("axes")
        if axes is None:
            return None
        return np.expand_dims(value, axis=tuple(int(a) for a in axes))
    return None


def _fold_plan(graph, lifted: dict[str, Lifted]):
    """Chains of foldable nodes that start at a lifted value and feed only foldable
    nodes: {final value name: (lifted name, [nodes in order])}, plus nodes to drop."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {v.name for v in graph.output}
    chains: dict[str, tuple[str, list]] = {}
    for name in lifted:
        if name not in consumers and name not in outputs:
            continue  # not read by the converted graph: nothing to attach
        chain, current = [], name
        while True:
            users = consumers.get(current, [])
            if len(users) != 1 or current in outputs:
                break
            node = users[0]
            if node.op_type not in _FOLDABLE or node.input[0] != current or len(node.output) != 1:
                break
            chain.append(node)
            current = node.output[0]
        chains[current] = (name, chain)
    return chains


def attach(converted: Converted, path: Path, external: bool, data_name: str) -> list[str]:
    """Write `converted.model` to `path` with every lifted value as an initializer
    (after folding its weight-only chain); as external data in `data_name` beside the
    graph when `external`. Values are read one at a time. Returns the files written."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model, lifted = converted.model, converted.lifted
    graph = model.graph
    chains = _fold_plan(graph, lifted)
    small = _constant_inputs(graph)
    inputs = []
    for value_info in graph.input:
        if value_info.name not in lifted:
            inputs.append(onnx.ValueInfoProto())
            inputs[-1].CopyFrom(value_info)
    del graph.input[:]
    graph.input.extend(inputs)

    files = [path.name]
    offset = 0
    # Inline initializers are serialized one at a time into a side file, appended to
    # the graph once every chain is folded (folding changes the graph's nodes).
    tail = path.parent / (path.name + ".initializers")
    with open(path.parent / data_name if external else tail, "wb") as sink:
        for name, chain in chains.values():
            value, current = lifted[name].value(), name
            for node in chain:  # a node that cannot be folded stays, fed by the folded value
                folded = _fold(node, value, small)
                if folded is None:
                    break
                value, current = folded, node.output[0]
                graph.node.remove(node)
            tensor = numpy_helper.from_array(value, current)
            del value
            if external:
                raw = tensor.raw_data
                padding = -offset % 4096  # page-aligned, as onnx's own writer does, for mmap
                sink.write(b"\0" * padding)
                offset += padding
                sink.write(raw)
                tensor.ClearField("raw_data")
                tensor.data_location = TensorProto.EXTERNAL
                for key, val in (("location", data_name), ("offset", str(offset)), ("length", str(len(raw)))):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, val
                offset += len(raw)
                del raw
                graph.initializer.append(tensor)
            else:
                # Protobuf merges repeated occurrences of a message field: a ModelProto
                # followed by ModelProtos holding only `graph.initializer` entries parses
                # as one model with all of them; so the whole model is never in memory.
                sink.write(onnx.ModelProto(graph=onnx.GraphProto(initializer=[tensor])).SerializeToString())
            del tensor
    with open(path, "wb") as out:
        out.write(model.SerializeToString())
        if not external:
            with open(tail, "rb") as fragments:
                shutil.copyfileobj(fragments, out, 16 * 1024 * 1024)
    if not external:
        tail.unlink()
    elif offset:
        files.append(data_name)
    else:  # nothing was large enough to move out
        (path.parent / data_name).unlink()
    return files
