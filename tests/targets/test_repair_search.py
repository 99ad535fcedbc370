"""The repair search's branches on a real trained classifier (wine, scikit-learn's copy),
built by the real ai-edge-quantizer and run in LiteRT: the damage ranking, the worst
weights first, the second float-inputs pass, the budget, NothingToQuantize, the texts
said when nothing passes, and the finding when more float layers score worse.

Candidates are judged here by top-1 agreement with the float model on held-out wines
(>= 0.95, the int8 class's limit) and their worst |error| (the full parity verdict is
exercised through the CLI in test_tflite_repair.py)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from targets.support import repair
from targets.support.repair import Budget, Candidate, Recipe, SearchResult

MIN_TOP1 = 0.95


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """The trained wine classifier as a float32 flatbuffer, with its calibration pool,
    held-out evaluation set and float reference."""
    import fixture_classifiers as fc

    from targets.support import litert

    model = fc.wine_mlp()
    folder = tmp_path_factory.mktemp("wine")
    model.export(str(folder / "saved"), verbose=False)
    names = litert.keras_layer_names(model)
    content, _ = litert.convert(folder / "saved", litert.Conversion(variant="float32"), None, names, ["features"])
    pool, _ = fc.wine_data(96, seed=1)
    return SimpleNamespace(
        content=content,
        names=names,
        selectable=repair.layer_ops(content, names),
        pool=pool,
        specs=[SimpleNamespace(name="features", dtype=np.float32)],
        reference=np.asarray(model.predict(pool["features"], verbose=0)),
        folder=folder,
        model=model,
    )


def _build(wine, calibrated=64):
    def build(recipe: Recipe) -> bytes:
        n = recipe.calibration_samples or calibrated
        return repair.build_recipe(wine.content, recipe, repair.calibration_samples(wine.pool, wine.specs, n), wine.selectable)

    return build


def _verify(wine, seen=None):
    from pipeline.runtimes.litert import LiteRTRunner

    def verify(recipe: Recipe, content: bytes) -> dict:
        path = wine.folder / f"{recipe.name}-{len(seen) if seen is not None else 0}.tflite"
        path.write_bytes(content)
        runner = LiteRTRunner(path)  # model.export names the output output_0
        out = np.concatenate([next(iter(runner({"features": wine.pool["features"][i : i + 1]}).values())) for i in range(len(wine.reference))])
        top1 = float(np.mean(out.argmax(1) == wine.reference.argmax(1)))
        if seen is not None:
            seen.append((recipe, top1))
        passed = top1 >= MIN_TOP1
        return {
            "passed": passed,
            "failures": [] if passed else [f"probs: top-1 agreement {top1:.4f} (limit >= {MIN_TOP1})"],
            "outputs": {"probs": {"max_abs": float(np.abs(out - wine.reference).max())}},
            "classifier": {"top1_agreement": top1},
        }

    return verify


def _ranking(wine, debugger_rows=None, localization=None):
    return repair.rank(wine.selectable, debugger_rows, localization, repair.constant_damage(wine.content, wine.selectable),
                       repair.input_damage(wine.pool, 64), wine.names)


def test_damage_ranks_the_standardize_constants_and_the_raw_inputs_first(wine):
    """Normalization's mean and variance over raw wine features (0.1 .. 1,680) under one int8
    scale lose most of their values; the Dense kernels, per channel, almost none."""
    weights = repair.constant_damage(wine.content, wine.selectable)
    assert set(weights) == {"standardize", "hidden1", "hidden2", "probs"}
    assert weights["standardize"]["zeroed"] > 0.4  # measured 0.62
    assert all(weights[layer]["zeroed"] < 0.05 for layer in ("hidden1", "hidden2", "probs"))
    inputs = repair.input_damage(wine.pool, 64)
    assert inputs["features"] > 0.3  # most wine features sit under half an int8 step of 0..1,680
    ranking = _ranking(wine)
    assert ranking.by_weights[0] == "standardize" and ranking.weights_damaged == ("standardize",)
    assert ranking.inputs_damaged == ("features",)
    assert ranking.source == "model order, output side first (no per-layer errors)"  # the debugger-failed fallback
    assert ranking.layers == ("probs", "hidden2", "hidden1", "standardize")
    assert ranking.to_json()["figures"]["standardize"]["weights_zeroed"] == weights["standardize"]["zeroed"]


def test_when_the_debugger_cannot_run_the_ranking_says_so_and_uses_the_rest(wine, tmp_path):
    """QuantizationDebugger fails for real (no SavedModel where the job says): the log says
    so, and the ranking comes from the localization table (or model order without one),
    still with the weight and input figures."""
    from targets.support.repair.target import _measure

    specs = wine.specs
    job = SimpleNamespace(
        loaded=SimpleNamespace(obj=wine.model), calibration=wine.pool, saved_model_dir=tmp_path / "missing",
        model=SimpleNamespace(inputs=specs, input_names=["features"]),
    )
    lines: list[str] = []
    loc = {"layers": [{"index": 0, "layer": "standardize", "rel_error": 1.2}, {"index": 1, "layer": "hidden1", "rel_error": 2.0}],
           "first_over_budget": "standardize"}
    ranking = _measure(job, 64, "int8", {"localization": loc}, wine.selectable, wine.content, lines.append)
    assert lines == ["int8: repair: QuantizationDebugger could not run (OSError); ranking layers without it"]
    assert ranking.source == "localization (relative error growth per layer)" and ranking.layers == ("standardize", "hidden1")
    assert ranking.weights_damaged == ("standardize",) and ranking.inputs_damaged == ("features",)
    ranking = _measure(job, 64, "int8", {}, wine.selectable, wine.content, lines.append)
    assert ranking.source == "model order, output side first (no per-layer errors)" and ranking.layers[0] == "probs"


def test_two_sources_merge_by_their_best_rank():
    """The worst layer of either source comes before the second of the other (a layer both
    blame leads): the debugger's worst convolution is tried second even when localization
    blames the last layers."""
    assert repair.merge_orders(["conv3", "conv1", "relu9"], ["relu9", "relu8", "conv3"]) == ["conv3", "relu9", "conv1", "relu8"]
    selectable = {name: [name] for name in ("conv1", "conv3", "relu8", "relu9")}
    rows = [{"layer": "conv3", "op": "CONV_2D", "rmse_over_scale": 0.41, "rounded_to_zero": 0.0},
            {"layer": "relu9", "op": "RELU", "rmse_over_scale": 0.3, "rounded_to_zero": 0.0}]
    loc = {"layers": [{"index": 0, "layer": "conv1", "rel_error": 0.01}, {"index": 1, "layer": "relu8", "rel_error": 0.02},
                      {"index": 2, "layer": "relu9", "rel_error": 0.2}]}
    ranking = repair.rank(selectable, rows, loc, {}, {})
    assert ranking.layers[:2] == ("relu9", "conv3")  # blamed by both sources, then the debugger's worst
    assert ranking.source.startswith("QuantizationDebugger") and "merged with localization" in ranking.source
    assert ranking.figures["conv3"]["rmse_over_scale"] == 0.41 and ranking.figures["relu9"]["growth"] == pytest.approx(0.18)


def test_the_worst_weights_are_tried_first_and_pass(wine):
    """Plain int8 fails (top-1 about 0.5); the search's first candidate keeps `standardize`
    float with its weights and the inputs float, and it passes: one try."""
    seen: list = []
    result = repair.Search("int8", _build(wine), _verify(wine, seen), Budget(8, 300)).run(
        "int8_repaired", _ranking(wine), {}, 64, 96, {"outputs": {"probs": {}}, "failures": ["probs"]})
    first = result.tried[0].recipe
    assert (first.float_layers, first.float_weights, first.float_inputs) == (("standardize",), ("standardize",), True)
    assert result.chosen is result.tried[0] and len(result.tried) == 1 and result.stopped == "a passing recipe was found"
    assert seen[0][1] >= MIN_TOP1


def test_without_damage_figures_the_second_pass_keeps_inputs_float_then_weights_go_float(wine):
    """A plain blame list (no weight or input figures): every layer float fails, then the
    same with float inputs (the second pass, all layers at once), then weights go float
    in the order given and the passing set is pruned."""
    blame = ["standardize", "hidden1", "hidden2", "probs"]
    result = repair.search("int8", "int8_repaired", _build(wine), _verify(wine), blame, "test", {}, 64, 96, Budget(12, 300),
                           {"outputs": {"probs": {}}, "failures": ["probs"]}, allow_int16=False, weight_damage={"standardize": 0.6})
    recipes = [c.recipe for c in result.tried]
    first_float_inputs = next(i for i, r in enumerate(recipes) if r.float_inputs)
    assert not any(r.float_inputs for r in recipes[:first_float_inputs])
    assert recipes[first_float_inputs].float_layers == tuple(blame) and not recipes[first_float_inputs].float_weights
    assert result.tried[first_float_inputs].status == "failed"  # standardize's int8 constants still break it
    assert recipes[first_float_inputs + 1].float_weights == ("standardize",)
    assert result.chosen is not None and result.chosen.recipe.float_layers == ("standardize",)


def test_a_recipe_that_is_the_float_model_is_never_built(wine):
    everything = Recipe("r", "int8", float_layers=tuple(wine.selectable), float_weights=tuple(wine.selectable), float_inputs=True)
    with pytest.raises(repair.NothingToQuantize):
        repair.build_recipe(wine.content, everything, [], wine.selectable)
    search = repair.Search("int8", _build(wine), _verify(wine), Budget(8, 300))
    assert search.attempt(everything) is None and search.tried == []  # not a candidate, not counted


def test_the_time_budget_stops_the_search_and_says_so(wine):
    budget = Budget(8, 1e-9)
    result = repair.Search("int8", _build(wine), _verify(wine), budget).run("int8_repaired", _ranking(wine), {}, 64, 96, {"outputs": {"probs": {}}})
    assert result.tried == [] and result.chosen is None and result.stopped == "time budget spent (1e-09 s)"
    record = repair.search_record(result, {"parity": {}}, budget, wine.content, 1000, 0.1, "int8", "tflite")
    assert record["found"] is False
    assert record["reason"] == "the time budget spent (1e-09 s); raise repair_conversions / repair_seconds to search further"


def test_widen_keeps_the_running_min_and_max():
    from targets.support.repair.build import _widen

    first = {"min": np.array([-1.0, 0.0]), "max": np.array([1.0, 2.0])}
    assert _widen({}, first) is first
    wider = _widen(first, {"min": np.array([-3.0, 0.5]), "max": np.array([0.5, 4.0]), "zero_point": 0})
    assert wider["min"].tolist() == [-3.0, 0.0] and wider["max"].tolist() == [1.0, 4.0] and wider["zero_point"] == 0


def _result(tried, blame=("a", "b"), stopped="every planned recipe was tried"):
    return SearchResult("int8", list(tried), None, 1.0, {}, list(blame), "test", stopped)


def _failed(recipe, max_abs=0.5, top1=0.9, message=""):
    return Candidate(recipe, "failed", 0.1, 100, b"x", {"passed": False, "failures": ["probs: top-1"], "outputs": {"probs": {"max_abs": max_abs}},
                                                       "classifier": {"top1_agreement": top1}}, message)


def test_no_recipe_reasons_say_what_was_tried():
    from targets.support.repair.report import _no_recipe_reason

    passed_but_refused = Candidate(Recipe("r", "int8", float_layers=("a",)), "failed", 0.1, 100, b"x", {"passed": True, "outputs": {}}, "would run on the Edge TPU: 0 of 7 ops")
    assert _no_recipe_reason(_result([passed_but_refused])) == "int8; float: a would run on the Edge TPU: 0 of 7 ops"
    assert _no_recipe_reason(_result([], blame=())) == "no per-layer errors to say which layers to keep in float"
    everything = _failed(Recipe("r", "int8", float_layers=("a", "b"), float_weights=("a", "b")), max_abs=0.25)
    assert _no_recipe_reason(_result([everything])) == (
        "with every blamed layer and its weights in float the file still fails (max_abs 0.25); "
        "what stays integer (the model's inputs) is enough to break the budget"
    )
    everything_float_inputs = _failed(Recipe("r", "int8", float_layers=("a", "b"), float_weights=("a", "b"), float_inputs=True), max_abs=0.25)
    assert "what stays integer (the layers outside the blame list)" in _no_recipe_reason(_result([everything_float_inputs]))
    some = _failed(Recipe("r", "int8", float_layers=("a",)))
    assert _no_recipe_reason(_result([some], stopped="conversion budget spent (1)")) == (
        "the conversion budget spent (1); raise repair_conversions / repair_seconds to search further"
    )
    assert _no_recipe_reason(_result([some])) == "every planned recipe was tried"


def test_more_float_layers_scoring_worse_is_a_finding_with_both_figures():
    """The finding compares parity records only, so the figures here stand in for the
    quantizer and LiteRT: 4 float layers at top-1 0.945, 8 at 0.922 (the pattern seen on a
    residual CNN). The worse superset is logged and recorded; a better one is not."""
    top1 = {4: 0.945, 8: 0.922, 5: 0.95}
    layers = [f"l{i}" for i in range(8)]

    def verify(recipe, content):
        t = top1[len(recipe.float_layers)]
        return {"passed": t >= MIN_TOP1, "failures": [] if t >= MIN_TOP1 else ["probs: top-1"], "outputs": {"probs": {"max_abs": 1 - t}},
                "classifier": {"top1_agreement": t}}

    lines: list[str] = []
    search = repair.Search("int8", lambda recipe: b"x" * 10, verify, Budget(8, 300), log=lines.append)
    search.attempt(Recipe("r", "int8", float_layers=tuple(layers[:4])))
    search.attempt(Recipe("r", "int8", float_layers=tuple(layers)))
    assert len(search.findings) == 1
    finding = search.findings[0]
    assert finding["kind"] == "superset_worse" and finding["added_float_layers"] == layers[4:] and finding["tries"] == [1, 2]
    assert finding["subset_parity"] == {"max_abs": pytest.approx(0.055), "top1_agreement": 0.945, "failures": 1}
    assert finding["superset_parity"]["top1_agreement"] == 0.922
    assert lines[-1].startswith("repair int8 #2: adding l4, l5, l6, l7 to the float layers made parity worse: max_abs 0.055, top-1 0.945 with 4 float layer(s) (try #1), max_abs 0.078, top-1 0.922 with 8 (try #2)")
    search.attempt(Recipe("r", "int8", float_layers=tuple(layers[:5])))  # better than its subset: nothing to say
    assert len(search.findings) == 1
    result = SearchResult("int8", search.tried, None, 1.0, {}, layers, "test", "every planned recipe was tried", search.findings)
    record = repair.search_record(result, {"parity": {}}, Budget(8, 300), b"y" * 20, 10, 1.0, "int8", "tflite")
    assert record["findings"] == search.findings and "Noticed: adding l4, l5, l6, l7" in record["summary"]
