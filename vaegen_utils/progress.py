"""Progress bars for long loops: one rule for every module that can run for more than ~10 s.

Every long loop (training, encoder retraining, the per-point q* fit, IWAE, diffusion sampling and
bank generation, encoder attacks, nearest-neighbour distances) takes `progress: bool | None` and
asks `bar(...)` for its bar. Who sees what:

- `progress=True` / `False` forces the bar on / off for that call.
- `progress=None` (the default everywhere) follows `$VAEGEN_PROGRESS` when it is set:
  `on` (or `1`), `off` (or `0`), or `text` (plain lines, see below); unset or `auto`:
  * in a Jupyter kernel (JupyterLab, nbval, papermill): on, as a widget bar (`tqdm.auto`; ipywidgets
    is installed by setup) — a notebook shows progress by default;
  * on a terminal (stderr is a tty): on, as tqdm's usual one-line bar;
  * anywhere else (pytest's captured output, CI logs, a script writing to a file): off, so test
    output and logs stay free of bar noise.
- `text` mode writes a plain line per update, at most one every `TEXT_INTERVAL_S` seconds per
  bar plus the final state: readable in papermill's log and in the executed notebook / HTML,
  where a widget would show nothing. `run_all.sh` sets `VAEGEN_PROGRESS=text` for that reason
  (unless you set it yourself).

With `progress=None`, bars appear only after `DELAY_S` seconds, so loops that finish quickly print
nothing; `progress=True` shows them at once.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable

ENV_VAR = "VAEGEN_PROGRESS"
MODES = ("auto", "on", "off", "text")
_ALIASES = {"": "auto", "1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off"}

DELAY_S = 2.0  # a loop shorter than this shows no bar at all
TEXT_INTERVAL_S = 15.0  # text mode: at most one line per bar every this many seconds


def env_mode() -> str:
    """`$VAEGEN_PROGRESS` as one of MODES; an invalid value raises, naming the valid ones."""
    raw = os.environ.get(ENV_VAR, "").strip().lower()
    value = _ALIASES.get(raw, raw)
    if value not in MODES:
        raise ValueError(
            f"{ENV_VAR}={os.environ[ENV_VAR]!r} is not a progress mode; use one of {', '.join(MODES)} "
            "(or 1/0), or unset it for the default (on in notebooks and terminals, off elsewhere)"
        )
    return value


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, nbval, papermill), False in a plain interpreter."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def resolve(progress: bool | None) -> str:
    """The kind of bar for a call: "off", "widget", "text" or "terminal" (module docstring)."""
    if progress is False:
        return "off"
    mode = env_mode()
    if progress is None and mode == "off":
        return "off"
    if mode == "text":
        return "text"
    if progress is None and mode == "auto" and not (in_notebook() or _stderr_is_a_terminal()):
        return "off"
    if in_notebook():
        return "widget" if _widgets_available() else "text"
    return "terminal" if _stderr_is_a_terminal() else "text"


def bar(
    iterable: Iterable | None = None,
    *,
    total: float | None = None,
    desc: str | None = None,
    unit: str = "it",
    progress: bool | None = None,
    **options: Any,
):
    """A tqdm bar following the module's rule; a disabled bar when progress is off.

    Same use as tqdm: `for item in bar(items, desc=...)` or `with bar(total=n) as b: b.update(k)`.
    `options` go to tqdm (e.g. `postfix`, `unit_scale`).
    """
    kind = resolve(progress)
    # An explicit progress=True shows the bar at once; the default waits DELAY_S seconds.
    delay = 0.0 if progress else DELAY_S
    common = dict(total=total, desc=desc, unit=unit, delay=delay, **options)
    if kind == "off":
        from tqdm.std import tqdm

        return tqdm(iterable, disable=True, **common)
    if kind == "widget":
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm(iterable, **common)
    from tqdm.std import tqdm

    if kind == "terminal":
        return tqdm(iterable, leave=False, file=sys.stderr, **common)
    return tqdm(
        iterable, file=_LineWriter(sys.stderr), mininterval=TEXT_INTERVAL_S, ascii=True, ncols=100, **common
    )


class _LineWriter:
    """A file for tqdm that turns its carriage-return redraws into whole lines (logs, HTML)."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        for piece in text.replace("\r", "\n").split("\n"):
            piece = piece.rstrip()
            if piece:
                self._stream.write(piece + "\n")

    def flush(self) -> None:
        getattr(self._stream, "flush", lambda: None)()


def _stderr_is_a_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401  (tqdm.notebook renders with it; without it, text lines)
    except ImportError:
        return False
    return True
