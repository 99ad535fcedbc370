"""The openvino target: IR from the canonical SavedModel with the config's names, parity in
OpenVINO's CPU plugin with the precision that ran read back and judged, NNCF int8, refusals."""
from __future__ import annotations

import importlib.abc
import sys

import numpy as np
import pytest

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'tfship[openvino]')")

from pipeline.config import load_config, require_selected  # noqa: E402
from pipeline.errors import ConfigError  # noqa: E402
from pipeline.runtimes.openvino import device_capabilities, judge_execution  # noqa: E402
from targets import REGISTRY  # noqa: E402
from conftest import Result  # noqa: E402

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
  - name: openvino
    variants: [{variants}]
{extra}"""

TWO_OUTPUTS = """\
name: two
source:
  factory: fixture_models:{factory}
inputs:
  - {{name: x, shape: [null, 4], dtype: float32}}
outputs: [{outputs}]
data:
  samples: 24
targets:
  - name: openvino
    variants: [fp32, fp16]
  - onnx
"""

CPU_BF16 = "BF16" in device_capabilities()


def _export(project, name: str, targets: tuple[str, ...] = ("openvino",)) -> Result:
    """`tfship export --target openvino` for one model, run in this process (TensorFlow is
    already loaded here: a worker would spend most of a test importing it again)."""
    from pipeline.errors import PipelineError
    from pipeline.execute.export import export

    config = load_config(project.config_dir / f"{name}.yaml", REGISTRY)
    project._capsys.readouterr()
    try:
        code = export([config], list(targets), project.artifacts, in_process=True)
    except PipelineError as exc:
        print(exc, file=sys.stderr)
        code = exc.exit_code
    captured = project._capsys.readouterr()
    return Result(code, captured.out, captured.err)


def _variant(report: dict, variant: str) -> dict:
    return report["targets"]["openvino"]["variants"][variant]


@pytest.mark.parametrize("factory", ["tiny_keras3_classifier", pytest.param("tiny_tfkeras_classifier", marks=pytest.mark.heavy)])
def test_fp32_and_fp16_pass_at_their_budgets_with_f32_pinned_and_recorded(project, factory):
    project.config("tiny", TINY.format(name="tiny", factory=factory, variants="fp32, fp16", extra=""))
    result = _export(project, "tiny")
    assert result.code == 0, result.out + result.err
    report = project.report("tiny")
    folder = project.artifacts / "tiny" / "openvino"
    fp32, fp16 = _variant(report, "fp32"), _variant(report, "fp16")
    for record, name in ((fp32, "fp32"), (fp16, "fp16")):
        assert record["status"] == "passed"
        assert (folder / f"{name}.xml").is_file() and (folder / f"{name}.bin").is_file()
        assert record["info"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [None, 8]}]
        assert record["info"]["outputs"] == [{"name": "probs", "dtype": "float32", "shape": [None, 3]}]
        precision = record["parity"]["runtime_precision"]
        assert precision["hint_asked"] == "f32" and precision["hint_in_effect"] == "f32"
        assert precision["device"] == "CPU" and precision["passed"] is True
        assert set(precision["executed"]) == {"f32"}  # every compute node was fed float32
        assert record["parity"]["classifier"]["top1_agreement"] == 1.0
        assert "/tmp" not in (folder / f"{name}.xml").read_text()  # no build-machine path in the IR
    assert fp32["parity"]["outputs"]["probs"]["max_abs"] <= 1e-5
    assert fp32["artifact"]["tolerance"]["min_sqnr_db"] == 60.0  # the float32 class
    assert fp16["artifact"]["tolerance"]["min_sqnr_db"] == 45.0  # the float16 class
    assert 1e-6 < fp16["parity"]["outputs"]["probs"]["max_abs"] <= 2e-3
    weights = 8 * 16 + 16 + 16 * 3 + 3
    assert (folder / "fp32.bin").stat().st_size >= 4 * weights
    assert (folder / "fp16.bin").stat().st_size == pytest.approx((folder / "fp32.bin").stat().st_size / 2, abs=16)


def test_names_order_dynamic_batch_then_inspect_compare_and_bench_side_by_side(project):
    """Two outputs listed against their sorted order: the IR's results follow the config;
    `inspect` and `compare` read the .xml; `bench` times OpenVINO beside onnxruntime."""
    project.config("two", TWO_OUTPUTS.format(factory="two_outputs", outputs="zeta, alpha"))
    result = _export(project, "two", ("openvino", "onnx"))
    assert result.code == 0, result.out + result.err
    import openvino as ov

    folder = project.artifacts / "two" / "openvino"
    model = ov.Core().read_model(str(folder / "fp32.xml"))
    assert [p.get_any_name() for p in model.inputs] == ["x"]
    assert [sorted(p.get_names()) for p in model.outputs] == [["zeta"], ["alpha"]]
    assert model.inputs[0].get_partial_shape().to_string() == "[?,4]"
    record = _variant(project.report("two"), "fp32")
    assert [o["name"] for o in record["info"]["outputs"]] == ["zeta", "alpha"]
    assert "fixed_dims" not in record["info"]
    assert all(m["max_abs"] <= 1e-5 for m in record["parity"]["outputs"].values())

    from pipeline.inspection import inspect_artifact

    text = inspect_artifact(folder / "fp16.xml").render()
    assert "kind: openvino" in text and "precision: fp16" in text and "weights_file: fp16.bin" in text
    assert "in  x: float32[?, 4]" in text and "out zeta: float32[?, 3]" in text
    assert "runs in tfship (OpenVINO CPU): yes" in text
    from pipeline.compare import compare

    comparison = compare(project.artifacts / "two" / ".stages" / "savedmodel", folder / "fp32.xml", folder / "fp16.xml")
    fp32, fp16 = comparison.results
    assert (fp32.variant, fp32.status, fp16.variant, fp16.status) == ("fp32", "passed", "fp16", "passed")
    assert fp16.tolerance["min_sqnr_db"] == 45.0  # judged at the float16 class, read from the file
    assert fp32.parity["runtime_precision"]["hint_in_effect"] == "f32"

    result = project.run("bench", "--model", "two", "--max-seconds", "0.2", "--batch", "8")
    assert result.code == 0, result.err
    targets = project.report("two")["targets"]
    for label, bench in (("openvino", targets["openvino"]["variants"]["fp32"]["benchmark"]), ("onnx", targets["onnx"]["variants"]["default"]["benchmark"])):
        assert set(bench["batches"]) == {"1", "8"}, label
        assert all(f["p50_ms"] > 0 and f["throughput_sps"] > 0 and f["speedup_vs_eager"] for f in bench["batches"].values())
    assert targets["openvino"]["variants"]["fp32"]["benchmark"]["call"].startswith("OpenVINO InferRequest.infer()")
    assert targets["openvino"]["variants"]["fp32"]["benchmark"]["threads"]["runtime"] == "OpenVINO"


@pytest.mark.skipif(not CPU_BF16, reason="this CPU does not run bfloat16 (no BF16 in OpenVINO's CPU OPTIMIZATION_CAPABILITIES)")
def test_a_float32_ir_left_to_the_cpu_default_runs_in_bf16_and_fails_for_that_reason(project):
    project.config("tiny", TINY.format(name="tiny", factory="tiny_keras3_classifier", variants="fp32, bf16", extra="    pin_precision: false\n"))
    result = _export(project, "tiny")
    assert result.code == 1, result.out + result.err
    report = project.report("tiny")
    fp32, bf16 = _variant(report, "fp32"), _variant(report, "bf16")
    assert fp32["status"] == "failed"
    precision = fp32["parity"]["runtime_precision"]
    assert precision["hint_asked"] is None and precision["device_default"] == "bf16" and precision["hint_in_effect"] == "bf16"
    assert precision["executed"].get("bf16", 0) >= 1 and precision["passed"] is False
    first = fp32["parity"]["failures"][0]
    assert first.startswith("runtime precision: OpenVINO ran this float32 artifact in lower precision:")
    assert "this CPU's default is bf16" in first
    assert "runtime precision" in result.err  # the console names the reason, not a bare max_abs
    # The same IR judged as what it is: bf16 asked, bf16 run, within the bf16 class's budget.
    assert bf16["status"] == "passed" and bf16["files"] == fp32["files"]
    assert bf16["parity"]["runtime_precision"]["hint_asked"] == "bf16"
    assert bf16["parity"]["runtime_precision"]["executed"].get("bf16", 0) >= 1
    assert bf16["parity"]["outputs"]["probs"]["max_abs"] > 1e-5  # it really computed in bf16


def test_execution_judgement_names_what_ran():
    ok, reason = judge_execution("float32", "f32", "f32", {"f32": 4}, {}, "bf16")
    assert ok and reason == ""
    ok, reason = judge_execution("float16", None, "bf16", {"bf16": 3, "f32": 1}, {"bf16": ["dense/MatMul"]}, "bf16")
    assert not ok and "3 of 4 compute nodes in bf16 (e.g. dense/MatMul)" in reason
    ok, reason = judge_execution("int8", "f32", "f32", {"f32": 2, "u8": 3}, {}, "bf16", integer_kernels=0)  # u8 boolean masks only
    assert not ok and "ran no integer kernel in a weighted layer" in reason
    ok, reason = judge_execution("bf16", "bf16", "f32", {"f32": 2}, {}, "f32")
    assert not ok and "ran no node in bf16" in reason
    assert judge_execution("int8", "f32", "f32", {"f32": 1, "i8": 2}, {}, "bf16", integer_kernels=2) == (True, "")


def test_int8_through_nncf_on_a_trained_model(project):
    project.config("tiny", TINY.format(name="tiny", factory="tiny_keras3_classifier", variants="fp32, int8", extra="    calibration_samples: 64\n"))
    result = _export(project, "tiny")
    assert result.code == 0, result.out + result.err
    report = project.report("tiny")
    int8 = _variant(report, "int8")
    assert int8["status"] == "passed"
    info = int8["info"]
    # Activations quantized at the input and after `hidden` (weights are stored as int8 constants).
    assert info["fake_quantize"] == 2 and info["calibration_samples"] == 64 and info["nncf_version"]
    assert info["ops"]["FakeQuantize"] == info["fake_quantize"]
    precision = int8["parity"]["runtime_precision"]
    assert precision["hint_asked"] == "f32" and precision["passed"] is True
    assert precision["integer_kernels"] == 2  # both Dense layers ran integer kernels
    assert int8["artifact"]["tolerance"]["steps"] == 3.0  # the int8 class
    probs = int8["parity"]["outputs"]["probs"]
    assert 1e-4 < probs["max_abs"] < 0.1
    assert int8["parity"]["classifier"]["top1_agreement"] >= 0.95
    folder = project.artifacts / "tiny" / "openvino"
    # int8 weights (with per-channel float scales) against float32 ones; the .xml grows with the quantizer nodes.
    assert (folder / "int8.bin").stat().st_size < 0.75 * (folder / "fp32.bin").stat().st_size


def test_an_op_the_frontend_cannot_convert_is_refused_naming_op_and_layer(project):
    project.config("lgamma", """\
