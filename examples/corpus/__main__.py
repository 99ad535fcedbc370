"""Train, export and measure the whole corpus, and write its table.

    python -m examples.corpus [--artifacts DIR] [--out docs/corpus.md] [--force] [--table-only] [--random]

Phases, timed: (1) every model trained, or loaded from the training cache
(examples/corpus/train.py); (2) `tfship export` on every config in configs/corpus/;
(3) with --random, the random-weight appendix exported again (configs/corpus/random/,
into <artifacts>-random) for the applications selected; without it the appendix keeps
the rows of the last run that exported it (examples/corpus/random_rows.json, or the
reports in <artifacts>-random); (4) each model's held-out task figures, for the float
reference and every artifact (examples/corpus/tasks.py). Then one row per (model, target,
variant) in the table. Exit code: 0 when the table was written (the corpus is expected
to hold converter limits).
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

from examples.corpus.table import parse_refusals, run_lines_of, save_refusals, write_table

CONFIG_DIR = Path("configs/corpus")
RANDOM_DIR = CONFIG_DIR / "random"


def run_order(config_dir: Path) -> list[str]:
    """Every corpus model, the small ones first and the stock applications last, so a
    long run has most rows early."""
    from examples.corpus.applications import APPLICATIONS

    names = sorted(p.stem for p in config_dir.glob("*.yaml"))
    return [n for n in names if n not in APPLICATIONS] + [n for n in names if n in APPLICATIONS]


def _export(config_dir: Path, artifacts: Path, models: list[str], jobs: int, force: bool) -> int:
    command = [sys.executable, "-m", "pipeline", "export", "--config-dir", str(config_dir), "--artifacts", str(artifacts), "-j", str(jobs)]
    command += [a for m in models for a in ("--model", m)] + (["--force"] if force else [])
    # stderr is echoed as it comes and kept: a target the model does not fit is refused
    # (exit 2) there and never recorded in the model's report, so its reason is read here.
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, bufsize=1)
    lines = []
    for line in proc.stderr:
        sys.stderr.write(line)
        lines.append(line)
    code = proc.wait()
    save_refusals(artifacts, models, parse_refusals(lines))
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts/corpus"))
    parser.add_argument("--config-dir", type=Path, default=CONFIG_DIR)
    parser.add_argument("--out", type=Path, default=Path("docs/corpus.md"))
    parser.add_argument("--model", action="append", help="only these corpus models (default: all)")
    parser.add_argument("--force", action="store_true", help="rebuild what is up to date")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="models exported in parallel (each worker needs up to ~3 GB)")
    parser.add_argument("--table-only", action="store_true", help="write the table from the reports on disk")
    parser.add_argument("--random-dir", type=Path, default=RANDOM_DIR, help="configs of the random-weight appendix")
    parser.add_argument("--random", action="store_true", help="export the random-weight appendix again (configs/corpus/random/)")
    args = parser.parse_args(argv)
    from examples.corpus.tasks import measure_all
    from examples.corpus.train import prepare_all

    random_artifacts = args.artifacts.with_name(args.artifacts.name + "-random")
    wall = None
    code = None
    peak = None
    phases: dict[str, float] = {}
    if not args.table_only:
        models = args.model or run_order(args.config_dir)
        start = time.perf_counter()
        prepare_all(args.config_dir, models, args.artifacts)
        phases["training or loading the trained weights"] = time.perf_counter() - start
        mark = time.perf_counter()
        code = _export(args.config_dir, args.artifacts, models, args.jobs, args.force)
        phases["export"] = time.perf_counter() - mark
        random_models = [m for m in models if (args.random_dir / f"{m}.yaml").is_file()]
        if random_models and args.random:
            mark = time.perf_counter()
            _export(args.random_dir, random_artifacts, random_models, args.jobs, args.force)
            phases["random-weight appendix export"] = time.perf_counter() - mark
        mark = time.perf_counter()
        measure_all(args.config_dir, args.artifacts, models)
        phases["held-out task figures"] = time.perf_counter() - mark
        wall = time.perf_counter() - start
        # ru_maxrss of waited-for children: the largest single process (a model's worker), in KiB on Linux.
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        print(f"corpus: export exit {code}; {wall:.0f} s in all; largest process peak RSS {peak / 2**30:.2f} GB", file=sys.stderr)
    rows = write_table(args.config_dir, args.artifacts, args.out, wall_seconds=wall, export_code=code, forced=args.force,
                       jobs=args.jobs, selected=args.model, peak_rss_bytes=peak, phases=phases,
                       random_dir=args.random_dir, random_artifacts=random_artifacts,
                       run_lines=run_lines_of(args.out) if args.table_only else None)
    print(f"wrote {args.out}: {rows} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
