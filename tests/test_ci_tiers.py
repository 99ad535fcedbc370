"""The gate itself: `.ci/run` installs what the suite needs and runs every tier, a skip CI
does not allow fails the run, and every test too long for CI is named in docs/ci.md and
run by the weekly workflow."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"


def test_disallowed_keeps_only_skips_no_entry_allows():
    from allowed_skips import ALLOWED, disallowed

    allowed = [(r"test_bf16_kernels", r"no AMX", "a CPU feature no install can give")]
    skips = [("tests/test_x.py::test_bf16_kernels[a]", "this CPU has no AMX tiles"), ("tests/test_y.py::test_render", "needs Chromium")]
    assert disallowed(skips, allowed) == [skips[1]]
    assert disallowed([skips[0]], []) == [skips[0]]
    for node, reason, why in ALLOWED:  # every allowed skip says why it is legitimate
        re.compile(node), re.compile(reason)
        assert len(why) > 20, (node, why)


PROBE = """\
import pytest


def test_runs():
    assert True


def test_skips():
    pytest.skip("needs a tool this machine lacks")
"""


def _probe(tmp_path: Path, strict: bool) -> subprocess.CompletedProcess:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "TFSHIP_STRICT_SKIPS"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO)])
    if strict:
        env["TFSHIP_STRICT_SKIPS"] = "1"
    # tests/conftest.py loaded as a plugin: the hooks CI runs under, on a probe outside tests/
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest", "--rootdir", str(tmp_path), str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_a_skip_fails_the_session_in_ci_and_names_the_test_and_its_reason(tmp_path):
    strict = _probe(tmp_path, strict=True)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "test_probe.py::test_skips: needs a tool this machine lacks" in strict.stderr, strict.stderr
    assert "1 passed, 1 skipped" in strict.stdout
    relaxed = _probe(tmp_path, strict=False)
    assert relaxed.returncode == 0, relaxed.stdout + relaxed.stderr


def test_ci_installs_chromium_and_runs_every_tier_with_skips_refused():
    run = (REPO / ".ci" / "run").read_text()
    assert "apt-get install -y" in run and " chromium" in run and "DEBIAN_FRONTEND=noninteractive" in run
    assert "TFSHIP_STRICT_SKIPS=1 make test-all" in run
    assert "targets.xla build-runtime" in run  # the AOT test runs instead of skipping
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test-all: .*\n\t@bash \.ci/test-all$", makefile, re.M)
    tiers = (REPO / ".ci" / "test-all").read_text()
    # Three marker expressions split every test into exactly one of fast, heavy, weekly.
    assert 'run_tier fast "not heavy and not weekly"' in tiers and 'run_tier heavy "heavy and not weekly"' in tiers
    assert "--collect-only -m weekly" in tiers
    assert 'pytest -q -p no:cacheprovider -m "not heavy and not weekly" tests' in makefile  # `make test` is the fast tier


def _marked(node: ast.AST, marker: str) -> bool:
    return any(f"mark.{marker}" in ast.unparse(d) for d in getattr(node, "decorator_list", []))


def weekly_tests() -> list[str]:
    """file::function of every test marked weekly (on the function or the whole module)."""
    found = []
    for path in sorted(TESTS.rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        module_weekly = any(isinstance(n, ast.Assign) and "pytestmark" in ast.unparse(n) and "weekly" in ast.unparse(n.value) for n in tree.body)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and (module_weekly or _marked(node, "weekly")):
                found.append(f"{path.relative_to(REPO)}::{node.name}")
    return found


def test_every_weekly_test_is_named_in_the_ci_docs_and_run_by_the_weekly_workflow():
    ci = (REPO / "docs" / "ci.md").read_text()
    ci = ci[ci.index("\n## CI\n"):]
    end = ci.find("\n## ", 5)
    ci = ci if end < 0 else ci[:end]
    for test in weekly_tests():
        assert test in ci, f"{test} is left to the weekly job but the CI section of docs/ci.md does not say so (and why)"
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "weekly.yml").read_text())
    assert "schedule" in workflow[True] or "schedule" in workflow.get("on", {})  # PyYAML reads `on:` as True
    steps = [s.get("run", "") for job in workflow["jobs"].values() for s in job["steps"]]
    assert "make install" in steps and "make test-weekly" in steps
    assert re.search(r"^test-weekly: .*\n\t.*pytest .*-m weekly tests$", (REPO / "Makefile").read_text(), re.M)
