"""docs/cli.md's command reference, generated from the `tfship` parser:
`python -m examples.docgen` rewrites it, `python -m examples.docgen --check` exits 1 when
the committed page differs (tests/test_docs.py runs the same comparison).

Everything in docs/cli.md above the `## Command reference` heading is written by hand and
kept; everything below it is generated here. It lives outside `pipeline/` because the
library never imports its command line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "cli.md"
HEADING = "## Command reference"
INTRO = """<!-- Generated from the argparse definitions in pipeline/cli.py and pipeline/commands/ by
`python -m examples.docgen`: edit those, then run it. -->

Every subcommand and option as the parser defines them (`tfship COMMAND --help` prints the
same). The options `-c`, `--model`, `--config-dir` and `--artifacts` choose the configs and
the artifacts folder wherever they appear. `tfship --version` prints the installed version."""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def reference() -> str:
    """The generated section, from its heading to the end of the page."""
    from pipeline.cli import _parser

    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summary = {a.dest: a.help for a in sub._choices_actions}
    lines = [HEADING, "", INTRO, ""]
    for name, command in sub.choices.items():
        formatter = argparse.HelpFormatter(f"tfship {name}")
        what = _cell(summary.get(name) or command.description or "")
        lines += [f"### `tfship {name}`", "", what[:1].upper() + what[1:] + ".", ""]
        lines += ["| argument | what it does |", "|---|---|"]
        for action in command._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            invocation = formatter._format_action_invocation(action)
            shown = ", ".join(f"`{part.strip()}`" for part in invocation.split(", ")) if action.option_strings else f"`{invocation}`"
            lines.append(f"| {shown} | {_cell(formatter._expand_help(action) if action.help else '')} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def render(page: str) -> str:
    """`page` with everything from the reference's heading on replaced by the generated one."""
    start = page.find("\n" + HEADING + "\n")
    kept = page if start < 0 else page[: start + 1]
    return kept.rstrip("\n") + "\n\n" + reference()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/cli.md is not the generated page; write nothing")
    args = parser.parse_args(argv)
    current = PAGE.read_text()
    wanted = render(current)
    if args.check:
        if current != wanted:
            print(f"{PAGE.relative_to(REPO)} is not the generated page: run python -m examples.docgen", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(wanted)
    print(f"wrote {PAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
