"""Localize a parity failure to the first layer that diverges.

Two methods, named in the result:

- `tensors`: every layer's eager output against the artifact's matching tensor,
  read in the artifact's own runtime (see probes.py). Tensors are matched by name
  scope and shape; a layer whose ops were fused into a neighbour has no tensor of
  its own and is listed as unmatched.
- `bisection`: when tensors cannot be matched (a subclassed model has no layer
  graph to read eagerly), or unmatched layers sit between the last agreeing layer
  and the first diverging one: the model truncated after a layer is exported
  through the same target, run, compared, and the range halved.
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.spec import ModelConfig, OutputSpec
from pipeline.localize import eager as eg
from pipeline.localize.result import Budget, LayerError, Localization, judge, summarize
from pipeline.records import LoadedModel, ParityData

MAX_SAMPLES = 32  # one batch is enough to see where an error starts


@dataclasses.dataclass(frozen=True)
class Exporter:
    """How bisection exports a truncated model through the same target."""

    target: Any  # pipeline.target.Target
    target_cfg: Any  # TargetConfig
    variant: str
    calibration: dict[str, np.ndarray]


def _slice(config: ModelConfig, inputs: dict[str, np.ndarray], size: int | None) -> dict[str, np.ndarray]:
    """At most MAX_SAMPLES samples; exactly `size` for a runtime with a fixed batch
    (samples repeated cyclically when the case holds fewer)."""
    batched = {spec.name for spec in config.inputs if spec.batched}

    def fit(value):
        value = np.asarray(value)
        if size is None:
            return value[:MAX_SAMPLES]
        return value[np.arange(size) % len(value)]

    return {n: (fit(v) if n in batched and np.ndim(v) else v) for n, v in inputs.items()}


def _as_layout(value: np.ndarray, shape: tuple) -> np.ndarray | None:
    """The artifact's tensor in the eager layout: as is, or channels-first (NCHW, as
    tf2onnx keeps convolution tensors inside the graph) moved back to channels-last."""
    value = np.asarray(value)
    if value.shape == tuple(shape):
        return value
    if value.ndim == 4 and np.transpose(value, (0, 2, 3, 1)).shape == tuple(shape):
        return np.transpose(value, (0, 2, 3, 1))
    return None


def _output_layers(loaded: LoadedModel, config: ModelConfig) -> dict[str, str]:
    """Config output name -> the Keras layer that produces it (functional models)."""
    outputs = list(getattr(loaded.obj, "outputs", None) or [])

    from tfship.compat.keras import producing_layer as layer_name

    if len(outputs) == 1 and len(config.outputs) == 1:
        name = layer_name(outputs[0])
        return {config.outputs[0].name: name} if name else {}
    names = list(getattr(loaded.obj, "output_names", None) or [])
    found = {}
    for spec in config.outputs:
        key = spec.source or spec.name
        if key in names and names.index(key) < len(outputs):
            name = layer_name(outputs[names.index(key)])
            if name:
                found[spec.name] = name
    return found


def match_tensors(layers: list[eg.EagerLayer], infos, output_layers: dict[str, str]) -> dict[str, list]:
    """Layer name -> candidate tensors (latest first): tensors whose op belongs to the
    layer's scope and that leave it (read by another layer, or a model output)."""
    names = {layer.name for layer in layers}
    index = {layer.name: layer.index for layer in layers}

    def owner(scopes) -> str | None:
        found = [eg.layer_of(s, names) for s in scopes]
        found = [f for f in found if f]
        return max(found, key=lambda n: index[n]) if found else None  # fused: the latest layer's output

    candidates: dict[str, list] = {}
    for info in infos:
        layer = owner(info.scopes)
        if layer is None and info.is_output and info.output_name in output_layers:
            layer = output_layers[info.output_name]
        if layer is None:
            continue
        inside = [c for c in info.consumers if owner((c,)) == layer]
        if inside and not info.is_output:
            continue
        candidates.setdefault(layer, []).append(info)
    for layer in candidates:
        candidates[layer].sort(key=lambda i: -i.order)
    return candidates


