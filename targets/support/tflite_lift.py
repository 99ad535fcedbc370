"""TFLite for large models: the converter sees a stand-in for each large weight, and
the real weights are written into the file afterwards.

Why: the converter holds several copies of every weight at once (the SavedModel's
variables, the frozen constants, the MLIR attributes, the FlatBuffer builder, the
returned string and Python bytes): measured 4.55 GB peak for 553 MB of float32
weights, converter alone. Here the function is frozen with each large captured value
(at least LIFT_MIN_BYTES) as a splat constant: one value repeated, which TensorFlow
and MLIR store as a single element, distinct per weight so that it can be found again.
The converter then converts a graph of a few kilobytes and, asked to place buffers
after the FlatBuffer (`_experimental_use_buffer_offset`), writes each splat out once.
The result's structure (ops, tensors, signature, quantization parameters) is rebuilt
as a standard single-FlatBuffer file, each splat buffer filled from its weight in the
layout and type the reading op expects:

- float32: as read, transposed for FULLY_CONNECTED ([out, in]) and CONV_2D (OHWI),
  reshaped for DEPTHWISE_CONV_2D ([1, H, W, C*M]); a weight a MatMul reads as a matrix
  (through a Reshape, as Keras 3 computes EinsumDense, or an Einsum) in that matrix's
  layout; a square kernel as the MatMul's transpose flag says; any other ambiguity
  keeps the weight real;
- float16: the same, stored as float16 (read through DEQUANTIZE);
- dynamic_range: symmetric int8 with the per-channel (or per-tensor) scale the converter
  wrote for the tensor's quantized dimension, recomputed from the real weight.

A weight whose stand-in the converter folded into something else (a batch-norm scale
fused into a kernel, a constant computed from it) is not found again: it is converted
as a real constant in a second conversion. The file is checked by parity like any other.
Calibrated variants (int8, int16x8) are not converted this way: their calibration runs
the float model, which needs the real weights.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Models with at least this many bytes of large weights convert this way; below it
# the converter's own memory is small next to the process (x8 of 256 MB is 2 GB).
LIFT_MODEL_BYTES = 256 * 2**20
# Captured values at least this large get a stand-in.
LIFT_MIN_BYTES = 1 * 2**20
VARIANTS = ("float32", "float16", "dynamic_range")
SCRATCH = ".lifted_savedmodel"  # inside the staging folder; removed after converting
ALIGNMENT = 16  # buffer data alignment, as the converter writes it


@dataclass
class Stand:
    """A large weight the converter saw as a splat of `splat`."""

    name: str  # its Const node in the frozen graph
    source: Any  # tf.Variable or EagerTensor
    shape: tuple[int, ...]
    dtype: Any
    splat: float
    transpose_b: bool | None = None  # read by MatMul/BatchMatMul as its second input: the op's flag
    # Read as a matrix (an Einsum, or a Reshape into a MatMul, as Keras 3 computes
    # EinsumDense): (axis order, rows, columns, read transposed); the converter then
    # stores it as FULLY_CONNECTED's [out, in] or as BATCH_MATMUL's right-hand side.
    einsum: tuple[tuple[int, ...], int, int, bool] | None = None

    def value(self) -> np.ndarray:
        return np.asarray(self.source.numpy()).reshape(self.shape)


class NotLifted(Exception):
    """The stand-ins could not all be placed: convert this variant the usual way."""


def liftable_size(traced):
    """Bytes of the float32 captured values a stand-in would replace (sizes.WeightSize)."""
    from targets.support import sizes

    return sizes.weight_size(traced, float32_only_from=LIFT_MIN_BYTES)


def applies(conv, traced) -> tuple[bool, str]:
    """Whether this variant converts with stand-ins, and a note when that was chosen
    because the weights could not be sized: stand-ins keep the converter's memory near
    the model's size whatever it is, and an unplaceable one falls back to the usual way."""
    if conv.variant not in VARIANTS or conv.denylisted_nodes or conv.allow_select_tf_ops:
        return False, ""
    size = liftable_size(traced)
    if not size.known:
        return True, size.note("it converted with stand-ins for the weights, the path that works at any size")
    return size.bytes >= LIFT_MODEL_BYTES, ""


