"""What the cache folder holds, and removing it safely: `python -m vaegen_utils.cache du | clean`.

The cache (`paths.cache_dir()`, i.e. `cache/` or `$VAEGEN_CACHE_DIR`; the tests' smoke runs use
`build/cache/smoke`) holds one folder per entry:
- `runs/<key[:16]>-<slug>/`: a trained model (`training/` with checkpoints) or derived results
  (`results/`), see `vaegen_utils.cache`;
- `sample_banks/<key[:16]>-<name>/`: diffusion samples (`vaegen_utils.diffusion.SampleBank`);
- `diffusion/<name>/`: retrained diffusion models (`vaegen_utils.synthetic.train_pretrained`).

`du` groups entries by **paper key and kind**: the paper key is the first word of the folder's
slug when it is one of `zhang2022`, `bozkurt2021`, `xiao2024`, `vaegen` (the project's own
notebooks), else the first word of the `kind` in the entry's config (`bozkurt2021-rd` ->
`bozkurt2021`); the kind is `training` for trained models, the rest of the config's kind for
derived results (`rd`, `amortization-gap`, ...), `sample_bank` and `diffusion_training`. Notebooks
are named after the same paper keys (`<paperkey>_fig<N>_...`), and several notebooks of a paper
share its trained runs, so a split per notebook would count them twice.

`clean` removes entries (all, or those not used for `--older-than` DAYS: the age is the time since
the newest file in the entry changed; looking an entry up refreshes its `config.json` / manifest).
With `--keep-final`, a finished training run is not removed but reduced to its final checkpoint
(weights, model config, history), and sample banks and diffusion-model runs are kept whole; derived
results and unfinished runs are removed. A notebook that evaluates a run's earlier checkpoints
retrains the run when it next needs them (training.train warns). Entries in use (a lock in them held by a
live process) are skipped. `--dry-run` lists what would go and the space it would free.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from . import locks, paths, training

PAPER_KEYS = ("zhang2022", "bozkurt2021", "xiao2024", "vaegen")
SECTIONS = ("runs", "sample_banks", "diffusion")


@dataclass
class Entry:
    """One cache entry (a folder) with what `du` and `clean` need to know about it."""

    path: Path
    section: str
    group: str
    kind: str
    bytes: int
    newest_change: float
    checkpoints: int = 0
    with_training_state: int = 0
    finished_final: int | None = None  # the final epoch of a finished training run
    extra: dict = field(default_factory=dict)


def disk_bytes(path: Path) -> int:
    """Disk usage of a file or folder as `du` counts it (allocated blocks; apparent size where unknown)."""
    files = [path] if path.is_file() else [item for item in path.rglob("*") if item.is_file() and not item.is_symlink()]
    total = 0
    for item in files:
        stat = item.stat()
        total += stat.st_blocks * 512 if hasattr(stat, "st_blocks") else stat.st_size
    return total


def _newest_change(path: Path) -> float:
    times = [item.stat().st_mtime for item in path.rglob("*") if item.is_file() and not item.is_symlink()]
    return max(times, default=path.stat().st_mtime)


def _slug_of(folder: Path) -> str:
    head, _, rest = folder.name.partition("-")
    return rest if len(head) == 16 and all(character in "0123456789abcdef" for character in head) else folder.name


def _config_kind(folder: Path) -> str | None:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("config")
    except (OSError, ValueError, AttributeError):
        return None
    return config.get("kind") if isinstance(config, dict) and isinstance(config.get("kind"), str) else None


def _group_and_kind(section: str, folder: Path) -> tuple[str, str]:
    slug = _slug_of(folder)
    first_word = slug.split("-", 1)[0]
    if section == "sample_banks":
        return (first_word if first_word in PAPER_KEYS else "other"), "sample_bank"
    if section == "diffusion":
        return (first_word if first_word in PAPER_KEYS else "other"), "diffusion_training"
    kind = _config_kind(folder) or "unknown"
    group = first_word if first_word in PAPER_KEYS else kind.split("-", 1)[0]
    group = group if group in PAPER_KEYS else "other"
    if kind == "train" or (folder / "training").is_dir():
        return group, "training"
    return group, kind[len(group) + 1:] if kind.startswith(group + "-") else kind


def _training_facts(folder: Path) -> tuple[int, int, int | None]:
    """(checkpoints, how many hold a training state, final epoch if the run is finished)."""
    run_dir = folder / "training"
    epochs = training.list_checkpoints(run_dir)
    with_state = sum((training.checkpoint_folder(run_dir, epoch) / training.STATE_FILE).is_file() for epoch in epochs)
    finished = None
    if epochs:
        try:
            marker = json.loads((training.checkpoint_folder(run_dir, epochs[-1]) / training.COMPLETE_MARKER).read_text())
            setup = json.loads((run_dir / training.RUN_CONFIG_FILE).read_text())
            if marker.get("finished") or epochs[-1] == setup["train_config"]["epochs"]:
                finished = epochs[-1]
        except (OSError, ValueError, KeyError, TypeError):
            finished = None
    return len(epochs), with_state, finished


def entries(root: str | Path | None = None) -> list[Entry]:
    """Every entry of the cache folder `root` (default `paths.cache_dir()`)."""
    root = Path(root) if root is not None else paths.cache_dir()
    found = []
    for section in SECTIONS:
        base = root / section
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir()):
            if not folder.is_dir():
                continue
            group, kind = _group_and_kind(section, folder)
            entry = Entry(folder, section, group, kind, disk_bytes(folder), _newest_change(folder))
            if kind == "training":
                entry.checkpoints, entry.with_training_state, entry.finished_final = _training_facts(folder)
            found.append(entry)
    return found


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def usage_table(found: Sequence[Entry]) -> str:
    """The `du` report: one line per (paper key, kind), subtotals per paper key, the total."""
    rows: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for entry in found:
        row = rows[(entry.group, entry.kind)]
        row[0] += 1
        row[1] += entry.bytes
        row[2] += entry.checkpoints
        row[3] += entry.with_training_state
    lines = [f"{'paper key':<12} {'kind':<32} {'entries':>7} {'checkpoints':>11} {'w/ state':>8} {'size':>10}"]
    by_group: dict[str, int] = defaultdict(int)
    for (group, kind), (count, size, checkpoints, state) in sorted(rows.items(), key=lambda item: (item[0][0], -item[1][1])):
        by_group[group] += size
        lines.append(f"{group:<12} {kind:<32} {count:>7} {checkpoints:>11} {state:>8} {human(size):>10}")
    lines.append("")
    for group, size in sorted(by_group.items(), key=lambda item: -item[1]):
        lines.append(f"{group:<12} {'(all kinds)':<32} {'':>7} {'':>11} {'':>8} {human(size):>10}")
    total = sum(entry.bytes for entry in found)
    checkpoints = sum(entry.checkpoints for entry in found)
    lines.append(f"{'total':<12} {'':<32} {len(found):>7} {checkpoints:>11} {'':>8} {human(total):>10}")
    return "\n".join(lines)


@dataclass
class CleanReport:
    removed: list[Path] = field(default_factory=list)
    thinned: list[Path] = field(default_factory=list)
    skipped_in_use: list[tuple[Path, str]] = field(default_factory=list)
    freed_bytes: int = 0


def _locks_of(folder: Path) -> list[Path]:
    return sorted(set(folder.rglob("*.lock")))  # (pathlib's * also matches the hidden `.lock`)


def _holding_all(lock_files: Iterable[Path]):
    """Context: hold every lock without waiting, or raise LockTimeout naming the first held one."""
    import contextlib

    stack = contextlib.ExitStack()
    try:
        for path in lock_files:
            stack.enter_context(locks.file_lock(path, timeout=0, purpose="python -m vaegen_utils.cache clean"))
    except BaseException:
        stack.close()
        raise
    return stack


def _thin_to_final(entry: Entry, dry_run: bool) -> int:
    """Remove every checkpoint but the final one, and the final one's training state; bytes freed."""
    run_dir = entry.path / "training"
    freed = 0
    for epoch in training.list_checkpoints(run_dir):
        folder = training.checkpoint_folder(run_dir, epoch)
        if epoch != entry.finished_final:
            freed += disk_bytes(folder)
            if not dry_run:
                shutil.rmtree(folder)
        elif (folder / training.STATE_FILE).is_file():
            freed += disk_bytes(folder / training.STATE_FILE)
            if not dry_run:
                training.drop_files(folder, [training.STATE_FILE], fix=f"delete {entry.path}")
    return freed


