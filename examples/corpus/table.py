"""docs/corpus.md from the corpus reports: one row per (model, target, variant).

Columns: status, max_abs per output, size of the variant's files, conversion
seconds, and for every row that did not pass the reason in one line. A target a
config leaves out is probed: the config loader's refusal of it is its row.
"""
from __future__ import annotations

import json
import os
import platform
import re
import tempfile
from pathlib import Path

import yaml

TARGET_ORDER = ("savedmodel", "onnx", "tflite", "edgetpu", "xla", "tpu", "openvino")
VARIANT_ORDER = ("default", "optimized", "float32", "float16", "dynamic_range", "int8", "int16x8", "fp32", "fp16", "bf16", "aot")


def _one_line(text: str) -> str:
    """The whole message on one table line (never cut: the op, layer and fixes tried come last)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _size(n: int | None) -> str:
    if not n:
        return "-"
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _seconds(record: dict, target_entry: dict, single: bool) -> str:
    info = record.get("info") or {}
    if "conversion_seconds" in info:
        total = info["conversion_seconds"] + info.get("optimize_seconds", 0.0)
        return f"{total:.2f}"
    compile_seconds = info.get("compile_seconds")
    if isinstance(compile_seconds, dict) and compile_seconds:
        return f"{sum(compile_seconds.values()):.2f}"
    build = (target_entry.get("timings") or {}).get("build_s")
    if build is None:
        return "-"
    return f"{build:.2f}" if single else f"{build:.2f}*"


def _max_abs(record: dict) -> str:
    outputs = (record.get("parity") or {}).get("outputs") or {}
    parts = []
    for name, metrics in outputs.items():
        value = metrics.get("max_abs")
        parts.append(f"{name} {value:.3g}" if isinstance(value, (int, float)) else f"{name} -")
    return "; ".join(parts) or "-"


def _reason(record: dict, target_entry: dict) -> str:
    status = record.get("status")
    if status == "passed":
        weak = [f"{o}: {w}" for o, w in ((record.get("parity") or {}).get("weak_evidence") or {}).items()] if isinstance((record.get("parity") or {}).get("weak_evidence"), dict) else []
        return _one_line("weak evidence: " + "; ".join(weak)) if weak else ""
    if status == "failed":
        failures = (record.get("parity") or {}).get("failures") or []
        return _one_line("; ".join(failures) or "parity failed")
    return _one_line(record.get("message") or target_entry.get("message") or "no message recorded")


REFUSALS = ".corpus-refusals.json"  # beside the model folders: refusals the reports do not hold
_REFUSAL = re.compile(r"^error: (?P<config>\S+?)\.ya?ml:\d+: targets\[\d+\]: (?P<target>\w+): (?P<message>.*)$")
_NEW_LINE = re.compile(r"^(error: |\d\d:\d\d:\d\d \[|corpus export: )")


def parse_refusals(stderr_lines: list[str]) -> dict[str, dict[str, str]]:
    """{model: {target: message}} from `tfship export`'s stderr: a target refused at conversion
    (exit 2: an op the converter or device cannot take) is printed there, not recorded."""
    found: dict[str, dict[str, str]] = {}
    current: list[str] | None = None
    for raw in stderr_lines:
        line = raw.rstrip("\n")
        match = _REFUSAL.match(line)
        if match:
            current = [match["message"]]
            found.setdefault(Path(match["config"]).name, {})[match["target"]] = current  # type: ignore[assignment]
        elif current is not None and line and not _NEW_LINE.match(line):
            current.append(line)
        else:
            current = None
    return {model: {t: "\n".join(m) for t, m in targets.items()} for model, targets in found.items()}


def save_refusals(artifacts: Path, models: list[str], refusals: dict[str, dict[str, str]]) -> None:
    """Keep this run's refusals for the models it exported (theirs replace the last run's)."""
    path = artifacts / REFUSALS
    kept = json.loads(path.read_text()) if path.is_file() else {}
    for model in models:
        kept.pop(model, None)
        if refusals.get(model):
            kept[model] = {"at": _now(), "targets": refusals[model]}
    artifacts.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(kept, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _sort_key(item: tuple[str, dict]) -> tuple[int, str]:
    name = item[0]
    return (VARIANT_ORDER.index(name) if name in VARIANT_ORDER else len(VARIANT_ORDER), name)


def _probe_refusal(config_file: Path, target: str) -> str:
    """What the config loader says when `target` is added to this config."""
    from pipeline.config import load_configs, require_selected
    from pipeline.errors import ConfigError
    from targets import REGISTRY

    raw = yaml.safe_load(config_file.read_text())
    raw["targets"] = list(raw.get("targets") or []) + [target]
    fd, probe = tempfile.mkstemp(prefix="probe_", suffix=".yaml", dir=config_file.parent)
    try:
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(raw, f, sort_keys=False)
        require_selected(load_configs([Path(probe)], REGISTRY), [target])
    except ConfigError as exc:
        return "; ".join(p.message for p in exc.problems)
    finally:
        os.unlink(probe)
    return ""


def _exported_before_edit(report: dict, config_file: Path) -> bool:
    """The config file changed after this report's run finished (its rows are stale)."""
    import datetime as dt

    finished = (report.get("run") or {}).get("finished")
    if not finished:
        return True
    return dt.datetime.fromisoformat(finished).timestamp() < config_file.stat().st_mtime