def _splat(index: int) -> float:
    """Distinct values exactly representable in float16 and float32, never 0 or ±1."""
    exponent, mantissa = divmod(index, 1000)
    return -(2.0 ** (exponent % 8)) * (1.0 + (mantissa + 1) / 1024.0)


class _Splat:
    """Stands in for a large value in TF's freezing: the right shape and one value,
    which TF writes as a one-value (splat) Const instead of the full tensor."""

    def __init__(self, shape: tuple[int, ...], dtype, value: float) -> None:
        self.shape, self.dtype, self.value = shape, np.dtype(dtype), value

    def __array__(self, dtype=None, copy=None):
        return np.full((), self.value, dtype or self.dtype)


def _frozen(concrete, keep: set[str]):
    import tensorflow as tf

    from targets.support import freezing

    stands: dict[str, Stand] = {}

    def stand_in(name, value):
        """A splat for every large float32 value not in `keep`."""
        shape = value.shape
        nbytes = (shape.num_elements() or 0) * value.dtype.size if shape.is_fully_defined() else 0
        if nbytes < LIFT_MIN_BYTES or value.dtype != tf.float32 or name in keep:
            return None
        splat = _splat(len(stands))
        stands[name] = Stand(name, value, tuple(shape.as_list()), np.float32, splat)
        return _Splat(tuple(shape.as_list()), np.float32, splat)

    graph_def = freezing.frozen_graph_def(concrete, stand_in, lower_control_flow=False, aggressive_inlining=True)
    _read_flags(graph_def, stands)
    return graph_def, stands


def _read_flags(graph_def, stands: dict[str, Stand]) -> None:
    """Record how MatMuls read each stand-in as their second input: transposed or not
    (it decides the layout of a square FULLY_CONNECTED kernel), and through which
    matrix shape when an Einsum or a Reshape comes first."""
    consumers: dict[str, list] = {}
    nodes = {node.name: node for node in graph_def.node}
    for node in graph_def.node:
        for position, name in enumerate(node.input):
            consumers.setdefault(name.split(":")[0].lstrip("^"), []).append((node, position))
    for stand in stands.values():
        frontier, seen = [(stand.name, None)], set()
        while frontier:
            name, matrix = frontier.pop()
            if name in seen:
                continue
            seen.add(name)
            for node, position in consumers.get(name, []):
                if node.op == "Identity":
                    frontier.append((node.name, matrix))
                elif node.op == "Reshape" and position == 0 and matrix is None:
                    frontier.append((node.name, _reshaped(nodes.get(node.input[1].split(":")[0]), stand.shape)))
                elif node.op in ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3") and position == 1:
                    flag = bool(node.attr["transpose_b" if node.op == "MatMul" else "adj_y"].b)
                    if matrix is None:
                        stand.transpose_b = flag
                    elif matrix != "unknown":
                        stand.einsum = (*matrix, flag)
                elif node.op == "Einsum" and len(node.input) == 2 and matrix is None:
                    found = _einsum_matrix(node.attr["equation"].s.decode(), position, stand.shape)
                    stand.einsum = (*found, False) if found else None


def _reshaped(shape_node, shape: tuple[int, ...]):
    """(axis order, rows, columns) of a Reshape of the whole weight into a matrix, in
    its own axis order; "unknown" when the target shape is not a constant 2-D one."""
    import tensorflow as tf

    if shape_node is None or shape_node.op != "Const":
        return "unknown"
    target = [int(d) for d in tf.make_ndarray(shape_node.attr["value"].tensor).reshape(-1)]
    total = int(np.prod(shape, dtype=np.int64))
    if len(target) != 2 or target.count(-1) > 1:
        return "unknown"
    if -1 in target:
        known = target[1 - target.index(-1)]
        target[target.index(-1)] = total // known if known else 0
    if target[0] * target[1] != total:
        return "unknown"
    return tuple(range(len(shape))), target[0], target[1]


