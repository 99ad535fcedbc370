"""`tfship explain`: where artifacts on disk diverge from the eager model, layer by layer."""
from __future__ import annotations

import argparse

from pipeline.commands._common import selected_configs


def register(subparsers, common) -> None:
    parser = subparsers.add_parser("explain", help="where artifacts on disk diverge from the eager model, layer by layer")
    common(parser)
    parser.add_argument("--target", action="append", metavar="T", help="target name, repeatable (default: every exported target)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    configs = selected_configs(args)
    from pipeline.execute.console import native_stderr_to, quiet_tensorflow
    from pipeline.execute.explain import explain_model
    from pipeline.fsutil import refuse_links
    from pipeline.publication import check_model_tree

    log_file = refuse_links(args.artifacts, args.artifacts / ".logs" / "explain.log")
    for config in configs:
        check_model_tree(args.artifacts, config.name)
    quiet_tensorflow()
    code = 0
    with native_stderr_to(log_file):
        for config in configs:
            code = max(code, explain_model(config, args.artifacts, args.target))
    return code
