"""Progress of a run: which model and target is in which stage, for how long, and
how far along when the count is known (calibration samples, parity cases).

Stages anywhere in the run call `stage(...)`, `advance(...)`, `finish(...)` and
`note(...)`; the events go to the current sink: a view in this process, or the pipe
to the parent when the stage runs in a worker. Two views:

- `LiveView` (a terminal): a `rich` live table, one row per model and target with
  the stage, its elapsed time and a bar where the count is known. Redrawn in place.
- `PlainView` (a pipe, a file, CI logs): one timestamped line per stage change and
  result, no control characters, nothing redrawn.

`-q` keeps only results and errors; `-v` adds every note (including worker logs).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

QUIET, NORMAL, VERBOSE = 0, 1, 2

_sink: Callable[[dict], None] | None = None


def set_sink(sink: Callable[[dict], None] | None) -> Callable[[dict], None] | None:
    """Route events to `sink`; returns the previous sink (restore it when done)."""
    global _sink
    previous, _sink = _sink, sink
    return previous


def emit(event: dict) -> None:
    if _sink is not None:
        _sink(event)
    elif event.get("kind") == "note":  # no view: plain lines on stderr, as before views existed
        print(_plain_text(event), file=sys.stderr, flush=True)


def stage(model: str, target: str, name: str, total: int | None = None) -> None:
    """`target` is '' for the model's shared stages (load, trace, reference)."""
    emit({"kind": "stage", "model": model, "target": target, "stage": name, "total": total, "time": time.time()})


def advance(model: str, target: str, steps: int = 1) -> None:
    emit({"kind": "advance", "model": model, "target": target, "steps": steps, "time": time.time()})


def finish(model: str, target: str, status: str, detail: str = "") -> None:
    emit({"kind": "finish", "model": model, "target": target, "status": status, "detail": detail, "time": time.time()})


def note(model: str, message: str, level: int = NORMAL) -> None:
    emit({"kind": "note", "model": model, "message": message, "level": level, "time": time.time()})


def note_line(line: str, level: int = NORMAL) -> None:
    """A pre-formatted `[model] message` line (a worker's log) as a note."""
    model, sep, message = line.partition("] ")
    if line.startswith("[") and sep:
        note(model[1:], message, level)
    else:
        note("", line, level)


def _plain_text(event: dict) -> str:
    who = (f"[{event['model']}]" if event.get("model") else "") + (f" {event['target']}:" if event.get("target") else "")
    kind = event["kind"]
    if kind == "stage":
        return f"{who} {event['stage']}" + (f" ({event['total']})" if event.get("total") else "")
    if kind == "finish":
        return f"{who} {event['status']}" + (f": {event['detail']}" if event.get("detail") else "")
    return f"{who} {event.get('message', '')}".strip()


def _clean(text: str) -> str:
    """No control characters in plain output (ANSI colour from Keras messages, CRs)."""
    import re

    text = re.sub(r"\x1b\[[0-9;?]*[ -/]*[@-~]", "", text)
    return "".join(ch for ch in text if ch == "\n" or ch == "\t" or (ord(ch) >= 32 and ord(ch) != 127))


@dataclass
class _Row:
    stage: str = "waiting"
    started: float = field(default_factory=time.time)
    first: float = field(default_factory=time.time)
    total: int | None = None
    done: int = 0
    status: str = ""
    detail: str = ""
    ended: float = 0.0


