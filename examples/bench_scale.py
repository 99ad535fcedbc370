"""How export cost grows with model size: `make bench-scale` (a benchmark, not a test).

Builds dense and conv Keras 3 models of about 5, 50 and 553 MB of float32 weights
(and 2.5 GB when the machine has the memory free at run time), then for each one
measures, in this same run and one process tree at a time:

- tfship: `tfship export --target <t>` (trace, canonical SavedModel, convert, parity),
- raw: the converter's own API call on the same model, without parity
  (`model.export`; `TFLiteConverter.from_saved_model`; `tf2onnx.convert.from_function`),

for savedmodel, tflite float32, tflite dynamic_range and onnx: wall seconds and the
peak resident memory of the whole process tree (sampled every 20 ms), and the ratio
tfship / raw. A run whose tree passes `--limit-gb` is stopped and reported as such.

    python -m examples.bench_scale [--sizes 5 50 500 2500] [--kinds dense conv] [--limit-gb 8] [--targets onnx ...]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = ("savedmodel", "tflite_float32", "tflite_dynamic_range", "onnx")
# On request (`--targets xla tpu openvino`): the memory admission control's factors for them;
# tfship side only (their raw call is the SavedModel's plus XLA's compile).
EXTRA_TARGETS = ("xla", "tpu", "openvino")
# Runs known to need more than this machine can lend are not started (measured here):
# raw tf2onnx (from_function) on a 553 MB dense model was OOM-killed at 24 GB, and with
# large_model=True peaked at 17.5 GB; the raw TFLite converter peaked at 4.55 GB (8x the
# weights) on 553 MB, so above 1 GB it would pass 10 GB. tfship's TFLite variants run at
# every size: from 256 MB of weights they convert with stand-ins for the weights
# (targets/support/tflite_lift.py), and float32 is refused before converting past the
# 2 GiB FlatBuffer limit.
NOT_RUN = {
    ("raw", "onnx"): (100, "raw tf2onnx OOM-killed at 24 GB on 553 MB"),
    ("raw", "tflite_float32"): (1000, "TFLite converter: 8x the weights measured at 553 MB"),
    ("raw", "tflite_dynamic_range"): (1000, "TFLite converter: 8x the weights measured at 553 MB"),
}


def not_run(side: str, target: str, size: int) -> str | None:
    limit, reason = NOT_RUN.get((side, target), (None, ""))
    return reason if limit is not None and size > limit else None


# --------------------------------------------------------------------------- measuring


@dataclass
class Measured:
    seconds: float
    peak_bytes: int
    code: int
    stopped: bool  # the watchdog stopped it at the limit

    def cell(self) -> tuple[str, str]:
        if self.stopped:
            return f">{self.seconds:.1f}", f">{self.peak_bytes / 1e9:.2f}"
        mark = "" if self.code == 0 else "!"
        return f"{self.seconds:.1f}{mark}", f"{self.peak_bytes / 1e9:.2f}{mark}"


def _tree_rss(root: int) -> int:
    """Resident bytes of `root` and every descendant (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def measure(argv: list[str], limit_bytes: int, log: Path) -> Measured:
    """Run `argv` in its own process group; sample its tree's RSS; stop it past the limit."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        peak, stopped = 0, False
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc.pid))
            if peak > limit_bytes:
                os.killpg(proc.pid, signal.SIGKILL)
                stopped = True
                proc.wait()
                break
            time.sleep(0.02)
    return Measured(time.perf_counter() - start, peak, proc.returncode, stopped)


# --------------------------------------------------------------------------- models


def dense_width(megabytes: float) -> int:
    """Width of nine Dense layers on a 1024-wide input (1024w + 8w^2 weights) for a size."""
    target = megabytes * 1e6 / 4
    width = (-1024 + (1024**2 + 32 * target) ** 0.5) / 16
    return max(32, round(width / 32) * 32)


def conv_channels(megabytes: float) -> int:
    """Channels of six 3x3 convolutions (five C->C: about 45 C^2 weights) for a size."""
    return max(16, round((megabytes * 1e6 / 4 / 45) ** 0.5 / 8) * 8)


BUILD = textwrap.dedent(
    """\
    import sys, keras
    kind, size, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    keras.utils.set_random_seed(0)
    if kind == "dense":
        x = inputs = keras.Input((1024,), name="x")
        for i in range(9):
            x = keras.layers.Dense(size, activation="relu" if i < 8 else None, kernel_initializer="he_normal")(x)
    else:
        x = inputs = keras.Input((8, 8, 8), name="x")
        for i in range(6):
            x = keras.layers.Conv2D(size, 3, padding="same", activation="relu", kernel_initializer="he_normal")(x)
        x = keras.layers.Dense(16)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, keras.layers.Identity(name="y")(x))
    model.save(path)
    print(sum(w.numpy().nbytes for w in model.weights))
    """
)

RAW = textwrap.dedent(
    """\
    import sys, keras, tensorflow as tf
    target, path, work = sys.argv[1], sys.argv[2], sys.argv[3]
    model = keras.saving.load_model(path)
    if target == "onnx":
        import tf2onnx
        spec = [tf.TensorSpec(model.inputs[0].shape, tf.float32, name="x")]
        tf2onnx.convert.from_function(tf.function(model, input_signature=spec), input_signature=spec, opset=17, output_path=work + "/model.onnx")
    else:
        model.export(work + "/saved_model", verbose=False)
        if target.startswith("tflite"):
            converter = tf.lite.TFLiteConverter.from_saved_model(work + "/saved_model")
            if target == "tflite_dynamic_range":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            open(work + "/model.tflite", "wb").write(converter.convert())
    """
)


def config_text(name: str, model_path: Path, kind: str, target: str) -> str:
    shape = "[null, 1024]" if kind == "dense" else "[null, 8, 8, 8]"
    if target.startswith("tflite_"):
        targets = f"[{{name: tflite, variants: [{target.removeprefix('tflite_')}]}}]"
    elif target == "openvino":  # every variant: NNCF's int8 copy of the model is the largest step
        targets = "[{name: openvino, variants: [fp32, fp16, int8], calibration_samples: 8}]"
    else:
        targets = f"[{target}]"
    return textwrap.dedent(
        f"""\
        name: {name}
        source:
          path: {model_path}
        inputs:
          - {{name: x, shape: {shape}, dtype: float32}}
        outputs: [y]
        data:
          inputs:
            x: {{distribution: normal}}
          samples: 8
        targets: {targets}
        """
    )


# --------------------------------------------------------------------------- running


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def run(sizes: list[int], kinds: list[str], limit_gb: float, work: Path, targets: tuple[str, ...] = TARGETS) -> list[str]:
    python = sys.executable
    tfship = str(Path(python).parent / "tfship")
    limit = int(limit_gb * 1e9)
    lines = [
        f"{'model':<13} {'weights':>8} {'target':<21} {'tfship s':>9} {'raw s':>7} {'ratio':>6} {'tfship GB':>10} {'raw GB':>7} {'ratio':>6}",
    ]
    print(lines[0], flush=True)
    for size in sizes:
        for kind in kinds:
            name = f"{kind}_{size}mb"
            # Dense: TFLite/ONNX/SavedModel peaks are a few times the weights; ask for 1 GB + 5x free.
            need = int(1e9 + 5 * size * 1e6)
            free = available_bytes()
            if need > free:
                line = f"{name:<13} skipped: needs about {need / 1e9:.1f} GB free, {free / 1e9:.1f} GB available now"
                print(line, flush=True)
                lines.append(line)
                continue
            model_path = work / f"{name}.keras"
            width = dense_width(size) if kind == "dense" else conv_channels(size)
            built = subprocess.run([python, "-c", BUILD, kind, str(width), str(model_path)], capture_output=True, text=True, cwd=REPO)
            if built.returncode != 0:
                raise SystemExit(f"building {name} failed:\n{built.stderr[-2000:]}")
            weights = int(built.stdout.strip().splitlines()[-1])
            for target in targets:
                config_dir = work / "configs" / f"{name}_{target}"
                config_dir.mkdir(parents=True, exist_ok=True)
                (config_dir / f"{name}.yaml").write_text(config_text(name, model_path, kind, target))
                skipped = not_run("tfship", target, size)
                if skipped:
                    lines.append(f"{name:<13} {weights / 1e6:>6.0f}MB {target:<21} not run: {skipped}")
                    print(lines[-1], flush=True)
                    continue
                ours = measure(
                    [tfship, "export", "--config-dir", str(config_dir), "--artifacts", str(work / "artifacts" / f"{name}_{target}"), "--force"],
                    limit, work / f"{name}_{target}.tfship.log",
                )
                raw = None
                if not_run("raw", target, size) is None and target not in EXTRA_TARGETS:
                    raw_dir = work / "raw" / f"{name}_{target}"
                    raw_dir.mkdir(parents=True, exist_ok=True)
                    raw = measure([python, "-c", RAW, target, str(model_path), str(raw_dir)], limit, work / f"{name}_{target}.raw.log")
                lines.append(row(name, weights, target, ours, raw, not_run("raw", target, size)))
                print(lines[-1], flush=True)
                reason = failure_line(work / f"{name}_{target}.tfship.log") if ours.code != 0 and not ours.stopped else ""
                if reason:
                    lines.append(f"{'':<13} {'':>8} {'':<21} tfship exit {ours.code}: {reason}")
                    print(lines[-1], flush=True)
            for leftover in (work / "artifacts").glob(f"{name}_*"):
                subprocess.run(["rm", "-rf", str(leftover)])
            subprocess.run(["rm", "-rf", str(work / "raw"), str(model_path)])
    return lines


def failure_line(log: Path) -> str:
    """The line of a tfship run's output that states why a target did not pass."""
    for line in log.read_text(errors="replace").splitlines():
        if ": error:" in line or ": failed (" in line or ": failed:" in line:
            return line.strip()[:200]
    return ""


