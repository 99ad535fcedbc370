"""`tfship inspect ARTIFACT`: what is inside an artifact and whether tfship's runtimes run it."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="show what is inside a SavedModel, .tflite or .onnx file and whether tfship can run it",
        description="Signatures, inputs and outputs, ops, quantization, opsets and size of an artifact, "
        "and whether the runtime tfship checks parity with runs it. Exit 0 when it runs, 1 when the runtime refuses it, 2 bad input.",
    )
    parser.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help="SavedModel folder (or TF Serving folder of versions), .tflite or .onnx file")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.execute.console import native_stderr_to, quiet_tensorflow
    from pipeline.inspection import inspect_artifact

    quiet_tensorflow()
    infos = []
    with native_stderr_to(_log_path()):
        for path in args.artifacts:
            infos.append(inspect_artifact(path))
    if args.json:
        document = [i.to_dict() for i in infos]
        json.dump(document[0] if len(document) == 1 else document, sys.stdout, indent=2, default=str)
        print()
    else:
        print("\n\n".join(i.render() for i in infos))
    return 0 if all(i.runs for i in infos) else 1


def _log_path():
    import tempfile
    from pathlib import Path

    return Path(tempfile.gettempdir()) / "tfship-inspect.log"
