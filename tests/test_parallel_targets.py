"""Targets of one model in parallel workers (`-j N`): the shared stages run once and go
to disk, each target runs in a worker of its own, and memory admission control
refuses a job that cannot fit rather than letting the kernel kill it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import AFFINE_HEAD

from pipeline import progress
from pipeline.execute import admission

REPO = Path(__file__).resolve().parent.parent
TWO_TARGETS = AFFINE_HEAD + "  - savedmodel\n  - {name: tflite, variants: [float32]}\n"


def _export(project, jobs: int):
    from pipeline.config import load_config
    from pipeline.execute.export import export
    from targets import REGISTRY

    config = load_config(project.config("affine", TWO_TARGETS), REGISTRY)
    events: list[dict] = []
    previous = progress.set_sink(events.append)
    try:
        code = export([config], None, project.artifacts, jobs=jobs)
    finally:
        progress.set_sink(previous)
    return code, events


def test_two_targets_run_in_their_own_workers_from_one_reference(project):
    code, events = _export(project, jobs=2)
    assert code == 0
    stages = [e for e in events if e["kind"] == "stage"]
    shared = {e["worker"] for e in stages if e["target"] == "" and e["stage"] == "reference"}
    savedmodel = {e["worker"] for e in stages if e["target"] == "savedmodel"}
    tflite = {e["worker"] for e in stages if e["target"] == "tflite"}
    assert len(shared) == len(savedmodel) == len(tflite) == 1
    assert len(shared | savedmodel | tflite) == 3  # three processes: shared stages, then one per target
    assert len([e for e in stages if e["stage"] == "reference"]) == 1  # the reference ran once, for both
    report = project.report("affine")
    assert {name: t["status"] for name, t in report["targets"].items()} == {"savedmodel": "passed", "tflite": "passed"}
    assert "reference" in report["run"]["timings"] and "shared_write" in report["run"]["timings"]
    model_dir = project.artifacts / "affine"
    assert (model_dir / "savedmodel" / "1" / "saved_model.pb").exists()
    assert sorted(p.name for p in (model_dir / "tflite").iterdir() if not p.name.startswith(".")) == ["float32.tflite"]
    assert [f["path"] for f in report["targets"]["tflite"]["files"]] == ["tflite/float32.tflite"]
    assert (model_dir / ".stages" / "savedmodel" / "saved_model.pb").exists()  # published once both were done
    assert not [p.name for p in (model_dir / ".stages").iterdir() if p.name.startswith(".staging-")]  # data and reference removed


def test_a_job_that_cannot_fit_even_alone_is_an_error_naming_the_memory(project, monkeypatch):
    monkeypatch.setenv(admission.ENV_AVAILABLE, "64M")
    for jobs in (2, 1):
        code, events = _export(project, jobs=jobs)
        assert code == 1
        report = project.report("affine")
        for name in ("savedmodel", "tflite"):
            entry = report["targets"][name]
            assert entry["status"] == "error" and entry["error"] == "InsufficientMemory"
            assert "needs about" in entry["message"] and "0.1 GiB of memory is available" in entry["message"]
        assert not [e for e in events if e["kind"] == "stage"]  # no worker was started
        assert not (project.artifacts / "affine" / "savedmodel").exists()


def test_a_job_waits_while_others_run_and_is_refused_only_when_alone(monkeypatch):
    monkeypatch.setenv(admission.ENV_AVAILABLE, "4G")
    me = os.getpid()
    assert admission.decide(3 << 30, []).start
    # A running job expected to reach 3 GiB more than it holds: the next one waits.
    waiting = admission.decide(2 << 30, [(admission.resident_bytes(me) + (3 << 30), me)])
    assert not waiting.start and waiting.refuse is None
    alone = admission.decide(5 << 30, [])
    assert not alone.start and "needs about 5.0 GiB" in alone.refuse and "4.0 GiB of memory is available" in alone.refuse
    assert admission.estimate(["tflite"], 100 << 20, 0, False) > admission.estimate(["savedmodel"], 100 << 20, 0, False)


def test_tflite_float_variants_of_a_large_model_are_estimated_at_the_stand_in_cost(tmp_path):
    """From 256 MB of weights the float variants convert with stand-ins (2.6 GB at 553 MB
    where the converter alone takes 4.55 GB): the estimate follows; int8 still needs 8x."""
    from pipeline.config import load_config
    from targets import REGISTRY

    def factors(variants: str, weights: int) -> dict:
        path = tmp_path / "big.yaml"
        path.write_text(AFFINE_HEAD + f"  - {{name: tflite, variants: [{variants}]}}\n  - savedmodel\n")
        return admission.target_factors(load_config(path, REGISTRY), weights)

    big, small = 553 << 20, 100 << 20
    assert factors("float32, float16, dynamic_range", big) == {"tflite": 2.5}
    assert factors("float32, int8", big) == {} and factors("float32", small) == {}
    lifted = admission.estimate(["tflite"], big, 0, True, factors_by_target={"tflite": 2.5})
    assert lifted == admission.estimate(["savedmodel"], big, 0, True) < admission.estimate(["tflite"], big, 0, True)


def test_a_target_worker_that_aborts_is_that_targets_error_in_parallel_mode(project):
    project.config("affine", AFFINE_HEAD + "  - aborting\n  - savedmodel\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]), TFSHIP_TARGET_MODULES="fixture_targets_abort")
    command = [sys.executable, "-m", "pipeline", "export", "-j", "2", "--config-dir", str(project.config_dir), "--artifacts", str(project.artifacts)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(REPO), timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    report = project.report("affine")
    assert report["targets"]["aborting"]["status"] == "error"
    assert report["targets"]["aborting"]["signal"] == "signal SIGABRT"
    assert report["targets"]["savedmodel"]["status"] == "passed"


@pytest.mark.heavy
@pytest.mark.parametrize("event,delay", [("shared stages", 3.0), ("from the shared stages", 2.0), ("] savedmodel:", 0.0)])
def test_kill_during_a_parallel_export_leaves_a_consistent_state(tmp_path, event, delay):
    """kill -9 of the whole run while the shared stages run, while target workers load, and
    right after a verdict: the next `-j 2` export restores a consistent state."""
    import signal
    import threading
    import time

    from test_faults import _consistency

    root = tmp_path
    (root / "configs" / "models").mkdir(parents=True)
    (root / "configs" / "models" / "m.yaml").write_text(AFFINE_HEAD + "  - savedmodel\n  - {name: tflite, variants: [float32, float16]}\n  - xla\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]), TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "pipeline", "export", "-j", "2", "-v", "--config-dir", str(root / "configs" / "models"), "--artifacts", str(root / "artifacts")]
    proc = subprocess.Popen(command + ["--force"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO), start_new_session=True)
    seen = threading.Event()

    def reader() -> None:
        for line in proc.stderr:
            if event in line:
                seen.set()

    threading.Thread(target=reader, daemon=True).start()
    assert seen.wait(timeout=240), f"never saw {event!r}"
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    recover = subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(REPO), timeout=600)
    assert recover.returncode == 0, recover.stderr[-3000:]
    assert _consistency(root / "artifacts" / "m") == []
    validate = subprocess.run([sys.executable, "-m", "pipeline", "validate", "--config-dir", str(root / "configs" / "models"), "--artifacts", str(root / "artifacts")],
                              capture_output=True, text=True, env=env, cwd=str(REPO), timeout=600)
    assert validate.returncode == 0, validate.stderr[-3000:]


def test_as_many_models_as_workers_keep_one_worker_per_model(project):
    """Two models at -j 2: each worker serves one model (no second load of either)."""
    from pipeline.config import load_config
    from pipeline.execute.export import export
    from targets import REGISTRY

    configs = [load_config(project.config(name, TWO_TARGETS.replace("{name: tflite, variants: [float32]}", "onnx")), REGISTRY) for name in ("one", "two")]
    events: list[dict] = []
    previous = progress.set_sink(events.append)
    try:
        assert export(configs, None, project.artifacts, jobs=2) == 0
    finally:
        progress.set_sink(previous)
    for model in ("one", "two"):
        workers = {e["worker"] for e in events if e["kind"] == "stage" and e["model"] == model}
        assert len(workers) == 1
        assert "shared_write" not in project.report(model)["run"]["timings"]
