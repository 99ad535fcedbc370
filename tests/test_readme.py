"""The README's Python API example runs as written, in a fresh process."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_python_api_example_runs(tmp_path):
    code = _example()
    assert "tfship.export(model" in code
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "tfship export of 'quickstart': passed (exit 0)" in out
    assert re.search(r"quickstart\s+tflite/float32\s+passed", out)
    assert "precision: float32" in out and "runs in tfship (LiteRT (ai_edge_litert)): yes" in out
    assert re.search(r"onnx\s+probs\s+pass", out)
    assert (tmp_path / "artifacts" / "quickstart" / "report.html").is_file()
    assert (tmp_path / "artifacts" / "quickstart" / ".source" / "model.yaml").is_file()