def collect(config_dir: Path, artifacts: Path) -> list[dict]:
    rows = []
    refusals_file = artifacts / REFUSALS
    refusals = json.loads(refusals_file.read_text()) if refusals_file.is_file() else {}
    for config_file in sorted(config_dir.glob("*.yaml")):
        model = config_file.stem
        configured = [t if isinstance(t, str) else t.get("name") for t in (yaml.safe_load(config_file.read_text()).get("targets") or [])]
        report_file = artifacts / model / "report.json"
        report = json.loads(report_file.read_text()) if report_file.is_file() else {}
        targets = report.get("targets") or {}
        stale = bool(report) and _exported_before_edit(report, config_file)
        mark = f"[stale: exported {(report.get('run') or {}).get('finished', '?')} from an earlier version of this config] " if stale else ""
        for target in TARGET_ORDER:
            if target not in configured:
                refusal = _probe_refusal(config_file, target)
                rows.append({"model": model, "target": target, "variant": "", "status": "refused" if refusal else "not configured",
                             "max_abs": "-", "size": "-", "seconds": "-", "reason": _one_line(f"config: {refusal}" if refusal else "")})
                continue
            entry = targets.get(target)
            refused = (refusals.get(model) or {}).get("targets", {}).get(target)
            if entry is None and refused:
                rows.append({"model": model, "target": target, "variant": "", "status": "refused", "max_abs": "-", "size": "-",
                             "seconds": "-", "reason": _one_line(refused)})
                continue
            if entry is None:
                rows.append({"model": model, "target": target, "variant": "", "status": "missing", "max_abs": "-", "size": "-",
                             "seconds": "-", "reason": f"no record in {report_file}"})
                continue
            variants = entry.get("variants")
            records = sorted(variants.items(), key=_sort_key) if variants else [("", entry)]
            for variant, record in records:
                rows.append({
                    "model": model, "target": target, "variant": variant, "status": record.get("status", "?"),
                    "max_abs": _max_abs(record), "size": _size(record.get("bytes")),
                    "seconds": _seconds(record, entry, single=not variants), "reason": mark + _reason(record, entry),
                })
    return rows


def _commit() -> str:
    """The checkout's commit, marked `+local changes` when the tree differs from it."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" +local changes" if dirty else "")


def write_table(config_dir: Path, artifacts: Path, out: Path, wall_seconds: float | None = None, export_code: int | None = None,
                forced: bool = False, jobs: int | None = None, selected: list[str] | None = None, peak_rss_bytes: int | None = None) -> int:
    rows = collect(config_dir, artifacts)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    models = sorted({r["model"] for r in rows})
    lines = [
        "# The corpus",
        "",
        "Real architectures exported on every target and TFLite variant by `make corpus`",
        "(code in examples/corpus/, configs in configs/corpus/). Nothing is downloaded: Keras",
        "applications use `weights=None` with batch-norm statistics from one generated batch",
        "and pooled features; the other models train for seconds on generated data. Input",
        "resolutions are reduced for two CPUs: MobileNetV2 64x64, Xception 71x71, the other",
        "applications 32x32 (their minimum).",
        "",
        f"- models: {len(models)}; rows: {len(rows)}; " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())),
    ]
    if wall_seconds is not None:
        scope = (f"models {', '.join(selected)} only (the other rows are earlier exports: see the dates below)" if selected
                 else "every model in one run")
        lines.append(f"- one `make corpus` run{f' (JOBS={jobs})' if jobs else ''}{', forced rebuild' if forced else ''} at commit {_commit()}: "
                     f"{scope}; wall time {wall_seconds:.0f} s ({wall_seconds / 60:.1f} min) on {os.cpu_count()} CPUs ({platform.machine()}); "
                     f"tfship exit code {export_code}"
                     + (f"; largest process peak RSS {peak_rss_bytes / 2**30:.2f} GB" if peak_rss_bytes else ""))
    lines += [
        "- status: `passed`; `failed` = parity outside the budget (numbers in the reason); `error` = the",
        "  converter or runtime could not build/run that variant (op, layer, fixes tried); `refused` = the",
        "  config loader rejects the target for this model before anything runs, or the target refuses the",
        "  model at conversion (exit 2: an op it cannot take; nothing written, so no report record).",
        "- seconds: the variant's conversion (or XLA compile) time; `*` = the whole target's build.",
        "",
        "| model | target | variant | status | max_abs per output | size | seconds | reason (non-pass) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['target']} | {r['variant'] or '-'} | {r['status']} | {r['max_abs']} | {r['size']} | {r['seconds']} | {r['reason']} |")
    lines += ["", "Each model's last export (UTC), from its report:", ""]
    for model in models:
        report_file = artifacts / model / "report.json"
        finished = ""
        if report_file.is_file():
            finished = (json.loads(report_file.read_text()).get("run") or {}).get("finished", "")
        lines.append(f"- {model}: {finished or 'not exported'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out)
    return len(rows)
