"""Architecture contracts, checked on the source: the core never imports a concrete
target, targets never import each other, and nothing heavy loads at import time."""
from __future__ import annotations

import ast
from pathlib import Path

from targets import REGISTRY

REPO = Path(__file__).resolve().parent.parent
HEAVY = {"tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "onnxruntime", "ai_edge_litert", "h5py"}
TARGET_FILES = sorted(p for p in (REPO / "targets").glob("*.py") if p.name != "__init__.py")


def _imports(path: Path, top_level_only: bool = False) -> list[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def test_pipeline_never_imports_a_concrete_target():
    for path in (REPO / "pipeline").rglob("*.py"):
        concrete = [n for n in _imports(path) if n.startswith("targets.") and not n.startswith(("targets.REGISTRY", "targets.support"))]
        assert not concrete, f"{path.relative_to(REPO)} imports {concrete}"


def test_targets_never_import_each_other():
    names = {p.stem for p in TARGET_FILES}
    for path in TARGET_FILES + sorted((REPO / "targets" / "support").glob("*.py")):
        others = [n for n in _imports(path) if n.split(".")[:2][-1] in names and n.startswith("targets.") and n != f"targets.{path.stem}"]
        assert not others, f"{path.relative_to(REPO)} imports {others}"


def test_heavy_libraries_load_lazily():
    light = TARGET_FILES + [REPO / "targets" / "__init__.py"] + sorted((REPO / "pipeline").glob("*.py"))
    for path in light:
        heavy = [n for n in _imports(path, top_level_only=True) if n.split(".")[0] in HEAVY]
        assert not heavy, f"{path.relative_to(REPO)} imports {heavy} at import time (the config is validated before TensorFlow loads)"


def test_every_registered_target_has_its_own_tests():
    for name in REGISTRY.names():
        if name == "savedmodel":
            continue  # exercised by tests/test_run.py end to end
        assert (REPO / "tests" / "targets" / f"test_{name}.py").is_file(), f"target '{name}' has no tests/targets/test_{name}.py"


def test_registry_refuses_duplicates():
    import pytest

    with pytest.raises(ValueError, match="registered twice"):
        REGISTRY.register(REGISTRY.get("savedmodel"))
