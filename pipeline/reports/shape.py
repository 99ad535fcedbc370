"""The report's shape: typed records with JSON encode/decode, and the upgrade of older reports.

One shape (schema_version 2, pipeline/reports/schema.json): every target entry has
`variants`, {name: variant record}; a target with one artifact has one variant,
`default`, whose `artifact.variant` is "" (an entry that errored before building has
none). Target fields: status, files (every variant's), timings, started, finished,
optional, rebuilt, cache_key, and for errors error, exit_code, message. Variant fields:
status, artifact {variant, files, tolerance}, files, bytes, info, parity, diagnosis,
benchmark, repair, message. Reports of schema 1 (single artifacts flattened into the
target) are upgraded when read.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_VERSION = 2
SCHEMA_PATH = Path(__file__).with_name("schema.json")
DEFAULT_VARIANT = "default"  # the key of a target's unnamed artifact
# Fields of a schema-1 single-artifact entry that belong to its one variant.
VARIANT_FIELDS = ("artifact", "bytes", "info", "parity", "diagnosis", "benchmark", "repair")


def target_entry(entry: dict) -> dict:
    """A target entry in the one shape: single-artifact fields moved under `variants`."""
    if "variants" in entry:
        return entry
    entry = dict(entry)
    if "artifact" not in entry:  # errored before any artifact existed
        entry["variants"] = {}
        return entry
    variant = {k: entry.pop(k) for k in VARIANT_FIELDS if k in entry}
    variant["artifact"] = {k: v for k, v in variant["artifact"].items() if k != "info"}
    variant.setdefault("info", entry.get("info", {}))
    entry.pop("info", None)
    variant["status"] = entry.get("status")
    variant["files"] = entry.get("files", [])
    if "message" in entry and entry.get("status") == "skipped":
        variant["message"] = entry["message"]
    entry["variants"] = {DEFAULT_VARIANT: variant}
    return entry


def upgrade(report: dict) -> dict:
    """Any report this code wrote, in the current shape (schema 1 -> 2)."""
    if not isinstance(report, dict) or report.get("schema_version", SCHEMA_VERSION) >= SCHEMA_VERSION:
        return report
    report = dict(report, schema_version=SCHEMA_VERSION)
    report["targets"] = {name: target_entry(entry) for name, entry in (report.get("targets") or {}).items()}
    return report


def variant_label(target: str, key: str, record: dict) -> str:
    """`target` for a target's only, unnamed artifact; `target/variant` otherwise."""
    return target if key == DEFAULT_VARIANT and (record.get("artifact") or {}).get("variant", "") == "" else f"{target}/{key}"


# --------------------------------------------------------------------------- typed model


@dataclass(frozen=True)
class VariantRecord:
    """One artifact of a target and what was found about it."""

    name: str  # the key under `variants`
    status: str
    artifact: dict
    files: tuple[dict, ...] = ()
    bytes: int = 0
    info: dict = field(default_factory=dict)
    parity: dict | None = None
    extra: dict = field(default_factory=dict)  # diagnosis, benchmark, repair, message

    @classmethod
    def from_json(cls, name: str, raw: dict) -> "VariantRecord":
        known = {"status", "artifact", "files", "bytes", "info", "parity"}
        return cls(name, raw.get("status", "error"), raw.get("artifact") or {}, tuple(raw.get("files") or ()), int(raw.get("bytes") or 0),
                   raw.get("info") or {}, raw.get("parity"), {k: v for k, v in raw.items() if k not in known})

    def to_json(self) -> dict:
        out = {"status": self.status, "artifact": self.artifact, "files": list(self.files), "bytes": self.bytes, "info": self.info}
        if self.parity is not None:
            out["parity"] = self.parity
        return {**out, **self.extra}


@dataclass(frozen=True)
class TargetRecord:
    """One target of a model: its status, its files and its variants (at least one once built)."""

    name: str
    status: str
    variants: dict[str, VariantRecord]
    files: tuple[dict, ...] = ()
    extra: dict = field(default_factory=dict)  # timings, started, finished, optional, rebuilt, cache_key, error, message

    @classmethod
    def from_json(cls, name: str, raw: dict) -> "TargetRecord":
        raw = target_entry(raw)
        variants = {k: VariantRecord.from_json(k, v) for k, v in (raw.get("variants") or {}).items()}
        known = {"status", "variants", "files"}
        return cls(name, raw.get("status", "error"), variants, tuple(raw.get("files") or ()), {k: v for k, v in raw.items() if k not in known})

    def to_json(self) -> dict:
        return {"status": self.status, "files": list(self.files), "variants": {k: v.to_json() for k, v in self.variants.items()}, **self.extra}

    def label(self, variant: str) -> str:
        return variant_label(self.name, variant, self.variants[variant].to_json())


@dataclass(frozen=True)
class Report:
    """A model's report.json, typed; `extra` keeps every other top-level field as written."""

    model: str
    status: str
    targets: dict[str, TargetRecord]
    extra: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_json(cls, raw: dict) -> "Report":
        raw = upgrade(raw)
        known = {"model", "status", "targets", "schema_version"}
        targets = {k: TargetRecord.from_json(k, v) for k, v in (raw.get("targets") or {}).items()}
        return cls(raw.get("model", "?"), raw.get("status", "error"), targets, {k: v for k, v in raw.items() if k not in known}, raw.get("schema_version", SCHEMA_VERSION))

    def to_json(self) -> dict:
        return {"schema_version": self.schema_version, "model": self.model, **self.extra, "status": self.status, "targets": {k: v.to_json() for k, v in self.targets.items()}}


def validate_report(report: dict) -> None:
    """Raise jsonschema.ValidationError when `report` does not match schema.json."""
    import jsonschema

    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
