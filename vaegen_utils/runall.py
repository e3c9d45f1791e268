"""The engine of ./run_all.sh: run notebooks with papermill, one after another, and account for them.

`run_all.sh` checks its arguments (in bash, before the environment is set up), runs
scripts/setup.sh, then replaces itself with `python -m vaegen_utils.runall ...` (exec), so the
process you see as run_all.sh *is* this one. For each notebook it prints "notebook k of n", the
elapsed time and the time on record (`vaegen_utils.runtimes`); converts notebooks/<name>.py to
build/notebooks/<name>.ipynb; executes it with papermill into build/executed/<run>/<name>.ipynb;
exports HTML into build/html/<run>/; records the measured runtime; and at the end prints a table
of runtimes and claims and writes the claims report.

Where results go (`output_folder`): a default run (cpu profile, no -p, no --run-name) writes the
committed figures/ (or $VAEGEN_FIGURES_DIR); any other run writes build/figures/<run>/, where
<run> is the --run-name, else the profile when no parameter is changed, else a name derived from
the profile, the notebooks and the parameters (`run_name`). So `./run_all.sh NAME -p SEED 1` can
never overwrite the committed figures. The smoke profile also gets its own cache folder,
build/cache/smoke (as run_tests.sh), unless $VAEGEN_CACHE_DIR is set.

Stopping: SIGTERM, SIGINT (Ctrl-C) and SIGHUP stop the run: the notebook's kernel (which
jupyter_client starts in its own session) and everything it started get SIGTERM, then SIGKILL
after `KILL_GRACE_S`; nothing writes results afterwards and the exit status is 128 + the signal.
SIGKILL cannot be caught: for it a watchdog process (its own session, started with the run) sees
the run disappear and kills the kernel's process group the same way; on systems without /proc
or pgrep, ipykernel's own parent poller (the kernel exits within ~1 s of losing its parent) is
what remains.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from . import paths, profiles, runtimes

KILL_GRACE_S = 5.0
WATCHDOG_POLL_S = 0.5
KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RUN_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
MAX_RUN_NAME = 100


# --------------------------------------------------------------------------------- parameters


def parse_value(text: str) -> Any:
    """A -p value as papermill's command line reads it: True/False/None, int, float, else the string."""
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def notebook_parameters(source: Path) -> list[str]:
    """Names assigned in the parameters cell (tagged "parameters") of a jupytext .py notebook."""
    import ast

    import jupytext

    notebook = jupytext.read(source)
    for cell in notebook.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            names = []
            for node in ast.parse(cell.source).body:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
                names += [target.id for target in targets if isinstance(target, ast.Name)]
            return names
    return []


def check_parameters(sources: Sequence[Path], keys: Sequence[str]) -> str | None:
    """None when every key is a parameter of every notebook, else the error text naming them."""
    problems = []
    for source in sources:
        known = notebook_parameters(source)
        unknown = [key for key in keys if key not in known]
        if unknown:
            problems.append(
                f"{source.stem} has no parameter {', '.join(unknown)} (its parameters: {', '.join(known) or 'none'})"
            )
    if not problems:
        return None
    return "; ".join(problems) + ". -p sets a variable of the notebook's parameters cell; name the notebook(s) that have it"


def run_name(profile: str, notebooks: Sequence[str], parameters: Sequence[tuple[str, str]], all_selected: bool) -> str:
    """The folder name of a non-default run: the profile, plus notebooks and parameters if any."""
    if not parameters:
        return profile
    scope = "all" if all_selected else "+".join(notebooks)
    changed = "-".join(f"{key}={value}" for key, value in parameters)
    name = re.sub(r"[^A-Za-z0-9_.=+-]", "_", f"{profile}-{scope}-{changed}")
    if len(name) > MAX_RUN_NAME:  # many notebooks or long values: keep it readable and unique
        import hashlib

        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = f"{name[: MAX_RUN_NAME - 11]}-{digest}"
    return name


def output_folder(profile: str, run: str | None, build: Path, project: Path) -> tuple[Path, str]:
    """(results folder, run label) for this run; see the module docstring."""
    override = os.environ.get("VAEGEN_FIGURES_DIR")
    if run is None and profile == profiles.DEFAULT_PROFILE:
        return (Path(override) if override else project / "figures"), profile
    label = run or profile
    folder = Path(override) if override else build / "figures" / label
    committed = (project / "figures").resolve()
    if folder.resolve() == committed:
        raise SystemExit(
            f"run_all.sh: error: VAEGEN_FIGURES_DIR points at the committed figures/ but this run is not the default "
            f"cpu run (profile {profile}, run {label}); unset VAEGEN_FIGURES_DIR so it writes to {build / 'figures' / label}"
        )
    return folder, label


