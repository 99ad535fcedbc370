"""The onnx target: tf2onnx conversion, config names kept, checked files, onnxruntime parity."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from pipeline.config import load_config, require_selected
from targets import REGISTRY
from pipeline.errors import ConfigError, ConversionError, IncompatibleModel
from pipeline.target import BuildInputs
from targets.onnx import TARGET, _check, _fix_interface

MULTI_IO_CONFIG = """\
name: multi_io_like
source:
  path: {path}
inputs:
  - {{name: features, shape: [null, 8], dtype: float32}}
  - {{name: ids, shape: [null, 5], dtype: int32}}
outputs: [score, category]
data:
  inputs:
    features: {{distribution: normal}}
    ids: {{distribution: integers, low: 0, high: 50}}
  samples: 24
targets:
  - name: onnx
    optimize: true
"""


# --------------------------------------------------------------------------- models


def _multi_io_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    features = rng.normal(0, 1, (n, 8)).astype(np.float32)
    ids = rng.integers(0, 50, (n, 5)).astype(np.int32)
    offsets = np.random.default_rng(7).normal(0, 1.5, 50)
    logit = features[:, :4].sum(1) - features[:, 4:].sum(1) + offsets[ids].mean(1)
    score = (1 / (1 + np.exp(-logit)))[:, None].astype(np.float32)
    category = np.digitize(logit, [-1.0, 1.0]).astype(np.int32)
    return {"features": features, "ids": ids}, {"score": score, "category": category}


@pytest.fixture(scope="module")
def multi_io_h5(tmp_path_factory):
    """A trained tf-keras two-input (float32, int32) two-output model saved as .h5."""
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    features = tf_keras.Input((8,), name="features")
    ids = tf_keras.Input((5,), dtype="int32", name="ids")
    pooled = tf_keras.layers.GlobalAveragePooling1D()(tf_keras.layers.Embedding(50, 8)(ids))
    hidden = tf_keras.layers.Dense(32, activation="relu")(tf_keras.layers.Concatenate()([features, pooled]))
    score = tf_keras.layers.Dense(1, activation="sigmoid", name="score")(hidden)
    category = tf_keras.layers.Dense(3, activation="softmax", name="category")(hidden)
    model = tf_keras.Model([features, ids], [score, category])
    model.compile(tf_keras.optimizers.Adam(1e-2), loss={"score": "mse", "category": "sparse_categorical_crossentropy"})
    inputs, targets = _multi_io_data(1024, 0)
    model.fit(inputs, targets, batch_size=64, epochs=4, verbose=0)
    path = tmp_path_factory.mktemp("multi_io") / "multi_io_like.h5"
    with warnings.catch_warnings():  # HDF5 is the format under test; its legacy notice is noise
        warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy", category=UserWarning)
        model.save(path, save_format="h5")
    return path


@pytest.fixture(scope="module")
def keras3_wide(tmp_path_factory):
    """A trained Keras 3 classifier whose first kernel (8x256) is over tf2onnx's
    1024-element external-data threshold."""
    import keras

    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (1024, 8)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 0.5).astype(np.int32)
    inputs = keras.Input((8,), name="x")
    h = keras.layers.Dense(256, activation="relu")(inputs)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(16, activation="relu")(h))
    model = keras.Model(inputs, out)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=64, epochs=5, verbose=0)
    assert history.history["accuracy"][-1] > 0.8  # trained: outputs vary with the input
    path = tmp_path_factory.mktemp("wide") / "wide.keras"
    model.save(path)
    return path


def _saved_module(path, signature_fn, variables=None):
    """Save a tf.Module whose serving_default is `signature_fn`; returns the directory."""
    import tensorflow as tf

    module = tf.Module()
    module.variables_kept = list(variables or [])
    module.serve = signature_fn
    tf.saved_model.save(module, str(path), signatures={"serving_default": signature_fn})
    return path


# --------------------------------------------------------------------------- helpers


def _write_config(tmp_path, text: str):
    path = tmp_path / "model.yaml"
    path.write_text(text)
    return load_config(path, REGISTRY)


def _build(tmp_path, config):
    """Run the shared stages, then the onnx target's build into a fresh folder."""
    from pipeline.execute.build import RunContext, prepare

    prep = prepare(RunContext(config, tmp_path / "artifacts"))
    out_dir = tmp_path / "onnx_out"
    out_dir.mkdir()
    job = BuildInputs(
        model=config,
        target=config.target("onnx"),
        out_dir=out_dir,
        saved_model_dir=prep.saved_model_dir,
        traced=prep.traced.function,
        loaded=prep.loaded,
        calibration=prep.data.pool,
        labels=prep.data.labels,
    )
    return prep, out_dir, TARGET.build(job)


