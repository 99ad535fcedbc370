"""Stage `trace`: the model as a signature-fixed `tf.function`.

The function takes the config's inputs positionally (each TensorSpec carries the
input's name, which becomes the SavedModel signature's key) and returns
{output name: tensor}. With an input_signature it must trace exactly once whatever
the batch size; we prove that by calling it at two batch sizes.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.spec import InputSpec, ModelConfig
from pipeline.errors import ModelError
from pipeline.records import LoadedModel, ParityData, TracedModel


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
        if spec.dtype == "string":  # empty strings: zeros of dtype object would be Python ints
            out[spec.name] = np.full(shape, b"", dtype=object)
        else:
            out[spec.name] = np.zeros(shape, dtype=spec.dtype) if spec.dtype not in ("bfloat16",) else np.zeros(shape, np.float32)
    return out


def proof_feeds(config: ModelConfig, data: ParityData | None, batch: int, dims: dict[str, int] | None = None) -> tuple[dict[str, np.ndarray], bool]:
    """The first `batch` samples of the user's data for one shape set (wrapping around
    when it holds fewer), taken from its parity cases in order, and True; zeros (empty
    strings) and False where there is no data for that shape set."""
    from pipeline.parity import SHAPE_SEPARATOR
    from pipeline.stages.data import shape_label

    prefix = shape_label(dims) + SHAPE_SEPARATOR if dims else ""
    cases = [inputs for label, inputs in (data.cases if data is not None else ())
             if (label.startswith(prefix) if prefix else SHAPE_SEPARATOR not in label)]
    if not cases:
        return sample_inputs(config.inputs, batch, dims), False
    feeds = {}
    for spec in config.inputs:
        if not spec.batched:
            feeds[spec.name] = np.asarray(cases[0][spec.name])
            continue
        rows, have = [], 0
        for inputs in cases:
            if have >= batch:
                break
            rows.append(np.asarray(inputs[spec.name]))
            have += len(rows[-1])
        pooled = np.concatenate(rows)
        feeds[spec.name] = pooled[np.arange(batch) % len(pooled)]
    return feeds, True


def trace_model(config: ModelConfig, loaded: LoadedModel, data: ParityData | None = None) -> TracedModel:
    """Trace the signature-fixed function and prove it at two batch sizes (and every
    shape set) on the user's data: the first samples of `data`, zeros only where there is
    none. A model that raises on those samples eagerly too is bad input that names the
    sample and the model's own error, not the signature."""
    import tensorflow as tf

    function = make_function(config, loaded)
    try:
        function.get_concrete_function()  # traces: user code raises here, before any batch runs
    except Exception as exc:  # tracing runs user code: explain in the model's terms
        raise explain_trace_error(exc, config, loaded) from None
    dynamic = any(spec.shape and spec.shape[0] is None for spec in config.inputs)
    batches = (1, 3) if dynamic else ((config.inputs[0].shape[0] or 1),) if config.inputs[0].shape else (1,)
    for dims in config.shape_sets:  # every tested sequence length / image size, at each batch
        for batch in batches:
            feeds, from_data = proof_feeds(config, data, batch, dims)
            try:
                function(*[tf.constant(feeds[n]) for n in config.input_names])
            except Exception as exc:  # the traced graph runs user code's ops: explain in the model's terms
                raise _raised_on(exc, config, loaded, feeds, from_data, batch if dynamic else None, dims) from None
    count = function.experimental_get_tracing_count()
    if count != 1:
        from pipeline.usercode import bad_input

        shapes = f" and shapes {[dict(d) for d in config.shape_sets]}" if config.dynamic_dims else ""
        raise bad_input(
            config, ("inputs",),
            f"model '{config.name}' was traced {count} times for batch sizes {list(batches)}{shapes}; "
            "a signature-fixed function must trace once. Something in the model depends on Python values that change per call.",
        )
    return TracedModel(function=function, tracing_count=count, batch_sizes_checked=batches)