name: lgamma
source:
  factory: fixture_models:log_gamma_layer
inputs:
  - {name: x, shape: [null, 4], dtype: float32}
outputs: [y]
data:
  samples: 8
targets:
  - name: openvino
    variants: [fp32, fp16]
""")
    result = _export(project, "lgamma")
    assert result.code == 2, result.out + result.err
    assert "TF op Lgamma at functional" in result.err and "/log_gamma" in result.err
    assert "(layer 'log_gamma'): no conversion rule" in result.err
    assert not (project.artifacts / "lgamma" / "openvino").exists()


def test_string_preprocessing_is_refused_naming_the_string_ops(project):
    project.config("text", """\
name: text
source:
  factory: fixture_models:string_lengths
inputs:
  - {name: text, shape: [null, 1], dtype: string}
outputs: [length]
data:
  generator: fixture_models:string_data
  samples: 8
targets:
  - name: openvino
""")
    result = _export(project, "text")
    assert result.code == 2, result.out + result.err
    assert "TF op StringLower at StringLower" in result.err and "TF op StringLength" in result.err
    assert "openvino-tokenizers package has conversion extensions for: StringLower (tfship loads no frontend extension; not tried)" in result.err
    assert not (project.artifacts / "text" / "openvino").exists()


class _Unimportable(importlib.abc.MetaPathFinder):
    """Makes `openvino` and `nncf` unimportable, as on a machine without the extra."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("openvino", "nncf"):
            raise ModuleNotFoundError(f"No module named '{name}'")
        return None


