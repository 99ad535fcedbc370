"""The CI bundle: junit.xml, summary.md and report.html for a set of model reports."""
from __future__ import annotations

from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.fsutil import write_text_atomic
from pipeline.reports.html import render_html
from pipeline.reports.junit import junit_xml
from pipeline.reports.markdown import markdown_summary
from pipeline.reports.model import read_report


def load_reports(artifacts: Path, models: list[str]) -> list[dict]:
    reports = []
    for model in models:
        report = read_report(artifacts / model)
        if report is None:
            raise PipelineError(f"no report at {artifacts / model / 'report.json'}; run `tfship export --model {model}` first")
        reports.append(report)
    return reports


def write_ci_reports(reports: list[dict], out_dir: Path, title: str = "tfship parity", release: dict | None = None) -> dict[str, Path]:
    """junit.xml, summary.md and report.html into `out_dir`, each written atomically."""
    paths = {"junit": out_dir / "junit.xml", "summary": out_dir / "summary.md", "html": out_dir / "report.html"}
    write_text_atomic(paths["junit"], junit_xml(reports))
    write_text_atomic(paths["summary"], markdown_summary(reports, title, release))
    write_text_atomic(paths["html"], render_html(reports, title))
    return paths
