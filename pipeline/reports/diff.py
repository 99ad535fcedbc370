"""`tfship diff OLD NEW`: how parity, sizes and latencies moved between two releases.

OLD and NEW are each a release folder (with manifest.json), an artifacts folder
(`<model>/report.json` below it) or one report.json. Per model / target / variant /
output it compares:

- parity metrics (max_abs, mean_abs, rmse, mismatch_fraction, 1 - cosine, NaN/Inf
  count): worse when `new - old > margin * |old| + floor`, where floor is the larger
  of `--floor` and 5% of the output's atol, so noise far below the tolerance
  (1e-9 -> 2e-9) is never "worse";
- the status: passed -> failed/error is worse, as is a target or output that vanished;
- classifier top-1 agreement and accuracy: worse when they drop by more than 0.01;
- artifact bytes: worse when they grow by more than `--margin` and 4 KiB;
- benchmark p50 latency (when both sides have it): worse when it grows by more than
  `--latency-margin` and 0.05 ms;
- the eager model's own outputs on the parity inputs: compared element by element
  when reports carry `parity.outputs.<o>.sample`, else through their range and
  spread; moving by more than 1e-4 of the range means the model computes something
  else than before (new weights, a changed preprocessing, a dependency that moved
  numerics). That is "changed", and fails the diff unless `--accept-model-change`.

Exit codes: 0 nothing got worse; 1 something got worse (each finding names the model,
target and output); 2 bad input (a path that is neither a release nor a report).
Findings on targets the NEW config marks optional are shown but do not fail the diff,
nor does a model missing from NEW (a release of fewer models); a target or output
that vanished from a model does.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.reports.records import Record, bench_figures, fmt, iter_records, output_names, record_bytes
from pipeline.errors import PipelineError

DEFAULT_MARGIN = 0.10
DEFAULT_FLOOR = 1e-6
DEFAULT_LATENCY_MARGIN = 0.25
ATOL_FRACTION = 0.05  # changes below 5% of the tolerance do not count
ACCURACY_DROP = 0.01
SIZE_FLOOR_BYTES = 4096
LATENCY_FLOOR_MS = 0.05
REFERENCE_MOVE = 1e-4  # of the output's range

# metric -> how to read it: "up" = larger is worse
ERROR_METRICS = ("max_abs", "mean_abs", "rmse", "mismatch_fraction")


class DiffInputError(PipelineError):
    exit_code = 2


@dataclass(frozen=True)
class Margins:
    rel: float = DEFAULT_MARGIN
    floor: float = DEFAULT_FLOOR
    latency_rel: float = DEFAULT_LATENCY_MARGIN
    accept_model_change: bool = False


@dataclass(frozen=True)
class Finding:
    model: str
    target: str  # target[/variant], or '(model)' for the eager outputs
    output: str  # output name, or '' for target-wide figures (bytes, latency, status)
    metric: str
    old: float | str | None
    new: float | str | None
    verdict: str  # worse | better | changed | accepted | added | removed | same
    optional: bool = False
    note: str = ""

    @property
    def fails(self) -> bool:
        if self.target == "(model)" and self.metric == "model":
            return False
        return not self.optional and self.verdict in ("worse", "removed", "changed")

    def text(self) -> str:
        where = f"{self.model} {self.target}" + (f" output '{self.output}'" if self.output else "")
        move = f"{fmt(self.old, 4)} -> {fmt(self.new, 4)}"
        if isinstance(self.old, (int, float)) and isinstance(self.new, (int, float)) and self.old:
            move += f" ({(self.new - self.old) / abs(self.old) * 100:+.1f}%)"
        tag = self.verdict.upper() + (" (optional target)" if self.optional else "")
        return f"{tag}: {where}: {self.metric} {move}" + (f" [{self.note}]" if self.note else "")


@dataclass
class DiffResult:
    findings: list[Finding]
    compared: int  # output comparisons made

    @property
    def failing(self) -> list[Finding]:
        return [f for f in self.findings if f.fails]

    @property
    def exit_code(self) -> int:
        return 1 if self.failing else 0

    def lines(self) -> list[str]:
        return [f.text() for f in self.findings if f.verdict != "same"]

    def to_json(self) -> dict:
        return {"compared": self.compared, "failing": len(self.failing), "findings": [asdict(f) for f in self.findings if f.verdict != "same"]}


# ------------------------------------------------------------------- loading


def load_reports(path: Path) -> dict[str, dict]:
    """{model: report} from a release folder, an artifacts folder or one report.json."""
    path = Path(path)
    if path.is_file():
        report = _read(path)
        return {report.get("model", path.parent.name): report}
    if not path.is_dir():
        raise DiffInputError(f"{path} does not exist; expected a release folder (with manifest.json), an artifacts folder or a report.json")
    manifest = path / "manifest.json"
    if manifest.is_file():
        models = list((_read(manifest).get("models") or {}))
        files = [path / m / "report.json" for m in models]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DiffInputError(f"release {path} lists models without a report: {', '.join(missing)}")
    else:
        files = sorted(path.glob("*/report.json"))
        if not files:
            raise DiffInputError(f"{path} has neither manifest.json nor <model>/report.json files; expected a release folder or an artifacts folder")
    reports = {}
    for file in files:
        report = _read(file)
        reports[report.get("model", file.parent.name)] = report
    return reports


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DiffInputError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise DiffInputError(f"{path} is not a report (expected a JSON object)")
    return data


# ----------------------------------------------------------------- comparing


def _worse_up(old: float | None, new: float | None, margins: Margins, floor: float) -> str:
    if old is None or new is None:
        return "same" if old == new else "changed"
    if new - old > margins.rel * abs(old) + floor:
        return "worse"
    if old - new > margins.rel * abs(old) + floor:
        return "better"
    return "same"


def _compare_record(old: Record, new: Record, margins: Margins, out: list[Finding]) -> int:
    optional = bool(new.target_entry.get("optional"))
    label = new.label
    compared = 0

    def add(output, metric, a, b, verdict, note=""):
        out.append(Finding(new.model, label, output, metric, a, b, verdict, optional, note))

    if old.status != new.status:
        verdict = "worse" if old.status == "passed" else "better" if new.status == "passed" else "changed"
        note = (new.entry.get("message") or new.target_entry.get("message") or "; ".join(new.parity.get("failures") or []))[:200]
        add("", "status", old.status, new.status, verdict, note)
    for output, m_new in new.outputs.items():
        m_old = old.outputs.get(output)
        if m_old is None:
            add(output, "output", None, "present", "added")
            continue
        compared += 1
        atol = float(m_new.get("atol") or m_old.get("atol") or 0.0)
        floor = max(margins.floor, ATOL_FRACTION * atol)
        for metric in ERROR_METRICS:
            metric_floor = floor if metric != "mismatch_fraction" else max(margins.floor, 1e-4)
            verdict = _worse_up(m_old.get(metric), m_new.get(metric), margins, metric_floor)
            add(output, metric, m_old.get(metric), m_new.get(metric), verdict)
        c_old, c_new = m_old.get("cosine"), m_new.get("cosine")
        if c_old is not None and c_new is not None:
            verdict = _worse_up(1.0 - c_old, 1.0 - c_new, margins, margins.floor)
            add(output, "cosine", c_old, c_new, verdict)
        n_old, n_new = int(m_old.get("nonfinite") or 0), int(m_new.get("nonfinite") or 0)
        add(output, "nonfinite", n_old, n_new, "worse" if n_new > n_old else "better" if n_new < n_old else "same")
    for output in old.outputs:
        if output not in new.outputs:
            add(output, "output", "present", None, "removed")
    cls_old, cls_new = old.parity.get("classifier") or {}, new.parity.get("classifier") or {}
    for metric in ("top1_agreement", "accuracy"):
        a, b = cls_old.get(metric), cls_new.get(metric)
        if a is None or b is None:
            continue
        verdict = "worse" if a - b > ACCURACY_DROP else "better" if b - a > ACCURACY_DROP else "same"
        add("", f"classifier.{metric}", a, b, verdict)
    b_old, b_new = record_bytes(old), record_bytes(new)
    if b_old or b_new:
        verdict = _worse_up(float(b_old), float(b_new), margins, SIZE_FLOOR_BYTES)
        add("", "bytes", b_old, b_new, verdict)
    f_old, f_new = bench_figures(old.entry), bench_figures(new.entry)
    lat = Margins(rel=margins.latency_rel, floor=LATENCY_FLOOR_MS)
    for batch in sorted(set(f_old) & set(f_new)):
        l_old, l_new = float(f_old[batch]["p50_ms"]), float(f_new[batch]["p50_ms"])
        add("", f"p50_ms (batch {batch})", l_old, l_new, _worse_up(l_old, l_new, lat, LATENCY_FLOOR_MS))
    return compared


def _reference_sample(report: dict, output: str) -> list[float] | None:
    for record in iter_records(report):
        sample = (record.outputs.get(output) or {}).get("sample")
        if isinstance(sample, dict) and isinstance(sample.get("ref"), list):
            return [float("nan") if v is None else float(v) for v in sample["ref"]]
    return None


def _compare_reference(model: str, old: dict, new: dict, out: list[Finding], margins: Margins) -> None:
    """Did the eager model itself move on the parity inputs?"""
    ref_old = ((old.get("run") or {}).get("model") or {}).get("reference") or {}
    ref_new = ((new.get("run") or {}).get("model") or {}).get("reference") or {}
    moved_verdict = "accepted" if margins.accept_model_change else "changed"
    same_config = old.get("config_sha256") == new.get("config_sha256")
    note = "" if same_config else "the config changed too, so the parity inputs may differ"
    for output in output_names(new):
        s_old, s_new = ref_old.get(output) or {}, ref_new.get(output) or {}
        scale = max(float(s_old.get("range") or 0.0), float(s_new.get("range") or 0.0), 1e-12)
        threshold = max(margins.floor, REFERENCE_MOVE * scale)
        a, b = _reference_sample(old, output), _reference_sample(new, output)
        if a is not None and b is not None and len(a) == len(b):
            moved = max((abs(x - y) for x, y in zip(a, b) if math.isfinite(x) and math.isfinite(y)), default=0.0)
            verdict = "same" if moved <= threshold else moved_verdict
            out.append(Finding(model, "(model)", output, "reference max |delta| on sampled elements", 0.0, moved, verdict, False, note or "the eager outputs differ on the same inputs"))
            continue
        for stat in ("range", "spread"):
            x, y = s_old.get(stat), s_new.get(stat)
            if x is None or y is None:
                continue
            verdict = "same" if abs(float(y) - float(x)) <= threshold else moved_verdict
            out.append(Finding(model, "(model)", output, f"reference {stat}", x, y, verdict, False, note or "the eager outputs differ on the same inputs"))


def compare(old: dict[str, dict], new: dict[str, dict], margins: Margins = Margins()) -> DiffResult:
    findings: list[Finding] = []
    compared = 0
    for model in sorted(set(old) | set(new)):
        if model not in new:  # a release of fewer models (--model) is a choice, not a regression
            findings.append(Finding(model, "(model)", "", "model", "present", None, "removed", note="not in the new release"))
            continue
        if model not in old:
            findings.append(Finding(model, "(model)", "", "model", None, "present", "added"))
            continue
        model_findings: list[Finding] = []
        _compare_reference(model, old[model], new[model], model_findings, margins)
        old_records = {(r.target, r.variant): r for r in iter_records(old[model])}
        for record in iter_records(new[model]):
            previous = old_records.pop((record.target, record.variant), None)
            if previous is None:
                model_findings.append(Finding(model, record.label, "", "target", None, record.status, "added", bool(record.target_entry.get("optional"))))
                continue
            compared += _compare_record(previous, record, margins, model_findings)
        for record in old_records.values():
            model_findings.append(Finding(model, record.label, "", "target", record.status, None, "removed", bool(record.target_entry.get("optional"))))
        findings += model_findings
    return DiffResult(findings, compared)


def diff_paths(old: Path, new: Path, margins: Margins = Margins()) -> DiffResult:
    return compare(load_reports(old), load_reports(new), margins)


def render_markdown(result: DiffResult, old: str, new: str) -> str:
    lines = [f"## Drift: {old} -> {new}", ""]
    changed = [f for f in result.findings if f.verdict != "same"]
    if not changed:
        lines.append(f"No change beyond the margins ({result.compared} output comparisons).")
        return "\n".join(lines) + "\n"
    lines += ["| verdict | model | target | output | metric | old | new |", "|---|---|---|---|---|---|---|"]
    for f in changed:
        lines.append(f"| {f.verdict}{' (optional)' if f.optional else ''} | {f.model} | {f.target} | {f.output or '-'} | {f.metric} | {fmt(f.old, 4)} | {fmt(f.new, 4)} |")
    return "\n".join(lines) + "\n"
