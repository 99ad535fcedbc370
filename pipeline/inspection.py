"""What is inside an artifact, whoever produced it, and whether tfship's runtimes run it.

- A SavedModel (a folder with saved_model.pb, or a TF Serving folder of numbered
  versions: the highest is read): tags, signatures with their inputs and outputs,
  function aliases (the Cloud TPU converter looks for `tpu_func`), size.
- A `.tflite` file: signature runners with inputs and outputs (dtype, shape,
  quantization scale and zero point), the operator histogram, Select TF ops, the
  precision it was converted at, size.
- A `.onnx` file: IR version, opsets, producer, inputs and outputs with their
  dimensions (symbolic ones by name), the operator histogram, external data, size.
- A StableHLO `.mlir` file (the xla target's `ir/<shape>/stablehlo.mlir`, or any with a
  `main`): module, form (frozen / parameters), arguments and results named by the
  `signature.json` beside it (else arg<i> / result<i>), weights bound, the operator
  histogram, file locations left in it.
- An OpenVINO IR (`.xml` with its `.bin`): inputs and outputs, the operation
  histogram, the precision its weights were saved at (fp32, fp16, or int8 when it holds
  FakeQuantize nodes), the OpenVINO version that wrote it, size of both files.
- An IREE `.vmfb` module: its functions and `main`'s declaration (names from a
  `signature.json` beside it), size.

"Runs" means: the runtime tfship checks parity with (TensorFlow, LiteRT,
onnxruntime, OpenVINO's CPU plugin with the precision pinned to f32, IREE) opened the file through the target's own runner and ran it once on
zeros shaped like its inputs (a `.mlir` is compiled by IREE for this CPU first).
Nothing here imports TensorFlow or IREE at import time.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline import extras
from pipeline.errors import ModelError

KINDS = ("savedmodel", "tflite", "onnx", "openvino", "stablehlo", "iree")
TARGET_OF_KIND = {"stablehlo": "xla", "iree": "xla"}  # the target whose budget judges a file of this kind (else the kind's own name)
EXPECTED = "a SavedModel folder, a .tflite, .onnx, OpenVINO .xml, StableHLO .mlir or IREE .vmfb file"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple  # ints, None for a dynamic dimension, or a symbolic dimension's name
    quantization: dict | None = None  # {scale, zero_point} for quantized tensors

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        text = f"{self.name}: {self.dtype}[{dims}]"
        if self.quantization:
            text += f" scale={self.quantization['scale']:.6g} zero_point={self.quantization['zero_point']}"
        return text


@dataclass(frozen=True)
class Signature:
    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


@dataclass(frozen=True)
class ArtifactInfo:
    """The facts of one artifact file or folder."""

    path: Path
    kind: str  # one of KINDS
    size_bytes: int
    signatures: tuple[Signature, ...]
    details: dict = field(default_factory=dict)  # kind-specific facts (ops, opset, aliases, precision ...)
    runtime: str = ""
    runs: bool = False
    run_message: str = ""

    @property
    def serving(self) -> Signature:
        """The signature tfship runs: serving_default when present, else the first."""
        by_name = {s.name: s for s in self.signatures}
        return by_name.get("serving_default") or self.signatures[0]

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["path"] = str(self.path)
        return data

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        lines = [f"{self.path}", f"  kind: {self.kind}", f"  size: {_human_bytes(self.size_bytes)} ({self.size_bytes} bytes)"]
        for key, value in self.details.items():
            if isinstance(value, dict):
                if not value:
                    lines.append(f"  {key}: none")
                    continue
                lines.append(f"  {key}:")
                lines += [f"    {k}: {v}" for k, v in value.items()]
            elif isinstance(value, (list, tuple)):
                lines.append(f"  {key}: {', '.join(map(str, value)) if value else 'none'}")
            else:
                lines.append(f"  {key}: {value}")
        lines.append("  signatures:")
        for signature in self.signatures:
            lines.append(f"    {signature.name}")
            lines += [f"      in  {t.describe()}" for t in signature.inputs]
            lines += [f"      out {t.describe()}" for t in signature.outputs]
        verdict = "yes" if self.runs else "no"
        lines.append(f"  runs in tfship ({self.runtime}): {verdict}" + (f": {self.run_message}" if self.run_message else ""))
        return "\n".join(lines)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def resolve(path: Path | str) -> tuple[Path, str]:
    """(the artifact to read, its kind); a TF Serving folder resolves to its newest version."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"artifact not found: {path}; expected {EXPECTED}")
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return path, "savedmodel"
        versions = sorted((p for p in path.iterdir() if p.is_dir() and p.name.isdigit() and (p / "saved_model.pb").is_file()), key=lambda p: int(p.name))
        if versions:
            return versions[-1], "savedmodel"
        raise ModelError(f"{path} is a folder without saved_model.pb (nor numbered version folders holding one); expected a SavedModel")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return path, "tflite"
    if suffix == ".onnx":
        return path, "onnx"
    if suffix == ".xml":
        return path, "openvino"
    if suffix == ".mlir":
        return path, "stablehlo"
    if suffix == ".vmfb":
        return path, "iree"
    raise ModelError(f"cannot tell what {path} is from its name; expected {EXPECTED}")


