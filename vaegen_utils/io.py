"""Atomic writes: a file is either the old version or the complete new one, never half of either.

Every writer goes through a temporary file in the same folder, fsync, then os.replace (atomic on
POSIX and Windows). Readers therefore never see a partial file, and an interrupted run leaves
at most a stray `.tmp-*` file that is ignored.

Temporary names carry their writer, `.tmp-<target>.w<pid>@<host>.<random>`, so a cleaner can tell
a live writer's file from a dead one's: `remove_stale_temporaries(folder)` removes only files and
folders whose writing process no longer runs (and, for a caller holding the folder's lock, also
those of older versions without a writer tag).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success move it over `path` atomically.

    Use for writers that want a file name (torch.save, savefig, np.savez):
        with atomic_path(target) as tmp:
            torch.save(obj, tmp)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(target.name), dir=target.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    # mkstemp creates mode 0600; give the file the permissions a plain open() would (umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        with open(tmp, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write JSON atomically; refuses NaN and infinity, which are not valid JSON."""
    text = json.dumps(obj, indent=indent, sort_keys=False, allow_nan=False, default=_json_default)
    return atomic_write_text(path, text + "\n")


def atomic_save(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call writer(tmp_path), then move the result over `path` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def read_json(path: str | os.PathLike, *, fix: str | None = None) -> Any:
    """Read JSON with errors that name the file and what to do.

    A file that is not valid UTF-8 or not valid JSON raises ValueError; a missing file raises
    FileNotFoundError. `fix` is the advice for this file (e.g. which folder to delete); the default
    advice, "delete it and rerun", suits files that a rerun regenerates.
    """
    path = Path(path)
    advice = fix or "Delete it and rerun to regenerate it."
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        if fix is None:
            raise
        raise FileNotFoundError(f"{path} is missing. {fix}") from error
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not valid UTF-8 text ({error}); it is corrupt or not a JSON file. {advice}"
        ) from error
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}); it is corrupt or was written by another tool. {advice}"
        ) from error


# Temporary files and their writers ----------------------------------------------------------

_TAG = re.compile(r"\.w(?P<pid>\d+)@(?P<host>[A-Za-z0-9_-]*)\.[^.]+$")


def _host_label() -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname())[:40]


def temporary_prefix(target_name: str) -> str:
    """`.tmp-<target_name>.w<pid>@<host>.`: the prefix of every temporary file or folder we create."""
    return f".tmp-{target_name}.w{os.getpid()}@{_host_label()}."


def temporary_writer(path: str | os.PathLike) -> tuple[int, str] | None:
    """(pid, host) of the process that created the temporary `path`, or None for an untagged name."""
    match = _TAG.search(Path(path).name)
    return (int(match["pid"]), match["host"]) if match else None


def process_is_alive(pid: int) -> bool:
    """True when a process with this id runs on this machine (or exists but is not ours to signal)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike, *, holding_lock: bool = False) -> list[Path]:
    """Remove the `.tmp-*` files and folders in `folder` whose writer is gone; returns them.

    A temporary is stale when its tag names this host and a process id that no longer runs. A live
    writer's temporary is never removed. Untagged ones (older versions) and those of other hosts are
    removed only by a caller `holding_lock` on the folder, since every writer there holds that lock.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    host = _host_label()
    for child in folder.iterdir():
        if not child.name.startswith(".tmp-"):
            continue
        writer = temporary_writer(child)
        if writer is None or writer[1] != host:
            stale = holding_lock
        else:
            stale = writer[0] != os.getpid() and not process_is_alive(writer[0])
        if not stale:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                child.unlink()
        removed.append(child)
    return removed


def _json_default(value: Any) -> Any:
    # numpy scalars/arrays and paths appear in configs and metrics; make them plain JSON.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON: {value!r}")
