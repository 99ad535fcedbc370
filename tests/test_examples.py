"""Fast checks of the example models and the test fixture models.

image_cnn is not trained here (the build step does that); only its data and
architecture are checked.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]
# Lets a bare `pytest` import the uninstalled packages and the fixtures module.
for entry in (ROOT, ROOT / "tests"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import fixture_models  # noqa: E402
from examples import __main__ as examples_cli  # noqa: E402
from examples import affine, image_cnn, multi_io, threshold  # noqa: E402
from examples._atomic import atomic_path  # noqa: E402


# --------------------------------------------------------------------------
# affine / threshold
# --------------------------------------------------------------------------


def test_affine_exact_values_eager_and_traced():
    module = affine.build()
    x = np.array([[0.0, 1.0, -1.0, 2.5], [-3.0, 0.5, 10.0, -0.25]], np.float32)
    expected = np.array([[1.0, 3.0, -1.0, 6.0], [-5.0, 2.0, 21.0, 0.5]], np.float32)

    np.testing.assert_array_equal(module(x).numpy(), expected)
    traced = tf.function(module.__call__, input_signature=[affine.INPUT_SIGNATURE["x"]])
    np.testing.assert_array_equal(traced(x).numpy(), expected)
    assert {v.name for v in module.trainable_variables} == {"w:0", "b:0"}


def _threshold_reference(x, t):
    return np.where(x > t, np.sqrt(np.maximum(x, 0.0)), np.square(x))


@pytest.mark.parametrize("t", [0.5, 0.0, -1.0])
def test_threshold_matches_numpy_on_both_sides(t):
    module = threshold.build()
    x = np.array(
        [[-4.0, -1.0, -0.25, 0.0, 0.25, 0.5], [0.5001, 1.0, 2.0, 4.0, 9.0, 16.0]], np.float32
    )
    traced = tf.function(
        module.__call__,
        input_signature=[threshold.INPUT_SIGNATURE["x"], threshold.INPUT_SIGNATURE["threshold"]],
    )
    t32 = np.float32(t)
    got = traced(x, t32).numpy()

    assert np.any(x > t) and np.any(x <= t)  # both branches exercised
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got, _threshold_reference(x, t32), rtol=1e-6, atol=0)
    np.testing.assert_allclose(module(x, t32).numpy(), got, rtol=0, atol=0)


def test_threshold_gradient_has_no_nan():
    module = threshold.build()
    x = tf.constant([[-2.0, -0.5, 0.0, 0.5, 1.0, 4.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = module(x, tf.constant(0.75))
    grad = tape.gradient(y, x).numpy()
    assert not np.isnan(grad).any()
    # d/dx x^2 = 2x below the threshold, d/dx sqrt(x) = 1 / (2 sqrt(x)) above.
    np.testing.assert_allclose(grad, [[-4.0, -1.0, 0.0, 1.0, 0.5, 0.25]], rtol=1e-6)


# --------------------------------------------------------------------------
# multi_io
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi_io_model():
    model, metrics = multi_io.train(verbose=False)
    return model, metrics


def test_multi_io_learns_both_outputs(multi_io_model):
    _, metrics = multi_io_model
    assert metrics["category_accuracy"] > 0.85
    assert metrics["score_mae"] < 0.08
    assert metrics["score_std"] > 0.1


@pytest.mark.parametrize("file_name", ["multi_io.h5", "multi_io_savedmodel"])
def test_multi_io_reload_gives_identical_outputs(multi_io_model, tmp_path, file_name):
    import tf_keras

    model, _ = multi_io_model
    path = multi_io.save(model, tmp_path / file_name)
    assert path.is_file() == (path.suffix == ".h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == [file_name]  # no scratch left

    reloaded = tf_keras.models.load_model(path)
    inputs, _ = multi_io.eval_data()
    before, after = model(inputs), reloaded(inputs)

    assert isinstance(after, list) and reloaded.output_names == ["score", "category"]
    assert [tuple(o.shape) for o in after] == [(128, 1), (128, 3)]
    for a, b in zip(before, after):
        assert np.max(np.abs(a.numpy() - b.numpy())) < 1e-6
    score, category = (o.numpy() for o in after)
    assert score.std() > 1e-3 and category.std(axis=0).min() > 1e-3
    np.testing.assert_allclose(category.sum(axis=1), 1.0, atol=1e-5)
    assert len(np.unique(category.argmax(axis=1))) == 3


def test_multi_io_eval_data_shapes():
    inputs, labels = multi_io.eval_data()
    assert inputs["features"].dtype == np.float32 and inputs["features"].shape == (128, 8)
    assert inputs["ids"].dtype == np.int32 and inputs["ids"].shape == (128, 5)
    assert inputs["ids"].min() >= 0 and inputs["ids"].max() < 50
    assert labels["score"].shape == (128, 1) and labels["category"].shape == (128,)


# --------------------------------------------------------------------------
# image_cnn (data and architecture only)
# --------------------------------------------------------------------------


def test_make_images_is_deterministic_and_balanced():
    x1, y1 = image_cnn.make_images(400, seed=3)
    x2, y2 = image_cnn.make_images(400, seed=3)
    x3, _ = image_cnn.make_images(400, seed=4)

    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert x1.shape == (400, 32, 32, 3) and x1.dtype == np.float32 and y1.dtype == np.int32
    assert x1.min() >= 0.0 and x1.max() <= 1.0
    assert np.bincount(y1, minlength=4).tolist() == [100, 100, 100, 100]
    # Horizontal and vertical stripes have the same brightness statistics, so
    # only orientation tells them apart: a classifier has to learn edges.
    means = x1.mean(axis=(1, 2, 3))
    assert abs(means[y1 == 0].mean() - means[y1 == 1].mean()) < 0.02


def test_image_eval_data_is_disjoint_from_training():
    inputs, labels = image_cnn.eval_data()
    assert list(inputs) == ["image"] and inputs["image"].shape == (256, 32, 32, 3)
    assert labels.shape == (256,)
    train_x, _ = image_cnn.make_images(256, image_cnn.TRAIN_SEED)
    assert not np.array_equal(inputs["image"], train_x)


def test_image_cnn_architecture():
    model = image_cnn.make_model()
    assert 20_000 <= model.count_params() <= 60_000
    assert model.inputs[0].name == "image" and model.output_names == ["probs"]
    assert tuple(model.output.shape) == (None, 4)


def test_image_cnn_rejects_non_keras_path(tmp_path):
    with pytest.raises(ValueError, match=".keras"):
        image_cnn.build(tmp_path / "model.h5")


# --------------------------------------------------------------------------
# build command and atomic writes
# --------------------------------------------------------------------------


def test_build_command_skips_existing_files(tmp_path, capsys):
    existing = tmp_path / "multi_io.h5"
    existing.write_bytes(b"sentinel")
    assert examples_cli.main(["build", "--out", str(tmp_path), "multi_io"]) == 0
    assert existing.read_bytes() == b"sentinel"
    assert "skipping" in capsys.readouterr().out


def test_atomic_path_leaves_target_untouched_on_failure(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as scratch:
            scratch.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


# --------------------------------------------------------------------------
# fixture models behave as their docstrings promise
# --------------------------------------------------------------------------

SPEC_4 = tf.TensorSpec([None, 4], tf.float32)


def test_frozen_random_freezes_at_trace_time():
    module = fixture_models.frozen_random()
    zeros = tf.zeros([1, 4])
    traced = tf.function(module.__call__, input_signature=[SPEC_4])
    assert traced(zeros).numpy()[0, 0] == traced(zeros).numpy()[0, 0]
    assert module(zeros).numpy()[0, 0] != module(zeros).numpy()[0, 0]


def test_python_if_fails_to_trace():
    keras_model = fixture_models.python_if()
    with pytest.raises(tf.errors.OperatorNotAllowedInGraphError):
        tf.function(keras_model, input_signature=[SPEC_4]).get_concrete_function()
    module = fixture_models.python_if_module()
    with pytest.raises(ValueError, match="tf.bool"):
        tf.function(module.__call__, input_signature=[SPEC_4]).get_concrete_function()


def test_float64_and_string_fixtures_compute_float32():
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    model = fixture_models.float64_op()
    assert model(x).dtype == tf.float32 and model.get_layer("to_double") is not None
    out = fixture_models.string_op()(x)
    assert out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), 2 * x)


@pytest.mark.parametrize("factory", ["tiny_keras3_classifier", "tiny_tfkeras_classifier"])
def test_tiny_classifiers_are_trained_and_non_degenerate(factory):
    model = getattr(fixture_models, factory)()
    inputs, labels = fixture_models.tiny_data(256, seed=1)
    probs = np.asarray(model(inputs["x"]))
    assert model.output_names == ["probs"]
    assert np.mean(probs.argmax(axis=1) == labels) > 0.9
    assert probs.std(axis=0).min() > 0.2


@pytest.fixture(scope="module")
def int8_outlier_model():
    return fixture_models.int8_outlier()


def test_int8_outlier_float_model_is_accurate(int8_outlier_model):
    inputs, labels = fixture_models.int8_outlier_data(512, seed=1)
    probs = np.asarray(int8_outlier_model(inputs["x"]))
    assert np.mean(probs.argmax(axis=1) == labels) > 0.95
    kernel, _ = int8_outlier_model.get_layer("hidden").get_weights()
    assert np.abs(kernel).max() > 1e3  # the outlier unit is really there


def test_int8_outlier_breaks_full_int8_quantization(int8_outlier_model, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    calibration, _ = fixture_models.int8_outlier_data(100, seed=0)
    inputs, _ = fixture_models.int8_outlier_data(512, seed=1)
    int8_outlier_model.export(str(tmp_path / "saved"), verbose=False)

    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([row[None]] for row in calibration["x"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    interpreter = Interpreter(model_content=converter.convert())

    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    interpreter.resize_tensor_input(input_detail["index"], inputs["x"].shape)
    interpreter.allocate_tensors()
    scale, zero = input_detail["quantization"]
    quantized = np.clip(np.round(inputs["x"] / scale + zero), -128, 127).astype(np.int8)
    interpreter.set_tensor(input_detail["index"], quantized)
    interpreter.invoke()
    int8_top1 = interpreter.get_tensor(output_detail["index"]).argmax(axis=1)

    float_top1 = np.asarray(int8_outlier_model(inputs["x"])).argmax(axis=1)
    assert np.mean(int8_top1 == float_top1) < 0.8
