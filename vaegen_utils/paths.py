"""Every folder the project reads or writes, resolved from the repository root.

Notebooks run with different working directories (papermill: the caller's; nbval: the
notebook's folder), so no path in this project is ever relative to the cwd.
Environment overrides: VAEGEN_DATA_DIR (data sets), VAEGEN_CACHE_DIR (trained models and
results), VAEGEN_FIGURES_DIR (figures and results JSON), VAEGEN_BUILD_DIR (executed notebooks).
"""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The folder holding pyproject.toml, found by walking up from this file."""
    here = Path(__file__).resolve().parent
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "vaegen_utils").is_dir():
            return candidate
    raise FileNotFoundError(
        f"could not find the vaegen repository root above {here}; "
        "install the package from a checkout with `pip install -e .`"
    )


def _folder(env_var: str, default: Path) -> Path:
    value = os.environ.get(env_var)
    folder = Path(value).expanduser() if value else default
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def data_dir() -> Path:
    """Downloaded and extracted data sets (env VAEGEN_DATA_DIR, default <repo>/data)."""
    return _folder("VAEGEN_DATA_DIR", repo_root() / "data")


def cache_dir() -> Path:
    """Trained models, checkpoints and cached results (env VAEGEN_CACHE_DIR, default <repo>/cache)."""
    return _folder("VAEGEN_CACHE_DIR", repo_root() / "cache")


def figures_dir() -> Path:
    """Generated figures and per-notebook results JSON (env VAEGEN_FIGURES_DIR, default <repo>/figures)."""
    return _folder("VAEGEN_FIGURES_DIR", repo_root() / "figures")


def build_dir() -> Path:
    """Executed notebooks and other build products (env VAEGEN_BUILD_DIR, default <repo>/build)."""
    return _folder("VAEGEN_BUILD_DIR", repo_root() / "build")
