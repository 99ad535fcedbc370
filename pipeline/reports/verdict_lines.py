"""Every target's verdict in one line: status, worst max_abs, and the reason.

The reason of a non-pass is its parity failures, its error message, or why it was
skipped; weak evidence (a near-constant reference output, on which agreement proves
little) and the quantization debugger's diagnosis are part of the line, never only
in report.json. Read from report entries (the report.json shape), so the console
summary, report.md and report.html say the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    model: str
    target: str  # "tflite/int8" for a variant
    status: str  # passed | failed | skipped | error
    max_abs: float | None
    reason: str
    weak: tuple[str, ...] = ()  # outputs with weak evidence
    diagnosis: str = ""

    def line_reason(self, strict: bool = False) -> str:
        parts = [self.reason] if self.reason else []
        if self.weak:
            parts.append(f"weak evidence: {', '.join(self.weak)} near-constant across inputs, agreement proves little" + (" (fails: --strict)" if strict else ""))
        if self.diagnosis:
            parts.append(self.diagnosis)
        return "; ".join(parts)

    def fails(self, strict: bool = False) -> bool:
        return self.status in ("failed", "error") or (strict and bool(self.weak))


def first_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def diagnosis_line(diagnosis: dict | None) -> str:
    """The debugger's finding and suggested fix, in one sentence."""
    if not diagnosis:
        return ""
    parts = []
    table = diagnosis.get("quantization_debugger")
    if isinstance(table, str):
        parts.append(f"quantization debugger {table}")
    elif isinstance(table, dict):
        worst = (table.get("worst_layers") or [None])[0]
        if worst:
            parts.append(
                f"quantization debugger: worst layer {worst.get('layer')} ({worst.get('op')}, RMSE/scale {worst.get('rmse_over_scale')}, "
                f"rounded to zero {worst.get('rounded_to_zero')})"
            )
        if table.get("suggested_fix"):
            parts.append(f"fix: {table['suggested_fix']}")
    elif diagnosis.get("suggested_fix"):
        parts.append(f"fix: {diagnosis['suggested_fix']}")
    return "; ".join(parts)


def _worst(entry: dict) -> float | None:
    outputs = (entry.get("parity") or {}).get("outputs") or {}
    values = [m.get("max_abs") for m in outputs.values() if m.get("max_abs") is not None]
    return max(values) if values else None


def _reason(entry: dict) -> str:
    status = entry.get("status")
    if status == "failed":
        return "; ".join((entry.get("parity") or {}).get("failures") or []) or first_line(entry.get("message", ""))
    if status in ("error", "skipped"):
        return first_line(entry.get("message", "")) or status
    return ""


def entry_verdicts(model: str, name: str, entry: dict) -> list[Verdict]:
    """One verdict per variant (a single-artifact target's is labelled by the target alone;
    a target that errored before building has one of its own)."""
    from pipeline.reports.records import iter_records

    out = []
    for record in iter_records({"model": model, "targets": {name: entry}}):
        e = record.entry
        weak = tuple(sorted((record.parity.get("weak_evidence") or {})))
        out.append(Verdict(model, record.label, e.get("status", "-"), _worst(e), _reason(e), weak, diagnosis_line(e.get("diagnosis"))))
    return out


def report_verdicts(report: dict, only: list[str] | None = None) -> list[Verdict]:
    model = report.get("model", "?")
    out = []
    for name, entry in sorted((report.get("targets") or {}).items()):
        if only is None or name in only:
            out += entry_verdicts(model, name, entry)
    return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def summary_table(verdicts: list[Verdict], strict: bool = False) -> str:
    """Aligned columns; the reason is the last column and is never cut."""
    header = ("model", "target", "status", "max_abs", "reason")
    rows = [(v.model, v.target, v.status, _fmt(v.max_abs), v.line_reason(strict)) for v in verdicts]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = []
    for row in [header, *rows]:
        lines.append("  ".join([c.ljust(w) for c, w in zip(row[:4], widths)] + [row[4]]).rstrip())
    return "\n".join(lines)


def run_fails_on_weak_evidence(verdicts: list[Verdict]) -> bool:
    return any(v.weak and v.status == "passed" for v in verdicts)
