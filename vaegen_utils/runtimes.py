"""The runtime record: how long each notebook took, per profile, where and when it was measured.

`run_all.sh` appends one record per notebook it ran to `<results folder>/runtimes.jsonl` (one JSON
object per line): `figures/runtimes.jsonl` for default cpu-profile runs (committed, like the
figures), `build/figures/<profile or run name>/runtimes.jsonl` otherwise. The README's runtime
table and the per-notebook runtimes in notebooks/README.md are generated from the committed file
by `python -m vaegen_utils.report`, so they cannot disagree with it or with each other.

A record:
    notebook, profile       which notebook, which profile
    kind                    "first_run": the run_all invocation started with an empty cache folder
                            (notebooks later in the same run reuse what earlier ones trained: see
                            `conditions`); "cached": the notebook wrote nothing to the cache;
                            "partial": it computed something, but the cache was not empty at start
    seconds                 wall time of the notebook (papermill, kernel start included)
    commit, dirty, date     code and time of the measurement
    machine                 cores, CPU model, platform, load average when the notebook started
    conditions              free text: what was cached already, what else ran
    source                  "run_all.sh", or where a carried-over number was stated
    approximate             True for numbers stated as "~" where they were carried over from
    parts                   optional [{what, seconds}] when a number is a sum of separate measurements

For each (notebook, profile, kind) only the newest record is kept: a new measurement replaces
the old one, a carried-over number stays until a measured one of the same kind replaces it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable

from . import io, paths

RECORD_FILE = "runtimes.jsonl"
KINDS = ("first_run", "cached", "partial")
KIND_LABELS = {"first_run": "first run", "cached": "cached", "partial": "partly cached"}


def record_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / RECORD_FILE


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a runtimes.jsonl file ([] if it does not exist); a bad line raises naming it."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}, line {number}: not valid JSON ({error}); fix or delete that line") from error
        missing = [key for key in ("notebook", "profile", "kind", "seconds") if key not in record]
        if missing or record["kind"] not in KINDS:
            raise ValueError(
                f"{path}, line {number}: a runtime record needs notebook, profile, kind (one of {', '.join(KINDS)}) "
                f"and seconds; missing {missing or 'nothing'}, kind {record.get('kind')!r}"
            )
        records.append(record)
    return records


def write_records(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> Path:
    """Write records atomically, one per line, sorted by profile, notebook and kind (stable diffs)."""
    order = {kind: index for index, kind in enumerate(KINDS)}
    ordered = sorted(records, key=lambda r: (r["profile"], r["notebook"], order[r["kind"]]))
    text = "".join(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n" for record in ordered)
    return io.atomic_write_text(path, text)


def add_record(path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Add `record`, replacing the previous one of the same (notebook, profile, kind)."""
    key = (record["notebook"], record["profile"], record["kind"])
    kept = [r for r in read_records(path) if (r["notebook"], r["profile"], r["kind"]) != key]
    return write_records(path, [*kept, record])


def latest(records: Iterable[dict[str, Any]], notebook: str, profile: str, kind: str) -> dict[str, Any] | None:
    matches = [r for r in records if r["notebook"] == notebook and r["profile"] == profile and r["kind"] == kind]
    return max(matches, key=lambda r: r.get("date") or "") if matches else None


def machine() -> dict[str, Any]:
    """Where a measurement ran: what its numbers depend on."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor() or None,
        "platform": platform.platform(),
        "load_average": load,
    }


def git_state() -> dict[str, Any]:
    root = paths.checkout_root()
    if root is None:
        return {"commit": None, "dirty": None}

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "--verify", "--quiet", "HEAD")
    status = git("status", "--porcelain", "--", ".", ":(exclude)figures")
    return {"commit": commit.strip() if commit else None, "dirty": None if status is None else bool(status.strip())}


# ------------------------------------------------------------------------------------ formatting


def format_seconds(seconds: float | None, approximate: bool = False) -> str:
    """"45 s", "7 min 3 s" (under 10 min), "23 min", "1 h 2 min"; "—" for None."""
    if seconds is None:
        return "—"
    prefix = "~" if approximate else ""
    seconds = round(float(seconds))
    if seconds < 90:
        return f"{prefix}{seconds} s"
    if seconds < 600:
        minutes, rest = divmod(seconds, 60)
        return f"{prefix}{minutes} min {rest} s" if rest else f"{prefix}{minutes} min"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{prefix}{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{prefix}{hours} h {minutes} min"


def describe(record: dict[str, Any] | None, *, with_conditions: bool = True) -> str:
    """One cell of a table: the time, then where and when it was measured (details: the record)."""
    if record is None:
        return "not recorded"
    text = format_seconds(record["seconds"], record.get("approximate", False))
    where = []
    commit = record.get("commit")
    if commit:
        where.append(f"{commit[:7]}{' (dirty)' if record.get('dirty') else ''}")
    if record.get("date"):
        where.append(str(record["date"])[:10])
    machine_info = record.get("machine") or {}
    if machine_info.get("description"):
        where.append(machine_info["description"])
    elif machine_info.get("cores"):
        load = machine_info.get("load_average")
        where.append(f"{machine_info['cores']} cores" + (f", load {load[0]}" if load else ""))
    if with_conditions and record.get("conditions"):
        where.append(record["conditions"])
    if record.get("carried_over"):
        where.append("carried over")
    return text + (f" ({'; '.join(where)})" if where else "")


def expected_line(records: Iterable[dict[str, Any]], notebook: str, profile: str) -> str:
    """run_all.sh's "expected" text for a notebook: first-run and cached times on record."""
    records = list(records)
    parts = []
    for kind in ("first_run", "cached"):
        record = latest(records, notebook, profile, kind)
        if record is not None:
            cores = (record.get("machine") or {}).get("cores")
            where = f" on {cores} cores" if cores else ""
            parts.append(f"{format_seconds(record['seconds'], record.get('approximate', False))} {KIND_LABELS[kind]}{where}")
    return "expected " + ", ".join(parts) if parts else f"no runtime on record for the {profile} profile"


