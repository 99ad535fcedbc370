"""Parity of artifacts made elsewhere against a reference: same metrics and budgets as export."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.compare import compare, pair_names
from pipeline.errors import ModelError


def test_savedmodel_against_hand_made_tflite_and_onnx(hand_made):
    result = compare(hand_made["savedmodel"], hand_made["float32"], hand_made["float16"], hand_made["int8"], hand_made["onnx"])
    assert result.passed and result.exit_code == 0
    by_variant = {(r.kind, r.variant): r for r in result.results}
    assert set(by_variant) == {("tflite", "float32"), ("tflite", "float16"), ("tflite", "int8"), ("onnx", "")}
    assert by_variant[("tflite", "float32")].parity["outputs"]["y"]["max_abs"] < 1e-5
    assert by_variant[("onnx", "")].parity["outputs"]["y"]["max_abs"] < 1e-5
    int8 = by_variant[("tflite", "int8")]
    # Budgets are the tflite target's for the precision read from the file.
    assert int8.tolerance["steps"] == 3.0 and int8.tolerance["range_fraction"] == 0.05
    assert 1e-3 < int8.parity["outputs"]["y"]["max_abs"] < int8.parity["outputs"]["y"]["atol"]
    assert "quant_step" in int8.parity["outputs"]["y"]
    assert result.cases[:2] == ("batch1", "batch3") and result.samples == 32


def test_a_changed_model_fails_with_its_numbers(hand_made):
    result = compare(hand_made["savedmodel"], hand_made["float32"], hand_made["shifted"])
    assert not result.passed and result.exit_code == 1
    ok, bad = result.results
    assert ok.passed and bad.status == "failed"
    assert bad.parity["outputs"]["y"]["max_abs"] == pytest.approx(0.05, abs=1e-4)  # the seeded bias shift
    assert "max_abs 0.05 > atol" in bad.reason()
    assert "failed" in result.render() and "max_abs" in result.render()


def test_user_data_and_tolerance_overrides(hand_made):
    rng = np.random.default_rng(3)
    data = {"x": rng.uniform(-1, 1, (10, 8)).astype(np.float32)}
    loose = compare(hand_made["savedmodel"], hand_made["shifted"], data=data, tolerances={"y": {"atol": 0.06, "max_mean_error": 0.05}})
    assert loose.passed and loose.samples == 10
    with pytest.raises(ModelError, match=r"input 'x': array \[10, 5\] does not fit"):
        compare(hand_made["savedmodel"], hand_made["float32"], data={"x": np.zeros((10, 5), np.float32)})


def test_pairing_rules():
    assert pair_names(["y"], ["y:0"], "outputs") == {"y": "y:0"}
    assert pair_names(["y"], ["Identity"], "outputs") == {"y": "Identity"}
    assert pair_names(["a", "b"], ["b", "a"], "outputs") == {"a": "a", "b": "b"}
    with pytest.raises(ModelError, match=r"unpaired: \['a'\]"):
        pair_names(["a", "b"], ["c", "b"], "outputs")
