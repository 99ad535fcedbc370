"""A text classifier whose input is raw strings: TextVectorization inside the model.

Sentences of 3..10 words from a 40-word vocabulary (10 positive, 10 negative, 20
neutral words); class 1 when positive words outnumber negative ones.
"""
from __future__ import annotations

import numpy as np

from examples.corpus._common import fit

POSITIVE = "good great fine happy bright calm kind warm clean fast".split()
NEGATIVE = "bad poor sad dark angry cold dirty slow broken weak".split()
NEUTRAL = ("the a of and to in on with for at by from table chair river stone "
           "paper window garden street").split()
EVAL_SEED = 73


def make_sentences(n: int, seed: int):
    rng = np.random.default_rng(seed)
    words = np.array(POSITIVE + NEGATIVE + NEUTRAL)
    sentences, labels = [], []
    for _ in range(n):
        picked = rng.choice(len(words), rng.integers(3, 11))
        pos = int(np.sum(picked < 10))
        neg = int(np.sum((picked >= 10) & (picked < 20)))
        sentences.append(" ".join(words[picked]).capitalize() + rng.choice([".", "!", ""]))
        labels.append(int(pos > neg))
    return np.array(sentences, dtype=object).reshape(n, 1), np.array(labels, np.int32)


def build():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    x, y = make_sentences(2048, 0)
    vectorize = layers.TextVectorization(max_tokens=64, output_sequence_length=12, name="vectorize")
    vectorize.adapt(x[:, 0].astype(str))
    text = keras.Input((1,), dtype="string", name="text")
    ids = vectorize(text)
    h = layers.Embedding(64, 16, mask_zero=True, name="embedding")(ids)
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    h = layers.Dense(16, activation="relu", name="hidden")(h)
    probs = layers.Dense(2, activation="softmax", name="probs")(h)
    model = keras.Model(text, probs, name="text_classifier")
    fit(model, x.astype(str), y, "sparse_categorical_crossentropy", epochs=6)
    return model


def eval_data(n: int = 128, seed: int = EVAL_SEED):
    x, y = make_sentences(n, seed)
    return {"text": x}, y
