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

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.errors import ConversionError
from pipeline.runtimes.savedmodel import FrozenGraphRunner, SavedModelRunner
from pipeline.target import Artifact, BuildInputs, Target
from pipeline.tolerance import BF16, FP32

GATE_PASS = "XLA-compilable on CPU; no known TPU-incompatible ops"
ALIAS = "tpu_func"

# The bf16 precision class (pipeline.tolerance): bfloat16 keeps 8 significant bits,
# so each rounding is off by at most 2^-9 (0.2 %) relative and a network's outputs
# carry the sum of many such roundings; the class's SQNR, mean-error and tail limits
# were measured on the calibration corpus (examples/calibrate_budgets.py).
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
    # Static sizes per dynamic non-batch dimension (e.g. {seq: [32, 64]}): tpu_func is
    # compiled at each, and serving pads inputs up to the next one and slices outputs back.
    dim_buckets: dict[str, tuple[int, ...]] = field(default_factory=dict)


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


def static_shapes(config, options: TpuOptions) -> list[tuple[int, dict[str, int]]]:
    """Every (batch, {dimension: bucket}) tpu_func is compiled at, in serving's branch order."""
    dims = config.dynamic_dims
    combos = list(itertools.product(*(sorted(options.dim_buckets[d]) for d in dims)))
    return [(b, dict(zip(dims, combo))) for b in sorted(options.batch_sizes) for combo in combos]


def output_dim_axes(config, loaded) -> dict[str, list[tuple[int, str]]]:
    """Which output axes follow which dynamic input dimension (e.g. an encoder's
    [batch, seq, hidden]), found by tracing at two sizes of each dimension: serving
    slices those axes back to the request's size after padding to a bucket."""
    from pipeline.stages.trace import make_function

    def shapes(dims):
        outputs = make_function(config, loaded, batch=1, dims=dims).get_concrete_function().structured_outputs
        return {name: list(t.shape) for name, t in outputs.items()}

    base_dims = {d: 5 for d in config.dynamic_dims}
    base = shapes(base_dims)
    axes: dict[str, list[tuple[int, str]]] = {name: [] for name in base}
    for dim in config.dynamic_dims:
        other = shapes({**base_dims, dim: 6})
        for name, shape in other.items():
            for axis in range(1, len(shape)):
                if shape[axis] == base[name][axis]:
                    continue
                if (base[name][axis], shape[axis]) != (5, 6):
                    raise ConversionError(
                        f"output '{name}' axis {axis} changes with dimension '{dim}' but not one to one "
                        f"({dim}=5 gives {base[name][axis]}, {dim}=6 gives {shape[axis]}): padded TPU outputs cannot be sliced back. "
                        f"Fix: give '{dim}' a fixed size in the config for the tpu target"
                    )
                axes[name].append((axis, dim))
    return axes


def _padding_server(config, tpu_func, options: TpuOptions, out_axes: dict[str, list[tuple[int, str]]]):
    """serving_default: any batch 1..max(batch_sizes) and any size of each dynamic dimension
    up to its largest bucket, padded (zeros) to the next compiled shape; outputs sliced back."""
    import tensorflow as tf

    from pipeline.stages.trace import input_signature

    shapes = static_shapes(config, options)
    sizes = tuple(sorted(options.batch_sizes))
    dims = config.dynamic_dims
    buckets = {d: tuple(sorted(options.dim_buckets[d])) for d in dims}
    carrier = {d: next((i, axis) for i, spec in enumerate(config.inputs) for axis, name in spec.dynamic_dims if name == d) for d in dims}
    per_batch = len(shapes) // len(sizes)

    def next_index(value, choices):
        return tf.reduce_sum(tf.cast(tf.constant(choices) < value, tf.int32))

    def serve(*args):
        n = tf.shape(args[0])[0]
        tf.debugging.assert_less_equal(n, sizes[-1], message=f"batch larger than the largest compiled TPU batch size {sizes[-1]}; split the request")
        actual = {d: tf.shape(args[carrier[d][0]])[carrier[d][1]] for d in dims}
        index = next_index(n, sizes) * per_batch
        stride = per_batch
        for d in dims:
            tf.debugging.assert_less_equal(actual[d], buckets[d][-1], message=f"{d} larger than its largest TPU bucket {buckets[d][-1]}")
            stride //= len(buckets[d])
            index += next_index(actual[d], buckets[d]) * stride

        def branch(batch, bucket):
            def run():
                padded = []
                for spec, value in zip(config.inputs, args):
                    target = [batch, *spec.sample_shape(bucket)] if spec.batched else list(value.shape)
                    pad = [[0, target[0] - n]] + [[0, 0]] * (len(value.shape) - 1)
                    for axis, name in spec.dynamic_dims:
                        pad[axis] = [0, bucket[name] - actual[name]]
                    padded.append(tf.ensure_shape(tf.pad(value, pad), target))
                outputs = tpu_func(*padded)
                result = {}
                for name, t in outputs.items():
                    begin, size = [0] * len(t.shape), [-1] * len(t.shape)
                    size[0] = n
                    for axis, dim in out_axes.get(name, ()):
                        size[axis] = actual[dim]
                    result[name] = tf.slice(t, begin, size)
                return result

            return run

        return tf.switch_case(index, [branch(b, bucket) for b, bucket in shapes])

    return tf.function(serve, input_signature=input_signature(config))