def inspect_artifact(path: Path | str, run: bool = True) -> ArtifactInfo:
    """Read an artifact's facts; with `run`, open it in tfship's runtime and run it once on zeros."""
    path, kind = resolve(path)
    reader = {"savedmodel": _savedmodel_facts, "tflite": _tflite_facts, "onnx": _onnx_facts, "openvino": _openvino_facts, "stablehlo": _stablehlo_facts, "iree": _vmfb_facts}[kind]
    info = reader(path)
    if run:
        runtime = {"savedmodel": "TensorFlow", "tflite": "LiteRT (ai_edge_litert)", "onnx": "onnxruntime CPU", "openvino": "OpenVINO CPU", "stablehlo": "IREE llvm-cpu", "iree": "IREE local-task"}[kind]
        try:
            runner = open_runner(info)
            runner(zero_inputs(info.serving.inputs))
            info = dataclasses.replace(info, runtime=runtime, runs=True)
        except Exception as exc:  # the verdict is the fact reported: which runtime refused and why
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            info = dataclasses.replace(info, runtime=runtime, runs=False, run_message=f"{type(exc).__name__}: {message}")
    return info


# --------------------------------------------------------------------------- running


def zero_inputs(inputs: tuple[TensorInfo, ...], batch: int = 1) -> dict[str, np.ndarray]:
    """Zeros shaped like the inputs, dynamic dimensions at `batch` (leading) or 1."""
    feeds = {}
    for t in inputs:
        shape = [(batch if i == 0 else 1) if not isinstance(d, int) or d < 0 else d for i, d in enumerate(t.shape)]
        if t.dtype in ("string", "object", "bytes"):
            feeds[t.name] = np.full(shape, b"", dtype=object)
        else:
            feeds[t.name] = np.zeros(shape, dtype=np.float32 if t.dtype == "bfloat16" else np.dtype(t.dtype))
    return feeds