def _raised_on(exc: BaseException, config: ModelConfig, loaded: LoadedModel, feeds: dict, from_data: bool, batch: int | None, dims) -> ModelError:
    """The traced function raised on `feeds`. When the model raises on them eagerly as
    well, the inputs fit the signature and the model itself refuses these values: name
    the sample (one at a time when the batch is dynamic) and the model's own error.
    Otherwise the graph alone fails: explain it as a trace error."""
    from pipeline.usercode import bad_input, describe_frame, first_line, source_key, user_frame

    eager = _eager_error(loaded, feeds)
    if eager is None:
        return explain_trace_error(exc, config, loaded)
    sample, own = None, eager
    if batch is not None and batch > 1:
        for i in range(batch):
            one = {spec.name: (feeds[spec.name][i : i + 1] if spec.batched else feeds[spec.name]) for spec in config.inputs}
            found = _eager_error(loaded, one)
            if found is not None:
                sample, own = i, found
                break
    elif batch == 1:
        sample = 0
    where = f" of shape set {dict(dims)}" if dims else ""
    which = f"sample {sample}" if sample is not None else f"one of samples 0-{len(next(iter(feeds.values()))) - 1}"
    values = "; ".join(f"input '{spec.name}' = {_value_text(feeds[spec.name][sample] if spec.batched and sample is not None else feeds[spec.name])}"
                       for spec in config.inputs)
    frame = user_frame(own)
    at = f" at {describe_frame(frame)}" if frame else f" in {loaded.source_file or config.source.path or config.source.factory}"
    if from_data:
        what = (f"model '{config.name}' raises on {which}{where} of its own parity data ({values}): {type(own).__name__}: {first_line(own)}{at}. "
                "The inputs match the signature; the model refuses these values. Fix the model, or the data it is given (`data:`)")
    else:
        what = (f"model '{config.name}' raises on zeros{where} ({values}), which stand in where there is no data for this shape: "
                f"{type(own).__name__}: {first_line(own)}{at}. Give `data:` samples for every shape the model is tested at, or fix the model")
    return bad_input(config, source_key(config), what)


def _eager_error(loaded: LoadedModel, feeds: dict) -> BaseException | None:
    import tensorflow as tf

    try:
        loaded.call({k: tf.constant(v) for k, v in feeds.items()})
    except Exception as exc:  # the model's own refusal of these values, reported by the caller
        return exc
    return None


def _value_text(value) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def _signature_text(config: ModelConfig) -> str:
    return ", ".join(f"{i.name}: {i.dtype}{list(i.shape)}" for i in config.inputs)


def explain_trace_error(exc: BaseException, config: ModelConfig, loaded: LoadedModel) -> ModelError:
    """One sentence of cause, the config line, the user's file:line and code, the fix."""
    from pipeline.usercode import bad_input, describe_frame, first_line, is_python_bool_on_tensor, python_bool_message, source_key, user_frame

    if isinstance(exc, ModelError):  # already explained (e.g. output names), keep its location
        return exc
    frame = user_frame(exc)
    what = f"cannot trace model '{config.name}' into a graph with the input signature ({_signature_text(config)})"
    if is_python_bool_on_tensor(exc):
        return bad_input(config, source_key(config), f"{what}: {python_bool_message(frame)}")
    cause = first_line(exc)
    at = f" at {describe_frame(frame)}" if frame else f" in {loaded.source_file or config.source.path or config.source.factory}"
    if isinstance(exc, TypeError) and "positional argument" in cause:
        return bad_input(
            config, ("inputs",),
            f"{what}: the model takes a different number of inputs than the {len(config.inputs)} named here ({cause}){at}. "
            "Fix: list exactly the model's inputs under `inputs:`, in its argument order.",
        )
    return bad_input(
        config, ("inputs",),
        f"{what}: {type(exc).__name__}: {cause}{at}. "
        "Fix: make `inputs:` match what the model takes (names, count, shapes, dtypes), or fix the model code at that line.",
    )