def row(name: str, weights: int, target: str, ours: Measured, raw: Measured | None, raw_skipped: str | None) -> str:
    our_s, our_gb = ours.cell()
    if raw is None:
        raw_s, raw_gb, r_s, r_gb = "-", "-", "-", "-"
        note = f"  raw not run: {raw_skipped}" if raw_skipped else ""
    else:
        raw_s, raw_gb = raw.cell()
        ok = raw.code == 0 and ours.code == 0 and not raw.stopped
        r_s = f"{ours.seconds / raw.seconds:.2f}" if ok else "-"
        r_gb = f"{ours.peak_bytes / raw.peak_bytes:.2f}" if ok else "-"
        note = "  raw stopped at the limit" if raw.stopped else ""
    return f"{name:<13} {weights / 1e6:>6.0f}MB {target:<21} {our_s:>9} {raw_s:>7} {r_s:>6} {our_gb:>10} {raw_gb:>7} {r_gb:>6}{note}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 50, 553, 2500], help="weight megabytes per model (553: nine 4096-wide Dense layers)")
    parser.add_argument("--kinds", nargs="+", default=["dense", "conv"], choices=["dense", "conv"])
    parser.add_argument("--limit-gb", type=float, default=8.0, help="stop a run whose process tree passes this resident size")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS + EXTRA_TARGETS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tfship-bench-scale-") as tmp:
        lines = run(args.sizes, args.kinds, args.limit_gb, Path(tmp), tuple(args.targets))
    print("\nseconds: wall time of the whole command; GB: peak resident memory of its process tree;")
    print("tfship runs trace, canonical SavedModel, conversion and parity; raw runs the converter's call only.")
    print("'!' marks a run that exited non-zero; '>' a run stopped at the memory limit.")
    return 0 if lines else 1


if __name__ == "__main__":
    sys.exit(main())
