"""Release bundles through the real CLI: manifest, SHA256SUMS, archives, refusal,
drift against the previous release, and matrix slices merged into one release."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.reports.diff import Margins, compare
from conftest import AFFINE_HEAD

AFFINE = AFFINE_HEAD + """\
  - savedmodel
  - {name: tflite, variants: [float32, float16]}
"""

FROZEN = """\
source:
  factory: fixture_models:traced_offset
inputs:
  - {name: x, shape: [null, 4], dtype: float32}
outputs: [y]
data:
  samples: 12
targets:
  - {name: savedmodel, optional: %s}
"""


def _cli(*args) -> int:
    from pipeline.cli import main

    return main([str(a) for a in args])


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """affine (savedmodel, tflite float32 + float16: all pass) and frozen (savedmodel fails
    parity, marked optional), released once as 1.0.0."""
    root = tmp_path_factory.mktemp("rel")
    configs = root / "configs"
    configs.mkdir()
    (configs / "affine.yaml").write_text(AFFINE)
    (configs / "frozen.yaml").write_text(FROZEN % "true")
    artifacts = root / "artifacts"
    code = _cli("release", "--config-dir", configs, "--artifacts", artifacts, "--version", "1.0.0")
    assert code == 0
    return configs, artifacts, artifacts / "release" / "1.0.0"


def test_bundle_hashes_check_out_and_manifest_lists_every_file(released):
    configs, artifacts, release = released
    manifest = json.loads((release / "manifest.json").read_text())
    on_disk = {p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file()}
    listed = {f["path"] for f in manifest["files"]}
    assert listed | {"manifest.json", "SHA256SUMS"} == on_disk
    for f in manifest["files"]:
        assert _sha(release / f["path"]) == f["sha256"] and (release / f["path"]).stat().st_size == f["bytes"]
    sums = dict(reversed(line.split("  ", 1)) for line in (release / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == on_disk - {"SHA256SUMS"}
    if shutil.which("sha256sum"):
        done = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=release, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    assert all(_sha(release / p) == h for p, h in sums.items())

    artifacts_listed = {(f["model"], f["target"], f["variant"], f["path"]) for f in manifest["files"] if f["kind"] == "artifact"}
    assert ("affine", "tflite", "float16", "affine/tflite/float16.tflite") in artifacts_listed
    assert ("affine", "savedmodel", "", "affine/savedmodel/1/saved_model.pb") in artifacts_listed
    assert not any(model == "frozen" for model, *_ in artifacts_listed)  # its only target failed
    report = json.loads((artifacts / "affine" / "report.json").read_text())
    assert manifest["models"]["affine"]["config_sha256"] == report["config_sha256"]
    assert manifest["versions"] == report["versions"] and manifest["versions"]["tensorflow"].startswith("2.")
    assert manifest["schema_version"] == 1 and manifest["version"] == "1.0.0" and manifest["created"]
    git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if git.returncode == 0:
        assert manifest["git"]["commit"] == git.stdout.strip()
    # the shipped files are the exported ones, byte for byte
    for f in manifest["files"]:
        if f["kind"] == "artifact":
            assert _sha(artifacts / f["path"]) == f["sha256"]


def test_optional_failure_is_left_out_with_the_reason(released):
    _, artifacts, release = released
    manifest = json.loads((release / "manifest.json").read_text())
    [excluded] = manifest["excluded"]
    assert (excluded["model"], excluded["target"], excluded["status"], excluded["optional"]) == ("frozen", "savedmodel", "failed", True)
    frozen = json.loads((artifacts / "frozen" / "report.json").read_text())
    max_abs = frozen["targets"]["savedmodel"]["variants"]["default"]["parity"]["outputs"]["y"]["max_abs"]
    assert excluded["reason"].startswith(f"failed: y: max_abs {max_abs:.3g} > atol")
    assert "Left out of the release" in (release / "summary.md").read_text()


def test_archives_hold_each_model_folder(released):
    _, _, release = released
    manifest = json.loads((release / "manifest.json").read_text())
    with tarfile.open(release / "affine-1.0.0.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        inside = {name: hashlib.sha256(tar.extractfile(m).read()).hexdigest() for name, m in members.items() if m.isfile()}
    expected = {f["path"]: f["sha256"] for f in manifest["files"] if f["model"] == "affine" and f["kind"] != "archive"}
    assert inside == expected
    assert {m.uid for m in members.values()} == {0} and {m.mtime for m in members.values()} == {0}
    assert "frozen/report.json" in tarfile.open(release / "frozen-1.0.0.tar.gz").getnames()


def test_diff_of_a_release_with_itself_is_clean(released, capsys):
    _, _, release = released
    capsys.readouterr()
    assert _cli("diff", release, release) == 0
    assert "no change beyond the margins (4 output comparisons)" in capsys.readouterr().out
    report = release / "affine" / "report.json"
    assert _cli("diff", report, report) == 0  # affine: savedmodel, tflite float32 and float16
    assert "no change beyond the margins (3 output comparisons)" in capsys.readouterr().out
    assert _cli("diff", release, release / "nothing") == 2


def test_existing_version_and_stale_reports_are_bad_input(released, tmp_path, capsys):
    configs, artifacts, release = released
    assert _cli("release", "--config-dir", configs, "--artifacts", artifacts, "--version", "1.0.0", "--skip-export") == 2
    assert "already exists" in capsys.readouterr().err
    assert _cli("release", "--config-dir", configs, "--artifacts", artifacts, "--version", "../x", "--skip-export") == 2
    assert "invalid release version" in capsys.readouterr().err
    changed = tmp_path / "configs"
    shutil.copytree(configs, changed)
    (changed / "affine.yaml").write_text(AFFINE.replace("samples: 16", "samples: 17"))
    assert _cli("release", "--config-dir", changed, "--artifacts", artifacts, "--version", "2.0.0", "--skip-export") == 2
    assert "exported from another version" in capsys.readouterr().err
    assert not (artifacts / "release" / "2.0.0").exists()


def test_failed_target_refuses_the_release(project):
    project.config("frozen", FROZEN % "false")
    result = project.run("release", "--version", "1.0.0")
    assert result.code == 1
    assert "refused, nothing published" in result.err and "optional: true" in result.err
    assert not (project.artifacts / "release" / "1.0.0").exists()
    assert not [p for p in (project.artifacts / "release").iterdir()]  # no staging left behind
    import xml.etree.ElementTree as ET

    junit = ET.parse(project.artifacts / "ci" / "junit.xml").getroot()
    assert junit.get("failures") == "1"
    assert "### Why the release was refused" in (project.artifacts / "ci" / "summary.md").read_text()


# ------------------------------------------------------------------ drift


def _keras_config(path: Path) -> str:
    return f"""\
