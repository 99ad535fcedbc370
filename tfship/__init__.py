"""tfship from Python: export a model (live or on disk) to deployment targets and prove
each artifact computes what the model computes.

    import tfship
    result = tfship.export(model, targets=["savedmodel", "tflite", "onnx"])
    assert result.passed

`export`, `compare`, `inspect`, `load_config` and `validate` are the functions the
`tfship` command line calls.
"""
from __future__ import annotations

from importlib import metadata as _metadata

from pipeline.api import compare, export, inspect, load_config, validate
from pipeline.errors import ConfigError, ModelError, PipelineError

try:
    __version__ = _metadata.version("tfship")
except _metadata.PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["export", "compare", "inspect", "load_config", "validate", "PipelineError", "ConfigError", "ModelError", "__version__"]
