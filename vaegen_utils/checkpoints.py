"""Checkpoint folders that are whole or absent, with every file's SHA-256 in their marker.

Shared by VAE training (`training`, folders `checkpoints/epoch_XXXX/`), diffusion training
(`diffusion`, `checkpoints/step_XXXXXXX/`) and the shipped diffusion checkpoints (`synthetic`).

- `write_checkpoint_atomically(parent, target, fill, marker)`: `fill(staging)` writes the files into
  a fresh staging folder `parent/.tmp-<name>.w<pid>@<host>.<random>` (named after its writer, see
  `io.remove_stale_temporaries`); then the marker file `complete` is written last, holding the
  caller's fields plus `files`: {relative path: SHA-256} of every file; then the folder is renamed
  into place. A reader therefore sees a complete folder or none.
- `verify_checkpoint(folder, fix=...)`: checks every recorded file against its SHA-256 (and that the
  files a caller needs exist) before anything is loaded, so one flipped byte in an optimizer state
  or a truncated history is an error naming the file and the folder to delete, never a silently
  different model. Markers written before hashes were recorded (no `files`) are accepted as they
  are; their model weights are still checked through the weights' SHA-256 in `config.json`.
- `drop_files(folder, names)`: removes files from a complete checkpoint (the training state of a
  checkpoint that is no longer the latest): the marker is rewritten without them first, so a crash
  in between leaves an unlisted file, which nothing reads.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from . import io
from .checks import file_sha256

COMPLETE_MARKER = "complete"
CHECKPOINTS_FOLDER = "checkpoints"

__all__ = [
    "COMPLETE_MARKER",
    "CHECKPOINTS_FOLDER",
    "write_checkpoint_atomically",
    "list_complete_checkpoints",
    "read_marker",
    "verify_checkpoint",
    "recorded_files",
    "drop_files",
    "remove_stale_staging",
    "fsync_directory",
]


def _file_hashes(folder: Path) -> dict[str, str]:
    """{relative POSIX path: SHA-256} of every file below `folder`, sorted, marker excluded."""
    hashes = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != COMPLETE_MARKER:
            hashes[path.relative_to(folder).as_posix()] = file_sha256(path)
    return hashes


def write_checkpoint_atomically(parent: Path, target: Path, fill: Callable[[Path], None], marker: dict) -> Path:
    """Write the checkpoint folder `target` (inside `parent`) so that readers see it whole or not at all.

    Creates `parent`, calls `fill(staging)` to write the contents into a fresh staging folder in
    `parent`, writes COMPLETE_MARKER (the JSON `marker` plus `files`, the SHA-256 of every file)
    last, replaces any existing `target` (a stale checkpoint from an abandoned branch of the run)
    with it by `os.replace`, and fsyncs `parent`. The staging folder is removed if anything fails.
    Returns `target`.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=io.temporary_prefix(target.name), dir=parent))
    try:
        fill(staging)
        io.atomic_write_json(staging / COMPLETE_MARKER, {**marker, "files": _file_hashes(staging)})  # written last
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        fsync_directory(parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def list_complete_checkpoints(run_dir: str | os.PathLike, prefix: str) -> list[int]:
    """Numbers N of the folders `run_dir/checkpoints/<prefix>N` that hold a complete marker, ascending.

    Staging folders and names whose suffix is not an integer are skipped.
    """
    folder = Path(run_dir) / CHECKPOINTS_FOLDER
    if not folder.is_dir():
        return []
    numbers = []
    for child in folder.iterdir():
        if child.is_dir() and child.name.startswith(prefix) and (child / COMPLETE_MARKER).is_file():
            with contextlib.suppress(ValueError):
                numbers.append(int(child.name[len(prefix):]))
    return sorted(numbers)


def read_marker(folder: str | os.PathLike, *, fix: str) -> dict:
    """The JSON marker of a complete checkpoint; errors name the file and `fix`."""
    marker = io.read_json(Path(folder) / COMPLETE_MARKER, fix=fix)
    if not isinstance(marker, dict):
        raise ValueError(f"{Path(folder) / COMPLETE_MARKER} is not a checkpoint marker (a JSON object). {fix}")
    return marker


def recorded_files(marker: dict) -> dict[str, str] | None:
    """{relative path: SHA-256} recorded in a marker, or None for a marker of an older version."""
    files = marker.get("files")
    return dict(files) if isinstance(files, dict) else None


def verify_checkpoint(folder: str | os.PathLike, *, fix: str, required: Iterable[str] = ()) -> dict:
    """Check a complete checkpoint before loading from it; returns its marker.

    Every file the marker records must exist with its recorded SHA-256, and every `required`
    relative path must exist; otherwise FileNotFoundError / ValueError naming the file, the
    checkpoint and `fix` (what to delete).
    """
    folder = Path(folder)
    marker = read_marker(folder, fix=fix)
    files = recorded_files(marker) or {}
    for name in [*files, *(name for name in required if name not in files)]:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing from the checkpoint {folder}. {fix}")
    for name, expected in files.items():
        if file_sha256(folder / name) != expected:
            raise ValueError(
                f"{folder / name} does not match the SHA-256 recorded in {folder / COMPLETE_MARKER} when the "
                f"checkpoint was written: the file was changed or damaged afterwards (disk error, partial copy, "
                f"edit). {fix}"
            )
    return marker


def drop_files(folder: str | os.PathLike, names: Iterable[str], *, fix: str) -> list[str]:
    """Remove `names` (relative paths) from a complete checkpoint; returns those that were present.

    The marker is rewritten without them before they are deleted, so the folder stays a complete,
    verifiable checkpoint at every moment. Call only while holding the run's lock.
    """
    folder = Path(folder)
    marker = read_marker(folder, fix=fix)
    names = [name for name in names if (folder / name).exists()]
    files = recorded_files(marker)
    if files is not None and any(name in files for name in names):
        kept = {name: digest for name, digest in files.items() if name not in names}
        io.atomic_write_json(folder / COMPLETE_MARKER, {**marker, "files": kept})
    for name in names:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return names


def remove_stale_staging(run_dir: str | os.PathLike, *, holding_lock: bool) -> list[Path]:
    """Remove staging folders of interrupted checkpoint writes in `run_dir/checkpoints/`.

    Only those whose writer is gone (`io.remove_stale_temporaries`): a live writer's staging
    folder is never touched, so a second process can never pull a checkpoint from under the first.
    """
    return io.remove_stale_temporaries(Path(run_dir) / CHECKPOINTS_FOLDER, holding_lock=holding_lock)


def fsync_directory(folder: Path) -> None:
    """Flush a directory's entries (e.g. a rename into it) to disk; a no-op where that is unsupported."""
    with contextlib.suppress(OSError, AttributeError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
