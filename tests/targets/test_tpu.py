"""The tpu target: SavedModel with the tpu_func alias compiled at static shapes, the
compatibility gate (float64 and string ops refused with exit 2, naming op and layer),
fp32 and bfloat16-emulated parity on a trained CNN, and the converter options."""
from __future__ import annotations

import numpy as np
import pytest
from fixture_models import train_small_cnn

CNN = """\
name: cnn
source:
  path: {path}
inputs:
  - {{name: image, shape: [null, 32, 32, 3], dtype: float32}}
outputs: [probs]
data:
  generator: examples.image_cnn:eval_data
  samples: 48
  batch_sizes: [1, 3]
  classifier: probs
targets:
  - name: tpu
{extra}"""

REFUSED = """\
name: {name}
source:
  factory: fixture_models:{factory}
inputs:
  - {{name: x, shape: [null, 4], dtype: float32}}
outputs: [y]
data:
  samples: 8
targets:
  - tpu
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The CNN exported once with the default options (batch_sizes [1, 8], bfloat16)."""
    import json

    from pipeline.cli import main  # module-scoped: the `project` fixture is per test

    root = tmp_path_factory.mktemp("tpu")
    path = root / "small_cnn.keras"
    accuracy = train_small_cnn(path)
    assert accuracy > 0.8, f"the test CNN did not learn (held-out accuracy {accuracy}); parity on it would be vacuous"
    configs = root / "configs"
    configs.mkdir()
    (configs / "cnn.yaml").write_text(CNN.format(path=path, extra=""))
    code = main(["export", "--config-dir", str(configs), "--artifacts", str(root / "artifacts"), "--model", "cnn", "--target", "tpu"])
    report = json.loads((root / "artifacts" / "cnn" / "report.json").read_text())
    return code, report, root / "artifacts" / "cnn" / "tpu", path


def test_fp32_and_bf16_emulated_parity_on_a_trained_cnn(exported):
    code, report, folder, _ = exported
    assert code == 0
    entry = report["targets"]["tpu"]
    assert entry["status"] == "passed"
    fp32, bf16 = entry["variants"]["fp32"], entry["variants"]["bf16"]
    assert fp32["status"] == "passed" and bf16["status"] == "passed"
    fp32_err = fp32["parity"]["outputs"]["probs"]["max_abs"]
    bf16_err = bf16["parity"]["outputs"]["probs"]["max_abs"]
    assert fp32_err <= 1e-5
    # The emulation really rounds (it is not the float32 model again) and stays inside its budget.
    assert 1e-4 < bf16_err <= 5e-2
    assert bf16_err > 10 * fp32_err
    for variant, emulated in ((fp32, False), (bf16, True)):
        info = variant["info"]
        assert info["runs_on"] == "CPU" and info["emulated"] is emulated
        assert info["gate"] == "XLA-compilable on CPU; no known TPU-incompatible ops"
        assert info["batch_sizes"] == [1, 8] and info["precision"] == "bfloat16"
    assert bf16["info"]["constants_rounded"] >= 4 and bf16["info"]["tensors_rounded"] >= 10
    assert bf16["artifact"]["tolerance"]["range_fraction"] == 1e-2
    assert fp32["info"]["determinism"]["bitwise_equal"] is True
    for batch in (1, 8):
        assert f"f32[{batch},32,32,3]" in (folder / "ir" / f"b{batch}" / "hlo.txt").read_text()
        assert f"tensor<{batch}x32x32x3xf32>" in (folder / "ir" / f"b{batch}" / "stablehlo.mlir").read_text()


