"""Tolerance audit: every output records the budget it actually needed next to the one
it was given; a budget over 1000x looser is `loose` (a warning; a failure under --strict)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.audit import excess_top, needed_tolerance

AFFINE = """\
source:
  factory: examples.affine:build
inputs:
  - {{name: x, shape: [null, 4], dtype: float32}}
outputs: [y]
data:
  inputs:
    x: {{distribution: uniform, low: -10, high: 10}}
  samples: 16
targets:
{targets}"""


def test_every_output_records_the_tolerance_it_needed(project):
    project.config("affine", AFFINE.format(targets="  - savedmodel\n  - {name: tflite, variants: [float32, float16]}\n"))
    result = project.run("export")
    assert result.code == 0, result.err
    report = project.report("affine")
    records = [report["targets"]["savedmodel"]["variants"]["default"]] + list(report["targets"]["tflite"]["variants"].values())
    for record in records:
        audit = record["parity"]["outputs"]["y"]["audit"]
        assert audit["needed_atol"] is not None and audit["needed_atol"] <= record["parity"]["outputs"]["y"]["max_abs"] + 1e-12
        assert audit["budget_atol"] == pytest.approx(record["parity"]["outputs"]["y"]["atol"], rel=1e-5)
        assert audit["needed_atol_floor"] == pytest.approx(np.finfo(np.float32).eps * 21, rel=0.05)  # max |y| is about 21
    audits = {r["artifact"]["variant"] or "savedmodel": r["parity"]["outputs"]["y"]["audit"] for r in records}
    assert not audits["savedmodel"]["loose"] and not audits["float32"]["loose"]
    # y = 2x + 1 has weights float16 represents exactly: the artifact is exact, and the float16
    # budget (2e-3 of the range, 0.08) would let through an error 30000x larger. That is reported.
    assert audits["float16"]["loose"] and audits["float16"]["looseness"] > 1e4
    md = (project.artifacts / "affine" / "report.md").read_text()
    assert "| needed atol | budget / needed |" in md


def test_atol_10_on_float32_is_flagged_loose_and_fails_under_strict(project):
    loose = "  - name: savedmodel\n    tolerances:\n      y: {atol: 10}\n"
    project.config("affine", AFFINE.format(targets=loose))
    result = project.run("export")
    assert result.code == 0, result.err  # a warning by default
    parity = project.report("affine")["targets"]["savedmodel"]["variants"]["default"]["parity"]
    audit = parity["outputs"]["y"]["audit"]
    assert audit["loose"] is True and audit["budget_atol"] == 10 and audit["looseness"] > 1e5
    assert "looser than needed" in parity["warnings"][0]
    assert "warning: y: budget atol 10" in (project.artifacts / "affine" / "report.md").read_text()

    strict = project.run("export", "--strict")
    assert strict.code == 1
    entry = project.report("affine")["targets"]["savedmodel"]
    assert entry["status"] == "failed"
    assert any("looser than needed" in f and "--strict" in f for f in entry["variants"]["default"]["parity"]["failures"])


def test_needed_atol_pools_cases_and_honours_the_mismatch_share():
    rng = np.random.default_rng(0)
    ref = rng.uniform(1, 2, size=(2, 50))
    diffs = [np.full(50, 1e-3), np.full(50, 1e-3)]
    diffs[1][7] = 0.5  # one outlier in 100 elements
    parts = [excess_top(d, np.abs(r), 0.0, 0.01) for d, r in zip(diffs, ref)]
    # One element in a hundred may be outside: the outlier is let through.
    assert needed_tolerance(parts, 0.01, 1e-2)["needed_atol"] == pytest.approx(1e-3)
    strict_parts = [excess_top(d, np.abs(r), 0.0, 0.0) for d, r in zip(diffs, ref)]
    audit = needed_tolerance(strict_parts, 0.0, 1e-2)
    assert audit["needed_atol"] == pytest.approx(0.5) and audit["loose"] is False
    # rtol takes its share first: with rtol 1e-3 and |ref| >= 1 the 1e-3 errors need no atol at all.
    relative = [excess_top(d, np.abs(r), 1e-3, 0.01) for d, r in zip(diffs, ref)]
    assert needed_tolerance(relative, 0.01, 1e-2)["needed_atol"] == 0.0
