"""What the distribution installs, checked on the built wheel and in use: the wheel is built,
installed into a fresh environment outside the checkout, and its `tfship` command exports
and validates a model from a folder with no checkout; the report validates against the
schema the wheel installed.

What the wheel holds at its top level is stated once, in LAYOUT below: moving the packages
into one namespace changes that block and nothing else in this file.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

REPO = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------ the layout, in one place
LAYOUT = {
    "top_level": {"tfship", "pipeline", "targets"},  # importable packages the wheel installs
    "subpackages": {"pipeline.config", "pipeline.execute", "pipeline.reports", "pipeline.commands", "pipeline.runtimes", "targets.support"},
    "schema": "pipeline/reports/schema.json",  # the report's JSON Schema, shipped as package data
    "command": "tfship",  # the console script
    "never": {"examples", "tests", "configs"},  # project folders that must not become top-level packages
}


def test_wheel_packages_are_the_layout_and_nothing_else():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(str(REPO), include=include)
    assert {p.split(".")[0] for p in packages} == LAYOUT["top_level"]
    assert LAYOUT["subpackages"] <= set(packages)


def test_import_tfship_gives_the_version_and_the_cli_functions_without_tensorflow():
    code = (
        "import sys, tfship; "
        "assert tfship.__version__ and tfship.__version__ != '0+unknown', tfship.__version__; "
        "missing = [n for n in tfship.__all__ if not hasattr(tfship, n)]; assert not missing, missing; "
        "assert callable(tfship.export) and callable(tfship.validate_model) and callable(tfship.benchmark_model); "
        "heavy = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnxruntime') if m in sys.modules]; "
        "assert not heavy, heavy; print(tfship.__version__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr[-2000:]


def test_tfship_plan_reads_the_sample_configs():
    import tfship

    configs = tfship.load_configs(sorted((REPO / "configs" / "models").glob("*.yaml")))
    plan = tfship.plan(configs, ["savedmodel"], None)
    assert [j.target for j in plan.jobs] == ["savedmodel"] * len(configs)


# ------------------------------------------------------------------ the wheel, installed and used

FACTORY = '''\
import keras


def build():
    keras.utils.set_random_seed(0)
    x = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(8, activation="tanh")(x)
    return keras.Model(x, keras.layers.Dense(3, name="y")(hidden))
'''

CONFIG = """\
source:
  factory: wheel_model:build
inputs:
  - {name: x, shape: [null, 6], dtype: float32}
outputs: [y]
data:
  samples: 8
targets:
  - savedmodel
  - {name: tflite, variants: [float32]}
"""


def _clean_env(**extra: str) -> dict:
    """No PYTHONPATH or checkout-derived variables: the installed package stands alone."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
    return dict(env, TF_CPP_MIN_LOG_LEVEL="2", **extra)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from a copy of the sources, installed without its dependencies into a
    new environment whose only other import path is the checkout's .venv site-packages (the
    heavy dependencies: TensorFlow, LiteRT ...), whose .pth files it does not run, so the
    editable install's path to the checkout is not there."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in LAYOUT["top_level"]:
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    dist = root / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(dist), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    [wheel] = dist.glob("tfship-*.whl")

    env_dir = root / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=300)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, env=_clean_env()).stdout.strip())
    (site / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    work = root / "work"  # a folder with no checkout, where a user would run tfship
    work.mkdir()
    return {"wheel": wheel, "python": python, "bin": env_dir / "bin", "site": site, "work": work}


def _run(installed, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=installed["work"], capture_output=True, text=True, env=_clean_env(), timeout=timeout)


@pytest.mark.heavy
def test_the_wheel_holds_the_layout_the_schema_and_the_command(installed):
    with zipfile.ZipFile(installed["wheel"]) as wheel:
        names = wheel.namelist()
        entry_points = next(wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == LAYOUT["top_level"], top
    assert LAYOUT["schema"] in names
    assert not top & LAYOUT["never"]
    assert f"{LAYOUT['command']} = " in entry_points


@pytest.mark.heavy
def test_the_installed_package_comes_from_the_wheel_not_the_checkout(installed):
    probe = _run(installed, installed["python"], "-c",
                 "import json, sys, importlib; "
                 f"mods = {{n: importlib.import_module(n).__file__ for n in {sorted(LAYOUT['top_level'])!r}}}; "
                 "print(json.dumps({'path': sys.path, 'files': mods}))")
    assert probe.returncode == 0, probe.stderr[-2000:]
    found = json.loads(probe.stdout)
    for name, file in found["files"].items():
        assert Path(file).is_relative_to(installed["site"]), f"{name} imported from {file}, not from the installed wheel"
    venv_site = Path(sysconfig.get_paths()["purelib"])
    from_checkout = [p for p in found["path"] if p and Path(p).resolve().is_relative_to(REPO) and Path(p).resolve() != venv_site.resolve()]
    assert not from_checkout, from_checkout  # only the dependencies' folder, never the sources or tests/
    assert "" not in found["path"][1:] and str(REPO) not in found["path"]


@pytest.mark.heavy
def test_the_installed_command_exports_and_validates_a_model_from_a_folder_without_checkout(installed):
    import jsonschema

    work, command = installed["work"], installed["bin"] / LAYOUT["command"]
    version = _run(installed, command, "--version")
    assert version.returncode == 0 and version.stdout.strip() == "tfship 0.1.0", version.stdout + version.stderr
    (work / "wheel_model.py").write_text(FACTORY)
    (work / "model.yaml").write_text(CONFIG)
    export = _run(installed, command, "export", "-c", "model.yaml", "--artifacts", "artifacts")
    assert export.returncode == 0, export.stderr[-3000:]
    assert "Traceback" not in export.stderr
    report = json.loads((work / "artifacts" / "model" / "report.json").read_text())
    assert {name: entry["status"] for name, entry in report["targets"].items()} == {"savedmodel": "passed", "tflite": "passed"}
    assert report["targets"]["tflite"]["variants"]["float32"]["parity"]["outputs"]["y"]["max_abs"] < 1e-5
    schema = json.loads((installed["site"] / LAYOUT["schema"]).read_text())
    jsonschema.validate(report, schema)
    validate = _run(installed, command, "validate", "-c", "model.yaml", "--artifacts", "artifacts")
    assert validate.returncode == 0, validate.stderr[-3000:]
    assert "savedmodel: parity passed" in validate.stderr and "tflite/float32: parity passed" in validate.stderr, validate.stderr
