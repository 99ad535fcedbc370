"""The repair search: recipes tried in a planned order within a budget of conversions
and seconds, each built and verified by the caller's functions, the smallest passing
one kept.

`Search` holds the state of one search (what was tried, why it stopped, what it noticed)
and runs its plan:
0. the quantizer's plain recipe, when the variant did not convert;
1. calibration on the whole pool, when the parity data falls outside the calibrated
   min/max of an input;
2. 16-bit activations for the ranked layers (int8 base): the first two (then each alone
   when they pass), else all of them; not when int8 damages the model's inputs
   (`Ranking.inputs_damaged`), which no 16-bit layer restores;
3. when a layer's constants lose a large share to int8 rounding (`Ranking.weights_damaged`):
   that layer in float with its weights float (inputs float when int8 damages them too),
   before any set of layers is grown;
4. the ranked layers in float (int8 weights), growing 1, 2, 4, ... and bisected back;
   inputs float from the start when int8 damages them, else in a second pass;
5. those layers' weights float too, most weight damage first;
6. layers the passing set does not need dropped.
Every candidate whose float layers are a superset of an earlier one's and whose parity is
worse is recorded as a finding with both sets of figures.

Follows STYLE.md pattern 14 (typed results: `Candidate`, `SearchResult`, each with its
JSON form) and pattern 15 (the plan is data the report shows: the ranking it follows,
every candidate in order). Pure Python: building and verifying are the caller's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from targets.support.repair.build import NothingToQuantize
from targets.support.repair.damage import Ranking
from targets.support.repair.recipe import CALIBRATED_BASES, Recipe


@dataclass
class Candidate:
    recipe: Recipe
    status: str  # passed | failed | error
    seconds: float
    size_bytes: int | None = None
    content: bytes | None = field(default=None, repr=False)
    parity: dict | None = None
    message: str = ""

    def summary(self) -> dict:
        out: dict[str, Any] = {"recipe": self.recipe.to_json(), "status": self.status, "seconds": round(self.seconds, 2)}
        if self.size_bytes is not None:
            out["size_bytes"] = self.size_bytes
        if self.parity is not None:
            out.update(parity_numbers(self.parity))
        if self.message:
            out["message"] = self.message
        return out


def closeness(parity: dict) -> tuple:
    """Orders parity records from closest to passing: fewest failures, best top-1, smallest max_abs."""
    n = parity_numbers(parity)
    return (len(n["failures"]), -(n.get("top1_agreement") or 0.0), n["max_abs"] or 0.0)


def parity_numbers(parity: dict) -> dict:
    """The figures a person compares candidates by: worst max_abs, failures, top-1, accuracy."""
    outputs = parity.get("outputs") or {}
    out: dict[str, Any] = {
        "max_abs": max((m.get("max_abs") or 0.0 for m in outputs.values()), default=None),
        "failures": list(parity.get("failures") or []),
    }
    cls = parity.get("classifier")
    if cls:
        out["top1_agreement"] = cls.get("top1_agreement")
        if "accuracy" in cls:
            out["accuracy"] = cls["accuracy"]
            out["reference_accuracy"] = cls.get("reference_accuracy")
    return out


def figures_text(numbers: dict) -> str:
    """'max_abs 0.12, top-1 0.945' for one candidate's parity numbers."""
    text = f"max_abs {numbers['max_abs']:.3g}" if numbers.get("max_abs") is not None else "max_abs n/a"
    if numbers.get("top1_agreement") is not None:
        text += f", top-1 {numbers['top1_agreement']:.3f}"
    return text


@dataclass(frozen=True)
class Budget:
    conversions: int = 8
    seconds: float = 300.0


@dataclass
class SearchResult:
    variant: str
    tried: list[Candidate]
    chosen: Candidate | None
    seconds: float
    coverage: dict
    blame: list[str]
    blame_source: str
    stopped: str  # why the search ended
    findings: list[dict] = field(default_factory=list)  # what the search noticed, e.g. a superset that scored worse
    ranking: Ranking | None = None

    def best_failed(self) -> Candidate | None:
        """The failed candidate closest to passing: fewest failures, then best top-1, then smallest max_abs."""
        failed = [c for c in self.tried if c.status == "failed" and c.parity is not None]
        return min(failed, key=lambda c: closeness(c.parity)) if failed else None


