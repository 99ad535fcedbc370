"""The corpus: its configs are valid and cover every target, and a light subset
(a layer with tf.debugging asserts, a PReLU CNN, a plain-TF SavedModel exported by its
second signature) runs here for real. The whole corpus runs under the `heavy` marker
(and `make corpus`)."""
from __future__ import annotations

import json
import re

import pytest
import yaml
from corpus_helpers import CORPUS_CONFIGS, corpus_config, only_record

from pipeline.config import load_configs

ALL_TARGETS = {"savedmodel", "onnx", "tflite", "edgetpu", "xla", "tpu", "openvino"}
ALL_VARIANTS = ["float32", "float16", "dynamic_range", "int8", "int16x8"]
# Targets a corpus config leaves out, and the config loader's reason (probed in docs/corpus.md).
LEFT_OUT = {"text_classifier": {"xla": "XLA cannot take string inputs"}, "tagger": {"edgetpu": "dynamic"}}


def test_corpus_configs_load_and_cover_every_target_and_variant():
    files = sorted(CORPUS_CONFIGS.glob("*.yaml"))
    from targets import REGISTRY

    configs = load_configs(files, REGISTRY)
    assert len(configs) >= 16
    for config in configs:
        names = {t.name for t in config.targets}
        assert names == ALL_TARGETS - set(LEFT_OUT.get(config.name, {})), config.name
        assert list(config.target("tflite").options.variants) == ALL_VARIANTS, config.name
        assert list(config.target("openvino").options.variants) == ["fp32", "fp16", "int8"], config.name


def test_left_out_targets_are_refused_by_the_config_loader():
    from examples.corpus.table import _probe_refusal

    for model, refused in LEFT_OUT.items():
        for target, reason in refused.items():
            assert reason in _probe_refusal(CORPUS_CONFIGS / f"{model}.yaml", target)


@pytest.mark.heavy
def test_tpu_compiles_a_layer_with_tf_debugging_asserts(project):
    """tf2xla compiles Assert as a no-op: the TPU gate passes it, says the check is dropped."""
    corpus_config(project, "asserts", ["xla", {"name": "tpu", "precision": "float32"}])
    result = project.run("export", "--model", "asserts")
    assert result.code == 0, result.err
    entry = project.report("asserts")["targets"]["tpu"]
    assert entry["status"] == "passed"
    fp32 = entry["variants"]["fp32"]
    assert fp32["parity"]["outputs"]["value"]["max_abs"] < 1e-5
    ignored = fp32["info"]["gate_ignored"]
    assert any(line.startswith("Assert in layer 'checked_scale'") and "does not run there" in line for line in ignored), ignored
    assert project.report("asserts")["targets"]["xla"]["status"] == "passed"


def test_tpu_gate_fix_names_the_op_it_found():
    from targets.support.xla import dtype_fix

    assert "AsString turns numbers into text" in dtype_fix("string", "AsString")
    assert "move text processing out of the model" in dtype_fix("string", "StringSplitV2")


@pytest.mark.heavy
def test_an_unsupported_int16x8_op_fails_that_variant_only(project):
    """PRELU has no int16x8 kernel: int16x8 is an error naming op, layers and the fixes
    tried; float32 and int8 are converted, checked, published and reported."""
    corpus_config(project, "prelu", [{"name": "tflite", "variants": ["float32", "int8", "int16x8"]}])
    result = project.run("export", "--model", "prelu")
    assert result.code == 2  # IncompatibleModel for int16x8; the others passed
    entry = project.report("prelu")["targets"]["tflite"]
    variants = entry["variants"]
    assert variants["float32"]["status"] == "passed" and variants["int8"]["status"] == "passed"
    assert variants["float32"]["parity"]["outputs"]["probs"]["max_abs"] < 1e-5
    failed = variants["int16x8"]
    assert failed["status"] == "error" and failed["error"] == "IncompatibleModel" and failed["files"] == []
    message = failed["message"]
    assert re.search(r"PRELU in layers 'prelu1', 'prelu2': Quantization to 16x8-bit not yet supported for op: 'PRELU'", message), message
    assert "drop `int16x8`" in message and "`float_fallback: [int16x8]`" in message and "LiteRT prepares the model" in message
    # The fix is offered with its parity on this model, checked here; its file is not published.
    assert "Checked here: with `float_fallback: [int16x8]` the file passes parity (max_abs" in message, message
    checked = failed["info"]["fix_checked"]
    assert checked["status"] == "passed" and checked["max_abs"] < 0.05, checked
    folder = project.artifacts / "prelu" / "tflite"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["float32.tflite", "int8.tflite"]
    assert sorted(f["path"] for f in entry["files"]) == ["tflite/float32.tflite", "tflite/int8.tflite"]
    assert entry["status"] == "error" and entry["message"].startswith("int16x8: TFLite int16x8: PRELU")
    assert "int16x8" in (project.artifacts / "prelu" / "report.md").read_text()

    # Nothing changed: the next run reuses the target (the limit is the converter's),
    # and validate re-checks the published variants.
    again = project.run("export", "--model", "prelu")
    assert again.code == 2 and "up to date" in again.err
    reused = project.report("prelu")["targets"]["tflite"]
    assert reused["rebuilt"] is False and reused["cache_key"] == entry["cache_key"]
    validated = project.run("validate", "--model", "prelu")
    assert validated.code == 0 and "tflite/float32: parity passed" in validated.err and "tflite/int8: parity passed" in validated.err


