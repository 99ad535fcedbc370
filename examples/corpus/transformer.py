"""A Transformer encoder over token ids: Embedding with padding mask (id 0),
learned positions, MultiHeadAttention (the mask reaches attention and pooling),
LayerNormalization, a GELU feed-forward block, a softmax head.

Task (generated): ids 1..63 in sequences of 16 with 4..16 real tokens, padded with 0;
class 1 when tokens 1..20 outnumber tokens 21..40, else class 0.
"""
from __future__ import annotations

import numpy as np

from examples.corpus._common import fit

LENGTH, VOCAB, DIM, HEADS = 16, 64, 32, 2
EVAL_SEED = 31


def make_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (n, LENGTH))
    lengths = rng.integers(4, LENGTH + 1, n)
    ids[np.arange(LENGTH)[None, :] >= lengths[:, None]] = 0
    up = ((ids >= 1) & (ids <= 20)).sum(1)
    down = ((ids >= 21) & (ids <= 40)).sum(1)
    return ids.astype(np.int32), (up > down).astype(np.int32)




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


def build():
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
    model = keras.Model(ids, probs, name="transformer_encoder")
    x, y = make_data(2048, 0)
    fit(model, x, y, "sparse_categorical_crossentropy", epochs=4)
    return model


def eval_data(n: int = 128, seed: int = EVAL_SEED):
    x, y = make_data(n, seed)
    return {"ids": x}, y
