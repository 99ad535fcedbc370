"""Config validation: every problem listed with file, line and key; nothing imported or written."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pipeline.config import load_config
from targets import REGISTRY
from pipeline.errors import ConfigError

GOOD = """\
source:
  factory: examples.affine:build
inputs:
  - {name: x, shape: [null, 4], dtype: float32}
outputs: [y]
targets:
  - savedmodel
"""


def test_good_config_loads_with_defaults(tmp_path):
    path = tmp_path / "affine.yaml"
    path.write_text(GOOD)
    config = load_config(path, REGISTRY)
    assert config.name == "affine"
    assert config.input_names == ("x",)
    assert config.data.batch_sizes == (1, 3)  # batch 1 and an odd batch > 1
    assert config.targets[0].options.version == 1
    assert len(config.sha256) == 64


def test_typo_wrong_type_and_missing_file_are_all_reported_with_lines(project):
    project.config(
        "broken",
        textwrap.dedent(
            """\
            source:
              path: models/missing.keras
            inputs:
              - {name: x, shape: [null, 4], dtype: float32}
            outputs: [y]
            data:
              samples: many
              seeed: 3
            targets:
              - savedmodel
            """
        ),
    )
    result = project.run("export")
    assert result.code == 2
    err = result.err
    assert "3 problems" in err
    assert "broken.yaml:2: source.path: model file not found" in err
    assert "broken.yaml:7: data.samples: expected an integer, got str 'many'" in err
    assert "broken.yaml:8: data.seeed: unknown key 'seeed' (did you mean 'seed'?)" in err
    assert "Traceback" not in err
    assert not project.artifacts.exists(), "a config error must write nothing"


def test_unknown_target_names_the_known_ones(tmp_path):
    path = tmp_path / "cnn.yaml"
    path.write_text(GOOD.replace("  - savedmodel", "  - savedmodel\n  - tfl1te"))
    with pytest.raises(ConfigError, match=r"cnn.yaml:8: targets\[1\]: unknown target 'tfl1te'.*known: .*savedmodel"):
        load_config(path, REGISTRY)


@pytest.mark.parametrize(
    "snippet, message",
    [
        ("inputs:\n  - {name: x, shape: [seq, 4], dtype: float32}\n", r"the leading dimension is the batch: write null"),
        ("inputs:\n  - {name: x, shape: [null, batch], dtype: float32}\n", r"'batch' names the leading dimension"),
        ("inputs:\n  - {name: x, shape: [null, 4-x], dtype: float32}\n", r"or a dimension name"),
        ("inputs:\n  - {name: x, shape: [null, 4], dtype: float23}\n", r"unknown dtype 'float23' \(did you mean 'float32'\?\)"),
        ("inputs:\n  - {name: ids, shape: [null, 4], dtype: int32}\n", r"integer input 'ids' needs its value range"),
    ],
)
def test_input_problems(tmp_path, snippet, message):
    text = GOOD.replace("inputs:\n  - {name: x, shape: [null, 4], dtype: float32}\n", snippet)
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, REGISTRY)


def test_tolerance_overrides_are_validated_and_applied(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(GOOD.replace("  - savedmodel", "  - name: savedmodel\n    tolerances:\n      y: {atol: 1e-3}\n      z: {atol: 1}"))
    with pytest.raises(ConfigError, match=r"m.yaml:10: targets\[0\].tolerances.z: 'z' is neither an output"):
        load_config(path, REGISTRY)
    path.write_text(GOOD.replace("  - savedmodel", "  - name: savedmodel\n    tolerances:\n      y: {atol: 1e-3}"))
    config = load_config(path, REGISTRY)
    assert config.targets[0].tolerance_overrides("", "y") == {"atol": 1e-3}


def test_duplicate_keys_and_yaml_syntax(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(GOOD + "outputs: [z]\n")
    with pytest.raises(ConfigError, match=r"m.yaml:8: outputs: key given twice"):
        load_config(path, REGISTRY)
    path.write_text("source: [unclosed\n")
    with pytest.raises(ConfigError, match=r"m.yaml:2: invalid YAML"):
        load_config(path, REGISTRY)


def test_validation_does_not_import_tensorflow(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(GOOD)
    code = (
        "import sys; from pipeline.config import load_config; from targets import REGISTRY; "
        f"load_config({str(path)!r}, REGISTRY); "
        "heavy = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnxruntime', 'ai_edge_litert') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
