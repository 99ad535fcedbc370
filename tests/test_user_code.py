"""The user's own code and files: custom layers named in the config load; trace errors say
the cause, the config line, the user's line and the fix."""
from __future__ import annotations

import sys
import textwrap

import pytest

LAYERS = '''\
import keras
import tf_keras


@keras.saving.register_keras_serializable(package="{package}")
class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {{**super().get_config(), "factor": self.factor}}


class Scale2(tf_keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {{**super().get_config(), "factor": self.factor}}
'''

IO = "inputs:\n  - {name: x, shape: [null, 8], dtype: float32}\noutputs: [probs]\ndata:\n  samples: 16\ntargets: [savedmodel]\n"


@pytest.fixture
def layers_module(project):
    """A user module beside the configs that registers a custom layer (Keras 3) and defines one for tf-keras."""
    name = "user_layers_" + project.root.name.replace("-", "_")
    (project.config_dir / f"{name}.py").write_text(LAYERS.format(package=name))
    sys.path.insert(0, str(project.config_dir))
    try:
        yield name, __import__(name)
    finally:
        sys.path.remove(str(project.config_dir))
        sys.modules.pop(name, None)


def test_a_keras_file_with_a_registered_custom_layer_loads_when_its_module_is_named(project, layers_module):
    import keras

    name, module = layers_module
    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(8,), name="x")
    model = keras.Model(x, keras.layers.Softmax(name="probs")(module.Scale(3.0)(keras.layers.Dense(4)(x))))
    model.save(project.config_dir / "custom.keras")
    project.config("custom", f"source:\n  path: custom.keras\n{IO}")
    refused = project.run("export")
    assert refused.code == 2, refused.err
    assert "custom.yaml:2: source.path:" in refused.err and "'Scale'" in refused.err and "modules: [" in refused.err
    assert not project.artifacts.exists()
    project.config("custom", f"source:\n  path: custom.keras\n  modules: [{name}]\n{IO}")
    result = project.run("export")
    assert result.code == 0, result.err
    assert project.report("custom")["targets"]["savedmodel"]["variants"]["default"]["parity"]["outputs"]["probs"]["max_abs"] <= 1e-5


def test_a_tf_keras_h5_with_a_custom_layer_loads_with_custom_objects(project, layers_module):
    import tf_keras

    name, module = layers_module
    x = tf_keras.Input(shape=(8,), name="x")
    model = tf_keras.Model(x, tf_keras.layers.Softmax(name="probs")(module.Scale2(3.0)(tf_keras.layers.Dense(4)(x))))
    model.save(project.config_dir / "custom.h5")
    project.config("custom", f"source:\n  path: custom.h5\n  custom_objects: {{Scale2: {name}:Scale2}}\n{IO}")
    result = project.run("export")
    assert result.code == 0, result.err
    assert project.report("custom")["run"]["model"]["flavour"] == "tf_keras"
    project.config("custom", f"source:\n  path: custom.h5\n  custom_objects: {{Scale2: {name}:Missing}}\n{IO}")
    result = project.run("export", "--force")
    assert result.code == 2 and "custom.yaml:3: source.custom_objects.Scale2:" in result.err and "has no attribute 'Missing'" in result.err


def test_explanations_have_no_colour_codes_and_name_the_cause():
    from pipeline.usercode import first_line, is_python_bool_on_tensor

    keras_style = RuntimeError("Exception encountered when calling Gate.call().\n\n\x1b[1mUsing a symbolic `tf.Tensor` as a Python `bool` is not allowed.\x1b[0m\n\nArguments received by Gate.call():\n  x=tf.Tensor")
    assert first_line(keras_style) == "Using a symbolic `tf.Tensor` as a Python `bool` is not allowed. (in Gate.call())"
    assert is_python_bool_on_tensor(keras_style)
    autograph = ValueError(textwrap.dedent('''\
        in user code:

            File "/home/u/model.py", line 9, in __call__  *
                if x > self.threshold:

            ValueError: condition of if statement expected to be `tf.bool` scalar, got Tensor("Greater:0", shape=(None, 4), dtype=bool)
        '''))
    assert first_line(autograph).startswith("ValueError: condition of if statement expected to be `tf.bool` scalar")
    assert is_python_bool_on_tensor(autograph)
    assert not is_python_bool_on_tensor(ValueError("shapes (3,) and (4,) not aligned"))
