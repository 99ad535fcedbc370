"""Never stale: an artifact is reused only when it was built from the model there is now.

Each change below must rebuild the targets it affects, and the published file must
compute the *current* model (checked by running the file, not by reading the report);
each non-change must reuse. Sources: a factory that reads a checkpoint and imports a
helper module, a data generator with a helper, a `.keras` file whose custom layer lives
in a module that imports another, a SavedModel folder, and live models (Python API).
"""
from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

FACTORY = """\
import pathlib

import keras

import shelper

HERE = pathlib.Path(__file__).parent


def arch():
    inputs = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(12, activation=shelper.ACTIVATION, name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="y")(hidden))


def build():
    model = arch()
    model.load_weights(HERE / "ckpt.weights.h5")
    return model
"""

DATA = """\
import numpy as np

import sdatahelp


def eval_data(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": (rng.uniform(-1, 1, (n, 6)) * sdatahelp.SCALE).astype("float32")}
"""

FACTORY_CONFIG = """\
source:
  factory: sfactory:build
inputs:
  - {name: x, shape: [null, 6], dtype: float32}
outputs: [y]
data:
  generator: sdata:eval_data
  samples: 16
targets:
  - savedmodel
  - {name: onnx, opset: 17}
"""


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(textwrap.dedent(text))


def _checkpoint(folder: Path, seed: int) -> None:
    """'Training': new weights in the checkpoint the factory reads."""
    import importlib

    import sfactory

    importlib.reload(importlib.import_module("shelper"))
    model = importlib.reload(sfactory).arch()
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    model.save_weights(folder / "ckpt.weights.h5")


def _current_outputs(folder: Path, x: np.ndarray) -> np.ndarray:
    """What the model computes now: the factory, imported afresh."""
    import importlib

    import sfactory

    importlib.reload(importlib.import_module("shelper"))
    return np.asarray(importlib.reload(sfactory).build()(x, training=False))


