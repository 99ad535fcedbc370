"""What the distribution installs: the `tfship` package as the Python entry point, the
library packages, and no top-level package that would collide with others (`examples`)."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from setuptools import find_packages

REPO = Path(__file__).resolve().parent.parent


def test_wheel_packages_are_tfship_pipeline_and_targets_only():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(str(REPO), include=include)
    top_level = {p.split(".")[0] for p in packages}
    assert top_level == {"tfship", "pipeline", "targets"}, top_level
    assert "pipeline.runtimes" in packages or not (REPO / "pipeline" / "runtimes").is_dir()
    assert {"pipeline.config", "pipeline.execute", "pipeline.reports", "pipeline.commands", "targets.support"} <= set(packages)


def test_import_tfship_gives_the_version_and_the_cli_functions_without_tensorflow():
    code = (
        "import sys, tfship; "
        "assert tfship.__version__ and tfship.__version__ != '0+unknown', tfship.__version__; "
        "missing = [n for n in tfship.__all__ if not hasattr(tfship, n)]; assert not missing, missing; "
        "assert callable(tfship.export) and callable(tfship.validate_model) and callable(tfship.benchmark_model); "
        "heavy = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnxruntime') if m in sys.modules]; "
        "assert not heavy, heavy; print(tfship.__version__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr[-2000:]


def test_tfship_plan_reads_the_sample_configs():
    import tfship

    configs = tfship.load_configs(sorted((REPO / "configs" / "models").glob("*.yaml")))
    plan = tfship.plan(configs, ["savedmodel"], None)
    assert [j.target for j in plan.jobs] == ["savedmodel"] * len(configs)
