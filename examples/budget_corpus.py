"""The corpus the default parity budgets are calibrated on: real architectures trained
briefly on generated data, and seeded breakages of each.

Architectures (every input lies in [-1, 1], the convention of the Keras applications'
`preprocess_input` for MobileNet):

- `mobilenet_v2`: keras.applications.MobileNetV2 (alpha 0.35, 32x32x3, no weights)
  on coloured shapes; 6 classes = 3 shapes x 2 dominant colours.
- `mobilenet_v3`: keras.applications.MobileNetV3Small (minimalistic=False: hard-swish and
  squeeze-excite; 32x32x3) on the same images.
- `transformer`: one Transformer encoder block (MultiHeadAttention, LayerNorm, GELU
  feed-forward) over 16 steps x 7 features (the last a time ramp); 4 classes = which feature group carries a
  burst x early or late.
- `lstm`: a tf-keras (Keras 2) LSTM (unrolled) over 20 steps x 4 features; 4 classes = which
  channel pair carries a sinusoid x slow or fast.
- `conv1d_regressor`: Conv1D stack over 64 samples x 2 channels regressing 3
  values (both channels' amplitudes, channel 0's frequency); no classifier.

Every model ends in the same head, so the seeded layer breakages mean the same thing
everywhere: features -> Dense `embed` -> BatchNormalization `head_bn` -> ReLU ->
Dense `mid` (32 -> 32, ReLU) -> Dense output (`probs` softmax, or `values` linear).

Seeded breakages of a model (files beside it):
- `dropped_layer`: `mid` left out; `doubled_layer`: `mid` applied twice;
- `weights_1pct`: every weight multiplied by (1 + 0.01 * N(0, 1)), fixed seed;
- `traced_drift`: `head_bn` replaced by a layer that uses its moving statistics when
  run eagerly but the batch's own statistics when traced (a training-mode branch that
  only the graph takes), same weights.
- `traced_scale`, `traced_scale_2x`: `head_bn` replaced by a layer that, when traced,
  multiplies its output by 1.25 or 2 (inverted dropout's 1 / (1 - rate) for rate 0.2
  or 0.5, applied outside training), same weights. A plain multiplication: int8 and
  int16x8 files of it convert and run, where `traced_drift`'s batch moments give
  files LiteRT cannot run.
The others (input scaling, swapped channels, calibration set of zeros, wrong output
dequantization scale) are applied by the calibration command to the artifact's
inputs, calibration data or outputs.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

BUILD = Path(__file__).resolve().parent / "build" / "budget_corpus"

ARCHITECTURES = ("mobilenet_v2", "mobilenet_v3", "transformer", "lstm", "conv1d_regressor")
MODEL_EDITS = ("dropped_layer", "doubled_layer", "weights_1pct", "traced_drift", "traced_scale", "traced_scale_2x")
TRACED_SCALE = 1.25  # inverted dropout's 1 / (1 - 0.2)
TRACED_SCALES = {"traced_scale": TRACED_SCALE, "traced_scale_2x": 2.0}  # 2.0: 1 / (1 - 0.5)
HEAD_WIDTH = 32
TRAIN_SEED, PARITY_SEED, HELDOUT_SEED = 0, 1, 2
TRAIN_SIZE = {"mobilenet_v2": 4096, "mobilenet_v3": 4096, "transformer": 4096, "lstm": 4096, "conv1d_regressor": 4096}
EPOCHS = {"mobilenet_v2": 10, "mobilenet_v3": 10, "transformer": 12, "lstm": 12, "conv1d_regressor": 15}


# ---------------------------------------------------------------- generated data


def colour_shapes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images [n, 32, 32, 3] in [-1, 1]; label = shape (disc, square outline, stripes)
    * 2 + colour (0: red dominant, 1: blue dominant). Swapping channels swaps colours."""
    rng = np.random.default_rng(seed)
    size = 32
    y = rng.permutation(np.arange(n) % 6).astype(np.int32)
    shape, colour = y // 2, y % 2
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    rows, cols = rows[None], cols[None]
    centre = rng.uniform(10, 22, (n, 2))
    radius = rng.uniform(5, 9, n)[:, None, None]
    d_r, d_c = rows - centre[:, 0, None, None], cols - centre[:, 1, None, None]
    disc = np.hypot(d_r, d_c) <= radius
    cheb = np.maximum(np.abs(d_r), np.abs(d_c))
    square = (cheb <= radius) & (cheb > radius - 2.5)
    period = rng.uniform(4, 9, n)[:, None, None]
    stripes = np.sin(2 * np.pi * (rows + cols) / period + rng.uniform(0, 6.3, n)[:, None, None]) > 0.3
    mask = np.where(shape[:, None, None] == 0, disc, np.where(shape[:, None, None] == 1, square, stripes))[..., None]
    strong, weak = rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.45, n)
    fg = np.stack([np.where(colour == 0, strong, weak), rng.uniform(0.0, 0.5, n), np.where(colour == 0, weak, strong)], axis=1)[:, None, None, :]
    bg = rng.uniform(0.0, 0.3, (n, 1, 1, 3))
    x = bg + (fg - bg) * mask + rng.normal(0, 0.3, (n, size, size, 3))
    return (np.clip(x, 0, 1) * 2 - 1).astype(np.float32), y


