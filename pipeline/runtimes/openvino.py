"""OpenVINO: an IR (`.xml` + `.bin`) compiled for the CPU and fed by the config's names.

The precision a compiled model computes in is the device's choice unless the
`INFERENCE_PRECISION_HINT` property pins it: on a CPU with bfloat16 support
(AVX512-BF16, AMX) OpenVINO's CPU plugin runs a float32 IR in bf16 by default. The
runner compiles with the hint the artifact records, reads back the hint in effect and
the precision every compute node of the runtime model actually ran at, and judges it
against the precision the artifact is supposed to compute in (`precision`): a float32
artifact that ran in bf16 fails parity for that reason, whatever its numbers.

The OpenVINO package is an optional extra: nothing here imports it at module level,
and a missing package is named with the install command.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from pipeline.errors import IntegrityError, MissingExtra
from pipeline.extras import install_command
from pipeline.runtimes.base import Call, Runner, batch_of, check_static_batch, chunked_call

EXTRA_INSTALL = install_command("openvino")
DEVICE = "CPU"

# Runtime-model layers that move or hold data rather than compute: their precision is
# not what the model computes in (a Reorder converts layouts and types between kernels).
_NOT_COMPUTE = {"Input", "Parameter", "Output", "Result", "Const", "Constant", "Reorder", "Convert"}
FLOAT_TYPES = ("f32", "bf16", "f16", "f64")
QUANTIZED_TYPES = ("i8", "u8", "i4", "u4")
# Runtime-model layers that multiply by weights: fed i8/u8 they run an integer kernel (a
# u8 elsewhere may be a boolean mask, which says nothing about quantization).
WEIGHTED_LAYERS = ("FullyConnected", "MatMul", "Convolution", "GroupConvolution", "Deconvolution", "BinaryConvolution")

# What each precision class must execute as, read from the runtime model:
# the float types allowed for activations, and whether an integer kernel must have run.
EXPECTED_EXECUTION = {
    "float32": {"floats": ("f32", "f64"), "needs": None},
    "float16": {"floats": ("f32", "f64"), "needs": None},  # fp16 weights, decompressed and computed in f32
    "bf16": {"floats": ("bf16", "f32"), "needs": "bf16"},
    "int8": {"floats": ("f32", "f64"), "needs": "int8"},
}


def require_openvino(what: str = "the openvino target"):
    """The openvino module, or MissingExtra (exit 2) naming the install command."""
    try:
        import openvino
    except ImportError as exc:
        raise MissingExtra(f"{what} needs OpenVINO, which is not installed; install it with `{EXTRA_INSTALL}`") from exc
    return openvino


def version() -> str:
    return require_openvino().get_version()


def type_name(value) -> str:
    """`f32`, `bf16`, `i8`... for an ov.Type (or whatever the property returned)."""
    name = getattr(value, "get_type_name", None)
    return name() if callable(name) else str(value)


def numpy_name(value) -> str:
    """The numpy name of an ov.Type (`float32`, `int32`, `bool`), else OpenVINO's own."""
    try:
        return np.dtype(value.to_dtype()).name
    except Exception:  # a type numpy lacks (bf16, dynamic, string)
        return type_name(value)


