"""The smallest exportable model: y = 2x + 1 as a plain ``tf.Module``.

It has no Keras in it, so it exercises the path where tfship wraps an
arbitrary Python ``__call__`` in its own ``tf.function``.

Input signature: ``x`` float32 ``[None, 4]``; output float32 ``[None, 4]``.
"""

from __future__ import annotations

import tensorflow as tf

INPUT_SIGNATURE = {"x": tf.TensorSpec([None, 4], tf.float32, name="x")}


class Affine(tf.Module):
    """y = w * x + b with w = 2 and b = 1 held as variables, not constants,
    so exporters have real state to capture."""

    def __init__(self, name: str = "affine"):
        super().__init__(name=name)
        self.w = tf.Variable(2.0, dtype=tf.float32, name="w")
        self.b = tf.Variable(1.0, dtype=tf.float32, name="b")

    def __call__(self, x):
        return self.w * x + self.b


def build() -> Affine:
    """Return a fresh ``Affine`` module (nothing to train)."""
    return Affine()
