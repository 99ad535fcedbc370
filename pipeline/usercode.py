"""Bad input found after the config loaded: where it is, in the config and in the user's code.

The config loader names file:line:key for every problem it finds. Problems found
later (a factory that raises, a generator returning the wrong type, a model that
cannot be traced, data that does not fit) must say the same: the config line of the
key that brought the user's code or file in, and the user's own file:line when their
code raised. Everything here is pure Python; TensorFlow is never imported.
"""
from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from pipeline.errors import ModelError
from pipeline.config.yamlsrc import KeyPath, format_key, load_located

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
_OWN_CODE = tuple(str(_PACKAGE_ROOT / part) + "/" for part in ("pipeline", "targets"))
_LIBRARY_MARKERS = ("site-packages", "dist-packages", "<frozen", "<string>", "__autograph_generated")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    """Keras colours its errors for terminals; reports and logs get plain text."""
    return _ANSI.sub("", text)


def config_line(config_file: Path | str, key: KeyPath) -> int | None:
    """The line of `key` in the config file (of its nearest enclosing key), or None."""
    try:
        return load_located(Path(config_file)).line(tuple(key))
    except Exception:  # the file was readable when the config loaded; a later edit must not hide the real error
        return None


def config_where(config: Any, key: KeyPath) -> str:
    """'configs/models/x.yaml:7: data.generator' for a key path of a loaded config."""
    line = config_line(config.file, key)
    return f"{config.file}:{line}: {format_key(key)}" if line else f"{config.file}: {format_key(key)}"


def source_key(config: Any) -> KeyPath:
    """The key that names the model: `source.factory` or `source.path`."""
    return ("source", "factory") if getattr(config.source, "factory", None) else ("source", "path")


def bad_input(config: Any, key: KeyPath, message: str) -> ModelError:
    """A ModelError (exit 2) whose message starts with the config location."""
    return ModelError(f"{config_where(config, key)}: {message}")


def is_user_file(filename: str) -> bool:
    """True for the user's own code: not tfship's, not an installed library, not Python's."""
    if any(marker in filename for marker in _LIBRARY_MARKERS) or filename.startswith(_OWN_CODE):
        return False
    return not filename.startswith((sys.base_prefix.rstrip("/") + "/", sys.prefix.rstrip("/") + "/"))


def user_frame(exc: BaseException) -> tuple[str, int, str] | None:
    """(file, line, code) of the deepest frame in the user's own code.

    A SyntaxError names its own location. AutoGraph rewrites functions into temporary
    files and lists the original frames in its 'in user code:' text; those count too.
    """
    best = None
    if isinstance(exc, SyntaxError) and exc.filename and is_user_file(exc.filename):
        return exc.filename, exc.lineno or 0, (exc.text or "").strip()
    for frame in traceback.extract_tb(exc.__traceback__):
        if is_user_file(frame.filename):
            best = (frame.filename, frame.lineno or 0, (frame.line or "").strip())
    text = strip_ansi(str(exc))
    for match in re.finditer(r'File "([^"]+)", line (\d+), in [^\n]*\n\s*(.*)', text):
        filename, line, code = match.group(1), int(match.group(2)), match.group(3).strip()
        if is_user_file(filename):
            best = (filename, line, code)
    cause = exc.__cause__ or exc.__context__
    if best is None and cause is not None and cause is not exc:
        return user_frame(cause)
    return best


def describe_frame(frame: tuple[str, int, str] | None) -> str:
    if frame is None:
        return ""
    file, line, code = frame
    return f"{file}:{line}" + (f": `{code}`" if code else "")


_RAISED = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.+)$")


def first_line(exc: BaseException) -> str:
    """The cause in one line, without colour codes.

    AutoGraph wraps the real error as 'in user code: ... File ... ValueError: <cause>';
    Keras as 'Exception encountered when calling X.call(). <cause> Arguments received ...'.
    Both put the cause below a generic first line: take the cause.
    """
    lines = [line.strip() for line in strip_ansi(str(exc)).splitlines() if line.strip()]
    if not lines:
        return ""
    nested = [m for m in (_RAISED.match(line) for line in lines) if m]
    if lines[0].startswith("in user code") and nested:
        return f"{nested[-1].group(1).rsplit('.', 1)[-1]}: {nested[-1].group(2)}"
    if lines[0].startswith("Exception encountered when calling") and len(lines) > 1:
        return f"{lines[1]} (in {lines[0][len('Exception encountered when calling '):].rstrip('.')})"
    if lines[0] == "Graph execution error:":  # TF's op error: the op's own message follows its node and stack lines
        nodes = [i for i, line in enumerate(lines) if line.startswith("Node: ")]
        after = lines[nodes[-1] + 1:] if nodes else lines[1:]
        cause = [line for line in after if not line.startswith(("Detected at node", "<stack traces", "[[", "File "))]
        if cause:
            return cause[0].split(" [[{{node")[0].split("\t [[")[0].strip()
    return lines[0]


