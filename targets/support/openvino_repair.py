"""Repair of a failed OpenVINO int8 variant: NNCF's ignored scope as the selective-float
recipe.

Blame: the float IR and the int8 IR run side by side on the calibration samples, every
quantizable node (MatMul, Convolution, ...) fetched; each node's error is
max |int8 - float| / range(float) at its output, and the error it adds is that minus
the largest error of the quantizable nodes feeding it. Search: the nodes adding the
most are kept in float (`ignored_scope`), 1, 2, 4, ... of them, each candidate
quantized again by NNCF and checked by the same parity as any variant, until one
passes or `repair_conversions` candidates were built. The first that passes is
published as the variant `int8_repaired`; the report gives the config line that
builds it as the int8 variant itself.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.target import Artifact, BuildInputs

QUANTIZABLE = ("MatMul", "Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData")
REPAIRED = "int8_repaired"
CANDIDATE_PREFIX = ".candidate_int8_"
BLAME_SAMPLES = 32


def quantizable_nodes(model) -> list:
    return [op for op in model.get_ordered_ops() if op.get_type_name() in QUANTIZABLE]


def _fetch(model, names: list[str], feeds: dict[str, np.ndarray], hint: str) -> dict[str, np.ndarray]:
    """Values of the named nodes' first outputs in `model` (a copy gets the extra outputs)."""
    import openvino as ov

    copy = model.clone()
    by_name = {op.get_friendly_name(): op for op in copy.get_ordered_ops()}
    ports = copy.add_outputs([by_name[n].output(0) for n in names])
    compiled = ov.Core().compile_model(copy, "CPU", {"INFERENCE_PRECISION_HINT": hint})
    position = {(o.get_node().get_friendly_name(), o.get_index()): i for i, o in enumerate(copy.outputs)}
    typed = {p.get_any_name(): np.asarray(feeds[p.get_any_name()]).astype(p.get_element_type().to_dtype(), copy=False) for p in compiled.inputs}
    results = compiled(typed)
    return {n: np.asarray(results[compiled.outputs[position[(p.get_node().get_friendly_name(), p.get_index())]]], dtype=np.float64) for n, p in zip(names, ports)}


def _ancestors(op, quantizable: set[str]) -> set[str]:
    """The nearest quantizable nodes upstream of `op`."""
    found, stack, seen = set(), [op.input_value(i).get_node() for i in range(op.get_input_size())], set()
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        if name in quantizable:
            found.add(name)
            continue
        stack += [node.input_value(i).get_node() for i in range(node.get_input_size())]
    return found


def blame_order(float_model, quantized_model, feeds: dict[str, np.ndarray], hint: str = "f32") -> list[dict]:
    """Quantizable nodes of both models, the ones adding the most error first."""
    shared = {op.get_friendly_name() for op in quantizable_nodes(quantized_model)}
    nodes = [op for op in quantizable_nodes(float_model) if op.get_friendly_name() in shared]
    if not nodes:
        return []
    names = [op.get_friendly_name() for op in nodes]
    reference = _fetch(float_model, names, feeds, hint)
    quantized = _fetch(quantized_model, names, feeds, hint)
    error = {}
    for name in names:
        ref, out = reference[name], quantized[name]
        spread = float(ref.max() - ref.min()) if ref.size else 0.0
        error[name] = float(np.max(np.abs(out - ref))) / spread if spread > 0 and ref.shape == out.shape else 0.0
    rows = []
    known = set(names)
    for op in nodes:
        name = op.get_friendly_name()
        upstream = max((error[a] for a in _ancestors(op, known)), default=0.0)
        rows.append({"node": name, "type": op.get_type_name(), "error": round(error[name], 6), "added": round(error[name] - upstream, 6)})
    rows.sort(key=lambda r: -r["added"])
    return rows


def _calibration_feeds(job: BuildInputs) -> dict[str, np.ndarray]:
    return {spec.name: np.asarray(job.calibration[spec.name][:BLAME_SAMPLES]) for spec in job.model.inputs}


