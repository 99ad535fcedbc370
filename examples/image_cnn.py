"""A small Keras 3 CNN trained on a synthetic 4-class image problem.

The images are generated with numpy so builds need no downloads, but the problem
is not trivial: shapes have random position, size, colour and phase, with
additive noise, so the network has to learn oriented edges and shape layout
rather than a mean colour.

Classes: 0 horizontal stripes, 1 vertical stripes, 2 filled disc,
3 hollow square.

Model input ``image`` float32 ``[None, 32, 32, 3]`` in [0, 1]; output
``probs`` float32 ``[None, 4]`` (softmax).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

SIZE = 32
NUM_CLASSES = 4
CLASS_NAMES = ("horizontal_stripes", "vertical_stripes", "disc", "hollow_square")

TRAIN_SEED = 0
HELDOUT_SEED = 777
EVAL_SEED = 1234
TRAIN_SIZE = 4096
HELDOUT_SIZE = 1024
BATCH_SIZE = 64
EPOCHS = 8
LEARNING_RATE = 3e-3
NOISE_STD = 0.2


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)``: ``x`` float32 ``[n, 32, 32, 3]`` in [0, 1], ``y``
    int32 ``[n]``.

    Deterministic for a given ``seed``. Classes are balanced: each appears
    ``n // 4`` or ``n // 4 + 1`` times, in shuffled order.
    """
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.int32)

    # Per-image parameters, all drawn up front so the order of draws (and so
    # the dataset) does not depend on the class mix.
    period = rng.uniform(4.0, 10.0, n)
    phase = rng.uniform(0.0, 2 * np.pi, n)
    center = rng.uniform(9.0, 23.0, (n, 2))
    radius = rng.uniform(5.0, 10.0, n)
    half_side = rng.uniform(6.0, 11.0, n)
    thickness = rng.uniform(1.5, 3.0, n)
    # Foreground is always brighter than background so "on" pixels mean the
    # same thing in every image; colours still vary per channel.
    fg = rng.uniform(0.45, 1.0, (n, 1, 1, 3))
    bg = rng.uniform(0.0, 0.55, (n, 1, 1, 3))
    noise = rng.normal(0.0, NOISE_STD, (n, SIZE, SIZE, 3))

    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    rows, cols = rows[None], cols[None]  # broadcast over the batch
    col = lambda v: v[:, None, None]  # noqa: E731  per-image scalar -> [n, 1, 1]

    horizontal = np.sin(2 * np.pi * rows / col(period) + col(phase)) > 0
    vertical = np.sin(2 * np.pi * cols / col(period) + col(phase)) > 0
    d_row = rows - col(center[:, 0])
    d_col = cols - col(center[:, 1])
    disc = np.hypot(d_row, d_col) <= col(radius)
    chebyshev = np.maximum(np.abs(d_row), np.abs(d_col))
    square = (chebyshev <= col(half_side)) & (chebyshev > col(half_side - thickness))

    masks = np.stack([horizontal, vertical, disc, square])  # [4, n, H, W]
    mask = masks[y, np.arange(n)][..., None].astype(np.float64)

    x = bg + (fg - bg) * mask + noise
    return np.clip(x, 0.0, 1.0).astype(np.float32), y


def eval_data(n: int = 256, seed: int = EVAL_SEED) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return ``({"image": x}, y)`` from a seed not used for training, for
    parity checks and int8 calibration."""
    x, y = make_images(n, seed)
    return {"image": x}, y


def make_model():
    """The untrained classifier (about 26k parameters)."""
    import keras
    from keras import layers

    image = keras.Input(shape=(SIZE, SIZE, 3), name="image")
    h = image
    for i, filters in enumerate((16, 32, 64)):
        h = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(h)
        h = layers.BatchNormalization(name=f"bn{i}")(h)
        h = layers.ReLU(name=f"relu{i}")(h)
        if i < 2:
            h = layers.MaxPooling2D(2, name=f"pool{i}")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    h = layers.Dense(32, activation="relu", name="dense")(h)
    probs = layers.Dense(NUM_CLASSES, activation="softmax", name="probs")(h)
    return keras.Model(image, probs, name="image_cnn")


def train(seed: int = TRAIN_SEED, epochs: int = EPOCHS, verbose: bool = True):
    """Train a fresh model; return ``(model, metrics)``."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    x_train, y_train = make_images(TRAIN_SIZE, seed)
    x_held, y_held = make_images(HELDOUT_SIZE, HELDOUT_SEED)

    model = make_model()
    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    # Creating optimizer slots here rather than on the first step keeps
    # variable creation out of the traced function.
    optimizer.build(model.trainable_variables)

    # model and optimizer are captured from the enclosing scope, not passed
    # in: tf.function treats Python-object arguments as part of the trace key,
    # and a fixed signature with a dynamic batch dimension lets the last short
    # batch reuse the same graph, so this traces exactly once.
    @tf.function(
        input_signature=[
            tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ]
    )
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            loss = loss_fn(labels, probs)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    order_rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = order_rng.permutation(TRAIN_SIZE)
        losses = []
        for lo in range(0, TRAIN_SIZE, BATCH_SIZE):
            idx = order[lo : lo + BATCH_SIZE]
            losses.append(float(train_step(x_train[idx], y_train[idx])))
        if verbose:
            print(f"image_cnn epoch {epoch + 1}/{epochs} loss {np.mean(losses):.4f}", flush=True)
    train_seconds = time.perf_counter() - start

    tracing_count = train_step.experimental_get_tracing_count()
    assert tracing_count == 1, f"train_step traced {tracing_count} times"

    probs = model.predict(x_held, batch_size=256, verbose=0)
    accuracy = float(np.mean(np.argmax(probs, axis=1) == y_held))
    metrics = {
        "heldout_accuracy": round(accuracy, 4),
        "train_seconds": round(train_seconds, 2),
        "tracing_count": tracing_count,
        "params": int(model.count_params()),
    }
    if verbose:
        print(
            f"image_cnn held-out accuracy {accuracy:.4f} on {HELDOUT_SIZE} images, "
            f"trained in {train_seconds:.1f} s, {metrics['params']} params",
            flush=True,
        )
    return model, metrics


def metrics_path(path: str | os.PathLike) -> Path:
    """``<dir>/<stem>.metrics.json`` beside the model file."""
    path = Path(path)
    return path.with_name(f"{path.stem}.metrics.json")


def _keras_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"image_cnn is saved in Keras 3 format; expected a .keras path, got {path}")
    return path


def save(model, path: str | os.PathLike, metrics: dict | None = None) -> Path:
    """Save ``model`` as a Keras 3 ``.keras`` file at ``path`` atomically and,
    if given, ``metrics`` as ``<stem>.metrics.json`` beside it."""
    from ._atomic import atomic_path, write_json

    path = _keras_path(path)
    with atomic_path(path) as scratch:
        model.save(scratch)
    if metrics is not None:
        write_json(metrics_path(path), metrics)
    return path


def build(path: str | os.PathLike) -> dict:
    """Train, save the model at ``path`` and its metrics beside it, and
    return the metrics."""
    path = _keras_path(path)  # checked before training so a bad path fails fast
    model, metrics = train()
    save(model, path, metrics)
    return metrics
