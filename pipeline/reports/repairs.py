"""How a quantization repair search reads in report.md (`## Quantization repairs`).

The search itself belongs to the target (`Target.repair`, e.g. targets/support/repair/
for tflite); a run records it under the failed variant's entry as `repair`.
"""
from __future__ import annotations

from pipeline.reports.records import fmt, iter_records


def _damage_lines(ranking: dict) -> list[str]:
    """What int8 damages, as measured before the search: the layers with figures, worst first."""
    figures = ranking.get("figures") or {}
    rows = [layer for layer in ranking.get("layers") or [] if layer in figures][:8]
    lines = []
    for name, share in (ranking.get("inputs") or {}).items():
        lines.append(f"Input `{name}`: int8 rounds {100 * share:.1f}% of its non-zero calibration values to zero.")
    if rows:
        lines += ["", "| layer | RMSE/scale | rounded to zero | error growth | weights rounded to zero |", "|---|---|---|---|---|"]
        for layer in rows:
            f = figures[layer]
            lines.append(f"| {layer} | {fmt(f.get('rmse_over_scale'))} | {fmt(f.get('rounded_to_zero'))} | {fmt(f.get('growth'))} | {fmt(f.get('weights_zeroed'))} |")
    return lines


def render_repairs_markdown(report: dict) -> str:
    """The `## Quantization repairs` section: one block per searched variant."""
    blocks = []
    for record in iter_records(report):
        variant, search = record.key, record.entry.get("repair")
        if not search:
            continue
        lines = [f"### {record.target}/{variant}", "", search["summary"], ""]
        lines.append(f"Blame order ({search.get('blame_source')}): {', '.join(search.get('blame') or []) or 'none'}.")
        lines += _damage_lines(search.get("ranking") or {})
        for inp, c in (search.get("calibration_coverage") or {}).items():
            lines.append(
                f"Calibration coverage of input `{inp}`: {100 * c['outside_share']:.2f}% of parity values outside the calibrated "
                f"[{c['calibrated_min']:.4g}, {c['calibrated_max']:.4g}] ({c['calibrated_samples']} samples)."
            )
        sizes = search.get("sizes") or {}
        lines += ["", "| # | recipe | result | bytes | max_abs | top-1 | accuracy | s |", "|---|---|---|---|---|---|---|---|"]
        for i, c in enumerate(search.get("tried") or [], 1):
            r = c["recipe"]
            what = "; ".join(
                part
                for part in (
                    r["base"],
                    f"float: {', '.join(r['float_layers'])}" if r.get("float_layers") else "",
                    f"float weights: {', '.join(r['float_weights'])}" if r.get("float_weights") else "",
                    f"int16: {', '.join(r['int16_layers'])}" if r.get("int16_layers") else "",
                    "float inputs" if r.get("float_inputs") else "",
                    f"{r['calibration_samples']} calibration samples" if r.get("calibration_samples") else "",
                )
                if part
            )
            lines.append(
                f"| {i} | {what} | {c['status']} | {fmt(c.get('size_bytes'))} | {fmt(c.get('max_abs'))} | "
                f"{fmt(c.get('top1_agreement'))} | {fmt(c.get('accuracy'))} | {fmt(c.get('seconds'))} |"
            )
        lines.append("")
        lines.append(
            f"Sizes: float32 {fmt(sizes.get('float32_bytes'))} bytes, plain {search['variant']} {fmt(sizes.get(search['variant'] + '_bytes'))} bytes. "
            f"Budget: {search['budget']['conversions']} conversions, {search['budget']['seconds']:g} s; used {search['conversions']} "
            f"in {search['seconds']:.1f} s ({search['stopped']}). Quantizer: {search.get('engine')}."
        )
        for finding in search.get("findings") or []:
            lines += ["", f"Noticed: {finding['text']}."]
        if search.get("found"):
            lines += ["", "Verified recipe (add under the target in the config):", "", "```yaml", search["config_snippet"], "```"]
        blocks.append("\n".join(lines))
    if not blocks:
        return ""
    return "## Quantization repairs\n\n" + "\n\n".join(blocks) + "\n"
