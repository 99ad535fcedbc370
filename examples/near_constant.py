"""A near-constant output: EfficientNetB0 as constructed (`weights=None`), with its
1000-class softmax head, on 224x224 images uniform in [0, 255].

Untrained, its logits barely move with the input: every probability sits near 1e-3
and moves by about 1e-7 across inputs, a range of a few hundred float32 rounding steps
at that magnitude. An artifact that computes the same float32 function in another
order differs by about one rounding step (1.2e-10). The calibration corpus counts it
among the acceptable float32 artifacts (examples/calibrate_budgets.py); tests build a
32x32 one (`efficientnet_b0_softmax_small`) for speed.
"""
from __future__ import annotations

import numpy as np

SEED = 0
DATA_SEED = 4242


def _build(size: int):
    import keras

    keras.utils.set_random_seed(SEED)
    return keras.applications.EfficientNetB0(weights=None, input_shape=(size, size, 3), classes=1000, name="efficientnet_b0_softmax")


def efficientnet_b0_softmax():
    return _build(224)


def efficientnet_b0_softmax_small():
    return _build(32)


def images(n: int, size: int, seed: int = DATA_SEED) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 255.0, (n, size, size, 3)).astype(np.float32)


def efficientnet_b0_softmax_data(n: int = 16, seed: int = DATA_SEED):
    return {"image": images(n, 224, seed)}


def efficientnet_b0_softmax_small_data(n: int = 16, seed: int = DATA_SEED):
    return {"image": images(n, 32, seed)}