def test_the_float_fallback_the_error_suggests_passes_parity(project):
    corpus_config(project, "prelu", [{"name": "tflite", "variants": ["int16x8"], "float_fallback": ["int16x8"]}])
    result = project.run("export", "--model", "prelu")
    assert result.code == 0, result.err
    entry = project.report("prelu")["targets"]["tflite"]
    assert entry["status"] == "passed"
    assert entry["variants"]["int16x8"]["info"]["float_ops"].get("PRELU") == 2


@pytest.mark.heavy
def test_a_plain_tf_saved_model_exports_its_second_signature(project):
    """...and an op int16x8 cannot quantize is placed in the model's own code (it has no
    Keras layers), not left as a bare op name."""
    corpus_config(project, "plain_tf_embed", ["savedmodel", "onnx", {"name": "tflite", "variants": ["float32", "int16x8"]}])
    result = project.run("export", "--model", "plain_tf_embed")
    report = project.report("plain_tf_embed")
    for record in (only_record(report["targets"]["savedmodel"]), report["targets"]["tflite"]["variants"]["float32"]):
        outputs = record["parity"]["outputs"]
        assert set(outputs) == {"features", "norm"} and max(m["max_abs"] for m in outputs.values()) < 1e-4, outputs
    assert json.dumps(report["targets"]["onnx"]["status"]) == '"passed"'
    message = report["targets"]["tflite"]["variants"]["int16x8"]["message"]
    assert message.startswith("TFLite int16x8: SQRT (the model's own code, no Keras layer): Quantization to 16x8-bit not yet supported"), message
    # The float fallback converts and LiteRT prepares it, but its parity fails on this
    # model: the error says so instead of recommending it.
    checked = report["targets"]["tflite"]["variants"]["int16x8"]["info"]["fix_checked"]
    assert checked["status"] == "failed" and checked["failures"], checked
    assert "Checked here: with `float_fallback: [int16x8]` the file fails parity" in message and "No fix that passes was found" in message, message


