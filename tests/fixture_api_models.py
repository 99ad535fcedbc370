"""Models for the command-line tests of inspect, compare, progress and verdict lines."""
from __future__ import annotations


def stock_mobilenet():
    """A stock architecture with random weights: its softmax is flat (near-constant)."""
    import keras

    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10)
