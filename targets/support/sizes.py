"""Sizes known before converting: the weights a traced function carries, and the
2 GB FlatBuffer limit that bounds a single-file TFLite model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.errors import IncompatibleModel

# A FlatBuffer addresses its contents with signed 32-bit offsets: one .tflite file
# holds at most 2 GiB, weights included.
FLATBUFFER_LIMIT = 2**31
# Stored bytes per float32 weight byte: float16 halves them, the int8-weight variants
# keep a quarter (their biases and small tensors stay wider: a lower bound).
STORED_FRACTION = {"float32": 1.0, "float16": 0.5, "dynamic_range": 0.25, "int8": 0.25, "int16x8": 0.25}


@dataclass(frozen=True)
class WeightSize:
    """Bytes of a model's weights, or why they could not be counted (`bytes` None).

    An unknown size is never read as small: every choice made on it takes the side that
    works at any size (`at_least` is True), and the choice says so (`note`)."""

    bytes: int | None
    why_unknown: str = ""

    @property
    def known(self) -> bool:
        return self.bytes is not None

    def at_least(self, limit: float) -> bool:
        return self.bytes is None or self.bytes >= limit

    def note(self, choice: str) -> str:
        """One sentence for the report: the size could not be counted, so `choice`."""
        return f"the weights could not be sized ({self.why_unknown}), so {choice}"


def weight_size(traced: Any, float32_only_from: int | None = None) -> WeightSize:
    """Bytes of the variables a signature-fixed tf.function reads. With
    `float32_only_from`, only float32 variables of at least that many bytes count (what
    a stand-in would replace). A variable whose size cannot be read makes the whole size
    unknown: a partial sum would be read as small."""
    from pipeline.stages.load import variable_bytes
    from pipeline.usercode import first_line

    try:
        variables = traced.get_concrete_function().variables
    except Exception as exc:  # tracing again failed here: said, and the size is unknown
        return WeightSize(None, f"the traced function gave no concrete function: {type(exc).__name__}: {first_line(exc)[:200]}")
    total = 0
    for v in variables:
        try:
            n = variable_bytes(v)
        except Exception as exc:  # a variable without a readable value (uninitialized, remote)
            return WeightSize(None, f"variable {v.name!r} could not be read: {type(exc).__name__}: {first_line(exc)[:200]}")
        if float32_only_from is None or (v.dtype == "float32" and n >= float32_only_from):
            total += n
    return WeightSize(total)


def check_flatbuffer_fits(model: str, variant: str, size: WeightSize) -> str:
    """Refuse a TFLite variant whose weights alone would not fit in one FlatBuffer,
    before the converter runs (it would build the whole model in memory, then fail).
    Returns a note when the size is unknown: the check could not run, the converter
    decides (it fails on a file over 2 GiB)."""
    if not size.known:
        return size.note("the 2 GiB FlatBuffer limit was not checked before converting: the converter decides")
    weights = size.bytes
    stored = int(weights * STORED_FRACTION.get(variant, 1.0))
    if stored < FLATBUFFER_LIMIT:
        return ""
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