# ---------------------------------------------------------------------------- child processes


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc, else pgrep)."""
    if os.path.isdir("/proc"):
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = _stat(int(entry))
                if stat is not None and stat[0] == pid:
                    found.append(int(entry))
        return found
    try:
        output = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(value) for value in output.split()]


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a process from /proc, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), int(fields[19])


def _signal_group(pid: int, signum: int) -> None:
    """Send `signum` to the process group `pid` leads (a kernel is its own session), else to `pid`."""
    try:
        group = os.getpgid(pid)
    except OSError:
        return
    try:
        if group == pid and group != os.getpgid(0):
            os.killpg(group, signum)
        else:
            os.kill(pid, signum)
    except OSError:
        pass


def stop_children(exclude: Sequence[int] = (), grace: float = KILL_GRACE_S) -> None:
    """SIGTERM every child's process group (the notebook kernel), SIGKILL what is left after `grace`."""
    targets = [pid for pid in _children(os.getpid()) if pid not in exclude]
    for pid in targets:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid) for pid in targets):
        for pid in targets:  # reap our own children so they stop counting as alive
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.05)
    for pid in targets:
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    if os.path.isdir("/proc"):
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return text[text.rindex(")") + 2 :][:1] != "Z"
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def watchdog(parent: int) -> int:
    """Kill the process groups of `parent`'s children once `parent` dies without saying "done".

    Runs in its own session (so a group kill of the run does not take it along); learns the
    children while the parent lives and checks their start times before killing (no pid reuse).
    """
    known: dict[int, int] = {}
    me = os.getpid()
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], WATCHDOG_POLL_S)
        if ready:
            line = sys.stdin.readline()
            if line.strip() == "done":
                return 0
            if line == "":  # EOF: the parent is gone without a word (SIGKILL)
                break
        if os.path.isdir("/proc"):
            for pid in _children(parent):
                stat = _stat(pid)
                if pid != me and stat is not None:
                    known[pid] = stat[1]
        if not _parent_alive(parent):
            break
    for pid, started in known.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == started:
            _signal_group(pid, signal.SIGTERM)
    time.sleep(KILL_GRACE_S)
    for pid, started in known.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == started:
            _signal_group(pid, signal.SIGKILL)
    return 0


def _parent_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _alive(pid)


class Interrupted(KeyboardInterrupt):
    """A stop signal. A KeyboardInterrupt, because asyncio (inside papermill) re-raises those and
    logs-and-swallows other exceptions raised in its callbacks."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_stopped_by: list[int] = []  # the signal that stopped the run, checked again after each notebook


def _install_signal_handlers(watchdog_pid: int | None) -> None:
    def handler(signum, frame):  # noqa: ARG001
        for other in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(other, signal.SIG_IGN)  # one stop, not several
        _stopped_by.append(signum)
        print(f"\nrun_all.sh: {signal.Signals(signum).name} received: stopping the notebook's kernel", file=sys.stderr, flush=True)
        stop_children(exclude=[watchdog_pid] if watchdog_pid else [])
        raise Interrupted(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, handler)


# ------------------------------------------------------------------------------------ running


def _format_elapsed(seconds: float) -> str:
    return runtimes.format_seconds(seconds)


def _cache_has_files(folder: Path) -> bool:
    for _, _, files in os.walk(folder):
        if files:
            return True
    return False


def _cache_files_written_since(folder: Path, since: float) -> int:
    count = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                if os.stat(os.path.join(root, name)).st_mtime >= since:
                    count += 1
            except OSError:
                continue
    return count


def failing_cell(executed: Path, name: str) -> str:
    """Which code cell of notebooks/<name>.py failed, found in papermill's executed copy."""
    if not executed.is_file():
        return f"no executed notebook at {executed}: papermill failed before running any cell (see above)"
    cells = json.loads(executed.read_text())["cells"]
    # Number the code cells as in notebooks/<name>.py: papermill's injected cell is not in the source.
    code_cells = [
        cell for cell in cells
        if cell["cell_type"] == "code" and "injected-parameters" not in cell.get("metadata", {}).get("tags", [])
    ]
    for number, cell in enumerate(code_cells, start=1):
        errors = [out for out in cell.get("outputs", []) if out.get("output_type") == "error"]
        if errors or cell.get("metadata", {}).get("papermill", {}).get("exception"):
            source = "".join(cell["source"]).strip().splitlines()
            lines = [f"failing cell: code cell #{number} of notebooks/{name}.py (In [{cell.get('execution_count')}]), which starts:"]
            lines += [f"    {line}" for line in source[:6]]
            lines += [f"error: {error['ename']}: {error['evalue']}" for error in errors]
            return "\n".join(lines)
    return "papermill failed but no cell is marked failed (kernel died or cell timed out?); see the log above"


