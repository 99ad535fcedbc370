"""The Python API on models that live only in this process: no YAML, no config folder."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import ModelError, PipelineError


@pytest.fixture(scope="module")
def trained():
    """A small Keras 3 classifier trained here on generated data (outputs are not flat)."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (512, 8)).astype("float32")
    y = (x[:, :4].sum(axis=1) > 2).astype("int32")
    inputs = keras.Input((8,), name="features")
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="probs")(hidden), name="quick")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, verbose=0)
    return model, x, y


def _api():
    import tfship

    return tfship


def test_keras3_model_exports_in_process_without_yaml(trained, tmp_path):
    tfship = _api()
    model, x, y = trained
    out = tmp_path / "artifacts" / "quick"
    result = tfship.export(model, targets=["savedmodel", "tflite", "onnx"], data={"features": x[:64]}, out=out)
    assert result.passed and result.exit_code == 0, str(result)
    assert set(result.targets) == {"savedmodel", "tflite", "onnx"}
    float32 = result["tflite"].variants["float32"]
    assert float32.status == "passed" and float32.metrics["probs"]["max_abs"] < 1e-5
    assert result["onnx"].variants[""].metrics["probs"]["max_abs"] < 1e-5
    assert all(path.is_file() for path in result.files)
    assert out / "tflite" / "float32.tflite" in result.files and out / "onnx" / "model.onnx" in result.files
    assert result.report_path == out / "report.json" and result.report_path.is_file()
    assert result.html_path.is_file() and (out / "report.md").is_file()
    assert not list(tmp_path.glob("**/configs"))  # nothing asked of the user on disk
    html = result._repr_html_()
    assert html.index("<table>") < html.index("<svg") and "tflite/float32" in html
    assert tfship.validate(out) == 0  # hashes, then parity again, from the config the run wrote
    # The config the run wrote repeats it from the shell or from Python.
    config = tfship.load_config(out / ".source" / "model.yaml")
    assert [t.name for t in config.targets] == ["savedmodel", "tflite", "onnx"]
    # Same weights, same code: the second call reuses every artifact.
    again = tfship.export(model, targets=["savedmodel", "tflite", "onnx"], data={"features": x[:64]}, out=out)
    assert again.passed and all(entry.get("rebuilt") is False for entry in again.report["targets"].values())


def test_tf_keras_model_and_bare_tf_function(tmp_path):
    tfship = _api()
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(1)
    inputs = tf_keras.Input((6,), name="x")
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3, name="score")(tf_keras.layers.Dense(8, activation="tanh")(inputs)))
    result = tfship.export(model, targets=["savedmodel", "tflite", "onnx"], out=tmp_path / "tfk")
    assert result.passed, str(result)
    assert result.report["run"]["model"]["flavour"] == "tf_keras"
    assert result["savedmodel"].variants[""].metrics["score"]["max_abs"] < 1e-5

    weights = tf.Variable(np.random.default_rng(2).normal(size=(6, 2)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="x")])
    def scores(x):
        return {"y": tf.tanh(tf.matmul(x, weights))}

    result = tfship.export(scores, targets=["savedmodel", "tflite", "onnx"], out=tmp_path / "fn")
    assert result.passed, str(result)
    assert result.report["run"]["model"]["flavour"] == "function"
    assert {t: r.status for t, r in result.targets.items()} == {"savedmodel": "passed", "tflite": "passed", "onnx": "passed"}


def test_bad_input_is_exit_2_and_writes_nothing(tmp_path):
    tfship = _api()
    import keras

    ids = keras.Input((4,), dtype="int32", name="ids")
    model = keras.Model(ids, keras.layers.Embedding(10, 3)(ids))
    out = tmp_path / "emb"
    with pytest.raises(ModelError, match=r"input 'ids' is int32: synthetic data cannot know its valid values; pass data="):
        tfship.export(model, out=out)
    with pytest.raises(PipelineError, match="unknown target 'tfl1te'") as info:
        tfship.export(model, targets=["tfl1te"], data={"ids": np.zeros((8, 4), "int32")}, out=out)
    assert info.value.exit_code == 2
    assert not out.exists()


def test_a_failing_variant_reports_numbers_and_the_debugger(trained, tmp_path):
    tfship = _api()
    model, x, _ = trained
    result = tfship.export(
        model, targets={"tflite": {"variants": ["float32", "int8"], "int8_io": "float32"}}, data={"features": x[:64]},
        tolerances={"tflite": {"int8": {"probs": {"atol": 1e-7, "steps": 0, "range_fraction": 0, "mismatch_fraction": 0}}}},
        out=tmp_path / "q",
    )
    assert not result.passed and result.exit_code == 1
    int8 = result["tflite"].variants["int8"]
    assert int8.status == "failed" and int8.metrics["probs"]["max_abs"] > 1e-7
    assert result["tflite"].variants["float32"].passed  # the other variant stands
    line = int8.verdict.line_reason()
    assert "max_abs" in line and "quantization debugger: worst layer" in line
    assert "quantization debugger: worst layer" in result.summary()
    md = (result.out / "report.md").read_text()
    assert int8.parity["failures"][0] in md and "### tflite/int8: quantization debugger" in md
