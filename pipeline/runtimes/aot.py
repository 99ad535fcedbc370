"""The XLA AOT harness: a native binary compiled for one batch size, fed and read
through raw files, with LD_LIBRARY_PATH naming TensorFlow's library folder (the binary
carries no path of the machine that built it). Inputs are split into records of the compiled batch (a short last
record is padded and the padded rows dropped); every record of a call runs in one
harness process."""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pipeline.errors import ConversionError
from pipeline.runtimes.base import BatchUnsupported, Call, Runner, batch_of, join_batches, split_batches

ERROR_TAIL_CHARS = 1000  # of the harness's stderr, in the error message


def tensorflow_lib() -> str:
    """The folder of libtensorflow_framework.so.2, which the harness links (it carries no rpath)."""
    import tensorflow as tf

    return tf.sysconfig.get_lib()


class AotHarnessRunner(Runner):
    runtime = "XLA AOT"

    def __init__(self, aot_dir: Path, info: dict):
        super().__init__()
        self.path = Path(aot_dir)
        self._binary = self.path / "harness"
        if not self._binary.exists():
            raise ConversionError(f"{self._binary} is missing; rebuild the xla target with `aot: true`")
        self._batch = int(info["batch"])
        self._inputs = [(n, tuple(s), d) for n, s, d in info["inputs"]]
        self._outputs = [(n, tuple(s), d) for n, s, d in info["outputs"]]
        self.threads = {"runtime": "XLA AOT", "note": "compiled single-threaded for the host CPU"}
        self._env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(p for p in (tensorflow_lib(), os.environ.get("LD_LIBRARY_PATH", "")) if p)}

    def _run_records(self, records: list[dict[str, np.ndarray]], scratch: Path) -> list[dict[str, np.ndarray]]:
        """One harness process for every record (a record = one compiled batch)."""
        feed, fetch = scratch / "in.bin", scratch / "out.bin"
        with open(feed, "wb") as f:
            for record in records:
                for name, shape, dtype in self._inputs:
                    f.write(np.ascontiguousarray(record[name], dtype=dtype).reshape(shape).tobytes())
        names_in = ",".join(n for n, _, _ in self._inputs)
        names_out = ",".join(n for n, _, _ in self._outputs)
        result = subprocess.run([str(self._binary), str(feed), str(fetch), names_in, names_out], capture_output=True, text=True, env=self._env)
        if result.returncode != 0:
            raise ConversionError(f"AOT harness {self._binary} failed with exit {result.returncode}: {result.stderr.strip()[-ERROR_TAIL_CHARS:]}")
        raw, offset, outputs = fetch.read_bytes(), 0, []
        for _ in records:
            out = {}
            for name, shape, dtype in self._outputs:
                size = int(np.prod(shape)) * np.dtype(dtype).itemsize
                out[name] = np.frombuffer(raw[offset : offset + size], dtype=dtype).reshape(shape).copy()
                offset += size
            outputs.append(out)
        if offset != len(raw):
            raise ConversionError(f"AOT harness {self._binary} wrote {len(raw)} bytes for {len(records)} records; expected {offset}")
        return outputs

    def prepare(self, inputs: dict[str, np.ndarray], chunked: bool = True) -> Call:
        if not chunked and batch_of(inputs) != self._batch:
            raise BatchUnsupported(f"compiled for batch {self._batch}")
        parts = split_batches({name: inputs[name] for name, _, _ in self._inputs}, self._batch, pad=True)
        records, rows = [p for p, _ in parts], [n for _, n in parts]

        def run():
            with tempfile.TemporaryDirectory(prefix="tfship-aot-") as tmp:
                return self._run_records(records, Path(tmp))

        return Call(run, lambda outs: join_batches(outs, rows), "harness process over raw input files")
