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


def test_the_corpus_is_large_enough():
    assert len(list(_cases())) >= 50


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
