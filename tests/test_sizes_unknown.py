"""Sizing the weights never reads an unknown size as 0: memory admission, the 2 GiB
TFLite check, the ONNX external-data choice and the large-model path all depend on it.
What can be counted is counted (Keras 3 variables, whose dtype is a string; a variable
declared with an unknown shape, by its value); what cannot is said, and every choice
made on it takes the side that works at any size."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.execute import admission
from targets.support import sizes, tflite_lift
from targets.support.litert import Conversion


def test_keras3_model_weights_are_counted_for_admission():
    import keras

    from pipeline.execute.shared import weight_bytes
    from pipeline.records import LoadedModel

    x = keras.Input((8,), name="x")
    model = keras.Model(x, keras.layers.Dense(3)(keras.layers.Dense(16, activation="relu")(x)))
    expected = 4 * sum(int(np.prod(w.shape)) for w in model.get_weights())  # (8*16+16) + (16*3+3) float32
    assert expected == 4 * 195 and isinstance(model.variables[0].dtype, str)  # Keras 3 names its dtypes
    assert weight_bytes(LoadedModel(model, "keras3", model)) == expected


def test_a_variable_of_unknown_shape_is_counted_by_its_value():
    import tensorflow as tf

    table = tf.Variable(np.ones(300_000, np.float32), shape=tf.TensorShape(None))
    bias = tf.Variable(np.zeros(3, np.float32))
    traced = tf.function(lambda x: {"y": x * tf.reduce_sum(table) + bias}, input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    size = sizes.weight_size(traced)
    assert size.known and size.bytes == 4 * 300_003
    assert sizes.weight_size(traced, float32_only_from=2**20).bytes == 4 * 300_000  # what a stand-in would replace


def test_an_unknown_size_is_said_and_takes_the_safe_side():
    import tensorflow as tf

    untraceable = tf.function(lambda x: x)  # no input signature: TF cannot give a concrete function
    size = sizes.weight_size(untraceable)
    assert not size.known and "gave no concrete function: TypeError" in size.why_unknown
    assert size.at_least(2**31)  # never read as small
    note = sizes.check_flatbuffer_fits("m", "float32", size)
    assert note.startswith("the weights could not be sized (") and "2 GiB FlatBuffer limit was not checked" in note
    lift, why = tflite_lift.applies(Conversion(variant="float32"), untraceable)
    assert lift and "converted with stand-ins for the weights" in why
    assert tflite_lift.applies(Conversion(variant="int8"), untraceable) == (False, "")  # stand-ins serve float variants only
    with pytest.raises(Exception, match="limited to 2 GiB"):  # a known size over the limit is still refused
        sizes.check_flatbuffer_fits("m", "float32", sizes.WeightSize(3 * 2**30))


def test_admission_runs_an_unsized_job_alone():
    assert admission.decide(None, []).start  # nothing else runs: it starts
    assert not admission.decide(None, [(1 << 30, 1)]).start  # it waits for the others
    assert not admission.decide(1, [(None, 1)]).start  # and nothing starts beside it
