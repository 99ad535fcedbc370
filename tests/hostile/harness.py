"""Run one hostile case as its own `tfship` process and measure it.

Each case runs in a fresh process in a new session; the parent polls the resident memory
of the whole session (workers included) and kills it past a watchdog limit or a timeout,
so a regression cannot take the machine down. The peak is the larger of the polled total
and the process's own high-water mark (VmHWM), which it writes when it exits. (`wait4`'s
ru_maxrss would not do: Linux carries the parent's peak across fork and exec into it.)
"""
from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
# `python -m pipeline.cli`, plus: at exit, write this process's peak resident memory.
_BOOT = """
import atexit, os, sys

def _peak():
    with open("/proc/self/status") as status:
        kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["HOSTILE_PEAK_FILE"], "w") as out:
        out.write(kb)

atexit.register(_peak)
from pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Outcome:
    code: int | None  # None: killed by the watchdog or the timeout
    seconds: float
    peak_mb: float
    out: str
    err: str
    killed: str = ""  # why the watchdog stopped it


def _session_rss_kb(sid: int) -> int:
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid:  # field 6 of stat: session id
                continue
            with open(f"/proc/{entry.name}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (OSError, IndexError, ValueError):
            continue
    return total


def run_tfship(argv: list[str], cwd: Path, *, timeout: float = 60.0, rss_limit_mb: float = 3000.0, code_root: Path | None = None) -> Outcome:
    """`tfship <argv>` in `cwd`; killed (with its workers) past `timeout` s or `rss_limit_mb` resident.
    `code_root`: run the `pipeline` package of another checkout (e.g. to measure older code)."""
    path = ([str(code_root)] if code_root else []) + [str(TESTS), str(cwd)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), PYTHONDONTWRITEBYTECODE="1", TF_CPP_MIN_LOG_LEVEL="2", NO_COLOR="1")
    out_path, err_path, peak_path = (cwd.parent / f".{cwd.name}.{kind}" for kind in ("out", "err", "peak"))
    env["HOSTILE_PEAK_FILE"] = str(peak_path)
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", _BOOT, *argv], cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    peak_kb, killed, status = 0, "", None
    while status is None:
        pid, raw = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            status = raw
            break
        peak_kb = max(peak_kb, _session_rss_kb(proc.pid))
        elapsed = time.perf_counter() - start
        if not killed and (elapsed > timeout or peak_kb > rss_limit_mb * 1024):
            killed = f"timeout {timeout:.0f} s" if elapsed > timeout else f"resident memory over {rss_limit_mb:.0f} MB"
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # workers left behind by a killed run
    except ProcessLookupError:
        pass
    own_kb = int(peak_path.read_text()) if peak_path.is_file() else 0
    peak_mb = max(peak_kb, own_kb) / 1024.0
    text_out = out_path.read_text(errors="replace")
    text_err = err_path.read_text(errors="replace")
    for path in (out_path, err_path, peak_path):
        path.unlink(missing_ok=True)
    return Outcome(None if killed else proc.returncode, seconds, peak_mb, text_out, text_err, killed)


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under `root` (links not followed): type, mode, and content or link target."""
    found: dict[str, str] = {}
    if not os.path.lexists(root):
        return found
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            info = os.lstat(path)
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(info.st_mode):
                found[rel] = f"link -> {os.readlink(path)}"
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = f"dir {oct(info.st_mode & 0o7777)}"
            elif stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if info.st_size < (64 << 20) else f"{info.st_size} bytes"
                found[rel] = f"file {oct(info.st_mode & 0o7777)} {digest}"
            else:
                found[rel] = f"special {stat.S_IFMT(info.st_mode)}"
    return found
