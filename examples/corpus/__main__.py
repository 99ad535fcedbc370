"""Export the whole corpus and write its table.

    python -m examples.corpus [--artifacts DIR] [--out docs/corpus.md] [--force] [--table-only]

Runs `tfship export` on every config in configs/corpus/ (one model at a time),
times it, and writes one row per (model, target, variant) to the table. Exit code:
0 when the table was written (the corpus is expected to hold converter limits).
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

from examples.corpus.table import parse_refusals, save_refusals, write_table

CONFIG_DIR = Path("configs/corpus")


def run_order(config_dir: Path) -> list[str]:
    """Every corpus model, the small ones first and the stock applications last, so a
    long run has most rows early."""
    from examples.corpus.applications import APPLICATIONS

    names = sorted(p.stem for p in config_dir.glob("*.yaml"))
    return [n for n in names if n not in APPLICATIONS] + [n for n in names if n in APPLICATIONS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts/corpus"))
    parser.add_argument("--config-dir", type=Path, default=CONFIG_DIR)
    parser.add_argument("--out", type=Path, default=Path("docs/corpus.md"))
    parser.add_argument("--model", action="append", help="only these corpus models (default: all)")
    parser.add_argument("--force", action="store_true", help="rebuild what is up to date")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="models exported in parallel (each worker needs up to ~3 GB)")
    parser.add_argument("--table-only", action="store_true", help="write the table from the reports on disk")
    args = parser.parse_args(argv)

    wall = None
    code = None
    peak = None
    if not args.table_only:
        command = [sys.executable, "-m", "pipeline", "export", "--config-dir", str(args.config_dir), "--artifacts", str(args.artifacts), "-j", str(args.jobs)]
        command += [a for m in args.model or run_order(args.config_dir) for a in ("--model", m)] + (["--force"] if args.force else [])
        start = time.perf_counter()
        # stderr is echoed as it comes and kept: a target the model does not fit is refused
        # (exit 2) there and never recorded in the model's report, so its reason is read here.
        proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, bufsize=1)
        lines = []
        for line in proc.stderr:
            sys.stderr.write(line)
            lines.append(line)
        code = proc.wait()
        wall = time.perf_counter() - start
        save_refusals(args.artifacts, args.model or run_order(args.config_dir), parse_refusals(lines))
        # ru_maxrss of waited-for children: the largest single process (a model's worker), in KiB on Linux.
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        print(f"corpus export: exit {code} in {wall:.0f} s; largest process peak RSS {peak / 2**30:.2f} GB", file=sys.stderr)
    rows = write_table(args.config_dir, args.artifacts, args.out, wall_seconds=wall, export_code=code, forced=args.force,
                       jobs=args.jobs, selected=args.model, peak_rss_bytes=peak)
    print(f"wrote {args.out}: {rows} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
