"""Symbolic links in the artifacts tree (pipeline/fsutil.py, pipeline/publication.py): where
tfship writes, a link is refused naming where it points; where it publishes a whole file or
folder, the link itself is replaced; paths read from a report never go through one.
The refusals of whole commands are in the hostile corpus (tests/hostile/cases.py)."""
from __future__ import annotations

import hashlib
import os

import pytest

from pipeline.errors import IntegrityError, LinkRefused
from pipeline.fsutil import publish_dir, real_file_below, refuse_links
from pipeline.publication import ModelLock, check_model_tree, sweep
from pipeline.release import ModelSource, _copy_target
from pipeline.reports.model import verify_files


@pytest.fixture
def outside(tmp_path):
    """A folder outside the artifacts root, as /etc would be; its content must never change."""
    folder = tmp_path / "outside"
    (folder / "savedmodel").mkdir(parents=True)
    (folder / "passwd").write_text("root:x:0:0\n")
    (folder / "savedmodel" / "keep.txt").write_text("not tfship's\n")
    return folder


def _snapshot(folder):
    return sorted((p.relative_to(folder).as_posix(), p.read_bytes() if p.is_file() else b"") for p in folder.rglob("*"))


def test_a_root_named_by_the_user_may_be_a_link_but_nothing_below_it(tmp_path, outside):
    root = tmp_path / "artifacts"
    root.symlink_to(outside, target_is_directory=True)
    assert refuse_links(root, root / "m" / "report.json") == root / "m" / "report.json"
    (outside / "m").symlink_to(tmp_path)
    with pytest.raises(LinkRefused, match=r"artifacts/m is a symbolic link to .*; .*Fix: remove the link"):
        refuse_links(root, root / "m" / "report.json")


@pytest.mark.parametrize("link", [".stages/savedmodel", ".debug/tflite-int8/graph.pb", ".logs/worker.log", ".source/data.npz", ".trash-tflite-x", ".report.json.tmp"])
def test_links_where_tfship_writes_are_refused_before_anything_is_written(tmp_path, outside, link):
    model = tmp_path / "artifacts" / "m"
    path = model / link
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(outside / "passwd")
    before = _snapshot(outside)
    with pytest.raises(LinkRefused, match=rf"{link} is a symbolic link to .*passwd"):
        with ModelLock(tmp_path / "artifacts", "m"):
            pass
    assert not (tmp_path / "artifacts" / ".m.lock").exists()  # released: nothing left behind
    assert _snapshot(outside) == before


def test_links_where_tfship_publishes_whole_are_left_to_publication(tmp_path, outside):
    model = tmp_path / "artifacts" / "m"
    model.mkdir(parents=True)
    (model / "report.json").symlink_to(outside / "passwd")
    (model / "savedmodel").symlink_to(outside / "savedmodel")
    (model / "tflite").symlink_to(outside / "gone")  # dangling
    check_model_tree(tmp_path / "artifacts", "m")
    before = _snapshot(outside)
    for name in ("savedmodel", "tflite"):
        staged = model / f".staging-{name}"
        staged.mkdir()
        (staged / "model.bin").write_bytes(b"new")
        publish_dir(staged, model / name)
        assert not (model / name).is_symlink() and (model / name / "model.bin").read_bytes() == b"new"
    assert _snapshot(outside) == before
    (model / "report.json").unlink()  # the session's schema check reads every report.json left behind


def test_a_lock_file_with_other_names_is_refused_not_emptied(tmp_path, outside):
    root = tmp_path / "artifacts"
    root.mkdir()
    os.link(outside / "passwd", root / ".m.lock")
    with pytest.raises(LinkRefused, match=r"\.m\.lock is not a plain file of tfship's \(it has other names \(hard links\)\)"):
        ModelLock(root, "m").acquire()
    assert (outside / "passwd").read_text() == "root:x:0:0\n"


def test_a_sweep_never_follows_a_trash_link(tmp_path, outside):
    model = tmp_path / "m"
    model.mkdir()
    (model / ".trash-savedmodel-x").symlink_to(outside)
    sweep(model)
    assert not (model / "savedmodel").exists() and (outside / "savedmodel" / "keep.txt").is_file()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_report_paths_are_read_only_below_the_model_folder(tmp_path, outside):
    model = tmp_path / "m"
    (model / "tflite").mkdir(parents=True)
    (model / "tflite" / "model.tflite").symlink_to(outside / "passwd")
    secret = (outside / "passwd").read_bytes()
    files = [{"path": p, "sha256": _digest(secret), "bytes": len(secret)} for p in ("tflite/model.tflite", "/etc/passwd", "tflite/../../outside/passwd")]
    changed = verify_files(model, {"targets": {"tflite": {"files": files}}})
    assert [c.split(" (")[0] for c in changed[:3]] == ["tflite/model.tflite", "/etc/passwd", "tflite/../../outside/passwd"]
    assert all("not read" in c for c in changed[:3])
    assert real_file_below(model, "tflite/model.tflite") is None and real_file_below(model, "tflite") == model / "tflite"
    source = ModelSource("m", {"targets": {"tflite": {"files": files[:1]}}}, {"tflite": model}, ("tflite",), {})
    with pytest.raises(IntegrityError, match="reached through a symbolic link; a release copies only the files tfship wrote"):
        _copy_target(source, "tflite", tmp_path / "release" / "m")


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "link_to_a_report"])
def test_a_report_or_record_that_is_not_a_plain_file_is_no_report(tmp_path, kind):
    """Reading one could fill the memory (/dev/zero) or block forever (a FIFO): it is not read."""
    from pipeline.publication import read_record
    from pipeline.reports.model import read_report

    model = tmp_path / "m"
    (model / "savedmodel").mkdir(parents=True)
    (tmp_path / "elsewhere.json").write_text('{"targets": {}}')
    for path in (model / "report.json", model / "savedmodel" / ".tfship-record.json"):
        if kind == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to("/dev/zero" if kind == "dev_zero" else tmp_path / "elsewhere.json")
    try:
        assert read_report(model) is None
        assert read_record(model / "savedmodel") is None
    finally:  # the session's schema check reads every report.json left behind
        (model / "report.json").unlink()


def test_a_native_log_is_never_opened_through_a_link(tmp_path, outside):
    """compare and inspect keep theirs in the shared temp folder, where anyone can plant one."""
    from pipeline.execute.console import native_stderr_to

    log = tmp_path / "tfship-inspect.log"
    log.symlink_to(outside / "passwd")
    with pytest.raises(LinkRefused, match="tfship-inspect.log is a symbolic link to .*passwd"):
        with native_stderr_to(log):
            os.write(2, b"native noise\n")
    assert (outside / "passwd").read_text() == "root:x:0:0\n"
