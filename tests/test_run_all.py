"""run_all.sh beyond the basics (those are in test_notebooks.py): parameters with -p, runs that
never overwrite the committed figures, the runtime record, and stopping a run by signal."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from papermill.cli import _resolve_type as papermill_resolve_type

from vaegen_utils import paths, results, runall, runtimes

REPO = paths.checkout_root()
pytestmark = pytest.mark.skipif(REPO is None, reason="needs the repository checkout")
RUN_ALL = REPO / "run_all.sh" if REPO else None
HEADER = "# ---\n# jupyter:\n#   kernelspec:\n#     display_name: Python 3\n#     language: python\n#     name: python3\n# ---\n\n"


def run_all_env(**overrides: str) -> dict[str, str]:
    """This environment without VAEGEN_* settings (so run_all.sh's own rules apply), no setup step."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("VAEGEN_")}
    if os.environ.get("VAEGEN_DATA_DIR"):
        env["VAEGEN_DATA_DIR"] = os.environ["VAEGEN_DATA_DIR"]  # shared, already downloaded data
    env.update(VAEGEN_SKIP_SETUP="1", VAEGEN_PYTHON=sys.executable, **overrides)
    return env


def digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir()) if path.is_file()}


# --------------------------------------------------------------------------------- unit level


@pytest.mark.parametrize("text", ["1", "-3", "0.5", "1e-3", "True", "False", "None", "abc", "1,2", "[1, 2]", "nan", ""])
def test_parameter_values_are_read_like_papermill_reads_them(text):
    expected = papermill_resolve_type(text)
    got = runall.parse_value(text)
    assert type(got) is type(expected) and (got == expected or (got != got and expected != expected))


def test_run_names_say_what_changed_and_stay_usable_as_folder_names():
    assert runall.run_name("cpu", ["vaegen_datasets"], [], all_selected=False) == "cpu"
    assert runall.run_name("cpu", ["vaegen_datasets"], [("SEED", "1")], all_selected=False) == "cpu-vaegen_datasets-SEED=1"
    assert runall.run_name("smoke", ["a", "b"], [("SEED", "1"), ("BETAS", "[0.1, 1]")], all_selected=True) == "smoke-all-SEED=1-BETAS=_0.1__1_"
    long = runall.run_name("cpu", [f"notebook_{i}" for i in range(20)], [("SEED", "1")], all_selected=False)
    assert len(long) <= runall.MAX_RUN_NAME and re.fullmatch(r"[A-Za-z0-9_.=+-]+", long)


def test_only_the_default_cpu_run_writes_the_committed_figures(tmp_path, monkeypatch):
    monkeypatch.delenv("VAEGEN_FIGURES_DIR", raising=False)
    project, build = tmp_path / "project", tmp_path / "build"
    assert runall.output_folder("cpu", None, build, project) == (project / "figures", "cpu")
    assert runall.output_folder("cpu", "cpu-vaegen_datasets-SEED=1", build, project) == (
        build / "figures" / "cpu-vaegen_datasets-SEED=1", "cpu-vaegen_datasets-SEED=1"
    )
    assert runall.output_folder("smoke", None, build, project) == (build / "figures" / "smoke", "smoke")
    assert runall.output_folder("paper", None, build, project) == (build / "figures" / "paper", "paper")
    monkeypatch.setenv("VAEGEN_FIGURES_DIR", str(project / "figures"))
    with pytest.raises(SystemExit, match="unset VAEGEN_FIGURES_DIR"):
        runall.output_folder("cpu", "my-run", build, project)


def test_unknown_parameters_are_named_with_the_valid_ones():
    problem = runall.check_parameters([REPO / "notebooks" / "vaegen_datasets.py"], ["SEED", "EPOCHS"])
    assert problem and "vaegen_datasets has no parameter EPOCHS" in problem and "SEED" in problem.split("its parameters:")[1]
    assert runall.check_parameters([REPO / "notebooks" / "vaegen_datasets.py"], ["SEED"]) is None