def _smallest(c: Candidate) -> tuple:
    return (len(c.recipe.float_layers), c.recipe.float_inputs, c.size_bytes or 0, len(c.recipe.int16_layers))


def _key(recipe: Recipe) -> tuple:
    return (recipe.base, frozenset(recipe.float_layers), frozenset(recipe.float_weights), frozenset(recipe.int16_layers), recipe.float_inputs, recipe.calibration_samples)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


class Search:
    """One search's state: the candidates tried (in order), the keys already built, why it
    stopped, and its findings. `attempt()` is the only way a candidate gets built."""

    def __init__(self, variant: str, build: Callable[[Recipe], bytes], verify: Callable[[Recipe, bytes], dict], budget: Budget,
                 log: Callable[[str], None] = lambda line: None, refuse: Callable[[bytes], str] | None = None):
        self.variant, self.build, self.verify, self.budget, self.log, self.refuse = variant, build, verify, budget, log, refuse
        self.start = time.perf_counter()
        self.tried: list[Candidate] = []
        self.seen: set[tuple] = set()
        self.stopped = ""
        self.findings: list[dict] = []

    def out_of_budget(self) -> str:
        if len(self.tried) >= self.budget.conversions:
            return f"conversion budget spent ({self.budget.conversions})"
        if time.perf_counter() - self.start >= self.budget.seconds:
            return f"time budget spent ({self.budget.seconds:g} s)"
        return ""

    def attempt(self, recipe: Recipe) -> Candidate | None:
        """Build and verify `recipe` (once: a recipe tried before returns its candidate);
        None when the budget is spent or the recipe is the float32 model."""
        key = _key(recipe)
        if key in self.seen:
            return next(c for c in self.tried if _key(c.recipe) == key)
        self.stopped = self.stopped or self.out_of_budget()
        if self.stopped:
            return None
        t0 = time.perf_counter()
        try:
            content = self.build(recipe)
        except NothingToQuantize:
            return None
        except Exception as exc:  # a recipe the quantizer refuses is a tried, failed candidate
            cand = Candidate(recipe, "error", time.perf_counter() - t0, message=_first_line(exc))
        else:
            try:
                parity = self.verify(recipe, content)
            except Exception as exc:  # the runtime refused the file (e.g. a kernel it cannot prepare)
                cand = Candidate(recipe, "error", time.perf_counter() - t0, len(content), message=_first_line(exc))
            else:
                why = self.refuse(content) if self.refuse is not None and parity["passed"] else ""
                cand = Candidate(recipe, "passed" if parity["passed"] and not why else "failed", time.perf_counter() - t0, len(content), content, parity, why)
        self.seen.add(key)
        self.tried.append(cand)
        detail = "; ".join(part for part in (figures_text(parity_numbers(cand.parity)) if cand.parity else "", cand.message) if part)
        self.log(f"repair {self.variant} #{len(self.tried)}: {recipe.describe()}: {cand.status} ({detail})")
        self._question_supersets(cand)
        return cand

    def _question_supersets(self, cand: Candidate) -> None:
        """Record (and log) when more float layers scored worse than fewer: the closest-scoring
        earlier candidate whose float layers are a strict subset, all else equal."""
        if cand.parity is None or not cand.recipe.float_layers:
            return
        r = cand.recipe
        subsets = [
            c for c in self.tried[:-1]
            if c.parity is not None and (c.recipe.base, c.recipe.int16_layers, c.recipe.float_inputs, c.recipe.calibration_samples)
            == (r.base, r.int16_layers, r.float_inputs, r.calibration_samples)
            and set(c.recipe.float_layers) < set(r.float_layers) and set(c.recipe.float_weights) <= set(r.float_weights)
            and closeness(c.parity) < closeness(cand.parity)
        ]
        if not subsets:
            return
        best = min(subsets, key=lambda c: closeness(c.parity))
        added = [x for x in r.float_layers if x not in best.recipe.float_layers]
        before, after = parity_numbers(best.parity), parity_numbers(cand.parity)
        finding = {
            "kind": "superset_worse",
            "subset": best.summary()["recipe"],
            "superset": cand.summary()["recipe"],
            "added_float_layers": added,
            "subset_parity": {k: before.get(k) for k in ("max_abs", "top1_agreement") if before.get(k) is not None} | {"failures": len(before["failures"])},
            "superset_parity": {k: after.get(k) for k in ("max_abs", "top1_agreement") if after.get(k) is not None} | {"failures": len(after["failures"])},
            "tries": [self.tried.index(best) + 1, len(self.tried)],
            "text": (
                f"adding {', '.join(added)} to the float layers made parity worse: {figures_text(before)} with "
                f"{len(best.recipe.float_layers)} float layer(s) (try #{self.tried.index(best) + 1}), {figures_text(after)} with "
                f"{len(r.float_layers)} (try #{len(self.tried)}). A float layer hands its output back to int8 at a boundary the "
                f"smaller set did not have, whose range comes from calibration; or one of {', '.join(added)} does better in int8"
            ),
        }
        self.findings.append(finding)
        self.log(f"repair {self.variant} #{len(self.tried)}: {finding['text']}")

    def passing(self) -> list[Candidate]:
        return sorted((c for c in self.tried if c.status == "passed"), key=_smallest)

    def grow(self, order: list[str], make: Callable[[int], Recipe], start: int) -> Recipe | None:
        """Try make(k) for k = start, 2*start, ... len(order) until one passes, then bisect
        down to the smallest passing k. Returns that recipe, or None."""
        lo, k, hi = 0, max(1, min(start, len(order))), None
        while True:
            cand = self.attempt(make(k))
            if cand is None:
                return None
            if cand.status == "passed":
                hi = k
                break
            lo = k
            if k == len(order):
                return None
            k = min(2 * k, len(order))
        while hi - lo > 1:
            mid = (lo + hi) // 2
            cand = self.attempt(make(mid))
            if cand is None:
                break
            if cand.status == "passed":
                hi = mid
            else:
                lo = mid
        return make(hi)

    def prune(self, passed: Recipe) -> None:
        """Drop float layers the passing recipe does not need, least ranked first."""
        best = passed
        for layer in reversed(list(best.float_layers)):
            if len(best.float_layers) == 1:
                break
            trial = replace(best, float_layers=tuple(x for x in best.float_layers if x != layer), float_weights=tuple(x for x in best.float_weights if x != layer))
            cand = self.attempt(trial)
            if cand is None:
                break
            if cand.status == "passed":
                best = trial

    def run(self, name: str, ranking: Ranking, cover: dict, calibrated: int, pool_samples: int, baseline: dict,
            allow_int16: bool = True, allow_float_inputs: bool = True) -> SearchResult:
        variant, blame = self.variant, list(ranking.layers)
        samples = 0
        # 0. The variant did not convert (no parity to start from): the quantizer's own plain
        #    recipe first, which leaves ops it cannot quantize this way in float.
        if not baseline.get("outputs"):
            self.attempt(Recipe(name, variant))
        # 1. Calibration that covers the parity data.
        short = [n for n, c in cover.items() if c["outside_share"] > 0]
        if variant in CALIBRATED_BASES and short and pool_samples > calibrated:
            cand = self.attempt(Recipe(name, variant, calibration_samples=pool_samples))
            if cand is not None and cand.parity is not None and closeness(cand.parity) <= closeness(baseline):
                samples = pool_samples  # the wider ranges helped (or did no harm): later candidates calibrate on them too
        inputs_first = bool(ranking.inputs_damaged) and allow_float_inputs and variant in CALIBRATED_BASES
        # 2. 16-bit activations for the ranked layers only: no layer leaves the integer
        #    path. Not when int8 damages the inputs themselves: 16-bit layers cannot restore
        #    what the model's int8 inputs lost before the first layer.
        if not self.passing() and allow_int16 and variant == "int8" and blame and not inputs_first:
            cand = None
            for k in sorted({min(2, len(blame)), len(blame)}):
                cand = self.attempt(Recipe(name, "int8", int16_layers=tuple(blame[:k]), calibration_samples=samples))
                if cand is None or cand.status == "passed":
                    break
            if cand is not None and cand.status == "passed" and len(cand.recipe.int16_layers) == 2:
                for layer in blame[:2]:  # is one enough? either of the two (the sources may disagree on which leads)
                    one = self.attempt(Recipe(name, "int8", int16_layers=(layer,), calibration_samples=samples))
                    if one is None or one.status == "passed":
                        break
        # 3. The worst-damaged weights, float with their layer (inputs float when int8
        #    damages them too), before any set of layers is grown.
        if not self.passing() and ranking.weights_damaged:
            worst = ranking.weights_damaged[0]
            self.attempt(Recipe(name, variant, float_layers=(worst,), float_weights=(worst,), float_inputs=inputs_first, calibration_samples=samples))
        # 4.-6. Ranked layers with float activations (int8 weights), growing worst first, then
        #    bisected to the fewest; when all of them still fail, the inputs float too (from
        #    the start when int8 damages them), then the layers' weights float, most weight
        #    damage first; then layers the passing set does not need are dropped.
        passed = next((c.recipe for c in self.passing() if c.recipe.float_layers), None)
        if blame and not any(not c.recipe.float_layers for c in self.passing()) and passed is None:
            passes = (True,) if inputs_first else (False, True) if allow_float_inputs and variant in CALIBRATED_BASES else (False,)
            fi = passes[0]
            for fi in passes:

                def make(layers, float_weights=(), fi=fi):
                    return Recipe(name, variant, float_layers=tuple(layers), float_weights=tuple(float_weights), float_inputs=fi, calibration_samples=samples)

                passed = self.grow(blame, lambda k: make(blame[:k]), start=len(blame) if fi and not inputs_first else 1)
                if passed is not None:
                    break
            if passed is None and not self.stopped:
                by_weights = list(ranking.by_weights) + [x for x in blame if x not in ranking.by_weights]
                passed = self.grow(by_weights, lambda k: make(blame, by_weights[:k]), start=1)
        if passed is not None:
            self.prune(passed)
        if not self.stopped:
            self.stopped = "a passing recipe was found" if self.passing() else "every planned recipe was tried"
        found = self.passing()
        return SearchResult(variant, self.tried, found[0] if found else None, time.perf_counter() - self.start, cover, blame,
                            ranking.source, self.stopped, self.findings, ranking)