def documented_cells() -> dict[str, dict[tuple[str, str], str]]:
    """{model: {(target, variant): status}} from docs/corpus.md's table of every cell (trained
    weights), for the cells the last `make corpus` run reached (not `missing`)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "corpus.md").read_text()
    section = text[text.index("## Every cell (trained weights)"):]
    section = section[: section.index("\n## ", 5)]
    cells: dict = {}
    for line in section.splitlines():
        parts = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(parts) < 4 or parts[0] in ("model", "---") or parts[3] not in ("passed", "failed", "error"):
            continue
        cells.setdefault(parts[0], {})[(parts[1], parts[2])] = parts[3]
    return cells


def test_the_documented_corpus_cells_are_read():
    cells = documented_cells()
    assert cells["asserts"][("tflite", "float16")] == "failed" and cells["asserts"][("tpu", "fp32")] == "passed"
    assert cells["audio_logmel"][("tflite", "int16x8")] == "error"
    assert sum(len(v) for v in cells.values()) >= 50


@pytest.mark.heavy
@pytest.mark.weekly
@pytest.mark.parametrize("model", sorted(p.stem for p in CORPUS_CONFIGS.glob("*.yaml")))
def test_every_corpus_cell_is_a_verdict_with_its_reason(project, model):
    """passed; failed with numbers; or error naming the converter's limit. Never an
    unexpected exception, never a lost variant; every cell docs/corpus.md records has the
    status it records (regenerate the docs with `make corpus` when a verdict changes)."""
    corpus_config(project, model)
    project.run("export", "--model", model)
    report = project.report(model)
    found = {}
    for target, entry in report["targets"].items():
        for variant, record in (entry.get("variants") or {"default": entry}).items():
            where = f"{model} {target}/{variant}"
            status = record["status"]
            found[(target, variant)] = status
            assert status in ("passed", "failed", "error", "skipped"), where
            if status == "failed":
                assert record["parity"]["failures"], where
            if status in ("error", "skipped"):
                assert record.get("message") and not record["message"].startswith("unexpected"), (where, record.get("message"))
    documented = documented_cells().get(model, {})
    differ = {cell: (status, found.get(cell, "missing")) for cell, status in documented.items() if found.get(cell) != status}
    assert not differ, f"{model}: cells whose verdict is not the one docs/corpus.md records (documented, now): {differ}"


@pytest.mark.heavy
def test_loops_and_conds_keep_their_verdicts_per_variant(project):
    """A subclassed model with tf.while_loop/tf.cond: the TPU bf16 emulation rounds the
    frozen loop without breaking its back edge; int16x8 cannot calibrate the loop
    variables, which is that variant's error alone (int8 is checked and published)."""
    corpus_config(project, "control_flow", [{"name": "tflite", "variants": ["int8", "int16x8"]}, "tpu"])
    project.run("export", "--model", "control_flow")
    targets = project.report("control_flow")["targets"]
    bf16 = targets["tpu"]["variants"]["bf16"]
    assert bf16["status"] == "passed", bf16.get("message")
    assert 0 < bf16["parity"]["outputs"]["value"]["max_abs"] < 0.05
    tflite = targets["tflite"]["variants"]
    assert tflite["int8"]["status"] == "passed"
    message = tflite["int16x8"]["message"]
    assert tflite["int16x8"]["status"] == "error" and tflite["int16x8"]["error"] == "IncompatibleModel"
    assert re.search(r"TFLite int16x8: WHILE in tensor \S*while\S* \(the model's own code", message), message
    assert "Max and min for dynamic tensors should be recorded during calibration" in message
    assert "drop `int16x8`" in message


@pytest.mark.heavy
def test_an_int16x8_depthwise_conv_litert_cannot_prepare_fails_that_variant_only(project):
    """Stock MobileNetV2 at 96x96: LiteRT cannot prepare an int16x8 DEPTHWISE_CONV_2D
    (no_integer_overflow_from_quantization); float32 is still checked and published."""
    path = corpus_config(project, "mobilenet_v2", [{"name": "tflite", "variants": ["float32", "int16x8"], "calibration_samples": 32}])
    raw = yaml.safe_load(path.read_text())
    raw["source"]["factory"] = "examples.corpus.applications:mobilenet_v2_stock_96"
    raw["data"]["generator"] = "examples.corpus.applications:mobilenet_v2_stock_96_data"
    raw["inputs"][0]["shape"] = [None, 96, 96, 3]
    raw["outputs"] = ["features"]  # the stock network's pooled features (the corpus model adds a trained head)
    raw["data"].pop("classifier", None)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    project.run("export", "--model", "mobilenet_v2")
    variants = project.report("mobilenet_v2")["targets"]["tflite"]["variants"]
    assert variants["float32"]["status"] == "passed"
    failed = variants["int16x8"]
    assert failed["status"] == "error" and failed["files"] == []
    message = failed["message"]
    assert re.search(r"TFLite int16x8: DEPTHWISE_CONV_2D in layer '[^']+': LiteRT cannot prepare it: no_integer_overflow_from_quantization", message), message
    assert "drop `int16x8`" in message and "float fallback" in message
    assert sorted(p.name for p in (project.artifacts / "mobilenet_v2" / "tflite").iterdir() if not p.name.startswith(".")) == ["float32.tflite"]



@pytest.mark.heavy
def test_a_gru_compiles_for_tpu_and_converts_for_tflite_at_batch_1(project):
    """Keras 3 GRU: its TensorList buffers compile with XLA, so the TPU gate passes it;
    the TFLite converter cannot lower them with a dynamic batch, so float32 converts at a
    static batch of 1 and passes parity."""
    corpus_config(project, "gru", [{"name": "tflite", "variants": ["float32"]}, {"name": "tpu", "precision": "float32"}])
    project.run("export", "--model", "gru")
    targets = project.report("gru")["targets"]
    assert targets["tpu"]["status"] == "passed", targets["tpu"].get("message")
    assert targets["tpu"]["variants"]["fp32"]["parity"]["outputs"]["value"]["max_abs"] < 1e-5
    float32 = targets["tflite"]["variants"]["float32"]
    assert float32["status"] == "passed", float32.get("message")
    assert float32["info"]["static_batch"] == 1
    assert float32["parity"]["outputs"]["value"]["max_abs"] < 1e-5


