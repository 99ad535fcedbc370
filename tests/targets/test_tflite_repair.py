"""Quantization repair on the tflite target: a failed int8 variant searches recipes,
verifies each with the variant's own parity, publishes the passing one as its own
variant, and the printed config snippet reproduces it byte for byte."""
from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError

OUTLIER = """\
name: outlier
source:
  factory: fixture_models:int8_outlier
inputs:
  - {{name: x, shape: [null, 16], dtype: float32}}
outputs: [probs]
data:
  generator: fixture_models:int8_outlier_data
  samples: 96
  seed: 1
  classifier: probs
targets:
  - name: tflite
    variants: [float32, int8]
{extra}"""


def _variants(project, model="outlier") -> dict:
    return project.report(model)["targets"]["tflite"]["variants"]


def test_outlier_repair_finds_a_verified_recipe_that_the_config_reproduces(project):
    project.config("outlier", OUTLIER.format(extra=""))
    result = project.run("repair", "--model", "outlier", "--variant", "int8")
    assert result.code == 0, result.err
    assert "int8_repaired passes parity" in result.out and "float_layers: [probs, hidden]" in result.out
    assert project.report("outlier")["targets"]["tflite"]["cache_key"] is None  # the config alone would not rebuild it
    assert project.report("outlier")["status"] == "failed"  # the configured int8 still failed: a failure is never hidden
    variants = _variants(project)
    assert variants["int8"]["status"] == "failed"
    search = variants["int8"]["repair"]
    assert search["found"] is True
    assert 1 <= search["conversions"] <= 8
    assert search["blame"][:2] == ["probs", "hidden"]  # the debugger blames the outlier's layers
    # The outlier unit lives in `hidden`'s output and `probs`'s tiny weights: both stay float.
    assert set(search["float_layers"]) == {"hidden", "probs"}
    assert search["recipe"]["float_weights"] == ["probs"]
    repaired = variants["int8_repaired"]
    assert repaired["status"] == "passed"
    cls = repaired["parity"]["classifier"]
    assert cls["top1_agreement"] >= 0.99
    assert cls["accuracy"] >= cls["reference_accuracy"] - 0.02
    # Sizes against float32 and plain int8, in the report and on the console.
    float32_bytes = variants["float32"]["info"]["size_bytes"]
    int8_bytes = variants["int8"]["info"]["size_bytes"]
    assert repaired["info"]["size_bytes"] < float32_bytes
    assert search["size_vs_float32"] == pytest.approx(repaired["info"]["size_bytes"] / float32_bytes, abs=1e-3)
    assert search["size_vs_int8"] == pytest.approx(repaired["info"]["size_bytes"] / int8_bytes, abs=1e-3)
    assert "float layers: probs, hidden" in result.err and "x float32" in result.err and "x plain int8" in result.err
    md = (project.artifacts / "outlier" / "report.md").read_text()
    assert "## Quantization repairs" in md and "float_layers: [probs, hidden]" in md
    # Every tried candidate is recorded with its numbers; exactly the chosen one is reported as the fix.
    assert [c["status"] for c in search["tried"]].count("passed") >= 1
    assert all(c["status"] in ("passed", "failed", "error") for c in search["tried"])

    # Re-validation from disk: the repaired file passes on its own.
    result = project.run("validate")
    assert "tflite/int8_repaired: parity passed" in result.err

    # The printed snippet is a valid config that rebuilds the same bytes.
    repaired_bytes = (project.artifacts / "outlier" / "tflite" / "int8_repaired.tflite").read_bytes()
    project.config("outlier", OUTLIER.format(extra=search["config_snippet"] + "\n"))
    result = project.run("export")
    variants = _variants(project)
    assert variants["int8_repaired"]["status"] == "passed", result.err
    assert "repair" not in variants["int8"]  # no search this time: the recipe is configured
    assert (project.artifacts / "outlier" / "tflite" / "int8_repaired.tflite").read_bytes() == repaired_bytes
    assert variants["int8_repaired"]["info"]["recipe"]["float_layers"] == ["probs", "hidden"]


def test_a_failed_variant_never_prints_an_unverified_suggestion(project):
    """Without repair, the failure is explained (the debugger table) but no fix is offered;
    with a budget too small to find one, what was tried is said and nothing is suggested."""
    project.config("outlier", OUTLIER.format(extra=""))
    result = project.run("export")
    assert result.code == 1
    int8 = _variants(project)["int8"]
    text = result.out + result.err + (project.artifacts / "outlier" / "report.md").read_text() + repr(int8)
    assert "suggested_fix" not in text and "int8_repaired" not in text
    assert not re.search(r"\btry (the )?`?(float16|int16x8)", text)

    project.config("outlier", OUTLIER.format(extra="    repair: [int8]\n    repair_conversions: 2\n"))
    result = project.run("export")
    assert result.code == 1
    variants = _variants(project)
    search = variants["int8"]["repair"]
    assert search["found"] is False and search["conversions"] == 2
    assert search["stopped"] == "conversion budget spent (2)"
    assert "int8_repaired" not in variants
    assert "no recipe found within 2 tries" in result.err
    assert search["best_candidate"]["status"] == "failed" and search["best_candidate"]["failures"]
    assert "recipes:" not in result.err and "config_snippet" not in search  # nothing unverified is offered


def test_repair_command_refuses_what_it_cannot_repair(project):
    project.config("outlier", OUTLIER.format(extra=""))
    result = project.run("repair", "--model", "outlier", "--variant", "float64")
    assert result.code == 2 and "tflite has no variant 'float64'; it has: float32, int8" in result.err
    result = project.run("repair", "--model", "outlier", "--target", "onnx", "--variant", "int8")
    assert result.code == 2 and "target 'onnx' has no repair search" in result.err
    assert not project.artifacts.exists() or not any(project.artifacts.iterdir())  # nothing written


def test_recipes_are_validated_with_the_config(tmp_path):
    path = tmp_path / "outlier.yaml"
    bad = """\
    repair: [float16]
    recipes:
      - name: int8
        base: int8
        float_weights: [probs]
        int16_layers: [hidden]
      - {name: r2, base: dynamic_range, int16_layers: [a], calibration_samples: 10, colour: red}
"""
    path.write_text(OUTLIER.format(extra=bad))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "repair: 'float16' cannot be repaired" in text
    assert re.search(r"recipes\[0\]\.name.*'int8' is already a variant name", text)
    assert re.search(r"recipes\[0\]\.float_weights.*must be in float_layers too", text)
    assert re.search(r"recipes\[1\]\.colour.*unknown key 'colour'", text)


def test_coverage_reports_the_share_of_parity_values_outside_the_calibrated_range():
    from targets.support.repair import coverage

    pool = {"x": np.concatenate([np.linspace(-1, 1, 80), np.array([-3.0, 5.0] * 10)]).astype(np.float32)[:, None], "ids": np.zeros((100, 1), np.int32)}
    cover = coverage(pool, calibrated=80)
    assert set(cover) == {"x"}  # integer inputs are not calibrated
    assert cover["x"]["calibrated_min"] == pytest.approx(-1) and cover["x"]["calibrated_max"] == pytest.approx(1)
    assert cover["x"]["outside_share"] == pytest.approx(0.2)
