"""`tfship` command line: argparse and exit codes. Exit codes: 0 all passed, 1 a target
failed, 2 bad input. Each subcommand lives in `pipeline.commands`."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from pipeline.commands import MODULES as COMMAND_MODULES
from pipeline.errors import PipelineError

DEFAULT_CONFIG_DIR = Path("configs/models")
DEFAULT_ARTIFACTS = Path("artifacts")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfship",
        description="Export trained TensorFlow/Keras models to deployment targets and prove parity with the eager model.",
        epilog="Exit codes: 0 everything passed; 1 a target failed parity or conversion; 2 bad input (config, model, data).",
    )
    parser.add_argument("--version", action="version", version=f"tfship {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", action="append", type=Path, metavar="PATH", help="a model config file; repeatable")
        p.add_argument("--model", action="append", metavar="NAME", help="model name (config file stem) or a config path; repeatable; default: every config")
        p.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR, help="folder of model YAML configs (default: %(default)s)")
        p.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS, help="output folder (default: %(default)s)")

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub, common)
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("tfship")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: targets finished before the interrupt are published and recorded; the others keep their previous artifacts", file=sys.stderr)
        return 130
    except OSError as exc:
        from pipeline.publication import file_system_error

        message = file_system_error(exc)
        if message is None:
            raise
        print(f"error: {message[0]}", file=sys.stderr)
        return message[1]


if __name__ == "__main__":
    sys.exit(main())
