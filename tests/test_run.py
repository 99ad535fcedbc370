"""End to end through the real CLI: load, trace, SavedModel, parity, report, validate."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import AFFINE_HEAD

REPO = Path(__file__).resolve().parent.parent

AFFINE = AFFINE_HEAD + """\
  - savedmodel
"""


def factory_config(factory: str, inputs: str = "  - {name: x, shape: [null, 4], dtype: float32}", outputs: str = "[y]", extra: str = "") -> str:
    return f"source:\n  factory: {factory}\ninputs:\n{inputs}\noutputs: {outputs}\n{extra}targets:\n  - savedmodel\n"


def test_affine_exports_and_passes(project):
    project.config("affine", AFFINE)
    result = project.run("export")
    assert result.code == 0, result.err
    report = project.report("affine")
    assert report["schema_version"] == 2
    assert {"tensorflow", "keras", "tf-keras", "numpy"} <= set(report["versions"])
    assert len(report["config_sha256"]) == 64
    entry = report["targets"]["savedmodel"]["variants"]["default"]
    assert entry["status"] == "passed"
    assert entry["parity"]["outputs"]["y"]["max_abs"] <= 1e-5
    assert {f["path"] for f in entry["files"]} >= {"savedmodel/1/saved_model.pb"}
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in entry["files"])
    batches = {c["batch"] for c in entry["parity"]["cases"]}
    assert {1, 3} <= batches
    assert report["run"]["model"]["tracing_count"] == 1
    assert report["run"]["model"]["retrace_checked_at_batch_sizes"] == [1, 3]
    assert (project.artifacts / "affine" / "report.md").read_text().startswith("# tfship report: affine")


def test_savedmodel_runs_in_a_fresh_process_without_tfship(project):
    project.config("affine", AFFINE)
    assert project.run("export").code == 0
    path = project.artifacts / "affine" / "savedmodel" / "1"
    code = textwrap.dedent(
        f"""
        import sys, numpy as np, tensorflow as tf
        fn = tf.saved_model.load({str(path)!r}).signatures["serving_default"]
        print(sorted(fn.structured_input_signature[1]), sorted(fn.structured_outputs))
        y = fn(x=tf.constant(np.ones((2, 4), np.float32)))["y"].numpy()
        print(float(y.min()), float(y.max()))
        assert not [m for m in sys.modules if m.split(".")[0] in ("pipeline", "targets", "examples")]
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "['x'] ['y']" in result.stdout
    assert "3.0 3.0" in result.stdout  # 2 * 1 + 1


def test_threshold_two_inputs_with_scalar(project):
    project.config(
        "threshold",
        factory_config(
            "examples.threshold:build",
            inputs="  - {name: x, shape: [null, 6], dtype: float32}\n  - {name: threshold, shape: [], dtype: float32}",
            extra="data:\n  inputs:\n    x: {low: 0, high: 4}\n    threshold: {low: 1, high: 3}\n",
        ),
    )
    result = project.run("export")
    assert result.code == 0, result.err
    assert project.report("threshold")["targets"]["savedmodel"]["variants"]["default"]["parity"]["outputs"]["y"]["max_abs"] <= 1e-5


def test_validate_detects_an_edited_artifact(project):
    project.config("affine", AFFINE)
    assert project.run("export").code == 0
    assert project.run("validate").code == 0
    variables = project.artifacts / "affine" / "savedmodel" / "1" / "variables" / "variables.data-00000-of-00001"
    data = bytearray(variables.read_bytes())
    data[-1] ^= 0xFF
    variables.write_bytes(bytes(data))
    result = project.run("validate")
    assert result.code == 1
    assert "savedmodel/1/variables/variables.data-00000-of-00001" in result.err


def test_graph_that_differs_from_eager_fails_with_numbers(project):
    project.config("frozen", factory_config("fixture_models:traced_offset"))
    result = project.run("export")
    assert result.code == 1
    parity = project.report("frozen")["targets"]["savedmodel"]["variants"]["default"]["parity"]
    y = parity["outputs"]["y"]
    assert not parity["passed"] and not y["passed"]
    assert y["max_abs"] > 1e-3 and y["mismatch_fraction"] > 0.5
    assert "y: max_abs" in result.err


def test_python_if_on_a_tensor_is_explained_with_file_and_line(project):
    project.config("gate", factory_config("fixture_models:python_if"))
    result = project.run("export")
    assert result.code == 2
    message = result.err
    assert "gate.yaml:2: source.factory:" in message  # the config's line, then the user's own
    assert "fixture_models.py:" in message and "if x > self.threshold" in message
    assert "tf.where" in message and "tf.cond" in message
    assert "Traceback" not in result.err and "\x1b[" not in result.err
    assert not project.artifacts.exists()  # bad input writes nothing


@pytest.mark.parametrize("factory, flavour", [("fixture_models:tiny_keras3_classifier", "keras3"), ("fixture_models:tiny_tfkeras_classifier", "tf_keras")])
def test_both_keras_flavours(project, factory, flavour):
    project.config("tiny", factory_config(factory, inputs="  - {name: x, shape: [null, 8], dtype: float32}", outputs="[probs]"))
    result = project.run("export")
    assert result.code == 0, result.err
    report = project.report("tiny")
    assert report["run"]["model"]["flavour"] == flavour
    assert not report["run"]["model"]["reference"]["probs"]["degenerate"]
    assert report["targets"]["savedmodel"]["variants"]["default"]["parity"]["outputs"]["probs"]["max_abs"] <= 1e-5


