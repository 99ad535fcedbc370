"""Registers the aborting fixture target (one TARGET per module)."""
from fixture_targets import AbortingTarget

TARGET = AbortingTarget()
