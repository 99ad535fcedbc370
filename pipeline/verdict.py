"""Verdict criteria for one output: robust error statistics, SQNR and the tail check.
NumPy only.

Every figure is computed over every element of every parity case, pooled, so a few
elements near a rounding boundary cannot decide alone, and a systematic error over
many elements cannot hide behind a small maximum.

Each criterion records its value, its limit, whether it holds, its margin in its own
units (positive = inside the budget) and `used`: the share of its allowance used
(1.0 is the limit). `used` is comparable across criteria, so the criterion that
decided a verdict is the one with the largest `used`: the worst one when the output
failed, the closest to failing when it passed.

- `sqnr_db`: 10*log10(sum(ref^2) / sum((out - ref)^2)); judged only when the error's
  RMS exceeds the absolute floor: `atol`, or `floor_ulps` rounding steps of the
  output's dtype at its magnitude, whichever is larger (an output that is zero
  everywhere, matched to 1e-9, has no meaningful ratio). used = noise power / allowed
  noise power.
- `mean_error`: mean |out - ref| as a fraction of the reference's range, at most
  `max_mean_error`, or `floor_ulps` rounding steps where that is more: a near-constant
  output's range can be smaller than one rounding step of its values, and an artifact
  off by a rounding step is float32 itself, not a breakage. used = value / limit.
- `tail`: the share of elements outside the elementwise budget
  |out - ref| <= atol_eff + rtol * |ref|, at most `mismatch_fraction`. used is the
  factor by which the elementwise budget would have to grow for the share to hold:
  the (k+1)-th largest ratio |err| / budget, k = floor(mismatch_fraction * elements);
  its margin is 1 - used.
"""
from __future__ import annotations

import math

import numpy as np

from pipeline.tolerance import Tolerance

QUANTILES = (0.5, 0.99, 0.999)


def _pooled(reference: list, produced: list) -> tuple[np.ndarray, np.ndarray]:
    ref = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in reference]) if reference else np.zeros(0)
    out = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in produced]) if produced else np.zeros(0)
    return ref, out


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB; +inf when the two are identical."""
    ref, out = np.asarray(ref, dtype=np.float64), np.asarray(out, dtype=np.float64)
    return _sqnr_from(float(np.sum(np.square(out - ref))), float(np.sum(np.square(ref))))


def error_statistics(reference: list, produced: list, ref_range: float) -> dict:
    """Pooled error figures of one output (finite elements only): mean, median, high
    quantiles and max of |out - ref|, each also as a fraction of the reference range,
    the error's RMS and the SQNR."""
    ref, out = _pooled(reference, produced)
    finite = np.isfinite(ref) & np.isfinite(out)
    ref = ref[finite]
    return _exact_statistics(np.abs(out[finite] - ref), ref, ref_range)


def _exact_statistics(err: np.ndarray, ref: np.ndarray, ref_range: float) -> dict:
    stats: dict = {"elements": int(err.size)}
    if not err.size:
        return stats
    stats["mean_abs"] = float(err.mean())
    for q in QUANTILES:
        stats[_quantile_key(q)] = float(np.quantile(err, q))
    stats["max_abs"] = float(err.max())
    stats["rms_error"] = float(np.sqrt(np.mean(np.square(err))))
    return _finish_statistics(stats, float(np.sum(np.square(err))), float(np.sum(np.square(ref))), ref_range)


def _finish_statistics(stats: dict, noise: float, signal: float, ref_range: float) -> dict:
    scale = ref_range if ref_range > 0 else None
    for key in ("mean_abs", *(_quantile_key(q) for q in QUANTILES), "max_abs"):
        stats[f"{key}_of_range"] = stats[key] / scale if scale else None
    sqnr = _sqnr_from(noise, signal)
    stats["sqnr_db"] = sqnr if math.isfinite(sqnr) else (None if sqnr > 0 else -999.0)
    stats["sqnr_exact"] = sqnr == math.inf
    return stats


def _sqnr_from(noise: float, signal: float) -> float:
    if noise == 0.0:
        return math.inf
    if signal == 0.0 or not math.isfinite(noise):
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _quantile_key(q: float) -> str:
    text = f"{100 * q:g}".replace(".", "_")
    return "median_abs" if q == 0.5 else f"p{text}_abs"


