"""An audio classifier with a log-mel front-end inside the model.

The front-end is `tf.signal.stft` (frame 256, step 128) with a Hann window and a
(129, 32) mel matrix held as constant tensors (DSP constants captured by the
serving function, not variables), then log(mel + 1e-6). A Conv1D stack classifies
0.25 s clips at 16 kHz: one of four tones (300, 700, 1500, 3100 Hz) with random
phase, amplitude, vibrato and background noise. No package the corpus installs ships
recorded audio, so these clips are made by this documented, seeded process (training
clips from seed 0, held-out clips from seed 91).
"""
from __future__ import annotations

import numpy as np

from examples.corpus._common import parity_data, train_cached

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


def _model():
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
    return keras.Model(wave, probs, name="audio_logmel")


def build():
    import keras

    from examples.trained import fit_classifier

    x, y = make_clips(1024, 0)
    hx, hy = make_clips(512, EVAL_SEED)
    return train_cached("audio_logmel", (_model, build, _front_end, make_clips), _model, lambda m: fit_classifier(m, keras, x, y, hx, hy, 6, lr=3e-3), x, y)


def eval_heldout(part: str = "heldout"):
    x, y = make_clips(512, EVAL_SEED) if part == "heldout" else make_clips(1024, 0)
    return {"waveform": x}, y


def eval_data(n: int = 64, seed: int = EVAL_SEED):
    return parity_data(eval_heldout("train"), n)
