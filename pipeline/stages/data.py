"""Stage `data`: the samples parity runs on (and quantizers calibrate with).

The pool holds N samples per input. Parity cases are batches cut from it: first one
batch per configured batch size (batch 1 and an odd batch > 1 by default, which
catches code that assumes batch 1), then the whole pool in chunks of the largest
size, so classifier agreement and accuracy cover every sample exactly once.

A model with dynamic non-batch dimensions (sequence length, image size) is tested at
every shape set of `config.shape_sets`: each set gets its own samples and the batch
cases, labelled `seq=7/batch1`; the typical (middle) set also holds the pool, which
calibrates quantizers and carries classifier agreement.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.spec import InputSpec, ModelConfig
from pipeline.errors import ConfigError, Problem
from pipeline.parity import SHAPE_SEPARATOR
from pipeline.records import ParityData

POOL_CASE_PREFIX = "pool"
SYNTHETIC_CHUNK_BYTES = 64 << 20


def shape_label(dims: dict[str, int]) -> str:
    """`seq=7,width=32`: how reports and case labels name a shape set ('' without one)."""
    return ",".join(f"{name}={value}" for name, value in dims.items())


def primary_shape_set(config: ModelConfig) -> dict[str, int]:
    """The typical shape set: the pool, calibration and classifier agreement use it."""
    sets = config.shape_sets
    return sets[len(sets) // 2]


def _synthetic(config: ModelConfig, dims: dict[str, int], index: int = 0) -> dict[str, np.ndarray]:
    data = config.data
    rng = np.random.default_rng((0 if data.seed is None else data.seed) + index)
    pool = {}
    for spec in config.inputs:
        dist = data.synthetic_for(spec.name)
        shape = spec.sample_shape(dims)
        values = np.empty((data.samples,) + shape, dtype=_numpy_dtype(spec.dtype))
        # Drawn a few samples at a time (the generator's stream is the same however it is
        # cut), so the float64 draws never hold the whole pool.
        step = max(1, SYNTHETIC_CHUNK_BYTES // (8 * max(1, int(np.prod(shape, dtype=np.int64)))))
        for start in range(0, data.samples, step):
            size = (min(step, data.samples - start),) + shape
            if dist.distribution == "integers":
                chunk = rng.integers(int(dist.low), int(dist.high), size=size)
            elif dist.distribution == "normal":
                chunk = rng.normal(dist.mean, dist.std, size=size)
            elif spec.dtype == "bool":
                chunk = rng.random(size) < 0.5
            else:
                chunk = rng.uniform(dist.low, dist.high, size=size)
            values[start:start + size[0]] = chunk
        pool[spec.name] = values
    return pool


def _numpy_dtype(dtype: str) -> Any:
    if dtype == "string":  # TensorFlow strings arrive as bytes/str objects
        return object
    return np.float32 if dtype == "bfloat16" else np.dtype(dtype)


def _problem(config: ModelConfig, key: tuple, message: str) -> Problem:
    """A data problem at the config's line for `key` (a key path such as ("data", "npz"))."""
    from pipeline.config.yamlsrc import format_key
    from pipeline.usercode import config_line

    return Problem(str(config.file), config_line(config.file, key), format_key(key), message)


def _dims_of(config: ModelConfig, arrays: dict[str, np.ndarray], origin: str, key: tuple) -> dict[str, int]:
    """The dynamic dimensions' values as the arrays have them (npz data has one shape);
    a name shared by inputs must have one value."""
    seen: dict[str, int] = {}
    problems = []
    for spec in config.inputs:
        arr = arrays.get(spec.name)
        if arr is None or np.ndim(arr) != len(spec.shape):
            continue  # reported by _check_arrays
        for axis, name in spec.dynamic_dims:
            value = int(np.shape(arr)[axis])
            if seen.setdefault(name, value) != value:
                problems.append(_problem(config, key, f"{origin}: dimension '{name}' is {seen[name]} in one input and {value} in input '{spec.name}'; inputs that share a dimension name must agree"))
    if problems:
        raise ConfigError(problems)
    return seen


