"""One line per target and variant: status, worst max_abs, and the whole reason."""
from __future__ import annotations

from pipeline.reports.verdict_lines import report_verdicts, summary_table

LONG = "y: max_abs 0.5 > atol 0.001 (+ rtol 0*|ref|) on 40 of 64 elements (62.50%); max_rel 3.2, cosine 0.91; " + "x" * 120

REPORT = {
    "model": "audio",
    "targets": {
        "savedmodel": {"status": "passed", "parity": {"outputs": {"y": {"max_abs": 1e-7}}, "weak_evidence": {"y": "near-constant"}}},
        "tflite": {
            "status": "failed",
            "variants": {
                "float32": {"status": "passed", "parity": {"outputs": {"y": {"max_abs": 2e-6}}}},
                "int8": {
                    "status": "failed",
                    "parity": {"outputs": {"y": {"max_abs": 0.5}}, "failures": [LONG]},
                    "diagnosis": {"quantization_debugger": {
                        "worst_layers": [{"layer": "log_mel", "op": "LOG", "rmse_over_scale": 7.1, "rounded_to_zero": 0.6}],
                        "suggested_fix": "keep the damaged layers in float",
                    }},
                },
            },
        },
        "onnx": {"status": "error", "message": "tf2onnx failed on op Foo\nsecond line"},
    },
}


def test_every_variant_has_its_reason_in_one_line():
    verdicts = {v.target: v for v in report_verdicts(REPORT)}
    assert set(verdicts) == {"savedmodel", "tflite/float32", "tflite/int8", "onnx"}
    assert verdicts["onnx"].reason == "tf2onnx failed on op Foo"
    int8 = verdicts["tflite/int8"].line_reason()
    assert LONG in int8  # never cut
    assert "quantization debugger: worst layer log_mel (LOG, RMSE/scale 7.1" in int8 and "fix: keep the damaged layers in float" in int8
    assert "weak evidence: y near-constant" in verdicts["savedmodel"].line_reason()
    assert not verdicts["savedmodel"].fails() and verdicts["savedmodel"].fails(strict=True)
    assert "(fails: --strict)" in verdicts["savedmodel"].line_reason(strict=True)


def test_summary_columns_line_up():
    lines = summary_table(report_verdicts(REPORT)).splitlines()
    assert lines[0].split() == ["model", "target", "status", "max_abs", "reason"]
    starts = [lines[0].index(h) for h in ("target", "status", "max_abs", "reason")]
    for line in lines[1:]:
        for start in starts:
            if len(line) > start:  # a pass has no reason: its line ends after max_abs
                assert line[start - 2 : start] == "  " and line[start] != " ", line  # each column starts at its header
    assert all("\n" not in line for line in lines) and len(lines) == 5


def test_report_md_keeps_whole_reasons_and_the_diagnosis():
    from pipeline.reports.markdown import render_markdown

    report = dict(REPORT, status="failed", updated="now", config_sha256="0" * 64, versions={"python": "3"})
    report["targets"] = dict(REPORT["targets"], onnx={"status": "error", "message": "tf2onnx failed: " + "y" * 200 + "\nsecond line"})
    md = render_markdown(report)
    assert "tf2onnx failed: " + "y" * 200 in md  # not cut at 120 characters
    assert LONG.replace("|", "\\|") in md  # the failure, whole, in the verdict table
    assert "## Diagnosis" in md and "### tflite/int8: quantization debugger" in md
    assert "| log_mel |" in md and "Fix: keep the damaged layers in float" in md
    assert "weak evidence: y near-constant" in md
    assert md.index("| target | status | max_abs | reason |") < md.index("## Parity")