def repair_int8(
    job: BuildInputs,
    artifact: Artifact,
    entry: dict,
    verify: Callable[[Artifact], dict],
    log: Callable[[str], None],
    float_model,
    quantize: Callable[[tuple[str, ...]], tuple[object, int, str]],
    save: Callable[[object, Path], list[str]],
    tolerance,
) -> tuple[list[Artifact], dict]:
    """The search; `quantize(ignored)` returns (model, quantizers, nncf version) for the
    options' ignored scope plus `ignored`, `save(model, path)` writes an IR."""
    import openvino as ov

    options = job.target.options
    started = time.perf_counter()
    quantized = ov.Core().read_model(str(job.out_dir / artifact.files[0]))
    try:
        blame = blame_order(float_model, quantized, _calibration_feeds(job))
    except Exception as exc:  # a static batch that does not take this batch, or a node that cannot be fetched
        log(f"int8: repair: the blame order could not be measured ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); nodes in graph order")
        blame = [{"node": op.get_friendly_name(), "type": op.get_type_name(), "error": None, "added": None} for op in quantizable_nodes(float_model)]
    base = tuple(options.ignored_scope)
    order = [r["node"] for r in blame if r["node"] not in base]
    sizes, k = [], 1
    while k < len(order) and len(sizes) < options.repair_conversions:
        sizes.append(k)
        k *= 2
    if order and len(sizes) < options.repair_conversions and sizes[-1] < len(order):
        sizes.append(len(order))  # every quantizable node in float: what int8 can still give (activations of other ops)
    tried, chosen = [], None
    for count in sizes:
        if time.perf_counter() - started > options.repair_seconds:
            break
        ignored = base + tuple(order[:count])
        t0 = time.perf_counter()
        row = {"recipe": {"base": "int8", "float_layers": list(order[:count])}, "ignored_scope": list(ignored)}
        stem = f"{CANDIDATE_PREFIX}{count}"
        try:
            model, quantizers, _ = quantize(ignored)
            files = tuple(save(model, job.out_dir / f"{stem}.xml"))
            info = dict(artifact.info, ignored_scope=list(ignored), fake_quantize=quantizers)
            candidate = Artifact(variant=REPAIRED, files=files, tolerance=tolerance, info=info)
            parity = verify(candidate)
        except Exception as exc:  # NNCF refused this scope (nothing left to quantize): the next one may still do
            row.update(status="error", message=" ".join(str(exc).split())[:300], seconds=round(time.perf_counter() - t0, 2))
            tried.append(row)
            log(f"int8: repair: keeping {count} node(s) in float: error: {row['message']}")
            continue
        worst = max((m.get("max_abs") or 0.0 for m in parity["outputs"].values()), default=0.0)
        classifier = parity.get("classifier") or {}
        row.update(status="passed" if parity["passed"] else "failed", max_abs=worst, size_bytes=sum((job.out_dir / f).stat().st_size for f in files),
                   top1_agreement=classifier.get("top1_agreement"), accuracy=classifier.get("accuracy"), failures=parity["failures"][:3],
                   seconds=round(time.perf_counter() - t0, 2))
        tried.append(row)
        log(f"int8: repair: keeping {count} node(s) in float ({', '.join(order[:count][:3])}{' ...' if count > 3 else ''}): {row['status']} (max_abs {worst:.3g})")
        if parity["passed"]:
            chosen = (candidate, row, count)
            break
    repaired = []
    if chosen is not None:
        candidate, row, count = chosen
        final = []
        for name in candidate.files:
            target = REPAIRED + Path(name).suffix
            shutil.move(str(job.out_dir / name), str(job.out_dir / target))
            final.append(target)
        info = dict(candidate.info, size_bytes=sum((job.out_dir / f).stat().st_size for f in final), repaired_from="int8")
        repaired.append(dataclasses.replace(candidate, files=tuple(final), info=info))
    for path in job.out_dir.glob(f"{CANDIDATE_PREFIX}*"):
        path.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    record = {
        "variant": "int8",
        "target": "openvino",
        "engine": f"NNCF {quantize_version()} ignored scope",
        "budget": {"conversions": options.repair_conversions, "seconds": options.repair_seconds},
        "conversions": len(tried),
        "seconds": round(seconds, 2),
        "stopped": "passed" if chosen else (
            "every quantizable node tried" if sizes and len(tried) == len(sizes) and sizes[-1] >= len(order)
            else "time budget" if len(tried) < len(sizes) else "conversion budget"
        ),
        "blame": [r["node"] for r in blame[:10]],
        "blame_source": "error added per quantizable node, int8 against float32 IR on the calibration samples",
        "blame_table": blame[:10],
        "tried": tried,
        "sizes": {"float32_bytes": None, "int8_bytes": artifact.info.get("size_bytes")},
        "found": chosen is not None,
    }
    if chosen is not None:
        candidate, row, count = chosen
        listed = ", ".join(candidate.info["ignored_scope"])
        record["config_snippet"] = f"- name: openvino\n  variants: [{', '.join(options.variants)}]\n  ignored_scope: [{listed}]"
        record["summary"] = f"repair int8: passes with {count} node(s) kept in float by NNCF ({listed}); published as {REPAIRED}"
    else:
        record["summary"] = f"repair int8: no ignored scope that passes within {len(tried)} tries ({record['stopped']}, {seconds:.1f} s)"
    log(record["summary"])
    return repaired, record


def quantize_version() -> str:
    try:
        import nncf

        return nncf.__version__
    except ImportError:
        return "?"
