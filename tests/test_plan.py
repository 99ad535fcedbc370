"""The plan and the stage cache: what builds, what is reused, and why; reports keep every
target whose cache key still holds."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline import cache
from pipeline.config import load_config
from pipeline.plan import make_plan
from pipeline.reports.model import tool_versions
from targets import REGISTRY

from conftest import AFFINE_HEAD

REPO = Path(__file__).resolve().parent.parent

TWO_TARGETS = AFFINE_HEAD + "  - savedmodel\n  - {name: tflite, variants: [float32]}\n"


@pytest.mark.heavy
def test_changing_one_target_keeps_the_others_in_the_report_and_reuses_them(project):
    project.config("affine", TWO_TARGETS)
    assert project.run("export").code == 0
    before = project.report("affine")
    assert set(before["targets"]) == {"savedmodel", "tflite"}
    saved_key = before["targets"]["savedmodel"]["cache_key"]

    # Another tflite variant: the config's sha256 changes, savedmodel's cache key does not.
    project.config("affine", TWO_TARGETS.replace("variants: [float32]", "variants: [float32, float16]"))
    result = project.run("export", "--target", "tflite")
    assert result.code == 0, result.err
    report = project.report("affine")
    assert set(report["targets"]) == {"savedmodel", "tflite"}, "the savedmodel entry was lost"
    assert report["targets"]["savedmodel"]["cache_key"] == saved_key
    assert set(report["targets"]["tflite"]["variants"]) == {"float32", "float16"}
    assert "| savedmodel |" in (project.artifacts / "affine" / "report.md").read_text()

    result = project.run("export", "--target", "savedmodel")
    assert result.code == 0, result.err
    assert "savedmodel: up to date (passed), reused" in result.err
    assert "nothing changed" in result.err
    assert project.report("affine")["targets"]["savedmodel"]["rebuilt"] is False

    # A change to the model's own section invalidates every target: nothing stale is kept.
    project.config("affine", TWO_TARGETS.replace("samples: 16", "samples: 12").replace("variants: [float32]", "variants: [float32, float16]"))
    assert project.run("export", "--target", "tflite").code == 0
    assert set(project.report("affine")["targets"]) == {"tflite"}


def test_dry_run_prints_the_plan_and_writes_nothing(project):
    project.config("affine", TWO_TARGETS)
    result = project.run("export", "--dry-run")
    assert result.code == 0
    assert "affine       savedmodel   build" in result.out and "new" in result.out
    assert not project.artifacts.exists() or not any(project.artifacts.iterdir())
    assert project.run("export", "--target", "savedmodel").code == 0
    report_bytes = (project.artifacts / "affine" / "report.json").read_bytes()
    project.config("affine", TWO_TARGETS.replace("  - savedmodel", "  - {name: savedmodel, version: 3}"))
    result = project.run("export", "--dry-run")
    assert result.code == 0
    lines = {line.split()[1]: line for line in result.out.splitlines() if line.startswith("affine ")}
    assert " build " in lines["savedmodel"] and lines["savedmodel"].endswith("changed: target options")
    assert " build " in lines["tflite"] and lines["tflite"].endswith("new")
    assert (project.artifacts / "affine" / "report.json").read_bytes() == report_bytes


def _copy_tree(dest: Path) -> Path:
    for package in ("pipeline", "targets"):
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_editing_a_renderer_or_a_command_keeps_every_key(tmp_path, monkeypatch):
    config = load_config(REPO / "configs" / "models" / "affine.yaml", REGISTRY)
    root = _copy_tree(tmp_path / "tree")
    monkeypatch.setattr(cache, "_PACKAGE_ROOT", root)
    versions = tool_versions()
    keys = {t.name: cache.target_key(config, t, versions) for t in config.targets}
    assert all(keys.values())
    for path in ("pipeline/reports/html.py", "pipeline/reports/markdown.py", "pipeline/commands/export.py", "pipeline/cli.py", "pipeline/bench.py"):
        with open(root / path, "a") as f:
            f.write("\n# edited\n")
    assert {t.name: cache.target_key(config, t, versions) for t in config.targets} == keys
    # The code that shapes artifacts does change them: a stage for every target, a target module for its own.
    with open(root / "targets" / "tflite.py", "a") as f:
        f.write("\n# edited\n")
    after = {t.name: cache.target_key(config, t, versions) for t in config.targets}
    assert [n for n in keys if after[n] != keys[n]] == ["tflite"]
    with open(root / "pipeline" / "stages" / "trace.py", "a") as f:
        f.write("\n# edited\n")
    assert all(cache.target_key(config, t, versions) != after[t.name] for t in config.targets)


def test_editing_the_html_renderer_reuses_every_artifact(project, tmp_path, monkeypatch):
    project.config("affine", TWO_TARGETS)
    assert project.run("export").code == 0
    root = _copy_tree(tmp_path / "tree")
    with open(root / "pipeline" / "reports" / "html.py", "a") as f:
        f.write("\n# a renderer edit\n")
    monkeypatch.setattr(cache, "_PACKAGE_ROOT", root)
    result = project.run("export")
    assert result.code == 0, result.err
    assert "nothing changed" in result.err
    report = project.report("affine")
    assert all(entry["rebuilt"] is False for entry in report["targets"].values())


def test_plan_without_cache_builds_everything_and_matrix_reads_it():
    from pipeline.matrix import matrix

    configs = [load_config(p, REGISTRY) for p in sorted((REPO / "configs" / "models").glob("*.yaml"))]
    plan = make_plan(configs, None, None, {})
    assert {(j.action, j.reason) for j in plan.jobs} == {("build", "no cache")}
    jobs = matrix(configs)["include"]
    assert [(j["model"], j["target"]) for j in jobs] == [(j.model, j.target) for j in plan.jobs]
    assert json.dumps(jobs)  # JSON-able for a CI matrix
