"""What each corpus model is for, measured on its held-out set: the float reference's task
figure and every exported artifact's, run in tfship's own runtimes (pipeline/runtimes/
through each target's `open`), so a verdict can be read next to what it costs the task.

`python -m examples.corpus.tasks --artifacts DIR --model NAME` measures one model and
writes DIR/.task-metrics/NAME.json; `examples.corpus` runs it once per model after the
export (one process per model: a runtime that aborts ends only that process, and the
artifacts already measured are kept).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METRICS_DIR = ".task-metrics"
CHUNK = 16  # a batch every corpus artifact takes (a parity batch size of every config)


@dataclass(frozen=True)
class Task:
    heldout: str  # "module:function" -> (inputs {name: array}, truth)
    output: str  # the output the task reads
    kind: str  # accuracy (argmax of the last axis) | tagging (per real character) | regression (R^2, MAE)
    data: str  # what the model was trained on, for the table


_DIGITS = "scikit-learn digits"
TASKS: dict[str, Task] = {
    **{name: Task(f"examples.corpus.applications:{name}_heldout", "probs", "accuracy", f"{_DIGITS}, {size}x{size}x3")
       for name, size in (("mobilenet_v2", 64), ("efficientnet_b0", 32), ("resnet50", 32), ("densenet121", 32),
                          ("convnext_tiny", 32), ("xception", 71))},
    "prelu": Task("examples.corpus.layers:prelu_heldout", "probs", "accuracy", f"{_DIGITS}, 32x32x3"),
    "control_flow": Task("examples.corpus.layers:control_flow_heldout", "value", "regression", "scikit-learn diabetes (scaled)"),
    "asserts": Task("examples.corpus.layers:asserts_heldout", "value", "regression", "scikit-learn diabetes (raw)"),
    "lstm": Task("examples.corpus.recurrent:lstm_heldout", "probs", "accuracy", f"{_DIGITS}, rows as steps"),
    "gru": Task("examples.corpus.recurrent:gru_heldout", "value", "regression", f"{_DIGITS}: ink of the unseen last rows"),
    "normalized": Task("examples.corpus.tabular:normalized_heldout", "probs", "accuracy", "scikit-learn breast cancer (raw)"),
    "embedding_dict": Task("examples.corpus.tabular:embedding_dict_heldout", "category", "accuracy", "scikit-learn breast cancer, binned"),
    "text_classifier": Task("examples.corpus.text:eval_heldout", "probs", "accuracy", "Python stdlib lines: code or prose"),
    "char_cnn": Task("examples.corpus.text:char_cnn_heldout", "probs", "accuracy", "Python stdlib lines: code or prose"),
    "transformer_encoder": Task("examples.corpus.transformer:eval_heldout", "probs", "accuracy", "Python stdlib lines: code or prose"),
    "audio_logmel": Task("examples.corpus.audio:eval_heldout", "probs", "accuracy", "generated tones (documented process)"),
    "custom_layer": Task("examples.corpus.saved_files:signals_heldout", "probs", "accuracy", f"{_DIGITS}, 8x8 signals"),
    "tf_keras_conv1d": Task("examples.corpus.saved_files:signals_heldout", "probs", "accuracy", f"{_DIGITS}, 8x8 signals"),
    "plain_tf_serving": Task("examples.corpus.saved_files:signals_heldout", "probs", "accuracy", f"{_DIGITS}, 8x8 signals (least squares)"),
    "tagger": Task("examples.corpus.sequences:tagger_heldout", "tags", "tagging", "Python stdlib code: token class per character"),
    "multi_input": Task("examples.corpus.sequences:multi_input_heldout", "probs", "accuracy", f"{_DIGITS}, 16x16x1 + profile"),
    "weights_only": Task("examples.corpus.sequences:weights_only_heldout", "probs", "accuracy", f"{_DIGITS}, 16x16x1"),
}


def figures(kind: str, predicted: np.ndarray, truth: np.ndarray) -> dict:
    """The task figure of one set of predictions: accuracy, or R^2 and mean absolute error."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if kind == "accuracy":
        return {"accuracy": float(np.mean(np.argmax(predicted, axis=-1) == truth))}
    if kind == "tagging":
        real = truth >= 0
        return {"accuracy": float(np.mean(np.argmax(predicted, axis=-1)[real] == truth[real]))}
    if kind == "regression":
        predicted, truth = predicted.astype(np.float64).reshape(truth.shape), truth.astype(np.float64)
        residual = np.sum(np.square(predicted - truth), axis=0)
        total = np.sum(np.square(truth - truth.mean(axis=0)), axis=0)
        return {"r2": float(np.mean(1 - residual / total)), "mae": float(np.mean(np.abs(predicted - truth)))}
    raise ValueError(f"unknown task kind {kind!r}; known: accuracy, tagging, regression")


