"""Where a run's progress and native libraries' noise go."""
from __future__ import annotations

import contextlib
import os
import resource
import sys
from pathlib import Path

_log_sink = None  # a worker sends its progress lines to the parent through this


def set_log_sink(sink) -> None:
    """Route `log` lines to `sink(line)` (a worker's pipe to its parent) instead of stderr."""
    global _log_sink
    _log_sink = sink


def log(model: str, message: str) -> None:
    """A worker sends the line to its parent; elsewhere it goes to the progress view
    (plain `[model] message` on stderr when there is none)."""
    if _log_sink is not None:
        _log_sink(f"[{model}] {message}")
    else:
        from pipeline import progress

        progress.note(model, message)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def quiet_tensorflow() -> None:
    # TensorFlow's C++ INFO lines drown the report; warnings and errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def native_stderr_to(log_path: Path):
    """While active, what native libraries write to fd 2 (absl and CUDA probes print
    even with TF_CPP_MIN_LOG_LEVEL set) goes to `log_path`; Python's own messages keep
    the terminal. Both are restored afterwards."""
    import errno

    from pipeline.fsutil import link_refusal

    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:  # never through a link: a log in /tmp or a planted one would append to its target
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise link_refusal(log_path) from None
        raise
    previous = sys.stderr
    saved_fd = os.dup(2)
    terminal = None
    if previous is sys.__stderr__:  # not captured by a caller: keep writing to the real terminal
        terminal = os.fdopen(os.dup(2), "w", buffering=1)
        sys.stderr = terminal
    with os.fdopen(fd, "a") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            sys.stderr = previous
            if terminal is not None:
                terminal.close()
