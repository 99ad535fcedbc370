"""A self-contained HTML report: inline CSS and inline SVG, no scripts, no network.

Per model, per target (and variant), per output:
- the distribution of absolute error against the tolerance: a histogram over
  log-spaced bins with the tolerance marked, from the element sample
  (`parity.outputs.<o>.sample = {ref: [...], out: [...]}`) when the report has one;
  otherwise each parity case's max |error| against the tolerance, which every
  report has;
- reference vs artifact scatter, from the element sample (otherwise a note says
  the report holds no element values);
- per model, the speedup of each target over the eager model when benchmarks exist
  (p50 latencies otherwise).
"""
from __future__ import annotations

import html
import math
from typing import Iterable

from pipeline.reports.records import Record, bench_figures, fmt, iter_records, latency_p50, output_failed, record_bytes

WIDTH, HEIGHT = 360, 220
MARGIN = {"left": 52, "right": 12, "top": 22, "bottom": 40}
PASS, FAIL, INK, GRID, TOL = "#2e7d32", "#c62828", "#263238", "#cfd8dc", "#ef6c00"
SERIES = ("#1565c0", "#6a1b9a", "#00838f", "#9e9d24")

CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#263238;margin:24px;max-width:1200px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #cfd8dc}
h3{font-size:15px;margin:18px 0 6px} .muted{color:#607d8b}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #cfd8dc;padding:3px 8px;text-align:left}
th{background:#eceff1} .passed{color:#2e7d32;font-weight:600} .failed,.error{color:#c62828;font-weight:600}
.skipped{color:#607d8b;font-weight:600} .row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.card{border:1px solid #cfd8dc;border-radius:6px;padding:8px;background:#fafafa}
.card h4{margin:0 0 4px;font-size:13px} svg text{font:11px system-ui,sans-serif;fill:#263238}
.note{font-size:12px;color:#607d8b;max-width:360px}
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


# ------------------------------------------------------------------ SVG helpers


class Axis:
    """Maps data values to pixels, linear or log10."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float, log: bool = False):
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi <= lo:
            hi = lo + 1.0
        self.lo, self.hi, self.p0, self.p1, self.log = lo, hi, p0, p1, log

    def __call__(self, value: float) -> float:
        v = math.log10(value) if self.log else value
        return self.p0 + (v - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)

    def ticks(self) -> list[float]:
        if self.log:
            first, last = math.floor(self.lo), math.ceil(self.hi)
            step = max(1, (last - first) // 6)
            return [10.0**e for e in range(first, last + 1, step) if self.lo - 1e-9 <= e <= self.hi + 1e-9]
        span = self.hi - self.lo
        raw = span / 5
        mag = 10 ** math.floor(math.log10(raw))
        step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=raw)
        start = math.ceil(self.lo / step) * step
        return [start + i * step for i in range(int((self.hi - start) / step + 1e-9) + 1)]


def _tick_label(value: float, log: bool) -> str:
    if log:
        return f"1e{round(math.log10(value))}"
    return f"{value:.3g}"


def _frame(title: str, body: list[str], x_label: str, y_label: str) -> str:
    w, h = WIDTH, HEIGHT
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{esc(title)}">'
        f'<rect x="0" y="0" width="{w}" height="{h}" fill="white"/>'
        f'<text x="{w / 2:.1f}" y="14" text-anchor="middle" font-weight="600">{esc(title)}</text>'
        + "".join(body)
        + f'<text x="{(MARGIN["left"] + w - MARGIN["right"]) / 2:.1f}" y="{h - 6}" text-anchor="middle">{esc(x_label)}</text>'
        f'<text transform="translate(12 {(MARGIN["top"] + h - MARGIN["bottom"]) / 2:.1f}) rotate(-90)" text-anchor="middle">{esc(y_label)}</text>'
        "</svg>"
    )


def _axes(x: Axis | None, y: Axis, x_ticks: bool = True) -> list[str]:
    left, right = MARGIN["left"], WIDTH - MARGIN["right"]
    top, bottom = MARGIN["top"], HEIGHT - MARGIN["bottom"]
    out = []
    for t in y.ticks():
        py = y(t)
        out.append(f'<line x1="{left}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" stroke="{GRID}" stroke-width="0.6"/>')
        out.append(f'<text x="{left - 4}" y="{py + 3:.1f}" text-anchor="end">{_tick_label(t, y.log)}</text>')
    if x is not None and x_ticks:
        for t in x.ticks():
            px = x(t)
            out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{bottom}" stroke="{GRID}" stroke-width="0.6"/>')
            out.append(f'<text x="{px:.1f}" y="{bottom + 13}" text-anchor="middle">{_tick_label(t, x.log)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="{INK}" stroke-width="0.8"/>')
    return out


def _plot_box():
    return MARGIN["left"], WIDTH - MARGIN["right"], MARGIN["top"], HEIGHT - MARGIN["bottom"]


def error_histogram(errors: list[float], atol: float, rtol: float, ref_abs_max: float, title: str) -> str:
    """Histogram of |artifact - reference| over log-spaced bins; exact matches get their
    own bar at the left; the tolerance atol (and atol + rtol*max|ref|) are marked."""
    left, right, top, bottom = _plot_box()
    nonzero = [e for e in errors if e > 0 and math.isfinite(e)]
    exact = sum(1 for e in errors if e == 0)
    nonfinite = sum(1 for e in errors if not math.isfinite(e))
    band_hi = atol + rtol * ref_abs_max
    marks = [v for v in (atol, band_hi) if v > 0]
    lo = min(nonzero + marks, default=1e-8)
    hi = max(nonzero + marks, default=1.0)
    lo_e, hi_e = math.floor(math.log10(lo)), math.ceil(math.log10(hi) + 1e-12)
    if hi_e <= lo_e:
        hi_e = lo_e + 1
    bins_per_decade = 4 if hi_e - lo_e <= 6 else 2
    nbins = (hi_e - lo_e) * bins_per_decade
    counts = [0] * nbins
    for e in nonzero:
        i = int((math.log10(e) - lo_e) * bins_per_decade)
        counts[min(max(i, 0), nbins - 1)] += 1
    exact_w = 22
    x = Axis(10.0**lo_e, 10.0**hi_e, left + exact_w + 16, right, log=True)
    peak = max(counts + [exact, nonfinite, 1])
    y = Axis(0, peak, bottom, top)
    body = _axes(x, y)
    if exact:
        body.append(f'<rect x="{left + 2}" y="{y(exact):.1f}" width="{exact_w}" height="{bottom - y(exact):.1f}" fill="{PASS}" opacity="0.85"><title>{exact} exact (0)</title></rect>')
    body.append(f'<text x="{left + 2 + exact_w / 2}" y="{bottom + 13}" text-anchor="middle">0</text>')
    for i, count in enumerate(counts):
        if not count:
            continue
        b0 = 10.0 ** (lo_e + i / bins_per_decade)
        b1 = 10.0 ** (lo_e + (i + 1) / bins_per_decade)
        colour = PASS if b1 <= band_hi * (1 + 1e-9) else FAIL
        x0, x1 = x(b0), x(b1)
        body.append(
            f'<rect x="{x0:.1f}" y="{y(count):.1f}" width="{max(x1 - x0 - 1, 1):.1f}" height="{bottom - y(count):.1f}" fill="{colour}" opacity="0.85">'
            f"<title>{count} in [{b0:.2g}, {b1:.2g})</title></rect>"
        )
    if rtol > 0 and band_hi > atol > 0:
        body.append(f'<rect x="{x(atol):.1f}" y="{top}" width="{x(band_hi) - x(atol):.1f}" height="{bottom - top}" fill="{TOL}" opacity="0.12"><title>atol..atol+rtol*max|ref|</title></rect>')
    if atol > 0:
        body.append(f'<line x1="{x(atol):.1f}" x2="{x(atol):.1f}" y1="{top}" y2="{bottom}" stroke="{TOL}" stroke-width="2" stroke-dasharray="5 3"/>')
        on_left = x(atol) < (left + right) / 2
        body.append(f'<text x="{x(atol) + (4 if on_left else -4):.1f}" y="{top + 11}" text-anchor="{"start" if on_left else "end"}" fill="{TOL}">atol {atol:.2g}</text>')
    if nonfinite:
        body.append(f'<text x="{right - 4}" y="{top + 24}" text-anchor="end" fill="{FAIL}">{nonfinite} NaN/Inf</text>')
    return _frame(title, body, "|artifact − reference| (log)", "elements")


def case_error_chart(cases: list[tuple[str, float | None, bool]], atol: float, title: str) -> str:
    """Each parity case's max |error| (log scale) against atol, when no element sample exists."""
    left, right, top, bottom = _plot_box()
    values = [v for _, v, _ in cases if v is not None and v > 0]
    floor = min(values + [atol] if atol > 0 else values, default=1e-8) / 10
    hi = max(values + [atol, floor * 100])
    y = Axis(floor, hi * 2, bottom, top, log=True)
    body = _axes(None, y)
    n = max(len(cases), 1)
    slot = (right - left) / n
    for i, (label, value, passed) in enumerate(cases):
        v = value if value and value > 0 else floor
        px = left + slot * i + slot * 0.15
        colour = PASS if passed else FAIL
        body.append(
            f'<rect x="{px:.1f}" y="{y(v):.1f}" width="{max(slot * 0.7, 1):.1f}" height="{bottom - y(v):.1f}" fill="{colour}" opacity="0.85">'
            f"<title>{esc(label)}: max_abs {fmt(value, 4)}</title></rect>"
        )
        if not (value and value > 0):
            body.append(f'<rect x="{px:.1f}" y="{bottom - 3:.1f}" width="{max(slot * 0.7, 1):.1f}" height="3" fill="{colour}"><title>{esc(label)}: exact</title></rect>')
        if n <= 8 or i in (0, n - 1):
            body.append(f'<text x="{px + slot * 0.35:.1f}" y="{bottom + 12}" text-anchor="middle" font-size="8">{esc(label[:10])}</text>')
    if atol > 0:
        body.append(f'<line x1="{left}" x2="{right}" y1="{y(atol):.1f}" y2="{y(atol):.1f}" stroke="{TOL}" stroke-width="2" stroke-dasharray="5 3"/>')
        body.append(f'<text x="{right - 3}" y="{y(atol) - 4:.1f}" text-anchor="end" fill="{TOL}">atol {atol:.2g}</text>')
    if not values:
        body.append(f'<text x="{(left + right) / 2}" y="{(top + bottom) / 2}" text-anchor="middle" fill="{PASS}">every case exact (max_abs 0)</text>')
    return _frame(title, body, f"parity case ({len(cases)})", "max |error| (log)")


def layer_error_chart(loc: dict, title: str) -> str:
    """Error relative to each layer's range, by layer depth (log); the budget scaled to
    the layer is the dashed line; the first layer over it is marked."""
    left, right, top, bottom = _plot_box()
    rows = [r for r in loc.get("layers", []) if isinstance(r.get("rel_error"), (int, float))]
    share = float((loc.get("budget") or {}).get("range_share") or 0.0)
    values = [r["rel_error"] for r in rows if r["rel_error"] > 0]
    floor = min(values + ([share] if share > 0 else []), default=1e-8) / 10
    hi = max(values + [share, floor * 100])
    y = Axis(floor, hi * 2, bottom, top, log=True)
    depth = [r["index"] for r in rows] or [0]
    x = Axis(min(depth) - 0.5, max(depth) + 0.5, left, right)
    body = _axes(None, y)
    points = []
    for r in rows:
        v = r["rel_error"] if r["rel_error"] > 0 else floor
        px, py = x(r["index"]), y(v)
        points.append(f"{px:.1f},{py:.1f}")
        colour = FAIL if r.get("over_budget") else PASS
        radius = 5 if r["layer"] == loc.get("first_over_budget") else 3
        body.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{radius}" fill="{colour}"><title>{esc(r["layer"])} (#{r["index"]}): max_abs {fmt(r.get("max_abs"), 4)}, {fmt(r["rel_error"], 3)} of its range</title></circle>')
    if len(points) > 1:
        body.insert(len(body) - len(rows), f'<polyline points="{" ".join(points)}" fill="none" stroke="{INK}" stroke-width="0.8" opacity="0.5"/>')
    if share > 0:
        body.append(f'<line x1="{left}" x2="{right}" y1="{y(share):.1f}" y2="{y(share):.1f}" stroke="{TOL}" stroke-width="2" stroke-dasharray="5 3"/>')
        body.append(f'<text x="{right - 3}" y="{y(share) - 4:.1f}" text-anchor="end" fill="{TOL}">budget {share:.2g} of range</text>')
    first = loc.get("first_over_budget")
    if first:
        body.append(f'<text x="{left + 4}" y="{top + 12}" fill="{FAIL}">first over budget: {esc(first)}</text>')
    return _frame(title, body, f"layer depth ({len(rows)} compared, {loc.get('method')})", "max |error| / layer range (log)")


def scatter(ref: list[float], out: list[float], title: str) -> str:
    """Reference vs artifact values with the y = x line: points off the line are errors."""
    left, right, top, bottom = _plot_box()
    pairs = [(r, o) for r, o in zip(ref, out) if math.isfinite(r) and math.isfinite(o)]
    lo = min((min(r, o) for r, o in pairs), default=0.0)
    hi = max((max(r, o) for r, o in pairs), default=1.0)
    pad = (hi - lo) * 0.05 or 0.5
    x = Axis(lo - pad, hi + pad, left, right)
    y = Axis(lo - pad, hi + pad, bottom, top)
    body = _axes(x, y)
    body.append(f'<line x1="{x(lo - pad):.1f}" y1="{y(lo - pad):.1f}" x2="{x(hi + pad):.1f}" y2="{y(hi + pad):.1f}" stroke="{TOL}" stroke-width="1.2" stroke-dasharray="4 3"/>')
    for r, o in pairs:
        body.append(f'<circle cx="{x(r):.1f}" cy="{y(o):.1f}" r="2" fill="#1565c0" fill-opacity="0.55"/>')
    skipped = len(ref) - len(pairs)
    if skipped:
        body.append(f'<text x="{right - 4}" y="{top + 12}" text-anchor="end" fill="{FAIL}">{skipped} non-finite not shown</text>')
    return _frame(title, body, "reference (eager)", "artifact")


# ------------------------------------------------------------------ the report


def _sample(metrics: dict) -> tuple[list[float], list[float]] | None:
    sample = metrics.get("sample")
    if not isinstance(sample, dict):
        return None
    ref, out = sample.get("ref"), sample.get("out")
    if not isinstance(ref, list) or not isinstance(out, list) or not ref or len(ref) != len(out):
        return None
    as_float = lambda v: float("nan") if v is None else float(v)  # noqa: E731  JSON stores NaN as null
    return [as_float(v) for v in ref], [as_float(v) for v in out]


def output_cards(record: Record, output: str) -> list[str]:
    metrics = record.outputs.get(output) or {}
    atol, rtol = float(metrics.get("atol") or 0.0), float(metrics.get("rtol") or 0.0)
    cards = []
    sample = _sample(metrics)
    if sample:
        ref, out = sample
        errors = [abs(o - r) if math.isfinite(o) and math.isfinite(r) else float("inf") for r, o in zip(ref, out)]
        ref_abs_max = max((abs(r) for r in ref if math.isfinite(r)), default=0.0)
        svg = error_histogram(errors, atol, rtol, ref_abs_max, f"{output}: |error| vs tolerance")
        cards.append(_card(svg, f"{len(errors)} sampled elements; dashed line: atol; shaded: up to atol + rtol·max|ref|."))
        cards.append(_card(scatter(ref, out, f"{output}: reference vs artifact"), "Points on the dashed y = x line agree exactly."))
    else:
        cases = [(c.get("case", "?"), (c.get("outputs", {}).get(output) or {}).get("max_abs"), bool((c.get("outputs", {}).get(output) or {}).get("passed"))) for c in record.parity.get("cases") or []]
        if cases:
            svg = case_error_chart(cases, atol, f"{output}: max |error| per case vs atol")
            cards.append(_card(svg, "This report holds no element sample, so each parity case's worst element is shown against atol."))
        cards.append(f'<div class="card note">No reference/artifact element values in this report: the scatter needs <code>parity.outputs.{esc(output)}.sample</code>.</div>')
    return cards


def _card(svg: str, note: str) -> str:
    return f'<div class="card">{svg}<div class="note">{esc(note)}</div></div>'


def _metrics_table(record: Record) -> str:
    rows = ["<table><tr><th>output</th><th>result</th><th>max_abs</th><th>max_rel</th><th>rmse</th><th>cosine</th><th>mismatch</th><th>atol</th><th>rtol</th></tr>"]
    for name, m in record.outputs.items():
        bad = output_failed(record, name)
        rows.append(
            f"<tr><td>{esc(name)}</td><td class=\"{'failed' if bad else 'passed'}\">{'FAIL' if bad else 'pass'}</td>"
            + "".join(f"<td>{esc(fmt(m.get(k), 4))}</td>" for k in ("max_abs", "max_rel", "rmse", "cosine", "mismatch_fraction", "atol", "rtol"))
            + "</tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def speedup_chart(groups: list[tuple[str, dict[int, float]]], title: str) -> str:
    """Horizontal bars: one row per artifact, one bar per batch size, log scale when the
    speedups span more than a decade; the dashed line is 1x (as fast as eager)."""
    series = sorted({b for _, values in groups for b in values})
    bar_h, gap, label_w = 9, 8, 130
    row_h = bar_h * len(series) + gap
    width = 560
    height = MARGIN["top"] + 18 + row_h * len(groups) + MARGIN["bottom"]
    left, right, top = label_w, width - 40, MARGIN["top"] + 18
    bottom = top + row_h * len(groups)
    values = [v for _, vals in groups for v in vals.values() if v > 0]
    lo, hi = min(values + [1.0]), max(values + [1.0])
    log = hi / lo > 10
    x = Axis(lo / 1.5 if log else 0.0, hi * 1.3, left, right, log=log)
    body = []
    for t in x.ticks():
        px = x(t)
        body.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{bottom}" stroke="{GRID}" stroke-width="0.6"/>')
        body.append(f'<text x="{px:.1f}" y="{bottom + 13}" text-anchor="middle">{_tick_label(t, log) if log else f"{t:.3g}"}×</text>')
    base = x(x.lo if not log else 10.0**x.lo)
    for g, (label, vals) in enumerate(groups):
        y0 = top + g * row_h + gap / 2
        body.append(f'<text x="{left - 6}" y="{y0 + bar_h * len(series) / 2 + 4:.1f}" text-anchor="end">{esc(label[:24])}</text>')
        for s_i, batch in enumerate(series):
            if batch not in vals or vals[batch] <= 0:
                continue
            v = vals[batch]
            colour = SERIES[s_i % len(SERIES)]
            yy = y0 + s_i * bar_h
            body.append(f'<rect x="{base:.1f}" y="{yy:.1f}" width="{max(x(v) - base, 1):.1f}" height="{bar_h - 1}" fill="{colour}"><title>{esc(label)} batch {batch}: {v:.3g}× eager</title></rect>')
            body.append(f'<text x="{x(v) + 3:.1f}" y="{yy + bar_h - 1:.1f}" font-size="9">{v:.3g}×</text>')
    one = x(1.0)
    body.append(f'<line x1="{one:.1f}" x2="{one:.1f}" y1="{top}" y2="{bottom}" stroke="{TOL}" stroke-width="1.5" stroke-dasharray="5 3"/>')
    body.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="{INK}" stroke-width="0.8"/>')
    for s_i, batch in enumerate(series):
        lx = left + s_i * 80
        body.append(f'<rect x="{lx}" y="{MARGIN["top"] + 2}" width="9" height="9" fill="{SERIES[s_i % len(SERIES)]}"/><text x="{lx + 12}" y="{MARGIN["top"] + 10}">batch {batch}</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>'
        f'<text x="{width / 2:.1f}" y="14" text-anchor="middle" font-weight="600">{esc(title)}</text>'
        + "".join(body)
        + f'<text x="{(left + right) / 2:.1f}" y="{height - 8}" text-anchor="middle">speedup over eager (eager p50 / p50{", log" if log else ""})</text></svg>'
    )


def _speedups(report: dict) -> str | None:
    """Speedup over the eager model per artifact and batch, from `tfship bench` figures."""
    groups = []
    graph = ((report.get("baselines") or {}).get("graph")) or {}
    for label, entry in [("tf.function", graph)] + [(r.label, r.entry) for r in iter_records(report)]:
        figures = bench_figures(entry) if entry else {}
        values = {b: float(f["speedup_vs_eager"]) for b, f in figures.items() if isinstance(f.get("speedup_vs_eager"), (int, float))}
        if values:
            groups.append((label, values))
    if len(groups) <= (1 if graph else 0):
        return None
    model = report.get("model", "?")
    svg = speedup_chart(groups, f"{model}: speedup over eager (p50)")
    return _card(svg, "eager p50 / artifact p50 at the same batch; above the dashed line is faster than calling the model eagerly.")


def _model_section(report: dict) -> str:
    model = report.get("model", "?")
    parts = [f'<h2 id="{esc(model)}">{esc(model)} <span class="{esc(report.get("status", ""))}">{esc(report.get("status", ""))}</span></h2>']
    parts.append(f'<div class="muted">config sha256 {esc(str(report.get("config_sha256", ""))[:12])} · updated {esc(report.get("updated", "-"))}</div>')
    speed = _speedups(report)
    if speed:
        parts.append(f'<div class="row">{speed}</div>')
    for record in iter_records(report):
        status = record.status
        optional = " (optional)" if record.target_entry.get("optional") else ""
        parts.append(f'<h3>{esc(record.label)} <span class="{esc(status)}">{esc(status)}</span>{esc(optional)} <span class="muted">{record_bytes(record)} bytes</span></h3>')
        message = record.entry.get("message") or record.target_entry.get("message")
        if status == "error" and message:
            parts.append(f"<pre>{esc(message)}</pre>")
        for failure in record.parity.get("failures") or []:
            parts.append(f'<div class="failed">{esc(failure)}</div>')
        if record.outputs:
            parts.append(_metrics_table(record))
            for output in record.outputs:
                parts.append(f'<div class="row">{"".join(output_cards(record, output))}</div>')
        loc = record.entry.get("localization")
        if loc and loc.get("layers"):
            svg = layer_error_chart(loc, f"{record.label}: error by layer depth")
            note = "each compared layer: max |error| over the layer's own range; red: over the failing output's budget scaled to that layer."
            parts.append(f'<div class="row">{_card(svg, note)}</div>')
    return "\n".join(parts)


def _conversion_seconds(record: Record) -> float | None:
    info = record.entry.get("info") or {}
    if info.get("conversion_seconds") is not None:
        return info["conversion_seconds"]
    return (record.target_entry.get("timings") or {}).get("build_s")


def verdict_table(reports: list[dict]) -> str:
    """One row per model, target and variant: status, worst max_abs, size, conversion
    seconds and, for every non-pass (and weak evidence), the reason in one line."""
    from pipeline.reports.verdict_lines import entry_verdicts

    rows = []
    for report in reports:
        verdicts = {}
        for name, entry in (report.get("targets") or {}).items():
            verdicts.update({(v.model, v.target): v for v in entry_verdicts(report.get("model", "?"), name, entry)})
        for r in iter_records(report):
            verdict = verdicts.get((r.model, r.label))
            worst = max((m.get("max_abs") or 0.0 for m in r.outputs.values()), default=None)
            reason = verdict.line_reason() if verdict else ""
            rows.append(
                f'<tr><td><a href="#{esc(r.model)}">{esc(r.model)}</a></td><td>{esc(r.label)}</td><td class="{esc(r.status)}">{esc(r.status)}</td>'
                f"<td>{esc(fmt(worst, 4))}</td><td>{record_bytes(r)}</td><td>{esc(fmt(_conversion_seconds(r)))}</td>"
                f"<td>{esc(fmt(latency_p50(r.entry)))}</td><td>{esc(reason)}</td></tr>"
            )
    return (
        "<table><tr><th>model</th><th>target</th><th>status</th><th>max_abs (worst output)</th><th>bytes</th>"
        "<th>conversion s</th><th>p50 ms</th><th>reason</th></tr>" + "".join(rows) + "</table>"
    )


def _versions_line(reports: list[dict]) -> str:
    versions = {}
    for report in reports:
        versions.update(report.get("versions") or {})
    return f'<div class="muted">{len(reports)} model(s) · ' + esc(", ".join(f"{k} {v}" for k, v in sorted(versions.items()))) + "</div>"


def render_html(reports: Iterable[dict], title: str = "tfship parity") -> str:
    reports = sorted(reports, key=lambda r: r.get("model", ""))
    head = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'; img-src data:">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
    )
    summary = f"<h1>{esc(title)}</h1>" + _versions_line(reports) + verdict_table(reports)
    return head + summary + "\n".join(_model_section(r) for r in reports) + "</body></html>\n"


def render_fragment(reports: Iterable[dict], title: str = "tfship parity") -> str:
    """The same content without the document around it (for Jupyter's _repr_html_);
    the style is scoped to the fragment's own container."""
    reports = sorted(reports, key=lambda r: r.get("model", ""))
    scoped = "".join(f".tfship {rule}}}" for rule in CSS.replace("\n", "").split("}") if rule.strip() and not rule.strip().startswith("body"))
    body = f"<h1>{esc(title)}</h1>" + _versions_line(reports) + verdict_table(reports) + "\n".join(_model_section(r) for r in reports)
    return f'<div class="tfship"><style>{scoped}</style>{body}</div>'
