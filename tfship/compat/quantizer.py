"""ai-edge-quantizer internals: its calibrator with a custom range update (running
min/max, as the TFLite converter calibrates) and the recipe manager it reads."""
from __future__ import annotations

import inspect
from typing import Any, Callable

from tfship.compat import Internal, Shim, missing

_CALIBRATE = "calibrating a recipe with the converter's running min/max"

SHIM = Shim("ai-edge-quantizer", {
    "calibrator": Internal("ai_edge_quantizer.calibrator", "Calibrator", _CALIBRATE),
    "calibrate": Internal("ai_edge_quantizer.calibrator", "Calibrator.calibrate", _CALIBRATE),
    "get_model_qsvs": Internal("ai_edge_quantizer.calibrator", "Calibrator.get_model_qsvs", _CALIBRATE),
    "recipe_manager": Internal("ai_edge_quantizer.recipe_manager", "RecipeManager", _CALIBRATE),
})


def calibrator(float_content: bytes, update: Callable[[dict, dict], dict]) -> Any:
    """A Calibrator on the float flatbuffer whose ranges are merged by `update`."""
    cls = SHIM["calibrator"]
    if "qsv_update_func" not in inspect.signature(cls.__init__).parameters:
        raise missing("ai-edge-quantizer", "ai_edge_quantizer.calibrator.Calibrator(qsv_update_func=...)", _CALIBRATE)
    return cls(bytearray(float_content), num_threads=1, qsv_update_func=update)


def recipe_manager(recipe: list) -> Any:
    manager = SHIM["recipe_manager"]()
    manager.load_quantization_recipe(recipe)
    return manager
