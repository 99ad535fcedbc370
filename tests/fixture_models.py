"""Small, deliberately problematic models for testing tfship's checks.

Each factory builds its model in a second or a few and needs no files or
downloads. Trained factories fix their seeds, so repeated calls give the same
weights. Every docstring states the input signature the model expects.
"""

from __future__ import annotations

import random

import numpy as np
import tensorflow as tf


# --------------------------------------------------------------------------
# Graph-capture hazards
# --------------------------------------------------------------------------


class FrozenRandom(tf.Module):
    """Adds a Python-side random number to ``x``.

    ``random.random()`` runs in Python, so a traced graph bakes in whichever
    value was drawn at trace time, while every eager call draws a new one.
    """

    def __call__(self, x):
        return x + random.random()


def frozen_random() -> FrozenRandom:
    """``tf.Module``; ``__call__(x)`` with ``x`` float32 ``[None, 4]``.

    Eager calls differ from each other and from any exported graph, which
    always adds the constant frozen when it was traced.
    """
    return FrozenRandom(name="frozen_random")


class _PythonIfGate:
    """Shared buggy body: a Python ``if`` on a non-scalar tensor."""

    threshold = 0.5

    def _gate(self, x):
        if x > self.threshold:
            return x * 2.0
        return x


def python_if():
    """Keras 3 subclassed model; call with ``x`` float32 ``[None, 4]``.

    Its ``ThresholdGate`` layer does ``if x > self.threshold:`` on a ``[None,
    4]`` tensor. Left unbuilt on purpose: building it as a functional model
    would already raise.

    Tracing under ``tf.function`` (TF 2.21, Keras 3.15) raises
    ``tensorflow.python.framework.errors_impl.OperatorNotAllowedInGraphError``
    (a ``TypeError`` subclass), whatever the ``autograph`` setting, because
    AutoGraph does not convert Keras layer code. Message first line, with
    autograph on (the default): ``in user code:``; the nested message and,
    with ``autograph=False``, the first line read ``Exception encountered
    when calling ThresholdGate.call().`` followed by ``Using a symbolic
    `tf.Tensor` as a Python `bool` is not allowed. ...``.

    Eager calls with more than one element fail too, with ``ValueError``:
    ``The truth value of an array with more than one element is ambiguous.``
    """
    import keras

    class ThresholdGate(_PythonIfGate, keras.layers.Layer):
        def call(self, x):
            return self._gate(x)

    class PythonIfModel(keras.Model):
        def __init__(self):
            super().__init__(name="python_if")
            self.gate = ThresholdGate(name="threshold_gate")

        def call(self, x):
            return self.gate(x)

    return PythonIfModel()


class PythonIfModule(_PythonIfGate, tf.Module):
    def __call__(self, x):
        return self._gate(x)


def python_if_module() -> PythonIfModule:
    """``tf.Module``; ``__call__(x)`` with ``x`` float32 ``[None, 4]``.

    Same ``if x > threshold:`` bug as :func:`python_if`, in plain module code,
    which AutoGraph does convert, so the exception depends on the setting
    (TF 2.21):

    * ``tf.function`` default (autograph on): ``ValueError``, message first
      line ``in user code:``; the nested message is ``condition of if
      statement expected to be `tf.bool` scalar, got Tensor("Greater:0",
      shape=(None, 4), dtype=bool); ...``.
    * ``autograph=False``:
      ``tensorflow.python.framework.errors_impl.OperatorNotAllowedInGraphError``
      with first line ``Using a symbolic `tf.Tensor` as a Python `bool` is not
      allowed. ...``.
    """
    return PythonIfModule(name="python_if_module")


# --------------------------------------------------------------------------
# Ops that some targets cannot represent
# --------------------------------------------------------------------------


def float64_op():
    """Keras 3 functional model; input ``x`` float32 ``[None, 4]``, output
    float32 ``[None, 2]``.

    The layer named ``to_double`` casts to float64, computes
    ``log1p(x**2) + 0.5 * x`` in double precision and casts back, so the graph
    contains float64 tensors between float32 layers.
    """
    import keras

    class ToDouble(keras.layers.Layer):
        def call(self, x):
            x64 = keras.ops.cast(x, "float64")
            y64 = keras.ops.log1p(keras.ops.square(x64)) + 0.5 * x64
            return keras.ops.cast(y64, "float32")

    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(4,), name="x")
    h = keras.layers.Dense(4, name="dense_in")(x)
    h = ToDouble(name="to_double")(h)
    y = keras.layers.Dense(2, name="dense_out")(h)
    return keras.Model(x, y, name="float64_op")


