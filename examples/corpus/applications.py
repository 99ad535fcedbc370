"""Stock Keras applications trained on real data (nothing downloaded).

Each network is `keras.applications.<Name>(weights=None, include_top=False,
pooling="avg")` at a reduced resolution for two CPUs (MobileNetV2 64x64, Xception 71x71,
its minimum, the others 32x32, theirs), with a softmax head for the 10 classes of
scikit-learn's handwritten digits (examples/real_data.py: 8x8 grey levels upsampled
bilinearly, grey on three channels, scaled to the range the network's own preprocessing
expects). Trained from scratch on the 1437 training digits with shift / zoom
augmentation, Adam with cosine decay; BatchNormalization momentum 0.9 so the moving
statistics follow the data within a short training. The model outputs the pooled
`features` and the head's `probs`; held-out accuracy on the 360 held-out digits.

The `*_random` factories keep the earlier corpus's models for its appendix and for
tests: the same networks with random weights and batch-norm statistics from one batch
of generated images, pooled features only.
"""
from __future__ import annotations

from examples.corpus._common import smooth_images

SEED = 0
EVAL_SEED = 4242
CLASSES = 10

# name -> (keras.applications constructor, input size, input range, epochs, learning rate)
APPLICATIONS = {
    "mobilenet_v2": ("MobileNetV2", 64, (-1.0, 1.0), 5, 2e-3),
    "efficientnet_b0": ("EfficientNetB0", 32, (0.0, 255.0), 6, 2e-3),  # Rescaling + Normalization inside
    "resnet50": ("ResNet50", 32, (-120.0, 150.0), 4, 1e-3),  # caffe-style mean-subtracted BGR
    "densenet121": ("DenseNet121", 32, (-2.0, 2.5), 4, 2e-3),  # torch-style standardised
    "convnext_tiny": ("ConvNeXtTiny", 32, (0.0, 255.0), 15, 5e-4),  # Normalization inside
    "xception": ("Xception", 71, (-1.0, 1.0), 3, 1e-3),
}


def _network(name: str):
    import keras

    constructor, size, _, _, _ = APPLICATIONS[name]
    return getattr(keras.applications, constructor)(weights=None, include_top=False, pooling="avg", input_shape=(size, size, 3),
                                                    name=name)


def _classifier(name: str):
    import keras

    keras.utils.set_random_seed(SEED)
    base = _network(name)
    for layer in base._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    size = APPLICATIONS[name][1]
    image = keras.Input((size, size, 3), name="image")
    features = base(image)
    probs = keras.layers.Dense(CLASSES, activation="softmax", name="probs")(features)
    return keras.Model(image, [features, probs], name=name)


def digits(name: str, part: str, seed: int | None = None, n: int | None = None):
    from examples import real_data as rd

    _, size, (low, high), _, _ = APPLICATIONS[name]
    return rd.digit_images(part, size, low, high, seed=seed, n=n)


def trained(name: str):
    """The trained classifier (from the cache when nothing changed)."""
    from examples import real_data as rd
    from examples.trained import fit_classifier, trained as cached

    import keras
    import numpy as np

    _, _, _, epochs, lr = APPLICATIONS[name]
    train_x, train_y = digits(name, "train")
    held_x, held_y = digits(name, "heldout")

    def train(model):  # fit against the head only: `features` is an output, not a target
        trainer = keras.Model(model.inputs, model.outputs[1])
        return fit_classifier(trainer, keras, train_x, train_y, held_x, held_y, epochs, lr=lr, batch_size=64,
                              augment=lambda epoch: digits(name, "train", seed=1000 + epoch)[0])

    return cached(name, lambda: _classifier(name), train, (_network, _classifier, digits, trained),
                  rd.fingerprint(train_x, train_y, held_x, held_y, np.array(APPLICATIONS[name][3:]))).model


def heldout(name: str, part: str = "heldout"):
    x, y = digits(name, part)
    return {"image": x}, y


def _data(name: str, n: int, seed: int):
    """Parity and calibration data: training digits (the first n, cycling), with their labels;
    the held-out digits stay for the task figures (examples/corpus/tasks.py)."""
    x, y = digits(name, "train", n=n)
    return {"image": x}, y


