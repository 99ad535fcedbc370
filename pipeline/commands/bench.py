"""`tfship bench`: time exported artifacts against the eager model and the tf.function graph."""
from __future__ import annotations

import sys

from pipeline.bench import DEFAULT_BATCH, DEFAULT_MAX_SECONDS, BenchError, BenchOptions, benchmark_model
from pipeline.commands._common import selected_configs
from pipeline.errors import ConfigError, PipelineError, Problem
from pipeline.execute.console import native_stderr_to, quiet_tensorflow
from pipeline.fsutil import refuse_links
from pipeline.publication import check_model_tree
from pipeline.reports.markdown import render_benchmark_markdown
from pipeline.reports.model import report_path
from pipeline.runtimes.base import available_cpus


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time exported artifacts against the eager model and the tf.function graph",
        description="Time every exported artifact (each variant too) and two baselines, the eager model and the plain "
        "tf.function graph, at batch 1 and a larger batch; write the figures into report.json and report.md. "
        "Runs on what `tfship export` wrote: it never re-exports.",
    )
    common(parser)
    parser.add_argument("--target", action="append", metavar="T", help="only this target's artifacts, repeatable, or 'all' (default: every target in the report)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, metavar="N", help="the larger batch timed besides batch 1 (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help=f"threads for every runtime (default: the CPUs available, {available_cpus()} here)")
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, metavar="S", help="time limit per figure, one artifact at one batch (default: %(default)s)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from targets import REGISTRY

    options = BenchOptions(batch=args.batch, threads=args.threads, max_seconds=args.max_seconds)
    options.check()
    only = None if not args.target or "all" in args.target else list(args.target)
    if only:
        unknown = [t for t in args.target if t not in REGISTRY]
        if unknown:
            raise ConfigError([Problem("", None, "--target", f"unknown target '{t}'; known: {', '.join(REGISTRY.names())}, all") for t in unknown])
    configs = selected_configs(args)
    quiet_tensorflow()
    if not args.model:  # every config: only those already exported
        configs = [c for c in configs if (args.artifacts / c.name / "report.json").is_file()]
        if not configs:
            raise BenchError(f"no exported model under {args.artifacts}; run `tfship export` first")
    log_file = refuse_links(args.artifacts, args.artifacts / ".logs" / "bench.log")
    for config in configs:
        check_model_tree(args.artifacts, config.name)
    with native_stderr_to(log_file):
        return _bench_models(configs, args, options, only)


def _bench_models(configs, args, options: BenchOptions, only: list[str] | None) -> int:
    from pipeline.runtimes.savedmodel import configure_tensorflow_threads

    # TensorFlow sizes its thread pools once, when it first runs: set them before anything runs.
    configure_tensorflow_threads(options.resolved_threads())
    code = 0
    for config in configs:
        try:
            report = benchmark_model(config, args.artifacts, options, only)
        except PipelineError as exc:  # one model's stale report does not stop the others
            print(f"error: {exc}", file=sys.stderr)
            code = max(code, exc.exit_code)
            continue
        print(render_benchmark_markdown(report))
        print(f"figures merged into {report_path(args.artifacts / config.name)} and report.md\n")
    return code
