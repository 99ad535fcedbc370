"""Text models on lines of Python's own standard-library sources (examples/real_data.py):
is a line Python code, or English prose (a comment or a docstring)? Balanced classes,
lines of at most 64 characters.

`text_classifier` (`build`): raw strings in, TextVectorization inside the model (its
vocabulary adapted on the training lines), Embedding, average, softmax.
`char_cnn`: the character-level model: character ids (printable ASCII, 0-padded to 64)
through an Embedding, two Conv1D layers and a global max pool, softmax.
"""
from __future__ import annotations

import numpy as np

from examples.corpus._common import parity_data, train_cached

EVAL_SEED = 73
TRAIN_LINES = 6000  # per class
MAX_TOKENS, SEQUENCE = 2000, 16


def _lines(part: str):
    from examples import real_data as rd

    return rd.python_lines(part, per_class=TRAIN_LINES if part == "train" else None)


def _text_model():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    x, _ = _lines("train")
    vectorize = layers.TextVectorization(max_tokens=MAX_TOKENS, output_sequence_length=SEQUENCE, name="vectorize")
    vectorize.adapt(x.astype(str))
    text = keras.Input((1,), dtype="string", name="text")
    ids = vectorize(text)
    # No mask_zero here: with it, GlobalAveragePooling1D left this model at chance (loss ln 2) on these lines.
    h = layers.Embedding(MAX_TOKENS, 16, name="embedding")(ids)
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    h = layers.Dense(16, activation="relu", name="hidden")(h)
    probs = layers.Dense(2, activation="softmax", name="probs")(h)
    return keras.Model(text, probs, name="text_classifier")


def build():
    import keras
    import tensorflow as tf

    from examples.trained import fit_classifier

    x, y = _lines("train")
    hx, hy = _lines("heldout")
    # Keras trains on string tensors (UTF-8 bytes), not NumPy object arrays.
    strings = lambda a: tf.constant([[str(t).encode("utf-8")] for t in a])  # noqa: E731
    return train_cached("text_classifier", (_text_model, build, _lines), _text_model,
                        lambda m: fit_classifier(m, keras, strings(x), y, strings(hx), hy, 8, lr=3e-3), x, y)


def eval_heldout(part: str = "heldout"):
    x, y = _lines(part)
    return {"text": x.reshape(-1, 1)}, y


def eval_data(n: int = 128, seed: int = EVAL_SEED):
    return parity_data(eval_heldout("train"), n)


def _char_model():
    import keras
    from keras import layers

    from examples import real_data as rd

    keras.utils.set_random_seed(0)
    chars = keras.Input((rd.TEXT_LENGTH,), dtype="int32", name="chars")
    h = layers.Embedding(rd.CHARSET, 16, name="embedding")(chars)
    h = layers.Conv1D(48, 5, padding="same", activation="relu", name="conv1")(h)
    h = layers.Conv1D(48, 5, padding="same", activation="relu", name="conv2")(h)
    h = layers.GlobalMaxPooling1D(name="pool")(h)
    probs = layers.Dense(2, activation="softmax", name="probs")(h)
    return keras.Model(chars, probs, name="char_cnn")


def _char_ids(part: str):
    from examples import real_data as rd

    x, y = _lines(part)
    return rd.char_ids(x, rd.TEXT_LENGTH), y


def char_cnn():
    import keras

    from examples.trained import fit_classifier

    x, y = _char_ids("train")
    hx, hy = _char_ids("heldout")
    return train_cached("char_cnn", (_char_model, char_cnn, _char_ids, _lines), _char_model, lambda m: fit_classifier(m, keras, x, y, hx, hy, 8, lr=3e-3), x, y)


def char_cnn_heldout(part: str = "heldout"):
    x, y = _char_ids(part)
    return {"chars": x}, y


def char_cnn_data(n: int = 128, seed: int = EVAL_SEED):
    return parity_data(char_cnn_heldout("train"), n)
