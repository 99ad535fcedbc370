"""The corpus the default parity budgets are calibrated on: real architectures trained
on real data (scikit-learn's bundled handwritten digits: 1797 8x8 grey images, 10
classes, a fixed train / held-out split of 1437 / 360; examples/real_data.py), and
seeded breakages of each.

Architectures (every input lies in [-1, 1], the convention of the Keras applications'
`preprocess_input` for MobileNet):

- `mobilenet_v2`: keras.applications.MobileNetV2 (alpha 0.35, 32x32x3, no weights)
  on the digits upsampled to 32x32 in false colour (R = ink, G = ink squared,
  B = 1 - ink: reversing the channels inverts the ink, so a channel swap is a real
  breakage).
- `mobilenet_v3`: keras.applications.MobileNetV3Small (minimalistic=False: hard-swish and
  squeeze-excite; 32x32x3) on the same images.
- `transformer`: one Transformer encoder block (MultiHeadAttention, LayerNorm, GELU
  feed-forward) over a digit's 8 rows as 8 steps x 9 features (8 grey levels and a
  time ramp: the block has no positional embedding of its own).
- `lstm`: a tf-keras (Keras 2) LSTM (unrolled) over the digit's 8 rows as 8 steps x 8.
- `conv1d_regressor`: Conv1D stack over the digit as 64 samples x 2 channels (the image
  read row by row, and column by column) regressing 3 values: its ink's centre row and
  centre column (/ 7) and its mean ink; no classifier.

Training uses shift / zoom augmentation of the training digits; held-out figures are
on the 360 held-out digits, parity and calibration samples come from the training part.

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

from examples import real_data as rd

BUILD = Path(__file__).resolve().parent / "build" / "budget_corpus"

ARCHITECTURES = ("mobilenet_v2", "mobilenet_v3", "transformer", "lstm", "conv1d_regressor")
MODEL_EDITS = ("dropped_layer", "doubled_layer", "weights_1pct", "traced_drift", "traced_scale", "traced_scale_2x")
TRACED_SCALE = 1.25  # inverted dropout's 1 / (1 - 0.2)
TRACED_SCALES = {"traced_scale": TRACED_SCALE, "traced_scale_2x": 2.0}  # 2.0: 1 / (1 - 0.5)
HEAD_WIDTH = 32
TRAIN_SEED = 0
EPOCHS = {"mobilenet_v2": 25, "mobilenet_v3": 25, "transformer": 40, "lstm": 40, "conv1d_regressor": 40}


# ---------------------------------------------------------------- real data, in [-1, 1]


def _false_colour(grey: np.ndarray) -> np.ndarray:
    """[n, h, w] ink in [0, 1] -> [n, h, w, 3] in [-1, 1]: R = ink, G = ink^2, B = 1 - ink."""
    return (np.stack([grey, grey * grey, 1.0 - grey], axis=-1) * 2.0 - 1.0).astype(np.float32)


def digit_colour(part: str, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    grey, y = rd.digit_images(part, 32, channels=1, seed=seed)
    return _false_colour(grey[..., 0]), y


def _rows(part: str, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    x, y = rd.digits(part)
    if seed is not None:
        x = np.clip(rd.upsample(x, 8, seed), 0.0, 1.0)
    return x, y


def digit_rows(part: str, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """[n, 8, 8] rows as steps in [-1, 1]."""
    x, y = _rows(part, seed)
    return (x * 2.0 - 1.0).astype(np.float32), y


def digit_rows_ramp(part: str, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """[n, 8, 9]: the rows and a time ramp -1..1 as the last feature."""
    x, y = digit_rows(part, seed)
    ramp = np.broadcast_to(np.linspace(-1, 1, 8, dtype=np.float32)[None, :, None], (len(x), 8, 1))
    return np.concatenate([x, ramp], axis=-1), y


def digit_signals(part: str, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """[n, 64, 2] in [-1, 1] (row-major and column-major reads) and targets [n, 3]: the
    ink's centre row / 7, centre column / 7, mean ink."""
    x, _ = _rows(part, seed)
    ink = x.sum(axis=(1, 2)) + 1e-6
    grid = np.arange(8, dtype=np.float64)
    centre_row = (x.sum(axis=2) * grid).sum(axis=1) / ink / 7.0
    centre_col = (x.sum(axis=1) * grid).sum(axis=1) / ink / 7.0
    signal = np.stack([x.reshape(len(x), 64), x.transpose(0, 2, 1).reshape(len(x), 64)], axis=-1) * 2.0 - 1.0
    targets = np.stack([centre_row, centre_col, x.mean(axis=(1, 2))], axis=1)
    return signal.astype(np.float32), targets.astype(np.float32)


