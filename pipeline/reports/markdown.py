"""Markdown renderers: a model's report.md (parity, then the benchmark section) and the
short CI job summary over several reports."""
from __future__ import annotations

from pipeline.reports.records import fmt, iter_records, latency_p50, record_bytes, worst_output


def _parity_rows(prefix: str, entry: dict) -> list[str]:
    rows = []
    parity = entry.get("parity") or {}
    for name, m in (parity.get("outputs") or {}).items():
        mark = "pass" if m.get("passed") else "FAIL"
        audit = m.get("audit") or {}
        needed = max(audit.get("needed_atol") or 0.0, audit.get("needed_atol_floor") or 0.0) if audit else None
        looseness = f"{fmt(audit.get('looseness'))}x" + (" **loose**" if audit.get("loose") else "") if audit.get("looseness") else "-"
        rows.append(
            f"| {prefix} | {name} | {mark} | {fmt(m.get('max_abs'))} | {fmt(m.get('max_rel'))} | {fmt(m.get('rmse'))} | "
            f"{fmt(m.get('cosine'))} | {fmt(m.get('mismatch_fraction'))} | {fmt(m.get('atol'))} | {fmt(needed)} | {looseness} |"
        )
    return rows


def _localization_lines(label: str, loc: dict) -> list[str]:
    """One table per localized artifact: error by layer, first over budget marked."""
    lines = [f"### {label}: where it diverges ({loc.get('method')})", ""]
    if loc.get("method") == "none":
        return lines + [f"Not localized: {loc.get('note', '')}", ""]
    first, growth = loc.get("first_over_budget"), loc.get("largest_growth")
    lines.append(
        f"First layer over the budget scaled to its range: **{first or 'none'}**"
        + (f"; error grows most at **{growth}**" if growth else "")
        + f" ({loc.get('note', '')}; {loc.get('seconds', 0):.1f} s)."
    )
    if loc.get("unmatched"):
        lines.append(f"Layers without a tensor of their own in the artifact: {', '.join(loc['unmatched'])}.")
    lines += ["", "| # | layer | tensor | max_abs | rel. to range | cosine | SQNR dB | budget | over |", "|---|---|---|---|---|---|---|---|---|"]
    for row in loc.get("layers", []):
        mark = "**yes**" if row.get("over_budget") else "no"
        name = f"**{row['layer']}**" if row["layer"] == first else row["layer"]
        tensor = str(row.get("tensor", ""))
        tensor = tensor if len(tensor) <= 60 else tensor[:57] + "..."
        lines.append(
            f"| {row['index']} | {name} | `{tensor}` | {fmt(row.get('max_abs'))} | {fmt(row.get('rel_error'))} | "
            f"{fmt(row.get('cosine'))} | {fmt(row.get('sqnr_db'))} | {fmt(row.get('budget_atol'))} | {mark} |"
        )
    return lines + [""]


def _verdict_rows(prefix: str, entry: dict) -> list[str]:
    """Per output: the pooled figures the verdict used, and the criterion that decided it
    (the failing one with the largest share of its allowance used, or the closest to failing)."""
    rows = []
    for name, m in ((entry.get("parity") or {}).get("outputs") or {}).items():
        criteria = m.get("criteria")
        if not criteria:
            continue
        stats = m.get("statistics") or {}
        key = m.get("decided_by")
        c = criteria.get(key) or {}
        rows.append(
            f"| {prefix} | {name} | {fmt(m.get('sqnr_db'))} | {fmt(stats.get('mean_abs_of_range'))} | {fmt(stats.get('p99_9_abs'))} | "
            f"{key or '-'} | {fmt(c.get('value'))} | {fmt(c.get('limit'))} | {fmt(c.get('margin'))} | {fmt(c.get('used'))} |"
        )
    return rows


def _table_text(text: str) -> str:
    """Whole text in one table cell: no line breaks, pipes escaped (never cut)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _diagnosis_lines(report: dict) -> list[str]:
    """The quantization debugger's table and fix for every variant that has one."""
    lines = []
    for record in iter_records(report):
        label, sub = record.label, record.entry
        diagnosis = sub.get("diagnosis") or {}
        table = diagnosis.get("quantization_debugger")
        if isinstance(table, dict):
            lines += ["", f"### {label}: quantization debugger ({table.get('layers_checked', '?')} tensors checked)", ""]
            lines.append("| layer | tensor | op | RMSE/scale | rounded to zero | max abs error |")
            lines.append("|---|---|---|---|---|---|")
            for row in table.get("worst_layers") or []:
                lines.append(
                    f"| {_table_text(row.get('layer'))} | `{_table_text(row.get('tensor'))}` | {row.get('op')} | {fmt(row.get('rmse_over_scale'))} | "
                    f"{fmt(row.get('rounded_to_zero'))} | {fmt(row.get('max_abs_error'))} |"
                )
            if table.get("note"):
                lines += ["", table["note"]]
            if table.get("suggested_fix"):
                lines += ["", f"Fix: {table['suggested_fix']}"]
        elif isinstance(table, str):
            lines += ["", f"### {label}: quantization debugger", "", f"The debugger {table}."]
        elif diagnosis.get("suggested_fix"):
            lines += ["", f"### {label}: diagnosis", "", f"Fix: {diagnosis['suggested_fix']}"]
    return lines