def _check_arrays(config: ModelConfig, arrays: dict[str, np.ndarray], origin: str, key: tuple, dims: dict[str, int], available: list[str] | None = None) -> dict[str, np.ndarray]:
    """Arrays from a file or generator must fit the signature: say which input and what was expected.
    `available`: every array the source holds, when only some were read."""
    problems = []
    out = {}
    for spec in config.inputs:
        where = f"{origin} -> input '{spec.name}'"
        if spec.name not in arrays:
            problems.append(_problem(config, key, f"{origin} has no array for input '{spec.name}'; it has: {', '.join(sorted(available if available is not None else arrays)) or 'nothing'}"))
            continue
        try:
            arr = np.asarray(arrays[spec.name])
        except Exception as exc:  # ragged lists and the like
            problems.append(_problem(config, key, f"{where}: not an array ({type(exc).__name__}: {exc}); expected a NumPy array [N, ...]"))
            continue
        want = spec.sample_shape({name: dims.get(name, -1) for _, name in spec.dynamic_dims})
        got = arr.shape[1:]
        if arr.ndim == 0 or len(got) != len(want) or any(w != g for w, g in zip(want, got)):
            at = f" at {shape_label(dims)}" if dims else ""
            problems.append(_problem(config, key, f"{where}: samples have shape {list(got)} (array {list(arr.shape)}); expected [N, {', '.join(map(str, want))}]{at} to match the input signature {list(spec.shape)}"))
            continue
        wanted_dtype = np.dtype(_numpy_dtype(spec.dtype))
        string_ok = spec.dtype == "string" and arr.dtype.kind in "USO"
        if not string_ok and (arr.dtype.kind == "O" or (arr.dtype.kind != wanted_dtype.kind and not (arr.dtype.kind in "iu" and wanted_dtype.kind in "iu"))):
            problems.append(_problem(config, key, f"{where}: dtype {arr.dtype} does not fit the input's {spec.dtype}"))
            continue
        if arr.dtype.kind == "f" and not config.data.allow_nonfinite:
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            if bad:
                problems.append(_problem(
                    config, key,
                    f"{where}: {bad} NaN/Inf value(s); parity on non-finite inputs proves nothing. "
                    "Fix the data, or set `data.allow_nonfinite: true` if the model is meant to take them",
                ))
                continue
        out[spec.name] = arr if string_ok else arr.astype(wanted_dtype)
    sizes = {len(a) for a in out.values()}
    if len(sizes) > 1:
        problems.append(_problem(config, key, f"{origin}: inputs have different sample counts {sorted(sizes)}"))
    if not problems and sizes and min(sizes) < max(config.data.batch_sizes):
        problems.append(_problem(config, key, f"{origin} holds {min(sizes)} samples; at least {max(config.data.batch_sizes)} are needed (the largest of data.batch_sizes)"))
    if problems:
        raise ConfigError(problems)
    return out


def _labels(config: ModelConfig, labels: Any, n: int, origin: str, key: tuple) -> np.ndarray | None:
    if isinstance(labels, dict):  # {output: labels}: only the classifier output's are class labels
        labels = labels.get(config.data.classifier) if config.data.classifier else None
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        raise ConfigError([_problem(config, key, f"{origin}: labels have dtype {labels.dtype}; expected integer class ids")])
    labels = labels.reshape(-1)
    if len(labels) < n:
        raise ConfigError([_problem(config, key, f"{origin}: {len(labels)} labels for {n} samples")])
    return labels[:n].astype(np.int64)


POOL_MEMORY_SHARE = 0.5  # the pool, its reference outputs and the runtimes' copies must fit beside it


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def pool_bytes(config: ModelConfig) -> int:
    """Bytes the samples take over every shape set (strings counted at 64 bytes per element)."""
    total = 0
    for dims in config.shape_sets:
        for spec in config.inputs:
            elements = config.data.samples
            for d in spec.sample_shape(dims):
                elements *= max(int(d), 1)
            itemsize = 64 if spec.dtype == "string" else np.dtype(_numpy_dtype(spec.dtype)).itemsize
            total += elements * itemsize
    return total


