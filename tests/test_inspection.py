"""Inspecting artifacts that other tools produced: the facts, and whether tfship runs them."""
from __future__ import annotations

import pytest

from pipeline.errors import ModelError
from pipeline.inspection import inspect_artifact


def test_savedmodel_signatures_aliases_and_serving_folder(hand_made):
    info = inspect_artifact(hand_made["savedmodel"].parent)  # TF Serving layout: newest version
    assert info.path == hand_made["savedmodel"] and info.kind == "savedmodel"
    assert info.details["tags"] == ["serve"]
    assert info.details["function_aliases"] == {}
    sig = info.serving
    assert sig.name == "serving_default"
    assert [(t.name, t.dtype, t.shape) for t in sig.inputs] == [("x", "float32", (None, 8))]
    assert [(t.name, t.dtype, t.shape) for t in sig.outputs] == [("y", "float32", (None, 3))]
    assert info.runs and info.runtime == "TensorFlow"
    assert info.size_bytes > info.details["variables_bytes"] > 8 * 16 * 4


def test_tflite_precision_ops_and_quantization(hand_made):
    f32 = inspect_artifact(hand_made["float32"])
    assert f32.details["precision"] == "float32"
    assert f32.details["ops"] == {"FULLY_CONNECTED": 2, "TANH": 1}
    assert f32.details["signature_runners"] == ["serving_default"]
    assert f32.runs and f32.size_bytes == hand_made["float32"].stat().st_size
    assert inspect_artifact(hand_made["float16"]).details["precision"] == "float16"
    int8 = inspect_artifact(hand_made["int8"])
    assert int8.details["precision"] == "int8"
    (x,), (y,) = int8.serving.inputs, int8.serving.outputs
    assert x.dtype == "int8" and y.dtype == "int8"
    # Inputs are uniform [-1, 1): the input scale spans that range over 256 steps.
    assert x.quantization["scale"] == pytest.approx(2 / 255, rel=0.02)
    assert -128 <= y.quantization["zero_point"] <= 127
    assert "scale=" in int8.render() and "runs in tfship (LiteRT (ai_edge_litert)): yes" in int8.render()


def test_onnx_opset_dims_and_histogram(hand_made):
    info = inspect_artifact(hand_made["onnx"])
    assert info.details["opsets"]["ai.onnx"] == 17
    assert info.details["producer"].startswith("tf2onnx")
    assert info.details["ops"] == {"Add": 2, "MatMul": 2, "Tanh": 1}
    (x,) = info.serving.inputs
    assert x.name == "x" and isinstance(x.shape[0], str) and x.shape[1] == 8  # symbolic batch by name
    assert info.runs and info.runtime == "onnxruntime CPU"


def test_an_artifact_the_runtime_refuses_says_no_and_why(tmp_path, hand_made):
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(hand_made["onnx"].read_bytes()[:200])
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        inspect_artifact(truncated)
    # A SavedModel without serving_default: tfship reads it but would not run it.
    import fixture_artifacts as fa
    import tensorflow as tf

    module = fa.build_module()
    tf.saved_model.save(module, str(tmp_path / "other"), signatures={"predict": module.serve.get_concrete_function()})
    info = inspect_artifact(tmp_path / "other")
    assert [s.name for s in info.signatures] == ["predict"]
    assert not info.runs and "no serving_default signature" in info.run_message


def test_unknown_paths_are_bad_input(tmp_path):
    with pytest.raises(ModelError, match="artifact not found"):
        inspect_artifact(tmp_path / "nothing.onnx")
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(ModelError, match="cannot tell what"):
        inspect_artifact(tmp_path / "weights.bin")
