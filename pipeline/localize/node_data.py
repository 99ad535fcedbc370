"""Per-layer errors as Model Explorer node data (its documented GraphNodeData JSON:
{"name", "results": {node key: {"value"}}, "thresholds": [{"value", "bgColor"}]}),
so the error shows on the artifact's own graph. A key is the artifact's tensor name
(TFLite, ONNX) or the producing node's name (TensorFlow GraphDef)."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.localize.debugcopy import write_text
from pipeline.localize.result import Localization

GREEN, AMBER, RED = "#c8e6c9", "#ffe082", "#ef9a9a"


def node_key(tensor: str, kind: str) -> str:
    if kind.startswith(("tf-graph", "xla", "bf16")):
        return tensor.split(":")[0]
    return tensor


def graph_node_data(loc: Localization, kind: str) -> dict:
    share = float(loc.budget.get("range_share") or 0.0)
    results = {}
    for row in loc.layers:
        if row.tensor.startswith("("):  # a truncated export has no node in this graph
            continue
        value = row.rel_error if row.rel_error == row.rel_error and row.rel_error != float("inf") else 1e30
        results[node_key(row.tensor, kind)] = {"value": float(f"{value:.6g}")}
    return {
        "name": "tfship: max |error| / layer range",
        "results": results,
        "thresholds": [
            {"value": share, "bgColor": GREEN},  # within the output's budget, scaled to the layer
            {"value": 10 * share, "bgColor": AMBER},
            {"value": 1e30, "bgColor": RED},
        ],
    }


def write_node_data(loc: Localization, kind: str, debug_dir: Path) -> Path | None:
    data = graph_node_data(loc, kind)
    if not data["results"]:
        return None
    return write_text(Path(debug_dir) / "node_data.json", json.dumps(data, indent=2))
