"""`tfship compare` of a trained multi-output SavedModel against its publisher's own
files: a tf2onnx file that kept graph names (outputs numbered, not named) and a .tflite.
Pairs come from the converter's numbering (checked here against real tf2onnx), from
shapes, or from `--pair` / `pairs=`; an unpairable file is exit 2 with the syntax the
caller writes."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.heavy  # trains a model and runs the tf2onnx CLI three times (about 40 s)

NUMBERED = ["StatefulPartitionedCall:0", "StatefulPartitionedCall:1", "StatefulPartitionedCall:2"]


def _tf2onnx(saved_model, out, *flags):
    done = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model), "--output", str(out), "--opset", "17", *flags],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A Keras 3 model with outputs probs [N,4], embedding [N,4], score [N,1], trained
    briefly, exported as a SavedModel; its .tflite; and three tf2onnx files of it."""
    import keras
    import tensorflow as tf

    root = tmp_path_factory.mktemp("published")
    keras.utils.set_random_seed(0)
    x = keras.Input((6,), name="x")
    h = keras.layers.Dense(16, activation="relu", name="h")(x)
    outputs = {
        "probs": keras.layers.Dense(4, activation="softmax", name="probs")(h),
        "embedding": keras.layers.Dense(4, name="embedding")(h),
        "score": keras.layers.Dense(1, name="score")(h),
    }
    model = keras.Model(x, outputs)
    model.compile("adam", {"probs": "sparse_categorical_crossentropy", "embedding": "mse", "score": "mse"})
    data = np.random.default_rng(0).normal(size=(256, 6)).astype("float32")
    targets = {"probs": (data[:, 0] > 0).astype("int32") + 2 * (data[:, 1] > 0), "embedding": data[:, :4], "score": data[:, 5:]}
    model.fit(data, targets, epochs=3, verbose=0)
    model.export(str(root / "savedmodel"))
    converter = tf.lite.TFLiteConverter.from_saved_model(str(root / "savedmodel"))
    (root / "model.tflite").write_bytes(converter.convert())
    return {
        "savedmodel": root / "savedmodel",
        "tflite": root / "model.tflite",
        # tf2onnx keeping graph names: Identity:0, Identity_1:0, Identity_2:0
        "graph_names": _tf2onnx(root / "savedmodel", root / "graph_names.onnx", "--use-graph-names"),
        # the names a SignatureDef gives the same tensors (one node's outputs, numbered)
        "numbered": _tf2onnx(root / "savedmodel", root / "numbered.onnx", "--use-graph-names", "--rename-outputs", ",".join(NUMBERED)),
        # names that carry no order: only shapes (two outputs share [N, 4]) or `--pair` can pair them
        "renamed": _tf2onnx(root / "savedmodel", root / "renamed.onnx", "--use-graph-names", "--rename-outputs", "out_a,out_b,out_c"),
    }


def test_tf2onnx_numbers_outputs_by_sorted_name(published):
    """What the numbering rule rests on, checked on the converter itself."""
    import onnxruntime as ort
    import tensorflow as tf

    signature = tf.saved_model.load(str(published["savedmodel"])).signatures["serving_default"]
    x = np.random.default_rng(1).normal(size=(3, 6)).astype("float32")
    reference = {k: v.numpy() for k, v in signature(x=tf.constant(x)).items()}
    session = ort.InferenceSession(str(published["graph_names"]))
    produced = dict(zip([o.name for o in session.get_outputs()], session.run(None, {session.get_inputs()[0].name: x})))
    assert list(produced) == ["Identity:0", "Identity_1:0", "Identity_2:0"]
    for name, onnx_name in zip(sorted(reference), produced):  # embedding, probs, score
        np.testing.assert_allclose(produced[onnx_name], reference[name], atol=1e-5)


def test_cli_pairs_numbered_and_graph_named_files_and_passes(published, capsys):
    from pipeline.cli import main

    code = main(["compare", str(published["savedmodel"]), str(published["numbered"]), str(published["graph_names"]), str(published["tflite"])])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "outputs paired by converter numbering" in out
    assert "probs = StatefulPartitionedCall:1" in out and "probs = Identity_1:0" in out
    assert "cannot pair" not in out


def test_unordered_names_exit_2_with_the_cli_syntax_then_pair_explicitly(published, capsys):
    from pipeline.cli import main

    code = main(["compare", str(published["savedmodel"]), str(published["renamed"]), str(published["tflite"])])
    out = capsys.readouterr().out
    assert code == 2, out
    assert "cannot pair outputs" in out and "--pair embedding=out_a" in out and "pairs=" not in out
    assert "shapes not unique" in out
    code = main(["compare", str(published["savedmodel"]), str(published["renamed"]), str(published["tflite"]), "--pair", "embedding=out_a", "--pair", "probs=out_b"])
    out = capsys.readouterr().out
    assert code == 0, out
    code = main(["compare", str(published["savedmodel"]), str(published["renamed"]), "--pair", "embeding=out_a"])
    captured = capsys.readouterr()
    assert code == 2 and "no input or output of that name" in captured.out + captured.err


def test_python_compare_pairs_and_says_so_in_python(published):
    import tfship

    # probs paired by hand; then embedding [N, 4] and score [N, 1] each have a shape of their own
    result = tfship.compare(published["savedmodel"], published["renamed"], pairs={"probs": "out_b"})
    assert result.passed, result.render()
    [onnx] = result.results
    assert onnx.paired == {"embedding": "out_a", "probs": "out_b", "score": "out_c"}
    assert onnx.paired_by == {"probs": "explicit", "embedding": "shape", "score": "shape"}
    assert onnx.parity["outputs"]["probs"]["max_abs"] < 1e-5
    refused = tfship.compare(published["savedmodel"], published["renamed"])
    assert refused.exit_code == 2 and "tfship.compare(..., pairs={'embedding': 'out_a'})" in refused.results[0].message
