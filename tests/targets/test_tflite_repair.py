"""Quantization repair on the tflite target: a failed int8 variant searches recipes,
verifies each with the variant's own parity, publishes the passing one as its own
variant, and the printed config snippet reproduces it byte for byte."""
from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline.config import load_config, require_selected
from targets import REGISTRY
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


@pytest.mark.heavy
def test_outlier_repair_finds_a_verified_recipe_that_the_config_reproduces(project):
    project.config("outlier", OUTLIER.format(extra=""))
    result = project.run("repair", "--model", "outlier", "--variant", "int8")
    assert result.code == 0, result.err
    assert "int8_repaired passes parity" in result.out and re.search(r"float_layers: \[(probs, hidden|hidden, probs)\]", result.out)
    assert project.report("outlier")["targets"]["tflite"]["cache_key"] is None  # the config alone would not rebuild it
    assert project.report("outlier")["status"] == "failed"  # the configured int8 still failed: a failure is never hidden
    variants = _variants(project)
    assert variants["int8"]["status"] == "failed"
    search = variants["int8"]["repair"]
    assert search["found"] is True
    assert 1 <= search["conversions"] <= 8
    assert set(search["blame"][:2]) == {"probs", "hidden"}  # the per-layer errors blame the outlier's layers
    # The outlier unit lives in `hidden`'s output, which `probs` reads: both stay float.
    assert set(search["float_layers"]) == {"hidden", "probs"}
    repaired = variants["int8_repaired"]
    assert repaired["status"] == "passed"
    cls = repaired["parity"]["classifier"]
    assert cls["passed"] and cls["top1_agreement"] >= 0.95 > variants["int8"]["parity"]["classifier"]["top1_agreement"]
    assert search["parity"]["top1_agreement"] == cls["top1_agreement"]  # the search verified what was published
    # Sizes against float32 and plain int8, in the report and on the console.
    float32_bytes = variants["float32"]["info"]["size_bytes"]
    int8_bytes = variants["int8"]["info"]["size_bytes"]
    assert repaired["info"]["size_bytes"] < float32_bytes
    assert search["size_vs_float32"] == pytest.approx(repaired["info"]["size_bytes"] / float32_bytes, abs=1e-3)
    assert search["size_vs_int8"] == pytest.approx(repaired["info"]["size_bytes"] / int8_bytes, abs=1e-3)
    assert "float layers: probs, hidden" in result.err and "x float32" in result.err and "x plain int8" in result.err
    md = (project.artifacts / "outlier" / "report.md").read_text()
    assert "## Quantization repairs" in md and search["config_snippet"] in md
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
    assert variants["int8_repaired"]["info"]["recipe"]["float_layers"] == search["recipe"]["float_layers"]


@pytest.mark.heavy
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

    with_edgetpu = OUTLIER.replace("targets:\n", "targets:\n  - {{name: edgetpu, repair: true}}\n")
    project.config("outlier", with_edgetpu.format(extra="    repair: [int8]\n    repair_conversions: 2\n"))
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

    # The Edge TPU takes integer inputs and has no 16-bit activations: only recipes it can run are
    # tried. Keeping both layers float passes parity but would leave no op on the Edge TPU, so it
    # is not offered, and the report says so.
    edge = project.report("outlier")["targets"]["edgetpu"]["variants"]["default"]["repair"]
    assert edge["found"] is False and edge["conversions"] <= 8
    assert all(not c["recipe"]["int16_layers"] and not c["recipe"]["float_inputs"] for c in edge["tried"])
    assert "would run on the Edge TPU" in edge["reason"]
    assert "edgetpu/repaired" not in result.err and "name: repaired" not in result.err


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
      - {name: r2, base: dynamic_range, int16_layers: [a], calibration_samples: 10}
