"""The eager reference of one model's parity cases, kept where it fits.

While the cases' outputs are small they stay in memory; once they pass IN_MEMORY_BYTES
every case is written to a staging folder under the model's `.stages/` (one .npy per
case and output) and read back memory-mapped, one case at a time, when parity asks
for it: a 256-sample 512x512x21 float32 reference is 5.6 GB, which parity never needs
at once. The folder is removed by `close()` (or when the object is collected); a
killed run leaves a `.staging-*` folder that the next publication sweeps.
"""
from __future__ import annotations

import shutil
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.fsutil import staging_dir

IN_MEMORY_BYTES = 256 << 20


class ReferenceCases(Sequence):
    """A sequence of {output: array}, one per parity case, appended in case order."""

    def __init__(self, spill_parent: Path, in_memory_bytes: int | None = None) -> None:
        self._parent = Path(spill_parent)
        self._limit = IN_MEMORY_BYTES if in_memory_bytes is None else in_memory_bytes
        self._memory: list[dict[str, np.ndarray]] = []
        self._bytes = 0
        self._folder: Path | None = None
        self._names: list[tuple[tuple[str, bool], ...]] = []  # per case: (output, memory-mappable)
        self._finalizer = None

    @property
    def on_disk(self) -> bool:
        return self._folder is not None

    def append(self, outputs: dict[str, np.ndarray]) -> None:
        outputs = {k: np.asarray(v) for k, v in outputs.items()}
        if self._folder is None:
            self._memory.append(outputs)
            self._bytes += sum(v.nbytes for v in outputs.values())
            if self._bytes > self._limit:
                self._spill()
            return
        self._write(len(self._names), outputs)

    def _spill(self) -> None:
        self._folder = staging_dir(self._parent, "reference")
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._folder), True)
        for index, outputs in enumerate(self._memory):
            self._write(index, outputs)
        self._memory = []

    def _write(self, index: int, outputs: dict[str, np.ndarray]) -> None:
        for position, value in enumerate(outputs.values()):
            np.save(self._folder / f"{index}.{position}.npy", value, allow_pickle=value.dtype == object)
        self._names.append(tuple((name, value.dtype != object and value.ndim > 0) for name, value in outputs.items()))

    def __len__(self) -> int:
        return len(self._names) if self._folder is not None else len(self._memory)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if self._folder is None:
            return self._memory[index]
        index = range(len(self))[index]
        return {
            name: np.load(self._folder / f"{index}.{position}.npy", mmap_mode="r" if mappable else None, allow_pickle=not mappable)
            for position, (name, mappable) in enumerate(self._names[index])
        }

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