def check_pool_memory(config: ModelConfig) -> None:
    """Refuse a pool that cannot fit in memory before allocating any of it."""
    if config.data.kind == "npz":
        return  # its size is the file's
    need = pool_bytes(config)
    available = _available_memory()
    if available is not None and need > POOL_MEMORY_SHARE * available:
        raise ConfigError([_problem(
            config, ("data", "samples"),
            f"{config.data.samples} samples of {', '.join(i.name for i in config.inputs)} need {need / 2**30:.1f} GiB; "
            f"{available / 2**30:.1f} GiB of memory is available and at most half of it can go to the pool. "
            f"Fix: lower `data.samples` (at most {int(config.data.samples * POOL_MEMORY_SHARE * available / max(need, 1))} here)",
        )])


def _read_npz(config: ModelConfig) -> tuple[dict[str, np.ndarray], list[str], dict[str, int]]:
    """(arrays, every array's name, each read array's declared length): of the inputs' and
    the labels' arrays only the leading rows a run uses (`data.samples`, at least the
    largest batch size, which the sample-count check compares against).

    Data files come from pull requests too: each array's header is read and checked
    (`pipeline.archives`: no pickle, sizes that agree, no decompression bomb) and the rows to
    read must fit in memory, all before any data is decompressed."""
    from pipeline.archives import ArchiveRefused, NpzReader, bytes_to_read

    data = config.data
    path = data.npz
    key = ("data", "npz")
    rows = max(data.samples, *data.batch_sizes)
    try:
        with NpzReader(path) as npz:
            headers = npz.headers(list(config.input_names) + ([data.labels] if data.labels else []))
            need = bytes_to_read(headers, rows)
            available = _available_memory()
            if available is not None and need > POOL_MEMORY_SHARE * available:
                raise ConfigError([_problem(
                    config, key,
                    f"the {data.samples} samples read from {path} need {need / 2**30:.1f} GiB; {available / 2**30:.1f} GiB of memory "
                    "is available and at most half of it can go to the pool. Fix: lower `data.samples`",
                )])
            return npz.read(headers, rows), npz.names, {name: header.rows for name, header in headers.items()}
    except ArchiveRefused as exc:
        if exc.member is None:
            cause = str(exc)
        else:
            role = f"input '{exc.member}'" if exc.member in config.input_names else f"labels '{exc.member}'"
            raise ConfigError([_problem(config, key, f"refused {path}: {role}: {exc}. Fix: save the data with np.savez (uncompressed), keeping only the samples used")]) from None
    except ConfigError:
        raise
    except Exception as exc:  # a garbage or truncated file: zipfile and NumPy raise many kinds
        from pipeline.usercode import first_line

        cause = first_line(exc) or type(exc).__name__
    raise ConfigError([_problem(
        config, key,
        f"cannot read {path} as a .npz archive: {cause}. Expected named numeric arrays written by np.savez(path, <input>=array, ...)",
    )])


def _generated(config: ModelConfig, dims: dict[str, int]) -> tuple[dict[str, np.ndarray], Any]:
    """Call the user's generator; what it raises or returns wrongly is bad input at `data.generator`."""
    import inspect

    from pipeline.usercode import bad_input, call_user, import_user_ref

    data = config.data
    key = ("data", "generator")
    generator = import_user_ref(config, key, data.generator, "data generator")
    kwargs: dict[str, Any] = {"n": data.samples} if data.seed is None else {"n": data.samples, "seed": data.seed}
    if dims:
        params = inspect.signature(generator).parameters.values()
        if not any(p.name == "dims" or p.kind is p.VAR_KEYWORD for p in params):
            raise ConfigError([_problem(config, key, f"the model has dynamic dimensions ({', '.join(dims)}), so the generator {data.generator} must accept `dims` ({{name: size}}) and make samples of those sizes, e.g. `def generate(n, seed=0, dims=None)`")])
        kwargs["dims"] = dict(dims)
    produced = call_user(config, key, f"data generator '{data.generator}'", generator, **kwargs)
    arrays, labels = produced if isinstance(produced, tuple) and len(produced) == 2 else (produced, None)
    if not isinstance(arrays, dict):
        raise bad_input(
            config, key,
            f"data generator '{data.generator}' returned {type(produced).__name__}; expected a dict {{input name: array [N, ...]}} "
            f"or a pair (that dict, labels). Fix: return {{{', '.join(repr(n) for n in config.input_names)}: ...}}.",
        )
    return arrays, labels


