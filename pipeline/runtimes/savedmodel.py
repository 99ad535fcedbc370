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
    plain TensorFlow on CPU: imported into a graph and run in a session with grappler
    off. (As a wrapped, pruned function, a 537 MB graph peaked at 10.2 GB: the function
    copies and grappler's constant folding each held every constant again; in the
    session it peaks at 3.8 GB.)"""

    runtime = "TensorFlow"

    def __init__(self, folder: Path):
        super().__init__()
        import tensorflow as tf

        self.path = Path(folder)
        graph_def = tf.compat.v1.GraphDef()
        with open(self.path / "graph.pb", "rb") as f:
            graph_def.ParseFromString(f.read())
        io = json.loads((self.path / "io.json").read_text())
        self._in, self._out = io["inputs"], io["outputs"]
        self._graph = tf.Graph()
        with self._graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        del graph_def
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=tf.config.threading.get_intra_op_parallelism_threads(),
            inter_op_parallelism_threads=tf.config.threading.get_inter_op_parallelism_threads(),
        )
        config.graph_options.rewrite_options.disable_meta_optimizer = True
        self._session = tf.compat.v1.Session(graph=self._graph, config=config)
        self._feeds = {n: self._graph.get_tensor_by_name(t) for n, t in self._in.items()}
        self._fetches = {n: self._graph.get_tensor_by_name(t) for n, t in self._out.items()}
        self.threads = tensorflow_threads()

    def prepare(self, inputs: dict[str, np.ndarray], chunked: bool = True) -> Call:
        feed = {tensor: np.asarray(inputs[n]) for n, tensor in self._feeds.items()}
        return Call(lambda: self._session.run(self._fetches, feed), lambda out: {k: np.asarray(v) for k, v in out.items()}, "frozen GraphDef in a TensorFlow session", self._session)
