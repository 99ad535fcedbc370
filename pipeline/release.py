"""`tfship release`: export, then assemble one auditable bundle per version.

Layout of `artifacts/release/<version>/`:

    manifest.json              every file below (model, target, variant, path, sha256,
                               bytes, kind; a deployable file also `checked_by`, the
                               variants whose parity run executed it, or `unchecked`, why
                               none did), config sha256 per model, tool versions,
                               git commit, created time, what was left out and why
    SHA256SUMS                 `sha256sum -c SHA256SUMS` checks every file, manifest included
    <model>/<target>/...       the deployable files, as exported and hash-checked
    <model>/report.json|.md    the model's parity report
    <model>/junit.xml|report.html
    <model>-<version>.tar.gz   the <model>/ folder as one reproducible archive
    junit.xml, summary.md, report.html    the whole release, for CI and people
    drift.md, drift.json       against the previous release, when there is one

The bundle is built in a staging folder next to its destination and renamed into
place, so a crash never leaves a half-written release. A release with a failed or
errored target is refused (exit 1, nothing published) unless the config marks that
target `optional: true`; the target is then left out and the manifest says why.

Default version: the git tag when HEAD is exactly at a tag and the tree is clean,
otherwise the UTC time `YYYYMMDDTHHMMSSZ`, followed by `-g<short commit>` inside a
git checkout (`20261124T204500Z-ge7b7a6b`).

Exit codes: 0 published; 1 refused (a non-optional target failed, or the outputs
drifted beyond the margins against the previous release); 2 bad input (config, a
version that already exists, reports from another config or tool versions).
"""
from __future__ import annotations

import datetime as _dt
import gzip
import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.reports.ci import write_ci_reports
from pipeline.reports.junit import junit_xml
from pipeline.reports.records import iter_records
from pipeline.errors import IntegrityError, PipelineError
from pipeline.fsutil import publish_dir, read_own_file, real_file_below, sha256_file, staging_dir, write_json_atomic, write_text_atomic

MANIFEST_SCHEMA_VERSION = 1
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class ReleaseRefused(PipelineError):
    """A target failed (and is not optional), or the outputs drifted: nothing was published."""

    exit_code = 1


