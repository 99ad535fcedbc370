"""IREE: a StableHLO file compiled for this machine's CPU and run by the IREE runtime.

The xla target writes one `stablehlo.mlir` per compiled static shape, each beside a
`signature.json` that names every argument of `main` (the model's inputs, then, in
the `parameters` form, the weights, read from a `.npz`) and every result. The runner
compiles each shape's file once (`iree-compile`, llvm-cpu for the host CPU, in a child
process: a compiler crash is an error of this file, not of the run) and feeds a batch
to the module compiled at its shape; a batch no shape was compiled at runs in chunks of
the largest compiled batch, the last one padded.

IREE is optional (`pip install 'tfship[iree]'`): nothing here imports it at import time.
"""
from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import ConversionError, IntegrityError, TargetUnavailable
from pipeline.runtimes.base import BatchUnsupported, Call, Runner, join_batches, split_batches

IREE_EXTRA = "pip install 'tfship[iree]'"
SIGNATURE_FILE = "signature.json"
DRIVER = "local-task"
INPUT_FLAGS = ("--iree-input-type=stablehlo",)
TARGET_FLAGS = ("--iree-hal-target-device=local", "--iree-hal-local-target-device-backends=llvm-cpu", "--iree-llvmcpu-target-cpu=host")
# IREE 3.13 crashes (SIGSEGV in the stream conversion of scf.while) on the while loops
# TensorFlow emits for RNNs, once its loop-invariant code motion has rotated the loop
# and the canonicalizer dropped a loop-carried value the body only writes. A file with
# a loop is therefore compiled in three steps: up to global optimization, loops lowered
# to plain control flow (upstream `convert-scf-to-cf`), then the rest.
LOOP_MARK = b"stablehlo.while"
STAGED_PASS = "builtin.module(convert-scf-to-cf)"
STAGED_PHASE = "global-optimization"
ERROR_TAIL_CHARS = 2000
CACHE_BYTES = 512 << 20  # compiled modules kept per process (build compiles, parity reuses)


def require_iree(what: str = "the xla target's `stablehlo` variant") -> None:
    """TargetUnavailable naming the extra when IREE is not installed."""
    try:
        import iree.compiler.tools  # noqa: F401
        import iree.runtime  # noqa: F401
    except ImportError as exc:
        raise TargetUnavailable(
            f"IREE is not installed, so {what} cannot be compiled or run ({exc.name or exc}). Install it with `{IREE_EXTRA}`."
        ) from exc


def iree_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("iree-base-compiler")
    except PackageNotFoundError:
        return "unknown"


def _tool(name: str) -> str:
    from iree.compiler.tools.binaries import find_tool

    return find_tool(name)


@dataclass(frozen=True)
class CompiledModule:
    """One StableHLO file compiled by iree-compile."""

    vmfb: bytes
    seconds: float
    staged: bool  # compiled in three steps (see STAGED_PASS)
    commands: tuple[str, ...]  # what ran, with the file's own name and no machine paths

    def record(self) -> dict:
        return {"vmfb_bytes": len(self.vmfb), "compile_seconds": round(self.seconds, 3), "staged": self.staged, "commands": list(self.commands)}


_CACHE: OrderedDict[tuple, CompiledModule] = OrderedDict()


def compile_commands(name: str, staged: bool) -> list[list[str]]:
    """The iree-compile / iree-opt argument lists for a file called `name`, as a user
    would run them (the tools the extra installs, on PATH; `shlex.join` for a shell)."""
    flags = [*INPUT_FLAGS, *TARGET_FLAGS]
    if not staged:
        return [["iree-compile", name, *flags, "-o", "module.vmfb"]]
    return [
        ["iree-compile", name, *flags, f"--compile-to={STAGED_PHASE}", "-o", "optimized.mlir"],
        ["iree-opt", f"--pass-pipeline={STAGED_PASS}", "optimized.mlir", "-o", "lowered.mlir"],
        ["iree-compile", f"--compile-from={STAGED_PHASE}", "lowered.mlir", *TARGET_FLAGS, "-o", "module.vmfb"],
    ]


