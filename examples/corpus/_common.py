"""Shared pieces of the corpus: seeded data and a short training loop."""
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


def fit(model, x, y, loss: str, epochs: int, seed: int = 0, batch_size: int = 64, lr: float = 3e-3) -> float:
    """Compile and train `model` briefly; returns the last epoch's loss."""
    import keras

    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    return float(history.history["loss"][-1])
