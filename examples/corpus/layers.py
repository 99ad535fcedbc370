"""Small trained models that each exercise one kind of layer, on scikit-learn's bundled data.

`prelu`: a CNN with PReLU activations and a depthwise convolution, on handwritten digits
upsampled to 32x32 (10 classes).
`control_flow`: a subclassed Keras model whose call runs a `tf.while_loop` of four
refinement steps, each choosing its layer with `tf.cond`; regresses the diabetes
progression score from scikit-learn's 10 scaled baseline variables.
`asserts`: a layer that checks its input with `tf.debugging` asserts before scaling it;
the same regression from the raw (unscaled) variables.
"""
from __future__ import annotations

import numpy as np

from examples.corpus._common import parity_data, train_cached

EVAL_SEED = 23


def _prelu_model():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    image = keras.Input((32, 32, 3), name="image")
    h = layers.Conv2D(16, 3, padding="same", name="conv1")(image)
    h = layers.PReLU(shared_axes=[1, 2], name="prelu1")(h)
    h = layers.MaxPooling2D(2, name="pool1")(h)
    h = layers.DepthwiseConv2D(3, padding="same", name="depthwise")(h)
    h = layers.Conv2D(32, 1, name="pointwise")(h)
    h = layers.PReLU(shared_axes=[1, 2], name="prelu2")(h)
    h = layers.MaxPooling2D(2, name="pool2")(h)
    h = layers.Flatten(name="flatten")(h)
    probs = layers.Dense(10, activation="softmax", name="probs")(h)
    return keras.Model(image, probs, name="prelu_cnn")


def prelu():
    import keras

    from examples import real_data as rd
    from examples.trained import fit_classifier

    x, y = rd.digit_images("train", 32)
    hx, hy = rd.digit_images("heldout", 32)
    return train_cached("prelu", (_prelu_model, prelu), _prelu_model,
                        lambda m: fit_classifier(m, keras, x, y, hx, hy, 20, augment=lambda e: rd.digit_images("train", 32, seed=e)[0]),
                        x, y)


def prelu_heldout(part: str = "heldout"):
    from examples import real_data as rd

    x, y = rd.digit_images(part, 32)
    return {"image": x}, y


def prelu_data(n: int = 128, seed: int = EVAL_SEED):
    return parity_data(prelu_heldout("train"), n)


def _refiner():
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
    model.build((None, 10))
    return model


def control_flow():
    import keras

    from examples import real_data as rd
    from examples.trained import fit_regressor

    x, y = rd.diabetes("train")
    hx, hy = rd.diabetes("heldout")
    return train_cached("control_flow", (_refiner, control_flow), _refiner, lambda m: fit_regressor(m, keras, x * 10, y, hx * 10, hy, 150, lr=3e-3), x, y)


def control_flow_heldout(part: str = "heldout"):
    from examples import real_data as rd

    x, y = rd.diabetes(part)
    return {"x": x * 10}, y  # scikit-learn's scaled copy has unit-norm columns: x10 gives unit-order features


def control_flow_data(n: int = 128, seed: int = EVAL_SEED):
    return parity_data(control_flow_heldout("train"), n, labels=False)


def _asserted():
    import keras
    import tensorflow as tf
    from keras import layers

    from examples import real_data as rd

    class CheckedScale(keras.layers.Layer):
        """Scales its input per feature after checking it is finite-range and 10 wide."""

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

        def call(self, x):
            checks = [
                tf.debugging.assert_less_equal(tf.reduce_max(tf.abs(x)), 1e4, message="input out of range"),
                tf.debugging.assert_equal(tf.shape(x)[1:], tf.constant([10]), message="expected 10 features"),
            ]
            with tf.control_dependencies(checks):
                return tf.identity(x) * self.scale

    keras.utils.set_random_seed(0)
    x, _ = rd.diabetes("train", scaled=False)
    features = keras.Input((10,), name="x")
    h = CheckedScale(name="checked_scale")(features)
    norm = layers.Normalization(name="standardize")
    norm.adapt(x)
    h = layers.Dense(32, activation="relu", name="hidden")(norm(h))
    value = layers.Dense(1, name="value")(h)
    return keras.Model(features, value, name="asserted")


def asserts():
    import keras

    from examples import real_data as rd
    from examples.trained import fit_regressor

    x, y = rd.diabetes("train", scaled=False)
    hx, hy = rd.diabetes("heldout", scaled=False)
    return train_cached("asserts", (_asserted, asserts), _asserted, lambda m: fit_regressor(m, keras, x, y, hx, hy, 150, lr=3e-3), x, y)


def asserts_heldout(part: str = "heldout"):
    from examples import real_data as rd

    x, y = rd.diabetes(part, scaled=False)
    return {"x": x}, y


def asserts_data(n: int = 128, seed: int = EVAL_SEED):
    return parity_data(asserts_heldout("train"), n, labels=False)
