"""report.json and report.md for one model.

Exporting targets one at a time merges into the same report: each run replaces
the entries of the targets it ran and keeps the others.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
from importlib import metadata
from pathlib import Path

from pipeline.fsutil import write_json_atomic, write_text_atomic

SCHEMA_VERSION = 1
STATUSES = ("passed", "failed", "skipped", "error")

_PACKAGES = ("tfship", "tensorflow", "keras", "tf-keras", "numpy", "onnx", "tf2onnx", "onnxruntime", "ai-edge-litert", "ai-edge-quantizer")


def tool_versions() -> dict[str, str]:
    """Installed versions, read from package metadata (no TensorFlow import)."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def report_path(model_dir: Path) -> Path:
    return model_dir / "report.json"


def read_report(model_dir: Path) -> dict | None:
    path = report_path(model_dir)
    if not path.exists():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # not JSON, not UTF-8, unreadable: not a report
        return None
    if not isinstance(report, dict) or not isinstance(report.get("targets", {}), dict):
        return None
    return report


def merge_report(model_dir: Path, model: str, config_sha256: str, config_file: str, run: dict, targets: dict[str, dict]) -> dict:
    """Fold this run's targets into the existing report and write both files atomically."""
    previous = read_report(model_dir) or {}
    if previous.get("config_sha256") not in (None, config_sha256):
        previous["targets"] = {}  # the config changed: older entries describe another plan
    report = {
        "schema_version": SCHEMA_VERSION,
        "model": model,
        "config_file": config_file,
        "config_sha256": config_sha256,
        "versions": tool_versions(),
        "created": previous.get("created", now()),
        "updated": now(),
        "run": run,
        "targets": {**previous.get("targets", {}), **targets},
    }
    for key in ("baselines", "benchmark"):  # figures of reused targets stay valid; rebuilt ones lost theirs
        if key in previous and previous.get("config_sha256") == config_sha256:
            report[key] = previous[key]
    report["status"] = overall_status(report["targets"])
    write_json_atomic(report_path(model_dir), report)
    write_text_atomic(model_dir / "report.md", render_markdown(report))
    return report


def overall_status(targets: dict[str, dict]) -> str:
    statuses = {t.get("status") for t in targets.values()}
    for status in ("error", "failed"):
        if status in statuses:
            return status
    return "passed" if "passed" in statuses else "skipped"


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _parity_rows(prefix: str, entry: dict) -> list[str]:
    rows = []
    parity = entry.get("parity") or {}
    for name, m in (parity.get("outputs") or {}).items():
        mark = "pass" if m.get("passed") else "FAIL"
        rows.append(
            f"| {prefix} | {name} | {mark} | {_fmt(m.get('max_abs'))} | {_fmt(m.get('max_rel'))} | {_fmt(m.get('rmse'))} | "
            f"{_fmt(m.get('cosine'))} | {_fmt(m.get('mismatch_fraction'))} | {_fmt(m.get('atol'))} |"
        )
    return rows


def render_markdown(report: dict) -> str:
    lines = [f"# tfship report: {report['model']}", ""]
    lines.append(f"Status: **{report['status']}** · updated {report['updated']} · config sha256 `{report['config_sha256'][:12]}`")
    lines.append("")
    lines.append("| target | status | files | bytes | build s | parity s | note |")
    lines.append("|---|---|---|---|---|---|---|")
    for name, entry in sorted(report["targets"].items()):
        files = entry.get("files", [])
        timings = entry.get("timings", {})
        note = entry.get("message", "").splitlines()[0][:120] if entry.get("message") else ""
        lines.append(
            f"| {name} | {entry.get('status')} | {len(files)} | {sum(f['bytes'] for f in files)} | "
            f"{_fmt(timings.get('build_s'))} | {_fmt(timings.get('parity_s'))} | {note} |"
        )
    lines += ["", "## Parity (worst over cases)", ""]
    lines.append("| target | output | result | max_abs | max_rel | rmse | cosine | mismatch | atol |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for name, entry in sorted(report["targets"].items()):
        lines += _parity_rows(name, entry)
        for variant, sub in sorted((entry.get("variants") or {}).items()):
            lines += _parity_rows(f"{name}/{variant}", sub)
    extra = []
    for name, entry in sorted(report["targets"].items()):
        for label, sub in [(name, entry)] + [(f"{name}/{v}", s) for v, s in sorted((entry.get("variants") or {}).items())]:
            parity = sub.get("parity") or {}
            cls = parity.get("classifier")
            if cls:
                extra.append(
                    f"- {label}: top-1 agreement {_fmt(cls.get('top1_agreement'))} over {cls.get('samples')} samples"
                    + (f", accuracy {_fmt(cls.get('accuracy'))} vs reference {_fmt(cls.get('reference_accuracy'))} (delta {cls.get('accuracy_delta', 0):+.4f})" if "accuracy" in cls else "")
                )
            for out, why in (parity.get("weak_evidence") or {}).items():
                extra.append(f"- {label}: weak evidence for `{out}`: {why}")
            for failure in parity.get("failures") or []:
                extra.append(f"- {label}: FAILED {failure}")
    if extra:
        lines += ["", "## Notes", ""] + extra
    from pipeline.repairs import render_repairs_markdown

    repairs = render_repairs_markdown(report)
    if repairs:
        lines += ["", repairs.rstrip("\n")]
    from pipeline.bench import render_benchmark_markdown  # bench imports this module

    benchmark = render_benchmark_markdown(report)
    if benchmark:
        lines += ["", benchmark.rstrip("\n")]
    lines += ["", "Tool versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    return "\n".join(lines)
