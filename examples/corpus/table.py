"""docs/corpus.md from the corpus reports: one row per (model, target, variant).

Columns: status, max_abs per output, the held-out task figure of the artifact (run in
its own runtime; examples/corpus/tasks.py) and its change from the float reference,
size of the variant's files, conversion seconds, and for every row that did not pass
the reason in one line. A target a config leaves out is probed: the config loader's
refusal of it is its row. Targets and variants are read from the registry and the
reports: a new one gets its rows without a change here (the listed orders only sort).
Beside the table: the trained models with their held-out figures and training time,
the random-weight appendix, and every cell whose status differs between the two.
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


def _targets_in_order(configured: list[str], reported: list[str]) -> list[str]:
    """The known order first, then any other target: registered, configured or reported."""
    from targets import REGISTRY

    others = sorted((set(REGISTRY.names()) | set(configured) | set(reported)) - set(TARGET_ORDER))
    return list(TARGET_ORDER) + others


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


def _task_cell(task: dict | None, label: str) -> str:
    """`0.9861 (-0.0028)`: the artifact's held-out figure and its change from the reference."""
    from examples.corpus.tasks import headline

    if not task:
        return "-"
    found = (task.get("artifacts") or {}).get(label)
    if not found:
        return "-"
    if "error" in found:
        return "not run: " + _one_line(found["error"])[:80]
    name, value = headline(task["kind"], found)
    _, reference = headline(task["kind"], task["reference"])
    return f"{value:.4f} ({value - reference:+.4f})"


