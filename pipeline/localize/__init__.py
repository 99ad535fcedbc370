"""Layer localization: which layer of the model an artifact first diverges at.

`localize_artifact` is the function; `Localization` / `LayerError` the typed result
(see result.py). `localize_failure` is what the runner calls for a failed parity.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.localize.core import Exporter, localize_artifact
from pipeline.localize.node_data import write_node_data
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
    result = localize_artifact(
        config, loaded, probe, inputs, budget, target.name, artifact.variant, exporter=exporter, work_dir=debug_dir / "bisect"
    )
    _remove_empty(debug_dir / "bisect")
    kind = result.explorer.get("kind")
    if kind:
        written = write_node_data(result, kind, debug_dir)
        if written is not None:
            # Open it over the shipped file when the runtime read that file as is; else over the debug copy.
            graph = {"litert": artifact.files[0], "onnxruntime": artifact.files[0]}.get(kind)
            graph_path = f"{target.name}/{graph}" if graph else next((f".debug/{debug_dir.name}/{f}" for f in result.debug_files if f.endswith(".pb")), "")
            explorer = {"kind": kind, "node_data": f".debug/{debug_dir.name}/{written.name}", "graph": graph_path}
            result = dataclasses.replace(result, explorer=explorer, debug_files=result.debug_files + (written.name,))
    return result


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