def _check_buckets(options: TpuOptions, model: dict) -> list[tuple[str, str]]:
    """Every dynamic non-batch dimension needs static buckets that cover the sizes parity tests."""
    problems = []
    dims = list(dict.fromkeys(name for spec in model["inputs"] for _, name in spec.dynamic_dims))
    data = model.get("data")
    tested = dict(data.shapes) if data is not None else {}
    for name in dims:
        buckets = options.dim_buckets.get(name)
        if not buckets:
            example = max(tested.get(name, (32,)))
            problems.append(("dim_buckets", f"dimension '{name}' is dynamic and a TPU compiles static shapes; give its sizes, e.g. `dim_buckets: {{{name}: [{example}]}}` (inputs are padded up to the next size)"))
        elif any(b < 1 for b in buckets) or len(set(buckets)) != len(buckets):
            problems.append(("dim_buckets", f"{name}: expected distinct positive sizes, got {list(buckets)}"))
        elif name in tested and max(tested[name]) > max(buckets):
            problems.append(("dim_buckets", f"{name}: parity tests size {max(tested[name])} (data.shapes) but the largest bucket is {max(buckets)}; add a bucket of at least {max(tested[name])}"))
    for name in options.dim_buckets:
        if name not in dims:
            problems.append(("dim_buckets", f"no dynamic dimension named {name!r}; dynamic dimensions: {', '.join(dims) or 'none'}"))
    return problems


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
        problems += _check_buckets(options, model)
        return problems

    def build(self, job: BuildInputs) -> list[Artifact]:
        import tensorflow as tf

        from pipeline.stages.savedmodel import write_saved_model
        from pipeline.stages.trace import input_signature, make_function
        from targets.support import xla as sx

        config, options, out = job.model, job.target.options, job.out_dir
        sizes = tuple(sorted(options.batch_sizes))
        shapes = static_shapes(config, options)
        where = f"tpu target of model '{config.name}'"

        # Gate, before anything is written: the op scan first (it names op and layer),
        # then XLA compilation at every static shape.
        layers = sx.keras_layer_names(job.loaded.obj)
        concrete = make_function(config, job.loaded).get_concrete_function()
        findings = sx.scan_tpu_ops(concrete, layers)
        if findings:
            raise sx.tpu_gate_error(config.name, findings)
        static_args = {sx.shape_dir(b, d): [tf.constant(v) for v in sx.static_inputs(config, job.calibration, b, d).values()] for b, d in shapes}
        for b, d in shapes:
            sx.xla_gate(make_function(config, job.loaded, batch=b, dims=d, jit_compile=True), static_args[sx.shape_dir(b, d)], sx.shape_text(b, d), config.name, where)
        out_axes = output_dim_axes(config, job.loaded) if config.dynamic_dims else {}

        names = config.input_names
        call = job.loaded.call

        def tpu_body(*args):
            return call(dict(zip(names, args)))

        tpu_func = tf.function(tpu_body, jit_compile=True, reduce_retracing=False)
        compile_seconds = {}
        ir_files: list[str] = []
        for b, d in shapes:
            key = sx.shape_dir(b, d)
            tpu_func.get_concrete_function(*input_signature(config, b, d))
            compile_seconds[key] = round(sx.timed_compile(tpu_func, static_args[key])[0], 4)
            ir_files += sx.write_compiler_ir(tpu_func, static_args[key], out / "ir" / key, f"ir/{key}", sx.module_symbol(config.name))
        determinism = sx.determinism_check(tpu_func, static_args[sx.shape_dir(*shapes[-1])], config.name, where)
        serving = _padding_server(config, tpu_func, options, out_axes)
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
            "gate_checked": {
                "xla_compile_batch_sizes": list(sizes),
                **({"xla_compile_shapes": [sx.shape_dir(b, d) for b, d in shapes]} if config.dynamic_dims else {}),
                "op_scan_source": sx.TPU_SCAN_SOURCE,
            },
            **({"gate_ignored": ignored} if (ignored := sx.ignored_ops(concrete, layers)) else {}),
            "batch_sizes": list(sizes),
            **({"dim_buckets": {d: sorted(v) for d, v in options.dim_buckets.items()}, "sliced_output_axes": {k: [list(a) for a in v] for k, v in out_axes.items() if v}} if config.dynamic_dims else {}),
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
        unchecked = {
            "ir": "HLO and StableHLO of tpu_func, for reading: parity runs tpu_func through the SavedModel on CPU, not these files",
            "converter_options.txtpb": "options for the Cloud TPU Inference Converter, not a model",
        }
        artifacts = [Artifact(variant="fp32", files=("saved_model", "ir", "converter_options.txtpb"), tolerance=FP32_XLA, info=fp32_info, unchecked=unchecked)]
        if options.precision == "bfloat16":
            counts = sx.write_bf16_emulation(make_function(config, job.loaded).get_concrete_function(), config, out / "bf16_emulation")
            bf16_info = {**common, "emulated": True, "what": sx.BF16_EMULATION_NOTE, **counts, "budget": "the bf16 precision class"}
            artifacts.append(Artifact(variant="bf16", files=("bf16_emulation",), tolerance=BF16_EMULATION, info=bf16_info))
        return artifacts

    def diagnose(self, job: BuildInputs, artifact: Artifact, parity: dict) -> dict | None:
        """A model with dynamic dimensions runs padded to a bucket here: when the shapes
        that needed padding fail, the model is not padding-safe (nothing masks the padding)."""
        by_shape = parity.get("by_shape") or {}
        buckets = job.target.options.dim_buckets
        padded, failed = [], []
        for label, row in by_shape.items():
            dims = dict(item.split("=") for item in label.split(","))
            to = {d: min(b for b in buckets[d] if b >= int(v)) for d, v in dims.items() if d in buckets}
            needs = {d: b for d, b in to.items() if b != int(dims[d])}
            if needs:
                padded.append(label)
            if not row["passed"]:
                failed.append((label, needs))
        if not failed or not padded:
            return None
        clean = [label for label, row in by_shape.items() if row["passed"] and label not in padded]
        where = "; ".join(f"{label} padded to {', '.join(f'{d}={b}' for d, b in needs.items())}" if needs else f"{label} (no padding)" for label, needs in failed)
        reason = (
            f"fails where inputs are padded to a TPU bucket ({where})"
            + (f" and passes unpadded at {', '.join(clean)}" if clean else "")
            + ": the model is not padding-safe, its outputs change when zeros are appended. "
            "Fix: mask the padded positions (Embedding(mask_zero=True), an attention/padding mask input, masked pooling), or choose buckets equal to the lengths served"
        )
        return {"padding": {"failed": [label for label, _ in failed], "padded_shapes": padded}, "reason": reason}

    def open(self, target_dir: Path, artifact: Artifact, threads: int | None = None):
        if artifact.variant == "bf16":
            return FrozenGraphRunner(target_dir / "bf16_emulation")
        # Batches above the largest compiled size are split, as a client would.
        return SavedModelRunner(target_dir / "saved_model", max_batch=max(artifact.info["batch_sizes"]))

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
