"""Verdict criteria on plain arrays: robust statistics, SQNR, the tail check, task
metrics, which criterion decided and by what margin."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.parity import classifier_metrics, evaluate, reference_stats
from pipeline.tolerance import PRECISION_CLASSES, Tolerance
from pipeline.verdict import decided_by, error_statistics, sqnr_db, tail_used


def _evaluate(ref, out, tol, steps=None, classifier=None, labels=None):
    refs, outs = [{"y": r} for r in ref], [{"y": o} for o in out]
    mask = [True] * len(refs)
    return evaluate([f"c{i}" for i in range(len(refs))], refs, outs, lambda _: tol, steps or {}, reference_stats(refs, mask), mask, classifier, labels)


def test_sqnr_is_signal_power_over_error_power_in_db():
    ref = np.array([3.0, -4.0])  # power 25
    out = ref + np.array([0.3, 0.4])  # error power 0.25
    assert sqnr_db(ref, out) == pytest.approx(20.0)
    assert sqnr_db(ref, ref) == math.inf
    assert sqnr_db(np.zeros(3), np.ones(3)) == -math.inf


def test_error_statistics_pool_every_case_and_scale_by_the_range():
    ref = [np.arange(10.0).reshape(2, 5), np.arange(10.0, 20.0).reshape(2, 5)]  # range 19
    err = np.zeros(20)
    err[-1] = 1.9  # one element off by 10% of the range
    out = [ref[0] + err[:10].reshape(2, 5), ref[1] + err[10:].reshape(2, 5)]
    s = error_statistics(ref, out, 19.0)
    assert s["elements"] == 20
    assert s["max_abs"] == pytest.approx(1.9) and s["max_abs_of_range"] == pytest.approx(0.1)
    assert s["mean_abs"] == pytest.approx(0.095) and s["mean_abs_of_range"] == pytest.approx(0.005)
    assert s["median_abs"] == 0.0
    # numpy's linear quantile: 99% of 20 sorted values sits at index 18.81
    assert s["p99_abs"] == pytest.approx(0.81 * 1.9)
    assert s["sqnr_db"] == pytest.approx(10 * math.log10(np.sum(np.arange(20.0) ** 2) / 1.9**2))


def test_tail_used_is_the_growth_factor_the_budget_needs_at_the_allowed_share():
    ref = np.zeros(100)
    out = np.zeros(100)
    out[:3] = [0.5, 0.3, 0.2]  # three elements beyond an atol of 0.1
    assert tail_used([ref], [out], 0.1, 0.0, 0.0) == pytest.approx(5.0)  # the max must fit
    assert tail_used([ref], [out], 0.1, 0.0, 0.01) == pytest.approx(3.0)  # one may exceed
    assert tail_used([ref], [out], 0.1, 0.0, 0.03) == pytest.approx(0.0)  # three may exceed


def test_a_few_boundary_elements_pass_a_quantized_budget_that_a_systematic_error_fails():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 1, (64, 10))
    tol = PRECISION_CLASSES["int8"]
    few = ref.copy()
    few[:2, 0] += 0.2  # 2 of 640 elements (0.3%) off by 20% of the range
    ok = _evaluate([ref], [few], tol)
    assert ok["passed"], ok["failures"]
    m = ok["outputs"]["y"]
    assert m["outside"] == 2 and m["criteria"]["tail"]["passed"]
    systematic = _evaluate([ref], [ref * 1.5], tol)  # every element off: a wrong scale
    assert not systematic["passed"]
    crit = systematic["outputs"]["y"]["criteria"]
    assert crit["sqnr_db"]["value"] == pytest.approx(20 * math.log10(1 / 0.5))  # 6.02 dB
    assert not crit["sqnr_db"]["passed"]
    assert crit["sqnr_db"]["margin"] == pytest.approx(crit["sqnr_db"]["value"] - tol.min_sqnr_db)


def test_sqnr_is_not_judged_on_an_error_within_the_absolute_floor():
    ref = np.zeros((4, 3))
    out = ref + 1e-7
    tol = Tolerance(atol=1e-5, rtol=0.0, min_sqnr_db=60.0)
    result = _evaluate([ref], [out], tol)
    assert result["passed"]
    c = result["outputs"]["y"]["criteria"]["sqnr_db"]
    assert c["passed"] and c["used"] == pytest.approx((1e-7 / 1e-5) ** 2)


def test_mean_error_criterion_is_a_fraction_of_the_range():
    ref = np.linspace(0, 10, 40).reshape(4, 10)
    tol = Tolerance(atol=1.0, rtol=0.0, max_mean_error=0.01)
    passed = _evaluate([ref], [ref + 0.09], tol)["outputs"]["y"]["criteria"]["mean_error"]
    assert passed["value"] == pytest.approx(0.009) and passed["passed"] and passed["used"] == pytest.approx(0.9)
    failed = _evaluate([ref], [ref + 0.2], tol)
    c = failed["outputs"]["y"]["criteria"]["mean_error"]
    assert c["value"] == pytest.approx(0.02) and not c["passed"] and c["margin"] == pytest.approx(-0.01)
    assert failed["decided_by"]["criterion"] == "mean_error" and failed["decided_by"]["used"] == pytest.approx(2.0)
    assert "mean |error| / range 0.02 (limit <= 0.01, margin -0.01)" in failed["failures"][0]


def test_decided_by_names_the_worst_failing_criterion_or_the_closest_passing_one():
    crit = {
        "a": {"passed": True, "used": 0.9},
        "b": {"passed": False, "used": 1.5},
        "c": {"passed": False, "used": 3.0},
    }
    assert decided_by(crit) == "c"
    assert decided_by({"a": {"passed": True, "used": 0.2}, "b": {"passed": True, "used": 0.7}}) == "b"
    assert decided_by({}) is None


def test_top_k_agreement_counts_the_reference_class_among_the_artifacts_k_best():
    ref = np.eye(6)[[0, 1, 2, 3]]
    out = np.array([
        [0.9, 0.1, 0, 0, 0, 0],  # top-1 agrees
        [0.5, 0.3, 0.2, 0, 0, 0],  # reference class 1 is 2nd
        [0.6, 0.3, 0.05, 0.05, 0, 0],  # reference class 2 is 3rd/4th (tie, stable order: 3rd)
        [0.3, 0.25, 0.2, 0.0, 0.15, 0.1],  # reference class 3 is last: outside the top 5
    ])
    m = classifier_metrics(ref, out, None, top_k=5)
    assert m["top1_agreement"] == pytest.approx(0.25)
    assert m["top_k"] == 5 and m["topk_agreement"] == pytest.approx(0.75)
    assert "topk_agreement" not in classifier_metrics(np.eye(2), np.eye(2), None)  # two classes: no top-k


def test_classifier_criteria_record_margins_and_the_accuracy_drop():
    ref = np.eye(4)[[0, 1, 2, 3] * 25]
    out = ref.copy()
    out[:3] = np.eye(4)[[1, 2, 3]]  # 3 of 100 flipped, all three were correct
    labels = np.array([0, 1, 2, 3] * 25)
    tol = Tolerance(atol=10.0, rtol=0.0, min_top1=0.95, max_accuracy_drop=0.02)
    result = _evaluate([ref], [out], tol, classifier="y", labels=labels)
    cls = result["classifier"]
    assert cls["top1_agreement"] == pytest.approx(0.97)
    assert cls["criteria"]["top1_agreement"]["margin"] == pytest.approx(0.02)
    assert cls["criteria"]["top1_agreement"]["used"] == pytest.approx(0.6)
    assert cls["criteria"]["accuracy_drop"]["value"] == pytest.approx(0.03)
    assert not cls["criteria"]["accuracy_drop"]["passed"] and cls["criteria"]["accuracy_drop"]["used"] == pytest.approx(1.5)
    assert not result["passed"]
    assert result["decided_by"] == {"output": "y", "criterion": "accuracy_drop", "value": pytest.approx(0.03), "limit": 0.02,
                                    "margin": pytest.approx(-0.01), "used": pytest.approx(1.5)}
    assert "accuracy drop 0.0300 (limit <= 0.0200, margin -0.0100)" in result["failures"][-1]


def test_every_precision_class_has_every_criterion_and_tighter_classes_are_tighter():
    order = ["float32", "float16", "dynamic_range", "int8"]
    for name in order + ["bf16", "int16x8"]:
        tol = PRECISION_CLASSES[name]
        assert tol.min_sqnr_db is not None and tol.max_mean_error is not None and tol.min_top1 is not None
    sqnr = [PRECISION_CLASSES[n].min_sqnr_db for n in order]
    assert sqnr == sorted(sqnr, reverse=True)
    tails = [PRECISION_CLASSES[n].mismatch_fraction for n in order]
    assert tails == sorted(tails)
    # bfloat16 rounds every activation to 8 significant bits: noisier than float16, not worse than int8.
    assert PRECISION_CLASSES["float16"].min_sqnr_db > PRECISION_CLASSES["bf16"].min_sqnr_db > PRECISION_CLASSES["int8"].min_sqnr_db


def test_report_markdown_shows_the_pooled_figures_and_the_deciding_criterion():
    from pipeline.reports.markdown import render_markdown

    ref = np.linspace(0, 1, 40).reshape(4, 10)
    parity = _evaluate([ref], [ref * 1.5], PRECISION_CLASSES["int8"])
    report = {"model": "m", "status": "failed", "updated": "now", "config_sha256": "0" * 64, "versions": {},
              "targets": {"tflite": {"status": "failed", "variants": {"int8": {"status": "failed", "parity": parity}}}}}
    text = render_markdown(report)
    assert "## Verdicts (every element of every case, pooled)" in text
    sqnr = parity["outputs"]["y"]["sqnr_db"]
    assert sqnr == pytest.approx(6.02, abs=0.01)
    # Every element off by half its value: mean error 25% of the range uses 12.5x its
    # allowance, more than the SQNR (7.9x the allowed noise power) or the tail (9.5x).
    row = next(line for line in text.splitlines() if line.startswith("| tflite/int8 | y |") and "mean_error" in line)
    assert row == "| tflite/int8 | y | 6.02 | 0.25 | 0.499 | mean_error | 0.25 | 0.02 | -0.23 | 12.5 |"
    assert "- tflite/int8: decided by `y` mean_error: 0.25 (limit 0.02, margin -0.23, 12.5 of the allowance used)" in text


def test_every_module_that_decides_a_verdict_is_part_of_the_artifact_cache_key():
    """Editing a criterion or a budget must rebuild (re-judge) cached targets: every
    pipeline module parity imports, transitively, is hashed into the target's key."""
    import ast
    from pathlib import Path

    from pipeline.cache import code_files

    root = Path(__file__).resolve().parent.parent
    hashed = {f.resolve() for f in code_files("tflite")}
    todo, seen = ["pipeline.parity"], set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = root / (module.replace(".", "/") + ".py")
        assert path.resolve() in hashed, f"{path.relative_to(root)} shapes verdicts but is not in ARTIFACT_CODE"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline."):
                todo.append(node.module)
    assert {"pipeline.parity", "pipeline.verdict", "pipeline.tolerance", "pipeline.audit"} <= seen