def localize_artifact(
    config: ModelConfig,
    loaded: LoadedModel,
    probe_factory: Callable[[], Any] | None,
    inputs: dict[str, np.ndarray],
    budget: Budget,
    target: str,
    variant: str,
    exporter: Exporter | None = None,
    work_dir: Path | None = None,
) -> Localization:
    """Per-layer errors of one artifact against the eager model; see the module doc."""
    start = time.perf_counter()
    base = dict(target=target, variant=variant, budget=dataclasses.asdict(budget))
    probe = probe_factory() if probe_factory is not None and eg.is_graph_network(loaded) else None
    if probe is not None:
        feed = _slice(config, inputs, probe.fixed_batch)
        layers, eager = eg.graph_layer_outputs(loaded, config.input_names, feed)
        found = match_tensors(layers, probe.tensors(), _output_layers(loaded, config))
        wanted = sorted({info.name for infos in found.values() for info in infos})
        values = probe.run(feed, wanted) if wanted else {}
        rows, unmatched = [], []
        for layer in layers:
            ref = eager[layer.name]
            chosen, value, quant = None, None, None
            for info in found.get(layer.name, []):
                candidate = _as_layout(values[info.name][0], np.shape(ref))
                if candidate is not None:
                    chosen, value, quant = info, candidate, values[info.name][1]
                    break
            if chosen is None:
                unmatched.append(layer.name)
                continue
            name = probe.display_name(chosen.name) if hasattr(probe, "display_name") else chosen.name
            rows.append(judge(layer.index, layer.name, name, ref, value, budget, quant))
        predecessors = {layer.name: list(layer.predecessors) for layer in layers}
        first, growth = summarize(rows, predecessors)
        samples = len(next(iter(feed.values()))) if feed and np.ndim(next(iter(feed.values()))) else 1
        method, note = "tensors", f"{len(rows)} of {len(layers)} layers matched in {probe.kind}, on one batch of {samples}"
        if first is not None and exporter is not None:
            refined = _refine_window(config, loaded, layers, rows, unmatched, first, feed, budget, exporter, work_dir)
            if refined:
                extra_rows, first = refined
                rows = sorted(rows + extra_rows, key=lambda r: r.index)
                method = "tensors+bisection"
                note += f"; layers without a tensor of their own before '{first}' were checked by truncated exports"
        return Localization(
            method=method, layers=tuple(rows), first_over_budget=first, largest_growth=growth,
            unmatched=tuple(unmatched), note=note, seconds=round(time.perf_counter() - start, 3),
            debug_files=tuple(getattr(probe, "debug_files", ())), explorer={"kind": probe.kind}, **base,
        )
    if exporter is None or loaded.flavour not in ("keras3", "tf_keras"):
        return Localization(method="none", note="no Keras layers to compare or bisect (plain function or tf.Module)", seconds=round(time.perf_counter() - start, 3), **base)
    feed = _slice(config, inputs, None)
    layers, _ = eg.called_layers(loaded, feed)
    if not layers:
        return Localization(method="none", note="the model calls no sub-layers", seconds=round(time.perf_counter() - start, 3), **base)
    order = [layer.name for layer in layers]
    rows, first = _bisect(config, loaded, layers, feed, budget, exporter, work_dir, lambda name: eg.truncated_hooked_call(loaded, order, name))
    _, growth = summarize(rows)
    return Localization(
        method="bisection", layers=tuple(rows), first_over_budget=first, largest_growth=growth,
        note=f"{len(rows)} truncated exports over {len(layers)} layers in call order"
        + (" (the artifact's runtime exposes no intermediate tensors)" if eg.is_graph_network(loaded) else " (subclassed model: no layer graph to read)"),
        seconds=round(time.perf_counter() - start, 3), **base,
    )


def _refine_window(config, loaded, layers, rows, unmatched, first, feed, budget, exporter, work_dir):
    """Unmatched layers between the last agreeing matched layer and `first`: bisect them."""
    index = {layer.name: layer.index for layer in layers}
    before = [r for r in rows if r.index < index[first]]
    floor = before[-1].index if before else -1
    window = [layer for layer in layers if floor < layer.index < index[first] and layer.name in unmatched]
    if not window:
        return None
    candidates = window + [layer for layer in layers if layer.name == first]
    tested, found = _bisect(config, loaded, candidates, feed, budget, exporter, work_dir, lambda name: eg.truncated_graph_call(loaded, config.input_names, name), last_known_over=True)
    return [r for r in tested if r.layer != first], found or first


def _bisect(config, loaded, layers, feed, budget, exporter, work_dir, truncate, last_known_over: bool = False):
    """Smallest k whose truncated export exceeds the budget (assumes that once a layer
    diverges, every later one does). Returns (rows tested, first layer over budget)."""
    tested: dict[int, LayerError] = {}

    def over(k: int) -> bool:
        if k not in tested:
            tested[k] = _truncated_error(config, loaded, layers[k], feed, budget, exporter, work_dir, truncate)
        return tested[k].over_budget

    lo, hi = 0, len(layers) - 1
    if not last_known_over and not over(hi):
        return [tested[k] for k in sorted(tested)], None
    while lo < hi:
        mid = (lo + hi) // 2
        if over(mid):
            hi = mid
        else:
            lo = mid + 1
    if lo not in tested:
        over(lo)
    return [tested[k] for k in sorted(tested)], layers[lo].name if tested[lo].over_budget else None


def _truncated_error(config, loaded, layer, feed, budget, exporter: Exporter, work_dir, truncate) -> LayerError:
    import tensorflow as tf

    from pipeline.stages.savedmodel import export_saved_model
    from pipeline.stages.trace import trace_model
    from pipeline.target import BuildInputs

    call = truncate(layer.name)
    eager = np.asarray(call({k: tf.constant(v) for k, v in feed.items()})["probe"])
    cut_config = dataclasses.replace(config, outputs=(OutputSpec("probe"),))
    cut = LoadedModel(obj=loaded.obj, flavour=loaded.flavour, call=call, source_file=loaded.source_file)
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"bisect-{layer.name}-", dir=work_dir) as tmp:
        tmp = Path(tmp)
        traced = trace_model(cut_config, cut, ParityData(pool=feed, labels=None, cases=(("batch", feed),)))
        export_saved_model(tmp / "savedmodel", cut, traced)
        options = exporter.target.options_for_variant(exporter.target_cfg.options, exporter.variant)
        job = BuildInputs(
            model=cut_config,
            target=dataclasses.replace(exporter.target_cfg, options=options),
            out_dir=tmp / "build",
            saved_model_dir=tmp / "savedmodel",
            traced=traced.function,
            loaded=cut,
            calibration=exporter.calibration,
        )
        (tmp / "build").mkdir()
        artifacts = exporter.target.build(job)
        artifact = next((a for a in artifacts if a.variant == exporter.variant), artifacts[0])
        runner = exporter.target.open(tmp / "build", artifact)
        produced = np.asarray(runner(feed)["probe"])
    return judge(layer.index, layer.name, "(truncated export)", eager, produced, budget)


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