def compile_stablehlo(path: Path, label: str | None = None) -> CompiledModule:
    """Compile a StableHLO file for this machine's CPU; ConversionError with IREE's own
    message when it cannot (`label` names the file in it). Cached per process by content."""
    require_iree()
    path = Path(path)
    content = path.read_bytes()
    key = (hashlib.sha256(content).hexdigest(), iree_version(), TARGET_FLAGS)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    staged = LOOP_MARK in content
    del content
    label = label or path.name
    commands = compile_commands(path.name, staged)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tfship-iree-") as tmp:
        for step, command in enumerate(commands):
            argv = [_tool(command[0]), *command[1:]]
            if step == 0:
                argv[1] = str(path.resolve())  # the source (the steps run in `tmp`); each later step reads the one before it
            done = subprocess.run(argv, cwd=tmp, capture_output=True, text=True)
            if done.returncode != 0:
                what = f"crashed (signal {-done.returncode})" if done.returncode < 0 else f"failed (exit {done.returncode})"
                tail = _diagnostics(done.stderr, path)
                raise ConversionError(f"IREE {iree_version()} cannot compile {label}: `{shlex.join(command)}` {what}:\n{tail}")
        vmfb = (Path(tmp) / "module.vmfb").read_bytes()
    module = CompiledModule(vmfb, time.perf_counter() - start, staged, tuple(shlex.join(c) for c in commands))
    _CACHE[key] = module
    while sum(len(m.vmfb) for m in _CACHE.values()) > CACHE_BYTES and len(_CACHE) > 1:
        _CACHE.popitem(last=False)
    return module


def _diagnostics(stderr: str, path: Path) -> str:
    """IREE's diagnostics without the stack dump of a crash, the file named by its own name."""
    lines = [line for line in stderr.strip().splitlines() if not line.lstrip().startswith("#")]
    text = "\n".join(lines).replace(str(path.resolve()), path.name).replace(str(path), path.name)
    return text[-ERROR_TAIL_CHARS:]


# --------------------------------------------------------------------------- signatures

# StableHLO element types of the dtypes a model's inputs and weights may have.
MLIR_TYPES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float64": "f64", "int8": "i8", "int16": "i16",
              "int32": "i32", "int64": "i64", "uint8": "ui8", "uint16": "ui16", "uint32": "ui32", "uint64": "ui64", "bool": "i1"}
NUMPY_TYPES = {mlir: dtype for dtype, mlir in MLIR_TYPES.items()}


def tensor_type(shape, dtype: str) -> str | None:
    """`tensor<1x32x32x3xf32>` for a shape and numpy dtype name (None for a dtype with no entry)."""
    element = MLIR_TYPES.get(dtype)
    return None if element is None else "tensor<" + "".join(f"{d}x" for d in shape) + element + ">"


def parse_tensor_type(text: str) -> tuple[tuple, str]:
    """(shape, numpy dtype name) of `tensor<1x?x3xf32>` (None for a dynamic dimension)."""
    body = text.strip()[len("tensor<"):-1].split(",")[0]
    *dims, element = body.split("x")
    return tuple(None if d == "?" else int(d) for d in dims), NUMPY_TYPES.get(element, element)


def main_types(text: str) -> tuple[list[str], list[str]]:
    """The argument and result types of the entry function `main` in MLIR text: StableHLO
    (`func.func @main(...) -> ...`) or an IREE module's declaration (`func @main(...) -> (...)`)."""
    import re

    match = re.search(r"func (?:public )?@main\((.*?)\)\s*->\s*(.*?)(?:\{\s*$|$)", text, flags=re.S | re.M)
    if match is None:
        raise ValueError("no `func @main(...)` entry function")
    find = re.compile(r"tensor<[^>]*>")
    return find.findall(match.group(1)), find.findall(match.group(2))


def signature_from_types(folder: Path, arguments: list[str], results: list[str]) -> "Signature":
    """A signature for a file tfship did not write (no signature.json): every argument is an
    input named arg<i>, every result result<i>."""
    def entries(types, prefix, kind=None):
        out = []
        for i, t in enumerate(types):
            shape, dtype = parse_tensor_type(t)
            out.append({"index": i, **({"kind": kind} if kind else {}), "name": f"{prefix}{i}", "shape": list(shape), "dtype": dtype})
        return out

    return Signature(Path(folder), {"function": "main", "form": "unknown", "arguments": entries(arguments, "arg", "input"), "results": entries(results, "result")})