class ReleaseInputError(PipelineError):
    """The inputs of a release do not fit together (exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class ModelSource:
    """One model's exported state: its report and where each target's files live."""

    name: str
    report: dict
    target_roots: dict[str, Path]  # target -> folder holding `<target>/...` (artifacts/<model>)
    expected_targets: tuple[str, ...]  # the config's targets, in config order
    optional: dict[str, bool]  # target -> optional, from the config
    report_bytes: bytes | None = None  # the report.json to ship as is (None: serialize `report`)
    report_md: str | None = None  # the report.md to ship as is (None: render it from `report`)
    extra: dict = field(default_factory=dict)


@dataclass
class Outcome:
    version: str
    path: Path
    manifest: dict
    ci_dir: Path | None = None
    drift_lines: list[str] = field(default_factory=list)


# ----------------------------------------------------------------- version and git


def _git(*args: str, cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_info(cwd: Path | None = None) -> dict | None:
    commit = _git("rev-parse", "HEAD", cwd=cwd)
    if not commit:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    return {
        "commit": commit,
        "describe": _git("describe", "--tags", "--always", "--dirty", cwd=cwd),
        "dirty": bool(status),
        "tag": _git("describe", "--tags", "--exact-match", cwd=cwd),
    }


def default_version(git: dict | None, when: _dt.datetime | None = None) -> str:
    if git and git.get("tag") and not git.get("dirty"):
        return git["tag"]
    stamp = (when or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-g{git['commit'][:7]}" if git else stamp


def check_version(version: str) -> str:
    if not VERSION_PATTERN.match(version) or version in (".", ".."):
        raise ReleaseInputError(
            f"invalid release version {version!r}: use letters, digits, '.', '_', '+' or '-' (at most 128, no '/'), e.g. 1.4.0 or 2026-11-24"
        )
    return version


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------- planning


def _reason(entry: dict) -> str:
    if entry.get("status") == "error":
        return f"error: {(entry.get('message') or 'no message').splitlines()[0]}"
    failures = []
    for record in iter_records({"model": "", "targets": {"t": entry}}):
        prefix = f"{record.variant}: " if record.variant else ""
        failures += [prefix + f for f in record.parity.get("failures") or []]
    return f"{entry.get('status')}: " + ("; ".join(failures) if failures else "no parity details")


def plan(source: ModelSource) -> tuple[list[str], list[dict], list[str]]:
    """(targets to ship, targets left out with reasons, reasons to refuse the release)."""
    ship, excluded, refused = [], [], []
    targets = (source.report.get("targets") or {})
    for name in source.expected_targets:
        entry = targets.get(name)
        optional = source.optional.get(name, bool((entry or {}).get("optional")))
        if entry is None:
            why = "not built: no entry in the report (no slice or export produced it)"
        elif entry.get("status") == "passed":
            if name not in source.target_roots:
                why = "passed, but its files were not found"
            else:
                ship.append(name)
                continue
        else:
            why = _reason(entry)
        if optional:
            excluded.append({"model": source.name, "target": name, "status": (entry or {}).get("status", "missing"), "optional": True, "reason": why})
        else:
            refused.append(f"{source.name} {name}: {why} (mark the target `optional: true` in the config to release without it)")
    return ship, excluded, refused


def check_consistent_versions(sources: list[ModelSource]) -> dict:
    """Every report must come from the same tool versions; returns them."""
    seen: dict[str, list[str]] = {}
    for source in sources:
        key = json.dumps(source.report.get("versions") or {}, sort_keys=True)
        seen.setdefault(key, []).append(source.extra.get("origin", source.name))
    if len(seen) > 1:
        lines = [f"  {', '.join(sorted(set(who)))}: {json.loads(key)}" for key, who in seen.items()]
        raise ReleaseInputError("reports were built with different tool versions; rebuild them with one toolchain:\n" + "\n".join(lines))
    return json.loads(next(iter(seen))) if seen else {}


# ---------------------------------------------------------------- assembling


def _variant_of(entry: dict) -> dict[str, list[str]]:
    """file path (relative to the model folder) -> variants whose artifact uses it."""
    from pipeline.reports.model import target_entry

    owners: dict[str, list[str]] = {}
    for key, sub in (target_entry(entry).get("variants") or {}).items():
        name = (sub.get("artifact") or {}).get("variant", key)  # '' for a target's only, unnamed artifact
        for f in sub.get("files") or []:
            owners.setdefault(f["path"], []).append(name)
    return owners


def _copy_target(source: ModelSource, target: str, model_out: Path) -> list[dict]:
    from pipeline.reports.model import target_entry
    from pipeline.reports.records import file_checks

    entry = source.report["targets"][target]
    owners = _variant_of(entry)
    checks = file_checks(target, target_entry(entry))
    records = []
    root = source.target_roots[target]
    for f in entry.get("files") or []:
        rel = f["path"]
        if not rel.startswith(f"{target}/") or ".." in Path(rel).parts:
            raise IntegrityError(f"{source.name} {target}: report lists {rel!r}, outside the target's folder")
        src, dest = real_file_below(root, rel), model_out / rel
        if src is None:
            raise IntegrityError(f"{source.name} {target}: {root / rel} is reached through a symbolic link; a release copies only the files tfship wrote. Re-export the model")
        if not src.is_file():
            raise IntegrityError(f"{source.name} {target}: {src} is missing; re-export the model")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        digest = sha256_file(dest)
        if digest != f["sha256"]:
            raise IntegrityError(f"{source.name} {target}: {src} has sha256 {digest[:12]}, the report recorded {f['sha256'][:12]}; re-export the model")
        variants = owners.get(rel, [""])
        record = {"model": source.name, "target": target, "variant": variants[0], "path": f"{source.name}/{rel}", "sha256": digest, "bytes": dest.stat().st_size, "kind": "artifact"}
        if len(variants) > 1:
            record["variants"] = variants
        record.update(checks.get(rel, {"unchecked": "no parity record lists this file"}))
        records.append(record)
    return records


# ------------------------------------------------------------ build-machine paths


def build_machine_roots(release_root: Path, sources: list[ModelSource] = ()) -> dict[str, Path]:
    """Folders whose path would name the machine that built a release: the tfship checkout,
    the Python environment, $HOME, the working directory (the project's checkout), the
    artifacts root(s) and tfship's cache."""
    import sys

    import pipeline

    roots = {
        "the tfship checkout": Path(pipeline.__file__).resolve().parent.parent,
        "the Python environment": Path(sys.prefix),
        "$HOME": Path.home(),
        "the working directory": Path.cwd(),
        "the artifacts root": Path(release_root).parent,
        "tfship's cache": Path(os.environ.get("TFSHIP_CACHE", Path.home() / ".cache" / "tfship")),
    }
    for source in sources:
        for root in source.target_roots.values():
            roots.setdefault(f"the artifacts root of {source.name}", Path(root).parent)
    found: dict[str, Path] = {}
    for what, path in roots.items():
        for form in {Path(os.path.abspath(path)), path.resolve()}:
            if len(form.parts) > 1:  # "/" names no machine
                found.setdefault(f"{what} ({form})", form)
    return found


def machine_paths(folder: Path, roots: dict[str, Path]) -> list[str]:
    """Files below `folder` whose bytes hold one of `roots` as a whole path (`/root` does not
    match `/rootfs` nor `/x/root`): "file: what" lines."""
    patterns = [(what, re.compile(rb"(?<![\w.~/-])" + re.escape(os.fsencode(str(path))) + rb"(?=[/\\\"'\s:;,)\]]|$)")) for what, path in roots.items()]
    found = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        content = path.read_bytes()
        for what, pattern in patterns:
            if pattern.search(content):
                found.append(f"{path.relative_to(folder).as_posix()}: {what}")
    return found


def _archive_mtime() -> int:
    # Reproducible archives: same files -> same bytes. SOURCE_DATE_EPOCH is the convention.
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else 0


def write_archive(folder: Path, arc_root: str, dest: Path) -> None:
    """A gzip'd tar of `folder` under `arc_root/`, sorted, owner 0, fixed times."""
    mtime = _archive_mtime()
    paths = sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix())
    with open(dest, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=mtime) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in [folder] + paths:
                rel = path.relative_to(folder).as_posix()
                info = tar.gettarinfo(str(path), arcname=arc_root if rel == "." else f"{arc_root}/{rel}")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = mtime
                if path.is_dir():
                    info.mode = 0o755
                    tar.addfile(info)
                else:
                    info.mode = 0o644
                    with open(path, "rb") as f:
                        tar.addfile(info, f)