def open_runner(info: ArtifactInfo, signature: Signature | None = None):
    """The runner the artifact's target uses for parity, opened on this file."""
    from pipeline.target import Artifact
    from targets import REGISTRY

    signature = signature or info.serving
    outputs = [t.name for t in signature.outputs]
    if info.kind == "savedmodel":
        if signature.name != "serving_default":
            raise ModelError(f"{info.path} has no serving_default signature (it has: {', '.join(s.name for s in info.signatures)}); tfship runs serving_default")
        return REGISTRY.get("savedmodel").open(info.path.parent, Artifact(variant="", files=(info.path.name,)))
    if info.kind == "tflite":
        flex = info.details.get("flex_ops") or []
        artifact = Artifact(
            variant=info.details.get("precision", ""),
            files=(info.path.name,),
            info={"outputs": outputs, "needs_flex_delegate": bool(flex), "flex_ops": list(flex)},
        )
        return REGISTRY.get("tflite").open(info.path.parent, artifact)
    if info.kind == "openvino":
        # Whoever wrote it, it runs as the openvino target runs its variant of that precision (f32 pinned).
        artifact = Artifact(variant=info.details.get("precision", "fp32"), files=(info.path.name,), info={"outputs": [{"name": n} for n in outputs]})
        return REGISTRY.get("openvino").open(info.path.parent, artifact)
    if info.kind in ("stablehlo", "iree"):
        from pipeline.runtimes.iree import IreeFileRunner

        return IreeFileRunner(info.path, _iree_signature(info.path))
    artifact = Artifact(variant="", files=(info.path.name,), info={"inputs": [{"name": t.name} for t in signature.inputs], "outputs": [{"name": n} for n in outputs]})
    return REGISTRY.get("onnx").open(info.path.parent, artifact)


# --------------------------------------------------------------------------- readers


def _savedmodel_facts(path: Path) -> ArtifactInfo:
    import tensorflow as tf
    from tfship.compat.tensorflow import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as exc:  # a damaged file: say which
        raise ModelError(f"{path / 'saved_model.pb'} is not a readable SavedModel: {exc}") from None
    signatures, tags, aliases = [], [], {}
    for meta in proto.meta_graphs:
        tags += list(meta.meta_info_def.tags)
        aliases.update(dict(meta.meta_info_def.function_aliases))
        for name, sig in sorted(meta.signature_def.items()):
            if name.startswith("__"):
                continue  # __saved_model_init_op and friends are not callable signatures

            def tensors(mapping):
                out = []
                for key, t in sorted(mapping.items()):
                    shape = tuple(None if t.tensor_shape.unknown_rank else None if d.size < 0 else int(d.size) for d in t.tensor_shape.dim)
                    dtype = tf.as_dtype(t.dtype).name if t.dtype else "unknown"
                    out.append(TensorInfo(key, dtype, shape))
                return tuple(out)

            signatures.append(Signature(name, tensors(sig.inputs), tensors(sig.outputs)))
    if not signatures:
        raise ModelError(f"SavedModel {path} has no signatures; tfship runs a model through its serving_default signature")
    variables = path / "variables"
    details = {
        "tags": sorted(set(tags)),
        "function_aliases": dict(sorted(aliases.items())),
        "variables_bytes": _tree_bytes(variables) if variables.is_dir() else 0,
    }
    return ArtifactInfo(path, "savedmodel", _tree_bytes(path), tuple(signatures), details)


def _tflite_precision(ops: list[dict], io_types: set[str]) -> str:
    """The conversion a flatbuffer came from, read from its tensor types."""
    activations = {t["type"] for op in ops for t in op["inputs"] + op["outputs"] if not t["constant"]}
    constants = {t["type"] for op in ops for t in op["inputs"] if t["constant"]}
    if "int16" in activations and any(t["quantized"] for op in ops for t in op["outputs"] if t["type"] == "int16"):
        return "int16x8"
    if {"int8", "uint8"} & (activations | io_types):
        return "int8"
    if "float16" in constants:
        return "float16"
    if "int8" in constants:
        return "dynamic_range"
    return "float32"


