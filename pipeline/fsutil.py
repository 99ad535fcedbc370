"""Files: hashes, listings, and atomic publication (temp dir, then rename)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable


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
    if dest.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".trash-{dest.name}-", dir=dest.parent))
        os.rename(dest, trash / dest.name)
    os.rename(staged, dest)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
