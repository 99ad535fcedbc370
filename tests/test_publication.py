"""Publication: one run per model, a target folder and its report record published together,
interrupted runs reconciled, stale staging swept, outputs readable like any other file."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.fsutil import staging_dir, write_json_atomic
from pipeline.publication import RECORD_NAME, ModelLock, publish_target, reconcile, stale_targets

REPO = Path(__file__).resolve().parent.parent

AFFINE = """\
source:
  factory: examples.affine:build
inputs:
  - {name: x, shape: [null, 4], dtype: float32}
outputs: [y]
data:
  samples: 8
targets:
  - savedmodel
"""


def _entry(files: dict[str, bytes], folder: Path, target: str) -> dict:
    from pipeline.fsutil import file_records

    return {"status": "passed", "files": [{**f, "path": f"{target}/{f['path']}"} for f in file_records(folder, list(files), folder)], "finished": "now"}


def _report(targets: dict) -> dict:
    return {"model": "m", "config_sha256": "0" * 64, "updated": "now", "versions": {}, "targets": targets, "status": "passed"}


def _stage(model_dir: Path, target: str, files: dict[str, bytes]) -> Path:
    staged = staging_dir(model_dir, target)
    for name, data in files.items():
        (staged / name).write_bytes(data)
    return staged


def test_a_kill_between_publication_and_report_is_named_then_reconciled(tmp_path):
    model_dir = tmp_path / "m"
    staged = _stage(model_dir, "onnx", {"model.onnx": b"v1"})
    first = publish_target(staged, model_dir / "onnx", _entry({"model.onnx": b"v1"}, staged, "onnx"))
    write_json_atomic(model_dir / "report.json", _report({"onnx": first}))
    assert stale_targets(model_dir, json.loads((model_dir / "report.json").read_text())) == {}
    # The next export publishes v2 and is killed before report.json is written.
    staged = _stage(model_dir, "onnx", {"model.onnx": b"v2"})
    second = publish_target(staged, model_dir / "onnx", _entry({"model.onnx": b"v2"}, staged, "onnx"))
    report = json.loads((model_dir / "report.json").read_text())
    stale = stale_targets(model_dir, report)
    assert list(stale) == ["onnx"] and second["publication"] in stale["onnx"] and first["publication"] in stale["onnx"]
    done = reconcile(model_dir)
    assert any("recorded onnx" in d for d in done)
    report = json.loads((model_dir / "report.json").read_text())
    assert report["targets"]["onnx"]["publication"] == second["publication"]
    assert report["targets"]["onnx"]["cache_key"] is None  # cut short: rebuilt by the next export
    assert stale_targets(model_dir, report) == {}
    (model_dir / "report.json").unlink()  # hand-made (_report): the session-end schema check reads only tfship's own


def test_a_kill_between_the_two_renames_puts_the_old_folder_back(tmp_path):
    model_dir = tmp_path / "m"
    staged = _stage(model_dir, "xla", {"a.txt": b"old"})
    old = publish_target(staged, model_dir / "xla", _entry({"a.txt": b"old"}, staged, "xla"))
    write_json_atomic(model_dir / "report.json", _report({"xla": old}))
    # What publish_dir does, cut after its first rename; plus a dead run's staging folder.
    trash = model_dir / ".trash-xla-abc"
    trash.mkdir()
    os.rename(model_dir / "xla", trash / "xla")
    leftover = _stage(model_dir, "tflite", {"half.tflite": b"\0"})
    report = json.loads((model_dir / "report.json").read_text())
    assert "moved aside" in stale_targets(model_dir, report)["xla"]
    reconcile(model_dir)
    assert (model_dir / "xla" / "a.txt").read_bytes() == b"old"
    assert not trash.exists() and not leftover.exists()
    assert stale_targets(model_dir, json.loads((model_dir / "report.json").read_text())) == {}
    (model_dir / "report.json").unlink()  # hand-made (_report): the session-end schema check reads only tfship's own


def test_published_folders_get_the_umask_permissions_not_mkdtemp_ones(tmp_path):
    old = os.umask(0o022)
    try:
        model_dir = tmp_path / "m"
        staged = _stage(model_dir, "savedmodel", {"saved_model.pb": b"x"})
        assert stat.S_IMODE(staged.stat().st_mode) == 0o700
        publish_target(staged, model_dir / "savedmodel", {"status": "passed", "files": []})
        assert stat.S_IMODE((model_dir / "savedmodel").stat().st_mode) == 0o755
        assert stat.S_IMODE((model_dir / "savedmodel" / "saved_model.pb").stat().st_mode) == 0o644
        assert stat.S_IMODE((model_dir / "savedmodel" / RECORD_NAME).stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_a_second_lock_holder_waits_and_says_so(tmp_path):
    code = (
        "import sys, time; from pathlib import Path; from pipeline.publication import ModelLock\n"
        f"with ModelLock(Path({str(tmp_path)!r}), 'm'):\n"
        "    print('held', flush=True); time.sleep(2)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=str(REPO))
    assert holder.stdout.readline().strip() == "held"
    said = []
    t0 = time.monotonic()
    with ModelLock(tmp_path, "m", echo=said.append):
        waited = time.monotonic() - t0
    holder.wait(timeout=30)
    assert waited > 1.0
    assert "waiting for another tfship run (pid" in said[0]
    assert not (tmp_path / ".m.lock").exists()


def test_a_lock_left_by_a_killed_run_is_free(tmp_path):
    code = (
        "import os; from pathlib import Path; from pipeline.publication import ModelLock\n"
        f"ModelLock(Path({str(tmp_path)!r}), 'm').acquire(); os._exit(9)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=str(REPO), check=False)
    assert (tmp_path / ".m.lock").exists()  # the file stays; the flock died with its process
    t0 = time.monotonic()
    with ModelLock(tmp_path, "m"):
        assert time.monotonic() - t0 < 1.0


def _cli(project_root: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    command = [sys.executable, "-m", "pipeline", args[0], "--config-dir", str(project_root / "configs" / "models"), "--artifacts", str(project_root / "artifacts"), *args[1:]]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO))


def test_two_concurrent_exports_of_one_model_never_interleave(project):
    project.config("affine", AFFINE)
    first = _cli(project.root, "export", "--force")
    time.sleep(1.0)
    second = _cli(project.root, "export", "--force")
    out1, err1 = first.communicate(timeout=600)
    out2, err2 = second.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, err1[-2000:] + err2[-2000:]
    assert "waiting for another tfship run" in err2, err2
    validate = _cli(project.root, "validate")
    _, err = validate.communicate(timeout=600)
    assert validate.returncode == 0, err[-2000:]
    model_dir = project.artifacts / "affine"
    assert not [p for p in model_dir.rglob(".staging-*")]
    assert stat.S_IMODE((model_dir / "savedmodel").stat().st_mode) == 0o777 & ~_umask()
    assert json.loads((model_dir / "savedmodel" / RECORD_NAME).read_text())["publication"] == project.report("affine")["targets"]["savedmodel"]["publication"]


def test_the_report_never_records_a_publication_its_folder_does_not_hold(project, monkeypatch):
    """report.json is written only after the folders it records were published: at every
    write, each recorded target's folder already holds the record of that publication (a
    kill between any two steps then leaves the old state or a folder the report has not
    caught up with, which the next run recovers; never a report ahead of its files)."""
    from pipeline.execute import export as export_module
    from pipeline.publication import read_record

    real = export_module.merge_report
    checked: list[str] = []

    def merge_report(model_dir, name, sha256, file, run, targets, *rest):
        for target, entry in targets.items():
            if entry.get("publication"):
                record = read_record(Path(model_dir) / target) or {}
                assert record.get("publication") == entry["publication"], f"{target}: report.json records {entry['publication']}, its folder holds {record.get('publication')}"
                checked.append(target)
        return real(model_dir, name, sha256, file, run, targets, *rest)

    monkeypatch.setattr(export_module, "merge_report", merge_report)
    project.config("affine", AFFINE + "  - {name: onnx, opset: 17}\n")
    assert project.run("export").code == 0
    assert {"savedmodel", "onnx"} <= set(checked)


def _umask() -> int:
    from pipeline.fsutil import umask

    return umask()


def test_bad_input_replaces_nothing(project):
    project.config("affine", AFFINE)
    assert project.run("export").code == 0
    model_dir = project.artifacts / "affine"
    before = {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    project.config("affine", AFFINE.replace("examples.affine:build", "examples.affine:missing_factory"))
    result = project.run("export", "--force")
    assert result.code == 2 and "affine.yaml:2: source.factory:" in result.err and "Traceback" not in result.err
    after = {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.parametrize("report_bytes", [b"\x89PNG\r\n\x1a\n garbage", b"[1, 2, 3]\n", b'{"targets": "no"}'])
def test_validate_on_a_garbage_report_is_one_clear_line(project, report_bytes):
    project.config("affine", AFFINE)
    (project.artifacts / "affine").mkdir(parents=True)
    garbage = project.artifacts / "affine" / "report.json"
    garbage.write_bytes(report_bytes)
    result = project.run("validate")
    assert result.code == 1
    assert "is not a tfship report" in result.err and "Traceback" not in result.err
    garbage.unlink()  # not a tfship report: the session-end schema check reads only what tfship wrote
