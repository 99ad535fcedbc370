"""Layer localization: a failed artifact names the first layer that diverges, on every
graph target, by matched tensors or by bisection; nothing runs when parity passes."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.localize.result import Budget, judge, layer_metrics, summarize

FAULT = """\
source:
  factory: fixture_models:{factory}
inputs:
  - {{name: x, shape: [null, 8], dtype: float32}}
outputs: [y]
data:
  inputs:
    x: {{distribution: normal, mean: 0, std: 1}}
  samples: 16
targets:
{targets}"""

GRAPH_TARGETS = "  - savedmodel\n  - xla\n  - {name: tflite, variants: [float32]}\n  - {name: onnx, opset: 17}\n"


def _entries(report: dict) -> dict[str, dict]:
    """Records by console label: a single-artifact target ('default') is named alone."""
    out = {}
    for name, entry in report["targets"].items():
        for variant, sub in (entry.get("variants") or {"": entry}).items():
            out[f"{name}/{variant}" if variant and variant != "default" else name] = sub
    return out


# Depth 7 is the hard case (the TFLite converter folds that layer into the next one) and runs
# in every `make test`; depths 3 and 12 add a minute and run with `make test-heavy`.
@pytest.mark.parametrize("depth", [pytest.param(3, marks=pytest.mark.heavy), 7, pytest.param(12, marks=pytest.mark.heavy)])
def test_a_layer_that_computes_differently_when_traced_is_named_on_every_graph_target(project, depth):
    project.config("fault", FAULT.format(factory=f"traced_fault_{depth}", targets=GRAPH_TARGETS))
    result = project.run("export")
    assert result.code == 1
    entries = _entries(project.report("fault"))
    # xla/stablehlo: the StableHLO in IREE, its layers read from the op names in the IR's locations
    assert set(entries) == {"savedmodel", "xla", "xla/stablehlo", "tflite/float32", "onnx"}
    for label, entry in entries.items():
        assert entry["status"] == "failed", label
        loc = entry["localization"]
        assert loc["first_over_budget"] == f"l{depth}", (label, loc)
        assert loc["method"] in ("tensors", "tensors+bisection"), label
        rows = {row["layer"]: row for row in loc["layers"]}
        # Every layer before the fault agrees within the scaled budget; the faulty one is off by 0.6.
        assert all(not row["over_budget"] for row in loc["layers"] if row["index"] < depth - 1), label
        assert rows[f"l{depth}"]["max_abs"] == pytest.approx(0.6, abs=1e-5)
        assert rows[f"l{depth}"]["cosine"] < 0.99
        assert f"{label}: first layer over budget: 'l{depth}'" in result.err
    # Debug copies live beside the report, not in any published target folder.
    debug = project.artifacts / "fault" / ".debug"
    assert (debug / "onnx" / "model.debug.onnx").is_file() and (debug / "savedmodel" / "graph.pb").is_file()
    assert (debug / "xla-stablehlo" / "stablehlo.debug.mlir").is_file()
    for target in ("savedmodel", "xla", "tflite", "onnx"):
        assert not any("debug" in p.name for p in (project.artifacts / "fault" / target).rglob("*"))


def test_a_subclassed_model_is_localized_by_bisection(project):
    targets = "  - savedmodel\n  - {name: tflite, variants: [float32]}\n"
    project.config("fault", FAULT.format(factory="traced_fault_subclassed_7", targets=targets))
    result = project.run("export")
    assert result.code == 1
    for label, entry in _entries(project.report("fault")).items():
        loc = entry["localization"]
        assert loc["method"] == "bisection", label
        assert loc["first_over_budget"] == "l7", (label, loc)
        assert 2 <= len(loc["layers"]) <= 5  # halving over 15 layers, not one export per layer
        assert "[bisection" in result.err


def test_nothing_is_localized_when_parity_passes(project):
    project.config(
        "ok",
        FAULT.format(factory="traced_fault_7", targets="  - savedmodel\n").replace("traced_fault_7", "tiny_keras3_classifier").replace("[y]", "[probs]"),
    )
    result = project.run("export")
    assert result.code == 0, result.err
    entry = project.report("ok")["targets"]["savedmodel"]
    assert "localization" not in entry
    assert not (project.artifacts / "ok" / ".debug").exists()
    assert "where:" not in result.err


def test_layer_metrics_on_known_arrays():
    ref = np.array([[0.0, 1.0, 2.0, 3.0]], np.float32)
    out = ref + np.array([[0.0, 0.0, 0.0, 0.1]], np.float32)
    m = layer_metrics(ref, out)
    assert m["max_abs"] == pytest.approx(0.1, rel=1e-6)
    assert m["rel_error"] == pytest.approx(0.1 / 3, rel=1e-6)
    assert m["sqnr_db"] == pytest.approx(10 * np.log10(14 / 0.01), rel=1e-5)
    assert layer_metrics(ref, ref)["sqnr_db"] == float("inf")
    budget = Budget(range_share=0.01, rtol=0.0, mismatch_fraction=0.0, output="y")
    rows = [judge(0, "a", "t0", ref, ref, budget), judge(1, "b", "t1", ref, out, budget), judge(2, "c", "t2", ref, out * 3, budget)]
    assert [r.over_budget for r in rows] == [False, True, True]
    assert rows[1].budget_atol == pytest.approx(0.03)
    first, growth = summarize(rows)
    assert first == "b" and growth == "c"


def test_explain_reads_artifacts_on_disk_and_writes_model_explorer_node_data(project):
    from model_explorer import node_data_builder as ndb

    from pipeline.reports.html import render_html

    project.config("fault", FAULT.format(factory="traced_fault_3", targets="  - {name: tflite, variants: [float32]}\n"))
    assert project.run("export").code == 1
    report = project.report("fault")
    del report["targets"]["tflite"]["variants"]["float32"]["localization"]
    (project.artifacts / "fault" / "report.json").write_text(__import__("json").dumps(report))

    result = project.run("explain", "--model", "fault", "--target", "tflite")
    assert result.code == 0, result.err
    assert "tflite/float32: first layer over budget: 'l3'" in result.out and "(parity FAILED)" in result.out
    loc = project.report("fault")["targets"]["tflite"]["variants"]["float32"]["localization"]
    assert loc["first_over_budget"] == "l3"
    assert "### tflite/float32: where it diverges" in (project.artifacts / "fault" / "report.md").read_text()
    assert "error by layer depth" in render_html([project.report("fault")])

    # Node data for Model Explorer, read back through the package's own classes, keyed by
    # tensor names of the shipped .tflite file it is meant to be opened over.
    explorer = loc["explorer"]
    assert explorer["graph"] == "tflite/float32.tflite"
    raw = (project.artifacts / "fault" / explorer["node_data"]).read_text()
    data = __import__("json").loads(raw)
    node_data = ndb.GraphNodeData(
        name=data["name"],
        results={k: ndb.NodeDataResult(**v) for k, v in data["results"].items()},
        thresholds=[ndb.ThresholdItem(**t) for t in data["thresholds"]],
    )
    produced = __import__("json").loads(node_data.to_json_string())  # the package's own serialization
    assert {key: produced[key] for key in data} == data
    from ai_edge_litert.interpreter import Interpreter

    names = {d["name"] for d in Interpreter(model_path=str(project.artifacts / "fault" / "tflite" / "float32.tflite")).get_tensor_details()}
    assert set(data["results"]) <= names and len(data["results"]) >= 12
    budget = data["thresholds"][0]["value"]
    assert all(v["value"] <= budget for k, v in data["results"].items() if "/l1_" in k or "/l2_" in k)
    assert any(v["value"] > budget for k, v in data["results"].items() if "/l4_" in k)

    assert project.run("explain", "--model", "fault", "--target", "onnx").code == 2
