"""Parity of any runnable artifacts against a reference artifact, whoever produced them.

The reference (a SavedModel, .tflite or .onnx) is run on the parity data and each
artifact is judged against it with the metrics and budgets an export uses: the
budget is the artifact's target's default for the precision it was converted at
(read from the file), overridable per output. Inputs and outputs are paired by
name (a tf2onnx-style `:0` suffix and a `serving_default_` prefix are ignored; a
single output pairs with a single output), then by a converter's numbering of graph
names (`StatefulPartitionedCall:0..N`, `Identity:0`, `Identity_1:0`, ...: numbered in
the order TensorFlow flattens the signature's outputs, sorted by name), then by a shape only one output of
each side has; explicit pairs come first. Anything else is bad input that names both
sides and shows the explicit pairing in the caller's syntax.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from pipeline.errors import ModelError, PipelineError
from pipeline.inspection import ArtifactInfo, TensorInfo, inspect_artifact, open_runner
from pipeline.parity import evaluate, judge_runtime_precision, reference_stats
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
    paired_by: dict = field(default_factory=dict)  # reference output -> the rule that paired it (BY_*)

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
        for r in self.results:
            guessed = {ref: rule for ref, rule in r.paired_by.items() if rule in (BY_CONVERTER, BY_SHAPE)}
            if guessed:
                lines.append(f"{r.path}: outputs paired by " + ", ".join(f"{rule} ({ref} = {r.paired[ref]})" for ref, rule in guessed.items()))
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
        return _read_npz(path)
    if isinstance(data, Mapping):
        return {k: np.asarray(v) for k, v in data.items()}
    raise ModelError(f"data: expected None (synthetic), a {{input: array}} mapping or a .npz path, got {type(data).__name__}")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of a .npz, read from checked headers (pipeline.archives: no decompression
    bomb, no pickle) once they fit in half the available memory."""
    from pipeline.archives import ArchiveRefused, NpzReader, bytes_to_read, gib
    from pipeline.stages.data import POOL_MEMORY_SHARE, _available_memory

    try:
        with NpzReader(path) as npz:
            headers = npz.headers(npz.names)
            need, available = bytes_to_read(headers), _available_memory()
            if available is not None and need > POOL_MEMORY_SHARE * available:
                raise ArchiveRefused(f"its arrays need {gib(need)}; {gib(available)} of memory is available and at most half of it can go to the data")
            return npz.read(headers)
    except ArchiveRefused as exc:
        raise ModelError(f"refused data file {path}: {f'array {exc.member!r}: ' if exc.member else ''}{exc}") from None


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

# How a pairing was found, for the report and the rendered table.
BY_NAME, BY_CONVERTER, BY_SHAPE, BY_EXPLICIT, BY_SINGLE = "name", "converter numbering", "shape", "explicit", "only output"


class PairingError(ModelError):
    """Outputs (or inputs) that no rule pairs: names both sides and how to pair them
    explicitly, in the caller's own syntax (`how_to_pair`)."""

    def __init__(self, what: str, reference: list[str], artifact: list[str], missing: list[str], tried: str, how_to_pair: str = "python"):
        self.what, self.reference, self.artifact, self.missing = what, reference, artifact, missing
        example = {missing[0]: artifact[0] if artifact else "<artifact name>"}
        super().__init__(
            f"cannot pair {what}: the reference has {reference}, the artifact has {artifact}; unpaired: {missing} ({tried}). "
            f"Name them alike, or pair them explicitly: {pair_syntax(example, how_to_pair)}"
        )


def pair_syntax(pairs: Mapping[str, str], how_to_pair: str) -> str:
    """Explicit pairs as the caller writes them: `--pair a=b` on the command line,
    `pairs={'a': 'b'}` in Python."""
    if how_to_pair == "cli":
        return " ".join(f"--pair {ref}={art}" for ref, art in pairs.items()) + " (repeat --pair for each output)"
    return f"tfship.compare(..., pairs={dict(pairs)!r})"


def _base(name: str) -> str:
    return name.rsplit(":", 1)[0] if name.rsplit(":", 1)[-1].isdigit() else name


def _signature_key(name: str) -> str:
    """A SavedModel signature's placeholder name without its prefix and index:
    `serving_default_x:0` -> `x` (how tf2onnx keeps graph names for inputs)."""
    base = _base(name)
    return base[len("serving_default_"):] if base.startswith("serving_default_") else base


