"""Files: hashes, listings, atomic publication (temp dir, then rename), and never writing
through a symbolic link tfship did not create (`refuse_links`)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable

from pipeline.errors import LinkRefused


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expand_files(root: Path, entries: Iterable[str]) -> list[Path]:
    """Files named by `entries` (relative to root); a folder stands for every file below it."""
    out = []
    for entry in entries:
        path = root / entry
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            out.append(path)
    return out


def file_records(root: Path, entries: Iterable[str], relative_to: Path) -> list[dict]:
    return [
        {"path": p.relative_to(relative_to).as_posix(), "sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in expand_files(root, entries)
    ]


def link_refusal(link: Path) -> LinkRefused:
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    return LinkRefused(
        f"{link} is a symbolic link to {target}; tfship writes only real files and folders inside the artifacts folder "
        "and never through a link it did not create (one planted in a cache or a pull request could point anywhere). "
        f"Fix: remove the link (`rm {link}`); to keep artifacts elsewhere, pass that folder as --artifacts. Nothing was written"
    )


def refuse_links(root: Path, path: Path) -> Path:
    """`path`, after checking that neither it nor a folder between `root` and it is a
    symbolic link (raise LinkRefused). `root` itself may be one: the user named it."""
    current = Path(root)
    for part in Path(path).relative_to(root).parts:
        current = current / part
        if os.path.islink(current):
            raise link_refusal(current)
        if not current.is_dir():
            break  # nothing below a missing folder or a file can exist
    return Path(path)


def real_file_below(root: Path, rel: str) -> Path | None:
    """root/rel when `rel` is a relative path that stays below `root` through no link, else None
    (paths read from a report are input too: '/etc/shadow', '../..' or a link inside a target folder)."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        return None
    current = Path(root)
    for part in parts:
        current = current / part
        if os.path.islink(current):
            return None
    return current


MAX_OWN_FILE = 64 << 20  # a report or record tfship wrote: a few hundred KB


def read_own_file(path: Path, limit: int = MAX_OWN_FILE) -> bytes | None:
    """The bytes of a file tfship wrote (a report, a record, a manifest), or None when it is
    missing, a link, not a regular file, or over `limit` bytes: then it is not tfship's, and
    reading it could hang (a FIFO) or fill the memory (a link to /dev/zero)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO opens at once
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


def staging_dir(parent: Path, name: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".staging-{name}-", dir=parent))


def umask() -> int:
    """The process umask, read without changing it (os.umask can only be read by setting it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def apply_umask(root: Path) -> None:
    """Give `root` and everything below it the permissions any new file gets.

    Staging folders come from mkdtemp (mode 0700) and atomic files from mkstemp (0600);
    published outputs must be readable like any other file (e.g. by a TF Serving
    container running as another user). Executable files stay executable.
    """
    mask = umask()
    paths = [root] + (list(root.rglob("*")) if root.is_dir() else [])
    for path in paths:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        executable = path.is_dir() or mode & 0o111
        os.chmod(path, (0o777 if executable else 0o666) & ~mask)


def publish_dir(staged: Path, dest: Path) -> None:
    """Replace `dest` with `staged`. Both live in one folder, so each rename is atomic;
    a crash between the two leaves the previous artifacts under `.trash-*`, never half-written
    (the next run's sweep puts them back)."""
    apply_umask(staged)
    trash = None
    if os.path.lexists(dest):  # a link (even a dangling one) is moved aside like a folder, never followed
        trash = Path(tempfile.mkdtemp(prefix=f".trash-{dest.name}-", dir=dest.parent))
        os.rename(dest, trash / dest.name)
    os.rename(staged, dest)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a temp file beside `path`, then rename it over `path` (a link there is replaced, not followed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
