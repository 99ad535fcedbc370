"""Measure the default parity budgets on the calibration corpus (examples/budget_corpus.py).

    python -m examples.calibrate_budgets [collect|judge] [--arch NAME ...] [--stock NAME ...] [--force] [--json FILE]

Two phases. `collect` (one subprocess per architecture, results cached under
examples/build/budget_corpus/runs/) trains the corpus if needed, converts every model
file with the pipeline's own stages and targets (tflite float32 / float16 /
dynamic_range / int8 / int16x8; the tpu target's bfloat16 emulation for bf16), runs
each artifact on the parity cases and on the 360 held-out digits, and stores the
outputs. `judge` runs the pipeline's parity evaluation at the default budget of each
precision class (pipeline.tolerance.PRECISION_CLASSES) and prints, per class, the
confusion table (acceptable / breakage x pass / fail), then every verdict with the
criterion that decided it and its margin.

Beside the corpus, the stock Keras applications of configs/corpus (STOCK, trained on
the digits by examples/corpus/applications.py) give their float32 artifacts (savedmodel, onnx, tflite float32, xla), built by the pipeline's own
targets: the eager function in another summation order, so each must pass; they are
printed as a second table and a failure among them makes the exit code 1 as well.

An artifact of the unedited model counts as acceptable when its held-out task figure
(accuracy; R^2 for the regressor) drops by at most 0.01; one that drops more is a
real loss and belongs with the breakages ("recipe loss").
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from examples import budget_corpus as bc

CLASSES = ("float32", "float16", "bf16", "dynamic_range", "int8", "int16x8")
TFLITE_CLASSES = ("float32", "float16", "dynamic_range", "int8", "int16x8")
FLOAT_CLASSES = ("float32", "float16", "bf16")
CALIBRATED = ("int8", "int16x8")
RUNS = bc.BUILD / "runs"
ACCEPTABLE_DROP = 0.01
SAMPLES = 256

# Seeded breakages no per-class default can tell from accepted artifacts of that class on
# this corpus: printed with their figures, and counted only where they cost the held-out
# task more than ACCEPTABLE_DROP (where they don't, they meet the acceptable definition).
# - A weight perturbation of 1% is the same order as bfloat16's own rounding of every weight
#   (up to 2^-9 = 0.2% relative) and activation: a perturbed MobileNetV3 in bf16 has a higher
#   SQNR (34.7 dB) than an unperturbed, accurate MobileNetV2 in bf16 (27.4 dB).
# - A traced rescale of the head (x1.25, x2) leaves the classifiers' decisions in place
#   (held-out accuracy within 0.008, top-1 agreement >= 0.984): in int8 a x1.25 MobileNetV3
#   keeps 28.9 dB where the accepted int8 transformer has 28.5 dB and a larger mean error;
#   in dynamic_range and bf16 the same holds against the looser real-model defaults. On the
#   regressor it costs R^2 0.07-1.2 and is counted (and fails). The float classes and int16x8
#   count it on every model.
_WEIGHTS_IN_BF16 = "a 1% weight perturbation is within bfloat16's own rounding"
_HEAD_RESCALE = "a traced head rescale that keeps the classifiers' decisions lies within this class's own noise"
INFORMATIVE = {
    ("weights_1pct", "bf16"): _WEIGHTS_IN_BF16,
    **{(kind, cls): _HEAD_RESCALE for kind in ("traced_scale", "traced_scale_2x") for cls in ("bf16", "dynamic_range", "int8")},
}

# Edits whose eager model is the unedited one: judged against their own eager reference.
TRACED_EDITS = ("traced_drift", "traced_scale", "traced_scale_2x")

# Breakage -> the precision classes it is seeded in.
BREAKAGES = {
    "input_scale_0_255": CLASSES,  # [0, 255] fed to a model that expects [-1, 1]
    "swapped_channels": CLASSES,  # last input axis reversed (RGB <-> BGR)
    "dropped_layer": CLASSES,
    "doubled_layer": CLASSES,
    "traced_drift": CLASSES,
    "traced_scale": CLASSES,  # x1.25 only when traced: quantizable, so int8 / int16x8 files run
    "traced_scale_2x": CLASSES,  # x2 only when traced
    "weights_1pct": FLOAT_CLASSES,
    "zero_calibration": CALIBRATED,  # representative dataset of zeros
    "wrong_dequant_scale": ("int8",),  # integer output dequantized with the input's scale
}


def config_text(arch: str, edit: str | None, root: Path = bc.BUILD) -> str:
    shape = ", ".join(str(d) for d in bc.INPUT_SHAPES[arch])
    lines = [
        f"name: {arch}{'' if edit is None else '_' + edit}",
        f"source: {{path: {bc.model_path(arch, edit, root)}}}",
        f"inputs: [{{name: x, shape: [null, {shape}], dtype: float32}}]",
        f"outputs: [{bc.output_name(arch)}]",
        "data:",
        f"  generator: examples.budget_corpus:{arch}_data",
        f"  samples: {SAMPLES}",
        "  batch_sizes: [1, 3, 32]",
    ]
    if bc.is_classifier(arch):
        lines.append(f"  classifier: {bc.output_name(arch)}")
    lines += ["targets:", "  - {name: tflite, variants: [float32]}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- collect


class _Model:
    """One model file through the pipeline's shared stages, and its artifacts."""

    def __init__(self, arch: str, edit: str | None, work: Path, root: Path = bc.BUILD):
        from pipeline.config import load_config
        from pipeline.execute.build import RunContext, prepare
        from targets import REGISTRY

        self.arch, self.work = arch, work
        cfg_file = work / f"{arch}_{edit or 'base'}.yaml"
        cfg_file.write_text(config_text(arch, edit, root))
        self.config = load_config(cfg_file, REGISTRY)
        self.prep = prepare(RunContext(self.config, work / "artifacts"))
        self.refused: dict[str, str] = {}

    def tflite(self, variants: tuple[str, ...], calibration: dict | None = None) -> dict:
        """Each variant built on its own: one the converter refuses is noted and left out."""
        from pipeline.errors import ConversionError
        from pipeline.target import BuildInputs
        from targets.tflite import TARGET

        found = {}
        for variant in variants:
            target_cfg = self.config.targets[0]
            target_cfg = dataclasses.replace(target_cfg, options=dataclasses.replace(target_cfg.options, variants=(variant,)))
            out = Path(tempfile.mkdtemp(dir=self.work))
            job = BuildInputs(
                model=self.config,
                target=target_cfg,
                out_dir=out,
                saved_model_dir=self.prep.saved_model_dir,
                traced=self.prep.traced.function,
                loaded=self.prep.loaded,
                calibration=calibration if calibration is not None else self.prep.data.pool,
                labels=self.prep.data.labels,
            )
            try:
                [artifact] = TARGET.build(job)
                if artifact.error is not None:  # the variant alone could not be built
                    raise ConversionError(artifact.error["message"])
            except ConversionError as exc:
                self.refused[variant] = str(exc).split(": ", 1)[-1][:300]
                print(f"{self.arch}: tflite {variant} not convertible: {self.refused[variant]}", flush=True)
                continue
            found[variant] = (TARGET.open(out, artifact), artifact.info)
        return found

    def bf16(self):
        from pipeline.runtimes.savedmodel import FrozenGraphRunner
        from pipeline.stages.trace import make_function
        from targets.support import xla as sx

        out = Path(tempfile.mkdtemp(dir=self.work)) / "bf16_emulation"
        sx.write_bf16_emulation(make_function(self.config, self.prep.loaded).get_concrete_function(), self.config, out)
        return FrozenGraphRunner(out), {}

    def artifacts(self, classes: tuple[str, ...]) -> dict:
        found = self.tflite(tuple(c for c in classes if c in TFLITE_CLASSES)) if any(c in TFLITE_CLASSES for c in classes) else {}
        if "bf16" in classes:
            found["bf16"] = self.bf16()
        return found