def paper_of(notebook: str) -> str:
    for key in ("zhang2022", "bozkurt2021", "xiao2024"):
        if key in notebook:
            return key
    if notebook == "vaegen_gap_decomposition":
        return "all three"
    return "vaegen"


def render_notebook_table(records: list[dict[str, Any]], notebooks: Iterable[str], profile: str = "cpu") -> str:
    """notebooks/README.md's per-notebook runtimes (Markdown), from the record."""
    lines = [
        f"| notebook | first run ({profile}) | cached rerun ({profile}) |",
        "|---|---|---|",
    ]
    for notebook in notebooks:
        first = latest(records, notebook, profile, "first_run")
        cached = latest(records, notebook, profile, "cached")
        lines.append(f"| `{notebook}` | {describe(first)} | {describe(cached)} |")
    return "\n".join(lines)


def render_summary_table(records: list[dict[str, Any]], notebooks: Iterable[str], profile: str = "cpu") -> str:
    """The README's runtime table: per paper and in total, sums of the per-notebook records."""
    order = ("zhang2022", "bozkurt2021", "xiao2024", "all three", "vaegen")
    groups: dict[str, list[str]] = {}
    for notebook in sorted(notebooks, key=lambda name: order.index(paper_of(name))):
        groups.setdefault(paper_of(notebook), []).append(notebook)
    lines = [
        f"| notebooks | first run ({profile}) | cached rerun ({profile}) | measured |",
        "|---|---|---|---|",
    ]
    total_first, total_cached, all_first, all_cached = 0.0, 0.0, True, True
    for group, members in groups.items():
        firsts = [latest(records, n, profile, "first_run") for n in members]
        cacheds = [latest(records, n, profile, "cached") for n in members]
        first_sum = sum(r["seconds"] for r in firsts if r)
        cached_sum = sum(r["seconds"] for r in cacheds if r)
        total_first += first_sum
        total_cached += cached_sum
        all_first &= all(firsts)
        all_cached &= all(cacheds)
        missing_first = [n for n, r in zip(members, firsts) if r is None]
        missing_cached = [n for n, r in zip(members, cacheds) if r is None]
        approximate = any(r.get("approximate") for r in [*firsts, *cacheds] if r)
        commits = sorted({r["commit"][:7] for r in [*firsts, *cacheds] if r and r.get("commit")})
        loads = sorted({(r.get("machine") or {}).get("description") or f"{(r.get('machine') or {}).get('cores')} cores" for r in firsts if r})
        note = f"at {', '.join(commits)}; {'; '.join(loads)}" if commits else "; ".join(loads)
        first_cell = format_seconds(first_sum, approximate) if firsts and any(firsts) else "—"
        cached_cell = format_seconds(cached_sum, approximate) if cacheds and any(cacheds) else "—"
        if missing_first:
            first_cell += f" (without {', '.join(missing_first)})"
        if missing_cached:
            cached_cell += f" (without {', '.join(missing_cached)})"
        lines.append(f"| {group} ({len(members)}) | {first_cell} | {cached_cell} | {note} |")
    lines.append(
        f"| **all** | **{format_seconds(total_first)}**{'' if all_first else ' (incomplete)'} | "
        f"**{format_seconds(total_cached)}**{'' if all_cached else ' (incomplete)'} | sum of the per-notebook records |"
    )
    return "\n".join(lines)