def search(
    variant: str,
    name: str,
    build: Callable[[Recipe], bytes],
    verify: Callable[[Recipe, bytes], dict],
    blame: list[str] | Ranking,
    blame_source: str,
    cover: dict,
    calibrated: int,
    pool_samples: int,
    budget: Budget,
    baseline: dict,
    log: Callable[[str], None] = lambda line: None,
    allow_int16: bool = True,
    allow_float_inputs: bool = True,
    weight_damage: dict[str, float] | None = None,
    refuse: Callable[[bytes], str] | None = None,
) -> SearchResult:
    """Try recipes for `variant` until one passes and cannot be made smaller, or the budget ends.

    `build(recipe)` returns the flatbuffer (raising on a conversion failure);
    `verify(recipe, content)` returns the parity record, computed exactly as for the variant;
    `blame` is a `Ranking`, or a plain list of layers worst first (then `weight_damage`,
    {layer: share of its weights int8 rounds to zero}, orders float weights);
    `baseline` is the variant's own parity record. `allow_int16` / `allow_float_inputs`
    say whether the deployment can take 16-bit activations and float inputs (an Edge TPU
    cannot). `refuse(content)` names why a file that passes parity still cannot ship on
    the deployment ("" when it can).
    """
    if isinstance(blame, Ranking):
        ranking = blame
    else:
        figures = {layer: {"weights_zeroed": share} for layer, share in (weight_damage or {}).items() if layer in blame}
        ranking = Ranking(tuple(blame), blame_source, figures)
    return Search(variant, build, verify, budget, log, refuse).run(name, ranking, cover, calibrated, pool_samples, baseline, allow_int16, allow_float_inputs)
