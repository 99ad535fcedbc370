"""`tfship ci-report`: JUnit XML, a Markdown summary and the HTML report for the selected
models, written into `<artifacts>/ci/`. It exits 0 whatever the parity results:
`export`, `release` and `merge` are the commands whose exit codes gate a pipeline."""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.commands._common import selected_configs
from pipeline.reports.ci import load_reports, write_ci_reports


def _handle(args: argparse.Namespace) -> int:
    from pipeline.fsutil import refuse_links

    configs = selected_configs(args)
    # --out is the user's to name (a link is fine); <artifacts>/ci is tfship's.
    out = args.out or refuse_links(args.artifacts, args.artifacts / "ci")
    reports = load_reports(args.artifacts, [c.name for c in configs])
    paths = write_ci_reports(reports, out)
    for path in paths.values():
        print(path)
    return 0


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "ci-report",
        help="write JUnit XML, a Markdown summary and an HTML report from exported reports",
        description="Reads <artifacts>/<model>/report.json and writes junit.xml, summary.md and report.html. Exits 0 whatever the parity results.",
    )
    common(parser)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <artifacts>/ci)")
    parser.set_defaults(handler=_handle)
