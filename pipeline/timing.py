"""The timing kernel: how one benchmark figure is measured, and what the harness costs.

`measure(fn)`: warm up, then time every call with `perf_counter_ns` until at least
`min_runs` calls and `min_seconds` have passed and the median moved by less than
STABLE_CHANGE when the latest window was added, or until `max_seconds` runs out.
Python's garbage collector is paused while timing, as `timeit` does.
"""
from __future__ import annotations

import gc
import time
from typing import Any, Callable

STABLE_CHANGE = 0.02  # a figure is stable when the last window moves the median by less than this
HARNESS_BUDGET = 0.05  # the harness may add at most this fraction over a bare loop
WARMUP_SHARE = 0.25  # of max_seconds, at most, spent warming up
MAX_WARMUP_RUNS = 1000
MAX_RUNS = 1_000_000
MIN_WINDOW = 10  # calls in the stability window, at least
WINDOW_DIVISOR = 5  # the window is the last fifth of the calls
BARE_LOOP_SHARE = 0.5  # of max_seconds, at most, spent on the bare-loop check
BARE_LOOP_MAX_SECONDS = 1.0
BARE_LOOP_PROBE_PAIRS = 3  # (bare, harness) call pairs that estimate one call's cost
BARE_LOOP_MIN_CALLS = 10  # per chunk
BARE_LOOP_ROUNDS = (5, 250)  # fewest and most alternating rounds
SHORTEST_CALL_S = 1e-7  # a floor on the per-call estimate (no division by zero)


def _ms(ns: float) -> float:
    """Nanoseconds as milliseconds with 5 significant digits (a fixed number of
    decimals would flatten microsecond figures)."""
    return float(f"{ns / 1e6:.5g}")


def measure(fn: Callable[[], Any], options, batch: int) -> dict:
    """Warm up, then time `fn` call by call until the median is stable or time runs out.
    `options` has max_seconds, min_seconds, min_runs, warmup_runs, warmup_seconds."""
    import numpy as np

    max_s = options.max_seconds
    min_s = min(options.min_seconds, max_s / 2)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        warm_start = time.perf_counter()
        warm_budget = min(options.warmup_seconds, max_s * WARMUP_SHARE)
        warmup = 0
        while warmup < options.warmup_runs or time.perf_counter() - warm_start < warm_budget:
            fn()
            warmup += 1
            if time.perf_counter() - warm_start >= max_s * WARMUP_SHARE or warmup >= MAX_WARMUP_RUNS:
                break
        samples: list[int] = []
        begin = time.perf_counter()
        checked_at = 0
        stable = False
        clock = time.perf_counter_ns
        while True:
            t0 = clock()
            fn()
            samples.append(clock() - t0)
            n = len(samples)
            elapsed = time.perf_counter() - begin
            if n >= options.min_runs and elapsed >= min_s:
                window = max(MIN_WINDOW, n // WINDOW_DIVISOR)
                if n - checked_at >= window:
                    checked_at = n
                    before = float(np.median(samples[: n - window]))
                    after = float(np.median(samples))
                    if before > 0 and abs(after - before) <= STABLE_CHANGE * before:
                        stable = True
                        break
            if elapsed >= max_s or n >= MAX_RUNS:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    arr = np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "batch": batch,
        "p50_ms": _ms(p50),
        "p90_ms": _ms(p90),
        "p99_ms": _ms(p99),
        "mean_ms": _ms(arr.mean()),
        "min_ms": _ms(arr.min()),
        "throughput_sps": float(f"{batch / (p50 / 1e9):.5g}") if p50 > 0 else None,
        "runs": len(samples),
        "warmup_runs": warmup,
        "seconds": round(float(arr.sum()) / 1e9, 4),
        "stable": stable,
    }


def harness_overhead(call: Callable[[], Any], label: str, figure: dict, max_seconds: float, chunk_seconds: float = 0.002) -> dict:
    """The harness's own cost: its per-call figures next to a bare loop around the same call.

    Bare chunks (a plain `for` loop, one clock read per chunk) alternate with harness
    chunks (one clock read around each call, as `measure` does) of the same length,
    so load from other processes hits both alike; `overhead` is the median over
    rounds of harness mean / bare mean - 1. The bench figure (p50) is also set next
    to the median bare chunk, which is what a reader compares by eye.
    """
    import numpy as np

    budget = min(BARE_LOOP_MAX_SECONDS, max_seconds * BARE_LOOP_SHARE)
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(BARE_LOOP_PROBE_PAIRS):
            call()
            call()
        per_call = max((time.perf_counter() - t0) / (2 * BARE_LOOP_PROBE_PAIRS), SHORTEST_CALL_S)
        n = max(BARE_LOOP_MIN_CALLS, int(chunk_seconds / per_call))
        fewest, most = BARE_LOOP_ROUNDS
        rounds = int(min(most, max(fewest, budget / (2 * n * per_call))))
        bare_means, harness_means = [], []
        for r in range(rounds):
            for kind in (("bare", "harness") if r % 2 == 0 else ("harness", "bare")):
                if kind == "bare":
                    start = clock()
                    for _ in range(n):
                        call()
                    bare_means.append((clock() - start) / n)
                else:
                    total = 0
                    for _ in range(n):
                        start = clock()
                        call()
                        total += clock() - start
                    harness_means.append(total / n)
    finally:
        if gc_was_enabled:
            gc.enable()
    bare = np.asarray(bare_means)
    ratios = np.asarray(harness_means) / bare
    overhead = float(np.median(ratios)) - 1.0
    bare_ms = float(np.median(bare)) / 1e6
    return {
        "batch": 1,
        "call": label,
        "bare_loop_ms": _ms(bare_ms * 1e6),
        "harness_mean_ms": _ms(float(np.median(harness_means))),
        "overhead": round(overhead, 4),
        "within_budget": abs(overhead) <= HARNESS_BUDGET,
        "budget": HARNESS_BUDGET,
        "bench_p50_ms": figure["p50_ms"],
        "bench_p50_vs_bare": round(figure["p50_ms"] / bare_ms - 1.0, 4) if bare_ms > 0 else None,
        "rounds": rounds,
        "calls_per_chunk": n,
    }
