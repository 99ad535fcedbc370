"""Reports for CI and people, built from `artifacts/<model>/report.json` files.

- JUnit XML: one test case per model x target x variant x output, so any CI shows
  parity in its test view; a failing output carries its metrics.
- Markdown summary: short enough for a CI job summary.

`tfship ci-report` writes both (plus the HTML report) for the selected models into
`<artifacts>/ci/`. It exits 0 whatever the parity results: `export`, `release` and
`merge` are the commands whose exit codes gate a pipeline.
"""
from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

METRIC_KEYS = ("max_abs", "max_rel", "mean_abs", "rmse", "cosine", "mismatch_fraction", "nonfinite", "atol", "rtol")


@dataclass(frozen=True)
class Record:
    """One artifact's entry in a report: a target, or one variant of a target."""

    model: str
    target: str
    variant: str  # '' for a target with a single artifact
    entry: dict  # the variant's own fields (status, files, parity, benchmark, ...)
    target_entry: dict  # the target's entry (status, optional, timings, message)

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


def iter_records(report: dict) -> Iterator[Record]:
    """Every artifact record of a report, targets and variants in name order."""
    model = report.get("model", "?")
    for target, entry in sorted((report.get("targets") or {}).items()):
        variants = entry.get("variants")
        if variants:
            for variant, sub in sorted(variants.items()):
                yield Record(model, target, variant, sub, entry)
        else:
            yield Record(model, target, "", entry, entry)


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
    return bool(cls) and cls.get("passed") is False and _classifier_output(record) == output


def _classifier_output(record: Record) -> str | None:
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


def _failure_message(record: Record, output: str) -> str:
    for failure in record.parity.get("failures") or []:
        if failure.split(":", 1)[0] == output:
            return failure
    metrics = record.outputs.get(output) or {}
    return metrics.get("error") or f"{output}: parity failed (max_abs {fmt(metrics.get('max_abs'))}, atol {fmt(metrics.get('atol'))})"


# ------------------------------------------------------------------------ JUnit


def junit_xml(reports: list[dict], suite_name: str = "tfship") -> str:
    """JUnit XML: a testsuite per model, a testcase per target x variant x output.

    classname is `<model>.<target>[.<variant>]`, name is the output. A target that
    errored before parity (conversion failed, model unusable) gets one `<error>`
    case per model output; a skipped target gets `<skipped>` cases.
    """
    root = ET.Element("testsuites", name=suite_name)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for report in sorted(reports, key=lambda r: r.get("model", "")):
        model = report.get("model", "?")
        suite = ET.SubElement(root, "testsuite", name=model)
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        seconds = 0.0
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="config_sha256", value=str(report.get("config_sha256", "")))
        for key, version in sorted((report.get("versions") or {}).items()):
            ET.SubElement(props, "property", name=f"version.{key}", value=str(version))
        names = output_names(report)
        counted_targets = set()
        for record in iter_records(report):
            if record.target not in counted_targets:
                timings = record.target_entry.get("timings") or {}
                seconds += float(timings.get("build_s") or 0.0) + float(timings.get("parity_s") or 0.0)
                counted_targets.add(record.target)
            classname = f"{model}.{record.target}" + (f".{record.variant}" if record.variant else "")
            optional = bool(record.target_entry.get("optional"))
            outputs = list(record.outputs) or names or ["(target)"]
            for output in outputs:
                case = ET.SubElement(suite, "testcase", classname=classname, name=output)
                counts["tests"] += 1
                if optional:
                    case_props = ET.SubElement(case, "properties")
                    ET.SubElement(case_props, "property", name="optional", value="true")
                status = record.status
                if status == "skipped":
                    ET.SubElement(case, "skipped", message=record.target_entry.get("message", "target skipped"))
                    counts["skipped"] += 1
                elif status == "error" or (not record.outputs and status != "passed"):
                    message = record.entry.get("message") or record.target_entry.get("message") or f"{record.label}: error"
                    err = ET.SubElement(case, "error", message=message.splitlines()[0][:500], type=record.target_entry.get("error", "error"))
                    err.text = message + ("\n" + record.target_entry["traceback_tail"] if record.target_entry.get("traceback_tail") else "")
                    counts["errors"] += 1
                elif output_failed(record, output):
                    metrics = record.outputs.get(output) or {}
                    classifier = record.parity.get("classifier") if _classifier_output(record) == output else None
                    fail = ET.SubElement(case, "failure", message=_failure_message(record, output)[:500], type="parity")
                    fail.text = metrics_text(metrics, classifier)
                    diagnosis = record.entry.get("diagnosis")
                    if diagnosis:
                        fail.text += f"\ndiagnosis: {diagnosis}"
                    counts["failures"] += 1
                else:
                    out = ET.SubElement(case, "system-out")
                    out.text = metrics_text(record.outputs.get(output) or {})
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", f"{seconds:.3f}")
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --------------------------------------------------------------------- Markdown