def _einsum_matrix(equation: str, position: int, shape: tuple[int, ...]):
    """How an Einsum reads a constant operand as a matrix: its contracted axes (in the
    other operand's order) first, then its free axes; None when the equation is not a
    plain two-operand contraction whose contracted axes come in the same order in both."""
    if "..." in equation or "->" not in equation:
        return None
    inputs, output = equation.replace(" ", "").split("->")
    operands = inputs.split(",")
    if len(operands) != 2 or len(operands[position]) != len(shape):
        return None
    kernel, other = operands[position], operands[1 - position]
    contracted = [c for c in kernel if c in other and c not in output]
    if not contracted or contracted != [c for c in other if c in contracted] or any(c in other for c in kernel if c not in contracted):
        return None  # batch axes shared with the other operand, or contracted in another order
    free = [c for c in kernel if c not in contracted]
    if position != 1 or output != "".join(c for c in other if c not in contracted) + "".join(free):
        return None  # not x @ W with the output laid out as (x's free axes, W's free axes)
    perm = tuple(kernel.index(c) for c in contracted + free)
    size = lambda labels: int(np.prod([shape[kernel.index(c)] for c in labels], dtype=np.int64))  # noqa: E731
    return perm, size(contracted), size(free)


def _write_saved_model(folder: Path, graph_def, concrete, input_names: list[str], output_names: list[str]) -> None:
    """A SavedModel of the frozen graph whose `serving_default` has the config's names."""
    import tensorflow as tf

    outputs = dict(zip(sorted(concrete.structured_outputs), concrete.outputs))
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            info = tf.compat.v1.saved_model.utils.build_tensor_info
            signature = tf.compat.v1.saved_model.signature_def_utils.build_signature_def(
                inputs={name: info(graph.get_tensor_by_name(t.name)) for name, t in zip(input_names, concrete.inputs)},
                outputs={name: info(graph.get_tensor_by_name(outputs[name].name)) for name in output_names},
                method_name="tensorflow/serving/predict",
            )
            builder = tf.compat.v1.saved_model.Builder(str(folder))
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature}, strip_default_attrs=True)
            builder.save()


# --------------------------------------------------------------------------- placing


@dataclass
class _Place:
    stand: Stand
    layout: str  # same | transpose | ohwi | depthwise | transpose_conv