def _run(runner, inputs: dict[str, np.ndarray], transform=None) -> dict[str, np.ndarray]:
    feed = {k: (transform(v) if transform else v) for k, v in inputs.items()}
    return {k: np.asarray(v) for k, v in runner(feed).items()}


def _litert_child(path: str, output_names: list[str], feeds: list[dict]) -> list[dict]:
    from pipeline.runtimes.litert import LiteRTRunner

    runner = LiteRTRunner(Path(path), output_names)
    return [_run(runner, feed) for feed in feeds]


def outputs_for(runner, feeds: list[dict]) -> list[dict] | str:
    """Outputs for every feed. A LiteRT file runs in a child process, so a runtime that
    aborts ends only the child; what went wrong is returned instead of outputs then."""
    from pipeline.errors import PipelineError
    from pipeline.runtimes.litert import LiteRTRunner

    if not isinstance(runner, LiteRTRunner):
        return [_run(runner, feed) for feed in feeds]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(_litert_child, str(runner.path), list(runner.output_names), feeds).result()
        except BrokenProcessPool:
            return "the LiteRT runtime aborted the process while running this artifact"
        except (RuntimeError, PipelineError) as exc:  # LiteRT refuses to run it (an op without a kernel for its types)
            return f"LiteRT could not run it: {str(exc).strip().splitlines()[0][:200]}"


