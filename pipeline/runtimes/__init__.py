"""Runtimes: how an exported artifact is run, written once for parity, bench and every
target. A `Runner` is built once per artifact (session, interpreter or loaded
SavedModel); `prepare(inputs)` puts one batch in place and returns a `Call` whose
`__call__()` is only the runtime call (what bench times) and whose `outputs()` runs it
and returns {output name: array} in the config's names (what parity compares).

Chunking (fixed-batch and largest-batch models), dtype casts and (de)quantization live
here and nowhere else. Nothing here imports a runtime library at import time.
"""
from pipeline.runtimes.base import BatchUnsupported, Call, Runner

__all__ = ["BatchUnsupported", "Call", "Runner"]
