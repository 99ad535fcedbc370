"""The tflite target: SavedModel conversion for both Keras flavours, signature runners
with config names, quantization-aware parity, the debugger on a failed int8 variant,
Flex refusal and calibration checks."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import load_config, require_selected
from pipeline.spec import InputSpec
from targets import REGISTRY
from pipeline.errors import ConfigError, IncompatibleModel

TINY = """\
name: {name}
source:
  factory: fixture_models:{factory}
inputs:
  - {{name: x, shape: [null, 8], dtype: float32}}
outputs: [probs]
data:
  generator: fixture_models:tiny_data
  samples: 96
  seed: 5
  classifier: probs
targets:
  - name: tflite
    variants: [{variants}]
"""

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

MULTI_IO = """\
name: multi_io
source:
  path: {path}
  build: examples.multi_io:build
inputs:
  - {{name: features, shape: [null, 8], dtype: float32}}
  - {{name: ids, shape: [null, 5], dtype: int32}}
outputs: [score, category]
data:
  generator: examples.multi_io:eval_data
  samples: 64
  classifier: category
targets:
  - name: tflite
    variants: [float32, int8]
    int8_io: uint8
"""

FLEX = """\
name: {name}
source:
  factory: fixture_models:{factory}
inputs:
  - {{name: x, shape: [null, 4], dtype: float32}}
outputs: [y]
data:
  samples: 8
