"""Commands and options with no other test: `tfship targets`, `export --bench`,
`compare --data/--samples/--seed`, and `tfship.export(isolate=True)`."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import AFFINE_HEAD


def test_targets_lists_every_registered_target_with_its_description(capsys):
    from pipeline.cli import main
    from targets import REGISTRY

    capsys.readouterr()
    assert main(["targets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = REGISTRY.names()
    assert {"savedmodel", "onnx", "tflite", "edgetpu", "xla", "tpu"} <= set(names)
    assert [line.split()[0] for line in lines] == list(names)
    for line, name in zip(lines, names):
        description = REGISTRY.get(name).description
        assert description and line == f"{name:12} {description}"


@pytest.mark.heavy
def test_export_bench_times_what_it_exported_and_nothing_when_the_export_failed(project):
    project.config("affine", AFFINE_HEAD + "  - savedmodel\n")
    result = project.run("export", "--bench")
    assert result.code == 0, result.err
    record = project.report("affine")["targets"]["savedmodel"]["variants"]["default"]
    batches = record["benchmark"]["batches"]
    assert set(batches) == {"1", "32"}  # batch 1 and the default bench batch
    for batch, figure in batches.items():
        assert figure["batch"] == int(batch) and 0 < figure["p50_ms"] <= figure["p99_ms"] and figure["runs"] >= 1
    assert "speedup" in (project.artifacts / "affine" / "report.md").read_text()

    # A run whose parity fails is not benchmarked: exit 1, and no figures in its record.
    project.config("frozen", "source:\n  factory: fixture_models:traced_offset\ninputs:\n  - {name: x, shape: [null, 4], dtype: float32}\n"
                             "outputs: [y]\ndata:\n  samples: 12\ntargets:\n  - savedmodel\n")
    failed = project.run("export", "--bench", "--model", "frozen")
    assert failed.code == 1
    assert "benchmark" not in project.report("frozen")["targets"]["savedmodel"]["variants"]["default"]


def _compare(capsys, *args) -> tuple[int, dict]:
    from pipeline.cli import main

    capsys.readouterr()
    code = main(["compare", *map(str, args), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_compare_samples_and_seed_choose_the_synthetic_data(hand_made, capsys):
    """int8 error depends on the inputs: the same seed repeats the numbers, another seed
    moves them, --samples sets the count."""
    ref, int8 = hand_made["savedmodel"], hand_made["int8"]
    code, seven = _compare(capsys, ref, int8, "--samples", "7", "--seed", "3")
    assert code == 0 and seven["samples"] == 7
    _, again = _compare(capsys, ref, int8, "--samples", "7", "--seed", "3")
    _, other = _compare(capsys, ref, int8, "--samples", "7", "--seed", "4")

    def max_abs(document: dict) -> float:
        [result] = document["results"]
        return result["parity"]["outputs"]["y"]["max_abs"]

    assert max_abs(seven) == max_abs(again)
    assert max_abs(seven) != max_abs(other)
    _, default = _compare(capsys, ref, int8)
    assert default["samples"] == 32


def test_compare_data_reads_the_inputs_from_an_npz_and_refuses_one_that_does_not_fit(hand_made, tmp_path, capsys):
    from pipeline.cli import main

    rng = np.random.default_rng(5)
    data = tmp_path / "inputs.npz"
    np.savez(data, x=rng.uniform(-1, 1, (9, 8)).astype(np.float32))
    code, document = _compare(capsys, hand_made["savedmodel"], hand_made["shifted"], "--data", data)
    # The seeded bias shift of 0.05 fails at the float32 budget, on the file's 9 samples.
    assert code == 1 and document["samples"] == 9
    [result] = document["results"]
    assert result["status"] == "failed" and result["parity"]["outputs"]["y"]["max_abs"] == pytest.approx(0.05, abs=1e-4)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((9, 5), np.float32))
    capsys.readouterr()
    assert main(["compare", str(hand_made["savedmodel"]), str(hand_made["float32"]), "--data", str(wrong)]) == 2
    err = capsys.readouterr().err
    assert "input 'x': array [9, 5] does not fit" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def live_classifier():
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(hidden), name="isolated")


def _recording_view(monkeypatch) -> list[dict]:
    """Every progress event of the run, beside the normal view."""
    from pipeline import progress

    events: list[dict] = []
    make_view = progress.make_view

    def recording(level=progress.NORMAL):
        view = make_view(level=level)

        class Recorder:
            def __call__(self, event):
                events.append(event)
                view(event)

            def close(self):
                view.close()

        return Recorder()

    monkeypatch.setattr(progress, "make_view", recording)
    return events


@pytest.mark.heavy
def test_isolate_runs_a_live_model_in_a_spawned_worker_from_a_saved_copy(live_classifier, tmp_path, monkeypatch):
    import tfship

    events = _recording_view(monkeypatch)
    out = tmp_path / "artifacts" / "isolated"
    result = tfship.export(live_classifier, targets=["savedmodel", "tflite"], out=out, isolate=True)
    assert result.passed and result.exit_code == 0, str(result)
    assert result["tflite"].variants["float32"].metrics["probs"]["max_abs"] < 1e-5
    stages = [e for e in events if e["kind"] == "stage"]
    workers = {e.get("worker") for e in stages}
    assert stages and None not in workers and os.getpid() not in workers  # every stage ran in another process
    # The worker loaded a copy saved beside the config, which repeats the run from the shell.
    config = tfship.load_config(out / ".source" / "model.yaml")
    assert config.source.path == out / ".source" / "model.keras" and config.source.path.is_file()
    assert tfship.validate(out) == 0

    # The same model in process (the default): no worker, the live model itself.
    events.clear()
    inline = tfship.export(live_classifier, targets=["savedmodel"], out=tmp_path / "inline" / "isolated")
    assert inline.passed
    assert [e for e in events if e["kind"] == "stage"] and not [e for e in events if "worker" in e]
    assert tfship.load_config(tmp_path / "inline" / "isolated" / ".source" / "model.yaml").source.factory.startswith("pipeline.live:")
