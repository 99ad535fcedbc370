"""A graph-correct data-dependent branch: sqrt above a threshold, square below.

The branch is taken per element with ``tf.where`` rather than a Python ``if``,
so the function traces once and works for any batch. Both sides of a
``tf.where`` are always evaluated, so the sqrt must be fed something harmless
where its result is discarded: otherwise negative elements give NaN values,
and sqrt's infinite slope at 0 gives NaN gradients (0 * inf) even though the
select throws the forward value away. Negative inputs above a negative
threshold are clamped to 0 rather than producing NaN.

Input signature: ``x`` float32 ``[None, 6]`` and ``threshold`` float32 scalar
``[]``; output float32 ``[None, 6]``.
"""

from __future__ import annotations

import tensorflow as tf

INPUT_SIGNATURE = {
    "x": tf.TensorSpec([None, 6], tf.float32, name="x"),
    "threshold": tf.TensorSpec([], tf.float32, name="threshold"),
}


class Threshold(tf.Module):
    """y = sqrt(x) where x > threshold, else x ** 2."""

    def __init__(self, name: str = "threshold"):
        super().__init__(name=name)

    def __call__(self, x, threshold):
        above = x > threshold
        # 1.0 is an arbitrary safe operand for the elements the select drops.
        safe = tf.where(above, tf.maximum(x, 0.0), 1.0)
        return tf.where(above, tf.sqrt(safe), tf.square(x))


def build() -> Threshold:
    """Return a fresh ``Threshold`` module (nothing to train)."""
    return Threshold()
