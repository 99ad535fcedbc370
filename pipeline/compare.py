"""Parity of any runnable artifacts against a reference artifact, whoever produced them.

The reference (a SavedModel, .tflite or .onnx) is run on the parity data and each
artifact is judged against it with the metrics and budgets an export uses: the
budget is the artifact's target's default for the precision it was converted at
(read from the file), overridable per output. Inputs and outputs are paired by
name (a tf2onnx-style `:0` suffix is ignored; a single output pairs with a single
output); anything else is bad input that names both sides.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from pipeline.errors import ModelError, PipelineError
from pipeline.inspection import ArtifactInfo, TensorInfo, inspect_artifact, open_runner
from pipeline.parity import evaluate, reference_stats
from pipeline.tolerance import Tolerance

DEFAULT_SAMPLES = 32
DEFAULT_BATCH_SIZES = (1, 3)


@dataclass(frozen=True)
class ArtifactParity:
    """One artifact's verdict against the reference."""

    path: str
    kind: str
    variant: str
    status: str  # passed | failed | error
    tolerance: dict = field(default_factory=dict)
    parity: dict | None = None
    message: str = ""
    exit_code: int = 0
    paired: dict = field(default_factory=dict)  # reference output -> artifact output

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def reason(self) -> str:
        """The verdict's reason in one line."""
        if self.status == "error":
            return self.message.splitlines()[0] if self.message else "error"
        parity = self.parity or {}
        parts = list(parity.get("failures") or [])
        parts += [f"weak evidence for {out}: reference output is near-constant" for out in (parity.get("weak_evidence") or {})]
        return "; ".join(parts)


@dataclass(frozen=True)
class Comparison:
    reference: str
    reference_kind: str
    cases: tuple[str, ...]
    samples: int
    results: tuple[ArtifactParity, ...]
    reference_stats: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def exit_code(self) -> int:
        codes = [r.exit_code if r.status == "error" else (1 if r.status == "failed" else 0) for r in self.results]
        return 2 if 2 in codes else max(codes, default=0)

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "reference_kind": self.reference_kind,
            "cases": list(self.cases),
            "samples": self.samples,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "reference_stats": self.reference_stats,
            "results": [dataclasses.asdict(r) for r in self.results],
        }

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        lines = [f"reference: {self.reference} ({self.reference_kind}); {self.samples} samples in {len(self.cases)} cases"]
        rows = []
        for r in self.results:
            outputs = (r.parity or {}).get("outputs") or {}
            if not outputs:
                rows.append((r.path, f"{r.kind}/{r.variant}" if r.variant else r.kind, "-", r.status, "-", "-", "-", r.reason()))
            for name, m in outputs.items():
                rows.append((
                    r.path, f"{r.kind}/{r.variant}" if r.variant else r.kind, name, "pass" if m.get("passed") else "FAIL",
                    _fmt(m.get("max_abs")), _fmt(m.get("atol")), _fmt(m.get("mismatch_fraction")), "",
                ))
            if outputs:
                rows.append(("", "", "", r.status, "", "", "", r.reason()))
        header = ("artifact", "kind", "output", "result", "max_abs", "atol", "mismatch", "reason")
        lines.append(_table(header, rows))
        lines.append("passed" if self.passed else f"{sum(not r.passed for r in self.results)} of {len(self.results)} artifact(s) did not pass")
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    """Plain aligned columns; the last column is free text and is not padded."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    out = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row, widths)] + [str(row[-1])]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


# --------------------------------------------------------------------------- data


def _load_data(data: Any) -> dict[str, np.ndarray] | None:
    if data is None:
        return None
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise ModelError(f"data file not found: {path}; expected a .npz with one array per input")
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    if isinstance(data, Mapping):
        return {k: np.asarray(v) for k, v in data.items()}
    raise ModelError(f"data: expected None (synthetic), a {{input: array}} mapping or a .npz path, got {type(data).__name__}")


def synthetic_pool(inputs: tuple[TensorInfo, ...], samples: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Uniform [-1, 1) floats and booleans; integer and string inputs need real data."""
    rng = np.random.default_rng(seed)
    pool = {}
    for t in inputs:
        shape = (samples,) + tuple(1 if not isinstance(d, int) or d < 0 else d for d in t.shape[1:])
        if t.dtype.startswith(("float", "bfloat")):
            pool[t.name] = rng.uniform(-1.0, 1.0, shape).astype(np.float32 if t.dtype == "bfloat16" else t.dtype)
        elif t.dtype == "bool":
            pool[t.name] = rng.random(shape) < 0.5
        else:
            raise ModelError(
                f"input '{t.name}' is {t.dtype}: synthetic data cannot know its valid values; "
                f"pass data (data={{'{t.name}': array}} or --data file.npz with an array '{t.name}')"
            )
    return pool


