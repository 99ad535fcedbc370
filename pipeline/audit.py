"""Tolerance audit: the budget an output actually needed, next to the one it was given.

For each output, `needed_atol` is the smallest atol that would still pass at the
configured rtol and allowed mismatch share: with e = max(0, |a - r| - rtol*|r|)
per element, pooled over every case, it is the (K+1)-th largest e, where K is the
number of elements the mismatch share lets through. Float32 cannot resolve less
than its own rounding step at the output's scale, so `needed_atol` is floored there
(eps32 * max|r|): an artifact that matches bit for bit still needed that much.

A budget more than LOOSE_FACTOR times what was needed is `loose`: it would let
through errors three orders of magnitude above what this artifact shows, so a
real breakage could pass unseen. A warning in the report; a failure under --strict.
"""
from __future__ import annotations

import math

import numpy as np

LOOSE_FACTOR = 1000.0
FLOAT32_EPS = float(np.finfo(np.float32).eps)
_SPARE = 8  # largest errors kept per case beyond its own share, for pooling


def excess_top(diff: np.ndarray, abs_ref: np.ndarray, rtol: float, mismatch_fraction: float) -> dict:
    """What one case contributes: its largest excesses over rtol*|r| (descending) and its scale."""
    excess = np.maximum(diff - rtol * abs_ref, 0.0).reshape(-1)
    keep = kept_per_case(excess.size, mismatch_fraction)
    top = np.sort(excess)[::-1][:keep] if keep else np.zeros(0)
    return {"top": top, "elements": int(excess.size), "scale": float(abs_ref.max(initial=0.0))}


def kept_per_case(elements: int, mismatch_fraction: float) -> int:
    """How many of a case's largest excesses are kept for pooling."""
    return min(elements, int(mismatch_fraction * elements) + _SPARE)


def needed_tolerance(parts: list[dict], mismatch_fraction: float, budget_atol: float) -> dict:
    """Pool the cases' excesses of one output: needed atol, budget, looseness."""
    if not parts:
        return {}
    elements = sum(p["elements"] for p in parts)
    allowed = int(math.floor(mismatch_fraction * elements))
    pooled = np.sort(np.concatenate([p["top"] for p in parts]))[::-1]
    if pooled.size > allowed:
        raw = float(pooled[allowed])
    else:  # fewer kept than allowed outside: every element could be outside
        raw = 0.0
    floor = FLOAT32_EPS * max(p["scale"] for p in parts)
    needed = max(raw, floor)
    out = {"needed_atol": _plain(raw), "needed_atol_floor": _plain(floor), "budget_atol": _plain(budget_atol)}
    if math.isfinite(needed) and needed > 0:
        factor = budget_atol / needed
        out["looseness"] = float(f"{factor:.4g}")
        out["loose"] = bool(factor > LOOSE_FACTOR)
    else:
        out["loose"] = False
    return out


def _plain(value: float):
    return float(f"{value:.6g}") if math.isfinite(value) else None


def loose_outputs(parity: dict) -> list[str]:
    return [name for name, m in (parity.get("outputs") or {}).items() if m.get("audit", {}).get("loose")]


def warning_text(name: str, audit: dict) -> str:
    return (
        f"{name}: budget atol {audit['budget_atol']:.3g} is {audit['looseness']:.3g}x looser than needed "
        f"({max(audit['needed_atol'] or 0.0, audit['needed_atol_floor'] or 0.0):.3g}); a loose budget hides real breakage: tighten `tolerances`"
    )


def apply_strict(entries: dict[str, dict]) -> dict[str, dict]:
    """--strict: a passed artifact with a loose budget fails (the warning becomes a failure)."""
    for entry in entries.values():
        records = list((entry.get("variants") or {}).values()) or [entry]
        changed = False
        for record in records:
            parity = record.get("parity") or {}
            loose = loose_outputs(parity)
            if loose and record.get("status") == "passed":
                record["status"] = "failed"
                parity["passed"] = False
                parity.setdefault("failures", []).extend(f"{warning_text(n, parity['outputs'][n]['audit'])} (--strict)" for n in loose)
                changed = True
        if changed and entry.get("variants"):
            statuses = [r.get("status") for r in entry["variants"].values()]
            entry["status"] = next((s for s in ("error", "failed", "passed") if s in statuses), "skipped")
    return entries
