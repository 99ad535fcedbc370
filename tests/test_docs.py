"""The docs run: every relative link in README.md and docs/*.md reaches a file (and a heading,
for `#anchor` links), every `make <target>` written in code is a target of the Makefile (its
`VAR=` settings variables of it), and every `tfship <command>` written in code is a
subcommand of the CLI's parser, with options that subcommand has. Fast: no TensorFlow."""
from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# How a command is written at the start of a code line or an inline code span.
TFSHIP = re.compile(r"^(?:\$\s+)?(?:[A-Z_]+=\S*\s+)*(?:\S*/)?tfship\s+(.*)$")
MAKE = re.compile(r"^(?:\$\s+)?make\s+(.*)$")


def split_code(text: str) -> tuple[str, list[str]]:
    """(prose with code blocks and inline code blanked, the code: each code-block line and each inline span)."""
    prose, code, fenced = [], [], False
    for line in text.split("\n"):
        if FENCE.match(line.strip()):
            fenced = not fenced
            prose.append("")
            continue
        if fenced:
            code.append(line)
            prose.append("")
            continue
        code.extend(m.group(2).strip() for m in INLINE_CODE.finditer(line))
        prose.append(INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line))
    return "\n".join(prose), code


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation other than - and _
    dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"[`*]|<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found, fenced = set(), False
    for line in text.split("\n"):
        if FENCE.match(line.strip()):
            fenced = not fenced
        match = None if fenced else HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def link_problems(text: str, source: Path) -> list[str]:
    """Relative links in `text` (a page at `source`) that reach no file, or no heading of it."""
    prose, _ = split_code(text)
    problems = []
    for target in LINK.findall(prose):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (source.parent / path).resolve() if path else source
        where = f"{source.relative_to(REPO) if source.is_relative_to(REPO) else source}: ({target})"
        if not file.exists():
            problems.append(f"{where}: {path} does not exist")
            continue
        if anchor and file.suffix == ".md" and anchor not in anchors(file.read_text() if file != source else text):
            problems.append(f"{where}: no heading #{anchor} in {file.name}")
    return problems


