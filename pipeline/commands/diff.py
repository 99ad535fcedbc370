"""`tfship diff OLD NEW`: how parity, sizes and latencies moved between two releases
(the rules are in `pipeline.reports.diff`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.fsutil import write_json_atomic
from pipeline.reports.diff import DEFAULT_FLOOR, DEFAULT_LATENCY_MARGIN, DEFAULT_MARGIN, DiffInputError, Margins, diff_paths
from pipeline.reports.diff import __doc__ as diff_doc


def add_margin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="relative growth of an error metric or size that counts as worse (default: %(default)s = 10%%)")
    parser.add_argument("--floor", type=float, default=DEFAULT_FLOOR, help="absolute change of an error metric that never counts, raised to 5%% of the output's atol (default: %(default)s)")
    parser.add_argument("--latency-margin", type=float, default=DEFAULT_LATENCY_MARGIN, help="relative p50 latency growth that counts as worse (default: %(default)s)")
    parser.add_argument("--accept-model-change", action="store_true", help="do not fail when the eager model's own outputs changed (a deliberate retrain)")


def margins_from(args: argparse.Namespace) -> Margins:
    if args.margin < 0 or args.floor < 0 or args.latency_margin < 0:
        raise DiffInputError("--margin, --floor and --latency-margin must be >= 0")
    return Margins(args.margin, args.floor, args.latency_margin, args.accept_model_change)


def _handle(args: argparse.Namespace) -> int:
    result = diff_paths(args.old, args.new, margins_from(args))
    lines = result.lines()
    if not lines:
        print(f"no change beyond the margins ({result.compared} output comparisons)")
    for line in lines:
        print(line)
    if args.json:
        write_json_atomic(args.json, result.to_json())
    if result.failing:
        print(f"\n{len(result.failing)} finding(s) got worse beyond the margins", flush=True)
    return result.exit_code


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="compare two releases (or report.json files): parity, sizes, latencies; exit 1 when something got worse",
        description=diff_doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("old", type=Path, help="previous release folder, artifacts folder or report.json")
    parser.add_argument("new", type=Path, help="new release folder, artifacts folder or report.json")
    add_margin_arguments(parser)
    parser.add_argument("--json", type=Path, default=None, help="also write the findings as JSON here")
    parser.set_defaults(handler=_handle)
