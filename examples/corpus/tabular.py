"""Tabular models.

`normalized`: a Normalization layer adapted on the training data (12 features whose
scales span 1e-3..1e3), then Dense(32, relu) -> Dense(1) regression.
`embedding_dict`: integer ids (vocabulary 100) through an Embedding, outputs a dict
{"score": sigmoid [B, 1], "category": softmax [B, 4]}.
"""
from __future__ import annotations

import numpy as np

from examples.corpus._common import fit

FEATURES = 12
SCALES = np.logspace(-3, 3, FEATURES)
IDS, VOCAB, CATEGORIES = 8, 100, 4
EVAL_SEED = 17


def make_table(n: int, seed: int):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, (n, FEATURES))
    x = z * SCALES + SCALES  # off-centre, wildly different scales
    w = np.random.default_rng(5).normal(0, 1, FEATURES)
    y = np.tanh(z @ w / 3) + 0.3 * z[:, 0] * z[:, 1]
    return x.astype(np.float32), y.astype(np.float32)[:, None]


def normalized():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    x, y = make_table(2048, 0)
    norm = layers.Normalization(name="normalize")
    norm.adapt(x)
    features = keras.Input((FEATURES,), name="features")
    h = layers.Dense(32, activation="relu", name="hidden")(norm(features))
    value = layers.Dense(1, name="value")(h)
    model = keras.Model(features, value, name="normalized_regressor")
    fit(model, x, y, "mse", epochs=8)
    return model


def normalized_data(n: int = 128, seed: int = EVAL_SEED):
    return {"features": make_table(n, seed)[0]}


def make_ids(n: int, seed: int):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, (n, IDS)).astype(np.int32)
    relation = np.random.default_rng(11)
    token_score = relation.normal(0, 1, VOCAB)
    token_cat = relation.normal(0, 1, (VOCAB, CATEGORIES))
    score = (token_score[ids].mean(1) > 0).astype(np.float32)[:, None]
    category = np.argmax(token_cat[ids].sum(1), axis=1).astype(np.int32)
    return ids, score, category


def embedding_dict():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    ids = keras.Input((IDS,), dtype="int32", name="ids")
    h = layers.Embedding(VOCAB, 16, name="embedding")(ids)
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    h = layers.Dense(32, activation="relu", name="hidden")(h)
    outputs = {
        "score": layers.Dense(1, activation="sigmoid", name="score")(h),
        "category": layers.Dense(CATEGORIES, activation="softmax", name="category")(h),
    }
    model = keras.Model(ids, outputs, name="embedding_dict")
    x, score, category = make_ids(2048, 0)
    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss={"score": "binary_crossentropy", "category": "sparse_categorical_crossentropy"})
    model.fit(x, {"score": score, "category": category}, epochs=6, batch_size=64, verbose=0)
    return model


def embedding_dict_data(n: int = 128, seed: int = EVAL_SEED):
    ids, _, category = make_ids(n, seed)
    return {"ids": ids}, category
