"""`tfship merge DIR...`: combine slice folders (one export each) into one release
(the rules are in `pipeline.matrix`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.commands._common import selected_configs
from pipeline.commands.diff import margins_from
from pipeline.commands.release import add_release_arguments, previous_release, print_outcome, release_outputs
from pipeline.matrix import __doc__ as matrix_doc
from pipeline.matrix import merge
from pipeline.release import check_version, default_version, git_info


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="combine slice folders (one export each) into one release with one manifest",
        description=matrix_doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(parser)
    parser.add_argument("slices", nargs="+", type=Path, metavar="DIR", help="slice folders (each the --artifacts of one export job)")
    add_release_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    configs = selected_configs(args)
    git = git_info()
    version = check_version(args.version or default_version(git))
    release_root, ci_dir = release_outputs(args, version)
    outcome = merge(
        configs,
        list(args.slices),
        version,
        release_root,
        git=git,
        ci_dir=ci_dir,
        previous=previous_release(args, release_root, version),
        margins=margins_from(args),
        allow_drift=args.allow_drift,
        force=args.force,
    )
    print_outcome(outcome)
    return 0