@dataclass(frozen=True)
class Signature:
    """`signature.json` of one compiled shape: main's arguments and results."""

    folder: Path
    data: dict

    @classmethod
    def read(cls, folder: Path) -> "Signature":
        path = Path(folder) / SIGNATURE_FILE
        if not path.is_file():
            raise IntegrityError(f"{path} is missing: without it the arguments of {folder / 'stablehlo.mlir'} are unknown; re-export the xla target")
        return cls(Path(folder), json.loads(path.read_text()))

    @property
    def inputs(self) -> list[dict]:
        return [a for a in self.data["arguments"] if a["kind"] == "input"]

    @property
    def weights(self) -> list[dict]:
        return [a for a in self.data["arguments"] if a["kind"] == "weight"]

    @property
    def results(self) -> list[dict]:
        return list(self.data["results"])

    @property
    def batch(self) -> int | None:
        return self.data.get("batch")

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {a["name"]: tuple(a["shape"]) for a in self.inputs}

    def weight_arrays(self) -> list[np.ndarray]:
        """The weights in argument order, from the `.npz` the signature names."""
        if not self.weights:
            return []
        path = (self.folder / self.data["weights_file"]).resolve()
        if not path.is_file():
            raise IntegrityError(f"{path} is missing: {self.folder / SIGNATURE_FILE} binds {len(self.weights)} weights from it; re-export the xla target")
        with np.load(path, allow_pickle=False) as archive:
            arrays = []
            for arg in self.weights:
                value = archive[arg["key"]]
                if list(value.shape) != list(arg["shape"]) or value.dtype.name != arg["dtype"]:
                    raise IntegrityError(f"{path}[{arg['key']}] is {value.dtype.name}{list(value.shape)}; {SIGNATURE_FILE} expects {arg['dtype']}{arg['shape']} for argument {arg['index']}")
                arrays.append(value)
        return arrays


def signatures_in(ir_dir: Path) -> list[Signature]:
    """Every compiled shape under `ir/` (one folder per shape)."""
    folders = sorted(p.parent for p in Path(ir_dir).glob(f"*/{SIGNATURE_FILE}"))
    if not folders:
        raise IntegrityError(f"no {SIGNATURE_FILE} under {ir_dir}: these are not StableHLO files tfship wrote; re-export the xla target")
    return [Signature.read(f) for f in folders]


# --------------------------------------------------------------------------- runtime


def device(threads: int | None = None):
    """A local-task device; `threads` sets its worker count (IREE reads the flag when a
    device is created)."""
    import iree.runtime as rt

    if threads:
        rt.flags.parse_flags(f"--task_topology_group_count={threads}")
    return rt.get_driver(DRIVER).create_default_device()


class LoadedModule:
    """One compiled shape, loaded: its function and its weights already on the device."""

    def __init__(self, signature: Signature, compiled: CompiledModule, device):
        import iree.runtime as rt

        self.signature = signature
        self.compiled = compiled
        self._device = device
        self._context = rt.SystemContext(config=rt.Config(device=device))
        vm_module = rt.VmModule.copy_buffer(self._context.instance, compiled.vmfb)
        self._context.add_vm_module(vm_module)
        self._main = self._context.modules[vm_module.name][signature.data.get("function", "main")]
        self._weights = [rt.asdevicearray(device, w) for w in signature.weight_arrays()]

    def call(self, feeds: dict[str, np.ndarray]) -> Call:
        import iree.runtime as rt

        args = [rt.asdevicearray(self._device, np.asarray(feeds[a["name"]], dtype=a["dtype"], order="C")) for a in self.signature.inputs] + self._weights
        main, results = self._main, self.signature.results

        def fetch(raw) -> dict[str, np.ndarray]:
            values = raw if isinstance(raw, (list, tuple)) else [raw]
            return {r["name"]: np.asarray(v.to_host() if hasattr(v, "to_host") else v) for r, v in zip(results, values)}

        return Call(lambda: main(*args), fetch, "IREE module main() on device arrays (weights bound once)", self)


