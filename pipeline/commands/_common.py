"""What several commands share: selecting configs and targets from the arguments."""
from __future__ import annotations

import argparse

from pipeline.errors import ConfigError, Problem


def selected_configs(args: argparse.Namespace) -> list:
    """The configs `--model` / `--config-dir` select, validated against the target registry."""
    from pipeline.config import config_files, load_configs
    from targets import REGISTRY

    return load_configs(config_files(args.model, args.config_dir), REGISTRY)


def target_filter(requested: list[str] | None, configs) -> list[str] | None:
    """`--target` names checked against the registry and the configs; None means every target."""
    from targets import REGISTRY

    if not requested or "all" in requested:
        return None
    problems = [Problem("", None, "--target", f"unknown target '{t}'; known: {', '.join(REGISTRY.names())}, all") for t in requested if t not in REGISTRY]
    if not problems and not any(t.name in requested for c in configs for t in c.targets):
        problems.append(Problem("", None, "--target", f"no selected model configures {', '.join(requested)}; add it under `targets:` in a config"))
    if problems:
        raise ConfigError(problems)
    return list(requested)
