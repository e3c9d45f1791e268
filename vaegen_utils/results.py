"""Results as data: `<output_dir>/<notebook>.json` next to the figure, one file per notebook.

Each file holds what a reader needs to trust or rerun the numbers: the profile, seed and resolved
config; the measured metrics; the paper's claims with reported and measured values and whether
each holds (decided by the notebook); package versions, git commit, machine and runtime.
`load_results`/`validate_results` check that schema and name the file and the field when it is
broken; the claims report and the tests read results only through them.

The folder follows `figures.output_dir(profile)`: `figures/` for the cpu profile, `build/figures/
<profile>/` otherwise, `$VAEGEN_FIGURES_DIR` when set.
"""

from __future__ import annotations

import dataclasses
import datetime as _datetime
import math
import os
import platform
import subprocess
import time
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import __version__, figures, io, paths, profiles

SCHEMA_VERSION = 1

# The three papers (see docs) plus "vaegen" for the project's own sanity claims (data set sizes,
# pipeline checks) that no paper makes.
PAPER_KEYS = ("zhang2022", "bozkurt2021", "xiao2024", "vaegen")

# Top-level fields of a results file and the JSON types each must have.
_TOP_LEVEL_TYPES: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "notebook": str,
    "profile": str,
    "seed": int,
    "config": dict,
    "versions": dict,
    "git": dict,
    "machine": dict,
    "created": str,
    "runtime_s": (int, float),
    "metrics": dict,
    "claims": list,
}
_VERSION_KEYS = ("python", "torch", "numpy", "matplotlib", "vaegen_utils")


class ResultsError(ValueError):
    """A results file or a write_results argument breaks the schema; the message names the field."""


# --------------------------------------------------------------------------------------- claims


