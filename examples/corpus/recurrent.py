"""Recurrent sequence models over the rows of handwritten digits (scikit-learn's digits,
8x8 grey levels in [0, 1]; fixed time axis).

`lstm`: LSTM(32) -> softmax over the 10 digits, reading the 8 rows as 8 steps of 8 values.
`gru`: GRU(24, return_sequences) -> average -> Dense(1): reads the first 6 rows and
predicts the mean grey level of the last two (how much ink the unseen bottom quarter of
the digit carries).
"""
from __future__ import annotations

from examples.corpus._common import parity_data, train_cached

EVAL_SEED = 57
SEEN_ROWS = 6


def _lstm_model():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    seq = keras.Input((8, 8), name="sequence")
    h = layers.LSTM(32, name="lstm")(seq)
    probs = layers.Dense(10, activation="softmax", name="probs")(h)
    return keras.Model(seq, probs, name="lstm_classifier")


def lstm():
    import keras

    from examples import real_data as rd
    from examples.trained import fit_classifier

    x, y = rd.digits("train")
    hx, hy = rd.digits("heldout")
    return train_cached("lstm", (_lstm_model, lstm), _lstm_model,
                        lambda m: fit_classifier(m, keras, x, y, hx, hy, 40, lr=5e-3, augment=lambda e: rd.upsample(x, 8, seed=e)), x, y)


def lstm_heldout(part: str = "heldout"):
    from examples import real_data as rd

    x, y = rd.digits(part)
    return {"sequence": x}, y


def lstm_data(n: int = 128, seed: int = EVAL_SEED):
    return parity_data(lstm_heldout("train"), n)


def _bottom_ink(part: str):
    from examples import real_data as rd

    x, _ = rd.digits(part)
    return x[:, :SEEN_ROWS], x[:, SEEN_ROWS:].mean(axis=(1, 2))[:, None]


def _gru_model():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    seq = keras.Input((SEEN_ROWS, 8), name="sequence")
    h = layers.GRU(24, return_sequences=True, name="gru")(seq)
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    value = layers.Dense(1, name="value")(h)
    return keras.Model(seq, value, name="gru_regressor")


def gru():
    import keras

    from examples.trained import fit_regressor

    x, t = _bottom_ink("train")
    hx, ht = _bottom_ink("heldout")
    return train_cached("gru", (_gru_model, gru, _bottom_ink), _gru_model, lambda m: fit_regressor(m, keras, x, t, hx, ht, 40, lr=5e-3), x, t)


def gru_heldout(part: str = "heldout"):
    x, t = _bottom_ink(part)
    return {"sequence": x}, t


def gru_data(n: int = 128, seed: int = EVAL_SEED):
    return parity_data(gru_heldout("train"), n, labels=False)
