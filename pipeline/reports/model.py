"""report.json for one model: read, merge (and write with its report.md), verify
against the files on disk. The shape itself (typed records, schema 1 -> 2 upgrade,
schema.json) is `pipeline.reports.shape`.

Exporting targets one at a time merges into the same report: each run replaces
the entries of the targets it ran and keeps the others.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
from importlib import metadata
from pathlib import Path

from pipeline.fsutil import expand_files, read_own_file, real_file_below, sha256_file, write_json_atomic, write_text_atomic
from pipeline.reports.shape import (
    DEFAULT_VARIANT,
    SCHEMA_PATH,
    SCHEMA_VERSION,
    Report,
    TargetRecord,
    VariantRecord,
    target_entry,
    upgrade,
    validate_report,
    variant_label,
)


__all__ = [  # the report model in one place: shape names re-exported beside read/merge/verify
    "DEFAULT_VARIANT", "SCHEMA_PATH", "SCHEMA_VERSION", "Report", "TargetRecord", "VariantRecord",
    "merge_report", "now", "portable_path", "overall_status", "read_report", "report_path", "target_entry", "tool_versions",
    "upgrade", "validate_report", "variant_label", "verify_files", "write_report",
]
RECORD_NAME = ".tfship-record.json"  # a target's entry, published inside its folder (pipeline.publication)

_PACKAGES = ("tfship", "tensorflow", "keras", "tf-keras", "numpy", "onnx", "tf2onnx", "onnxruntime", "ai-edge-litert", "ai-edge-quantizer", "openvino", "nncf")


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
    raw = read_own_file(report_path(model_dir))  # a link, a FIFO or a huge file is no report
    if raw is None:
        return None
    try:
        report = json.loads(raw.decode("utf-8"))
    except ValueError:  # not JSON, not UTF-8: not a report
        return None
    if not isinstance(report, dict) or not isinstance(report.get("targets", {}), dict):
        return None
    return upgrade(report)


def portable_path(path: Path | str) -> str:
    """A path as a report or a release records it: relative to the working directory when it
    is below it, else its name; a shipped file names no folder of the machine that built it."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def merge_report(
    model_dir: Path, model: str, config_sha256: str, config_file: str, run: dict, targets: dict[str, dict], still_valid: frozenset[str] | None = None
) -> dict:
    """Fold this run's targets into the existing report and write both files atomically.

    When the config changed since the report was written, only the older entries named in
    `still_valid` (their stage cache key still holds and their files are intact) are kept."""
    previous = read_report(model_dir) or {}
    if previous.get("config_sha256") not in (None, config_sha256):
        kept = set(still_valid or ())
        previous["targets"] = {k: v for k, v in (previous.get("targets") or {}).items() if k in kept}
    report = {
        "schema_version": SCHEMA_VERSION,
        "model": model,
        "config_file": portable_path(config_file),
        "config_sha256": config_sha256,
        "versions": tool_versions(),
        "created": previous.get("created", now()),
        "updated": now(),
        "run": run,
        "targets": {name: target_entry(entry) for name, entry in {**previous.get("targets", {}), **targets}.items()},
    }
    for key in ("baselines", "benchmark"):  # figures of reused targets stay valid; rebuilt ones lost theirs
        if key in previous and previous.get("config_sha256") == config_sha256:
            report[key] = previous[key]
    report["status"] = overall_status(report["targets"])
    write_report(model_dir, report)
    return report


def write_report(model_dir: Path, report: dict) -> None:
    """report.json, report.md and report.html, each written atomically."""
    from pipeline.reports.html import render_html
    from pipeline.reports.markdown import render_markdown

    write_json_atomic(report_path(model_dir), report)
    write_text_atomic(model_dir / "report.md", render_markdown(report))
    write_text_atomic(model_dir / "report.html", render_html([report], title=f"tfship report: {report.get('model', '')}"))


def overall_status(targets: dict[str, dict]) -> str:
    statuses = {t.get("status") for t in targets.values()}
    for status in ("error", "failed"):
        if status in statuses:
            return status
    return "passed" if "passed" in statuses else "skipped"


def verify_files(model_dir: Path, report: dict) -> list[str]:
    """Files whose bytes differ from the report (or that are gone)."""
    changed = []
    for name, entry in report.get("targets", {}).items():
        for f in entry.get("files", []):
            path = real_file_below(model_dir, f["path"])
            if path is None:
                changed.append(f"{f['path']} (outside the model folder or reached through a symbolic link: not read)")
            elif not path.is_file():
                changed.append(f"{f['path']} (missing)")
            elif sha256_file(path) != f["sha256"]:
                changed.append(f"{f['path']} (sha256 {sha256_file(path)[:12]}, recorded {f['sha256'][:12]})")
        target_dir = model_dir / name
        if target_dir.is_dir() and entry.get("files"):
            recorded = {f["path"] for f in entry["files"]}
            for path in expand_files(model_dir, [name]):
                rel = path.relative_to(model_dir).as_posix()
                if rel not in recorded and path.name != RECORD_NAME:
                    changed.append(f"{rel} (not in the report)")
    return changed
