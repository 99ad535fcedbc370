"""The xla target: jit_compile SavedModel, IR per compiled shape, determinism check,
AOT header/object and the native harness, on a small trained Keras 3 CNN; the
StableHLO in both forms compiled and run by IREE, named, portable, localized,
inspected, benchmarked and released without a path of this machine."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

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

    project.config("cnn", CNN.format(path=cnn_path, extra="    aot: true\n    aot_batch: 2\n    harness: false\n    iree: false\n"))
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
    fragment = (aot / "model_makefile.inc").read_text()
    assert "LIB = -L$(dir $(lastword $(MAKEFILE_LIST)))" in fragment and "INC = -I$(TF_INCLUDE)" in fragment
    assert sys.prefix not in fragment and not (aot / "aot_compile.log").exists()
    files = {f["path"]: f for f in project.report("cnn")["targets"]["xla"]["files"]}
    assert "`harness: false`" in files["xla/aot/model.o"]["unchecked"] and "`iree: false`" in files["xla/ir/b1/stablehlo.mlir"]["unchecked"]


@pytest.mark.skipif(
    not _has_runtime_cached(),
    reason="the XLA AOT runtime is not built on this machine yet (2-3 minutes on 2 cores, once): run `python -m targets.xla build-runtime`",
)
def test_aot_native_harness_is_a_parity_variant(project, cnn_path):
    project.config("cnn", CNN.format(path=cnn_path, extra="    aot: true\n    aot_batch: 2\n    iree: false\n"))
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
    # No rpath and no header path of this venv in the binary: it runs with LD_LIBRARY_PATH.
    assert os.fsencode(sys.prefix) not in harness.read_bytes()
    assert "$TF_LIB" in aot["info"]["harness"]["command"] and sys.prefix not in aot["info"]["harness"]["command"]


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


# --------------------------------------------------------------------------- the StableHLO, run by IREE

@pytest.fixture(scope="module")
def two_io():
    """A Keras 3 model with two inputs and two outputs (declared `score`, `logits`: the IR
    returns them in key order), trained a little on generated data."""
    import keras

    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    a_in = keras.Input((6,), name="a")
    b_in = keras.Input((3,), name="b")
    hidden = keras.layers.Dense(8, activation="tanh", name="mix")(keras.layers.Concatenate(name="cat")([a_in, b_in]))
    model = keras.Model([a_in, b_in], {"score": keras.layers.Dense(1, name="score")(hidden), "logits": keras.layers.Dense(4, name="logits")(hidden)}, name="two_io")
    a, b = rng.normal(size=(256, 6)).astype("float32"), rng.normal(size=(256, 3)).astype("float32")
    model.compile("adam", {"score": "mse", "logits": "mse"})
    model.fit({"a": a, "b": b}, {"score": a[:, :1] - b[:, :1], "logits": np.tanh(a[:, :4])}, epochs=3, verbose=0)
    return model, {"a": a[:48], "b": b[:48]}


def _export(model, data, out, **xla):
    import tfship

    return tfship.export(model, targets={"xla": xla}, data=data, out=out, samples=48)


def _compile_and_call(mlir: Path, args: list) -> list:
    """What a user does with the shipped file: iree-compile it, call `main` in the IREE runtime."""
    import iree.compiler.tools as ic
    import iree.runtime as rt

    vmfb = ic.compile_file(str(mlir), input_type="stablehlo", target_backends=["llvm-cpu"])
    context = rt.SystemContext(config=rt.Config("local-task"))
    module = rt.VmModule.copy_buffer(context.instance, vmfb)
    context.add_vm_module(module)
    result = context.modules[module.name]["main"](*args)
    return [np.asarray(r.to_host()) for r in (result if isinstance(result, (list, tuple)) else [result])]


@pytest.mark.parametrize("form", ["frozen", "parameters"])
def test_stablehlo_runs_in_iree_with_every_argument_named(two_io, tmp_path, form):
    pytest.importorskip("iree.runtime")
    model, data = two_io
    result = _export(model, data, tmp_path / "two_io", ir_form=form)
    assert result.passed, str(result)
    variant = result["xla"].variants["stablehlo"]
    assert variant.status == "passed"
    assert max(m["max_abs"] for m in variant.metrics.values()) < 1e-5
    info = result.report["targets"]["xla"]["variants"]["stablehlo"]["info"]
    assert info["ir_form"] == form and set(info["iree_compile"]) == {"b1", "b3"}
    assert all(c["vmfb_bytes"] > 0 and c["compile_seconds"] > 0 and not c["staged"] for c in info["iree_compile"].values())

    ir = tmp_path / "two_io" / "xla" / "ir"
    signature = json.loads((ir / "b3" / "signature.json").read_text())
    names = [(a["kind"], a["name"], a["shape"]) for a in signature["arguments"]]
    assert names[:2] == [("input", "a", [3, 6]), ("input", "b", [3, 3])]
    assert [(r["name"], r["shape"]) for r in signature["results"]] == [("logits", [3, 4]), ("score", [3, 1])]
    mlir = (ir / "b3" / "stablehlo.mlir").read_text()
    main = mlir[mlir.index("func.func @main("):].split("->")[0]
    assert main.count("%arg") == len(names)
    args = [data["a"][:3], data["b"][:3]]
    if form == "frozen":
        assert len(names) == 2 and not (ir / "weights.npz").exists()
    else:
        weights = {(n, tuple(s)) for k, n, s in names if k == "weight"}
        assert weights == {("mix/kernel", (9, 8)), ("mix/bias", (8,)), ("score/kernel", (8, 1)), ("score/bias", (1,)), ("logits/kernel", (8, 4)), ("logits/bias", (4,))}
        with np.load(ir / "weights.npz") as npz:
            assert list(npz.files) == [a["key"] for a in signature["arguments"][2:]]  # the file is in argument order
            args += [npz[a["key"]] for a in signature["arguments"][2:]]
    logits, score = _compile_and_call(ir / "b3" / "stablehlo.mlir", args)
    expected = model({"a": data["a"][:3], "b": data["b"][:3]})
    np.testing.assert_allclose(logits, np.asarray(expected["logits"]), atol=1e-5)
    np.testing.assert_allclose(score, np.asarray(expected["score"]), atol=1e-5)
    files = {f["path"]: f for f in result.report["targets"]["xla"]["files"]}
    assert files["xla/ir/b3/stablehlo.mlir"]["checked_by"] == ["xla/stablehlo"]
    assert files["xla/saved_model/saved_model.pb"]["checked_by"] == ["xla"]
    assert "no runtime here executes HLO text" in files["xla/ir/b3/hlo.txt"]["unchecked"]


@pytest.fixture(scope="module")
def tiny_lstm():
    """An LSTM (a while loop in the IR, whose function names carry TensorFlow's counters)."""
    import keras

    keras.utils.set_random_seed(5)
    steps = keras.Input((5, 3), name="steps")
    model = keras.Model(steps, keras.layers.Dense(2, name="head")(keras.layers.LSTM(4, name="lstm")(steps)), name="tiny_lstm")
    return model, {"steps": np.random.default_rng(5).normal(size=(48, 5, 3)).astype("float32")}


def test_ir_is_the_same_bytes_from_any_folder_and_names_no_machine_path(tiny_lstm, tmp_path):
    """Two exports of one model in one process, into two artifacts roots: TensorFlow's
    function counters differ between them, and the folders do; the IR does not."""
    from pipeline.release import machine_paths

    model, data = tiny_lstm
    roots = [tmp_path / "first" / "artifacts", tmp_path / "second" / "elsewhere"]
    for root in roots:
        result = _export(model, data, root / "tiny_lstm", ir_form="parameters", iree=False)
        assert result.passed, str(result)
    first, second = (root / "tiny_lstm" / "xla" / "ir" for root in roots)
    names = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert "weights.npz" in names and "b3/stablehlo.mlir" in names and "b3/hlo.txt" in names
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    text = (first / "b3" / "stablehlo.mlir").read_text()
    assert "stablehlo.while" in text and "_while_body_u" in text and "module @tiny_lstm" in text
    assert 'loc("tiny_lstm_1/lstm_1/' in text  # layer names stay in the locations
    roots_here = {"checkout": Path(__file__).resolve().parents[2], "venv": Path(sys.prefix), "home": Path.home(), "first": roots[0], "second": roots[1], "cwd": Path(os.getcwd())}
    assert machine_paths(first.parent, roots_here) == []
    # Without `iree`, the IR ships unchecked and says so.
    report = json.loads((roots[0] / "tiny_lstm" / "report.json").read_text())
    unchecked = {f["path"]: f.get("unchecked") for f in report["targets"]["xla"]["files"]}
    assert unchecked["xla/ir/weights.npz"].startswith("xla: `iree: false`")


def test_portable_ir_text():
    from targets.support.xla import portable_hlo, portable_stablehlo

    mlir = (
        '#loc1 = loc("/home/me/venv/lib/python3.11/site-packages/tensorflow/python/framework/ops.py":1221:0)\n'
        '#loc2 = loc(fused["m_1/dense_1/MatMul", #loc1])\n'
        "module @a_inference_serve_4455__.8 attributes {} {\n"
        '  func.func private @m_1_while_body_2224_const_0__.5(%arg0: tensor<f32>) -> tensor<f32> {\n'
        '    %0 = mhlo.copy %arg0 : tensor<2x3xf32> loc("m_1/x"("/home/me/m.py":3:1))\n'
        "  }\n"
        '  func.func @main(%arg0: tensor<f32> loc("XLA_Args")) -> tensor<f32> {\n'
        "    %1 = func.call @m_1_while_body_2224_const_0__.5(%arg0) : (tensor<f32>) -> tensor<f32> loc(#loc2)\n"
        "  }\n}\n"
    )
    out = portable_stablehlo(mlir, "m")
    assert "/home/me" not in out and "#loc1 = loc(unknown)" in out and 'loc("m_1/x"(unknown))' in out
    assert "module @m attributes" in out and "@m_1_while_body_u1_const_0__.5" in out and out.count("_u1_") == 2
    assert "stablehlo.reshape %arg0 : (tensor<2x3xf32>) -> tensor<2x3xf32>" in out and "mhlo.copy" not in out
    assert portable_stablehlo(out, "m") == out
    hlo = (
        "HloModule a_inference_serve_4455__.8, entry_computation_layout={(f32[2])->f32[2]}\n\n"
        "%while_body_2224.3 (x: f32[2]) -> f32[2] {\n"
        '  ROOT %add = f32[2] add(%x, %x), metadata={op_type="AddV2" op_name="m_1/add" source_file="/home/me/ops.py" source_line=1221}\n}\n'
        "ENTRY %main.4 (p: f32[2]) -> f32[2] {\n  ROOT %w = f32[2] while(%p), body=%while_body_2224.3\n}\n"
    )
    out = portable_hlo(hlo, "m")
    assert out.startswith("HloModule m, ") and "/home/me" not in out and 'op_name="m_1/add"}' in out
    assert "%while_body_u1.3 (x" in out and "body=%while_body_u1.3" in out


def test_without_iree_the_variant_is_skipped_naming_the_extra(two_io, tmp_path, monkeypatch):
    model, data = two_io
    for name in ("iree", "iree.runtime", "iree.compiler", "iree.compiler.tools"):
        monkeypatch.setitem(sys.modules, name, None)  # `import iree.runtime` raises ImportError
    result = _export(model, data, tmp_path / "two_io")
    assert result.passed and result.exit_code == 0, str(result)
    entry = result.report["targets"]["xla"]["variants"]["stablehlo"]
    assert entry["status"] == "skipped" and "pip install 'tfship[iree]'" in entry["message"]
    files = {f["path"]: f for f in result.report["targets"]["xla"]["files"]}
    assert "pip install 'tfship[iree]'" in files["xla/ir/b1/stablehlo.mlir"]["unchecked"]
    assert files["xla/saved_model/saved_model.pb"]["checked_by"] == ["xla"]


def test_an_ir_iree_cannot_compile_is_an_error_with_its_message(tmp_path, monkeypatch):
    pytest.importorskip("iree.runtime")
    from pipeline.errors import ConversionError
    from pipeline.runtimes.iree import compile_stablehlo

    monkeypatch.chdir(tmp_path)
    path = Path("stablehlo.mlir")  # relative, as under `--artifacts artifacts`
    path.write_text("func.func @main(%arg0: tensor<2xf32>) -> tensor<2xf32> {\n  %0 = mhlo.fancy %arg0 : tensor<2xf32>\n  return %0 : tensor<2xf32>\n}\n")
    with pytest.raises(ConversionError, match=r"IREE 3\.\d+\.\d+ cannot compile ir/b1/stablehlo\.mlir: `iree-compile stablehlo\.mlir .*` failed \(exit 1\):\n.*stablehlo\.mlir:2:8: error: .*mhlo"):
        compile_stablehlo(path, "ir/b1/stablehlo.mlir")


def test_inspect_reads_the_ir_and_a_compiled_module_and_bench_times_it(two_io, tmp_path):
    pytest.importorskip("iree.runtime")
    import iree.compiler.tools as ic

    from pipeline.bench import BenchOptions, benchmark_artifact, recorded_artifacts
    from pipeline.inspection import inspect_artifact

    import tfship

    model, data = two_io
    out = tmp_path / "two_io"
    result = _export(model, data, out, ir_form="parameters")
    assert result.passed, str(result)
    ir = out / "xla" / "ir" / "b1"
    info = inspect_artifact(ir / "stablehlo.mlir")
    assert (info.kind, info.runs, info.details["form"], info.details["file_locations"]) == ("stablehlo", True, "parameters", 0)
    assert [t.describe() for t in info.serving.inputs] == ["a: float32[1, 6]", "b: float32[1, 3]"]
    assert [t.name for t in info.serving.outputs] == ["logits", "score"]
    assert info.details["weights"] == "6 arguments bound from ../weights.npz" and info.details["ops"]["stablehlo.dot"] == 3
    # A module compiled by hand, beside a copy of the signature (and the weights it binds).
    compiled = tmp_path / "compiled" / "b1"
    compiled.mkdir(parents=True)
    shutil.copy(ir / "signature.json", compiled)
    shutil.copy(ir.parent / "weights.npz", compiled.parent)
    (compiled / "module.vmfb").write_bytes(ic.compile_file(str(ir / "stablehlo.mlir"), input_type="stablehlo", target_backends=["llvm-cpu"]))
    module = inspect_artifact(compiled / "module.vmfb")
    assert (module.kind, module.runs, module.details["module"]) == ("iree", True, "two_io")
    assert [t.name for t in module.serving.inputs] == ["a", "b"]  # named by the signature.json beside it

    config = tfship.load_config(out / ".source" / "model.yaml")
    [ref] = [r for r in recorded_artifacts(result.report) if r.variant == "stablehlo"]
    figures = benchmark_artifact(ref, out, config, data, BenchOptions(batch=32, max_seconds=0.2, min_runs=5, min_seconds=0.05, warmup_runs=2, warmup_seconds=0.05, bare_loop=False), {})
    assert figures["batches"]["1"]["p50_ms"] > 0 and figures["threads"]["runtime"] == "IREE"
    assert figures["skipped"]["32"] == "compiled at b1, b3 only"


@pytest.mark.heavy
def test_release_names_no_path_of_the_machine_and_marks_every_file(project, cnn_path):
    """The whole bundle (IR, weights, SavedModel, AOT objects and harness when the runtime is
    built, reports, manifest) holds no path of this machine; every shipped file is either
    checked by a parity run or marked unchecked with why."""
    pytest.importorskip("iree.runtime")
    from pipeline.release import build_machine_roots, machine_paths

    aot = "    aot: true\n    aot_batch: 2\n" if _has_runtime_cached() else ""
    project.config("cnn", CNN.format(path=cnn_path, extra=f"    ir_form: parameters\n    ir_batch_sizes: [2]\n{aot}"))
    result = project.run("release", "--model", "cnn", "--version", "1.0.0")
    assert result.code == 0, result.err
    bundle = project.artifacts / "release" / "1.0.0"
    roots = build_machine_roots(bundle.parent)
    assert {"the tfship checkout", "the Python environment", "$HOME", "the working directory", "the artifacts root"} <= {what.split(" (")[0] for what in roots}
    roots |= {"the project": project.root, "the model file's folder": cnn_path.parent}
    assert machine_paths(bundle, roots) == []
    manifest = json.loads((bundle / "manifest.json").read_text())
    files = {f["path"]: f for f in manifest["files"] if f["kind"] == "artifact"}
    assert files["cnn/xla/ir/b2/stablehlo.mlir"]["checked_by"] == ["xla/stablehlo"]
    assert files["cnn/xla/ir/weights.npz"]["checked_by"] == ["xla/stablehlo"]
    assert files["cnn/xla/saved_model/saved_model.pb"]["checked_by"] == ["xla"]
    assert "no runtime here executes HLO text" in files["cnn/xla/ir/b2/hlo.txt"]["unchecked"]
    assert all(("checked_by" in f) != ("unchecked" in f) for f in files.values())
    if aot:
        assert files["cnn/xla/aot/harness"]["checked_by"] == ["xla/aot"] and "cnn/xla/aot/aot_compile.log" not in files
        assert "make fragment" in files["cnn/xla/aot/model_makefile.inc"]["unchecked"]

    # A file that names the machine is refused, naming the file and the folder it names.
    report = json.loads((project.artifacts / "cnn" / "report.json").read_text())
    report["note"] = f"built in {project.artifacts}"
    (project.artifacts / "cnn" / "report.json").write_text(json.dumps(report))
    result = project.run("release", "--model", "cnn", "--version", "1.0.1", "--skip-export")
    assert result.code == 1 and not (project.artifacts / "release" / "1.0.1").exists()
    assert "cnn/report.json: the artifacts root" in result.err


def test_scalar_weights_and_inputs_keep_their_rank(tmp_path):
    """affine holds its weights as scalar variables, threshold takes a scalar input: both
    bind as rank-0 arguments (a 0-d array made contiguous would become shape [1])."""
    pytest.importorskip("iree.runtime")
    import tfship
    from examples import affine, threshold

    rng = np.random.default_rng(0)
    runs = {
        "affine": (affine.build(), {"x": ([None, 4], "float32")}, {"x": rng.uniform(-3, 3, (16, 4)).astype("float32")}),
        "threshold": (threshold.build(), {"x": ([None, 6], "float32"), "threshold": ([], "float32")},
                      {"x": rng.uniform(0, 4, (16, 6)).astype("float32"), "threshold": np.full(16, 2.0, "float32")}),
    }
    for name, (model, inputs, data) in runs.items():
        result = tfship.export(model, inputs=inputs, targets={"xla": {"ir_form": "parameters", "ir_batch_sizes": [2]}}, data=data, out=tmp_path / name, samples=16)
        assert result.passed and result["xla"].variants["stablehlo"].status == "passed", str(result)
    signature = json.loads((tmp_path / "affine" / "xla" / "ir" / "b2" / "signature.json").read_text())
    assert [(a["name"], a["shape"]) for a in signature["arguments"] if a["kind"] == "weight"] == [("w", []), ("b", [])]
    with np.load(tmp_path / "affine" / "xla" / "ir" / "weights.npz") as weights:
        assert weights["w"].shape == () and float(weights["w"]) == 2.0
    signature = json.loads((tmp_path / "threshold" / "xla" / "ir" / "b2" / "signature.json").read_text())
    assert [(a["name"], a["shape"], a["batched"]) for a in signature["arguments"] if a["kind"] == "input"] == [("x", [2, 6], True), ("threshold", [], False)]