def render_markdown(report: dict) -> str:
    from pipeline.reports.verdict_lines import report_verdicts

    lines = [f"# tfship report: {report['model']}", ""]
    lines.append(f"Status: **{report['status']}** · updated {report['updated']} · config sha256 `{report['config_sha256'][:12]}`")
    lines.append("")
    lines.append("| target | status | max_abs | reason |")
    lines.append("|---|---|---|---|")
    for verdict in report_verdicts(report):
        lines.append(f"| {verdict.target} | {verdict.status} | {fmt(verdict.max_abs)} | {_table_text(verdict.line_reason())} |")
    lines.append("")
    lines.append("| target | status | files | bytes | build s | parity s | note |")
    lines.append("|---|---|---|---|---|---|---|")
    for name, entry in sorted(report["targets"].items()):
        files = entry.get("files", [])
        timings = entry.get("timings", {})
        note = _table_text(entry.get("message", "").strip().splitlines()[0]) if (entry.get("message") or "").strip() else ""
        lines.append(
            f"| {name} | {entry.get('status')} | {len(files)} | {sum(f['bytes'] for f in files)} | "
            f"{fmt(timings.get('build_s'))} | {fmt(timings.get('parity_s'))} | {note} |"
        )
    unchecked = [(f["path"], f["unchecked"]) for _, entry in sorted(report["targets"].items()) for f in entry.get("files", []) if f.get("unchecked")]
    if unchecked:
        lines += ["", "Unchecked files (shipped, but no parity run executed them):", ""]
        lines += [f"- `{path}`: {why}" for path, why in unchecked]
    lines += ["", "## Parity (worst over cases)", ""]
    lines.append("| target | output | result | max_abs | max_rel | rmse | cosine | mismatch | atol | needed atol | budget / needed |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    records = list(iter_records(report))
    for record in records:
        lines += _parity_rows(record.label, record.entry)
    verdicts = []
    for record in records:
        verdicts += _verdict_rows(record.label, record.entry)
    if verdicts:
        lines += ["", "## Verdicts (every element of every case, pooled)", ""]
        lines.append("| target | output | SQNR dB | mean error / range | p99.9 error | decided by | value | limit | margin | used |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        lines += verdicts
    extra = []
    for record in records:
        label, sub = record.label, record.entry
        parity = sub.get("parity") or {}
        cls = parity.get("classifier")
        if cls:
            extra.append(
                f"- {label}: top-1 agreement {fmt(cls.get('top1_agreement'))} over {cls.get('samples')} samples"
                + (f", top-{cls['top_k']} agreement {fmt(cls.get('topk_agreement'))}" if "top_k" in cls else "")
                + (f", accuracy {fmt(cls.get('accuracy'))} vs reference {fmt(cls.get('reference_accuracy'))} (delta {cls.get('accuracy_delta', 0):+.4f})" if "accuracy" in cls else "")
            )
        decided = parity.get("decided_by")
        if decided:
            extra.append(
                f"- {label}: decided by `{decided['output']}` {decided['criterion']}: {fmt(decided.get('value'))} "
                f"(limit {fmt(decided.get('limit'))}, margin {fmt(decided.get('margin'))}, {fmt(decided.get('used'))} of the allowance used)"
            )
        info = sub.get("info") or {}
        if info.get("note_static_batch"):  # the file runs one fixed batch only: say so
            extra.append(f"- {label}: {info['note_static_batch']}")
        for path, why in (sub.get("unchecked_files") or {}).items():  # shipped, but parity never ran it
            extra.append(f"- {label}: `{path}` NOT CHECKED by parity: {why}")
        for out, why in (parity.get("weak_evidence") or {}).items():
            extra.append(f"- {label}: weak evidence for `{out}`: {why}")
        for failure in parity.get("failures") or []:
            extra.append(f"- {label}: FAILED {failure}")
        for warning in parity.get("warnings") or []:
            extra.append(f"- {label}: warning: {warning}")
    if extra:
        lines += ["", "## Notes", ""] + extra
    located = [(record.label, record.entry["localization"]) for record in iter_records(report) if record.entry.get("localization")]
    if located:
        lines += ["", "## Layer localization", ""]
        for label, loc in located:
            lines += _localization_lines(label, loc)
    diagnosis = _diagnosis_lines(report)
    if diagnosis:
        lines += ["", "## Diagnosis"] + diagnosis
    from pipeline.reports.repairs import render_repairs_markdown

    repairs = render_repairs_markdown(report)
    if repairs:
        lines += ["", repairs.rstrip("\n")]
    benchmark = render_benchmark_markdown(report)
    if benchmark:
        lines += ["", benchmark.rstrip("\n")]
    lines += ["", "Tool versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    return "\n".join(lines)


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


# --------------------------------------------------------------------------- benchmark


def _rows(report: dict) -> list[tuple[str, str, dict]]:
    """(label, call, benchmark) for the baselines, then every artifact."""
    rows = []
    for kind, baseline in (report.get("baselines") or {}).items():
        rows.append((f"{kind} (baseline)", "TensorFlow", baseline))
    for record in iter_records(report):
        bench = record.entry.get("benchmark")
        if bench is not None:
            rows.append((record.label, bench.get("call", "-"), bench))
    return rows


def _speedup(value: float) -> str:
    return f"{value:.0f}x" if value >= 100 else f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def _cell(figure: dict | None, skipped: str | None) -> tuple[str, str, str]:
    if figure is None:
        return ("skipped" if skipped else "-", "-", "-")
    latency = f"{figure['p50_ms']:.3g} / {figure['p90_ms']:.3g} / {figure['p99_ms']:.3g}" + ("" if figure.get("stable", True) else " (unstable)")
    throughput = f"{figure['throughput_sps']:,.0f}" if figure.get("throughput_sps") else "-"
    speed = _speedup(figure["speedup_vs_eager"]) if figure.get("speedup_vs_eager") else "-"
    return latency, throughput, speed


def render_benchmark_markdown(report: dict) -> str:
    """The `## Benchmark` section of report.md: a speedup table and the harness check."""
    run = report.get("benchmark")
    rows = _rows(report)
    if not run or not rows:
        return ""
    settings = run.get("settings", {})
    batches = [str(b) for b in settings.get("batches", [1])]
    host = run.get("host", {})
    lines = ["## Benchmark", ""]
    lines.append(
        f"Measured {run.get('measured', '?')} on {host.get('cpus', '?')} CPU(s) ({host.get('cpu', '?')}), "
        f"{settings.get('threads', '?')} thread(s) per runtime. Latency p50 / p90 / p99 in ms; throughput in samples/s "
        f"(batch / p50); speedup = eager p50 / p50 at the same batch."
    )
    lines.append("")
    header = "| artifact | timed call |"
    rule = "|---|---|"
    for b in batches:
        header += f" batch {b} latency ms | batch {b} samples/s | batch {b} speedup |"
        rule += "---|---|---|"
    lines += [header, rule]
    notes = []
    for label, call, bench in rows:
        line = f"| {label} | {call} |"
        skipped = bench.get("skipped") or {}
        for b in batches:
            cells = _cell((bench.get("batches") or {}).get(b), skipped.get(b) or skipped.get("all"))
            line += " " + " | ".join(cells) + " |"
        lines.append(line)
        for key, why in skipped.items():
            notes.append(f"- {label}: {'not timed' if key == 'all' else 'batch ' + key + ' skipped'}: {why}")
        for note in bench.get("notes") or []:
            notes.append(f"- {label}: {note}")
    bare = [(label, bench["bare_loop"]) for label, _, bench in rows if "bare_loop_ms" in (bench.get("bare_loop") or {})]
    if bare:
        budget = bare[0][1].get("budget", 0.05)
        lines += [
            "",
            f"Harness overhead at batch 1: bare `for` loops around the runtime call alternate with the harness's per-call "
            f"timing of the same number of calls; overhead = median harness / bare - 1 (budget ±{budget:.0%}).",
            "",
            "| artifact | runtime call | bare loop ms | harness ms | overhead | bench p50 ms | p50 vs bare |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, b in bare:
            mark = "" if b.get("within_budget") else " (over budget)"
            versus = f"{b['bench_p50_vs_bare']:+.1%}" if b.get("bench_p50_vs_bare") is not None else "-"
            lines.append(
                f"| {label} | {b['call']} | {b['bare_loop_ms']:.4g} | {b['harness_mean_ms']:.4g} | {b['overhead']:+.1%}{mark} | {b['bench_p50_ms']:.4g} | {versus} |"
            )
    load = run.get("load_average") or {}
    if load:
        notes.append(
            f"- Load average (1 min) {load.get('before', '?')} before and {load.get('after', '?')} after timing on {host.get('cpus', '?')} CPU(s): "
            "other processes competing for the CPUs widen p90/p99 and move every figure."
        )
    tf_threads = run.get("tensorflow_threads") or {}
    if tf_threads.get("note"):
        notes.append(f"- TensorFlow threads: {tf_threads.get('intra_op_parallelism_threads')} intra-op, {tf_threads.get('inter_op_parallelism_threads')} inter-op ({tf_threads['note']})")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"
