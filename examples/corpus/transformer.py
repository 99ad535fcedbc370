"""A Transformer encoder over word ids: Embedding with padding mask (id 0), learned
positions, MultiHeadAttention (the mask reaches attention and pooling),
LayerNormalization, a GELU feed-forward block, a softmax head.

Task: lines of Python's standard-library sources (examples/real_data.py), code or prose,
as the first 16 words and symbols (ids: 0 padding, 1 unknown, 2..63 the 62 most common
in the training lines).
"""
from __future__ import annotations

from examples.corpus._common import parity_data, train_cached

LENGTH, VOCAB, DIM, HEADS = 16, 64, 32, 2
EVAL_SEED = 31
TRAIN_LINES = 6000  # per class


def _ids(part: str):
    from examples import real_data as rd

    train, _ = rd.python_lines("train", per_class=TRAIN_LINES)
    x, y = rd.python_lines(part, per_class=TRAIN_LINES if part == "train" else None)
    return rd.word_ids(x, rd.top_words(train, VOCAB - 2), LENGTH), y


def _position_layer():
    import keras

    class PositionEmbedding(keras.layers.Layer):
        """Adds a learned vector per position; passes the padding mask on."""

        def build(self, input_shape):
            self.table = self.add_weight(shape=(input_shape[1], input_shape[2]), initializer="glorot_uniform", name="table")

        def call(self, x, mask=None):
            return x + self.table[None]

        def compute_mask(self, x, mask=None):
            return mask

    return PositionEmbedding


def _model():
    import keras
    from keras import layers

    PositionEmbedding = _position_layer()
    keras.utils.set_random_seed(0)
    ids = keras.Input((LENGTH,), dtype="int32", name="ids")
    tokens = layers.Embedding(VOCAB, DIM, mask_zero=True, name="tokens")(ids)
    h = PositionEmbedding(name="positions")(tokens)
    attention = layers.MultiHeadAttention(HEADS, DIM // HEADS, name="attention")(h, h)
    h = layers.LayerNormalization(name="norm1")(layers.Add(name="residual1")([h, attention]))
    ff = layers.Dense(2 * DIM, activation="gelu", name="ff_gelu")(h)
    ff = layers.Dense(DIM, name="ff_out")(ff)
    h = layers.LayerNormalization(name="norm2")(layers.Add(name="residual2")([h, ff]))
    pooled = layers.GlobalAveragePooling1D(name="pool")(h)
    probs = layers.Dense(2, activation="softmax", name="probs")(pooled)
    return keras.Model(ids, probs, name="transformer_encoder")


def build():
    import keras

    from examples.trained import fit_classifier

    x, y = _ids("train")
    hx, hy = _ids("heldout")
    return train_cached("transformer_encoder", (_model, build, _ids, _position_layer), _model, lambda m: fit_classifier(m, keras, x, y, hx, hy, 8, lr=2e-3), x, y)


def eval_heldout(part: str = "heldout"):
    x, y = _ids(part)
    return {"ids": x}, y


def eval_data(n: int = 128, seed: int = EVAL_SEED):
    return parity_data(eval_heldout("train"), n)
