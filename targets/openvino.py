"""OpenVINO: IR files (`<variant>.xml` + `<variant>.bin`) converted from the canonical
SavedModel by `openvino.convert_model`, run by OpenVINO's CPU plugin.

The IR's inputs and outputs carry the config's names (outputs in the config's order);
a dimension the config declares dynamic stays dynamic where the TensorFlow frontend
keeps it (the report lists any it fixed).

Variants (`variants:`, several allowed):

- `fp32`: float32 weights; compiled with INFERENCE_PRECISION_HINT=f32. Without the
  hint, OpenVINO's CPU plugin runs a float32 IR in bf16 on a CPU with bfloat16 support
  (AVX512-BF16, AMX), silently.
- `fp16`: weights stored as float16 (`compress_to_fp16`), half the size; computed in
  float32 (hint f32), the weights decompressed.
- `bf16`: the float32 IR compiled with INFERENCE_PRECISION_HINT=bf16; checked only on
  a CPU that runs bfloat16 (OPTIMIZATION_CAPABILITIES has BF16), skipped elsewhere.
  It shares the fp32 files when fp32 is built too.
- `int8`: NNCF post-training quantization (FakeQuantize on weights and activations)
  calibrated on `calibration_samples` samples of the parity data, the same rules as
  tflite int8; float I/O; the float parts pinned to f32.

The hint is a run-time property (OpenVINO's CPU plugin does not read it from the IR):
each variant's report records the hint asked for, the hint in effect read back from
the compiled model, the device, and the precision each compute node of the runtime
model ran at. Parity judges that too (pipeline.runtimes.openvino): a float variant
that ran in bf16 fails for that reason. `pin_precision: false` compiles the fp32,
fp16 and int8 variants with the device's default instead, to check the IR as a
deployment that sets nothing runs it.

Default budgets: each variant's precision class (pipeline.tolerance.PRECISION_CLASSES):
fp32 -> float32, fp16 -> float16, bf16 -> bf16, int8 -> int8.

An op the TensorFlow frontend cannot convert is refused (exit 2) naming the op, its
graph node and its Keras layer; nothing is written. The openvino and nncf packages
are the `openvino` extra (`pip install 'tfship[openvino]'`): a config that selects
this target without them is refused before any work.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline import progress
from pipeline.extras import installed
from pipeline.errors import ConversionError, IncompatibleModel, PipelineError, TargetUnavailable
from pipeline.runtimes.openvino import EXTRA_INSTALL, OpenVINORunner, device_capabilities, require_openvino
from pipeline.target import Artifact, BuildInputs, Target
from pipeline.tolerance import PRECISION_CLASSES, Tolerance

Variant = Literal["fp32", "fp16", "bf16", "int8"]
VARIANTS = ("fp32", "fp16", "bf16", "int8")
BUILD_ORDER = ("fp32", "bf16", "int8", "fp16")

# The precision class each variant computes in, and the hint it is compiled with.
PRECISION_CLASS = {"fp32": "float32", "fp16": "float16", "bf16": "bf16", "int8": "int8"}
HINT = {"fp32": "f32", "fp16": "f32", "bf16": "bf16", "int8": "f32"}
DEFAULT_TOLERANCES = {variant: PRECISION_CLASSES[cls] for variant, cls in PRECISION_CLASS.items()}
DEFAULT_TOLERANCES["int8_repaired"] = DEFAULT_TOLERANCES["int8"]

# Peak memory of building and checking this target, in weight bytes above the worker's
# base (pipeline.execute.admission): `make bench-scale` with fp32, fp16 and int8 on a
# 554 MB dense model peaked at 2.73 GB for the whole process tree (1.05 GB at 50 MB),
# 2.2x the weights above the 1.5 GB base; 2.5 as the onnx and lifted tflite figures.
MEMORY_FACTOR = 2.5

_UNCONVERTED = re.compile(r"No conversion rule found for operations: ([^\n]+)")
_TOKENIZERS = re.compile(r"openvino-tokenizers package provides conversion extension\(s\): ([^.\n]+)")


@dataclass(frozen=True)
class OpenVINOOptions:
    variants: tuple[Variant, ...] = ("fp32",)
    # fp32, fp16 and int8 compile with INFERENCE_PRECISION_HINT=f32 (false: the device's default, judged as it runs)
    pin_precision: bool = True
    calibration_samples: int = 64  # int8: representative samples of the parity data
    ignored_scope: tuple[str, ...] = ()  # int8: IR node names NNCF leaves in float
    repair: bool = False  # when int8 fails parity, search an ignored scope that passes (published as int8_repaired)
    repair_conversions: int = 6  # candidate quantizations the search may build
    repair_seconds: float = 300.0  # and the time it may take


def _layer_path(node: str) -> str:
    """A TF node name without the call wrappers tracing adds, so the Keras layer shows."""
    parts = node.split("/")
    while len(parts) > 1 and parts[0] in ("StatefulPartitionedCall", "PartitionedCall"):
        parts = parts[1:]
    return "/".join(parts)


def _quiet():
    """OpenVINO's converter and NNCF print progress bars and notes: keep the console for tfship."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


