"""Parity budgets. Pure Python: the config loader uses this before TensorFlow loads.

An element passes when |artifact - reference| <= atol_eff + rtol * |reference|, where

    atol_eff = max(atol, steps * output_step, range_fraction * reference_range)

`output_step` is the artifact's own quantization step for that output (0 for float
outputs), so quantized budgets are written in units of the step and of the
reference's range rather than as one global atol.
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

    def effective_atol(self, output_step: float, reference_range: float) -> float:
        return max(self.atol, self.steps * output_step, self.range_fraction * reference_range)

    def override(self, values: dict) -> "Tolerance":
        return dataclasses.replace(self, **values) if values else self


TOLERANCE_KEYS = tuple(f.name for f in dataclasses.fields(Tolerance))

# Shared defaults by numeric precision. Targets start from these and may adjust.
FP32 = Tolerance(atol=1e-5, rtol=1e-5)
BF16 = Tolerance(atol=1e-2, rtol=2e-2, range_fraction=1e-2)