def make_parity_data(config: ModelConfig) -> ParityData:
    data = config.data
    labels = None
    primary = primary_shape_set(config)
    others: list[tuple[dict[str, int], dict[str, np.ndarray]]] = []
    labels_key: tuple = ("data",)
    if data.kind != "npz":
        check_pool_memory(config)
    if data.kind == "synthetic":
        pool = _synthetic(config, primary)
        others = [(dims, _synthetic(config, dims, k + 1)) for k, dims in enumerate(config.shape_sets) if dims != primary]
    elif data.kind == "npz":
        arrays, names, lengths = _read_npz(config)
        primary = _dims_of(config, arrays, f"data file {data.npz}", ("data", "npz"))
        pool = _check_arrays(config, arrays, f"data file {data.npz}", ("data", "npz"), primary, available=names)
        counts = sorted({lengths[name] for name in config.input_names})
        if len(counts) > 1:  # only the leading rows were read: compare what the file declares
            raise ConfigError([_problem(config, ("data", "npz"), f"data file {data.npz}: inputs have different sample counts {counts}")])
        if data.labels:
            labels_key = ("data", "labels")
            if data.labels not in arrays:
                raise ConfigError([_problem(config, labels_key, f"{data.npz} has no array '{data.labels}'; it has: {', '.join(names)}")])
            labels = arrays[data.labels]
    else:
        labels_key = ("data", "generator")
        arrays, labels = _generated(config, primary)
        pool = _check_arrays(config, arrays, f"data generator {data.generator}", labels_key, primary)
        for dims in config.shape_sets:
            if dims != primary:
                produced, _ = _generated(config, dims)
                others.append((dims, _check_arrays(config, produced, f"data generator {data.generator}", labels_key, dims)))
    n = min(len(a) for a in pool.values())
    pool = {k: v[: min(n, data.samples)] for k, v in pool.items()}
    n = min(n, data.samples)
    cases = []
    for dims, arrays in sorted([(primary, pool), *others], key=lambda item: tuple(item[0].values())):
        prefix = shape_label(dims) + SHAPE_SEPARATOR if dims else ""
        size = min(len(a) for a in arrays.values())
        batch_cases = make_cases(config, arrays, size, with_pool=dims == primary)
        cases += [(prefix + label, inputs) for label, inputs in batch_cases]
    return ParityData(pool=pool, labels=_labels(config, labels, n, "labels", labels_key), cases=tuple(cases))


def _slice(config: ModelConfig, pool: dict[str, np.ndarray], start: int, size: int) -> dict[str, np.ndarray]:
    n = len(next(iter(pool.values())))
    # A view of the pool where the case does not wrap around it: the cases cover the whole
    # pool, so copies would hold it twice.
    idx = slice(start, start + size) if start + size <= n else np.arange(start, start + size) % n
    return {spec.name: (pool[spec.name][idx] if spec.batched else pool[spec.name][start % n]) for spec in config.inputs}


def make_cases(config: ModelConfig, pool: dict[str, np.ndarray], n: int, with_pool: bool = True) -> list[tuple[str, dict[str, np.ndarray]]]:
    sizes = config.data.batch_sizes
    cases, offset = [], 0
    for size in sizes:
        cases.append((f"batch{size}", _slice(config, pool, offset, size)))
        offset += size
    if with_pool and any(spec.batched for spec in config.inputs):
        chunk = max(sizes)
        fixed = any(spec.fixed_batch is not None for spec in config.inputs)
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            if fixed and size != chunk:
                break  # a model with a fixed batch cannot take a short last chunk
            cases.append((f"{POOL_CASE_PREFIX}[{start}:{start + size}]", _slice(config, pool, start, size)))
    return cases


def is_pool_case(label: str) -> bool:
    return label.rsplit(SHAPE_SEPARATOR, 1)[-1].startswith(POOL_CASE_PREFIX)

