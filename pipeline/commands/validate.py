"""`tfship validate`: re-check exported artifacts (hashes, then parity) without re-exporting."""
from __future__ import annotations

import argparse
import json
import sys

from pipeline.commands._common import add_output_arguments, selected_configs
from pipeline.errors import PipelineError


def register(subparsers, common) -> None:
    validate = subparsers.add_parser("validate", help="re-check exported artifacts (hashes, then parity) without re-exporting")
    common(validate)
    add_output_arguments(validate)
    validate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    configs = selected_configs(args)
    from pipeline.execute.console import native_stderr_to, quiet_tensorflow
    from pipeline.execute.validate import validate_model

    from pipeline import progress
    from pipeline.commands._common import output_level

    quiet_tensorflow()
    code = 0
    models = []
    from pipeline.fsutil import refuse_links

    with native_stderr_to(refuse_links(args.artifacts, args.artifacts / ".logs" / "validate.log")):
        # The view writes to sys.stderr as it is inside the block: the terminal, not fd 2 (the log).
        view = progress.make_view(level=output_level(args))
        previous = progress.set_sink(view)
        try:
            for config in configs:
                checks: list[dict] = []
                try:
                    model_code = validate_model(config, args.artifacts, checks)
                    error = None
                except PipelineError as exc:
                    progress.note(config.name, f"error: {exc}", progress.QUIET)
                    model_code, error = exc.exit_code, str(exc)
                models.append({"model": config.name, "exit_code": model_code, "error": error, "checks": checks})
                code = max(code, model_code) if 2 not in (code, model_code) else 2
        finally:
            progress.set_sink(previous)
            view.close()
    if args.json:
        json.dump({"exit_code": code, "passed": code == 0, "models": models}, sys.stdout, indent=2, default=str)
        print()
    return code
