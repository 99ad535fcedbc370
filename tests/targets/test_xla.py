"""The xla target: jit_compile SavedModel, IR per compiled shape, determinism check,
AOT header/object and the native harness, on a small trained Keras 3 CNN."""
from __future__ import annotations

from pathlib import Path

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
  - name: xla
{extra}"""


@pytest.fixture(scope="module")
def cnn_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cnn") / "small_cnn.keras"
    accuracy = train_small_cnn(path)
    assert accuracy > 0.8, f"the test CNN did not learn (held-out accuracy {accuracy}); parity on it would be vacuous"
    return path


def _has_runtime_cached() -> bool:
    from targets.xla import cache_dir

    return any(cache_dir().glob("xla_aot_runtime/*/libtf_xla_runtime.a"))


def test_xla_export_writes_jit_saved_model_ir_and_aot_object(project, cnn_path):
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    project.config("cnn", CNN.format(path=cnn_path, extra="    aot: true\n    aot_batch: 2\n    harness: false\n"))
    result = project.run("export", "--model", "cnn", "--target", "xla")
    assert result.code == 0, result.err
    entry = project.report("cnn")["targets"]["xla"]["variants"]["default"]
    assert entry["status"] == "passed"
    assert entry["parity"]["outputs"]["probs"]["max_abs"] <= 1e-5
    info = entry["info"]
    assert info["jit_compile"] is True
    assert info["determinism"] == {"runs": 2, "bitwise_equal": True, "outputs": ["probs"]}
    assert info["ir_batch_sizes"] == [1, 3]

    folder = project.artifacts / "cnn" / "xla"
    for batch in (1, 3):
        hlo = (folder / "ir" / f"b{batch}" / "hlo.txt").read_text()
        assert f"f32[{batch},32,32,3]" in hlo and "convolution" in hlo
        assert f"tensor<{batch}x32x32x3xf32>" in (folder / "ir" / f"b{batch}" / "stablehlo.mlir").read_text()

    # The serving function is XLA-compiled and keeps the config's names.
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((folder / "saved_model" / "saved_model.pb").read_bytes())
    compiled = [f for f in proto.meta_graphs[0].graph_def.library.function if f.attr["_XlaMustCompile"].b]
    assert compiled, "no function in the SavedModel is marked _XlaMustCompile"
    signature = tf.saved_model.load(str(folder / "saved_model")).signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["image"]
    assert list(signature.structured_outputs) == ["probs"]

    # AOT: header, objects and a makefile fragment that points at its own folder.
    aot = folder / "aot"
    for name in ("model.h", "model.o", "model_metadata.o", "model_constants.o", "model_makefile.inc"):
        assert (aot / name).stat().st_size > 0, name
    assert "class CompiledModel" in (aot / "model.h").read_text()
    assert "(arg0: f32[2,32,32,3]) -> (f32[2,4])" in (aot / "model.h").read_text()
    assert "LIB = -L$(dir $(lastword $(MAKEFILE_LIST)))" in (aot / "model_makefile.inc").read_text()


@pytest.mark.skipif(
    not _has_runtime_cached(),
    reason="the XLA AOT runtime is not built on this machine yet (2-3 minutes on 2 cores, once): run `python -m targets.xla build-runtime`",
)
def test_aot_native_harness_is_a_parity_variant(project, cnn_path):
    project.config("cnn", CNN.format(path=cnn_path, extra="    aot: true\n    aot_batch: 2\n"))
    result = project.run("export", "--model", "cnn", "--target", "xla")
    assert result.code == 0, result.err
    variants = project.report("cnn")["targets"]["xla"]["variants"]
    aot = variants["aot"]
    assert aot["status"] == "passed"
    # Cases at batch 1 and 3 both need padding to the compiled batch of 2.
    assert aot["parity"]["outputs"]["probs"]["max_abs"] <= 1e-5
    assert aot["info"]["batch"] == 2 and aot["info"]["runs_on"] == "CPU (native binary)"
    harness = project.artifacts / "cnn" / "xla" / "aot" / "harness"
    assert harness.exists() and harness.stat().st_mode & 0o111


def test_nondeterministic_function_is_refused_naming_the_output():
    import tensorflow as tf

    from pipeline.errors import ConversionError
    from targets.support.xla import determinism_check

    @tf.function(jit_compile=True)
    def noisy(x):
        return {"stable": x * 2.0, "noisy": x + tf.random.uniform(tf.shape(x))}

    x = tf.ones([2, 3])
    with pytest.raises(ConversionError, match=r"differ: 'noisy' \(max \|difference\|"):
        determinism_check(noisy, [x], "noisy_model", "xla target")
    assert determinism_check(tf.function(lambda x: {"y": x * 2.0}, jit_compile=True), [x], "m", "xla")["bitwise_equal"]


def test_options_are_checked_before_anything_runs(project, cnn_path):
    project.config("cnn", CNN.format(path=cnn_path, extra="    aot_batch: 0\n    ir_batch_sizes: [0]\n"))
    result = project.run("export", "--model", "cnn", "--target", "xla")
    assert result.code == 2
    assert "aot_batch" in result.err and "ir_batch_sizes" in result.err
