"""The 2 GiB FlatBuffer limit: a TFLite variant whose weights cannot fit is refused
before the converter runs, naming the limit and what fits instead."""
from __future__ import annotations

import re

import pytest

from pipeline.config import load_config
from targets import REGISTRY
from pipeline.errors import IncompatibleModel
from pipeline.target import BuildInputs
from targets.support.sizes import FLATBUFFER_LIMIT, WeightSize, check_flatbuffer_fits
from targets.tflite import TARGET


def test_weights_over_the_limit_are_refused_with_the_variants_that_fit():
    weights = WeightSize(2_500_000_000)  # float32 bytes: float16 1.25 GB and int8 weights 0.63 GB fit
    with pytest.raises(IncompatibleModel) as caught:
        check_flatbuffer_fits("big", "float32", weights)
    text = str(caught.value)
    assert "tflite/float32: model 'big' has 2.50 GB of float32 weights" in text
    assert f"limited to 2 GiB ({FLATBUFFER_LIMIT} bytes). Refused before converting." in text
    assert "(float16 ~1.25 GB, dynamic_range ~0.62 GB, int8 ~0.62 GB, int16x8 ~0.62 GB): variants: [float16, dynamic_range, int8, int16x8]" in text
    assert "or the onnx target, which writes weights over 2 GB as external data" in text
    check_flatbuffer_fits("big", "float16", weights)  # 1.25 GB stored: converts
    check_flatbuffer_fits("big", "dynamic_range", weights)


def test_weights_too_large_for_every_variant_offer_only_onnx():
    with pytest.raises(IncompatibleModel) as caught:
        check_flatbuffer_fits("huge", "int8", WeightSize(9_000_000_000))
    assert "variants:" not in str(caught.value)
    assert "Fix: the onnx target" in str(caught.value)


def test_weights_under_the_limit_pass():
    assert check_flatbuffer_fits("small", "float32", WeightSize(FLATBUFFER_LIMIT - 1)) == ""


@pytest.mark.heavy
def test_a_model_over_two_gib_is_refused_before_the_converter_runs(tmp_path):
    """A real 2 GiB variable: the build stops before any conversion (the SavedModel it
    would convert from does not even exist) and writes nothing."""
    import tensorflow as tf

    table = tf.Variable(tf.zeros([FLATBUFFER_LIMIT // 4 + 1024], tf.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="ids")])
    def traced(ids):
        return {"values": tf.gather(table, ids)}

    config_path = tmp_path / "big.yaml"
    config_path.write_text(
        "name: big\nsource: {factory: fixture_models:tiny_keras3_classifier}\n"
        "inputs:\n  - {name: ids, shape: [null], dtype: int32}\noutputs: [values]\n"
        "data: {inputs: {ids: {distribution: integers, low: 0, high: 10}}, samples: 4}\n"
        "targets:\n  - {name: tflite, variants: [float32]}\n"
    )
    config = load_config(config_path, REGISTRY)

    class Loaded:
        obj = None

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    job = BuildInputs(model=config, target=config.target("tflite"), out_dir=out_dir, saved_model_dir=tmp_path / "absent",
                      traced=traced, loaded=Loaded(), calibration={})
    (artifact,) = TARGET.build(job)  # each variant stands alone: the refusal is the variant's error
    assert artifact.variant == "float32" and artifact.files == ()
    assert artifact.error["error"] == "IncompatibleModel" and artifact.error["exit_code"] == 2
    assert re.search(r"limited to 2 GiB .* Refused before converting", artifact.error["message"])
    assert list(out_dir.iterdir()) == []
