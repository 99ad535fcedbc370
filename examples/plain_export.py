"""The image_cnn conversions written by hand, in one process, with the TensorFlow,
TFLite, tf2onnx and onnxruntime APIs called directly: the yardstick for what tfship's
own machinery (workers, staging, hashing, reports) costs on top.

    python -m examples.plain_export [--parity] [--out DIR]

Prints seconds per step and in total. With --parity it also runs every artifact on
the same 256 held-out samples and prints max_abs against the eager model, as tfship
does (without tfship's per-case bookkeeping).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODEL = Path(__file__).resolve().parent / "build" / "image_cnn.keras"
TFLITE_VARIANTS = ("float32", "float16", "dynamic_range", "int8", "int16x8")


class Clock:
    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []

    def __call__(self, name, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.steps.append((name, time.perf_counter() - start))
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parity", action="store_true", help="also run every artifact and compare with eager")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a temp folder, removed)")
    args = parser.parse_args(argv)
    wall = time.perf_counter()
    clock = Clock()
    import numpy as np
    import tensorflow as tf

    clock.steps.append(("import tensorflow", time.perf_counter() - wall))
    import keras

    from examples import image_cnn

    if not MODEL.exists():
        image_cnn.build(MODEL)
    out = args.out or Path(tempfile.mkdtemp(prefix="plain-export-"))
    out.mkdir(parents=True, exist_ok=True)
    inputs, _ = image_cnn.eval_data()
    images = inputs["image"]

    model = clock("load .keras", keras.saving.load_model, MODEL, compile=False)
    spec = tf.TensorSpec([None, 32, 32, 3], tf.float32, name="image")
    serve = tf.function(lambda image: {"probs": model(image, training=False)}, input_signature=[spec])
    module = tf.Module()
    module.keras_variables = [v.value for v in model.weights]  # Keras 3 weights are not tf.Module-tracked
    module.serve = serve
    saved = out / "saved_model"
    clock("savedmodel", tf.saved_model.save, module, str(saved), signatures={"serving_default": serve.get_concrete_function()})

    def representative():
        for i in range(64):
            yield {"image": images[i : i + 1]}

    def to_tflite(variant: str, saved_dir: Path) -> bytes:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_dir))
        if variant != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif variant == "int8":
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        elif variant == "int16x8":
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        return converter.convert()

    tflite = {}
    for variant in TFLITE_VARIANTS:
        tflite[variant] = clock(f"tflite {variant}", to_tflite, variant, saved)
        (out / f"{variant}.tflite").write_bytes(tflite[variant])

    import onnxruntime as ort
    import tf2onnx

    onnx_model, _ = clock("onnx", tf2onnx.convert.from_function, serve, input_signature=[spec], opset=17, output_path=str(out / "model.onnx"))

    def optimize() -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(out / "model.optimized.onnx")
        ort.InferenceSession(str(out / "model.onnx"), options, providers=["CPUExecutionProvider"])

    clock("onnx optimize", optimize)

    def jit_saved_model(name: str, batches: tuple[int | None, ...], alias: bool) -> dict:
        functions = {}
        for batch in batches:
            fixed = tf.TensorSpec([batch, 32, 32, 3], tf.float32, name="image")
            functions[batch] = tf.function(lambda image: {"probs": model(image, training=False)}, input_signature=[fixed], jit_compile=True)
        holder = tf.Module()
        holder.keras_variables = [v.value for v in model.weights]
        first = functions[batches[-1]]
        holder.xla = first
        options = tf.saved_model.SaveOptions(function_aliases={"tpu_func": first}) if alias else None
        tf.saved_model.save(holder, str(out / name), signatures={"serving_default": first.get_concrete_function()}, options=options)
        for batch, fn in functions.items():
            if batch is None:
                continue
            sample = tf.zeros([batch, 32, 32, 3])
            for stage in ("hlo", "stablehlo"):
                (out / f"{name}_b{batch}.{stage}.txt").write_text(fn.experimental_get_compiler_ir(sample)(stage=stage))
        return functions

    clock("xla", jit_saved_model, "xla", (None, 1), alias=False)
    clock("tpu", jit_saved_model, "tpu", (1, 8), alias=True)

    def edgetpu() -> bytes:
        fixed = tf.TensorSpec([1, 32, 32, 3], tf.float32, name="image")
        fn = tf.function(lambda image: {"probs": model(image, training=False)}, input_signature=[fixed])
        holder = tf.Module()
        holder.keras_variables = [v.value for v in model.weights]
        holder.serve = fn
        tf.saved_model.save(holder, str(out / "edgetpu_sm"), signatures={"serving_default": fn.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(str(out / "edgetpu_sm"))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
        return converter.convert()

    (out / "edgetpu.tflite").write_bytes(clock("edgetpu", edgetpu))
    convert_total = time.perf_counter() - wall

    if args.parity:
        from ai_edge_litert.interpreter import Interpreter

        reference = np.concatenate([model(images[i : i + 32], training=False).numpy() for i in range(0, len(images), 32)])

        def run_chunks(fn, size=32):
            return np.concatenate([fn(images[i : i + size]) for i in range(0, len(images), size)])

        def litert(content: bytes, size: int):
            runner = Interpreter(model_content=content).get_signature_runner()
            detail_in = runner.get_input_details()["image"]
            detail_out = runner.get_output_details()["probs"]

            def call(x):
                if detail_in["dtype"] != np.float32:
                    scale, zero = detail_in["quantization"]
                    x = np.clip(np.round(x / scale + zero), np.iinfo(detail_in["dtype"]).min, np.iinfo(detail_in["dtype"]).max).astype(detail_in["dtype"])
                y = runner(image=x)["probs"]
                if detail_out["dtype"] != np.float32:
                    scale, zero = detail_out["quantization"]
                    y = (y.astype(np.float32) - zero) * scale
                return y

            return run_chunks(call, size)

        results = {}
        loaded = tf.saved_model.load(str(saved)).signatures["serving_default"]
        results["savedmodel"] = clock("parity savedmodel", run_chunks, lambda x: loaded(image=tf.constant(x))["probs"].numpy())
        for variant, content in tflite.items():
            results[f"tflite {variant}"] = clock(f"parity tflite {variant}", litert, content, 32)
        session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        results["onnx"] = clock("parity onnx", run_chunks, lambda x: session.run(["probs"], {"image": x})[0])
        xla_loaded = tf.saved_model.load(str(out / "xla")).signatures["serving_default"]
        results["xla"] = clock("parity xla", run_chunks, lambda x: xla_loaded(image=tf.constant(x))["probs"].numpy())
        results["edgetpu"] = clock("parity edgetpu", litert, (out / "edgetpu.tflite").read_bytes(), 1)
        for name, values in results.items():
            print(f"max_abs {name:24} {float(np.abs(values - reference).max()):.3g}")
    total = time.perf_counter() - wall
    for name, seconds in clock.steps:
        print(f"{name:28} {seconds:7.2f} s")
    print(f"{'conversions (wall)':28} {convert_total:7.2f} s")
    print(f"{'total (wall)':28} {total:7.2f} s")
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
