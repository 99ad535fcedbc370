"""Stage `fingerprint`: what the traced model computes, as a digest.

A cache hit claims that an artifact came from the same computation, so the claim is
keyed on the computation itself, not on where it came from (Bazel keys an action on
the digest of its inputs; when the inputs of a model cannot be listed, because user
code reads checkpoints, vocabularies or statistics, the product is what is keyed):

- graph: the serving function's graph and every function it calls, canonical: node
  names (which carry Keras' per-process layer numbering) become positions, function
  names (`__inference_..._123`) become digests of their bodies, attributes private to
  TensorFlow's tracing (`_user_specified_name`, ...) are left out;
- weights: the dtype, shape and bytes of every captured variable and constant tensor,
  and the contents of captured lookup tables, in the order the graph takes them;
- signature: the inputs' names, dtypes and shapes and the outputs'.

The same code and weights give the same digest in any process (a notebook's second
copy of a model, a factory run again); a changed activation, constant, layer order,
layer, checkpoint or vocabulary gives another. A captured resource whose state cannot
be read (neither a variable nor a lookup table) is counted in `opaque_resources`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pipeline.records import ParityData, TracedModel

# Attributes that name a function: their value is replaced by that function's digest.
_FUNC_ATTR_KINDS = ("func",)
_TABLE_READERS = {"LookupTableFindV2", "LookupTableSizeV2", "LookupTableExportV2"}


@dataclass(frozen=True)
class ModelFingerprint:
    """Digests of what a traced model computes; `digest` combines the three parts."""

    digest: str
    graph: str
    weights: str
    signature: str
    weight_bytes: int = 0
    opaque_resources: int = 0

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @staticmethod
    def differences(old: dict | None, new: dict) -> list[str]:
        """Which parts differ ('graph', 'weights', 'signature'); all of them when `old` is unknown."""
        if not old:
            return ["graph", "weights", "signature"]
        return [part for part in ("graph", "weights", "signature") if old.get(part) != new.get(part)]


def _sha(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


class _Canon:
    """Canonical text of a graph and of the functions of its library, by digest."""

    def __init__(self, library) -> None:
        self.functions = {f.signature.name: f for f in library.function}
        self.digests: dict[str, str] = {}

    def function_digest(self, name: str) -> str:
        if name not in self.digests:
            if name not in self.functions:  # a function outside the library (a registered op's): its name is stable
                self.digests[name] = _sha(b"extern", name.encode())
            else:
                self.digests[name] = "computing"  # recursion guard (a function calling itself)
                self.digests[name] = _sha(self._function_text(self.functions[name]).encode())
        return self.digests[name]

    def _attr(self, value) -> str:
        kind = value.WhichOneof("value")
        if kind == "func":
            return f"func:{self.function_digest(value.func.name)}:{self._attrs(value.func.attr)}"
        if kind == "list" and value.list.func:
            return "funcs:" + ",".join(f"{self.function_digest(f.name)}:{self._attrs(f.attr)}" for f in value.list.func)
        return value.SerializeToString(deterministic=True).hex()

    def _attrs(self, attrs) -> str:
        return ";".join(f"{k}={self._attr(attrs[k])}" for k in sorted(attrs) if not k.startswith("_"))

    def _nodes_text(self, nodes, arg_names: list[str], port_of) -> str:
        index = {name: f"a{i}" for i, name in enumerate(arg_names)}
        index.update({node.name: f"n{i}" for i, node in enumerate(nodes)})
        lines = []
        for node in nodes:
            inputs = []
            for ref in node.input:
                control = ref.startswith("^")
                base, _, port = ref.lstrip("^").partition(":")
                inputs.append(("^" if control else "") + index.get(base, f"?{base}") + (f":{port_of(port)}" if port else ""))
            lines.append(f"{node.op}({','.join(inputs)}){{{self._attrs(node.attr)}}}")
        return "\n".join(lines)

    def _function_text(self, function) -> str:
        signature = function.signature
        args = [a.name for a in signature.input_arg]
        arg_types = ",".join(f"{a.type}{a.type_attr}" for a in signature.input_arg)
        outs = ",".join(f"{a.type}{a.type_attr}" for a in signature.output_arg)
        body = self._nodes_text(function.node_def, args, lambda port: port)  # ports here are 'out_arg:i': op-defined names
        # `ret` maps each output to a node output: positions, not names
        index = {name: f"a{i}" for i, name in enumerate(args)}
        index.update({node.name: f"n{i}" for i, node in enumerate(function.node_def)})
        rets = []
        for out in signature.output_arg:
            base, _, port = function.ret[out.name].partition(":")
            rets.append(index.get(base, f"?{base}") + (f":{port}" if port else ""))
        control = sorted(index.get(v, v) for v in function.control_ret.values())
        attrs = ";".join(f"{k}={self._attr(function.attr[k])}" for k in sorted(function.attr) if not k.startswith("_"))
        return f"fn({arg_types})->({outs}){{{attrs}}}\n{body}\nret {','.join(rets)} ctrl {','.join(control)}"

    def graph_text(self, graph_def, capture_names: dict[str, int]) -> str:
        nodes = list(graph_def.node)
        text = self._nodes_text(nodes, [], lambda port: port)
        marks = [f"n{i}=capture{capture_names[n.name]}" for i, n in enumerate(nodes) if n.name in capture_names]
        return text + "\ncaptures " + ",".join(marks)


def _table_dtypes(graph, placeholder_name: str) -> tuple[Any, Any] | None:
    """(key dtype, value dtype) of a lookup table read through this captured handle."""
    for op in graph.get_operations():
        if op.type in _TABLE_READERS and op.inputs and op.inputs[0].op.name == placeholder_name:
            if op.type == "LookupTableFindV2":
                return op.get_attr("Tin"), op.get_attr("Tout")
            if op.type == "LookupTableExportV2":
                return op.get_attr("Tkeys"), op.get_attr("Tvalues")
    return None


def _table_bytes(handle, dtypes) -> bytes | None:
    import numpy as np
    import tensorflow as tf

    try:
        keys, values = tf.raw_ops.LookupTableExportV2(table_handle=handle, Tkeys=dtypes[0], Tvalues=dtypes[1])
    except Exception:  # not a table that exports its contents: opaque
        return None
    keys, values = keys.numpy(), values.numpy()
    order = np.argsort(keys, kind="stable") if keys.dtype != object else sorted(range(len(keys)), key=lambda i: keys[i])
    keys, values = keys[order], values[order]
    return b"".join(k if isinstance(k, bytes) else np.asarray(k).tobytes() for k in keys) + b"|" + b"".join(
        v if isinstance(v, bytes) else np.asarray(v).tobytes() for v in values
    )


def _value_bytes(value) -> bytes:
    import numpy as np

    array = np.asarray(value)
    if array.dtype == object:  # strings
        return b"\0".join(v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1))
    return np.ascontiguousarray(array).tobytes()


def _signature_digest(function) -> str:
    import tensorflow as tf

    specs = [(s.name, s.dtype.name, tuple(s.shape.as_list()) if s.shape.rank is not None else None) for s in function.structured_input_signature[0]]
    outputs = tf.nest.map_structure(lambda t: (t.dtype.name, tuple(t.shape.as_list()) if t.shape.rank is not None else None), function.structured_outputs)
    return _sha(repr(specs).encode(), repr(sorted(outputs.items()) if isinstance(outputs, dict) else outputs).encode())


def fingerprint_model(traced: TracedModel) -> ModelFingerprint:
    """The fingerprint of the traced serving function (runs no user code: the trace is done)."""
    import numpy as np
    import tensorflow as tf

    function = traced.function.get_concrete_function()
    from tfship.compat.tensorflow import captures

    graph = function.graph
    external = [e for e, _ in captures(graph)]
    internal = [i for _, i in captures(graph)]
    capture_names = {t.op.name: i for i, t in enumerate(internal)}
    variables = {id(v.handle): v for v in function.variables}

    weights = hashlib.sha256()
    weight_bytes = opaque = 0
    for i, (outer, inner) in enumerate(zip(external, internal)):
        weights.update(f"#{i}:".encode())
        if inner.dtype == tf.resource:
            variable = variables.get(id(outer))
            if variable is not None:
                value = np.asarray(variable.numpy())
                data = _value_bytes(value)
                weights.update(f"var {value.dtype} {value.shape}".encode())
                weights.update(hashlib.sha256(data).digest())
                weight_bytes += len(data)
                continue
            dtypes = _table_dtypes(graph, inner.op.name)
            data = _table_bytes(outer, dtypes) if dtypes else None
            if data is not None:
                weights.update(b"table" + hashlib.sha256(data).digest())
                continue
            opaque += 1
            weights.update(b"opaque resource")
            continue
        try:
            value = np.asarray(outer.numpy())
        except Exception:  # a symbolic capture (another graph's tensor): only its type is known
            opaque += 1
            weights.update(f"symbolic {outer.dtype.name}".encode())
            continue
        data = _value_bytes(value)
        weights.update(f"const {value.dtype} {value.shape}".encode())
        weights.update(hashlib.sha256(data).digest())
        weight_bytes += len(data)

    graph_def = graph.as_graph_def()
    canon = _Canon(graph_def.library)
    graph_digest = _sha(canon.graph_text(graph_def, capture_names).encode())
    weights_digest = weights.hexdigest()
    signature_digest = _signature_digest(function)
    return ModelFingerprint(
        digest=_sha(graph_digest.encode(), weights_digest.encode(), signature_digest.encode()),
        graph=graph_digest,
        weights=weights_digest,
        signature=signature_digest,
        weight_bytes=weight_bytes,
        opaque_resources=opaque,
    )


def data_fingerprint(data: ParityData) -> str:
    """sha256 of the parity data: every case's inputs, in order, and the labels. Data from
    a generator is user code's product, keyed like the model's."""
    import numpy as np

    digest = hashlib.sha256()
    for label, inputs in data.cases:
        digest.update(f"case {label}".encode())
        for name in sorted(inputs):
            value = np.asarray(inputs[name])
            digest.update(f"{name} {value.dtype} {value.shape}".encode())
            digest.update(hashlib.sha256(_value_bytes(value)).digest())
    if data.labels is not None:
        digest.update(b"labels" + hashlib.sha256(_value_bytes(data.labels)).digest())
    return digest.hexdigest()