def test_a_while_loop_runs_in_onnxruntime(project):
    """tf2onnx leaves a Loop body's iteration count without a shape and onnxruntime
    refused to run it; with the shape given, the subclassed tf.while_loop/tf.cond model
    passes parity."""
    corpus_config(project, "control_flow", [{"name": "onnx", "opset": 17}])
    result = project.run("export", "--model", "control_flow")
    entry = project.report("control_flow")["targets"]["onnx"]
    assert result.code == 0, entry.get("message")
    assert only_record(entry)["parity"]["outputs"]["value"]["max_abs"] < 1e-5


def test_a_string_input_model_exports_to_a_savedmodel(project):
    """TextVectorization inside the model: string parity data reaches the canonical
    SavedModel, which keeps the vectorizer's lookup table."""
    corpus_config(project, "text_classifier", ["savedmodel"])
    result = project.run("export", "--model", "text_classifier")
    entry = project.report("text_classifier")["targets"]["savedmodel"]
    assert result.code == 0 and entry["status"] == "passed", entry.get("message")
    assert only_record(entry)["parity"]["outputs"]["probs"]["max_abs"] < 1e-6


@pytest.mark.heavy
def test_exact_gelu_converts_to_onnx(project):
    """Keras 3's exact GELU lowers to Erfc, which tf2onnx has no handler for; tfship maps
    it to 1 - Erf, and the Transformer encoder's ONNX file passes parity."""
    corpus_config(project, "transformer_encoder", [{"name": "onnx", "opset": 17}])
    result = project.run("export", "--model", "transformer_encoder")
    entry = project.report("transformer_encoder")["targets"]["onnx"]
    assert result.code == 0, entry.get("message")
    record = only_record(entry)
    assert record["info"]["onnx_ops"].get("Erf", 0) >= 1, record["info"]["onnx_ops"]
    assert record["parity"]["outputs"]["probs"]["max_abs"] < 1e-5


def test_an_stft_front_end_converts_to_onnx_at_a_static_batch(project):
    """tf2onnx's RFFT -> ComplexAbs handler needs a static leading dimension; with a
    dynamic batch it fails, so the onnx target converts with the batch fixed at 1, says
    so, and onnxruntime runs the parity batches one sample at a time."""
    corpus_config(project, "audio_logmel", [{"name": "onnx", "opset": 17}])
    result = project.run("export", "--model", "audio_logmel")
    entry = project.report("audio_logmel")["targets"]["onnx"]
    assert result.code == 0, entry.get("message")
    record = only_record(entry)
    info = record["info"]
    assert info["static_batch"] == 1 and info["inputs"][0]["shape"][0] == 1, info
    assert "ComplexAbs" in info["note_static_batch"], info["note_static_batch"]
    assert record["parity"]["outputs"]["probs"]["max_abs"] < 1e-5
    assert "converted with the batch fixed at 1" in (project.artifacts / "audio_logmel" / "report.md").read_text()


@pytest.mark.heavy
def test_the_custom_layer_file_loads_through_its_source_modules(project):
    """The corpus .keras file's layer is registered in examples.corpus.custom_layers, which
    nothing else imports: without `source.modules` the file does not load (exit 2 naming
    the class and the fix), with the corpus config's `modules` it exports and passes."""
    from examples.corpus.saved_files import build_custom_layer

    path = corpus_config(project, "custom_layer", ["savedmodel"])
    raw = yaml.safe_load(path.read_text())
    assert raw["source"]["modules"] == ["examples.corpus.custom_layers"]
    built = project.root / "custom_layer.keras"
    build_custom_layer(built)
    raw["source"] = {"path": str(built)}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    refused = project.run("export", "--model", "custom_layer")
    assert refused.code == 2 and "GatedResidual" in refused.err and "modules: [" in refused.err, refused.err
    raw["source"]["modules"] = ["examples.corpus.custom_layers"]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = project.run("export", "--model", "custom_layer")
    assert result.code == 0, result.err
    assert only_record(project.report("custom_layer")["targets"]["savedmodel"])["parity"]["outputs"]["probs"]["max_abs"] < 1e-6