@dataclasses.dataclass(frozen=True)
class Claim:
    """One checkable statement from a paper, with the number it reports and the one we measured.

    `holds` is decided by the notebook (e.g. `bool(abs(measured - reported) <= tolerance)` or a
    qualitative test such as "the gap grows with beta") and must be a real bool, so a claim can
    never pass by accident through a truthy tensor or array. `reported`/`measured` are JSON values
    (numbers, strings, lists, ...); `tolerance` is a non-negative number, a short text (e.g.
    "same sign") or None.
    """

    id: str  # unique within the notebook, e.g. "fig3_peak_beta"
    paper: str  # one of PAPER_KEYS
    figure: str  # where the paper states it, e.g. "Fig. 3" or "Tab. 1"
    statement: str  # the claim in one sentence
    reported: Any  # the paper's value
    measured: Any  # ours
    tolerance: Any  # how close counts as reproduced
    holds: bool  # computed in the notebook
    note: str | None = None  # why it differs, what was changed, ...

    def __post_init__(self) -> None:
        where = f"claim {self.id!r}"
        for field in ("id", "figure", "statement"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise ResultsError(f"{where}: {field} must be a non-empty string, got {value!r}")
        if self.paper not in PAPER_KEYS:
            raise ResultsError(f"{where}: paper must be one of {', '.join(PAPER_KEYS)}, got {self.paper!r}")
        if type(self.holds) is not bool:
            raise ResultsError(
                f"{where}: holds must be True or False, got {type(self.holds).__name__} {self.holds!r}; "
                "compute it in the notebook and wrap it with bool(...)"
            )
        if self.note is not None and not isinstance(self.note, str):
            raise ResultsError(f"{where}: note must be a string or None, got {self.note!r}")
        # Normalise numpy/torch values to plain JSON and refuse NaN/inf before anything is written.
        object.__setattr__(self, "reported", _plain(self.reported, f"{where}: reported"))
        object.__setattr__(self, "measured", _plain(self.measured, f"{where}: measured"))
        tolerance = _plain(self.tolerance, f"{where}: tolerance")
        if isinstance(tolerance, bool) or not (
            tolerance is None or isinstance(tolerance, str) or (isinstance(tolerance, (int, float)) and tolerance >= 0)
        ):
            raise ResultsError(
                f"{where}: tolerance must be a non-negative number, a short text or None, got {tolerance!r}"
            )
        object.__setattr__(self, "tolerance", tolerance)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> "Claim":
        """Rebuild a claim from its JSON form; unknown or missing fields raise ResultsError."""
        if not isinstance(row, Mapping):
            raise ResultsError(f"a claim must be a JSON object, got {type(row).__name__}")
        names = [field.name for field in dataclasses.fields(cls)]
        required = [field.name for field in dataclasses.fields(cls) if field.default is dataclasses.MISSING]
        missing = [name for name in required if name not in row]
        unknown = [name for name in row if name not in names]
        if missing or unknown:
            raise ResultsError(
                f"claim {row.get('id')!r}: missing fields {missing} / unknown fields {unknown}; "
                f"expected {names}"
            )
        return cls(**row)


# -------------------------------------------------------------------------------------- writing


class Stopwatch:
    """Wall-clock time since creation, for `runtime_s`: `watch = Stopwatch()` ... `watch.elapsed()`."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the stopwatch was created, rounded to milliseconds."""
        return round(time.perf_counter() - self._start, 3)


def results_path(notebook: str, profile: str | None = None) -> Path:
    """Where `write_results(notebook, profile=...)` writes: `figures.output_dir(profile)/<notebook>.json`."""
    return figures.output_dir(profile) / f"{figures.check_name(notebook)}.json"


def write_results(
    notebook: str,
    *,
    profile: str,
    seed: int,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    claims: Sequence[Claim],
    runtime_s: float,
) -> Path:
    """Write the results of one notebook run atomically and return the path.

    `config` is the resolved settings (the parameters cell after by_profile), `metrics` the
    measured numbers (nested dicts/lists allowed; NaN and inf are refused with the key named),
    `claims` a list of `Claim`. Everything is validated before the file is touched.
    """
    figures.check_name(notebook)
    profiles.check_profile(profile)
    if not isinstance(claims, (list, tuple)) or not all(isinstance(claim, Claim) for claim in claims):
        raise ResultsError(f"claims must be a list of Claim objects, got {claims!r}")
    doc = {
        "schema_version": SCHEMA_VERSION,
        "notebook": notebook,
        "profile": profile,
        "seed": seed,
        "config": _plain(dict(config), "config"),
        "versions": _versions(),
        "git": _git_state(),
        "machine": _machine(),
        "created": _datetime.datetime.now(_datetime.timezone.utc).isoformat(timespec="seconds"),
        "runtime_s": runtime_s,
        "metrics": _plain(dict(metrics), "metrics"),
        "claims": [claim.to_dict() for claim in claims],
    }
    validate_results(doc, source=f"write_results({notebook!r})")
    return io.atomic_write_json(results_path(notebook, profile), doc)


# ------------------------------------------------------------------------------------- reading


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a results file; errors name the file and the broken field."""
    path = Path(path)
    try:
        doc = io.read_json(path)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{path}: no results file; run the notebook to write it") from error
    except ValueError as error:  # malformed JSON; read_json's message already names the file
        raise ResultsError(str(error)) from error
    return validate_results(doc, source=str(path))


def validate_results(doc: Any, *, source: str = "<results>") -> dict[str, Any]:
    """Check `doc` against the results schema; return it, or raise ResultsError naming `source` and the field."""

    def fail(field: str, problem: str) -> ResultsError:
        return ResultsError(f"{source}: field {field!r} {problem}")

    if not isinstance(doc, dict):
        raise fail("<top level>", f"must be a JSON object, got {type(doc).__name__}")
    missing = [key for key in _TOP_LEVEL_TYPES if key not in doc]
    if missing:
        raise fail(missing[0], f"is missing (all missing: {missing}); rerun the notebook to rewrite the file")
    for key, expected in _TOP_LEVEL_TYPES.items():
        value = doc[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
            raise fail(key, f"must be {names}, got {type(value).__name__} {value!r:.80}")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise fail("schema_version", f"is {doc['schema_version']}, this code reads version {SCHEMA_VERSION}")
    try:
        figures.check_name(doc["notebook"])
        profiles.check_profile(doc["profile"])
    except ValueError as error:
        raise fail("notebook/profile", str(error)) from None
    if doc["seed"] < 0:
        raise fail("seed", f"must be a non-negative int, got {doc['seed']}")
    if not math.isfinite(doc["runtime_s"]) or doc["runtime_s"] < 0:
        raise fail("runtime_s", f"must be a finite number of seconds >= 0, got {doc['runtime_s']}")
    missing_versions = [key for key in _VERSION_KEYS if key not in doc["versions"]]
    if missing_versions:
        raise fail("versions", f"lacks {missing_versions}")
    if set(doc["git"]) != {"commit", "dirty"}:
        raise fail("git", f"must have exactly the keys commit and dirty, got {sorted(doc['git'])}")
    for key in ("metrics", "config"):
        try:
            _plain(doc[key], key)
        except ResultsError as error:
            raise ResultsError(f"{source}: {error}") from None
    seen_ids = set()
    for index, row in enumerate(doc["claims"]):
        try:
            claim = Claim.from_dict(row)
        except (ResultsError, TypeError) as error:
            raise fail(f"claims[{index}]", f"is invalid: {error}") from None
        if claim.id in seen_ids:
            raise fail(f"claims[{index}].id", f"repeats id {claim.id!r}; claim ids must be unique")
        seen_ids.add(claim.id)
    return doc


# ------------------------------------------------------------------------------------- helpers


def _plain(value: Any, where: str) -> Any:
    """`value` as plain JSON (numpy/torch scalars and arrays, paths, dataclasses converted).

    Raises ResultsError naming the key path (e.g. "metrics['test']['elbo']") for NaN, inf and
    values JSON cannot hold.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    elif isinstance(value, Path):
        value = str(value)
    elif hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy, torch
        value = value.tolist()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ResultsError(
                f"{where} is {value}; NaN/inf cannot be stored or compared. Find where it arises "
                "(diverged training, log of 0, empty mean) or record the failure as a string"
            )
        return value
    if isinstance(value, Mapping):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ResultsError(f"{where} has a non-string key {key!r}; JSON keys are strings")
            plain[key] = _plain(item, f"{where}[{key!r}]")
        return plain
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{index}]") for index, item in enumerate(value)]
    raise ResultsError(f"{where} is a {type(value).__name__} ({value!r:.80}), which JSON cannot hold")