def _save_run(path: Path, cases: list[dict], heldout: np.ndarray, meta: dict) -> None:
    arrays = {f"case{i}": c[next(iter(c))] for i, c in enumerate(cases)}
    arrays["heldout"] = heldout
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))


def collect(arch: str, force: bool = False) -> None:
    """Convert and run every artifact of one architecture; cache the outputs."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    trained = bc.ensure_built(arch)
    bc.traced_drift_layer(bc._keras(arch))  # the pipeline's loader reads a file that uses it
    folder = RUNS / arch
    parts = ("base", *bc.MODEL_EDITS)
    if (folder / "done").exists() and all((folder / f"part.{p}.done").exists() for p in parts) and not force:
        print(f"{arch}: cached in {folder}", flush=True)
        return
    folder.mkdir(parents=True, exist_ok=True)
    name = bc.output_name(arch)
    hx, hy = bc.heldout(arch)
    with tempfile.TemporaryDirectory(prefix=f"calib_{arch}_") as tmp:
        work = Path(tmp)
        base = _Model(arch, None, work)
        cases = [inputs for _, inputs in base.prep.data.cases]
        eager_heldout = np.concatenate([np.asarray(base.prep.loaded.call({"x": hx[i : i + 32]})[name]) for i in range(0, len(hx), 32)])
        _save_reference(folder / "reference", base, eager_heldout, hy, trained)

        def store(kind: str, cls: str, runner, info: dict, reference_from: _Model, transform=None, scale: float = 1.0, extra: dict | None = None):
            feeds = [{k: (transform(v) if transform else v) for k, v in c.items()} for c in cases]
            feeds += [{"x": transform(hx[i : i + 32]) if transform else hx[i : i + 32]} for i in range(0, len(hx), 32)]
            results = outputs_for(runner, feeds)
            meta = {"arch": arch, "kind": kind, "class": cls, "steps": dict(getattr(runner, "output_steps", {}) or {}), **(extra or {})}
            if isinstance(results, str):
                meta["crashed"] = results
                (folder / f"{kind}.{cls}.json").write_text(json.dumps(meta, indent=1))
                print(f"{arch} {kind:>20} {cls:>13}: {results}", flush=True)
                return
            produced = [{name: r[name] * scale} for r in results[: len(cases)]]
            held = np.concatenate([r[name] for r in results[len(cases) :]]) * scale
            if reference_from is not base:
                meta["own_reference"] = True
                _save_run(folder / f"{kind}.{cls}.reference.npz", [dict(r) for r in reference_from.prep.reference], np.zeros(0), {})
            _save_run(folder / f"{kind}.{cls}.npz", produced, held, meta)
            print(f"{arch} {kind:>20} {cls:>13}: stored", flush=True)

        def part_done(part: str) -> bool:
            return (folder / f"part.{part}.done").exists() and not force

        def finish(part: str) -> None:
            (folder / f"part.{part}.done").write_text("ok\n")

        base_artifacts = {} if part_done("base") else base.artifacts(CLASSES)
        for cls, (runner, info) in base_artifacts.items():
            store("acceptable", cls, runner, info, base)
            store("input_scale_0_255", cls, runner, info, base, transform=lambda v: (v + 1.0) * 127.5)
            store("swapped_channels", cls, runner, info, base, transform=lambda v: v[..., ::-1])
            if cls == "int8":
                q = info.get("quantization", {})
                s_in = q.get("inputs", {}).get("x", {}).get("scale")
                s_out = q.get("outputs", {}).get(name, {}).get("scale")
                if s_in and s_out:
                    store("wrong_dequant_scale", cls, runner, info, base, scale=s_in / s_out, extra={"factor": s_in / s_out})
        if not part_done("base"):
            zeros = {k: np.zeros_like(v) for k, v in base.prep.data.pool.items()}
            for cls, (runner, info) in base.tflite(CALIBRATED, calibration=zeros).items():
                store("zero_calibration", cls, runner, info, base)
            (folder / "refused.json").write_text(json.dumps(base.refused, indent=1))
            finish("base")
        for edit in bc.MODEL_EDITS:
            if part_done(edit):
                continue
            classes = BREAKAGES[edit]
            model = _Model(arch, edit, work)
            for cls, (runner, info) in model.artifacts(classes).items():
                store(edit, cls, runner, info, model if edit in TRACED_EDITS else base)
            finish(edit)
    (folder / "done").write_text("ok\n")


def _save_reference(path: Path, base: _Model, eager_heldout: np.ndarray, truth: np.ndarray, trained: dict) -> None:
    name = bc.output_name(base.arch)
    arrays = {f"case{i}": r[name] for i, r in enumerate(base.prep.reference)}
    arrays.update(heldout=eager_heldout, truth=truth)
    if base.prep.data.labels is not None:
        arrays["labels"] = base.prep.data.labels
    np.savez(path.with_suffix(".npz"), **arrays)
    meta = {"labels": [label for label, _ in base.prep.data.cases], "trained": trained}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))


# ---------------------------------------------------------------- stock architectures (float32)

# Stock Keras applications of the corpus (examples/corpus/applications.py, configs/corpus):
# trained on the handwritten digits, pooled features and the softmax head. Each float32
# artifact computes the eager model's float32 function in another summation order (other
# convolution algorithms, fused ops) through 50 and more layers: each must pass the
# float32 default. They are shown beside the confusion table.
STOCK_TARGETS = ("savedmodel", "onnx", "tflite", "xla")
CORPUS_CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "corpus"
# A near-constant output beside them (examples/near_constant.py): EfficientNetB0 as constructed
# with its 1000-class softmax at 224x224, every probability near 1e-3 and moving by about 1e-7;
# its float32 artifacts differ from eager by about one float32 rounding step, so each must pass.
STOCK_CONFIGS = {
    **{name: CORPUS_CONFIGS / f"{name}.yaml" for name in ("resnet50", "efficientnet_b0", "mobilenet_v2", "densenet121", "xception", "convnext_tiny")},
    "efficientnet_b0_softmax": CORPUS_CONFIGS.parent / "calibration" / "efficientnet_b0_softmax.yaml",
}
STOCK = tuple(STOCK_CONFIGS)


def _save_outputs(path: Path, outputs: list[dict], meta: dict) -> None:
    arrays = {f"case{i}__{name}": np.asarray(v) for i, out in enumerate(outputs) for name, v in out.items()}
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))


def _load_outputs(path: Path, cases: int, names: list[str]) -> list[dict]:
    with np.load(path) as z:
        return [{name: z[f"case{i}__{name}"] for name in names} for i in range(cases)]


def _class_of(tolerance) -> str:
    from pipeline.tolerance import PRECISION_CLASSES

    return next((k for k, v in PRECISION_CLASSES.items() if v is tolerance), None) or next(
        (k for k, v in PRECISION_CLASSES.items() if v == tolerance), "custom")


def collect_stock(name: str, force: bool = False) -> None:
    """Build every float32 artifact of one stock application with the pipeline's own
    stages and targets (tflite: the float32 variant), run it on the parity cases of its
    corpus config, and cache the outputs beside the eager reference."""
    import tensorflow as tf

    from pipeline.config import load_config
    from pipeline.execute.build import RunContext, prepare
    from pipeline.target import BuildInputs
    from targets import REGISTRY

    tf.get_logger().setLevel("ERROR")
    folder = RUNS / f"stock_{name}"
    if (folder / "done").exists() and not force:
        print(f"stock {name}: cached in {folder}", flush=True)
        return
    folder.mkdir(parents=True, exist_ok=True)
    config = load_config(STOCK_CONFIGS[name], REGISTRY)
    with tempfile.TemporaryDirectory(prefix=f"calib_stock_{name}_") as tmp:
        work = Path(tmp)
        prep = prepare(RunContext(config, work / "artifacts"))
        labels = [label for label, _ in prep.data.cases]
        feeds = [inputs for _, inputs in prep.data.cases]
        names = list(prep.reference[0])
        _save_outputs(folder / "reference.npz", [dict(r) for r in prep.reference], {"labels": labels, "outputs": names})
        for target_cfg in config.targets:
            if target_cfg.name not in STOCK_TARGETS:
                continue
            if target_cfg.name == "tflite":
                target_cfg = dataclasses.replace(target_cfg, options=dataclasses.replace(target_cfg.options, variants=("float32",)))
            target = REGISTRY.get(target_cfg.name)
            out = work / target_cfg.name
            out.mkdir()
            job = BuildInputs(model=config, target=target_cfg, out_dir=out, saved_model_dir=prep.saved_model_dir,
                              traced=prep.traced.function, loaded=prep.loaded, calibration=prep.data.pool, labels=prep.data.labels)
            try:
                built = target.build(job)
            except Exception as exc:  # the converter's own limit (e.g. an op without a kernel): noted, not evidence
                (folder / f"{target_cfg.name}.default.json").write_text(json.dumps(
                    {"target": target_cfg.name, "variant": "default", "class": "float32", "crashed": f"{type(exc).__name__}: {str(exc)[:300]}"}, indent=1))
                print(f"stock {name} {target_cfg.name}: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
                continue
            for artifact in built:
                variant = artifact.variant or "default"
                meta = {"target": target_cfg.name, "variant": variant, "class": _class_of(artifact.tolerance)}
                results = outputs_for(target.open(out, artifact), feeds) if artifact.error is None else artifact.error["message"]
                stem = f"{target_cfg.name}.{variant}"
                if isinstance(results, str):
                    (folder / f"{stem}.json").write_text(json.dumps({**meta, "crashed": results[:300]}, indent=1))
                    print(f"stock {name} {target_cfg.name}/{variant}: {results[:200]}", flush=True)
                    continue
                _save_outputs(folder / f"{stem}.npz", [{n: r[n] for n in names} for r in results], meta)
                print(f"stock {name} {target_cfg.name}/{variant} ({meta['class']}): stored", flush=True)
    (folder / "done").write_text("ok\n")


def judge_stock(name: str) -> list[dict]:
    """Every cached float32 artifact of one stock application at its class's default."""
    from pipeline.parity import evaluate, reference_stats
    from pipeline.stages.data import is_pool_case
    from pipeline.tolerance import PRECISION_CLASSES

    folder = RUNS / f"stock_{name}"
    meta = json.loads((folder / "reference.json").read_text())
    labels, names = meta["labels"], meta["outputs"]
    reference = _load_outputs(folder / "reference.npz", len(labels), names)
    pool_mask = [is_pool_case(label) for label in labels]
    stats = reference_stats(reference, pool_mask)
    rows = []
    for run in sorted(folder.glob("*.json")):
        if run.stem == "reference":
            continue
        info = json.loads(run.read_text())
        row = {"arch": name, "target": info["target"], "variant": info["variant"], "class": info["class"], "expected": "acceptable"}
        if "crashed" in info:  # not built or not run here: no evidence either way
            rows.append({**row, "passed": None, "error": info["crashed"]})
            continue
        tol = PRECISION_CLASSES.get(info["class"])
        if tol is None:  # a target judging float32 artifacts with a budget of its own
            rows.append({**row, "passed": False, "error": "the target's default budget is not a precision class"})
            continue
        produced = _load_outputs(run.with_name(run.stem + ".npz"), len(labels), names)
        result = evaluate(labels, reference, produced, lambda _: tol, {}, stats, pool_mask)
        for output, figures in result["outputs"].items():
            d = figures.get("criteria", {}).get(figures.get("decided_by"), {})
            rows.append({
                **row, "output": output, "passed": figures["passed"], "statistics": figures.get("statistics"),
                "tail": figures.get("mismatch_fraction"), "range": stats[output].get("range"),
                "decided_by": {"criterion": figures.get("decided_by"), "used": d.get("used"), "value": d.get("value"), "limit": d.get("limit")},
                "used": {k: c.get("used") for k, c in figures.get("criteria", {}).items()},
            })
    return rows


