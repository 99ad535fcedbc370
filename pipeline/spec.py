"""Resolved model configs: frozen dataclasses, nothing else.

No parsing and no registry here: `pipeline.config` builds these from YAML, and every
stage, target and report reads them. Enum-like values are the YAML strings.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int | None, ...]
    dtype: str

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


@dataclass(frozen=True)
class SourceConfig:
    kind: str  # one of SOURCE_KINDS
    path: Path | None = None
    factory: str | None = None  # "module:function"
    build: str | None = None  # "module:function" that writes `path` when missing
    signature: str = "serving_default"


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

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    def target(self, name: str) -> TargetConfig:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(name)


def config_as_dict(config: ModelConfig) -> dict:
    """A JSON-friendly view of the resolved config (for reports and cache keys)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(config)