def worst_output(record: Record) -> tuple[str | None, dict]:
    """The output using the largest share of its tolerance (max_abs / atol)."""
    best, best_ratio = None, -1.0
    for name, m in record.outputs.items():
        if output_failed(record, name):
            return name, m
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


def markdown_summary(reports: list[dict], title: str = "tfship parity", release: dict | None = None) -> str:
    """A CI job summary: one line per artifact, failures and exclusions spelled out."""
    records = [r for report in reports for r in iter_records(report)]
    failing = [r for r in records if r.status != "passed"]
    blocking = [r for r in failing if not r.target_entry.get("optional")]
    verdict = "passed" if not failing else ("failed" if blocking else "passed (optional targets failed)")
    icon = {"passed": "✅", "failed": "❌", "error": "💥", "skipped": "⏭️"}
    lines = [f"## {title}", ""]
    if release:
        state = release.get("state", "published")
        lines.append(f"Release **{release.get('version')}**: {state}" + (f" · {release['path']}" if release.get("path") else ""))
        lines.append("")
    lines.append(f"**{verdict}** · {len(reports)} model(s), {len(records)} artifact(s), {len(failing)} not passing")
    lines += ["", "| model | target | status | worst output | max_abs | atol | cosine | bytes | p50 ms |", "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        name, m = worst_output(r)
        p50 = latency_p50(r.entry)
        status = f"{icon.get(r.status, '')} {r.status}" + (" (optional)" if r.target_entry.get("optional") else "")
        lines.append(
            f"| {r.model} | {r.label} | {status} | {name or '-'} | {fmt(m.get('max_abs'))} | {fmt(m.get('atol'))} | "
            f"{fmt(m.get('cosine'), 6)} | {record_bytes(r) or '-'} | {fmt(p50)} |"
        )
    problems = []
    for r in failing:
        if r.status == "error" or not r.outputs:
            message = (r.entry.get("message") or r.target_entry.get("message") or "").splitlines()
            problems.append(f"- **{r.model} {r.label}** {r.status}: {message[0] if message else 'no details'}")
        for failure in r.parity.get("failures") or []:
            problems.append(f"- **{r.model} {r.label}** failed: {failure}")
    if problems:
        lines += ["", "### Failures", ""] + problems
    if release and release.get("excluded"):
        lines += ["", "### Left out of the release", ""]
        lines += [f"- {e['model']} {e['target']}: {e['reason']}" for e in release["excluded"]]
    if release and release.get("refused"):
        lines += ["", "### Why the release was refused", ""] + [f"- {why}" for why in release["refused"]]
    if release and release.get("drift"):
        lines += ["", "### Drift against the previous release", ""] + [f"- {line}" for line in release["drift"]]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------- CLI


def load_reports(artifacts: Path, models: list[str]) -> list[dict]:
    from pipeline.errors import PipelineError
    from pipeline.report import read_report

    reports = []
    for model in models:
        report = read_report(artifacts / model)
        if report is None:
            raise PipelineError(f"no report at {artifacts / model / 'report.json'}; run `tfship export --model {model}` first")
        reports.append(report)
    return reports


def write_ci_reports(reports: list[dict], out_dir: Path, title: str = "tfship parity", release: dict | None = None) -> dict[str, Path]:
    """junit.xml, summary.md and report.html into `out_dir`, each written atomically."""
    from pipeline.fsutil import write_text_atomic
    from pipeline.html_report import render_html

    paths = {"junit": out_dir / "junit.xml", "summary": out_dir / "summary.md", "html": out_dir / "report.html"}
    write_text_atomic(paths["junit"], junit_xml(reports))
    write_text_atomic(paths["summary"], markdown_summary(reports, title, release))
    write_text_atomic(paths["html"], render_html(reports, title))
    return paths


def _handle(args: argparse.Namespace) -> int:
    from pipeline.cli import config_files
    from pipeline.config import load_configs

    configs = load_configs(config_files(args.model, args.config_dir))
    reports = load_reports(args.artifacts, [c.name for c in configs])
    out = args.out or args.artifacts / "ci"
    paths = write_ci_reports(reports, out)
    for path in paths.values():
        print(path)
    return 0


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "ci-report",
        help="write JUnit XML, a Markdown summary and an HTML report from exported reports",
        description="Reads <artifacts>/<model>/report.json and writes junit.xml, summary.md and report.html. Exits 0 whatever the parity results.",
    )
    common(parser)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <artifacts>/ci)")
    parser.set_defaults(handler=_handle)