def _worst_error(out_dir, artifact, prep) -> dict[str, float]:
    """Max |onnxruntime - eager| per output over every parity case (batch 1, 3, pool chunks)."""
    runner = TARGET.open(out_dir, artifact)
    worst: dict[str, float] = {}
    for (_, inputs), reference in zip(prep.data.cases, prep.reference):
        produced = runner(inputs)
        assert list(produced) == list(reference)
        for name, ref in reference.items():
            assert produced[name].shape == ref.shape and produced[name].dtype == ref.dtype
            err = float(np.max(np.abs(produced[name].astype(np.float64) - ref.astype(np.float64))))
            worst[name] = max(worst.get(name, 0.0), err)
    return worst


def _session_interface(path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return (
        [(i.name, i.type, i.shape) for i in session.get_inputs()],
        [(o.name, o.shape) for o in session.get_outputs()],
    )


# --------------------------------------------------------------------------- tests


def test_multi_io_end_to_end_keeps_names_order_dtypes_and_dynamic_batch(project, multi_io_h5):
    project.config("multi_io_like", MULTI_IO_CONFIG.format(path=multi_io_h5))
    result = project.run("export", "--target", "onnx")
    assert result.code == 0, result.err
    entry = project.report("multi_io_like")["targets"]["onnx"]
    assert entry["status"] == "passed"
    assert set(entry["variants"]) == {"default", "optimized"}
    folder = project.artifacts / "multi_io_like" / "onnx"
    for variant, file in (("default", "model.onnx"), ("optimized", "model.optimized.onnx")):
        record = entry["variants"][variant]
        assert record["status"] == "passed"
        for output in ("score", "category"):
            assert record["parity"]["outputs"][output]["max_abs"] <= 1e-5
        inputs, outputs = _session_interface(folder / file)
        # Config order, not tf2onnx's sorted order (category < score); batch symbolic, not 1.
        assert inputs == [("features", "tensor(float)", ["batch", 8]), ("ids", "tensor(int32)", ["batch", 5])]
        assert outputs == [("score", ["batch", 1]), ("category", ["batch", 3])]
        info = record["info"]
        assert [i["name"] for i in info["inputs"]] == ["features", "ids"]
        assert [o["name"] for o in info["outputs"]] == ["score", "category"]
        assert info["opset"] == 17 and info["tf2onnx_version"] == "1.17.0"
        assert info["file_bytes"] == sum(f["bytes"] for f in record["files"]) > 0
    assert entry["variants"]["optimized"]["info"]["onnx_ops"] != entry["variants"]["default"]["info"]["onnx_ops"]


def test_saved_model_signature_keys_become_config_names(tmp_path):
    """A loaded SavedModel signature returns `output_0`-style keys (and an echoed input
    and a duplicated tensor): the ONNX graph still carries exactly the config's names."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    kernel = tf.Variable(rng.normal(0, 1, (6, 4)).astype(np.float32))
    bias = tf.Variable(rng.normal(0, 0.5, (4,)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="x")])
    def serve(x):
        logits = tf.matmul(x, kernel) + bias
        return {"output_0": tf.nn.softmax(logits), "output_1": logits, "output_2": logits, "output_3": x}

    source = _saved_module(tmp_path / "source_sm", serve, [kernel, bias])
    config = _write_config(
        tmp_path,
        f"""\
name: renamed
source:
  path: {source}
inputs:
  - {{name: x, shape: [null, 6], dtype: float32}}
outputs:
  - {{name: probs, source: output_0}}
  - {{name: logits, source: output_1}}
  - {{name: logits_again, source: output_2}}
  - {{name: echo, source: output_3}}
data:
  inputs:
    x: {{distribution: normal}}
  samples: 12
targets: [onnx]
""",
    )
    prep, out_dir, artifacts = _build(tmp_path, config)
    assert prep.loaded.flavour == "saved_model"
    (artifact,) = artifacts
    assert artifact.variant == "" and artifact.files == ("model.onnx",)
    inputs, outputs = _session_interface(out_dir / "model.onnx")
    assert inputs == [("x", "tensor(float)", ["batch", 6])]
    assert outputs == [("probs", ["batch", 4]), ("logits", ["batch", 4]), ("logits_again", ["batch", 4]), ("echo", ["batch", 6])]
    worst = _worst_error(out_dir, artifact, prep)
    assert set(worst) == {"probs", "logits", "logits_again", "echo"}
    assert max(worst.values()) <= 1e-5
    assert worst["echo"] == 0.0


def test_forced_external_data_on_a_small_keras3_model(tmp_path, keras3_wide):
    import onnx

    config = _write_config(
        tmp_path,
        f"""\
name: wide
source:
  path: {keras3_wide}
inputs:
  - {{name: x, shape: [null, 8], dtype: float32}}
outputs: [probs]
data:
  inputs:
    x: {{distribution: normal}}
  samples: 12
targets:
  - name: onnx
    large_model: true
    optimize: true
""",
    )
    prep, out_dir, artifacts = _build(tmp_path, config)
    assert "product" not in np.__dict__  # the numpy-2 alias lives only during conversion
    plain, optimized = artifacts
    assert plain.files == ("model.onnx", "model.onnx.data")
    assert optimized.variant == "optimized" and optimized.files == ("model.optimized.onnx", "model.optimized.onnx.data")
    assert plain.info["external_data"] is True
    graph = onnx.load(str(out_dir / "model.onnx"), load_external_data=False).graph
    external = [
        t for t in list(graph.initializer) + [a.t for n in graph.node for a in n.attribute if a.HasField("t")]
        if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    # The 8x256 kernel (at least) lives in the data file, not in the graph.
    assert sum(int(np.prod(t.dims)) for t in external) >= 8 * 256
    assert {e.value for t in external for e in t.external_data if e.key == "location"} == {"model.onnx.data"}
    assert (out_dir / "model.onnx.data").stat().st_size >= 8 * 256 * 4
    assert (out_dir / "model.onnx").stat().st_size < 8 * 256 * 4
    for artifact in artifacts:
        worst = _worst_error(out_dir, artifact, prep)
        assert worst["probs"] <= 1e-5
    reference = np.concatenate([r["probs"] for r in prep.reference])
    assert reference.std(axis=0).min() > 0.01  # outputs vary: parity is not vacuous


def test_opset_outside_tf2onnx_range_is_a_config_error(tmp_path):
    base = """\
name: anything
source:
  path: {path}
inputs:
  - {{name: x, shape: [null, 4], dtype: float32}}
outputs: [y]
targets:
  - name: onnx
    opset: {opset}
"""
    (tmp_path / "m.keras").write_bytes(b"")
    for opset in (19, 13):
        path = tmp_path / f"opset{opset}.yaml"
        path.write_text(base.format(path=tmp_path / "m.keras", opset=opset))
        config = load_config(path, REGISTRY)  # checked when the target is selected
        with pytest.raises(ConfigError, match=rf"opset: opset {opset} is outside what tf2onnx 1.17 supports; allowed 14\.\.18"):
            require_selected([config], ["onnx"])
    for opset in (14, 18):
        assert TARGET.check_options(TARGET.Options(opset=opset), {"inputs": ()}) == []


def _special_ops_config(tmp_path, opset: int, with_lgamma: bool):
    import tensorflow as tf

    specs = [tf.TensorSpec([None, 4], tf.int32, name="a"), tf.TensorSpec([None, 4], tf.float32, name="x")]

    @tf.function(input_signature=specs)
    def serve(a, x):
        masked = tf.bitwise.bitwise_and(a, 6) + a
        special = tf.math.lgamma(x + 1.0) if with_lgamma else x * 2.0
        return {"masked": masked, "special": special}

    source = _saved_module(tmp_path / f"special_{with_lgamma}", serve)
    return _write_config(
        tmp_path,
        f"""\
name: special
source:
  path: {source}
inputs:
  - {{name: a, shape: [null, 4], dtype: int32}}
  - {{name: x, shape: [null, 4], dtype: float32}}
outputs: [masked, special]
data:
  inputs:
    a: {{distribution: integers, low: 0, high: 100}}
    x: {{distribution: uniform, low: 0.5, high: 4.0}}
  samples: 9
targets:
  - name: onnx
    opset: {opset}
""",
    )


def test_unsupported_ops_are_named_with_the_opset_tried_and_what_higher_opsets_do(tmp_path):
    config = _special_ops_config(tmp_path, 17, with_lgamma=True)
    with pytest.raises(IncompatibleModel) as caught:
        _build(tmp_path, config)
    message = str(caught.value)
    assert "to ONNX opset 17" in message
    assert "TF op BitwiseAnd" in message and "opset 18 or higher supports it" in message
    assert "TF op Lgamma" in message and "no ONNX opset up to 18 supports it" in message
    assert "Fix: replace those operations" in message


def test_unsupported_op_in_a_keras_layer_names_the_layer(tmp_path):
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="onnx_test")
    class LogGamma(keras.layers.Layer):
        def call(self, x):
            return tf.math.lgamma(tf.abs(x) + 1.0)

    keras.utils.set_random_seed(2)
    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, LogGamma(name="log_gamma")(keras.layers.Dense(4, name="dense_in")(inputs)))
    model.save(tmp_path / "lgamma.keras")
    config = _write_config(
        tmp_path,
        f"""\
name: lgamma
source:
  path: {tmp_path / "lgamma.keras"}
inputs:
  - {{name: x, shape: [null, 4], dtype: float32}}
outputs: [y]
data:
  samples: 6
targets: [onnx]
""",
    )
    with pytest.raises(IncompatibleModel, match=r"TF op Lgamma at functional\w*/log_gamma\w*/Lgamma: no ONNX opset up to 18"):
        _build(tmp_path, config)


def test_op_only_in_a_higher_opset_says_which_and_converts_there(tmp_path):
    (tmp_path / "low").mkdir()
    low = _special_ops_config(tmp_path / "low", 17, with_lgamma=False)
    with pytest.raises(IncompatibleModel, match=r"(?s)TF op BitwiseAnd .*opset 18 or higher supports it.*Fix: set `opset: 18`"):
        _build(tmp_path / "low", low)
    (tmp_path / "high").mkdir()
    high = _special_ops_config(tmp_path / "high", 18, with_lgamma=False)
    prep, out_dir, (artifact,) = _build(tmp_path / "high", high)
    assert artifact.info["opset"] == 18 and artifact.info["onnx_ops"].get("BitwiseAnd") == 1
    worst = _worst_error(out_dir, artifact, prep)
    assert worst == {"masked": 0.0, "special": 0.0}


def test_checker_failure_is_a_conversion_error_with_the_checker_message(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    # A node reads a value nothing produces: structurally invalid ONNX.
    node = helper.make_node("Relu", ["missing"], ["y"])
    graph = helper.make_graph(
        [node], "broken", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ConversionError, match=r"onnx\.checker rejected model\.onnx for model 'broken_model'.*missing"):
        _check(path, "broken_model")


def test_tf_tensor_names_are_replaced_by_config_names_in_config_order(tmp_path):
    """Graph values named like `x:0` / `Identity:0` get the config's names, outputs are
    reordered from the traced function's sorted order to the config's, and it still runs."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    # Outputs come out in the traced function's flattened (sorted) order: negated, relu.
    nodes = [helper.make_node("Neg", ["x:0"], ["Identity:0"]), helper.make_node("Relu", ["x:0"], ["Identity_1:0"])]
    graph = helper.make_graph(
        nodes, "tf_names", [helper.make_tensor_value_info("x:0", TensorProto.FLOAT, ["unk__1", 3])],
        [helper.make_tensor_value_info("Identity:0", TensorProto.FLOAT, ["unk__2", 3]),
         helper.make_tensor_value_info("Identity_1:0", TensorProto.FLOAT, ["unk__3", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    _fix_interface(model, ["features"], ["relu", "negated"], ["negated", "relu"])
    onnx.checker.check_model(model, full_check=True)
    assert [v.name for v in model.graph.input] == ["features"]
    assert [v.name for v in model.graph.output] == ["relu", "negated"]
    assert [v.type.tensor_type.shape.dim[0].dim_param for v in list(model.graph.input) + list(model.graph.output)] == ["batch"] * 3
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["relu", "negated"]
    x = np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 0.5]], np.float32)
    relu, negated = session.run(None, {"features": x})
    np.testing.assert_array_equal(relu, np.maximum(x, 0))
    np.testing.assert_array_equal(negated, -x)


def test_runner_reopens_from_recorded_artifact_json(tmp_path, keras3_wide):
    """`open` needs only the files and the recorded artifact (as `tfship validate` has it)."""
    from pipeline.target import Artifact

    config = _write_config(
        tmp_path,
        f"""\
name: wide
source:
  path: {keras3_wide}
inputs:
  - {{name: x, shape: [null, 8], dtype: float32}}
outputs: [probs]
data:
  samples: 6
targets: [onnx]
""",
    )
    prep, out_dir, (artifact,) = _build(tmp_path, config)
    recorded = json.loads(json.dumps({"variant": artifact.variant, "files": list(artifact.files), "info": artifact.info}))
    reopened = Artifact(variant=recorded["variant"], files=tuple(recorded["files"]), info=recorded["info"])
    runner = TARGET.open(out_dir, reopened)
    label, inputs = prep.data.cases[-1]
    np.testing.assert_allclose(runner(inputs)["probs"], prep.reference[-1]["probs"], atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- captured constants


def _assert_only_config_inputs_and_parity(tmp_path, config, rtol: float):
    """The file's graph inputs are the config's; max |onnx - eager| <= rtol * max(1, max |eager|)."""
    import onnx

    prep, out_dir, (artifact,) = _build(tmp_path, config)
    graph = onnx.load(str(out_dir / "model.onnx")).graph
    initializers = {i.name for i in graph.initializer}
    assert [v.name for v in graph.input if v.name not in initializers] == list(config.input_names)
    worst = _worst_error(out_dir, artifact, prep)
    reference = np.concatenate([r[config.output_names[0]] for r in prep.reference])
    assert max(worst.values()) <= rtol * max(1.0, float(np.abs(reference).max())), worst
    assert reference.std(axis=0).max() > 1e-2  # outputs vary with the input: parity is not vacuous
    return graph


@pytest.mark.heavy  # about 45 s: builds and calibrates EfficientNetB0
def test_efficientnet_normalization_constants_are_folded_in_not_graph_inputs(tmp_path):
    config = _write_config(
        tmp_path,
        """\
name: efficientnet_b0
source:
  factory: fixture_captures:efficientnet_b0
inputs:
  - {name: image, shape: [null, 32, 32, 3], dtype: float32}
outputs: [features]
data:
  generator: fixture_captures:images
  samples: 6
targets: [onnx]
""",
    )
    _assert_only_config_inputs_and_parity(tmp_path, config, rtol=1e-5)


def test_audio_front_end_dsp_kernels_are_folded_in_not_graph_inputs(tmp_path):
    config = _write_config(
        tmp_path,
        """\
name: audio_tones
source:
  factory: fixture_captures:audio_tone_classifier
inputs:
  - {name: waveform, shape: [null, 1024], dtype: float32}
outputs: [tone]
data:
  generator: fixture_captures:tone_data
  samples: 12
targets: [onnx]
""",
    )
    graph = _assert_only_config_inputs_and_parity(tmp_path, config, rtol=1e-5)
    # The (36, 1, 256)-sized kernels are in the file, as constants or initializers.
    sizes = [int(np.prod(t.dims)) for t in graph.initializer]
    sizes += [int(np.prod(a.t.dims)) for n in graph.node for a in n.attribute if a.HasField("t")]
    assert sizes.count(36 * 256) >= 2 and 256 in sizes


def test_a_grouped_convolution_converts(tmp_path):
    """Keras 3 runs a grouped Conv2D (ConvNeXt's depthwise 7x7) through a jit_compile
    tf.function that freezing kept as a StatefulPartitionedCall tf2onnx cannot convert;
    it is inlined, and the file computes what Keras computes."""
    import keras
    import onnxruntime as ort
    import tensorflow as tf

    from targets.support import onnx_lift

    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 6), name="x")
    model = keras.Model(x, keras.layers.Conv2D(6, 3, padding="same", groups=3, name="gconv")(x))
    signature = [tf.TensorSpec([None, 8, 8, 6], tf.float32, name="x")]
    function = tf.function(lambda a: {"y": model(a)}, input_signature=signature)
    converted = onnx_lift.convert_function(function, signature, 17, float("inf"))
    assert "StatefulPartitionedCall" not in {n.op_type for n in converted.model.graph.node}
    session = ort.InferenceSession(converted.model.SerializeToString(), providers=["CPUExecutionProvider"])
    data = np.random.default_rng(0).normal(size=(3, 8, 8, 6)).astype(np.float32)
    got = session.run(None, {session.get_inputs()[0].name: data})[0]
    assert np.max(np.abs(got - model(data).numpy())) < 1e-5


# --------------------------------------------------------------------------- lifted weights


def test_lifted_weights_are_attached_by_name_with_kernel_layout_folded(tmp_path):
    """The large-model path on a small conv net: every weight lifted out of tf2onnx's
    graph comes back as an initializer, the kernel transposes tf2onnx inserts for
    non-constant kernels are folded, and the file computes what Keras computes."""
    import keras
    import onnx
    import onnxruntime as ort
    import tensorflow as tf

    from targets.support import onnx_lift

    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 3), name="x")
    h = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)(h)
    h = keras.layers.Conv2D(24, 1, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(h)))
    signature = [tf.TensorSpec([None, 12, 12, 3], tf.float32, name="x")]
    function = tf.function(lambda x: {"y": model(x)}, input_signature=signature)

    converted = onnx_lift.convert_function(function, signature, opset=17, lift_min_bytes=256)
    assert len(converted.lifted) == 4  # the four kernels of at least 256 bytes
    path = tmp_path / "model.onnx"
    assert onnx_lift.attach(converted, path, external=False, data_name="unused") == ["model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]

    graph = onnx.load(str(path)).graph
    initializers = {i.name for i in graph.initializer}
    assert len(initializers) >= 4
    assert [v.name for v in graph.input if v.name not in initializers] == ["x"]
    assert not [n.op_type for n in graph.node if n.op_type in ("Transpose", "Reshape") and n.input[0] in initializers]
    onnx.checker.check_model(str(path), full_check=True)

    x = np.random.default_rng(0).normal(size=(4, 12, 12, 3)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (produced,) = session.run(None, {"x": x})
    expected = model(x).numpy()
    assert expected.std(axis=0).min() > 1e-3
    assert np.abs(produced - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())


def test_lifted_weights_fed_through_recurrent_loops_keep_their_shapes(tmp_path):
    """LSTM and GRU weights enter TF While loops; lifted, they keep their shapes there
    (the loop records its inputs' shapes) and the file computes what Keras computes.
    tf2onnx's LSTM fusion needs constant weights, so the lifted model runs as a Loop."""
    import keras
    import onnxruntime as ort
    import tensorflow as tf

    from targets.support import onnx_lift

    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 8), name="x")
    h = keras.layers.GRU(24)(keras.layers.LSTM(32, return_sequences=True)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(4)(h))
    signature = [tf.TensorSpec([None, 10, 8], tf.float32, name="x")]
    function = tf.function(lambda x: {"y": model(x)}, input_signature=signature)

    converted = onnx_lift.convert_function(function, signature, opset=17, lift_min_bytes=256)
    assert len(converted.lifted) >= 4
    onnx_lift.attach(converted, tmp_path / "model.onnx", external=False, data_name="unused")
    x = np.random.default_rng(0).normal(size=(3, 10, 8)).astype(np.float32)
    (produced,) = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    expected = model(x).numpy()
    assert expected.std() > 1e-2
    assert np.abs(produced - expected).max() <= 1e-5
