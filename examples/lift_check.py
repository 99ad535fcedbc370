"""The TFLite stand-in path on the corpus: `python -m examples.lift_check [model ...]`
(after `make corpus`; a check to run by hand, not a test).

Converts each corpus model's float32, float16 and dynamic_range variants with the
stand-in thresholds lowered to 0 bytes per model and 16 KB per tensor
(targets/support/tflite_lift.py), so that every model takes that path, and prints each
variant's status and max_abs next to the corpus run's (the usual conversion). It also
prints how many weights were written after conversion, or why the variant fell back to
the usual conversion.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLOAT_VARIANTS = ("float32", "float16", "dynamic_range")


def _max_abs(entry: dict) -> dict:
    return {k: o.get("max_abs") for k, o in ((entry.get("parity") or {}).get("outputs") or {}).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="corpus model names (default: every one with a tflite report)")
    parser.add_argument("--corpus-artifacts", type=Path, default=REPO / "artifacts" / "corpus")
    args = parser.parse_args(argv)

    from pipeline.api import run_configs
    from pipeline.config import load_config
    from targets import REGISTRY
    from targets.support import tflite_lift

    tflite_lift.LIFT_MODEL_BYTES, tflite_lift.LIFT_MIN_BYTES = 0, 16 * 1024
    names = args.models or sorted(p.parent.name for p in args.corpus_artifacts.glob("*/report.json"))
    same = differ = 0
    with tempfile.TemporaryDirectory(prefix="lift_check_") as tmp:
        for name in names:
            usual = json.loads((args.corpus_artifacts / name / "report.json").read_text())["targets"].get("tflite")
            config = load_config(REPO / "configs" / "corpus" / f"{name}.yaml", REGISTRY)
            tflite = [t for t in config.targets if t.name == "tflite"]
            if not usual or not tflite:
                continue
            variants = tuple(v for v in tflite[0].options.variants if v in FLOAT_VARIANTS)
            target = dataclasses.replace(tflite[0], options=dataclasses.replace(tflite[0].options, variants=variants))
            run_configs([dataclasses.replace(config, targets=(target,))], Path(tmp), ["tflite"], force=True, in_process=True, level=0)
            lifted = json.loads((Path(tmp) / name / "report.json").read_text())["targets"]["tflite"]["variants"]
            for variant in variants:
                entry, before = lifted.get(variant, {}), usual["variants"].get(variant, {})
                info = entry.get("info") or {}
                how = f"{info['weights_written_after_conversion']} weights written" if "weights_written_after_conversion" in info else info.get("note_conversion", "")
                match = entry.get("status") == before.get("status") and _max_abs(entry) == _max_abs(before)
                same, differ = same + match, differ + (not match)
                print(f"{name:<20} {variant:<14} {'same' if match else 'DIFFERENT':<9} {entry.get('status')} {_max_abs(entry)} "
                      f"(usual: {before.get('status')} {_max_abs(before)}); {how[:160]}", flush=True)
    print(f"\n{same} variants with the usual conversion's status and max_abs, {differ} different")
    return 0 if differ == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
