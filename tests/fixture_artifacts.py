"""Artifacts made by hand, the way other tools make them (no tfship involved): a
SavedModel, TFLite files converted from it, an ONNX file from tf2onnx."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def build_module(seed: int = 0, shift: float = 0.0):
    """y = tanh(x @ W1 + b1) @ W2 + b2 with fixed random weights; `shift` seeds a breakage."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    class Net(tf.Module):
        def __init__(self):
            super().__init__()
            self.w1 = tf.Variable(rng.normal(0, 0.5, (8, 16)).astype(np.float32))
            self.b1 = tf.Variable(rng.normal(0, 0.1, (16,)).astype(np.float32))
            self.w2 = tf.Variable(rng.normal(0, 0.5, (16, 3)).astype(np.float32))
            self.b2 = tf.Variable((rng.normal(0, 0.1, (3,)) + shift).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.matmul(tf.tanh(tf.matmul(x, self.w1) + self.b1), self.w2) + self.b2}

    return Net()


def save(module, folder: Path) -> Path:
    import tensorflow as tf

    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve.get_concrete_function()})
    return folder


def to_tflite(saved_model: Path, out: Path, variant: str = "float32") -> Path:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if variant == "int8":
        rng = np.random.default_rng(1)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ({"x": rng.uniform(-1, 1, (1, 8)).astype(np.float32)} for _ in range(64))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    out.write_bytes(converter.convert())
    return out


def to_onnx(module, out: Path) -> Path:
    import tensorflow as tf
    import tf2onnx

    tf2onnx.convert.from_function(module.serve, input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x")], opset=17, output_path=str(out))
    return out
