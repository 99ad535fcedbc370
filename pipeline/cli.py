"""`tfship` command line. Exit codes: 0 all passed, 1 a target failed, 2 bad input."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from pathlib import Path

from pipeline.errors import ConfigError, PipelineError, Problem

# Modules that add subcommands: each has `register(subparsers, common)`; the parser it
# adds sets `handler=fn(args) -> exit code`.
COMMAND_MODULES: list[str] = ["pipeline.bench", "pipeline.release", "pipeline.ci_reports", "pipeline.diff", "pipeline.matrix", "pipeline.repairs"]

DEFAULT_CONFIG_DIR = Path("configs/models")
DEFAULT_ARTIFACTS = Path("artifacts")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfship",
        description="Export trained TensorFlow/Keras models to deployment targets and prove parity with the eager model.",
        epilog="Exit codes: 0 everything passed; 1 a target failed parity or conversion; 2 bad input (config, model, data).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", action="append", metavar="NAME", help="model name (config file stem) or a config path; repeatable; default: every config")
        p.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR, help="folder of model YAML configs (default: %(default)s)")
        p.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS, help="output folder (default: %(default)s)")

    export = sub.add_parser("export", help="build and check artifacts")
    common(export)
    export.add_argument("--target", action="append", metavar="T", help="target name, repeatable, or 'all' (default: every target in each config)")
    export.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="models exported in parallel worker processes (default: %(default)s)")
    export.add_argument("--force", action="store_true", help="rebuild even what is up to date")
    export.add_argument("--bench", action="store_true", help="after exporting, time what was exported (as `tfship bench`)")
    validate = sub.add_parser("validate", help="re-check exported artifacts (hashes, then parity) without re-exporting")
    common(validate)
    sub.add_parser("targets", help="list the known targets")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub, common)
    return parser


def config_files(models: list[str] | None, config_dir: Path) -> list[Path]:
    if not models:
        files = sorted(config_dir.glob("*.yaml")) + sorted(config_dir.glob("*.yml"))
        if not files:
            raise ConfigError([Problem(str(config_dir), None, "", "no model configs (*.yaml) found; create configs/models/<name>.yaml")])
        return files
    files, problems = [], []
    for model in models:
        path = Path(model)
        if path.suffix in (".yaml", ".yml") and path.is_file():
            files.append(path)
            continue
        candidates = [config_dir / f"{model}.yaml", config_dir / f"{model}.yml"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            known = sorted(p.stem for p in config_dir.glob("*.y*ml"))
            problems.append(Problem(str(config_dir), None, "--model", f"no config for model '{model}'; known: {', '.join(known) or 'none'}"))
        else:
            files.append(found)
    if problems:
        raise ConfigError(problems)
    return files


def _target_filter(requested: list[str] | None, configs) -> list[str] | None:
    from targets import REGISTRY

    if not requested or "all" in requested:
        return None
    problems = [Problem("", None, "--target", f"unknown target '{t}'; known: {', '.join(REGISTRY.names())}, all") for t in requested if t not in REGISTRY]
    if not problems and not any(t.name in requested for c in configs for t in c.targets):
        problems.append(Problem("", None, "--target", f"no selected model configures {', '.join(requested)}; add it under `targets:` in a config"))
    if problems:
        raise ConfigError(problems)
    return list(requested)


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ INFO lines drown the report; warnings and errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def native_stderr_to(log_path: Path):
    """While active, what native libraries write to fd 2 (absl and CUDA probes print
    even with TF_CPP_MIN_LOG_LEVEL set) goes to `log_path`; Python's own messages keep
    the terminal. Both are restored afterwards."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    previous = sys.stderr
    saved_fd = os.dup(2)
    terminal = None
    if previous is sys.__stderr__:  # not captured by a caller: keep writing to the real terminal
        terminal = os.fdopen(os.dup(2), "w", buffering=1)
        sys.stderr = terminal
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            sys.stderr = previous
            if terminal is not None:
                terminal.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if getattr(args, "handler", None) is not None:
            return args.handler(args)
        if args.command == "targets":
            from targets import REGISTRY

            for name in REGISTRY.names():
                print(f"{name:12} {REGISTRY.get(name).description}")
            return 0
        from pipeline.config import load_configs

        configs = load_configs(config_files(args.model, args.config_dir))
        _quiet_tensorflow()
        from pipeline.run import export, validate_model

        code = 0
        if args.command == "export":
            if args.jobs < 1:
                raise ConfigError([Problem("", None, "--jobs", f"expected at least 1 worker, got {args.jobs}")])
            only = _target_filter(args.target, configs)
            code = export(configs, only, args.artifacts, jobs=args.jobs, force=args.force)
            _summary(configs, args.artifacts, only)
            if args.bench and code == 0:
                from pipeline.bench import DEFAULT_BATCH, DEFAULT_MAX_SECONDS, run_command

                bench_args = argparse.Namespace(
                    model=args.model, config_dir=args.config_dir, artifacts=args.artifacts, target=args.target,
                    batch=DEFAULT_BATCH, threads=None, max_seconds=DEFAULT_MAX_SECONDS,
                )
                code = run_command(bench_args)
        else:
            with native_stderr_to(args.artifacts / ".logs" / "validate.log"):
                for config in configs:
                    try:
                        model_code = validate_model(config, args.artifacts)
                    except PipelineError as exc:
                        print(f"error: {exc}", file=sys.stderr)
                        model_code = exc.exit_code
                    code = max(code, model_code) if 2 not in (code, model_code) else 2
        return code
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: targets finished before the interrupt are published and recorded; the others keep their previous artifacts", file=sys.stderr)
        return 130
    except OSError as exc:
        from pipeline.publication import file_system_error

        message = file_system_error(exc)
        if message is None:
            raise
        print(f"error: {message[0]}", file=sys.stderr)
        return message[1]


def _summary(configs, artifacts: Path, only: list[str] | None) -> None:
    from pipeline.report import read_report

    reports = [(config, read_report(artifacts / config.name) or {}) for config in configs]
    if not any(report.get("targets") for _, report in reports):
        return  # nothing recorded (bad input): the error above is the whole story
    print("\nmodel        target       status   max_abs (worst output)")
    for config, report in reports:
        for name, entry in sorted(report.get("targets", {}).items()):
            if only is not None and name not in only:
                continue
            rows = [(name, entry)] + [(f"{name}/{v}", e) for v, e in sorted((entry.get("variants") or {}).items())]
            for label, e in rows:
                outputs = (e.get("parity") or {}).get("outputs") or {}
                worst = max((m.get("max_abs") or 0.0 for m in outputs.values()), default=None)
                if label == name and entry.get("variants"):
                    worst = None
                print(f"{config.name:12} {label:24} {e.get('status', '-'):8} {'-' if worst is None else f'{worst:.3g}'}")
    print(f"\nreports: {artifacts}/<model>/report.json and report.md")


if __name__ == "__main__":
    sys.exit(main())
