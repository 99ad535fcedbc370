"""The reference checks itself before any artifact is judged: two identical eager
calls, and one with the batch reordered, must agree within the float32 budget."""
from __future__ import annotations

import pytest

from test_run import factory_config

TINY_INPUTS = "  - {name: x, shape: [null, 8], dtype: float32}"


@pytest.mark.parametrize("factory", ["fixture_models:numpy_noise", "fixture_models:frozen_random"])
def test_python_randomness_stops_with_exit_2_naming_the_output(project, factory):
    project.config("noisy", factory_config(factory))
    result = project.run("export")
    assert result.code == 2
    message = result.err
    assert "noisy.yaml:2: source.factory: the eager model is not deterministic: output 'y' differs between two identical calls by max_abs " in message
    assert "np.random" in message and "training mode" in message
    assert "Traceback" not in result.err
    # Bad input: nothing was exported or recorded for a reference that moves.
    assert not project.artifacts.exists()


def test_a_batch_order_dependent_model_is_refused(project):
    project.config("mixing", factory_config("fixture_models:batch_mixing"))
    result = project.run("export")
    assert result.code == 2
    message = result.err
    assert "output 'y' differs when the samples of the batch are reordered" in message
    assert "BatchNormalization" in message


def test_batchnorm_and_dropout_in_inference_mode_pass_the_check(project):
    extra = "data:\n  generator: fixture_models:tiny_data\n  samples: 64\n  seed: 1\n"
    project.config("bn", factory_config("fixture_models:batchnorm_inference", inputs=TINY_INPUTS, outputs="[probs]", extra=extra))
    result = project.run("export")
    assert result.code == 0, result.err
    run = project.report("bn")["run"]
    check = run["model"]["reference_check"]
    assert check["checked"] and check["repeated"] and check["reordered"]
    assert check["case"] == "batch3"
    assert run["timings"]["reference_check"]["seconds"] < 5