def mobilenet_v2_heldout():
    return heldout("mobilenet_v2")


def efficientnet_b0_heldout():
    return heldout("efficientnet_b0")


def resnet50_heldout():
    return heldout("resnet50")


def densenet121_heldout():
    return heldout("densenet121")


def convnext_tiny_heldout():
    return heldout("convnext_tiny")


def xception_heldout():
    return heldout("xception")


def mobilenet_v2():
    return trained("mobilenet_v2")


def efficientnet_b0():
    return trained("efficientnet_b0")


def resnet50():
    return trained("resnet50")


def densenet121():
    return trained("densenet121")


def convnext_tiny():
    return trained("convnext_tiny")


def xception():
    return trained("xception")


def mobilenet_v2_data(n: int = 64, seed: int = EVAL_SEED):
    return _data("mobilenet_v2", n, seed)


def efficientnet_b0_data(n: int = 64, seed: int = EVAL_SEED):
    return _data("efficientnet_b0", n, seed)


def resnet50_data(n: int = 64, seed: int = EVAL_SEED):
    return _data("resnet50", n, seed)


def densenet121_data(n: int = 64, seed: int = EVAL_SEED):
    return _data("densenet121", n, seed)


def convnext_tiny_data(n: int = 64, seed: int = EVAL_SEED):
    return _data("convnext_tiny", n, seed)


def xception_data(n: int = 64, seed: int = EVAL_SEED):
    return _data("xception", n, seed)


# ---------------------------------------------------------------- random weights (appendix, tests)

CALIBRATION_SEED = 7


def _random(name: str):
    import keras

    keras.utils.set_random_seed(SEED)
    model = _network(name)
    calibrate_batch_norm(model, _random_data(name, 64, CALIBRATION_SEED)["image"])
    return model


def calibrate_batch_norm(model, images) -> None:
    """Moving mean/variance of every BatchNormalization layer from one batch."""
    import keras

    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum


def _random_data(name: str, n: int, seed: int) -> dict:
    _, size, (low, high), _, _ = APPLICATIONS[name]
    return {"image": smooth_images(n, seed, size, low, high)}


def random_weights(name: str):
    """`<name>` with random weights, batch-norm statistics from one generated batch."""
    return _random(name)


def random_data(name: str, n: int = 64, seed: int = EVAL_SEED) -> dict:
    return _random_data(name, n, seed)


def mobilenet_v2_random():
    return _random("mobilenet_v2")


def efficientnet_b0_random():
    return _random("efficientnet_b0")


def resnet50_random():
    return _random("resnet50")


def densenet121_random():
    return _random("densenet121")


def convnext_tiny_random():
    return _random("convnext_tiny")


def xception_random():
    return _random("xception")


def mobilenet_v2_random_data(n: int = 64, seed: int = EVAL_SEED):
    return _random_data("mobilenet_v2", n, seed)


def efficientnet_b0_random_data(n: int = 64, seed: int = EVAL_SEED):
    return _random_data("efficientnet_b0", n, seed)


def resnet50_random_data(n: int = 64, seed: int = EVAL_SEED):
    return _random_data("resnet50", n, seed)


def densenet121_random_data(n: int = 64, seed: int = EVAL_SEED):
    return _random_data("densenet121", n, seed)


def convnext_tiny_random_data(n: int = 64, seed: int = EVAL_SEED):
    return _random_data("convnext_tiny", n, seed)


def xception_random_data(n: int = 64, seed: int = EVAL_SEED):
    return _random_data("xception", n, seed)


def mobilenet_v2_stock_96():
    """MobileNetV2 at 96x96 exactly as constructed (no batch-norm statistics set): LiteRT
    cannot prepare its int16x8 depthwise convolutions (the tflite test uses it)."""
    import keras

    keras.utils.set_random_seed(SEED)
    return keras.applications.MobileNetV2(weights=None, include_top=False, pooling="avg", input_shape=(96, 96, 3), name="mobilenet_v2")


def mobilenet_v2_stock_96_data(n: int = 32, seed: int = EVAL_SEED):
    return {"image": smooth_images(n, seed, 96, -1.0, 1.0)}
