"""Stage cache: a target is rebuilt only when something it depends on changed.

Key = sha256 of the stage name, the model's resolved config (targets aside), the
target's own resolved config, the bytes of the model source and of the parity data
source, tool versions, and tfship's own code that shapes that target's artifacts (the
target's module, the stages, runtimes, parity and tolerance code; not the renderers). Computing it never
imports TensorFlow, so an up-to-date `make export` finishes in well under a second.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from pipeline.spec import ModelConfig, TargetConfig, config_as_dict
from pipeline.fsutil import sha256_file

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def _digest_paths(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode() if path.is_file() else b"missing")
    return digest.hexdigest()


def _module_file(ref: str) -> Path | None:
    """The source file of 'module:attr' without importing the module itself."""
    module = ref.partition(":")[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def source_digest(config: ModelConfig) -> str | None:
    """Hash of the model's bytes (or its factory's code) and of the custom layer modules it
    names; None when it does not exist yet."""
    digest = _model_digest(config)
    refs = list(getattr(config.source, "modules", ()) or ()) + [ref for _, ref in getattr(config.source, "custom_objects", ()) or ()]
    files = [f for f in (_module_file(ref) for ref in refs) if f is not None]
    if digest is None or not files:
        return digest
    return hashlib.sha256((digest + _digest_paths(files)).encode()).hexdigest()


def _model_digest(config: ModelConfig) -> str | None:
    source = config.source
    if source.kind == "factory":
        file = _module_file(source.factory)
        return _digest_paths([file]) if file else None
    if source.path is None or not source.path.exists():
        return None
    if source.path.is_dir():
        return _digest_paths(sorted(p for p in source.path.rglob("*") if p.is_file()))
    return sha256_file(source.path)


def data_digest(config: ModelConfig) -> str | None:
    data = config.data
    if data.kind == "npz":
        return sha256_file(data.npz) if data.npz and data.npz.exists() else None
    if data.kind == "generator":
        file = _module_file(data.generator)
        return _digest_paths([file]) if file else None
    return "synthetic"  # fully described by the resolved config


# The code that shapes an artifact and its verdict. Renderers, commands, the CLI, the
# benchmark and release code are left out: editing them never rebuilds an artifact.
ARTIFACT_CODE = (
    "pipeline/stages/*.py",
    "pipeline/runtimes/*.py",
    "pipeline/target.py",
    "pipeline/records.py",
    "pipeline/tolerance.py",
    "pipeline/parity.py",
    "pipeline/verdict.py",  # the criteria that decide pass / fail
    "pipeline/audit.py",  # the loose-budget flag (a failure under --strict)
    "targets/support/*.py",
)


def code_files(target_name: str) -> list[Path]:
    """The files `code_digest` hashes for one target, in a fixed order."""
    files = sorted({f for pattern in ARTIFACT_CODE for f in _PACKAGE_ROOT.glob(pattern)})
    files.append(_PACKAGE_ROOT / "targets" / f"{target_name}.py")
    return [f for f in files if f.is_file()]


def code_digest(target_name: str) -> str:
    """tfship's own code that shapes this target's output."""
    return _digest_paths(code_files(target_name))


def target_key(config: ModelConfig, target: TargetConfig, versions: dict[str, str]) -> str | None:
    source, data = source_digest(config), data_digest(config)
    if source is None or data is None:
        return None  # something must be built first: no key, no reuse
    model = config_as_dict(config)
    for key in ("targets", "file", "sha256"):
        model.pop(key, None)
    payload = {
        "stage": f"target:{target.name}",
        "model": model,
        "target": config_as_dict(target),
        "source": source,
        "data": data,
        "versions": versions,
        "code": code_digest(target.name),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def reusable(entry: dict | None, key: str | None, model_dir: Path) -> bool:
    """A previous entry can stand when its key matches and its files are intact."""
    if not entry or key is None or entry.get("cache_key") != key or not checked(entry):
        return False
    for f in entry.get("files", []):
        path = model_dir / f["path"]
        if not path.is_file() or path.stat().st_size != f["bytes"] or sha256_file(path) != f["sha256"]:
            return False
    return bool(entry.get("files"))


def checked(entry: dict) -> bool:
    """A target entry whose artifacts were built and judged: passed or failed, or in error
    for some variants only (the converter's limit) while the others were checked."""
    if entry.get("status") in ("passed", "failed"):
        return True
    variants = entry.get("variants") or {}
    return any(v.get("status") in ("passed", "failed") for v in variants.values())
