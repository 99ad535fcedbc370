"""tf2onnx internals: conversion of a GraphDef tfship froze itself (weights lifted out),
its loader's freezing fixes and Grappler pass, structured tensor names, and the opset
table of its handlers."""
from __future__ import annotations

from typing import Any

from tfship.compat import Internal, Shim

_LIFT = "converting a frozen graph whose large weights are lifted out"

SHIM = Shim("tf2onnx", {
    "convert_common": Internal("tf2onnx.convert", "_convert_common", _LIFT),
    "tensor_names_from_structed": Internal("tf2onnx.convert", "tensor_names_from_structed", "naming ONNX inputs and outputs after the config"),
    "fix_freezing_errors_part2": Internal("tf2onnx.tf_loader", "fix_freezing_errors_part2", _LIFT),
    "tf_session": Internal("tf2onnx.tf_loader", "tf_session", _LIFT),
    "tf_optimize": Internal("tf2onnx.tf_loader", "tf_optimize", _LIFT),
    "get_opsets": Internal("tf2onnx.handler", "tf_op.get_opsets", "naming the lowest opset with a handler for an op"),
    "onnx_domain": Internal("tf2onnx.constants", "ONNX_DOMAIN", "naming the lowest opset with a handler for an op"),
    "make_name": Internal("tf2onnx.utils", "make_name", "tfship's own op handlers (Erfc)"),
    "map_onnx_to_numpy_type": Internal("tf2onnx.utils", "map_onnx_to_numpy_type", "tfship's own op handlers (Erfc)"),
})


__getattr__ = SHIM.module_attribute  # `from tfship.compat.tf2onnx import <internal>`
