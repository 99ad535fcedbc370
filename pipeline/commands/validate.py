"""`tfship validate`: re-check exported artifacts (hashes, then parity) without re-exporting."""
from __future__ import annotations

import argparse
import sys

from pipeline.commands._common import selected_configs
from pipeline.errors import PipelineError


def register(subparsers, common) -> None:
    validate = subparsers.add_parser("validate", help="re-check exported artifacts (hashes, then parity) without re-exporting")
    common(validate)
    validate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    configs = selected_configs(args)
    from pipeline.execute.console import native_stderr_to, quiet_tensorflow
    from pipeline.execute.validate import validate_model

    quiet_tensorflow()
    code = 0
    with native_stderr_to(args.artifacts / ".logs" / "validate.log"):
        for config in configs:
            try:
                model_code = validate_model(config, args.artifacts)
            except PipelineError as exc:
                print(f"error: {exc}", file=sys.stderr)
                model_code = exc.exit_code
            code = max(code, model_code) if 2 not in (code, model_code) else 2
    return code
