"""CI reports from real exports: JUnit XML, the Markdown summary and the HTML report
(rendered in headless Chromium when it is installed)."""
from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from pipeline.reports.junit import junit_xml
from pipeline.reports.markdown import markdown_summary
from pipeline.reports.html import error_histogram, render_html
from pipeline.parity import element_sample

FROZEN = """\
source:
  factory: fixture_models:traced_offset
inputs:
  - {name: x, shape: [null, 4], dtype: float32}
outputs: [y]
data:
  samples: 12
targets:
  - savedmodel
"""

TINY = """\
source:
  factory: fixture_models:tiny_keras3_classifier
inputs:
  - {name: x, shape: [null, 8], dtype: float32}
outputs: [probs]
data:
  inputs:
    x: {distribution: normal, mean: 0, std: 1}
  samples: 24
  classifier: probs
targets:
  - savedmodel
"""


def _cli(*args: str) -> int:
    from pipeline.cli import main

    return main(list(args))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """frozen (savedmodel fails parity: its traced graph adds -0.3 where the eager model adds +0.3) and
    tiny (a trained classifier that passes), exported once for this file."""
    root = tmp_path_factory.mktemp("ci")
    configs = root / "configs"
    configs.mkdir()
    (configs / "frozen.yaml").write_text(FROZEN)
    (configs / "tiny.yaml").write_text(TINY)
    artifacts = root / "artifacts"
    code = _cli("export", "--config-dir", str(configs), "--artifacts", str(artifacts))
    assert code == 1  # frozen fails
    reports = {m: json.loads((artifacts / m / "report.json").read_text()) for m in ("frozen", "tiny")}
    assert reports["frozen"]["targets"]["savedmodel"]["status"] == "failed"
    assert reports["tiny"]["targets"]["savedmodel"]["status"] == "passed"
    return root, configs, artifacts, reports


def test_junit_has_one_failing_case_per_failing_output(exported):
    root, configs, artifacts, reports = exported
    assert _cli("ci-report", "--config-dir", str(configs), "--artifacts", str(artifacts)) == 0
    tree = ET.parse(artifacts / "ci" / "junit.xml")  # a standard parser reads it
    suites = tree.getroot()
    assert suites.tag == "testsuites"
    assert (suites.get("tests"), suites.get("failures"), suites.get("errors")) == ("2", "1", "0")
    cases = {(c.get("classname"), c.get("name")): c for c in suites.iter("testcase")}
    assert set(cases) == {("frozen.savedmodel", "y"), ("tiny.savedmodel", "probs")}
    failure = cases[("frozen.savedmodel", "y")].find("failure")
    assert failure is not None and failure.get("type") == "parity"
    metrics = reports["frozen"]["targets"]["savedmodel"]["variants"]["default"]["parity"]["outputs"]["y"]
    assert f"max_abs={metrics['max_abs']:.6g}" in failure.text
    assert failure.get("message").startswith("y: max_abs")
    assert cases[("tiny.savedmodel", "probs")].find("failure") is None
    suite = {s.get("name"): s for s in suites.iter("testsuite")}
    assert suite["frozen"].get("failures") == "1" and suite["tiny"].get("failures") == "0"


def test_junit_counts_every_variant_and_output(exported):
    _, _, _, reports = exported
    report = json.loads(json.dumps(reports["tiny"]))
    entry = report["targets"]["savedmodel"]["variants"]["default"]
    # the shape targets with several artifacts report in (tflite float32/float16, ...)
    bad = json.loads(json.dumps(entry))
    bad["parity"]["outputs"]["probs"]["passed"] = False
    bad["parity"]["failures"] = ["probs: max_abs 0.2 > atol 0.001"]
    bad["status"] = "failed"
    report["targets"]["multi"] = {"status": "failed", "files": [], "variants": {"a": entry, "b": bad}}
    report["targets"]["broken"] = {"status": "error", "error": "ConversionError", "message": "converter crashed on op Foo", "variants": {}}
    root = ET.fromstring(junit_xml([report]))
    names = sorted((c.get("classname"), c.get("name"), [e.tag for e in c if e.tag in ("failure", "error")]) for c in root.iter("testcase"))
    assert names == [
        ("tiny.broken", "probs", ["error"]),
        ("tiny.multi.a", "probs", []),
        ("tiny.multi.b", "probs", ["failure"]),
        ("tiny.savedmodel", "probs", []),
    ]
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "1", "1")


def test_markdown_summary_names_the_failure(exported):
    _, _, artifacts, reports = exported
    text = (artifacts / "ci" / "summary.md").read_text()
    assert text.startswith("## tfship parity")
    assert "**failed**" in text
    assert "| frozen | savedmodel | ❌ failed | y |" in text
    assert "| tiny | savedmodel | ✅ passed | probs |" in text
    failure = reports["frozen"]["targets"]["savedmodel"]["variants"]["default"]["parity"]["failures"][0]
    assert f"**frozen savedmodel** failed: {failure}" in text
    release = {"version": "9", "state": "refused", "refused": ["frozen savedmodel: failed"], "excluded": []}
    assert "### Why the release was refused\n\n- frozen savedmodel: failed" in markdown_summary(list(reports.values()), release=release)


