"""The runner contract and the batch helpers every runtime shares."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # the CLI imports this module for thread defaults: numpy loads on use
    import numpy as np


class BatchUnsupported(Exception):
    """The artifact cannot run this batch size as one call (e.g. a static batch-1 model)."""


@dataclass
class Call:
    """One batch in place. `run()` is the runtime call alone; `fetch(raw)` turns what it
    returned into {output name: array}."""

    run: Callable[[], Any]
    fetch: Callable[[Any], dict[str, np.ndarray]]
    what: str  # how the runtime is called, for reports ("Interpreter.invoke() (tensors set once)")
    keep_alive: Any = None  # objects the call's tensors or session belong to

    def __call__(self) -> Any:
        return self.run()

    def outputs(self) -> dict[str, np.ndarray]:
        return self.fetch(self.run())


class Runner:
    """Runs one artifact from disk.

    `output_steps` gives each output's quantization step (scale) when the runtime
    dequantized it; float outputs are absent. `threads` records the thread settings in
    effect. `prepare(inputs, chunked=True)` splits a batch the artifact cannot take at
    once into the batches it can; with `chunked=False` such a batch raises
    BatchUnsupported instead (bench times single runtime calls only).
    """

    runtime: str = ""
    path: Any = None
    output_steps: dict[str, float]
    threads: dict

    def __init__(self) -> None:
        self.output_steps = {}
        self.threads = {}

    def prepare(self, inputs: dict[str, np.ndarray], chunked: bool = True) -> Call:
        raise NotImplementedError

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.prepare(inputs).outputs()


def batch_of(inputs: dict[str, np.ndarray]) -> int:
    """The batch size of a feed: the leading dimension of its batched inputs (1 when none is)."""
    import numpy as np

    sizes = {len(v) for v in inputs.values() if np.ndim(v) > 0}
    return max(sizes) if sizes else 1


def check_static_batch(name: str, dims: list, value: np.ndarray) -> None:
    """BatchUnsupported when `value`'s batch differs from a static leading dimension."""
    import numpy as np

    if np.ndim(value) == 0 or not dims:
        return
    first = dims[0]
    if isinstance(first, (int, np.integer)) and int(first) > 0 and int(first) != len(value):
        raise BatchUnsupported(f"input '{name}' has a static batch of {int(first)}")


def split_batches(inputs: dict[str, np.ndarray], size: int, pad: bool = False) -> list[tuple[dict[str, np.ndarray], int]]:
    """(chunk, rows) pairs of at most `size` rows; with `pad`, a short last chunk is filled
    with copies of its first row (the padded rows are dropped by `join_batches`)."""
    import numpy as np

    n = batch_of(inputs)
    parts = []
    for lo in range(0, n, size):
        rows = min(size, n - lo)
        chunk = {}
        for name, value in inputs.items():
            if np.ndim(value) == 0:
                chunk[name] = value
                continue
            part = value[lo : lo + rows]
            if pad and rows < size:
                part = np.concatenate([part, np.repeat(part[:1], size - rows, axis=0)], axis=0)
            chunk[name] = part
        parts.append((chunk, rows))
    return parts


def join_batches(outputs: list[dict[str, np.ndarray]], rows: list[int]) -> dict[str, np.ndarray]:
    import numpy as np

    return {name: np.concatenate([out[name][:n] for out, n in zip(outputs, rows)], axis=0) for name in outputs[0]}


def chunked_call(prepare_one: Callable[[dict[str, np.ndarray]], Call], inputs: dict[str, np.ndarray], size: int, pad: bool, what: str) -> Call:
    """A Call that runs `inputs` as chunks of `size` rows, each prepared by `prepare_one`."""
    parts = split_batches(inputs, size, pad)
    calls = [(prepare_one(chunk), rows) for chunk, rows in parts]
    if len(calls) == 1 and calls[0][1] == size:
        return calls[0][0]

    def run():
        return [call.outputs() for call, _ in calls]

    return Call(run, lambda outs: join_batches(outs, [rows for _, rows in calls]), f"{what} in chunks of {size}")


def available_cpus() -> int:
    """The CPUs this process may use (the default thread count of every runtime)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
