"""The `tfship` subcommands: thin argparse handlers over the library. Each module has
`register(subparsers, common)`; the parser it adds sets `handler=fn(args) -> exit code`.
Nothing in the library imports this package."""

MODULES: tuple[str, ...] = (
    "pipeline.commands.export",
    "pipeline.commands.validate",
    "pipeline.commands.targets",
    "pipeline.commands.bench",
    "pipeline.commands.release",
    "pipeline.commands.ci_report",
    "pipeline.commands.diff",
    "pipeline.commands.matrix",
    "pipeline.commands.merge",
    "pipeline.commands.repair",
    "pipeline.commands.explain",
    "pipeline.commands.inspect",
    "pipeline.commands.compare",
)