def headline(kind: str, values: dict) -> tuple[str, float]:
    """(name, value) of the figure the table shows: accuracy, or R^2."""
    return ("r2", values["r2"]) if kind == "regression" else ("accuracy", values["accuracy"])


def _predict(call, inputs: dict, output: str, size: int = CHUNK) -> np.ndarray:
    """Batches of `size` (the last one padded by repeating its last sample, the padding's
    outputs dropped): artifacts compiled for fixed batch sizes run them all."""
    n = len(next(iter(inputs.values())))
    found = []
    for start in range(0, n, size):
        idx = np.minimum(np.arange(start, start + size), n - 1)
        found.append(np.asarray(call({k: np.asarray(v)[idx] for k, v in inputs.items()})[output])[: min(size, n - start)])
    return np.concatenate(found)


def _report_time(artifacts: Path, model: str) -> str:
    report = artifacts / model / "report.json"
    return (json.loads(report.read_text()).get("run") or {}).get("finished", "") if report.is_file() else ""


def measure(config_file: Path, artifacts: Path) -> dict:
    """Held-out figures of the eager model and of every published artifact of one model,
    written to artifacts/.task-metrics/<model>.json after each artifact (a restart keeps them)."""
    from pipeline.config import load_config
    from pipeline.reports.model import read_report
    from pipeline.reports.records import iter_records
    from pipeline.stages.load import load_model
    from pipeline.target import Artifact
    from pipeline.tolerance import Tolerance
    from pipeline.usercode import import_user_ref
    from targets import REGISTRY

    config = load_config(config_file, REGISTRY)
    task = TASKS[config.name]
    out = artifacts / METRICS_DIR / f"{config.name}.json"
    finished = _report_time(artifacts, config.name)
    done = json.loads(out.read_text()) if out.is_file() else {}
    if done.get("report_finished") != finished:
        done = {}
    inputs, truth = import_user_ref(config, ("data", "generator"), task.heldout, "held-out data")()
    done.update(report_finished=finished, kind=task.kind, output=task.output, samples=int(len(truth)), data=task.data)
    if "reference" not in done:
        loaded = load_model(config)
        done["reference"] = figures(task.kind, _predict(loaded.call, inputs, task.output), truth)
        _write(out, done)
    report = read_report(artifacts / config.name)
    artifacts_done = done.setdefault("artifacts", {})
    for record in iter_records(report or {}):
        if not record.has_artifact or record.entry.get("status") not in ("passed", "failed") or record.label in artifacts_done:
            continue
        art = record.entry["artifact"]
        artifact = Artifact(variant=art["variant"], files=tuple(art["files"]), tolerance=Tolerance(**art["tolerance"]), info=record.entry.get("info", {}))
        artifacts_done[record.label] = {"status": "running"}  # left so when the runtime aborts the process
        _write(out, done)
        try:
            runner = REGISTRY.get(record.target).open(artifacts / config.name / record.target, artifact)
            artifacts_done[record.label] = figures(task.kind, _predict(runner, inputs, task.output), truth)
        except Exception as exc:  # the runtime's own refusal: recorded, the next artifact still runs
            artifacts_done[record.label] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
        _write(out, done)
    for label, value in artifacts_done.items():
        if value.get("status") == "running":
            artifacts_done[label] = {"error": "the runtime aborted the process on the held-out set"}
    _write(out, done)
    return done


def _write(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
    os.replace(tmp, path)


def load(artifacts: Path, model: str) -> dict | None:
    """The stored figures of a model, when they belong to its current report."""
    path = artifacts / METRICS_DIR / f"{model}.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text())
    return value if value.get("report_finished") == _report_time(artifacts, model) else None


def measure_all(config_dir: Path, artifacts: Path, models: list[str]) -> None:
    """One child process per model (twice when a runtime aborted it part-way)."""
    import subprocess

    for model in models:
        if model not in TASKS or not (artifacts / model / "report.json").is_file():
            continue
        for _ in range(2):
            code = subprocess.call([sys.executable, "-m", "examples.corpus.tasks", "--artifacts", str(artifacts),
                                    "--config", str(config_dir / f"{model}.yaml")])
            if code == 0:
                break
            print(f"task metrics of {model}: exit {code}; measuring the artifacts not yet done", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.corpus.tasks", description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    done = measure(args.config, args.artifacts)
    name, value = headline(done["kind"], done["reference"])
    print(f"{args.config.stem}: reference {name} {value:.4f}; {len(done.get('artifacts', {}))} artifacts measured", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
