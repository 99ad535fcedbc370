"""Stage cache: a target is rebuilt only when something it depends on changed.

Key = sha256 of the stage name, the model's resolved config (targets aside; paths
stand for their contents, not their names), the target's own resolved config, the
bytes of a model file and of an npz data file, tool versions, and tfship's own code
that shapes that target's artifacts (the target's module, the stages, runtimes, parity
and tolerance code; not the renderers). Computing it never imports TensorFlow.

The key is half of the claim that an artifact came from the same computation; the
other half is what the model itself computes:

- a model file whose load runs no user code tfship cannot hash is decided by its bytes
  plus the user modules its load imported (recorded per target as
  `source_dependencies`, with their sha256): no TensorFlow, well under a second;
- a factory, a live model, a file whose layers come from code without a file, and data
  from a generator are user code's products: the target is reused only after the model
  was built and traced again and its fingerprint (pipeline.stages.fingerprint: graph,
  weights, signature) and the data's equal what the target was built from.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from pipeline.spec import ModelConfig, TargetConfig, config_as_dict
from pipeline.fsutil import real_file_below, sha256_file

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
    """Hash of the model's bytes and of the custom layer modules it names (a factory's
    model is its product: `factory:<ref>`); None when the file does not exist yet."""
    digest = _model_digest(config)
    refs = list(getattr(config.source, "modules", ()) or ()) + [ref for _, ref in getattr(config.source, "custom_objects", ()) or ()]
    files = [f for f in (_module_file(ref) for ref in refs) if f is not None]
    if digest is None or not files:
        return digest
    return hashlib.sha256((digest + _digest_paths(files)).encode()).hexdigest()


def _model_digest(config: ModelConfig) -> str | None:
    source = config.source
    if source.kind == "factory":
        return f"factory:{source.factory}"  # decided by the built model's fingerprint
    if source.path is None or not source.path.exists():
        return None
    if source.path.is_dir():
        # fingerprint.pb differs on every save of the same model: it is not what the model computes
        files = sorted(p for p in source.path.rglob("*") if p.is_file() and p.relative_to(source.path).as_posix() != "fingerprint.pb")
        return _digest_paths_relative(source.path, files)
    return sha256_file(source.path)


def _digest_paths_relative(root: Path, paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def data_digest(config: ModelConfig) -> str | None:
    data = config.data
    if data.kind == "npz":
        return sha256_file(data.npz) if data.npz and data.npz.exists() else None
    if data.kind == "generator":
        return f"generator:{data.generator}"  # decided by the generated data's fingerprint
    return "synthetic"  # fully described by the resolved config


def product_checks(config: ModelConfig) -> list[str]:
    """Why reusing a target of this model needs the model built and fingerprinted first
    ([] when the bytes decide alone)."""
    why = []
    if config.source.kind == "factory":
        from pipeline import live

        why.append("the model lives in this process" if live.is_live(config.source.factory) else "the model comes from a factory")
    if config.data.kind == "generator":
        why.append("the data comes from a generator")
    return why


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


def key_parts(config: ModelConfig, target: TargetConfig, versions: dict[str, str]) -> dict[str, str] | None:
    """The digests a target's key combines, by name (an entry keeps them, so a rebuild can
    say what changed). Everything but the model itself: the model is the entry's
    `source_sha256` (a file's bytes) and `model_fingerprint` (what it computes), compared
    apart (`needs_fingerprint`). None when the model file must be built first."""
    source, data = source_digest(config), data_digest(config)
    if source is None or data is None:
        return None  # something must be built first: no key, no reuse

    def digest(value) -> str:
        return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()

    return {
        "model config": digest(model_config_view(config)),
        "target options": digest(config_as_dict(target)),
        "data": digest(data),
        "tool versions": digest(versions),
        "tfship code": code_digest(target.name),
    }


def target_key(config: ModelConfig, target: TargetConfig, versions: dict[str, str]) -> str | None:
    return key_of(target.name, key_parts(config, target, versions))


def key_of(target_name: str, parts: dict[str, str] | None) -> str | None:
    if parts is None:
        return None
    return hashlib.sha256(json.dumps({"stage": f"target:{target_name}", **parts}, sort_keys=True).encode()).hexdigest()


def model_config_view(config: ModelConfig) -> dict:
    """The model's resolved config as the key sees it: no targets, no file name, and a
    file path stands for its contents (digested apart), so a copied or moved config
    that names the same bytes keeps its key."""
    model = config_as_dict(config)
    for key in ("targets", "file", "sha256"):
        model.pop(key, None)
    model["source"].pop("path", None)
    model["data"].pop("npz", None)
    return model


def reusable(entry: dict | None, key: str | None, model_dir: Path) -> bool:
    """A previous entry can stand when its key matches and its files are intact, and the
    model is the same (`needs_fingerprint` says when that must be checked by building it)."""
    if not entry or key is None or entry.get("cache_key") != key or not checked(entry):
        return False
    for f in entry.get("files", []):
        path = real_file_below(model_dir, f["path"])  # a path read from a report is input too
        if path is None or not path.is_file() or path.stat().st_size != f["bytes"] or sha256_file(path) != f["sha256"]:
            return False
    return bool(entry.get("files"))


def changed_dependencies(entry: dict) -> list[str]:
    """The recorded user modules of the model's load whose bytes changed (or are gone)."""
    changed = []
    for dep in entry.get("source_dependencies") or []:
        path = Path(dep["path"])
        if path.is_symlink() or not path.is_file() or sha256_file(path) != dep["sha256"]:  # regular files only: never a device
            changed.append(str(path))
    return changed


def needs_fingerprint(config: ModelConfig, entry: dict) -> list[str]:
    """Why a reusable entry must still be checked against the model's fingerprint ([]: the
    model file's bytes and the user modules its load ran are as they were, which decides)."""
    why = product_checks(config)
    if config.source.kind == "factory":
        return why
    if entry.get("source_sha256") != source_digest(config):
        why.append(f"the model file {config.source.path.name if config.source.path else ''} changed".replace("  ", " "))
    changed = changed_dependencies(entry)
    if changed:
        why.append("user code the model's load imports changed: " + ", ".join(changed))
    elif entry.get("source_dependencies") is None:
        why.append("the model's layers come from code tfship cannot hash")
    return why


def checked(entry: dict) -> bool:
    """A target entry whose artifacts were built and judged: passed or failed, or in error
    for some variants only (the converter's limit) while the others were checked."""
    if entry.get("status") in ("passed", "failed"):
        return True
    variants = entry.get("variants") or {}
    return any(v.get("status") in ("passed", "failed") for v in variants.values())
