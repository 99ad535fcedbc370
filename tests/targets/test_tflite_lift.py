"""TFLite for large models: the converter sees splat stand-ins for the large weights
and the real weights are written into the file afterwards (targets/support/tflite_lift.py).

The thresholds are lowered here so that a small model takes the large-model path; the
files must compute what the usual conversion's files compute."""
from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture
def lift_everything(monkeypatch):
    from targets.support import tflite_lift

    monkeypatch.setattr(tflite_lift, "LIFT_MODEL_BYTES", 0)
    monkeypatch.setattr(tflite_lift, "LIFT_MIN_BYTES", 2048)


def _conv_model():
    """Conv (OHWI), depthwise ([1,H,W,C*M]), a conv whose batch norm the converter folds
    into the kernel (its stand-in disappears: converted as a real constant), and square
    and non-square Dense kernels (FULLY_CONNECTED [out, in])."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3), name="image")
    h = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    h = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, activation="relu")(h)
    h = keras.layers.Conv2D(48, 3)(h)
    h = keras.layers.BatchNormalization(beta_initializer="random_normal", gamma_initializer="random_uniform")(h)
    h = keras.layers.Conv2D(40, 1, activation="relu")(keras.layers.ReLU()(h))
    h = keras.layers.Flatten()(keras.layers.AveragePooling2D(2)(h))
    h = keras.layers.Dense(64, activation="relu")(h)
    h = keras.layers.Dense(64, activation="relu")(h)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(h))


def _usual(model, variant: str, tmp_path):
    """The same variant converted the usual way, from the model's own SavedModel."""
    import tensorflow as tf

    folder = tmp_path / f"usual_{variant}"
    if type(model).__module__.startswith("tf_keras"):  # Keras 2: its own converter entry
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    else:
        model.export(str(folder), verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(folder))
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def _run(model_file_or_content, x):
    """The file's single output for input `x` (an array for its one input, or a dict)."""
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model_file_or_content, bytes):
        interpreter = Interpreter(model_content=model_file_or_content)
    else:
        interpreter = Interpreter(model_path=str(model_file_or_content))
    runner = interpreter.get_signature_runner("serving_default")
    feeds = x if isinstance(x, dict) else {runner.get_input_details().popitem()[0]: x}
    return next(iter(runner(**feeds).values()))


VARIANTS = ["float32", "float16", "dynamic_range"]


def _export_and_compare(model, data, feeds, out, tmp_path) -> dict[str, dict]:
    """Export the float variants through the stand-in path; each file must give exactly
    the usual conversion's outputs on `feeds` (same weights in the same layout and type,
    int8 rounded as the converter rounds). Returns each variant's report info."""
    import tfship

    result = tfship.export(model, targets=[{"name": "tflite", "variants": VARIANTS}], data=data, out=out)
    assert result.passed, str(result)
    report = json.loads((out / "report.json").read_text())
    infos = {}
    for variant in VARIANTS:
        infos[variant] = report["targets"]["tflite"]["variants"][variant]["info"]
        lifted = _run(out / "tflite" / f"{variant}.tflite", feeds)
        usual = _run(_usual(model, variant, tmp_path), feeds)
        assert np.array_equal(lifted, usual), (variant, np.abs(lifted - usual).max())
    return infos


def test_stand_ins_give_the_files_the_usual_conversion_gives(tmp_path, lift_everything):
    model = _conv_model()
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(32, 16, 16, 3)) * rng.uniform(0.2, 5.0, size=(32, 1, 1, 1))).astype(np.float32)
    expected = model(x).numpy()
    # Outputs that vary from sample to sample: a weight written in the wrong layout or
    # scale would change them.
    assert expected.std(axis=0).min() > 1e-3 * np.abs(expected).max()
    out = tmp_path / "artifacts" / "lifted"
    for info in _export_and_compare(model, {"image": x}, x[:8], out, tmp_path).values():
        # Seven kernels of at least 2 KB; the batch-normalized conv's is folded by the
        # converter and kept real, and small int8 buffers are below the stand-in size.
        assert info["weights_written_after_conversion"] >= 4, info
        assert "stand-ins for" in info["note_weights"]
    assert sorted(p.name for p in (out / "tflite").iterdir() if not p.name.startswith(".")) == [f"{v}.tflite" for v in sorted(VARIANTS)]


