"""A custom Keras layer registered with keras.saving.register_keras_serializable: the
corpus's .keras file uses it, and its config names this module under `source.modules`,
as a user's own layers module would be named."""
from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="corpus")
class GatedResidual(keras.layers.Layer):
    """x + sigmoid(x W_g) * tanh(x W_v): a gated residual with its own config."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        width = input_shape[-1]
        self.gate = self.add_weight(shape=(width, width), initializer="glorot_uniform", name="gate")
        self.value = self.add_weight(shape=(width, width), initializer="glorot_uniform", name="value")

    def call(self, x):
        return x + keras.ops.sigmoid(x @ self.gate) * keras.ops.tanh(x @ self.value)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
