"""Resolved model configs: frozen dataclasses, nothing else.

No parsing and no registry here: `pipeline.config` builds these from YAML, and every
stage, target and report reads them. Enum-like values are the YAML strings.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


BATCH_DIM = "batch"  # the symbolic name of a dynamic leading dimension
DEFAULT_DIM_VALUES = (7, 32, 128)  # concrete values parity tests a dynamic non-batch dimension at


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int | None, ...]  # None = dynamic
    dtype: str
    dims: tuple[str | None, ...] = ()  # per axis: the symbolic name a dynamic axis shares across inputs

    def axis_name(self, axis: int) -> str | None:
        """The symbolic name of a dynamic axis (None for a static one): the config's name,
        `batch` for the leading axis, else `<input>_<axis>`."""
        if self.shape[axis] is not None:
            return None
        if axis < len(self.dims) and self.dims[axis]:
            return self.dims[axis]
        return BATCH_DIM if axis == 0 else f"{self.name}_{axis}"

    @property
    def dynamic_dims(self) -> tuple[tuple[int, str], ...]:
        """(axis, name) of every dynamic axis but the batch."""
        return tuple((axis, self.axis_name(axis)) for axis in range(1, len(self.shape)) if self.shape[axis] is None)

    def sample_shape(self, dims: dict[str, int]) -> tuple[int, ...]:
        """One sample's shape (no batch axis) with dynamic axes set from `dims`."""
        if not self.batched:
            return ()
        return tuple(dims[self.axis_name(axis)] if d is None else d for axis, d in enumerate(self.shape) if axis > 0)

    @property
    def batched(self) -> bool:
        """True when the leading dimension is the batch (dynamic or fixed)."""
        return len(self.shape) > 0

    @property
    def fixed_batch(self) -> int | None:
        return self.shape[0] if self.shape else None


@dataclass(frozen=True)
class OutputSpec:
    name: str
    source: str | None = None  # key in the model's own outputs, when it differs
    allow_nonfinite: bool = False  # NaN/Inf in the eager reference are expected (and must match exactly)


@dataclass(frozen=True)
class SourceConfig:
    kind: str  # one of SOURCE_KINDS
    path: Path | None = None
    factory: str | None = None  # "module:function"
    build: str | None = None  # "module:function" that writes `path` when missing
    signature: str = "serving_default"
    modules: tuple[str, ...] = ()  # imported in the worker before loading: they register custom layers
    custom_objects: tuple[tuple[str, str], ...] = ()  # class name -> "module:attr", for tf-keras .h5 files


@dataclass(frozen=True)
class SyntheticInput:
    distribution: str = "uniform"
    low: float = 0.0
    high: float = 1.0
    mean: float = 0.0
    std: float = 1.0


@dataclass(frozen=True)
class DataConfig:
    kind: str  # synthetic | npz | generator
    synthetic: tuple[tuple[str, SyntheticInput], ...] = ()
    npz: Path | None = None
    generator: str | None = None
    labels: str | None = None  # key of the labels array in the npz
    seed: int | None = None  # synthetic data defaults to 0; generators keep their own default
    samples: int = 64
    batch_sizes: tuple[int, ...] = ()
    classifier: str | None = None  # output holding class scores
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()  # concrete values tested per dynamic non-batch dimension
    allow_nonfinite: bool = False  # NaN/Inf in the input data are intended

    def synthetic_for(self, name: str) -> SyntheticInput:
        return dict(self.synthetic).get(name, SyntheticInput())


@dataclass(frozen=True)
class TargetConfig:
    name: str
    options: Any  # the target's own frozen Options dataclass
    tolerances: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    optional: bool = False

    def tolerance_overrides(self, variant: str, output: str) -> dict:
        """Overrides for one output: `tolerances.<output>` then `tolerances.<variant>.<output>`."""
        table = {k: dict(v) for k, v in self.tolerances}
        merged = dict(table.get(output, {}))
        merged.update(table.get(f"{variant or 'default'}/{output}", {}))
        return merged


@dataclass(frozen=True)
class ModelConfig:
    name: str
    file: Path
    source: SourceConfig
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    data: DataConfig
    targets: tuple[TargetConfig, ...]
    sha256: str = field(default="", compare=False)
    # What a target needs from this model that it does not have: (target name, Problem).
    # Raised only when that target is selected (a check for tflite's int8 calibration
    # must not refuse `export --target savedmodel`); derived, so no part of the hash.
    target_problems: tuple = field(default=(), compare=False, repr=False, metadata={"derived": True})

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    @property
    def dynamic_dims(self) -> tuple[str, ...]:
        """Names of the dynamic non-batch dimensions, in order of first appearance."""
        return tuple(dict.fromkeys(name for spec in self.inputs for _, name in spec.dynamic_dims))

    @property
    def shape_sets(self) -> tuple[dict[str, int], ...]:
        """The concrete dimension values parity runs at: the k-th value of every dynamic
        dimension together (a shorter list repeats its last value). One empty set when
        only the batch is dynamic."""
        table = dict(self.data.shapes)
        values = [table.get(name, DEFAULT_DIM_VALUES) for name in self.dynamic_dims]
        if not values:
            return ({},)
        count = max(len(v) for v in values)
        return tuple({name: v[min(k, len(v) - 1)] for name, v in zip(self.dynamic_dims, values)} for k in range(count))

    def target(self, name: str) -> TargetConfig:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(name)


def config_as_dict(config: ModelConfig) -> dict:
    """A JSON-friendly view of the resolved config (for reports and cache keys)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if not f.metadata.get("derived")}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(config)