class PlainView:
    """Timestamped lines for logs: `HH:MM:SS [model] target: stage (total)`."""

    def __init__(self, stream: TextIO | None = None, level: int = NORMAL):
        self.stream = stream or sys.stderr
        self.level = level
        self._rows: dict[tuple[str, str], _Row] = {}

    def __call__(self, event: dict) -> None:
        """Stages at NORMAL; notes at their level. Results arrive as notes (the
        runner's own result lines), so `finish` events only update the rows."""
        kind = event["kind"]
        key = (event.get("model", ""), event.get("target", ""))
        row = self._rows.setdefault(key, _Row(first=event["time"]))
        if kind == "advance":
            row.done += event["steps"]
        elif kind == "finish":
            self._stage_time(key, row, event["time"])
            row.status, row.ended = event["status"], event["time"]
        elif kind == "stage":
            self._stage_time(key, row, event["time"])
            row.stage, row.started, row.total, row.done = event["stage"], event["time"], event.get("total"), 0
            if self.level >= NORMAL:
                self._write(event["time"], _plain_text(event))
        elif kind == "note" and event.get("level", NORMAL) <= self.level:
            self._write(event["time"], _plain_text(event))

    def _stage_time(self, key: tuple[str, str], row: _Row, when: float) -> None:
        if row.stage != "waiting" and not row.status and self.level >= VERBOSE:
            self._write(when, _plain_text({"kind": "note", "model": key[0], "target": key[1], "message": f"{row.stage} took {when - row.started:.1f} s"}))

    def _write(self, when: float, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(when))
        for line in _clean(text).splitlines() or [""]:
            self.stream.write(f"{stamp} {line}\n")
        self.stream.flush()

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LiveView:
    """A live table in a terminal, redrawn in place by `rich`."""

    def __init__(self, stream: TextIO | None = None, level: int = NORMAL, refresh_per_second: float = 8.0):
        from rich.console import Console
        from rich.live import Live

        self.level = level
        self.console = Console(file=stream or sys.stderr, force_terminal=True)
        self._rows: dict[tuple[str, str], _Row] = {}
        self._live = Live(self, console=self.console, refresh_per_second=refresh_per_second, transient=False)
        self._started = False

    def __rich__(self):
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for column in ("model", "target", "stage", "elapsed", "progress", "result"):
            table.add_column(column, no_wrap=column != "result")
        now = time.time()
        for (model, target), row in self._rows.items():
            if row.total:
                bar = Table.grid(padding=(0, 1))
                bar.add_row(ProgressBar(total=row.total, completed=min(row.done, row.total), width=20), Text(f"{min(row.done, row.total)}/{row.total}"))
            else:
                bar = Text("")
            ended = bool(row.status)
            elapsed = row.ended - row.first if ended else now - row.started  # a result shows its total time
            style = {"passed": "green", "failed": "red", "error": "red", "skipped": "yellow"}.get(row.status, "")
            table.add_row(model, target or "(model)", "done" if ended else row.stage, f"{elapsed:5.1f} s", bar, Text(row.status + (f": {row.detail}" if row.detail else ""), style=style))
        return table

    def __call__(self, event: dict) -> None:
        if not self._started:
            self._live.start()
            self._started = True
        kind = event["kind"]
        key = (event.get("model", ""), event.get("target", ""))
        if kind == "stage":
            row = self._rows.setdefault(key, _Row(first=event["time"]))
            row.stage, row.started, row.total, row.done = event["stage"], event["time"], event.get("total"), 0
        elif kind == "advance":
            row = self._rows.get(key)
            if row:
                row.done += event["steps"]
        elif kind == "finish":
            row = self._rows.setdefault(key, _Row(first=event["time"]))
            row.status, row.detail, row.ended = event["status"], event.get("detail", ""), event["time"]
        elif kind == "note" and event.get("level", NORMAL) <= self.level:
            self._live.console.print(_clean(_plain_text(event)), markup=False, highlight=False)
        self._live.refresh()

    def close(self) -> None:
        if self._started:
            self._live.refresh()
            self._live.stop()
            self._started = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_view(stream: TextIO | None = None, level: int = NORMAL):
    """A live view on a terminal, plain lines otherwise (TERM=dumb counts as otherwise)."""
    import os

    stream = stream or sys.stderr
    interactive = hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM", "") != "dumb"
    return LiveView(stream, level) if interactive and level >= NORMAL else PlainView(stream, level)
