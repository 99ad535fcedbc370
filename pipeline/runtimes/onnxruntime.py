"""onnxruntime: a CPU InferenceSession fed and read by the config's names."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import extras
from pipeline.errors import IntegrityError
from pipeline.runtimes.base import Call, Runner, batch_of, check_static_batch, chunked_call

ORT_INTER_OP_THREADS = 1  # nodes run sequentially, as TensorFlow's inter-op pool is sized

# onnxruntime type strings -> numpy; a type numpy lacks (bfloat16) has no entry.
NUMPY_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16,
    "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


class OnnxRuntimeRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, path: Path, input_names: list[str] | None = None, output_names: list[str] | None = None, threads: int | None = None):
        super().__init__()
        extras.require("onnx", "running an ONNX model", ("onnxruntime",))
        import onnxruntime as ort
        self.path = Path(path)
        if not self.path.exists():
            raise IntegrityError(f"ONNX model {path} does not exist; re-export the onnx target")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = ORT_INTER_OP_THREADS
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        declared = {i.name: i for i in self.session.get_inputs()}
        produced = [o.name for o in self.session.get_outputs()]
        self.input_names = list(input_names or declared)
        self.output_names = list(output_names or produced)
        missing = [n for n in self.input_names if n not in declared] + [n for n in self.output_names if n not in produced]
        if missing:
            raise IntegrityError(
                f"ONNX model {path} has inputs {list(declared)} and outputs {produced}, "
                f"but the recorded names include {missing}; re-export the onnx target"
            )
        self._declared = declared
        used = self.session.get_session_options()
        self.threads = {"runtime": "onnxruntime", "intra_op_num_threads": used.intra_op_num_threads, "inter_op_num_threads": used.inter_op_num_threads}

    @property
    def fixed_batch(self) -> int | None:
        """The batch every batched input declares (a file converted at a static batch), else None."""
        firsts = {d.shape[0] for d in self._declared.values() if d.shape}
        if len(firsts) == 1:
            first = next(iter(firsts))
            if isinstance(first, (int, np.integer)) and int(first) > 0:
                return int(first)
        return None

    def _one(self, inputs: dict[str, np.ndarray]) -> Call:
        feeds = {}
        for name in self.input_names:
            value = np.asarray(inputs[name])
            dtype = NUMPY_TYPES.get(self._declared[name].type)
            feeds[name] = value if dtype is None or value.dtype == dtype else value.astype(dtype)
        session, outputs = self.session, self.output_names
        return Call(lambda: session.run(outputs, feeds), lambda results: dict(zip(outputs, results)), "InferenceSession.run() (feeds built once)")

    def prepare(self, inputs: dict[str, np.ndarray], chunked: bool = True) -> Call:
        if not chunked:
            for name in self.input_names:
                check_static_batch(name, list(self._declared[name].shape), np.asarray(inputs[name]))
        step = self.fixed_batch
        if step is not None and batch_of(inputs) != step:
            # A file converted at a static batch runs a larger batch one chunk at a time.
            return chunked_call(self._one, inputs, step, pad=True, what="InferenceSession.run()")
        return self._one(inputs)
