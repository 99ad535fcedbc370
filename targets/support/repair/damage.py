"""Where quantization does its damage, measured before the search builds anything: the
ranking the repair search tries layers in.

Two sources say which layers' activations suffer: QuantizationDebugger (per tensor,
RMSE in quantization steps and the share of non-zero values rounded to zero; int8 of
the same calibration) and the failed run's localization table (how much the relative
error grows at each layer over the one before). `rank()` merges them: a layer is as
bad as its better rank in either list, so the worst of each source is tried early.
Weights are measured on the float flatbuffer's own constants (BatchNorm already folded
into the kernels): the share of non-zero values int8 rounds to zero (per output channel
for convolution and fully-connected kernels, per tensor for every other constant, such
as a Normalization layer's mean and variance). The model's inputs are measured the
same way on their calibrated range.

Follows STYLE.md pattern 18 (localize before you explain: the search starts from what
was measured) and pattern 14 (one typed result, `Ranking`, with its JSON encoding).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

# A layer whose constants lose this share of their non-zero values to int8 rounding gets
# its weights kept float early. Measured on the classifiers of tests/fixture_classifiers.py:
# trained convolution, depthwise, dense and attention kernels (per-channel int8) and
# LayerNorm constants lose at most 3.1%; a Normalization layer's mean and variance lose
# 13% over digit pixels and 62-70% over raw wine and breast cancer features (docs/repair.md).
WEIGHTS_DAMAGED = 0.1
# Inputs whose calibrated int8 step rounds this share of their non-zero values to zero:
# the search keeps the model's inputs float from its first float-layer candidate.
INPUTS_DAMAGED = 0.05

KERNEL_AXIS = {"CONV_2D": 0, "FULLY_CONNECTED": 0, "TRANSPOSE_CONV": 0, "CONV_3D": 4, "DEPTHWISE_CONV_2D": 3}
BIAS_INPUT = 2  # int32 bias of convolutions and fully-connected ops: scale in*w, no measurable loss


def coverage(pool: dict[str, np.ndarray], calibrated: int) -> dict[str, dict]:
    """Per float input: the share of parity values outside the calibrated min/max.

    Calibration draws the first `calibrated` samples of the pool; parity runs on all of it.
    """
    out = {}
    for name, values in pool.items():
        values = np.asarray(values)
        if not np.issubdtype(values.dtype, np.floating) or len(values) == 0:
            continue
        seen = values[:calibrated]
        low, high = float(np.min(seen)), float(np.max(seen))
        outside = float(np.mean((values < low) | (values > high)))
        out[name] = {
            "calibrated_samples": int(min(calibrated, len(values))),
            "calibrated_min": low,
            "calibrated_max": high,
            "parity_min": float(np.min(values)),
            "parity_max": float(np.max(values)),
            "outside_share": round(outside, 6),
        }
    return out



def blame_from_debugger(rows: list[dict]) -> list[str]:
    """Layers ordered worst first from QuantizationDebugger rows (sorted by RMSE/scale).

    A tensor whose step swallows most non-zero values (rounded_to_zero) is damaged even
    when its RMSE/scale is low, so those rows lead; fixed-scale softmax/logistic outputs
    round small probabilities to zero by design and do not lead on that count.
    """

    def swallowed(r):
        return r.get("rounded_to_zero", 0) > 0.5 and r.get("op") not in ("SOFTMAX", "LOGISTIC")

    ordered = sorted(rows, key=lambda r: (not swallowed(r), -(r.get("rmse_over_scale") or 0)))
    layers = []
    for r in ordered:
        if r["layer"] not in layers:
            layers.append(r["layer"])
    return layers


def blame_from_localization(localization: dict) -> list[str]:
    """Layers ordered worst first from a per-layer localization table: the first layer
    over the budget leads (where the error starts), then where the relative error grows
    most over its predecessor."""
    rows = sorted(localization.get("layers") or [], key=lambda r: r.get("index", 0))
    first = localization.get("first_over_budget")
    growth, previous = ([(float("inf"), first)] if first else []), 0.0
    for r in rows:
        rel = r.get("rel_error")
        if rel is None or not np.isfinite(rel):
            continue
        growth.append((rel - previous, r["layer"]))
        previous = rel
    layers = []
    for _, layer in sorted(growth, key=lambda g: -g[0]):
        if layer not in layers:
            layers.append(layer)
    return layers


def int8_loss(values: np.ndarray, axis: int | None = None) -> tuple[float, float]:
    """(share of non-zero values symmetric int8 rounds to zero, RMS error over RMS value),
    per channel along `axis`, else per tensor."""
    w = np.asarray(values, np.float64)
    if w.size == 0:
        return 0.0, 0.0
    if axis is None:
        scale = np.full_like(w, np.abs(w).max() / 127.0)
    else:
        scale = np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis % w.ndim), keepdims=True) / 127.0
        scale = np.broadcast_to(scale, w.shape)
    safe = np.where(scale > 0, scale, 1.0)
    rounded = np.round(w / safe) * safe
    nonzero = w != 0
    zeroed = nonzero & (rounded == 0)
    norm = float(np.sqrt(np.mean(w**2)))
    return float(zeroed.sum() / max(nonzero.sum(), 1)), (float(np.sqrt(np.mean((w - rounded) ** 2))) / norm if norm else 0.0)


def constant_damage(float_content: bytes, selectable: dict[str, list[str]]) -> dict[str, dict]:
    """{layer: {"zeroed", "rel_rmse", "tensor"}} for the layer's worst float constant in
    the float flatbuffer; layers without float constants are absent."""
    from targets.support.litert import _builtin_names, read_model

    model = read_model(float_content)
    graph = model.subgraphs[0]
    names = _builtin_names()
    owner = {tensor: layer for layer, tensors in selectable.items() for tensor in tensors}
    out: dict[str, dict] = {}
    for op in graph.operators or []:
        outputs = [graph.tensors[t].name for t in (op.outputs if op.outputs is not None else []) if t >= 0]
        layer = next((owner[n.decode() if isinstance(n, bytes) else str(n)] for n in outputs if (n.decode() if isinstance(n, bytes) else str(n)) in owner), None)
        if layer is None:
            continue
        code = model.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")
        for position, t in enumerate(op.inputs if op.inputs is not None else []):
            if t < 0 or (kind in KERNEL_AXIS and position == BIAS_INPUT):
                continue
            tensor = graph.tensors[t]
            data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
            if tensor.type != 0 or data is None or len(data) == 0:  # FLOAT32 constants only
                continue
            values = np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float32).reshape([int(d) for d in tensor.shape] or [-1])
            axis = KERNEL_AXIS.get(kind) if position == 1 and values.ndim > 1 else None
            zeroed, rel = int8_loss(values, axis)
            if layer not in out or zeroed > out[layer]["zeroed"]:
                name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
                out[layer] = {"zeroed": round(zeroed, 4), "rel_rmse": round(rel, 4), "tensor": name}
    return out


def input_damage(calibration: dict[str, np.ndarray], calibrated: int) -> dict[str, float]:
    """{float input: share of its non-zero calibration values that int8 over the calibrated
    min/max (widened to hold 0, as the converter does) rounds to zero}."""
    out = {}
    for name, values in calibration.items():
        values = np.asarray(values)
        if not np.issubdtype(values.dtype, np.floating) or len(values) == 0:
            continue
        seen = values[:calibrated].astype(np.float64)
        step = (max(float(seen.max()), 0.0) - min(float(seen.min()), 0.0)) / 255.0
        nonzero = seen != 0
        zeroed = nonzero & (np.abs(seen) < step / 2)
        out[name] = round(float(zeroed.sum() / max(nonzero.sum(), 1)), 4)
    return out


@dataclass(frozen=True)
class Ranking:
    """Layers in the order the search tries them, with the figures behind the order."""

    layers: tuple[str, ...]  # worst first, from both sources
    source: str  # where the order came from, in words
    figures: dict[str, dict] = field(default_factory=dict)  # {layer: {rmse_over_scale, rounded_to_zero, growth, weights_zeroed, ...}}
    inputs: dict[str, float] = field(default_factory=dict)  # {input: share of non-zero values int8 rounds to zero}

    @property
    def by_weights(self) -> tuple[str, ...]:
        """Ranked layers with float constants, most weight damage first (ties: ranking order)."""
        with_weights = [layer for layer in self.layers if self.figures.get(layer, {}).get("weights_zeroed") is not None]
        return tuple(sorted(with_weights, key=lambda layer: -self.figures[layer]["weights_zeroed"]))

    @property
    def weights_damaged(self) -> tuple[str, ...]:
        return tuple(layer for layer in self.by_weights if self.figures[layer]["weights_zeroed"] >= WEIGHTS_DAMAGED)

    @property
    def inputs_damaged(self) -> tuple[str, ...]:
        return tuple(name for name, share in self.inputs.items() if share >= INPUTS_DAMAGED)

    def to_json(self) -> dict:
        return {
            "layers": list(self.layers),
            "source": self.source,
            "figures": {layer: self.figures[layer] for layer in self.layers if layer in self.figures},
            "inputs": dict(self.inputs),
            "weights_damaged": list(self.weights_damaged),
            "inputs_damaged": list(self.inputs_damaged),
        }


def merge_orders(*orders: list[str]) -> list[str]:
    """Layers by their best rank in any order (ties: their next best rank, then the
    order the lists were given in): the worst of each source comes early."""
    ranks: dict[str, list[int]] = {}
    for order in orders:
        for i, layer in enumerate(order):
            ranks.setdefault(layer, []).append(i)
    first_seen = {layer: n for n, layer in enumerate(ranks)}
    return sorted(ranks, key=lambda layer: (sorted(ranks[layer]) + [10**9])[:2] + [first_seen[layer]])


def rank(
    selectable: dict[str, list[str]],
    debugger_rows: list[dict] | None,
    localization: dict | None,
    weights: dict[str, dict],
    inputs: dict[str, float],
    model_order: Iterable[str] = (),
) -> Ranking:
    """The search's ranking from whatever was measured. `debugger_rows`: QuantizationDebugger
    rows (None when it could not run); `localization`: the failed run's per-layer table
    (None without one); `weights`: `constant_damage()`; `model_order`: the Keras layer
    names, the fallback when neither table exists (output side first)."""
    orders, sources = [], []
    figures: dict[str, dict] = {}
    if debugger_rows:
        orders.append([x for x in blame_from_debugger(debugger_rows) if selectable.get(x)])
        sources.append("QuantizationDebugger (int8 RMSE/scale and rounded_to_zero per layer)")
        for r in debugger_rows:
            f = figures.setdefault(r["layer"], {})
            if (r.get("rmse_over_scale") or 0) >= f.get("rmse_over_scale", -1):
                f.update(rmse_over_scale=r.get("rmse_over_scale"), rounded_to_zero=r.get("rounded_to_zero"), op=r.get("op"))
    if isinstance(localization, dict) and localization.get("layers"):
        order = [x for x in blame_from_localization(localization) if selectable.get(x)]
        if order:
            orders.append(order)
            sources.append("localization (relative error growth per layer)")
            previous = 0.0
            for r in sorted(localization["layers"], key=lambda r: r.get("index", 0)):
                rel = r.get("rel_error")
                if rel is not None and np.isfinite(rel):
                    figures.setdefault(r["layer"], {})["growth"] = round(float(rel - previous), 4)
                    previous = rel
    if not orders:
        orders.append([x for x in list(model_order)[::-1] if selectable.get(x)])
        sources.append("model order, output side first (no per-layer errors)")
    layers = merge_orders(*orders)
    for layer, w in weights.items():
        if layer in layers:
            figures.setdefault(layer, {}).update(weights_zeroed=w["zeroed"], weights_rel_rmse=w["rel_rmse"])
    source = " merged with ".join(sources) if len(sources) > 1 else sources[0]
    return Ranking(tuple(layers), source, {k: v for k, v in figures.items() if k in layers}, dict(inputs))
