"""A two-input, two-output tf-keras (Keras 2) model saved as ``.h5``.

It covers the legacy path: models trained with ``tf_keras`` and shipped as
HDF5 files or Keras 2 SavedModel directories, with named inputs of mixed
dtypes and more than one output.

Inputs:
  ``features`` float32 ``[None, 8]``
  ``ids``      int32   ``[None, 5]`` with values in [0, 50)
Outputs (in this order):
  ``score``    float32 ``[None, 1]``, sigmoid regression in (0, 1)
  ``category`` float32 ``[None, 3]``, softmax over 3 classes

Calling the model (or a copy loaded with ``tf_keras.models.load_model`` from
``.h5``) on a dict ``{"features": ..., "ids": ...}`` returns a Python
``list`` ``[score, category]``, not a dict: the outputs were declared as a
list. ``model.output_names == ["score", "category"]`` maps positions to names.
Inputs are matched by name when a dict is passed. The ``serving_default``
signature of the SavedModel form instead returns a dict keyed by output name.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np

NUM_FEATURES = 8
NUM_IDS = 5
VOCAB_SIZE = 50
EMBED_DIM = 8
NUM_CATEGORIES = 3
OUTPUT_NAMES = ("score", "category")

TRAIN_SEED = 0
EVAL_SEED = 99
TRAIN_SIZE = 4096
EPOCHS = 6
# The hidden relation between inputs and targets is fixed by its own seed, so
# every dataset (training or evaluation) is drawn from the same relation.
_RELATION_SEED = 2024


def _relation():
    rng = np.random.default_rng(_RELATION_SEED)
    return {
        "score_w": rng.normal(0.0, 0.6, NUM_FEATURES),
        "score_id": rng.normal(0.0, 1.5, VOCAB_SIZE),
        "cat_w": rng.normal(0.0, 1.0, (NUM_FEATURES, NUM_CATEGORIES)),
        "cat_id": rng.normal(0.0, 1.5, (VOCAB_SIZE, NUM_CATEGORIES)),
    }


def make_data(n: int, seed: int):
    """Return ``(inputs, targets)`` dicts for ``n`` examples.

    Both targets depend on both inputs: ``score`` is a sigmoid of a linear
    function of the features plus the mean of per-id offsets; ``category``
    is the argmax of a similar 3-way function.
    """
    relation = _relation()
    rng = np.random.default_rng(seed)
    features = rng.normal(0.0, 1.0, (n, NUM_FEATURES)).astype(np.float32)
    ids = rng.integers(0, VOCAB_SIZE, (n, NUM_IDS)).astype(np.int32)
    score_logit = features @ relation["score_w"] + relation["score_id"][ids].mean(axis=1)
    score = (1.0 / (1.0 + np.exp(-score_logit))).astype(np.float32)[:, None]
    cat_logits = features @ relation["cat_w"] + relation["cat_id"][ids].mean(axis=1)
    category = np.argmax(cat_logits, axis=1).astype(np.int32)
    return {"features": features, "ids": ids}, {"score": score, "category": category}


def eval_data(n: int = 128, seed: int = EVAL_SEED):
    """Return ``(inputs, labels)``: inputs ``{"features", "ids"}`` and labels
    ``{"score": float32 [n, 1], "category": int32 [n]}``."""
    return make_data(n, seed)


def make_model():
    """The untrained tf-keras model."""
    import tf_keras as keras2
    from tf_keras import layers

    features = keras2.Input(shape=(NUM_FEATURES,), dtype="float32", name="features")
    ids = keras2.Input(shape=(NUM_IDS,), dtype="int32", name="ids")
    embedded = layers.Embedding(VOCAB_SIZE, EMBED_DIM, name="id_embedding")(ids)
    pooled = layers.GlobalAveragePooling1D(name="id_pool")(embedded)
    h = layers.Concatenate(name="joined")([features, pooled])
    h = layers.Dense(32, activation="relu", name="hidden")(h)
    score = layers.Dense(1, activation="sigmoid", name="score")(h)
    category = layers.Dense(NUM_CATEGORIES, activation="softmax", name="category")(h)
    return keras2.Model(inputs=[features, ids], outputs=[score, category], name="multi_io")


def train(seed: int = TRAIN_SEED, verbose: bool = True):
    """Train a fresh model; return ``(model, metrics)``."""
    import tf_keras as keras2

    keras2.utils.set_random_seed(seed)
    inputs, targets = make_data(TRAIN_SIZE, seed)
    model = make_model()
    model.compile(
        optimizer=keras2.optimizers.Adam(1e-2),
        loss={"score": "mse", "category": "sparse_categorical_crossentropy"},
    )
    start = time.perf_counter()
    model.fit(inputs, targets, batch_size=64, epochs=EPOCHS, verbose=0, shuffle=True)
    train_seconds = time.perf_counter() - start

    eval_inputs, eval_targets = eval_data(1024)
    score, category = model.predict(eval_inputs, batch_size=256, verbose=0)
    metrics = {
        "score_mae": round(float(np.mean(np.abs(score - eval_targets["score"]))), 4),
        "category_accuracy": round(float(np.mean(category.argmax(1) == eval_targets["category"])), 4),
        "score_std": round(float(np.std(score)), 4),
        "train_seconds": round(train_seconds, 2),
        "params": int(model.count_params()),
    }
    if verbose:
        print(
            f"multi_io score MAE {metrics['score_mae']:.4f} (std {metrics['score_std']:.3f}), "
            f"category accuracy {metrics['category_accuracy']:.4f}, "
            f"trained in {train_seconds:.1f} s, {metrics['params']} params",
            flush=True,
        )
    return model, metrics


def save(model, path: str | os.PathLike) -> Path:
    """Save ``model`` atomically at ``path``: an HDF5 file if the suffix is
    ``.h5``, otherwise a tf-keras SavedModel directory."""
    from ._atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as scratch:
        if path.suffix == ".h5":
            # HDF5 is the format under test here, so the "legacy format"
            # advice tf-keras prints on every save is noise.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy", category=UserWarning)
                model.save(scratch, save_format="h5")
        else:
            model.save(scratch, save_format="tf")
    return path


def build(path: str | os.PathLike) -> dict:
    """Train, save at ``path`` (see :func:`save`) and return the metrics."""
    model, metrics = train()
    save(model, path)
    return metrics
