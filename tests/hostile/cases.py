"""The hostile-input corpus: each case builds its files under a fresh folder and names the
`tfship` command to run there. Every case must be refused (exit 2, no traceback, the message
below) before any heavy work, within the time and memory bounds of `tests/test_hostile.py`,
and change nothing: not the case's own folder, not `sentinel/` beside the artifacts, which
every link in these cases points at (as a link in CI, run as root, would point at /etc).

Big files (4 and 16 GiB zip bombs of 4 and 16 MB) are made at test time (`bombs.py`).
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hostile.bombs import PIECE, deflated, npy_header, stored, write_zip, zeros_bomb

MODEL = "m"
# An honest config: the affine sample model on synthetic data (lines 1-8).
HEAD = "source:\n  factory: examples.affine:build\ninputs:\n  - {name: x, shape: [null, 4], dtype: float32}\noutputs: [y]\n"
SYNTHETIC = "data:\n  samples: 16\ntargets: [savedmodel]\n"
NPZ = "data:\n  npz: data.npz\ntargets: [savedmodel]\n"  # data.npz at line 7


def keras_source(name: str) -> str:
    return f"source:\n  path: {name}\ninputs:\n  - {{name: x, shape: [null, 4], dtype: float32}}\noutputs: [y]\n" + SYNTHETIC


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # config | data | model | artifacts
    build: Callable[[Path], list[str]]  # writes the case under its folder; returns tfship's arguments
    message: str  # a regex the error output must match
    line: int | None = None  # the config line the message names (`m.yaml:<line>:`)
    exit: int = 2  # 1 where the input is an artifacts folder tfship cannot vouch for (validate's integrity failure)


def _project(root: Path, config: str) -> Path:
    models = root / "configs" / "models"
    models.mkdir(parents=True)
    (models / f"{MODEL}.yaml").write_text(config)
    sentinel = root / "sentinel"
    (sentinel / "savedmodel").mkdir(parents=True)
    (sentinel / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (sentinel / "savedmodel" / "keep.txt").write_text("not tfship's\n")
    return models


EXPORT = ["export", "--model", MODEL]


def config_case(name: str, text: str, message: str, line: int | None = None) -> Case:
    def build(root: Path) -> list[str]:
        _project(root, text)
        return EXPORT

    return Case(name, "config", build, message, line)


def _laughs(anchors: int = 9) -> str:
    lines = ["lol0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, anchors + 1)]
    return "\n".join(lines) + "\n"


def _laughs_in_mappings() -> str:
    lines = ["m0: &b0 {k0: v, k1: v, k2: v, k3: v, k4: v, k5: v, k6: v, k7: v, k8: v, k9: v}"]
    lines += [f"m{i}: &b{i} {{{', '.join(f'k{j}: *b{i - 1}' for j in range(10))}}}" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


CASES: list[Case] = []

# ---------------------------------------------------------------- configs
CASES += [
    config_case("yaml_alias_bomb", HEAD + SYNTHETIC + _laughs(), r"the alias \*a\d repeats .* values.*billion laughs", 12),
    config_case("yaml_alias_bomb_mappings", HEAD + SYNTHETIC + _laughs_in_mappings(), r"the alias \*b\d repeats .* values", 12),
    config_case("yaml_deep_flow_lists", HEAD + SYNTHETIC + "deep: " + "[" * 20000 + "]" * 20000 + "\n", r"nest|depth", 9),
    config_case("yaml_deep_flow_mappings", HEAD + SYNTHETIC + "deep: " + "{a: " * 20000 + "b" + "}" * 20000 + "\n", r"nest|depth", 9),
    config_case("yaml_deep_block_lists", HEAD + SYNTHETIC + "deep:\n" + "- " * 5000 + "x\n", r"nested more than 64 levels", 10),
    config_case("yaml_huge_file", HEAD + SYNTHETIC + ("# " + "x" * 1000 + "\n") * 20000, r"20,\d{3},\d{3} bytes; a model config may be at most 262,144 bytes", 270),
    config_case("yaml_list_as_key", HEAD + SYNTHETIC + "? [a, b]\n: 1\n", r"a key is a list or a mapping", 9),
]


def _special_config(kind: str) -> Callable[[Path], list[str]]:
    def build(root: Path) -> list[str]:
        models = _project(root, HEAD + SYNTHETIC)
        special = models / "zz.yaml"
        if kind == "fifo":
            os.mkfifo(special)
        else:
            special.symlink_to("/dev/zero")
        return ["export"]  # every config in the folder: the special file is among them

    return build


CASES += [
    Case("config_is_dev_zero", "config", _special_config("zero"), r"zz.yaml: refused: not a regular file \(a device, pipe or socket\)"),
    Case("config_is_fifo", "config", _special_config("fifo"), r"zz.yaml: refused: not a regular file \(a device, pipe or socket\)"),
]

# ---------------------------------------------------------------- data (.npz)


def _npz_case(name: str, entries: Callable[[], list], message: str, config: str = HEAD + NPZ, line: int = 7) -> Case:
    def build(root: Path) -> list[str]:
        models = _project(root, config)
        write_zip(models / "data.npz", entries())
        return EXPORT

    return Case(name, "data", build, message, line)


def _x(rows: int = 64) -> object:
    return stored("x.npy", npy_header((rows, 4)) + bytes(rows * 16))


CASES += [
    # 4 GiB of zeros in 4 MB: [268435456, 4] float32
    _npz_case("npz_bomb_4g", lambda: [zeros_bomb("x.npy", npy_header(((4 << 30) // 16, 4)), 4 << 30)], r"input 'x'.*expands .* bomb"),
    _npz_case("npz_bomb_16g", lambda: [zeros_bomb("x.npy", npy_header(((16 << 30) // 16, 4)), 16 << 30)], r"input 'x'.*expands .* bomb"),
    _npz_case(
        "npz_labels_bomb", lambda: [_x(), zeros_bomb("labels.npy", npy_header(((4 << 30) // 8,), "<i8"), 4 << 30)], r"'labels'.*expands .* bomb",
        config=HEAD + "data:\n  npz: data.npz\n  labels: labels\ntargets: [savedmodel]\n",
    ),
    # A header that declares 16 TB of rows over 1 KB of data.
    _npz_case("npz_header_lies", lambda: [stored("x.npy", npy_header((10**12, 4)) + bytes(1024))], r"input 'x'.*header declares .* the archive holds"),
    # A .npy header length of 4 GiB (format 2.0 allows one).
    _npz_case("npz_header_4g_long", lambda: [stored("x.npy", b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + b"{'descr'")], r"input 'x'.*header"),
    # The entry claims 1 TiB uncompressed over 1 KB of deflated zeros.
    _npz_case("npz_declared_1t", lambda: [_declared(deflated("x.npy", npy_header((64, 4)) + bytes(1024)), 1 << 40)], r"input 'x'.*(header declares|expands)"),
]


def _declared(entry, size: int):
    from hostile.bombs import Entry

    return Entry(entry.name, entry.data, entry.crc, size, entry.method)


# ---------------------------------------------------------------- model files (.keras is a zip; .h5)
# What Keras 3.15 writes for Sequential([Input((4,), name="x"), Dense(1, name="y")]): Keras reads it
# and goes on to the weights, so an attack lives in the weights member.
_DENSE = (
    '{"module": "keras.layers", "class_name": "Dense", "config": {"name": "y", "trainable": true, "dtype": "float32", "units": 1, '
    '"activation": "linear", "use_bias": true}, "registered_name": null, "build_config": {"input_shape": [null, 4]}}'
)
KERAS_CONFIG = (
    '{"module": "keras", "class_name": "Sequential", "config": {"name": "sequential", "trainable": true, "dtype": "float32", "layers": '
    '[{"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [null, 4], "dtype": "float32", "name": "x"}, '
    '"registered_name": null}, ' + _DENSE + '], "build_input_shape": [null, 4]}, "registered_name": null, "build_config": {"input_shape": [null, 4]}}'
)
KERAS_META = [stored("metadata.json", b'{"keras_version": "3.15.1"}'), stored("config.json", KERAS_CONFIG.encode())]


def _keras_case(name: str, entries: Callable[[], list], message: str) -> Case:
    def build(root: Path) -> list[str]:
        models = _project(root, keras_source("model.keras"))
        write_zip(models / "model.keras", entries())
        return EXPORT

    return Case(name, "model", build, message, 2)


CASES += [
    _keras_case("keras_zip_bomb", lambda: KERAS_META + [zeros_bomb("model.weights.h5", b"\x89HDF\r\n\x1a\n", 4 << 30)], r"model.weights.h5.*expands .* bomb"),
    _keras_case("keras_entry_climbs_out", lambda: KERAS_META + [stored("../../sentinel/passwd", b"pwned\n"), stored("model.weights.h5", b"\x89HDF")], r"'\.\./\.\./sentinel/passwd'.*outside"),
    _keras_case("keras_entry_absolute", lambda: KERAS_META + [stored("/etc/cron.d/tfship", b"* * * * * root true\n")], r"'/etc/cron.d/tfship'.*outside"),
    _keras_case("keras_declared_1t", lambda: KERAS_META + [_declared(deflated("model.weights.h5", b"\x89HDF" + bytes(4096)), 1 << 40)], r"model.weights.h5.*(declares|expands)"),
    _keras_case("keras_config_bomb", lambda: [stored("metadata.json", b"{}"), zeros_bomb("config.json", b"{", 1 << 30)], r"config.json.*expands .* bomb"),
]


# What tf-keras 2.21 writes for the same model as an .h5 (its loader reads every weight, then checks shapes).
H5_CONFIG = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
    {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4], "dtype": "float32", "name": "x"}},
    {"class_name": "Dense", "config": {"name": "y", "trainable": True, "dtype": "float32", "units": 1, "activation": "linear", "use_bias": True}},
]}}


def _h5_bomb(root: Path) -> list[str]:
    import h5py
    import numpy as np

    models = _project(root, keras_source("model.h5"))
    with h5py.File(models / "model.h5", "w") as f:
        f.attrs.update({"keras_version": "2.21.0", "backend": "tensorflow", "model_config": json.dumps(H5_CONFIG)})
        weights = f.create_group("model_weights")
        weights.attrs["layer_names"] = np.array([b"y"])
        weights.create_group("top_level_model_weights")
        layer = weights.create_group("y")
        layer.attrs["weight_names"] = np.array([b"y/kernel:0", b"y/bias:0"])
        # 4 GiB of float32 that were never written: the file stores no chunk of it.
        layer.create_group("y").create_dataset("kernel:0", shape=(1 << 30,), dtype="float32", chunks=(1 << 20,), compression="gzip")
        layer["y"].create_dataset("bias:0", data=np.zeros(1, np.float32))
    return EXPORT


CASES += [Case("h5_declares_4g", "model", _h5_bomb, r"model.h5.*kernel:0.*declares", 2)]

# ---------------------------------------------------------------- the artifacts tree


def _tree_case(
    name: str, links: dict[str, str], message: str, argv: list[str] = EXPORT, folders: tuple[str, ...] = (), report: bool = False, exit: int = 2,
    files: tuple[str, ...] = (),
) -> Case:
    """`links`: {path under artifacts/: where it points, relative to the case folder (or absolute)}."""

    def build(root: Path) -> list[str]:
        _project(root, HEAD + SYNTHETIC)
        artifacts = root / "artifacts"
        for folder in folders:
            (artifacts / folder).mkdir(parents=True, exist_ok=True)
        if report:
            _fake_report(root)
        for file in files:
            (artifacts / file).parent.mkdir(parents=True, exist_ok=True)
            (artifacts / file).touch()
        for link, target in links.items():
            path = artifacts / link
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(root / target)
        return argv

    return Case(name, "artifacts", build, message, exit=exit)


def _fake_report(root: Path) -> None:
    """The report.json an export with no target built would leave (written by tfship's own code)."""
    from pipeline.config import load_config
    from pipeline.reports.model import merge_report, now
    from targets import REGISTRY

    config = load_config(root / "configs" / "models" / f"{MODEL}.yaml", REGISTRY)
    folder = root / "artifacts" / MODEL
    folder.mkdir(parents=True, exist_ok=True)
    run = {"started": now(), "finished": now(), "state": "finished", "targets": [], "rebuilt": [], "reused": []}
    merge_report(folder, MODEL, config.sha256, str(config.file), run, {})


LINK = r"is a symbolic link to .*sentinel"
CASES += [
    _tree_case("model_folder_link", {MODEL: "sentinel"}, rf"artifacts/{MODEL} {LINK}"),
    _tree_case("stages_link", {f"{MODEL}/.stages": "sentinel"}, rf"{MODEL}/\.stages {LINK}"),
    _tree_case("logs_link", {f"{MODEL}/.logs": "sentinel"}, rf"{MODEL}/\.logs {LINK}"),
    _tree_case("worker_log_link", {f"{MODEL}/.logs/worker.log": "sentinel/passwd"}, rf"worker.log {LINK}"),
    _tree_case("debug_link", {f"{MODEL}/.debug": "sentinel"}, rf"{MODEL}/\.debug {LINK}"),
    _tree_case("lock_link", {f".{MODEL}.lock": "sentinel/passwd"}, rf"\.{MODEL}\.lock {LINK}"),
    _tree_case("trash_link", {f"{MODEL}/.trash-savedmodel-x": "sentinel"}, rf"\.trash-savedmodel-x {LINK}"),
    _tree_case("staging_link", {f"{MODEL}/.staging-savedmodel-x": "sentinel"}, rf"\.staging-savedmodel-x {LINK}"),
    _tree_case("release_link", {"release": "sentinel"}, rf"artifacts/release {LINK}", ["release", "--model", MODEL, "--version", "v1", "--skip-export"], report=True),
    _tree_case("ci_link", {"ci": "sentinel"}, rf"artifacts/ci {LINK}", ["ci-report", "--model", MODEL], report=True),
    _tree_case("bench_log_link", {".logs": "sentinel"}, rf"artifacts/\.logs {LINK}", ["bench", "--model", MODEL], report=True),
    # A report is read before anything else: a link to /dev/zero is no report (not read), never a 4 GB string.
    # (validate appends its log to artifacts/.logs/validate.log: here it exists already and gets nothing.)
    _tree_case(
        "report_is_dev_zero", {f"{MODEL}/report.json": "/dev/zero"}, r"report.json is not a tfship report", ["validate", "--model", MODEL],
        exit=1, files=(".logs/validate.log",),
    ),
    _tree_case("validate_log_link", {".logs": "sentinel"}, rf"artifacts/\.logs {LINK}", ["validate", "--model", MODEL], report=True),
]
