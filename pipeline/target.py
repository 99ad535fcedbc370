"""The contract every deployment target fulfils. One target = one file under targets/.

A target module must not import TensorFlow (or any converter) at import time: the
registry is read while the config is validated, before TensorFlow loads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from pipeline.spec import ModelConfig, TargetConfig
from pipeline.records import LoadedModel
from pipeline.runtimes import Runner
from pipeline.tolerance import FP32, Tolerance


@dataclass(frozen=True)
class BuildInputs:
    """Everything a target may use to build its artifacts. Read-only."""

    model: ModelConfig
    target: TargetConfig  # options: target.options (the target's own Options)
    out_dir: Path  # empty staging folder owned by this target: write every file here
    saved_model_dir: Path  # SavedModel whose serving_default uses the config's names
    traced: Any  # signature-fixed tf.function: f(*inputs in config order) -> {output: tensor}
    loaded: LoadedModel
    calibration: dict[str, np.ndarray]  # {input: array [N, ...]}: representative samples
    labels: np.ndarray | None = None


@dataclass(frozen=True)
class Artifact:
    """One exported artifact (one variant) of a target.

    `files` are paths relative to the target's folder (a folder may be listed: all
    files below it count). `info` holds extra JSON-able report fields. `tolerance`
    is the target's default budget for this variant before YAML overrides.

    A variant that could not be built is returned with `error` set (and no files):
    it is reported as an error on its own while the target's other variants are
    checked and published. Build it with `Artifact.failed(variant, exc)`.

    `unchecked` names files (or folders) of `files` that this variant's parity does not
    execute, with why (a text dump, an object built for hardware that is not here): the
    report and the release manifest mark them unchecked; every other file is checked by
    the variant's parity run.

    A failed variant may carry a `candidate`: the artifact a fix the error offers would
    give (its files in the staging folder, under the same variant). The pipeline checks
    its parity and states the outcome in the variant's error, so a fix is only offered
    with its result here; the candidate itself is never published.

    `unchecked` names every file of `files` that parity does not run (a file compiled
    for hardware this machine lacks) and says why and what was checked instead; the
    report (`unchecked_files`) and the release manifest carry it beside the file.
    """

    variant: str
    files: tuple[str, ...]
    tolerance: Tolerance = FP32
    info: dict = field(default_factory=dict)
    error: dict | None = None  # {"error": class name, "exit_code": int, "message": str}
    candidate: "Candidate | None" = None
    unchecked: dict[str, str] = field(default_factory=dict)  # file or folder (as in `files`) -> why parity does not run it

    @classmethod
    def failed(cls, variant: str, exc: BaseException, info: dict | None = None) -> "Artifact":
        code = getattr(exc, "exit_code", 1)
        return cls(
            variant=variant, files=(), info=dict(info or {}), candidate=getattr(exc, "candidate", None),
            error={"error": type(exc).__name__, "exit_code": code, "message": str(exc)},
        )


@dataclass(frozen=True)
class Candidate:
    """A fix for a failed variant, built but not published: `option` is the config
    setting that gives it (e.g. "`float_fallback: [int16x8]`")."""

    option: str
    artifact: Artifact


@dataclass(frozen=True)
class NoOptions:
    """For targets without options."""


class Target:
    name: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def variants(self, options: Any) -> tuple[str, ...]:
        """Variant names this target will produce with these options ('' = a single artifact)."""
        return ("",)

    def check_options(self, options: Any, model: dict) -> list[tuple[str, str]]:
        """Cross-field checks in pure Python: [(option key or '', message)]; a key may be a
        tuple path into a nested option, e.g. ("recipes", 0, "name").

        `model` is a plain view: {name, inputs (InputSpec tuple), outputs (names), data}.
        """
        return []

    def default_tolerance(self, variant: str) -> Tolerance:
        """The parity budget of a variant before YAML overrides (also used to judge
        artifacts of this kind that tfship did not build)."""
        return FP32

    def memory_factor(self, options: Any, weight_bytes: int) -> float | None:
        """Peak memory of building and checking this target, in weight bytes above the
        worker's base (pipeline.execute.admission), when the options and the weights'
        size change it; None: the measured per-target factor applies."""
        return None

    def build(self, job: BuildInputs) -> list[Artifact]:
        raise NotImplementedError

    def open(self, target_dir: Path, artifact: Artifact, threads: int | None = None) -> Runner:
        """A runner for the artifact from disk (pipeline.runtimes). `threads`: the runtime's
        thread count (None: its default). Parity, validate and bench all run it."""
        raise NotImplementedError

    def diagnose(self, job: BuildInputs, artifact: Artifact, parity: dict) -> dict | None:
        """Called when an artifact fails parity: extra report fields that explain why."""
        return None

    def repair_variants(self, options: Any) -> tuple[str, ...]:
        """Variants whose parity failure starts a repair search (the options say which)."""
        return ()

    def repair(self, job: BuildInputs, artifact: Artifact, entry: dict, verify: Callable[[Artifact], dict], log: Callable[[str], None]) -> tuple[list[Artifact], dict] | None:
        """Called when a variant named by `repair_variants` (or `tfship repair`) fails parity.

        `entry` is the failed variant's report record (parity, diagnosis); `verify(a)`
        runs the same parity check on an artifact staged in `job.out_dir`. Returns the
        repaired artifacts to publish (each is checked again like any other) and the
        report record of the search, or None when the target cannot repair.
        """
        return None

    def tensor_probe(self, target_dir: Path, artifact: Artifact, model: ModelConfig, debug_dir: Path):
        """The artifact's intermediate tensors in its own runtime (a `pipeline.localize.probes.TensorProbe`),
        for layer localization; None when the runtime cannot expose them (then localization bisects).
        Debug copies go to `debug_dir`, never into `target_dir`."""
        return None

    def options_for_variant(self, options: Any, variant: str) -> Any:
        """Options that build only `variant` (bisection rebuilds one variant of truncated models)."""
        return options
