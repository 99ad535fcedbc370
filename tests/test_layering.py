"""Architecture contracts, checked on the source: the import graph of pipeline/, targets/
and tfship/ has no cycle, the library never imports its commands, the config never
imports the targets, targets never import each other, the core never imports a
concrete target, and nothing heavy loads at import time.

The graph holds every `import` statement, lazy ones inside functions included: a cycle
closed by a function-level import is still a cycle. The registry's `importlib` loading
of target modules by name is plugin loading, not an import statement, and is not an edge.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from targets import REGISTRY

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "targets", "tfship")
HEAVY = {"tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "onnxruntime", "ai_edge_litert", "h5py", "openvino", "nncf", "iree"}
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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES if (REPO / package).is_dir() for p in sorted((REPO / package).rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports. `from a.b import c` is an edge to a.b.c
    when that is a module, else to a.b; parent packages run implicitly and are not edges."""
    modules = _project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                if node.level:  # relative: resolve against this module's package
                    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(package[: len(package) - node.level + 1] + [node.module])
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    graph[name].add(target if target in modules else base)
        graph[name] = {m for m in graph[name] if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as [a, b, ..., a], or None when the graph is acyclic (iterative DFS)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for root in sorted(graph):
        if state.get(root):
            continue
        stack = [(root, iter(sorted(graph.get(root, ()))))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            if state.get(child) == 1:
                return path[path.index(child):] + [child]
            if not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


def assert_acyclic(graph: dict[str, set[str]]) -> None:
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for child in graph.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def test_import_graph_is_acyclic():
    graph = import_graph()
    edges = sum(len(v) for v in graph.values())
    assert edges > 50, f"the import graph looks empty ({edges} edges): the scan is broken"
    assert_acyclic(graph)


def test_a_cycle_in_a_synthetic_graph_fails():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    with pytest.raises(AssertionError, match="import cycle: a -> b -> c -> a"):
        assert_acyclic(graph)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "d": {"a", "c"}}) is None


def test_nothing_imports_the_cli_or_the_commands():
    for name, imported in import_graph().items():
        if name == "pipeline.cli" or name.startswith("pipeline.commands") or name == "pipeline.__main__":
            continue
        bad = sorted(i for i in imported if i == "pipeline.cli" or i.startswith("pipeline.commands"))
        assert not bad, f"{name} imports {bad}: the library never imports its command line"


def test_config_and_spec_never_import_targets():
    graph = import_graph()
    for name in graph:
        if name == "pipeline.spec" or name == "pipeline.config" or name.startswith("pipeline.config."):
            bad = sorted(m for m in _reachable(graph, name) if m == "targets" or m.startswith("targets."))
            assert not bad, f"{name} reaches {bad}: the registry is handed to the config loader, never imported by it"


def test_targets_never_import_each_other_nor_execution_or_commands():
    graph = import_graph()
    names = {p.stem for p in TARGET_FILES}
    for module, imported in graph.items():
        if not module.startswith("targets."):
            continue
        own = module.split(".")[1]
        others = sorted(i for i in imported if i.startswith("targets.") and i.split(".")[1] in names and i.split(".")[1] != own)
        assert not others, f"{module} imports {others}"
        upward = sorted(i for i in imported if i.startswith(("pipeline.execute", "pipeline.commands", "pipeline.cli")))
        assert not upward, f"{module} imports {upward}: targets sit below the execution layer"


def test_pipeline_never_imports_a_concrete_target():
    for path in (REPO / "pipeline").rglob("*.py"):
        concrete = [n for n in _imports(path) if n.startswith("targets.") and not n.startswith(("targets.REGISTRY", "targets.support"))]
        assert not concrete, f"{path.relative_to(REPO)} imports {concrete}"


def test_heavy_libraries_load_lazily():
    light = TARGET_FILES + [REPO / "targets" / "__init__.py"] + sorted(p for p in (REPO / "pipeline").rglob("*.py") if "stages" not in p.parts)
    for path in light:
        heavy = [n for n in _imports(path, top_level_only=True) if n.split(".")[0] in HEAVY]
        assert not heavy, f"{path.relative_to(REPO)} imports {heavy} at import time (the config is validated before TensorFlow loads)"


def fast_tests_naming(source: str, target: str) -> list[str]:
    """Test functions of `source` outside the heavy tier that name `target` (a string such
    as a config's target list, or an import of targets.<target>)."""
    import re

    tree = ast.parse(source)
    module_heavy = any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets) and "heavy" in ast.unparse(n.value) for n in tree.body)
    found = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_") or module_heavy:
            continue
        if any("heavy" in ast.unparse(d) or "weekly" in ast.unparse(d) for d in node.decorator_list):
            continue
        strings = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
        imports = [n.module for n in ast.walk(node) if isinstance(n, ast.ImportFrom) and n.module]
        if any(re.search(rf"(?<![\w.]){target}(?![\w])", s) for s in strings) or f"targets.{target}" in imports:
            found.append(node.name)
    return found


def test_every_registered_target_has_fast_tests_that_run_it():
    """Each target's own test file (savedmodel: the end-to-end tests/test_run.py) holds tests in
    the fast tier that name the target, so `make test` exercises every target."""
    for name in REGISTRY.names():
        path = REPO / "tests" / ("test_run.py" if name == "savedmodel" else f"targets/test_{name}.py")
        assert path.is_file(), f"target '{name}' has no {path.relative_to(REPO)}"
        assert fast_tests_naming(path.read_text(), name), f"{path.relative_to(REPO)} has no test outside the heavy tier that runs target '{name}'"


def test_the_target_test_check_fails_on_a_file_that_does_not_run_the_target():
    only_heavy = "import pytest\n\n@pytest.mark.heavy\ndef test_a(project):\n    project.config('m', 'targets: [onnx]')\n"
    unrelated = "def test_b():\n    assert 'onnxruntime' and 'tflite'\n"
    module_heavy = "import pytest\npytestmark = pytest.mark.heavy\n\ndef test_c():\n    run(['onnx'])\n"
    for source in (only_heavy, unrelated, module_heavy):
        assert fast_tests_naming(source, "onnx") == [], source
    assert fast_tests_naming("def test_d():\n    from targets.onnx import OnnxOptions\n", "onnx") == ["test_d"]
    assert fast_tests_naming("def test_e(project):\n    project.config('m', '  - {name: onnx, opset: 17}')\n", "onnx") == ["test_e"]


def test_registry_refuses_duplicates():
    with pytest.raises(ValueError, match="registered twice"):
        REGISTRY.register(REGISTRY.get("savedmodel"))
