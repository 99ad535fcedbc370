"""Quantization repair: when a quantized TFLite variant fails parity, search for a
recipe that passes, verifying every candidate with the same parity as the variant.

A `Recipe` is what the search finds and what the config reproduces (the tflite
target's `recipes:` list): a base scheme (`int8`, `int16x8` or `dynamic_range`),
the layers kept in float, the layers given 16-bit activations, and how many
calibration samples to use. `build_recipe()` turns a float32 flatbuffer into the
quantized one with ai-edge-quantizer (per-op recipes selected by regex over the
ops' output tensor names), so the search and the config build the same bytes.

`search()` tries, in order and within a budget of conversions and seconds:
1. more calibration samples, when the parity data falls outside the calibrated
   min/max of an input (`coverage()` measures the share per input);
2. 16-bit activations for the blamed layers only (int8 base);
3. the blamed layers in float, worst first, growing the set until parity holds,
   then dropping layers the passing set does not need.
The smallest passing recipe (fewest float layers, then smallest file) wins.
Nothing here imports TensorFlow at module import time.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Literal

import numpy as np

BASES = ("int8", "int16x8", "dynamic_range")
CALIBRATED_BASES = ("int8", "int16x8")
ENGINE = "ai-edge-quantizer"


@dataclass(frozen=True)
class Recipe:
    """One quantization recipe, published as its own variant (`name`)."""

    name: str  # the variant it is published as, e.g. int8_repaired
    base: Literal["int8", "int16x8", "dynamic_range"] = "int8"
    float_layers: tuple[str, ...] = ()  # layers computed in float (their weights stay int8 where they have any)
    float_weights: tuple[str, ...] = ()  # of those, layers whose weights stay float too
    int16_layers: tuple[str, ...] = ()  # layers with 16-bit activations (int8 base only)
    float_inputs: bool = False  # model inputs stay float (quantized inside the model)
    calibration_samples: int = 0  # 0: the target's `calibration_samples`

    def describe(self) -> str:
        parts = [self.base]
        if self.float_layers:
            parts.append(f"float: {', '.join(self.float_layers)}")
        if self.float_weights:
            parts.append(f"float weights: {', '.join(self.float_weights)}")
        if self.int16_layers:
            parts.append(f"int16 activations: {', '.join(self.int16_layers)}")
        if self.float_inputs:
            parts.append("float inputs")
        if self.calibration_samples:
            parts.append(f"calibrated on {self.calibration_samples} samples")
        return "; ".join(parts)

    def as_yaml(self, indent: str = "      ") -> str:
        """The `recipes:` list item that reproduces this recipe."""

        def items(values):
            return "[" + ", ".join(_yaml_str(v) for v in values) + "]"

        lines = [f"- name: {self.name}", f"  base: {self.base}"]
        if self.float_layers:
            lines.append(f"  float_layers: {items(self.float_layers)}")
        if self.float_weights:
            lines.append(f"  float_weights: {items(self.float_weights)}")
        if self.int16_layers:
            lines.append(f"  int16_layers: {items(self.int16_layers)}")
        if self.float_inputs:
            lines.append("  float_inputs: true")
        if self.calibration_samples:
            lines.append(f"  calibration_samples: {self.calibration_samples}")
        return "\n".join(indent + line for line in lines)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "base": self.base,
            "float_layers": list(self.float_layers),
            "float_weights": list(self.float_weights),
            "int16_layers": list(self.int16_layers),
            "float_inputs": self.float_inputs,
            "calibration_samples": self.calibration_samples,
        }


def _yaml_str(value: str) -> str:
    return value if re.fullmatch(r"[A-Za-z_][\w.\-/]*", value) else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_recipe(recipe: Recipe, variants: Iterable[str], data_samples: int | None) -> list[tuple[str, str]]:
    """Problems with one `recipes:` item, as (key, message), in pure Python."""
    problems = []
    if not re.fullmatch(r"[A-Za-z][\w\-]*", recipe.name):
        problems.append(("name", f"'{recipe.name}' is not a usable variant name (letters, digits, '_' and '-')"))
    if recipe.name in tuple(variants) or recipe.name in ("float32", "float16") + BASES:
        problems.append(("name", f"'{recipe.name}' is already a variant name; name the recipe e.g. '{recipe.base}_repaired'"))
    if recipe.int16_layers and recipe.base != "int8":
        problems.append(("int16_layers", f"16-bit activations for chosen layers apply to the int8 base, not {recipe.base}"))
    stray = [x for x in recipe.float_weights if x not in recipe.float_layers]
    if stray:
        problems.append(("float_weights", f"layer(s) {', '.join(stray)} must be in float_layers too (float weights, float activations)"))
    overlap = sorted(set(recipe.float_layers) & set(recipe.int16_layers))
    if overlap:
        problems.append(("int16_layers", f"layer(s) {', '.join(overlap)} are listed in float_layers too"))
    if recipe.calibration_samples < 0:
        problems.append(("calibration_samples", "expected a positive number of samples (or 0 for the target's)"))
    if recipe.calibration_samples and recipe.base == "dynamic_range":
        problems.append(("calibration_samples", "dynamic_range is not calibrated; remove this key"))
    if data_samples is not None and recipe.calibration_samples > data_samples:
        problems.append(("calibration_samples", f"{recipe.calibration_samples} samples but `data.samples` is {data_samples}"))
    return problems


# --------------------------------------------------------------------------- building


def layer_ops(float_content: bytes, layer_names: Iterable[str]) -> dict[str, list[str]]:
    """{layer: output tensor names of its ops} over the float model's main subgraph.

    An op belongs to the deepest layer scope in its output names (`model_1/hidden_1/MatMul;...`,
    Keras 3 adds `_1`; fused ops join names with ';'); an op whose outputs name no layer (a fused activation emitted as
    its own op, e.g. a softmax writing the signature output) belongs to the layer that
    feeds it. Without Keras layer names, each op is its own entry, keyed by its output.
    """
    from targets.support.litert import layer_of, read_model

    layer_names = list(layer_names)
    graph = read_model(float_content).subgraphs[0]

    def name_of(t: int) -> str:
        name = graph.tensors[t].name
        return name.decode() if isinstance(name, bytes) else str(name)

    owner: dict[int, str] = {}  # tensor index -> layer
    out: dict[str, list[str]] = {}
    for op in graph.operators or []:
        outputs = [t for t in (op.outputs if op.outputs is not None else []) if t >= 0]
        names = [name_of(t) for t in outputs]
        layer = next((found for n in names for part in n.split(";") if (found := layer_of(part + "/x", layer_names))), None)
        if layer is None and layer_names:
            layer = next((owner[t] for t in (op.inputs if op.inputs is not None else []) if t in owner), None)
        if layer is None:
            if layer_names:
                continue  # an op before any layer (e.g. an input cast): not selectable
            layer = names[0] if names else ""
        for t in outputs:
            owner[t] = layer
        out.setdefault(layer, []).extend(names)
    return out


def ops_regex(tensor_names: list[str]) -> str:
    """Regex selecting exactly these ops: ai-edge-quantizer matches an op by its scope,
    the op's output tensor names each followed by ';'."""
    return "^(?:(?:" + "|".join(re.escape(n) for n in tensor_names) + ");)+$"


