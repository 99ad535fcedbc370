"""Models with dynamic dimensions beyond the batch: a BERT-style encoder (token ids,
padding mask and segment ids, each [batch, sequence]), an LSTM over a dynamic time
axis, and a fully-convolutional network over images of any height and width."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VOCAB = 100
HIDDEN = 32


def _encoder(masked: bool):
    import keras
    from keras import layers, ops

    keras.utils.set_random_seed(7)
    ids = keras.Input((None,), dtype="int32", name="ids")
    mask = keras.Input((None,), dtype="int32", name="mask")
    segments = keras.Input((None,), dtype="int32", name="segments")
    x = layers.Embedding(VOCAB, HIDDEN)(ids) + layers.Embedding(2, HIDDEN)(segments)
    x = layers.LayerNormalization()(x)
    keep = ops.cast(mask, "float32")  # expand_dims, not [:, None]: TFLite's strided slice takes no new axes
    attention_mask = ops.cast(ops.expand_dims(keep, 2) * ops.expand_dims(keep, 1), "bool") if masked else None
    attended = layers.MultiHeadAttention(num_heads=2, key_dim=16)(x, x, attention_mask=attention_mask)
    x = layers.LayerNormalization()(x + attended)
    # tanh-approximated GELU (as BERT's own): the exact one's Erfc has no ONNX conversion
    ff = layers.Dense(HIDDEN)(layers.Dense(64, activation=lambda t: keras.activations.gelu(t, approximate=True))(x))
    x = layers.LayerNormalization()(x + ff)
    if masked:  # mean over the real tokens only
        weights = ops.expand_dims(keep, 2)
        pooled = ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
    else:  # mean over every position: padding changes it
        pooled = ops.mean(x, axis=1)
    logits = layers.Dense(3)(pooled)
    return keras.Model([ids, mask, segments], {"sequence": x, "logits": logits})


def bert_encoder():
    return _encoder(masked=True)


def bert_encoder_unmasked():
    return _encoder(masked=False)


def lstm_tagger():
    import keras
    from keras import layers

    keras.utils.set_random_seed(11)
    frames = keras.Input((None, 8), name="frames")
    x = layers.LSTM(16, return_sequences=True)(frames)
    x = layers.LSTM(16)(x)
    return keras.Model(frames, layers.Dense(4, name="scores")(x))


def fcn_segmenter():
    import keras
    from keras import layers

    keras.utils.set_random_seed(13)
    image = keras.Input((None, None, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(image)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    return keras.Model(image, layers.Conv2D(4, 1, name="mask_logits")(x))