def device_capabilities(device: str = DEVICE) -> list[str]:
    """OPTIMIZATION_CAPABILITIES of the device (`BF16` when it runs bfloat16 natively)."""
    ov = require_openvino()
    return [str(c) for c in ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES")]


def default_precision(device: str = DEVICE) -> str:
    """The inference precision the device picks when nothing pins it."""
    ov = require_openvino()
    return type_name(ov.Core().get_property(device, "INFERENCE_PRECISION_HINT"))


def executed_precisions(compiled) -> tuple[dict[str, int], dict[str, list[str]], int]:
    """{activation type: compute nodes} of a compiled model's runtime graph, for each
    type a few of the original layers that ran in it, and how many weighted layers
    (FullyConnected, Convolution...) ran an integer kernel.

    A node's activation type is the element type of its first input that is not a
    constant (weights, scales and embedding tables are constants): a FullyConnected fed
    bf16 computes in bf16, one fed u8 runs an integer kernel, one fed f32 with f16
    weights decompresses them and computes in f32."""
    counts: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    integer_kernels = 0

    def layer_type(node) -> str:
        info = node.get_rt_info()
        return info["layerType"].astype(str) if "layerType" in info else node.get_type_name()

    for op in compiled.get_runtime_model().get_ordered_ops():
        if layer_type(op) in _NOT_COMPUTE:
            continue
        data = [i for i in range(op.get_input_size()) if layer_type(op.input_value(i).get_node()) not in ("Const", "Constant")]
        if not data:
            continue
        info = op.get_rt_info()
        kind = type_name(op.get_input_element_type(data[0]))
        if kind not in FLOAT_TYPES and kind not in QUANTIZED_TYPES:
            continue  # index and shape arithmetic (i32, i64, boolean) says nothing about precision
        counts[kind] = counts.get(kind, 0) + 1
        if kind in QUANTIZED_TYPES and layer_type(op) in WEIGHTED_LAYERS:
            integer_kernels += 1
        names = info["originalLayersNames"].astype(str) if "originalLayersNames" in info else op.get_friendly_name()
        shown = examples.setdefault(kind, [])
        if len(shown) < 3 and names:
            shown.append(names.split(",")[0])
    return dict(sorted(counts.items())), examples, integer_kernels


def judge_execution(precision_class: str, asked: str | None, in_effect: str, counts: dict[str, int], examples: dict[str, list[str]], device_default: str,
                    integer_kernels: int = 0) -> tuple[bool, str]:
    """Whether what ran is what the artifact's precision class computes in; the reason when not."""
    expected = EXPECTED_EXECUTION.get(precision_class)
    if expected is None:
        return True, ""
    total = sum(counts.values())
    lower = {k: v for k, v in counts.items() if k in FLOAT_TYPES and k not in expected["floats"]}
    source = f"the hint {asked} was asked and {in_effect} is in effect" if asked else (
        f"no INFERENCE_PRECISION_HINT was set, and this {DEVICE}'s default is {device_default}"
    )
    if lower:
        kinds = ", ".join(f"{n} of {total} compute nodes in {k} (e.g. {', '.join(examples.get(k, [])[:2]) or '?'})" for k, n in lower.items())
        fix = (
            "Compile it with INFERENCE_PRECISION_HINT=f32 (the openvino target's `pin_precision: true`, the default), "
            "or judge it as the bf16 variant at the bf16 budget"
            if not asked else f"OpenVINO did not keep to the hint {asked}: this runtime cannot run it at {precision_class} on this {DEVICE}"
        )
        return False, f"OpenVINO ran this {precision_class} artifact in lower precision: {kinds}; {source}. {fix}"
    if expected["needs"] == "bf16" and not counts.get("bf16"):
        return False, f"the bf16 variant ran no node in bf16 ({source}; executed: {_listing(counts)}): this {DEVICE} did not run bfloat16"
    if expected["needs"] == "int8" and not integer_kernels:
        return False, f"the int8 variant ran no integer kernel in a weighted layer (executed: {_listing(counts)}): its quantization was not applied on this {DEVICE}"
    return True, ""


def _listing(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in counts.items()) or "no compute node"


class OpenVINORunner(Runner):
    """Runs one IR on the CPU. `hint`: the INFERENCE_PRECISION_HINT to compile with (None:
    the device's default); `precision_class`: what the artifact should compute in (the
    parity budget's class), against which `precision` judges what ran."""

    runtime = "OpenVINO"

    def __init__(self, path: Path, output_names: Iterable[str] = (), hint: str | None = "f32", precision_class: str | None = None,
                 threads: int | None = None, device: str = DEVICE):
        super().__init__()
        ov = require_openvino("running an OpenVINO IR")
        self.path = Path(path)
        if not self.path.is_file() or not self.path.with_suffix(".bin").is_file():
            raise IntegrityError(f"OpenVINO IR {self.path} (with {self.path.with_suffix('.bin').name} beside it) does not exist; re-export the openvino target")
        core = ov.Core()
        model = core.read_model(str(self.path))
        config: dict = {}
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, device, config)
        self._request = self.compiled.create_infer_request()
        self._inputs = {port.get_any_name(): port for port in self.compiled.inputs}
        produced = {name: port for port in self.compiled.outputs for name in port.get_names()}
        self.output_names = tuple(output_names) or tuple(port.get_any_name() for port in self.compiled.outputs)
        missing = [n for n in self.output_names if n not in produced]
        if missing:
            raise IntegrityError(f"OpenVINO IR {self.path} has outputs {sorted(produced)}, but the recorded names include {missing}; re-export the openvino target")
        self._outputs = {n: produced[n] for n in self.output_names}
        self._current: dict | None = None  # the tensors now set on the request
        in_effect = type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        counts, examples, integer_kernels = executed_precisions(self.compiled)
        device_default = type_name(core.get_property(device, "INFERENCE_PRECISION_HINT"))
        self.precision = {
            "device": device,
            "device_name": str(core.get_property(device, "FULL_DEVICE_NAME")),
            "hint_asked": hint,
            "hint_in_effect": in_effect,
            "device_default": device_default,
            "executed": counts,
            "executed_examples": examples,
            "integer_kernels": integer_kernels,
        }
        if precision_class:
            passed, reason = judge_execution(precision_class, hint, in_effect, counts, examples, device_default, integer_kernels)
            self.precision.update(expected=precision_class, passed=passed)
            if reason:
                self.precision["reason"] = reason
        self.threads = {"runtime": "OpenVINO", "inference_num_threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
                        "num_streams": int(self.compiled.get_property("NUM_STREAMS"))}

    @property
    def fixed_batch(self) -> int | None:
        """The batch every batched input declares when the IR has a static one, else None."""
        firsts = set()
        for port in self._inputs.values():
            shape = port.get_partial_shape()
            if shape.rank.is_static and shape.rank.get_length() > 0:
                first = shape[0]
                firsts.add(first.get_length() if first.is_static else None)
        if len(firsts) == 1 and None not in firsts:
            return next(iter(firsts))
        return None

    def _feeds(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {}
        for name, port in self._inputs.items():
            value = np.asarray(inputs[name])
            dtype = port.get_element_type().to_dtype()
            feeds[name] = np.asarray(value, dtype=dtype, order="C")  # not ascontiguousarray: it turns a scalar into [1]
        return feeds

    def _set(self, tensors: dict) -> None:
        for name, tensor in tensors.items():
            self._request.set_tensor(self._inputs[name], tensor)
        self._current = tensors

    def _one(self, inputs: dict[str, np.ndarray]) -> Call:
        import openvino as ov

        feeds = self._feeds(inputs)
        # The request reads the prepared arrays in place (shared memory, kept alive by the Call).
        tensors = {name: ov.Tensor(value, shared_memory=True) for name, value in feeds.items()}
        request, outputs = self._request, self._outputs
        self._set(tensors)

        def run():
            if self._current is not tensors:  # another prepare() set its own tensors since
                self._set(tensors)
            request.infer()

        def fetch(_=None) -> dict[str, np.ndarray]:
            return {name: np.array(request.get_tensor(port).data, copy=True) for name, port in outputs.items()}

        return Call(run, fetch, "InferRequest.infer() (input tensors set once, shared)", keep_alive=(feeds, tensors))

    def prepare(self, inputs: dict[str, np.ndarray], chunked: bool = True) -> Call:
        if not chunked:
            for name, port in self._inputs.items():
                shape = port.get_partial_shape()
                dims = [d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else []
                check_static_batch(name, dims, np.asarray(inputs[name]))
        step = self.fixed_batch
        if step is not None and batch_of(inputs) != step:
            return chunked_call(self._one, inputs, step, pad=True, what="InferRequest.infer()")
        return self._one(inputs)