def clean(
    root: str | Path | None = None, *, keep_final: bool = False, older_than_days: float | None = None, dry_run: bool = False
) -> CleanReport:
    """Remove cache entries (see the module docstring); returns what was (or would be) done."""
    report = CleanReport()
    now = time.time()
    for entry in entries(root):
        if older_than_days is not None and now - entry.newest_change < older_than_days * 86400:
            continue
        if keep_final and entry.section in ("sample_banks", "diffusion"):
            continue  # samples and diffusion models are end products too (and slow to remake)
        keep = keep_final and entry.kind == "training" and entry.finished_final is not None
        if keep and entry.checkpoints == 1 and entry.with_training_state == 0:
            continue  # already just its final checkpoint
        try:
            with _holding_all(_locks_of(entry.path)):
                if keep:
                    report.freed_bytes += _thin_to_final(entry, dry_run)
                    report.thinned.append(entry.path)
                else:
                    report.freed_bytes += entry.bytes
                    report.removed.append(entry.path)
                    if not dry_run:
                        shutil.rmtree(entry.path)
        except locks.LockTimeout as error:
            report.skipped_in_use.append((entry.path, str(error).split(" after ")[0]))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vaegen_utils.cache",
        description="Sizes of the cache folder per paper key and kind (du), and removing entries (clean).",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="the cache folder (default: $VAEGEN_CACHE_DIR or <repo>/cache)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("du", help="disk usage per paper key and kind of entry")
    cleaner = commands.add_parser("clean", help="remove cache entries (skipping those in use)")
    cleaner.add_argument("--keep-final", action="store_true", help="keep the final checkpoint (weights, config, history) of every finished training run, and sample banks "
                         "and diffusion-model runs; remove derived results and unfinished runs")
    cleaner.add_argument("--older-than", type=float, metavar="DAYS", default=None, help="only entries unused for more than DAYS days")
    cleaner.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    arguments = parser.parse_args(argv)
    root = arguments.cache_dir if arguments.cache_dir is not None else paths.cache_dir()
    if arguments.command == "du":
        print(f"cache folder {root}")
        print(usage_table(entries(root)))
        return 0
    if arguments.older_than is not None and arguments.older_than < 0:
        parser.error(f"--older-than must be >= 0 days, got {arguments.older_than}")
    report = clean(root, keep_final=arguments.keep_final, older_than_days=arguments.older_than, dry_run=arguments.dry_run)
    verb = "would free" if arguments.dry_run else "freed"
    for path in report.removed:
        print(f"{'would remove' if arguments.dry_run else 'removed'} {path}")
    for path in report.thinned:
        print(f"{'would keep' if arguments.dry_run else 'kept'} only the final checkpoint of {path}")
    for path, why in report.skipped_in_use:
        print(f"skipped {path}: in use ({why})")
    print(f"{len(report.removed)} entries removed, {len(report.thinned)} reduced to their final checkpoint, "
          f"{len(report.skipped_in_use)} skipped; {verb} {human(report.freed_bytes)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