def test_the_runtime_record_keeps_the_newest_per_kind_and_feeds_the_expected_time(tmp_path):
    path = tmp_path / runtimes.RECORD_FILE
    base = {"notebook": "nb", "profile": "cpu", "machine": {"cores": 2}}
    runtimes.add_record(path, {**base, "kind": "first_run", "seconds": 100.0, "date": "2026-01-01"})
    runtimes.add_record(path, {**base, "kind": "cached", "seconds": 5.0, "date": "2026-01-01"})
    runtimes.add_record(path, {**base, "kind": "first_run", "seconds": 90.0, "date": "2026-01-02"})
    records = runtimes.read_records(path)
    assert sorted((r["kind"], r["seconds"]) for r in records) == [("cached", 5.0), ("first_run", 90.0)]
    assert runtimes.expected_line(records, "nb", "cpu") == "expected 1 min 30 s first run on 2 cores, 5 s cached on 2 cores"
    assert "no runtime on record" in runtimes.expected_line(records, "nb", "smoke")
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(ValueError, match=r"runtimes.jsonl, line 3: not valid JSON"):
        runtimes.read_records(path)


def test_the_committed_runtime_record_is_valid_and_names_its_sources():
    records = runtimes.read_records(REPO / "figures" / runtimes.RECORD_FILE)
    assert records, "figures/runtimes.jsonl must hold the cpu-profile runtimes"
    for record in records:
        assert record["profile"] == "cpu" and record["seconds"] > 0
        assert record.get("source") and record.get("date") and record.get("machine", {}).get("cores")
        if record["source"] != "run_all.sh":
            assert record.get("carried_over") is True, record


# ------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "PROFILE", "smoke"], "set the profile with --profile, not -p PROFILE"),
        (["-p", "SEED"], "-p needs a KEY and a VALUE"),
        (["-p", "1SEED", "1"], "-p KEY must be a Python name"),
        (["-p", "SEED", "1", "-p", "SEED", "2"], "-p SEED given twice"),
        (["--run-name", "a/b"], "--run-name 'a/b'"),
    ],
)
def test_bad_parameters_are_refused_before_anything_runs(tmp_path, args, message):
    completed = subprocess.run(
        ["bash", str(RUN_ALL), *args], capture_output=True, text=True, env=run_all_env(VAEGEN_BUILD_DIR=str(tmp_path / "build")), timeout=60
    )
    assert completed.returncode == 2 and message in completed.stderr, completed.stderr
    assert not (tmp_path / "build").exists()


def test_a_parameter_unknown_to_the_notebook_is_refused_before_it_runs(tmp_path):
    completed = subprocess.run(
        ["bash", str(RUN_ALL), "vaegen_datasets", "--profile", "smoke", "-p", "EPOCHS", "3"],
        capture_output=True, text=True, env=run_all_env(VAEGEN_BUILD_DIR=str(tmp_path / "build")), timeout=120,
    )
    assert completed.returncode == 2, completed.stderr
    assert "vaegen_datasets has no parameter EPOCHS (its parameters: PROFILE, SEED" in completed.stderr
    assert not (tmp_path / "build" / "executed").exists()


@pytest.mark.slow
def test_a_run_with_a_changed_parameter_writes_outside_figures_and_records_its_runtime(tmp_path):
    """`./run_all.sh vaegen_datasets --profile smoke -p SEED 1`: results in build/figures/<run>/ with
    the seed applied, the committed figures/ byte for byte untouched, smoke in its own cache."""
    before = digests(REPO / "figures")
    build = tmp_path / "build"
    completed = subprocess.run(
        ["bash", str(RUN_ALL), "vaegen_datasets", "--profile", "smoke", "-p", "SEED", "1"],
        capture_output=True, text=True, env=run_all_env(VAEGEN_BUILD_DIR=str(build)), timeout=600, cwd=REPO,
    )
    assert completed.returncode == 0, f"stdout:\n{completed.stdout[-3000:]}\nstderr:\n{completed.stderr[-3000:]}"
    assert digests(REPO / "figures") == before, "a run with a changed parameter must never touch figures/"
    out = build / "figures" / "smoke-vaegen_datasets-SEED=1"
    document = results.load_results(out / "vaegen_datasets.json")
    assert document["seed"] == 1 and document["profile"] == "smoke"
    assert (out / "vaegen_datasets.png").is_file() and (out / "REPORT.md").is_file()
    assert "notebook 1 of 1: vaegen_datasets" in completed.stdout and "elapsed" in completed.stdout
    assert "not expected to hold at smoke size" in completed.stdout
    (record,) = runtimes.read_records(out / runtimes.RECORD_FILE)
    assert record["notebook"] == "vaegen_datasets" and record["profile"] == "smoke" and record["seconds"] > 0
    assert record["kind"] == "first_run" and record["parameters"] == {"SEED": 1}
    assert (build / "cache" / "smoke").is_dir(), "the smoke profile uses its own cache folder"