# --------------------------------------------------------------------------- conversion


def _graph_ops(saved_model_dir: Path) -> dict[str, str]:
    """TF node name -> op type over the SavedModel's graph and every function body."""
    from tfship.compat.tensorflow import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((saved_model_dir / "saved_model.pb").read_bytes())
    ops: dict[str, str] = {}
    for meta in proto.meta_graphs:
        for node in meta.graph_def.node:
            ops.setdefault(node.name, node.op)
        for function in meta.graph_def.library.function:
            for node in function.node_def:
                ops.setdefault(node.name, node.op)
    return ops


def _unconverted_nodes(saved_model_dir: Path) -> dict[str, list[str]]:
    """{TF op: nodes} the TensorFlow frontend leaves unconverted: the framework nodes of a
    partial conversion, named as the TensorFlow nodes they stand for ('' when a node's op
    cannot be read from the graph)."""
    from openvino.frontend import FrontEndManager

    frontend = FrontEndManager().load_by_framework("tf")
    partial = frontend.convert_partially(frontend.load(str(saved_model_dir)))
    graph = _graph_ops(saved_model_dir)
    found: dict[str, list[str]] = {}
    for op in partial.get_ordered_ops():
        if op.get_type_name() in ("TFFrameworkNode", "FrameworkNode"):
            name = op.get_friendly_name()
            parts = name.split("/")
            # The frontend may prefix a function body's node with the calls it inlined.
            kind = next((graph[key] for key in ("/".join(parts[i:]) for i in range(len(parts))) if key in graph), "")
            found.setdefault(kind, []).append(name)
    return found


def _refusal(model: str, text: str, saved_model_dir: Path, layers: list[str]) -> IncompatibleModel:
    """The frontend's unconverted ops, each with its nodes and Keras layers."""
    from targets.support.litert import layer_of

    ops = [op.strip() for op in (_UNCONVERTED.search(text).group(1).split(",") if _UNCONVERTED.search(text) else []) if op.strip()]
    try:
        nodes = _unconverted_nodes(saved_model_dir)
    except Exception:  # the partial conversion is for naming nodes only; the op list stands
        nodes = {}
    by_op = {op: list(nodes.get(op, [])) for op in ops}
    from pipeline.runtimes.openvino import version

    lines = [f"OpenVINO {version().split('-')[0]}'s TensorFlow frontend cannot convert model '{model}':"]
    for op in ops or ["(unnamed)"]:
        found = [_layer_path(n) for n in by_op.get(op, [])]
        places = []
        for node in found[:3]:
            layer = layer_of(node, layers) if layers else None
            places.append(f"{node} (layer '{layer}')" if layer else f"{node} ({'no Keras layer' if layers else 'the model’s own code'})")
        shown = ", ".join(places) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        lines.append(f"  - TF op {op}" + (f" at {shown}" if shown else "") + ": no conversion rule")
    if not ops:
        lines.append("  " + " ".join(text.split())[:400])
    tokenizers = _TOKENIZERS.search(text)
    if tokenizers:
        lines.append(f"OpenVINO says the openvino-tokenizers package has conversion extensions for: {tokenizers.group(1).strip()} (tfship loads no frontend extension; not tried).")
    lines.append("Fix: replace those operations in the model with ones OpenVINO converts (the path names the layer), "
                 "move string preprocessing out of the exported model, or drop the openvino target for this model.")
    return IncompatibleModel("\n".join(lines))


