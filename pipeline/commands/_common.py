"""What several commands share: selecting configs and targets from the arguments."""
from __future__ import annotations

import argparse

from pipeline.errors import ConfigError, Problem


def selected_configs(args: argparse.Namespace) -> list:
    """The configs `-c/--config`, `--model` and `--config-dir` select, validated against the target registry."""
    from pathlib import Path

    from pipeline.config import config_files, load_configs
    from targets import REGISTRY

    paths = [Path(p) for p in getattr(args, "config", None) or []]
    missing = [Problem(str(p), None, "-c/--config", "config file not found; expected a model YAML file") for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(missing)
    files = config_files(args.model, args.config_dir) if args.model or not paths else []
    return load_configs(files + [p for p in paths if p not in files], REGISTRY)


def add_output_arguments(parser: argparse.ArgumentParser, json_help: str = "one JSON document on stdout (progress stays on stderr)") -> None:
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress, only the result")
    parser.add_argument("-v", "--verbose", action="store_true", help="every log line and each stage's time")


def output_level(args: argparse.Namespace) -> int:
    from pipeline import progress

    return progress.QUIET if args.quiet else progress.VERBOSE if args.verbose else progress.NORMAL


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