class StringOp(tf.Module):
    """Round-trips ``x`` through text: float -> string -> float."""

    def __call__(self, x):
        # Scientific notation with 9 digits after the point is enough to
        # round-trip any float32 exactly (the default and shortest=True print
        # only 6 significant digits), so only the op types (string tensors)
        # are the problem, not the numbers.
        text = tf.strings.as_string(x, precision=9, scientific=True)
        return tf.strings.to_number(text, out_type=tf.float32) * 2.0


def string_op() -> StringOp:
    """``tf.Module``; ``__call__(x)`` with ``x`` float32 ``[None, 4]``, returns
    float32 ``2 * x`` (exactly) computed via ``tf.strings.as_string`` and
    ``tf.strings.to_number``."""
    return StringOp(name="string_op")


# --------------------------------------------------------------------------
# Quantization hazard
# --------------------------------------------------------------------------

_OUTLIER_FEATURES = 16
_OUTLIER_CLASSES = 4
_OUTLIER_HIDDEN = 32
OUTLIER_GAIN = 1e4


def _linear_rule(num_features: int, num_classes: int, rule_seed: int):
    """Fixed random linear labelling rule, shared by every data seed."""
    return np.random.default_rng(rule_seed).normal(size=(num_features, num_classes))


def int8_outlier_data(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return ``({"x": float32 [n, 16]}, labels int32 [n])`` for
    :func:`int8_outlier`; labels are the argmax of a fixed linear map."""
    rule = _linear_rule(_OUTLIER_FEATURES, _OUTLIER_CLASSES, rule_seed=2024)
    x = np.random.default_rng(seed).normal(size=(n, _OUTLIER_FEATURES)).astype(np.float32)
    return {"x": x}, np.argmax(x @ rule, axis=1).astype(np.int32)


def int8_outlier():
    """Trained Keras 3 classifier whose hidden activation has a 1e4x outlier.

    Input ``x`` float32 ``[None, 16]``; layers ``hidden`` (Dense 32, ReLU)
    and ``probs`` (Dense 4, softmax); output float32 ``[None, 4]``.

    After training, one hidden unit's incoming weights and bias are multiplied
    by 1e4 and its outgoing weights divided by 1e4. ReLU is positively
    homogeneous, so the float function is unchanged (max abs difference about
    3e-7), but the ``hidden`` tensor's range grows ~1e4x. Per-tensor int8
    activation quantization then gives it a scale of ~200, which rounds every
    other unit to zero, leaving only the rescaled unit, chosen as the one
    that predicts the float model's class worst on its own.

    Measured (TF 2.21, ai-edge-litert 2.3; ``model.export`` ->
    ``TFLiteConverter.from_saved_model``, ``Optimize.DEFAULT``,
    ``TFLITE_BUILTINS_INT8``, int8 input/output, 100 calibration samples of
    ``int8_outlier_data(., seed=0)``; 512 eval samples with seed=1): float
    accuracy 0.977; int8 top-1 agreement with float 0.31, int8 accuracy 0.32.
    """
    return _outlier_model(front=False)


def int8_outlier_deep():
    """:func:`int8_outlier` with a well-behaved layer ``front`` (Dense 16, ReLU) before
    ``hidden``: ``x`` -> ``front`` -> ``hidden`` (the 1e4x unit) -> ``probs``. Keeping
    ``hidden`` and ``probs`` in float leaves ``front`` to quantize."""
    return _outlier_model(front=True)


def _outlier_model(front: bool):
    import keras

    keras.utils.set_random_seed(0)
    inputs, labels = int8_outlier_data(2048, seed=0)
    x = keras.Input(shape=(_OUTLIER_FEATURES,), name="x")
    features = keras.layers.Dense(16, activation="relu", name="front")(x) if front else x
    hidden = keras.layers.Dense(_OUTLIER_HIDDEN, activation="relu", name="hidden")(features)
    probs = keras.layers.Dense(_OUTLIER_CLASSES, activation="softmax", name="probs")(hidden)
    model = keras.Model(x, probs, name="int8_outlier_deep" if front else "int8_outlier")
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(inputs["x"], labels, batch_size=64, epochs=20, verbose=0)

    hidden_layer, probs_layer = model.get_layer("hidden"), model.get_layer("probs")
    probe_x = int8_outlier_data(512, seed=1)[0]["x"]
    unit = _least_informative_unit(keras.Model(x, hidden)(probe_x), probs_layer, model(probe_x))

    kernel, bias = hidden_layer.get_weights()
    kernel[:, unit] *= OUTLIER_GAIN
    bias[unit] *= OUTLIER_GAIN
    hidden_layer.set_weights([kernel, bias])
    out_kernel, out_bias = probs_layer.get_weights()
    out_kernel[unit] /= OUTLIER_GAIN
    probs_layer.set_weights([out_kernel, out_bias])
    return model


def _least_informative_unit(hidden, probs_layer, probs) -> int:
    """Hidden unit whose contribution alone agrees least with the full
    model's top-1 class; after quantization it is the only one left, so this
    makes the damage large and not an accident of which unit was picked."""
    hidden, probs = np.asarray(hidden), np.asarray(probs)
    kernel, bias = probs_layer.get_weights()
    reference = probs.argmax(axis=1)
    best_unit, best_agreement = 0, 2.0
    for unit in range(hidden.shape[1]):
        if hidden[:, unit].max() <= 0.0:
            continue  # a dead unit stays zero when scaled: no outlier
        logits = hidden[:, unit : unit + 1] @ kernel[unit : unit + 1] + bias
        agreement = float(np.mean(logits.argmax(axis=1) == reference))
        if agreement < best_agreement:
            best_unit, best_agreement = unit, agreement
    return best_unit


# --------------------------------------------------------------------------
# Well-behaved baselines
# --------------------------------------------------------------------------

_TINY_FEATURES = 8
_TINY_CLASSES = 3


def tiny_data(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return ``({"x": float32 [n, 8]}, labels int32 [n])`` for the tiny
    classifiers (3 classes from a fixed linear rule)."""
    rule = _linear_rule(_TINY_FEATURES, _TINY_CLASSES, rule_seed=7)
    x = np.random.default_rng(seed).normal(size=(n, _TINY_FEATURES)).astype(np.float32)
    return {"x": x}, np.argmax(x @ rule, axis=1).astype(np.int32)


def tiny_keras3_classifier():
    """Trained Keras 3 functional classifier.

    Input ``x`` float32 ``[None, 8]``; output ``probs`` float32 ``[None, 3]``
    (softmax). Trained on ``tiny_data(1024, seed=0)`` to confident,
    input-dependent predictions.
    """
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(_TINY_FEATURES,), name="x")
    h = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    probs = keras.layers.Dense(_TINY_CLASSES, activation="softmax", name="probs")(h)
    model = keras.Model(x, probs, name="tiny_keras3_classifier")
    _fit_tiny(model, keras.optimizers.Adam(1e-2))
    return model


