"""Parity budgets. Pure Python: the config loader uses this before TensorFlow loads.

An element passes when |artifact - reference| <= atol_eff + rtol * |reference|, where

    atol_eff = max(atol, steps * output_step, range_fraction * reference_range)

`output_step` is the artifact's own quantization step for that output (0 for float
outputs), so quantized budgets are written in units of the step and of the
reference's range rather than as one global atol. That elementwise budget is a tail
check: at most `mismatch_fraction` of the elements may exceed it.

Beside the tail, pooled statistics decide (pipeline.verdict): the output's SQNR in dB
(`min_sqnr_db`), its mean |error| as a fraction of the reference's range
(`max_mean_error`), and for the classifier output, top-1 / top-k agreement
(`min_top1`, `min_topk` with `top_k`) and the accuracy drop against labels
(`max_accuracy_drop`). `None` leaves a criterion out.

No criterion asks for less than `floor_ulps` units in the last place of the output's
own magnitude in its own dtype (float32: 2^-23 of the largest |reference|): below
that an artifact cannot be told from float32 rounding of the same values. The floor
decides only where the range is a tiny fraction of the magnitude (a near-constant
output, e.g. an untrained 1000-class softmax whose values all sit near 1e-3 and move
by 1e-7): there `max_mean_error` x range would ask for less than one rounding step.
16 steps: a softmax's normalizing sum over 1000 classes, added in another order,
moves every probability by the same few steps (measured on the untrained EfficientNetB0
softmax, mean |error| in steps: 0.43 onnx, 0.25 tflite float32, 0.67 xla at 224x224;
3.8 onnx at 32x32, where all 1000 outputs move together); 16 keeps a 4x margin over the
largest.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    atol: float = 1e-5
    rtol: float = 1e-5
    steps: float = 0.0
    range_fraction: float = 0.0
    mismatch_fraction: float = 0.0
    min_top1: float | None = None
    max_accuracy_drop: float | None = None
    min_sqnr_db: float | None = None
    max_mean_error: float | None = None
    min_topk: float | None = None
    top_k: int = 5
    floor_ulps: float = 16.0

    def effective_atol(self, output_step: float, reference_range: float, ulp: float = 0.0) -> float:
        """The elementwise budget's absolute part; `ulp` is the rounding step of the
        output's dtype at its largest magnitude (see `floor`)."""
        return max(self.atol, self.steps * output_step, self.range_fraction * reference_range, self.floor(ulp))

    def floor(self, ulp: float) -> float:
        """The smallest absolute error any criterion demands: `floor_ulps` rounding steps
        of the output's dtype at its magnitude (0 for an integer output)."""
        return self.floor_ulps * ulp

    def override(self, values: dict) -> "Tolerance":
        return dataclasses.replace(self, **values) if values else self


TOLERANCE_KEYS = tuple(f.name for f in dataclasses.fields(Tolerance))

# Default budgets per precision class, calibrated on a corpus of acceptable artifacts
# and seeded breakages (examples/calibrate_budgets.py; figures in docs/how-budgets-were-measured.md). Targets
# pick the class their artifact computes in; YAML `tolerances:` override per output.
#
# float32 is every artifact that computes in float32 (savedmodel, xla, tpu fp32, onnx,
# tflite float32): the eager function in another summation order. Through 50+ layers
# of a stock application that order alone moves outputs by up to 6e-5 of their range
# (ResNet50, EfficientNetB0); the range term sits at 5e-5, where an exact artifact's
# budget stays within the tolerance audit's 1000x of float32 rounding (pipeline.audit).
PRECISION_CLASSES: dict[str, Tolerance] = {
    "float32": Tolerance(atol=1e-5, rtol=1e-4, range_fraction=5e-5, mismatch_fraction=1e-3, min_sqnr_db=60.0, max_mean_error=1e-4,
                         min_top1=0.99, max_accuracy_drop=0.01),
    "float16": Tolerance(atol=2e-3, rtol=1e-2, range_fraction=2e-3, mismatch_fraction=0.01, min_sqnr_db=45.0, max_mean_error=1e-3,
                         min_top1=0.99, max_accuracy_drop=0.01),
    "bf16": Tolerance(atol=1e-2, rtol=2e-2, range_fraction=1e-2, mismatch_fraction=0.05, min_sqnr_db=23.0, max_mean_error=5e-3,
                      min_top1=0.97, max_accuracy_drop=0.02),
    "dynamic_range": Tolerance(atol=1e-3, rtol=0.0, range_fraction=0.03, mismatch_fraction=0.03, min_sqnr_db=25.0, max_mean_error=0.01,
                               min_top1=0.95, min_topk=0.99, max_accuracy_drop=0.02),
    "int8": Tolerance(atol=1e-3, rtol=0.0, steps=3.0, range_fraction=0.05, mismatch_fraction=0.05, min_sqnr_db=15.0, max_mean_error=0.02,
                      min_top1=0.95, min_topk=0.99, max_accuracy_drop=0.02),
    "int16x8": Tolerance(atol=1e-3, rtol=0.0, range_fraction=0.03, mismatch_fraction=0.03, min_sqnr_db=20.0, max_mean_error=0.01,
                         min_top1=0.95, min_topk=0.99, max_accuracy_drop=0.02),
}

# Shorthands used by the targets.
FP32 = PRECISION_CLASSES["float32"]
BF16 = PRECISION_CLASSES["bf16"]
INT8 = PRECISION_CLASSES["int8"]