def _tflite_facts(path: Path) -> ArtifactInfo:
    extras.require("tflite", f"reading {path}", ("ai_edge_litert",))
    from ai_edge_litert.interpreter import Interpreter

    from pipeline.runtimes.litert import scale_zero_point
    from targets.support import litert

    content = path.read_bytes()
    try:
        ops = litert.list_ops(content)
    except Exception as exc:  # not a flatbuffer
        raise ModelError(f"{path} is not a readable .tflite flatbuffer: {type(exc).__name__}: {exc}") from None
    interpreter = Interpreter(model_path=str(path))
    signatures = []

    def tensor(name: str, detail: dict) -> TensorInfo:
        scale, zero_point = scale_zero_point(detail)
        quant = {"scale": scale, "zero_point": zero_point} if scale else None
        shape = tuple(None if int(d) < 0 else int(d) for d in detail["shape_signature"])
        return TensorInfo(name, np.dtype(detail["dtype"]).name, shape, quant)

    io_types = set()
    listed = interpreter.get_signature_list()
    for name in sorted(listed):
        runner = interpreter.get_signature_runner(name)
        ins = tuple(tensor(n, d) for n, d in sorted(runner.get_input_details().items()))
        outs = tuple(tensor(n, d) for n, d in sorted(runner.get_output_details().items()))
        io_types |= {t.dtype for t in ins + outs}
        signatures.append(Signature(name, ins, outs))
    if not signatures:  # a flatbuffer without signature defs (converted from a bare graph)
        ins = tuple(tensor(d["name"], d) for d in interpreter.get_input_details())
        outs = tuple(tensor(d["name"], d) for d in interpreter.get_output_details())
        signatures.append(Signature("(no signature)", ins, outs))
    details = {
        "precision": _tflite_precision(ops, io_types),
        "ops": litert.op_counts(ops),
        "flex_ops": litert.flex_ops(ops),
        "signature_runners": [s.name for s in signatures],
    }
    return ArtifactInfo(path, "tflite", len(content), tuple(signatures), details)


def _onnx_facts(path: Path) -> ArtifactInfo:
    extras.require("onnx", f"reading {path}", ("onnx",))
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # a damaged or foreign file
        raise ModelError(f"{path} is not a readable ONNX model: {type(exc).__name__}: {exc}") from None

    def tensors(values) -> tuple[TensorInfo, ...]:
        out = []
        for v in values:
            t = v.type.tensor_type
            shape = tuple(d.dim_param if d.HasField("dim_param") else (int(d.dim_value) if d.HasField("dim_value") else None) for d in t.shape.dim)
            dtype = "string" if t.elem_type == onnx.TensorProto.STRING else onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
            out.append(TensorInfo(v.name, dtype, shape))
        return tuple(out)

    initializers = {i.name for i in model.graph.initializer}
    ops: dict[str, int] = {}
    for node in model.graph.node:
        key = f"{node.domain}.{node.op_type}" if node.domain else node.op_type
        ops[key] = ops.get(key, 0) + 1
    external = sorted({e.value for i in model.graph.initializer for e in i.external_data if e.key == "location"})
    size = path.stat().st_size + sum((path.parent / f).stat().st_size for f in external if (path.parent / f).is_file())
    details = {
        "ir_version": int(model.ir_version),
        "opsets": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        "producer": " ".join(v for v in (model.producer_name, model.producer_version) if v and v != "None"),
        "ops": dict(sorted(ops.items())),
        "external_data": external,
    }
    signature = Signature("main", tensors([v for v in model.graph.input if v.name not in initializers]), tensors(model.graph.output))
    return ArtifactInfo(path, "onnx", size, (signature,), details)


