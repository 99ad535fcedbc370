"""The benchmark stage on a real exported model: structure and sane numbers, never speed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.bench import BenchOptions
from pipeline.timing import measure
from pipeline.reports.markdown import render_benchmark_markdown
from pipeline.cli import main
from pipeline.runtimes import Call, Runner
from pipeline.target import Artifact, Target

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

CONFIG = """\
source:
  factory: fixture_models:tiny_keras3_classifier
inputs:
  - {name: x, shape: [null, 8], dtype: float32}
outputs: [probs]
data:
  generator: fixture_models:tiny_data
  seed: 1
  samples: 64
  classifier: probs
targets:
  - savedmodel
  - onnx
  - name: tflite
    variants: [float32, int8]
  - edgetpu
  - numpy_dense
"""

BATCH = 4
QUICK = ["--batch", str(BATCH), "--max-seconds", "0.2"]


class NumpyDense:
    """The tiny classifier's two dense layers in numpy."""

    output_steps: dict[str, float] = {}

    def __init__(self, path: Path):
        with np.load(path) as weights:
            self.w0, self.b0, self.w1, self.b1 = (weights[f"arr_{i}"] for i in range(4))

    def forward(self, x: np.ndarray) -> np.ndarray:
        z = np.maximum(x @ self.w0 + self.b0, 0.0) @ self.w1 + self.b1
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"probs": self.forward(inputs["x"])}


class NumpyDenseRunner(Runner):
    """An in-house runtime: the weights run in numpy, the input prepared once."""

    runtime = "numpy"

    def __init__(self, path: Path, threads: int | None):
        super().__init__()
        self.model = NumpyDense(path)
        self.threads = {"runtime": "numpy", "requested": threads}

    def prepare(self, inputs, chunked=True):
        x = np.ascontiguousarray(inputs["x"], np.float32)
        return Call(lambda: self.model.forward(x), lambda probs: {"probs": probs}, "forward() on a prepared array")


class NumpyDenseTarget(Target):
    """An artifact kind only its own target knows (an .npz of weights), run through its
    own `pipeline.runtimes.Runner`. Registered in the CLI processes below through
    TFSHIP_TARGET_MODULES=test_bench."""

    name = "numpy_dense"
    description = "the tiny classifier's weights run in numpy"

    def build(self, job):
        np.savez(job.out_dir / "weights.npz", *job.loaded.obj.get_weights())
        return [Artifact(variant="", files=("weights.npz",))]

    def open(self, target_dir: Path, artifact: Artifact, threads: int | None = None) -> NumpyDenseRunner:
        return NumpyDenseRunner(Path(target_dir) / artifact.files[0], threads)