def test_a_missing_extra_is_refused_before_any_work_naming_the_install(project, monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] in ("openvino", "nncf")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Unimportable()] + sys.meta_path)
    project.config("tiny", TINY.format(name="tiny", factory="tiny_keras3_classifier", variants="fp32", extra=""))
    result = project.run("export", "--target", "openvino")
    assert result.code == 2
    assert "pip install 'tfship[openvino]'" in result.err
    assert not project.artifacts.exists() or not any(project.artifacts.iterdir())


def test_options_are_checked_before_tensorflow_loads(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("""\
name: m
source:
  factory: fixture_models:tiny_keras3_classifier
inputs:
  - {name: x, shape: [null, 8], dtype: float32}
outputs: [probs]
data:
  samples: 16
targets:
  - name: openvino
    variants: [fp32, fp32, int4]
""")
    with pytest.raises(ConfigError, match=r"variants\[2\]: invalid value 'int4' \(did you mean 'int8'\?\); expected one of: fp32, fp16, bf16, int8"):
        load_config(path, REGISTRY)
    path.write_text(path.read_text().replace("[fp32, fp32, int4]", "[fp32, int8]\n    ignored_scope: [dense]\n    calibration_samples: 64"))
    config = load_config(path, REGISTRY)
    with pytest.raises(ConfigError, match=r"int8 calibrates on 64 samples but `data.samples` is 16"):
        require_selected([config], ["openvino"])
    target = REGISTRY.get("openvino")
    problems = target.check_options(target.Options(variants=("fp32", "fp32"), ignored_scope=("a",)), {"inputs": ()})
    assert ("variants", "variant(s) listed twice: fp32") in problems
    assert any(key == "ignored_scope" for key, _ in problems)


OUTLIER = """\
name: outlier
source:
  factory: fixture_models:{factory}
inputs:
  - {{name: x, shape: [null, 16], dtype: float32}}
outputs: [probs]
data:
  generator: fixture_models:int8_outlier_data
  samples: 96
  seed: 1
  classifier: probs
targets:
  - name: openvino
    variants: [fp32, int8]
{extra}"""


@pytest.mark.heavy  # two exports with a search between them
def test_int8_repair_keeps_the_blamed_nodes_in_float_and_the_config_reproduces_it(project):
    """A hidden unit 1e4x the others (after a well-behaved `front` layer): int8 loses the
    classifier; the search blames the layers reading and writing it, keeps them in float,
    and the printed scope passes as the int8 variant itself."""
    project.config("outlier", OUTLIER.format(factory="int8_outlier_deep", extra="    repair: true\n"))
    result = _export(project, "outlier")
    assert result.code == 1, result.out + result.err  # the configured int8 failed: never hidden by a repair
    variants = project.report("outlier")["targets"]["openvino"]["variants"]
    int8 = variants["int8"]
    assert int8["status"] == "failed" and int8["parity"]["classifier"]["top1_agreement"] < 0.9
    assert int8["localization"]["first_over_budget"] == "probs" and int8["localization"]["method"] == "tensors"
    search = int8["repair"]
    assert search["found"] is True and search["conversions"] == 2
    assert [n.split("/")[1] for n in search["blame"]] == ["probs_1", "hidden_1", "front_1"]  # the outlier's reader, its writer, then the rest
    repaired = variants["int8_repaired"]
    assert repaired["status"] == "passed"
    assert repaired["parity"]["classifier"]["top1_agreement"] >= 0.95
    assert repaired["parity"]["runtime_precision"]["integer_kernels"] == 1  # `front` still runs in int8
    scope = repaired["info"]["ignored_scope"]
    assert scope == search["tried"][-1]["ignored_scope"] == search["blame"][:2]
    assert f"ignored_scope: [{', '.join(scope)}]" in search["config_snippet"]
    assert "repair int8: passes with 2 node(s) kept in float" in result.err and "INFO:nncf" not in result.err
    # The snippet, as configuration, builds the same int8 that passes.
    project.config("outlier", OUTLIER.format(factory="int8_outlier_deep", extra=f"    ignored_scope: [{', '.join(scope)}]\n"))
    result = _export(project, "outlier")
    assert result.code == 0, result.out + result.err
    again = project.report("outlier")["targets"]["openvino"]["variants"]["int8"]
    assert again["status"] == "passed" and again["info"]["ignored_scope"] == scope


@pytest.mark.heavy
def test_int8_repair_says_when_no_ignored_scope_passes(project):
    """Without `front`, NNCF's symmetric weight quantizer floors every channel's range at 1% of
    the largest (the 1e4x unit's), so `hidden` cannot stay int8 and `probs` cannot either:
    nothing int8 passes, and the search says so instead of offering a scope."""
    project.config("outlier", OUTLIER.format(factory="int8_outlier", extra="    repair: true\n"))
    result = _export(project, "outlier")
    assert result.code == 1
    variants = project.report("outlier")["targets"]["openvino"]["variants"]
    search = variants["int8"]["repair"]
    assert search["found"] is False and "int8_repaired" not in variants and "config_snippet" not in search
    assert [t["status"] for t in search["tried"]] == ["failed", "error"]  # both in float: NNCF has nothing left to quantize
    assert "placed no quantizer" in search["tried"][1]["message"]
    assert "no ignored scope that passes within 2 tries (every quantizable node tried" in result.err


def test_a_plain_tf_module_with_a_scalar_input(project):
    """examples/threshold: a tf.Module (no Keras layers), `x` [batch, 6] and a scalar `threshold`."""
    project.config("threshold", """\
source:
  factory: examples.threshold:build
inputs:
  - {name: x, shape: [null, 6], dtype: float32}
  - {name: threshold, shape: [], dtype: float32}
outputs: [y]
data:
  inputs:
    x: {distribution: uniform, low: 0, high: 4}
    threshold: {distribution: uniform, low: 1, high: 3}
  samples: 16
targets:
  - {name: openvino, variants: [fp32, fp16]}
""")
    result = _export(project, "threshold")
    assert result.code == 0, result.out + result.err
    record = _variant(project.report("threshold"), "fp32")
    assert record["info"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [None, 6]}, {"name": "threshold", "dtype": "float32", "shape": []}]
    assert record["parity"]["outputs"]["y"]["max_abs"] <= 1e-5
    assert _variant(project.report("threshold"), "fp16")["status"] == "passed"
