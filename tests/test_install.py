"""The install contract: the core runs on TensorFlow alone, a target whose extra is missing
is refused at validation naming its install command, and every private internal tfship
uses resolves on the installed versions (the test that names what a new release broke).

Missing packages are simulated in a subprocess whose `sitecustomize` blocks their import,
so spawned workers inherit the block through PYTHONPATH."""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import tfship.compat
from pipeline.errors import MissingInternal
from tfship.compat import Internal, Shim

from conftest import AFFINE_HEAD, REPO

OPTIONAL = ("onnx", "onnxruntime", "tf2onnx", "ai_edge_litert", "ai_edge_quantizer", "openvino", "nncf")

BLOCKER = """\
import importlib.abc, sys

class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _Blocked())
"""


def _run_blocked(tmp_path: Path, blocked: tuple[str, ...], *args: str) -> subprocess.CompletedProcess:
    """`python -m pipeline <args>` with `blocked` unimportable, as on a machine without them."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked=set(blocked)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)


def _project(tmp_path: Path, targets: str) -> tuple[Path, Path]:
    configs = tmp_path / "configs" / "models"
    configs.mkdir(parents=True)
    (configs / "affine.yaml").write_text("name: affine\n" + AFFINE_HEAD + targets)
    return configs, tmp_path / "artifacts"


def test_the_blocker_makes_the_extras_unimportable(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked={"onnx", "tf2onnx"}))
    code = "import importlib.util as u; print(u.find_spec('yaml') is not None); import tf2onnx"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(site)))
    assert result.returncode == 1 and result.stdout.strip() == "True", result.stderr[-2000:]
    assert "No module named 'tf2onnx'" in result.stderr


def test_an_onnx_target_without_the_onnx_extra_is_refused_at_validation(tmp_path):
    configs, artifacts = _project(tmp_path, "  - savedmodel\n  - onnx\n")
    result = _run_blocked(tmp_path, ("onnx", "tf2onnx"), "export", "--config-dir", str(configs), "--artifacts", str(artifacts))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "targets[1]" in result.stderr
    assert "the onnx target needs the `onnx` extra (onnx, tf2onnx are not installed)" in result.stderr
    assert "pip install 'tfship[onnx]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not artifacts.exists() or not any(artifacts.iterdir())


def test_the_core_install_exports_savedmodel_with_every_extra_blocked(tmp_path):
    configs, artifacts = _project(tmp_path, "  - savedmodel\n")
    result = _run_blocked(tmp_path, OPTIONAL, "export", "--config-dir", str(configs), "--artifacts", str(artifacts))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((artifacts / "affine" / "report.json").read_text())
    assert report["status"] == "passed" and report["targets"]["savedmodel"]["status"] == "passed"
    assert list((artifacts / "affine" / "savedmodel").glob("*/saved_model.pb"))


def test_a_missing_internal_raises_one_line_naming_it_the_version_and_the_tested_range():
    pytest.importorskip("tf2onnx")
    shim = Shim("tf2onnx", {
        "present": Internal("tf2onnx.convert", "tensor_names_from_structed", "naming tensors"),
        "gone": Internal("tf2onnx.convert", "_no_such_internal.inner", "converting lifted graphs"),
    })
    with pytest.raises(MissingInternal) as caught:
        shim["present"]
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        f"tf2onnx {metadata.version('tf2onnx')} has no tf2onnx.convert._no_such_internal.inner (tfship uses it for converting lifted graphs); "
        f"tfship is tested with tf2onnx {tfship.compat.TESTED['tf2onnx']}: install a version in that range"
    )
    assert caught.value.exit_code == 2
    assert isinstance(caught.value.__cause__, AttributeError)


def test_a_missing_module_and_a_missing_instance_attribute_are_missing_internals():
    shim = Shim("keras", {"gone": Internal("keras.src.no_such_module", "", "reading layers")})
    with pytest.raises(MissingInternal, match=r"^keras \S+ has no keras\.src\.no_such_module \(tfship uses it for reading layers\); tfship is tested with keras "):
        shim.check()
    with pytest.raises(MissingInternal, match=r"^keras \S+ has no builtins\.object\._no_such_field \(tfship uses it for reading layers\);"):
        shim.attribute(object(), "_no_such_field", "reading layers")


def _shims() -> list[tuple[str, Shim]]:
    """(module.name, shim) of every Shim defined in tfship.compat's modules."""
    found = []
    for info in pkgutil.iter_modules(tfship.compat.__path__):
        module = importlib.import_module(f"tfship.compat.{info.name}")
        found += [(f"{info.name}.{name}", value) for name, value in vars(module).items() if isinstance(value, Shim)]
    return found


def test_every_shim_has_a_tested_range_and_every_library_has_a_shim():
    shims = _shims()
    assert {shim.distribution for _, shim in shims} == {"tensorflow", "keras", "tf-keras", "tf2onnx", "ai-edge-litert", "ai-edge-quantizer", "nncf"}
    assert all(shim.distribution in tfship.compat.TESTED and shim.internals for _, shim in shims)


@pytest.mark.parametrize("name, shim", _shims(), ids=[name for name, _ in _shims()])
def test_every_internal_resolves_on_the_installed_version(name, shim):
    try:
        metadata.version(shim.distribution)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{shim.distribution} is not installed")
    values = shim.check()  # MissingInternal names the internal a new release moved
    assert set(values) == set(shim.internals)


def test_a_compiler_ir_stage_tensorflow_does_not_know_is_a_missing_internal():
    import tensorflow as tf

    from tfship.compat.tensorflow import compiler_ir

    fn = tf.function(lambda x: x * 2.0, jit_compile=True)
    getter = fn.experimental_get_compiler_ir(tf.ones([2]))
    assert "multiply" in compiler_ir(getter, "hlo")
    with pytest.raises(MissingInternal, match=r"^tensorflow \S+ has no stage 'no_such_stage' of tf\.function\.experimental_get_compiler_ir \(tfship uses it for writing the compiler IR of the xla and tpu targets\); tfship is tested with tensorflow "):
        compiler_ir(getter, "no_such_stage")