def _convert(job: BuildInputs, layers: list[str]):
    """The canonical SavedModel as an ov.Model: config names, outputs in config order,
    no build-machine path in its rt_info."""
    import openvino as ov

    try:
        with _quiet():
            model = ov.convert_model(str(job.saved_model_dir))
    except Exception as exc:
        text = str(exc)
        if "No conversion rule found" in text or type(exc).__name__ == "OpConversionFailure":
            raise _refusal(job.model.name, text, job.saved_model_dir, layers) from exc
        raise ConversionError(f"openvino.convert_model failed on model '{job.model.name}': {type(exc).__name__}: {' '.join(text.split())[:600]}") from exc
    rt_info = model.get_rt_info()
    for key in ("conversion_parameters",):  # holds the staging folder's path (input_model)
        if key in rt_info:
            del rt_info[key]
    return _config_order(model, job.model)


def _config_order(model, config):
    """The model with its results in the config's output order, every name checked."""
    import openvino as ov

    by_name = {}
    for result in model.get_results():
        for name in result.output(0).get_names() or result.input_value(0).get_names():
            by_name.setdefault(name, result)
    missing = [n for n in config.output_names if n not in by_name]
    if missing:
        raise ConversionError(f"the OpenVINO model has outputs {sorted(by_name)}, expected the config's {list(config.output_names)} (missing {missing})")
    ordered = [by_name[n] for n in config.output_names]
    if [r.get_friendly_name() for r in ordered] == [r.get_friendly_name() for r in model.get_results()]:
        return model
    if len(set(map(id, ordered))) != len(ordered):  # two config outputs on one result: keep the model, names resolve it
        return model
    reordered = ov.Model(ordered, list(model.get_parameters()), model.get_friendly_name())
    for key in ("Runtime_version",):
        if key in model.get_rt_info():
            reordered.set_rt_info(model.get_rt_info()[key].astype(str), key)
    return reordered


def _interface(model, config) -> tuple[list[dict], list[dict], list[dict]]:
    """Inputs and outputs (name, dtype, shape with None for a dynamic dimension) and the
    dimensions the config declares dynamic that the IR fixed; ConversionError when the
    names, dtypes or ranks differ from the config."""
    from pipeline.runtimes.openvino import numpy_name

    def shape_of(port):
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic:
            return None
        return [d.get_length() if d.is_static else None for d in shape]

    inputs = [{"name": p.get_any_name(), "dtype": numpy_name(p.get_element_type()), "shape": shape_of(p)} for p in model.inputs]
    outputs = []
    for name in config.output_names:
        port = next(p for p in model.outputs if name in p.get_names())
        outputs.append({"name": name, "dtype": numpy_name(port.get_element_type()), "shape": shape_of(port)})
    problems, fixed = [], []
    by_name = {i["name"]: i for i in inputs}
    if sorted(by_name) != sorted(config.input_names):
        problems.append(f"inputs {sorted(by_name)} != config {list(config.input_names)}")
    for spec in config.inputs:
        got = by_name.get(spec.name)
        if got is None or got["shape"] is None:
            continue
        if len(got["shape"]) != len(spec.shape):
            problems.append(f"input '{spec.name}' has rank {len(got['shape'])}, config shape is {list(spec.shape)}")
            continue
        for axis, (g, w) in enumerate(zip(got["shape"], spec.shape)):
            if w is None and g is not None:
                fixed.append({"input": spec.name, "axis": axis, "name": spec.axis_name(axis), "size": g})
            elif w is not None and g is not None and g != w:
                problems.append(f"input '{spec.name}' dim {axis} is {g}, config says {w}")
    if problems:
        raise ConversionError("the OpenVINO model does not match the config's interface: " + "; ".join(problems))
    ordered = [by_name[n] for n in config.input_names if n in by_name]
    return ordered, outputs, fixed