def tiny_tfkeras_classifier():
    """Trained tf-keras (Keras 2) functional classifier.

    Input ``x`` float32 ``[None, 8]``; output ``probs`` float32 ``[None, 3]``
    (softmax). Same data and training as :func:`tiny_keras3_classifier`.
    """
    import tf_keras as keras2

    keras2.utils.set_random_seed(0)
    x = keras2.Input(shape=(_TINY_FEATURES,), name="x")
    h = keras2.layers.Dense(16, activation="relu", name="hidden")(x)
    probs = keras2.layers.Dense(_TINY_CLASSES, activation="softmax", name="probs")(h)
    model = keras2.Model(x, probs, name="tiny_tfkeras_classifier")
    _fit_tiny(model, keras2.optimizers.Adam(1e-2))
    return model


def _fit_tiny(model, optimizer) -> None:
    inputs, labels = tiny_data(1024, seed=0)
    model.compile(optimizer, "sparse_categorical_crossentropy")
    model.fit(inputs["x"], labels, batch_size=64, epochs=15, verbose=0)


# --------------------------------------------------------------------------
# A compiled-target workload
# --------------------------------------------------------------------------


def train_small_cnn(path) -> float:
    """A small image_cnn-like Keras 3 CNN trained on the example's generated shapes; returns held-out accuracy."""
    import keras
    from keras import layers

    from examples.image_cnn import make_images

    keras.utils.set_random_seed(0)
    x, y = make_images(1536, seed=11)
    image = keras.Input(shape=(32, 32, 3), name="image")
    h = image
    for i, filters in enumerate((12, 24)):
        h = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(h)
        h = layers.BatchNormalization(name=f"bn{i}")(h)
        h = layers.ReLU(name=f"relu{i}")(h)
        h = layers.MaxPooling2D(2, name=f"pool{i}")(h)
    h = layers.Conv2D(24, 3, padding="same", activation="relu", name="conv2")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    probs = layers.Dense(4, activation="softmax", name="probs")(h)
    model = keras.Model(image, probs, name="small_cnn")
    model.compile(keras.optimizers.Adam(5e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=6, verbose=0)
    model.save(path)
    x_held, y_held = make_images(256, seed=99)
    return float(np.mean(np.argmax(model.predict(x_held, verbose=0), axis=1) == y_held))


# --------------------------------------------------------------------------
# Reference self-consistency and layer localization
# --------------------------------------------------------------------------


def numpy_noise():
    """Keras 3 functional model; input ``x`` float32 ``[None, 4]``, output
    ``y`` float32 ``[None, 4]``.

    Its ``noisy`` layer adds ``np.random.rand()`` in ``call``: every eager
    call draws a new number, so the eager model disagrees with itself.
    """
    import keras

    class Noisy(keras.layers.Layer):
        def call(self, x):
            return x + np.random.rand()

    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(4,), name="x")
    y = Noisy(name="noisy")(keras.layers.Dense(4, name="dense")(x))
    return keras.Model(x, y, name="numpy_noise")