def test_one_weight_read_in_two_layouts_gets_a_buffer_for_each(tmp_path, lift_everything):
    """A table both gathered from (its own layout) and multiplied by (FULLY_CONNECTED reads
    it transposed): one splat, which the converter stores once, holds two real contents."""
    import keras
    import tensorflow as tf

    class Tied(keras.layers.Layer):
        def build(self, shapes):
            self.table = self.add_weight(shape=(64, 48), initializer="random_normal", name="table")

        def call(self, ids, x):
            return tf.gather(self.table, ids) + tf.matmul(x, self.table)

    keras.utils.set_random_seed(4)
    ids, x = keras.Input((), dtype="int32", name="ids"), keras.Input((64,), name="x")
    model = keras.Model([ids, x], keras.layers.Activation("linear", name="y")(Tied()(ids, x)))
    rng = np.random.default_rng(0)
    data = {"ids": rng.integers(0, 64, size=32).astype(np.int32), "x": rng.normal(size=(32, 64)).astype(np.float32)}
    feeds = {"ids": data["ids"][:1], "x": data["x"][:1]}
    # dynamic_range: GATHER's int8 output keeps the table's scale, which follows the
    # real weight's (it held the stand-in's: SQNR 4.8 dB before).
    for info in _export_and_compare(model, data, feeds, tmp_path / "artifacts" / "tied", tmp_path).values():
        assert info["weights_written_after_conversion"] == 1


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_attention_kernels_read_as_matrices_are_placed(tmp_path, lift_everything, flavour):
    """MultiHeadAttention's EinsumDense kernels (d_model, heads, head_dim) and (heads,
    head_dim, d_model): Keras 3 reshapes them into a MatMul, Keras 2 reads them in an
    Einsum; the converter stores square [out, in] matrices. Both flavours: the files
    compute exactly what the usual conversion's files compute."""

    if flavour == "keras3":
        import keras
    else:
        import tf_keras as keras
    keras.utils.set_random_seed(5)
    inputs = keras.Input((10, 64), name="x")
    h = keras.layers.MultiHeadAttention(num_heads=4, key_dim=16)(inputs, inputs)
    h = keras.layers.Dense(64)(keras.layers.LayerNormalization()(h + inputs))
    model = keras.Model(inputs, keras.layers.Dense(8, name="y")(keras.layers.GlobalAveragePooling1D()(h)))
    x = np.random.default_rng(0).normal(size=(16, 10, 64)).astype(np.float32)
    for info in _export_and_compare(model, x, x[:2], tmp_path / "artifacts" / "attention", tmp_path).values():
        assert info.get("weights_written_after_conversion", 0) >= 5, info  # 4 attention kernels and the Dense


def test_a_model_whose_weights_all_fold_away_converts_the_usual_way(tmp_path, lift_everything):
    """Dense + batch norm: the converter folds the norm into the kernel, so the stand-in is
    never found; the variant is converted with its real weights and says so."""
    import keras
    import tfship

    keras.utils.set_random_seed(2)
    inputs = keras.Input((32,), name="x")
    h = keras.layers.BatchNormalization(beta_initializer="random_normal", gamma_initializer="random_uniform")(keras.layers.Dense(48)(inputs))
    model = keras.Model(inputs, keras.layers.Activation("tanh", name="y")(h))
    x = np.random.default_rng(0).normal(size=(16, 32)).astype(np.float32)
    out = tmp_path / "artifacts" / "folded"
    result = tfship.export(model, targets=[{"name": "tflite", "variants": ["float32"]}], data={"x": x}, out=out)
    assert result.passed, str(result)
    info = json.loads((out / "report.json").read_text())["targets"]["tflite"]["variants"]["float32"]["info"]
    assert "weights_written_after_conversion" not in info
    assert "stand-ins for them could not be placed (no weight left to stand in for)" in info["note_conversion"]


@pytest.mark.heavy
def test_vgg16_converts_with_stand_ins_at_the_default_size_and_matches_the_usual_files(tmp_path):
    """A stock architecture over the threshold, untouched: VGG16 (138M parameters, 553 MB).
    Its 12 kernels of 1 MB or more (conv OHWI, FULLY_CONNECTED [out, in]) are written after
    conversion; the files compute exactly what the usual conversion's files compute."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(weights=None, include_top=True, classifier_activation=None, input_shape=(224, 224, 3))
    x = np.random.default_rng(0).uniform(-1, 1, size=(8, 224, 224, 3)).astype(np.float32)
    for info in _export_and_compare(model, x, x[:2], tmp_path / "artifacts" / "vgg16", tmp_path).values():
        assert info["weights_written_after_conversion"] == 12
