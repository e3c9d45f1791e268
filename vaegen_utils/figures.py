"""Saving figures: one call writes `<name>.png` and `<name>.pdf`, atomically, or raises.

Where figures go depends on the profile, so that a smoke run (CI, nbval, tests) never overwrites
the committed figures, which come from the cpu profile:

- `$VAEGEN_FIGURES_DIR` set: that folder, whatever the profile (explicit overrides win; tests use
  it to write into a temporary folder);
- profile "cpu": `figures/` in the repository (the committed figures);
- any other profile: `build/figures/<profile>/` (git-ignored).

`output_dir(profile)` is that rule; `savefig` and `results.write_results` both use it, and
`run_all.sh` asks it where to find the results JSON.

Nothing here is paper-specific: one save function, one house style, one image-grid helper.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import io, paths, profiles

if TYPE_CHECKING:  # matplotlib and torch are imported lazily: importing this module stays cheap
    import matplotlib.figure
    import numpy as np

FIGURES_DIR_ENV_VAR = "VAEGEN_FIGURES_DIR"

# A figure (and results) name: letters, digits, '_' and '-'. No '/', no '.', so no path tricks and
# no extension: savefig owns the folder and the formats.
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")

# PNG for the README and quick looks, PDF for print; both from the same figure.
FORMATS = ("png", "pdf")

# Metadata that would change on every run (timestamps, version strings) is dropped, so saving an
# unchanged figure again writes identical bytes and creates no git diff.
_DETERMINISTIC_METADATA = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
}


def check_name(name: str) -> str:
    """Return `name` if it is a valid figure/results name, else raise ValueError saying why."""
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise ValueError(
            f"invalid figure name {name!r}: use letters, digits, '_' and '-' only, with no folder "
            f"and no extension (e.g. 'zhang2022_fig3_gaps'); savefig chooses the folder and writes "
            f"both {' and '.join('.' + f for f in FORMATS)}"
        )
    return name


def output_dir(profile: str | None = None) -> Path:
    """The folder for figures and results JSON of a run with `profile` (see the module docstring).

    `profile=None` reads $VAEGEN_PROFILE (default cpu). The folder is created if missing.
    """
    profile = profiles.current_profile() if profile is None else profiles.check_profile(profile)
    if os.environ.get(FIGURES_DIR_ENV_VAR) or profile == profiles.DEFAULT_PROFILE:
        return paths.figures_dir()
    folder = paths.build_dir() / "figures" / profile
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def savefig(fig: "matplotlib.figure.Figure", name: str, *, profile: str | None = None) -> tuple[Path, Path]:
    """Write `fig` to `output_dir(profile)/<name>.png` and `.pdf`; return the two paths.

    Notebooks pass `profile=PROFILE` so that papermill's `-p PROFILE smoke` alone (without the
    environment variable) also keeps smoke figures out of `figures/`. Each file is written to a
    temporary name and moved into place, so a crash never leaves a half-written figure; any error
    propagates (no silent skipping). The figure is not closed: it still displays in the notebook.
    """
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"savefig needs a matplotlib Figure, got {type(fig).__name__}")
    check_name(name)
    folder = output_dir(profile)
    written = []
    for fmt in FORMATS:
        target = folder / f"{name}.{fmt}"
        with io.atomic_path(target) as tmp:
            # The temporary file has no .png/.pdf suffix, so the format must be explicit.
            fig.savefig(tmp, format=fmt, metadata=_DETERMINISTIC_METADATA[fmt])
        written.append(target)
    return written[0], written[1]


def use_style() -> None:
    """The house style: readable at half a page width, no chart junk, deterministic output."""
    import matplotlib

    matplotlib.rcParams.update(
        {
            "figure.dpi": 100,  # on-screen size in notebooks
            "savefig.dpi": 200,  # PNG resolution: sharp in the README, small in git
            "savefig.bbox": "tight",  # no clipped labels, no wide margins
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.labelsize": 9,
            "legend.fontsize": 8,
            "legend.frameon": False,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": False,
            "image.interpolation": "nearest",  # show pixels as pixels (MNIST is 28x28)
            "pdf.fonttype": 42,  # TrueType in PDFs: text stays editable and searchable
            "svg.hashsalt": "vaegen",  # stable ids if anyone saves SVG
        }
    )


def sample_grid(images: Any, nrow: int, *, padding: int = 1, pad_value: float = 1.0) -> "np.ndarray":
    """Tile images `(N, C, H, W)` (tensor or array, values in [0, 1]) into one image for imshow.

    Returns `(rows*(H+p)-p, nrow*(W+p)-p)` for C == 1 (use `cmap="gray"`) or `(..., ..., 3)` for
    C == 3. Missing cells at the end of the last row are left as padding.
    """
    import numpy as np

    array = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"sample_grid needs images shaped (N, C, H, W) with C in (1, 3), got {array.shape}")
    if not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be a positive int (images per row), got {nrow!r}")
    n, channels, height, width = array.shape
    rows = max(1, -(-n // nrow))  # ceil(n / nrow)
    grid = np.full(
        (channels, rows * (height + padding) - padding, nrow * (width + padding) - padding),
        pad_value,
        dtype=np.float32,
    )
    for index in range(n):
        top = (index // nrow) * (height + padding)
        left = (index % nrow) * (width + padding)
        grid[:, top : top + height, left : left + width] = array[index]
    return grid[0] if channels == 1 else grid.transpose(1, 2, 0)
