"""Cloud TPU: a TF2 SavedModel ready for the Cloud TPU Inference Converter, checked on CPU.

Nothing here runs on a TPU. What is checked, on CPU, before anything is written:
XLA compiles the model at every configured static batch size, and no op in the
traced function (or the functions it calls) is on the TPU-incompatible list kept
in `targets.support.xla`. A pass means "XLA-compilable on CPU; no known
TPU-incompatible ops", never "runs on TPU".

Layout of `artifacts/<model>/tpu/`:

    saved_model/                  serving_default (any batch up to max(batch_sizes): pads to the
                                  next configured size, calls tpu_func, slices) and tpu_func, a
                                  jit_compile=True function traced at each static batch size and
                                  recorded under the alias `tpu_func` (meta_info_def.function_aliases)
    ir/b<batch>/hlo.txt           HLO of tpu_func at that batch
    ir/b<batch>/stablehlo.mlir    StableHLO of tpu_func at that batch
    converter_options.txtpb       ConverterOptionsV2 text proto for the Inference Converter
    bf16_emulation/graph.pb, io.json
                                  (precision bfloat16) frozen graph with bfloat16 weights and
                                  bfloat16 matrix-unit operands, float32 accumulation

Variants: `fp32` (the SavedModel's serving_default run with XLA on CPU) and, with
`precision: bfloat16`, `bf16` (the emulation above, run with TensorFlow on CPU).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline.errors import ConversionError
from pipeline.target import Artifact, BuildInputs, Target
from pipeline.tolerance import BF16, FP32

GATE_PASS = "XLA-compilable on CPU; no known TPU-incompatible ops"
ALIAS = "tpu_func"

# The project's bfloat16 budget (pipeline.tolerance.BF16): bfloat16 keeps 8
# significant bits, so each rounding is off by at most 2^-9 (0.2 %) relative; a few
# layers of rounded tensors compound to about 1 % of an output's scale. Hence 1 % of
# the reference range (scale-aware), 2 % relative, and an absolute floor of 1e-2.
BF16_EMULATION = BF16
# The fp32 variant is XLA on CPU against eager TensorFlow: only fusion and
# reassociation differ, so the float32 default applies.
FP32_XLA = FP32


@dataclass(frozen=True)
class TpuOptions:
    batch_sizes: tuple[int, ...] = (1, 8)  # static shapes tpu_func is compiled at; serving pads up to the next one
    precision: Literal["bfloat16", "float32"] = "bfloat16"  # what the converter is told to serve in
    batch_timeout_micros: int = 5000  # converter batching: wait at most this long to fill a batch
    num_batch_threads: int = 4  # converter batching: batches processed in parallel (about one per TPU core)


def converter_options_text(options: TpuOptions) -> str:
    """ConverterOptionsV2 (text proto) for the Cloud TPU Inference Converter.

    Field names from orbax/export/bfloat16_toolkit/converter_options_v2.proto and
    https://cloud.google.com/tpu/docs/v5e-inference-converter.
    """
    sizes = sorted(options.batch_sizes)
    lines = [
        "# Cloud TPU Inference Converter options (ConverterOptionsV2, text format).",
        "# Pass with: --converter_options_string=\"$(cat converter_options.txtpb)\"",
        "tpu_functions {",
        f'  function_alias: "{ALIAS}"',
        "}",
        "batch_options {",
        f"  num_batch_threads: {options.num_batch_threads}",
        f"  max_batch_size: {sizes[-1]}",
        f"  batch_timeout_micros: {options.batch_timeout_micros}",
        *[f"  allowed_batch_sizes: {b}" for b in sizes],
        "  max_enqueued_batches: 100",
        "}",
        f"bfloat16_optimization: {'ENABLED' if options.precision == 'bfloat16' else 'DISABLED'}",
    ]
    return "\n".join(lines) + "\n"


class TpuServingRunner:
    """serving_default of the TPU SavedModel, run on CPU (tpu_func is XLA-compiled on CPU).

    Batches above the largest configured size are split, as a client would.
    """

    output_steps: dict[str, float] = {}

    def __init__(self, path: Path, max_batch: int):
        import tensorflow as tf

        self._tf = tf
        self._fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        self._max = max_batch

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values())))
        parts: dict[str, list] = {}
        for lo in range(0, n, self._max):
            feeds = {name: self._tf.constant(value[lo : lo + self._max]) for name, value in inputs.items()}
            for name, t in self._fn(**feeds).items():
                parts.setdefault(name, []).append(t.numpy())
        return {name: np.concatenate(p, axis=0) for name, p in parts.items()}


def _padding_server(config, tpu_func, sizes: tuple[int, ...]):
    """serving_default: any batch 1..max(sizes), padded to the next compiled size, sliced back."""
    import tensorflow as tf

    from pipeline.stages.trace import input_signature

    sizes = tuple(sorted(sizes))

    def serve(*args):
        n = tf.shape(args[0])[0]
        tf.debugging.assert_less_equal(n, sizes[-1], message=f"batch larger than the largest compiled TPU batch size {sizes[-1]}; split the request")
        index = tf.reduce_sum(tf.cast(tf.constant(sizes) < n, tf.int32))

        def branch(size):
            def run():
                padded = []
                for value in args:
                    pad = [[0, size - n]] + [[0, 0]] * (len(value.shape) - 1)
                    padded.append(tf.ensure_shape(tf.pad(value, pad), [size, *value.shape[1:]]))
                outputs = tpu_func(*padded)
                return {name: t[:n] for name, t in outputs.items()}

            return run

        return tf.switch_case(index, [branch(s) for s in sizes])

    return tf.function(serve, input_signature=input_signature(config))


class TpuTarget(Target):
    name = "tpu"
    description = "Cloud TPU: SavedModel with tpu_func alias for the Inference Converter; gate, fp32 and bf16 emulation checked on CPU"
    Options = TpuOptions

    def variants(self, options):
        return ("fp32", "bf16") if options.precision == "bfloat16" else ("fp32",)

    def check_options(self, options, model):
        problems = []
        sizes = options.batch_sizes
        if not sizes or any(b < 1 for b in sizes):
            problems.append(("batch_sizes", "expected a non-empty list of positive batch sizes"))
        elif len(set(sizes)) != len(sizes):
            problems.append(("batch_sizes", f"duplicate batch sizes in {list(sizes)}"))
        fixed = {s.fixed_batch for s in model["inputs"] if s.batched} - {None}
        if fixed and sizes and set(sizes) != fixed:
            problems.append(("batch_sizes", f"the model's batch dimension is fixed at {next(iter(fixed))}; batch_sizes must be [{next(iter(fixed))}]"))
        if any(not s.batched for s in model["inputs"]):
            problems.append(("", "every input needs a leading batch dimension for TPU batching"))
        if options.batch_timeout_micros < 0 or options.num_batch_threads < 1:
            problems.append(("", "batch_timeout_micros must be >= 0 and num_batch_threads >= 1"))
        return problems

    def build(self, job: BuildInputs) -> list[Artifact]:
        import tensorflow as tf

        from pipeline.stages.savedmodel import write_saved_model
        from pipeline.stages.trace import input_signature, make_function
        from targets.support import xla as sx

        config, options, out = job.model, job.target.options, job.out_dir
        sizes = tuple(sorted(options.batch_sizes))
        where = f"tpu target of model '{config.name}'"

        # Gate, before anything is written: the op scan first (it names op and layer),
        # then XLA compilation at every static shape.
        layers = sx.keras_layer_names(job.loaded.obj)
        findings = sx.scan_tpu_ops(make_function(config, job.loaded).get_concrete_function(), layers)
        if findings:
            raise sx.tpu_gate_error(config.name, findings)
        static_args = {b: [tf.constant(v) for v in sx.static_inputs(config, job.calibration, b).values()] for b in sizes}
        for b in sizes:
            sx.xla_gate(make_function(config, job.loaded, batch=b, jit_compile=True), static_args[b], b, config.name, where)

        names = config.input_names
        call = job.loaded.call

        def tpu_body(*args):
            return call(dict(zip(names, args)))

        tpu_func = tf.function(tpu_body, jit_compile=True, reduce_retracing=False)
        compile_seconds = {}
        ir_files: list[str] = []
        for b in sizes:
            tpu_func.get_concrete_function(*input_signature(config, b))
            compile_seconds[f"b{b}"] = round(sx.timed_compile(tpu_func, static_args[b])[0], 4)
            ir_files += sx.write_compiler_ir(tpu_func, static_args[b], out / "ir" / f"b{b}", f"ir/b{b}")
        determinism = sx.determinism_check(tpu_func, static_args[sizes[-1]], config.name, where)
        serving = _padding_server(config, tpu_func, sizes)
        try:
            write_saved_model(
                out / "saved_model",
                job.loaded,
                {"serving_default": serving},
                functions={ALIAS: tpu_func},
                options=tf.saved_model.SaveOptions(function_aliases={ALIAS: tpu_func}),
            )
        except Exception as exc:
            raise ConversionError(f"{where}: writing the TPU SavedModel failed: {type(exc).__name__}: {exc}") from exc
        (out / "converter_options.txtpb").write_text(converter_options_text(options))

        common = {
            "gate": GATE_PASS,
            "gate_checked": {"xla_compile_batch_sizes": list(sizes), "op_scan_source": sx.TPU_SCAN_SOURCE},
            "batch_sizes": list(sizes),
            "precision": options.precision,
            "function_alias": ALIAS,
            "runs_on": "CPU",
        }
        fp32_info = {
            **common,
            "emulated": False,
            "what": "serving_default of saved_model/ (pads to the next batch size, XLA-compiled tpu_func) run on CPU in float32",
            "compile_seconds": compile_seconds,
            "determinism": determinism,
            "ir_files": ir_files,
        }
        artifacts = [Artifact(variant="fp32", files=("saved_model", "ir", "converter_options.txtpb"), tolerance=FP32_XLA, info=fp32_info)]
        if options.precision == "bfloat16":
            counts = sx.write_bf16_emulation(make_function(config, job.loaded).get_concrete_function(), config, out / "bf16_emulation")
            bf16_info = {**common, "emulated": True, "what": sx.BF16_EMULATION_NOTE, **counts,
                         "budget": "atol 1e-2, rtol 2e-2, 1% of the output's reference range (bfloat16 rounds to 2^-9 relative per step)"}
            artifacts.append(Artifact(variant="bf16", files=("bf16_emulation",), tolerance=BF16_EMULATION, info=bf16_info))
        return artifacts

    def open(self, target_dir: Path, artifact: Artifact):
        from targets.support import xla as sx

        if artifact.variant == "bf16":
            return sx.GraphRunner(target_dir / "bf16_emulation")
        return TpuServingRunner(target_dir / "saved_model", max(artifact.info["batch_sizes"]))

    def tensor_probe(self, target_dir, artifact, model, debug_dir):
        from pipeline.localize import probes

        if artifact.variant == "bf16":  # the emulation graph is already frozen: fetch its rounded tensors
            return probes.frozen_graph_probe(Path(target_dir) / "bf16_emulation", debug_dir, kind="bf16-emulation")
        import tensorflow as tf

        loaded = tf.saved_model.load(str(Path(target_dir) / "saved_model"))
        concretes = {int(c.inputs[0].shape[0]): c for c in getattr(loaded, ALIAS).concrete_functions}
        batch = max(b for b in concretes if b <= 32) if any(b <= 32 for b in concretes) else min(concretes)
        # tpu_func at one static batch, inlined and compiled with XLA again with extra fetches.
        return probes.function_probe(concretes[batch], model.input_names, debug_dir, jit=True, fixed_batch=batch, kind="xla (tpu_func)")

    def options_for_variant(self, options, variant):
        import dataclasses

        return dataclasses.replace(options, precision="bfloat16" if variant == "bf16" else "float32")


TARGET = TpuTarget()