def layers_in_model(layers: Iterable[str], selectable: dict[str, list[str]]) -> list[str]:
    """The layers a recipe can select: those owning an op of the float model."""
    return [layer for layer in layers if selectable.get(layer)]


class NothingToQuantize(ValueError):
    """The recipe keeps every layer, weight and input in float: that is the float32 variant."""


def build_recipe(float_content: bytes, recipe: Recipe, calibration: list[dict[str, np.ndarray]], selectable: dict[str, list[str]]) -> bytes:
    """Quantize the float32 flatbuffer by `recipe`; `calibration` is one dict per sample;
    `selectable` is `layer_ops()` of the same flatbuffer."""
    if recipe.float_inputs and set(selectable) <= set(recipe.float_weights):
        raise NothingToQuantize(f"{recipe.name}: every layer, weight and input in float is the float32 model")
    from ai_edge_quantizer import quantizer
    from ai_edge_quantizer import recipe as recipes

    base = {"int8": recipes.static_wi8_ai8, "int16x8": recipes.static_wi8_ai16, "dynamic_range": recipes.dynamic_wi8_afp32}[recipe.base]
    q = quantizer.Quantizer(bytearray(float_content))
    q.load_quantization_recipe(base())
    for layer in recipe.int16_layers:
        q.add_static_config(regex=ops_regex(selectable[layer]), operation_name="*", activation_num_bits=16, weight_num_bits=8)
    for layer in recipe.float_layers:
        # Float activations; the ops with weights keep them in int8 (weight-only: dequantized
        # once, computed in float). Ops where weight-only does not apply keep no_quantize.
        q.update_quantization_recipe(regex=ops_regex(selectable[layer]), operation_name="*", algorithm_key="no_quantize")
        if layer not in recipe.float_weights:
            q.add_weight_only_config(regex=ops_regex(selectable[layer]), operation_name="*", num_bits=8)
    if recipe.float_inputs:  # the model's inputs form one virtual INPUT op
        q.update_quantization_recipe(regex=".*", operation_name="INPUT", algorithm_key="no_quantize")
    calibrated = _calibrate(float_content, q.get_quantization_recipe(), calibration) if q.need_calibration else None
    return bytes(q.quantize(calibrated, enable_progress_report=False).quantized_model)