TARGET = NumpyDenseTarget()


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]), TF_CPP_MIN_LOG_LEVEL="2", TFSHIP_TARGET_MODULES="test_bench")
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export of a tiny trained classifier to four targets, then one `tfship bench`
    in a fresh process (so TensorFlow's thread pools can still be sized)."""
    root = tmp_path_factory.mktemp("bench")
    config_dir = root / "configs"
    config_dir.mkdir()
    (config_dir / "tiny.yaml").write_text(CONFIG)
    artifacts = root / "artifacts"
    export = _cli(["export", "--config-dir", str(config_dir), "--artifacts", str(artifacts)], root)
    assert export.returncode == 0, export.stderr[-3000:]
    before = json.loads((artifacts / "tiny" / "report.json").read_text())
    bench = _cli(["bench", "--config-dir", str(config_dir), "--artifacts", str(artifacts), "--threads", "1", *QUICK], root)
    assert bench.returncode == 0, bench.stderr[-3000:]
    return {"root": root, "config_dir": config_dir, "artifacts": artifacts, "before": before, "stdout": bench.stdout}


@pytest.fixture
def registered(monkeypatch):
    """numpy_dense registered in this process for one test, then removed again."""
    from targets import REGISTRY

    monkeypatch.setitem(REGISTRY._targets, TARGET.name, TARGET)  # noqa: SLF001 - the registry has no public removal


def _report(exported) -> dict:
    return json.loads((exported["artifacts"] / "tiny" / "report.json").read_text())


def _records(report: dict) -> dict[str, dict]:
    from pipeline.reports.records import iter_records

    return {record.label: record.entry for record in iter_records(report)}


def _check_figure(figure: dict, batch: int, eager_p50: float) -> None:
    assert figure["batch"] == batch
    assert 0 < figure["min_ms"] <= figure["p50_ms"] <= figure["p90_ms"] <= figure["p99_ms"]
    assert figure["runs"] >= 20 and figure["warmup_runs"] >= 1
    assert figure["throughput_sps"] == pytest.approx(batch / (figure["p50_ms"] / 1e3), rel=1e-3)
    assert figure["speedup_vs_eager"] == pytest.approx(eager_p50 / figure["p50_ms"], rel=1e-3)
    assert isinstance(figure["stable"], bool)


def test_measure_reports_ordered_percentiles_of_a_real_call():
    a = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    figure = measure(lambda: a @ a, BenchOptions(max_seconds=0.2, min_seconds=0.05), batch=64)
    assert 0 < figure["min_ms"] <= figure["p50_ms"] <= figure["p90_ms"] <= figure["p99_ms"]
    assert figure["runs"] >= 20
    assert figure["throughput_sps"] == pytest.approx(64 / (figure["p50_ms"] / 1e3), rel=1e-3)
    assert figure["seconds"] <= 0.2 + figure["p99_ms"] / 1e3 * 2  # stops at its time limit


@pytest.mark.heavy
def test_bench_times_every_artifact_and_both_baselines(exported):
    report = _report(exported)
    assert report["benchmark"]["settings"]["batches"] == [1, BATCH]
    assert report["benchmark"]["settings"]["threads"] == 1
    assert report["benchmark"]["config_sha256"] == report["config_sha256"]
    eager = report["baselines"]["eager"]["batches"]
    for kind in ("eager", "graph"):
        for batch in (1, BATCH):
            _check_figure(report["baselines"][kind]["batches"][str(batch)], batch, eager[str(batch)]["p50_ms"])
    assert report["baselines"]["eager"]["batches"]["1"]["speedup_vs_eager"] == 1.0
    records = _records(report)
    assert set(records) == {"savedmodel", "onnx", "tflite/float32", "tflite/int8", "edgetpu", "numpy_dense"}
    for label, record in records.items():
        bench = record["benchmark"]
        batches = [1] if label == "edgetpu" else [1, BATCH]
        assert sorted(int(b) for b in bench["batches"]) == batches, label
        for batch in batches:
            _check_figure(bench["batches"][str(batch)], batch, eager[str(batch)]["p50_ms"])
        assert bench["driver"] == "runtime", label


def test_a_target_with_its_own_runtime_is_timed_through_its_runner(exported):
    bench = _report(exported)["targets"]["numpy_dense"]["variants"]["default"]["benchmark"]
    assert bench["call"] == "numpy forward() on a prepared array"
    assert bench["threads"] == {"runtime": "numpy", "requested": 1}
    assert bench["bare_loop"]["bare_loop_ms"] > 0


def test_static_batch_model_skips_the_larger_batch_and_says_why(exported):
    bench = _report(exported)["targets"]["edgetpu"]["variants"]["default"]["benchmark"]
    assert "static batch 1" in bench["skipped"][str(BATCH)]
    markdown = (exported["artifacts"] / "tiny" / "report.md").read_text()
    assert f"edgetpu: batch {BATCH} skipped: static batch 1" in markdown


def test_every_runtime_gets_the_requested_thread_count(exported):
    report = _report(exported)
    tf_threads = report["benchmark"]["tensorflow_threads"]
    assert tf_threads["intra_op_parallelism_threads"] == 1 and tf_threads["inter_op_parallelism_threads"] == 1
    assert "note" not in tf_threads  # a fresh process: the pools were sized before TensorFlow ran
    records = _records(report)
    assert records["tflite/int8"]["benchmark"]["threads"] == {"runtime": "LiteRT", "num_threads": 1}
    assert records["onnx"]["benchmark"]["threads"]["intra_op_num_threads"] == 1
    assert records["savedmodel"]["benchmark"]["threads"]["intra_op_parallelism_threads"] == 1


def test_bare_loop_sits_next_to_the_batch1_figure(exported):
    for label, record in _records(_report(exported)).items():
        bare = record["benchmark"]["bare_loop"]
        assert bare["batch"] == 1 and bare["bare_loop_ms"] > 0 and bare["harness_mean_ms"] > 0, label
        assert bare["bench_p50_ms"] == record["benchmark"]["batches"]["1"]["p50_ms"]
        assert bare["bench_p50_vs_bare"] == pytest.approx(bare["bench_p50_ms"] / bare["bare_loop_ms"] - 1, abs=2e-3)
        assert bare["within_budget"] == (abs(bare["overhead"]) <= bare["budget"])
        assert bare["rounds"] >= 5


def test_bench_does_not_touch_the_exported_artifacts(exported):
    before, after = exported["before"], _report(exported)
    for name, entry in before["targets"].items():
        assert after["targets"][name]["files"] == entry["files"]
        assert after["targets"][name]["finished"] == entry["finished"]
    assert after["run"] == before["run"]
    assert after["status"] == before["status"] == "passed"
    assert not (exported["artifacts"] / "tiny" / "tflite" / "bench").exists()


def test_report_markdown_gets_one_speedup_table(exported):
    markdown = (exported["artifacts"] / "tiny" / "report.md").read_text()
    assert markdown.startswith("# tfship report: tiny")
    assert markdown.count("## Benchmark") == 1
    table = [line for line in markdown.splitlines() if line.startswith("| ") and "x |" in line]
    labels = {line.split("|")[1].strip() for line in table}
    assert {"eager (baseline)", "graph (baseline)", "savedmodel", "onnx", "tflite/float32", "tflite/int8", "edgetpu"} <= labels
    assert "Harness overhead at batch 1" in markdown
    assert render_benchmark_markdown(_report(exported)) in markdown


def test_second_run_for_one_target_keeps_the_others_and_one_section(exported, registered, capsys):
    earlier = _records(_report(exported))
    code = main(["bench", "--config-dir", str(exported["config_dir"]), "--artifacts", str(exported["artifacts"]), "--target", "onnx", *QUICK])
    assert code == 0, capsys.readouterr().err
    report = _report(exported)
    records = _records(report)
    assert records["onnx"]["benchmark"]["measured"] >= earlier["onnx"]["benchmark"]["measured"]
    assert records["tflite/int8"]["benchmark"] == earlier["tflite/int8"]["benchmark"]
    markdown = (exported["artifacts"] / "tiny" / "report.md").read_text()
    assert markdown.count("## Benchmark") == 1


def test_bench_refuses_changed_artifact_files(exported, registered, tmp_path, capsys):
    import shutil

    artifacts = tmp_path / "artifacts"
    shutil.copytree(exported["artifacts"], artifacts)
    (artifacts / "tiny" / "tflite" / "int8.tflite").write_bytes(b"not a model")
    code = main(["bench", "--config-dir", str(exported["config_dir"]), "--artifacts", str(artifacts), "--target", "tflite", *QUICK])
    err = capsys.readouterr().err
    assert code == 1
    assert "tflite/int8.tflite (sha256" in err and "tfship export --model tiny" in err


def test_bench_before_export_says_what_to_run(registered, tmp_path, capsys):
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    (config_dir / "tiny.yaml").write_text(CONFIG)
    code = main(["bench", "--model", "tiny", "--config-dir", str(config_dir), "--artifacts", str(tmp_path / "artifacts")])
    err = capsys.readouterr().err
    assert code == 1
    assert "no report at" in err and "run `tfship export --model tiny` first" in err


def test_bench_refuses_a_config_changed_since_export(exported, registered, tmp_path, capsys):
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    (config_dir / "tiny.yaml").write_text(CONFIG.replace("samples: 64", "samples: 96"))
    code = main(["bench", "--config-dir", str(config_dir), "--artifacts", str(exported["artifacts"]), *QUICK])
    err = capsys.readouterr().err
    assert code == 1
    assert "changed since the artifacts" in err


@pytest.mark.parametrize("args, message", [(["--batch", "0"], "--batch: expected a batch size of at least 1"), (["--threads", "0"], "--threads: expected at least 1 thread"), (["--target", "tflit"], "unknown target 'tflit'")])
def test_bad_options_are_refused_before_anything_runs(tmp_path, capsys, args, message):
    code = main(["bench", "--config-dir", str(tmp_path), "--artifacts", str(tmp_path), *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_thread_count_is_recorded_as_in_effect_once_tensorflow_ran():
    import tensorflow as tf

    from pipeline.runtimes.savedmodel import configure_tensorflow_threads

    _ = (tf.constant(1.0) + 1.0).numpy()  # TensorFlow has now sized its pools
    current = tf.config.threading.get_intra_op_parallelism_threads()
    record = configure_tensorflow_threads(current + 3)
    assert "already run" in record["note"]
    assert record["intra_op_parallelism_threads"] != current + 3