def _slow_project(tmp_path: Path) -> Path:
    """A throwaway project whose one notebook writes its pid, then a results file after 60 s."""
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    shutil.copy(RUN_ALL, project / "run_all.sh")
    (project / "notebooks" / "slow.py").write_text(
        HEADER + '# %% tags=["parameters"]\nPROFILE = "cpu"  # set by run_all.sh\n\n'
        "# %%\nimport os, pathlib, time\nhere = pathlib.Path(os.environ['KILL_TEST_DIR'])\n"
        "(here / 'kernel.pid').write_text(str(os.getpid()))\n"
        "for _ in range(600):\n    time.sleep(0.1)\n(here / 'late_results.json').write_text('{}')\n"
    )
    return project


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: signal.Signals(s).name)
def test_killing_run_all_mid_notebook_leaves_nothing_running_and_writes_nothing_later(tmp_path, signum):
    project = _slow_project(tmp_path)
    watch = tmp_path / "watch"
    watch.mkdir()
    env = run_all_env(KILL_TEST_DIR=str(watch), VAEGEN_BUILD_DIR=str(tmp_path / "build"), VAEGEN_FIGURES_DIR=str(tmp_path / "figures"))
    process = subprocess.Popen(
        ["bash", str(project / "run_all.sh"), "--profile", "smoke"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    deadline = time.monotonic() + 120
    while not (watch / "kernel.pid").exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the notebook never started"
        time.sleep(0.1)
    kernel = int((watch / "kernel.pid").read_text())
    watchdogs = [pid for pid in runall._children(process.pid) if pid != kernel]
    assert _running(kernel)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=60)
    if signum != signal.SIGKILL:
        assert process.returncode == 128 + signum, output
        assert f"stopped by {signal.Signals(signum).name}" in output and re.search(r"slow\s+STOPPED", output), output
    deadline = time.monotonic() + 15
    while any(_running(pid) for pid in [kernel, *watchdogs]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(kernel), f"the kernel {kernel} outlived run_all.sh after {signal.Signals(signum).name}"
    assert not any(_running(pid) for pid in watchdogs), "the watchdog must end too"
    time.sleep(1.0)  # longer than the kernel's last chance to write anything
    assert not (watch / "late_results.json").exists()
    assert not list((tmp_path / "figures").glob("*.json")) if (tmp_path / "figures").exists() else True
    assert not (tmp_path / "figures" / runtimes.RECORD_FILE).exists(), "a stopped notebook must not be recorded"


def test_readme_and_notebooks_readme_runtimes_are_the_generated_tables_of_the_record():
    """One source: both READMEs hold exactly what the report renders from figures/runtimes.jsonl
    (rerun `python -m vaegen_utils.report` after changing the record)."""
    from vaegen_utils import report

    records = runtimes.read_records(REPO / "figures" / runtimes.RECORD_FILE)
    overview, per_notebook = report.render_runtime_blocks(records, report.notebook_names(REPO))
    assert overview in (REPO / "README.md").read_text(encoding="utf-8")
    assert per_notebook in (REPO / "notebooks" / "README.md").read_text(encoding="utf-8")
    for notebook in report.notebook_names(REPO):  # every notebook has a first-run time on record
        assert runtimes.latest(records, notebook, "cpu", "first_run") is not None, notebook


def test_report_rewrites_the_runtime_blocks_and_refuses_a_readme_without_markers(tmp_path):
    from vaegen_utils import report

    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "nb.py").write_text("")
    block = f"{report.RUNTIMES_START}\nold\n{report.RUNTIMES_END}"
    gallery = f"{report.README_START}\n{report.README_END}"
    (tmp_path / "README.md").write_text(f"intro\n{gallery}\n{block}\nrest\n")
    (tmp_path / "notebooks" / "README.md").write_text(f"x\n{block}\n")
    figures = tmp_path / "figures"
    figures.mkdir()
    runtimes.add_record(figures / runtimes.RECORD_FILE, {"notebook": "nb", "profile": "cpu", "kind": "first_run", "seconds": 61.0, "machine": {"cores": 2}})
    assert report.main(["--figures", str(figures), "--readme", str(tmp_path / "README.md")]) == 0
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("intro\n") and text.endswith("rest\n") and "old" not in text and "61 s" in text
    assert "| `nb` | 61 s (2 cores) |" in (tmp_path / "notebooks" / "README.md").read_text()
    (tmp_path / "notebooks" / "README.md").write_text("no markers\n")
    assert report.main(["--figures", str(figures), "--readme", str(tmp_path / "README.md")]) == 1