def collect(config_dir: Path, artifacts: Path) -> list[dict]:
    from examples.corpus.tasks import load as load_task
    from pipeline.reports.shape import variant_label

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
        task = load_task(artifacts, model)
        for target in _targets_in_order(configured, list(targets)):
            if target not in configured:
                refusal = _probe_refusal(config_file, target)
                if not refusal and target not in TARGET_ORDER:
                    continue  # a target added since: no row until a config names it or refuses it
                rows.append({"model": model, "target": target, "variant": "", "status": "refused" if refusal else "not configured",
                             "max_abs": "-", "task": "-", "size": "-", "seconds": "-", "reason": _one_line(f"config: {refusal}" if refusal else "")})
                continue
            entry = targets.get(target)
            refused = (refusals.get(model) or {}).get("targets", {}).get(target)
            if entry is None and refused:
                rows.append({"model": model, "target": target, "variant": "", "status": "refused", "max_abs": "-", "task": "-", "size": "-",
                             "seconds": "-", "reason": _one_line(refused)})
                continue
            if entry is None:
                rows.append({"model": model, "target": target, "variant": "", "status": "missing", "max_abs": "-", "task": "-", "size": "-",
                             "seconds": "-", "reason": f"no record in {report_file}"})
                continue
            variants = entry.get("variants")
            records = sorted(variants.items(), key=_sort_key) if variants else [("", entry)]
            for variant, record in records:
                label = variant_label(target, variant, record) if variants else target
                rows.append({
                    "model": model, "target": target, "variant": variant, "status": record.get("status", "?"),
                    "max_abs": _max_abs(record), "task": _task_cell(task, label), "size": _size(record.get("bytes")),
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


def _rows_table(rows: list[dict]) -> list[str]:
    lines = [
        "| model | target | variant | status | max_abs per output | held-out task (change) | size | seconds | reason (non-pass) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['target']} | {r['variant'] or '-'} | {r['status']} | {r['max_abs']} | {r.get('task', '-')} | "
                     f"{r['size']} | {r['seconds']} | {r['reason']} |")
    return lines


def _counts(rows: list[dict]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def _trained_section(config_dir: Path, artifacts: Path, models: list[str]) -> list[str]:
    """Per model: what it was trained on, its held-out figure, and what training took."""
    from examples.corpus.tasks import TASKS, headline, load as load_task
    from examples.corpus.train import TRAINING
    from examples.trained import figures_of

    training_file = artifacts / TRAINING
    training = json.loads(training_file.read_text()) if training_file.is_file() else {}
    lines = [
        "## Trained models",
        "",
        "Held-out figures of the float reference (the eager model, on samples no model trained on; R² and mean absolute",
        "error for regressors), from the export's own reports. `training s`: the training run that produced the cached",
        "weights (examples/trained.py: keyed on the training code, data and library versions); `this run`: trained, or",
        "loaded from the cache (`cached`, a few seconds).",
        "",
        "| model | trained on | held-out samples | float reference | training s | epochs | this run |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in models:
        task = load_task(artifacts, model)
        spec = TASKS.get(model)
        record = training.get(model) or {}
        # The cache's newest figures: a model retrained by its factory during the export counts.
        figures = figures_of(model) or record.get("figures") or {}
        if task:
            name, value = headline(task["kind"], task["reference"])
            extra = f", MAE {task['reference']['mae']:.3f}" if "mae" in task["reference"] else ""
            reference = f"{'R²' if name == 'r2' else name} {value:.4f}{extra}"
        elif "heldout_accuracy" in figures or "heldout_r2" in figures:  # not exported yet: the figure measured at training
            reference = (f"accuracy {figures['heldout_accuracy']:.4f}" if "heldout_accuracy" in figures
                         else f"R² {figures['heldout_r2']:.4f}") + " (at training)"
        else:
            reference = "-"
        seconds = (f"{figures['train_seconds']:.0f}" if "train_seconds" in figures
                   else "no training loop" if record and "error" not in record else "not trained yet")
        trained_now = record.get("trained_now") or (figures.get("key") != (record.get("figures") or {}).get("key"))
        state = "error: " + record["error"] if "error" in record else ("trained" if trained_now else ("cached" if record else "-"))
        lines.append(f"| {model} | {spec.data if spec else '-'} | {task['samples'] if task else '-'} | {reference} | {seconds} | "
                     f"{figures.get('epochs', '-')} | {state} |")
    return lines


def _changed(trained_rows: list[dict], random_rows: list[dict]) -> list[str]:
    """Every cell whose status differs between the random-weight appendix and the trained table."""
    index = {(r["model"], r["target"], r["variant"]): r for r in trained_rows}
    lines = [
        "## Verdicts that changed between random and trained weights",
        "",
        "Same architecture, resolution, targets and budgets; the random-weight model exports its pooled `features`, the",
        "trained one its `features` and `probs` (the reason quotes each side's figures; `held-out task` is the trained",
        "artifact's accuracy and its change from the float reference).",
        "",
        "| model | target | variant | random | trained | held-out task (trained) | random: why | trained: why |",
        "|---|---|---|---|---|---|---|---|",
    ]
    changed = 0
    verdicts = ("passed", "failed", "error", "skipped")
    for r in random_rows:
        t = index.get((r["model"], r["target"], r["variant"]))
        if t is None or t["status"] == r["status"] or t["status"] not in verdicts:  # not exported (yet): no verdict to compare
            continue
        changed += 1
        lines.append(f"| {r['model']} | {r['target']} | {r['variant'] or '-'} | {r['status']} | {t['status']} | {t.get('task', '-')} | "
                     f"{r['reason'] or 'max_abs ' + r['max_abs']} | {t['reason'] or 'max_abs ' + t['max_abs']} |")
    same = sum(1 for r in random_rows if r["status"] in verdicts and (k := (r["model"], r["target"], r["variant"])) in index
               and index[k]["status"] == r["status"])
    lines += ["", f"{changed} cells changed; {same} kept their status."]
    return lines


RANDOM_ROWS = Path(__file__).resolve().parent / "random_rows.json"


def random_appendix(random_dir: Path | None, random_artifacts: Path | None) -> tuple[list[dict], str]:
    """The random-weight rows: from their reports when `make corpus RANDOM=1` exported them,
    else the rows kept from the last run that did (examples/corpus/random_rows.json)."""
    if random_dir and random_artifacts and random_dir.is_dir() and any(
            (random_artifacts / p.stem / "report.json").is_file() for p in random_dir.glob("*.yaml")):
        return collect(random_dir, random_artifacts), f"the reports in {random_artifacts} (see each model's export date there)"
    if RANDOM_ROWS.is_file():
        kept = json.loads(RANDOM_ROWS.read_text())
        return kept["rows"], kept["source"]
    return [], ""


RUN_LINE_PREFIXES = ("- one `make corpus` run", "- of which: ")


def run_lines_of(out: Path) -> list[str]:
    """The lines of an earlier table that describe its run (kept by --table-only)."""
    if not out.is_file():
        return []
    return [line for line in out.read_text().splitlines() if line.startswith(RUN_LINE_PREFIXES)]


def write_table(config_dir: Path, artifacts: Path, out: Path, wall_seconds: float | None = None, export_code: int | None = None,
                forced: bool = False, jobs: int | None = None, selected: list[str] | None = None, peak_rss_bytes: int | None = None,
                phases: dict[str, float] | None = None, random_dir: Path | None = None, random_artifacts: Path | None = None,
                run_lines: list[str] | None = None) -> int:
    rows = collect(config_dir, artifacts)
    random_rows, random_source = random_appendix(random_dir, random_artifacts)
    models = sorted({r["model"] for r in rows})
    lines = [
        "# The corpus",
        "",
        "Real architectures exported on every target and TFLite variant by `make corpus`",
        "(code in examples/corpus/, configs in configs/corpus/), trained on real data that ships",
        "inside installed packages (nothing downloaded): scikit-learn's handwritten digits, breast",
        "cancer and diabetes sets, and lines of Python's own standard-library sources; the audio",
        "model alone trains on generated tones (no package here ships recorded audio). Keras",
        "applications train from scratch on the digits at reduced resolutions for two CPUs:",
        "MobileNetV2 64x64, Xception 71x71, the other applications 32x32 (their minimum). Weights",
        "are cached (examples/trained.py) and retrained only when their code or data change.",
        "",
        f"- models: {len(models)}; rows: {len(rows)}; {_counts(rows)}",
    ]
    if wall_seconds is not None:
        scope = (f"models {', '.join(selected)} only (the other rows are earlier exports: see the dates below)" if selected
                 else "every model in one run")
        lines.append(f"- one `make corpus` run{f' (JOBS={jobs})' if jobs else ''}{', forced rebuild' if forced else ''} at commit {_commit()}: "
                     f"{scope}; wall time {wall_seconds:.0f} s ({wall_seconds / 60:.1f} min) on {os.cpu_count()} CPUs ({platform.machine()}); "
                     f"tfship exit code {export_code}"
                     + (f"; largest process peak RSS {peak_rss_bytes / 2**30:.2f} GB" if peak_rss_bytes else ""))
        if phases:
            lines.append("- of which: " + "; ".join(f"{name} {seconds:.0f} s" for name, seconds in phases.items()))
    elif run_lines:  # re-rendered from the reports: the run's own figures are kept
        lines += run_lines
    lines += [
        "- status: `passed`; `failed` = parity outside the budget (numbers in the reason); `error` = the",
        "  converter or runtime could not build/run that variant (op, layer, fixes tried); `refused` = the",
        "  config loader rejects the target for this model before anything runs, or the target refuses the",
        "  model at conversion (exit 2: an op it cannot take; nothing written, so no report record).",
        "- held-out task: the artifact run in its own runtime (tfship's runtimes, as parity runs it) on the model's",
        "  held-out set: accuracy (per character for the tagger) or R² for regressors, and in brackets its change from",
        "  the float reference's figure (examples/corpus/tasks.py); `-` = no artifact, or a model without a task.",
        "- seconds: the variant's conversion (or XLA compile) time; `*` = the whole target's build.",
        "",
    ]
    lines += _trained_section(config_dir, artifacts, models) + ["", "## Every cell (trained weights)", ""]
    lines += _rows_table(rows)
    if random_rows:
        lines += [""] + _changed(rows, random_rows)
        lines += [
            "", "## Appendix: random weights", "",
            "The Keras applications as the corpus held them before it was trained: `weights=None`, batch-norm",
            "statistics from one batch of generated images (smooth colour fields), pooled `features` only, parity on",
            f"generated images (configs in {random_dir}/). Kept to show what random weights tell about a target;",
            "the verdicts above are the ones users' trained models meet.",
            "",
            f"- rows from: {random_source}",
            f"- models: {len({r['model'] for r in random_rows})}; rows: {len(random_rows)}; {_counts(random_rows)}",
            "",
        ]
        lines += _rows_table(random_rows)
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