def _check_pool(pool: dict[str, np.ndarray], inputs: tuple[TensorInfo, ...], where: str) -> dict[str, np.ndarray]:
    out, problems = {}, []
    for t in inputs:
        if t.name not in pool:
            problems.append(f"no array for input '{t.name}' (it has: {', '.join(sorted(pool)) or 'nothing'})")
            continue
        arr = np.asarray(pool[t.name])
        want = t.shape[1:]
        if arr.ndim != len(t.shape) or any(isinstance(w, int) and w >= 0 and w != g for w, g in zip(want, arr.shape[1:])):
            problems.append(f"input '{t.name}': array {list(arr.shape)} does not fit the reference's [N, {', '.join('?' if not isinstance(d, int) else str(d) for d in want)}]")
            continue
        out[t.name] = arr
    sizes = {len(a) for a in out.values()}
    if len(sizes) > 1:
        problems.append(f"inputs have different sample counts {sorted(sizes)}")
    if problems:
        raise ModelError(f"{where}: " + "; ".join(problems))
    return out


def make_cases(pool: dict[str, np.ndarray], batch_sizes: tuple[int, ...]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Batch 1 and an odd batch first (code that assumes batch 1), then the whole pool in chunks."""
    from pipeline.stages.data import POOL_CASE_PREFIX

    n = len(next(iter(pool.values())))
    cases, offset = [], 0
    for size in batch_sizes:
        idx = np.arange(offset, offset + size) % n
        cases.append((f"batch{size}", {k: v[idx] for k, v in pool.items()}))
        offset += size
    chunk = max(batch_sizes)
    fixed = len(batch_sizes) == 1
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        if fixed and size != chunk:
            break
        cases.append((f"{POOL_CASE_PREFIX}[{start}:{start + size}]", {k: v[start : start + size] for k, v in pool.items()}))
    return cases


# --------------------------------------------------------------------------- pairing


def _base(name: str) -> str:
    return name.rsplit(":", 1)[0] if name.rsplit(":", 1)[-1].isdigit() else name


def pair_names(reference: list[str], artifact: list[str], what: str, explicit: Mapping[str, str] | None = None) -> dict[str, str]:
    """reference name -> artifact name, by name, by name without ':0', or one to one."""
    explicit = dict(explicit or {})
    pairs, missing = {}, []
    by_base = {_base(a): a for a in artifact}
    for ref in reference:
        if ref in explicit:
            pairs[ref] = explicit[ref]
        elif ref in artifact:
            pairs[ref] = ref
        elif _base(ref) in by_base:
            pairs[ref] = by_base[_base(ref)]
        else:
            missing.append(ref)
    if missing and len(reference) == 1 and len(artifact) == 1:
        return {reference[0]: artifact[0]}
    if missing:
        raise ModelError(
            f"cannot pair {what}: the reference has {reference}, the artifact has {artifact}; "
            f"unpaired: {missing}. Name them alike, or pair them explicitly (outputs={{'{missing[0]}': '<artifact name>'}})"
        )
    return pairs


# --------------------------------------------------------------------------- compare


def _tolerance_for(info: ArtifactInfo, overrides: Mapping[str, Mapping[str, float]] | None):
    from targets import REGISTRY

    from pipeline.inspection import TARGET_OF_KIND

    base = REGISTRY.get(TARGET_OF_KIND.get(info.kind, info.kind)).default_tolerance(info.details.get("precision", ""))
    table = {k: dict(v) for k, v in (overrides or {}).items()}

    def lookup(output: str) -> Tolerance:
        return base.override(table.get(output, {}))

    return base, lookup


def compare(
    reference: str | Path,
    *artifacts: str | Path,
    data: Any = None,
    samples: int = DEFAULT_SAMPLES,
    batch_sizes: tuple[int, ...] | None = None,
    seed: int = 0,
    tolerances: Mapping[str, Mapping[str, float]] | None = None,
    outputs: Mapping[str, str] | None = None,
) -> Comparison:
    """Judge each artifact against the reference on the same inputs.

    `data`: None (synthetic, uniform [-1, 1) per float input), {input: array [N, ...]}
    or a .npz path. `tolerances`: {output: {atol: .., rtol: ..}} over the target's
    default budget. `outputs`: {reference output: artifact output} where names differ.
    """
    if not artifacts:
        raise ModelError("compare needs at least one artifact besides the reference")
    ref_info = inspect_artifact(reference, run=False)
    ref_sig = ref_info.serving
    pool = _load_data(data)
    if pool is None:
        pool = synthetic_pool(ref_sig.inputs, samples, seed)
    pool = _check_pool(pool, ref_sig.inputs, "data")
    n = len(next(iter(pool.values())))
    fixed = {t.shape[0] for t in ref_sig.inputs if t.shape and isinstance(t.shape[0], int) and t.shape[0] > 0}
    if batch_sizes is None:
        batch_sizes = (min(fixed),) if fixed else tuple(b for b in DEFAULT_BATCH_SIZES if b <= n) or (n,)
    cases = make_cases(pool, tuple(batch_sizes))
    ref_runner = open_runner(ref_info)
    ref_names = [t.name for t in ref_sig.outputs]
    reference_out = [{k: np.asarray(v) for k, v in ref_runner(feeds).items() if k in ref_names} for _, feeds in cases]
    from pipeline.stages.data import is_pool_case

    pool_mask = [is_pool_case(label) for label, _ in cases]
    stats = reference_stats(reference_out, pool_mask)
    results = [_judge(Path(path), cases, reference_out, stats, pool_mask, ref_sig, tolerances, outputs) for path in artifacts]
    return Comparison(
        reference=str(reference), reference_kind=ref_info.kind, cases=tuple(label for label, _ in cases),
        samples=n, results=tuple(results), reference_stats=stats,
    )


def _judge(path, cases, reference_out, stats, pool_mask, ref_sig, tolerances, outputs) -> ArtifactParity:
    try:
        info = inspect_artifact(path, run=False)
    except PipelineError as exc:
        return ArtifactParity(str(path), "?", "", "error", message=str(exc), exit_code=exc.exit_code)
    variant = info.details.get("precision", "")
    try:
        sig = info.serving
        in_pairs = pair_names([t.name for t in ref_sig.inputs], [t.name for t in sig.inputs], "inputs")
        out_pairs = pair_names([t.name for t in ref_sig.outputs], [t.name for t in sig.outputs], "outputs", outputs)
        base, lookup = _tolerance_for(info, tolerances)
        runner = open_runner(info)
        produced = []
        for _, feeds in cases:
            raw = runner({in_pairs[k]: v for k, v in feeds.items()})
            produced.append({ref: np.asarray(raw[art]) for ref, art in out_pairs.items() if art in raw})
    except PipelineError as exc:
        return ArtifactParity(str(path), info.kind, variant, "error", message=str(exc), exit_code=exc.exit_code)
    except Exception as exc:  # the artifact's runtime refused it: that is its verdict
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return ArtifactParity(str(path), info.kind, variant, "error", message=f"{type(exc).__name__} while running it: {first}", exit_code=1)
    steps = {ref: runner.output_steps[art] for ref, art in out_pairs.items() if art in (getattr(runner, "output_steps", None) or {})}
    parity = evaluate([label for label, _ in cases], reference_out, produced, lookup, steps, stats, pool_mask)
    return ArtifactParity(
        str(path), info.kind, variant, "passed" if parity["passed"] else "failed",
        tolerance=dataclasses.asdict(base), parity=parity, paired=out_pairs,
    )
