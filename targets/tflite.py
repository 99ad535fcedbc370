"""TFLite: `<variant>.tflite` files run in LiteRT (`ai_edge_litert`) through their
`serving_default` signature runner, so inputs and outputs keep the config's names.

Variants (`variants:`, several allowed):

- `float32`: plain conversion.
- `float16`: weights stored as float16 (half the size), computed in float32 on CPU.
- `dynamic_range`: int8 weights, activations quantized on the fly per batch; float I/O.
- `int8`: full integer, calibrated on `calibration_samples` samples of the parity
  data; model I/O `int8_io` (int8, uint8 or float32). Float inputs are quantized and
  integer outputs dequantized with the model's own scale and zero point.
- `int16x8`: int16 activations, int8 weights, calibrated; float I/O.

Conversion always goes through the canonical SavedModel (`from_saved_model`): a
Keras 3 model converted from concrete functions comes out weightless.

Large models (at least 256 MB of float32 weights in tensors of 1 MB or more): the
float32, float16 and dynamic_range variants are converted from a SavedModel of the same
function frozen with a splat stand-in for each large weight, and the real weights are
written into the file afterwards, in the layout and type the converter gave each one
(targets/support/tflite_lift.py). The converter's own peak is about 8x the weights
(4.55 GB for 553 MB); this way the whole tfship run stays near 2.1-2.6 GB at 553 MB.
A weight the converter folded into another constant is converted as a real constant;
when no stand-in can be placed, the variant is converted the usual way and its
report says why. The files are standard single-FlatBuffer .tflite files, checked by
parity like every other.

Default parity budgets (before `tolerances:` overrides in the YAML): each variant is
judged at its precision class's budget (pipeline.tolerance.PRECISION_CLASSES: SQNR,
mean error as a fraction of the range, the elementwise tail in quantization steps and
range fractions, classifier agreement and accuracy), measured on the calibration
corpus by examples/calibrate_budgets.py. Quantized outputs are compared after
dequantization with the model's own scale and zero point.

Each variant stands alone. A variant the converter cannot quantize (int16x8 has no
kernel for PRELU or NEG) or that LiteRT cannot prepare (an int16x8
DEPTHWISE_CONV_2D whose scales overflow: `no_integer_overflow_from_quantization`)
is an `error` of its own, naming the op, its Keras layers and the fixes tfship
tried on this model: dropping the variant, and for int8/int16x8 a float fallback
(`float_fallback: [int16x8]`: ops without an integer kernel stay float32). The
fallback file is returned as the failed variant's candidate: the pipeline runs it
through parity and the error states the outcome, so a fix is only recommended when it
passes on this model. The other variants are still converted, checked, published and
reported.

Select TF ops (Flex) are refused, naming the op and the layer, unless
`allow_select_tf_ops: true`; such an artifact needs the Flex delegate at run time,
which the Python LiteRT runtime does not link, so its parity cannot run here:
that variant is reported `skipped` with the ops named, and the others are checked.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline import progress
from pipeline.errors import ConversionError, IncompatibleModel, TargetUnavailable
from pipeline.runtimes.litert import LiteRTRunner, fixed_dims, io_quantization
from pipeline.target import Artifact, BuildInputs, Candidate, Target
from pipeline.tolerance import PRECISION_CLASSES
from targets.support.repair import Recipe

Variant = Literal["float32", "float16", "dynamic_range", "int8", "int16x8"]

# Each variant computes in one precision class; the class's default budget applies.
DEFAULT_TOLERANCES = {variant: PRECISION_CLASSES[variant] for variant in ("float32", "float16", "dynamic_range", "int8", "int16x8")}


@dataclass(frozen=True)
class TFLiteOptions:
    variants: tuple[Variant, ...] = ("float32",)
    int8_io: Literal["int8", "uint8", "float32"] = "int8"  # model I/O type of the int8 variant
    calibration_samples: int = 64  # representative samples for int8 / int16x8
    allow_select_tf_ops: bool = False  # permit Flex ops (needs the Flex delegate at run time)
    denylisted_nodes: tuple[str, ...] = ()  # int8: tensors kept in float (names from the debugger table)
    float_fallback: tuple[Variant, ...] = ()  # int8/int16x8 variants whose ops without an integer kernel stay float
    # When these quantized variants fail parity (true: every one), search for a recipe that passes.
    repair: tuple[Variant, ...] | bool = False
    repair_conversions: int = 8  # candidate recipes the search may build
    repair_seconds: float = 300.0  # and the time it may take
    recipes: tuple[Recipe, ...] = ()  # extra variants built from a recipe (what a repair search prints)


def variant_conversion(options: TFLiteOptions, variant: str):
    from targets.support.litert import Conversion

    return Conversion(
        variant=variant,
        io=options.int8_io if variant == "int8" else "float32",
        allow_select_tf_ops=options.allow_select_tf_ops,
        denylisted_nodes=options.denylisted_nodes if variant == "int8" else (),
        calibration_samples=options.calibration_samples,
        float_fallback=variant in options.float_fallback,
    )


# Peak memory of a float variant converted with stand-ins, in weight bytes above the
# worker's base: 2.59 GB for a 553 MB model (the shared stages' 2.5x dominates).
LIFTED_MEMORY_FACTOR = 2.5

CANDIDATE_PREFIX = ".candidate_"  # a fix's file in the staging folder, checked and removed before publishing
BATCH1_SCRATCH = ".batch1_savedmodel"  # inside the staging folder; removed before the target is published


def _needs_static_batch(exc: Exception) -> bool:
    """The converter's TensorList lowering failed: the error a Keras RNN gives with a
    dynamic batch ('Lowering tensor list ops is failed', 'element_shape to be static')."""
    text = " ".join(str(part) for part in (getattr(exc, "reason", ""), exc, exc.__cause__ or "")).lower()
    return "tensor list" in text or ("tensorlist" in text and "element_shape" in text)


def _batch1_saved_model(job: BuildInputs) -> Path:
    """The model as a SavedModel whose signature fixes the batch at 1 (built once per build)."""
    from pipeline.stages.savedmodel import write_saved_model
    from pipeline.stages.trace import make_function

    folder = job.out_dir / BATCH1_SCRATCH
    if not (folder / "saved_model.pb").exists():
        write_saved_model(folder, job.loaded, {"serving_default": make_function(job.model, job.loaded, batch=1)})
    return folder


class TFLiteTarget(Target):
    name = "tflite"
    description = "TFLite flatbuffers (float32, float16, dynamic_range, int8, int16x8) run in LiteRT"
    Options = TFLiteOptions

    def variants(self, options: TFLiteOptions) -> tuple[str, ...]:
        return tuple(options.variants) + tuple(r.name for r in options.recipes)

    def repair_variants(self, options: TFLiteOptions) -> tuple[str, ...]:
        from targets.support.repair import BASES

        wanted = options.variants if options.repair is True else options.repair or ()
        return tuple(v for v in wanted if v in BASES)

    def default_tolerance(self, variant: str) -> Tolerance:
        return DEFAULT_TOLERANCES.get(variant, DEFAULT_TOLERANCES["float32"])

    def memory_factor(self, options: TFLiteOptions, weight_bytes: int) -> float | None:
        """Float variants of a large model convert with stand-ins for the weights: the run
        peaks near the shared stages' cost (measured 2.1-2.6 GB at 553 MB, 1.5 GB base
        included); calibrated variants and recipes take the converter's own 8x."""
        from targets.support import tflite_lift

        if weight_bytes >= tflite_lift.LIFT_MODEL_BYTES and not options.recipes and set(options.variants) <= set(tflite_lift.VARIANTS):
            return LIFTED_MEMORY_FACTOR
        return None

    def check_options(self, options: TFLiteOptions, model: dict) -> list[tuple[str, str]]:
        problems = []
        if not options.variants:
            problems.append(("variants", "expected at least one of: float32, float16, dynamic_range, int8, int16x8"))
        duplicates = sorted({v for v in options.variants if options.variants.count(v) > 1})
        if duplicates:
            problems.append(("variants", f"variant(s) listed twice: {', '.join(duplicates)}"))
        if options.calibration_samples < 1:
            problems.append(("calibration_samples", "expected a positive number of samples"))
        calibrated = [v for v in options.variants if v in ("int8", "int16x8")]
        data = model.get("data")
        if calibrated and data is not None and data.samples < options.calibration_samples:
            problems.append(
                (
                    "calibration_samples",
                    f"{', '.join(calibrated)} calibrate on {options.calibration_samples} samples but `data.samples` is {data.samples}; "
                    f"raise data.samples or lower calibration_samples",
                )
            )
        if options.denylisted_nodes and "int8" not in options.variants:
            problems.append(("denylisted_nodes", "applies to the int8 variant only; add int8 to `variants` or remove this key"))
        problems += _check_repair(options, data)
        wrong = [v for v in options.float_fallback if v not in ("int8", "int16x8") or v not in options.variants]
        if wrong:
            problems.append(("float_fallback", f"applies to int8/int16x8 variants listed in `variants`, not {', '.join(wrong)}"))
        if options.denylisted_nodes and options.int8_io == "uint8":
            problems.append(("denylisted_nodes", "selective quantization supports `int8_io: int8` or `float32`, not uint8"))
        return problems

    def build(self, job: BuildInputs) -> list[Artifact]:
        """Every variant stands alone: one that cannot be converted or prepared is
        returned as a failed artifact (op, layer, fixes tried) and the others are kept."""
        from pipeline.errors import PipelineError
        from targets.support import litert, sizes

        options: TFLiteOptions = job.target.options
        layers = litert.keras_layer_names(job.loaded.obj)
        weights = sizes.weight_size(job.traced)
        artifacts = []
        try:
            for variant in options.variants:
                try:
                    unsized = sizes.check_flatbuffer_fits(job.model.name, variant, weights)
                    artifacts.append(self._build_variant(job, options, variant, layers))
                    if unsized:  # the size is unknown: said beside the file, never read as small
                        artifacts[-1].info["note_size"] = unsized
                except PipelineError as exc:
                    artifacts.append(Artifact.failed(variant, exc))
                except Exception as exc:  # a bug here must not cost the other variants either; it says "unexpected"
                    artifacts.append(Artifact.failed(variant, ConversionError(f"unexpected {type(exc).__name__}: {exc}")))
        finally:
            shutil.rmtree(job.out_dir / BATCH1_SCRATCH, ignore_errors=True)
        if options.recipes:
            from targets.support import repair

            float_content = repair.float_flatbuffer(job, {a.variant: a for a in artifacts if a.error is None})
            artifacts += repair.build_recipe_variants(job, options.recipes, options.calibration_samples, float_content, DEFAULT_TOLERANCES)
        file_sizes = {a.variant: a.info["size_bytes"] for a in artifacts if a.error is None}
        if "float32" in file_sizes:
            for a in artifacts:
                if a.error is None:
                    a.info["size_vs_float32"] = round(a.info["size_bytes"] / file_sizes["float32"], 3)
        return artifacts

    def _build_variant(self, job: BuildInputs, options: TFLiteOptions, variant: str, layers: list[str]) -> Artifact:
        from targets.support import litert, tflite_lift

        conv = variant_conversion(options, variant)
        representative = None
        if variant in litert.CALIBRATED:
            where = f"model '{job.model.name}', tflite {variant} calibration"
            litert.check_calibration(job.model.inputs, job.calibration, options.calibration_samples, where)
            progress.stage(job.model.name, self.name, f"calibrate {variant}", total=options.calibration_samples)
            representative = litert.representative_dataset(
                job.calibration, job.model.inputs, options.calibration_samples, on_sample=lambda: progress.advance(job.model.name, self.name)
            )
        else:
            progress.stage(job.model.name, self.name, f"convert {variant}")
        static_batch = None
        batch1_tried = False
        source = job.saved_model_dir
        file = f"{variant}.tflite"
        notes: list[str] = []
        try:
            def run(saved_model_dir):
                lift, unsized = tflite_lift.applies(conv, job.traced) if saved_model_dir == job.saved_model_dir else (False, "")
                if unsized:
                    notes.append(unsized)
                if lift:
                    try:  # large weights: the converter sees stand-ins, the file gets the weights
                        lifted = tflite_lift.convert(job, conv, layers, job.out_dir / file)
                        return lifted, lifted.seconds
                    except Exception as exc:  # the usual conversion decides: it converts, or its error is the model's
                        (job.out_dir / file).unlink(missing_ok=True)
                        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                        notes.append(f"converted with the weights in the converter's memory: stand-ins for them could not be placed ({reason})")
                if variant in litert.CALIBRATED:  # the calibrator can crash the process: isolate it
                    return litert.convert_isolated(saved_model_dir, conv, job.calibration, job.model.inputs, options.calibration_samples, layers, job.model.input_names)
                return litert.convert(saved_model_dir, conv, representative, layers, job.model.input_names)

            try:
                content, seconds = run(job.saved_model_dir)
            except IncompatibleModel as exc:
                if not (getattr(exc, "ops", None) or {}).get("select_tf_ops") or conv.allow_select_tf_ops:
                    raise
                raise IncompatibleModel(f"{exc} {self._try_select_tf_ops(job, conv, representative, layers)}") from exc
            except ConversionError as exc:
                dynamic = any(s.batched and s.shape[0] is None for s in job.model.inputs)
                crashed = "crashed" in (getattr(exc, "reason", None) or "")
                if not ((_needs_static_batch(exc) or crashed) and dynamic):
                    raise
                # The converter lowers an RNN's TensorList ops only when the list's element
                # shape is static, which a dynamic batch prevents; at batch 1 it converts
                # (other dynamic dimensions stay dynamic) and the runtime runs a larger
                # batch one sample at a time. A calibrator crash hides the converter's own
                # error, so batch 1 is tried then too.
                source = _batch1_saved_model(job)
                batch1_tried = True
                content, seconds = run(source)
                static_batch = 1
        except ConversionError as exc:
            # The converter's own reason, with the op and layers when it names them: an op
            # without a kernel for this type, a node it cannot lower, or a tensor the
            # calibrator recorded no range for (loop variables, integer inputs).
            reason = getattr(exc, "reason", None) or str(exc)
            op = getattr(exc, "op", None) or litert.unsupported_quantized_op(reason) or ""
            where = list(getattr(exc, "layers", None) or []) or None
            tensor = litert.uncalibrated_tensor(reason)
            if tensor and not where:
                where = [_describe_tensor(tensor, job.model.input_names, layers)]
                op = op or ("WHILE" if "while" in tensor else "")
            if batch1_tried:
                reason += " (at a static batch of 1, tried after the conversion with a dynamic batch failed)"
            raise self._variant_failure(job, conv, representative, layers, op, where, reason, source) from exc
        lifted = content if isinstance(content, tflite_lift.Lifted) else None
        structure = lifted.skeleton if lifted else content
        ops = litert.list_ops(structure)
        flex = litert.flex_ops(ops)
        if not flex:  # a Flex model cannot be prepared here at all (no Flex delegate): parity says so
            try:
                litert.check_prepares(lifted.path if lifted else content)
            except RuntimeError as exc:
                (job.out_dir / file).unlink(missing_ok=True)
                op, where, reason = litert.prepare_failure(exc, structure, layers)
                raise self._variant_failure(job, conv, representative, layers, op, where, f"LiteRT cannot prepare it: {reason}", source) from exc
        if not lifted:
            (job.out_dir / file).write_bytes(content)
        info = {
            "size_bytes": lifted.size if lifted else len(content),
            "conversion_seconds": round(seconds, 2),
            "ops": litert.op_counts(ops),
            "flex_ops": flex,
            "outputs": list(job.model.output_names),
        }
        if flex:
            info["needs_flex_delegate"] = True
            info["note"] = "this file contains Select TF ops: ship it with the Flex delegate (tensorflow-lite-select-tf-ops)"
        runner = LiteRTRunner(job.out_dir / file, job.model.output_names)  # reads details; runs nothing
        info["quantization"] = io_quantization(runner, job.model.input_names)
        fixed = fixed_dims(runner, job.model.inputs)
        if fixed:  # the converter pinned a dimension the config declares dynamic: say which
            info["fixed_dims"] = fixed
        if lifted:
            info["weights_written_after_conversion"] = lifted.lifted
            info["note_weights"] = (
                f"converted with stand-ins for {lifted.lifted} large weight(s), which were then written into the file "
                "in the layout and type the converter gave them (keeps the converter's memory near the size of the model)"
            )
        if notes:
            info["note_conversion"] = "; ".join(notes)
        if static_batch:
            info["static_batch"] = static_batch
            info["note_static_batch"] = (
                "converted at a static batch of 1: with a dynamic batch the converter cannot lower this model's TensorList ops "
                "(an RNN's loop state); LiteRT runs a larger batch one sample at a time"
            )
        if variant in litert.CALIBRATED:
            info["calibration_samples"] = options.calibration_samples
        if conv.denylisted_nodes:
            info["denylisted_nodes"] = list(conv.denylisted_nodes)
        if conv.float_fallback:
            info["float_ops"] = float_op_counts(ops)
        return Artifact(variant=variant, files=(file,), tolerance=DEFAULT_TOLERANCES[variant], info=info)

    def _variant_failure(
        self, job: BuildInputs, conv, representative, layers: list[str], op: str, where: list[str] | None, reason: str, source: Path | None = None
    ) -> IncompatibleModel:
        """The variant's error: the op, its layers, and only the fixes that were tried here."""
        from dataclasses import replace

        from targets.support import litert

        context = ""
        if where is None and (op or "crashed" in reason):
            # The quantizer names the op only, or the calibrator died naming nothing: find the
            # op's layers (for a crash: the model's WHILE loops, which it runs) in a float conversion.
            try:
                float_model, _ = litert.convert(source or job.saved_model_dir, replace(conv, variant="float32", float_fallback=False), None, layers)
                if op:
                    where = litert.layers_of_tensors(litert.op_output_names(float_model, op), layers)
                else:
                    loops = litert.layers_of_tensors(litert.op_output_names(float_model, "WHILE"), layers)
                    if loops:
                        context = "calibration of a model with WHILE loops in layer" + ("s " if len(loops) > 1 else " ") + ", ".join(f"'{w}'" for w in loops)
            except ConversionError:
                where = []
        where = where or []
        layer_places = [f"'{w}'" for w in where if not w.startswith("tensor ")]
        if len(layer_places) > 4:
            layer_places = layer_places[:4] + [f"and {len(layer_places) - 4} more"]
        places = ([f"layer{'s' if len(layer_places) > 1 else ''} {', '.join(layer_places)}"] if layer_places else []) + [w for w in where if w.startswith("tensor ")]
        located = " in ".join(p for p in (op, ", ".join(places)) if p) or context or "an op"
        if op and not places:  # a plain-TF model (no Keras layers), or ops outside any layer
            located += " (the model's own code, no Keras layer)" if not layers else " (in no Keras layer)"
        fixes = [f"drop `{conv.variant}` from the tflite `variants` (each variant is converted and checked on its own: the others do not depend on it)"]
        candidate = None
        if conv.variant in litert.CALIBRATED and not conv.float_fallback:
            text, candidate = self._try_float_fallback(job, conv, layers, source or job.saved_model_dir)
            fixes.append(text)
        failure = IncompatibleModel(
            f"TFLite {conv.variant}: {located}: {reason}. Fixes tried: " + "; ".join(f"({i}) {fix}" for i, fix in enumerate(fixes, 1)) + "."
        )
        failure.candidate = candidate  # its parity is checked by the pipeline and stated in the error
        return failure

    def _try_select_tf_ops(self, job: BuildInputs, conv, representative, layers: list[str]) -> str:
        """What `allow_select_tf_ops: true` does for this variant, tried here (not published:
        without the Flex delegate nothing here can run the file)."""
        from dataclasses import replace

        from targets.support import litert

        flex_conv = replace(conv, allow_select_tf_ops=True)
        try:
            if conv.variant in litert.CALIBRATED:  # the calibrator can crash the process: isolate it
                samples = job.target.options.calibration_samples
                content, _ = litert.convert_isolated(job.saved_model_dir, flex_conv, job.calibration, job.model.inputs, samples, layers, job.model.input_names)
            else:
                content, _ = litert.convert(job.saved_model_dir, flex_conv, representative, layers, job.model.input_names)
        except (ConversionError, IncompatibleModel) as exc:
            detail = " ".join((getattr(exc, "reason", None) or str(exc)).split())
            sentences = detail.split(". ")
            return f"Tried: with `allow_select_tf_ops: true` the converter still fails: {'. '.join(sentences[:2]).rstrip('.')[:400]}."
        flex = litert.flex_ops(litert.list_ops(content))
        return (
            f"Tried: with `allow_select_tf_ops: true` the converter writes the file ({len(content)} bytes, Flex ops: {', '.join(flex) or 'none'}), "
            "but the LiteRT runtime here (ai_edge_litert) links no Flex delegate, so its parity cannot be checked on this machine; "
            "no fix that passes here was found."
        )

    def _try_float_fallback(self, job: BuildInputs, conv, layers: list[str], source: Path) -> tuple[str, Candidate | None]:
        """The float fallback converted and prepared here; the file is returned as a
        candidate whose parity the pipeline checks before the fix is offered."""
        from dataclasses import replace

        from targets.support import litert

        option = f"`float_fallback: [{conv.variant}]`"
        samples = job.target.options.calibration_samples
        try:
            content, _ = litert.convert_isolated(source, replace(conv, float_fallback=True), job.calibration, job.model.inputs, samples, layers, job.model.input_names)
            litert.check_prepares(content)
        except (ConversionError, RuntimeError) as exc:
            detail = " ".join((getattr(exc, "reason", None) or str(exc)).split())
            return f"float fallback ({option}) was tried and does not help: {detail[:300]}", None
        kept = float_op_counts(litert.list_ops(content))
        listed = ", ".join(f"{k} x{v}" for k, v in kept.items()) or "none"
        file = f"{CANDIDATE_PREFIX}{conv.variant}_float_fallback.tflite"
        (job.out_dir / file).write_bytes(content)
        runner = LiteRTRunner(job.out_dir / file, job.model.output_names)  # reads details; runs nothing
        info = {"outputs": list(job.model.output_names), "quantization": io_quantization(runner, job.model.input_names), "float_ops": kept}
        artifact = Artifact(variant=conv.variant, files=(file,), tolerance=DEFAULT_TOLERANCES[conv.variant], info=info)
        text = f"float fallback: with {option} the converter keeps the ops it cannot quantize unquantized (float32 ops: {listed}) and LiteRT prepares the model"
        return text, Candidate(option=option, artifact=artifact)

    def open(self, target_dir: Path, artifact: Artifact, threads: int | None = None):
        if artifact.info.get("needs_flex_delegate"):
            raise TargetUnavailable(
                f"tflite/{artifact.variant}: {artifact.files[0]} contains Select TF ops ({', '.join(artifact.info.get('flex_ops', []))}) "
                "and the LiteRT runtime here (ai_edge_litert) links no Flex delegate, so parity cannot run it on this machine. "
                "Run it where the Flex delegate is linked (Android: org.tensorflow:tensorflow-lite-select-tf-ops), "
                "or rewrite the layers named at conversion with builtin ops and drop `allow_select_tf_ops`."
            )
        outputs = artifact.info.get("outputs") or ()
        return LiteRTRunner(Path(target_dir) / artifact.files[0], outputs, threads=threads)

    def tensor_probe(self, target_dir, artifact, model, debug_dir):
        if artifact.info.get("needs_flex_delegate"):
            return None
        from pipeline.localize.probes import LiteRTProbe

        return LiteRTProbe(Path(target_dir) / artifact.files[0], tuple(artifact.info.get("outputs") or ()))

    def options_for_variant(self, options, variant):
        import dataclasses

        return dataclasses.replace(options, variants=(variant,))

    def diagnose(self, job: BuildInputs, artifact: Artifact, parity: dict) -> dict | None:
        """For a failed quantized variant: the layers QuantizationDebugger finds worst."""
        from targets.support import litert

        if artifact.variant not in litert.CALIBRATED:
            return None
        options: TFLiteOptions = job.target.options
        conv = variant_conversion(options, artifact.variant)
        samples = min(options.calibration_samples, min(len(v) for v in job.calibration.values()))
        representative = litert.representative_dataset(job.calibration, job.model.inputs, samples)
        try:
            table = litert.debug_quantization(
                job.saved_model_dir, conv, representative, job.model.input_names, litert.keras_layer_names(job.loaded.obj)
            )
        except Exception as exc:  # the debugger is best effort: the failure itself stands
            return {"quantization_debugger": f"could not run: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}
        if artifact.variant == "int16x8":
            table["note"] = "the table measures int8 quantization of the same calibration; int16x8 errors are smaller but sit in the same layers"
        return {"quantization_debugger": table}

    def repair(self, job: BuildInputs, artifact: Artifact, entry: dict, verify, log):
        from targets.support import repair

        if artifact.variant not in repair.BASES:
            return None
        if f"{artifact.variant}_repaired" in {r.name for r in job.target.options.recipes}:
            log(f"{artifact.variant}: repair skipped: the recipe {artifact.variant}_repaired is configured and checked on its own")
            return None
        return repair.repair_tflite(job, job.target.options, artifact, entry, verify, log, DEFAULT_TOLERANCES)


def _check_repair(options: TFLiteOptions, data) -> list[tuple[str, str]]:
    from targets.support.repair import BASES, check_recipe

    problems = []
    if isinstance(options.repair, tuple):
        for v in options.repair:
            if v not in BASES:
                problems.append(("repair", f"'{v}' cannot be repaired; quantized variants can: {', '.join(BASES)}"))
            elif v not in options.variants:
                problems.append(("repair", f"'{v}' is not in `variants`; add it there or remove it here"))
    elif options.repair and not any(v in BASES for v in options.variants):
        problems.append(("repair", f"no quantized variant to repair; `variants` needs one of: {', '.join(BASES)}"))
    if options.repair_conversions < 1:
        problems.append(("repair_conversions", "expected at least 1 conversion"))
    if options.repair_seconds <= 0:
        problems.append(("repair_seconds", "expected a positive number of seconds"))
    names = [r.name for r in options.recipes]
    for i, recipe in enumerate(options.recipes):
        if names.count(recipe.name) > 1:
            problems.append((("recipes", i, "name"), f"recipe '{recipe.name}' is listed twice"))
        for key, message in check_recipe(recipe, options.variants, getattr(data, "samples", None)):
            problems.append((("recipes", i, key), message))
    return problems


def _describe_tensor(tensor: str, input_names, layers: list[str]) -> str:
    """Where an uncalibrated tensor lives: a model input, a Keras layer, or the model's own code."""
    from targets.support import litert

    for name in input_names:
        if tensor in (f"serving_default_{name}:0", name):
            return f"tensor {tensor} (model input '{name}')"
    found = litert.layers_of_tensors([tensor], layers)
    return found[0] if found else f"tensor {tensor} (the model's own code, no Keras layer)"


def float_op_counts(ops: list[dict]) -> dict[str, int]:
    """Ops of a quantized model that compute in float32 (float fallback)."""
    counts: dict[str, int] = {}
    for op in ops:
        if op["op"] not in ("QUANTIZE", "DEQUANTIZE") and any(t["type"] == "float32" and not t["constant"] for t in op["outputs"]):
            counts[op["op"]] = counts.get(op["op"], 0) + 1
    return dict(sorted(counts.items()))


TARGET = TFLiteTarget()
