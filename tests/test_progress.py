"""Progress views: plain timestamped lines for logs, a live table in a terminal."""
from __future__ import annotations

import io
import re
import sys
import textwrap

from pipeline import progress
from ptyrun import run_in_pty

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _drive(view) -> None:
    previous = progress.set_sink(view)
    try:
        progress.stage("cnn", "", "load")
        progress.stage("cnn", "tflite", "calibrate int8", total=4)
        for _ in range(4):
            progress.advance("cnn", "tflite")
        progress.note("cnn", "keras says \x1b[31mred\x1b[0m\rtext")
        progress.finish("cnn", "tflite", "passed", "max_abs 0.001")
    finally:
        progress.set_sink(previous)
        view.close()


def test_plain_lines_are_timestamped_and_free_of_control_characters():
    stream = io.StringIO()
    _drive(progress.PlainView(stream))
    lines = stream.getvalue().splitlines()
    assert [line[9:] for line in lines] == [
        "[cnn] load",
        "[cnn] tflite: calibrate int8 (4)",
        "[cnn] keras says redtext",
    ]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", line[:8]) for line in lines)
    assert not CONTROL.search(stream.getvalue().replace("\n", ""))


def test_quiet_prints_nothing_and_verbose_adds_stage_times():
    quiet, verbose = io.StringIO(), io.StringIO()
    _drive(progress.PlainView(quiet, progress.QUIET))
    _drive(progress.PlainView(verbose, progress.VERBOSE))
    assert quiet.getvalue() == ""
    assert re.search(r"\[cnn\] tflite: calibrate int8 took \d+\.\d s", verbose.getvalue())


def test_a_pipe_gets_the_plain_view_and_a_terminal_the_live_one(tmp_path):
    script = tmp_path / "drive.py"
    script.write_text(textwrap.dedent(
        """
        import time
        from pipeline import progress
        view = progress.make_view()
        progress.set_sink(view)
        progress.stage("cnn", "tflite", "calibrate int8", total=4)
        for _ in range(4):
            progress.advance("cnn", "tflite"); time.sleep(0.15)
        progress.finish("cnn", "tflite", "passed", "max_abs 0.001")
        view.close()
        print(type(view).__name__)
        """
    ))
    code, screen = run_in_pty([sys.executable, str(script)])
    assert code == 0, screen
    assert "LiveView" in screen
    assert "\x1b[" in screen  # drawn in place
    assert re.search(r"model\s+target\s+stage\s+elapsed\s+progress\s+result", re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", screen))
    assert "4/4" in screen and "━" in screen  # the bar where the count is known
    import subprocess

    piped = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert piped.returncode == 0 and "PlainView" in piped.stdout
    assert not CONTROL.search(piped.stderr.replace("\n", ""))
    assert piped.stderr.splitlines()[0].endswith("[cnn] tflite: calibrate int8 (4)")
