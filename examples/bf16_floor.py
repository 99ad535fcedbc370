"""Can a bf16 budget relative to the model's own rounding catch a 1% weight error?
(`python -m examples.bf16_floor`; a measurement, not a test.)

The candidate floor: the reference function with every float32 variable rounded to
bfloat16, activations left in float32 (computed here by assigning the rounded values to
the traced function's variables, independently of the bf16 emulation the tpu target
writes). For each bf16 file the gap is floor SQNR - file SQNR, both against the float32
reference on the parity cases. A gap threshold could serve as a default only if accepted
files stay below it and files of a model with 1%-perturbed weights go above it.

- Calibration set (examples/calibrate_budgets.py, its cached runs): the accepted bf16
  emulation and the one of the model with weights multiplied by (1 + 0.01 N(0, 1)).
- Corpus (configs/corpus, after `make corpus`): every model whose report has a tpu/bf16
  figure; their files are the accepted ones (some fail the absolute budget: random
  weights), so the gap shows how far a real bf16 file sits from this floor.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def sqnr_db(pairs) -> float:
    signal = noise = 0.0
    for ref, out in pairs:
        ref, out = np.asarray(ref, np.float64), np.asarray(out, np.float64)
        signal += float((ref**2).sum())
        noise += float(((ref - out) ** 2).sum())
    return 10 * np.log10(signal / max(noise, 1e-300))


def rounded_weight_outputs(prep, input_names: list[str]) -> list[dict]:
    """The traced function's outputs on every parity case with its float32 variables
    rounded to bfloat16 (restored after)."""
    import tensorflow as tf

    function = prep.traced.function
    variables = [v for v in function.get_concrete_function().variables if v.dtype == tf.float32]
    saved = [v.numpy() for v in variables]
    try:
        for v, value in zip(variables, saved):
            v.assign(tf.cast(tf.cast(value, tf.bfloat16), tf.float32))
        return [{k: np.asarray(t) for k, t in function(*[feeds[n] for n in input_names]).items()} for _, feeds in prep.data.cases]
    finally:
        for v, value in zip(variables, saved):
            v.assign(value)


def calibration_rows() -> list[tuple]:
    from examples import budget_corpus as bc
    from examples.calibrate_budgets import RUNS, _Model

    rows = []
    for arch in bc.ARCHITECTURES:
        folder = RUNS / arch
        if not (folder / "acceptable.bf16.npz").exists():
            print(f"{arch}: no cached bf16 runs in {folder} (run `make calibrate-budgets` first)", flush=True)
            continue
        name = bc.output_name(arch)
        reference = np.load(folder / "reference.npz")
        cases = sorted((k for k in reference.files if k.startswith("case")), key=lambda k: int(k[4:]))
        with tempfile.TemporaryDirectory(prefix=f"bf16_floor_{arch}_") as tmp:
            base = _Model(arch, None, Path(tmp))
            floor = rounded_weight_outputs(base.prep, ["x"])
        refs = [reference[k] for k in cases]
        floor_db = sqnr_db(zip(refs, (f[name] for f in floor)))
        for kind in ("acceptable", "weights_1pct"):
            run = np.load(folder / f"{kind}.bf16.npz")
            file_db = sqnr_db(zip(refs, (run[k] for k in cases)))
            rows.append(("calibration", arch, name, kind, floor_db, file_db))
    return rows


def corpus_rows(artifacts: Path) -> list[tuple]:
    from pipeline.config import load_config
    from pipeline.execute.build import RunContext, prepare
    from targets import REGISTRY

    rows = []
    for report_path in sorted(artifacts.glob("*/report.json")):
        variants = json.loads(report_path.read_text()).get("targets", {}).get("tpu", {}).get("variants", {})
        outputs = ((variants.get("bf16") or {}).get("parity") or {}).get("outputs") or {}
        figures = {k: o.get("sqnr_db") for k, o in outputs.items() if o.get("sqnr_db") is not None}
        config_file = REPO / "configs" / "corpus" / f"{report_path.parent.name}.yaml"
        if not figures or not config_file.exists():
            continue
        config = load_config(config_file, REGISTRY)
        with tempfile.TemporaryDirectory(prefix="bf16_floor_") as tmp:
            prep = prepare(RunContext(config, Path(tmp)))
            floor = rounded_weight_outputs(prep, list(config.input_names))
            for name, file_db in figures.items():
                floor_db = sqnr_db(zip((r[name] for r in prep.reference), (f[name] for f in floor)))
                rows.append(("corpus", config.name, name, "accepted file", floor_db, file_db))
            prep.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-artifacts", type=Path, default=REPO / "artifacts" / "corpus")
    args = parser.parse_args(argv)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    rows = calibration_rows() + corpus_rows(args.corpus_artifacts)
    print(f"\n{'set':<12} {'model':<20} {'output':<9} {'file':<14} {'floor dB':>9} {'file dB':>8} {'gap dB':>7}")
    for where, model, output, kind, floor_db, file_db in rows:
        print(f"{where:<12} {model:<20} {output:<9} {kind:<14} {floor_db:>9.1f} {file_db:>8.1f} {floor_db - file_db:>7.1f}")
    gaps = {}
    for where, _, _, kind, floor_db, file_db in rows:
        gaps.setdefault("perturbed" if kind == "weights_1pct" else "accepted", []).append(floor_db - file_db)
    for kind, values in sorted(gaps.items()):
        print(f"{kind}: gap {min(values):.1f} to {max(values):.1f} dB over {len(values)} outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
