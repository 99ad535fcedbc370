"""The error family. Every failure tfship reports on purpose is a PipelineError.

Each carries an exit code (2 = bad input, 1 = a target failed) and a message that
says what happened, where, what was expected and how to fix it. The CLI prints the
message and exits with the code; a traceback means a bug in tfship itself.
"""
from __future__ import annotations

from dataclasses import dataclass


class PipelineError(Exception):
    """Root of all errors tfship raises deliberately."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One problem found in a config file: where it is and what would be valid."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigError(PipelineError):
    """The plan itself is wrong: nothing was imported, built or written."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem(file="", line=None, key="", message=problems)]
        self.problems = list(problems)
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in the configuration:"
        super().__init__("\n".join([header] + [f"  - {p}" for p in self.problems]))


class ModelError(PipelineError):
    """The model cannot be loaded or traced as configured (bad input: exit 2)."""

    exit_code = 2


class IncompatibleModel(PipelineError):
    """The model uses something the target cannot run; the message names it and the fix."""

    exit_code = 2


class ConversionError(PipelineError):
    """A converter failed on a model it should have handled."""

    exit_code = 1


class TargetUnavailable(PipelineError):
    """A tool a target needs is missing on this machine."""

    exit_code = 1


class IntegrityError(PipelineError):
    """Files on disk differ from what the report recorded."""

    exit_code = 1


class LinkRefused(PipelineError):
    """A symbolic link stands where tfship would write (bad input: exit 2; nothing written).

    Artifacts folders come from caches and pull requests; a link planted in one could
    point anywhere (/etc, when CI runs as root)."""

    exit_code = 2


class MissingExtra(PipelineError):
    """An optional dependency group (an extra) is not installed: bad input for this
    machine, named with its install command before any work (exit 2)."""

    exit_code = 2


class MissingInternal(PipelineError):
    """An installed library lacks an internal tfship relies on (a release outside the
    tested range moved or removed it): one line naming the internal, the library's
    version and the tested range (exit 2: the environment must change, nothing was built)."""

    exit_code = 2