def batch_mixing():
    """Keras 3 functional model; input ``x`` float32 ``[None, 4]``, output
    ``y`` float32 ``[None, 4]``: each sample minus the first sample of its batch.
    Deterministic for a fixed batch, but it depends on the order of the batch."""
    import keras

    class MinusFirst(keras.layers.Layer):
        def call(self, x):
            return x - x[:1]

    x = keras.Input(shape=(4,), name="x")
    return keras.Model(x, MinusFirst(name="minus_first")(x), name="batch_mixing")


def batchnorm_inference():
    """Trained Keras 3 classifier with BatchNormalization and Dropout, called
    with ``training=False``: a legitimate model the reference check must accept.
    Input ``x`` float32 ``[None, 8]``; output ``probs`` float32 ``[None, 3]``."""
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(_TINY_FEATURES,), name="x")
    h = keras.layers.Dense(16, name="dense")(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Activation("relu", name="relu")(h)
    h = keras.layers.Dropout(0.5, name="drop")(h)
    probs = keras.layers.Dense(_TINY_CLASSES, activation="softmax", name="probs")(h)
    model = keras.Model(x, probs, name="batchnorm_inference")
    _fit_tiny(model, keras.optimizers.Adam(1e-2))
    return model


def _eager_branch_layer(keras):
    class TracedOffset(keras.layers.Layer):
        """Computes x * 0.5 + 0.3 eagerly and x * 0.5 - 0.3 when traced (the seeded fault)."""

        def call(self, x):
            if tf.executing_eagerly():
                return x * 0.5 + 0.3
            return x * 0.5 - 0.3

    return TracedOffset


TRACED_FAULT_LAYERS = 15


def traced_fault(depth: int = 7):
    """Keras 3 functional network of 15 tiny layers; input ``x`` float32
    ``[None, 8]``, output ``y`` float32 ``[None, 8]``.

    Layers are named ``l1`` .. ``l15`` (Dense 8 with tanh, alternating with
    elementwise layers); layer ``l<depth>`` is replaced by ``TracedOffset``,
    which computes differently when traced than when run eagerly. Every graph
    artifact therefore differs from the eager model from that layer on.
    """
    import keras

    TracedOffset = _eager_branch_layer(keras)
    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(8,), name="x")
    h = x
    for i in range(1, TRACED_FAULT_LAYERS + 1):
        name = f"l{i}"
        if i == depth:
            h = TracedOffset(name=name)(h)
        elif i % 3 == 0:
            h = keras.layers.Activation("sigmoid", name=name)(h)
        else:
            h = keras.layers.Dense(8, activation="tanh", name=name)(h)
    return keras.Model(x, h, name=f"traced_fault_{depth}")


