"""Faults during a full `--target all` export: kill -9 (parent and workers) at 12 moments and
Ctrl-C at 3, each followed by `validate` and the next export.

After each interruption `validate` must pass, or name exactly the targets whose folder holds
an export report.json does not record; the next export must restore a consistent state (every
recorded file matches, no stale target, no staging or trash folder left, no lock held) and
`validate` must then pass. Plus: a read-only artifacts folder and a full disk (both need a
tmpfs mount, so root) give one clear line and leave the previous artifacts intact.

Slow (each moment is a partial export, a validate and a recovery export): marked heavy.
Run with `-s` to see the table of what each moment showed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.heavy

REPO = Path(__file__).resolve().parent.parent

CONFIG = """\
source:
  factory: examples.affine:build
inputs:
  - {name: x, shape: [null, 4], dtype: float32}
outputs: [y]
data:
  samples: 16
targets:
  - savedmodel
  - {name: onnx, opset: 17, optimize: true}
  - {name: tflite, variants: [float32, float16, dynamic_range]}
  - xla
  - tpu
"""

# (name, signal, event the kill waits for, seconds after it). Events are lines the export
# prints: 'start' = the process started; 'building' = the worker began; '<target>:' = that
# target's verdict line (its entry is on its way to the parent, which publishes and records it).
MOMENTS = [
    ("parent starting", signal.SIGKILL, "start", 0.3),
    ("worker importing TensorFlow", signal.SIGKILL, "] building", 0.2),
    ("worker tracing the model", signal.SIGKILL, "] building", 4.0),
    ("savedmodel verdict just printed", signal.SIGKILL, "] savedmodel:", 0.0),
    ("onnx converting", signal.SIGKILL, "] savedmodel:", 1.0),
    ("onnx verdict just printed", signal.SIGKILL, "] onnx/optimized:", 0.0),
    ("tflite converting", signal.SIGKILL, "] onnx/optimized:", 1.0),
    ("tflite variant verdicts printing", signal.SIGKILL, "] tflite/float16:", 0.0),
    ("xla compiling", signal.SIGKILL, "] tflite/dynamic_range:", 0.5),
    ("xla verdict just printed", signal.SIGKILL, "] xla", 0.0),
    ("tpu checking", signal.SIGKILL, "] xla", 0.5),
    ("last verdict, final report write", signal.SIGKILL, "] tpu", 0.0),
    ("Ctrl-C while tracing", signal.SIGINT, "] building", 4.0),
    ("Ctrl-C right after a verdict", signal.SIGINT, "] onnx/optimized:", 0.0),
    ("Ctrl-C while converting tflite", signal.SIGINT, "] onnx/optimized:", 1.5),
]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]), TF_CPP_MIN_LOG_LEVEL="2")


def _command(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", args[0], "--config-dir", str(root / "configs" / "models"), "--artifacts", str(root / "artifacts"), *args[1:]]


def _run(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(root, *args), capture_output=True, text=True, env=_env(), cwd=str(REPO), timeout=1200)


def _interrupt(root: Path, sig: int, event: str, delay: float) -> tuple[bool, str]:
    """Start `export --force --target all`; send `sig` to its whole process group `delay` s after
    the first line containing `event`. Returns (whether it was still running when hit, its stderr)."""
    proc = subprocess.Popen(_command(root, "export", "--force", "--target", "all"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=_env(), cwd=str(REPO), start_new_session=True)
    lines: list[str] = []
    seen = threading.Event()
    if event == "start":
        seen.set()

    def reader() -> None:
        for line in proc.stderr:
            lines.append(line)
            if event in line:
                seen.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    hit = False
    while proc.poll() is None:
        if seen.wait(timeout=0.05):
            time.sleep(delay)
            if proc.poll() is None:
                os.killpg(proc.pid, sig)
                hit = True
            break
    if sig == signal.SIGKILL:
        proc.wait(timeout=60)
    else:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    thread.join(timeout=10)
    _wait_for_group_gone(proc.pid)
    return hit, "".join(lines)


def _wait_for_group_gone(pgid: int, timeout: float = 60) -> None:
    """Workers die with their parent (PR_SET_PDEATHSIG); wait until none is left."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"processes of group {pgid} outlived their parent")


def _consistency(model_dir: Path) -> list[str]:
    """Problems a consistent artifacts folder must not have (no TensorFlow needed)."""
    from pipeline.publication import stale_targets
    from pipeline.reports.model import read_report, verify_files

    report = read_report(model_dir)
    if report is None:
        return ["no readable report.json"]
    problems = [f"stale {name}: {why}" for name, why in stale_targets(model_dir, report).items()]
    problems += verify_files(model_dir, report)
    problems += [str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.name.startswith((".staging-", ".trash-", ".report."))]
    if (model_dir.parent / f".{model_dir.name}.lock").exists():
        problems.append("lock file left")
    return problems


