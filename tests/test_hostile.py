"""The hostile-input corpus (tests/hostile/cases.py): configs, data, model files and
artifact trees made to exhaust memory, hang the run, or write outside the artifacts folder.

Each case runs as its own `tfship` process, watched (killed past 60 s or 3 GB resident, so a
regression cannot take the machine down) and measured: wall time and peak resident memory
are printed (`-s`) and asserted against generous bounds, 5 s and 1.5 GB; every case is a
refusal before any heavy work (no TensorFlow), so these bounds hold by a wide margin.
Each must exit 2 (one integrity failure: 1) with the expected message and no traceback, and change nothing: neither
the case's own folder (bad input writes nothing) nor `sentinel/`, beside the artifacts
folder, which every link in the corpus points at.
"""
from __future__ import annotations

import re
import shutil

import pytest

from hostile import harness
from hostile.cases import CASES, MODEL

SECONDS = 5.0
PEAK_MB = 1500.0


def test_the_corpus_covers_every_kind():
    kinds = {case.kind for case in CASES}
    assert kinds == {"config", "data", "model", "artifacts"}
    assert len(CASES) >= 15
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_refused_within_bounds(case, tmp_path):
    root = tmp_path / case.name
    root.mkdir()
    try:
        _check(case, root)
    finally:  # links to /dev/zero, FIFOs and bombs are not left for whoever walks the temp folders next
        shutil.rmtree(root)


def _check(case, root):
    argv = case.build(root)
    before = harness.tree_digest(root)
    outcome = harness.run_tfship(argv, root, timeout=60.0, rss_limit_mb=3000.0)
    print(f"\n{case.name}: exit {outcome.code}, {outcome.seconds:.2f} s, peak {outcome.peak_mb:.0f} MB")
    assert not outcome.killed, f"{case.name}: {outcome.killed}"
    err = outcome.err
    assert outcome.code == case.exit, err
    assert "Traceback" not in err, err
    assert re.search(case.message, err, re.S), err
    if case.line is not None:
        assert f"{MODEL}.yaml:{case.line}:" in err, err
    assert outcome.seconds < SECONDS, f"{case.name} took {outcome.seconds:.1f} s"
    assert outcome.peak_mb < PEAK_MB, f"{case.name} peaked at {outcome.peak_mb:.0f} MB"
    after = harness.tree_digest(root)
    assert after == before, sorted(set(after.items()) ^ set(before.items()))


def test_a_saved_python_lambda_is_refused_not_run_in_both_keras_flavours(tmp_path):
    """Keras's safe mode stays on: Keras 3 has it by default; tf-keras leaves it unset when
    it reads an .h5 (and would rebuild the lambda from the file's bytecode and run it), so
    tfship sets it. The lambda here touches a file when it runs; after loading, it has not."""
    import keras
    import tf_keras

    from hostile.cases import keras_source
    from pipeline.config import load_config
    from pipeline.errors import ModelError
    from pipeline.stages.load import load_model
    from targets import REGISTRY

    marker = tmp_path / "ran"
    body = f"lambda x: x * 2.0 if __import__('pathlib').Path({str(marker)!r}).touch() is None else x"
    keras.Sequential([keras.Input((4,), name="x"), keras.layers.Lambda(eval(body), name="y")]).save(tmp_path / "k3.keras")
    tf_keras.Sequential([tf_keras.Input((4,), name="x"), tf_keras.layers.Lambda(eval(body), name="y")]).save(tmp_path / "tfk.h5")
    marker.unlink(missing_ok=True)  # building the models ran it here, in the test's own code
    for name in ("k3.keras", "tfk.h5"):
        path = tmp_path / f"{name.split('.')[0]}.yaml"
        path.write_text(keras_source(name))
        with pytest.raises(ModelError, match=rf"{path.name}:2: source.path: refused model .*{name}: it holds a Lambda layer with a Python lambda"):
            load_model(load_config(path, REGISTRY))
    assert not marker.exists()