"""
    edge = "  - {name: edgetpu, recipes: [{name: repaired, base: int8, int16_layers: [hidden], float_inputs: true}]}\n"
    path.write_text(OUTLIER.replace("targets:\n", "targets:\n" + edge.replace("{", "{{").replace("}", "}}")).format(extra=bad))
    with pytest.raises(ConfigError) as info:
        require_selected([load_config(path, REGISTRY)], None)  # what a target needs is checked when it is selected
    text = str(info.value)
    assert "repair: 'float16' cannot be repaired" in text
    assert re.search(r"recipes\[0\]\.name.*'int8' is already a variant name", text)
    assert re.search(r"recipes\[0\]\.float_weights.*must be in float_layers too", text)
    assert re.search(r"recipes\[1\]\.int16_layers.*apply to the int8 base, not dynamic_range", text)
    assert re.search(r"recipes\[1\]\.calibration_samples.*dynamic_range is not calibrated", text)
    assert "the Edge TPU has no 16-bit activations" in text and "the Edge TPU takes integer inputs" in text
    path.write_text(OUTLIER.format(extra="    recipes:\n      - {name: r2, colour: red}\n"))
    with pytest.raises(ConfigError, match=r"recipes\[0\]\.colour.*unknown key 'colour'; allowed here: name, base, float_layers"):
        load_config(path, REGISTRY)


def test_coverage_reports_the_share_of_parity_values_outside_the_calibrated_range():
    from targets.support.repair import coverage

    pool = {"x": np.concatenate([np.linspace(-1, 1, 80), np.array([-3.0, 5.0] * 10)]).astype(np.float32)[:, None], "ids": np.zeros((100, 1), np.int32)}
    cover = coverage(pool, calibrated=80)
    assert set(cover) == {"x"}  # integer inputs are not calibrated
    assert cover["x"]["calibrated_min"] == pytest.approx(-1) and cover["x"]["calibrated_max"] == pytest.approx(1)
    assert cover["x"]["outside_share"] == pytest.approx(0.2)


TONES = """\
name: tones
source:
  factory: fixture_audio:logmel_tones
inputs:
  - {name: waveform, shape: [null, 4000], dtype: float32}
outputs: [probs]
data:
  generator: fixture_audio:logmel_tones_data
  samples: 64
  seed: 7
  classifier: probs
targets:
  - {name: tflite, variants: [float32, dynamic_range, int8, int16x8], repair: true}
"""


@pytest.mark.heavy
def test_a_log_mel_front_end_that_fails_quantization_is_repaired_at_the_log(project):
    """log(mel + 1e-6) spans about -14..+5: per-batch int8 activations (dynamic_range)
    and a calibrated int8 step both wreck the quiet bands. The search keeps the front-end
    in float (dynamic_range) or gives it 16-bit activations (int8), and nothing else."""
    project.config("tones", TONES)
    result = project.run("export")
    variants = _variants(project, "tones")
    assert variants["float32"]["status"] == "passed"
    for variant in ("dynamic_range", "int8"):
        assert variants[variant]["status"] == "failed", result.err
        assert variants[variant]["parity"]["classifier"]["top1_agreement"] < 0.98
        search = variants[variant]["repair"]
        assert search["found"] is True and search["conversions"] <= 8
        assert search["blame"][0] == "log_mel"
        repaired = variants[f"{variant}_repaired"]
        assert repaired["status"] == "passed"
        assert repaired["parity"]["classifier"]["top1_agreement"] == 1.0
        assert repaired["info"]["size_bytes"] < 0.6 * variants["float32"]["info"]["size_bytes"]
    assert variants["dynamic_range"]["repair"]["float_layers"] == ["log_mel"]
    assert variants["int8"]["repair"]["float_layers"] == [] and variants["int8"]["repair"]["int16_layers"] == ["log_mel"]
    # int16x8 does not convert (no 16x8 kernel for the STFT's FLOOR_DIV): the quantizer's plain
    # int16x8 recipe leaves that op float and passes; the variant's own error stands.
    assert variants["int16x8"]["status"] == "error" and "FLOOR_DIV" in variants["int16x8"]["message"]
    search = variants["int16x8"]["repair"]
    assert search["found"] is True and search["tried"][0]["recipe"]["float_layers"] == []
    assert search["float_ops"] and "ops left in float by the quantizer" in search["summary"]  # measured: COMPLEX_ABS, LOG, ...
    assert variants["int16x8_repaired"]["status"] == "passed"


def _fake_search(passes, blame, conversions=8, **kwargs):
    """The search over stand-ins for the quantizer and parity: every candidate it reports
    was built and verified, and the budget holds."""
    from targets.support.repair import Budget, search

    built, verified = [], []

    def build(recipe):
        built.append(recipe)
        return b"x" * (100 + 10 * len(recipe.float_layers) + 5 * len(recipe.float_weights) + 3 * len(recipe.int16_layers))

    def verify(recipe, content):
        verified.append(recipe)
        ok = passes(recipe)
        return {"passed": ok, "failures": [] if ok else ["y: max_abs 1 > atol 0.1"], "outputs": {"y": {"max_abs": 0.01 if ok else 1.0}}}

    result = search("int8", "int8_repaired", build, verify, blame, "test", {}, 64, 96, Budget(conversions, 60), {"failures": ["y"], "outputs": {"y": {"max_abs": 2.0}}}, **kwargs)
    assert [c.recipe for c in result.tried] == built == verified
    assert len(result.tried) <= conversions
    return result


def test_search_finds_the_fewest_float_layers_and_stops_at_its_budget():
    blame = ["a", "b", "c", "d", "e"]
    result = _fake_search(lambda r: {"a", "c"} <= set(r.float_layers), blame)
    assert result.chosen is not None and set(result.chosen.recipe.float_layers) == {"a", "c"}  # b pruned away
    assert result.chosen.status == "passed"

    result = _fake_search(lambda r: {"a", "b"} <= set(r.int16_layers), blame)
    assert result.chosen.recipe.int16_layers == ("a", "b") and not result.chosen.recipe.float_layers

    result = _fake_search(lambda r: False, blame, conversions=3)
    assert result.chosen is None and len(result.tried) == 3 and result.stopped == "conversion budget spent (3)"

    # An integer-only deployment is never offered 16-bit activations or float inputs.
    result = _fake_search(lambda r: r.float_inputs or r.int16_layers, blame, allow_int16=False, allow_float_inputs=False)
    assert result.chosen is None
    assert all(not c.recipe.int16_layers and not c.recipe.float_inputs for c in result.tried)


def test_blame_orders_layers_worst_first_from_either_table():
    from targets.support.repair import blame_from_debugger, blame_from_localization

    rows = [
        {"layer": "probs", "op": "FULLY_CONNECTED", "rmse_over_scale": 3.0, "rounded_to_zero": 0.1},
        {"layer": "out", "op": "SOFTMAX", "rmse_over_scale": 0.2, "rounded_to_zero": 0.9},  # fixed 1/256 step: expected
        {"layer": "hidden", "op": "FULLY_CONNECTED", "rmse_over_scale": 0.3, "rounded_to_zero": 0.97},  # an outlier range
    ]
    assert blame_from_debugger(rows) == ["hidden", "probs", "out"]
    # Localization: where the relative error grows most over the layer before it leads.
    table = {"layers": [
        {"index": 0, "layer": "log_mel", "rel_error": 0.30},
        {"index": 1, "layer": "norm", "rel_error": 0.31},
        {"index": 2, "layer": "conv1", "rel_error": 0.45},
        {"index": 3, "layer": "probs", "rel_error": None},
    ]}
    assert blame_from_localization(table) == ["log_mel", "conv1", "norm"]


WINE = """\
name: wine
source:
  factory: fixture_classifiers:wine_mlp