source:
  path: {path}
inputs:
  - {{name: x, shape: [null, 8], dtype: float32}}
outputs: [probs]
data:
  inputs:
    x: {{distribution: normal, mean: 0, std: 1}}
  samples: 24
targets:
  - savedmodel
"""


def test_perturbed_weights_drift_refuses_then_diff_names_the_output(project, tmp_path, capsys):
    import fixture_models

    model = fixture_models.tiny_keras3_classifier()
    path = tmp_path / "tiny.keras"
    model.save(path)
    project.config("tiny", _keras_config(path))
    assert project.run("release", "--version", "1").code == 0

    hidden = model.get_layer("hidden")
    kernel, bias = hidden.get_weights()
    hidden.set_weights([kernel + np.random.default_rng(0).normal(scale=0.3, size=kernel.shape).astype(np.float32), bias])
    model.save(path)  # same config, new weights
    refused = project.run("release", "--version", "2")
    assert refused.code == 1
    assert "drift against release 1" in refused.err and "output 'probs'" in refused.err
    assert not (project.artifacts / "release" / "2").exists()

    assert project.run("release", "--version", "2", "--skip-export", "--allow-drift").code == 0
    release2 = project.artifacts / "release" / "2"
    assert "| changed | tiny | (model) | probs |" in (release2 / "drift.md").read_text()

    capsys.readouterr()
    assert _cli("diff", project.artifacts / "release" / "1", release2) == 1
    out = capsys.readouterr().out
    assert "CHANGED: tiny (model) output 'probs': reference" in out
    # the artifact itself still matches its (new) eager model: only the model moved
    assert "savedmodel output 'probs'" not in out


def _report(max_abs: float, atol: float, bytes_: int = 1000, p50: float | None = None) -> dict:
    entry = {
        "status": "passed",
        "files": [{"path": "t/model", "sha256": "0" * 64, "bytes": bytes_}],
        "parity": {"passed": True, "failures": [], "outputs": {"y": {"max_abs": max_abs, "mean_abs": max_abs / 2, "rmse": max_abs / 2, "mismatch_fraction": 0.0, "cosine": 1.0, "nonfinite": 0, "atol": atol, "rtol": 0.0, "passed": True}}},
    }
    if p50 is not None:
        entry["benchmark"] = {"batches": {"1": {"p50_ms": p50}}}
    return {"model": "m", "config_sha256": "c", "run": {"model": {"reference": {"y": {"range": 2.0, "spread": 0.5}}}}, "targets": {"t": entry}}


@pytest.mark.parametrize(
    "old, new, worse",
    [
        (_report(1e-9, 1e-5), _report(2e-9, 1e-5), []),  # doubling far below the tolerance is noise
        (_report(1e-3, 1e-2), _report(1.05e-3, 1e-2), []),  # within 10% + floor
        (_report(1e-3, 1e-2), _report(2e-3, 1e-2), ["max_abs"]),  # mean_abs 5e-4 -> 1e-3 stays under 5% of atol
        (_report(1e-3, 1e-2), _report(3e-3, 1e-2), ["max_abs", "mean_abs", "rmse"]),
        (_report(1e-3, 1e-2, bytes_=100_000), _report(1e-3, 1e-2, bytes_=150_000), ["bytes"]),
        (_report(1e-3, 1e-2, p50=1.0), _report(1e-3, 1e-2, p50=1.2), []),  # latency margin 25%
        (_report(1e-3, 1e-2, p50=1.0), _report(1e-3, 1e-2, p50=1.5), ["p50_ms (batch 1)"]),
    ],
)
def test_margins(old, new, worse):
    result = compare({"m": old}, {"m": new}, Margins())
    assert sorted(f.metric for f in result.failing) == sorted(worse)
    assert result.exit_code == (1 if worse else 0)


def _moved_reference(report: dict, range_: float) -> dict:
    moved = json.loads(json.dumps(report))
    moved["run"]["model"]["reference"]["y"]["range"] = range_
    return moved


@pytest.mark.parametrize(
    "old, new, option, why",
    [
        (_report(1e-3, 1e-2), _report(3e-3, 1e-2), ["--margin", "2.5"], "max_abs x3 is worse at 10%, within a 250% margin"),
        (_report(1e-3, 1e-2), _report(2e-3, 1e-2), ["--floor", "0.01"], "a change of 1e-3 is under an absolute floor of 0.01"),
        (_report(1e-3, 1e-2, p50=1.0), _report(1e-3, 1e-2, p50=1.5), ["--latency-margin", "0.6"], "50% slower is within a 60% latency margin"),
        (_report(1e-3, 1e-2), _moved_reference(_report(1e-3, 1e-2), 4.0), ["--accept-model-change"], "the eager model's output range doubled"),
    ],
)
def test_each_diff_option_turns_a_failing_diff_into_a_passing_one(old, new, option, why, tmp_path, capsys):
    """The same two reports through the real CLI: exit 1 at the defaults, 0 with the option."""
    a, b = tmp_path / "old.json", tmp_path / "new.json"
    a.write_text(json.dumps(old))
    b.write_text(json.dumps(new))
    capsys.readouterr()
    assert _cli("diff", a, b) == 1, why
    failing = capsys.readouterr().out
    assert "got worse beyond the margins" in failing, failing
    assert _cli("diff", a, b, *option) == 0, why
    passing = capsys.readouterr().out
    assert "got worse" not in passing
    if option == ["--accept-model-change"]:
        assert "CHANGED: m (model) output 'y': reference range" in failing
        assert "ACCEPTED" in passing.upper() and "reference range" in passing, passing


def test_a_tighter_latency_margin_fails_what_the_default_lets_through(tmp_path, capsys):
    a, b = tmp_path / "old.json", tmp_path / "new.json"
    a.write_text(json.dumps(_report(1e-3, 1e-2, p50=1.0)))
    b.write_text(json.dumps(_report(1e-3, 1e-2, p50=1.2)))
    assert _cli("diff", a, b) == 0  # 20% slower: inside the default 25%
    capsys.readouterr()
    assert _cli("diff", a, b, "--latency-margin", "0.1", "--json", tmp_path / "findings.json") == 1
    assert "p50_ms (batch 1)" in capsys.readouterr().out
    findings = json.loads((tmp_path / "findings.json").read_text())
    assert findings["failing"] == 1 and findings["findings"][0]["metric"] == "p50_ms (batch 1)"
    assert _cli("diff", a, b, "--margin", "-0.1") == 2
    assert "must be >= 0" in capsys.readouterr().err


def test_release_against_a_named_release_none_or_a_folder_that_is_not_one(released, tmp_path, capsys):
    """--against DIR diffs against that release (not the newest, which auto picks); none
    diffs against nothing; a folder without manifest.json is bad input and publishes nothing."""
    configs, artifacts, first = released
    copy = tmp_path / "artifacts"
    shutil.copytree(artifacts, copy, ignore=shutil.ignore_patterns(".*.lock"))

    def release(version: str, *extra) -> dict | None:
        code = _cli("release", "--config-dir", configs, "--artifacts", copy, "--version", version, "--skip-export", *extra)
        manifest = copy / "release" / version / "manifest.json"
        return (code, json.loads(manifest.read_text()) if manifest.is_file() else None)

    code, auto = release("1.1.0")
    assert code == 0 and auto["drift"]["against"] == "1.0.0"  # the newest other release
    code, named = release("1.2.0", "--against", copy / "release" / "1.0.0")
    assert code == 0 and named["drift"]["against"] == "1.0.0" and named["drift"]["failing"] == 0  # auto would pick 1.1.0
    assert "drift.md" in {f["path"] for f in named["files"]}
    code, none = release("1.3.0", "--against", "none")
    assert code == 0 and none["drift"] is None
    assert not (copy / "release" / "1.3.0" / "drift.md").exists()
    capsys.readouterr()
    code, refused = release("1.4.0", "--against", tmp_path)
    assert code == 2 and refused is None
    assert f"--against {tmp_path}: not a release folder (no manifest.json)" in capsys.readouterr().err
    assert not (copy / "release" / "1.4.0").exists()


# ------------------------------------------------------------------ matrix + merge


def _fingerprint_fields(path: Path) -> dict:
    from tensorflow.core.protobuf import fingerprint_pb2

    proto = fingerprint_pb2.FingerprintDef()
    proto.ParseFromString(path.read_bytes())
    fields = {f.name: str(v) for f, v in proto.ListFields()}
    fields.pop("uuid", None)  # a random id written on every save
    return fields


def test_matrix_slices_merge_into_the_single_job_release(released, tmp_path, capsys):
    configs, artifacts, single = released
    capsys.readouterr()
    assert _cli("matrix", "--config-dir", configs, "--model", "affine", "--slices-dir", tmp_path / "slices") == 0
    jobs = json.loads(capsys.readouterr().out)["include"]
    assert [(j["model"], j["target"]) for j in jobs] == [("affine", "savedmodel"), ("affine", "tflite")]
    for job in jobs:
        assert _cli("export", "--config-dir", configs, "--model", job["model"], "--target", job["target"], "--artifacts", job["artifacts"]) == 0
    slices = [Path(j["artifacts"]) for j in jobs]
    out = tmp_path / "merged"
    assert _cli("merge", *slices, "--config-dir", configs, "--model", "affine", "--artifacts", out, "--version", "1.0.0") == 0
    merged = out / "release" / "1.0.0"
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=merged).returncode == 0

    def artifact_files(release: Path) -> dict[str, str]:
        manifest = json.loads((release / "manifest.json").read_text())
        return {f["path"]: f["sha256"] for f in manifest["files"] if f["kind"] == "artifact" and f["model"] == "affine"}

    a, b = artifact_files(single), artifact_files(merged)
    assert sorted(a) == sorted(b) and len(a) == 6
    differing = sorted(p for p in a if a[p] != b[p])
    # SavedModel writes a random uuid into fingerprint.pb on every save; every other byte is stable.
    assert differing in ([], ["affine/savedmodel/1/fingerprint.pb"])
    for path in differing:
        assert _fingerprint_fields(single / path) == _fingerprint_fields(merged / path)
    merged_report = json.loads((merged / "affine" / "report.json").read_text())
    assert sorted(merged_report["targets"]) == ["savedmodel", "tflite"] and len(merged_report["merged_from"]) == 2
    manifest = json.loads((merged / "manifest.json").read_text())
    assert manifest["origin"]["merged_from"] == [s.name for s in slices]  # no path of the machine


def test_merge_refuses_mismatched_or_missing_slices(released, tmp_path, capsys):
    configs, artifacts, _ = released
    slice_a = tmp_path / "a"
    slice_b = tmp_path / "b"
    # two slices cut from the released artifacts: one per target of affine
    for root, target in ((slice_a, "savedmodel"), (slice_b, "tflite")):
        shutil.copytree(artifacts / "affine" / target, root / "affine" / target)
        report = json.loads((artifacts / "affine" / "report.json").read_text())
        report["targets"] = {target: report["targets"][target]}
        (root / "affine" / "report.json").write_text(json.dumps(report))

    def merge(*dirs, version):
        capsys.readouterr()
        code = _cli("merge", *dirs, "--config-dir", configs, "--model", "affine", "--artifacts", tmp_path / "out", "--version", version)
        return code, capsys.readouterr().err

    report_b = json.loads((slice_b / "affine" / "report.json").read_text())
    report_b["versions"]["tensorflow"] = "2.20.0"
    (slice_b / "affine" / "report.json").write_text(json.dumps(report_b))
    code, err = merge(slice_a, slice_b, version="v1")
    assert code == 2 and "different tool versions" in err and "2.20.0" in err

    report_b["versions"] = json.loads((slice_a / "affine" / "report.json").read_text())["versions"]
    report_b["config_sha256"] = "f" * 64
    (slice_b / "affine" / "report.json").write_text(json.dumps(report_b))
    code, err = merge(slice_a, slice_b, version="v2")
    assert code == 2 and "built from another config" in err

    report_b["config_sha256"] = json.loads((slice_a / "affine" / "report.json").read_text())["config_sha256"]
    report_b["run"]["model"]["reference"]["y"]["spread"] *= 1.01  # another training run of "the same" model
    (slice_b / "affine" / "report.json").write_text(json.dumps(report_b))
    code, err = merge(slice_a, slice_b, version="v2b")
    assert code == 2 and "slices of affine ran different models: output 'y' reference spread" in err

    code, err = merge(slice_a, version="v3")
    assert code == 1 and "affine tflite: not built" in err
    assert not (tmp_path / "out" / "release" / "v3").exists()
