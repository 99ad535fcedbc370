"""docs/corpus.md from the corpus reports: one row per (model, target, variant).

Columns: status, max_abs per output, size of the variant's files, conversion
seconds, and for every row that did not pass the reason in one line. A target a
config leaves out is probed: the config loader's refusal of it is its row.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path

import yaml

TARGET_ORDER = ("savedmodel", "onnx", "tflite", "edgetpu", "xla", "tpu")
VARIANT_ORDER = ("default", "optimized", "float32", "float16", "dynamic_range", "int8", "int16x8", "fp32", "bf16", "aot")


def _one_line(text: str, limit: int = 600) -> str:
    line = " ".join(str(text).split()).replace("|", "\\|")
    return line if len(line) <= limit else line[: limit - 3] + "..."


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


def collect(config_dir: Path, artifacts: Path) -> list[dict]:
    rows = []
    for config_file in sorted(config_dir.glob("*.yaml")):
        model = config_file.stem
        configured = [t if isinstance(t, str) else t.get("name") for t in (yaml.safe_load(config_file.read_text()).get("targets") or [])]
        report_file = artifacts / model / "report.json"
        report = json.loads(report_file.read_text()) if report_file.is_file() else {}
        targets = report.get("targets") or {}
        for target in TARGET_ORDER:
            if target not in configured:
                refusal = _probe_refusal(config_file, target)
                rows.append({"model": model, "target": target, "variant": "", "status": "refused" if refusal else "not configured",
                             "max_abs": "-", "size": "-", "seconds": "-", "reason": _one_line(f"config: {refusal}" if refusal else "")})
                continue
            entry = targets.get(target)
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
                    "seconds": _seconds(record, entry, single=not variants), "reason": _reason(record, entry),
                })
    return rows


def write_table(config_dir: Path, artifacts: Path, out: Path, wall_seconds: float | None = None, export_code: int | None = None, forced: bool = False) -> int:
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
        lines.append(f"- `make corpus` wall time: {wall_seconds:.0f} s{' (forced rebuild)' if forced else ''} on {os.cpu_count()} CPUs "
                     f"({platform.machine()}), shared with other work (noisy); tfship exit code {export_code}")
    lines += [
        "- status: `passed`; `failed` = parity outside the budget (numbers in the reason); `error` = the",
        "  converter or runtime could not build/run that variant (op, layer, fixes tried); `refused` = the",
        "  config loader rejects the target for this model before anything runs.",
        "- seconds: the variant's conversion (or XLA compile) time; `*` = the whole target's build.",
        "",
        "| model | target | variant | status | max_abs per output | size | seconds | reason (non-pass) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['target']} | {r['variant'] or '-'} | {r['status']} | {r['max_abs']} | {r['size']} | {r['seconds']} | {r['reason']} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out)
    return len(rows)