def _widen(qsv: dict, new: dict) -> dict:
    """Running min/max over every calibration sample, as the TFLite converter calibrates."""
    if not qsv:
        return new
    return {**new, "min": np.minimum(qsv["min"], new["min"]), "max": np.maximum(qsv["max"], new["max"])}


def _calibrate(float_content: bytes, recipe: list, calibration: list[dict[str, np.ndarray]]) -> dict:
    """Tensor ranges for the recipe. ai-edge-quantizer's own `calibrate` keeps a moving
    average of per-sample min/max, which on one-sample batches stays well inside the
    data's range (measured: int8 input range +-1.8 for N(0, 1) data whose calibrated
    extremes are +-3.3) and clips what the converter would not; the running min/max
    keeps the converter's semantics."""
    from ai_edge_quantizer import calibrator, recipe_manager

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe)
    calib = calibrator.Calibrator(bytearray(float_content), num_threads=1, qsv_update_func=_widen)
    calib.calibrate({"serving_default": calibration}, manager)
    return calib.get_model_qsvs()


def calibration_samples(pool: dict[str, np.ndarray], specs, n: int) -> list[dict[str, np.ndarray]]:
    """The first `n` pool samples, one dict per sample with a batch of one (the signature's dtypes)."""
    return [{s.name: np.asarray(pool[s.name][i : i + 1]).astype(s.dtype) for s in specs} for i in range(n)]


# --------------------------------------------------------------------------- coverage


def coverage(pool: dict[str, np.ndarray], calibrated: int) -> dict[str, dict]:
    """Per float input: the share of parity values outside the calibrated min/max.

    Calibration draws the first `calibrated` samples of the pool; parity runs on all of it.
    """
    out = {}
    for name, values in pool.items():
        values = np.asarray(values)
        if not np.issubdtype(values.dtype, np.floating) or len(values) == 0:
            continue
        seen = values[:calibrated]
        low, high = float(np.min(seen)), float(np.max(seen))
        outside = float(np.mean((values < low) | (values > high)))
        out[name] = {
            "calibrated_samples": int(min(calibrated, len(values))),
            "calibrated_min": low,
            "calibrated_max": high,
            "parity_min": float(np.min(values)),
            "parity_max": float(np.max(values)),
            "outside_share": round(outside, 6),
        }
    return out