def _openvino_facts(path: Path) -> ArtifactInfo:
    from pipeline.runtimes.openvino import numpy_name, require_openvino

    ov = require_openvino(f"reading {path.name}")
    weights = path.with_suffix(".bin")
    try:
        model = ov.Core().read_model(str(path))
    except Exception as exc:  # not an IR, or its .bin is missing or damaged
        first = " ".join(str(exc).split())[:300]
        raise ModelError(f"{path} is not a readable OpenVINO IR (with {weights.name} beside it): {type(exc).__name__}: {first}") from None

    def tensors(ports) -> tuple[TensorInfo, ...]:
        out = []
        for port in ports:
            shape = port.get_partial_shape()
            dims = () if shape.rank.is_dynamic else tuple(d.get_length() if d.is_static else None for d in shape)
            out.append(TensorInfo(port.get_any_name(), numpy_name(port.get_element_type()), dims))
        return tuple(out)

    ops: dict[str, int] = {}
    constants: set[str] = set()
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "Constant":
            constants.add(op.get_output_element_type(0).get_type_name())
        elif kind not in ("Parameter", "Result"):
            ops[kind] = ops.get(kind, 0) + 1
    precision = "int8" if ops.get("FakeQuantize") else ("fp16" if "f16" in constants else "fp32")
    rt_info = model.get_rt_info()
    written = rt_info["Runtime_version"].astype(str) if "Runtime_version" in rt_info else ""
    details = {
        "precision": precision,
        "openvino_version": written,
        "ops": dict(sorted(ops.items())),
        "weights_file": weights.name,
    }
    size = path.stat().st_size + (weights.stat().st_size if weights.is_file() else 0)
    return ArtifactInfo(path, "openvino", size, (Signature("main", tensors(model.inputs), tensors(model.outputs)),), details)
def _iree_types(path: Path) -> tuple[list[str], list[str], str]:
    """(argument types, result types, MLIR text or IREE declaration) of a .mlir or .vmfb."""
    from pipeline.runtimes.iree import main_types

    if path.suffix.lower() == ".vmfb":
        try:
            import iree.runtime as rt
        except ImportError:
            from pipeline.runtimes.iree import IREE_EXTRA

            raise ModelError(f"{path} is an IREE module; reading it needs IREE: `{IREE_EXTRA}`") from None
        try:
            module = rt.VmModule.mmap(rt.VmInstance(), str(path))
            text = module.lookup_function("main").reflection.get("iree.abi.declaration", "")
        except Exception as exc:  # not a module, or no main
            raise ModelError(f"{path} is not a readable IREE module with a `main` function: {type(exc).__name__}: {exc}") from None
    else:
        text = path.read_text(errors="replace")
    try:
        arguments, results = main_types(text)
    except ValueError:
        raise ModelError(f"{path} has no `main` entry function; expected StableHLO text (or an IREE module) whose entry is @main") from None
    return arguments, results, text


def _iree_signature(path: Path):
    """The signature.json beside the file when it describes this `main`, else one made of its types."""
    from pipeline.runtimes.iree import SIGNATURE_FILE, Signature, signature_from_types

    arguments, results, _ = _iree_types(path)
    beside = path.parent / SIGNATURE_FILE
    if beside.is_file():
        signature = Signature.read(path.parent)
        if len(signature.data.get("arguments", [])) == len(arguments) and len(signature.results) == len(results):
            return signature
    return signature_from_types(path.parent, arguments, results)


def _iree_facts(path: Path, kind: str) -> ArtifactInfo:
    import re
    from collections import Counter

    arguments, results, text = _iree_types(path)
    signature = _iree_signature(path)

    def tensor(entry: dict) -> TensorInfo:
        return TensorInfo(entry["name"], entry["dtype"], tuple(entry["shape"]))

    weights = signature.weights
    details: dict = {"module": signature.data.get("module", "") or "(not named)", "form": signature.data.get("form", "unknown")}
    if weights:
        details["weights"] = f"{len(weights)} arguments bound from {signature.data.get('weights_file')}"
    if kind == "stablehlo":
        details["ops"] = dict(sorted(Counter(re.findall(r"= ((?:stablehlo|chlo|mhlo)\.\w+)", text)).items()))
        details["file_locations"] = len(re.findall(r'"(?:[^"\\]|\\.)*":\d+:\d+', text))
    sig = Signature("main", tuple(tensor(a) for a in signature.inputs), tuple(tensor(r) for r in signature.results))
    return ArtifactInfo(path, kind, path.stat().st_size, (sig,), details)


def _stablehlo_facts(path: Path) -> ArtifactInfo:
    return _iree_facts(path, "stablehlo")


def _vmfb_facts(path: Path) -> ArtifactInfo:
    return _iree_facts(path, "iree")
