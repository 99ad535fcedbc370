"""Building a recipe: the float32 flatbuffer quantized by ai-edge-quantizer, per-op
recipes selected by regex over the ops' output tensor names, so the search and the
config build the same bytes. Calibration is a running min/max over the samples, as the
TFLite converter calibrates.

Follows STYLE.md pattern 21 (the quantizer's API in one place: nothing else in tfship
imports ai_edge_quantizer) and pattern 7 (its exceptions are wrapped where a target calls
`build_recipe`, see targets/support/repair/target.py). Nothing here imports TensorFlow
at module import time.
"""
from __future__ import annotations

import re
from typing import Iterable

import numpy as np

from targets.support.repair.recipe import Recipe

ENGINE = "ai-edge-quantizer"


def layer_ops(float_content: bytes, layer_names: Iterable[str]) -> dict[str, list[str]]:
    """{layer: output tensor names of its ops} over the float model's main subgraph.

    An op belongs to the deepest layer scope in its output names (`model_1/hidden_1/MatMul;...`,
    Keras 3 adds `_1`; fused ops join names with ';'); an op whose outputs name no layer (a fused activation emitted as
    its own op, e.g. a softmax writing the signature output) belongs to the layer that
    feeds it. Without Keras layer names, each op is its own entry, keyed by its output.
    """
    from targets.support.litert import layer_of, read_model

    layer_names = list(layer_names)
    graph = read_model(float_content).subgraphs[0]

    def name_of(t: int) -> str:
        name = graph.tensors[t].name
        return name.decode() if isinstance(name, bytes) else str(name)

    owner: dict[int, str] = {}  # tensor index -> layer
    out: dict[str, list[str]] = {}
    for op in graph.operators or []:
        outputs = [t for t in (op.outputs if op.outputs is not None else []) if t >= 0]
        names = [name_of(t) for t in outputs]
        layer = next((found for n in names for part in n.split(";") if (found := layer_of(part + "/x", layer_names))), None)
        if layer is None and layer_names:
            layer = next((owner[t] for t in (op.inputs if op.inputs is not None else []) if t in owner), None)
        if layer is None:
            if layer_names:
                continue  # an op before any layer (e.g. an input cast): not selectable
            layer = names[0] if names else ""
        for t in outputs:
            owner[t] = layer
        out.setdefault(layer, []).extend(names)
    return out


def ops_regex(tensor_names: list[str]) -> str:
    """Regex selecting exactly these ops: ai-edge-quantizer matches an op by its scope,
    the op's output tensor names each followed by ';'."""
    return "^(?:(?:" + "|".join(re.escape(n) for n in tensor_names) + ");)+$"


def layers_in_model(layers: Iterable[str], selectable: dict[str, list[str]]) -> list[str]:
    """The layers a recipe can select: those owning an op of the float model."""
    return [layer for layer in layers if selectable.get(layer)]


class NothingToQuantize(ValueError):
    """The recipe keeps every layer, weight and input in float: that is the float32 variant."""


def build_recipe(float_content: bytes, recipe: Recipe, calibration: list[dict[str, np.ndarray]], selectable: dict[str, list[str]]) -> bytes:
    """Quantize the float32 flatbuffer by `recipe`; `calibration` is one dict per sample;
    `selectable` is `layer_ops()` of the same flatbuffer."""
    if recipe.float_inputs and set(selectable) <= set(recipe.float_weights):
        raise NothingToQuantize(f"{recipe.name}: every layer, weight and input in float is the float32 model")
    from ai_edge_quantizer import quantizer
    from ai_edge_quantizer import recipe as recipes

    base = {"int8": recipes.static_wi8_ai8, "int16x8": recipes.static_wi8_ai16, "dynamic_range": recipes.dynamic_wi8_afp32}[recipe.base]
    q = quantizer.Quantizer(bytearray(float_content))
    q.load_quantization_recipe(base())
    for layer in recipe.int16_layers:
        q.add_static_config(regex=ops_regex(selectable[layer]), operation_name="*", activation_num_bits=16, weight_num_bits=8)
    for layer in recipe.float_layers:
        # Float activations; the ops with weights keep them in int8 (weight-only: dequantized
        # once, computed in float). Ops where weight-only does not apply keep no_quantize.
        q.update_quantization_recipe(regex=ops_regex(selectable[layer]), operation_name="*", algorithm_key="no_quantize")
        if layer not in recipe.float_weights:
            q.add_weight_only_config(regex=ops_regex(selectable[layer]), operation_name="*", num_bits=8)
    if recipe.float_inputs:  # the model's inputs form one virtual INPUT op
        q.update_quantization_recipe(regex=".*", operation_name="INPUT", algorithm_key="no_quantize")
    calibrated = _calibrate(float_content, q.get_quantization_recipe(), calibration) if q.need_calibration else None
    return bytes(q.quantize(calibrated, enable_progress_report=False).quantized_model)


def _widen(qsv: dict, new: dict) -> dict:
    """Running min/max over every calibration sample, as the TFLite converter calibrates."""
    if not qsv:
        return new
    return {**new, "min": np.minimum(qsv["min"], new["min"]), "max": np.maximum(qsv["max"], new["max"])}


def _calibrate(float_content: bytes, recipe: list, calibration: list[dict[str, np.ndarray]]) -> dict:
    """Tensor ranges for the recipe. ai-edge-quantizer's own `calibrate` keeps a moving
    average of per-sample min/max, which on one-sample batches stays well inside the
    data's range (measured: int8 input range +-1.8 for N(0, 1) data whose calibrated
    extremes are +-3.3) and clips what the converter would not; the running min/max
    keeps the converter's semantics."""
    from tfship.compat import quantizer as internals

    manager = internals.recipe_manager(recipe)
    calib = internals.calibrator(float_content, _widen)
    calib.calibrate({"serving_default": calibration}, manager)
    return calib.get_model_qsvs()


def calibration_samples(pool: dict[str, np.ndarray], specs, n: int) -> list[dict[str, np.ndarray]]:
    """The first `n` pool samples, one dict per sample with a batch of one (the signature's dtypes)."""
    return [{s.name: np.asarray(pool[s.name][i : i + 1]).astype(s.dtype) for s in specs} for i in range(n)]


def engine_version() -> str:
    from importlib import metadata

    try:
        return f"{ENGINE} {metadata.version(ENGINE)}"
    except metadata.PackageNotFoundError:
        return f"{ENGINE} (not installed)"
