"""Targets that misbehave on purpose, registered through TFSHIP_TARGET_MODULES."""
from __future__ import annotations

import os
from pipeline.target import Target


class HalfWrittenTarget(Target):
    """Writes part of its artifact, then fails like a converter bug would."""

    name = "half_written"

    def build(self, job):
        (job.out_dir / "1").mkdir()
        (job.out_dir / "1" / "saved_model.pb").write_bytes(b"partial")
        raise RuntimeError("converter crashed")


class AbortingTarget(Target):
    """Kills its worker process with SIGABRT, like a crashing native converter."""

    name = "aborting"

    def build(self, job):
        os.abort()


TARGET = HalfWrittenTarget()
