"""`tfship compare REF ARTIFACT...`: parity of artifacts made anywhere against a reference."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="parity of SavedModel/.tflite/.onnx artifacts against a reference artifact",
        description="Runs the reference and every artifact on the same inputs and judges each with the budget of its "
        "target and precision (read from the file). Exit 0 all passed, 1 one failed or could not run, 2 bad input.",
    )
    parser.add_argument("reference", metavar="REF", help="the reference: a SavedModel folder, .tflite or .onnx file")
    parser.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help="artifacts to judge against REF")
    parser.add_argument("--data", type=Path, metavar="NPZ", help="inputs: a .npz with one array [N, ...] per input (default: synthetic uniform [-1, 1))")
    parser.add_argument("--samples", type=int, default=32, metavar="N", help="synthetic samples (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic data seed (default: %(default)s)")
    parser.add_argument("--tolerance", action="append", default=[], metavar="OUT:KEY=VALUE", help="override a budget, e.g. probs:atol=1e-3 (repeatable)")
    parser.add_argument("--pair", action="append", default=[], metavar="REF=ART",
                        help="pair a reference input or output with an artifact's of another name, e.g. probs=StatefulPartitionedCall:0 (repeatable)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.set_defaults(handler=run)


def _tolerances(items: list[str]) -> dict:
    from pipeline.errors import ConfigError, Problem
    from pipeline.tolerance import TOLERANCE_KEYS

    table: dict = {}
    for item in items:
        output, _, rest = item.partition(":")
        key, _, value = rest.partition("=")
        try:
            number = int(value) if key == "top_k" else float(value)
        except ValueError:
            number = None
        if not output or key not in TOLERANCE_KEYS or number is None:
            raise ConfigError([Problem("", None, "--tolerance", f"expected OUTPUT:KEY=NUMBER with KEY one of {', '.join(TOLERANCE_KEYS)}, got {item!r}")])
        table.setdefault(output, {})[key] = number
    return table


def _pairs(items: list[str]) -> dict[str, str]:
    from pipeline.errors import ConfigError, Problem

    pairs: dict = {}
    for item in items:
        ref, _, art = item.partition("=")
        if not ref or not art:
            raise ConfigError([Problem("", None, "--pair", f"expected REFERENCE_NAME=ARTIFACT_NAME, e.g. probs=StatefulPartitionedCall:0, got {item!r}")])
        if ref in pairs and pairs[ref] != art:
            raise ConfigError([Problem("", None, "--pair", f"{ref!r} is paired twice ({pairs[ref]!r} and {art!r}); give one --pair per reference name")])
        pairs[ref] = art
    return pairs


def run(args: argparse.Namespace) -> int:
    from pipeline.compare import compare
    from pipeline.execute.console import native_stderr_to, quiet_tensorflow
    import tempfile

    tolerances = _tolerances(args.tolerance)
    pairs = _pairs(args.pair)
    quiet_tensorflow()
    with native_stderr_to(Path(tempfile.gettempdir()) / "tfship-compare.log"):
        result = compare(args.reference, *args.artifacts, data=args.data, samples=args.samples, seed=args.seed, tolerances=tolerances,
                         pairs=pairs, how_to_pair="cli")
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2, default=str)
        print()
    else:
        print(result.render())
    return result.exit_code
