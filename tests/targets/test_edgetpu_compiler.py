"""edgetpu_compiler's outcome decides what ships. It is not installed here: a stand-in
executable on PATH plays it (exits non-zero, hangs, writes a file or garbage); the model,
the int8 conversion and LiteRT are real. A compile that fails is an error that
publishes nothing; a compiled file that parity cannot run is shipped only with the
report and the release manifest saying it was not checked and what was."""
from __future__ import annotations

import json
import os
import stat

import pytest

TINY = """\
source:
  factory: fixture_models:tiny_keras3_classifier
inputs:
  - {name: x, shape: [null, 8], dtype: float32}
outputs: [probs]
data:
  generator: fixture_models:tiny_data
  samples: 32
  seed: 5
  classifier: probs
targets:
  - {name: edgetpu, calibration_samples: 32%s}
"""

# The real compiler's command line: edgetpu_compiler -s -o OUT_DIR MODEL.tflite
FAILS = """#!/bin/sh
echo "Edge TPU Compiler version 16.0.384591198"
echo "ERROR: Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'" >&2
exit 1
"""
HANGS = """#!/bin/sh
echo "Edge TPU Compiler version 16.0.384591198"
exec sleep 60
"""
COPIES = """#!/bin/sh
stem=$(basename "$4" .tflite)
cp "$4" "$3/${stem}_edgetpu.tflite"
echo "Model compiled successfully in 12 ms."
"""
GARBAGE = """#!/bin/sh
stem=$(basename "$4" .tflite)
printf 'not a flatbuffer' > "$3/${stem}_edgetpu.tflite"
echo "Model compiled successfully in 12 ms."
"""


@pytest.fixture
def compiler(tmp_path, monkeypatch):
    """Put a stand-in edgetpu_compiler with the given script first on PATH."""

    def install(script: str):
        folder = tmp_path / "bin"
        folder.mkdir(exist_ok=True)
        path = folder / "edgetpu_compiler"
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        return path

    return install


def _edgetpu(project, name: str) -> dict:
    return project.report(name)["targets"]["edgetpu"]


def test_a_compile_that_fails_is_an_error_and_ships_nothing(project, compiler):
    compiler(FAILS)
    project.config("tiny", TINY % "")
    result = project.run("export")
    assert result.code == 1, result.out + result.err
    entry = _edgetpu(project, "tiny")
    assert entry["status"] == "error"
    assert "edgetpu_compiler" in entry["message"] and "exited with code 1" in entry["message"]
    assert "Didn't find op for builtin opcode 'FULLY_CONNECTED'" in entry["message"]  # the compiler's own words
    assert entry["files"] == []
    assert not list((project.artifacts / "tiny").rglob("*.tflite"))  # neither model.tflite nor a compiled file


@pytest.mark.heavy
def test_a_compile_that_hangs_is_stopped_and_is_an_error(project, compiler):
    compiler(HANGS)
    project.config("tiny", TINY % ", compiler_timeout: 2")
    result = project.run("export")
    assert result.code == 1, result.out + result.err
    entry = _edgetpu(project, "tiny")
    assert entry["status"] == "error" and "did not finish within 2 s" in entry["message"]
    assert "compiler_timeout" in entry["message"]
    assert not list((project.artifacts / "tiny").rglob("*.tflite"))


@pytest.mark.heavy
def test_an_unreadable_compiled_file_is_an_error(project, compiler):
    compiler(GARBAGE)
    project.config("tiny", TINY % "")
    result = project.run("export")
    assert result.code == 1, result.out + result.err
    entry = _edgetpu(project, "tiny")
    assert entry["status"] == "error" and "is not a readable TFLite model" in entry["message"]
    assert not list((project.artifacts / "tiny").rglob("*.tflite"))


@pytest.mark.heavy
def test_a_compiled_file_ships_marked_unchecked_in_report_and_manifest(project, compiler):
    compiler(COPIES)
    project.config("tiny", TINY % "")
    result = project.run("export")
    assert result.code == 0, result.out + result.err
    variant = _edgetpu(project, "tiny")["variants"]["default"]
    assert variant["status"] == "passed"
    assert sorted(f["path"] for f in variant["files"]) == ["edgetpu/edgetpu_compiler.log", "edgetpu/model.tflite", "edgetpu/model_edgetpu.tflite"]
    why = variant["unchecked_files"]["edgetpu/model_edgetpu.tflite"]
    assert why.startswith("not run by parity: it runs only on an Edge TPU. Parity ran model.tflite")
    assert "same inputs and outputs (shapes, types, quantization) as model.tflite" in why
    assert set(variant["unchecked_files"]) == {"edgetpu/model_edgetpu.tflite", "edgetpu/edgetpu_compiler.log"}
    assert variant["info"]["compiled_check"]["same_io_as"] == "model.tflite"
    assert "`edgetpu/model_edgetpu.tflite` NOT CHECKED by parity" in (project.artifacts / "tiny" / "report.md").read_text()
    assert project.run("release", "--version", "1.0.0", "--skip-export").code == 0
    manifest = json.loads((project.artifacts / "release" / "1.0.0" / "manifest.json").read_text())
    files = {f["path"]: f for f in manifest["files"]}
    assert files["tiny/edgetpu/model_edgetpu.tflite"]["unchecked"] == f"edgetpu: {why}"  # the variant that shipped it, then why
    assert "unchecked" not in files["tiny/edgetpu/model.tflite"] and files["tiny/edgetpu/model.tflite"]["checked_by"]