_BOOL_ON_TENSOR = (
    "expected to be `tf.bool` scalar",  # AutoGraph, TF 2.21: `if`/`while` on a non-scalar tensor
    "as a Python `bool`",  # OperatorNotAllowedInGraphError: Python control flow on a symbolic tensor
    "as a Python bool",
    "The truth value of an array with more than one element is ambiguous",
    "A KerasTensor cannot be used as input to a",
)


def is_python_bool_on_tensor(exc: BaseException) -> bool:
    """A Python `if`/`while`/`and`/`or` on a tensor, in any of the ways TF and Keras word it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = strip_ansi(str(exc))
        if type(exc).__name__ == "OperatorNotAllowedInGraphError" or any(marker in text for marker in _BOOL_ON_TENSOR):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


PYTHON_BOOL_FIX = (
    "Fix: for an elementwise choice use `tf.where(cond, a, b)` (`keras.ops.where` in a Keras 3 layer); "
    "for one decision per call reduce to a scalar and use `tf.cond(tf.reduce_any(cond), true_fn, false_fn)`."
)


def python_bool_message(frame: tuple[str, int, str] | None) -> str:
    at = f" at {describe_frame(frame)}" if frame else ""
    return (
        f"a Python `if` (or `while`/`and`/`or`) decides on a tensor{at}: in a graph the tensor has no value yet, "
        f"and a condition on a non-scalar tensor has no single truth value. {PYTHON_BOOL_FIX}"
    )


def user_code_error(config: Any, key: KeyPath, what: str, exc: BaseException, fix: str) -> ModelError:
    """The user's code raised while tfship ran it: bad input, with both locations."""
    frame = user_frame(exc)
    if is_python_bool_on_tensor(exc):
        return bad_input(config, key, f"{what} failed: {python_bool_message(frame)}")
    raised = f"{type(exc).__name__}: {first_line(exc)}" if first_line(exc) else type(exc).__name__
    at = f" at {describe_frame(frame)}" if frame else ""
    return bad_input(config, key, f"{what} raised {raised}{at}. {fix}")


def call_user(config: Any, key: KeyPath, what: str, fn: Callable, *args: Any, fix: str = "", **kwargs: Any) -> Any:
    """Run user code; anything it raises is bad input naming the config key and the user's line."""
    try:
        return fn(*args, **kwargs)
    except ModelError:
        raise
    except Exception as exc:  # user code may raise anything: it is theirs to fix
        raise user_code_error(config, key, what, exc, fix or f"Fix the code, or point `{format_key(key)}` at a working one.") from None


def import_user_module(config: Any, key: KeyPath, module_name: str, what: str) -> Any:
    """Import a module named by `key`; every failure is bad input at that key."""
    import importlib

    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # factories live in the project, like `examples.*`
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):  # the module itself is not there
            raise bad_input(
                config, key, f"cannot import {what} '{module_name}': no module named '{exc.name}'. "
                "Expected an importable module: run from the project root, put its folder on PYTHONPATH, or install it."
            ) from None
        raise user_code_error(config, key, f"importing {what} '{module_name}'", exc, "Install the missing package or fix the import.") from None
    except Exception as exc:  # SyntaxError, or the module's own top-level code raised
        raise user_code_error(config, key, f"importing {what} '{module_name}'", exc, "Fix the module so that it imports.") from None


def import_user_ref(config: Any, key: KeyPath, ref: str, what: str) -> Any:
    """Resolve 'package.module:attr' named by `key`; every failure is bad input at that key."""
    module_name, _, attr = ref.partition(":")
    module = import_user_module(config, key, module_name, f"{what} module")
    try:
        return getattr(module, attr)
    except AttributeError:
        known = sorted(n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise bad_input(config, key, f"{what} '{ref}': module '{module_name}' has no attribute '{attr}'; callables there: {', '.join(known[:12]) or 'none'}") from None
