"""The report side of a repair search: the record a run stores under the failed
variant's entry (`repair`), the console's one-line summary, and why nothing passed,
said from what was tried. report.md renders the record (pipeline/reports/repairs.py).

Follows STYLE.md pattern 14 (renderers read the typed result, `SearchResult`, and write
one JSON shape) and pattern 7 (a message says what happened and what was tried).
"""
from __future__ import annotations

from typing import Any

from targets.support.repair.build import engine_version
from targets.support.repair.recipe import describe_float
from targets.support.repair.search import Budget, SearchResult, parity_numbers


def _no_recipe_reason(result: SearchResult) -> str:
    """Why nothing passed, from what was tried."""
    refused = [c for c in result.tried if c.parity is not None and c.parity.get("passed") and c.message]
    if refused:
        return f"{refused[0].recipe.describe()} {refused[0].message}"
    if not result.blame:
        return "no per-layer errors to say which layers to keep in float"
    everything = [
        c for c in result.tried
        if c.parity is not None and set(result.blame) <= set(c.recipe.float_layers) and set(result.blame) <= set(c.recipe.float_weights)
    ]
    if everything:
        c = everything[-1]
        n = parity_numbers(c.parity)
        stays = "the model's inputs" if not c.recipe.float_inputs else "the layers outside the blame list"
        return (
            f"with every blamed layer and its weights in float the file still fails (max_abs {n['max_abs']:.3g}); "
            f"what stays integer ({stays}) is enough to break the budget"
        )
    if result.stopped.startswith(("conversion budget", "time budget")):
        return f"the {result.stopped}; raise repair_conversions / repair_seconds to search further"
    return "every planned recipe was tried"


def search_record(result: SearchResult, entry: dict, budget: Budget, float_content: bytes, variant_bytes: int | None, seconds: float, label: str, target: str) -> dict:
    """The report record of one search; `summary` is the console's sentence."""
    record: dict[str, Any] = {
        "variant": label,
        "target": target,
        "engine": engine_version(),
        "budget": {"conversions": budget.conversions, "seconds": budget.seconds},
        "conversions": len(result.tried),
        "seconds": round(seconds, 2),
        "search_seconds": round(result.seconds, 2),
        "stopped": result.stopped,
        "blame": result.blame,
        "blame_source": result.blame_source,
        "tried": [c.summary() for c in result.tried],
        "sizes": {"float32_bytes": len(float_content), f"{label}_bytes": variant_bytes},
        "variant_parity": parity_numbers(entry.get("parity") or {}),
    }
    if result.coverage:
        record["calibration_coverage"] = result.coverage
    if result.ranking is not None:
        record["ranking"] = result.ranking.to_json()
    if result.findings:
        record["findings"] = result.findings
    chosen = result.chosen
    if chosen is None:
        best = result.best_failed()
        record["found"] = False
        text = f"repair {label}: no recipe found within {len(result.tried)} tries ({result.stopped}, {seconds:.1f} s)"
        if best is not None:
            record["best_candidate"] = best.summary()
            numbers = parity_numbers(best.parity)
            text += f"; best: {best.recipe.describe()}: {'; '.join(numbers['failures'][:2]) or best.message}"
        record["reason"] = _no_recipe_reason(result)
        text += f". Why: {record['reason']}"
        text += "".join(f". Noticed: {f['text']}" for f in result.findings[:1])
        record["summary"] = text
        return record
    numbers = parity_numbers(chosen.parity)
    size = len(chosen.content)
    record.update(
        found=True,
        recipe=chosen.recipe.to_json(),
        float_layers=list(chosen.recipe.float_layers),
        int16_layers=list(chosen.recipe.int16_layers),
        size_bytes=size,
        size_vs_float32=round(size / len(float_content), 3),
        parity=numbers,
        config_snippet="    recipes:\n" + chosen.recipe.as_yaml(),
    )
    if variant_bytes:
        record[f"size_vs_{label}"] = round(size / variant_bytes, 3)
    what = describe_float(chosen.recipe)
    sizes = f"{size} bytes ({record['size_vs_float32']:.2f}x float32" + (f", {record[f'size_vs_{label}']:.2f}x plain {label})" if variant_bytes else ")")
    accuracy = ""
    if numbers.get("top1_agreement") is not None:
        accuracy = f"; top-1 agreement with the float model {numbers['top1_agreement']:.3f}"
        if numbers.get("accuracy") is not None:
            accuracy += f", accuracy {numbers['accuracy']:.3f} (float {numbers['reference_accuracy']:.3f})"
    record["summary"] = (
        f"repair {label}: {chosen.recipe.name} passes parity after {len(result.tried)} tries in {seconds:.1f} s: {what}; {sizes}{accuracy}; worst max_abs {numbers['max_abs']:.3g}"
    )
    if result.findings:
        record["summary"] += f"; noticed: {result.findings[0]['text']}"
    return record