# --------------------------------------------------------------------------- blame


def blame_from_debugger(rows: list[dict]) -> list[str]:
    """Layers ordered worst first from QuantizationDebugger rows (sorted by RMSE/scale).

    A tensor whose step swallows most non-zero values (rounded_to_zero) is damaged even
    when its RMSE/scale is low, so those rows lead; fixed-scale softmax/logistic outputs
    round small probabilities to zero by design and do not lead on that count.
    """

    def swallowed(r):
        return r.get("rounded_to_zero", 0) > 0.5 and r.get("op") not in ("SOFTMAX", "LOGISTIC")

    ordered = sorted(rows, key=lambda r: (not swallowed(r), -(r.get("rmse_over_scale") or 0)))
    layers = []
    for r in ordered:
        if r["layer"] not in layers:
            layers.append(r["layer"])
    return layers


def weight_damage(model, layers: Iterable[str]) -> dict[str, float]:
    """{layer: share of its kernel's non-zero weights that per-channel symmetric int8
    rounds to zero}: a layer whose channels mix large and tiny weights loses the tiny
    ones (e.g. weights scaled down to compensate an activation outlier)."""
    wanted = set(layers)
    out: dict[str, float] = {}
    stack = [model]
    while stack:
        item = stack.pop()
        for layer in getattr(item, "layers", None) or []:
            stack.append(layer)
            if layer.name not in wanted:
                continue
            kernels = [np.asarray(w) for w in layer.get_weights() if np.ndim(w) >= 2]
            if not kernels:
                continue
            w = kernels[0].reshape(-1, kernels[0].shape[-1])
            scale = np.abs(w).max(axis=0) / 127.0
            nonzero = w != 0
            zeroed = nonzero & (np.abs(w) < scale / 2)
            out[layer.name] = float(zeroed.sum() / max(nonzero.sum(), 1))
    return out


def blame_from_localization(localization: dict) -> list[str]:
    """Layers ordered worst first from a per-layer localization table: the first layer
    over the budget leads (where the error starts), then where the relative error grows
    most over its predecessor."""
    rows = sorted(localization.get("layers") or [], key=lambda r: r.get("index", 0))
    first = localization.get("first_over_budget")
    growth, previous = ([(float("inf"), first)] if first else []), 0.0
    for r in rows:
        rel = r.get("rel_error")
        if rel is None or not np.isfinite(rel):
            continue
        growth.append((rel - previous, r["layer"]))
        previous = rel
    layers = []
    for _, layer in sorted(growth, key=lambda g: -g[0]):
        if layer not in layers:
            layers.append(layer)
    return layers


# --------------------------------------------------------------------------- search


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

    def best_failed(self) -> Candidate | None:
        """The failed candidate closest to passing: fewest failures, then best top-1, then smallest max_abs."""
        failed = [c for c in self.tried if c.status == "failed" and c.parity is not None]
        return min(failed, key=lambda c: closeness(c.parity)) if failed else None


def _rank(c: Candidate) -> tuple:
    return (len(c.recipe.float_layers), c.recipe.float_inputs, c.size_bytes or 0, len(c.recipe.int16_layers))


def _grow(blame: list[str], make: Callable[[int], "Recipe"], attempt, start: int) -> "Recipe | None":
    """Try make(k) for k = start, 2*start, ... len(blame) until one passes, then bisect
    down to the smallest passing k. Returns that recipe, or None."""
    lo, k, hi = 0, max(1, min(start, len(blame))), None
    while True:
        cand = attempt(make(k))
        if cand is None:
            return None
        if cand.status == "passed":
            hi = k
            break
        lo = k
        if k == len(blame):
            return None
        k = min(2 * k, len(blame))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        cand = attempt(make(mid))
        if cand is None:
            break
        if cand.status == "passed":
            hi = mid
        else:
            lo = mid
    return make(hi)


