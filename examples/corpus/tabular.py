"""Tabular models on scikit-learn's breast cancer set (569 tumours, 30 measurements).

`normalized`: a Normalization layer adapted on the training data (the raw measurements,
whose scales span 1e-3..4e3), then Dense(32, relu) -> softmax over malignant / benign.
`embedding_dict`: 8 of the measurements, each cut into 12 quantile bins (edges from the
training data), as 8 integer ids (vocabulary 96) through an Embedding; outputs a dict
{"score": sigmoid [B, 1], the probability of benign; "category": softmax [B, 4], the
quartile of the tumour's worst area, a measurement the model does not see}.
"""
from __future__ import annotations

import numpy as np

from examples.corpus._common import parity_data, train_cached

IDS, BINS, CATEGORIES = 8, 12, 4
VOCAB = IDS * BINS
BINNED = (0, 1, 4, 5, 6, 8, 9, 11)  # mean radius, texture, smoothness, compactness, concavity, symmetry, fractal dim., texture SE
WORST_AREA = 23
EVAL_SEED = 17


def _normalized_model():
    import keras
    from keras import layers

    from examples import real_data as rd

    keras.utils.set_random_seed(0)
    x, _ = rd.breast_cancer("train")
    norm = layers.Normalization(name="normalize")
    norm.adapt(x)
    features = keras.Input((30,), name="features")
    h = layers.Dense(32, activation="relu", name="hidden")(norm(features))
    probs = layers.Dense(2, activation="softmax", name="probs")(h)
    return keras.Model(features, probs, name="normalized_classifier")


def normalized():
    import keras

    from examples import real_data as rd
    from examples.trained import fit_classifier

    x, y = rd.breast_cancer("train")
    hx, hy = rd.breast_cancer("heldout")
    return train_cached("normalized", (_normalized_model, normalized), _normalized_model, lambda m: fit_classifier(m, keras, x, y, hx, hy, 60, lr=3e-3, batch_size=32), x, y)


def normalized_heldout(part: str = "heldout"):
    from examples import real_data as rd

    x, y = rd.breast_cancer(part)
    return {"features": x}, y


def normalized_data(n: int = 128, seed: int = EVAL_SEED):
    return parity_data(normalized_heldout("train"), n)


def _binned(part: str):
    from examples import real_data as rd

    train_x, _ = rd.breast_cancer("train")
    x, y = rd.breast_cancer(part)
    ids = np.zeros((len(x), IDS), np.int32)
    for k, column in enumerate(BINNED):
        edges = np.quantile(train_x[:, column], np.linspace(0, 1, BINS + 1)[1:-1])
        ids[:, k] = k * BINS + np.searchsorted(edges, x[:, column])
    quartiles = np.quantile(train_x[:, WORST_AREA], [0.25, 0.5, 0.75])
    category = np.searchsorted(quartiles, x[:, WORST_AREA]).astype(np.int32)
    return ids, y.astype(np.float32)[:, None], category


def _embedding_model():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    ids = keras.Input((IDS,), dtype="int32", name="ids")
    h = layers.Embedding(VOCAB, 16, name="embedding")(ids)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(32, activation="relu", name="hidden")(h)
    outputs = {
        "score": layers.Dense(1, activation="sigmoid", name="score")(h),
        "category": layers.Dense(CATEGORIES, activation="softmax", name="category")(h),
    }
    return keras.Model(ids, outputs, name="embedding_dict")


def embedding_dict():
    import keras

    ids, score, category = _binned("train")
    hid, hscore, hcat = _binned("heldout")

    def train(model):
        keras.utils.set_random_seed(0)
        model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False,
                      loss={"score": "binary_crossentropy", "category": "sparse_categorical_crossentropy"})
        model.fit(ids, {"score": score, "category": category}, epochs=60, batch_size=32, verbose=0)
        out = model.predict(hid, verbose=0)
        return {"heldout_accuracy": float(np.mean(np.argmax(out["category"], 1) == hcat)),
                "heldout_score_accuracy": float(np.mean((out["score"] > 0.5) == (hscore > 0.5))), "epochs": 60}

    return train_cached("embedding_dict", (_embedding_model, embedding_dict, _binned), _embedding_model, train, ids, score, category)


def embedding_dict_heldout(part: str = "heldout"):
    ids, _, category = _binned(part)
    return {"ids": ids}, category


def embedding_dict_data(n: int = 128, seed: int = EVAL_SEED):
    return parity_data(embedding_dict_heldout("train"), n)
