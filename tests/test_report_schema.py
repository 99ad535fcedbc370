"""One report shape: every target has `variants`, the JSON Schema published with the
package describes what export writes, and reports of the first shape are upgraded."""
from __future__ import annotations

import json

import jsonschema
import pytest

from pipeline.reports.model import read_report
from pipeline.reports.shape import SCHEMA_PATH, Report, upgrade, validate_report
from pipeline.reports.records import iter_records
from conftest import AFFINE_HEAD

AFFINE = AFFINE_HEAD + """\
  - savedmodel
  - {name: tflite, variants: [float32, float16]}
"""


def test_every_target_has_variants_and_the_report_validates(project):
    project.config("affine", AFFINE)
    assert project.run("export").code == 0
    report = project.report("affine")  # validates against schema.json
    assert report["schema_version"] == 2
    saved = report["targets"]["savedmodel"]
    assert list(saved["variants"]) == ["default"] and saved["variants"]["default"]["artifact"]["variant"] == ""
    assert "parity" not in saved and "artifact" not in saved  # no flattened single-artifact fields
    assert set(report["targets"]["tflite"]["variants"]) == {"float32", "float16"}
    for entry in report["targets"].values():
        for record in entry["variants"].values():
            assert "info" in record and "info" not in record["artifact"]  # written once
    labels = [r.label for r in iter_records(report)]
    assert labels == ["savedmodel", "tflite/float16", "tflite/float32"]
    typed = Report.from_json(report)
    assert typed.to_json() == report  # encode(decode(x)) == x
    assert typed.targets["savedmodel"].label("default") == "savedmodel"


def test_the_schema_rejects_the_old_flat_shape_and_an_unknown_status():
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    base = {
        "schema_version": 2, "model": "m", "config_file": "m.yaml", "config_sha256": "0" * 64, "versions": {},
        "created": "2026-01-01T00:00:00+00:00", "updated": "2026-01-01T00:00:00+00:00", "status": "passed",
        "run": {"started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:00:01+00:00", "targets": [], "rebuilt": [], "reused": []},
    }
    variant = {"status": "passed", "artifact": {"variant": "", "files": ["1"], "tolerance": {}}, "files": [], "info": {}}
    validate_report({**base, "targets": {"savedmodel": {"status": "passed", "variants": {"default": variant}}}})
    with pytest.raises(jsonschema.ValidationError):
        validate_report({**base, "targets": {"savedmodel": {"status": "passed", "artifact": variant["artifact"], "files": []}}})
    with pytest.raises(jsonschema.ValidationError):
        validate_report({**base, "targets": {"savedmodel": {"status": "passed", "variants": {}}}})
    with pytest.raises(jsonschema.ValidationError):
        validate_report({**base, "targets": {"savedmodel": {"status": "warning", "variants": {"default": variant}}}})
    validate_report({**base, "targets": {"onnx": {"status": "error", "error": "ConversionError", "message": "m", "variants": {}}}})


def test_a_report_of_the_first_shape_is_upgraded_when_read(tmp_path):
    files = [{"path": "savedmodel/1/saved_model.pb", "sha256": "a" * 64, "bytes": 3}]
    old = {
        "schema_version": 1, "model": "m", "config_file": "m.yaml", "config_sha256": "0" * 64, "versions": {},
        "created": "2026-01-01T00:00:00+00:00", "updated": "2026-01-01T00:00:00+00:00", "status": "passed",
        "run": {"started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:00:01+00:00", "targets": ["savedmodel"], "rebuilt": [], "reused": []},
        "targets": {
            "savedmodel": {
                "status": "passed", "files": files, "bytes": 3, "cache_key": "k",
                "artifact": {"variant": "", "files": ["1"], "tolerance": {"atol": 1e-5}, "info": {"version": 1}},
                "info": {"version": 1}, "parity": {"passed": True, "outputs": {"y": {"max_abs": 0.0}}},
            },
            "onnx": {"status": "error", "error": "ConversionError", "message": "no", "exit_code": 1},
        },
    }
    folder = tmp_path / "schema1"  # a fixture of the old shape: the session's schema check skips it
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps(old))
    report = read_report(folder)
    validate_report(report)
    saved = report["targets"]["savedmodel"]
    assert saved["cache_key"] == "k" and saved["files"] == files
    assert saved["variants"]["default"]["parity"]["outputs"]["y"]["max_abs"] == 0.0
    assert saved["variants"]["default"]["info"] == {"version": 1}
    assert report["targets"]["onnx"]["variants"] == {}
    assert [r.label for r in iter_records(old)] == [r.label for r in iter_records(report)] == ["onnx", "savedmodel"]
    assert upgrade(report) is report  # already current
