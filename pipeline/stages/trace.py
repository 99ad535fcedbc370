"""Stage `trace`: the model as a signature-fixed `tf.function`.

The function takes the config's inputs positionally (each TensorSpec carries the
input's name, which becomes the SavedModel signature's key) and returns
{output name: tensor}. With an input_signature it must trace exactly once whatever
the batch size; we prove that by calling it at two batch sizes.
"""
from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.spec import InputSpec, ModelConfig
from pipeline.errors import ModelError
from pipeline.records import LoadedModel, TracedModel


def input_signature(config: ModelConfig, batch: int | None = None, dims: dict[str, int] | None = None) -> list:
    """TensorSpecs named after the config's inputs; `batch` fixes a dynamic batch dim and
    `dims` the named dynamic dimensions it gives a size."""
    import tensorflow as tf

    specs = []
    for spec in config.inputs:
        shape = list(spec.shape)
        if batch is not None and shape and shape[0] is None:
            shape[0] = batch
        for axis, name in spec.dynamic_dims:
            if dims and name in dims:
                shape[axis] = dims[name]
        specs.append(tf.TensorSpec(shape, tf.as_dtype(spec.dtype), name=spec.name))
    return specs


def make_function(
    config: ModelConfig, loaded: LoadedModel, *, batch: int | None = None, dims: dict[str, int] | None = None, jit_compile: bool = False
) -> Any:
    """A tf.function over the loaded model: f(*inputs in config order) -> {output: tensor}."""
    import tensorflow as tf

    names = config.input_names
    call = loaded.call

    def serve(*args):
        return call(dict(zip(names, args)))

    return tf.function(serve, input_signature=input_signature(config, batch, dims), jit_compile=jit_compile or None)


def sample_inputs(specs: tuple[InputSpec, ...], batch: int, dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Zeros of the right dtype and shape, at `batch` for a dynamic batch dimension and
    `dims` for the other dynamic ones."""
    out = {}
    for spec in specs:
        shape = (batch if spec.shape[0] is None else spec.shape[0], *spec.sample_shape(dims or {})) if spec.batched else ()
        dtype = object if spec.dtype == "string" else spec.dtype
        out[spec.name] = np.zeros(shape, dtype=dtype) if spec.dtype not in ("bfloat16",) else np.zeros(shape, np.float32)
    return out


def trace_model(config: ModelConfig, loaded: LoadedModel) -> TracedModel:
    import tensorflow as tf

    function = make_function(config, loaded)
    try:
        function.get_concrete_function()  # traces: user code raises here, before any batch runs
    except Exception as exc:  # tracing runs user code: explain in the model's terms
        raise explain_trace_error(exc, config, loaded) from exc
    dynamic = any(spec.shape and spec.shape[0] is None for spec in config.inputs)
    batches = (1, 3) if dynamic else ((config.inputs[0].shape[0] or 1),) if config.inputs[0].shape else (1,)
    for dims in config.shape_sets:  # every tested sequence length / image size, at each batch
        for batch in batches:
            feeds = sample_inputs(config.inputs, batch, dims)
            function(*[tf.constant(feeds[n]) for n in config.input_names])
    count = function.experimental_get_tracing_count()
    if count != 1:
        shapes = f" and shapes {[dict(d) for d in config.shape_sets]}" if config.dynamic_dims else ""
        raise ModelError(
            f"model '{config.name}' was traced {count} times for batch sizes {list(batches)}{shapes}; "
            "a signature-fixed function must trace once. Something in the model depends on Python values that change per call."
        )
    return TracedModel(function=function, tracing_count=count, batch_sizes_checked=batches)


_LIBRARY_MARKERS = ("site-packages", "dist-packages", f"{Path(sys.prefix).name}/lib", "/pipeline/stages/", "<frozen")


def _is_user_frame(filename: str) -> bool:
    return not any(marker in filename for marker in _LIBRARY_MARKERS) and not filename.startswith(sys.base_prefix)


def _user_location(exc: BaseException) -> tuple[str, int, str] | None:
    """The deepest frame in the model's own code: from the traceback, else from
    AutoGraph's 'in user code:' text (it rewrites functions into temp files)."""
    best = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if _is_user_frame(frame.filename) and "__autograph_generated" not in frame.filename:
            best = (frame.filename, frame.lineno or 0, (frame.line or "").strip())
    text = str(exc)
    for match in re.finditer(r'File "([^"]+)", line (\d+), in [^\n]*\n\s*(.*)', text):
        filename, line, code = match.group(1), int(match.group(2)), match.group(3).strip()
        if _is_user_frame(filename):
            best = (filename, line, code)
    return best


def explain_trace_error(exc: BaseException, config: ModelConfig, loaded: LoadedModel) -> ModelError:
    import tensorflow as tf

    where = _user_location(exc)
    location = f"{where[0]}:{where[1]}: `{where[2]}`" if where else f"the model's code ({loaded.source_file or config.source.path or config.source.factory})"
    text = str(exc)
    bool_on_tensor = isinstance(exc, tf.errors.OperatorNotAllowedInGraphError) or "as a Python `bool`" in text or "as a Python bool" in text
    nonscalar_cond = "must be a scalar" in text or "must be scalar" in text or ("cond" in text and "rank" in text)
    if bool_on_tensor or nonscalar_cond:
        return ModelError(
            f"cannot trace model '{config.name}' into a graph: a Python `if` (or `while`/`and`/`or`) decides on a tensor at {location}.\n"
            "In a graph the tensor has no value yet, and a condition on a non-scalar tensor has no single truth value.\n"
            "Fix: for an elementwise choice use `tf.where(cond, a, b)`; for one decision per call reduce to a scalar and use "
            "`tf.cond(tf.reduce_any(cond), true_fn, false_fn)`."
        )
    first = text.strip().splitlines()[0] if text.strip() else ""
    return ModelError(f"cannot trace model '{config.name}' with the config's input signature at {location}: {type(exc).__name__}: {first}")
