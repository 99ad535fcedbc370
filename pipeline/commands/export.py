"""`tfship export`: build and check artifacts."""
from __future__ import annotations

import argparse
import json
import sys

from pipeline.commands._common import add_output_arguments, output_level, selected_configs, target_filter
from pipeline.errors import ConfigError, Problem


def register(subparsers, common) -> None:
    export = subparsers.add_parser("export", help="build and check artifacts")
    common(export)
    export.add_argument("--target", action="append", metavar="T", help="target name, repeatable, or 'all' (default: every target in each config)")
    export.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="worker processes (default: %(default)s); above 1, the targets of one model run in parallel, each in its own worker, started only when its memory estimate fits")
    export.add_argument("--force", action="store_true", help="rebuild even what is up to date")
    export.add_argument("--bench", action="store_true", help="after exporting, time what was exported (as `tfship bench`)")
    export.add_argument("--dry-run", action="store_true", help="print what would be built or reused, and why; build and write nothing")
    export.add_argument("--strict", action="store_true", help="weak evidence (a near-constant reference output), or a budget more than 1000x looser than the artifact needed, fails the run (exit 1)")
    add_output_arguments(export)
    export.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    configs = selected_configs(args)
    from pipeline.api import run_configs
    from pipeline.execute.console import quiet_tensorflow

    quiet_tensorflow()
    if args.jobs < 1:
        raise ConfigError([Problem("", None, "--jobs", f"expected at least 1 worker, got {args.jobs}")])
    only = target_filter(args.target, configs)
    if args.dry_run:
        from pipeline.config import require_selected
        from pipeline.plan import make_plan

        require_selected(configs, only)
        from pipeline.reports.model import tool_versions

        plan = make_plan(configs, only, args.artifacts, tool_versions(), force=args.force)
        print("\n".join(plan.lines()))
        count = {action: sum(j.action == action for j in plan.jobs) for action in ("build", "verify", "reuse")}
        print(
            f"\n{count['build']} to build, {count['verify']} to verify (the model is built and fingerprinted; reused when it is "
            f"the one they were built from), {count['reuse']} up to date (dry run: nothing built or written)"
        )
        return 0
    results = run_configs(configs, args.artifacts, only, force=args.force, strict=args.strict, level=output_level(args), jobs=args.jobs)
    codes = [r.exit_code for r in results]
    code = 2 if 2 in codes else max(codes, default=0)
    if args.bench and code == 0:
        from pipeline.bench import DEFAULT_BATCH, DEFAULT_MAX_SECONDS
        from pipeline.commands.bench import run as run_bench

        bench_args = argparse.Namespace(
            model=args.model, config=args.config, config_dir=args.config_dir, artifacts=args.artifacts, target=args.target,
            batch=DEFAULT_BATCH, threads=None, max_seconds=DEFAULT_MAX_SECONDS,
        )
        code = run_bench(bench_args)
    if args.json:
        document = {"exit_code": code, "passed": code == 0, "strict": args.strict, "models": [r.to_dict() for r in results]}
        json.dump(document, sys.stdout, indent=2, default=str)
        print()
        return code
    from pipeline.reports.verdict_lines import summary_table

    print()
    print(summary_table([v for r in results for v in r.verdicts], strict=args.strict))
    print(f"\nreports: {args.artifacts}/<model>/report.json, report.md and report.html")
    return code
