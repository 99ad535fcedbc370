"""Trained weights, cached: a model is trained once and reloaded until what it was trained
from changes.

The cache key is sha256 over the model's name, the source text of the code that builds
and trains it (the functions it names, the training loops below and the augmentation
in examples/real_data.py; a module named as a string counts whole), a fingerprint of
its training arrays, and the versions of TensorFlow, Keras / tf-keras, NumPy and
scikit-learn. Naming functions rather than whole modules lets a module gain a parity
generator or a docstring without retraining its networks. Weights live in examples/build/trained/<name>-<key>.weights.h5
(git-ignored) beside <name>-<key>.json: the held-out figures measured right after
training, the training seconds and the epochs. A changed key trains again and removes
that model's older files.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

CACHE = Path(__file__).resolve().parent / "build" / "trained"
# Code every trained model depends on (the training loops, the augmentation).
_ALWAYS = ("examples.trained:fit_classifier", "examples.trained:fit_regressor", "examples.trained:regression_figures",
           "examples.real_data:upsample", "examples.real_data:_interpolation", "examples.real_data:digit_images")


@dataclass(frozen=True)
class Trained:
    model: Any
    figures: dict  # held-out figures, training seconds, epochs, key
    cached: bool
    weights: Path  # the weights-only file in the cache


def _versions() -> str:
    import numpy

    parts = [f"numpy={numpy.__version__}"]
    for name in ("tensorflow", "keras", "tf_keras", "sklearn"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
        parts.append(f"{name}={getattr(module, '__version__', '?')}")
    return ";".join(parts)


def _source(code: Any) -> tuple[str, bytes]:
    """(name, text) of a function or class, a "module:qualname", or a whole "module"."""
    import inspect

    if isinstance(code, str):
        module, _, qualname = code.partition(":")
        obj = importlib.import_module(module)
        if not qualname:
            return module, Path(obj.__file__).read_bytes()
        for part in qualname.split("."):
            obj = getattr(obj, part)
        code = obj
    return f"{code.__module__}:{code.__qualname__}", inspect.getsource(code).encode()


def cache_key(name: str, code: tuple, data_fingerprint: str) -> str:
    h = hashlib.sha256(name.encode())
    for label, text in dict(_source(c) for c in (*code, *_ALWAYS)).items():
        h.update(label.encode() + b"\0" + text)
    h.update(data_fingerprint.encode())
    h.update(_versions().encode())
    return h.hexdigest()[:16]


def _paths(name: str, key: str, root: Path) -> tuple[Path, Path]:
    return root / f"{name}-{key}.weights.h5", root / f"{name}-{key}.json"


def trained(name: str, build: Callable[[], Any], train: Callable[[Any], dict], code: tuple, data_fingerprint: str,
            root: Path | None = None) -> Trained:
    """`build()` makes the untrained model (same layers every call); `train(model)` trains it
    in place and returns its held-out figures; `code`: the functions (or "module[:name]")
    they run, for the key. Loaded from the cache when the key matches."""
    root = Path(root or os.environ.get("TFSHIP_TRAINED_CACHE") or CACHE)
    key = cache_key(name, code, data_fingerprint)
    weights, meta = _paths(name, key, root)
    model = build()
    if weights.is_file() and meta.is_file():
        model.load_weights(str(weights))
        return Trained(model, json.loads(meta.read_text()), cached=True, weights=weights)
    start = time.perf_counter()
    figures = dict(train(model))
    figures = {**figures, "train_seconds": round(time.perf_counter() - start, 1), "key": key}
    root.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_name(f".{os.getpid()}.{weights.name}")
    model.save_weights(str(tmp))
    os.replace(tmp, weights)
    tmp_meta = meta.with_name(f".{os.getpid()}.{meta.name}")
    tmp_meta.write_text(json.dumps(figures, indent=1, sort_keys=True))
    os.replace(tmp_meta, meta)
    for old in root.glob(f"{name}-*"):
        if old.name not in (weights.name, meta.name):
            old.unlink(missing_ok=True)
    print(f"trained {name} in {figures['train_seconds']:.0f} s: " + ", ".join(
        f"{k} {v:.4g}" for k, v in figures.items() if isinstance(v, float) and k != "train_seconds"), file=sys.stderr, flush=True)
    return Trained(model, figures, cached=False, weights=weights)


def figures_of(name: str, root: Path | None = None) -> dict | None:
    """The newest cached figures of a model (whatever its key), or None."""
    root = Path(root or os.environ.get("TFSHIP_TRAINED_CACHE") or CACHE)
    found = sorted((p for p in root.glob(f"{name}-*.json") if p.stem[: -17] == name), key=lambda p: p.stat().st_mtime)
    return json.loads(found[-1].read_text()) if found else None


# ---------------------------------------------------------------- training loops


def fit_classifier(model, lib, train_x, train_y, heldout_x, heldout_y, epochs: int, lr: float = 2e-3, batch_size: int = 64,
                   augment: Callable[[int], Any] | None = None, seed: int = 0, loss: str = "sparse_categorical_crossentropy",
                   predict: Callable[[Any], Any] | None = None) -> dict:
    """Adam with cosine decay; `augment(epoch)` returns that epoch's inputs (same labels).
    Returns the held-out accuracy (argmax of the last axis of the model's output)."""
    import numpy as np

    lib.utils.set_random_seed(seed)
    n = len(train_y)
    steps = epochs * -(-n // batch_size)
    schedule = lib.optimizers.schedules.CosineDecay(lr, steps, alpha=0.02)
    # jit_compile off: XLA's compile of a stock application's training step costs more than it saves here.
    model.compile(optimizer=lib.optimizers.Adam(schedule), loss=loss, jit_compile=False)
    last = None
    if augment is None:
        last = model.fit(train_x, train_y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True).history["loss"][-1]
    else:
        for epoch in range(epochs):
            last = model.fit(augment(epoch), train_y, epochs=1, batch_size=batch_size, verbose=0, shuffle=True).history["loss"][-1]
    scores = np.asarray((predict or (lambda x: model.predict(x, batch_size=128, verbose=0)))(heldout_x))
    accuracy = float(np.mean(np.argmax(scores, axis=-1) == heldout_y))
    return {"heldout_accuracy": accuracy, "train_loss": float(last), "epochs": epochs, "train_samples": int(n)}


def fit_regressor(model, lib, train_x, train_y, heldout_x, heldout_y, epochs: int, lr: float = 3e-3, batch_size: int = 32,
                  seed: int = 0) -> dict:
    """Adam with cosine decay on MSE; returns held-out R^2 and mean absolute error."""
    import numpy as np

    lib.utils.set_random_seed(seed)
    steps = epochs * -(-len(train_y) // batch_size)
    model.compile(optimizer=lib.optimizers.Adam(lib.optimizers.schedules.CosineDecay(lr, steps, alpha=0.02)), loss="mse", jit_compile=False)
    last = model.fit(train_x, train_y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True).history["loss"][-1]
    predicted = np.asarray(model.predict(heldout_x, batch_size=128, verbose=0))
    return {**regression_figures(predicted, heldout_y), "train_loss": float(last), "epochs": epochs, "train_samples": int(len(train_y))}


def regression_figures(predicted, truth) -> dict:
    import numpy as np

    predicted, truth = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    residual = np.sum(np.square(predicted - truth), axis=0)
    total = np.sum(np.square(truth - truth.mean(axis=0)), axis=0)
    return {"heldout_r2": float(np.mean(1 - residual / total)), "heldout_mae": float(np.mean(np.abs(predicted - truth)))}
