"""Parity metrics: eager reference vs artifact, per output. NumPy only.

Cases are compared as they are produced, in blocks of BLOCK elements: per case the
figures of `output_metrics`, and per output the pooled figures the verdict needs
(pipeline.verdict.PooledErrors), a bounded element sample and the classifier's
per-sample agreement. No case is kept once compared, and no output is converted to
float64 beyond one block, so memory does not grow with the number of cases (see
PooledErrors for what is exact and what is bounded). The verdict comes after the last
case; the `outputs` figures are the worst over cases.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from pipeline.audit import kept_per_case, needed_tolerance, warning_text
from pipeline.tolerance import Tolerance
from pipeline.verdict import PooledErrors, classifier_criteria, criterion_text, decided_by, failure_text, judge_output

DEGENERATE_STD = 1e-6
SAMPLE_LIMIT = 512  # element pairs kept per output for plots and drift checks
BLOCK = 1 << 20  # elements converted to float64 at a time


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _blocks(ref, out=None):
    """(start, float64 ref block, float64 out block) over the flattened arrays."""
    r = np.asarray(ref).reshape(-1)
    o = None if out is None else np.asarray(out).reshape(-1)
    for start in range(0, r.size, BLOCK):
        yield start, np.asarray(r[start:start + BLOCK], dtype=np.float64), (None if o is None else np.asarray(o[start:start + BLOCK], dtype=np.float64))


def _nan_max(a: float, b: float) -> float:
    """max that keeps NaN, like ndarray.max."""
    return float(np.maximum(a, b))


def output_metrics(ref: np.ndarray, out: np.ndarray, tol: Tolerance, step: float, ref_range: float, feeds: tuple = (), ulp: float = 0.0) -> dict:
    """Metrics for one output in one case, block by block; each float64 block of
    (reference, artifact) also goes to every `feeds` object's `add`. `ulp`: the output
    dtype's rounding step at its magnitude (reference_stats), which floors the budget."""
    ref, out = np.asarray(ref), np.asarray(out)
    if ref.shape != out.shape:
        return {"passed": False, "error": f"shape {list(out.shape)} differs from the reference's {list(ref.shape)}"}
    if is_text(ref):
        return _text_metrics(ref, out)
    atol = tol.effective_atol(step, ref_range, ulp)
    scale = 0.0
    for _, r, _ in _blocks(ref):
        scale = _nan_max(scale, float(np.abs(r).max(initial=0.0)))
    floor = max(1e-6 * scale, 1e-12)
    n = int(ref.size)
    top = _Top(kept_per_case(n, tol.mismatch_fraction))
    bad_nonfinite = outside = 0
    max_abs = max_rel = 0.0
    sum_abs = sum_sq = dot = out_sq = ref_sq = 0.0
    out_finite = True
    for start, r, o in _blocks(ref, out):
        # NaN/Inf where the reference is finite fail; where the reference itself is not finite
        # (only when the config allows it) the artifact must give the same value there.
        same_nonfinite = (o == r) | (np.isnan(o) & np.isnan(r))
        bad_nonfinite += int(np.sum(~np.isfinite(o) & np.isfinite(r))) + int(np.sum(~np.isfinite(r) & ~same_nonfinite))
        diff = np.abs(o - r)
        diff = np.where(np.isfinite(diff), diff, np.inf)
        abs_ref = np.abs(r)
        rel = diff / np.maximum(abs_ref, floor)
        outside += int(np.sum(diff > atol + tol.rtol * abs_ref))
        max_abs = _nan_max(max_abs, float(diff.max(initial=0.0)))
        max_rel = _nan_max(max_rel, float(rel.max(initial=0.0)))
        sum_abs += float(diff.sum())
        sum_sq += float(np.sum(np.square(diff)))
        out_finite = out_finite and bool(np.all(np.isfinite(o)))
        dot += float(np.dot(o, r))
        out_sq += float(o.dot(o))
        ref_sq += float(r.dot(r))
        top.add(np.maximum(diff - tol.rtol * abs_ref, 0.0))
        for feed in feeds:
            feed.add(r, o)
    na, nr = math.sqrt(out_sq), math.sqrt(ref_sq)
    if not out_finite:
        cosine = float("nan")
    elif na == 0.0 and nr == 0.0:
        cosine = 1.0
    else:
        cosine = float(dot / max(na * nr, 1e-300))
    mismatch = outside / n if n else 0.0
    return {
        "_audit": {"top": top.descending(), "elements": n, "scale": scale},
        "max_abs": max_abs,
        "max_rel": max_rel,
        "mean_abs": sum_abs / n if n else 0.0,
        "rmse": math.sqrt(sum_sq / n) if n else 0.0,
        "cosine": cosine,
        "mismatch_fraction": mismatch,
        "outside": outside,
        "elements": n,
        "nonfinite": bad_nonfinite,
        "atol": atol,
        "rtol": tol.rtol,
        "passed": bad_nonfinite == 0 and mismatch <= tol.mismatch_fraction,
    }