def print_stock(rows: list[dict]) -> None:
    if not rows:
        return
    print("\nStock architectures, float32 artifacts (the same float32 function in another summation order: each must pass).")
    print("Errors as a fraction of the reference range; `used` per criterion (1.0 is the limit).")
    print("| arch | target | class | max/range | p99.9/range | mean/range | SQNR dB | share beyond budget | tail used | SQNR used | mean used | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        where = r["target"] + ("" if r["variant"] == "default" else f"/{r['variant']}")
        if "error" in r:
            verdict = "FAIL (false failure)" if r["passed"] is False else "not built here"
            print(f"| {r['arch']} | {where} | {r['class']} | - | - | - | - | - | - | - | - | {verdict}: {r['error'].splitlines()[0][:100]} |")
            continue
        s, u = r["statistics"] or {}, r["used"]
        print(f"| {r['arch']} | {where} | {r['class']} | {_g(s.get('max_abs_of_range'))} | {_g(s.get('p99_9_abs_of_range'))} | "
              f"{_g(s.get('mean_abs_of_range'))} | {_g(s.get('sqnr_db'), 3)} | {_g(r['tail'])} | {_g(u.get('tail'))} | "
              f"{_g(u.get('sqnr_db'))} | {_g(u.get('mean_error'))} | {'pass' if r['passed'] else 'FAIL (false failure)'} |")
    judged = [r for r in rows if "error" not in r]
    if judged:
        worst = max(judged, key=lambda r: r["decided_by"]["used"] or 0.0)
        print(f"\n{sum(r['passed'] for r in judged)} of {len(judged)} stock float32 artifacts pass; the closest used "
              f"{_g(worst['decided_by']['used'])} of its allowance ({worst['arch']} {worst['target']}/{worst['variant']}: {worst['decided_by']['criterion']}).")


# ---------------------------------------------------------------- judge


def _load_cases(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    with np.load(path) as z:
        n = len([k for k in z.files if k.startswith("case")])
        return [z[f"case{i}"] for i in range(n)], z["heldout"]


def judge(arch: str) -> list[dict]:
    """Evaluate every stored artifact of one architecture at the default budgets."""
    from pipeline.parity import evaluate, reference_stats
    from pipeline.stages.data import is_pool_case
    from pipeline.tolerance import PRECISION_CLASSES

    folder = RUNS / arch
    name = bc.output_name(arch)
    meta = json.loads((folder / "reference.json").read_text())
    labels = meta["labels"]
    with np.load(folder / "reference.npz") as z:
        ref_cases = [z[f"case{i}"] for i in range(len(labels))]
        eager_heldout, truth = z["heldout"], z["truth"]
        parity_labels = z["labels"] if "labels" in z.files else None
    pool_mask = [is_pool_case(label) for label in labels]
    eager_score = bc.task_score(arch, eager_heldout, truth)
    rows = []
    for crashed in sorted(folder.glob("*.json")):
        info = json.loads(crashed.read_text())
        if "crashed" in info:
            rows.append({
                "arch": arch, "class": info["class"], "kind": info["kind"], "expected": "acceptable" if info["kind"] == "acceptable" else "breakage",
                "passed": False, "decided_by": {"criterion": "runtime aborted", "used": None}, "heldout_metric": None, "heldout_drop": None,
                "sqnr_db": None, "top1": None, "failures": [info["crashed"]],
            })
    for run in sorted(folder.glob("*.npz")):
        if run.stem == "reference" or run.stem.endswith(".reference"):
            continue
        info = json.loads(run.with_suffix(".json").read_text())
        produced, held = _load_cases(run)

        reference = [{name: r} for r in ref_cases]
        if info.get("own_reference"):
            own, _ = _load_cases(run.with_name(run.stem + ".reference.npz"))
            reference = [{name: r} for r in own]
        stats = reference_stats(reference, pool_mask)
        tol = PRECISION_CLASSES[info["class"]]
        result = evaluate(
            labels, reference, [{name: p} for p in produced], lambda _: tol, info["steps"], stats, pool_mask,
            classifier=name if bc.is_classifier(arch) else None, labels=parity_labels,
        )
        score = bc.task_score(arch, held, truth)
        metric = next(iter(score))
        drop = eager_score[metric] - score[metric]
        kind = info["kind"]
        # Counted all the same when it costs the task more than an accepted artifact may.
        expected = "informative" if (kind, info["class"]) in INFORMATIVE and drop <= ACCEPTABLE_DROP else "breakage"
        if kind == "acceptable":
            expected = "acceptable" if drop <= ACCEPTABLE_DROP else "breakage"
            kind = "acceptable" if expected == "acceptable" else "recipe_loss"
        out = result["outputs"][name]
        rows.append({
            "eager_heldout": eager_score,
            "arch": arch, "class": info["class"], "kind": kind, "expected": expected, "passed": result["passed"],
            "decided_by": result.get("decided_by"), "heldout_metric": metric, "heldout_drop": drop,
            "statistics": out.get("statistics"), "sqnr_db": out.get("sqnr_db"), "mean_error": out.get("criteria", {}).get("mean_error", {}).get("value"),
            "tail": out.get("mismatch_fraction"), "max_abs": out.get("max_abs"),
            "top1": result.get("classifier", {}).get("top1_agreement"), "topk": result.get("classifier", {}).get("topk_agreement"),
            "failures": result["failures"], **({"factor": info["factor"]} if "factor" in info else {}),
        })
    return rows


def confusion(rows: list[dict]) -> dict[str, dict[str, int]]:
    table = {}
    for cls in CLASSES:
        mine = [r for r in rows if r["class"] == cls]
        table[cls] = {
            "acceptable_pass": sum(r["expected"] == "acceptable" and r["passed"] for r in mine),
            "acceptable_fail": sum(r["expected"] == "acceptable" and not r["passed"] for r in mine),
            "breakage_pass": sum(r["expected"] == "breakage" and r["passed"] for r in mine),
            "breakage_fail": sum(r["expected"] == "breakage" and not r["passed"] for r in mine),
        }
    return table


def _g(x, digits=3):
    return "-" if x is None else (f"{x:.{digits}g}" if isinstance(x, float) else str(x))


def print_report(rows: list[dict], archs: list[str]) -> None:
    from pipeline.tolerance import PRECISION_CLASSES

    print(f"\nCorpus: {', '.join(archs)} ({len(rows)} verdicts; acceptable = held-out task drop <= {ACCEPTABLE_DROP})")
    seen = {}
    for r in rows:
        if r.get("eager_heldout"):
            seen.setdefault(r["arch"], r["eager_heldout"])
    print("Eager model on the 360 held-out digits: " + ", ".join(f"{a} {k} {v:.3f}" for a, s in seen.items() for k, v in s.items()) + "\n")
    print("| class | acceptable: pass | acceptable: FAIL (false failure) | breakage: PASS (false pass) | breakage: fail |")
    print("|---|---|---|---|---|")
    for cls, t in confusion(rows).items():
        print(f"| {cls} | {t['acceptable_pass']} | {t['acceptable_fail']} | {t['breakage_pass']} | {t['breakage_fail']} |")
    for reason in dict.fromkeys(INFORMATIVE.values()):
        extra = [r for r in rows if r["expected"] == "informative" and INFORMATIVE[(r["kind"], r["class"])] == reason]
        if extra:
            print(f"\nNot counted ({reason}): {sum(r['passed'] for r in extra)} of {len(extra)} pass:", ", ".join(
                f"{r['arch']} {r['class']} {r['kind']}: {'pass' if r['passed'] else 'fail'} (SQNR {_g(r['sqnr_db'])} dB, "
                f"held-out drop {r['heldout_drop']:+.4f})" for r in extra))
    print("\nSeparation per class: the largest share of any allowance an acceptable artifact used (must be <= 1),")
    print("and the smallest worst-criterion share among breakages (must be > 1).")
    print("| class | min_sqnr_db | max_mean_error | mismatch_fraction | acceptable max used (criterion) | breakage min used (criterion) |")
    print("|---|---|---|---|---|---|")
    for cls in CLASSES:
        tol = PRECISION_CLASSES[cls]
        ok = [r for r in rows if r["class"] == cls and r["expected"] == "acceptable" and r["decided_by"]]
        bad = [r for r in rows if r["class"] == cls and r["expected"] == "breakage" and r["decided_by"]]
        a = max(ok, key=lambda r: _used(r), default=None)
        b = min(bad, key=lambda r: _used(r), default=None)
        print(f"| {cls} | {tol.min_sqnr_db} | {tol.max_mean_error} | {tol.mismatch_fraction} | "
              f"{_g(_used(a)) if a else '-'} ({_who(a)}) | {_g(_used(b)) if b else '-'} ({_who(b)}) |")
    print("\nEvery verdict (decided by: the criterion with the largest share of its allowance used; margin in its own units):")
    print("| arch | class | kind | held-out drop | verdict | decided by | value | limit | margin | SQNR dB | top-1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["arch"], CLASSES.index(r["class"]), r["kind"])):
        d = r["decided_by"] or {}
        wrong = r["expected"] != "informative" and (r["expected"] == "acceptable") != r["passed"]
        verdict = ("pass" if r["passed"] else "fail") + (" (WRONG)" if wrong else "")
        drop = "-" if r["heldout_drop"] is None else f"{r['heldout_drop']:+.4f}"
        print(f"| {r['arch']} | {r['class']} | {r['kind']} | {drop} | {verdict} | {d.get('criterion', '-')} | "
              f"{_g(d.get('value'), 4)} | {_g(d.get('limit'), 4)} | {_g(d.get('margin'), 3)} | {_g(r['sqnr_db'], 3)} | {_g(r['top1'], 3)} |")


def _used(r):
    if r is None:
        return None
    u = (r["decided_by"] or {}).get("used")
    return float("inf") if u is None else u


def _who(r):
    if r is None:
        return "-"
    return f"{r['arch']} {r['kind']}: {(r['decided_by'] or {}).get('criterion')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.calibrate_budgets", description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", nargs="?", choices=("all", "collect", "judge"), default="all")
    parser.add_argument("--arch", action="append", choices=bc.ARCHITECTURES, help="corpus architecture (repeat; default: all, unless --stock is given)")
    parser.add_argument("--stock", action="append", choices=STOCK, help="stock application, float32 artifacts (repeat; default: all, unless --arch is given)")
    parser.add_argument("--force", action="store_true", help="convert again even when cached")
    parser.add_argument("--json", type=Path, help="also write every verdict to this file")
    args = parser.parse_args(argv)
    archs = args.arch or ([] if args.stock else list(bc.ARCHITECTURES))
    stock = args.stock or ([] if args.arch else list(STOCK))
    if args.phase in ("all", "collect"):
        if args.phase == "collect" and len(archs) + len(stock) == 1:
            collect(archs[0], args.force) if archs else collect_stock(stock[0], args.force)
            return 0
        # One process per model: converters keep memory they never give back.
        for option, name in [("--arch", a) for a in archs] + [("--stock", m) for m in stock]:
            cmd = [sys.executable, "-m", "examples.calibrate_budgets", "collect", option, name] + (["--force"] if args.force else [])
            code = subprocess.call(cmd)
            if code:
                print(f"{name}: collection failed (exit {code})", file=sys.stderr)
                return code
    if args.phase == "collect":
        return 0
    rows = [r for arch in archs if (RUNS / arch / "done").exists() for r in judge(arch)]
    stock_rows = [r for name in stock if (RUNS / f"stock_{name}" / "done").exists() for r in judge_stock(name)]
    if rows:
        print_report(rows, archs)
    print_stock(stock_rows)
    if args.json:
        args.json.write_text(json.dumps({"confusion": confusion(rows), "verdicts": rows, "stock": stock_rows}, indent=1, default=float))
    table = confusion(rows)
    wrong = sum(t["acceptable_fail"] + t["breakage_pass"] for t in table.values()) + sum(r["passed"] is False for r in stock_rows)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
