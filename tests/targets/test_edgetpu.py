"""The edgetpu target: full-integer int8 at a static batch of 1, per-op placement
against the Edge TPU constraints, parity in LiteRT at every batch size."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from pipeline.config import load_config
from targets import REGISTRY

TINY = """\
name: tiny
source:
  factory: fixture_models:tiny_keras3_classifier
inputs:
  - {name: x, shape: [null, 8], dtype: float32}
outputs: [probs]
data:
  generator: fixture_models:tiny_data
  samples: 96
  seed: 5
  classifier: probs
targets:
  - edgetpu
"""

LEAKY = """\
name: leaky
source:
  factory: test_edgetpu:leaky_classifier
inputs:
  - {name: x, shape: [null, 8], dtype: float32}
outputs: [probs]
data:
  inputs:
    x: {distribution: normal}
  samples: 32
targets:
  - name: edgetpu
    io: int8
    calibration_samples: 32
"""


def leaky_classifier():
    """Keras 3: Dense -> LeakyReLU (not on the Edge TPU list) -> Dense softmax."""
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(8,), name="x")
    h = keras.layers.Dense(16, name="hidden")(x)
    h = keras.layers.LeakyReLU(negative_slope=0.1, name="leaky")(h)
    probs = keras.layers.Dense(3, activation="softmax", name="probs")(h)
    return keras.Model(x, probs, name="leaky_classifier")


def test_tiny_classifier_is_full_integer_batch_one_and_maps_every_op(project):
    project.config("tiny", TINY)
    result = project.run("export")
    assert result.code == 0, result.out + result.err
    entry = project.report("tiny")["targets"]["edgetpu"]["variants"]["default"]
    assert entry["status"] == "passed"
    info = entry["info"]
    assert info["batch"] == 1
    x_params = info["quantization"]["inputs"]["x"]
    assert (x_params["dtype"], x_params["shape"]) == ("uint8", [1, 8])
    assert x_params["scale"] > 0 and 0 <= x_params["zero_point"] <= 255
    assert info["quantization"]["outputs"]["probs"]["dtype"] == "uint8"
    assert info["first_cpu_op"] is None
    assert {row["runs_on"] for row in info["placement"]} == {"edgetpu"}
    assert [row["op"] for row in info["placement"]].count("FULLY_CONNECTED") == 2
    assert info["ops_on_cpu"] == 0 and info["ops_on_edgetpu"] == len(info["placement"])
    # The batch-1 model still answered the batch-3 and pooled cases, one sample at a time.
    assert {case["batch"] for case in entry["parity"]["cases"]} >= {1, 3}
    assert entry["parity"]["outputs"]["probs"]["quant_step"] == pytest.approx(1 / 256)
    assert entry["parity"]["classifier"]["top1_agreement"] >= 0.95
    if shutil.which("edgetpu_compiler") is None:
        assert info["edgetpu_compiler"] == "not found on PATH; placement is tfship's static estimate"
    else:
        assert "model_edgetpu.tflite" in entry["artifact"]["files"]


def test_first_unsupported_op_sends_it_and_everything_after_to_the_cpu(tmp_path):
    from pipeline.execute.build import RunContext, prepare
    from pipeline.target import BuildInputs
    from targets.edgetpu import TARGET

    path = tmp_path / "leaky.yaml"
    path.write_text(LEAKY)
    config = load_config(path, REGISTRY)
    prep = prepare(RunContext(config, tmp_path / "artifacts"))
    out = tmp_path / "out"
    out.mkdir()
    job = BuildInputs(config, config.target("edgetpu"), out, prep.saved_model_dir, prep.traced.function, prep.loaded, prep.data.pool)
    (artifact,) = TARGET.build(job)
    info = artifact.info
    assert info["quantization"]["inputs"]["x"]["dtype"] == "int8"
    first = info["first_cpu_op"]
    assert first["op"] == "LEAKY_RELU"
    assert first["reasons"] == ["LEAKY_RELU is not on the Edge TPU supported-operations list"]
    rows = info["placement"]
    before = [r for r in rows if r["index"] < first["index"]]
    after = [r for r in rows if r["index"] > first["index"]]
    assert before and all(r["runs_on"] == "edgetpu" and not r["reasons"] for r in before)
    assert after and all(r["runs_on"] == "cpu" for r in after)
    assert after[0]["reasons"] == [f"after op {first['index']} (LEAKY_RELU), which runs on the CPU"]
    # Parity at batch 3 on the batch-1 file: the runner loops samples.
    runner = TARGET.open(out, artifact)
    x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    got = runner({"x": x})["probs"]
    ref = prep.loaded.call({"x": x})["probs"].numpy()
    assert got.shape == (3, 3)
    assert np.max(np.abs(got - ref)) <= 0.05


def test_static_checks_cover_shapes_rank_and_types():
    from targets.edgetpu import op_reasons

    def tensor(shape, type_="int8", constant=False):
        return {"shape": shape, "type": type_, "quantized": True, "constant": constant}

    ok = {"index": 0, "op": "CONV_2D", "inputs": [tensor([1, 8, 8, 3]), tensor([16, 3, 3, 3], constant=True), tensor([16], "int32", True)], "outputs": [tensor([1, 8, 8, 16])]}
    assert op_reasons(ok) == []
    dynamic = {**ok, "outputs": [tensor([-1, 8, 8, 16])]}
    assert op_reasons(dynamic) == ["output 0 has a dynamic shape [-1, 8, 8, 16]"]
    rank = {**ok, "outputs": [tensor([1, 2, 8, 8, 16])]}
    assert op_reasons(rank) == ["output 0 shape [1, 2, 8, 8, 16] has a dimension > 1 outside the innermost three"]
    floats = {**ok, "inputs": [tensor([1, 8, 8, 3], "float32")] + ok["inputs"][1:]}
    assert op_reasons(floats) == ["input 0 is float32, expected int8/uint8"]
    softmax = {"index": 0, "op": "SOFTMAX", "inputs": [tensor([1, 20000])], "outputs": [tensor([1, 20000])]}
    assert op_reasons(softmax) == ["softmax over 20000 elements (limit 16000)"]
