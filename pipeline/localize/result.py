"""Typed per-layer localization results, and the metrics that fill them.

Pure NumPy: renderers, `repair` and tests read these records, never raw arrays.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

METHODS = ("tensors", "tensors+bisection", "bisection", "none")
SWALLOWED_SHARE = 0.5


@dataclass(frozen=True)
class Budget:
    """A failing output's budget, relative to that output's reference range, so it
    can be scaled to any layer: a layer element is over budget when
    |artifact - reference| > range_share * layer_range + rtol * |reference|."""

    range_share: float
    rtol: float
    mismatch_fraction: float
    output: str

    def atol_for(self, layer_range: float) -> float:
        return self.range_share * layer_range


def budget_for(outputs: dict[str, dict], stats: dict[str, dict], tolerance_for) -> Budget | None:
    """The tightest budget among the failing outputs of a parity record.

    `outputs` is `parity["outputs"]` (atol is the effective atol recorded there);
    `stats` the reference statistics (each output's range); `tolerance_for(output)`
    the output's Tolerance (for the allowed mismatch share).
    """
    best = None
    for name, m in outputs.items():
        if m.get("passed") or m.get("atol") is None:
            continue
        value_range = float(stats.get(name, {}).get("range") or 0.0)
        share = float(m["atol"]) / value_range if value_range > 0 else float(m["atol"])
        candidate = Budget(share, float(m.get("rtol") or 0.0), float(tolerance_for(name).mismatch_fraction), name)
        if best is None or candidate.range_share < best.range_share:
            best = candidate
    return best


@dataclass(frozen=True)
class LayerError:
    index: int
    layer: str
    tensor: str
    shape: tuple[int, ...]
    max_abs: float
    rel_error: float
    cosine: float
    sqnr_db: float
    budget_atol: float
    mismatch_fraction: float
    over_budget: bool
    quantized: dict | None = None

    def to_json(self) -> dict:
        out = asdict(self)
        out["shape"] = list(self.shape)
        for key in ("max_abs", "rel_error", "cosine", "sqnr_db", "budget_atol", "mismatch_fraction"):
            out[key] = _finite(out[key])
        return out

    @classmethod
    def from_json(cls, data: dict) -> "LayerError":
        values = dict(data)
        values["shape"] = tuple(values.get("shape") or ())
        for key in ("max_abs", "rel_error", "cosine", "sqnr_db", "budget_atol", "mismatch_fraction"):
            values[key] = _unfinite(values.get(key))
        return cls(**values)


@dataclass(frozen=True)
class Localization:
    target: str
    variant: str
    method: str  # one of METHODS
    layers: tuple[LayerError, ...] = ()
    first_over_budget: str | None = None
    largest_growth: str | None = None
    unmatched: tuple[str, ...] = ()
    note: str = ""
    seconds: float = 0.0
    debug_files: tuple[str, ...] = ()
    budget: dict = field(default_factory=dict)
    explorer: dict = field(default_factory=dict)  # {"node_data": path, "graph": path to open it over}

    def to_json(self) -> dict:
        return {
            "explorer": dict(self.explorer),
            "target": self.target,
            "variant": self.variant,
            "method": self.method,
            "first_over_budget": self.first_over_budget,
            "largest_growth": self.largest_growth,
            "layers": [layer.to_json() for layer in self.layers],
            "unmatched": list(self.unmatched),
            "note": self.note,
            "seconds": self.seconds,
            "debug_files": list(self.debug_files),
            "budget": dict(self.budget),
        }

    @classmethod
    def from_json(cls, data: dict) -> "Localization":
        return cls(
            target=data["target"],
            variant=data.get("variant", ""),
            method=data["method"],
            layers=tuple(LayerError.from_json(row) for row in data.get("layers", [])),
            first_over_budget=data.get("first_over_budget"),
            largest_growth=data.get("largest_growth"),
            unmatched=tuple(data.get("unmatched", [])),
            note=data.get("note", ""),
            seconds=float(data.get("seconds", 0.0)),
            debug_files=tuple(data.get("debug_files", [])),
            budget=dict(data.get("budget") or {}),
            explorer=dict(data.get("explorer") or {}),
        )

    def summary(self) -> str:
        """One console line."""
        label = f"{self.target}/{self.variant}" if self.variant else self.target
        if self.method == "none":
            return f"{label}: not localized: {self.note}"
        first = next((row for row in self.layers if row.layer == self.first_over_budget), None)
        if first is None:
            head = f"no layer exceeds the scaled budget on the batch compared ({len(self.layers)} layers; the failure is spread over the model, or outside that batch)"
        else:
            head = (
                f"first layer over budget: '{first.layer}' (#{first.index}, max_abs {first.max_abs:.3g}, "
                f"{100 * first.rel_error:.3g}% of its range, cosine {first.cosine:.6g}, SQNR {first.sqnr_db:.1f} dB)"
            )
        grow = f"; error grows most at '{self.largest_growth}'" if self.largest_growth and self.largest_growth != self.first_over_budget else ""
        swallowed = [
            f"'{row.layer}' ({100 * row.quantized['rounded_to_zero']:.0f}% of its non-zero values quantize to zero)"
            for row in self.layers
            if row.quantized and row.quantized.get("swallowed")
        ]
        lost = f"; step swallows values in {', '.join(swallowed)}" if swallowed else ""
        return f"{label}: {head}{grow}{lost} [{self.method}, {self.seconds:.1f} s]"


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _unfinite(value):
    if value is None:
        return float("nan")
    if value in ("inf", "-inf"):
        return float(value)
    return float(value)


def layer_metrics(ref: np.ndarray, out: np.ndarray) -> dict:
    """max_abs, error relative to the layer's own range, cosine and SQNR (dB) of one tensor."""
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    o = np.asarray(out, dtype=np.float64).reshape(-1)
    diff = np.abs(o - r)
    diff = np.where(np.isfinite(diff), diff, np.inf)
    finite = r[np.isfinite(r)]
    value_range = float(finite.max() - finite.min()) if finite.size else 0.0
    max_abs = float(diff.max(initial=0.0))
    rel = max_abs / value_range if value_range > 0 else (0.0 if max_abs == 0 else float("inf"))
    nr, no = float(np.linalg.norm(r)), float(np.linalg.norm(o))
    if not np.all(np.isfinite(o)):
        cosine = float("nan")
    elif nr == 0.0 and no == 0.0:
        cosine = 1.0
    else:
        cosine = float(np.dot(r, o) / max(nr * no, 1e-300))
    noise = float(np.sum(np.square(np.where(np.isfinite(diff), diff, 0.0))))
    signal = float(np.sum(np.square(r)))
    if not np.all(np.isfinite(diff)):
        sqnr = float("-inf")
    elif noise == 0.0:
        sqnr = float("inf")
    else:
        sqnr = 10.0 * math.log10(max(signal, 1e-300) / noise)
    return {"max_abs": max_abs, "range": value_range, "rel_error": rel, "cosine": cosine, "sqnr_db": sqnr, "diff": diff, "ref": r}


def judge(index: int, layer: str, tensor: str, ref: np.ndarray, out: np.ndarray, budget: Budget, quantized: dict | None = None) -> LayerError:
    m = layer_metrics(ref, out)
    if quantized and quantized.get("scale"):
        # The debugger's two figures, on the shipped tensor: RMS error in quantization steps
        # (about 0.29 is plain rounding), and the share of non-zero values that became zero.
        finite = np.isfinite(m["diff"])
        rmse = float(np.sqrt(np.mean(np.square(m["diff"][finite])))) if finite.any() else float("inf")
        nonzero = m["ref"] != 0
        flat_out = np.asarray(out, dtype=np.float64).reshape(-1)
        quantized = dict(
            quantized,
            rmse_over_scale=round(rmse / quantized["scale"], 3),
            rounded_to_zero=round(float(np.mean(flat_out[nonzero] == 0.0)) if nonzero.any() else 0.0, 3),
        )
    atol = budget.atol_for(m["range"])
    outside = m["diff"] > atol + budget.rtol * np.abs(m["ref"])
    share = float(outside.mean()) if outside.size else 0.0
    # A quantized tensor whose step swallows most of its non-zero values (an outlier stretched
    # its range) has lost them, however small the error looks against that stretched range:
    # flagged beside the verdict (the budget rule alone decides `over_budget`). Softmax/logistic
    # outputs have a fixed 1/256 step and round small probabilities to zero by design.
    swallowed = bool(
        quantized
        and quantized.get("rounded_to_zero", 0.0) > SWALLOWED_SHARE
        and not math.isclose(quantized.get("scale", 0.0), 1.0 / 256.0, rel_tol=1e-6)
    )
    if quantized is not None and swallowed:
        quantized = dict(quantized, swallowed=True)
    return LayerError(
        index=index,
        layer=layer,
        tensor=tensor,
        shape=tuple(int(d) for d in np.shape(out)),
        max_abs=m["max_abs"],
        rel_error=m["rel_error"],
        cosine=m["cosine"],
        sqnr_db=m["sqnr_db"],
        budget_atol=atol,
        mismatch_fraction=share,
        over_budget=share > budget.mismatch_fraction,
        quantized=quantized,
    )


def summarize(rows: list[LayerError], predecessors: dict[str, list[str]] | None = None) -> tuple[str | None, str | None]:
    """(first layer over budget, layer where the relative error grows most)."""
    first = next((row.layer for row in rows if row.over_budget), None)
    by_name = {row.layer: row for row in rows}
    best, best_growth = None, 0.0
    previous = None
    for row in rows:
        sources = [by_name[p] for p in (predecessors or {}).get(row.layer, []) if p in by_name] if predecessors else ([previous] if previous else [])
        before = max((s.rel_error for s in sources if math.isfinite(s.rel_error)), default=0.0)
        growth = (row.rel_error if math.isfinite(row.rel_error) else 1e9) - before
        if growth > best_growth:
            best, best_growth = row.layer, growth
        previous = row
    return first, best