def _key(recipe: Recipe) -> tuple:
    return (recipe.base, frozenset(recipe.float_layers), frozenset(recipe.float_weights), frozenset(recipe.int16_layers), recipe.float_inputs, recipe.calibration_samples)


def search(
    variant: str,
    name: str,
    build: Callable[[Recipe], bytes],
    verify: Callable[[Recipe, bytes], dict],
    blame: list[str],
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
    `baseline` is the variant's own parity record. `allow_int16` / `allow_float_inputs`
    say whether the deployment can take 16-bit activations and float inputs (an Edge TPU
    cannot). `weight_damage` ({layer: share of its weights int8 rounds to zero}) orders
    which blamed layers get float weights first. `refuse(content)` names why a file that
    passes parity still cannot ship on the deployment ("" when it can).
    """
    start = time.perf_counter()
    tried: list[Candidate] = []
    seen: set[tuple] = set()
    stopped = ""

    def out_of_budget() -> str:
        if len(tried) >= budget.conversions:
            return f"conversion budget spent ({budget.conversions})"
        if time.perf_counter() - start >= budget.seconds:
            return f"time budget spent ({budget.seconds:g} s)"
        return ""

    def attempt(recipe: Recipe) -> Candidate | None:
        nonlocal stopped
        key = _key(recipe)
        if key in seen:
            return next(c for c in tried if _key(c.recipe) == key)
        stopped = stopped or out_of_budget()
        if stopped:
            return None
        t0 = time.perf_counter()
        try:
            content = build(recipe)
        except NothingToQuantize:
            return None
        except Exception as exc:  # a recipe the quantizer refuses is a tried, failed candidate
            seen.add(key)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            cand = Candidate(recipe, "error", time.perf_counter() - t0, message=f"{type(exc).__name__}: {first}"[:300])
        else:
            seen.add(key)
            try:
                parity = verify(recipe, content)
            except Exception as exc:  # the runtime refused the file (e.g. a kernel it cannot prepare)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                cand = Candidate(recipe, "error", time.perf_counter() - t0, len(content), message=f"{type(exc).__name__}: {first}"[:300])
            else:
                why = refuse(content) if refuse is not None and parity["passed"] else ""
                cand = Candidate(recipe, "passed" if parity["passed"] and not why else "failed", time.perf_counter() - t0, len(content), content, parity, why)
        tried.append(cand)
        numbers = parity_numbers(cand.parity) if cand.parity else {}
        detail = "; ".join(
            part
            for part in (
                f"max_abs {numbers['max_abs']:.3g}" + (f", top-1 {numbers['top1_agreement']:.3f}" if numbers.get("top1_agreement") is not None else "") if numbers else "",
                cand.message,
            )
            if part
        )
        log(f"repair {variant} #{len(tried)}: {recipe.describe()}: {cand.status} ({detail})")
        return cand

    def passing() -> list[Candidate]:
        return sorted((c for c in tried if c.status == "passed"), key=_rank)

    def passing_without_float_layers() -> bool:
        return any(c.status == "passed" and not c.recipe.float_layers for c in tried)

    samples = 0
    # 0. The variant did not convert (no parity to start from): the quantizer's own plain
    #    recipe first, which leaves ops it cannot quantize this way in float.
    if not baseline.get("outputs"):
        attempt(Recipe(name, variant))
    # 1. Calibration that covers the parity data.
    short = [n for n, c in cover.items() if c["outside_share"] > 0]
    if variant in CALIBRATED_BASES and short and pool_samples > calibrated:
        cand = attempt(Recipe(name, variant, calibration_samples=pool_samples))
        if cand is not None and cand.parity is not None and closeness(cand.parity) <= closeness(baseline):
            samples = pool_samples  # the wider ranges helped (or did no harm): later candidates calibrate on them too
    # 2. 16-bit activations for the blamed layers only.
    if not passing() and allow_int16 and variant == "int8" and blame:
        cand = None
        for k in sorted({min(2, len(blame)), len(blame)}):
            cand = attempt(Recipe(name, "int8", int16_layers=tuple(blame[:k]), calibration_samples=samples))
            if cand is None or cand.status == "passed":
                break
        if cand is not None and cand.status == "passed" and len(cand.recipe.int16_layers) == 2:
            attempt(Recipe(name, "int8", int16_layers=tuple(blame[:1]), calibration_samples=samples))  # is one enough?
    # 3. Blamed layers with float activations (int8 weights), growing worst first
    #    (1, 2, 4, ... all), then bisected to the fewest and pruned. When all of them
    #    still fail, the inputs' own rounding is tried off, then the layers' weights
    #    go float too, worst first.
    if blame and not passing_without_float_layers():
        passed = None
        for float_inputs in ((False, True) if allow_float_inputs and variant in CALIBRATED_BASES else (False,)):

            def make(layers, float_weights=(), fi=float_inputs):
                return Recipe(name, variant, float_layers=tuple(layers), float_weights=tuple(float_weights), float_inputs=fi, calibration_samples=samples)

            passed = _grow(blame, lambda k: make(blame[:k]), attempt, start=len(blame) if float_inputs else 1)
            if passed is not None:
                break
        if passed is None and not stopped:
            by_weights = sorted(blame, key=lambda layer: -(weight_damage or {}).get(layer, 0.0))
            passed = _grow(by_weights, lambda k: make(blame, by_weights[:k]), attempt, start=1)
        if passed is not None:  # drop layers the passing set does not need, least blamed first
            best = passed
            for layer in reversed(list(best.float_layers)):
                if len(best.float_layers) == 1:
                    break
                trial = replace(best, float_layers=tuple(x for x in best.float_layers if x != layer), float_weights=tuple(x for x in best.float_weights if x != layer))
                cand = attempt(trial)
                if cand is None:
                    break
                if cand.status == "passed":
                    best = trial
    if not stopped:
        stopped = "a passing recipe was found" if passing() else "every planned recipe was tried"
    found = passing()
    return SearchResult(variant, tried, found[0] if found else None, time.perf_counter() - start, cover, blame, blame_source, stopped)


# --------------------------------------------------------------------------- the tflite target's side


def engine_version() -> str:
    from importlib import metadata

    try:
        return f"{ENGINE} {metadata.version(ENGINE)}"
    except metadata.PackageNotFoundError:
        return f"{ENGINE} (not installed)"


def float_flatbuffer(job, built: dict | None = None, saved_model_dir=None) -> bytes:
    """The float32 flatbuffer every recipe starts from: the float32 variant's file when it
    was built in this run, else one conversion of the SavedModel (`saved_model_dir`, by
    default the run's canonical one)."""
    from targets.support import litert

    path = job.out_dir / "float32.tflite"
    if built and "float32" in built and path.is_file():
        return path.read_bytes()
    source = saved_model_dir or job.saved_model_dir
    content, _ = litert.convert(source, litert.Conversion(variant="float32"), None, litert.keras_layer_names(job.loaded.obj), job.model.input_names)
    return content


def _recipe_artifact(job, recipe: Recipe, content: bytes, file: str, tolerance, seconds: float, calibrated: int):
    from pipeline.target import Artifact
    from targets.support import litert

    (job.out_dir / file).write_bytes(content)
    ops = litert.list_ops(content)
    from pipeline.runtimes.litert import LiteRTRunner, io_quantization

    runner = LiteRTRunner(job.out_dir / file, job.model.output_names)  # reads details; runs nothing
    info = {
        "size_bytes": len(content),
        "conversion_seconds": round(seconds, 2),
        "ops": litert.op_counts(ops),
        "flex_ops": litert.flex_ops(ops),
        "outputs": list(job.model.output_names),
        "quantization": io_quantization(runner, job.model.input_names),
        "recipe": recipe.to_json(),
        "quantizer": engine_version(),
    }
    if recipe.base in CALIBRATED_BASES:
        info["calibration_samples"] = calibrated
    return Artifact(variant=recipe.name, files=(file,), tolerance=tolerance, info=info)


def build_recipe_variants(job, recipes, calibrated: int, float_content: bytes, tolerances: dict, target: str = "tflite") -> list:
    """A target's `recipes:`, each built from `float_content` into `<name>.tflite`."""
    from pipeline.errors import ConversionError
    from targets.support import litert

    selectable = layer_ops(float_content, litert.keras_layer_names(job.loaded.obj))
    out = []
    for recipe in recipes:
        n = recipe.calibration_samples or calibrated
        if recipe.base in CALIBRATED_BASES:
            litert.check_calibration(job.model.inputs, job.calibration, n, f"model '{job.model.name}', {target} recipe {recipe.name} calibration")
        t0 = time.perf_counter()
        missing = [layer for layer in recipe.float_layers + recipe.int16_layers if not selectable.get(layer)]
        if missing:
            raise ConversionError(
                f"{target} recipe {recipe.name}: no op of the model belongs to {', '.join(repr(m) for m in missing)}; "
                f"name Keras layers of this model in float_layers / int16_layers (these have ops: {', '.join(selectable)})"
            )
        try:
            content = build_recipe(float_content, recipe, calibration_samples(job.calibration, job.model.inputs, n), selectable)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConversionError(f"{target} recipe {recipe.name} ({recipe.describe()}): {ENGINE} failed: {first}") from exc
        out.append(_recipe_artifact(job, recipe, content, f"{recipe.name}.tflite", tolerances[recipe.base], time.perf_counter() - t0, n))
    return out


def _blame(job, calibrated: int, label: str, entry: dict, names: dict[str, list[str]], log) -> tuple[list[str], str]:
    """Layers worst first, from the per-layer localization table when the run made one,
    else from QuantizationDebugger (int8 errors of the same calibration)."""
    from targets.support import litert

    localization = entry.get("localization")
    if isinstance(localization, dict) and localization.get("layers"):
        layers = layers_in_model(blame_from_localization(localization), names)
        if layers:
            return layers, "localization (relative error growth per layer)"
    samples = min(calibrated, min(len(v) for v in job.calibration.values()))
    representative = litert.representative_dataset(job.calibration, job.model.inputs, samples)
    try:
        table = litert.debug_quantization(
            job.saved_model_dir, litert.Conversion(variant="int8", io="float32"), representative, job.model.input_names,
            litert.keras_layer_names(job.loaded.obj), top=10**9,
        )
    except Exception as exc:  # without per-layer errors the search falls back to model order
        log(f"{label}: repair: QuantizationDebugger could not run ({type(exc).__name__}); trying layers in model order")
        return layers_in_model(litert.keras_layer_names(job.loaded.obj)[::-1], names), "model order, output side first (no per-layer errors)"
    return layers_in_model(blame_from_debugger(table["worst_layers"]), names), "QuantizationDebugger (int8 RMSE/scale and rounded_to_zero per layer)"


def repair_tflite(job, options, artifact, entry: dict, verify, log, tolerances: dict) -> tuple[list, dict]:
    """Search recipes for a failed tflite variant; publish the winner as `<variant>_repaired`."""
    variant = artifact.variant
    float_content = float_flatbuffer(job, {"float32": True} if "float32" in options.variants else None)
    repaired, record = repair_variant(
        job, artifact, entry, verify, log,
        base=variant, name=f"{variant}_repaired", float_content=float_content,
        calibrated=options.calibration_samples, budget=Budget(options.repair_conversions, options.repair_seconds),
        tolerance=tolerances[variant], target="tflite",
    )
    return ([repaired] if repaired is not None else []), record


def repair_variant(job, artifact, entry: dict, verify, log, *, base: str, name: str, float_content: bytes, calibrated: int,
                   budget: Budget, tolerance, target: str, edge: bool = False, refuse: Callable[[bytes], str] | None = None):
    """Search recipes for one failed quantized artifact; returns (the repaired Artifact
    written as `<name>.tflite`, or None; the report record). `edge`: the deployment runs
    integer ops only (no 16-bit activations, no float inputs)."""
    import shutil

    from pipeline.target import Artifact
    from targets.support import litert

    start = time.perf_counter()
    label = artifact.variant or target
    pool_samples = min(len(v) for v in job.calibration.values())
    selectable = layer_ops(float_content, litert.keras_layer_names(job.loaded.obj))
    blame, source = _blame(job, calibrated, label, entry, selectable, log)
    cover = coverage(job.calibration, calibrated) if base in CALIBRATED_BASES else {}
    scratch = job.out_dir / ".repair"
    scratch.mkdir(exist_ok=True)

    def build(recipe: Recipe) -> bytes:
        n = recipe.calibration_samples or calibrated
        return build_recipe(float_content, recipe, calibration_samples(job.calibration, job.model.inputs, n), selectable)

    def check(recipe: Recipe, content: bytes) -> dict:
        file = f".repair/{recipe.name}.tflite"
        (job.out_dir / file).write_bytes(content)
        return verify(Artifact(variant=recipe.name, files=(file,), tolerance=tolerance, info={"outputs": list(job.model.output_names)}))

    try:
        result = search(
            base, name, build, check, blame, source, cover, calibrated, pool_samples, budget, entry.get("parity") or {},
            log=lambda line: log(line.replace(f"repair {base} ", f"repair {label} ", 1)), allow_int16=not edge, allow_float_inputs=not edge,
            weight_damage=weight_damage(job.loaded.obj, blame), refuse=refuse,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    record = search_record(result, entry, budget, float_content, artifact.info.get("size_bytes"), time.perf_counter() - start, label, target)
    prefix = f"{artifact.variant}: " if artifact.variant else ""
    if result.chosen is None:
        log(f"{prefix}{record['summary']}")
        return None, record
    chosen = result.chosen
    n = chosen.recipe.calibration_samples or calibrated
    repaired = _recipe_artifact(job, chosen.recipe, chosen.content, f"{name}.tflite", tolerance, chosen.seconds, n)
    repaired.info["repaired_from"] = label
    float_ops = sorted({op["op"] for op in litert.list_ops(chosen.content) if any(t["type"] == "float32" for t in op["outputs"])} - {"DEQUANTIZE"})
    record["float_ops"] = float_ops  # ops computing in float (the chosen layers', and those the quantizer cannot quantize)
    if float_ops and not chosen.recipe.float_layers:
        record["summary"] += f"; ops left in float by the quantizer: {', '.join(float_ops)}"
    repaired.info["size_vs_float32"] = round(len(chosen.content) / len(float_content), 3)
    if artifact.info.get("size_bytes"):
        repaired.info[f"size_vs_{label}"] = round(len(chosen.content) / artifact.info["size_bytes"], 3)
    log(f"{prefix}{record['summary']}")
    log(f"{prefix}to ship {name}, add under the {target} target of the config:\n{record['config_snippet']}")
    return repaired, record


def describe_float(recipe: Recipe) -> str:
    """What stays float, in words: the sentence the console and report.md print."""
    r = recipe
    int8_weights = [x for x in r.float_layers if x not in r.float_weights]
    parts = []
    if r.float_layers:
        parts.append(f"float layers: {', '.join(r.float_layers)}")
        if r.float_weights and int8_weights:
            parts[-1] += f" ({', '.join(r.float_weights)} with float weights; {', '.join(int8_weights)} with int8 weights)"
        elif r.float_weights:
            parts[-1] += " (with float weights)"
        else:
            parts[-1] += " (with int8 weights)"
    else:
        parts.append("no layer stays float")
    if r.int16_layers:
        parts.append(f"int16 activations in {', '.join(r.int16_layers)}")
    if r.float_inputs:
        parts.append("float inputs")
    if r.calibration_samples:
        parts.append(f"calibrated on {r.calibration_samples} samples")
    return "; ".join(parts)


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
    return record