def _run_published(model_dir: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run the published SavedModel and ONNX file on `x` (their own runtimes)."""
    import onnxruntime as ort
    import tensorflow as tf

    out = {}
    serving = tf.saved_model.load(str(model_dir / "savedmodel" / "1")).signatures["serving_default"]
    out["savedmodel"] = serving(x=tf.constant(x))["y"].numpy()
    session = ort.InferenceSession(str(model_dir / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    out["onnx"] = session.run(None, {session.get_inputs()[0].name: x})[0]
    return out


def _rebuilt(report: dict) -> dict[str, bool]:
    return {name: entry.get("rebuilt") for name, entry in report["targets"].items()}


@pytest.fixture
def factory_project(project, monkeypatch):
    folder = project.root / "userpkg"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))  # workers get the parent's sys.path
    _write(folder, "sfactory.py", FACTORY)
    _write(folder, "shelper.py", 'ACTIVATION = "relu"\n')
    _write(folder, "sdata.py", DATA)
    _write(folder, "sdatahelp.py", "SCALE = 1.0\n")
    _checkpoint(folder, seed=0)
    return project, folder


def test_factory_changes_rebuild_and_non_changes_reuse(factory_project, tmp_path):
    project, folder = factory_project
    config = project.config("smodel", FACTORY_CONFIG)
    x = np.random.default_rng(7).uniform(-2, 2, (5, 6)).astype("float32")

    first = project.run("export", "-c", str(config))
    assert first.code == 0, first.err
    report = project.report("smodel")
    fingerprint = report["targets"]["savedmodel"]["model_fingerprint"]
    assert fingerprint["digest"] == report["targets"]["onnx"]["model_fingerprint"]["digest"]
    assert set(fingerprint) >= {"digest", "graph", "weights", "signature"}

    # Not a change: every file touched, then the config copied to another folder.
    for path in folder.iterdir():
        os.utime(path, (path.stat().st_atime + 100, path.stat().st_mtime + 100))
    again = project.run("export", "-c", str(config))
    assert again.code == 0, again.err
    assert _rebuilt(project.report("smodel")) == {"savedmodel": False, "onnx": False}
    assert "fingerprint" in again.err  # reused because the model was built and found identical
    copy = tmp_path / "elsewhere" / "smodel.yaml"
    copy.parent.mkdir()
    shutil.copy(config, copy)
    moved = project.run("export", "-c", str(copy))
    assert moved.code == 0 and _rebuilt(project.report("smodel")) == {"savedmodel": False, "onnx": False}, moved.err

    # A new checkpoint: validate names the stale targets (distinct from a parity failure),
    # a release from what is on disk is refused, export rebuilds both.
    _checkpoint(folder, seed=1)
    validated = project.run("validate", "-c", str(config))
    assert validated.code == 1
    assert "stale" in validated.err and "weights" in validated.err and "savedmodel" in validated.err, validated.err
    released = project.run("release", "-c", str(config), "--skip-export", "--version", "v1")
    assert released.code == 1 and "stale" in released.err, released.err
    assert not (project.artifacts / "release" / "v1").exists()
    rebuilt = project.run("export", "-c", str(config))
    assert rebuilt.code == 0, rebuilt.err
    report = project.report("smodel")
    assert _rebuilt(report) == {"savedmodel": True, "onnx": True}
    assert report["targets"]["onnx"]["model_fingerprint"]["weights"] != fingerprint["weights"]
    assert report["targets"]["onnx"]["model_fingerprint"]["graph"] == fingerprint["graph"]
    current = _current_outputs(folder, x)
    for name, got in _run_published(project.artifacts / "smodel", x).items():
        assert np.abs(got - current).max() < 1e-5, name

    # The helper module the factory imports: a new activation, the same checkpoint.
    _write(folder, "shelper.py", 'ACTIVATION = "tanh"\n')
    assert project.run("export", "-c", str(config)).code == 0
    report = project.report("smodel")
    assert _rebuilt(report) == {"savedmodel": True, "onnx": True}
    current = _current_outputs(folder, x)
    for name, got in _run_published(project.artifacts / "smodel", x).items():
        assert np.abs(got - current).max() < 1e-5, name

    # The data generator's helper: other parity data, so the verdicts are rebuilt.
    data_before = report["run"]["model"]["data_fingerprint"]
    _write(folder, "sdatahelp.py", "SCALE = 3.0\n")
    assert project.run("export", "-c", str(config)).code == 0
    report = project.report("smodel")
    assert _rebuilt(report) == {"savedmodel": True, "onnx": True}
    assert report["run"]["model"]["data_fingerprint"] != data_before

    assert project.run("validate", "-c", str(config)).code == 0


LAYERS = """\
import keras

import smath


@keras.saving.register_keras_serializable(package="stale")
class Wave(keras.layers.Layer):
    def call(self, x):
        return smath.wave(x)
"""


def test_keras_file_with_custom_layer_module(project, monkeypatch):
    """A self-contained file plus the modules its load imports (transitively): decided
    without building the model, and a change in an imported helper rebuilds."""
    import keras

    folder = project.root / "userpkg"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    _write(folder, "slayers.py", LAYERS)
    _write(folder, "smath.py", "import keras\n\n\ndef wave(x):\n    return keras.ops.sin(x)\n")
    import slayers

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(2, name="y")(slayers.Wave()(inputs)))
    model.save(folder / "wave.keras")
    config = project.config("wave", """\
source:
  path: ../../userpkg/wave.keras
  modules: [slayers]
inputs:
  - {name: x, shape: [null, 4], dtype: float32}
outputs: [y]
data:
  inputs: {x: {low: -3, high: 3}}
  samples: 8
targets:
  - savedmodel
""")
    assert project.run("export", "-c", str(config)).code == 0
    entry = project.report("wave")["targets"]["savedmodel"]
    assert sorted(Path(d["path"]).name for d in entry["source_dependencies"]) == ["slayers.py", "smath.py"]
    again = project.run("export", "-c", str(config))
    assert again.code == 0 and "nothing changed" in again.err  # decided from the bytes, no worker

    _write(folder, "smath.py", "import keras\n\n\ndef wave(x):\n    return keras.ops.cos(x)\n")
    plan = project.run("export", "-c", str(config), "--dry-run")
    assert "smath.py" in plan.out, plan.out
    assert project.run("export", "-c", str(config)).code == 0
    assert project.report("wave")["targets"]["savedmodel"]["rebuilt"] is True
    import tensorflow as tf

    x = np.linspace(-3, 3, 12, dtype="float32").reshape(3, 4)
    serving = tf.saved_model.load(str(project.artifacts / "wave" / "savedmodel" / "1")).signatures["serving_default"]
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(serving(x=tf.constant(x))["y"].numpy(), np.cos(x) @ kernel + bias, atol=1e-5)


def test_saved_model_folder_replaced(project, tmp_path):
    import tensorflow as tf

    folder = tmp_path / "sm"

    def save(scale: float) -> None:
        module = tf.Module()
        module.w = tf.Variable(scale)
        module.f = tf.function(lambda x: {"y": module.w * x}, input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        shutil.rmtree(folder, ignore_errors=True)
        tf.saved_model.save(module, str(folder), signatures={"serving_default": module.f})

    save(2.0)
    config = project.config("sm", f"""\
source:
  path: {folder}
inputs:
  - {{name: x, shape: [null, 2], dtype: float32}}
outputs: [y]
data:
  samples: 8
targets:
  - savedmodel
""")
    assert project.run("export", "-c", str(config)).code == 0
    save(2.0)  # saved again, the same model: other bytes, the same fingerprint
    assert project.run("export", "-c", str(config)).code == 0
    assert project.report("sm")["targets"]["savedmodel"]["rebuilt"] is False
    save(5.0)
    assert project.run("export", "-c", str(config)).code == 0
    assert project.report("sm")["targets"]["savedmodel"]["rebuilt"] is True
    serving = tf.saved_model.load(str(project.artifacts / "sm" / "savedmodel" / "1")).signatures["serving_default"]
    np.testing.assert_allclose(serving(x=tf.ones((1, 2)))["y"].numpy(), [[5.0, 5.0]])


def _live(variant: str = "base", weights=None):
    """A small functional model; `variant` changes what it computes, not its weights."""
    import keras

    inputs = keras.Input((5,), name="x")
    hidden = keras.layers.Dense(8, activation="tanh" if variant == "tanh" else "relu", name="hidden")(inputs)
    if variant == "order":
        hidden = keras.layers.Rescaling(0.5)(keras.layers.Activation("sigmoid")(hidden))
    else:
        hidden = keras.layers.Activation("sigmoid")(keras.layers.Rescaling(0.25 if variant == "scale" else 0.5)(hidden))
    if variant == "added":
        hidden = keras.layers.Activation("softplus")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(2, name="y")(hidden))
    rng = np.random.default_rng(3)
    model.set_weights(weights if weights is not None else [rng.normal(0, 1, w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_live_model_changes(tmp_path):
    """The Python API: each change rebuilds and the published .tflite computes the new
    model; the same model made again from the same code and weights reuses."""
    import tfship
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "live"
    x = np.random.default_rng(1).uniform(-1, 1, (4, 5)).astype("float32")

    def export(model) -> dict:
        result = tfship.export(model, targets={"savedmodel": {}, "tflite": {"variants": ["float32"]}}, data={"x": x}, out=out, progress=0)
        assert result.passed, result.summary()
        report = json.loads((out / "report.json").read_text())
        return {n: e["rebuilt"] for n, e in report["targets"].items()}

    def tflite_outputs() -> np.ndarray:
        interpreter = Interpreter(model_path=str(out / "tflite" / "float32.tflite"))
        runner = interpreter.get_signature_runner()
        return np.concatenate([runner(x=x[i : i + 1])["y"] for i in range(len(x))])

    base = _live()
    weights = base.get_weights()
    assert export(base) == {"savedmodel": True, "tflite": True}
    assert export(_live(weights=weights)) == {"savedmodel": False, "tflite": False}  # a second, identical copy
    for variant in ("tanh", "scale", "order", "added"):
        model = _live(variant, weights)
        assert export(model) == {"savedmodel": True, "tflite": True}, variant
        np.testing.assert_allclose(tflite_outputs(), np.asarray(model(x)), atol=1e-5, err_msg=variant)
    model.compile("sgd", "mse")
    model.fit(x, np.ones((4, 2), "float32"), epochs=1, verbose=0)  # one more step
    assert export(model) == {"savedmodel": True, "tflite": True}
    np.testing.assert_allclose(tflite_outputs(), np.asarray(model(x)), atol=1e-5)


def _fingerprint(model, name: str = "x", width: int = 5):
    import tensorflow as tf

    from pipeline.records import TracedModel
    from pipeline.stages.fingerprint import fingerprint_model

    function = tf.function(lambda x: {"y": model(x, training=False)}, input_signature=[tf.TensorSpec([None, width], tf.float32, name=name)])
    function.get_concrete_function()
    return fingerprint_model(TracedModel(function, 1, (1,)))


@pytest.mark.parametrize("flavour", ["keras", "tf_keras"])
def test_fingerprint_parts(flavour):
    """Each part moves with what it names, and with nothing else (layer numbering, a second copy)."""
    keras = __import__(flavour)

    def build(activation="relu", seed=0):
        for _ in range(3):
            keras.layers.Dense(1)  # advances the process's layer numbering
        inputs = keras.Input((5,))
        model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(4, activation=activation)(inputs)))
        rng = np.random.default_rng(seed)
        model.set_weights([rng.normal(0, 1, w.shape).astype("float32") for w in model.get_weights()])
        return model

    base = _fingerprint(build())
    assert _fingerprint(build()).to_json() == base.to_json()
    assert base.weight_bytes == (5 * 4 + 4 + 4 * 2 + 2) * 4 and base.opaque_resources == 0
    tanh = _fingerprint(build("tanh"))
    assert (tanh.graph != base.graph, tanh.weights == base.weights, tanh.signature == base.signature) == (True, True, True)
    other = _fingerprint(build(seed=1))
    assert (other.graph == base.graph, other.weights != base.weights) == (True, True)
    renamed = _fingerprint(build(), name="features")
    assert renamed.signature != base.signature and renamed.digest != base.digest


def test_fingerprint_reads_lookup_tables():
    """A vocabulary is state the graph captures as a table: another vocabulary is another model."""
    import keras

    def build(vocabulary):
        inputs = keras.Input((1,), dtype="string")
        return keras.Model(inputs, keras.layers.StringLookup(vocabulary=vocabulary, output_mode="one_hot")(inputs))

    import tensorflow as tf

    from pipeline.records import TracedModel
    from pipeline.stages.fingerprint import fingerprint_model

    def fingerprint(model):
        function = tf.function(lambda t: {"y": model(t)}, input_signature=[tf.TensorSpec([None, 1], tf.string, name="t")])
        function.get_concrete_function()
        return fingerprint_model(TracedModel(function, 1, (1,)))

    a, b, c = fingerprint(build(["a", "b", "c"])), fingerprint(build(["a", "b", "c"])), fingerprint(build(["a", "b", "d"]))
    assert a.digest == b.digest and a.opaque_resources == 0
    assert c.weights != a.weights
