"""Shared pieces of the corpus: generated images (random-weight appendix and tests), the
cached training of a corpus model, and a parity-data helper."""
from __future__ import annotations

import numpy as np


def smooth_images(n: int, seed: int, size: int, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """`[n, size, size, 3]` float32 images: low-frequency colour fields plus a little
    noise, scaled to [low, high] (natural-image statistics without a dataset)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.0, 1.0, (n, 4, 4, 3))
    # Bilinear upsampling of the 4x4 field by separable interpolation.
    grid = np.linspace(0.0, 3.0, size)
    lo = np.floor(grid).astype(int).clip(0, 2)
    frac = (grid - lo)[None, :, None, None]
    rows = coarse[:, lo] * (1 - frac) + coarse[:, lo + 1] * frac
    frac_c = (grid - lo)[None, None, :, None]
    image = rows[:, :, lo] * (1 - frac_c) + rows[:, :, lo + 1] * frac_c
    image = image + rng.normal(0.0, 0.05, image.shape)
    image = np.clip(image, 0.0, 1.0)
    return (low + (high - low) * image).astype(np.float32)


def parity_data(samples: tuple[dict, np.ndarray], n: int, labels: bool = True):
    """Parity and calibration samples from a set (inputs, truth), the training part in the
    corpus (the held-out part stays for the task figures): the first n, cycling when n is
    larger than the set; with its labels for a classifier (the accuracy criterion)."""
    inputs, truth = samples
    idx = np.arange(n) % len(truth)
    inputs = {k: np.asarray(v)[idx] for k, v in inputs.items()}
    return (inputs, np.asarray(truth)[idx]) if labels else inputs


def train_cached(name: str, code: tuple, build, train, *data):
    """The trained model `name` from examples.trained's cache (trained now when its key
    changed): `code` names the functions that build and train it, `data` its training arrays."""
    from examples import real_data as rd
    from examples.trained import trained

    return trained(name, build, train, code, rd.fingerprint(*data)).model
