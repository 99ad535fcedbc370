"""The quantization repair search on classifiers trained here (tests/fixture_classifiers.py,
on the datasets scikit-learn ships): for each, plain int8 and the search's outcome
(tries, seconds, recipe, bytes), printed as a Markdown table. A benchmark, not a test.

    python -m examples.repair_bench [--models residual_cnn wine_mlp ...] [--artifacts DIR]

Run it against another checkout (e.g. the code before a change to the search) by putting
that checkout first on PYTHONPATH: the configs and the classifiers come from this one.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"

MODELS = {
    "residual_cnn": ("image", "16, 16, 1", "digits_data"),
    "mobilenet_blocks": ("image", "16, 16, 1", "digits_data"),
    "row_transformer": ("rows", "8, 8", "digit_rows_data"),
    "wine_mlp": ("features", "13", "wine_data"),
    "cancer_mlp": ("features", "30", "cancer_data"),
}

CONFIG = """\
name: {name}
source:
  factory: fixture_classifiers:{name}
inputs:
  - {{name: {input}, shape: [null, {shape}], dtype: float32}}
outputs: [probs]
data:
  generator: fixture_classifiers:{generator}
  samples: 256
  seed: 1
  classifier: probs
targets:
  - name: tflite
    variants: [float32, int8]
    repair: [int8]
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--artifacts", type=Path, default=None, help="keep the reports here (default: a temporary folder)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(TESTS))
    from pipeline.cli import main as tfship

    root = Path(tempfile.mkdtemp(prefix="repair_bench_"))
    configs = root / "configs"
    configs.mkdir()
    artifacts = args.artifacts or root / "artifacts"
    rows = []
    for name in args.models:
        input_name, shape, generator = MODELS[name]
        (configs / f"{name}.yaml").write_text(CONFIG.format(name=name, input=input_name, shape=shape, generator=generator))
        t0 = time.perf_counter()
        tfship(["export", "--config-dir", str(configs), "--artifacts", str(artifacts), "--model", name])
        wall = time.perf_counter() - t0
        variants = json.loads((artifacts / name / "report.json").read_text())["targets"]["tflite"]["variants"]
        rows.append(_row(name, variants, wall))
    print("\n| model | plain int8 (bytes, top-1) | tries | search s | recipe | bytes (vs float32) | top-1 | export s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


def _row(name: str, variants: dict, wall: float) -> list[str]:
    plain = variants["int8"]
    cls = (plain.get("parity") or {}).get("classifier") or {}
    head = [name, f"{plain['status']}: {plain.get('info', {}).get('size_bytes', '-')}, {cls.get('top1_agreement', float('nan')):.3f}"]
    search = plain.get("repair")
    if not search:
        return head + ["-", "-", "no search (int8 passed)" if plain["status"] == "passed" else plain["status"], "-", "-", f"{wall:.0f}"]
    if not search.get("found"):
        return head + [str(search["conversions"]), f"{search['search_seconds']:.1f}", "none found", "-", "-", f"{wall:.0f}"]
    recipe = search["recipe"]
    what = "; ".join(
        part
        for part in (
            f"float {', '.join(recipe['float_layers'])}" if recipe["float_layers"] else "",
            f"float weights {', '.join(recipe['float_weights'])}" if recipe["float_weights"] else "",
            f"int16 {', '.join(recipe['int16_layers'])}" if recipe["int16_layers"] else "",
            "float inputs" if recipe["float_inputs"] else "",
            f"{recipe['calibration_samples']} calibration samples" if recipe["calibration_samples"] else "",
        )
        if part
    )
    return head + [
        str(search["conversions"]),
        f"{search['search_seconds']:.1f}",
        what or "plain",
        f"{search['size_bytes']} ({search['size_vs_float32']:.2f}x)",
        f"{search['parity'].get('top1_agreement', float('nan')):.3f}",
        f"{wall:.0f}",
    ]


if __name__ == "__main__":
    sys.exit(main())
