"""Corpus models that arrive as files: a `.keras` archive with a registered custom
layer, a tf-keras (Keras 2) `.h5`, and a plain-TF SavedModel with two signatures, all
classifying scikit-learn's handwritten digits read as 8-step, 8-channel signals.
Each `build_*(path)` writes the file (the configs' `build:` recipe) from the trained
weights of examples.trained's cache (training them when their key changed).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from examples.corpus._common import parity_data, train_cached

EVAL_SEED = 47
STEPS, CHANNELS = 8, 8
HIDDEN = 256


def signals(part: str):
    """Handwritten digits (scikit-learn) read as signals: 8 steps (rows) x 8 channels (columns), 10 classes."""
    from examples import real_data as rd

    return rd.digits(part)


def signals_heldout(part: str = "heldout"):
    x, y = signals(part)
    return {"signal": x}, y


def signals_data(n: int = 128, seed: int = EVAL_SEED):
    return parity_data(signals_heldout("train"), n)


# ----------------------------------------------------------------- .keras + custom layer

def _custom_layer_model():
    import keras
    from keras import layers

    from examples.corpus.custom_layers import GatedResidual

    keras.utils.set_random_seed(0)
    signal = keras.Input((STEPS, CHANNELS), name="signal")
    h = layers.Conv1D(32, 3, activation="relu", name="conv")(signal)
    h = layers.GlobalMaxPooling1D(name="pool")(h)
    h = GatedResidual(32, name="gated")(h)
    probs = layers.Dense(10, activation="softmax", name="probs")(h)
    return keras.Model(signal, probs, name="custom_layer")


def build_custom_layer(path: str | os.PathLike) -> dict:
    """The .keras file; loading it needs `source.modules: [examples.corpus.custom_layers]`
    (the data generator above does not import that module)."""
    import keras

    from examples._atomic import atomic_path
    from examples.trained import fit_classifier, figures_of

    x, y = signals("train")
    hx, hy = signals("heldout")
    model = train_cached("custom_layer", (_custom_layer_model, build_custom_layer, "examples.corpus.custom_layers"), _custom_layer_model, lambda m: fit_classifier(m, keras, x, y, hx, hy, 40, lr=3e-3), x, y)
    with atomic_path(Path(path)) as scratch:
        model.save(scratch)
    return figures_of("custom_layer") or {}


# ----------------------------------------------------------------- tf-keras .h5


def _tf_keras_model():
    import tf_keras
    from tf_keras import layers

    tf_keras.utils.set_random_seed(0)
    signal = tf_keras.Input((STEPS, CHANNELS), name="signal")
    h = layers.Conv1D(32, 3, padding="same", name="conv1")(signal)
    h = layers.BatchNormalization(name="bn1")(h)
    h = layers.Activation("relu", name="relu1")(h)
    h = layers.MaxPooling1D(2, name="pool1")(h)
    h = layers.Conv1D(32, 3, padding="same", activation="relu", name="conv2")(h)
    h = layers.GlobalAveragePooling1D(name="gap")(h)
    h = layers.Dropout(0.2, name="dropout")(h)
    probs = layers.Dense(10, activation="softmax", name="probs")(h)
    return tf_keras.Model(signal, probs, name="tf_keras_conv1d")


def build_tf_keras(path: str | os.PathLike) -> dict:
    import tf_keras

    from examples._atomic import atomic_path
    from examples.trained import fit_classifier, figures_of

    x, y = signals("train")
    hx, hy = signals("heldout")
    model = train_cached("tf_keras_conv1d", (_tf_keras_model, build_tf_keras), _tf_keras_model, lambda m: fit_classifier(m, tf_keras, x, y, hx, hy, 40, lr=3e-3), x, y)
    with atomic_path(Path(path)) as scratch:
        model.save(scratch, save_format="h5")
    return figures_of("tf_keras_conv1d") or {}


# ----------------------------------------------------------------- plain TF, two signatures


def build_two_signatures(path: str | os.PathLike) -> dict:
    """A tf.Module (no Keras): `serving_default` classifies, `embed` returns the hidden
        features. Weights are fitted in NumPy (random features + least squares: no training
    loop, so nothing to cache)."""
    import tensorflow as tf

    from examples._atomic import atomic_path

    rng = np.random.default_rng(0)
    x, y = signals("train")
    flat = x.reshape(len(x), -1)
    w1 = rng.normal(0, 3 / np.sqrt(flat.shape[1]), (flat.shape[1], HIDDEN)).astype(np.float32)
    b1 = rng.normal(0, 0.5, HIDDEN).astype(np.float32)
    hidden = np.maximum(flat @ w1 + b1, 0)
    onehot = np.eye(10)[y]
    w2, *_ = np.linalg.lstsq(np.c_[hidden, np.ones(len(hidden))], onehot * 4 - 2, rcond=None)

    class TwoHeads(tf.Module):
        def __init__(self):
            super().__init__()
            self.w1 = tf.Variable(w1, name="w1")
            self.b1 = tf.Variable(b1, name="b1")
            self.w2 = tf.Variable(w2[:-1].astype(np.float32), name="w2")
            self.b2 = tf.Variable(w2[-1].astype(np.float32), name="b2")

        def _hidden(self, signal):
            return tf.nn.relu(tf.reshape(signal, [-1, STEPS * CHANNELS]) @ self.w1 + self.b1)

        @tf.function(input_signature=[tf.TensorSpec([None, STEPS, CHANNELS], tf.float32, name="signal")])
        def classify(self, signal):
            return {"probs": tf.nn.softmax(self._hidden(signal) @ self.w2 + self.b2)}

        @tf.function(input_signature=[tf.TensorSpec([None, STEPS, CHANNELS], tf.float32, name="signal")])
        def embed(self, signal):
            hidden = self._hidden(signal)
            return {"features": hidden, "norm": tf.norm(hidden, axis=-1, keepdims=True)}

    module = TwoHeads()
    with atomic_path(Path(path)) as scratch:
        tf.saved_model.save(module, str(scratch), signatures={"serving_default": module.classify, "embed": module.embed})
    hx, hy = signals("heldout")
    held = np.maximum(hx.reshape(len(hx), -1) @ w1 + b1, 0)
    accuracy = float(np.mean(np.argmax(np.c_[held, np.ones(len(held))] @ w2, 1) == hy))
    return {"heldout_accuracy": round(accuracy, 4)}