def traced_fault_subclassed(depth: int = 7):
    """The same network and fault as :func:`traced_fault`, as a subclassed
    Keras 3 model (no functional graph to read layer outputs from).
    Input ``x`` float32 ``[None, 8]``, output float32 ``[None, 8]``."""
    import keras

    TracedOffset = _eager_branch_layer(keras)

    class Chain(keras.Model):
        def __init__(self):
            super().__init__(name=f"traced_fault_subclassed_{depth}")
            self.blocks = []
            for i in range(1, TRACED_FAULT_LAYERS + 1):
                name = f"l{i}"
                if i == depth:
                    self.blocks.append(TracedOffset(name=name))
                elif i % 3 == 0:
                    self.blocks.append(keras.layers.Activation("sigmoid", name=name))
                else:
                    self.blocks.append(keras.layers.Dense(8, activation="tanh", name=name))

        def call(self, x):
            for block in self.blocks:
                x = block(x)
            return x

    keras.utils.set_random_seed(0)
    model = Chain()
    model(np.zeros((1, 8), np.float32))
    return model


def traced_offset():
    """Keras 3 functional model; input ``x`` float32 ``[None, 4]``, output
    ``y`` float32 ``[None, 4]``. Deterministic, but its exported graph adds
    -0.3 where the eager model adds +0.3: every artifact fails parity."""
    import keras

    x = keras.Input(shape=(4,), name="x")
    return keras.Model(x, _eager_branch_layer(keras)(name="offset")(x), name="traced_offset")


for _depth in (3, 7, 12):
    globals()[f"traced_fault_{_depth}"] = lambda _d=_depth: traced_fault(_d)
    globals()[f"traced_fault_subclassed_{_depth}"] = lambda _d=_depth: traced_fault_subclassed(_d)


def layer_norm_head():
    """Keras 3 Dense -> LayerNormalization -> Dense: ``x`` float32 [None, 4] -> ``y`` [None, 1].
    int16x8 has no kernel for the layer norm's NEG; with the float fallback, LiteRT
    prepares the file and then refuses the float SQUARED_DIFFERENCE on int16 inputs."""
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(4,), name="x")
    h = keras.layers.Dense(16, name="hidden")(x)
    h = keras.layers.LayerNormalization(name="norm")(h)
    return keras.Model(x, keras.layers.Dense(1, name="y")(h), name="layer_norm_head")


# --------------------------------------------------------------------------
# OpenVINO: output order and a frontend refusal
# --------------------------------------------------------------------------


def two_outputs():
    """Keras 3 functional model; input ``x`` float32 ``[None, 4]``; outputs ``zeta``
    (``[None, 3]``) then ``alpha`` (``[None, 2]``): listed against their sorted order."""
    import keras

    keras.utils.set_random_seed(3)
    x = keras.Input(shape=(4,), name="x")
    h = keras.layers.Dense(8, activation="tanh", name="h")(x)
    return keras.Model(x, [keras.layers.Dense(3, name="zeta")(h), keras.layers.Dense(2, name="alpha")(h)], name="two_outputs")


def log_gamma_layer():
    """Keras 3 functional model whose layer ``log_gamma`` calls ``tf.math.lgamma`` (an op
    OpenVINO's TensorFlow frontend has no rule for); ``x`` float32 ``[None, 4]`` -> ``y``."""
    import keras
    import tensorflow as tf

    class LogGamma(keras.layers.Layer):
        def call(self, x):
            return tf.math.lgamma(tf.abs(x) + 1.0)

    keras.utils.set_random_seed(2)
    x = keras.Input(shape=(4,), name="x")
    return keras.Model(x, LogGamma(name="log_gamma")(keras.layers.Dense(4, name="dense_in")(x)))


class StringLengths(tf.Module):
    """Lower-cases its text and returns each string's length (string ops in the graph)."""

    def __call__(self, text):
        return tf.cast(tf.strings.length(tf.strings.lower(text)), tf.float32)


def string_lengths() -> StringLengths:
    """``tf.Module``-like callable; ``text`` string ``[None, 1]`` -> float32 lengths ``[None, 1]``."""
    return StringLengths(name="string_lengths")


def string_data(n: int = 8, seed: int = 0) -> tuple[dict[str, np.ndarray], None]:
    """``{"text": object [n, 1]}`` of short words."""
    rng = np.random.default_rng(seed)
    words = np.array([b"Alpha", b"beta", b"GAMMA", b"delta epsilon"], dtype=object)
    return {"text": words[rng.integers(0, len(words), (n, 1))]}, None

