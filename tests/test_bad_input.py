"""The bad-input corpus: every case is refused the same way.

Each folder under tests/bad_input/ holds a config, its small files and expect.yaml
(written by tests/bad_input/make_cases.py). Whatever is wrong and wherever it is found
(config, model file, factory, generator, data, signature, target), the export must exit
with the expected code, print no traceback and no colour codes, name the config's
file:line, say what was expected, and write nothing at all.
Cases that need a worker (TensorFlow) are marked heavy.
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

CORPUS = Path(__file__).resolve().parent / "bad_input"


def _cases():
    for folder in sorted(p for p in CORPUS.iterdir() if (p / "expect.yaml").is_file()):
        expect = yaml.safe_load((folder / "expect.yaml").read_text())
        marks = [pytest.mark.heavy] if expect["heavy"] else []
        yield pytest.param(folder, expect, id=folder.name, marks=marks)


# Kinds of bad input docs/errors.md and docs/hostile-input.md promise are refused; each must stay a case of the corpus.
PROMISED = (
    "keras_truncated", "keras_empty", "h5_garbage", "h5_weights_only",  # truncated or garbage model files
    "factory_module_missing", "factory_imports_missing_package", "factory_syntax_error", "factory_raises",  # factories
    "generator_wrong_shape", "generator_nonfinite", "generator_raises", "npz_nonfinite", "npz_truncated",  # data
    "savedmodel_no_such_signature", "input_shape_mismatch", "unknown_target", "yaml_syntax",  # signature, target, config
)


def _declared() -> dict:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_cases", CORPUS / "make_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


def test_the_committed_corpus_is_the_one_make_cases_declares():
    """Each case make_cases.py declares is a committed folder with the same config, files and
    expectations, no folder is left over from a removed case, and the promised kinds are there."""
    declared = _declared()
    folders = {p.name for p in CORPUS.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(declared), (sorted(folders - set(declared)), sorted(set(declared) - folders))
    for name, case in declared.items():
        folder = CORPUS / name
        expect = yaml.safe_load((folder / "expect.yaml").read_text())
        assert expect == {"exit": case["exit"], "line": case["line"], "heavy": case["heavy"], "message": case["message"]}, name
        encoding = "latin-1" if "__latin1__" in case["files"] else "utf-8"
        assert (folder / "config.yaml").read_bytes() == case["config"].encode(encoding), name
        for rel, content in case["files"].items():
            if rel == "__latin1__":
                continue
            assert (folder / rel).exists(), f"{name}: {rel}"
            if isinstance(content, (bytes, str)):
                assert (folder / rel).read_bytes() == (content if isinstance(content, bytes) else content.encode()), f"{name}: {rel}"
    missing = [name for name in PROMISED if name not in declared]
    assert not missing, missing
    assert len(declared) >= 50


@pytest.mark.parametrize("folder, expect", list(_cases()))
def test_bad_input_is_refused_cleanly(folder, expect, tmp_path, capsys):
    from pipeline.cli import main

    config_dir = tmp_path / "configs" / "models"
    shutil.copytree(folder, config_dir)
    (config_dir / "expect.yaml").unlink()
    (config_dir / "config.yaml").rename(config_dir / f"{folder.name}.yaml")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    artifacts = tmp_path / "artifacts"
    sys.path.insert(0, str(config_dir))  # the case's own modules (factories, generators)
    try:
        capsys.readouterr()
        code = main(["export", "--config-dir", str(config_dir), "--artifacts", str(artifacts), "--model", folder.name])
    finally:
        sys.path.remove(str(config_dir))
    err = capsys.readouterr().err
    assert code == expect["exit"], err
    assert "Traceback" not in err and "\x1b[" not in err, err
    assert f"{folder.name}.yaml:{expect['line']}:" in err, err
    assert re.search(expect["message"], err, re.S), err
    assert not artifacts.exists(), sorted(str(p) for p in artifacts.rglob("*"))
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "__pycache__" not in p.parts)
    assert after == [p for p in before if "__pycache__" not in p.parts]