def claims_cell(results_dir: Path, name: str, profile: str) -> str:
    from .results import load_results

    path = results_dir / f"{name}.json"
    try:
        document = load_results(path)
    except (OSError, ValueError) as error:  # a notebook that wrote no valid results file
        return f"no valid results ({type(error).__name__}: {path})"
    held = sum(bool(claim["holds"]) for claim in document["claims"])
    text = f"{held}/{len(document['claims'])}"
    return text + " (not expected to hold at smoke size)" if profile == "smoke" else text


def print_summary(rows: list[tuple[str, str, float]], results_dir: Path, profile: str) -> None:
    print(f"\n{'notebook':<44} {'status':<11} {'runtime (s)':>11}  claims held/total")
    for name, status, seconds in rows:
        claims = claims_cell(results_dir, name, profile) if status == "ok" else "-"
        print(f"{name:<44} {status:<11} {seconds:>11.1f}  {claims}")
    if profile == "smoke":
        print(
            "\nsmoke profile: toy sizes (seconds of training) check that every notebook runs end to end; the paper "
            "claims are evaluated but not expected to hold at this size. Use the cpu profile for the claims."
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vaegen_utils.runall", description="run_all.sh's engine (see ./run_all.sh --help)")
    parser.add_argument("--watchdog", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, default=None, help="the folder holding notebooks/ (run_all.sh's own folder)")
    parser.add_argument("--profile", default=profiles.DEFAULT_PROFILE, choices=profiles.PROFILES)
    parser.add_argument("--run-name", default=None)
    parser.add_argument("--all-selected", action="store_true", help="the notebooks are every notebook (no names given)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    parser.add_argument("notebooks", nargs="*")
    args = parser.parse_args(argv)
    if args.watchdog is not None:
        return watchdog(args.watchdog)
    return run(args)


def run(args: argparse.Namespace) -> int:
    import logging

    repo = (args.project or paths.checkout_root() or Path.cwd()).resolve()
    if not (repo / "notebooks").is_dir():
        print(f"run_all.sh: error: {repo} has no notebooks/ folder; run ./run_all.sh from a checkout", file=sys.stderr)
        return 2
    profile, notebooks = args.profile, list(args.notebooks)
    sources = [repo / "notebooks" / f"{name}.py" for name in notebooks]
    keys = [key for key, _ in args.parameter]
    problem = check_parameters(sources, keys)
    if problem:
        print(f"run_all.sh: error: {problem}", file=sys.stderr)
        return 2
    build = paths.build_dir()
    label = args.run_name or (run_name(profile, notebooks, args.parameter, args.all_selected) if args.parameter else None)
    results_dir, label = output_folder(profile, label, build, repo)
    results_dir.mkdir(parents=True, exist_ok=True)
    if profile == "smoke" and not os.environ.get("VAEGEN_CACHE_DIR"):
        os.environ["VAEGEN_CACHE_DIR"] = str(build / "cache" / "smoke")  # never the cpu cache (as run_tests.sh)
    os.environ["VAEGEN_FIGURES_DIR"] = str(results_dir)  # the kernels inherit it: figures and results go here
    os.environ["VAEGEN_PROFILE"] = profile
    os.environ.setdefault("VAEGEN_PROGRESS", "text")  # plain progress lines in papermill's log and the HTML
    cache = paths.cache_dir()
    executed_dir, html_dir = build / "executed" / label, build / "html" / label
    (build / "notebooks").mkdir(parents=True, exist_ok=True)
    executed_dir.mkdir(parents=True, exist_ok=True)
    record_file = runtimes.record_path(results_dir)
    on_record = runtimes.read_records(record_file)
    committed = runtimes.record_path(repo / "figures")
    if committed != record_file:
        on_record += runtimes.read_records(committed)
    parameters = {key: parse_value(value) for key, value in args.parameter}
    changed = "".join(f" -p {key} {value!r}" for key, value in parameters.items())
    print(f"== profile {profile}{changed}: {len(notebooks)} notebook(s); figures and results -> {results_dir}")
    print(f"   cache: {cache}; executed notebooks: {executed_dir}")
    if profile == "smoke":
        print("   smoke profile: toy sizes; notebook output is not echoed and claims are not expected to hold")

    watchdog_process = subprocess.Popen(
        [sys.executable, "-m", "vaegen_utils.runall", "--watchdog", str(os.getpid())],
        stdin=subprocess.PIPE, text=True, start_new_session=True,
    )
    _install_signal_handlers(watchdog_process.pid)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cache_was_empty = not _cache_has_files(cache)
    started = time.monotonic()
    rows: list[tuple[str, str, float]] = []
    try:
        for index, (name, source) in enumerate(zip(notebooks, sources), start=1):
            expected = runtimes.expected_line(on_record, name, profile)
            print(
                f"\n== notebook {index} of {len(notebooks)}: {name} ({label}); elapsed {_format_elapsed(time.monotonic() - started)}; "
                f"{expected}",
                flush=True,
            )
            seconds, ok, executed = _run_one(name, source, build, executed_dir, html_dir, profile, parameters, repo)
            if _stopped_by:  # the signal arrived where a library caught it: still a stop, not a failure
                raise Interrupted(_stopped_by[0])
            if not ok:
                rows.append((name, "FAILED", seconds))
                print(f"\nrun_all.sh: notebook '{name}' FAILED (profile {profile}); executed copy: {executed}", file=sys.stderr)
                print(failing_cell(executed, name), file=sys.stderr)
                print_summary(rows, results_dir, profile)
                return 1
            rows.append((name, "ok", seconds))
            written = _cache_files_written_since(cache, time.time() - seconds - 1)
            kind = "first_run" if cache_was_empty else ("cached" if written == 0 else "partial")
            record = {
                "notebook": name, "profile": profile, "kind": kind, "seconds": round(seconds, 1),
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": runtimes.machine(),
                "source": "run_all.sh", "cache_files_written": written, "approximate": False,
                "parameters": {key: value for key, value in parameters.items()} or None,
                **runtimes.git_state(),
            }
            runtimes.add_record(record_file, record)
            print(f"== {name}: {runtimes.format_seconds(seconds)} ({runtimes.KIND_LABELS[kind]}); recorded in {record_file}")
    except Interrupted as stop:
        rows.append((notebooks[len(rows)], "STOPPED", time.monotonic() - started))
        print(f"run_all.sh: stopped by {stop}; nothing more runs and nothing is recorded", file=sys.stderr)
        print_summary(rows, results_dir, profile)
        return 128 + stop.signum
    finally:
        if watchdog_process.poll() is None:
            try:
                watchdog_process.stdin.write("done\n")
                watchdog_process.stdin.flush()
            except (OSError, ValueError):
                pass
    print_summary(rows, results_dir, profile)
    print(f"\ntotal {runtimes.format_seconds(time.monotonic() - started)}")
    from . import report

    report_args = ["--figures", str(results_dir)]
    if results_dir.resolve() == (repo / "figures").resolve() and (repo / "README.md").is_file():
        report_args += ["--readme", str(repo / "README.md")]
    else:
        report_args.append("--no-readme")
    status = report.main(report_args)
    print(f"HTML copies of the executed notebooks: {html_dir}/")
    return status


def _run_one(name, source, build, executed_dir, html_dir, profile, parameters, repo) -> tuple[float, bool, Path]:
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    unexecuted = build / "notebooks" / f"{name}.ipynb"
    executed = executed_dir / f"{name}.ipynb"
    executed.unlink(missing_ok=True)  # a stale copy must never be mistaken for this run's output
    jupytext.write(jupytext.read(source), unexecuted, fmt="ipynb")
    start = time.monotonic()
    try:
        # kernel_name/language: jupytext output may lack kernel metadata; PROFILE is passed as a
        # parameter too, so the notebook's PROFILE matches even where it ignores the environment.
        papermill.execute_notebook(
            str(unexecuted), str(executed), parameters={"PROFILE": profile, **parameters},
            kernel_name="python3", language="python", progress_bar=False, log_output=profile != "smoke",
            cwd=str(repo), execution_timeout=int(os.environ.get("VAEGEN_CELL_TIMEOUT", "14400")),
        )
    except (PapermillExecutionError, Exception) as error:  # noqa: BLE001  (any failure: name the cell)
        print(f"run_all.sh: {type(error).__name__}: {error}".splitlines()[0], file=sys.stderr)
        return time.monotonic() - start, False, executed
    seconds = time.monotonic() - start
    try:  # a browsable copy of the full run for readers without Jupyter
        import nbformat
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
        html_dir.mkdir(parents=True, exist_ok=True)
        from . import io

        io.atomic_write_text(html_dir / f"{name}.html", body)
    except Exception as error:  # noqa: BLE001
        print(f"run_all.sh: warning: HTML export of {name} failed ({error}); the run itself succeeded", file=sys.stderr)
    return seconds, True, executed


if __name__ == "__main__":
    sys.exit(main())
