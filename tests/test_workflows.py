"""The CI workflows are checked against GitHub's own workflow schema (vendored in
check-jsonschema, so the check runs offline), and a seeded mistake is caught."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
CHECK = Path(sys.executable).parent / "check-jsonschema"


def _check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True, text=True, timeout=120,
    )


def test_there_is_a_release_workflow():
    assert REPO / ".github" / "workflows" / "release.yml" in WORKFLOWS


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_the_github_schema(path):
    result = _check(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


def test_a_misspelled_key_is_caught(tmp_path):
    broken = tmp_path / "release.yml"
    broken.write_text((REPO / ".github" / "workflows" / "release.yml").read_text().replace("runs-on:", "runs_on:", 1))
    result = _check(broken)
    assert result.returncode == 1
    assert "'runs-on' is a required property" in result.stdout
