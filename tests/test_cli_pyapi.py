"""The command line over the API: --version, -c, --json, inspect, compare, live progress,
and every verdict with its reason in one line (weak evidence included; --strict fails it)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ptyrun import run_in_pty
from conftest import AFFINE_HEAD

REPO = Path(__file__).resolve().parent.parent
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

AFFINE = AFFINE_HEAD + """\
  - savedmodel
"""

MOBILENET = """\
source:
  factory: fixture_api_models:stock_mobilenet
inputs:
  - {name: image, shape: [null, 32, 32, 3], dtype: float32}
outputs: [probs]
data:
  inputs:
    image: {low: 0, high: 255}
  samples: 8
targets:
  - savedmodel
"""


def test_version(capsys):
    from pipeline.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert re.fullmatch(r"tfship \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def test_config_flag_names_a_file_anywhere(project, tmp_path):
    elsewhere = tmp_path / "elsewhere" / "affine.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(AFFINE)
    result = project.run("export", "-c", str(elsewhere), "--json")
    assert result.code == 0, result.err
    document = json.loads(result.out)  # stdout holds the JSON document and nothing else
    assert document["exit_code"] == 0 and document["passed"]
    (model,) = document["models"]
    assert model["model"] == "affine" and model["verdicts"][0]["target"] == "savedmodel"
    assert model["verdicts"][0]["status"] == "passed" and model["verdicts"][0]["max_abs"] <= 1e-5
    assert Path(model["report_html"]).is_file()
    validated = project.run("validate", "-c", str(elsewhere), "--json")
    assert validated.code == 0 and json.loads(validated.out)["models"][0]["checks"][0]["passed"]
    missing = project.run("export", "-c", str(tmp_path / "nope.yaml"))
    assert missing.code == 2 and "nope.yaml: -c/--config: config file not found" in missing.err


class _Cli:
    def __init__(self, capsys):
        self.capsys = capsys

    def run(self, *args: str):
        from conftest import Result
        from pipeline.cli import main

        self.capsys.readouterr()
        code = main(list(args))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
def cli(capsys):
    return _Cli(capsys)


def test_inspect_each_kind_and_json(cli, hand_made):
    project = cli
    text = project.run("inspect", str(hand_made["int8"]))
    assert text.code == 0, text.err
    assert "precision: int8" in text.out and "FULLY_CONNECTED: 2" in text.out and "scale=" in text.out
    for kind in ("savedmodel", "onnx", "float16"):
        result = project.run("inspect", str(hand_made[kind]), "--json")
        assert result.code == 0, result.err
        facts = json.loads(result.out)
        assert facts["runs"] is True and facts["signatures"][0]["inputs"][0]["name"] == "x"
    assert json.loads(project.run("inspect", str(hand_made["onnx"]), "--json").out)["details"]["opsets"]["ai.onnx"] == 17
    assert project.run("inspect", str(hand_made["onnx"].with_suffix(".bin"))).code == 2


def test_compare_prints_metrics_and_exits_by_the_budgets(cli, hand_made):
    project = cli
    ok = project.run("compare", str(hand_made["savedmodel"]), str(hand_made["float32"]), str(hand_made["onnx"]))
    assert ok.code == 0, ok.out + ok.err
    assert re.search(r"float32\.tflite\s+tflite/float32\s+y\s+pass\s+\S+\s+\S+\s+0", ok.out)
    assert re.search(r"model\.onnx\s+onnx\s+y\s+pass", ok.out)
    bad = project.run("compare", str(hand_made["savedmodel"]), str(hand_made["shifted"]), "--json")
    assert bad.code == 1
    document = json.loads(bad.out)
    (result,) = document["results"]
    assert result["status"] == "failed" and result["parity"]["outputs"]["y"]["max_abs"] == pytest.approx(0.05, abs=1e-4)
    loose = project.run("compare", str(hand_made["savedmodel"]), str(hand_made["shifted"]), "--tolerance", "y:atol=0.06", "--tolerance", "y:max_mean_error=0.05")
    assert loose.code == 0, loose.out


@pytest.mark.heavy
def test_weak_evidence_reaches_the_console_and_strict_fails_it(project):
    project.config("mobilenet", MOBILENET)
    result = project.run("export")
    assert result.code == 0, result.err
    line = next(l for l in result.out.splitlines() if l.startswith("mobilenet"))
    assert re.match(r"mobilenet\s+savedmodel\s+passed\s+\S+\s+weak evidence: probs near-constant across inputs", line)
    report_md = (project.artifacts / "mobilenet" / "report.md").read_text()
    assert "| savedmodel | passed |" in report_md and "weak evidence: probs near-constant" in report_md
    strict = project.run("export", "--strict")
    assert strict.code == 1
    assert "(fails: --strict)" in strict.out


def _project_files(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "affine.yaml"
    config.write_text(AFFINE)
    return config, tmp_path / "artifacts"


def test_export_in_a_terminal_shows_the_live_view(tmp_path):
    config, artifacts = _project_files(tmp_path)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    code, screen = run_in_pty([sys.executable, "-m", "pipeline", "export", "-c", str(config), "--artifacts", str(artifacts)], cwd=REPO, env=env)
    assert code == 0, screen[-3000:]
    assert "\x1b[" in screen  # redrawn in place
    plain = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", screen)
    assert re.search(r"model\s+target\s+stage\s+elapsed\s+progress\s+result", plain)
    assert re.search(r"affine\s+savedmodel\s+done\s+\d+\.\d s\s+━+\s+\d+/\d+\s+passed", plain)
    assert re.search(r"affine\s+savedmodel\s+passed\s+\S+", plain)  # the summary after the live view


def test_export_piped_prints_plain_timestamped_lines(tmp_path):
    config, artifacts = _project_files(tmp_path)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-m", "pipeline", "export", "-c", str(config), "--artifacts", str(artifacts)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert not CONTROL.search(result.stderr.replace("\n", "")) and not CONTROL.search(result.stdout.replace("\n", ""))
    assert all(re.match(r"\d\d:\d\d:\d\d \[", l) for l in lines), lines
    joined = "\n".join(l[9:] for l in lines)
    for expected in ("[affine] load", "[affine] trace", "[affine] savedmodel: convert", "[affine] savedmodel: parity (", "[affine] savedmodel: passed (max_abs"):
        assert expected in joined, joined
    quiet = subprocess.run([sys.executable, "-m", "pipeline", "export", "-c", str(config), "--artifacts", str(artifacts), "-q", "--force"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 0 and quiet.stderr.strip() == "", quiet.stderr
    assert re.search(r"affine\s+savedmodel\s+passed", quiet.stdout)


TWO_TARGETS = """\
source:
  factory: examples.affine:build
inputs:
  - {name: x, shape: [null, 4], dtype: float32}
outputs: [y]
data:
  samples: 16
targets:
  - savedmodel
  - name: tflite
    variants: [float32, int8]
    calibration_samples: 64
"""


def test_only_the_selected_targets_needs_are_checked(project):
    path = project.config("affine", TWO_TARGETS)
    saved = project.run("export", "--target", "savedmodel")
    assert saved.code == 0, saved.err  # int8 calibration is not this run's business
    assert project.report("affine")["targets"]["savedmodel"]["status"] == "passed"
    tflite = project.run("export", "--target", "tflite")
    assert tflite.code == 2
    line = path.read_text().splitlines().index("    calibration_samples: 64") + 1
    assert f"{path}:{line}: targets[1].calibration_samples: int8 calibrate on 64 samples but `data.samples` is 16" in tflite.err
    assert not (project.artifacts / "affine" / "tflite").exists()
    assert project.run("export").code == 2  # every target selected
