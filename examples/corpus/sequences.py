"""Models users bring that the first corpus lacked, on real data (examples/real_data.py).

`tagger`: a bidirectional GRU sequence tagger with masking and a dynamic time axis: the
characters of a line of Python code (ids of printable ASCII, 0 = padding, any length)
-> Embedding(mask_zero) -> Bidirectional(GRU(32, return_sequences)) -> a softmax per
character over the token class Python's `tokenize` gives it (space, name, keyword,
operator, number, string). Lines of the standard library's sources.
`multi_input`: two inputs of different ranks: a digit image [B, 16, 16, 1] (rank 4) and
its ink profile [B, 16] (rank 2: the column sums of the same image), through a small
CNN and a Dense branch joined before a softmax over the 10 digits.
`weights_only`: a model shipped as a weights-only file (`.weights.h5`) and rebuilt by a
factory: the factory makes the architecture and loads the file (the file is the
training cache's, written when the model is trained). A separable-convolution CNN on
digits at 16x16.
"""
from __future__ import annotations

import numpy as np

from examples.corpus._common import parity_data, train_cached

EVAL_SEED = 61
TAGGER_LINES = 6000
PROFILE = 16


# ---------------------------------------------------------------- tagger


def _tagged(part: str, length: int | None = None, n: int | None = None):
    """(ids [n, T], tags [n, T] with -1 at padding): T = `length`, or the longest line."""
    from examples import real_data as rd

    lines, tags = rd.tagged_code(part)
    if part == "train":
        lines, tags = lines[:TAGGER_LINES], tags[:TAGGER_LINES]
    if n is not None:
        lines, tags = [lines[i % len(lines)] for i in range(n)], [tags[i % len(tags)] for i in range(n)]
    length = length or max(len(t) for t in lines)
    ids = rd.char_ids(lines, length)
    truth = np.full(ids.shape, -1, np.int32)
    for i, t in enumerate(tags):
        truth[i, : min(len(t), length)] = t[:length]
    return ids, truth


def _tagger_model():
    import keras
    from keras import layers

    from examples import real_data as rd

    keras.utils.set_random_seed(0)
    chars = keras.Input((None,), dtype="int32", name="chars")
    h = layers.Embedding(rd.CHARSET, 16, mask_zero=True, name="embedding")(chars)
    h = layers.Bidirectional(layers.GRU(32, return_sequences=True, name="gru"), name="bigru")(h)
    tags = layers.Dense(len(rd.TAGS), activation="softmax", name="tags")(h)
    return keras.Model(chars, tags, name="tagger")


def tagger():
    import keras

    def train(model):
        ids, truth = _tagged("train")
        held_ids, held_truth = _tagged("heldout")
        keras.utils.set_random_seed(0)
        weights = (truth >= 0).astype(np.float32)
        model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", jit_compile=False)
        model.fit(ids, np.maximum(truth, 0), sample_weight=weights, epochs=6, batch_size=64, verbose=0)
        return {**tagging_figures(model.predict(held_ids, batch_size=256, verbose=0), held_truth), "epochs": 6}

    ids, truth = _tagged("train")
    return train_cached("tagger", (_tagger_model, tagger, _tagged, tagging_figures), _tagger_model, train, ids, truth)


def tagging_figures(scores: np.ndarray, truth: np.ndarray) -> dict:
    """Per-character accuracy over the real (unpadded) characters."""
    real = truth >= 0
    return {"heldout_accuracy": float(np.mean(np.argmax(scores, -1)[real] == truth[real]))}


def tagger_heldout():
    ids, truth = _tagged("heldout")
    return {"chars": ids}, truth


def tagger_data(n: int = 64, seed: int = EVAL_SEED, dims: dict | None = None):
    """Parity lines cut or padded to the dynamic length `dims["time"]`."""
    ids, _ = _tagged("train", length=(dims or {}).get("time", 48), n=n)
    return {"chars": ids}


# ---------------------------------------------------------------- two inputs of different ranks


def _two_inputs(part: str, seed: int | None = None):
    from examples import real_data as rd

    image, y = rd.digit_images(part, 16, channels=1, seed=seed)
    return {"image": image, "profile": image[..., 0].sum(axis=1) / 16.0}, y


def _multi_input_model():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 1), name="image")
    profile = keras.Input((PROFILE,), name="profile")
    h = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(image)
    h = layers.MaxPooling2D(2, name="pool1")(h)
    h = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(h)
    h = layers.MaxPooling2D(2, name="pool2")(h)
    h = layers.Flatten(name="flatten")(h)
    p = layers.Dense(16, activation="relu", name="profile_dense")(profile)
    joined = layers.Concatenate(name="join")([h, p])
    probs = layers.Dense(10, activation="softmax", name="probs")(joined)
    return keras.Model([image, profile], probs, name="multi_input")


def multi_input():
    import keras

    from examples.trained import fit_classifier

    x, y = _two_inputs("train")
    hx, hy = _two_inputs("heldout")
    return train_cached("multi_input", (_multi_input_model, multi_input, _two_inputs), _multi_input_model,
                        lambda m: fit_classifier(m, keras, x, y, hx, hy, 20, lr=3e-3, augment=lambda e: _two_inputs("train", seed=e)[0]),
                        x["image"], y)


def multi_input_heldout(part: str = "heldout"):
    return _two_inputs(part)


def multi_input_data(n: int = 128, seed: int = EVAL_SEED):
    return parity_data(multi_input_heldout("train"), n)


# ---------------------------------------------------------------- weights-only file + factory


def weights_only_architecture():
    """The architecture alone, as a user's own code would define it."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((16, 16, 1), name="image"),
        layers.SeparableConv2D(16, 3, padding="same", activation="relu", name="sep1"),
        layers.MaxPooling2D(2, name="pool1"),
        layers.SeparableConv2D(32, 3, padding="same", activation="relu", name="sep2"),
        layers.MaxPooling2D(2, name="pool2"),
        layers.Flatten(name="flatten"),
        layers.Dense(10, activation="softmax", name="probs"),
    ], name="weights_only")


def weights_file() -> str:
    """The trained weights-only file (trained into examples.trained's cache when missing)."""
    import keras

    from examples import real_data as rd
    from examples.trained import fit_classifier, trained

    x, y = _two_inputs("train")
    hx, hy = _two_inputs("heldout")
    done = trained("weights_only", weights_only_architecture,
                   lambda m: fit_classifier(m, keras, x["image"], y, hx["image"], hy, 20, lr=3e-3,
                                            augment=lambda e: _two_inputs("train", seed=e)[0]["image"]),
                   (weights_only_architecture, weights_file, _two_inputs), rd.fingerprint(x["image"], y))
    return str(done.weights)


def weights_only():
    """The factory a config names: rebuild the architecture, load the weights-only file."""
    model = weights_only_architecture()
    model.load_weights(weights_file())
    return model


def weights_only_heldout(part: str = "heldout"):
    x, y = _two_inputs(part)
    return {"image": x["image"]}, y


def weights_only_data(n: int = 128, seed: int = EVAL_SEED):
    return parity_data(weights_only_heldout("train"), n)
