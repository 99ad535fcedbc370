"""XLA: a SavedModel whose serving function is `jit_compile=True`, the compiler IR
per compiled shape (its StableHLO checked on its own, compiled and run by IREE), a
determinism check and, with `aot: true`, an ahead-of-time compiled CPU object with a
native harness.

Layout of `artifacts/<model>/xla/`:

    saved_model/                 serving_default (jit_compile=True, config names)
    ir/<shape>/stablehlo.mlir    StableHLO of the serving function at one static shape
                                 (`b8`, or `b8-seq32` with dynamic dimensions); `ir_form`:
                                 frozen (weights are constants: `main` takes the inputs) or
                                 parameters (`main` takes the inputs, then the weights)
    ir/<shape>/signature.json    every argument of `main` (input or weight: name, shape,
                                 dtype, `.npz` key) and every result (output name, ...)
    ir/<shape>/hlo.txt           HLO of the same, for reading (no runtime here executes it)
    ir/weights.npz               parameters form: the weights, in argument order
    aot/model.h, model.o, model_metadata.o, model_constants.o, model_makefile.inc
                                 `saved_model_cli aot_compile_cpu` output (static batch `aot_batch`;
                                 TensorFlow 2.19 writes no model_constants.o: the constants are in model.o)
    aot/harness.cc, aot/harness  native program: `harness IN.bin OUT.bin in1,in2 out1,out2`
                                 reads records of inputs (raw, row-major, config order),
                                 writes one record of outputs per input record

Variants: the default (the SavedModel, run by TensorFlow), `stablehlo` (with `iree`:
every `stablehlo.mlir` compiled by IREE for this CPU and run in the IREE runtime), `aot`
(with `aot` and `harness`: the native binary). No shipped file carries a path of the
machine that built it: IR locations keep layer names only, and the harness finds
`libtensorflow_framework.so.2` through LD_LIBRARY_PATH.

The harness links a static XLA CPU runtime compiled once per machine from the
sources in the TensorFlow wheel (`tensorflow/xla_aot_runtime_src`) into the cache
folder `$TFSHIP_CACHE` (default `~/.cache/tfship`), and the wheel's
`libtensorflow_framework.so.2` for Abseil.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline.errors import ConversionError, TargetUnavailable
from pipeline.runtimes.aot import AotHarnessRunner
from pipeline.runtimes.iree import SIGNATURE_FILE
from pipeline.runtimes.savedmodel import SavedModelRunner
from pipeline.target import Artifact, BuildInputs, Target
from pipeline.tolerance import FP32


@dataclass(frozen=True)
class XlaOptions:
    ir_batch_sizes: tuple[int, ...] = ()  # static shapes to dump IR for; default: the config's data.batch_sizes
    # frozen: weights are constants of the IR (`main` takes the model's inputs only);
    # parameters: weights are arguments of `main`, bound from ir/weights.npz by signature.json.
    ir_form: Literal["frozen", "parameters"] = "frozen"
    iree: bool = True  # check the StableHLO itself: compiled and run by IREE (variant `stablehlo`; `pip install 'tfship[iree]'`)
    aot: bool = False  # also compile ahead of time with `saved_model_cli aot_compile_cpu`
    aot_batch: int = 1  # the static batch of the AOT object; the harness runner splits larger batches
    harness: bool = True  # with aot: build the C++ harness so parity covers the native binary (variant `aot`)


CPP_CLASS = "tfship::CompiledModel"
HARNESS_SOURCE = r"""// Runs the ahead-of-time compiled model: reads raw inputs, writes raw outputs.
// usage: harness INPUT.bin OUTPUT.bin in_name1,in_name2 out_name1,out_name2
// INPUT.bin holds one or more records back to back; a record is the inputs in the
// order named, each row-major in its own dtype at the compiled static shape.
// OUTPUT.bin receives one record of outputs per input record, in the order named.
// Many records per run: one process start for a whole parity case.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "model.h"