def _layouts(stand: Stand, tfl: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    shape = stand.shape
    out = {"same": shape}
    if stand.einsum is not None:
        _, rows, columns, transposed = stand.einsum
        out["einsum_fc"] = (rows, columns) if transposed else (columns, rows)  # FULLY_CONNECTED's [out, in]
        out["einsum_mm"] = (rows, columns)  # BATCH_MATMUL's right-hand side, as multiplied
    if len(shape) == 2:
        out["transpose"] = shape[::-1]
    if len(shape) == 4:
        h, w, i, o = shape
        out["ohwi"] = (o, h, w, i)
        out["depthwise"] = (1, h, w, i * o)
        out["transpose_conv"] = (i, h, w, o)  # Conv2DBackpropInput's HWOI filter as OHWI
    return {k: v for k, v in out.items() if tuple(v) == tuple(tfl)}


_PREFERRED = {"FULLY_CONNECTED": "transpose", "CONV_2D": "ohwi", "DEPTHWISE_CONV_2D": "depthwise", "TRANSPOSE_CONV": "transpose_conv"}
_PREFERRED_EINSUM = {"FULLY_CONNECTED": "einsum_fc", "BATCH_MATMUL": "einsum_mm"}


def _arrange(value: np.ndarray, layout: str, stand: Stand) -> np.ndarray:
    if layout in ("einsum_fc", "einsum_mm"):
        perm, rows, columns, transposed = stand.einsum
        matrix = np.transpose(value, perm).reshape(rows, columns)
        return matrix.T if layout == "einsum_fc" and not transposed else matrix
    if layout == "transpose":
        return value.T
    if layout == "ohwi":
        return np.transpose(value, (3, 0, 1, 2))
    if layout == "depthwise":
        h, w, i, o = value.shape
        return value.reshape(1, h, w, i * o)
    if layout == "transpose_conv":
        return np.transpose(value, (2, 0, 1, 3))
    return value


def _readers(graph, op_names: dict[int, str]) -> dict[int, list[tuple[str, int]]]:
    """tensor index -> [(op name, input position)], looking through DEQUANTIZE."""
    readers: dict[int, list[tuple[str, int]]] = {}
    dequantized = {}
    for op in graph.operators:
        name = op_names.get(op.opcodeIndex, "")
        if name == "DEQUANTIZE":
            dequantized[int(op.outputs[0])] = int(op.inputs[0])
    for op in graph.operators:
        name = op_names.get(op.opcodeIndex, "")
        for position, tensor in enumerate(op.inputs if op.inputs is not None else []):
            tensor = int(tensor)
            readers.setdefault(dequantized.get(tensor, tensor), []).append((name, position))
    return readers


def _place(model, content: bytes, stands: dict[str, Stand]) -> tuple[dict[int, _Place], set[str]]:
    """{buffer index: placement} for every splat buffer found, and the stand-ins whose
    splat was not found with one unambiguous layout."""
    from tfship.compat.litert import schema_py_generated as schema

    from targets.support.litert import _builtin_names

    builtin = _builtin_names()
    op_names = {i: builtin.get(max(code.builtinCode, code.deprecatedBuiltinCode), "") for i, code in enumerate(model.operatorCodes)}
    by_splat32 = {np.float32(s.splat).tobytes(): s for s in stands.values()}
    by_splat16 = {np.float16(s.splat).tobytes(): s for s in stands.values()}
    by_scale = [(np.float32(abs(s.splat)) / np.float32(127.0), s) for s in stands.values()]
    placed: dict[int, _Place] = {}
    found: set[str] = set()
    bad: set[str] = set()
    for graph in model.subgraphs:
        readers = _readers(graph, op_names)
        for index, tensor in enumerate(graph.tensors):
            buffer = model.buffers[tensor.buffer]
            if buffer.offset <= 1 or buffer.size < LIFT_MIN_BYTES // 4:
                continue
            data = np.frombuffer(content, np.uint8, buffer.size, buffer.offset)
            stand = None
            if tensor.type == 0 and buffer.size % 4 == 0:  # FLOAT32
                stand = by_splat32.get(bytes(data[:4]))
            elif tensor.type == 1 and buffer.size % 2 == 0:  # FLOAT16
                stand = by_splat16.get(bytes(data[:2]))
            elif tensor.type == 9 and tensor.quantization is not None and tensor.quantization.scale is not None:  # INT8
                scale = np.asarray(tensor.quantization.scale, np.float32)
                matches = [s for target, s in by_scale if scale.size and np.allclose(scale, target, rtol=1e-6, atol=0)]
                stand = matches[0] if len(matches) == 1 else None
            if stand is None or not _uniform(data, {0: 4, 1: 2, 9: 1}[tensor.type]):
                continue
            tfl = tuple(int(d) for d in tensor.shape)
            layouts = _layouts(stand, tfl)
            table = _PREFERRED_EINSUM if stand.einsum is not None else _PREFERRED
            preferred = {table.get(op) for op, position in readers.get(index, []) if position == 1} - {None}
            if stand.einsum is not None:
                layouts = {k: v for k, v in layouts.items() if k in preferred}
            elif len(layouts) > 1 and preferred == {"transpose"} and stand.transpose_b is not None:
                layouts = {k: v for k, v in layouts.items() if k == ("same" if stand.transpose_b else "transpose")}
            elif len(layouts) > 1 and len(preferred) == 1:
                layouts = {k: v for k, v in layouts.items() if k in preferred}
            if len(layouts) != 1 or int(np.prod(tfl, dtype=np.int64)) != int(np.prod(stand.shape, dtype=np.int64)):
                bad.add(stand.name)
                continue
            layout = next(iter(layouts))
            if tensor.buffer in placed and (placed[tensor.buffer].stand is not stand or placed[tensor.buffer].layout != layout):
                # The converter stores identical contents once: int8 stand-ins all quantize
                # to -127, and one weight read in two layouts is one splat. Each real
                # content gets its own buffer.
                model.buffers.append(schema.BufferT())
                tensor.buffer = len(model.buffers) - 1
            placed[tensor.buffer] = _Place(stand, layout)
            found.add(stand.name)
    missing = (set(stands) - found) | bad
    return placed, missing


def _uniform(data: np.ndarray, width: int) -> bool:
    first = data[:width]
    step = 1 << 22
    for start in range(0, data.size, step):
        block = data[start : start + step].reshape(-1, width)
        if not (block == first).all():
            return False
    return True


def _rows(value: np.ndarray) -> int:
    """Rows of axis 0 per block: about 4M elements, so temporaries stay small."""
    return max(1, (1 << 22) // max(1, value.size // max(1, value.shape[0])))


def _peaks(value: np.ndarray, tensor) -> np.ndarray:
    """max|w| per channel of the tensor's quantized dimension (one value when the
    tensor has one scale), shaped to broadcast against `value`; read in blocks."""
    channels = len(tensor.quantization.scale)
    axis = int(tensor.quantization.quantizedDimension or 0)
    if channels > 1 and value.shape[axis] != channels:
        raise NotLifted(f"{channels} scales for dimension {axis} of shape {value.shape}")
    shape = [1] * value.ndim
    if channels > 1:
        shape[axis] = channels
    peak = np.zeros(shape, np.float32)
    rows = _rows(value)
    for start in range(0, value.shape[0], rows):
        block = np.abs(value[start : start + rows])
        if channels == 1:
            peak = np.maximum(peak, block.max())
        elif axis == 0:
            peak[start : start + rows] = block.max(axis=tuple(range(1, value.ndim)), keepdims=True)
        else:
            peak = np.maximum(peak, block.max(axis=tuple(i for i in range(value.ndim) if i != axis), keepdims=True))
    return peak


def _scales(peak: np.ndarray) -> np.ndarray:
    """The converter's symmetric int8 weight scales: max|w| / 127 (1 for a zero channel)."""
    flat = peak.reshape(-1)
    return np.where(flat > 0, flat / np.float32(127.0), np.float32(1.0)).astype(np.float32)


def _quantize(value: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """int8 as the converter quantizes weights: w / max|w| x 127 in double precision, per
    channel (or for the tensor), rounded half away from zero, in blocks of rows."""
    peak = np.where(peak > 0, peak, 1.0).astype(np.float64)
    out = np.empty(value.shape, np.int8)
    rows = _rows(value)
    for start in range(0, value.shape[0], rows):
        part = peak[start : start + rows] if peak.shape[0] > 1 else peak
        scaled = value[start : start + rows].astype(np.float64) / part * 127.0
        out[start : start + rows] = np.clip(np.sign(scaled) * np.floor(np.abs(scaled) + 0.5), -127, 127)
    return out


class _Filled:
    """A buffer packed from a weight only when the builder reaches it (one at a time)."""

    def __init__(self, produce) -> None:
        self.produce = produce

    def Pack(self, builder):
        from tfship.compat.litert import schema_py_generated as schema

        payload = self.produce()
        data = _vector(builder, payload)
        del payload
        schema.BufferStart(builder)
        schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


def _vector(builder, payload: np.ndarray) -> int:
    raw = np.ascontiguousarray(payload).reshape(-1).view(np.uint8)
    builder.StartVector(1, raw.size, ALIGNMENT)
    builder.head = builder.head - raw.size
    builder.Bytes[builder.head : builder.head + raw.size] = raw.data
    return builder.EndVector()


def _rebuild(model, placed: dict[int, _Place], kept: dict[int, np.ndarray], variant: str, path: Path) -> int:
    """Write `model` as one FlatBuffer to `path`, every data buffer inline. Returns its size."""
    import flatbuffers

    tensors_of: dict[int, list] = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            tensors_of.setdefault(tensor.buffer, []).append(tensor)

    # Tensors computed from an int8 weight that keep its scale (GATHER's output, a
    # RESHAPE of it) carry the stand-in's scale too: they follow the weight's new one.
    activations = [t for graph in model.subgraphs for t in graph.tensors
                   if t.type == 9 and not (model.buffers[t.buffer].size or model.buffers[t.buffer].data is not None or t.buffer in placed)
                   and t.quantization is not None and t.quantization.scale is not None]
    peaks = {}
    for index, place in placed.items():  # subgraphs are packed before buffers: scales first
        tensor = tensors_of[index][0]
        if tensor.type == 9:
            stand_scale = np.asarray(tensor.quantization.scale, np.float32)
            peaks[index] = _peaks(_arrange(place.stand.value(), place.layout, place.stand), tensor)
            scales = _scales(peaks[index])
            followers = [t for t in activations if len(t.quantization.scale) == stand_scale.size and np.allclose(t.quantization.scale, stand_scale, rtol=1e-6, atol=0)]
            for reader in tensors_of[index] + followers:  # every tensor of this buffer, and those that inherit its scale
                reader.quantization.scale = [float(x) for x in scales]
                reader.quantization.zeroPoint = [0] * scales.size

    def producer(index: int):
        place = placed[index]
        tensor = tensors_of[index][0]

        def produce():
            value = _arrange(place.stand.value(), place.layout, place.stand)
            if variant == "float16":
                return value.astype(np.float16)
            if tensor.type == 9:
                return _quantize(value, peaks[index])
            return value.astype(np.float32)

        return produce

    buffers = []
    for index, buffer in enumerate(model.buffers):
        if index in placed:
            buffers.append(_Filled(producer(index)))
        else:
            if index in kept:
                buffer.data = kept[index]
            buffer.offset, buffer.size = 0, 0
            buffers.append(buffer)
    model.buffers = buffers
    # Sized for the whole file up front (kept buffers, every placed weight at its stored
    # width): a growing builder would copy itself at each doubling.
    widths = {0: 4, 1: 2, 9: 1}
    total = sum(k.size for k in kept.values()) + sum(
        int(np.prod(place.stand.shape, dtype=np.int64)) * widths.get(tensors_of[index][0].type, 4) for index, place in placed.items()
    )
    builder = flatbuffers.Builder(total + ALIGNMENT * (len(buffers) + 1) + (1 << 20))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    view = memoryview(builder.Bytes)[builder.Head() :]
    with open(path, "wb") as out:
        out.write(view)
    return len(view)


# --------------------------------------------------------------------------- convert


@dataclass
class Lifted:
    path: Path
    skeleton: bytes  # the converted structure without its buffers: for listing ops
    size: int
    seconds: float
    lifted: int  # weights written into the file


def convert(job, conv, layers, path: Path) -> Lifted:
    """Convert `conv.variant` with stand-ins and write the real weights into `path`.
    Raises NotLifted when the stand-ins cannot all be placed (nothing is written)."""
    from tfship.compat.litert import schema_py_generated as schema
    from tfship.compat.tensorflow import use_buffer_offset

    from targets.support import litert

    concrete = job.traced.get_concrete_function()
    start = time.perf_counter()
    keep: set[str] = set()
    folder = job.out_dir / SCRATCH
    try:
        for _attempt in range(3):
            graph_def, stands = _frozen(concrete, keep)
            if not stands:
                raise NotLifted("no weight left to stand in for")
            shutil.rmtree(folder, ignore_errors=True)
            _write_saved_model(folder, graph_def, concrete, list(job.model.input_names), list(job.model.output_names))
            del graph_def
            converter = litert._converter(folder, conv)
            use_buffer_offset(converter)
            content = litert.run_converter(converter, conv, job.saved_model_dir, layers)
            skeleton = content[: _structure_end(content)]
            model = schema.ModelT.InitFromPackedBuf(bytearray(skeleton), 0)
            placed, missing = _place(model, content, stands)
            if not missing:
                break
            keep |= missing
        else:
            raise NotLifted(f"{len(missing)} weight(s) could not be placed after three conversions")
        kept: dict[int, np.ndarray] = {}
        for index, buffer in enumerate(model.buffers):
            if buffer.offset > 1 and index not in placed:
                kept[index] = np.frombuffer(content, np.uint8, buffer.size, buffer.offset).copy()
        del content
        size = _rebuild(model, placed, kept, conv.variant, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Lifted(path, skeleton, size, time.perf_counter() - start, len({p.stand.name for p in placed.values()}))


def _structure_end(content: bytes) -> int:
    """Where the FlatBuffer ends and the buffers placed after it begin."""
    from tfship.compat.litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    offsets = [model.Buffers(i).Offset() for i in range(model.BuffersLength())]
    offsets = [o for o in offsets if o > 1]
    return min(offsets) if offsets else len(content)
