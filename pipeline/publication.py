"""Publishing a model's outputs so that a crash, a kill or Ctrl-C never leaves them disagreeing.

- One run per model at a time: `ModelLock` (an flock on `artifacts/.<model>.lock`).
  A second run waits, saying for whom; a lock left by a killed run is free again,
  because the kernel drops an flock with its process.
- A target folder carries its own report record (`.tfship-record.json`), written into
  the staging folder before the one rename that publishes both. report.json gathers
  the records; when a kill lands between the rename and the report write, the folder's
  record is newer than the report's entry, `stale_targets` names that target and
  `reconcile` (run by the next export under the lock) adopts the record.
- `reconcile` also puts back a folder a kill left under `.trash-*` (between the two
  renames of a replacement) and sweeps stale `.staging-*` folders.
- Nothing is written through a symbolic link tfship did not create: once the lock is held,
  `check_model_tree` refuses (exit 2) a link at the model folder, at tfship's own folders
  (.stages, .logs, .debug, .source) or what they hold, at the lock, or at the debris of an
  interrupted run. A link where a whole file or folder is published (report.*, a target
  folder) is not refused: publication renames the link itself away and leaves its target alone.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import stat
import time
import uuid
from pathlib import Path
from typing import Callable

from pipeline.errors import LinkRefused
from pipeline.fsutil import apply_umask, link_refusal, publish_dir, read_own_file, refuse_links, write_json_atomic
from pipeline.reports.model import RECORD_NAME, overall_status, read_report, write_report
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
OWN_FOLDERS = (".stages", ".logs", ".debug", ".source")  # tfship's working folders in artifacts/<model>/


class ModelLock:
    """Exclusive per-model lock over `artifacts/<model>/` for the length of a run."""

    def __init__(self, artifacts_root: Path, model: str, echo: Callable[[str], None] | None = None, wait: bool = True):
        self.path = artifacts_root / f".{model}.lock"
        self.model = model
        self.echo = echo or (lambda line: None)
        self.wait = wait
        self.fd: int | None = None

    def _holder(self) -> str:
        try:
            text = self.path.read_text().strip()
        except OSError:
            return ""
        return f" (pid {text})" if text.isdigit() else ""

    def _open(self) -> int:
        """The lock file, never through a link (O_NOFOLLOW) and never a file with other names:
        the holder truncates it, which through a link to /etc/passwd would empty that."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise link_refusal(self.path) from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            os.close(fd)
            raise LinkRefused(
                f"{self.path} is not a plain file of tfship's ({'it has other names (hard links)' if stat.S_ISREG(info.st_mode) else 'not a regular file'}); "
                f"the lock is emptied by every run. Fix: remove it (`rm {self.path}`). Nothing was written"
            )
        return fd

    def acquire(self) -> "ModelLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            probe = self._open()
        except OSError as exc:
            if exc.errno in NOT_WRITABLE and self.path.parent.is_dir():
                check_model_tree(self.path.parent, self.model)
                return self  # a folder nobody here can write: nothing to guard (validate still reads it)
            raise
        os.close(probe)
        told = False
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not self.wait:
                    os.close(fd)
                    raise LockBusy(f"another tfship run{self._holder()} is writing artifacts of '{self.model}' ({self.path}); try again when it finished")
                if not told:
                    self.echo(f"[{self.model}] waiting for another tfship run{self._holder()} on this model to finish (lock {self.path})")
                    told = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            # The holder unlinks the file when it releases: make sure we hold the file that is still there.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        try:  # under the lock, no other run changes the tree while it is checked
            check_model_tree(self.path.parent, self.model)
        except LinkRefused:
            self.release()
            raise
        if told:
            self.echo(f"[{self.model}] the other run finished; going on")
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "ModelLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class LockBusy(Exception):
    pass


def check_model_tree(artifacts_root: Path, model: str) -> None:
    """Raise LinkRefused for a symbolic link where tfship writes in `artifacts_root/<model>/`:
    the model folder, its own folders and anything in them, and the staging, trash and temp
    files of interrupted runs. Call before writing anything."""
    root = Path(artifacts_root)
    model_dir = refuse_links(root, root / model)
    if not model_dir.is_dir():
        return
    for entry in os.scandir(model_dir):
        if entry.name in OWN_FOLDERS or entry.name.startswith((STAGING_PREFIX, TRASH_PREFIX, ".report.")):
            if entry.is_symlink():
                raise link_refusal(Path(entry.path))
            if entry.name in OWN_FOLDERS and entry.is_dir():
                for folder, dirs, files in os.walk(entry.path):  # os.walk does not descend into links
                    for name in dirs + files:
                        if os.path.islink(os.path.join(folder, name)):
                            raise link_refusal(Path(folder) / name)


def new_publication_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:12]}"


def publish_target(staged: Path, dest: Path, entry: dict) -> dict:
    """Publish a finished target folder together with its report record (one rename).

    Returns the entry as recorded (with its publication id)."""
    entry = dict(entry, publication=new_publication_id())
    write_json_atomic(staged / RECORD_NAME, entry)
    apply_umask(staged)
    publish_dir(staged, dest)
    return entry


