"""Debug copies live beside the report (artifacts/<model>/.debug/...), never in a
target's folder, so they are neither hashed, published nor released."""
from __future__ import annotations

from pathlib import Path

from pipeline.fsutil import write_bytes_atomic, write_text_atomic


def write_bytes(path: Path, data: bytes) -> Path:
    write_bytes_atomic(path, data)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    return path


def debug_dir_for(model_dir: Path, target: str, variant: str) -> Path:
    return Path(model_dir) / ".debug" / (f"{target}-{variant}" if variant else target)
