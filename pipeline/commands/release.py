"""`tfship release`: export every model, then assemble artifacts/release/<version>/
(the layout and rules are in `pipeline.release`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.commands._common import selected_configs
from pipeline.commands.diff import add_margin_arguments, margins_from
from pipeline.execute.console import quiet_tensorflow
from pipeline.release import Outcome, ReleaseInputError, assemble_release, check_version, default_version, find_previous_release, git_info, source_from_artifacts
from pipeline.release import __doc__ as release_doc


def print_outcome(outcome: Outcome) -> None:
    manifest = outcome.manifest
    artifacts = [f for f in manifest["files"] if f["kind"] == "artifact"]
    print(f"release {outcome.version}: {outcome.path}")
    print(f"  {len(manifest['models'])} model(s), {len(artifacts)} artifact file(s), {sum(f['bytes'] for f in artifacts)} bytes")
    for entry in manifest["excluded"]:
        print(f"  left out (optional): {entry['model']} {entry['target']}: {entry['reason']}")
    if manifest.get("drift"):
        print(f"  drift against {manifest['drift']['against']}: " + ("no change beyond the margins" if not outcome.drift_lines else f"{len(outcome.drift_lines)} change(s), see drift.md"))
    print(f"  check: (cd {outcome.path} && sha256sum -c SHA256SUMS)")


def release_outputs(args, version: str) -> tuple[Path, Path]:
    """(<artifacts>/release, <artifacts>/ci), refused (exit 2) when a link stands on the way:
    --artifacts may be a link (the user named it); what tfship derives below it may not."""
    from pipeline.fsutil import refuse_links

    release_root = args.artifacts / "release"
    refuse_links(args.artifacts, release_root / version)
    return release_root, refuse_links(args.artifacts, args.artifacts / "ci")


def previous_release(args, release_root: Path, version: str) -> Path | None:
    if args.against == "none":
        return None
    if args.against == "auto":
        return find_previous_release(release_root, version)
    path = Path(args.against)
    if not (path / "manifest.json").is_file():
        raise ReleaseInputError(f"--against {path}: not a release folder (no manifest.json)")
    return path


def _handle_release(args: argparse.Namespace) -> int:
    configs = selected_configs(args)
    git = git_info()
    version = check_version(args.version or default_version(git))
    release_root, ci_dir = release_outputs(args, version)
    if (release_root / version).exists() and not args.force:
        raise ReleaseInputError(f"release {release_root / version} already exists; choose another --version, or pass --force to replace it")
    margins = margins_from(args)
    quiet_tensorflow()  # the export, and a factory's model fingerprinted before release
    if not args.skip_export:
        from pipeline.execute.export import export_model

        for config in configs:
            export_model(config, None, args.artifacts)
    sources = [source_from_artifacts(config, args.artifacts) for config in configs]
    from pipeline.execute.freshness import refuse_stale

    refuse_stale(configs, args.artifacts)  # a verdict about another model never ships
    outcome = assemble_release(
        sources,
        version,
        release_root,
        git=git,
        ci_dir=ci_dir,
        previous=previous_release(args, release_root, version),
        margins=margins,
        allow_drift=args.allow_drift,
        force=args.force,
    )
    print_outcome(outcome)
    return 0


def add_release_arguments(parser: argparse.ArgumentParser, version_required: bool = False) -> None:
    parser.add_argument("--version", required=version_required, help="release name (default: git tag at HEAD, else UTC time + -g<commit>)")
    parser.add_argument("--force", action="store_true", help="replace an existing release of the same version")
    parser.add_argument("--against", default="auto", metavar="auto|none|DIR", help="previous release to diff against (default: the newest under <artifacts>/release)")
    parser.add_argument("--allow-drift", action="store_true", help="publish even when the diff against the previous release finds something worse")
    add_margin_arguments(parser)


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "release",
        help="export every model, then assemble artifacts/release/<version>/ (manifest, reports, archives, SHA256SUMS)",
        description=release_doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(parser)
    add_release_arguments(parser)
    parser.add_argument("--skip-export", action="store_true", help="assemble from what <artifacts> holds (refused when a report is from another config)")
    parser.set_defaults(handler=_handle_release)
