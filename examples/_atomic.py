"""Atomic writes for built artifacts.

A build that crashes half way must never leave a truncated model file where
the pipeline expects a finished one, so every artifact is first written under
a temporary name in the destination folder and then moved into place with a
rename, which is atomic within one filesystem.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a scratch path to write to; move it onto ``path`` on success.

    The scratch path keeps the final file name (inside a hidden temporary
    folder next to ``path``) because savers such as Keras pick the format
    from the suffix. Works for a single file or a whole directory (a
    SavedModel). On error the scratch copy is removed and ``path`` is left
    untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch_dir = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    scratch = scratch_dir / final.name
    try:
        yield scratch
        if not scratch.exists():
            raise FileNotFoundError(f"nothing was written to {scratch}")
        _move_into_place(scratch, final)
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)


def _move_into_place(scratch: Path, final: Path) -> None:
    if scratch.is_dir() and final.exists():
        # os.replace cannot overwrite a non-empty directory, so the old one is
        # renamed aside first; the window without a complete artifact is one
        # rename long.
        aside = final.with_name(f".{final.name}.old")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
        os.replace(scratch, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(scratch, final)


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` as indented JSON at ``path`` atomically."""
    with atomic_path(path) as scratch:
        scratch.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