def test_file_sources_h5_keras_and_savedmodel(project, tmp_path):
    import tensorflow as tf

    import fixture_models

    tfk = fixture_models.tiny_tfkeras_classifier()
    tfk.save(tmp_path / "tiny2.h5")
    k3 = fixture_models.tiny_keras3_classifier()
    k3.save(tmp_path / "tiny3.keras")
    module = tf.Module()
    module.model = tfk
    module.f = tf.function(lambda x: {"probs": tfk(x)}, input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x")])
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.f.get_concrete_function()})
    io = "inputs:\n  - {name: x, shape: [null, 8], dtype: float32}\noutputs: [probs]\ntargets: [savedmodel]\n"
    for name, path, flavour in (("h5", "tiny2.h5", "tf_keras"), ("k3", "tiny3.keras", "keras3"), ("sm", "sm", "saved_model")):
        project.config(name, f"source:\n  path: {tmp_path / path}\n{io}")
        result = project.run("export", "--model", name)
        assert result.code == 0, result.err
        report = project.report(name)
        assert report["run"]["model"]["flavour"] == flavour
        assert report["targets"]["savedmodel"]["variants"]["default"]["parity"]["outputs"]["probs"]["max_abs"] <= 1e-5


def _cli_subprocess(project, *args, extra_targets: str = "") -> subprocess.CompletedProcess:
    """The real CLI in a fresh process (needed when extra targets must be registered)."""
    import os

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]), TFSHIP_TARGET_MODULES=extra_targets)
    command = [sys.executable, "-m", "pipeline", args[0], "--config-dir", str(project.config_dir), "--artifacts", str(project.artifacts), *args[1:]]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(REPO), timeout=300)


def test_a_failing_target_leaves_previous_artifacts_intact(project):
    project.config("affine", AFFINE.replace("  - savedmodel", "  - savedmodel\n  - half_written"))
    first = _cli_subprocess(project, "export", "--target", "savedmodel", extra_targets="fixture_targets")
    assert first.returncode == 0, first.stderr[-2000:]
    saved = project.artifacts / "affine" / "savedmodel" / "1" / "saved_model.pb"
    before = saved.read_bytes()
    result = _cli_subprocess(project, "export", "--force", extra_targets="fixture_targets")
    assert result.returncode == 1
    report = project.report("affine")
    assert report["targets"]["savedmodel"]["status"] == "passed"
    entry = report["targets"]["half_written"]
    assert entry["status"] == "error" and "converter crashed" in entry["message"]
    assert saved.read_bytes() == before
    assert not (project.artifacts / "affine" / "half_written").exists()
    assert not [p for p in (project.artifacts / "affine").iterdir() if p.name.startswith(".staging")]


def test_a_worker_that_aborts_becomes_an_error_and_the_others_finish(project):
    project.config("affine", AFFINE.replace("  - savedmodel", "  - aborting\n  - savedmodel"))
    result = _cli_subprocess(project, "export", extra_targets="fixture_targets_abort")
    assert result.returncode == 1, result.stderr[-2000:]
    report = project.report("affine")
    crashed = report["targets"]["aborting"]
    assert crashed["status"] == "error"
    assert crashed["signal"] == "signal SIGABRT"
    assert "died" in crashed["message"]
    assert report["targets"]["savedmodel"]["status"] == "passed"  # a fresh worker took the rest


def test_unchanged_export_is_reused_without_tensorflow(project):
    project.config("affine", AFFINE)
    assert project.run("export").code == 0
    code = (
        "import sys; from pipeline.cli import main; "
        f"rc = main(['export', '--config-dir', {str(project.config_dir)!r}, '--artifacts', {str(project.artifacts)!r}]); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "nothing changed" in result.stderr
    entry = project.report("affine")["targets"]["savedmodel"]
    assert entry["rebuilt"] is False
    # Changing the target's options rebuilds that target.
    project.config("affine", AFFINE.replace("  - savedmodel", "  - {name: savedmodel, version: 2}"))
    assert project.run("export").code == 0
    entry = project.report("affine")["targets"]["savedmodel"]
    assert entry["rebuilt"] is True and entry["files"][0]["path"].startswith("savedmodel/2/")


NPZ_CONFIG = """\
source:
  factory: fixture_models:tiny_keras3_classifier
inputs:
  - {name: x, shape: [null, 8], dtype: float32}
outputs: [probs]
data:
  npz: data.npz
  labels: y
  classifier: probs
targets: [savedmodel]
"""


def test_npz_data_with_labels_reports_accuracy(project):
    import fixture_models

    inputs, labels = fixture_models.tiny_data(40, seed=5)
    np.savez(project.config_dir / "data.npz", x=inputs["x"], y=labels)
    project.config("tiny", NPZ_CONFIG)
    result = project.run("export")
    assert result.code == 0, result.err
    cls = project.report("tiny")["targets"]["savedmodel"]["variants"]["default"]["parity"]["classifier"]
    assert cls["samples"] == 40 and cls["top1_agreement"] == 1.0
    assert cls["accuracy_delta"] == 0.0 and cls["reference_accuracy"] > 0.8


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((40, 7), np.float32)}, r"input 'x': samples have shape \[7\].*expected \[N, 8\]"),
        ({"x": np.zeros((40, 8), np.complex64)}, r"input 'x': dtype complex64 does not fit the input's float32"),
        ({"x": np.zeros((2, 8), np.float32)}, r"holds 2 samples; at least 3 are needed"),
        ({"features": np.zeros((40, 8), np.float32)}, r"has no array for input 'x'"),
    ],
)
def test_bad_npz_data_is_a_config_error_and_writes_nothing(project, arrays, message):
    import re

    np.savez(project.config_dir / "data.npz", **arrays)
    project.config("tiny", NPZ_CONFIG.replace("  labels: y\n", ""))
    result = project.run("export")
    assert result.code == 2
    assert re.search(message, result.err), result.err
    assert not project.artifacts.exists()
