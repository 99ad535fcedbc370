"""What a no-op re-run costs, per kind of model source: `make bench-noop` (a benchmark, not a test).

A re-run with nothing changed must still prove that nothing changed. A self-contained
model file (`.keras`, a SavedModel folder) is decided by its bytes and the user modules
its load ran, without TensorFlow; a factory's model (here: one that loads the same
`.keras` checkpoint) and a live model (the Python API, in the calling process) are
built, traced and fingerprinted first. For each kind this exports the sample image CNN
(`examples/build/image_cnn.keras`, 32x32x3, synthetic data, target savedmodel) once,
then times `--repeat` no-op runs (the CLI in a fresh process: wall time of the whole
command; the live model: the second `tfship.export` call in one process) and prints the
median and the range.

    python -m examples.bench_noop [--repeat 3] [--tree PATH]

`--tree` runs another checkout's tfship (e.g. an older commit, for a before/after table)
with this interpreter.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "examples" / "build" / "image_cnn.keras"

HEAD = """\
inputs:
  - {name: image, shape: [null, 32, 32, 3], dtype: float32}
outputs: [probs]
data:
  samples: 32
targets:
  - savedmodel
"""

FACTORY = f"""\
import keras


def build():
    return keras.saving.load_model({str(MODEL)!r}, compile=False)
"""

LIVE = f"""\
import sys, time
import keras
import numpy as np
import tfship

model = keras.saving.load_model({str(MODEL)!r}, compile=False)
x = np.random.default_rng(0).uniform(0, 1, (32, 32, 32, 3)).astype("float32")
times = []
for _ in range(int(sys.argv[2]) + 1):
    start = time.perf_counter()
    result = tfship.export(model, data={{"image": x}}, out=sys.argv[1], progress=0)
    times.append(time.perf_counter() - start)
    assert result.passed, result.summary()
print(" ".join(f"{{t:.3f}}" for t in times[1:]))
"""


def _env(tree: Path, project: Path) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as users run it: compiled modules are cached
    env["PYTHONPATH"] = os.pathsep.join([str(tree), str(project)])
    return env


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cli(tree: Path, project: Path, config: Path, artifacts: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one `tfship export` in a fresh process (its workers included)."""
    start, cpu = time.perf_counter(), _cpu()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "export", "-c", str(config), "--artifacts", str(artifacts), "-q"],
        cwd=project, env=_env(tree, project), capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"export of {config} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed, _cpu() - cpu


def _row(kind: str, runs: list[tuple[float, float | None]]) -> str:
    walls = [w for w, _ in runs]
    cpus = [c for _, c in runs if c is not None]
    cpu = f"{statistics.median(cpus):.2f} s" if cpus else "-"
    return f"| {kind} | {statistics.median(walls):.2f} s | {min(walls):.2f}-{max(walls):.2f} s | {cpu} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tree", type=Path, default=REPO, help="the checkout whose tfship is measured")
    args = parser.parse_args(argv)
    if not MODEL.is_file():
        subprocess.run([sys.executable, "-c", "from examples.image_cnn import build; build(__import__('pathlib').Path(%r))" % str(MODEL)], cwd=REPO, check=True)
    tree = args.tree.resolve()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tfship-bench-noop-") as scratch:
        project = Path(scratch)
        artifacts = project / "artifacts"
        (project / "noop_factory.py").write_text(FACTORY)
        configs = {
            ".keras file": ("keras_file", f"source:\n  path: {MODEL}\n"),
            "factory (loads a .keras)": ("factory", "source:\n  factory: noop_factory:build\n"),
        }
        for kind, (name, source) in configs.items():
            config = project / f"{name}.yaml"
            config.write_text(source + HEAD)
            _cli(tree, project, config, artifacts)
            rows.append(_row(kind, [_cli(tree, project, config, artifacts) for _ in range(args.repeat)]))
            if name == "keras_file":  # its published SavedModel is the next source
                shutil.copytree(artifacts / name / "savedmodel" / "1", project / "saved_model")
        config = project / "saved_model.yaml"
        config.write_text(f"source:\n  path: {project / 'saved_model'}\n" + HEAD.replace("outputs: [probs]", "outputs: [probs]"))
        _cli(tree, project, config, artifacts)
        rows.insert(1, _row("SavedModel folder", [_cli(tree, project, config, artifacts) for _ in range(args.repeat)]))
        live = project / "live.py"
        live.write_text(textwrap.dedent(LIVE))
        done = subprocess.run([sys.executable, str(live), str(artifacts / "live"), str(args.repeat)], cwd=project, env=_env(tree, project), capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"live export failed:\n{done.stderr[-2000:]}")
        rows.append(_row("live model (Python API, in process)", [(float(t), None) for t in done.stdout.split()]))
    load = os.getloadavg()[0]
    print(f"no-op re-run of the sample image CNN, tfship at {tree} ({args.repeat} runs each; load average {load:.1f})\n")
    print("| source | median wall | range | median CPU (user+sys) |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
