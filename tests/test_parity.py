"""Parity metrics on plain arrays: the numbers behind every verdict."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.parity import classifier_metrics, evaluate, output_metrics, reference_stats
from pipeline.tolerance import FP32, Tolerance


def _evaluate(ref, out, tol=FP32, steps=None, classifier=None, labels=None):
    refs, outs = [{"y": r} for r in ref], [{"y": o} for o in out]
    mask = [True] * len(refs)
    stats = reference_stats(refs, mask)
    return evaluate([f"c{i}" for i in range(len(refs))], refs, outs, lambda _: tol, steps or {}, stats, mask, classifier, labels)


def test_identical_outputs_pass_with_zero_error():
    ref = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    m = output_metrics(ref, ref.copy(), FP32, 0.0, 2.0)
    assert m["max_abs"] == 0 and m["rmse"] == 0 and m["mismatch_fraction"] == 0 and m["passed"]
    assert m["cosine"] == pytest.approx(1.0)


def test_metric_values():
    ref = np.array([[1.0, 2.0, -4.0, 0.5]])
    out = ref + np.array([[0.0, 0.1, 0.0, -0.3]])
    m = output_metrics(ref, out, Tolerance(atol=0.05, rtol=0.0), 0.0, 6.0)
    assert m["max_abs"] == pytest.approx(0.3)
    assert m["max_rel"] == pytest.approx(0.6)
    assert m["mean_abs"] == pytest.approx(0.1)
    assert m["rmse"] == pytest.approx(np.sqrt((0.01 + 0.09) / 4))
    assert m["mismatch_fraction"] == pytest.approx(0.5)
    assert not m["passed"]


def test_nan_where_reference_is_finite_fails_even_with_huge_tolerance():
    ref = np.ones((2, 3), np.float32)
    out = ref.copy()
    out[0, 1] = np.nan
    result = _evaluate([ref], [out], Tolerance(atol=1e9, rtol=1e9))
    assert not result["passed"]
    assert result["outputs"]["y"]["nonfinite"] == 1
    assert "NaN/Inf" in result["failures"][0]


def test_quantized_budget_is_in_units_of_the_step():
    ref = np.zeros((4, 4), np.float32) + np.arange(4)
    tol = Tolerance(atol=0.0, rtol=0.0, steps=1.0)
    assert _evaluate([ref], [ref + 0.05], tol, steps={"y": 0.1})["passed"]
    failed = _evaluate([ref], [ref + 0.2], tol, steps={"y": 0.1})
    assert not failed["passed"]
    assert failed["outputs"]["y"]["atol"] == pytest.approx(0.1)
    assert failed["outputs"]["y"]["quant_step"] == pytest.approx(0.1)


def test_range_fraction_scales_with_the_reference():
    ref = np.linspace(0, 100, 8).reshape(2, 4)
    tol = Tolerance(atol=0.0, rtol=0.0, range_fraction=0.01)  # 1% of a range of 100
    assert _evaluate([ref], [ref + 0.9], tol)["passed"]
    assert not _evaluate([ref], [ref + 1.1], tol)["passed"]


def test_mismatch_fraction_allows_a_share_of_elements():
    ref = np.zeros((10, 10))
    out = ref.copy()
    out[0, :5] = 1.0  # 5% of elements off
    assert not _evaluate([ref], [out], Tolerance(atol=0.1, rtol=0))["passed"]
    assert _evaluate([ref], [out], Tolerance(atol=0.1, rtol=0, mismatch_fraction=0.05))["passed"]


def test_near_constant_reference_is_weak_evidence():
    constant = np.full((8, 3), 0.25)
    result = _evaluate([constant], [constant])
    assert result["passed"]
    assert "y" in result["weak_evidence"]
    varied = np.random.default_rng(0).normal(size=(8, 3))
    assert "weak_evidence" not in _evaluate([varied], [varied])


def test_worst_over_cases_and_shape_mismatch():
    a, b = np.zeros((1, 2)), np.zeros((3, 2))
    result = _evaluate([a, b], [a + 1e-3, b + 2e-3], Tolerance(atol=1.0, rtol=0))
    assert result["outputs"]["y"]["max_abs"] == pytest.approx(2e-3)
    assert [c["batch"] for c in result["cases"]] == [1, 3]
    bad = _evaluate([b], [np.zeros((3, 3))])
    assert not bad["passed"] and "shape" in bad["outputs"]["y"]["error"]


def test_classifier_agreement_and_accuracy_delta():
    ref = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]]
    out = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 0]]  # one of eight flipped
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    m = classifier_metrics(ref, out, labels)
    assert m["top1_agreement"] == pytest.approx(7 / 8)
    assert m["reference_accuracy"] == 1.0 and m["accuracy_delta"] == pytest.approx(-1 / 8)
    tol = Tolerance(atol=10, rtol=0, min_top1=0.9)
    result = _evaluate([ref], [out], tol, classifier="y", labels=labels)
    assert not result["passed"] and "top-1 agreement 0.8750" in result["failures"][0]


def test_allowed_share_is_judged_over_all_elements_not_per_case():
    # One element off in a 4-element case is 25% of that case, but 1 of 404 elements overall.
    small, large = np.zeros((1, 4)), np.zeros((100, 4))
    off = small.copy()
    off[0, 0] = 1.0
    tol = Tolerance(atol=0.1, rtol=0, mismatch_fraction=0.01)
    result = _evaluate([small, large], [off, large], tol)
    y = result["outputs"]["y"]
    assert y["outside"] == 1 and y["elements"] == 404
    assert y["mismatch_fraction"] == pytest.approx(1 / 404)
    assert y["worst_case_mismatch_fraction"] == pytest.approx(0.25)
    assert result["passed"]
    assert not _evaluate([small, large], [off, large], Tolerance(atol=0.1, rtol=0, mismatch_fraction=0.002))["passed"]
