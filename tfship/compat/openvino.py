"""NNCF internals the openvino int8 variant uses: the advanced quantization parameters
that select min/max activation ranges. (NNCF's logger is reached by its public logging
name, `nncf`.)"""
from __future__ import annotations

import logging

from tfship.compat import Internal, Shim

_RANGES = "calibrating int8 activations on their min and max"

SHIM = Shim("nncf", {
    "advanced_parameters": Internal("nncf.quantization.advanced_parameters", "AdvancedQuantizationParameters", _RANGES),
    "range_estimators": Internal("nncf.quantization.range_estimator", "RangeEstimatorParametersSet.MINMAX", _RANGES),
})


def min_max_parameters():
    """NNCF's advanced parameters with min/max activation ranges over every sample."""
    return SHIM["advanced_parameters"](activations_range_estimator_params=SHIM["range_estimators"])


def nncf_logger() -> logging.Logger:
    return logging.getLogger("nncf")