def is_text(array) -> bool:
    """Strings (bytes or str, as object arrays or fixed width): compared for equality only."""
    return np.asarray(array).dtype.kind in "OSU"


def _as_bytes(array: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: v.encode() if isinstance(v, str) else bytes(v), otypes=[object])(array) if array.size else array.astype(object)


def _text_metrics(ref: np.ndarray, out: np.ndarray) -> dict:
    """A string output in one case: how many elements differ (no tolerance applies to text)."""
    n = int(ref.size)
    unequal = int(np.sum(_as_bytes(ref) != _as_bytes(out))) if n else 0
    return {"exact": True, "mismatch_fraction": unequal / n if n else 0.0, "outside": unequal, "elements": n, "nonfinite": 0,
            "atol": 0.0, "rtol": 0.0, "max_abs": None, "passed": unequal == 0}


def _text_worst(per_case: list[dict]) -> dict:
    """A string output over every case: every element must equal the reference's."""
    outside = sum(m["outside"] for m in per_case)
    elements = sum(m["elements"] for m in per_case)
    share = outside / elements if elements else 0.0
    equal = {"value": share, "limit": 0.0, "passed": outside == 0, "margin": -share, "used": 0.0 if outside == 0 else None, "unit": "share of elements"}
    return {"exact": True, "max_abs": None, "mismatch_fraction": share, "outside": outside, "elements": elements, "nonfinite": 0,
            "atol": 0.0, "rtol": 0.0, "criteria": {"equal": equal}, "decided_by": "equal", "passed": outside == 0}