def _op_counts(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in ("Parameter", "Result", "Constant"):
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def _save(model, path: Path, fp16: bool) -> list[str]:
    import openvino as ov

    ov.save_model(model, str(path), compress_to_fp16=fp16)
    return [path.name, path.with_suffix(".bin").name]


def _quantize(model, job: BuildInputs, options: OpenVINOOptions):
    """NNCF post-training quantization on the parity pool's first samples, one sample per
    step (the same samples and checks as tflite int8)."""
    try:
        import nncf
    except ImportError as exc:
        from pipeline.errors import MissingExtra

        raise MissingExtra(f"the openvino int8 variant needs NNCF, which is not installed; install it with `{EXTRA_INSTALL}`") from exc
    from targets.support import litert

    where = f"model '{job.model.name}', openvino int8 calibration"
    litert.check_calibration(job.model.inputs, job.calibration, options.calibration_samples, where)
    samples = list(litert.representative_dataset(job.calibration, job.model.inputs, options.calibration_samples)())
    names = {op.get_friendly_name() for op in model.get_ordered_ops()}
    unknown = [n for n in options.ignored_scope if n not in names]
    if unknown:
        raise IncompatibleModel(
            f"openvino int8: `ignored_scope` names {unknown}, which are not nodes of the converted model; "
            "use node names from the report (localization or repair) of this model"
        )
    scope = nncf.IgnoredScope(names=list(options.ignored_scope)) if options.ignored_scope else None
    from tfship.compat.openvino import min_max_parameters, nncf_logger

    # Activation ranges: the min and max over every calibration sample, as the TFLite
    # calibrator takes them. NNCF's default averages each sample's own min and max, which
    # fed one sample at a time clips the tails (a normal input clipped at 1.7 sigma: the
    # tiny classifier lost 2% accuracy, max error 0.96; 0.036 with global min/max).
    advanced = min_max_parameters()
    logger = nncf_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # its INFO lines (each quantizer it skips) go to the console otherwise
    try:
        with _quiet():
            quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples), ignored_scope=scope, advanced_parameters=advanced)
    except Exception as exc:
        raise ConversionError(f"NNCF could not quantize model '{job.model.name}': {type(exc).__name__}: {' '.join(str(exc).split())[:500]}") from exc
    finally:
        logger.setLevel(level)
    quantizers = sum(1 for op in quantized.get_ordered_ops() if op.get_type_name() == "FakeQuantize")
    if not quantizers:
        raise IncompatibleModel(
            f"openvino int8: NNCF placed no quantizer in model '{job.model.name}': it has no operation NNCF quantizes "
            "(MatMul, Convolution, ...) outside the ignored scope. Drop `int8` from the openvino `variants`."
        )
    return quantized, quantizers, nncf.__version__


