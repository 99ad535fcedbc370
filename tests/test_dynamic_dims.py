"""Dynamic dimensions beyond the batch: named dimensions shared by inputs, parity at
several concrete sizes with one trace, and each target's honest behaviour."""
from __future__ import annotations

import json
import re

import onnx
import pytest

from pipeline.config import load_config
from pipeline.config.loader import require_selected
from pipeline.errors import ConfigError
from targets import REGISTRY

ENCODER = """\
source:
  factory: fixture_dynamic:{factory}
inputs:
  - {{name: ids, shape: [null, seq], dtype: int32}}
  - {{name: mask, shape: [null, seq], dtype: int32}}
  - {{name: segments, shape: [null, seq], dtype: int32}}
outputs: [sequence, logits]
data:
  samples: 12
  shapes: {{seq: [7, 32, 64]}}
  inputs:
    ids: {{distribution: integers, low: 1, high: 100}}
    mask: {{distribution: integers, low: 1, high: 2}}
    segments: {{distribution: integers, low: 0, high: 2}}
targets:
{targets}
"""


def variant(report: dict, target: str, name: str = "") -> dict:
    entry = report["targets"][target]
    variants = entry.get("variants")
    if not variants:
        return entry
    return variants[name or next(iter(variants))]


def write(tmp_path, text: str):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_named_and_unnamed_dynamic_dimensions(tmp_path):
    config = load_config(write(tmp_path, ENCODER.format(factory="bert_encoder", targets="  - savedmodel").replace(
        "  - {name: segments, shape: [null, seq], dtype: int32}", "  - {name: segments, shape: [null, null], dtype: int32}")), REGISTRY)
    ids, _, segments = config.inputs
    assert ids.dynamic_dims == ((1, "seq"),)
    assert segments.dynamic_dims == ((1, "segments_1"),)
    assert config.dynamic_dims == ("seq", "segments_1")
    # the listed sizes for seq; the defaults for the unnamed one, taken together
    assert config.shape_sets == ({"seq": 7, "segments_1": 7}, {"seq": 32, "segments_1": 32}, {"seq": 64, "segments_1": 128})


def test_old_configs_keep_one_shape_set(tmp_path):
    text = "source: {factory: examples.affine:build}\ninputs:\n  - {name: x, shape: [null, 4], dtype: float32}\noutputs: [y]\ntargets: [savedmodel]\n"
    config = load_config(write(tmp_path, text), REGISTRY)
    assert config.dynamic_dims == () and config.shape_sets == ({},)
    assert config.data.shapes == ()


@pytest.mark.parametrize(
    "targets, replace, message",
    [
        ("  - edgetpu", None, r"m.yaml:\d+: targets\[0\]: input 'ids' has dynamic dimension\(s\) 'seq' \(axis 1\); the Edge TPU runs static shapes only"),
        ("  - name: tpu\n    batch_sizes: [1]", None, r"targets\[0\].dim_buckets: dimension 'seq' is dynamic and a TPU compiles static shapes; give its sizes, e.g. `dim_buckets: \{seq: \[64\]\}`"),
        ("  - name: tpu\n    dim_buckets: {seq: [32]}", None, r"parity tests size 64 \(data.shapes\) but the largest bucket is 32"),
        ("  - name: tpu\n    dim_buckets: {seq: [64], len: [3]}", None, r"no dynamic dimension named 'len'"),
        ("  - name: xla\n    aot: true", None, r"targets\[0\].aot: the AOT object is compiled at one static shape"),
        ("  - savedmodel", ("shapes: {seq: [7, 32, 64]}", "shapes: {sq: [7]}"), r"data.shapes.sq: no dynamic dimension named 'sq' \(did you mean 'seq'\?\)"),
        ("  - savedmodel", ("shapes: {seq: [7, 32, 64]}", "shapes: {seq: [0]}"), r"data.shapes.seq: expected a non-empty list of positive sizes"),
    ],
)
def test_dynamic_dimension_problems_name_line_and_key(tmp_path, targets, replace, message):
    text = ENCODER.format(factory="bert_encoder", targets=targets)
    if replace:
        text = text.replace(*replace)
    with pytest.raises(ConfigError, match=message):
        # target option checks count for the targets selected (here: all)
        require_selected([load_config(write(tmp_path, text), REGISTRY)], None)


