"""Corpus models that arrive as files: a `.keras` archive with a registered custom
layer, a tf-keras (Keras 2) `.h5`, and a plain-TF SavedModel with two signatures.
Each `build_*(path)` trains and writes the file (the configs' `build:` recipe).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from examples.corpus._common import fit

EVAL_SEED = 47


def _signals(n: int, seed: int):
    """[n, 32, 4] signals; class = which channel carries a burst (4 classes)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (n, 32, 4))
    y = rng.integers(0, 4, n)
    start = rng.integers(0, 24, n)
    for i in range(n):
        x[i, start[i] : start[i] + 8, y[i]] += np.hanning(8) * rng.uniform(1.0, 2.0)
    return x.astype(np.float32), y.astype(np.int32)


def signals_data(n: int = 128, seed: int = EVAL_SEED):
    x, y = _signals(n, seed)
    return {"signal": x}, y


# ----------------------------------------------------------------- .keras + custom layer

def build_custom_layer(path: str | os.PathLike) -> dict:
    """The .keras file; loading it needs `source.modules: [examples.corpus.custom_layers]`
    (the data generator above does not import that module)."""
    import keras
    from keras import layers

    from examples._atomic import atomic_path
    from examples.corpus.custom_layers import GatedResidual

    keras.utils.set_random_seed(0)
    signal = keras.Input((32, 4), name="signal")
    h = layers.Conv1D(16, 5, activation="relu", name="conv")(signal)
    h = layers.GlobalMaxPooling1D(name="pool")(h)
    h = GatedResidual(16, name="gated")(h)
    probs = layers.Dense(4, activation="softmax", name="probs")(h)
    model = keras.Model(signal, probs, name="custom_layer")
    x, y = _signals(2048, 0)
    loss = fit(model, x, y, "sparse_categorical_crossentropy", epochs=5)
    with atomic_path(Path(path)) as scratch:
        model.save(scratch)
    return {"loss": round(loss, 4)}


# ----------------------------------------------------------------- tf-keras .h5


def build_tf_keras(path: str | os.PathLike) -> dict:
    import tf_keras
    from tf_keras import layers

    from examples._atomic import atomic_path

    tf_keras.utils.set_random_seed(0)
    signal = tf_keras.Input((32, 4), name="signal")
    h = layers.Conv1D(16, 5, padding="same", name="conv1")(signal)
    h = layers.BatchNormalization(name="bn1")(h)
    h = layers.Activation("relu", name="relu1")(h)
    h = layers.MaxPooling1D(2, name="pool1")(h)
    h = layers.Conv1D(32, 3, padding="same", activation="relu", name="conv2")(h)
    h = layers.GlobalAveragePooling1D(name="gap")(h)
    h = layers.Dropout(0.2, name="dropout")(h)
    probs = layers.Dense(4, activation="softmax", name="probs")(h)
    model = tf_keras.Model(signal, probs, name="tf_keras_conv1d")
    model.compile(optimizer=tf_keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    x, y = _signals(2048, 0)
    history = model.fit(x, y, epochs=5, batch_size=64, verbose=0)
    with atomic_path(Path(path)) as scratch:
        model.save(scratch, save_format="h5")
    return {"loss": round(float(history.history["loss"][-1]), 4)}


# ----------------------------------------------------------------- plain TF, two signatures


def build_two_signatures(path: str | os.PathLike) -> dict:
    """A tf.Module (no Keras): `serving_default` classifies, `embed` returns the hidden
    features. Weights are fitted in NumPy (random features + least squares)."""
    import tensorflow as tf

    from examples._atomic import atomic_path

    rng = np.random.default_rng(0)
    x, y = _signals(2048, 0)
    flat = x.reshape(len(x), -1)
    w1 = rng.normal(0, 1 / np.sqrt(flat.shape[1]), (flat.shape[1], 64)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 64).astype(np.float32)
    hidden = np.maximum(flat @ w1 + b1, 0)
    onehot = np.eye(4)[y]
    w2, *_ = np.linalg.lstsq(np.c_[hidden, np.ones(len(hidden))], onehot * 4 - 2, rcond=None)

    class TwoHeads(tf.Module):
        def __init__(self):
            super().__init__()
            self.w1 = tf.Variable(w1, name="w1")
            self.b1 = tf.Variable(b1, name="b1")
            self.w2 = tf.Variable(w2[:-1].astype(np.float32), name="w2")
            self.b2 = tf.Variable(w2[-1].astype(np.float32), name="b2")

        def _hidden(self, signal):
            return tf.nn.relu(tf.reshape(signal, [-1, 128]) @ self.w1 + self.b1)

        @tf.function(input_signature=[tf.TensorSpec([None, 32, 4], tf.float32, name="signal")])
        def classify(self, signal):
            return {"probs": tf.nn.softmax(self._hidden(signal) @ self.w2 + self.b2)}

        @tf.function(input_signature=[tf.TensorSpec([None, 32, 4], tf.float32, name="signal")])
        def embed(self, signal):
            hidden = self._hidden(signal)
            return {"features": hidden, "norm": tf.norm(hidden, axis=-1, keepdims=True)}

    module = TwoHeads()
    with atomic_path(Path(path)) as scratch:
        tf.saved_model.save(module, str(scratch), signatures={"serving_default": module.classify, "embed": module.embed})
    accuracy = float(np.mean(np.argmax(np.c_[hidden, np.ones(len(hidden))] @ w2, 1) == y))
    return {"train_accuracy": round(accuracy, 4)}