targets:
  - name: tflite
{extra}"""


def _variant(report: dict, variant: str) -> dict:
    return report["targets"]["tflite"]["variants"][variant]


@pytest.mark.parametrize(
    "factory, variants",
    [
        ("tiny_keras3_classifier", "float32, float16, dynamic_range, int8, int16x8"),
        ("tiny_tfkeras_classifier", "float32, int8"),
    ],
)
def test_both_keras_flavours_convert_with_their_weights(project, factory, variants):
    project.config("tiny", TINY.format(name="tiny", factory=factory, variants=variants))
    result = project.run("export")
    assert result.code == 0, result.out + result.err
    report = project.report("tiny")
    params = 8 * 16 + 16 + 16 * 3 + 3
    fp32 = _variant(report, "float32")
    # A weightless file (the Keras 3 concrete-function trap) is a few hundred bytes and outputs NaN.
    assert fp32["info"]["size_bytes"] > 4 * params
    assert fp32["parity"]["outputs"]["probs"]["max_abs"] <= 1e-5
    assert fp32["parity"]["outputs"]["probs"]["nonfinite"] == 0
    assert fp32["parity"]["classifier"]["top1_agreement"] == 1.0
    int8 = _variant(report, "int8")
    assert int8["status"] == "passed"
    assert int8["info"]["ops"] == {"FULLY_CONNECTED": 2, "SOFTMAX": 1}  # integer kernels, no float islands
    assert int8["info"]["quantization"]["inputs"]["x"]["dtype"] == "int8"
    assert int8["parity"]["outputs"]["probs"]["quant_step"] == pytest.approx(1 / 256)
    assert int8["parity"]["classifier"]["top1_agreement"] >= 0.95
    for name in variants.split(", "):
        assert (project.artifacts / "tiny" / "tflite" / f"{name}.tflite").is_file()
        assert _variant(report, name)["status"] == "passed"


def test_int8_outputs_are_dequantized_with_the_models_own_scale_and_zero_point(project):
    from ai_edge_litert.interpreter import Interpreter

    from pipeline.target import Artifact
    from targets.tflite import TARGET

    project.config("tiny", TINY.format(name="tiny", factory="tiny_keras3_classifier", variants="int8"))
    assert project.run("export").code == 0
    recorded = _variant(project.report("tiny"), "int8")
    record = recorded["artifact"]
    artifact = Artifact(variant=record["variant"], files=tuple(record["files"]), info=recorded["info"])
    folder = project.artifacts / "tiny" / "tflite"
    runner = TARGET.open(folder, artifact)
    x = np.random.default_rng(3).normal(size=(5, 8)).astype(np.float32)

    raw_runner = Interpreter(model_path=str(folder / "int8.tflite")).get_signature_runner("serving_default")
    in_detail = raw_runner.get_input_details()["x"]
    out_detail = raw_runner.get_output_details()["probs"]
    in_scale, in_zero = in_detail["quantization"]
    out_scale, out_zero = out_detail["quantization"]
    q = np.clip(np.round(x / in_scale + in_zero), -128, 127).astype(np.int8)
    raw = raw_runner(x=q)["probs"]
    assert raw.dtype == np.int8

    got = runner({"x": x})["probs"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, (raw.astype(np.float32) - out_zero) * out_scale)
    assert runner.output_steps == {"probs": pytest.approx(out_scale)}
    assert out_scale == pytest.approx(1 / 256) and out_zero == -128
    # Dequantized probabilities are probabilities again.
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=4 * out_scale)


def test_multi_io_names_and_order_survive_signature_runners(project, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from pipeline.target import Artifact
    from targets.tflite import TARGET

    project.config("multi_io", MULTI_IO.format(path=tmp_path / "multi_io.h5"))
    result = project.run("export")
    report = project.report("multi_io")
    fp32, int8 = _variant(report, "float32"), _variant(report, "int8")
    assert fp32["status"] == "passed", result.out
    assert list(fp32["parity"]["outputs"]) == ["score", "category"]
    assert int8["info"]["quantization"]["inputs"]["ids"]["dtype"] == "int32"
    assert int8["info"]["quantization"]["inputs"]["features"]["dtype"] == "uint8"
    assert int8["info"]["quantization"]["outputs"]["category"]["dtype"] == "uint8"

    folder = project.artifacts / "multi_io" / "tflite"
    signature = Interpreter(model_path=str(folder / "int8.tflite")).get_signature_list()["serving_default"]
    assert sorted(signature["inputs"]) == ["features", "ids"]
    assert sorted(signature["outputs"]) == ["category", "score"]
    for variant in ("float32", "int8"):
        recorded = _variant(report, variant)
        runner = TARGET.open(folder, Artifact(variant=variant, files=tuple(recorded["artifact"]["files"]), info=recorded["info"]))
        rng = np.random.default_rng(0)
        out = runner({"features": rng.normal(size=(3, 8)).astype(np.float32), "ids": rng.integers(0, 50, (3, 5)).astype(np.int32)})
        assert list(out) == ["score", "category"]  # config order, whatever order the flatbuffer keeps
        assert out["score"].shape == (3, 1) and out["category"].shape == (3, 3)
    assert set(runner.output_steps) == {"score", "category"}


@pytest.mark.heavy
def test_int8_outlier_fails_with_the_debugger_layer_table_and_the_fix_works(project):
    project.config("outlier", OUTLIER.format(extra=""))
    result = project.run("export")
    assert result.code == 1
    report = project.report("outlier")
    assert _variant(report, "float32")["status"] == "passed"
    int8 = _variant(report, "int8")
    assert int8["status"] == "failed"
    assert int8["parity"]["classifier"]["top1_agreement"] < 0.6
    table = int8["diagnosis"]["quantization_debugger"]
    layers = {row["layer"]: row for row in table["worst_layers"]}
    assert {"hidden", "probs"} <= set(layers)
    # The outlier unit stretches `hidden` so far that its step swallows the other units.
    assert layers["hidden"]["scale"] > 50
    assert layers["hidden"]["rounded_to_zero"] > 0.5
    assert layers["probs"]["rmse_over_scale"] > 1.0
    assert "suggested_fix" not in table  # advice is printed only once a repair search verified it
    candidates = table["denylist_candidates"]
    assert any("hidden" in c for c in candidates)
    # Layer localization on the shipped int8 file: the first layer over the budget is the one the
    # debugger blames first (`probs`); `hidden` stays within its stretched range but is flagged as
    # the tensor whose step swallowed its values (the outlier's cause).
    from targets.support.repair import blame_from_debugger

    loc = int8["localization"]
    assert loc["method"] == "tensors"
    assert loc["first_over_budget"] == blame_from_debugger(table["worst_layers"])[0] == table["worst_layers"][0]["layer"] == "probs"
    rows = {row["layer"]: row for row in loc["layers"]}
    assert rows["hidden"]["quantized"]["dtype"] == "int8" and rows["hidden"]["quantized"]["scale"] > 50
    assert not rows["hidden"]["over_budget"] and rows["hidden"]["quantized"]["swallowed"]
    assert rows["hidden"]["quantized"]["rounded_to_zero"] > 0.5
    assert "step swallows values in 'hidden'" in result.err

    # Following the suggested fix (those tensors kept in float) restores the classifier.
    nodes = ", ".join(f'"{c}"' for c in candidates)
    project.config("outlier", OUTLIER.format(extra=f"    int8_io: float32\n    denylisted_nodes: [{nodes}]\n"))
    result = project.run("export")
    fixed = _variant(project.report("outlier"), "int8")
    assert fixed["parity"]["classifier"]["top1_agreement"] >= 0.95, result.out
    assert fixed["info"]["denylisted_nodes"] == candidates


def test_flex_ops_are_refused_naming_the_ops_and_the_layer(project):
    project.config("f64", FLEX.format(name="f64", factory="float64_op", extra="    variants: [float32]\n"))
    result = project.run("export")
    assert result.code == 2
    # A variant the converter refuses is that variant's error (the others would stand):
    # recorded with the ops and the layer, and printed whole.
    record = _variant(project.report("f64"), "float32")
    assert record["status"] == "error"
    message = record["message"]
    assert message in result.out or message in result.err
    assert "Select TF ops (Flex): AddV2" in message and "Square" in message
    assert "layer 'to_double'" in message
    assert "allow_select_tf_ops: true" in message
    # Log1p has no Flex kernel either: opting in cannot help, and the message says so.
    assert "neither a TFLite kernel nor a Select TF (Flex) kernel: Log1p in layer 'to_double'" in message


def test_allow_select_tf_ops_converts_and_records_that_the_flex_delegate_is_needed(tmp_path):
    from pipeline.errors import TargetUnavailable
    from pipeline.execute.build import RunContext, prepare
    from pipeline.target import BuildInputs
    from targets.tflite import TARGET

    path = tmp_path / "strings.yaml"
    path.write_text(FLEX.format(name="strings", factory="string_op", extra="    allow_select_tf_ops: true\n"))
    config = load_config(path, REGISTRY)
    prep = prepare(RunContext(config, tmp_path / "artifacts"))
    out = tmp_path / "out"
    out.mkdir()
    job = BuildInputs(config, config.target("tflite"), out, prep.saved_model_dir, prep.traced.function, prep.loaded, prep.data.pool)
    (artifact,) = TARGET.build(job)
    assert artifact.info["flex_ops"] == ["FlexAsString", "FlexStringToNumber"]
    assert artifact.info["needs_flex_delegate"] is True
    assert "Flex delegate" in artifact.info["note"]
    # LiteRT for Python links no Flex delegate: parity cannot run the file here, and says why.
    with pytest.raises(TargetUnavailable, match=r"Select TF ops \(FlexAsString, FlexStringToNumber\).*no Flex delegate"):
        TARGET.open(out, artifact)


def test_calibration_needs_more_samples_than_the_data_has_is_a_config_error(tmp_path):
    path = tmp_path / "tiny.yaml"
    text = TINY.format(name="tiny", factory="tiny_keras3_classifier", variants="int8").replace("samples: 96", "samples: 16")
    path.write_text(text + "    calibration_samples: 32\n")
    config = load_config(path, REGISTRY)  # checked when the target is selected
    with pytest.raises(ConfigError, match=r"calibration_samples: int8 calibrate on 32 samples but `data.samples` is 16"):
        require_selected([config], ["tflite"])


def test_calibration_arrays_that_do_not_fit_the_signature_name_the_input():
    from targets.support.litert import check_calibration

    specs = (InputSpec("image", (None, 4, 4, 3), "float32"), InputSpec("ids", (None, 5), "int32"))
    good = {"image": np.zeros((10, 4, 4, 3), np.float32), "ids": np.zeros((10, 5), np.int32)}
    check_calibration(specs, good, 10, "model 'm'")
    with pytest.raises(IncompatibleModel, match=r"input 'image' has shape \[10, 4, 4\], expected \[N, 4, 4, 3\] float32"):
        check_calibration(specs, {**good, "image": np.zeros((10, 4, 4), np.float32)}, 10, "model 'm'")
    with pytest.raises(IncompatibleModel, match=r"input 'ids' is float32, expected \[N, 5\] int32"):
        check_calibration(specs, {**good, "ids": np.zeros((10, 5), np.float32)}, 10, "model 'm'")
    with pytest.raises(IncompatibleModel, match=r"needs 20 samples for input 'image' but the data has 10"):
        check_calibration(specs, good, 20, "model 'm'")
    with pytest.raises(IncompatibleModel, match=r"no calibration data for input 'ids'"):
        check_calibration(specs, {"image": good["image"]}, 10, "model 'm'")


def test_options_are_validated_before_tensorflow_loads(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(name="tiny", factory="tiny_keras3_classifier", variants="float32, int4"))
    with pytest.raises(ConfigError, match=r"invalid value 'int4'.*expected one of: float32, float16, dynamic_range, int8, int16x8"):
        load_config(path, REGISTRY)
    path.write_text(TINY.format(name="tiny", factory="tiny_keras3_classifier", variants="float32") + '    denylisted_nodes: ["a"]\n')
    with pytest.raises(ConfigError, match=r"denylisted_nodes: applies to the int8 variant only"):
        require_selected([load_config(path, REGISTRY)], None)


@pytest.mark.heavy
def test_a_float_fallback_litert_cannot_run_is_named_not_offered(project):
    """The int16x8 error's float fallback converts and LiteRT prepares it, but a kernel
    refuses it at run time: the error says so (checked here) instead of offering it, and
    a user who sets the option gets that runtime limit named, not an "unexpected" error."""
    project.config("ln", FLEX.format(name="ln", factory="layer_norm_head", extra="    variants: [float32, int16x8]\n    calibration_samples: 8\n"))
    result = project.run("export", "--model", "ln")
    assert (project.artifacts / "ln" / "report.json").exists(), result.err
    variants = project.report("ln")["targets"]["tflite"]["variants"]
    assert variants["float32"]["status"] == "passed"
    failed = variants["int16x8"]
    message = failed["message"]
    assert failed["status"] == "error" and message.startswith("TFLite int16x8: NEG in layer 'norm'"), message
    assert "Checked here: the file `float_fallback: [int16x8]` gives cannot be run: LiteRT prepares" in message, message
    assert "SquaredDifference only supports FLOAT32 and INT32" in message and "No fix that passes was found" in message, message
    assert failed["info"]["fix_checked"]["status"] == "error"
    assert not any(p.name.startswith(".candidate") for p in (project.artifacts / "ln" / "tflite").iterdir())

    project.config("ln", FLEX.format(name="ln", factory="layer_norm_head", extra="    variants: [int16x8]\n    calibration_samples: 8\n    float_fallback: [int16x8]\n"))
    project.run("export", "--model", "ln")
    record = project.report("ln")["targets"]["tflite"]["variants"]["int16x8"]
    assert record["status"] == "error" and record["error"] == "IncompatibleModel", record
    assert record["message"].startswith("LiteRT prepares int16x8.tflite but cannot run it: SquaredDifference"), record["message"]
