"""Numpy arrays cached in an `.npz` file together with their SHA-256, checked on every load.

The one implementation behind the caches of `data` (decoded MNIST / CIFAR pixels) and
`tetrominoes` (generated images and factors). Imports only numpy and the standard library.

- `write_checked_npz(path, arrays, settings)`: writes the arrays, the settings (as JSON) and a
  SHA-256 over the settings and every array's name, shape, dtype and bytes; atomically
  (`vaegen_utils.io.atomic_save`), so a reader never sees half a file.
- `read_checked_npz(path, names, settings)`: the arrays, or None when there is nothing usable:
  no file (None, silently), or a file that is unreadable, holds other arrays or other settings, or
  fails its SHA-256 (the file is deleted with a warning naming it and the reason, then None), so
  the caller simply rebuilds and writes it again.

File layout: one entry per array plus `settings` (a 0-d str array holding the JSON) and `sha256`
(a 0-d str array). Uncompressed, so loading is a plain read. Never unpickled
(`allow_pickle=False`): a cache file cannot run code. The hash detects corruption and stale
files; it is not a signature against someone who rewrites the file on purpose.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vaegen_utils import io as atomic_io

__all__ = ["FORMAT_VERSION", "RESERVED_NAMES", "write_checked_npz", "read_checked_npz"]

FORMAT_VERSION = 1  # part of every hash: bumping it invalidates every file written before
RESERVED_NAMES = ("settings", "sha256")  # entries of the file that are not caller arrays

DEFAULT_READ_WARNING = "deleting the unusable file {path} ({reason}); it will be rebuilt"


class _Unusable(Exception):
    """The file exists but cannot be used; str() is the reason, for the warning."""


def write_checked_npz(
    path: str | os.PathLike,
    arrays: Mapping[str, np.ndarray],
    settings: Mapping[str, Any] | None = None,
    *,
    failure_warning: str | None = None,
    stacklevel: int = 1,
) -> bool:
    """Write `arrays` (name -> array), `settings` and their SHA-256 to `path`, atomically.

    `settings`: a JSON-serialisable dict describing what the arrays were made from (versions,
    seeds, sizes...); `read_checked_npz` only accepts the file for equal settings.
    Returns True once written. An OSError (full disk, read-only folder) propagates, unless
    `failure_warning` is given: then it becomes a UserWarning with that text, formatted with
    `{path}` and `{error}`, and False is returned (for caches, whose loss only costs time).
    `stacklevel` as in `warnings.warn`, counted from the caller of this function.
    Raises ValueError for a reserved name ('settings', 'sha256') or a non-array value.
    """
    path = Path(path)
    arrays = _as_arrays(arrays)
    settings_json = _settings_json(settings)
    sha256 = _sha256(arrays, settings_json)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as stream:  # a file object: np.savez would append '.npz' to a name
            np.savez(stream, **arrays, settings=np.array(settings_json), sha256=np.array(sha256))

    try:
        atomic_io.atomic_save(path, write)
    except OSError as error:
        if failure_warning is None:
            raise
        warnings.warn(failure_warning.format(path=path, error=error), stacklevel=stacklevel + 1)
        return False
    return True


def read_checked_npz(
    path: str | os.PathLike,
    names: Iterable[str],
    settings: Mapping[str, Any] | None = None,
    *,
    warning: str = DEFAULT_READ_WARNING,
    stacklevel: int = 1,
) -> dict[str, np.ndarray] | None:
    """The arrays `names` of a file written by `write_checked_npz` with equal `settings`, or None.

    None without a warning when `path` does not exist. When it exists but is unusable (not a
    readable npz, other array names, other settings, or a SHA-256 that does not match its
    arrays), the file is deleted, a UserWarning `warning.format(path=..., reason=...)` is issued
    (the default names the file and says it will be rebuilt) and None is returned: the caller
    rebuilds the arrays and writes them again. `stacklevel` as in `warnings.warn`, counted from
    the caller of this function. The arrays are returned in the order of `names`.
    """
    path = Path(path)
    names = tuple(names)
    try:
        return _load(path, names, _settings_json(settings))
    except FileNotFoundError:
        return None
    except _Unusable as reason:
        warnings.warn(warning.format(path=path, reason=reason), stacklevel=stacklevel + 1)
        path.unlink(missing_ok=True)
        return None


def _load(path: Path, names: tuple[str, ...], settings_json: str) -> dict[str, np.ndarray]:
    try:
        # Our own file handle: np.load leaks its handle when the zip is corrupt.
        # allow_pickle=False: a cache file must never be able to run code.
        with open(path, "rb") as stream, np.load(stream, allow_pickle=False) as archive:
            stored_names = sorted(set(archive.files) - set(RESERVED_NAMES))
            if stored_names != sorted(names):
                raise _Unusable(f"it holds the arrays {stored_names}, wanted {sorted(names)}")
            stored_settings = str(archive["settings"])
            if stored_settings != settings_json:
                raise _Unusable(f"it holds {stored_settings}, wanted {settings_json}")
            arrays = {name: archive[name] for name in names}
            stored_sha256 = str(archive["sha256"])
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise _Unusable(f"unreadable ({type(error).__name__}: {error})") from error
    if _sha256(arrays, settings_json) != stored_sha256:
        raise _Unusable("the SHA-256 of its arrays does not match the one stored with them")
    return arrays


def _as_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    checked = {}
    for name, array in arrays.items():
        if name in RESERVED_NAMES:
            raise ValueError(
                f"an array may not be named {name!r}: {', '.join(RESERVED_NAMES)} are reserved "
                "for the file's own entries; rename it"
            )
        if not isinstance(array, np.ndarray):
            raise ValueError(
                f"{name!r} must be a numpy array, got {type(array).__name__}; pass np.asarray(...)"
            )
        if array.dtype.hasobject:
            raise ValueError(
                f"{name!r} has dtype {array.dtype}, which npz can only store by pickling; "
                "convert it to a numeric or fixed-width string dtype"
            )
        checked[name] = array
    return checked


def _settings_json(settings: Mapping[str, Any] | None) -> str:
    return json.dumps(None if settings is None else dict(settings), sort_keys=True, allow_nan=False)


def _sha256(arrays: Mapping[str, np.ndarray], settings_json: str) -> str:
    digest = hashlib.sha256(f"checked-npz v{FORMAT_VERSION};{settings_json};".encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        # Names, shapes and dtypes are hashed too, so a reshaped array cannot pass for the original.
        digest.update(f"{name}{array.shape}{array.dtype.str};".encode())
        digest.update(array.reshape(-1).view(np.uint8))  # the bytes, without a copy
    return digest.hexdigest()