def test_kill_and_ctrl_c_at_every_moment_leave_a_consistent_or_clearly_stale_state(tmp_path):
    root = tmp_path
    (root / "configs" / "models").mkdir(parents=True)
    (root / "configs" / "models" / "m.yaml").write_text(CONFIG)
    model_dir = root / "artifacts" / "m"
    first = _run(root, "export", "--target", "all")
    assert first.returncode == 0, first.stderr[-3000:]
    assert _consistency(model_dir) == []
    rows = []
    for name, sig, event, delay in MOMENTS:
        hit, err = _interrupt(root, sig, event, delay)
        assert "Traceback" not in err, err[-3000:]
        before = json.loads((model_dir / "report.json").read_text())
        validate = _run(root, "validate")
        said = validate.stdout + validate.stderr
        assert "Traceback" not in said, said[-3000:]
        stale_line = next((line for line in said.splitlines() if "report.json is stale for" in line), "")
        if validate.returncode != 0:
            # Not consistent: validate must say exactly which target is stale, nothing else.
            assert stale_line, f"{name}: validate failed (exit {validate.returncode}) without naming a stale target:\n{said[-3000:]}"
        stale = stale_line.split("report.json is stale for ", 1)[1].split(":")[0].split(";")[0] if stale_line else ""
        recover = _run(root, "export", "--target", "all")
        assert recover.returncode == 0, f"{name}: {recover.stderr[-3000:]}"
        assert "Traceback" not in recover.stderr + recover.stdout
        problems = _consistency(model_dir)
        assert problems == [], f"{name}: {problems}"
        after = json.loads((model_dir / "report.json").read_text())
        rebuilt = after["run"]["rebuilt"]
        recovered = [line.split("recovered from an interrupted run: ", 1)[1] for line in recover.stderr.splitlines() if "recovered from an interrupted run" in line]
        rows.append((name, signal.Signals(sig).name, hit, validate.returncode, stale or "-", ", ".join(recovered) or "-", ", ".join(rebuilt) or "-", before["run"].get("state")))
        print(" | ".join(str(c) for c in rows[-1]), file=sys.stderr, flush=True)
    final = _run(root, "validate")
    assert final.returncode == 0, final.stderr[-3000:]
    print("\nmoment | signal | hit while running | validate exit | stale targets named | recovery by next export | rebuilt by next export | report state after the interruption")
    for row in rows:
        print(" | ".join(str(c) for c in row))
    assert sum(1 for r in rows if r[1] == "SIGKILL" and r[2]) >= 10 and sum(1 for r in rows if r[1] == "SIGINT" and r[2]) >= 3


# ---------------------------------------------------------------------------- full disk, read-only


def _can_mount() -> bool:
    return os.geteuid() == 0 and subprocess.run(["which", "mount"], capture_output=True).returncode == 0


SMALL = """\
source:
  factory: examples.affine:build
inputs:
  - {name: x, shape: [null, 4], dtype: float32}
outputs: [y]
data:
  samples: 8
targets: [savedmodel]
"""


@pytest.fixture
def tmpfs(tmp_path):
    if not _can_mount():
        pytest.skip("needs root to mount a small tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _project(tmp_path: Path, artifacts: Path) -> list[str]:
    config_dir = tmp_path / "configs" / "models"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "m.yaml").write_text(SMALL)
    return ["--config-dir", str(config_dir), "--artifacts", str(artifacts)]


def _tfship(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, env=_env(), cwd=str(REPO), timeout=600)


def test_a_full_disk_is_one_line_exit_1_and_the_previous_artifacts_stay(tmp_path, tmpfs):
    args = _project(tmp_path, tmpfs / "artifacts")
    assert _tfship("export", *args).returncode == 0
    before = _snapshot(tmpfs / "artifacts")
    filler = tmpfs / "filler"
    with open(filler, "wb") as f:  # leave a few KiB: the export starts, then runs out of space
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    os.truncate(filler, max(filler.stat().st_size - 16384, 0))
    result = _tfship("export", "--force", *args)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:") or "no space left" in line]
    assert errors and all("no space left on the device" in line for line in errors), result.stderr[-3000:]
    filler.unlink()
    after = _snapshot(tmpfs / "artifacts")
    assert {p: b for p, b in after.items() if p.name != "worker.log"} == {p: b for p, b in before.items() if p.name != "worker.log"}
    assert _tfship("validate", *args).returncode == 0


def test_a_read_only_artifacts_folder_is_one_line_exit_2_and_nothing_changes(tmp_path, tmpfs):
    args = _project(tmp_path, tmpfs / "artifacts")
    assert _tfship("export", *args).returncode == 0
    before = _snapshot(tmpfs / "artifacts")
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    result = _tfship("export", "--force", *args)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any("Read-only file system" in line and "--artifacts" in line for line in lines), result.stderr
    assert _snapshot(tmpfs / "artifacts") == before
