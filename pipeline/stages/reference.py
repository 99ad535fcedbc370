"""Stage `reference`: the eager outputs every artifact is judged against, checked
against themselves first.

Before any artifact is compared, the eager model runs once more on one parity case
and once more with that case's samples in another order. An output that moves
between two identical calls (or with the order of the batch) is a moving target:
no artifact could match it, and blaming each target in turn would hide the real
fault. Such a model stops here with exit 2, naming the output and the likely causes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from pipeline.spec import ModelConfig
from pipeline.errors import ModelError
from pipeline.records import LoadedModel, ParityData

# The reference must agree with itself at least as well as the tightest float32
# artifact budget agrees with it: atol 1e-5, rtol 1e-5, or a millionth of the range.
SELF_ATOL = 1e-5
SELF_RTOL = 1e-5
SELF_RANGE_FRACTION = 1e-6

REPEAT_CAUSES = (
    "Python-side randomness in the model's code (random.random(), np.random.*): drawn anew on every eager call, "
    "frozen to one value when the model is traced"
    "; dropout or noise layers called in training mode (training=True passed inside call(), or a layer that ignores `training`)"
    "; stateful TensorFlow random ops without a fixed seed (tf.random.uniform, tf.random.normal)"
    "; Python state that changes per call (a counter, a cache, a list appended to)"
)
REORDER_CAUSES = (
    "a layer that mixes samples of a batch: BatchNormalization (or other batch statistics) run in training mode, "
    "a reduction or normalization over axis 0, or code that treats the first sample specially"
)


@dataclass(frozen=True)
class Disagreement:
    output: str
    how: str  # "repeat" | "reorder"
    max_abs: float
    outside: int
    elements: int


def _budget(ref: np.ndarray, value_range: float) -> np.ndarray:
    return max(SELF_ATOL, SELF_RANGE_FRACTION * value_range) + SELF_RTOL * np.abs(ref)


def _compare(name: str, how: str, ref: np.ndarray, other: np.ndarray, value_range: float) -> Disagreement | None:
    ref, other = np.asarray(ref), np.asarray(other)
    if ref.shape != other.shape:
        return Disagreement(name, how, float("inf"), int(ref.size), int(ref.size))
    if ref.dtype.kind not in "fc":  # integers, booleans, strings: exactly equal or not at all
        outside = int(np.sum(ref != other))
        if not outside:
            return None
        diff = np.abs(ref.astype(np.float64) - other.astype(np.float64)) if ref.dtype.kind in "iub" else np.array([float("inf")])
        return Disagreement(name, how, float(diff.max(initial=0.0)), outside, int(ref.size))
    r, o = ref.astype(np.float64), other.astype(np.float64)
    same_nan = np.isnan(r) & np.isnan(o)
    diff = np.where(same_nan, 0.0, np.abs(o - r))
    diff = np.where(np.isfinite(diff) | same_nan, diff, np.inf)
    outside = int(np.sum(diff > _budget(r, value_range)))
    if not outside:
        return None
    return Disagreement(name, how, float(diff.max(initial=0.0)), outside, int(ref.size))


def _pick_case(data: ParityData, config: ModelConfig) -> int | None:
    """The smallest case with more than one sample (cheap, and reorderable)."""
    batched = [spec.name for spec in config.inputs if spec.batched]
    best = None
    for i, (_, inputs) in enumerate(data.cases):
        sizes = {int(np.shape(inputs[n])[0]) for n in batched if np.ndim(inputs[n])}
        if len(sizes) == 1:
            size = sizes.pop()
            if size > 1 and (best is None or size < best[1]):
                best = (i, size)
    if best is None:
        return 0 if data.cases else None
    return best[0]


def check_reference(
    config: ModelConfig,
    loaded: LoadedModel,
    data: ParityData,
    reference: tuple[dict[str, np.ndarray], ...],
    stats: dict[str, dict],
    run_eager: Callable[[LoadedModel, dict[str, np.ndarray]], dict[str, np.ndarray]],
) -> dict:
    """Run the eager model again on one case, then on the same case reordered.

    Returns the report record; raises ModelError (exit 2) when the model disagrees
    with itself beyond the self-consistency budget.
    """
    index = _pick_case(data, config)
    if index is None:
        return {"checked": False, "reason": "no parity case"}
    start = time.perf_counter()
    label, inputs = data.cases[index]
    ref = reference[index]
    problems: list[Disagreement] = []
    again = run_eager(loaded, inputs)
    for name in ref:
        found = _compare(name, "repeat", ref[name], again.get(name), stats[name]["range"]) if name in again else None
        if found:
            problems.append(found)
    batched_inputs = [spec.name for spec in config.inputs if spec.batched]
    batch = int(np.shape(inputs[batched_inputs[0]])[0]) if batched_inputs and np.ndim(inputs[batched_inputs[0]]) else 1
    reordered = False
    if not problems and batch > 1:
        order = np.roll(np.arange(batch), -1)  # every sample moves
        undo = np.argsort(order)
        shuffled = {n: (np.asarray(v)[order] if n in batched_inputs else v) for n, v in inputs.items()}
        out = run_eager(loaded, shuffled)
        for name in ref:
            value = np.asarray(out.get(name))
            if value.ndim and value.shape[0] == batch and np.ndim(ref[name]) and np.shape(ref[name])[0] == batch:
                found = _compare(name, "reorder", ref[name], value[undo], stats[name]["range"])
                if found:
                    problems.append(found)
        reordered = True
    seconds = round(time.perf_counter() - start, 3)
    if problems:
        raise ModelError(_message(config, label, problems))
    return {
        "checked": True,
        "case": label,
        "repeated": True,
        "reordered": reordered,
        "budget": {"atol": SELF_ATOL, "rtol": SELF_RTOL, "range_fraction": SELF_RANGE_FRACTION},
        "seconds": seconds,
    }


def _message(config: ModelConfig, label: str, problems: list[Disagreement]) -> str:
    budget = f"atol {SELF_ATOL:g} (or {SELF_RANGE_FRACTION:g} of the output's range) + rtol {SELF_RTOL:g}*|ref|"
    lines = []
    for p in problems:
        what = "between two identical calls" if p.how == "repeat" else "when the samples of the batch are reordered"
        lines.append(f"output '{p.output}' differs {what} by max_abs {p.max_abs:.3g} ({p.outside} of {p.elements} elements beyond {budget}, parity case '{label}')")
    causes = REPEAT_CAUSES if any(p.how == "repeat" for p in problems) else REORDER_CAUSES
    head = f"the eager model is not deterministic: {lines[0]}"
    more = "".join(f"\n  also: {line}" for line in lines[1:])
    where = f" (model code: {config.source.factory or config.source.path})" if (config.source.factory or config.source.path) else ""
    return (
        f"{head}{more}\n"
        f"No artifact of model '{config.name}' was judged: the reference it would be compared with moves by itself{where}.\n"
        f"Likely causes: {causes}.\n"
        "Fix: make call() a pure function of its inputs in inference mode (seeded or removed randomness, training=False "
        "respected), then export again."
    )