class OpenVINOTarget(Target):
    name = "openvino"
    description = "OpenVINO IR (fp32, fp16, bf16, int8 via NNCF) run by OpenVINO's CPU plugin, precision read back"
    Options = OpenVINOOptions

    def variants(self, options: OpenVINOOptions) -> tuple[str, ...]:
        return tuple(options.variants)

    def default_tolerance(self, variant: str) -> Tolerance:
        return DEFAULT_TOLERANCES.get(variant, DEFAULT_TOLERANCES["fp32"])

    def memory_factor(self, options: OpenVINOOptions, weight_bytes: int) -> float | None:
        """The target's own measured factor (admission's table does not list it)."""
        return MEMORY_FACTOR

    def check_options(self, options: OpenVINOOptions, model: dict) -> list[tuple[str, str]]:
        problems = []
        # A missing openvino package is the config loader's problem (pipeline.extras), named once.
        if "int8" in options.variants and installed("openvino") and not installed("nncf"):
            problems.append(("variants", f"the int8 variant quantizes with NNCF, which is not installed: `{EXTRA_INSTALL}`"))
        if not options.variants:
            problems.append(("variants", f"expected at least one of: {', '.join(VARIANTS)}"))
        duplicates = sorted({v for v in options.variants if options.variants.count(v) > 1})
        if duplicates:
            problems.append(("variants", f"variant(s) listed twice: {', '.join(duplicates)}"))
        if options.calibration_samples < 1:
            problems.append(("calibration_samples", "expected a positive number of samples"))
        data = model.get("data")
        if "int8" in options.variants and data is not None and data.samples < options.calibration_samples:
            problems.append((
                "calibration_samples",
                f"int8 calibrates on {options.calibration_samples} samples but `data.samples` is {data.samples}; raise data.samples or lower calibration_samples",
            ))
        if options.ignored_scope and "int8" not in options.variants:
            problems.append(("ignored_scope", "applies to the int8 variant only; add int8 to `variants` or remove this key"))
        if options.repair and "int8" not in options.variants:
            problems.append(("repair", "repairs the int8 variant only; add int8 to `variants` or remove this key"))
        if options.repair_conversions < 1:
            problems.append(("repair_conversions", "expected at least 1 conversion"))
        if options.repair_seconds <= 0:
            problems.append(("repair_seconds", "expected a positive number of seconds"))
        return problems

    def build(self, job: BuildInputs) -> list[Artifact]:
        """Convert once; every variant is saved (and int8 quantized) on its own: one that
        fails is an error of its own and the others are kept."""
        ov = require_openvino()
        from targets.support import litert

        options: OpenVINOOptions = job.target.options
        layers = litert.keras_layer_names(job.loaded.obj)
        progress.stage(job.model.name, self.name, "convert")
        start = time.perf_counter()
        model = _convert(job, layers)
        seconds = time.perf_counter() - start
        inputs, outputs, fixed = _interface(model, job.model)
        common = {"openvino_version": ov.get_version(), "conversion_seconds": round(seconds, 3), "inputs": inputs, "outputs": outputs,
                  "device": "CPU", "pin_precision": options.pin_precision}
        if fixed:
            common["fixed_dims"] = fixed
        artifacts: list[Artifact] = []
        saved: dict[str, tuple[str, ...]] = {}
        # fp32 before bf16 (which shares its files), fp16 last (the others start from float32 constants).
        for variant in sorted(options.variants, key=BUILD_ORDER.index):
            try:
                artifacts.append(self._variant(job, options, model, variant, common, saved))
            except PipelineError as exc:
                artifacts.append(Artifact.failed(variant, exc, dict(common)))
            except Exception as exc:  # a bug here must not cost the other variants; it says "unexpected"
                artifacts.append(Artifact.failed(variant, ConversionError(f"unexpected {type(exc).__name__}: {exc}"), dict(common)))
        order = {v: i for i, v in enumerate(options.variants)}
        artifacts.sort(key=lambda a: order[a.variant])
        sizes = {a.variant: a.info["size_bytes"] for a in artifacts if a.error is None}
        if "fp32" in sizes:
            for a in artifacts:
                if a.error is None:
                    a.info["size_vs_fp32"] = round(a.info["size_bytes"] / sizes["fp32"], 3)
        return artifacts

    def _variant(self, job: BuildInputs, options: OpenVINOOptions, model, variant: str, common: dict, saved: dict) -> Artifact:
        hint = HINT[variant] if (options.pin_precision or variant == "bf16") else None
        info = dict(common, inference_precision_hint=hint, precision_class=PRECISION_CLASS[variant])
        out = job.out_dir
        start = time.perf_counter()
        if variant == "bf16" and "fp32" in saved:
            files = saved["fp32"]
            info["same_ir_as"] = "fp32"
        elif variant == "int8":
            progress.stage(job.model.name, self.name, "quantize int8 (NNCF)")
            quantized, quantizers, nncf_version = _quantize(model, job, options)
            files = tuple(_save(quantized, out / "int8.xml", fp16=False))
            info.update(nncf_version=nncf_version, calibration_samples=options.calibration_samples, fake_quantize=quantizers,
                        ops=_op_counts(quantized))
            if options.ignored_scope:
                info["ignored_scope"] = list(options.ignored_scope)
        else:
            files = tuple(_save(model, out / f"{variant}.xml", fp16=variant == "fp16"))
        info.setdefault("ops", _op_counts(model))
        info["weights"] = "float16" if variant == "fp16" else ("int8 (FakeQuantize)" if variant == "int8" else "float32")
        info["save_seconds"] = round(time.perf_counter() - start, 3)
        info["size_bytes"] = sum((out / f).stat().st_size for f in files)
        saved[variant] = files
        return Artifact(variant=variant, files=files, tolerance=DEFAULT_TOLERANCES[variant], info=info)

    def open(self, target_dir: Path, artifact: Artifact, threads: int | None = None) -> OpenVINORunner:
        info = artifact.info or {}
        variant = artifact.variant
        if variant == "bf16" and "BF16" not in device_capabilities():
            raise TargetUnavailable(
                "openvino/bf16: this CPU does not run bfloat16 (OpenVINO's CPU OPTIMIZATION_CAPABILITIES has no BF16), "
                "so the bf16 variant cannot be checked here; check it on a CPU with AVX512-BF16 or AMX"
            )
        outputs = [o["name"] for o in info.get("outputs", [])]
        hint = info.get("inference_precision_hint", HINT.get(variant, "f32")) if info else HINT.get(variant, "f32")
        return OpenVINORunner(Path(target_dir) / artifact.files[0], outputs, hint=hint,
                              precision_class=info.get("precision_class") or PRECISION_CLASS.get(variant), threads=threads)

    def repair_variants(self, options: OpenVINOOptions) -> tuple[str, ...]:
        return ("int8",) if options.repair and "int8" in options.variants else ()

    def repair(self, job: BuildInputs, artifact: Artifact, entry: dict, verify, log):
        """NNCF's ignored scope as the selective-float recipe (targets/support/openvino_repair.py)."""
        import dataclasses

        from targets.support import litert, openvino_repair

        if artifact.variant != "int8" or artifact.error is not None:
            return None
        options: OpenVINOOptions = job.target.options
        float_model = _convert(job, litert.keras_layer_names(job.loaded.obj))

        def quantize(ignored: tuple[str, ...]):
            return _quantize(float_model, job, dataclasses.replace(options, ignored_scope=ignored))

        def save(model, path: Path) -> list[str]:
            return _save(model, path, fp16=False)

        return openvino_repair.repair_int8(job, artifact, entry, verify, log, float_model, quantize, save, DEFAULT_TOLERANCES["int8"])

    def tensor_probe(self, target_dir, artifact, model, debug_dir):
        from pipeline.localize.probes import OpenVINOProbe

        if artifact.variant == "bf16" and "BF16" not in device_capabilities():
            return None
        hint = (artifact.info or {}).get("inference_precision_hint", HINT.get(artifact.variant))
        return OpenVINOProbe(Path(target_dir) / artifact.files[0], tuple(model.output_names), hint, debug_dir)

    def options_for_variant(self, options, variant):
        import dataclasses

        return dataclasses.replace(options, variants=(variant,))


TARGET = OpenVINOTarget()