def test_saved_model_records_the_alias_and_static_xla_functions(exported):
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    _, _, folder, keras_path = exported
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((folder / "saved_model" / "saved_model.pb").read_bytes())
    meta = proto.meta_graphs[0]
    aliased = {name for name, alias in meta.meta_info_def.function_aliases.items() if alias == "tpu_func"}
    assert aliased, "meta_info_def.function_aliases has no tpu_func"
    functions = {f.signature.name: f for f in meta.graph_def.library.function}
    batches = set()
    for name in aliased:
        fdef = functions[name]
        assert fdef.attr["_XlaMustCompile"].b is True
        image_shape = fdef.attr["_input_shapes"].list.shape[0]
        dims = [d.size for d in image_shape.dim]
        assert all(d > 0 for d in dims), f"{name} has a dynamic shape {dims}"
        batches.add(dims[0])
    assert batches == {1, 8}

    # serving_default takes any batch up to 8: batch 5 is padded to 8 and sliced back.
    import keras

    from examples.image_cnn import make_images

    x, _ = make_images(5, seed=3)
    served = tf.saved_model.load(str(folder / "saved_model")).signatures["serving_default"](image=tf.constant(x))["probs"].numpy()
    eager = keras.saving.load_model(keras_path).predict(x, verbose=0)
    assert served.shape == (5, 4)
    np.testing.assert_allclose(served, eager, atol=1e-5)


def test_converter_options_name_alias_batches_and_precision(exported):
    from targets.tpu import TpuOptions, converter_options_text

    text = (exported[2] / "converter_options.txtpb").read_text()
    assert 'tpu_functions {\n  function_alias: "tpu_func"\n}' in text
    assert "max_batch_size: 8" in text and "allowed_batch_sizes: 1\n  allowed_batch_sizes: 8" in text
    assert "bfloat16_optimization: ENABLED" in text
    fp32 = converter_options_text(TpuOptions(batch_sizes=(4, 2), precision="float32"))
    assert "bfloat16_optimization: DISABLED" in fp32 and "allowed_batch_sizes: 2\n  allowed_batch_sizes: 4" in fp32


@pytest.mark.parametrize(
    "factory, op, layer",
    [
        ("float64_op", r"op Cast 'float64_op_1/to_double_1/Cast' in layer 'to_double': float64", "compute in float32"),
        ("string_op", r"op AsString 'AsString' in the model's top-level code \(no Keras layer\): string tensors", "return the numbers and format them on the client"),
    ],
)
def test_incompatible_ops_are_refused_with_exit_2(project, factory, op, layer):
    project.config(factory, REFUSED.format(name=factory, factory=factory))
    result = project.run("export", "--model", factory, "--target", "tpu")
    assert result.code == 2
    import re

    message = result.err  # bad input: printed with the config's line, never recorded
    assert re.search(rf"{factory}.yaml:\d+: targets\[\d+\]: tpu: ", message), message
    assert re.search(op, message), message
    assert layer in message
    assert not (project.artifacts / factory).exists()


def test_bf16_emulation_is_bfloat16_operands_with_float32_accumulation(tmp_path):
    """One Dense layer: every tensor is rounded to bfloat16, the matmul accumulates in float32."""
    import keras
    import tensorflow as tf

    from pipeline.runtimes.savedmodel import FrozenGraphRunner
    from targets.support.xla import write_bf16_emulation

    keras.utils.set_random_seed(1)
    inp = keras.Input(shape=(64,), name="x")
    model = keras.Model(inp, keras.layers.Dense(5, name="dense")(inp))
    fn = tf.function(lambda x: {"y": model(x, training=False)}, input_signature=[tf.TensorSpec([None, 64], tf.float32, name="x")])

    class Config:
        inputs = [type("Spec", (), {"name": "x"})()]

    counts = write_bf16_emulation(fn.get_concrete_function(), Config, tmp_path / "bf16")
    assert counts == {"constants_rounded": 2, "tensors_rounded": 3}  # kernel, bias; the input, MatMul and BiasAdd outputs
    x = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32) * 3
    got = FrozenGraphRunner(tmp_path / "bf16")({"x": x})["y"]

    def bf16(a):
        return tf.cast(tf.cast(a, tf.bfloat16), tf.float32)

    kernel, bias = (w.numpy() for w in model.weights)
    expected = bf16(tf.nn.bias_add(bf16(tf.matmul(bf16(x), bf16(kernel))), bf16(bias))).numpy()
    np.testing.assert_array_equal(got, expected)
    assert np.array_equal(bf16(got).numpy(), got)  # outputs are bfloat16 values
    assert np.max(np.abs(got - model(x).numpy())) > 1e-3  # the float32 model differs: rounding happened