@pytest.mark.heavy
def test_encoder_with_dynamic_sequence_passes_at_every_length(project):
    project.config("encoder", ENCODER.format(factory="bert_encoder", targets="  - savedmodel\n  - onnx\n  - {name: tflite, variants: [float32, dynamic_range]}\n  - xla"))
    result = project.run("export")
    assert result.code == 0, result.err
    report = project.report("encoder")
    model = report["run"]["model"]
    assert model["tracing_count"] == 1
    assert model["dynamic_dims"]["seq"] == {"axes": [{"input": "ids", "axis": 1}, {"input": "mask", "axis": 1}, {"input": "segments", "axis": 1}], "tested": [7, 32, 64]}
    assert model["retrace_checked_at_shapes"] == [{"seq": 7}, {"seq": 32}, {"seq": 64}]
    for target, name in (("savedmodel", ""), ("onnx", ""), ("tflite", "float32"), ("tflite", "dynamic_range"), ("xla", ""), ("xla", "stablehlo")):
        by_shape = variant(report, target, name)["parity"]["by_shape"]
        assert list(by_shape) == ["seq=7", "seq=32", "seq=64"], (target, name)
        assert all(row["passed"] for row in by_shape.values()), (target, name, by_shape)
    assert variant(report, "onnx")["parity"]["outputs"]["sequence"]["max_abs"] < 1e-5
    assert variant(report, "tflite", "float32")["parity"]["outputs"]["sequence"]["max_abs"] < 1e-5
    graph = onnx.load(str(project.artifacts / "encoder" / "onnx" / "model.onnx")).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input}
    assert dims == {"ids": ["batch", "seq"], "mask": ["batch", "seq"], "segments": ["batch", "seq"]}
    assert "fixed_dims" not in variant(report, "tflite", "float32")["info"]
    xla_files = {p.name for p in (project.artifacts / "encoder" / "xla" / "ir").iterdir()}
    assert {"b1-seq7", "b3-seq32", "b3-seq64"} <= xla_files
    # The StableHLO of every shape set ran in IREE, three inputs named in each signature.
    assert variant(report, "xla", "stablehlo")["parity"]["outputs"]["sequence"]["max_abs"] < 1e-5
    signature = json.loads((project.artifacts / "encoder" / "xla" / "ir" / "b3-seq32" / "signature.json").read_text())
    assert [(a["name"], a["shape"]) for a in signature["arguments"]] == [("ids", [3, 32]), ("mask", [3, 32]), ("segments", [3, 32])]
    assert signature["dims"] == {"seq": 32}


@pytest.mark.heavy
def test_tpu_buckets_pad_and_expose_a_model_that_is_not_padding_safe(project):
    tpu = "  - name: tpu\n    precision: float32\n    batch_sizes: [4]\n    dim_buckets: {seq: [32, 64]}"
    project.config("masked", ENCODER.format(factory="bert_encoder", targets=tpu))
    project.config("unmasked", ENCODER.format(factory="bert_encoder_unmasked", targets=tpu))
    result = project.run("export")
    assert result.code == 1
    masked = variant(project.report("masked"), "tpu", "fp32")
    assert masked["status"] == "passed"
    assert all(row["passed"] for row in masked["parity"]["by_shape"].values())
    assert masked["info"]["sliced_output_axes"] == {"sequence": [[1, "seq"]]}
    unmasked = variant(project.report("unmasked"), "tpu", "fp32")
    assert unmasked["status"] == "failed"
    by_shape = unmasked["parity"]["by_shape"]
    assert not by_shape["seq=7"]["passed"] and by_shape["seq=32"]["passed"] and by_shape["seq=64"]["passed"]
    reason = unmasked["diagnosis"]["reason"]
    assert "seq=7 padded to seq=32" in reason and "not padding-safe" in reason
    assert "not padding-safe" in result.err


