"""Layer localization: which layer of the model an artifact first diverges at.

`localize_artifact` is the function; `Localization` / `LayerError` the typed result
(see result.py). `localize_failure` is what the runner calls for a failed parity.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.localize.core import Exporter, localize_artifact
from pipeline.localize.result import Budget, LayerError, Localization, budget_for

__all__ = ["Budget", "Exporter", "LayerError", "Localization", "budget_for", "localize_artifact", "localize_failure", "pick_inputs"]


def pick_inputs(cases: tuple, pool_mask: tuple) -> dict[str, np.ndarray]:
    """The batch localization runs on: the first pooled case (the largest batch), else the last case."""
    for (label, inputs), pooled in zip(cases, pool_mask):
        if pooled:
            return inputs
    return cases[-1][1]


def localize_failure(
    model_dir: Path,
    config,
    loaded,
    target: Any,
    target_cfg,
    target_dir: Path,
    artifact,
    parity: dict,
    stats: dict,
    tolerance_for,
    inputs: dict[str, np.ndarray],
    calibration: dict[str, np.ndarray],
) -> Localization | None:
    """Localize one failed artifact; debug copies go to <model_dir>/.debug/<target>[-<variant>]/."""
    from pipeline.localize.debugcopy import debug_dir_for

    budget = budget_for(parity.get("outputs") or {}, stats, tolerance_for)
    if budget is None:  # failed on the classifier alone, or an output error: scale by the tightest output budget
        outputs = {n: dict(m, passed=False) for n, m in (parity.get("outputs") or {}).items() if m.get("atol") is not None}
        budget = budget_for(outputs, stats, tolerance_for)
    if budget is None:
        return None
    debug_dir = debug_dir_for(model_dir, target.name, artifact.variant)

    def probe():
        return target.tensor_probe(target_dir, artifact, config, debug_dir)

    exporter = Exporter(target=target, target_cfg=target_cfg, variant=artifact.variant, calibration=calibration)
    return localize_artifact(
        config, loaded, probe, inputs, budget, target.name, artifact.variant, exporter=exporter, work_dir=debug_dir / "bisect"
    )
