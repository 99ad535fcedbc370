"""A near-constant output judged at float32 rounding: an untrained 1000-class softmax
sits near 1e-3 and moves by far less than its own rounding step allows a range-relative
budget to see. An artifact a few rounding steps away passes (with weak evidence that
says why); one that is really off still fails."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.parity import evaluate, reference_stats
from pipeline.tolerance import FP32

LABELS = ["batch1", "batch3", "pool[0:16]", "pool[16:32]"]
POOL_MASK = [False, False, True, True]


def _softmax_like(seed: int = 0) -> list[dict]:
    """1000 probabilities near 1e-3 moving by about 1e-7 across samples (as EfficientNetB0's, untrained)."""
    rng = np.random.default_rng(seed)
    return [{"probs": (np.full((n, 1000), 1e-3) + rng.uniform(-5e-8, 5e-8, (n, 1000))).astype(np.float32)} for n in (1, 3, 16, 16)]


def _judge(reference, produced):
    stats = reference_stats(reference, POOL_MASK)
    return evaluate(LABELS, reference, produced, lambda _: FP32, {}, stats, POOL_MASK), stats


def test_rounding_step_is_the_dtypes_own():
    from pipeline.parity import rounding_step

    assert rounding_step(1e-3, np.float32) == pytest.approx(2.0 ** -33)  # 1.16e-10: the ulp of float32 at 1e-3
    assert rounding_step(1.0, np.float16) == 2.0 ** -10
    assert rounding_step(7, np.int32) == 0.0


def test_a_few_rounding_steps_on_a_near_constant_output_pass_with_the_reason():
    reference = _softmax_like()
    rng = np.random.default_rng(1)
    # Every element off by 0 to 4 float32 steps, all in the same direction (a softmax's
    # normalizing sum added in another order moves every probability together).
    produced = [{"probs": (r["probs"] + rng.integers(0, 5, r["probs"].shape) * np.spacing(r["probs"])).astype(np.float32)} for r in reference]
    result, stats = _judge(reference, produced)
    probs = result["outputs"]["probs"]
    assert stats["probs"]["range"] < 1.1e-7 and stats["probs"]["ulp"] == pytest.approx(2.0 ** -33)
    assert probs["max_abs"] == pytest.approx(4 * 2.0 ** -33, rel=1e-6)
    # mean |error| is 2 steps, 2e-3 of the range: 20x over 1e-4 of the range, within the 16-step floor
    mean = probs["criteria"]["mean_error"]
    assert mean["value"] > 10 * FP32.max_mean_error
    assert mean["limit"] == pytest.approx(16 * 2.0 ** -33 / stats["probs"]["range"])
    assert mean["passed"] and "floored at 16 rounding steps" in mean["note"]
    assert result["passed"], result["failures"]
    weak = result["weak_evidence"]["probs"]
    assert "float32 rounding steps of 1.16e-10" in weak and "ignored its input" in weak and "16 rounding steps" in weak


def test_a_real_error_on_a_near_constant_output_still_fails():
    reference = _softmax_like()
    # 1e-4 relative: about 900 steps at 1e-3, the range itself
    result, _ = _judge(reference, [{"probs": (r["probs"] * np.float32(1.0001)).astype(np.float32)} for r in reference])
    assert not result["passed"]
    assert result["decided_by"]["criterion"] == "mean_error" and result["decided_by"]["used"] > 10


@pytest.mark.heavy
def test_untrained_efficientnet_softmax_through_onnx_passes(project):
    """The untrained EfficientNetB0 softmax (1000 classes, inputs uniform in [0, 255]) at
    32x32: onnxruntime's file is about 4 float32 steps away on every probability."""
    project.config("nc", """\
source:
  factory: examples.near_constant:efficientnet_b0_softmax_small
inputs:
  - {name: image, shape: [null, 32, 32, 3], dtype: float32}
outputs: [probs]
data:
  generator: examples.near_constant:efficientnet_b0_softmax_small_data
  samples: 16
  batch_sizes: [1, 3, 8]
targets:
  - {name: onnx, opset: 17}
""")
    result = project.run("export")
    assert result.code == 0, result.out + result.err
    entry = project.report("nc")["targets"]["onnx"]["variants"]["default"]
    probs = entry["parity"]["outputs"]["probs"]
    step = 2.0 ** -33
    assert 0 < probs["max_abs"] <= 8 * step  # float32 rounding of values near 1e-3
    assert probs["criteria"]["mean_error"]["value"] > FP32.max_mean_error  # what failed before the floor
    assert probs["criteria"]["mean_error"]["passed"]
    assert "rounding steps" in entry["parity"]["weak_evidence"]["probs"]