static std::vector<std::string> Split(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) parts.push_back(item);
  return parts;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: " << argv[0] << " INPUT.bin OUTPUT.bin in1,in2 out1,out2\n";
    return 2;
  }
  tfship::CompiledModel model;
  std::vector<int> args, results;
  for (const std::string& name : Split(argv[3])) {
    int index = model.LookupArgIndex("feed_" + name);
    if (index < 0) { std::cerr << "no input named " << name << "\n"; return 3; }
    args.push_back(index);
  }
  for (const std::string& name : Split(argv[4])) {
    int index = model.LookupResultIndex("fetch_" + name);
    if (index < 0) { std::cerr << "no output named " << name << "\n"; return 5; }
    results.push_back(index);
  }
  std::ifstream in(argv[1], std::ios::binary);
  std::ofstream out(argv[2], std::ios::binary);
  long records = 0;
  while (in.peek() != EOF) {
    for (int index : args) {
      in.read(static_cast<char*>(model.arg_data(index)), model.arg_size(index));
      if (!in) { std::cerr << "input file ends inside record " << records << "\n"; return 3; }
    }
    if (!model.Run()) { std::cerr << "run failed: " << model.error_msg() << "\n"; return 4; }
    for (int index : results) {
      out.write(static_cast<const char*>(model.result_data(index)), model.result_size(index));
    }
    ++records;
  }
  if (records == 0) { std::cerr << "no input records in " << argv[1] << "\n"; return 3; }
  return out ? 0 : 6;
}
"""


# --------------------------------------------------------------------------- AOT helpers


def _saved_model_cli() -> str:
    beside = Path(sys.executable).parent / "saved_model_cli"
    found = str(beside) if beside.exists() else shutil.which("saved_model_cli")
    if not found:
        raise TargetUnavailable("saved_model_cli not found beside the Python interpreter or on PATH; it ships with the tensorflow wheel (reinstall tensorflow)")
    return found


def cache_dir() -> Path:
    return Path(os.environ.get("TFSHIP_CACHE", Path.home() / ".cache" / "tfship"))


def _toolchain() -> dict:
    import tensorflow as tf

    compiler = shutil.which("g++")
    if not compiler:
        raise TargetUnavailable("the xla target's `aot` harness needs g++, which is not on PATH. Install g++, or set `harness: false` to export the AOT header and object only.")
    include = Path(tf.sysconfig.get_include())
    runtime_src = Path(tf.sysconfig.get_lib()) / "xla_aot_runtime_src"
    header = include / "tensorflow" / "compiler" / "tf2xla" / "xla_compiled_cpu_function.h"
    framework = Path(tf.sysconfig.get_lib()) / "libtensorflow_framework.so.2"
    for needed, what in ((header, "XLA AOT headers"), (runtime_src, "XLA AOT runtime sources"), (framework, "libtensorflow_framework.so.2")):
        if not needed.exists():
            raise TargetUnavailable(f"the tensorflow wheel has no {what} ({needed}); the AOT harness cannot be built. Set `harness: false`.")
    # __FILE__ of the wheel's headers and sources names them as `tensorflow/...`: no object
    # or binary carries the path of the venv that built it.
    flags = [f for f in tf.sysconfig.get_compile_flags() if not f.startswith("-I")] + [f"-ffile-prefix-map={tf.sysconfig.get_lib()}=tensorflow"]
    return {"cxx": compiler, "include": include, "runtime_src": runtime_src, "framework": framework, "flags": flags, "version": tf.__version__}


# Kernels a float32 model links; the other dtypes' kernels are compiled only if the link asks for them.
_FLOAT32_KERNELS = ("dot_lib_f32.cc", "convolution_lib_f32_2d.cc")


def _runtime_sources(src: Path, everything: bool) -> list[Path]:
    files = sorted(src.rglob("*.cc"))
    if everything:
        return files
    return [f for f in files if not f.name.startswith(("dot_lib_", "convolution_lib_")) or f.name in _FLOAT32_KERNELS]


def runtime_library(chain: dict, everything: bool = False) -> Path:
    """Static XLA CPU runtime for AOT objects, compiled once per machine and cached."""
    key = hashlib.sha256(json.dumps([chain["version"], str(chain["runtime_src"]), chain["flags"]]).encode()).hexdigest()[:12]
    folder = cache_dir() / "xla_aot_runtime" / f"tf{chain['version']}-{key}"
    objects = folder / "objects"
    objects.mkdir(parents=True, exist_ok=True)
    sources = _runtime_sources(chain["runtime_src"], everything)

    def compile_one(source: Path) -> Path:
        target = objects / (str(source.relative_to(chain["runtime_src"])).replace("/", "__") + ".o")
        if target.exists():
            return target
        partial = target.with_suffix(".o.partial")
        cmd = [chain["cxx"], "-c", "-O2", "-w", *chain["flags"], f"-I{chain['runtime_src']}", f"-I{chain['include']}", str(source), "-o", str(partial)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise ConversionError(f"compiling the XLA AOT runtime source {source} failed:\n{result.stderr[-2000:]}")
        partial.rename(target)
        return target

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        built = list(pool.map(compile_one, sources))
    library = folder / ("libtf_xla_runtime_all.a" if everything else "libtf_xla_runtime.a")
    if not library.exists():
        partial = library.with_suffix(".a.partial")
        partial.unlink(missing_ok=True)
        subprocess.run(["ar", "rcs", str(partial), *map(str, built)], check=True, capture_output=True)
        partial.rename(library)
    return library


def _aot_objects(aot_dir: Path) -> list[str]:
    """The object files of the AOT compile: TensorFlow 2.21 puts the constants in
    model_constants.o; 2.19 keeps them in model.o (measured: 2.19.1 writes no such file)."""
    return ["model.o", "model_metadata.o"] + (["model_constants.o"] if (aot_dir / "model_constants.o").exists() else [])


def build_harness(aot_dir: Path) -> dict:
    """Compile aot/harness.cc against the AOT object; returns what was run, with the
    machine's folders named by what they are ($TF_INCLUDE, $TF_LIB, $TFSHIP_CACHE).

    No rpath: the binary would carry the venv's path. It finds
    libtensorflow_framework.so.2 through LD_LIBRARY_PATH (the runner sets it)."""
    chain = _toolchain()
    (aot_dir / "harness.cc").write_text(HARNESS_SOURCE)
    start = time.perf_counter()

    def link(library: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
        cmd = [
            chain["cxx"], "-O2", "-w", *chain["flags"], f"-I{chain['include']}", f"-I{aot_dir}",
            str(aot_dir / "harness.cc"), *(str(aot_dir / f) for f in _aot_objects(aot_dir)),
            str(library), f"-L{chain['framework'].parent}", "-l:libtensorflow_framework.so.2",
            "-lpthread", "-s", f"-ffile-prefix-map={aot_dir}=aot", "-o", str(aot_dir / "harness"),
        ]
        return subprocess.run(cmd, capture_output=True, text=True), cmd

    result, cmd = link(runtime_library(chain))
    if result.returncode != 0 and "undefined reference" in result.stderr:
        result, cmd = link(runtime_library(chain, everything=True))  # a kernel for another dtype is needed
    member = re.search(r"has no member named [‘'](\w+)[’']", result.stderr) if result.returncode != 0 else None
    if member:  # measured: TensorFlow 2.19's XlaCompiledCpuFunction has no result_size(index)
        from tfship.compat import missing

        raise missing("tensorflow", f"C++ member {member.group(1)} of the AOT compiled class (XlaCompiledCpuFunction)", "the AOT harness; set `harness: false` to export without it", tested="2.21")
    if result.returncode != 0:
        raise ConversionError(f"linking the AOT harness failed:\n{result.stderr[-3000:]}")
    # Recorded relative to the target folder: the staging folder is renamed after the build.
    command = " ".join(cmd).replace(str(aot_dir), "aot")
    for folder, name in ((chain["include"], "$TF_INCLUDE"), (chain["framework"].parent, "$TF_LIB"), (cache_dir(), "$TFSHIP_CACHE")):
        command = command.replace(str(folder), name)
    return {"command": command, "seconds": round(time.perf_counter() - start, 2), "runs_with": "LD_LIBRARY_PATH=$TF_LIB (tensorflow.sysconfig.get_lib())"}


# tf.sysconfig.get_include() without importing TensorFlow (quick and quiet)
TF_INCLUDE_MAKE = (
    "TF_INCLUDE ?= $(shell python3 -c \"import importlib.util as u, os; "
    "print(os.path.join(os.path.dirname(u.find_spec('tensorflow').origin), 'include'))\")"
)


def _relative_makefile(aot_dir: Path) -> None:
    """tfcompile writes the staging folder's absolute path into LIB and the venv's headers
    into INC; point LIB at the fragment's own folder and INC at the TensorFlow headers of
    whoever includes it."""
    fragment = aot_dir / "model_makefile.inc"
    lines = []
    for line in fragment.read_text().splitlines():
        if line.startswith("LIB ="):
            line = "LIB = -L$(dir $(lastword $(MAKEFILE_LIST)))"
        elif line.startswith("INC ="):
            lines.append(TF_INCLUDE_MAKE)
            line = "INC = -I$(TF_INCLUDE)"
        lines.append(line)
    fragment.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- target


HLO_UNCHECKED = "HLO text for reading: no runtime here executes HLO text (IREE runs the stablehlo.mlir beside it)"
IR_UNCHECKED = "`iree: false`: the StableHLO is not compiled or run (set `iree: true`, with `pip install 'tfship[iree]'`, to check it)"
MAKEFILE_UNCHECKED = "a make fragment for building against the AOT object: the harness parity runs was linked without it"
AOT_UNCHECKED = "`harness: false`: the AOT object is not run (set `harness: true` to check it through the native harness)"


def signature_text(signature: dict) -> str:
    """signature.json: one line per argument and per result."""
    lines = []
    for key, value in signature.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f" {json.dumps(key)}: [\n" + ",\n".join(f"  {json.dumps(v)}" for v in value) + "\n ]")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


class XlaTarget(Target):
    name = "xla"
    description = "XLA: jit_compile SavedModel, StableHLO/HLO per shape (StableHLO run by IREE), determinism check, optional AOT CPU object + native harness"
    Options = XlaOptions

    def variants(self, options):
        return ("",) + (("stablehlo",) if options.iree else ()) + (("aot",) if options.aot and options.harness else ())

    def check_options(self, options, model):
        problems = []
        if any(b < 1 for b in options.ir_batch_sizes):
            problems.append(("ir_batch_sizes", "expected positive batch sizes"))
        if options.aot_batch < 1:
            problems.append(("aot_batch", "expected a positive batch size"))
        dynamic = sorted({name for spec in model["inputs"] for _, name in spec.dynamic_dims})
        if options.aot and dynamic:
            problems.append(("aot", f"the AOT object is compiled at one static shape, and dimension(s) {', '.join(dynamic)} are dynamic; "
                                    "drop `aot`, or export the AOT object from a config whose inputs fix those dimensions"))
        fixed = {s.fixed_batch for s in model["inputs"] if s.batched} - {None}
        if fixed and options.aot and options.aot_batch not in fixed:
            problems.append(("aot_batch", f"the model's batch dimension is fixed at {fixed.pop()}; aot_batch must equal it"))
        if any(s.dtype == "string" for s in model["inputs"]):
            problems.append(("", "XLA cannot take string inputs; use the savedmodel target for this model"))
        return problems

    def build(self, job: BuildInputs) -> list[Artifact]:
        import tensorflow as tf

        from pipeline.stages.savedmodel import write_saved_model
        from pipeline.stages.trace import make_function
        from targets.support import xla as sx

        config, options, out = job.model, job.target.options, job.out_dir
        batches = sx.ir_batches(config, options.ir_batch_sizes or config.data.batch_sizes)
        where = f"xla target of model '{config.name}'"
        module = sx.module_symbol(config.name)
        ir_files: list[str] = []
        compile_seconds: dict[str, float] = {}
        folders: list[str] = []
        written: dict = {}  # parameters form: the weights files written so far (sx.bind_weights)
        # A dynamic sequence length / image size is compiled at every size parity tests.
        shape_sets = config.shape_sets
        for batch in batches:
            for dims in shape_sets:
                fn = make_function(config, job.loaded, batch=batch, dims=dims, jit_compile=True)
                args = [tf.constant(v) for v in sx.static_inputs(config, job.calibration, batch, dims).values()]
                sx.xla_gate(fn, args, sx.shape_text(batch, dims), config.name, where)
                folder = sx.shape_dir(batch, dims)
                files, arguments, signature = sx.write_stablehlo_ir(fn, args, config, out / "ir" / folder, f"ir/{folder}", options.ir_form, module)
                signature.update(batch=batch, dims=dict(dims))
                files += sx.bind_weights(out / "ir", folder, arguments, signature, written)
                (out / "ir" / folder / SIGNATURE_FILE).write_text(signature_text(signature))
                ir_files += files + [f"ir/{folder}/{SIGNATURE_FILE}"]
                folders.append(folder)
                compile_seconds[folder] = round(sx.timed_compile(fn, args)[0], 4)
        determinism = sx.determinism_check(fn, args, config.name, where)

        serving = make_function(config, job.loaded, jit_compile=True)
        try:
            write_saved_model(out / "saved_model", job.loaded, {"serving_default": serving})
        except Exception as exc:
            raise ConversionError(f"{where}: writing the jit_compile SavedModel failed: {type(exc).__name__}: {exc}") from exc
        info = {
            "jit_compile": True,
            "ir_batch_sizes": list(batches),
            **({"ir_shapes": [dict(d) for d in shape_sets]} if config.dynamic_dims else {}),
            "ir_form": options.ir_form,
            "ir_files": ir_files,
            "compile_seconds": compile_seconds,
            "determinism": determinism,
            "runs_on": "CPU",
        }
        files, unchecked = ["saved_model"], {}
        artifacts = []
        if options.iree:
            artifacts.append(self._stablehlo(out, folders, module, options.ir_form))
        else:
            files.append("ir")
            unchecked["ir"] = IR_UNCHECKED
        if options.aot:
            aot_info = self._aot(job, out / "aot", where)
            info["aot"] = {k: v for k, v in aot_info.items() if k in ("batch", "files", "cpp_class", "aot_compile_seconds")}
            if options.harness:
                aot_info.update(harness=build_harness(out / "aot"))
                aot_info["files"] = aot_info["files"] + ["harness.cc", "harness"]
                artifacts.append(Artifact(variant="aot", files=("aot",), tolerance=FP32, info=aot_info, unchecked={"aot/model_makefile.inc": MAKEFILE_UNCHECKED}))
            else:
                files.append("aot")
                unchecked["aot"] = AOT_UNCHECKED
        return [Artifact(variant="", files=tuple(files), tolerance=FP32, info=info, unchecked=unchecked)] + artifacts

    def _stablehlo(self, out: Path, folders: list[str], module: str, form: str) -> Artifact:
        """Variant `stablehlo`: every shape's StableHLO compiled by IREE (here, so a file IREE
        cannot compile is this variant's error with IREE's message; parity reuses the module)."""
        from pipeline.runtimes import iree as ri

        info = {
            "ir_form": form,
            "module": module,
            "shapes": folders,
            "runs_on": "CPU (IREE llvm-cpu for this machine's CPU, local-task driver)",
            "compile_commands": {kind: [shlex.join(c) for c in ri.compile_commands("stablehlo.mlir", staged=kind == "staged")] for kind in ("plain", "staged")},
        }
        unchecked = {f"ir/{folder}/hlo.txt": HLO_UNCHECKED for folder in folders}
        try:
            ri.require_iree()
        except TargetUnavailable as exc:  # parity says so (skipped); the files are marked unchecked
            info["iree"] = f"not installed: {exc}"
            return Artifact(variant="stablehlo", files=("ir",), tolerance=FP32, info=info, unchecked=unchecked)
        info["iree"] = ri.iree_version()
        compiled = {}
        for folder in folders:
            try:
                module_record = ri.compile_stablehlo(out / "ir" / folder / "stablehlo.mlir", f"ir/{folder}/stablehlo.mlir").record()
            except ConversionError as exc:
                return Artifact.failed("stablehlo", exc, info)
            compiled[folder] = {k: v for k, v in module_record.items() if k != "commands"}
        info["iree_compile"] = compiled
        return Artifact(variant="stablehlo", files=("ir",), tolerance=FP32, info=info, unchecked=unchecked)

    def _aot(self, job: BuildInputs, aot_dir: Path, where: str) -> dict:
        from pipeline.stages.savedmodel import write_saved_model
        from pipeline.stages.trace import make_function

        config, batch = job.model, job.target.options.aot_batch
        fn = make_function(config, job.loaded, batch=batch)
        concrete = fn.get_concrete_function()
        outputs = [(name, [int(d) for d in t.shape], t.dtype.name) for name, t in sorted(concrete.structured_outputs.items())]
        inputs = [(spec.name, [batch if d is None else d for d in spec.shape], spec.dtype) for spec in config.inputs]
        with tempfile.TemporaryDirectory(prefix="tfship-aot-sm-") as tmp:
            write_saved_model(Path(tmp) / "sm", job.loaded, {"serving_default": fn})
            aot_dir.mkdir(parents=True, exist_ok=True)
            cmd = [
                _saved_model_cli(), "aot_compile_cpu", "--dir", str(Path(tmp) / "sm"), "--tag_set", "serve",
                "--signature_def_key", "serving_default", "--output_prefix", str(aot_dir / "model"), "--cpp_class", CPP_CLASS,
            ]
            start = time.perf_counter()
            result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            seconds = time.perf_counter() - start
        produced = ["model.h", *_aot_objects(aot_dir), "model_makefile.inc"]
        if result.returncode != 0 or not all((aot_dir / f).exists() for f in produced):
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise ConversionError(f"{where}: `saved_model_cli aot_compile_cpu` failed (exit {result.returncode}) at static batch {batch}:\n{tail}")
        _relative_makefile(aot_dir)  # the compiler's log is not kept: it names the venv and the staging folder
        return {
            "batch": batch,
            "cpp_class": CPP_CLASS,
            "files": produced,
            "inputs": inputs,
            "outputs": outputs,
            "aot_compile_seconds": round(seconds, 2),
            "runs_on": "CPU (native binary)",
        }

    def open(self, target_dir: Path, artifact: Artifact, threads: int | None = None):
        if artifact.variant == "aot":
            return AotHarnessRunner(target_dir / "aot", artifact.info)
        if artifact.variant == "stablehlo":
            from pipeline.runtimes.iree import IreeRunner

            return IreeRunner(Path(target_dir) / "ir", threads=threads)
        return SavedModelRunner(target_dir / "saved_model")

    def tensor_probe(self, target_dir, artifact, model, debug_dir):
        if artifact.variant == "aot":
            return None  # the native harness exposes no intermediate tensors: localization bisects
        if artifact.variant == "stablehlo":
            from pipeline.localize.probes import StableHloProbe

            # The IR's locations keep each op's TensorFlow name, and so its layer.
            return StableHloProbe(Path(target_dir) / "ir", model, debug_dir)
        from pipeline.localize.probes import saved_model_probe

        # The jit_compile serving function, inlined with extra fetches and compiled by XLA again.
        return saved_model_probe(Path(target_dir) / "saved_model", model.input_names, debug_dir, jit=True, kind="xla")

    def options_for_variant(self, options, variant):
        import dataclasses

        return dataclasses.replace(options, aot=variant == "aot", harness=variant == "aot", iree=variant == "stablehlo")


TARGET = XlaTarget()


def latency(model: str, config_dir: Path, batches: tuple[int, ...] = (1, 32), runs: int = 50) -> dict:
    """Median CPU latency of the traced graph vs the XLA-compiled function, and XLA compile time."""
    import tensorflow as tf

    from pipeline.config import load_config
    from pipeline.stages.data import make_parity_data
    from targets import REGISTRY
    from pipeline.stages.load import load_model
    from pipeline.stages.trace import make_function
    from targets.support import xla as sx

    config = load_config(config_dir / f"{model}.yaml", REGISTRY)
    loaded = load_model(config)
    pool = make_parity_data(config).pool
    result = {}
    for batch in batches:
        args = [tf.constant(v) for v in sx.static_inputs(config, pool, batch).values()]
        row = {}
        for label, jit in (("graph", False), ("xla", True)):
            fn = make_function(config, loaded, jit_compile=jit)
            start = time.perf_counter()
            fn(*args)
            first = time.perf_counter() - start
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                outputs = fn(*args)
                [t.numpy() for t in outputs.values()]
                times.append(time.perf_counter() - start)
            row[f"{label}_ms"] = round(1000 * float(np.median(times)), 3)
            if jit:
                row["xla_compile_s"] = round(first - float(np.median(times)), 3)
        result[f"b{batch}"] = row
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m targets.xla build-runtime`: compile the cached XLA AOT runtime ahead of the first export.
    `python -m targets.xla latency MODEL [CONFIG_DIR]`: graph vs XLA latency on CPU (median of 50 runs)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["build-runtime"]:
        start = time.perf_counter()
        library = runtime_library(_toolchain())
        print(f"{library} ready in {time.perf_counter() - start:.1f} s")
        return 0
    if args and args[0] == "latency" and len(args) in (2, 3):
        config_dir = Path(args[2]) if len(args) == 3 else Path("configs/models")
        print(json.dumps(latency(args[1], config_dir), indent=2))
        return 0
    print("usage: python -m targets.xla build-runtime | latency MODEL [CONFIG_DIR]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
