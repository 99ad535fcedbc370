"""Fan-out across CI runners: `tfship matrix` lists the jobs, `tfship merge` joins them.

    tfship matrix                     -> {"include": [{"model": "affine", "target": "savedmodel",
                                          "artifacts": "slices/affine-savedmodel"}, ...]}
    tfship export --model M --target T --artifacts slices/M-T     (one CI job per entry)
    tfship merge slices/* --version V -> artifacts/release/V/ with one manifest

`merge` refuses slices built with different tool versions, slices whose report comes
from another config than the one checked out (config sha256), and two slices that
both built the same model and target. A target of the config that no slice built
is a failure like any other: the release is refused unless the target is optional.

Exit codes as `tfship release`: 0 published, 1 refused, 2 bad input.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.release import ModelSource, ReleaseInputError, assemble_release, check_consistent_versions
from pipeline.reports.model import portable_path

SLICES_DIR = "slices"


def matrix(configs, slices_dir: str = SLICES_DIR) -> dict:
    """The model x target jobs in the shape a CI matrix takes (`strategy.matrix`): the
    export plan without a cache, as every CI job starts from a clean slice."""
    from pipeline.plan import make_plan

    plan = make_plan(configs, None, None, {})
    return {"include": [{"model": j.model, "target": j.target, "artifacts": f"{slices_dir}/{j.model}-{j.target}"} for j in plan.jobs]}


# -------------------------------------------------------------------- merge


def read_slices(dirs: list[Path]) -> dict[str, list[tuple[Path, dict, bytes]]]:
    """model -> [(slice model folder, report, report bytes)] over every slice folder."""
    found: dict[str, list[tuple[Path, dict, bytes]]] = {}
    problems = []
    for root in dirs:
        reports = sorted(root.glob("*/report.json"))
        if not root.is_dir() or not reports:
            problems.append(f"{root}: not a slice (expected <model>/report.json below it, written by `tfship export --artifacts {root}`)")
            continue
        for path in reports:
            raw = path.read_bytes()
            try:
                report = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(f"{path}: not JSON ({exc})")
                continue
            found.setdefault(report.get("model", path.parent.name), []).append((path.parent, report, raw))
    if problems:
        raise ReleaseInputError("cannot merge:\n  " + "\n  ".join(problems))
    return found


def _check_same_model(model: str, parts: list[tuple[Path, dict, bytes]]) -> None:
    """Slices of one model must have run the same eager model on the same inputs: a model
    trained or downloaded separately by each job would ship mismatched artifacts. The
    reference statistics (range and spread of every output) tell."""
    def stats(report: dict) -> dict:
        return ((report.get("run") or {}).get("model") or {}).get("reference") or {}

    first_folder, first, _ = parts[0]
    for folder, report, _ in parts[1:]:
        for output, ref in stats(first).items():
            other = stats(report).get(output)
            if other is None:
                continue
            for key in ("range", "spread"):
                a, b = ref.get(key), other.get(key)
                if a is not None and b is not None and abs(a - b) > 1e-6 * max(abs(a), abs(b), 1e-12):
                    raise ReleaseInputError(
                        f"slices of {model} ran different models: output '{output}' reference {key} {a:.9g} in {first_folder} "
                        f"vs {b:.9g} in {folder}; build the model once and give every slice the same file"
                    )


def merged_source(config, parts: list[tuple[Path, dict, bytes]]) -> ModelSource:
    """One model's report and file locations joined from its slices."""
    problems = []
    for folder, report, _ in parts:
        if report.get("config_sha256") != config.sha256:
            problems.append(
                f"{folder}: built from config sha256 {str(report.get('config_sha256'))[:12]}, the checked-out {config.file} is {config.sha256[:12]}"
            )
    if problems:
        raise ReleaseInputError(f"slices of {config.name} were built from another config; rebuild them from this commit:\n  " + "\n  ".join(problems))
    _check_same_model(config.name, parts)
    targets: dict[str, dict] = {}
    roots: dict[str, Path] = {}
    merged_from = []
    for folder, report, _ in parts:
        built = list(report.get("targets") or {})
        for name in built:
            entry = (report.get("targets") or {}).get(name)
            if entry is None:
                continue
            if name in targets:
                raise ReleaseInputError(f"{config.name} {name} was built by two slices: {roots.get(name, '?')} and {folder}; give each model x target one slice")
            targets[name] = entry
            if (folder / name).is_dir():
                roots[name] = folder
        merged_from.append({"slice": portable_path(folder.parent), "targets": built, "updated": report.get("updated")})
    if len(parts) == 1:
        folder, report, raw = parts[0]
        md = folder / "report.md"
        return ModelSource(
            config.name, report, roots, tuple(t.name for t in config.targets), {t.name: t.optional for t in config.targets}, raw,
            md.read_text(encoding="utf-8") if md.is_file() else None, {"origin": str(folder)},
        )
    from pipeline.reports.model import overall_status

    first = parts[0][1]
    ordered = {t.name: targets[t.name] for t in config.targets if t.name in targets}
    run = dict(first.get("run") or {})
    run["targets"] = list(ordered)
    report = {
        **{k: v for k, v in first.items() if k not in ("targets", "status", "run")},
        "created": min(p[1].get("created", "") for p in parts),
        "updated": max(p[1].get("updated", "") for p in parts),
        "run": run,
        "targets": ordered,
        "merged_from": merged_from,
    }
    report["status"] = overall_status(ordered)
    return ModelSource(
        config.name, report, roots, tuple(t.name for t in config.targets), {t.name: t.optional for t in config.targets}, None, None, {"origin": ", ".join(str(p[0]) for p in parts)}
    )


def merge(configs, slice_dirs: list[Path], version: str, release_root: Path, **kwargs):
    found = read_slices(slice_dirs)
    by_name = {c.name: c for c in configs}
    unknown = sorted(set(found) - set(by_name))
    if unknown:
        raise ReleaseInputError(f"slices hold models without a selected config: {', '.join(unknown)}; select them with --model or add configs")
    check_consistent_versions(
        [ModelSource(model, {"versions": p[1].get("versions")}, {}, (), {}, extra={"origin": str(p[0].parent)}) for model, parts in found.items() for p in parts]
    )
    sources = []
    for config in configs:
        parts = found.get(config.name)
        if not parts:
            raise ReleaseInputError(f"no slice holds model {config.name}; run `tfship matrix` and build every job, or select models with --model")
        sources.append(merged_source(config, parts))
    origin = {"merged_from": [portable_path(d) for d in slice_dirs]}
    return assemble_release(sources, version, release_root, origin=origin, **kwargs)
