"""Real architectures whose serving function captures constant tensors that are not
variables: the ONNX file must fold them in and keep only the config's inputs.

Factories named in test configs as `fixture_captures:<name>`.
"""
from __future__ import annotations

import numpy as np


def efficientnet_b0():
    """Keras 3 EfficientNetB0 (random weights), 32x32x3 image -> 1280 pooled features.

    Its Rescaling and Normalization layers hold their statistics as constant tensors.
    With random weights and identity batch-norm statistics its features collapse to
    ~1e-6 for every input; the batch-norm statistics are therefore set from one
    training-mode pass over generated images, so the features vary.
    """
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.EfficientNetB0(weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3))
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become this pass's batch statistics
    model(images(64, seed=1)["image"], training=True)
    for layer in norms:
        layer.momentum = 0.99
        # Channels that were constant over the pass (1x1 maps) got a variance near 0; a
        # floor keeps the network well-conditioned, as a trained one is (with 1e-2 the
        # features move by 1e-4 of their range when the batch is reordered; with 0.1,
        # by 1e-6, and they still vary across images).
        layer.moving_variance.assign(np.maximum(layer.moving_variance.numpy(), 0.1))
    return model


def images(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """32x32 RGB images in 0..255: a colour per image plus noise of a contrast per image."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, (n, 1, 1, 3))
    contrast = rng.uniform(0, 100, (n, 1, 1, 1))
    return {"image": np.clip(base + contrast * rng.normal(0, 1, (n, 32, 32, 3)), 0, 255).astype(np.float32)}


# STFT front-end sizes: 256-sample frames every 128 samples, 36 frequency bins.
FRAME = 256
HOP = 128
BINS = 36


def _dsp_kernels() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cosine and sine DFT kernels (BINS, 1, FRAME) and a Hann window (FRAME,)."""
    n = np.arange(FRAME)
    k = np.arange(BINS)[:, None]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * n / FRAME)).astype(np.float32)
    cos = np.cos(2 * np.pi * k * n / FRAME)[:, None, :].astype(np.float32)
    sin = -np.sin(2 * np.pi * k * n / FRAME)[:, None, :].astype(np.float32)
    return cos, sin, window


def _audio_layer_class():
    import keras
    import tensorflow as tf

    class LogSpectrogram(keras.layers.Layer):
        """Framed DFT power spectrum, log-compressed: fixed DSP kernels held as constant
        tensors (not weights), so the serving function captures them."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            cos, sin, window = _dsp_kernels()
            self.cos = tf.constant(cos)
            self.sin = tf.constant(sin)
            self.window = tf.constant(window)

        def call(self, waveform):
            frames = tf.signal.frame(waveform, FRAME, HOP)  # [batch, frames, FRAME]
            frames = frames * self.window
            real = tf.einsum("bfn,kn->bfk", frames, self.cos[:, 0, :])
            imag = tf.einsum("bfn,kn->bfk", frames, self.sin[:, 0, :])
            return tf.math.log(real * real + imag * imag + 1e-6)

        def compute_output_shape(self, shape):
            return (shape[0], (shape[1] - FRAME) // HOP + 1, BINS)

    return LogSpectrogram


def audio_tone_classifier():
    """Keras 3 model on 1024-sample waveforms [None, 1024] -> 3 tone-class probabilities,
    trained briefly on generated tones so its outputs are not flat."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((1024,), name="waveform")
    spectrum = _audio_layer_class()(name="log_spectrogram")(inputs)
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.GlobalAveragePooling1D()(spectrum))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="tone")(hidden))
    waves, labels = tones(384, seed=0)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(waves, labels, batch_size=32, epochs=6, verbose=0)
    return model


def tones(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy sine tones in one of three frequency bands, and the band index."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    freq = (4 + 10 * labels + rng.uniform(0, 4, n))[:, None]
    t = np.arange(1024)[None, :] / FRAME
    waves = np.sin(2 * np.pi * freq * t) + 0.3 * rng.normal(0, 1, (n, 1024))
    return waves.astype(np.float32), labels.astype(np.int32)


def tone_data(n: int, seed: int = 2) -> dict[str, np.ndarray]:
    return {"waveform": tones(n, seed)[0]}