class IreeRunner(Runner):
    """The StableHLO files of `ir/`, each compiled by IREE for this CPU and run in the
    IREE runtime. Shapes compile when first needed."""

    runtime = "IREE"

    def __init__(self, ir_dir: Path, threads: int | None = None):
        super().__init__()
        require_iree()
        self.path = Path(ir_dir)
        self.signatures = signatures_in(self.path)
        self._device = device(threads)
        self._modules: dict[Path, LoadedModule] = {}
        self.threads = {"runtime": "IREE", "driver": DRIVER, "task_topology_group_count": threads or "default"}

    def module(self, signature: Signature) -> LoadedModule:
        if signature.folder not in self._modules:
            label = f"{self.path.name}/{signature.folder.name}/stablehlo.mlir"
            compiled = compile_stablehlo(signature.folder / "stablehlo.mlir", label)
            try:
                self._modules[signature.folder] = LoadedModule(signature, compiled, self._device)
            except (RuntimeError, ValueError) as exc:  # the runtime refuses the module
                raise ConversionError(f"IREE {iree_version()} compiled {label} but cannot load it: {exc}") from exc
        return self._modules[signature.folder]

    def compiled(self) -> dict[str, dict]:
        """What compiling each shape took (only shapes compiled so far)."""
        return {f.name: m.compiled.record() for f, m in sorted(self._modules.items())}

    def _exact(self, inputs: dict[str, np.ndarray]) -> Signature | None:
        shapes = {n: tuple(np.shape(v)) for n, v in inputs.items()}
        return next((s for s in self.signatures if all(shapes.get(n) == shape for n, shape in s.input_shapes().items())), None)

    def _same_sample_shape(self, inputs: dict[str, np.ndarray]) -> list[Signature]:
        """Signatures compiled at these inputs' non-batch shape, largest batch first."""
        shapes = {n: tuple(np.shape(v)) for n, v in inputs.items()}
        found = []
        for s in self.signatures:
            if s.batch is None:
                continue
            batched = [a for a in s.inputs if a.get("batched", True)]
            if all(shapes.get(a["name"], ())[1:] == tuple(a["shape"][1:]) for a in batched) and all(
                shapes.get(a["name"]) == tuple(a["shape"]) for a in s.inputs if not a.get("batched", True)
            ):
                found.append(s)
        return sorted(found, key=lambda s: -s.batch)

    def prepare(self, inputs: dict[str, np.ndarray], chunked: bool = True) -> Call:
        exact = self._exact(inputs)
        if exact is not None:
            return self.module(exact).call(inputs)
        candidates = self._same_sample_shape(inputs)
        compiled = ", ".join(s.folder.name for s in self.signatures)
        if not candidates:
            shapes = {n: list(np.shape(v)) for n, v in inputs.items()}
            raise BatchUnsupported(f"no StableHLO was compiled at input shapes {shapes} (compiled: {compiled})")
        if not chunked:
            raise BatchUnsupported(f"compiled at {compiled} only")
        signature = candidates[0]
        module = self.module(signature)
        parts = split_batches(inputs, signature.batch, pad=True)
        calls = [(module.call(chunk), rows) for chunk, rows in parts]

        def run():
            return [call.outputs() for call, _ in calls]

        return Call(run, lambda outs: join_batches(outs, [rows for _, rows in calls]), f"IREE module main() in chunks of {signature.batch}")


class IreeFileRunner(Runner):
    """One `.mlir` (compiled here) or `.vmfb` file, with its signature.json when one lies
    beside it (argument names, weights), else every argument an input (`tfship inspect`)."""

    runtime = "IREE"

    def __init__(self, path: Path, signature: Signature):
        super().__init__()
        require_iree(f"{Path(path).name}")
        self.path = Path(path)
        if self.path.suffix == ".vmfb":
            compiled = CompiledModule(self.path.read_bytes(), 0.0, False, ())
        else:
            compiled = compile_stablehlo(self.path)
        self.module = LoadedModule(signature, compiled, device())
        self.threads = {"runtime": "IREE", "driver": DRIVER}

    def prepare(self, inputs: dict[str, np.ndarray], chunked: bool = True) -> Call:
        return self.module.call(inputs)

