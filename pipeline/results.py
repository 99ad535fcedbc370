"""The typed result of an export, read from the report it wrote.

`ExportResult.passed`, `result["tflite"].variants["int8"].status`, `.files` (absolute
paths), `.metrics` (per output: max_abs, max_rel, rmse, cosine, mismatch_fraction,
atol), `.report_path`, and `_repr_html_` (the verdict table and parity plots of
report.html, inline in Jupyter).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.reports.records import iter_records
from pipeline.reports.verdict_lines import Verdict, entry_verdicts, summary_table

METRIC_KEYS = ("max_abs", "max_rel", "mean_abs", "rmse", "cosine", "mismatch_fraction", "atol", "rtol", "passed")


@dataclass(frozen=True)
class VariantResult:
    target: str
    name: str  # '' for a target with one artifact
    status: str  # passed | failed | skipped | error
    files: tuple[Path, ...]
    metrics: dict  # output -> {max_abs, max_rel, rmse, cosine, mismatch_fraction, atol, ...}
    verdict: Verdict
    parity: dict = field(default_factory=dict, repr=False)
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class TargetResult:
    name: str
    status: str
    variants: dict  # variant name ('' for a single artifact) -> VariantResult
    files: tuple[Path, ...]
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class ExportResult:
    model: str
    out: Path
    report_path: Path
    targets: dict  # name -> TargetResult
    exit_code: int
    strict: bool = False
    report: dict = field(default_factory=dict, repr=False)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    @property
    def html_path(self) -> Path:
        return self.report_path.with_name("report.html")

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(f for t in self.targets.values() for f in t.files)

    @property
    def verdicts(self) -> list[Verdict]:
        return [v.verdict for t in self.targets.values() for v in t.variants.values()]

    def to_dict(self) -> dict:
        """For `--json`: where the reports are and every verdict in one line each."""
        return {
            "model": self.model,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "status": self.report.get("status"),
            "report": str(self.report_path),
            "report_html": str(self.html_path),
            "verdicts": [
                {"target": v.target, "status": v.status, "max_abs": v.max_abs, "reason": v.line_reason(self.strict), "weak_evidence": list(v.weak), "diagnosis": v.diagnosis}
                for v in self.verdicts
            ],
        }

    def __getitem__(self, target: str) -> TargetResult:
        return self.targets[target]

    def summary(self) -> str:
        return summary_table(self.verdicts, self.strict)

    def __str__(self) -> str:
        head = f"tfship export of '{self.model}': {'passed' if self.passed else 'did not pass'} (exit {self.exit_code}); report {self.report_path}"
        return head + "\n" + self.summary()

    def _repr_html_(self) -> str:
        from pipeline.reports.html import render_fragment

        return render_fragment([self.report], title=f"tfship export of {self.model}")


def _metrics(entry: dict) -> dict:
    outputs = (entry.get("parity") or {}).get("outputs") or {}
    return {name: {k: m[k] for k in METRIC_KEYS if k in m} for name, m in outputs.items()}


def from_report(report: dict, model_dir: Path, selected: list[str] | None, exit_code: int, strict: bool = False) -> ExportResult:
    targets = {}
    for name, entry in sorted((report.get("targets") or {}).items()):
        if selected is not None and name not in selected:
            continue
        verdicts = {v.target: v for v in entry_verdicts(report.get("model", ""), name, entry)}
        variants = {}
        for record in iter_records({"model": report.get("model", ""), "targets": {name: entry}}):
            e = record.entry
            files = tuple(model_dir / f["path"] for f in e.get("files", []))
            variants[record.variant] = VariantResult(name, record.variant, e.get("status", "-"), files, _metrics(e), verdicts[record.label], record.parity, e.get("message", ""))
        files = tuple(model_dir / f["path"] for f in entry.get("files", []))
        targets[name] = TargetResult(name, entry.get("status", "-"), variants, files, entry.get("message", ""))
    return ExportResult(report.get("model", model_dir.name), model_dir, model_dir / "report.json", targets, exit_code, strict, report)