def tail_used(reference: list, produced: list, atol_eff: float, rtol: float, mismatch_fraction: float) -> float:
    """How far the elementwise budget is used at the allowed tail share (see module doc)."""
    ref, out = _pooled(reference, produced)
    if not ref.size:
        return 0.0
    ratio = budget_ratio(ref, out, atol_eff, rtol)
    k = int(math.floor(mismatch_fraction * ratio.size + 1e-9))
    if k >= ratio.size:
        return 0.0
    return float(np.partition(ratio, ratio.size - 1 - k)[ratio.size - 1 - k])


def budget_ratio(ref: np.ndarray, out: np.ndarray, atol_eff: float, rtol: float) -> np.ndarray:
    """|err| / (atol_eff + rtol*|ref|) per element (float64; non-finite errors are +inf)."""
    err = np.abs(out - ref)
    err = np.where(np.isfinite(err), err, np.inf)
    budget = atol_eff + rtol * np.abs(np.where(np.isfinite(ref), ref, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(budget > 0, err / np.where(budget > 0, budget, 1.0), np.where(err > 0, np.inf, 0.0))


def _criterion(value, limit, passed: bool, margin, used: float, unit: str = "") -> dict:
    return {"value": value, "limit": limit, "passed": passed, "margin": margin, "used": _clean(used), **({"unit": unit} if unit else {})}


def _clean(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def output_criteria(stats: dict, tol: Tolerance, mismatch_fraction: float, tail_ratio: float, ulp: float = 0.0, ref_range: float = 0.0) -> dict[str, dict]:
    """The per-output criteria of `tol` on pooled figures. `mismatch_fraction` is the
    pooled share outside the elementwise budget; `tail_ratio` from :func:`tail_used`;
    `ulp` the output dtype's rounding step at its magnitude (pipeline.parity.rounding_step)
    and `ref_range` the reference's range, which together floor the range-relative limit."""
    floor = tol.floor(ulp)
    criteria: dict[str, dict] = {}
    # The tail's margin is the elementwise budget's headroom (1 - used): a share has no
    # headroom to speak of when none may exceed.
    criteria["tail"] = _criterion(
        mismatch_fraction, tol.mismatch_fraction, mismatch_fraction <= tol.mismatch_fraction, _clean(1.0 - tail_ratio), tail_ratio, "share of elements"
    )
    if not stats.get("elements"):
        return criteria
    if tol.min_sqnr_db is not None:
        sqnr = stats.get("sqnr_db")
        noise_used = 0.0 if stats.get("sqnr_exact") else 10 ** ((tol.min_sqnr_db - sqnr) / 10)
        # An error within the absolute floor has no meaningful ratio to a signal that is
        # (nearly) zero everywhere, nor below the dtype's rounding of the output's
        # magnitude: the criterion holds if either bound does.
        absolute = max(tol.atol, floor)
        floor_used = (stats["rms_error"] / absolute) ** 2 if absolute > 0 else math.inf
        used = min(noise_used, floor_used)
        criteria["sqnr_db"] = _criterion(sqnr, tol.min_sqnr_db, used <= 1.0, None if sqnr is None else sqnr - tol.min_sqnr_db, used, "dB")
        if noise_used > 1.0 >= floor_used:
            within = f"atol {tol.atol:.3g}" if tol.atol >= floor else f"{tol.floor_ulps:g} rounding steps ({floor:.3g})"
            criteria["sqnr_db"]["note"] = f"error RMS {stats['rms_error']:.3g} within {within}"
    if tol.max_mean_error is not None:
        value = stats.get("mean_abs_of_range")
        if value is None:  # constant reference: compare with the absolute floor instead
            value, limit = stats["mean_abs"], max(tol.atol, floor)
        elif floor > tol.max_mean_error * ref_range > 0:  # less than the dtype can resolve at this magnitude
            limit = floor / ref_range
        else:
            limit = tol.max_mean_error
        used = value / limit if limit > 0 else (math.inf if value > 0 else 0.0)
        criteria["mean_error"] = _criterion(value, limit, value <= limit, limit - value, used, "fraction of range")
        if limit != tol.max_mean_error and stats.get("mean_abs_of_range") is not None:
            criteria["mean_error"]["note"] = (
                f"limit floored at {tol.floor_ulps:g} rounding steps of the output's dtype at its magnitude ({floor:.3g}): "
                f"{tol.max_mean_error:g} of the range ({tol.max_mean_error * ref_range:.3g}) is below what it resolves there"
            )
    return criteria


def classifier_criteria(cls: dict, tol: Tolerance) -> dict[str, dict]:
    """top-1 / top-k agreement and accuracy drop, where the tolerance sets a limit."""
    criteria: dict[str, dict] = {}
    if tol.min_top1 is not None:
        v = cls["top1_agreement"]
        criteria["top1_agreement"] = _criterion(v, tol.min_top1, v >= tol.min_top1, v - tol.min_top1, _disagreement_used(v, tol.min_top1))
    if tol.min_topk is not None and "topk_agreement" in cls:
        v = cls["topk_agreement"]
        criteria["topk_agreement"] = _criterion(v, tol.min_topk, v >= tol.min_topk, v - tol.min_topk, _disagreement_used(v, tol.min_topk))
    if tol.max_accuracy_drop is not None and "accuracy_delta" in cls:
        drop = -cls["accuracy_delta"]
        used = drop / tol.max_accuracy_drop if tol.max_accuracy_drop > 0 else (math.inf if drop > 0 else 0.0)
        criteria["accuracy_drop"] = _criterion(drop, tol.max_accuracy_drop, drop <= tol.max_accuracy_drop, tol.max_accuracy_drop - drop, max(used, 0.0))
    return criteria


def _disagreement_used(agreement: float, minimum: float) -> float:
    allowed = 1.0 - minimum
    missing = 1.0 - agreement
    if allowed <= 0:
        return math.inf if missing > 0 else 0.0
    return missing / allowed


def decided_by(criteria: dict[str, dict]) -> str | None:
    """The criterion that decided: the first failing one with the largest `used`, or,
    when all hold, the one closest to its limit."""
    if not criteria:
        return None
    failing = {k: c for k, c in criteria.items() if not c["passed"]}
    pool = failing or criteria
    return max(pool, key=lambda k: math.inf if pool[k]["used"] is None else pool[k]["used"])


LABELS = {
    "sqnr_db": ("SQNR", ">=", " dB"),
    "mean_error": ("mean |error| / range", "<=", ""),
    "top1_agreement": ("top-1 agreement", ">=", ""),
    "topk_agreement": ("top-k agreement", ">=", ""),
    "accuracy_drop": ("accuracy drop", "<=", ""),
    "tail": ("share beyond the elementwise budget", "<=", ""),
    "equal": ("share of string elements unlike the reference's", "<=", ""),
}


def criterion_text(name: str, c: dict) -> str:
    """One criterion for failure messages: value, limit, margin."""
    shares = name in ("top1_agreement", "topk_agreement", "accuracy_drop")

    def f(x):
        return "n/a" if x is None else (f"{x:.4f}" if shares else f"{x:.4g}")

    label, comparison, unit = LABELS.get(name, (name, "<=", ""))
    return f"{label} {f(c['value'])}{unit} (limit {comparison} {f(c['limit'])}{unit}, margin {f(c['margin'])})"


def judge_output(figures: dict, pooled: "PooledErrors", tol: Tolerance, ref_range: float, ulp: float = 0.0) -> dict:
    """Add pooled statistics, criteria and the deciding criterion to one output's
    figures (from parity's per-case pass) and set its verdict. Returns `figures`.
    `pooled` was fed every element of every case (see :class:`PooledErrors`)."""
    stats = pooled.statistics(ref_range)
    ratio = pooled.tail_ratio()
    criteria = output_criteria(stats, tol, figures["mismatch_fraction"], ratio, ulp, ref_range)
    figures["statistics"] = {k: (_clean(v) if isinstance(v, float) else v) for k, v in stats.items() if k != "sqnr_exact"}
    if pooled.approximate:
        figures["statistics"]["quantile_method"] = pooled.method_text()
    figures["sqnr_db"] = figures["statistics"].get("sqnr_db")
    figures["criteria"] = criteria
    figures["decided_by"] = decided_by(criteria)
    figures["passed"] = figures["nonfinite"] == 0 and all(c["passed"] for c in criteria.values())
    if figures["nonfinite"]:
        figures["decided_by"] = "nonfinite"
    return figures


def failure_text(figures: dict) -> str:
    """Why one output failed: the failing criteria, worst first, with their margins."""
    if "error" in figures:
        return figures["error"]
    if figures.get("nonfinite"):
        return f"{figures['nonfinite']} elements where artifact and reference disagree on NaN/Inf"
    criteria = figures.get("criteria", {})
    failing = sorted((k for k, c in criteria.items() if not c["passed"] and k != "tail"), key=lambda k: -(math.inf if criteria[k]["used"] is None else criteria[k]["used"]))
    parts = [criterion_text(k, criteria[k]) for k in failing]
    if "tail" in criteria and not criteria["tail"]["passed"]:
        parts.insert(0, (
            f"max_abs {figures['max_abs']:.3g} > atol {figures['atol']:.3g} (+ rtol {figures['rtol']:.3g}*|ref|) on "
            f"{figures['outside']} of {figures['elements']} elements ({100 * figures['mismatch_fraction']:.2f}%, {100 * criteria['tail']['limit']:.2f}% allowed)"
        ))
    return "; ".join(parts)


# ---- Pooled figures in bounded memory -------------------------------------------------
#
# Parity feeds one output's elements block by block, case by case; nothing of a case is
# kept once it is compared. Counts, sums, the maximum and the SQNR are exact whatever
# the size. Up to EXACT_ELEMENTS pooled elements per output the quantiles are exact too
# (the finite errors are kept, float64: at most 64 MB); beyond, they come from a
# logarithmic histogram of BINS_PER_OCTAVE bins per power of two, which puts every
# quantile within QUANTILE_RELATIVE_ERROR (0.14%) of numpy's linear quantile for errors
# in [2**HIST_MIN_EXP, 2**HIST_MAX_EXP] (smaller ones are off by less than 2**HIST_MIN_EXP
# in absolute terms). The tail criterion's growth factor (the (k+1)-th largest
# |err|/budget, k the allowed count) is exact while k < EXACT_TAIL (the k+1 largest
# ratios are kept: 32 MB at most); beyond, it comes from the same histogram, within the
# same relative bound. Whether the tail criterion passes is always an exact count.

EXACT_ELEMENTS = 1 << 22
EXACT_TAIL = 1 << 22
BINS_PER_OCTAVE = 256
HIST_MIN_EXP, HIST_MAX_EXP = -120, 64
QUANTILE_RELATIVE_ERROR = 2 ** (1 / (2 * BINS_PER_OCTAVE)) - 1


class LogHistogram:
    """Counts of non-negative values (0 and +inf included) in logarithmic bins."""

    def __init__(self) -> None:
        self.bins = np.zeros((HIST_MAX_EXP - HIST_MIN_EXP) * BINS_PER_OCTAVE, dtype=np.int64)
        self.zeros = 0
        self.infinite = 0
        self.low = math.inf
        self.high = 0.0

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if not values.size:
            return
        zero = values == 0.0
        inf = np.isinf(values)
        self.zeros += int(zero.sum())
        self.infinite += int(inf.sum())
        positive = values[~zero & ~inf]
        if positive.size:
            self.low = min(self.low, float(positive.min()))
            self.high = max(self.high, float(positive.max()))
            index = np.floor((np.log2(positive) - HIST_MIN_EXP) * BINS_PER_OCTAVE)
            index = np.clip(index, 0, self.bins.size - 1).astype(np.int64)
            self.bins += np.bincount(index, minlength=self.bins.size)

    @property
    def count(self) -> int:
        return self.zeros + int(self.bins.sum()) + self.infinite

    def at_rank(self, rank: int) -> float:
        """Estimate of the rank-th smallest value (0-based)."""
        if rank < self.zeros:
            return 0.0
        rank -= self.zeros
        cumulative = np.cumsum(self.bins)
        if rank >= int(cumulative[-1]):
            return math.inf
        b = int(np.searchsorted(cumulative, rank, side="right"))
        centre = 2.0 ** (HIST_MIN_EXP + (b + 0.5) / BINS_PER_OCTAVE)
        return min(max(centre, self.low), self.high)

    def quantile(self, q: float) -> float:
        """numpy's linear quantile, from the estimates of the two order statistics around it."""
        n = self.count
        h = q * (n - 1)
        i = int(math.floor(h))
        lo = self.at_rank(i)
        if h == i:
            return lo
        hi = self.at_rank(i + 1)
        return lo + (h - i) * (hi - lo)


class PooledErrors:
    """One output's pooled figures (error statistics, SQNR, tail growth factor), fed in
    blocks with :meth:`add`. `total` is the number of elements that will be fed (the
    reference's size), known before the first case: it fixes how many tail ratios to keep
    and whether the quantiles can be exact."""

    def __init__(self, total: int, atol_eff: float, rtol: float, mismatch_fraction: float, exact_elements: int = EXACT_ELEMENTS, exact_tail: int = EXACT_TAIL) -> None:
        self.atol_eff, self.rtol = atol_eff, rtol
        self.k = int(math.floor(mismatch_fraction * total + 1e-9))
        self.total = total
        self.exact = total <= exact_elements
        self.exact_tail = self.k < exact_tail
        self.seen = 0
        self._err: list[np.ndarray] = []
        self._ref: list[np.ndarray] = []
        self._count = 0
        self._sum = 0.0
        self._sum_sq = 0.0
        self._signal = 0.0
        self._max = 0.0
        self._hist = None if self.exact else LogHistogram()
        self._top = np.zeros(0)
        self._ratio_hist = None if self.exact_tail else LogHistogram()

    @property
    def approximate(self) -> bool:
        return not self.exact

    def method_text(self) -> str:
        return (
            f"median/p99/p99.9 from a {BINS_PER_OCTAVE}-bins-per-octave histogram over {self.seen} elements: "
            f"within {100 * QUANTILE_RELATIVE_ERROR:.2f}% of the exact quantile; counts, mean, max, RMS and SQNR exact"
        )

    def add(self, ref: np.ndarray, out: np.ndarray) -> None:
        """One block of elements: float64 arrays of the same shape."""
        ref, out = ref.reshape(-1), out.reshape(-1)
        self.seen += ref.size
        finite = np.isfinite(ref) & np.isfinite(out)
        ref_f = ref[finite]
        err = np.abs(out[finite] - ref_f)
        if self.exact:
            self._err.append(err)
            self._ref.append(ref_f)
        else:
            self._count += err.size
            self._sum += float(err.sum())
            self._sum_sq += float(np.sum(np.square(err)))
            self._signal += float(np.sum(np.square(ref_f)))
            self._max = max(self._max, float(err.max(initial=0.0)))
            self._hist.add(err)
        ratio = budget_ratio(ref, out, self.atol_eff, self.rtol)
        if self._ratio_hist is not None:
            self._ratio_hist.add(ratio)
            return
        keep = self.k + 1
        if self._top.size >= keep:
            ratio = ratio[ratio >= self._top.min()]
        merged = np.concatenate([self._top, ratio])
        if merged.size > keep:
            merged = np.partition(merged, merged.size - keep)[merged.size - keep:]
        self._top = merged

    def statistics(self, ref_range: float) -> dict:
        """As :func:`error_statistics` over every element fed."""
        if self.exact:
            err = np.concatenate(self._err) if self._err else np.zeros(0)
            ref = np.concatenate(self._ref) if self._ref else np.zeros(0)
            return _exact_statistics(err, ref, ref_range)
        stats: dict = {"elements": int(self._count)}
        if not self._count:
            return stats
        stats["mean_abs"] = self._sum / self._count
        for q in QUANTILES:
            stats[_quantile_key(q)] = min(self._hist.quantile(q), self._max)
        stats["max_abs"] = self._max
        stats["rms_error"] = math.sqrt(self._sum_sq / self._count)
        return _finish_statistics(stats, self._sum_sq, self._signal, ref_range)

    def tail_ratio(self) -> float:
        """As :func:`tail_used` over every element fed."""
        if self.seen == 0 or self.k >= self.seen:
            return 0.0
        if self._ratio_hist is not None:
            return self._ratio_hist.at_rank(self.seen - 1 - self.k)
        return float(self._top.min())
