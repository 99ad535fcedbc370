"""Shared test helpers: write a model config into a temp project and run the real CLI."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
# Factories named in test configs (`fixture_models:...`) import from here, as do workers.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


# The affine sample model with wide synthetic inputs; tests add their targets below it.
AFFINE_HEAD = """\
source:
  factory: examples.affine:build
inputs:
  - {name: x, shape: [null, 4], dtype: float32}
outputs: [y]
data:
  inputs:
    x: {distribution: uniform, low: -10, high: 10}
  samples: 16
targets:
"""


@dataclass
class Result:
    code: int
    out: str
    err: str


class Project:
    """A throwaway project: configs/models/*.yaml and artifacts/ under tmp_path."""

    def __init__(self, root: Path, capsys):
        self.root = root
        self.config_dir = root / "configs" / "models"
        self.artifacts = root / "artifacts"
        self.config_dir.mkdir(parents=True)
        self._capsys = capsys

    def config(self, name: str, text: str) -> Path:
        path = self.config_dir / f"{name}.yaml"
        path.write_text(text)
        return path

    def run(self, *args: str) -> Result:
        from pipeline.cli import main

        self._capsys.readouterr()
        command, rest = args[0], list(args[1:])
        code = main([command, "--config-dir", str(self.config_dir), "--artifacts", str(self.artifacts), *rest])
        captured = self._capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def report(self, model: str) -> dict:
        """The model's report.json, checked against pipeline/reports/schema.json."""
        from pipeline.reports.model import validate_report

        report = json.loads((self.artifacts / model / "report.json").read_text())
        validate_report(report)
        return report


@pytest.fixture
def project(tmp_path, capsys) -> Project:
    return Project(tmp_path, capsys)


_SKIPPED: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED.append((report.nodeid, reason.removeprefix("Skipped: ")))


def _refuse_skips(session) -> None:
    """TFSHIP_STRICT_SKIPS=1 (CI): a skip not allowed in tests/allowed_skips.py fails the session."""
    if os.environ.get("TFSHIP_STRICT_SKIPS") != "1":
        return
    from allowed_skips import disallowed

    bad = disallowed(_SKIPPED)
    if bad:
        print("\ntests that skipped where CI must run them (TFSHIP_STRICT_SKIPS=1; allowed skips: tests/allowed_skips.py):\n  "
              + "\n  ".join(f"{node}: {reason}" for node, reason in bad), file=sys.stderr)
        session.exitstatus = 1


def pytest_sessionfinish(session, exitstatus):
    """Every report.json any test wrote (in-process or through a CLI subprocess, under the
    session's temporary folders) must match pipeline/reports/schema.json; in CI, no test
    skipped for a reason that is not allowed."""
    _refuse_skips(session)
    import jsonschema

    from pipeline.reports.model import validate_report

    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    try:
        root = factory.getbasetemp()
    except (OSError, ValueError):
        return
    bad = []
    for path in sorted(root.rglob("report.json")):
        if "release" in path.parts or path.parent.name in ("ci", "schema1"):
            continue  # copies inside release bundles are checked where they were written; schema1: old-shape fixtures
        try:
            validate_report(json.loads(path.read_text()))
        except (jsonschema.ValidationError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
            bad.append(f"{path}: {str(exc).splitlines()[0]}")
    if bad:
        print("\nreport.json files that do not match pipeline/reports/schema.json:\n  " + "\n  ".join(bad), file=sys.stderr)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def hand_made(tmp_path_factory):
    """A SavedModel and TFLite/ONNX files converted from it by hand, plus a broken copy."""
    import fixture_artifacts as fa

    folder = tmp_path_factory.mktemp("hand_made")
    module = fa.build_module()
    saved = fa.save(module, folder / "savedmodel" / "1")
    paths = {"savedmodel": saved, "onnx": fa.to_onnx(module, folder / "model.onnx")}
    for variant in ("float32", "float16", "int8"):
        paths[variant] = fa.to_tflite(saved, folder / f"{variant}.tflite", variant)
    shifted = fa.save(fa.build_module(shift=0.05), folder / "shifted")
    paths["shifted"] = fa.to_tflite(shifted, folder / "shifted.tflite")
    return paths