GENERATORS = {
    "mobilenet_v2": digit_colour,
    "mobilenet_v3": digit_colour,
    "transformer": digit_rows_ramp,
    "lstm": digit_rows,
    "conv1d_regressor": digit_signals,
}
INPUT_SHAPES = {"mobilenet_v2": (32, 32, 3), "mobilenet_v3": (32, 32, 3), "transformer": (8, 9), "lstm": (8, 8), "conv1d_regressor": (64, 2)}
CLASSES = {"mobilenet_v2": 10, "mobilenet_v3": 10, "transformer": 10, "lstm": 10, "conv1d_regressor": 0}


def is_classifier(arch: str) -> bool:
    return CLASSES[arch] > 0


def output_name(arch: str) -> str:
    return "probs" if is_classifier(arch) else "values"


def dataset(arch: str, part: str, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels or targets) of the train or held-out part; `seed` augments."""
    return GENERATORS[arch](part, seed)


def heldout(arch: str) -> tuple[np.ndarray, np.ndarray]:
    return dataset(arch, "heldout")


def _parity_data(arch: str, n: int):
    """Parity and calibration samples: the first n training digits (cycling when n is larger)."""
    x, y = dataset(arch, "train")
    idx = np.arange(n) % len(x)
    return ({"x": x[idx]}, y[idx]) if is_classifier(arch) else {"x": x[idx]}


# Data generators the configs name (n, seed) -> inputs[, labels]; the samples are fixed.
def mobilenet_v2_data(n: int, seed: int = 0):
    return _parity_data("mobilenet_v2", n)


def mobilenet_v3_data(n: int, seed: int = 0):
    return _parity_data("mobilenet_v3", n)


def transformer_data(n: int, seed: int = 0):
    return _parity_data("transformer", n)


def lstm_data(n: int, seed: int = 0):
    return _parity_data("lstm", n)


def conv1d_regressor_data(n: int, seed: int = 0):
    return _parity_data("conv1d_regressor", n)


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
    """Train the architecture on the training digits (augmented each epoch) and save it;
    returns held-out figures."""
    lib = _keras(arch)
    lib.utils.set_random_seed(TRAIN_SEED)
    model = build_model(arch)
    for layer in _all_layers(model):
        # The applications' BatchNormalization momentum (0.999) leaves the moving statistics
        # far from the data after a brief training; 0.9 lets inference mode follow.
        if isinstance(layer, lib.layers.BatchNormalization):
            layer.momentum = 0.9
    _, y = dataset(arch, "train")
    steps = EPOCHS[arch] * -(-len(y) // 64)
    optimizer = lib.optimizers.Adam(lib.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.02))
    model.compile(optimizer, "sparse_categorical_crossentropy" if is_classifier(arch) else "mse")
    for epoch in range(EPOCHS[arch]):
        x, _ = dataset(arch, "train", seed=1000 * TRAIN_SEED + epoch)
        model.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=True)
    Path(root).mkdir(parents=True, exist_ok=True)
    _save(model, model_path(arch, None, root))
    hx, hy = heldout(arch)
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
