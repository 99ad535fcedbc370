"""Classifiers trained here on data scikit-learn ships inside its wheel (nothing is
downloaded), for the quantization repair search: digits (1,797 8x8 scans), wine (178
samples, 13 features) and breast cancer (569 samples, 30 features).

Each factory trains in a few seconds with fixed seeds, so repeated calls give the same
weights. Every model standardizes its input inside the model the way scikit-learn's
`StandardScaler` does (per feature: minus the training mean, over the training standard
deviation, 1 where a feature never varies), the usual preprocessing for these datasets,
written as a Keras `Normalization` layer named `standardize` so the exported model takes
raw features. Rare digit pixels and wide tabular features then reach tens of standard
deviations: an int8 activation range sized for them rounds ordinary values coarsely,
and plain int8 fails parity on each of these models (figures in docs/repair.md).

A fixed shuffle of each dataset trains on its first part; the data generators draw
from the held-out rest (with repetition when more samples are asked than are held out).
"""
from __future__ import annotations

import numpy as np

DIGITS_TRAIN = 1297  # of 1,797
WINE_TRAIN = 118  # of 178
CANCER_TRAIN = 369  # of 569


def _dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    return x[order].astype(np.float32), y[order].astype(np.int32)


def _digits(upsample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    x, y = _dataset("digits")
    x = x.reshape(-1, 8, 8, 1)  # pixel values 0..16, as shipped
    return np.repeat(np.repeat(x, upsample, axis=1), upsample, axis=2), y


def _held_out(x: np.ndarray, y: np.ndarray, train: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = x[train:], y[train:]
    pick = np.random.default_rng(seed).permutation(len(x))
    pick = np.concatenate([pick] * (n // len(x) + 1))[:n]
    return x[pick], y[pick]


def digits_data(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``({"image": float32 [n, 16, 16, 1]}, labels int32 [n])`` from the held-out digits,
    upsampled 2x (nearest)."""
    x, y = _held_out(*_digits(2), DIGITS_TRAIN, n, seed)
    return {"image": x}, y


def digit_rows_data(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``({"rows": float32 [n, 8, 8]}, labels)``: the held-out digits at 8x8, each pixel row a token."""
    x, y = _held_out(*_digits(), DIGITS_TRAIN, n, seed)
    return {"rows": x[..., 0]}, y


def wine_data(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``({"features": float32 [n, 13]}, labels int32 [n])`` from the held-out wines."""
    x, y = _held_out(*_dataset("wine"), WINE_TRAIN, n, seed)
    return {"features": x}, y


def cancer_data(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``({"features": float32 [n, 30]}, labels int32 [n])`` from the held-out breast cancer cases."""
    x, y = _held_out(*_dataset("breast_cancer"), CANCER_TRAIN, n, seed)
    return {"features": x}, y


def _standardize(layers, x: np.ndarray, axis):
    """StandardScaler's statistics over the training samples, as a Keras layer."""
    mean, var = x.mean(axis=0), x.var(axis=0)
    var[var == 0] = 1.0  # StandardScaler leaves a constant feature unscaled
    return layers.Normalization(axis=axis, mean=mean, variance=var, name="standardize")


def _fit(keras, model, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int = 32):
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    return model


def residual_cnn():
    """Keras 3 residual CNN with BatchNorm on digits; ``image`` float32 ``[None, 16, 16, 1]``
    (pixel values 0..16) -> ``probs`` float32 ``[None, 10]``.

    Four epochs (held-out accuracy 0.98): trained for eight, its plain int8 passes parity;
    at four it fails (5.9% of the probabilities beyond the int8 budget, 5% allowed)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    x, y = _digits(2)

    def conv_bn(h, filters, name, strides=1, relu=True):
        h = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(h)
        h = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(h)  # 0.9: few steps on 1,297 samples
        return layers.ReLU(name=f"{name}_relu")(h) if relu else h

    def block(h, filters, name):
        skip = h
        h = conv_bn(h, filters, f"{name}a")
        h = conv_bn(h, filters, f"{name}b", relu=False)
        return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([h, skip]))

    image = keras.Input((16, 16, 1), name="image")
    h = conv_bn(_standardize(layers, x[:DIGITS_TRAIN], (1, 2, 3))(image), 16, "stem")
    h = block(h, 16, "res1")
    h = conv_bn(h, 32, "down", strides=2)
    h = block(h, 32, "res2")
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    probs = layers.Dense(10, activation="softmax", name="probs")(h)
    return _fit(keras, keras.Model(image, probs, name="residual_cnn"), x[:DIGITS_TRAIN], y[:DIGITS_TRAIN], epochs=4)


def mobilenet_blocks():
    """tf_keras (Keras 2) MobileNetV2-style inverted residual blocks (1x1 expansion, 3x3
    depthwise, ReLU6, linear 1x1 projection, BatchNorm) on digits; ``image`` float32
    ``[None, 16, 16, 1]`` -> ``probs`` float32 ``[None, 10]``."""
    import tf_keras as keras
    from tf_keras import layers

    keras.utils.set_random_seed(0)
    x, y = _digits(2)

    def inverted(h, expand, out, stride, name):
        skip = h
        h = layers.Conv2D(expand, 1, use_bias=False, name=f"{name}_expand")(h)
        h = layers.BatchNormalization(momentum=0.9, name=f"{name}_expand_bn")(h)
        h = layers.ReLU(6.0, name=f"{name}_expand_relu")(h)
        h = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(h)
        h = layers.BatchNormalization(momentum=0.9, name=f"{name}_dw_bn")(h)
        h = layers.ReLU(6.0, name=f"{name}_dw_relu")(h)
        h = layers.Conv2D(out, 1, use_bias=False, name=f"{name}_project")(h)
        h = layers.BatchNormalization(momentum=0.9, name=f"{name}_project_bn")(h)
        return layers.Add(name=f"{name}_add")([h, skip]) if stride == 1 and skip.shape[-1] == out else h

    image = keras.Input((16, 16, 1), name="image")
    h = _standardize(layers, x[:DIGITS_TRAIN], (1, 2, 3))(image)
    h = layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(h)
    h = layers.BatchNormalization(momentum=0.9, name="stem_bn")(h)
    h = layers.ReLU(6.0, name="stem_relu")(h)
    h = inverted(h, 48, 16, 1, "block1")
    h = inverted(h, 48, 24, 2, "block2")
    h = inverted(h, 96, 24, 1, "block3")
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    probs = layers.Dense(10, activation="softmax", name="probs")(h)
    return _fit(keras, keras.Model(image, probs, name="mobilenet_blocks"), x[:DIGITS_TRAIN], y[:DIGITS_TRAIN], epochs=8)


def row_transformer():
    """Keras 3 Transformer encoder block over the 8 pixel rows of a digit (each row a
    token): Dense embedding, 4-head self-attention, LayerNorm, GELU feed-forward;
    ``rows`` float32 ``[None, 8, 8]`` -> ``probs`` float32 ``[None, 10]``."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    x, y = _digits()
    x = x[..., 0]
    rows = keras.Input((8, 8), name="rows")
    h = layers.Dense(32, name="embed")(_standardize(layers, x[:DIGITS_TRAIN], (1, 2))(rows))
    a = layers.MultiHeadAttention(4, 8, name="attention")(h, h)
    h = layers.LayerNormalization(name="norm1")(layers.Add(name="attn_add")([h, a]))
    f = layers.Dense(64, activation="gelu", name="ffn1")(h)
    f = layers.Dense(32, name="ffn2")(f)
    h = layers.LayerNormalization(name="norm2")(layers.Add(name="ffn_add")([h, f]))
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    probs = layers.Dense(10, activation="softmax", name="probs")(h)
    return _fit(keras, keras.Model(rows, probs, name="row_transformer"), x[:DIGITS_TRAIN], y[:DIGITS_TRAIN], epochs=12)


def _mlp(name: str, x: np.ndarray, y: np.ndarray, classes: int, epochs: int):
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    features = keras.Input((x.shape[1],), name="features")
    h = layers.Dense(32, activation="relu", name="hidden1")(_standardize(layers, x, -1)(features))
    h = layers.Dense(32, activation="relu", name="hidden2")(h)
    probs = layers.Dense(classes, activation="softmax", name="probs")(h)
    return _fit(keras, keras.Model(features, probs, name=name), x, y, epochs=epochs, batch_size=16)


def wine_mlp():
    """Keras 3 MLP on wine; ``features`` float32 ``[None, 13]`` (raw, 0.1 .. 1,680) -> ``probs`` ``[None, 3]``."""
    x, y = _dataset("wine")
    return _mlp("wine_mlp", x[:WINE_TRAIN], y[:WINE_TRAIN], 3, epochs=60)


def cancer_mlp():
    """Keras 3 MLP on breast cancer; ``features`` float32 ``[None, 30]`` (raw, 0.001 .. 4,254) -> ``probs`` ``[None, 2]``."""
    x, y = _dataset("breast_cancer")
    return _mlp("cancer_mlp", x[:CANCER_TRAIN], y[:CANCER_TRAIN], 2, epochs=40)
