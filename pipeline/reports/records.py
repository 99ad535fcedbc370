"""Artifact records of a report: the one walk over targets and their variants, and
small readers of a record's metrics, sizes and benchmark figures. Renderers (Markdown,
JUnit, HTML) and `diff` read reports through these."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from pipeline.reports.shape import upgrade, variant_label

METRIC_KEYS = ("max_abs", "max_rel", "mean_abs", "rmse", "cosine", "mismatch_fraction", "nonfinite", "atol", "rtol")


@dataclass(frozen=True)
class Record:
    """One artifact's entry in a report: a target, or one variant of a target."""

    model: str
    target: str
    variant: str  # '' for a target with a single artifact
    entry: dict  # the variant's own fields (status, files, parity, benchmark, ...)
    target_entry: dict  # the target's entry (status, optional, timings, message)
    key: str = ""  # the key under the target's `variants` ('' for a target without any)

    @property
    def label(self) -> str:
        return f"{self.target}/{self.variant}" if self.variant else self.target

    @property
    def status(self) -> str:
        return self.entry.get("status") or self.target_entry.get("status") or "error"

    @property
    def parity(self) -> dict:
        return self.entry.get("parity") or {}

    @property
    def outputs(self) -> dict[str, dict]:
        return self.parity.get("outputs") or {}

    @property
    def has_artifact(self) -> bool:
        return "artifact" in self.entry


def iter_records(report: dict) -> Iterator[Record]:
    """Every artifact record of a report, targets and variants in name order; a target
    that errored before building any artifact is one record of its own. A target's only,
    unnamed artifact has variant '' (its label is the target's name)."""
    model = report.get("model", "?")
    for target, entry in sorted((upgrade(report).get("targets") or {}).items()):
        variants = entry.get("variants")
        if not variants:
            yield Record(model, target, "", entry, entry)
            continue
        for key, sub in sorted(variants.items()):
            label = variant_label(target, key, sub)
            yield Record(model, target, "" if label == target else key, sub, entry, key)


def output_names(report: dict) -> list[str]:
    """The model's outputs: from the reference statistics, else from any parity record."""
    names = list(((report.get("run") or {}).get("model") or {}).get("reference") or {})
    for record in iter_records(report):
        for name in record.outputs:
            if name not in names:
                names.append(name)
    return names


def output_failed(record: Record, output: str) -> bool:
    """An output fails when its element check fails, or when it is the classifier output
    and the top-1 / accuracy check failed."""
    metrics = record.outputs.get(output)
    if metrics is None:
        return True
    if not metrics.get("passed", False):
        return True
    cls = record.parity.get("classifier")
    return bool(cls) and cls.get("passed") is False and classifier_output(record) == output


def classifier_output(record: Record) -> str | None:
    if record.parity.get("classifier_output") in record.outputs:
        return record.parity["classifier_output"]
    # Older reports: evaluate() named the classifier output at the start of its failure text.
    for failure in record.parity.get("failures") or []:
        name = failure.split(":", 1)[0]
        if "top-1 agreement" in failure and name in record.outputs:
            return name
    return None


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def metrics_text(metrics: dict, classifier: dict | None = None) -> str:
    parts = [f"{k}={fmt(metrics.get(k), 6)}" for k in METRIC_KEYS if k in metrics]
    if "quant_step" in metrics:
        parts.append(f"quant_step={fmt(metrics['quant_step'], 6)}")
    if "error" in metrics:
        parts.append(f"error={metrics['error']}")
    if classifier:
        parts += [f"classifier.{k}={fmt(v, 6)}" for k, v in classifier.items() if not isinstance(v, dict)]
    return ", ".join(parts)


def worst_output(record: Record) -> tuple[str | None, dict]:
    """The output using the largest share of its tolerance: its deciding criterion's
    `used` when the report has criteria, else max_abs / atol (older reports)."""
    best, best_ratio = None, -1.0
    for name, m in record.outputs.items():
        if output_failed(record, name):
            return name, m
        decided = (m.get("criteria") or {}).get(m.get("decided_by") or "")
        if decided is not None:
            ratio = float("inf") if decided.get("used") is None else decided["used"]
        else:
            max_abs, atol = m.get("max_abs"), m.get("atol")
            ratio = (max_abs or 0.0) / atol if atol else (max_abs or 0.0)
        if ratio > best_ratio:
            best, best_ratio = name, ratio
    return best, record.outputs.get(best, {}) if best else {}


def record_bytes(record: Record) -> int:
    return sum(int(f.get("bytes") or 0) for f in record.entry.get("files") or [])


def bench_figures(entry: dict) -> dict[int, dict]:
    """`tfship bench` figures of one artifact (or baseline) by batch size."""
    bench = entry.get("benchmark") if "benchmark" in entry else entry
    batches = (bench or {}).get("batches") if isinstance(bench, dict) else None
    out = {}
    for key, figure in (batches or {}).items():
        if isinstance(figure, dict) and isinstance(figure.get("p50_ms"), (int, float)) and str(key).isdigit():
            out[int(key)] = figure
    return dict(sorted(out.items()))


def latency_p50(entry: dict, batch: int | None = None) -> float | None:
    """p50 latency in ms at `batch` (default: the smallest batch timed)."""
    figures = bench_figures(entry)
    if not figures:
        return None
    figure = figures.get(batch) if batch is not None else next(iter(figures.values()))
    return float(figure["p50_ms"]) if figure else None


def file_checks(target: str, entry: dict) -> dict[str, dict]:
    """Which parity run executed each file of a target: path (as in the report, relative to
    the model folder) -> {"checked_by": [variant labels]} or {"unchecked": why}.

    A file is checked when a variant that lists it was run by parity (passed or failed)
    and did not declare it unchecked (`artifact.unchecked`: a text dump, an object for
    hardware that is not here); a file only a skipped variant lists is unchecked, with
    the skip's reason."""
    checked: dict[str, list[str]] = {}
    reasons: dict[str, list[str]] = {}
    for key, sub in sorted((entry.get("variants") or {}).items()):
        label = variant_label(target, key, sub)
        declared = (sub.get("artifact") or {}).get("unchecked") or {}
        ran = sub.get("status") in ("passed", "failed")
        for f in sub.get("files") or []:
            path = f["path"]
            rel = path[len(target) + 1:] if path.startswith(f"{target}/") else path
            why = next((reason for name, reason in declared.items() if rel == name or rel.startswith(f"{name.rstrip('/')}/")), None)
            if why is None and ran:
                checked.setdefault(path, []).append(label)
                continue
            if why is None:
                message = (sub.get("message") or "").strip().splitlines()
                why = f"parity {sub.get('status', 'not run')}" + (f": {message[0]}" if message else "")
            reasons.setdefault(path, []).append(f"{label}: {why}")
    out = {path: {"checked_by": labels} for path, labels in checked.items()}
    for path, why in reasons.items():
        if path not in out:
            out[path] = {"unchecked": "; ".join(why)}
    return out
