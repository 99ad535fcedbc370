"""Corpus configs (configs/corpus/) placed in a throwaway test project."""
from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
CORPUS_CONFIGS = REPO / "configs" / "corpus"


def corpus_config(project, model: str, targets: list | None = None, **data) -> Path:
    """Write configs/corpus/<model>.yaml into `project`, with `targets` in place of the
    corpus's own list and `data` keys overridden; file sources point into the repo."""
    raw = yaml.safe_load((CORPUS_CONFIGS / f"{model}.yaml").read_text())
    source = raw["source"]
    if "path" in source:
        source["path"] = str((CORPUS_CONFIGS / source["path"]).resolve())
    if targets is not None:
        raw["targets"] = targets
    raw["data"].update(data)
    return project.config(model, yaml.safe_dump(raw, sort_keys=False))


def only_record(entry: dict) -> dict:
    """The record of a target with one artifact, whichever report shape holds it."""
    variants = entry.get("variants")
    if variants:
        assert len(variants) == 1, sorted(variants)
        return next(iter(variants.values()))
    return entry