def converter_numbering(names: list[str]) -> list[str] | None:
    """`names` in the order a converter numbered them, when they are numbered 0..N-1 in
    one of the two ways graph names go: one node's outputs (`StatefulPartitionedCall:0`,
    `:1`, ...: a SignatureDef's tensor names) or one op name with a counter
    (`Identity:0`, `Identity_1:0`, ...: tf2onnx 1.17 with `--use-graph-names`); else
    None. Either numbering follows the order TensorFlow flattens the signature's
    outputs: sorted by name."""
    if len(names) < 2:
        return None
    parts = [n.rsplit(":", 1) for n in names]
    if any(len(p) != 2 or not p[1].isdigit() for p in parts):
        return None
    if len({p[0] for p in parts}) == 1:  # one node, its outputs :0..:N-1
        index = {int(p[1]): n for p, n in zip(parts, names)}
    elif all(p[1] == "0" for p in parts):  # Op, Op_1, ..., Op_{N-1}, each :0
        stems = sorted((p[0] for p in parts), key=len)
        stem, index = stems[0], {}
        for p, n in zip(parts, names):
            suffix = p[0][len(stem):]
            if not p[0].startswith(stem) or not (suffix == "" or (suffix[:1] == "_" and suffix[1:].isdigit())):
                return None
            index[int(suffix[1:]) if suffix else 0] = n
    else:
        return None
    if sorted(index) != list(range(len(names))):
        return None
    return [index[i] for i in range(len(names))]


def pair_names(reference: list[str], artifact: list[str], what: str, explicit: Mapping[str, str] | None = None,
               shapes: tuple[Mapping[str, tuple], Mapping[str, tuple]] | None = None, how_to_pair: str = "python") -> dict[str, str]:
    """reference name -> artifact name. In order: explicit pairs (those whose artifact
    name this artifact has), the same name, the same name without a `:N` suffix or a
    `serving_default_` prefix, then for what is left: one output to one output (the
    model's only one, or one of the same shape), a
    converter's numbering of the other side (see :func:`converter_numbering`; checked
    against the shapes when given), or a shape found on exactly one output of each side."""
    return pairing(reference, artifact, what, explicit, shapes, how_to_pair)[0]


def pairing(reference: list[str], artifact: list[str], what: str, explicit: Mapping[str, str] | None = None,
            shapes: tuple[Mapping[str, tuple], Mapping[str, tuple]] | None = None, how_to_pair: str = "python") -> tuple[dict[str, str], dict[str, str]]:
    """As :func:`pair_names`, with how each pair was found ({reference name: rule})."""
    pairs: dict[str, str] = {}
    rules: dict[str, str] = {}

    def take(ref: str, art: str, rule: str) -> None:
        pairs[ref], rules[ref] = art, rule

    for ref, art in (explicit or {}).items():
        if ref in reference and art in artifact:
            take(ref, art, BY_EXPLICIT)
    by_base = {_base(a): a for a in artifact}
    by_key = {_signature_key(a): a for a in artifact}
    for ref in reference:
        if ref in pairs:
            continue
        for found in (ref if ref in artifact else None, by_base.get(_base(ref)), by_key.get(_signature_key(ref))):
            if found is not None and found not in pairs.values():
                take(ref, found, BY_NAME)
                break
    refs = [r for r in reference if r not in pairs]
    arts = [a for a in artifact if a not in pairs.values()]
    tried = "by name"
    # One output left on each side pairs when it is the model's only one, or when both ran to the same shape.
    if refs and len(refs) == len(arts) == 1 and (len(reference) == 1 or (shapes is not None and _same_shape(shapes, refs[0], arts[0]))):
        take(refs[0], arts[0], BY_SINGLE)
        refs, arts = [], []
    if refs and len(refs) == len(arts):
        tried += ", by a converter's output numbering"
        # One side numbered by a converter, the other named: numbers follow the names' sorted order.
        numbered = [(refs, arts, converter_numbering(arts), False), (arts, refs, converter_numbering(refs), True)]
        for named, _, order, swapped in numbered:
            if order is None or converter_numbering(named) is not None:
                continue
            found = {n: o for n, o in zip(sorted(named), order)}
            candidate = {o: n for n, o in found.items()} if swapped else found
            if shapes is None or all(_same_shape(shapes, r, a) for r, a in candidate.items()):
                for r, a in candidate.items():
                    take(r, a, BY_CONVERTER)
                refs, arts = [], []
                break
    if refs and shapes is not None:
        tried += ", by shape"
        ref_shapes, art_shapes = shapes
        for ref in list(refs):
            shape = ref_shapes.get(ref)
            same_ref = [r for r in refs if ref_shapes.get(r) == shape]
            same_art = [a for a in arts if art_shapes.get(a) == shape]
            if shape is not None and len(same_ref) == 1 and len(same_art) == 1:
                take(ref, same_art[0], BY_SHAPE)
                refs.remove(ref)
                arts.remove(same_art[0])
    if refs:
        raise PairingError(what, reference, artifact, refs, f"tried {tried}" + (" (shapes not unique)" if shapes is not None else ""), how_to_pair)
    return pairs, rules