def read_record(target_dir: Path) -> dict | None:
    raw = None if os.path.islink(target_dir) else read_own_file(target_dir / RECORD_NAME)
    try:
        return None if raw is None else json.loads(raw.decode("utf-8"))
    except ValueError:
        return None


def stale_targets(model_dir: Path, report: dict, configured: set[str] | None = None) -> dict[str, str]:
    """Targets whose folder and report entry disagree about which export they hold: {name: why}.

    A folder the report does not list counts only when its target is `configured` (None: any);
    a target dropped from the config leaves its old folder, which is no one's business."""
    stale = {}
    targets = report.get("targets", {})
    published = {p.name for p in model_dir.iterdir() if not p.is_symlink() and p.is_dir() and (p / RECORD_NAME).is_file()} if model_dir.is_dir() else set()
    if configured is not None:
        published &= configured
    names = set(targets) | published
    for name in sorted(names):
        entry = targets.get(name)
        record = read_record(model_dir / name)
        if record is None:
            trash = _trash_copies(model_dir, name)
            if entry and entry.get("files") and not (model_dir / name).exists() and trash:
                stale[name] = f"its folder was moved aside by an interrupted export ({trash[0].name}); the next export puts it back"
            continue
        if entry is None:
            stale[name] = f"its folder holds an export finished {record.get('finished', '?')} that report.json does not list (the export was interrupted before recording it)"
        elif record.get("publication") and entry.get("publication") != record.get("publication"):
            stale[name] = (
                f"its folder holds export {record.get('publication')} (finished {record.get('finished', '?')}) but report.json records "
                f"{entry.get('publication') or 'an older one'} (the export was interrupted before recording it)"
            )
    return stale


def _trash_copies(parent: Path, name: str) -> list[Path]:
    return sorted(p for p in parent.glob(f"{TRASH_PREFIX}{name}-*") if (p / name).exists())


def _restore_trash(parent: Path) -> list[str]:
    """A kill between the two renames of a replacement leaves the old folder under .trash-*."""
    restored = []
    for trash in sorted(parent.glob(f"{TRASH_PREFIX}*")):
        if trash.is_symlink() or not trash.is_dir():
            continue  # not tfship's (check_model_tree refuses it before any sweep)
        for inner in trash.iterdir():
            dest = parent / inner.name
            if not dest.exists():
                os.rename(inner, dest)
                restored.append(inner.name)
        shutil.rmtree(trash, ignore_errors=True)
    return restored


def sweep(model_dir: Path) -> list[str]:
    """Put back folders moved aside, then delete staging folders and temp files of dead runs.

    Only call this while holding the model's lock: then no live run owns them."""
    if not model_dir.is_dir():
        return []
    done = [f"restored {name}" for name in _restore_trash(model_dir)]
    stages = model_dir / ".stages"
    if stages.is_dir():
        done += [f"restored .stages/{name}" for name in _restore_trash(stages)]
    for parent in (model_dir, stages):
        if not parent.is_dir():
            continue
        for path in parent.iterdir():
            if path.name.startswith(STAGING_PREFIX) or (path.name.startswith(".report.") and path.is_file()):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                done.append(f"removed {path.relative_to(model_dir)}")
    return done


def reconcile(model_dir: Path, configured: set[str] | None = None) -> list[str]:
    """Make report.json agree with the published folders; returns what was done.

    Call under the model's lock. A folder's record describes exactly the files published
    with it, so when the two disagree the folder's record wins."""
    done = sweep(model_dir)
    report = read_report(model_dir)
    if report is None:
        return done
    stale = stale_targets(model_dir, report, configured)
    changed = False
    for name in stale:
        record = read_record(model_dir / name)
        if record is not None:
            report.setdefault("targets", {})[name] = dict(record, cache_key=None)  # rebuilt next time: its run was cut short
            done.append(f"recorded {name} from its folder ({record.get('publication')})")
            changed = True
    if changed:
        report["status"] = overall_status(report["targets"])
        write_report(model_dir, report)
    return done


# Errors of the file system, not of tfship: one line, no traceback.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def check_writable(folder: Path) -> str | None:
    """None when tfship can create files in `folder` (or create it); else why not."""
    probe_dir = folder
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        return f"{probe_dir} is not a folder"
    try:
        fd = os.open(probe_dir / f".tfship-write-probe-{os.getpid()}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as exc:
        return f"cannot write in {probe_dir}: {exc.strerror}"
    os.close(fd)
    os.unlink(probe_dir / f".tfship-write-probe-{os.getpid()}")
    return None


def file_system_error(exc: OSError) -> tuple[str, int] | None:
    """(one line, exit code) for a full disk or an unwritable folder; None for anything else.

    A full disk is exit 1 (the machine failed the run, the input was fine); a read-only
    or forbidden artifacts folder is exit 2 (the user pointed tfship where it cannot write)."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in DISK_FULL:
        return f"no space left on the device{where}: free space and run again; the previous artifacts and report are unchanged", 1
    if exc.errno in NOT_WRITABLE:
        return f"cannot write{where}: {exc.strerror}; make the artifacts folder writable or pass --artifacts <folder>; nothing was replaced", 2
    return None
