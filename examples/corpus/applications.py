"""Stock Keras applications, `weights=None` (nothing downloaded), feature outputs.

`include_top=False, pooling="avg"`: a softmax head on random weights is flat and
would prove little. Random weights alone also let the signal fade through dozens of
layers (MobileNetV2's pooled features come out near 1e-17), so every
BatchNormalization layer takes its moving statistics from one batch of generated
images (momentum 0 for one training-mode pass): the features then keep the spread
of the input, as in a trained network. Resolutions are reduced for two CPUs: MobileNetV2 96x96,
EfficientNetB0 / ResNet50 / DenseNet121 / ConvNeXtTiny 64x64, Xception 71x71 (its
minimum). Each model sees images in the range its own preprocessing expects.
"""
from __future__ import annotations

from examples.corpus._common import smooth_images

SEED = 0
EVAL_SEED = 4242

# name -> (keras.applications constructor, input size, input range)
APPLICATIONS = {
    "mobilenet_v2": ("MobileNetV2", 64, (-1.0, 1.0)),
    "efficientnet_b0": ("EfficientNetB0", 32, (0.0, 255.0)),  # Rescaling + Normalization inside
    "resnet50": ("ResNet50", 32, (-120.0, 150.0)),  # caffe-style mean-subtracted BGR
    "densenet121": ("DenseNet121", 32, (-2.0, 2.5)),  # torch-style standardised
    "convnext_tiny": ("ConvNeXtTiny", 32, (0.0, 255.0)),  # Normalization inside
    "xception": ("Xception", 71, (-1.0, 1.0)),
}


CALIBRATION_SEED = 7


def _build(name: str):
    import keras

    constructor, size, _ = APPLICATIONS[name]
    keras.utils.set_random_seed(SEED)
    model = getattr(keras.applications, constructor)(
        weights=None, include_top=False, pooling="avg", input_shape=(size, size, 3), name=name
    )
    calibrate_batch_norm(model, _data(name, 64, CALIBRATION_SEED)["image"])
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


def _data(name: str, n: int, seed: int) -> dict:
    _, size, (low, high) = APPLICATIONS[name]
    return {"image": smooth_images(n, seed, size, low, high)}


def mobilenet_v2():
    return _build("mobilenet_v2")


def efficientnet_b0():
    return _build("efficientnet_b0")


def resnet50():
    return _build("resnet50")


def densenet121():
    return _build("densenet121")


def convnext_tiny():
    return _build("convnext_tiny")


def xception():
    return _build("xception")


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
