"""Small typed records that stages hand each other (plus paths on disk)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class LoadedModel:
    """The source model, ready to call eagerly.

    `call(inputs)` takes {input name: tensor or array} in the config's names and
    returns {output name: tensor}, running the model eagerly (Keras with
    training=False, a Python function as written, a SavedModel through its own
    signature). `flavour` is one of: keras3, tf_keras, module, function, saved_model.
    """

    obj: Any
    flavour: str
    call: Callable[[dict], dict]
    source_file: Path | None = None  # where the model's code lives, for error messages
    # The user modules a file source's load ran (custom layers, transitively), and whether
    # the file plus those modules decide the model alone (no class from code tfship
    # cannot hash, such as a notebook's): then a cache hit needs no fingerprint.
    dependencies: tuple[Path, ...] = ()
    self_contained: bool = False


@dataclass(frozen=True)
class TracedModel:
    """The signature-fixed tf.function: kwargs by input name -> {output name: tensor}."""

    function: Any
    tracing_count: int
    batch_sizes_checked: tuple[int, ...]


@dataclass(frozen=True)
class ParityData:
    """Inputs for parity and calibration.

    `pool` holds N samples per input ({name: array [N, *shape[1:]]}; an unbatched
    input holds one value per sample). `cases` are the batches parity runs, each a
    (label, {name: array}) pair built from the pool.
    """

    pool: dict[str, np.ndarray]
    labels: np.ndarray | None
    cases: tuple[tuple[str, dict[str, np.ndarray]], ...]
