"""`tfship matrix`: the model x target job list as JSON for a CI matrix."""
from __future__ import annotations

import argparse
import json

from pipeline.commands._common import selected_configs
from pipeline.matrix import SLICES_DIR, matrix


def register(subparsers, common) -> None:
    parser = subparsers.add_parser("matrix", help="print the model x target job list as JSON for a CI matrix")
    common(parser)
    parser.add_argument("--slices-dir", default=SLICES_DIR, help="folder each job exports its slice under (default: %(default)s)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    configs = selected_configs(args)
    print(json.dumps(matrix(configs, args.slices_dir), separators=(",", ":")))
    return 0