def test_a_flex_only_string_model_says_what_allowing_select_tf_ops_did(project):
    """TextVectorization's string ops need Select TF ops: the variant's error names the
    ops and the layer, and says what `allow_select_tf_ops: true` was tried to do here
    (the file converts; no Flex delegate here can check it), not advice nobody tried."""
    corpus_config(project, "text_classifier", [{"name": "tflite", "variants": ["float32"]}])
    project.run("export", "--model", "text_classifier")
    record = project.report("text_classifier")["targets"]["tflite"]["variants"]["float32"]
    message = record["message"]
    assert record["status"] == "error" and re.search(r"StringLower in layer 'vectorize'", message), message
    assert "Tried: with `allow_select_tf_ops: true` the converter writes the file" in message, message
    assert "FlexStringLower" in message and "no Flex delegate" in message, message


def test_the_corpus_table_keeps_targets_refused_at_conversion(tmp_path):
    """A target that refuses the model at conversion (exit 2) writes no report record; the
    corpus run reads its reason from the export's stderr, so the table row is `refused`
    with the whole message, not `missing`."""
    from examples.corpus.table import collect, parse_refusals, save_refusals

    stderr = [
        "19:17:08 [tiny] onnx: refused: the model or its config does not fit this target\n",
        "error: configs/x/tiny.yaml:9: targets[1]: onnx: tf2onnx cannot convert model 'tiny' to ONNX opset 17:\n",
        "  - TF op StringSplitV2 at tiny_1/vectorize_1/StringSplit/StringSplitV2: no ONNX opset up to 18 supports it in tf2onnx\n",
        "Fix: drop the onnx target for this model.\n",
        "error: configs/x/tiny.yaml:10: targets[2]: tpu: model 'tiny' uses 1 op(s) a TPU does not run\n",
        "corpus export: exit 2 in 3 s\n",
    ]
    refusals = parse_refusals(stderr)
    assert refusals == {"tiny": {
        "onnx": "tf2onnx cannot convert model 'tiny' to ONNX opset 17:\n  - TF op StringSplitV2 at tiny_1/vectorize_1/StringSplit/StringSplitV2: "
                "no ONNX opset up to 18 supports it in tf2onnx\nFix: drop the onnx target for this model.",
        "tpu": "model 'tiny' uses 1 op(s) a TPU does not run"}}
    configs, artifacts = tmp_path / "configs", tmp_path / "artifacts"
    configs.mkdir()
    (configs / "tiny.yaml").write_text(yaml.safe_dump({"targets": ["savedmodel", "onnx", "tpu"]}))
    save_refusals(artifacts, ["tiny"], refusals)
    rows = {r["target"]: r for r in collect(configs, artifacts) if r["model"] == "tiny"}
    assert rows["onnx"]["status"] == "refused" and rows["onnx"]["reason"].endswith("Fix: drop the onnx target for this model.")
    assert rows["tpu"]["status"] == "refused" and rows["savedmodel"]["status"] == "missing"


@pytest.mark.heavy
def test_an_rnn_calibrator_crash_names_the_loop_layer_and_what_was_tried(project):
    """The TFLite calibrator dies (SIGSEGV) on a Keras LSTM's loops, at a dynamic batch and
    at batch 1: the int8 variant and the Edge TPU say so, naming the layer whose WHILE loop
    it runs and the fixes tried; float32 still converts (batch 1) and passes."""
    corpus_config(project, "lstm", [{"name": "tflite", "variants": ["float32", "int8"]}, "edgetpu"])
    project.run("export", "--model", "lstm")
    targets = project.report("lstm")["targets"]
    variants = targets["tflite"]["variants"]
    assert variants["float32"]["status"] == "passed", variants["float32"].get("message")
    int8 = variants["int8"]["message"]
    assert variants["int8"]["status"] == "error", int8
    assert re.search(r"TFLite int8: calibration of a model with WHILE loops in layer 'lstm': the TFLite converter crashed \(SIG\w+\)", int8), int8
    assert "static batch of 1, tried after" in int8 and "float fallback" in int8, int8
    edgetpu = only_record(targets["edgetpu"])["message"]
    assert re.search(r"Edge TPU int8: calibration of a model with WHILE loops in layer 'lstm': .*crashed", edgetpu), edgetpu
    assert "/tmp" not in edgetpu and "No fix was found" in edgetpu, edgetpu