def _versions() -> dict[str, str | None]:
    def version(distribution: str) -> str | None:
        try:
            return _metadata.version(distribution)
        except _metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": version("torch"),
        "numpy": version("numpy"),
        "matplotlib": version("matplotlib"),
        "vaegen_utils": __version__,
    }


def _git_state() -> dict[str, Any]:
    """The commit and whether the tree differs from it (figures/ excluded, since runs rewrite it).

    Never raises: outside a git checkout, without git, or before the first commit the commit is None.
    """

    root = paths.checkout_root()
    if root is None:  # an installed copy (pip install .): no repository to name
        return {"commit": None, "dirty": None}

    def git(*args: str) -> str | None:
        try:
            completed = subprocess.run(
                ["git", "-C", str(root), *args],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return completed.stdout

    commit = git("rev-parse", "--verify", "--quiet", "HEAD")
    status = git("status", "--porcelain", "--", ".", ":(exclude)figures")
    return {
        "commit": (commit.strip() or None) if commit is not None else None,
        "dirty": None if status is None else bool(status.strip()),
    }


def _machine() -> dict[str, Any]:
    try:
        import torch

        torch_threads = torch.get_num_threads()
    except ImportError:
        torch_threads = None
    machine = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch_threads,
    }
    if torch_threads is not None:  # the device this process computes on, its precision policy, GPU name, CUDA
        from . import device

        machine["device"] = device.provenance()
    return machine
