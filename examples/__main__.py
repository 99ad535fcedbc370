"""Build the trained example models.

    python -m examples build [--out DIR] [--force] [NAME ...]

NAME is any of ``image_cnn`` and ``multi_io`` (default: both). Files that
already exist are kept unless ``--force`` is given, so repeated pipeline runs
do not retrain.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "build"

# name -> artifact file name; the module of the same name provides build(path).
TRAINED_EXAMPLES = {
    "image_cnn": "image_cnn.keras",
    "multi_io": "multi_io.h5",
}


def build(out: Path, names: list[str], force: bool = False) -> dict[str, dict]:
    """Build each named example into ``out``; return metrics per built name."""
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in names:
        target = out / TRAINED_EXAMPLES[name]
        if target.exists() and not force:
            print(f"{name}: {target} exists, skipping (use --force to rebuild)")
            continue
        module = importlib.import_module(f"examples.{name}")
        start = time.perf_counter()
        metrics = module.build(target)
        seconds = time.perf_counter() - start
        size_kb = target.stat().st_size / 1024
        figures = ", ".join(f"{key}={value}" for key, value in sorted(metrics.items()))
        print(f"{name}: wrote {target} ({size_kb:.1f} KiB) in {seconds:.1f} s; {figures}")
        results[name] = metrics
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser("build", help="train and save the example models")
    build_cmd.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    build_cmd.add_argument("--force", action="store_true", help="rebuild files that already exist")
    build_cmd.add_argument("names", nargs="*", metavar="NAME", help=f"examples to build: {', '.join(TRAINED_EXAMPLES)}")
    args = parser.parse_args(argv)

    names = args.names or list(TRAINED_EXAMPLES)
    unknown = [name for name in names if name not in TRAINED_EXAMPLES]
    if unknown:
        parser.error(f"unknown example(s) {', '.join(unknown)}; choose from {', '.join(TRAINED_EXAMPLES)}")
    build(args.out, names, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