inputs:
  - {name: features, shape: [null, 13], dtype: float32}
outputs: [probs]
data:
  generator: fixture_classifiers:wine_data
  samples: 96
  seed: 1
  classifier: probs
targets:
  - name: tflite
    variants: [float32, int8]
"""


@pytest.mark.heavy
def test_a_trained_classifier_whose_int8_fails_is_repaired_by_its_damaged_weights_first(project):
    """A wine classifier standardizing its raw features inside the model (StandardScaler's
    statistics in a Normalization layer): int8 of the inputs (0.1 .. 1,680) and of the
    layer's mean and variance under one scale each destroys the small features. The
    search measures both, tries `standardize` float with its weights and float inputs
    first, and that passes. (Before the damage ranking the search spent its 8 conversions
    on 16-bit activations and growing float layers with int8 constants, and found nothing.)"""
    project.config("wine", WINE)
    result = project.run("repair", "--model", "wine", "--variant", "int8")
    assert result.code == 0, result.err
    variants = _variants(project, "wine")
    assert variants["int8"]["parity"]["classifier"]["top1_agreement"] < 0.7  # measured 0.52
    search = variants["int8"]["repair"]
    ranking = search["ranking"]
    assert ranking["weights_damaged"] == ["standardize"] and ranking["inputs_damaged"] == ["features"]
    assert ranking["figures"]["standardize"]["weights_zeroed"] > 0.4
    assert "QuantizationDebugger" in search["blame_source"] and "localization" in search["blame_source"]
    assert search["found"] is True and search["conversions"] == 1
    assert search["recipe"]["float_layers"] == ["standardize"] and search["recipe"]["float_weights"] == ["standardize"]
    assert search["recipe"]["float_inputs"] is True
    repaired = variants["int8_repaired"]
    assert repaired["status"] == "passed" and repaired["parity"]["classifier"]["top1_agreement"] >= 0.95
    assert repaired["info"]["size_bytes"] < variants["float32"]["info"]["size_bytes"]
    md = (project.artifacts / "wine" / "report.md").read_text()
    assert "| standardize |" in md and "Input `features`: int8 rounds" in md
