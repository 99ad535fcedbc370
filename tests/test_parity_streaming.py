"""Parity in bounded memory: pooled figures fed block by block, case by case, on a real
TensorFlow output, against the exact figures over every element at once."""
from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from pipeline.execute.stored import ReferenceCases
from pipeline.parity import BLOCK, evaluate, reference_stats
from pipeline.tolerance import FP32, Tolerance
from pipeline.verdict import QUANTILE_RELATIVE_ERROR, PooledErrors, error_statistics, tail_used


@pytest.fixture(scope="module")
def conv_outputs():
    """A 21-channel convolution computed in float64 (the reference) and in float32 (the
    artifact): real rounding errors over ~0.7M elements per case, four cases."""
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 3, 21)) / 5.0
    refs, outs = [], []
    for _ in range(4):
        x = rng.uniform(-1, 1, size=(2, 96, 96, 3))
        refs.append(tf.nn.conv2d(x, kernel, 1, "SAME").numpy())
        outs.append(tf.nn.conv2d(x.astype(np.float32), kernel.astype(np.float32), 1, "SAME").numpy().astype(np.float64))
    return refs, outs


def _feed(pooled: PooledErrors, refs, outs) -> PooledErrors:
    for r, o in zip(refs, outs):
        r, o = r.reshape(-1), o.reshape(-1)
        for start in range(0, r.size, BLOCK // 4):  # several blocks per case
            pooled.add(r[start:start + BLOCK // 4], o[start:start + BLOCK // 4])
    return pooled


def test_histogram_statistics_are_within_the_stated_bound_of_the_exact_ones(conv_outputs):
    refs, outs = conv_outputs
    total = sum(r.size for r in refs)
    exact = error_statistics(refs, outs, 10.0)
    assert exact["p99_abs"] > 0 and exact["median_abs"] > 0  # real rounding errors, not zeros
    streamed = _feed(PooledErrors(total, 1e-7, 1e-6, 1e-3, exact_elements=0, exact_tail=0), refs, outs)
    assert streamed.approximate
    s = streamed.statistics(10.0)
    assert s["elements"] == exact["elements"] == total
    for key in ("median_abs", "p99_abs", "p99_9_abs"):
        assert abs(s[key] / exact[key] - 1) <= QUANTILE_RELATIVE_ERROR, key
    for key in ("mean_abs", "max_abs", "rms_error", "sqnr_db"):
        assert s[key] == pytest.approx(exact[key], rel=1e-12), key
    exact_tail = tail_used(refs, outs, 1e-7, 1e-6, 1e-3)
    assert exact_tail > 0
    assert abs(streamed.tail_ratio() / exact_tail - 1) <= QUANTILE_RELATIVE_ERROR
    assert QUANTILE_RELATIVE_ERROR < 0.0014


def test_exact_mode_gives_the_exact_figures_bit_for_bit(conv_outputs):
    refs, outs = conv_outputs
    total = sum(r.size for r in refs)
    streamed = _feed(PooledErrors(total, 1e-7, 1e-6, 1e-3), refs, outs)
    assert not streamed.approximate
    exact = error_statistics(refs, outs, 10.0)
    assert streamed.statistics(10.0) == exact
    assert streamed.tail_ratio() == tail_used(refs, outs, 1e-7, 1e-6, 1e-3)


def test_a_reference_on_disk_and_cases_produced_one_at_a_time_give_the_same_verdict(conv_outputs, tmp_path):
    refs, outs = conv_outputs
    cases = [{"seg": r.astype(np.float32)} for r in refs]
    produced = [{"seg": o.astype(np.float32)} for o in outs]
    stored = ReferenceCases(tmp_path / ".stages", in_memory_bytes=0)
    for case in cases:
        stored.append(case)
    assert stored.on_disk and isinstance(stored[0]["seg"], np.memmap)
    mask = [True] * len(cases)
    labels = [f"pool[{i}]" for i in range(len(cases))]
    tol = Tolerance(atol=1e-6, rtol=1e-6, mismatch_fraction=1e-3)
    stats = reference_stats(stored, mask)
    assert stats == reference_stats(cases, mask)
    seen = []

    def one_at_a_time():
        for case in produced:
            seen.append(len(seen))
            yield case

    streamed = evaluate(labels, stored, one_at_a_time(), lambda _: tol, {}, stats, mask)
    in_memory = evaluate(labels, cases, produced, lambda _: tol, {}, stats, mask)
    assert seen == [0, 1, 2, 3]
    assert streamed == in_memory
    figures = streamed["outputs"]["seg"]
    assert figures["elements"] == sum(r.size for r in refs)
    assert figures["statistics"]["max_abs"] == pytest.approx(float(max(np.abs(o.astype(np.float32).astype(np.float64) - r.astype(np.float32)).max() for r, o in zip(refs, outs))))
    folder = next((tmp_path / ".stages").iterdir())
    stored.close()
    assert not folder.exists()
    assert math.isfinite(figures["criteria"]["tail"]["used"])