def _same_shape(shapes: tuple[Mapping[str, tuple], Mapping[str, tuple]], ref: str, art: str) -> bool:
    return shapes[0].get(ref) == shapes[1].get(art)


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
    pairs: Mapping[str, str] | None = None,
    outputs: Mapping[str, str] | None = None,
    how_to_pair: str = "python",
) -> Comparison:
    """Judge each artifact against the reference on the same inputs.

    `data`: None (synthetic, uniform [-1, 1) per float input), {input: array [N, ...]}
    or a .npz path. `tolerances`: {output: {atol: .., rtol: ..}} over the target's
    default budget. `pairs`: {reference input or output: artifact name} where no rule
    pairs them (`outputs` is the older name of the same mapping); a pair applies to each
    artifact that has that name. `how_to_pair`: "cli" when the caller is the command
    line, so a pairing error shows `--pair` rather than Python.
    """
    if not artifacts:
        raise ModelError("compare needs at least one artifact besides the reference")
    ref_info = inspect_artifact(reference, run=False)
    ref_sig = ref_info.serving
    explicit = {**dict(outputs or {}), **dict(pairs or {})}
    _check_explicit(explicit, ref_sig, artifacts, how_to_pair)
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
    results = [_judge(Path(path), cases, reference_out, stats, pool_mask, ref_sig, tolerances, explicit, how_to_pair) for path in artifacts]
    return Comparison(
        reference=str(reference), reference_kind=ref_info.kind, cases=tuple(label for label, _ in cases),
        samples=n, results=tuple(results), reference_stats=stats,
    )


def _check_explicit(explicit: dict[str, str], ref_sig, artifacts, how_to_pair: str) -> None:
    """An explicit pair must name a reference input or output; a typo is bad input, not a silent no-op."""
    known = [t.name for t in ref_sig.inputs] + [t.name for t in ref_sig.outputs]
    unknown = [ref for ref in explicit if ref not in known]
    if unknown:
        raise ModelError(
            f"cannot pair {unknown[0]!r}: the reference has no input or output of that name (it has: {', '.join(known)}). "
            f"Pair a reference name with an artifact's, e.g. {pair_syntax({known[-1]: explicit[unknown[0]]}, how_to_pair)}"
        )


def _judge(path, cases, reference_out, stats, pool_mask, ref_sig, tolerances, explicit, how_to_pair) -> ArtifactParity:
    try:
        info = inspect_artifact(path, run=False)
    except PipelineError as exc:
        return ArtifactParity(str(path), "?", "", "error", message=str(exc), exit_code=exc.exit_code)
    variant = info.details.get("precision", "")
    try:
        sig = info.serving
        in_pairs = pair_names([t.name for t in ref_sig.inputs], [t.name for t in sig.inputs], "inputs", explicit, how_to_pair=how_to_pair)
        base, lookup = _tolerance_for(info, tolerances)
        runner = open_runner(info)
        raws = []
        for _, feeds in cases:
            raws.append({k: np.asarray(v) for k, v in runner({in_pairs[k]: v for k, v in feeds.items()}).items()})
        # Outputs pair once the first case ran: the shapes both sides produced can pair them.
        shapes = ({k: np.shape(v) for k, v in reference_out[0].items()}, {k: np.shape(v) for k, v in raws[0].items()})
        out_pairs, rules = pairing([t.name for t in ref_sig.outputs], [t.name for t in sig.outputs], "outputs", explicit, shapes, how_to_pair)
        produced = [{ref: raw[art] for ref, art in out_pairs.items() if art in raw} for raw in raws]
        del raws
    except PipelineError as exc:
        return ArtifactParity(str(path), info.kind, variant, "error", message=str(exc), exit_code=exc.exit_code)
    except Exception as exc:  # the artifact's runtime refused it: that is its verdict
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return ArtifactParity(str(path), info.kind, variant, "error", message=f"{type(exc).__name__} while running it: {first}", exit_code=1)
    steps = {ref: runner.output_steps[art] for ref, art in out_pairs.items() if art in (getattr(runner, "output_steps", None) or {})}
    parity = evaluate([label for label, _ in cases], reference_out, produced, lookup, steps, stats, pool_mask)
    parity = judge_runtime_precision(parity, getattr(runner, "precision", None))
    return ArtifactParity(
        str(path), info.kind, variant, "passed" if parity["passed"] else "failed",
        tolerance=dataclasses.asdict(base), parity=parity, paired=out_pairs, paired_by=rules,
    )
