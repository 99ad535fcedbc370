"""Train every corpus model before its export, or load it from the training cache
(examples/trained.py) when nothing it was trained from changed.

    python -m examples.corpus.train --config configs/corpus/resnet50.yaml [--config ...]

A factory model is trained by calling its factory (which trains into the cache or loads
from it). A model that arrives as a file (`source.path` + `build:`) is rebuilt when the
key of the code that writes it (its module, examples/trained.py, examples/real_data.py,
the modules its config names, the library versions) differs from the key recorded
beside the file, so a changed recipe never exports a stale file. `examples.corpus` runs
this for every model in one child process and keeps what each took in
<artifacts>/.corpus-training.json for the table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TRAINING = ".corpus-training.json"


def _file_key(config) -> str:
    from examples.trained import cache_key

    module = config.source.build.split(":")[0]
    return cache_key(config.name, (module, *config.source.modules), "")


def prepare(config_file: Path) -> dict:
    """Make sure the model is trained and its file (if any) current; returns what happened."""
    from pipeline.config import load_config
    from pipeline.stages.load import import_source_modules
    from pipeline.usercode import call_user, import_user_ref
    from targets import REGISTRY
    from examples.trained import figures_of

    config = load_config(config_file, REGISTRY)
    source = config.source
    import_source_modules(config)
    before = figures_of(config.name)
    if source.kind == "factory":
        factory = import_user_ref(config, ("source", "factory"), source.factory, "model factory")
        call_user(config, ("source", "factory"), f"model factory '{source.factory}'", factory)
        rebuilt = None
    elif source.build:
        path = Path(source.path)
        stamp = path.with_name(f".{path.name}.trained-key")
        key = _file_key(config)
        rebuilt = not (path.exists() and stamp.is_file() and stamp.read_text().strip() == key)
        if rebuilt:
            build = import_user_ref(config, ("source", "build"), source.build, "build recipe")
            if path.is_dir():
                import shutil

                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            call_user(config, ("source", "build"), f"build recipe '{source.build}'", build, str(path))
            stamp.write_text(key + "\n")
    else:
        rebuilt = None
    after = figures_of(config.name)
    trained_now = after is not None and (before is None or before.get("key") != after.get("key"))
    return {"figures": after, "trained_now": trained_now, "file_rebuilt": rebuilt}


def prepare_all(config_dir: Path, models: list[str], artifacts: Path) -> dict:
    """Every model in one child process, one after the other (TensorFlow is imported once;
    a model whose preparation fails is reported and the next one still runs)."""
    record_path = artifacts / TRAINING
    kept = json.loads(record_path.read_text()) if record_path.is_file() else {}
    command = [sys.executable, "-m", "examples.corpus.train"] + [a for m in models for a in ("--config", str(config_dir / f"{m}.yaml"))]
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout.splitlines():
        if not line.startswith("{"):
            continue
        result = json.loads(line)
        model = result.pop("model")
        kept[model] = result
        figures = result.get("figures") or {}
        state = "error: " + result["error"] if "error" in result else ("trained" if result["trained_now"] else "cached")
        print(f"{model}: {state} ({result['wall_seconds']:.0f} s" + (f"; training {figures['train_seconds']:.0f} s" if "train_seconds" in figures else "") + ")",
              file=sys.stderr, flush=True)
    if proc.returncode != 0:
        print(f"training: exit {proc.returncode}; the exports report what is missing", file=sys.stderr, flush=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    tmp = record_path.with_name(record_path.name + ".tmp")
    tmp.write_text(json.dumps(kept, indent=1, sort_keys=True))
    os.replace(tmp, record_path)
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.corpus.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, action="append", required=True, help="a corpus config (repeat)")
    args = parser.parse_args(argv)
    import tensorflow as tf

    from pipeline.errors import PipelineError

    tf.get_logger().setLevel("ERROR")
    for config in args.config:
        start = time.perf_counter()
        try:
            result = prepare(config)
        except PipelineError as exc:  # the export of this model reports it again, with its exit code
            print(f"{config}: {exc}", file=sys.stderr, flush=True)
            result = {"error": str(exc).splitlines()[0][:300]}
        result.update(model=config.stem, wall_seconds=round(time.perf_counter() - start, 1))
        print(json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
