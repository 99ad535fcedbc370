"""Memory admission control for worker jobs.

A job is started only when its estimated peak fits in the memory the machine has
left: MemAvailable from /proc/meminfo, minus what the running jobs are still expected
to take (each one's estimate less what it already holds). A job that does not fit
waits while others run; one that cannot fit even alone is refused with an error
naming what it needs and what the machine has, instead of being killed by the kernel
halfway.

The estimate of one job is BASE_BYTES (TensorFlow, the runtime, the worker) plus the
parity pool, plus the model's weight bytes times the target's factor, measured with
`make bench-scale` on 553 MB and 2.5 GB dense and conv models (peak resident memory
of the worker against the weights): the TFLite converter peaks near 9x the weights
(4.9-5.2 GB at 553 MB; tfship's float variants of models over 256 MB convert with
stand-ins for the weights and peak at 2.1-2.6 GB there: the tflite target then sets
its own factor, Target.memory_factor), ONNX with lifted weights 2.6-3.0 GB at 553 MB and 6.9-8.2 GB
at 2.5 GB, the SavedModel target 1.9 GB at 553 MB and 6.0 GB at 2.5 GB, xla 2.1 GB at
553 MB (the shared stages' cost), and tpu 5.4 GB at 553 MB (7x the weights: its
bfloat16 emulation is a frozen graph of rounded constants, written and then run in a
TensorFlow session). An unknown target takes the largest factor.

`TFSHIP_MEMORY_AVAILABLE` (bytes, or with a K/M/G suffix) replaces MemAvailable: to
plan for a smaller machine, or to test the refusal.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

BASE_BYTES = 1536 << 20
TARGET_FACTORS = {
    "savedmodel": 2.5,
    "onnx": 3.0,
    "tflite": 8.0,
    "edgetpu": 8.0,
    "xla": 2.5,
    "tpu": 7.5,
}
SHARED_STAGES_FACTOR = 2.5  # load, trace, canonical SavedModel, reference: the savedmodel target's cost
DEFAULT_FACTOR = max(TARGET_FACTORS.values())
ENV_AVAILABLE = "TFSHIP_MEMORY_AVAILABLE"
_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in _SUFFIX:
        return int(float(text[:-1]) * _SUFFIX[text[-1]])
    return int(float(text))


def available_bytes() -> int | None:
    """Memory a new job may take now (before subtracting the running jobs' estimates)."""
    override = os.environ.get(ENV_AVAILABLE)
    if override:
        return parse_bytes(override)
    from pipeline.stages.data import _available_memory

    return _available_memory()


def resident_bytes(pid: int) -> int:
    """Resident memory of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def estimate(targets: list[str], weight_bytes: int, pool_bytes: int, shared_stages: bool, factors_by_target: dict[str, float] | None = None) -> int:
    """Peak estimate of one worker job: the largest of its targets (they run one after
    another), or the shared stages' own cost. `factors_by_target` replaces the table's
    factor where a target's options change it (Target.memory_factor)."""
    chosen = {**TARGET_FACTORS, **(factors_by_target or {})}
    factors = [chosen.get(t, DEFAULT_FACTOR) for t in targets]
    if shared_stages:
        factors.append(SHARED_STAGES_FACTOR)
    return int(BASE_BYTES + pool_bytes + max(factors, default=SHARED_STAGES_FACTOR) * weight_bytes)


@dataclass
class Decision:
    start: bool
    refuse: str | None = None  # why the job can never fit on this machine


def decide(need: int | None, running: list[tuple[int | None, int]]) -> Decision:
    """`running`: (estimate, pid) of the jobs running now. An estimate of None (weights
    that could not be sized) is never read as small: that job starts only when nothing
    else runs, and nothing starts beside it."""
    if need is None or any(est is None for est, _ in running):
        return Decision(not running)
    free = available_bytes()
    if free is None:
        return Decision(True)
    still_to_come = sum(max(0, est - resident_bytes(pid)) for est, pid in running)
    if need <= free - still_to_come:
        return Decision(True)
    if running:
        return Decision(False)  # wait: the running jobs give their memory back when they end
    return Decision(False, refuse=(
        f"needs about {need / 2**30:.1f} GiB (estimated from the model's weights and the target), "
        f"and {free / 2**30:.1f} GiB of memory is available on this machine"
        + (f" ({ENV_AVAILABLE})" if os.environ.get(ENV_AVAILABLE) else "")
        + "; it was not started, so it could not be killed halfway. Fix: free memory or run it on a larger machine"
    ))


def target_factors(config, weight_bytes: int) -> dict[str, float]:
    """The factors the config's targets set for themselves at this size of weights."""
    from targets import REGISTRY

    factors = {}
    for entry in config.targets:
        factor = REGISTRY.get(entry.name).memory_factor(entry.options, weight_bytes)
        if factor is not None:
            factors[entry.name] = factor
    return factors


def weight_bytes_of_source(path) -> int:
    """The model's weights as stored (a .keras/.h5 file, or a SavedModel's variables),
    before any worker has loaded it; 0 when unknown (a factory)."""
    from pathlib import Path

    if path is None:
        return 0
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        variables = path / "variables"
        root = variables if variables.is_dir() else path
        return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    return 0
