"""Sizes known before converting: the weights a traced function carries, and the
2 GB FlatBuffer limit that bounds a single-file TFLite model."""
from __future__ import annotations

from typing import Any

from pipeline.errors import IncompatibleModel

# A FlatBuffer addresses its contents with signed 32-bit offsets: one .tflite file
# holds at most 2 GiB, weights included.
FLATBUFFER_LIMIT = 2**31
# Stored bytes per float32 weight byte: float16 halves them, the int8-weight variants
# keep a quarter (their biases and small tensors stay wider: a lower bound).
STORED_FRACTION = {"float32": 1.0, "float16": 0.5, "dynamic_range": 0.25, "int8": 0.25, "int16x8": 0.25}


def weight_bytes(traced: Any) -> int:
    """Bytes of the variables a signature-fixed tf.function reads (0 when unknown)."""
    try:
        concrete = traced.get_concrete_function()
    except Exception:  # a function that cannot give a concrete function has no countable weights
        return 0
    return sum(v.shape.num_elements() * v.dtype.size for v in concrete.variables if v.shape.is_fully_defined())


def check_flatbuffer_fits(model: str, variant: str, weights: int) -> None:
    """Refuse a TFLite variant whose weights alone would not fit in one FlatBuffer,
    before the converter runs (it would build the whole model in memory, then fail)."""
    stored = int(weights * STORED_FRACTION.get(variant, 1.0))
    if stored < FLATBUFFER_LIMIT:
        return
    fitting = [v for v, fraction in STORED_FRACTION.items() if weights * fraction < FLATBUFFER_LIMIT]
    advice = []
    if fitting:
        sizes = ", ".join(f"{v} ~{weights * STORED_FRACTION[v] / 1e9:.2f} GB" for v in fitting)
        advice.append(f"a variant whose stored weights are under the limit ({sizes}): variants: [{', '.join(fitting)}]")
    advice.append("the onnx target, which writes weights over 2 GB as external data beside the graph")
    raise IncompatibleModel(
        f"tflite/{variant}: model '{model}' has {weights / 1e9:.2f} GB of float32 weights, stored as about "
        f"{stored / 1e9:.2f} GB in a {variant} .tflite; a TFLite file is one FlatBuffer, limited to 2 GiB "
        f"({FLATBUFFER_LIMIT} bytes). Refused before converting.\nFix: " + "; or ".join(advice) + "."
    )