def bursts(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sequences [n, 16, 7] in [-1, 1]; label = feature group of the burst (0-2 or 3-5)
    * 2 + (burst in the second half). Feature 6 is the time ramp -1..1 (the block has
    no positional embedding of its own)."""
    rng = np.random.default_rng(seed)
    steps, feats = 16, 6
    y = rng.permutation(np.arange(n) % 4).astype(np.int32)
    group, late = y // 2, y % 2
    x = rng.normal(0, 0.4, (n, steps, feats))
    start = np.where(late == 1, rng.integers(9, 13, n), rng.integers(0, 4, n))
    t = np.arange(steps)[None, :]
    window = ((t >= start[:, None]) & (t < start[:, None] + 4)).astype(np.float64)
    amplitude = rng.uniform(0.3, 0.7, n)[:, None]
    for k in range(3):
        channel = group * 3 + k
        x[np.arange(n), :, channel] += window * amplitude * rng.choice([-1, 1], n)[:, None]
    ramp = np.broadcast_to(np.linspace(-1, 1, steps)[None, :, None], (n, steps, 1))
    return np.concatenate([np.clip(x, -1, 1), ramp], axis=-1).astype(np.float32), y


def sinusoids(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sequences [n, 20, 4] in [-1, 1]; label = channel pair carrying a sinusoid
    (0-1 or 2-3) * 2 + (fast)."""
    rng = np.random.default_rng(seed)
    steps = 20
    y = rng.permutation(np.arange(n) % 4).astype(np.int32)
    pair, fast = y // 2, y % 2
    freq = np.where(fast == 1, rng.uniform(0.15, 0.25, n), rng.uniform(0.05, 0.12, n))
    t = np.arange(steps)[None, :]
    wave = rng.uniform(0.3, 0.7, n)[:, None] * np.sin(2 * np.pi * freq[:, None] * t + rng.uniform(0, 6.3, n)[:, None])
    x = rng.normal(0, 0.35, (n, steps, 4))
    x[np.arange(n), :, pair * 2] += wave
    x[np.arange(n), :, pair * 2 + 1] += 0.5 * wave
    return np.clip(x, -1, 1).astype(np.float32), y


def signals(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Signals [n, 64, 2] in [-1, 1] and targets [n, 3]: amplitude of channel 0,
    amplitude of channel 1, frequency of channel 0 (scaled to [0, 1])."""
    rng = np.random.default_rng(seed)
    length = 64
    t = np.arange(length)[None, :]
    a0, a1 = rng.uniform(0.1, 0.8, n), rng.uniform(0.1, 0.8, n)
    f0, f1 = rng.uniform(0.02, 0.2, n), rng.uniform(0.02, 0.2, n)
    c0 = a0[:, None] * np.sin(2 * np.pi * f0[:, None] * t + rng.uniform(0, 6.3, n)[:, None])
    c1 = a1[:, None] * np.sin(2 * np.pi * f1[:, None] * t + rng.uniform(0, 6.3, n)[:, None])
    x = np.stack([c0, c1], axis=-1) + rng.normal(0, 0.1, (n, length, 2))
    targets = np.stack([a0, a1, (f0 - 0.02) / 0.18], axis=1)
    return np.clip(x, -1, 1).astype(np.float32), targets.astype(np.float32)


GENERATORS = {
    "mobilenet_v2": colour_shapes,
    "mobilenet_v3": colour_shapes,
    "transformer": bursts,
    "lstm": sinusoids,
    "conv1d_regressor": signals,
}
INPUT_SHAPES = {"mobilenet_v2": (32, 32, 3), "mobilenet_v3": (32, 32, 3), "transformer": (16, 7), "lstm": (20, 4), "conv1d_regressor": (64, 2)}
CLASSES = {"mobilenet_v2": 6, "mobilenet_v3": 6, "transformer": 4, "lstm": 4, "conv1d_regressor": 0}


def is_classifier(arch: str) -> bool:
    return CLASSES[arch] > 0


def output_name(arch: str) -> str:
    return "probs" if is_classifier(arch) else "values"


def dataset(arch: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return GENERATORS[arch](n, seed)


def _parity_data(arch: str, n: int, seed: int = PARITY_SEED):
    x, y = dataset(arch, n, seed)
    return ({"x": x}, y) if is_classifier(arch) else {"x": x}


# Data generators the configs name (n, seed) -> inputs[, labels].
def mobilenet_v2_data(n: int, seed: int = PARITY_SEED):
    return _parity_data("mobilenet_v2", n, seed)


def mobilenet_v3_data(n: int, seed: int = PARITY_SEED):
    return _parity_data("mobilenet_v3", n, seed)


def transformer_data(n: int, seed: int = PARITY_SEED):
    return _parity_data("transformer", n, seed)


def lstm_data(n: int, seed: int = PARITY_SEED):
    return _parity_data("lstm", n, seed)


def conv1d_regressor_data(n: int, seed: int = PARITY_SEED):
    return _parity_data("conv1d_regressor", n, seed)


# ---------------------------------------------------------------- models


def _keras(arch: str):
    """The Keras flavour of an architecture: the LSTM is written for tf-keras (Keras 2)."""
    if arch == "lstm":
        import tf_keras

        return tf_keras
    import keras

    return keras


_DRIFT_CLASSES: dict[tuple[str, str], type] = {}


def traced_drift_layer(lib):
    """BatchNormalization that uses its moving statistics eagerly and the batch's own
    statistics when traced: the graph alone takes the training-mode branch. Also
    registers the other traced edit, so a loader can read either file."""
    key = (lib.__name__, "drift")
    if key in _DRIFT_CLASSES:
        return _DRIFT_CLASSES[key]
    import tensorflow as tf

    @lib.saving.register_keras_serializable(package="budget_corpus")
    class TracedBatchStats(lib.layers.BatchNormalization):
        def call(self, inputs, training=None, **kwargs):
            if tf.executing_eagerly():
                return super().call(inputs, training=False)
            mean, variance = tf.nn.moments(inputs, axes=[0])
            return tf.nn.batch_normalization(inputs, mean, variance, self.beta, self.gamma, self.epsilon)

    _DRIFT_CLASSES[key] = TracedBatchStats
    for factor in TRACED_SCALES.values():
        traced_scale_layer(lib, factor)
    return TracedBatchStats


def traced_scale_layer(lib, factor: float = TRACED_SCALE):
    """BatchNormalization (inference mode) whose output is multiplied by `factor` only
    when traced: a dropout-style rescale that the graph alone applies."""
    key = (lib.__name__, f"scale{factor}")
    if key in _DRIFT_CLASSES:
        return _DRIFT_CLASSES[key]
    import tensorflow as tf

    def call(self, inputs, training=None, **kwargs):
        out = lib.layers.BatchNormalization.call(self, inputs, training=False)
        return out if tf.executing_eagerly() else out * factor

    name = "TracedScale" if factor == TRACED_SCALE else f"TracedScale{round(factor * 100)}"
    cls = lib.saving.register_keras_serializable(package="budget_corpus")(type(name, (lib.layers.BatchNormalization,), {"call": call}))
    _DRIFT_CLASSES[key] = cls
    return cls


def _backbone(arch: str, lib, inputs):
    L = lib.layers
    if arch == "mobilenet_v2":
        net = lib.applications.MobileNetV2(input_shape=INPUT_SHAPES[arch], alpha=0.35, include_top=False, weights=None, pooling="avg")
        return net(inputs)
    if arch == "mobilenet_v3":
        net = lib.applications.MobileNetV3Small(
            input_shape=INPUT_SHAPES[arch], alpha=0.75, include_top=False, weights=None, pooling="avg", include_preprocessing=False
        )
        return net(inputs)
    if arch == "transformer":
        x = L.Dense(32, name="project")(inputs)  # the last feature is the time ramp: position
        attended = L.MultiHeadAttention(num_heads=2, key_dim=16, name="attention")(x, x)
        x = L.LayerNormalization(name="norm1")(x + attended)
        ff = L.Dense(64, activation="gelu", name="ff1")(x)
        ff = L.Dense(32, name="ff2")(ff)
        x = L.LayerNormalization(name="norm2")(x + ff)
        return L.GlobalAveragePooling1D(name="pool")(x)
    if arch == "lstm":
        # unroll: the TFLite converter cannot lower this tf-keras LSTM's TensorList loop to
        # builtins (it asks for Select TF ops), and the bf16 emulation needs an acyclic graph.
        return L.LSTM(32, unroll=True, name="lstm")(inputs)
    if arch == "conv1d_regressor":
        x = L.Conv1D(16, 5, padding="same", activation="relu", name="conv1")(inputs)
        x = L.MaxPooling1D(2, name="pool1")(x)
        x = L.Conv1D(32, 5, padding="same", activation="relu", name="conv2")(x)
        x = L.MaxPooling1D(2, name="pool2")(x)
        x = L.Conv1D(32, 3, padding="same", activation="relu", name="conv3")(x)
        return L.GlobalAveragePooling1D(name="gap")(x)
    raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")


def build_model(arch: str, edit: str | None = None):
    """The architecture with its head; `edit` in (None, dropped_layer, doubled_layer,
    traced_drift, traced_scale) changes the head's structure (weights are set by the caller)."""
    lib = _keras(arch)
    L = lib.layers
    inputs = lib.Input(shape=INPUT_SHAPES[arch], name="x")
    features = _backbone(arch, lib, inputs)
    x = L.Dense(HEAD_WIDTH, name="embed")(features)
    if edit == "traced_drift":
        norm = traced_drift_layer(lib)
    elif edit in TRACED_SCALES:
        norm = traced_scale_layer(lib, TRACED_SCALES[edit])
    else:
        norm = L.BatchNormalization
    x = norm(name="head_bn")(x)
    x = L.ReLU(name="head_relu")(x)
    if edit != "dropped_layer":
        mid = L.Dense(HEAD_WIDTH, activation="relu", name="mid")
        x = mid(x)
        if edit == "doubled_layer":
            x = mid(x)
    if is_classifier(arch):
        out = L.Dense(CLASSES[arch], activation="softmax", name="probs")(x)
    else:
        out = L.Dense(3, name="values")(x)
    return lib.Model(inputs, out, name=arch)


def model_path(arch: str, edit: str | None = None, root: Path = BUILD) -> Path:
    suffix = ".h5" if arch == "lstm" else ".keras"
    return Path(root) / f"{arch}{'' if edit is None else '.' + edit}{suffix}"


def train(arch: str, root: Path = BUILD) -> dict:
    """Train the architecture on generated data and save it; returns held-out figures."""
    lib = _keras(arch)
    lib.utils.set_random_seed(TRAIN_SEED)
    model = build_model(arch)
    for layer in _all_layers(model):
        # The applications' BatchNormalization momentum (0.999) leaves the moving statistics
        # far from the data after a brief training; 0.9 lets inference mode follow.
        if isinstance(layer, lib.layers.BatchNormalization):
            layer.momentum = 0.9
    x, y = dataset(arch, TRAIN_SIZE[arch], TRAIN_SEED)
    if is_classifier(arch):
        model.compile(lib.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    else:
        model.compile(lib.optimizers.Adam(3e-3), "mse")
    model.fit(x, y, batch_size=64, epochs=EPOCHS[arch], verbose=0)
    Path(root).mkdir(parents=True, exist_ok=True)
    _save(model, model_path(arch, None, root))
    hx, hy = dataset(arch, 1024, HELDOUT_SEED)
    return {"heldout_" + k: v for k, v in task_score(arch, np.asarray(model(hx, training=False)), hy).items()}


def _all_layers(model) -> list:
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(_all_layers(layer))
    return found


def _save(model, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    model.save(tmp)
    os.replace(tmp, path)


def load(arch: str, edit: str | None = None, root: Path = BUILD):
    lib = _keras(arch)
    traced_drift_layer(lib)  # registered before any file that uses it is read
    return lib.models.load_model(model_path(arch, edit, root), compile=False)


def write_edits(arch: str, root: Path = BUILD, edits: tuple[str, ...] = MODEL_EDITS) -> None:
    """Save seeded model breakages of a trained architecture."""
    base = load(arch, None, root)
    for edit in edits:
        if edit == "weights_1pct":
            broken = build_model(arch)
            rng = np.random.default_rng(7)
            broken.set_weights([w * (1 + 0.01 * rng.standard_normal(w.shape)).astype(w.dtype) for w in base.get_weights()])
        else:
            broken = build_model(arch, edit)
            for layer in broken.layers:
                if layer.weights:
                    layer.set_weights(base.get_layer(layer.name).get_weights())
        _save(broken, model_path(arch, edit, root))


def ensure_built(arch: str, root: Path = BUILD, edits: tuple[str, ...] = MODEL_EDITS) -> dict:
    """Train and write edits unless the files exist; returns held-out figures when trained."""
    if all(model_path(arch, e, root).exists() for e in (None, *edits)):
        return {}
    figures = train(arch, root) if not model_path(arch, None, root).exists() else {}
    write_edits(arch, root, edits)
    return figures


def task_score(arch: str, outputs: np.ndarray, truth: np.ndarray) -> dict:
    """Held-out task figure: accuracy for classifiers, R^2 (mean over targets) for the regressor."""
    if is_classifier(arch):
        return {"accuracy": float(np.mean(np.argmax(outputs, axis=1) == truth))}
    residual = np.sum(np.square(outputs - truth), axis=0)
    total = np.sum(np.square(truth - truth.mean(axis=0)), axis=0)
    return {"r2": float(np.mean(1 - residual / total))}
