"""LiteRT: a .tflite signature run with the config's input and output names.

Float data for an int8/uint8/int16 model input is quantized with the input's own scale
and zero point; integer outputs are dequantized with the output's, and `output_steps`
records each such output's scale. A model with a fixed batch (e.g. Edge TPU, batch 1)
is run in chunks of that batch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from pipeline import extras
from pipeline.errors import ConversionError, IncompatibleModel
from pipeline.runtimes.base import BatchUnsupported, Call, Runner, batch_of, split_batches

QUANTIZED_TYPES = (np.int8, np.uint8, np.int16)


def scale_zero_point(detail: dict) -> tuple[float, int]:
    """A tensor's per-tensor quantization (0.0 scale: not quantized)."""
    params = detail.get("quantization_parameters") or {}
    scales = params.get("scales")
    if scales is not None and len(scales) == 1:
        return float(scales[0]), int(params["zero_points"][0])
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return float(scale), int(zero_point)


def quantize(value: np.ndarray, detail: dict) -> np.ndarray:
    """`value` in the tensor's own dtype; float data for an integer tensor is quantized."""
    dtype = detail["dtype"]
    value = np.asarray(value)
    if dtype in QUANTIZED_TYPES and np.issubdtype(value.dtype, np.floating):
        scale, zero_point = scale_zero_point(detail)
        if scale:
            info = np.iinfo(dtype)
            return np.clip(np.round(value / scale + zero_point), info.min, info.max).astype(dtype)
    return np.ascontiguousarray(value.astype(dtype, copy=False))


def dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    value = np.asarray(value)
    if detail["dtype"] in QUANTIZED_TYPES:
        scale, zero_point = scale_zero_point(detail)
        if scale:
            return ((value.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return value


class LiteRTRunner(Runner):
    runtime = "LiteRT"

    def __init__(self, path: Path, output_names: Iterable[str] = (), signature: str = "serving_default", threads: int | None = None):
        super().__init__()
        extras.require("tflite", "running a .tflite model", ("ai_edge_litert",))
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self._interpreter = Interpreter(model_path=str(self.path), num_threads=threads) if threads else Interpreter(model_path=str(self.path))
        signatures = self._interpreter.get_signature_list()
        if signature not in signatures and len(signatures) == 1:
            signature = next(iter(signatures))
        runner = self._interpreter.get_signature_runner(signature)
        self.input_details = runner.get_input_details()
        self.output_details = runner.get_output_details()
        # Several subgraphs: only the signature runner picks the right one. One: the
        # interpreter is driven directly, tensors set once (the signature runner holds
        # views of the input tensors, which would block resizing them).
        self._signature_runner = runner if len(signatures) > 1 else None
        del runner
        self.output_names = tuple(output_names) or tuple(self.output_details)
        missing = [n for n in self.output_names if n not in self.output_details]
        if missing:
            raise ConversionError(f"{self.path}: signature '{signature}' has outputs {sorted(self.output_details)}, expected {list(self.output_names)}")
        for name, detail in self.output_details.items():
            scale, _ = scale_zero_point(detail)
            if scale and detail["dtype"] in QUANTIZED_TYPES:
                self.output_steps[name] = scale
        batches = {int(d["shape_signature"][0]) for d in self.input_details.values() if len(d["shape_signature"])}
        self.fixed_batch = next(iter(batches)) if len(batches) == 1 and -1 not in batches else None
        self.threads = {"runtime": "LiteRT", "num_threads": threads} if threads else {"runtime": "LiteRT", "num_threads": "default"}
        self._shapes: dict[str, tuple] = {name: tuple(int(d) for d in detail["shape"]) for name, detail in self.input_details.items()}
        self._allocated = False
        self._current: dict | None = None  # the feeds now in the input tensors

    def _set(self, feeds: dict[str, np.ndarray]) -> None:
        interpreter = self._interpreter
        resized = False
        for name, value in feeds.items():
            detail = self.input_details[name]
            if self._shapes.get(name) != value.shape:
                interpreter.resize_tensor_input(detail["index"], list(value.shape), strict=False)
                self._shapes[name] = value.shape
                resized = True
        if resized or not self._allocated:
            interpreter.allocate_tensors()
            self._allocated = True
        for name, value in feeds.items():
            interpreter.set_tensor(self.input_details[name]["index"], value)
        self._current = feeds

    def _read(self, _raw=None) -> dict[str, np.ndarray]:
        if isinstance(_raw, dict):  # the signature runner returned the outputs itself
            return {n: dequantize(_raw[n], self.output_details[n]).copy() for n in self.output_names}
        get = self._interpreter.get_tensor
        return {n: dequantize(get(self.output_details[n]["index"]), self.output_details[n]).copy() for n in self.output_names}

    def _feeds(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        unknown = set(inputs) - set(self.input_details)
        if unknown:
            raise ValueError(f"{self.path}: unknown inputs {sorted(unknown)}; the signature takes {sorted(self.input_details)}")
        return {name: quantize(value, self.input_details[name]) for name, value in inputs.items()}

    def _invoke(self, fn, **feeds):
        """A kernel that refuses the file at run time (LiteRT raises RuntimeError) is the
        runtime's limit for this file, named as such, not a failure of tfship's own code."""
        try:
            return fn(**feeds)
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())
            raise IncompatibleModel(f"LiteRT prepares {self.path.name} but cannot run it: {detail}") from exc

    def prepare(self, inputs: dict[str, np.ndarray], chunked: bool = True) -> Call:
        n = batch_of(inputs)
        step = self.fixed_batch
        if step is not None and n != step:
            if not chunked:
                raise BatchUnsupported(f"the model's batch is fixed at {step}")
            if n % step:
                raise ValueError(f"{self.path}: fixed batch {step} cannot run a batch of {n}")
            chunks = [self._feeds(chunk) for chunk, _ in split_batches(inputs, step)]

            def run_chunks():
                outs = []
                for feeds in chunks:
                    self._set(feeds)
                    self._invoke(self._interpreter.invoke)
                    outs.append(self._read())
                return outs

            return Call(run_chunks, lambda outs: {k: np.concatenate([o[k] for o in outs]) for k in self.output_names}, f"Interpreter.invoke() in chunks of {step}")
        feeds = self._feeds(inputs)
        if self._signature_runner is not None:
            runner = self._signature_runner
            return Call(lambda: self._invoke(runner, **feeds), self._read, "signature runner (feeds quantized once)")
        self._set(feeds)
        invoke = self._interpreter.invoke

        def run():
            if self._current is not feeds:  # another prepare() filled the tensors since
                self._set(feeds)
            self._invoke(invoke)

        return Call(run, self._read, "Interpreter.invoke() (tensors set once)")


def io_quantization(runner: LiteRTRunner, input_names: Iterable[str]) -> dict:
    """Dtype, scale and zero point of every model input and output (for reports)."""

    def row(detail):
        scale, zero_point = scale_zero_point(detail)
        out = {"dtype": np.dtype(detail["dtype"]).name, "shape": [int(d) for d in detail["shape_signature"]]}
        if scale:
            out.update(scale=scale, zero_point=zero_point)
        return out

    return {
        "inputs": {n: row(runner.input_details[n]) for n in input_names},
        "outputs": {n: row(runner.output_details[n]) for n in runner.output_names},
    }


def fixed_dims(runner: LiteRTRunner, inputs: Iterable) -> list[dict]:
    """Dimensions the config declares dynamic that the converted file fixed (its
    shape_signature holds a size, not -1): such a file only runs at that size."""
    out = []
    for spec in inputs:
        detail = runner.input_details.get(spec.name)
        if detail is None:
            continue
        signature = [int(d) for d in detail["shape_signature"]]
        for axis, size in enumerate(signature):
            if axis < len(spec.shape) and spec.shape[axis] is None and size != -1:
                out.append({"input": spec.name, "axis": axis, "name": spec.axis_name(axis), "size": size})
    return out

