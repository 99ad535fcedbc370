"""TF Serving SavedModel: `savedmodel/<version>/` with a `serving_default` signature
whose input and output names are the config's."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.runtimes.savedmodel import SavedModelRunner
from pipeline.target import Artifact, BuildInputs, Target
from pipeline.tolerance import FP32


@dataclass(frozen=True)
class SavedModelOptions:
    version: int = 1  # TF Serving loads the highest numbered folder


class SavedModelTarget(Target):
    name = "savedmodel"
    description = "TF Serving SavedModel (serving_default signature, config names)"
    Options = SavedModelOptions

    def check_options(self, options, model):
        return [("version", "expected a positive integer version")] if options.version < 1 else []

    def build(self, job: BuildInputs) -> list[Artifact]:
        version = str(job.target.options.version)
        shutil.copytree(job.saved_model_dir, job.out_dir / version)
        return [Artifact(variant="", files=(version,), tolerance=FP32, info={"version": int(version)})]

    def open(self, target_dir: Path, artifact: Artifact, threads: int | None = None) -> SavedModelRunner:
        return SavedModelRunner(target_dir / artifact.files[0])

    def tensor_probe(self, target_dir, artifact, model, debug_dir):
        from pipeline.localize.probes import saved_model_probe

        return saved_model_probe(Path(target_dir) / artifact.files[0], model.input_names, debug_dir)


TARGET = SavedModelTarget()
