"""The corpus's trained weights and task figures: the training cache trains once and
reloads until what it trains from changes; held-out figures are computed as the table
states them; the real data's train / held-out split is fixed and disjoint."""
from __future__ import annotations

import json

import numpy as np
import pytest

from examples import real_data as rd
from examples.corpus.tasks import figures, headline
from examples.trained import trained


def _tiny():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])


def test_training_cache_trains_once_then_reloads_until_the_data_changes(tmp_path):
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    calls = []

    def train(model):  # "training" that sets a classifier of x[:, 0]'s sign by hand
        calls.append(1)
        kernel = np.zeros((4, 3), np.float32)
        kernel[0] = [-5.0, 5.0, 0.0]
        model.set_weights([kernel, np.zeros(3, np.float32)])
        return {"heldout_accuracy": float(np.mean(np.argmax(np.asarray(model(x)), 1) == y))}

    first = trained("tiny", _tiny, train, ("examples.corpus._common",), rd.fingerprint(x, y), root=tmp_path)
    again = trained("tiny", _tiny, train, ("examples.corpus._common",), rd.fingerprint(x, y), root=tmp_path)
    assert len(calls) == 1 and not first.cached and again.cached
    for a, b in zip(first.model.get_weights(), again.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert again.figures == first.figures and first.figures["heldout_accuracy"] == 1.0 and first.figures["train_seconds"] >= 0
    meta = json.loads((tmp_path / f"tiny-{first.figures['key']}.json").read_text())
    assert meta["key"] == first.figures["key"] and first.weights.is_file()

    changed = trained("tiny", _tiny, train, ("examples.corpus._common",), rd.fingerprint(x, 1 - y), root=tmp_path)
    assert len(calls) == 2 and not changed.cached and changed.figures["key"] != first.figures["key"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"tiny-{changed.figures['key']}.json", f"tiny-{changed.figures['key']}.weights.h5"])


def test_task_figures_accuracy_tagging_and_regression():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert figures("accuracy", scores, np.array([0, 1, 1, 1])) == {"accuracy": 0.75}
    tags = np.zeros((2, 3, 2))
    tags[..., 1] = 1.0  # every character tagged 1
    truth = np.array([[1, 1, -1], [1, 0, -1]])  # -1: padding, not counted
    assert figures("tagging", tags, truth) == {"accuracy": 0.75}
    truth = np.array([[1.0], [2.0], [3.0], [4.0]])
    found = figures("regression", np.array([1.0, 2.0, 3.0, 5.0]), truth)
    assert found["r2"] == pytest.approx(1 - 1 / 5) and found["mae"] == pytest.approx(0.25)
    assert headline("regression", found) == ("r2", found["r2"]) and headline("accuracy", {"accuracy": 0.5}) == ("accuracy", 0.5)


def test_real_data_split_is_fixed_and_disjoint():
    train, held = rd.split(1797, "train"), rd.split(1797, "heldout")
    assert len(held) == 360 and len(train) == 1437 and not set(train) & set(held)
    np.testing.assert_array_equal(held, rd.split(1797, "heldout"))
    x, y = rd.digit_images("heldout", 32, -1.0, 1.0)
    assert x.shape == (360, 32, 32, 3) and x.min() >= -1.0 and x.max() <= 1.0 and set(np.unique(y)) == set(range(10))
    augmented, _ = rd.digit_images("heldout", 32, seed=3)
    assert not np.allclose(augmented, rd.digit_images("heldout", 32)[0])
    assert rd.char_ids(["ab", "\x7f"], 3).tolist() == [[66, 67, 0], [95, 0, 0]]


def test_the_table_reads_new_targets_task_figures_and_changed_verdicts(tmp_path):
    """A target the table code does not list (added by a later target module) still gets
    its rows; an artifact's held-out figure is shown with its change from the reference;
    a cell whose status differs between the random-weight and trained runs is listed."""
    import yaml

    from examples.corpus import tasks
    from examples.corpus.table import _changed, collect

    def export(root, status):
        configs, artifacts = root / "configs", root / "artifacts"
        configs.mkdir(parents=True)
        (configs / "m.yaml").write_text(yaml.safe_dump({"targets": ["savedmodel", "stablehlo_like"]}))
        record = {"status": status, "bytes": 2048, "artifact": {"variant": "fp32"}, "parity": {"outputs": {"probs": {"max_abs": 0.5}},
                  "failures": ["probs: SQNR 10 dB (limit >= 15 dB)"] if status == "failed" else []}}
        report = {"run": {"finished": "2030-01-01T00:00:00+00:00"},
                  "targets": {"stablehlo_like": {"status": status, "variants": {"fp32": record}}}}
        (artifacts / "m").mkdir(parents=True)
        (artifacts / "m" / "report.json").write_text(json.dumps(report))
        return configs, artifacts

    configs, artifacts = export(tmp_path / "trained", "passed")
    tasks._write(artifacts / tasks.METRICS_DIR / "m.json", {
        "report_finished": "2030-01-01T00:00:00+00:00", "kind": "accuracy", "output": "probs", "samples": 10,
        "reference": {"accuracy": 0.9}, "artifacts": {"stablehlo_like/fp32": {"accuracy": 0.85}}})
    rows = {(r["target"], r["variant"]): r for r in collect(configs, artifacts)}
    assert rows[("stablehlo_like", "fp32")]["status"] == "passed"
    assert rows[("stablehlo_like", "fp32")]["task"] == "0.8500 (-0.0500)"
    assert rows[("savedmodel", "")]["status"] == "missing"

    random_configs, random_artifacts = export(tmp_path / "random", "failed")
    changed = _changed(list(rows.values()), collect(random_configs, random_artifacts))
    line = next(line for line in changed if line.startswith("| m | stablehlo_like |"))
    assert "| failed | passed | 0.8500 (-0.0500) |" in line and "SQNR 10 dB" in line
    assert changed[-1] == "1 cells changed; 0 kept their status."
    # The reports above are hand-made table inputs (only the fields the table reads), not
    # tfship's output: the session's check of every report.json tfship wrote skips them.
    for path in tmp_path.rglob("report.json"):
        path.unlink()
