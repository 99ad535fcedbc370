"""JUnit XML from reports: a testsuite per model, a testcase per target x variant x
output, so any CI shows parity in its test view; a failing output carries its metrics."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from pipeline.reports.records import Record, classifier_output, fmt, iter_records, metrics_text, output_failed, output_names


def _failure_message(record: Record, output: str) -> str:
    for failure in record.parity.get("failures") or []:
        if failure.split(":", 1)[0] == output:
            return failure
    metrics = record.outputs.get(output) or {}
    return metrics.get("error") or f"{output}: parity failed (max_abs {fmt(metrics.get('max_abs'))}, atol {fmt(metrics.get('atol'))})"


def junit_xml(reports: list[dict], suite_name: str = "tfship") -> str:
    """JUnit XML: a testsuite per model, a testcase per target x variant x output.

    classname is `<model>.<target>[.<variant>]`, name is the output. A target that
    errored before parity (conversion failed, model unusable) gets one `<error>`
    case per model output; a skipped target gets `<skipped>` cases.
    """
    root = ET.Element("testsuites", name=suite_name)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for report in sorted(reports, key=lambda r: r.get("model", "")):
        model = report.get("model", "?")
        suite = ET.SubElement(root, "testsuite", name=model)
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        seconds = 0.0
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="config_sha256", value=str(report.get("config_sha256", "")))
        for key, version in sorted((report.get("versions") or {}).items()):
            ET.SubElement(props, "property", name=f"version.{key}", value=str(version))
        names = output_names(report)
        counted_targets = set()
        for record in iter_records(report):
            if record.target not in counted_targets:
                timings = record.target_entry.get("timings") or {}
                seconds += float(timings.get("build_s") or 0.0) + float(timings.get("parity_s") or 0.0)
                counted_targets.add(record.target)
            classname = f"{model}.{record.target}" + (f".{record.variant}" if record.variant else "")
            optional = bool(record.target_entry.get("optional"))
            outputs = list(record.outputs) or names or ["(target)"]
            for output in outputs:
                case = ET.SubElement(suite, "testcase", classname=classname, name=output)
                counts["tests"] += 1
                if optional:
                    case_props = ET.SubElement(case, "properties")
                    ET.SubElement(case_props, "property", name="optional", value="true")
                status = record.status
                if status == "skipped":
                    ET.SubElement(case, "skipped", message=record.target_entry.get("message", "target skipped"))
                    counts["skipped"] += 1
                elif status == "error" or (not record.outputs and status != "passed"):
                    message = record.entry.get("message") or record.target_entry.get("message") or f"{record.label}: error"
                    err = ET.SubElement(case, "error", message=message.splitlines()[0][:500], type=record.target_entry.get("error", "error"))
                    err.text = message + ("\n" + record.target_entry["traceback_tail"] if record.target_entry.get("traceback_tail") else "")
                    counts["errors"] += 1
                elif output_failed(record, output):
                    metrics = record.outputs.get(output) or {}
                    classifier = record.parity.get("classifier") if classifier_output(record) == output else None
                    fail = ET.SubElement(case, "failure", message=_failure_message(record, output)[:500], type="parity")
                    fail.text = metrics_text(metrics, classifier)
                    diagnosis = record.entry.get("diagnosis")
                    if diagnosis:
                        fail.text += f"\ndiagnosis: {diagnosis}"
                    counts["failures"] += 1
                else:
                    out = ET.SubElement(case, "system-out")
                    out.text = metrics_text(record.outputs.get(output) or {})
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", f"{seconds:.3f}")
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
