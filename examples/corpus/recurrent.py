"""Recurrent sequence models over float features (time fixed at 24 steps).

`lstm`: LSTM(32) -> softmax over 3 classes: which of the first three channels has the
largest late-weighted sum. `gru`: GRU(24, return_sequences) -> average -> Dense(1):
a regression on the last steps of channel 0 and the mean of channel 1.
"""
from __future__ import annotations

import numpy as np

from examples.corpus._common import fit

STEPS, CHANNELS = 24, 6
EVAL_SEED = 57


def make_sequences(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, STEPS, CHANNELS)).cumsum(axis=1) / np.sqrt(np.arange(1, STEPS + 1))[None, :, None]
    weights = np.linspace(0.2, 1.0, STEPS)[None, :, None]
    classes = np.argmax((x[:, :, :3] * weights).sum(1), axis=1).astype(np.int32)
    target = (0.7 * x[:, -6:, 0].mean(1) - 0.4 * x[:, :, 1].mean(1)).astype(np.float32)[:, None]
    return x.astype(np.float32), classes, target


def lstm():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    seq = keras.Input((STEPS, CHANNELS), name="sequence")
    h = layers.LSTM(32, name="lstm")(seq)
    probs = layers.Dense(3, activation="softmax", name="probs")(h)
    model = keras.Model(seq, probs, name="lstm_classifier")
    x, y, _ = make_sequences(2048, 0)
    fit(model, x, y, "sparse_categorical_crossentropy", epochs=4)
    return model


def gru():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    seq = keras.Input((STEPS, CHANNELS), name="sequence")
    h = layers.GRU(24, return_sequences=True, name="gru")(seq)
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    value = layers.Dense(1, name="value")(h)
    model = keras.Model(seq, value, name="gru_regressor")
    x, _, t = make_sequences(2048, 0)
    fit(model, x, t, "mse", epochs=4)
    return model


def lstm_data(n: int = 128, seed: int = EVAL_SEED):
    x, y, _ = make_sequences(n, seed)
    return {"sequence": x}, y


def gru_data(n: int = 128, seed: int = EVAL_SEED):
    x, _, _ = make_sequences(n, seed)
    return {"sequence": x}