def makefile_names(makefile: str) -> tuple[set[str], set[str]]:
    """(the Makefile's targets, its variables)."""
    targets = set(re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", makefile, re.M))
    variables = set(re.findall(r"^([A-Z_][A-Z0-9_]*)\s*[?:+]?=", makefile, re.M))
    return targets, variables


def _words(command: str) -> list[str]:
    """The words of one command, up to a comment, a pipe or the next command."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:  # an unbalanced quote in a shortened example
        words = command.split()
    out = []
    for word in words:
        if word in ("|", "||", "&&", ";", ">", "2>") or word.startswith(("#", "|", ">")):
            break
        out.append(word)
    return out


def make_problems(text: str, targets: set[str], variables: set[str]) -> list[str]:
    """`make <target> [VAR=value]` written in code whose target or variable the Makefile lacks."""
    problems = []
    for code in split_code(text)[1]:
        match = MAKE.match(code.strip())
        if not match:
            continue
        for word in _words(match.group(1)):
            word = word.strip("[]")
            if "=" in word:
                name = word.split("=", 1)[0]
                if name not in variables:
                    problems.append(f"`{code.strip()}`: the Makefile has no variable {name}")
            elif re.fullmatch(r"[a-z][\w-]*", word) and word not in targets:
                problems.append(f"`{code.strip()}`: the Makefile has no target {word!r}")
    return problems


def cli_commands() -> dict[str, set[str]]:
    """{subcommand: its option strings} from the parser `tfship` runs."""
    from pipeline.cli import _parser

    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {o for a in p._actions for o in a.option_strings} for name, p in sub.choices.items()}


def tfship_problems(text: str, commands: dict[str, set[str]]) -> list[str]:
    """`tfship <command> [--option ...]` written in code that the parser does not know."""
    problems = []
    for code in split_code(text)[1]:
        match = TFSHIP.match(code.strip())
        if not match:
            continue
        words = _words(match.group(1))
        if not words or words[0].startswith("-") or words[0] in ("...", "<command>", "COMMAND"):
            continue  # `tfship --version`, `tfship --help`
        if any(w.endswith(":") for w in words[:2]):
            continue  # a line of output (`tfship exit 2: [model] ...`), not a command
        name = words[0]
        if name not in commands:
            problems.append(f"`{code.strip()}`: tfship has no command {name!r}; it has {', '.join(sorted(commands))}")
            continue
        for word in words[1:]:
            option = word.strip("[]").split("=", 1)[0]
            if option.startswith("-") and option not in ("-", "--") and re.fullmatch(r"--?[A-Za-z][\w-]*", option) and option not in commands[name]:
                problems.append(f"`{code.strip()}`: tfship {name} has no option {option}")
    return problems


def test_every_relative_link_reaches_a_file_and_heading():
    problems = [p for page in PAGES for p in link_problems(page.read_text(), page)]
    assert not problems, "\n".join(problems)


def test_every_make_command_is_a_makefile_target():
    targets, variables = makefile_names((REPO / "Makefile").read_text())
    problems = [f"{page.relative_to(REPO)}: {p}" for page in PAGES for p in make_problems(page.read_text(), targets, variables)]
    assert not problems, "\n".join(problems)


def test_every_tfship_command_and_option_exists():
    commands = cli_commands()
    problems = [f"{page.relative_to(REPO)}: {p}" for page in PAGES for p in tfship_problems(page.read_text(), commands)]
    assert not problems, "\n".join(problems)


def test_the_checks_fail_on_what_they_guard_against():
    """Seeded mistakes: each check finds its own, and passes the correct version."""
    readme = REPO / "README.md"
    broken = "[a](docs/no-such-page.md) [b](docs/config.md#no-such-heading) [c](#nowhere)\n\n## Here\n"
    found = link_problems(broken, readme)
    assert len(found) == 3 and "no-such-page.md does not exist" in found[0], found
    assert "no heading #no-such-heading in config.md" in found[1] and "no heading #nowhere" in found[2], found
    assert link_problems("[ok](docs/config.md#dynamic-dimensions-beyond-the-batch) [here](#here) [web](https://x.org/y)\n\n## Here\n", readme) == []
    assert link_problems("`[not a link](nowhere.md)`\n```\n[nor this](nowhere.md)\n```\n", readme) == []

    targets, variables = makefile_names((REPO / "Makefile").read_text())
    assert {"install", "test", "export", "test-weekly"} <= targets and {"TARGET", "MODEL", "JOBS"} <= variables
    found = make_problems("Run `make exprot TARGET=tflite`, then\n\n```\nmake export TARGTE=onnx\n```\n", targets, variables)
    assert found == ["`make exprot TARGET=tflite`: the Makefile has no target 'exprot'", "`make export TARGTE=onnx`: the Makefile has no variable TARGTE"], found
    assert make_problems("`make export TARGET=tflite MODEL=image_cnn`; to make it quick\n", targets, variables) == []

    commands = cli_commands()
    found = tfship_problems("`tfship exprot --model m` and\n```\n.venv/bin/tfship export --modle m -j 2\n```\n", commands)
    assert len(found) == 2 and "no command 'exprot'" in found[0] and "tfship export has no option --modle" in found[1], found
    assert tfship_problems("`tfship export --model m --target tflite -j 2 --dry-run` and `tfship --version`; tfship exports\n", commands) == []
    assert tfship_problems("```\ntfship exit 2: [m] tflite: error: ...\n```\n", commands) == []


def test_the_command_reference_is_the_generated_one():
    """docs/cli.md's command reference is what `python -m examples.docgen` writes from the parser."""
    from examples.docgen import PAGE, render

    current = PAGE.read_text()
    assert current == render(current), "docs/cli.md's command reference is stale: run python -m examples.docgen"
    assert all(f"### `tfship {name}`" in current for name in cli_commands())


def test_slugs_follow_github():
    assert slug("`tpu` (Cloud TPU)") == "tpu-cloud-tpu"
    assert slug("How cost grows with model size: `make bench-scale`") == "how-cost-grows-with-model-size-make-bench-scale"
    assert slug("Two forms (`ir_form`)") == "two-forms-ir_form"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n## A\n### `tflite`\n") == {"a", "a-1", "a-2", "tflite"}
