"""`tfship export`: build and check artifacts."""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.commands._common import selected_configs, target_filter
from pipeline.errors import ConfigError, Problem


def register(subparsers, common) -> None:
    export = subparsers.add_parser("export", help="build and check artifacts")
    common(export)
    export.add_argument("--target", action="append", metavar="T", help="target name, repeatable, or 'all' (default: every target in each config)")
    export.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="models exported in parallel worker processes (default: %(default)s)")
    export.add_argument("--force", action="store_true", help="rebuild even what is up to date")
    export.add_argument("--bench", action="store_true", help="after exporting, time what was exported (as `tfship bench`)")
    export.add_argument("--dry-run", action="store_true", help="print what would be built or reused, and why; build and write nothing")
    export.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    configs = selected_configs(args)
    from pipeline.execute.console import quiet_tensorflow
    from pipeline.execute.export import export

    quiet_tensorflow()
    if args.jobs < 1:
        raise ConfigError([Problem("", None, "--jobs", f"expected at least 1 worker, got {args.jobs}")])
    only = target_filter(args.target, configs)
    if args.dry_run:
        from pipeline.plan import make_plan
        from pipeline.reports.model import tool_versions

        plan = make_plan(configs, only, args.artifacts, tool_versions(), force=args.force)
        print("\n".join(plan.lines()))
        building = sum(j.action == "build" for j in plan.jobs)
        print(f"\n{building} to build, {len(plan.jobs) - building} up to date (dry run: nothing built or written)")
        return 0
    code = export(configs, only, args.artifacts, jobs=args.jobs, force=args.force)
    _summary(configs, args.artifacts, only)
    if args.bench and code == 0:
        from pipeline.bench import DEFAULT_BATCH, DEFAULT_MAX_SECONDS
        from pipeline.commands.bench import run as run_bench

        bench_args = argparse.Namespace(
            model=args.model, config_dir=args.config_dir, artifacts=args.artifacts, target=args.target,
            batch=DEFAULT_BATCH, threads=None, max_seconds=DEFAULT_MAX_SECONDS,
        )
        code = run_bench(bench_args)
    return code


def _summary(configs, artifacts: Path, only: list[str] | None) -> None:
    from pipeline.reports.model import read_report

    reports = [(config, read_report(artifacts / config.name) or {}) for config in configs]
    if not any(report.get("targets") for _, report in reports):
        return  # nothing recorded (bad input): the error above is the whole story
    print("\nmodel        target       status   max_abs (worst output)")
    for config, report in reports:
        for name, entry in sorted(report.get("targets", {}).items()):
            if only is not None and name not in only:
                continue
            rows = [(name, entry)] + [(f"{name}/{v}", e) for v, e in sorted((entry.get("variants") or {}).items())]
            for label, e in rows:
                outputs = (e.get("parity") or {}).get("outputs") or {}
                worst = max((m.get("max_abs") or 0.0 for m in outputs.values()), default=None)
                if label == name and entry.get("variants"):
                    worst = None
                print(f"{config.name:12} {label:24} {e.get('status', '-'):8} {'-' if worst is None else f'{worst:.3g}'}")
    print(f"\nreports: {artifacts}/<model>/report.json and report.md")
