"""The trace is proved on the user's own data, not on zeros: a trained text SavedModel
(strings in, strings out, its vocabulary a lookup table) refuses an empty string, as
many text and sequence models do, and exports from its own sentences. When the model
refuses one of those samples, the error names the sample, the input and the model's
own error, not the signature."""
from __future__ import annotations

import numpy as np
import pytest

CONFIG = """\
source:
  path: {path}
inputs:
  - {{name: text, shape: [null], dtype: string}}
outputs: [tag]
data:
  generator: fixture_text_tagger:{generator}
  samples: 16
targets:
  - savedmodel
"""


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    from fixture_text_tagger import build

    path = tmp_path_factory.mktemp("tagger") / "savedmodel"
    build(str(path))
    return path


def test_a_text_model_that_refuses_empty_strings_exports_from_its_own_data(project, tagger):
    project.config("tagger", CONFIG.format(path=tagger, generator="data"))
    result = project.run("export")
    assert result.code == 0, result.out + result.err
    entry = project.report("tagger")["targets"]["savedmodel"]["variants"]["default"]
    assert entry["status"] == "passed"
    tag = entry["parity"]["outputs"]["tag"]
    assert tag["exact"] and tag["outside"] == 0 and tag["elements"] > 16
    assert tag["criteria"]["equal"]["passed"]


def test_a_sample_the_model_refuses_is_named_with_the_models_own_error(project, tagger):
    project.config("tagger", CONFIG.format(path=tagger, generator="data_with_empty"))
    result = project.run("export")
    assert result.code == 2, result.out + result.err
    text = result.out + result.err
    assert "raises on sample 1 of its own parity data" in text
    assert "input 'text' = b''" in text
    assert "empty text: nothing to tag" in text  # the model's own message
    assert "make `inputs:` match" not in text  # the signature is not blamed
    assert "Traceback" not in text
    assert not (project.artifacts / "tagger" / "savedmodel").exists()


def test_proof_feeds_take_the_first_samples_and_wrap():
    from pipeline.records import ParityData
    from pipeline.stages.trace import proof_feeds

    class Spec:
        name, batched, shape, dtype = "x", True, (None, 2), "float32"

        def sample_shape(self, dims):
            return (2,)

    class Config:
        inputs = (Spec(),)

    pool = np.arange(8, dtype=np.float32).reshape(4, 2)
    data = ParityData(pool=pool, labels=None, cases=(("batch1", {"x": pool[:1]}), ("batch3", {"x": pool[1:4]})))
    feeds, from_data = proof_feeds(Config(), data, 3)
    assert from_data and feeds["x"].tolist() == pool[:3].tolist()
    feeds, _ = proof_feeds(Config(), ParityData(pool=pool, labels=None, cases=(("batch1", {"x": pool[:1]}),)), 3)
    assert feeds["x"].tolist() == [pool[0].tolist()] * 3  # fewer samples than the batch: wrapped
    feeds, from_data = proof_feeds(Config(), None, 2)
    assert not from_data and not feeds["x"].any()  # no data: zeros
