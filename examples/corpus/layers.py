"""Small trained models that each exercise one kind of layer.

`prelu`: a CNN with PReLU activations and a depthwise convolution, on the 4-class
generated shapes of examples.image_cnn (32x32).
`control_flow`: a subclassed Keras model whose call runs a `tf.while_loop` of four
refinement steps, each choosing its layer with `tf.cond`.
`asserts`: a layer that checks its input with `tf.debugging` asserts before scaling it.
"""
from __future__ import annotations

import numpy as np

from examples.corpus._common import fit

EVAL_SEED = 23


def prelu():
    import keras
    from keras import layers

    from examples.image_cnn import make_images

    keras.utils.set_random_seed(0)
    image = keras.Input((32, 32, 3), name="image")
    h = layers.Conv2D(16, 3, padding="same", name="conv1")(image)
    h = layers.PReLU(shared_axes=[1, 2], name="prelu1")(h)
    h = layers.MaxPooling2D(2, name="pool1")(h)
    h = layers.DepthwiseConv2D(3, padding="same", name="depthwise")(h)
    h = layers.Conv2D(32, 1, name="pointwise")(h)
    h = layers.PReLU(shared_axes=[1, 2], name="prelu2")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    probs = layers.Dense(4, activation="softmax", name="probs")(h)
    model = keras.Model(image, probs, name="prelu_cnn")
    x, y = make_images(2048, 0)
    fit(model, x, y, "sparse_categorical_crossentropy", epochs=3)
    return model


def prelu_data(n: int = 128, seed: int = EVAL_SEED):
    from examples.image_cnn import make_images

    x, y = make_images(n, seed)
    return {"image": x}, y


def _relation(n: int, seed: int, features: int = 8):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (n, features)).astype(np.float32)
    y = (np.sin(x[:, :1]) + 0.5 * x[:, 1:2] * x[:, 2:3] - 0.3 * np.abs(x[:, 3:4])).astype(np.float32)
    return x, y


def control_flow():
    import keras
    import tensorflow as tf
    from keras import layers

    class Refiner(keras.Model):
        """h <- h + step(h) four times; even steps use `smooth`, odd steps `sharp`."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.embed = layers.Dense(16, activation="tanh", name="embed")
            self.smooth = layers.Dense(16, activation="tanh", name="smooth")
            self.sharp = layers.Dense(16, activation="relu", name="sharp")
            self.head = layers.Dense(1, name="head")

        def build(self, input_shape):
            self.embed.build(input_shape)
            self.smooth.build((None, 16))
            self.sharp.build((None, 16))
            self.head.build((None, 16))

        def call(self, x):
            h = self.embed(x)

            def body(i, h):
                step = tf.cond(tf.equal(i % 2, 0), lambda: self.smooth(h), lambda: 0.5 * self.sharp(h))
                return i + 1, h + step

            _, h = tf.while_loop(lambda i, h: i < 4, body, (tf.constant(0), h))
            return self.head(h)

    keras.utils.set_random_seed(0)
    model = Refiner(name="refiner")
    model.build((None, 8))
    x, y = _relation(2048, 0)
    fit(model, x, y, "mse", epochs=6)
    return model


def control_flow_data(n: int = 128, seed: int = EVAL_SEED):
    return {"x": _relation(n, seed)[0]}


def asserts():
    import keras
    import tensorflow as tf
    from keras import layers

    class CheckedScale(keras.layers.Layer):
        """Scales its input per feature after checking it is finite-range and 8 wide."""

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

        def call(self, x):
            checks = [
                tf.debugging.assert_less_equal(tf.reduce_max(tf.abs(x)), 1e4, message="input out of range"),
                tf.debugging.assert_equal(tf.shape(x)[1:], tf.constant([8]), message="expected 8 features"),
            ]
            with tf.control_dependencies(checks):
                return tf.identity(x) * self.scale

    keras.utils.set_random_seed(0)
    features = keras.Input((8,), name="x")
    h = CheckedScale(name="checked_scale")(features)
    h = layers.Dense(32, activation="relu", name="hidden")(h)
    value = layers.Dense(1, name="value")(h)
    model = keras.Model(features, value, name="asserted")
    x, y = _relation(2048, 1)
    fit(model, x, y, "mse", epochs=6)
    return model


def asserts_data(n: int = 128, seed: int = EVAL_SEED):
    return {"x": _relation(n, seed)[0]}