def _make_readable(root: Path) -> None:
    # Temp files and folders are created private (0600/0700); a published bundle is read by others.
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _file_record(root: Path, path: Path, kind: str, model: str | None = None) -> dict:
    return {"model": model, "target": None, "variant": None, "path": path.relative_to(root).as_posix(), "sha256": sha256_file(path), "bytes": path.stat().st_size, "kind": kind}


def find_previous_release(release_root: Path, exclude: str) -> Path | None:
    """The newest published release (by manifest time) other than `exclude`."""
    candidates = []
    if not release_root.is_dir():
        return None
    for child in release_root.iterdir():
        if child.name.startswith(".") or child.name == exclude or child.is_symlink() or not (child / "manifest.json").is_file():
            continue
        raw = read_own_file(child / "manifest.json")
        try:
            created = json.loads(raw).get("created", "") if raw is not None else None
        except (ValueError, AttributeError):
            continue
        if not isinstance(created, str):
            continue
        candidates.append((created, child.name, child))
    return max(candidates)[2] if candidates else None


def assemble_release(
    sources: list[ModelSource],
    version: str,
    release_root: Path,
    *,
    git: dict | None,
    ci_dir: Path | None = None,
    previous: Path | None = None,
    margins=None,
    allow_drift: bool = False,
    force: bool = False,
    origin: dict | None = None,
) -> Outcome:
    """Check, copy, report, archive, hash, then publish `release_root/<version>` atomically.

    Raises ReleaseRefused (nothing published; the CI reports still land in `ci_dir`)."""
    from pipeline.reports.diff import Margins, compare, load_reports, render_markdown
    from pipeline.reports.markdown import render_markdown as report_markdown
    from pipeline.reports.model import overall_status

    check_version(version)
    dest = release_root / version
    if dest.exists() and not force:
        raise ReleaseInputError(f"release {dest} already exists; choose another --version, or pass --force to replace it")
    versions = check_consistent_versions(sources)
    reports = [s.report for s in sources]
    excluded, refused, shipped = [], [], {}
    for source in sources:
        ship, left_out, why = plan(source)
        shipped[source.name] = ship
        excluded += left_out
        refused += why
    staged = staging_dir(release_root, version)
    try:
        files: list[dict] = []
        for source in sources:
            model_out = staged / source.name
            model_out.mkdir()
            for target in shipped[source.name]:
                files += _copy_target(source, target, model_out)
            report_file = model_out / "report.json"
            if source.report_bytes is not None:
                report_file.write_bytes(source.report_bytes)
            else:
                write_json_atomic(report_file, source.report)
            write_text_atomic(model_out / "report.md", source.report_md if source.report_md is not None else report_markdown(source.report))
            write_text_atomic(model_out / "junit.xml", junit_xml([source.report], suite_name=f"tfship {source.name}"))
            from pipeline.reports.html import render_html

            write_text_atomic(model_out / "report.html", render_html([source.report], f"tfship {source.name} {version}"))
            for name in ("report.json", "report.md", "junit.xml", "report.html"):
                files.append(_file_record(staged, model_out / name, "report", source.name))
        drift_lines: list[str] = []
        drift = None
        if previous is not None:
            result = compare(load_reports(previous), {s.name: s.report for s in sources}, margins or Margins())
            drift_lines = result.lines()
            drift = {"against": previous.name, "failing": len(result.failing), "lines": drift_lines}
            write_text_atomic(staged / "drift.md", render_markdown(result, previous.name, version))
            write_json_atomic(staged / "drift.json", {"against": previous.name, **result.to_json()})
            files += [_file_record(staged, staged / n, "drift") for n in ("drift.md", "drift.json")]
            if result.failing and not allow_drift:
                refused += [f"drift against release {previous.name}: {f.text()}" for f in result.failing]
        state = "refused" if refused else "published"
        summary_info = {"version": version, "state": state, "path": str(dest), "excluded": excluded, "refused": refused, "drift": drift_lines}
        if ci_dir is not None:
            write_ci_reports(reports, ci_dir, f"tfship release {version}", summary_info)
        if refused:
            where = f"\nCI reports (JUnit, summary, HTML): {ci_dir}" if ci_dir is not None else ""
            raise ReleaseRefused(f"release {version} refused, nothing published:\n  - " + "\n  - ".join(refused) + where)
        # The bundle's own summary does not name the folder it was built in.
        write_ci_reports(reports, staged, f"tfship release {version}", {**summary_info, "path": None})
        files += [_file_record(staged, staged / n, "report") for n in ("junit.xml", "summary.md", "report.html")]
        for source in sources:
            archive = staged / f"{source.name}-{version}.tar.gz"
            write_archive(staged / source.name, source.name, archive)
            files.append(_file_record(staged, archive, "archive", source.name))
        manifest = {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "version": version,
            "created": _now(),
            "git": git,
            "versions": versions,
            "status": overall_status({f"{s.name}/{t}": s.report["targets"][t] for s in sources for t in shipped[s.name]}) if any(shipped.values()) else "empty",
            "models": {
                s.name: {
                    "config_sha256": s.report.get("config_sha256"),
                    "config_file": s.report.get("config_file"),
                    "targets": {t: {"status": s.report["targets"][t]["status"], "optional": s.optional.get(t, False)} for t in shipped[s.name]},
                    "archive": f"{s.name}-{version}.tar.gz",
                }
                for s in sources
            },
            "excluded": excluded,
            "drift": drift,
            "files": sorted(files, key=lambda f: f["path"]),
        }
        if origin:
            manifest["origin"] = origin
        write_json_atomic(staged / "manifest.json", manifest)
        everything = sorted((p for p in staged.rglob("*") if p.is_file() and p.name != "SHA256SUMS"), key=lambda p: p.relative_to(staged).as_posix())
        sums = "".join(f"{sha256_file(p)}  {p.relative_to(staged).as_posix()}\n" for p in everything)
        write_text_atomic(staged / "SHA256SUMS", sums)
        named = machine_paths(staged, build_machine_roots(release_root, sources))
        if named:  # two machines would ship different bytes, and the bundle would say where it was built
            raise ReleaseRefused(
                f"release {version} refused, nothing published: these files hold a path of the machine that built them:\n  - "
                + "\n  - ".join(named)
                + "\nExpected portable files. Re-export with this tfship (its IR, harness and reports carry no machine paths), or drop the file."
            )
        _make_readable(staged)
        publish_dir(staged, dest)
        return Outcome(version, dest, manifest, ci_dir, drift_lines)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)


# ------------------------------------------------------------------- sources


def source_from_artifacts(config, artifacts: Path) -> ModelSource:
    """The model as `tfship export` left it in `artifacts/<model>/`."""
    model_dir = artifacts / config.name
    path = model_dir / "report.json"
    raw = read_own_file(path)  # never through a link: the report ships in the release
    if raw is None:
        raise ReleaseInputError(f"no report at {path}; run `tfship export --model {config.name}` (or `tfship release` without --skip-export)")
    report = json.loads(raw)
    if report.get("config_sha256") != config.sha256:
        raise ReleaseInputError(
            f"{path} was exported from another version of {config.file} (config sha256 {str(report.get('config_sha256'))[:12]}, now {config.sha256[:12]}); re-export the model"
        )
    roots = {t.name: model_dir for t in config.targets if (model_dir / t.name).is_dir()}
    return ModelSource(
        name=config.name,
        report=report,
        target_roots=roots,
        expected_targets=tuple(t.name for t in config.targets),
        optional={t.name: t.optional for t in config.targets},
        report_bytes=raw,
        report_md=report_md.decode("utf-8") if (report_md := read_own_file(model_dir / "report.md")) is not None else None,
        extra={"origin": str(model_dir)},
    )
