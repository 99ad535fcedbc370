"""Run the hostile corpus and print each case's exit code, wall time, peak memory and
whether anything outside the artifacts folder changed.

    .venv/bin/python tests/hostile/measure.py [--code DIR] [--timeout S] [--rss-limit-mb MB] [case ...]

`--code DIR` runs the `pipeline` package found in DIR (e.g. an older checkout) instead of
this one; the watchdog kills a case past the timeout or the resident-memory limit.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostile import harness  # noqa: E402
from hostile.cases import CASES  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*")
    parser.add_argument("--code", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--rss-limit-mb", type=float, default=3000.0)
    args = parser.parse_args()
    selected = [c for c in CASES if not args.names or c.name in args.names]
    print(f"{'case':28} {'exit':>6} {'seconds':>8} {'peak MB':>8}  outside changed  message")
    for case in selected:
        folder = Path(tempfile.mkdtemp(prefix="hostile-"))
        root = folder / case.name
        root.mkdir()
        try:
            argv = case.build(root)
            before = harness.tree_digest(root / "sentinel")
            outcome = harness.run_tfship(argv, root, timeout=args.timeout, rss_limit_mb=args.rss_limit_mb, code_root=args.code)
            after = harness.tree_digest(root / "sentinel")
            changed = sorted(set(before.items()) ^ set(after.items()))
            lines = [line for line in outcome.err.splitlines() if line.strip()]
            tail = next((line for line in lines if "Traceback" in line), None) and lines[-1] or (lines[-1] if lines else "")
            code = "killed" if outcome.code is None else str(outcome.code)
            outside = ("yes: " + ", ".join(sorted({c[0] for c in changed}))) if changed else "no"
            message = outcome.killed or tail.replace(str(folder) + "/", "")[:150]
            print(f"{case.name:28} {code:>6} {outcome.seconds:8.2f} {outcome.peak_mb:8.0f}  {outside:15}  {message}", flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