FCN = """\
source: {factory: "fixture_dynamic:fcn_segmenter"}
inputs:
  - {name: image, shape: [null, height, width, 3], dtype: float32}
outputs: [mask_logits]
data:
  samples: 64
  shapes: {height: [16, 24, 40], width: [16, 32, 24]}
targets:
  - savedmodel
  - onnx
  - {name: tflite, variants: [float32, float16, dynamic_range, int8]}
  - xla
  - {name: tpu, precision: float32, batch_sizes: [8], dim_buckets: {height: [24, 40], width: [32]}}
"""

LSTM = """\
source: {factory: "fixture_dynamic:lstm_tagger"}
inputs:
  - {name: frames, shape: [null, time, 8], dtype: float32}
outputs: [scores]
data:
  samples: 16
  shapes: {time: [5, 20, 40]}
  inputs: {frames: {distribution: normal, mean: 0, std: 1}}
targets:
  - savedmodel
  - onnx
  - xla
  - {name: tflite, variants: [float32, dynamic_range, int8], calibration_samples: 16}
"""


@pytest.mark.heavy
def test_fully_convolutional_model_with_dynamic_height_and_width(project):
    project.config("fcn", FCN)
    result = project.run("export")
    report = project.report("fcn")
    for target, name in (("savedmodel", ""), ("onnx", ""), ("tflite", "float32"), ("tflite", "float16"), ("tflite", "dynamic_range"), ("tflite", "int8"), ("xla", ""), ("xla", "stablehlo")):
        entry = variant(report, target, name)
        assert entry["status"] == "passed", (target, name, entry.get("message"))
        assert list(entry["parity"]["by_shape"]) == ["height=16,width=16", "height=24,width=32", "height=40,width=24"]
    # Border pixels see the padding through the second convolution: the padded shapes
    # fail, the one equal to a bucket passes, and the reason says so.
    tpu = variant(report, "tpu", "fp32")
    assert result.code == 1 and tpu["status"] == "failed"
    assert tpu["parity"]["by_shape"]["height=24,width=32"]["passed"]
    assert "not padding-safe" in tpu["diagnosis"]["reason"]


@pytest.mark.heavy
def test_lstm_with_a_dynamic_time_axis(project):
    project.config("lstm", LSTM)
    result = project.run("export")
    report = project.report("lstm")
    for target, name in (("savedmodel", ""), ("onnx", ""), ("xla", ""), ("xla", "stablehlo"), ("tflite", "float32"), ("tflite", "dynamic_range")):
        entry = variant(report, target, name)
        by_shape = entry["parity"]["by_shape"]
        assert list(by_shape) == ["time=5", "time=20", "time=40"] and all(r["passed"] for r in by_shape.values()), (target, name)
    # The converter lowers the LSTM's TensorList ops only at a static batch: the file is
    # batch 1, time stays dynamic, and the report says which dimension was fixed.
    info = variant(report, "tflite", "float32")["info"]
    assert info["static_batch"] == 1
    assert info["fixed_dims"] == [{"input": "frames", "axis": 0, "name": "batch", "size": 1}]
    # Its int8 calibration crashes the converter (SIGSEGV, TF 2.21) at a dynamic batch and at
    # batch 1: that variant alone is an error (exit 2) naming the loop's layer and what was
    # tried, in a child process, and the others stand.
    int8 = variant(report, "tflite", "int8")
    message = int8.get("message", "")
    assert int8["status"] == "error" and result.code == 2, (int8["status"], message)
    assert re.search(r"TFLite int8: calibration of a model with WHILE loops in layer 'lstm\w*': the TFLite converter crashed \(SIG\w+\)", message), message
    assert "static batch of 1, tried after" in message and int8["files"] == []
