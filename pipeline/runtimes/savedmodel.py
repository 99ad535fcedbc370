"""TensorFlow runtimes: a SavedModel's serving signature, and a frozen GraphDef."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.runtimes.base import BatchUnsupported, Call, Runner, available_cpus, batch_of, check_static_batch, chunked_call

TF_INTER_OP_THREADS = 1  # onnxruntime runs nodes sequentially and LiteRT has no inter-op pool


def configure_tensorflow_threads(threads: int) -> dict:
    """Size TensorFlow's pools (only possible before it runs its first op) and
    return the counts in effect."""
    import tensorflow as tf

    note = None
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(TF_INTER_OP_THREADS)
    except RuntimeError:
        note = "TensorFlow had already run in this process, so its thread pools kept their size"
    return tensorflow_threads(note)


def tensorflow_threads(note: str | None = None) -> dict:
    import tensorflow as tf

    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    record = {
        "runtime": "TensorFlow",
        # 0 means TensorFlow's default: one thread per CPU
        "intra_op_parallelism_threads": intra or available_cpus(),
        "inter_op_parallelism_threads": inter or available_cpus(),
    }
    if note:
        record["note"] = note
    return record


class SavedModelRunner(Runner):
    """A SavedModel's signature on prebuilt tensors. `max_batch`: the largest batch one
    call takes (larger batches are split, as a client would)."""

    runtime = "TensorFlow"

    def __init__(self, path: Path, signature: str = "serving_default", max_batch: int | None = None):
        super().__init__()
        import tensorflow as tf

        self._tf = tf
        self.path = Path(path)
        self._loaded = tf.saved_model.load(str(path))  # the signature's variables live as long as this
        if signature not in self._loaded.signatures:
            raise ValueError(f"{path}: no signature '{signature}'; it has {sorted(self._loaded.signatures)}")
        self._fn = self._loaded.signatures[signature]
        self._spec = self._fn.structured_input_signature[1]
        self._max = max_batch
        self.threads = tensorflow_threads()

    def _one(self, inputs: dict[str, np.ndarray]) -> Call:
        tf = self._tf
        tensors = {}
        for name, value in inputs.items():
            spec = self._spec.get(name)
            value = np.asarray(value)
            tensors[name] = tf.constant(value.astype(spec.dtype.as_numpy_dtype, copy=False) if spec is not None and spec.dtype != tf.string else value)

        def run():
            return self._fn(**tensors)

        return Call(run, lambda out: {k: v.numpy() for k, v in out.items()}, "SavedModel serving_default on prebuilt tensors", self._loaded)

    def prepare(self, inputs: dict[str, np.ndarray], chunked: bool = True) -> Call:
        if not chunked:
            for name, value in inputs.items():
                if name in self._spec:
                    check_static_batch(name, self._spec[name].shape.as_list(), np.asarray(value))
            if self._max and batch_of(inputs) > self._max:
                raise BatchUnsupported(f"the largest batch one call takes is {self._max}")
        if self._max and batch_of(inputs) > self._max:
            return chunked_call(self._one, inputs, self._max, pad=False, what="SavedModel serving_default")
        return self._one(inputs)


class FrozenGraphRunner(Runner):
    """A frozen GraphDef from disk (`graph.pb` + `io.json` with tensor names), run with
    plain TensorFlow on CPU."""

    runtime = "TensorFlow"

    def __init__(self, folder: Path):
        super().__init__()
        import tensorflow as tf

        self._tf = tf
        self.path = Path(folder)
        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString((self.path / "graph.pb").read_bytes())
        io = json.loads((self.path / "io.json").read_text())
        self._in, self._out = io["inputs"], io["outputs"]

        def imported():
            tf.compat.v1.import_graph_def(graph_def, name="")

        wrapped = tf.compat.v1.wrap_function(imported, [])
        graph = wrapped.graph
        self._fn = wrapped.prune(
            feeds=[graph.get_tensor_by_name(self._in[n]) for n in self._in],
            fetches={n: graph.get_tensor_by_name(t) for n, t in self._out.items()},
        )
        self._names = list(self._in)
        self.threads = tensorflow_threads()

    def prepare(self, inputs: dict[str, np.ndarray], chunked: bool = True) -> Call:
        args = [self._tf.constant(inputs[n]) for n in self._names]
        return Call(lambda: self._fn(*args), lambda out: {k: v.numpy() for k, v in out.items()}, "frozen GraphDef on prebuilt tensors")
