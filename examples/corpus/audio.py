"""An audio classifier with a log-mel front-end inside the model.

The front-end is `tf.signal.stft` (frame 256, step 128) with a Hann window and a
(129, 32) mel matrix held as constant tensors (DSP constants captured by the
serving function, not variables), then log(mel + 1e-6). A Conv1D stack classifies
0.25 s clips at 16 kHz: one of four tones (300, 700, 1500, 3100 Hz) with random
phase, amplitude, vibrato and background noise.
"""
from __future__ import annotations

import numpy as np

from examples.corpus._common import fit

RATE, SAMPLES, FRAME, STEP, MELS = 16000, 4000, 256, 128, 32
TONES = (300.0, 700.0, 1500.0, 3100.0)
EVAL_SEED = 91


def make_clips(n: int, seed: int):
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLES) / RATE
    labels = rng.integers(0, len(TONES), n).astype(np.int32)
    freq = np.array(TONES)[labels][:, None] * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(2, 6, (n, 1)) * t[None]))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    amp = rng.uniform(0.1, 0.8, (n, 1))
    clips = amp * np.sin(2 * np.pi * freq * t[None] + phase) + rng.normal(0, 0.05, (n, SAMPLES))
    return clips.astype(np.float32), labels


def _front_end():
    import keras
    import tensorflow as tf

    class LogMel(keras.layers.Layer):
        """Waveform [B, T] -> log-mel [B, frames, MELS]; window and mel matrix are constants."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            n = np.arange(FRAME)
            self.window = tf.constant((0.5 - 0.5 * np.cos(2 * np.pi * n / FRAME)).astype(np.float32))
            self.mel = tf.constant(
                tf.signal.linear_to_mel_weight_matrix(MELS, FRAME // 2 + 1, RATE, 60.0, 7600.0).numpy()
            )

        def call(self, waveform):
            spectrum = tf.signal.stft(waveform, FRAME, STEP, window_fn=lambda length, dtype: self.window)
            magnitude = tf.abs(spectrum)
            return tf.math.log(tf.matmul(magnitude * magnitude, self.mel) + 1e-6)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], 1 + (SAMPLES - FRAME) // STEP, MELS)

    return LogMel


def build():
    import keras
    from keras import layers

    LogMel = _front_end()
    keras.utils.set_random_seed(0)
    wave = keras.Input((SAMPLES,), name="waveform")
    h = LogMel(name="log_mel")(wave)
    h = layers.BatchNormalization(name="norm")(h)
    h = layers.Conv1D(32, 3, activation="relu", name="conv1")(h)
    h = layers.Conv1D(32, 3, activation="relu", name="conv2")(h)
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    probs = layers.Dense(len(TONES), activation="softmax", name="probs")(h)
    model = keras.Model(wave, probs, name="audio_logmel")
    x, y = make_clips(1024, 0)
    fit(model, x, y, "sparse_categorical_crossentropy", epochs=4)
    return model


def eval_data(n: int = 64, seed: int = EVAL_SEED):
    x, y = make_clips(n, seed)
    return {"waveform": x}, y
