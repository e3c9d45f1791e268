"""Every folder the project reads or writes, resolved without depending on the working directory.

Notebooks run with different working directories (papermill: the caller's; nbval: the
notebook's folder), so no path in this project is ever relative to the cwd.

Where the default folders live:
- in a checkout (the package imported from a clone, `pip install -e .`): `<repo>/data`, `cache`,
  `figures`, `build`;
- in a plain install (`pip install .` or a wheel, used from any folder): under the user cache
  folder (`platformdirs.user_cache_dir("vaegen")`: `~/.cache/vaegen` on Linux,
  `~/Library/Caches/vaegen` on macOS), or under `$VAEGEN_HOME` when set.
Environment overrides always win: VAEGEN_DATA_DIR (data sets), VAEGEN_CACHE_DIR (trained models and
results), VAEGEN_FIGURES_DIR (figures and results JSON), VAEGEN_BUILD_DIR (executed notebooks).
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV_VAR = "VAEGEN_HOME"
_PACKAGE = Path(__file__).resolve().parent


def checkout_root() -> Path | None:
    """The repository folder when this package runs from a checkout (pyproject.toml beside
    vaegen_utils/), else None (an installed copy in site-packages)."""
    candidate = _PACKAGE.parent
    if (candidate / "pyproject.toml").is_file() and (candidate / "vaegen_utils").is_dir():
        return candidate
    return None


def user_root() -> Path:
    """Base of the default folders outside a checkout: $VAEGEN_HOME, else the user cache folder."""
    value = os.environ.get(HOME_ENV_VAR)
    if value:
        return Path(value).expanduser()
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # platformdirs is a dependency; this keeps a stripped environment working
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaegen"
    return Path(user_cache_dir("vaegen", appauthor=False))


def repo_root() -> Path:
    """The folder holding the default data/, cache/, figures/ and build/ folders: the checkout when
    there is one, else `user_root()` (module docstring). Never raises."""
    return checkout_root() or user_root()


def package_data_dir() -> Path:
    """Files shipped with the package (the diffusion checkpoints): `vaegen_utils/shipped/` in an
    installed copy, mapped from the checkout's `checkpoints/` folder (pyproject.toml)."""
    installed = _PACKAGE / "shipped"
    root = checkout_root()
    if root is not None and not installed.is_dir():
        return root / "checkpoints"
    return installed


def _folder(env_var: str, default_name: str) -> Path:
    value = os.environ.get(env_var)
    folder = Path(value).expanduser() if value else repo_root() / default_name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def data_dir() -> Path:
    """Downloaded and extracted data sets (env VAEGEN_DATA_DIR, default <root>/data)."""
    return _folder("VAEGEN_DATA_DIR", "data")


def cache_dir() -> Path:
    """Trained models, checkpoints and cached results (env VAEGEN_CACHE_DIR, default <root>/cache)."""
    return _folder("VAEGEN_CACHE_DIR", "cache")


def figures_dir() -> Path:
    """Generated figures and per-notebook results JSON (env VAEGEN_FIGURES_DIR, default <root>/figures)."""
    return _folder("VAEGEN_FIGURES_DIR", "figures")


def build_dir() -> Path:
    """Executed notebooks and other build products (env VAEGEN_BUILD_DIR, default <root>/build)."""
    return _folder("VAEGEN_BUILD_DIR", "build")
