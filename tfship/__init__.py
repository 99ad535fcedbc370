"""tfship from Python: the same functions the `tfship` command calls.

    import tfship
    result = tfship.export(model, targets=["savedmodel", "tflite", "onnx"])  # a live model, no YAML
    assert result.passed
    tfship.compare("artifacts/m/savedmodel", "elsewhere/model.tflite")     # parity of any artifacts
    configs = tfship.load_configs(["configs/models/affine.yaml"])
    code = tfship.export_configs(configs, None, Path("artifacts"))          # 0 passed, 1 failed, 2 bad input
    print(tfship.plan(configs, None, Path("artifacts")).lines())            # what would build, and why

Importing this package never imports TensorFlow; the functions load it when they run.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

from pipeline.api import compare, export, inspect, validate
from pipeline.bench import BenchOptions, benchmark_model
from pipeline.errors import ConfigError, ModelError, PipelineError
from pipeline.execute.export import export as export_configs
from pipeline.execute.export import export_model
from pipeline.execute.validate import validate_model
from pipeline.matrix import matrix, merge
from pipeline.plan import Plan, make_plan
from pipeline.release import assemble_release, source_from_artifacts
from pipeline.reports.ci import write_ci_reports
from pipeline.reports.diff import Margins, diff_paths
from pipeline.reports.model import read_report, tool_versions

try:
    __version__ = metadata.version("tfship")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"


def load_config(path: str | Path):
    """One model config, validated against the registered targets (ConfigError lists every problem)."""
    from pipeline.config import load_config as _load
    from targets import REGISTRY

    return _load(Path(path), REGISTRY)


def load_configs(paths: list[str | Path]):
    """Several model configs, every problem across all of them in one ConfigError."""
    from pipeline.config import load_configs as _load
    from targets import REGISTRY

    return _load([Path(p) for p in paths], REGISTRY)


def plan(configs, only: list[str] | None, artifacts: str | Path | None, force: bool = False) -> Plan:
    """What `export` would build or reuse, and why (`export --dry-run` prints it)."""
    return make_plan(configs, only, Path(artifacts) if artifacts is not None else None, tool_versions(), force=force)


__all__ = [
    "BenchOptions",
    "ConfigError",
    "Margins",
    "ModelError",
    "PipelineError",
    "__version__",
    "assemble_release",
    "benchmark_model",
    "compare",
    "diff_paths",
    "export",
    "export_configs",
    "export_model",
    "inspect",
    "load_config",
    "load_configs",
    "matrix",
    "merge",
    "plan",
    "read_report",
    "source_from_artifacts",
    "validate",
    "validate_model",
    "write_ci_reports",
]