class _Top:
    """The `keep` largest values seen, fed in blocks."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.values = np.zeros(0)

    def add(self, values: np.ndarray) -> None:
        if not self.keep:
            return
        if self.values.size >= self.keep:
            values = values[(values > self.values.min()) | np.isnan(values)]
        merged = np.concatenate([self.values, values.reshape(-1)])
        if merged.size > self.keep:
            merged = np.partition(merged, merged.size - self.keep)[merged.size - self.keep:]
        self.values = merged

    def descending(self) -> np.ndarray:
        return np.sort(self.values)[::-1]


def _worst(per_case: list[dict], tol: Tolerance) -> dict:
    """Worst figures over cases for one output.

    The share of elements allowed outside the budget is judged over every element
    evaluated: per case it would be meaningless for a batch-1 case of a few elements.
    """
    errors = [m["error"] for m in per_case if "error" in m]
    if errors:
        return {"passed": False, "error": errors[0]}
    if per_case and per_case[0].get("exact"):
        return _text_worst(per_case)
    elements = sum(m["elements"] for m in per_case)
    outside = sum(m["outside"] for m in per_case)
    pooled = outside / elements if elements else 0.0
    nonfinite = sum(m["nonfinite"] for m in per_case)
    worst = {
        "max_abs": max(m["max_abs"] for m in per_case),
        "max_rel": max(m["max_rel"] for m in per_case),
        "mean_abs": max(m["mean_abs"] for m in per_case),
        "rmse": max(m["rmse"] for m in per_case),
        "cosine": min((m["cosine"] for m in per_case), key=lambda c: -1e9 if math.isnan(c) else c),
        "mismatch_fraction": pooled,
        "worst_case_mismatch_fraction": max(m["mismatch_fraction"] for m in per_case),
        "outside": outside,
        "elements": elements,
        "nonfinite": nonfinite,
        "atol": per_case[0]["atol"],
        "rtol": per_case[0]["rtol"],
        "passed": nonfinite == 0 and pooled <= tol.mismatch_fraction,
    }
    for key in ("max_abs", "max_rel", "mean_abs", "rmse", "cosine"):
        worst[key] = _finite(worst[key])
    return worst


def reference_stats(ref_outputs, pool_mask: list[bool]) -> dict[str, dict]:
    """Range of each reference output, and whether it is near-constant across inputs.

    One case (and one sample of it) at a time: `ref_outputs` may be read from disk."""
    stats = {}
    for name in ref_outputs[0]:
        if is_text(ref_outputs[0][name]):
            stats[name] = _text_stats(ref_outputs, name)
            continue
        low, high, count, finite_count, abs_sum = math.inf, -math.inf, 0, 0, 0.0
        for case in ref_outputs:
            for _, r, _ in _blocks(case[name]):
                finite = r[np.isfinite(r)]
                count += r.size
                finite_count += finite.size
                if finite.size:
                    low, high = min(low, float(finite.min())), max(high, float(finite.max()))
                    abs_sum += float(np.abs(finite).sum())
        value_range = high - low if finite_count else 0.0
        magnitude = max(abs(low), abs(high)) if finite_count else 0.0
        shapes = [np.shape(case[name]) for case in ref_outputs]  # cases are read one at a time: they may be on disk
        batches = [i for i, (shape, pooled) in enumerate(zip(shapes, pool_mask)) if pooled and shape] or [i for i, shape in enumerate(shapes) if shape]
        if batches and sum(shapes[i][0] for i in batches) > 1:
            spread = _batch_spread(ref_outputs, name, batches)
        else:
            spread = _flat_std(ref_outputs, name) if count > 1 else 0.0
        scale = 1.0 + abs_sum / finite_count if finite_count else 1.0
        stats[name] = {
            "range": value_range,
            "spread": spread,
            "degenerate": spread <= DEGENERATE_STD * scale,
            "nonfinite": int(count - finite_count),
            "magnitude": magnitude,
            "dtype": np.asarray(ref_outputs[0][name]).dtype.name,
            "ulp": rounding_step(magnitude, np.asarray(ref_outputs[0][name]).dtype),
        }
    return stats


def _text_stats(ref_outputs, name: str) -> dict:
    """A string output has no range: near-constant when every sample gives the same value."""
    values = set()
    for case in ref_outputs:
        values.update(_as_bytes(np.asarray(case[name])).reshape(-1).tolist())
        if len(values) > 1:
            break
    return {"range": 0.0, "spread": float(len(values) > 1), "degenerate": len(values) <= 1, "nonfinite": 0, "magnitude": 0.0,
            "dtype": "string", "ulp": 0.0, "text": True}


def rounding_step(magnitude: float, dtype) -> float:
    """The distance from `magnitude` to the next larger value of `dtype` (its unit in the
    last place there); 0 for integer, boolean and string outputs, which round nothing."""
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        if dtype.name != "bfloat16":
            return 0.0
        import ml_dtypes

        return float(np.spacing(np.float32(magnitude))) * 2.0 ** (23 - ml_dtypes.finfo(dtype).nmant)
    return float(np.spacing(np.asarray(magnitude, dtype=dtype)))


def _batch_spread(ref_outputs, name: str, batches: list[int]) -> float:
    """max over elements of the standard deviation across samples (NaN ignored), as
    nanmax(nanstd(concatenate(batches), axis=0)), one sample at a time."""
    groups: dict[tuple, list[int]] = {}
    for i in batches:
        groups.setdefault(np.shape(ref_outputs[i][name])[1:], []).append(i)
    spreads = []
    for shape, group in groups.items():
        if not int(np.prod(shape, dtype=np.int64)):
            spreads.append(0.0)
            continue
        count, total, squares = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        for i in group:
            for row in ref_outputs[i][name]:
                row = np.asarray(row, dtype=np.float64)
                valid = ~np.isnan(row)
                count += valid
                total += np.where(valid, row, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = total / count
        for i in group:
            for row in ref_outputs[i][name]:
                row = np.asarray(row, dtype=np.float64)
                squares += np.where(np.isnan(row), 0.0, np.square(row - mean))
        with np.errstate(divide="ignore", invalid="ignore"):
            std = np.sqrt(squares / count)
        spreads.append(float("nan") if np.all(np.isnan(std)) else float(np.nanmax(std)))
    return float("nan") if all(math.isnan(x) for x in spreads) else float(np.nanmax(spreads))


def _flat_std(ref_outputs, name: str) -> float:
    """nanstd over every element of every case, two passes of blocks."""
    count, total = 0, 0.0
    for case in ref_outputs:
        for _, r, _ in _blocks(case[name]):
            valid = r[~np.isnan(r)]
            count += valid.size
            total += float(valid.sum())
    if not count:
        return float("nan")
    mean = total / count
    squares = 0.0
    for case in ref_outputs:
        for _, r, _ in _blocks(case[name]):
            valid = r[~np.isnan(r)]
            squares += float(np.sum(np.square(valid - mean)))
    return math.sqrt(squares / count)


def classifier_metrics(ref_scores: np.ndarray, out_scores: np.ndarray, labels: np.ndarray | None, top_k: int = 5) -> dict:
    """top-1 agreement; top-k agreement (the reference's top-1 class is among the
    artifact's k best; k is capped below the class count, and absent for 2 classes);
    accuracy of both and its delta when labels are given."""
    agreement = _Agreement(top_k)
    agreement.add(ref_scores, out_scores)
    return agreement.result(labels)


class _Agreement:
    """Per-sample top-1 classes and top-k hits of a classifier output, case by case."""

    def __init__(self, top_k: int) -> None:
        self.top_k = top_k
        self.k = None
        self.ref_top1: list[np.ndarray] = []
        self.out_top1: list[np.ndarray] = []
        self.hits: list[np.ndarray] = []

    def add(self, ref_scores: np.ndarray, out_scores: np.ndarray | None) -> None:
        ref_scores = np.asarray(ref_scores)
        out_scores = np.full(ref_scores.shape, np.nan) if out_scores is None else np.asarray(out_scores)
        ref_flat, out_flat = ref_scores.reshape(len(ref_scores), -1), out_scores.reshape(len(out_scores), -1)
        ref_top1 = np.argmax(ref_flat, axis=1)
        self.ref_top1.append(ref_top1)
        self.out_top1.append(np.argmax(out_flat, axis=1))
        self.k = min(self.top_k, out_flat.shape[1] - 1)
        if self.k >= 2:
            scores = np.where(np.isfinite(out_flat), out_flat, -np.inf)
            best_k = np.argsort(-scores, axis=1, kind="stable")[:, : self.k]
            self.hits.append(np.any(best_k == ref_top1[:, None], axis=1))

    def result(self, labels: np.ndarray | None) -> dict:
        ref_top1, out_top1 = np.concatenate(self.ref_top1), np.concatenate(self.out_top1)
        result = {"samples": int(len(ref_top1)), "top1_agreement": float(np.mean(ref_top1 == out_top1))}
        if self.k is not None and self.k >= 2:
            result["top_k"] = int(self.k)
            result["topk_agreement"] = float(np.mean(np.concatenate(self.hits)))
        if labels is not None:
            labels = labels[: len(ref_top1)]
            result["reference_accuracy"] = float(np.mean(ref_top1 == labels))
            result["accuracy"] = float(np.mean(out_top1 == labels))
            result["accuracy_delta"] = result["accuracy"] - result["reference_accuracy"]
        return result


def element_sample(reference: list, produced: list, limit: int = SAMPLE_LIMIT) -> dict:
    """A bounded sample of (reference, artifact) element pairs for one output, for
    `parity.outputs.<o>.sample`: evenly spaced over every element of the given cases,
    plus the element with the largest error, so the worst one is always shown.
    Values keep 9 significant digits (exact for float32); NaN/Inf become null."""
    total = sum(int(np.size(a)) for a in reference)
    if total != sum(int(np.size(a)) for a in produced):
        raise ValueError(f"reference has {total} elements, artifact {sum(int(np.size(a)) for a in produced)}")
    sampler = ElementSampler(total, limit)
    for r, o in zip(reference, produced):
        for _, rb, ob in _blocks(r, o):
            sampler.add(rb, ob)
    return sampler.result()


class ElementSampler:
    """element_sample's pairs, fed in blocks in element order; `total` known up front."""

    def __init__(self, total: int, limit: int = SAMPLE_LIMIT) -> None:
        self.total = total
        self.every = total <= limit
        self.index = np.zeros(0, np.int64) if self.every else np.linspace(0, total - 1, limit - 1).round().astype(np.int64)
        self.offset = 0
        self.picked: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.worst = (-1.0, -1, 0.0, 0.0)  # error, index, ref, out

    def add(self, ref: np.ndarray, out: np.ndarray) -> None:
        ref, out = ref.reshape(-1), out.reshape(-1)
        start, end = self.offset, self.offset + ref.size
        self.offset = end
        if self.every:
            self.picked.append((np.arange(start, end), ref.copy(), out.copy()))
            return
        lo, hi = np.searchsorted(self.index, [start, end], side="left")
        local = self.index[lo:hi] - start
        self.picked.append((self.index[lo:hi], ref[local], out[local]))
        if ref.size:
            err = np.abs(out - ref)
            err = np.where(np.isfinite(err), err, np.inf)
            j = int(np.argmax(err))
            if err[j] > self.worst[0]:
                self.worst = (float(err[j]), start + j, float(ref[j]), float(out[j]))

    def result(self) -> dict:
        index = np.concatenate([p[0] for p in self.picked]) if self.picked else np.zeros(0, np.int64)
        ref = np.concatenate([p[1] for p in self.picked]) if self.picked else np.zeros(0)
        out = np.concatenate([p[2] for p in self.picked]) if self.picked else np.zeros(0)
        if not self.every and self.worst[1] >= 0:
            index = np.append(index, self.worst[1])
            ref, out = np.append(ref, self.worst[2]), np.append(out, self.worst[3])
        index, first = np.unique(index, return_index=True)
        ref, out = ref[first], out[first]

        def plain(values):
            return [float(f"{v:.9g}") if np.isfinite(v) else None for v in values]

        return {"ref": plain(ref), "out": plain(out), "total": int(self.total)}


SHAPE_SEPARATOR = "/"  # a case label `seq=7/batch1`: the shape set, then the batch case


def case_shape(label: str) -> str:
    """The shape set a case belongs to ('' for a model without dynamic dimensions)."""
    return label.rsplit(SHAPE_SEPARATOR, 1)[0] if SHAPE_SEPARATOR in label else ""


def _by_shape(case_labels: list[str], per_output: dict[str, list[dict]], tolerance_for: Callable[[str], Tolerance]) -> dict:
    """Per shape set (a model with dynamic dimensions): each output's worst figures there."""
    shapes = list(dict.fromkeys(case_shape(label) for label in case_labels))
    if shapes == [""]:
        return {}
    table = {}
    for shape in shapes:
        rows = {}
        for name, metrics in per_output.items():
            worst = _worst([m for m, label in zip(metrics, case_labels) if case_shape(label) == shape], tolerance_for(name))
            rows[name] = {k: worst[k] for k in ("passed", "max_abs", "mismatch_fraction", "error") if k in worst}
        table[shape] = {"passed": all(r["passed"] for r in rows.values()), "outputs": rows}
    return table


def evaluate(
    case_labels: list[str],
    reference,
    produced,
    tolerance_for: Callable[[str], Tolerance],
    steps: dict[str, float],
    stats: dict[str, dict],
    pool_mask: list[bool],
    classifier: str | None = None,
    labels: np.ndarray | None = None,
) -> dict:
    """Compare every output of every case as it is produced, then decide.

    `reference` is a sequence of cases (it may be read from disk); `produced` may be an
    iterator that runs the artifact on one case at a time: each case is compared and
    dropped before the next is produced."""
    names = list(reference[0])
    per_output: dict[str, list[dict]] = {n: [] for n in names}
    tolerances = {n: tolerance_for(n) for n in names}
    totals = {n: sum(int(np.size(case[n])) for case in reference) for n in names}
    pooled = {
        n: PooledErrors(totals[n], tolerances[n].effective_atol(steps.get(n, 0.0), stats[n]["range"], stats[n].get("ulp", 0.0)), tolerances[n].rtol, tolerances[n].mismatch_fraction)
        for n in names
    }
    samplers = {n: ElementSampler(totals[n]) for n in names}
    broken: set[str] = set()
    agreement = _Agreement(tolerances[classifier].top_k) if classifier and classifier in names and any(pool_mask) else None
    cases = []
    for index, (label, out) in enumerate(zip(case_labels, produced)):
        ref = reference[index]
        case_out = {}
        for name in names:
            if name not in out:
                metrics = {"passed": False, "error": f"the artifact has no output '{name}' (it has: {', '.join(sorted(out))})"}
            else:
                feeds = () if name in broken else (pooled[name], samplers[name])
                metrics = output_metrics(ref[name], out[name], tolerances[name], steps.get(name, 0.0), stats[name]["range"], feeds, stats[name].get("ulp", 0.0))
            if "error" in metrics:
                broken.add(name)
            per_output[name].append(metrics)
            case_out[name] = {k: metrics.get(k) for k in ("max_abs", "passed", "error") if k in metrics}
        if agreement is not None and pool_mask[index]:
            agreement.add(ref[classifier], out.get(classifier))
        first = ref[names[0]]
        batch = int(np.shape(first)[0]) if np.ndim(first) else 1
        cases.append({"case": label, "batch": batch, "outputs": case_out})
        del out, ref
    outputs = {}
    for name in names:
        worst = _worst(per_output[name], tolerances[name])
        if worst.get("exact"):  # a string output: equal or not, nothing more to judge
            outputs[name] = worst
            continue
        if "error" not in worst:
            worst["audit"] = needed_tolerance([m.pop("_audit") for m in per_output[name] if "_audit" in m], tolerances[name].mismatch_fraction, worst["atol"])
        if steps.get(name):
            worst["quant_step"] = steps[name]
        if "error" not in worst and per_output[name]:
            worst["sample"] = samplers[name].result()
            judge_output(worst, pooled[name], tolerances[name], stats[name]["range"], stats[name].get("ulp", 0.0))
        outputs[name] = worst
    result: dict = {"outputs": outputs, "cases": cases}
    by_shape = _by_shape(case_labels, per_output, tolerance_for)
    if by_shape:
        result["by_shape"] = by_shape
    failures = [f"{n}: {_failure_text(m)}" for n, m in outputs.items() if not m["passed"]]
    if agreement is not None:
        tol = tolerances[classifier]
        cls = agreement.result(labels)
        cls["min_top1"] = tol.min_top1
        cls["min_topk"] = tol.min_topk
        cls["max_accuracy_drop"] = tol.max_accuracy_drop
        cls["criteria"] = classifier_criteria(cls, tol)
        cls["decided_by"] = decided_by(cls["criteria"])
        ok = all(c["passed"] for c in cls["criteria"].values())
        cls["passed"] = ok
        if not ok:
            failures.append(f"{classifier}: " + "; ".join(_criteria_text(cls["criteria"])))
        result["classifier"] = cls
        result["classifier_output"] = classifier
    weak = [n for n in names if stats[n]["degenerate"]]
    if weak:
        result["weak_evidence"] = {n: weak_evidence_text(stats[n], tolerances[n]) for n in weak}
    warnings = [warning_text(n, m["audit"]) for n, m in outputs.items() if m.get("audit", {}).get("loose")]
    if warnings:
        result["warnings"] = warnings
    result["passed"] = not failures
    result["failures"] = failures
    result["decided_by"] = _deciding(result)
    return result


def weak_evidence_text(stat: dict, tol: Tolerance) -> str:
    """Why a near-constant reference output is thin evidence, in its own figures."""
    if stat.get("text"):
        return ("the reference output is the same string for every sample: an artifact that ignored its input would agree, "
                "so agreement proves little about what it computes. Use data that gives the output more than one value.")
    text = f"the reference output is near-constant across inputs (spread {stat['spread']:.3g} across samples"
    ulp, magnitude = stat.get("ulp") or 0.0, stat.get("magnitude") or 0.0
    if ulp > 0 and magnitude > 0:
        text += (
            f", range {stat['range']:.3g} around values up to {magnitude:.3g}: {stat['range'] / ulp:.3g} {stat.get('dtype', 'float')} "
            f"rounding steps of {ulp:.3g} there"
        )
    text += "): an artifact that ignored its input would agree nearly as well, so agreement proves little about what it computes"
    if ulp > 0 and tol.max_mean_error is not None and tol.floor(ulp) > tol.max_mean_error * stat["range"]:
        text += f"; a mean error within {tol.floor_ulps:g} rounding steps ({tol.floor(ulp):.3g}) is the dtype's own rounding there and passes"
    return text + ". Use trained weights or more varied data."


def _criteria_text(criteria: dict) -> list[str]:
    return [criterion_text(k, c) for k, c in criteria.items() if not c["passed"]]


def _deciding(result: dict) -> dict | None:
    """The criterion that decided the whole verdict, with its output and margin."""
    candidates = []
    for name, m in result["outputs"].items():
        for key, c in m.get("criteria", {}).items():
            candidates.append((name, key, c))
    for key, c in result.get("classifier", {}).get("criteria", {}).items():
        candidates.append((result.get("classifier_output", ""), key, c))
    if not candidates:
        return None
    failing = [t for t in candidates if not t[2]["passed"]]
    pool = failing or candidates
    name, key, c = max(pool, key=lambda t: float("inf") if t[2]["used"] is None else t[2]["used"])
    return {"output": name, "criterion": key, "value": c["value"], "limit": c["limit"], "margin": c["margin"], "used": c["used"]}


def _failure_text(m: dict) -> str:
    return failure_text(m)


def judge_runtime_precision(result: dict, precision: dict | None) -> dict:
    """Add what the runtime read back about the precision it computed in (a runner's
    `precision`: the hint asked, the one in effect, the device, the types its nodes ran
    in). An artifact that ran in another precision than its budget's class fails for
    that reason, first among its failures, whatever its numbers."""
    if not precision:
        return result
    result["runtime_precision"] = precision
    if precision.get("passed") is False:
        result["failures"] = [f"runtime precision: {precision.get('reason', 'not the precision of its class')}"] + list(result["failures"])
        result["passed"] = False
    return result
