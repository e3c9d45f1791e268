"""Advisory file locks: at most one writer per key, across processes and threads.

Two notebooks (or a notebook and a cluster job) that need the same training run, sample bank or
cached result must not write it at the same time: one would delete or overwrite the other's
half-written files. Every writer of such an entry holds its lock for the whole write; a second
caller waits for the first to finish and then finds the finished result, so the work is done once.

- `file_lock(path)`: a context manager holding an exclusive `fcntl.flock` on `path` (created if
  needed). The kernel releases the lock when its process exits, however it exits (crash, kill -9),
  so a lock is never left behind by a dead process; nothing needs cleaning up.
- `key_lock(folder, key)`: the lock of an arbitrary key (a cache key, a job name) as a file in
  `folder`, for callers (e.g. a jobs runner) that lock things which are not folders themselves.
- `holding_folder_lock("run_dir")`: a decorator holding `<run_dir>/.lock` for the whole call of a
  function whose keyword argument `run_dir` names the folder it writes (`training.train`,
  `diffusion.train_diffusion`); calls without that folder run unlocked.

While it waits, a caller prints one line naming the holder (pid, host, since when, what for, from
the lock file) and how to stop waiting. `timeout=None` waits for as long as the holder works
(training can take hours); with a timeout in seconds, `LockTimeout` is raised after it, naming the
holder. Locks are re-entrant within one thread (a nested call for the same file returns at once).
Other threads of the same process wait like other processes do.

Where the file system does not support `flock` (some network file systems), a warning says so
once and the work proceeds unlocked, as it did before locks existed.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import socket
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

try:  # POSIX; the project targets Linux and macOS
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["LockTimeout", "file_lock", "key_lock", "holding_folder_lock", "holder_of", "lock_file_for_key"]

FOLDER_LOCK_FILE = ".lock"

POLL_SECONDS = 0.2
_UNSUPPORTED_ERRNOS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}

# (resolved path) -> [pid, thread id, depth]: re-entrancy within one thread of one process. The pid
# matters after fork: a child inherits this dict but not the parent's hold on the lock.
_held: dict[str, list[int]] = {}
_held_guard = threading.Lock()
_warned_unsupported: set[str] = set()


class LockTimeout(TimeoutError):
    """Another live process held the lock for longer than the caller's timeout."""


def holder_of(path: str | os.PathLike) -> dict | None:
    """What the current (or last) holder of the lock file wrote about itself, or None."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def _describe(holder: dict | None) -> str:
    if not holder:
        return "another process (it has not recorded itself yet)"
    since = holder.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    purpose = f" for {holder['purpose']}" if holder.get("purpose") else ""
    return f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} since {when}{purpose}"


def _report_waiting(path: Path, holder: dict | None) -> None:
    """Called once when a caller starts waiting (tests patch it to observe the wait)."""
    print(
        f"[vaegen] waiting for {path}: held by {_describe(holder)}. The work is being done by that "
        "process; this one continues when it finishes (stop it, or this call, with Ctrl-C).",
        file=sys.stderr,
        flush=True,
    )


@contextlib.contextmanager
def file_lock(
    path: str | os.PathLike,
    *,
    timeout: float | None = None,
    purpose: str = "",
    poll_seconds: float = POLL_SECONDS,
) -> Iterator[Path]:
    """Hold an exclusive advisory lock on `path` for the body of the `with` block.

    timeout  None: wait as long as the holder works; a number of seconds: raise LockTimeout after it.
    purpose  a short description recorded in the lock file and shown to waiting callers.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(path)
    me = [os.getpid(), threading.get_ident()]
    with _held_guard:
        entry = _held.get(key)
        if entry is not None and entry[:2] == me:
            entry[2] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield path
        finally:
            with _held_guard:
                _held[key][2] -= 1
        return

    stream = open(path, "a+", encoding="utf-8")
    locked = False
    try:
        locked = _acquire(stream, path, timeout=timeout, poll_seconds=poll_seconds)
        if locked:
            record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "purpose": purpose}
            stream.seek(0)
            stream.truncate()
            stream.write(json.dumps(record) + "\n")
            stream.flush()
        with _held_guard:
            _held[key] = [*me, 1]
        try:
            yield path
        finally:
            with _held_guard:
                _held.pop(key, None)
    finally:
        if locked:
            with contextlib.suppress(OSError):
                fcntl.flock(stream.fileno(), fcntl.LOCK_UN)
        stream.close()


def _acquire(stream, path: Path, *, timeout: float | None, poll_seconds: float) -> bool:
    """Block until the lock is ours (True), or return False where locks are unsupported."""
    if fcntl is None:
        _warn_unsupported(path, "fcntl is not available on this platform")
        return False
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    reported = False
    while True:
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        except OSError as error:
            if error.errno in _UNSUPPORTED_ERRNOS:
                _warn_unsupported(path, os.strerror(error.errno))
                return False
            raise
        holder = holder_of(path)
        if deadline is not None and time.monotonic() >= deadline:
            raise LockTimeout(
                f"{path} is still held by {_describe(holder)} after {timeout:g} s. Wait for that process to "
                "finish (the lock is released automatically when it exits, even if it crashes), stop it, "
                "or call again with a longer timeout (timeout=None waits as long as it takes)."
            )
        if not reported:
            _report_waiting(path, holder)
            reported = True
        time.sleep(poll_seconds if deadline is None else max(0.0, min(poll_seconds, deadline - time.monotonic())))


def _warn_unsupported(path: Path, reason: str) -> None:
    folder = str(path.parent)
    if folder in _warned_unsupported:
        return
    _warned_unsupported.add(folder)
    warnings.warn(
        f"file locks are not supported in {folder} ({reason}); proceeding without a lock, so two "
        "processes writing the same cache entry at once are not prevented here. Put VAEGEN_CACHE_DIR "
        "on a local file system to get locking.",
        stacklevel=4,
    )


def lock_file_for_key(folder: str | os.PathLike, key: str) -> Path:
    """The lock file of `key` in `folder`: a readable prefix of the key plus a hash of all of it."""
    readable = "".join(character if character.isalnum() or character in "._-" else "-" for character in str(key))[:48]
    digest = hashlib.sha256(str(key).encode("utf-8")).hexdigest()[:16]
    return Path(folder) / f"{readable.strip('.-') or 'key'}-{digest}.lock"


@contextlib.contextmanager
def key_lock(folder: str | os.PathLike, key: str, **options) -> Iterator[Path]:
    """`file_lock` on the lock file of `key` in `folder` (options as for `file_lock`)."""
    with file_lock(lock_file_for_key(folder, key), **options) as path:
        yield path


def holding_folder_lock(parameter: str = "run_dir", lock_name: str = FOLDER_LOCK_FILE) -> Callable[[Callable], Callable]:
    """Decorator: hold `file_lock(<folder>/<lock_name>)` for the whole call, where the folder is the
    keyword argument `parameter` of the call; a call without it (None) runs unlocked."""

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def locked(*args, **kwargs):
            folder = kwargs.get(parameter)
            if folder is None:
                return function(*args, **kwargs)
            purpose = f"{function.__module__}.{function.__qualname__} writing {folder}"
            with file_lock(Path(folder) / lock_name, purpose=purpose):
                return function(*args, **kwargs)

        return locked

    return decorate