def _real_sample(artifacts: Path, config_dir: Path) -> tuple[dict, np.ndarray]:
    """Eager traced_offset vs its exported SavedModel on the same inputs: real arrays."""
    import tensorflow as tf

    import fixture_models

    x = np.random.default_rng(3).uniform(-1, 1, size=(64, 4)).astype(np.float32)
    served = tf.saved_model.load(str(artifacts / "frozen" / "savedmodel" / "1")).signatures["serving_default"]
    out = served(x=tf.constant(x))["y"].numpy()
    model = fixture_models.traced_offset()
    ref = np.concatenate([model(tf.constant(x[i : i + 8])).numpy() for i in range(0, 64, 8)])
    return element_sample([ref], [out], limit=128), np.abs(out - ref)


def test_element_sample_is_bounded_and_keeps_the_worst_element():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 30)).astype(np.float32)
    out = ref + rng.normal(scale=1e-6, size=ref.shape).astype(np.float32)
    out[17, 3] += 0.5
    sample = element_sample([ref[:20], ref[20:]], [out[:20], out[20:]], limit=100)
    assert sample["total"] == 1500 and len(sample["ref"]) == len(sample["out"]) <= 100
    worst = max(abs(o - r) for r, o in zip(sample["ref"], sample["out"]))
    assert worst == pytest.approx(float(np.abs(out - ref).max()), rel=1e-6)
    assert float(np.float32(sample["ref"][0])) == float(ref[0, 0])  # float32 values round-trip exactly


def test_histogram_marks_tolerance_and_counts_exact_matches():
    errors = [0.0] * 5 + [1e-7] * 10 + [3e-4] * 2
    svg = error_histogram(errors, atol=1e-5, rtol=0.0, ref_abs_max=1.0, title="t")
    ET.fromstring(svg)  # well-formed XML
    assert "<title>5 exact (0)</title>" in svg
    assert "atol 1e-05" in svg
    assert svg.count('fill="#c62828"') == 1  # the 3e-4 bin is beyond the tolerance: red
    assert "<title>10 in [" in svg and "<title>2 in [" in svg


def test_html_is_self_contained_and_renders(exported, tmp_path):
    root, configs, artifacts, reports = exported
    frozen = json.loads(json.dumps(reports["frozen"]))
    sample, errors = _real_sample(artifacts, configs)
    frozen["targets"]["savedmodel"]["variants"]["default"]["parity"]["outputs"]["y"]["sample"] = sample
    assert _cli("bench", "--config-dir", str(configs), "--artifacts", str(artifacts), "--model", "tiny", "--max-seconds", "0.2", "--batch", "8") == 0
    tiny = json.loads((artifacts / "tiny" / "report.json").read_text())
    speedups = tiny["targets"]["savedmodel"]["variants"]["default"]["benchmark"]["batches"]
    page = render_html([frozen, tiny], "tfship test report")
    path = tmp_path / "report.html"
    path.write_text(page)
    lowered = page.lower()
    for forbidden in ("<script", "<link", "@import", "url(", "src=", 'href="http', "https://"):
        assert forbidden not in lowered, forbidden
    assert lowered.count("http://") == lowered.count('xmlns="http://www.w3.org/2000/svg"')  # only the SVG namespace
    # frozen and tiny: histogram + scatter each (from the element sample); tiny: speedups;
    # frozen (failed): its error by layer depth
    assert page.count("<svg") == 6
    assert "savedmodel: error by layer depth" in page
    assert "tiny: speedup over eager (p50)" in page
    for batch in ("1", "8"):
        assert f"savedmodel batch {batch}: {speedups[batch]['speedup_vs_eager']:.3g}× eager" in page
    assert "y: |error| vs tolerance" in page and "y: reference vs artifact" in page
    assert "probs: |error| vs tolerance" in page and "probs: reference vs artifact" in page
    assert sample["total"] == 256 and len(sample["ref"]) <= 128 and float(np.max(errors)) > 1e-3  # the traced graph really differs

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("headless rendering check needs Chromium (apt-get install chromium); the HTML checks above ran")
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--hide-scrollbars",
         "--window-size=1200,1400", f"--screenshot={shot}", path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    import tensorflow as tf

    pixels = tf.io.decode_png(shot.read_bytes(), channels=3).numpy().astype(int)
    assert pixels.shape[:2] == (1400, 1200)

    def count(hex_colour: str, slack: int = 40) -> int:
        rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
        return int(np.sum(np.all(np.abs(pixels - rgb) <= slack, axis=-1)))

    # The plots were drawn: red histogram bars (errors beyond atol), blue scatter points.
    assert count("#c62828") > 200
    assert count("#1565c0", slack=70) > 100
