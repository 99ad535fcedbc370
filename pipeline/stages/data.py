"""Stage `data`: the samples parity runs on (and quantizers calibrate with).

The pool holds N samples per input. Parity cases are batches cut from it: first one
batch per configured batch size (batch 1 and an odd batch > 1 by default, which
catches code that assumes batch 1), then the whole pool in chunks of the largest
size, so classifier agreement and accuracy cover every sample exactly once.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.spec import InputSpec, ModelConfig
from pipeline.errors import ConfigError, Problem
from pipeline.records import ParityData

POOL_CASE_PREFIX = "pool"


def _sample_shape(spec: InputSpec) -> tuple[int, ...]:
    return tuple(spec.shape[1:]) if spec.batched else ()


def _synthetic(config: ModelConfig) -> dict[str, np.ndarray]:
    data = config.data
    rng = np.random.default_rng(0 if data.seed is None else data.seed)
    pool = {}
    for spec in config.inputs:
        dist = data.synthetic_for(spec.name)
        size = (data.samples,) + _sample_shape(spec)
        if dist.distribution == "integers":
            values = rng.integers(int(dist.low), int(dist.high), size=size)
        elif dist.distribution == "normal":
            values = rng.normal(dist.mean, dist.std, size=size)
        elif spec.dtype == "bool":
            values = rng.random(size) < 0.5
        else:
            values = rng.uniform(dist.low, dist.high, size=size)
        pool[spec.name] = values.astype(_numpy_dtype(spec.dtype))
    return pool


def _numpy_dtype(dtype: str) -> Any:
    return np.float32 if dtype == "bfloat16" else np.dtype(dtype)


def _check_arrays(config: ModelConfig, arrays: dict[str, np.ndarray], origin: str, key: str) -> dict[str, np.ndarray]:
    """Arrays from a file or generator must fit the signature: say which input and what was expected."""
    problems = []
    out = {}
    for spec in config.inputs:
        where = f"{key} -> input '{spec.name}'"
        if spec.name not in arrays:
            problems.append(Problem(str(config.file), None, key, f"{origin} has no array for input '{spec.name}'; it has: {', '.join(sorted(arrays)) or 'nothing'}"))
            continue
        arr = np.asarray(arrays[spec.name])
        want = _sample_shape(spec)
        got = arr.shape[1:] if spec.batched else arr.shape[1:]
        if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
            problems.append(Problem(str(config.file), None, key, f"{where}: samples have shape {list(got)} (array {list(arr.shape)}); expected [N, {', '.join(map(str, want))}] to match the input signature {list(spec.shape)}"))
            continue
        wanted_dtype = np.dtype(_numpy_dtype(spec.dtype))
        if arr.dtype.kind != wanted_dtype.kind and not (arr.dtype.kind in "iu" and wanted_dtype.kind in "iu"):
            problems.append(Problem(str(config.file), None, key, f"{where}: dtype {arr.dtype} does not fit the input's {spec.dtype}"))
            continue
        out[spec.name] = arr.astype(wanted_dtype)
    sizes = {len(a) for a in out.values()}
    if len(sizes) > 1:
        problems.append(Problem(str(config.file), None, key, f"{origin}: inputs have different sample counts {sorted(sizes)}"))
    if not problems and sizes and min(sizes) < max(config.data.batch_sizes):
        problems.append(Problem(str(config.file), None, key, f"{origin} holds {min(sizes)} samples; at least {max(config.data.batch_sizes)} are needed (the largest of data.batch_sizes)"))
    if problems:
        raise ConfigError(problems)
    return out


def _labels(config: ModelConfig, labels: Any, n: int, origin: str) -> np.ndarray | None:
    if isinstance(labels, dict):  # {output: labels}: only the classifier output's are class labels
        labels = labels.get(config.data.classifier) if config.data.classifier else None
    if labels is None:
        return None
    labels = np.asarray(labels).reshape(-1)
    if len(labels) < n:
        raise ConfigError([Problem(str(config.file), None, "data", f"{origin}: {len(labels)} labels for {n} samples")])
    return labels[:n].astype(np.int64)


def make_parity_data(config: ModelConfig) -> ParityData:
    data = config.data
    labels = None
    if data.kind == "synthetic":
        pool = _synthetic(config)
    elif data.kind == "npz":
        with np.load(data.npz, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        pool = _check_arrays(config, arrays, f"data file {data.npz}", "data.npz")
        if data.labels:
            if data.labels not in arrays:
                raise ConfigError([Problem(str(config.file), None, "data.labels", f"{data.npz} has no array '{data.labels}'; it has: {', '.join(sorted(arrays))}")])
            labels = arrays[data.labels]
    else:
        from pipeline.stages.load import import_ref

        generator = import_ref(data.generator, "data generator")
        kwargs = {"n": data.samples} if data.seed is None else {"n": data.samples, "seed": data.seed}
        produced = generator(**kwargs)
        arrays, labels = produced if isinstance(produced, tuple) else (produced, None)
        pool = _check_arrays(config, arrays, f"data generator {data.generator}", "data.generator")
    n = min(len(a) for a in pool.values())
    pool = {k: v[: min(n, data.samples)] for k, v in pool.items()}
    n = min(n, data.samples)
    return ParityData(pool=pool, labels=_labels(config, labels, n, "labels"), cases=tuple(make_cases(config, pool, n)))


def _slice(config: ModelConfig, pool: dict[str, np.ndarray], start: int, size: int) -> dict[str, np.ndarray]:
    n = len(next(iter(pool.values())))
    idx = np.arange(start, start + size) % n
    return {spec.name: (pool[spec.name][idx] if spec.batched else pool[spec.name][start % n]) for spec in config.inputs}


def make_cases(config: ModelConfig, pool: dict[str, np.ndarray], n: int) -> list[tuple[str, dict[str, np.ndarray]]]:
    sizes = config.data.batch_sizes
    cases, offset = [], 0
    for size in sizes:
        cases.append((f"batch{size}", _slice(config, pool, offset, size)))
        offset += size
    if any(spec.batched for spec in config.inputs):
        chunk = max(sizes)
        fixed = any(spec.fixed_batch is not None for spec in config.inputs)
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            if fixed and size != chunk:
                break  # a model with a fixed batch cannot take a short last chunk
            cases.append((f"{POOL_CASE_PREFIX}[{start}:{start + size}]", _slice(config, pool, start, size)))
    return cases


def is_pool_case(label: str) -> bool:
    return label.startswith(POOL_CASE_PREFIX)
