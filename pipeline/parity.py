"""Parity metrics: eager reference vs artifact, per output. NumPy only.

Every output's metrics are collected over every case first; the verdict comes after.
The `outputs` figures are the worst over cases.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from pipeline.audit import excess_top, needed_tolerance, warning_text
from pipeline.tolerance import Tolerance
from pipeline.verdict import classifier_criteria, criterion_text, decided_by, failure_text, judge_output

DEGENERATE_STD = 1e-6
SAMPLE_LIMIT = 512  # element pairs kept per output for plots and drift checks


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def output_metrics(ref: np.ndarray, out: np.ndarray, tol: Tolerance, step: float, ref_range: float) -> dict:
    """Metrics for one output in one case."""
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    if ref.shape != out.shape:
        return {"passed": False, "error": f"shape {list(out.shape)} differs from the reference's {list(ref.shape)}"}
    atol = tol.effective_atol(step, ref_range)
    # NaN/Inf where the reference is finite fail; where the reference itself is not finite
    # (only when the config allows it) the artifact must give the same value there.
    same_nonfinite = (out == ref) | (np.isnan(out) & np.isnan(ref))
    bad_nonfinite = int(np.sum(~np.isfinite(out) & np.isfinite(ref))) + int(np.sum(~np.isfinite(ref) & ~same_nonfinite))
    diff = np.abs(out - ref)
    diff = np.where(np.isfinite(diff), diff, np.inf)
    abs_ref = np.abs(ref)
    floor = max(1e-6 * float(abs_ref.max(initial=0.0)), 1e-12)
    rel = diff / np.maximum(abs_ref, floor)
    outside = diff > atol + tol.rtol * abs_ref
    a, r = out.reshape(-1), ref.reshape(-1)
    na, nr = float(np.linalg.norm(a)), float(np.linalg.norm(r))
    if not np.all(np.isfinite(a)):
        cosine = float("nan")
    elif na == 0.0 and nr == 0.0:
        cosine = 1.0
    else:
        cosine = float(np.dot(a, r) / max(na * nr, 1e-300))
    mismatch = float(outside.mean()) if outside.size else 0.0
    return {
        "_audit": excess_top(diff, abs_ref, tol.rtol, tol.mismatch_fraction),
        "max_abs": float(diff.max(initial=0.0)),
        "max_rel": float(rel.max(initial=0.0)),
        "mean_abs": float(diff.mean()) if diff.size else 0.0,
        "rmse": float(np.sqrt(np.mean(np.square(diff)))) if diff.size else 0.0,
        "cosine": cosine,
        "mismatch_fraction": mismatch,
        "outside": int(outside.sum()),
        "elements": int(outside.size),
        "nonfinite": bad_nonfinite,
        "atol": atol,
        "rtol": tol.rtol,
        "passed": bad_nonfinite == 0 and mismatch <= tol.mismatch_fraction,
    }


def _worst(per_case: list[dict], tol: Tolerance) -> dict:
    """Worst figures over cases for one output.

    The share of elements allowed outside the budget is judged over every element
    evaluated: per case it would be meaningless for a batch-1 case of a few elements.
    """
    errors = [m["error"] for m in per_case if "error" in m]
    if errors:
        return {"passed": False, "error": errors[0]}
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


def reference_stats(ref_outputs: list[dict[str, np.ndarray]], pool_mask: list[bool]) -> dict[str, dict]:
    """Range of each reference output, and whether it is near-constant across inputs."""
    stats = {}
    for name in ref_outputs[0]:
        arrays = [np.asarray(o[name], dtype=np.float64) for o in ref_outputs]
        flat = np.concatenate([a.reshape(-1) for a in arrays])
        finite = flat[np.isfinite(flat)]
        value_range = float(finite.max() - finite.min()) if finite.size else 0.0
        batches = [a for a, pooled in zip(arrays, pool_mask) if pooled and a.ndim > 0] or [a for a in arrays if a.ndim > 0]
        if batches and sum(len(b) for b in batches) > 1:
            stacked = np.concatenate(batches, axis=0)
            spread = float(np.nanmax(np.nanstd(stacked, axis=0))) if stacked.size else 0.0
        else:
            spread = float(np.nanstd(flat)) if flat.size > 1 else 0.0
        scale = 1.0 + float(np.mean(np.abs(finite))) if finite.size else 1.0
        stats[name] = {
            "range": value_range,
            "spread": spread,
            "degenerate": spread <= DEGENERATE_STD * scale,
            "nonfinite": int(flat.size - finite.size),
        }
    return stats


def classifier_metrics(ref_scores: np.ndarray, out_scores: np.ndarray, labels: np.ndarray | None, top_k: int = 5) -> dict:
    """top-1 agreement; top-k agreement (the reference's top-1 class is among the
    artifact's k best; k is capped below the class count, and absent for 2 classes);
    accuracy of both and its delta when labels are given."""
    ref_flat, out_flat = ref_scores.reshape(len(ref_scores), -1), out_scores.reshape(len(out_scores), -1)
    ref_top1 = np.argmax(ref_flat, axis=1)
    out_top1 = np.argmax(out_flat, axis=1)
    result = {"samples": int(len(ref_top1)), "top1_agreement": float(np.mean(ref_top1 == out_top1))}
    k = min(top_k, out_flat.shape[1] - 1)
    if k >= 2:
        scores = np.where(np.isfinite(out_flat), out_flat, -np.inf)
        best_k = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        result["top_k"] = int(k)
        result["topk_agreement"] = float(np.mean(np.any(best_k == ref_top1[:, None], axis=1)))
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
    ref = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in reference]) if reference else np.zeros(0)
    out = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in produced]) if produced else np.zeros(0)
    if ref.shape != out.shape:
        raise ValueError(f"reference has {ref.size} elements, artifact {out.size}")
    n = ref.size
    if n <= limit:
        index = np.arange(n)
    else:
        err = np.abs(out - ref)
        err = np.where(np.isfinite(err), err, np.inf)
        index = np.unique(np.concatenate([np.linspace(0, n - 1, limit - 1).round().astype(np.int64), [int(np.argmax(err))]]))

    def plain(values):
        return [float(f"{v:.9g}") if np.isfinite(v) else None for v in values]

    return {"ref": plain(ref[index]), "out": plain(out[index]), "total": int(n)}


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
    reference: list[dict[str, np.ndarray]],
    produced: list[dict[str, np.ndarray]],
    tolerance_for: Callable[[str], Tolerance],
    steps: dict[str, float],
    stats: dict[str, dict],
    pool_mask: list[bool],
    classifier: str | None = None,
    labels: np.ndarray | None = None,
) -> dict:
    """Compare every output of every case, then decide."""
    names = list(reference[0])
    per_output: dict[str, list[dict]] = {n: [] for n in names}
    cases = []
    for label, ref, out in zip(case_labels, reference, produced):
        case_out = {}
        for name in names:
            if name not in out:
                metrics = {"passed": False, "error": f"the artifact has no output '{name}' (it has: {', '.join(sorted(out))})"}
            else:
                metrics = output_metrics(ref[name], out[name], tolerance_for(name), steps.get(name, 0.0), stats[name]["range"])
            per_output[name].append(metrics)
            case_out[name] = {k: metrics.get(k) for k in ("max_abs", "passed", "error") if k in metrics}
        batch = int(np.shape(next(iter(ref.values())))[0]) if np.ndim(next(iter(ref.values()))) else 1
        cases.append({"case": label, "batch": batch, "outputs": case_out})
    outputs = {}
    for name in names:
        worst = _worst(per_output[name], tolerance_for(name))
        if "error" not in worst:
            worst["audit"] = needed_tolerance([m.pop("_audit") for m in per_output[name] if "_audit" in m], tolerance_for(name).mismatch_fraction, worst["atol"])
        if steps.get(name):
            worst["quant_step"] = steps[name]
        pairs = [(r[name], o[name]) for r, o in zip(reference, produced) if name in o and np.shape(r[name]) == np.shape(o[name])]
        if pairs and "error" not in worst:
            worst["sample"] = element_sample([p[0] for p in pairs], [p[1] for p in pairs])
            judge_output(worst, [p[0] for p in pairs], [p[1] for p in pairs], tolerance_for(name), stats[name]["range"])
        outputs[name] = worst
    result: dict = {"outputs": outputs, "cases": cases}
    by_shape = _by_shape(case_labels, per_output, tolerance_for)
    if by_shape:
        result["by_shape"] = by_shape
    failures = [f"{n}: {_failure_text(m)}" for n, m in outputs.items() if not m["passed"]]
    if classifier and classifier in names:
        pooled = [i for i, p in enumerate(pool_mask) if p]
        if pooled:
            ref_scores = np.concatenate([reference[i][classifier] for i in pooled])
            out_scores = np.concatenate([produced[i][classifier] for i in pooled if classifier in produced[i]] or [ref_scores * np.nan])
            tol = tolerance_for(classifier)
            cls = classifier_metrics(ref_scores, out_scores, labels, tol.top_k)
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
        result["weak_evidence"] = {
            n: f"the reference output is near-constant across inputs (spread {stats[n]['spread']:.3g}): agreement proves little; use trained weights or more varied data"
            for n in weak
        }
    warnings = [warning_text(n, m["audit"]) for n, m in outputs.items() if m.get("audit", {}).get("loose")]
    if warnings:
        result["warnings"] = warnings
    result["passed"] = not failures
    result["failures"] = failures
    result["decided_by"] = _deciding(result)
    return result


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
