"""The tflite and edgetpu targets' side of repair: the float32 flatbuffer every recipe
starts from, configured `recipes:` built into variants, and a search run on a failed
variant with the run's own data, parity and artifacts folder.

Follows STYLE.md pattern 1 (what is TFLite stays with the TFLite targets: they call
these functions, nothing in pipeline/ does), pattern 7 (the quantizer's failures become
a ConversionError naming the recipe) and pattern 13 (candidates are verified by the
run's own `verify`, the runner parity uses).
"""
from __future__ import annotations

import time
from typing import Callable

from targets.support.repair.build import build_recipe, calibration_samples, engine_version, layer_ops
from targets.support.repair.damage import Ranking, constant_damage, coverage, input_damage, rank
from targets.support.repair.recipe import CALIBRATED_BASES, Recipe
from targets.support.repair.report import search_record
from targets.support.repair.search import Budget, Search


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



def _measure(job, calibrated: int, label: str, entry: dict, selectable: dict[str, list[str]], float_content: bytes, log) -> Ranking:
    """The search's ranking: QuantizationDebugger's per-layer errors (int8 of the same
    calibration) merged with the run's localization table when it made one, the float
    constants' int8 loss, and the inputs' int8 loss on their calibrated range."""
    from targets.support import litert

    names = litert.keras_layer_names(job.loaded.obj)
    samples = min(calibrated, min(len(v) for v in job.calibration.values()))
    representative = litert.representative_dataset(job.calibration, job.model.inputs, samples)
    try:
        rows = litert.debug_quantization(
            job.saved_model_dir, litert.Conversion(variant="int8", io="float32"), representative, job.model.input_names, names, top=10**9,
        )["worst_layers"]
    except Exception as exc:  # without per-layer errors the search ranks by what else was measured
        rows = None
        log(f"{label}: repair: QuantizationDebugger could not run ({type(exc).__name__}); ranking layers without it")
    localization = entry.get("localization")
    return rank(selectable, rows, localization if isinstance(localization, dict) else None, constant_damage(float_content, selectable),
                input_damage(job.calibration, calibrated), names)

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
    ranking = _measure(job, calibrated, label, entry, selectable, float_content, log)
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
        result = Search(base, build, check, budget, lambda line: log(line.replace(f"repair {base} ", f"repair {label} ", 1)), refuse).run(
            name, ranking, cover, calibrated, pool_samples, entry.get("parity") or {}, allow_int16=not edge, allow_float_inputs=not edge,
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

