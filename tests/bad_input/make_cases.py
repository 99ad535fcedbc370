"""Writes the bad-input corpus: one folder per case with `config.yaml`, its small files and
`expect.yaml` (exit code, a regex the message must match, the config line it must name,
and whether the case needs a worker, i.e. TensorFlow: those are `heavy`).

Run `python tests/bad_input/make_cases.py` after changing a case; the folders are committed.
Model files are tiny and built here (Keras 3, tf-keras and plain TF), nothing is downloaded.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

X4 = "inputs:\n  - {name: x, shape: [null, 4], dtype: float32}\noutputs: [y]\n"
X8 = "inputs:\n  - {name: x, shape: [null, 8], dtype: float32}\noutputs: [probs]\n"
AFFINE = "source:\n  factory: examples.affine:build\n"
SM = "targets: [savedmodel]\n"

CASES: dict[str, dict] = {}


def case(name: str, config: str, message: str, line: int, *, files: dict | None = None, heavy: bool = False, exit: int = 2) -> None:
    CASES[name] = {"config": config, "message": message, "line": line, "files": files or {}, "heavy": heavy, "exit": exit}


# ---------------------------------------------------------------- YAML and keys (no TensorFlow)
case("yaml_syntax", AFFINE + X4 + "targets: [savedmodel\n", r"invalid YAML", 7)  # YAML marks the end of the stream
case("not_utf8", AFFINE + "# caf\xe9\n" + X4 + SM, r"not UTF-8 text", 3, files={"__latin1__": b""})
case("empty_file", "# nothing here\n", r"expected a mapping", 1)
case("top_level_list", "- savedmodel\n- tflite\n", r"expected a mapping", 1)
case("unknown_key", AFFINE + X4 + SM + "taregts: [tflite]\n", r"unknown key 'taregts' \(did you mean 'targets'\?\)", 7)
case("missing_targets", AFFINE + X4, r"missing required key 'targets'", 1)
case("duplicate_key", AFFINE + X4 + SM + "outputs: [z]\n", r"key given twice", 7)
case("path_and_factory", "source:\n  factory: examples.affine:build\n  path: m.keras\n" + X4 + SM, r"exactly one of 'path'", 1)
case("path_missing", "source:\n  path: missing.keras\n" + X4 + SM, r"model file not found", 2)
case("path_unknown_format", "source:\n  path: model.onnx\n" + X4 + SM, r"cannot tell the model format", 2)
case("factory_ref_malformed", "source:\n  factory: examples.affine.build\n" + X4 + SM, r"expected 'module:function'", 2)
case("modules_not_a_list", "source:\n  factory: examples.affine:build\n  modules: mylayers\n" + X4 + SM, r"expected a list of module names", 3)
case("custom_objects_bad_ref", "source:\n  path: m.h5\n  custom_objects: {MyLayer: mylayers.MyLayer}\n" + X4 + SM, r"expected 'module:function'", 3, files={"m.h5": b"\x89HDF\r\n"})
# ---------------------------------------------------------------- types and values
case("inputs_not_a_list", AFFINE + "inputs: x\noutputs: [y]\n" + SM, r"expected a non-empty list of inputs", 3)
case("input_bad_dtype", AFFINE + "inputs:\n  - {name: x, shape: [null, 4], dtype: float33}\noutputs: [y]\n" + SM, r"unknown dtype 'float33' \(did you mean 'float32'\?\)", 4)
case("input_shape_not_a_list", AFFINE + "inputs:\n  - {name: x, shape: 4, dtype: float32}\noutputs: [y]\n" + SM, r"inputs\[0\].shape: expected a list", 4)
case("input_negative_dim", AFFINE + "inputs:\n  - {name: x, shape: [null, -4], dtype: float32}\noutputs: [y]\n" + SM, r"positive integers", 4)
case("input_duplicate", AFFINE + "inputs:\n  - {name: x, shape: [null, 4], dtype: float32}\n  - {name: x, shape: [null, 4], dtype: float32}\noutputs: [y]\n" + SM, r"duplicate input name 'x'", 5)
case("outputs_empty", AFFINE + "inputs:\n  - {name: x, shape: [null, 4], dtype: float32}\noutputs: []\n" + SM, r"non-empty list of output names", 5)
case("output_duplicate", AFFINE + "inputs:\n  - {name: x, shape: [null, 4], dtype: float32}\noutputs: [y, y]\n" + SM, r"duplicate output name 'y'", 5)
case("output_allow_nonfinite_not_bool", AFFINE + "inputs:\n  - {name: x, shape: [null, 4], dtype: float32}\noutputs:\n  - {name: y, allow_nonfinite: sometimes}\n" + SM, r"expected true or false", 6)
case("samples_not_int", AFFINE + X4 + "data:\n  samples: many\n" + SM, r"data.samples: expected an integer", 7)
case("samples_zero", AFFINE + X4 + "data:\n  samples: 0\n" + SM, r"expected at least 1 sample", 7)
case("two_data_sources", AFFINE + X4 + "data:\n  npz: d.npz\n  generator: examples.image_cnn:eval_data\n" + SM, r"at most one data source", 6)
case("synthetic_unknown_input", AFFINE + X4 + "data:\n  inputs:\n    z: {low: 0, high: 1}\n" + SM, r"no input named 'z'", 8)
case("synthetic_low_above_high", AFFINE + X4 + "data:\n  inputs:\n    x: {low: 2, high: 1}\n" + SM, r"expected low < high", 8)
case("integer_input_without_range", AFFINE + "inputs:\n  - {name: ids, shape: [null, 4], dtype: int32}\noutputs: [y]\n" + SM, r"integer input 'ids' needs its value range", 4)
case("string_input_synthetic", AFFINE + "inputs:\n  - {name: text, shape: [null], dtype: string}\noutputs: [y]\n" + SM, r"synthetic data cannot make it", 4)
case("batch_sizes_vs_fixed_batch", AFFINE + "inputs:\n  - {name: x, shape: [2, 4], dtype: float32}\noutputs: [y]\ndata:\n  batch_sizes: [1, 3]\n" + SM, r"batch dimension is fixed at 2", 7)
case("classifier_unknown_output", AFFINE + X4 + "data:\n  classifier: probs\n" + SM, r"expected the name of the output holding class scores", 7)
case("labels_without_npz", AFFINE + X4 + "data:\n  labels: y\n" + SM, r"'labels' names the labels array", 7)
# ---------------------------------------------------------------- targets and tolerances
case("unknown_target", AFFINE + X4 + "targets: [savedmodel, tfl1te]\n", r"unknown target 'tfl1te' \(did you mean 'tflite'\?\)", 6)
case("target_twice", AFFINE + X4 + "targets: [savedmodel, savedmodel]\n", r"listed twice", 6)
case("unknown_target_option", AFFINE + X4 + "targets:\n  - {name: tflite, variant: [int8]}\n", r"unknown key 'variant' \(did you mean 'variants'\?\)", 7)
case("unknown_tflite_variant", AFFINE + X4 + "targets:\n  - {name: tflite, variants: [int4]}\n", r"invalid value 'int4'", 7)
case("tolerance_negative", AFFINE + X4 + "targets:\n  - name: savedmodel\n    tolerances:\n      y: {atol: -1.0}\n", r"expected a finite number >= 0", 9)
case("tolerance_nan", AFFINE + X4 + "targets:\n  - name: savedmodel\n    tolerances:\n      y: {rtol: .nan}\n", r"expected a finite number >= 0", 9)
case("tolerance_unknown_output", AFFINE + X4 + "targets:\n  - name: savedmodel\n    tolerances:\n      probs: {atol: 1.0e-3}\n", r"neither an output nor a variant", 9)
case("tolerance_unknown_key", AFFINE + X4 + "targets:\n  - name: savedmodel\n    tolerances:\n      y: {atoll: 1.0e-3}\n", r"unknown key 'atoll' \(did you mean 'atol'\?\)", 9)
# ---------------------------------------------------------------- memory and npz data (checked before any worker starts)
case("samples_beyond_memory", AFFINE + "inputs:\n  - {name: x, shape: [null, 1024, 1024], dtype: float32}\noutputs: [y]\ndata:\n  samples: 1000000000\n" + SM, r"need .* GiB; .* GiB of memory is available", 7)
NPZ = "source:\n  factory: fixture_models:tiny_keras3_classifier\n" + X8 + "data:\n  npz: data.npz\n"
case("npz_garbage", NPZ + SM, r"cannot read .*data.npz as a .npz archive", 7, files={"data.npz": b"this is not a zip archive\n" * 8})
case("npz_truncated", NPZ + SM, r"cannot read .*data.npz as a .npz archive", 7, files={"data.npz": ("npz_truncated", {"x": ("normal", (40, 8), "float32")})})
case("npz_object_array", NPZ + SM, r"object arrays, which need pickle", 7, files={"data.npz": ("npz_object", {"x": ("object", (40, 8), "object")})})
case("npz_single_array", NPZ + SM, r"single array, not named arrays", 7, files={"data.npz": ("npy", {"x": ("normal", (40, 8), "float32")})})
case("npz_missing_array", NPZ + SM, r"has no array for input 'x'; it has: features", 7, files={"data.npz": ("npz", {"features": ("normal", (40, 8), "float32")})})
case("npz_wrong_shape", NPZ + SM, r"input 'x': samples have shape \[7\]", 7, files={"data.npz": ("npz", {"x": ("normal", (40, 7), "float32")})})
case("npz_wrong_dtype", NPZ + SM, r"dtype complex64 does not fit the input's float32", 7, files={"data.npz": ("npz", {"x": ("normal", (40, 8), "complex64")})})
case("npz_too_few_samples", NPZ + SM, r"holds 2 samples; at least 3 are needed", 7, files={"data.npz": ("npz", {"x": ("normal", (2, 8), "float32")})})
case("npz_nonfinite", NPZ + SM, r"3 NaN/Inf value\(s\).*allow_nonfinite", 7, files={"data.npz": ("npz", {"x": ("nan3", (40, 8), "float32")})})
case("npz_missing_labels", NPZ + "  labels: y\n" + SM, r"has no array 'y'; it has: x", 8, files={"data.npz": ("npz", {"x": ("normal", (40, 8), "float32")})})
case("npz_labels_float", NPZ + "  labels: y\n" + SM, r"labels have dtype float32; expected integer class ids", 8, files={"data.npz": ("npz", {"x": ("normal", (40, 8), "float32"), "y": ("normal", (40,), "float32")})})
case("npz_inputs_disagree", "source:\n  factory: examples.threshold:build\ninputs:\n  - {name: x, shape: [null, 6], dtype: float32}\n  - {name: t, shape: [null, 1], dtype: float32}\noutputs: [y]\ndata:\n  npz: data.npz\n" + SM, r"different sample counts \[30, 40\]", 8, files={"data.npz": ("npz", {"x": ("normal", (40, 6), "float32"), "t": ("normal", (30, 1), "float32")})})

# ---------------------------------------------------------------- factories (a worker runs them: heavy)
FACTORY = "source:\n  factory: {ref}\n" + X4 + "data:\n  samples: 8\n" + SM
case("factory_module_missing", FACTORY.replace("{ref}", "no_such_module_here:build"), r"cannot import model factory module 'no_such_module_here'", 2, heavy=True)
case("factory_attr_missing", FACTORY.replace("{ref}", "examples.affine:buld"), r"has no attribute 'buld'; callables there: .*build", 2, heavy=True)
case("factory_raises", FACTORY.replace("{ref}", "factory_raises_mod:build"), r"model factory 'factory_raises_mod:build' raised RuntimeError: the weights file is gone at .*factory_raises_mod.py:2: `raise RuntimeError", 2, heavy=False,
     files={"factory_raises_mod.py": "def _load():\n    raise RuntimeError('the weights file is gone')\n\n\ndef build():\n    return _load()\n".replace("    return _load()", "    return _load()")})
case("factory_syntax_error", FACTORY.replace("{ref}", "factory_syntax_mod:build"), r"raised SyntaxError.* at .*factory_syntax_mod.py:1: `def build\(:`", 2, heavy=True,
     files={"factory_syntax_mod.py": "def build(:\n    return 1 +\n"})
case("factory_imports_missing_package", FACTORY.replace("{ref}", "factory_imports_mod:build"), r"raised ModuleNotFoundError: No module named 'not_installed_pkg' at .*factory_imports_mod.py:1", 2, heavy=True,
     files={"factory_imports_mod.py": "import not_installed_pkg\n\n\ndef build():\n    return not_installed_pkg.Model()\n"})
case("factory_returns_int", FACTORY.replace("{ref}", "factory_int_mod:build"), r"returned int 3; expected a Keras model, a callable tf.Module or a function", 2, heavy=True,
     files={"factory_int_mod.py": "def build():\n    return 3\n"})
case("build_recipe_raises", "source:\n  path: never_built.keras\n  build: recipe_raises_mod:build\n" + X4 + SM, r"build recipe 'recipe_raises_mod:build' raised OSError: disk is read-only at .*recipe_raises_mod.py:2", 3, heavy=True,
     files={"recipe_raises_mod.py": "def build(path):\n    raise OSError('disk is read-only')\n"})
# ---------------------------------------------------------------- generators (heavy: the worker imports them)
GEN = AFFINE + X4 + "data:\n  generator: {ref}\n  samples: 8\n" + SM
GEN_CODE = {
    "gen_list_mod.py": "import numpy as np\n\n\ndef data(n, seed=0):\n    return [np.zeros((n, 4), np.float32)]\n",
    "gen_raises_mod.py": "def data(n, seed=0):\n    raise ValueError(f'cannot make {n} samples')\n",
    "gen_shape_mod.py": "import numpy as np\n\n\ndef data(n, seed=0):\n    return {'x': np.zeros((n, 5), np.float32)}\n",
    "gen_dtype_mod.py": "import numpy as np\n\n\ndef data(n, seed=0):\n    return {'x': np.array([['a'] * 4] * n)}\n",
    "gen_nan_mod.py": "import numpy as np\n\n\ndef data(n, seed=0):\n    x = np.ones((n, 4), np.float32)\n    x[0, 0] = np.nan\n    return {'x': x}\n",
}
case("generator_returns_list", GEN.replace("{ref}", "gen_list_mod:data"), r"returned list; expected a dict \{input name: array", 7, heavy=False, files={"gen_list_mod.py": GEN_CODE["gen_list_mod.py"]})
case("generator_raises", GEN.replace("{ref}", "gen_raises_mod:data"), r"raised ValueError: cannot make 8 samples at .*gen_raises_mod.py:2", 7, heavy=True, files={"gen_raises_mod.py": GEN_CODE["gen_raises_mod.py"]})
case("generator_wrong_shape", GEN.replace("{ref}", "gen_shape_mod:data"), r"samples have shape \[5\]", 7, heavy=True, files={"gen_shape_mod.py": GEN_CODE["gen_shape_mod.py"]})
case("generator_wrong_dtype", GEN.replace("{ref}", "gen_dtype_mod:data"), r"dtype <U1 does not fit the input's float32", 7, heavy=True, files={"gen_dtype_mod.py": GEN_CODE["gen_dtype_mod.py"]})
case("generator_nonfinite", GEN.replace("{ref}", "gen_nan_mod:data"), r"1 NaN/Inf value\(s\)", 7, heavy=True, files={"gen_nan_mod.py": GEN_CODE["gen_nan_mod.py"]})
# ---------------------------------------------------------------- model files (heavy: loading needs TensorFlow)
FILE = "source:\n  path: {path}\n" + X8 + "data:\n  samples: 8\n" + SM
case("keras_truncated", FILE.replace("{path}", "model.keras"), r"cannot load model .*model.keras \(\d+ bytes\).*Expected a complete Keras 3 `.keras` archive", 2, heavy=True, files={"model.keras": ("keras_truncated", None)})
case("keras_empty", FILE.replace("{path}", "model.keras"), r"cannot load model .*model.keras \(0 bytes\)", 2, heavy=True, files={"model.keras": b""})
case("keras_is_a_folder", FILE.replace("{path}", "model.keras"), r"cannot load model .*model.keras \(a directory\)", 2, heavy=True, files={"model.keras/README": b"a folder named like a model\n"})
case("h5_garbage", FILE.replace("{path}", "model.h5"), r"cannot load model .*model.h5 \(\d+ bytes\).*Expected a full-model `.h5` file", 2, heavy=True, files={"model.h5": b"GIF89a not an hdf5 file" * 10})
case("h5_weights_only", FILE.replace("{path}", "model.h5"), r"cannot load model .*model.h5.*not save_weights", 2, heavy=True, files={"model.h5": ("h5_weights", None)})
case("savedmodel_no_such_signature", "source:\n  path: sm\n  signature: predict\n" + X8 + SM, r"has no signature 'predict'; it has: serving_default", 3, heavy=True, files={"sm": ("savedmodel", None)})
case("savedmodel_input_names", "source:\n  path: sm\ninputs:\n  - {name: features, shape: [null, 8], dtype: float32}\noutputs: [probs]\n" + SM, r"takes inputs \['x'\], but the config names \['features'\]", 3, heavy=True, files={"sm": ("savedmodel", None)})
case("custom_layer_not_registered", FILE.replace("{path}", "custom.keras"), r"uses the custom class 'ScaledDense'.*modules: \[", 2, heavy=True, files={"custom.keras": ("keras_custom", None)})
case("custom_layer_module_missing", "source:\n  path: custom.keras\n  modules: [my_missing_layers]\n" + X8 + SM, r"cannot import custom layer module 'my_missing_layers'", 3, heavy=True, files={"custom.keras": ("keras_custom", None)})
# ---------------------------------------------------------------- signatures and tracing (heavy)
KERAS_IO = "source:\n  factory: fixture_models:tiny_keras3_classifier\n"
case("one_input_too_many", KERAS_IO + "inputs:\n  - {name: x, shape: [null, 8], dtype: float32}\n  - {name: extra, shape: [null, 8], dtype: float32}\noutputs: [probs]\n" + SM, r"cannot trace model", 3, heavy=True)
case("output_count_differs", KERAS_IO + "inputs:\n  - {name: x, shape: [null, 8], dtype: float32}\noutputs: [probs, logits]\n" + SM, r"returned 1 output\(s\) but the config names 2", 5, heavy=True)
case("input_shape_mismatch", KERAS_IO + "inputs:\n  - {name: x, shape: [null, 5], dtype: float32}\noutputs: [probs]\n" + SM, r"cannot trace model 'input_shape_mismatch' into a graph with the input signature \(x: float32\[None, 5\]\)", 3, heavy=True)
case("python_if_module_autograph", "source:\n  factory: fixture_models:python_if_module\n" + X4 + SM, r"a Python `if`.*fixture_models.py:\d+: `if x > self.threshold:`.*tf.where", 2, heavy=True)
case("python_if_functional_layer", "source:\n  factory: python_if_layer_mod:build\n" + X4 + SM, r"a Python `if`.*python_if_layer_mod.py:7: `if x > 0.5:`.*tf.where", 2, heavy=False,
     files={"python_if_layer_mod.py": "import keras\n\n\nclass Gate(keras.layers.Layer):\n\n    def call(self, x):\n        if x > 0.5:\n            return x * 2.0\n        return x\n\n\ndef build():\n    x = keras.Input(shape=(4,), name='x')\n    return keras.Model(x, Gate()(x))\n"})
case("nan_reference", "source:\n  factory: nan_model_mod:build\n" + X4 + SM, r"output 'y' holds (\d+) NaN/Inf value\(s\) of \1 over the parity data.*allow_nonfinite: true", 5, heavy=False,
     files={"nan_model_mod.py": "import tensorflow as tf\n\n\nclass NaNs(tf.Module):\n    def __call__(self, x):\n        return tf.math.log(-tf.abs(x) - 1.0)\n\n\ndef build():\n    return NaNs()\n"})
case("float64_op_for_tpu", "source:\n  factory: fixture_models:float64_op\n" + X4 + "targets: [tpu]\n", r"targets\[0\]: tpu: model .* uses \d+ op\(s\) a TPU does not run.*float64", 6, heavy=True)


def _array(kind: str, shape: tuple, dtype: str):
    import numpy as np

    rng = np.random.default_rng(0)
    if kind == "object":
        return np.empty(shape, dtype=object)
    values = rng.normal(size=shape).astype(dtype)
    if kind == "nan3":
        values.reshape(-1)[:3] = np.nan
    return values


def _write_model(kind: str, dest: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    def small():
        keras.utils.set_random_seed(0)
        x = keras.Input(shape=(8,), name="x")
        return keras.Model(x, keras.layers.Dense(3, activation="softmax", name="probs")(x))

    if kind == "keras_truncated":
        full = dest.with_suffix(".full.keras")
        small().save(full)
        dest.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        full.unlink()
    elif kind == "h5_weights":
        import tf_keras

        x = tf_keras.Input(shape=(8,), name="x")
        model = tf_keras.Model(x, tf_keras.layers.Dense(3, activation="softmax", name="probs")(x))
        model.save_weights(dest)
    elif kind == "savedmodel":
        import tensorflow as tf

        model = small()
        module = tf.Module()
        module.v = [v.value for v in model.weights]
        module.f = tf.function(lambda x: {"probs": model(x)}, input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x")])
        tf.saved_model.save(module, str(dest), signatures={"serving_default": module.f.get_concrete_function()})
        (dest / "fingerprint.pb").unlink(missing_ok=True)
    elif kind == "keras_custom":
        @keras.saving.register_keras_serializable(package="corpus_layers")
        class ScaledDense(keras.layers.Dense):
            pass

        keras.utils.set_random_seed(0)
        x = keras.Input(shape=(8,), name="x")
        model = keras.Model(x, ScaledDense(3, name="probs")(x))
        model.save(dest)
    else:
        raise ValueError(kind)
    del np


def write_case(name: str, spec: dict, root: Path) -> None:
    import numpy as np

    folder = root / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    config = spec["config"]
    if "__latin1__" in spec["files"]:
        (folder / "config.yaml").write_bytes(config.encode("latin-1"))
    else:
        (folder / "config.yaml").write_text(config)
    for rel, content in spec["files"].items():
        if rel == "__latin1__":
            continue
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            kind, arrays = content
            if kind in ("npz", "npz_truncated"):
                with open(path, "wb") as f:
                    np.savez(f, **{k: _array(*v) for k, v in arrays.items()})
                if kind == "npz_truncated":
                    data = path.read_bytes()
                    path.write_bytes(data[: len(data) // 2])
            elif kind == "npz_object":
                with open(path, "wb") as f:  # np.savez pickles object arrays
                    np.savez(f, x=_array(*arrays["x"]))
            elif kind == "npy":
                with open(path, "wb") as f:
                    np.save(f, _array(*arrays["x"]))
            else:
                _write_model(kind, path)
    expect = f"exit: {spec['exit']}\nline: {spec['line']}\nheavy: {'true' if spec['heavy'] else 'false'}\nmessage: '{spec['message'].replace(chr(39), chr(39) * 2)}'\n"
    (folder / "expect.yaml").write_text(expect)


if __name__ == "__main__":
    only = set(sys.argv[1:])
    for name, spec in CASES.items():
        if not only or name in only:
            write_case(name, spec, HERE)
            print("wrote", name)
