"""The notebooks: naming, jupytext pairing, the parameters cell, and run_all.sh end to end.

Every `notebooks/*.py` (py:percent, the reviewed source) must have a paired `.ipynb` committed
without outputs and in sync; the first code cell is tagged `parameters` and sets PROFILE from
`current_profile()`. The run tests execute the real `run_all.sh` with the smoke profile into
temporary folders and check the files it writes (diffusers-examples style).
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from vaegen_utils import paths, profiles, results

REPO = paths.repo_root()
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))
RUN_ALL = REPO / "run_all.sh"

# notebooks/<paperkey>_fig<N>_<slug>.py, _tab<N>_ for tables, vaegen_<slug> for our own.
PAPER_KEYS = ("zhang2022", "bozkurt2021", "xiao2024")
NAME_RULE = re.compile(
    rf"^(?:(?:{'|'.join(PAPER_KEYS)})_(?:fig|tab)\d+[a-z]?_[a-z0-9]+(?:_[a-z0-9]+)*"
    r"|vaegen_[a-z0-9]+(?:_[a-z0-9]+)*)$"
)

notebook_params = pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda path: path.stem)

# Notebooks whose per-profile tables have not moved into their paper module's builders yet (issue 13,
# done paper by paper); remove a name when its notebook is converted.
TABLES_NOT_YET_MOVED: set[str] = set()


def _is_profile_table(value) -> bool:
    """A dict literal keyed by the profile names: {"smoke": ..., "cpu": ..., "paper": ...}."""
    if not isinstance(value, ast.Dict):
        return False
    keys = {key.value for key in value.keys if isinstance(key, ast.Constant)}
    return set(profiles.PROFILES) <= keys


def cells_signature(notebook) -> list[tuple[str, str, tuple[str, ...]]]:
    """What must agree between the two halves of a pair: cell type, source and tags."""
    return [
        (cell.cell_type, cell.source.strip(), tuple(cell.metadata.get("tags", ())))
        for cell in notebook.cells
    ]


def first_code_cell(notebook):
    return next(cell for cell in notebook.cells if cell.cell_type == "code")


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks/*.py under {REPO}"


@notebook_params
def test_name_follows_the_rule(source):
    assert NAME_RULE.match(source.stem), (
        f"{source.name}: name notebooks <paperkey>_fig<N>_<slug> (or _tab<N>_), paper keys "
        f"{', '.join(PAPER_KEYS)}, or vaegen_<slug> for our own; lower case, digits and '_'"
    )


@notebook_params
def test_pair_exists_and_is_in_sync(source):
    paired = source.with_suffix(".ipynb")
    assert paired.is_file(), f"{paired.name} is missing; create it with `jupytext --sync {source.relative_to(REPO)}`"
    from_py = jupytext.read(source)
    from_ipynb = jupytext.read(paired)
    assert cells_signature(from_py) == cells_signature(from_ipynb), (
        f"{source.name} and {paired.name} differ; edit the .py and run "
        f"`jupytext --sync {source.relative_to(REPO)}` (never hand-edit both halves)"
    )


@notebook_params
def test_ipynb_is_committed_without_outputs(source):
    raw = json.loads(source.with_suffix(".ipynb").read_text(encoding="utf-8"))
    dirty = [
        index
        for index, cell in enumerate(raw["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{source.stem}.ipynb has outputs or execution counts in cells {dirty}; executed copies "
        f"belong in build/executed/. Strip it with `jupytext --sync` after clearing outputs, or "
        f"`jupyter nbconvert --clear-output --inplace`"
    )


@notebook_params
def test_header_pairs_and_names_the_kernel(source):
    for path in (source, source.with_suffix(".ipynb")):
        metadata = jupytext.read(path).metadata
        assert metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent", (
            f"{path.name}: the jupytext header must say `formats: ipynb,py:percent`"
        )
        kernelspec = metadata.get("kernelspec", {})
        assert kernelspec.get("name") == "python3" and kernelspec.get("language") == "python", (
            f"{path.name}: the header needs kernelspec name python3, language python"
        )


@notebook_params
def test_first_code_cell_is_the_parameters_cell(source):
    for path in (source, source.with_suffix(".ipynb")):
        cell = first_code_cell(jupytext.read(path))
        assert "parameters" in cell.metadata.get("tags", []), (
            f"{path.name}: the first code cell must be tagged parameters (`# %% tags=[\"parameters\"]`)"
        )
    cell = first_code_cell(jupytext.read(source))
    tree = ast.parse(cell.source)
    assignments = [node for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))]
    profile_values = [
        node.value
        for node in assignments
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name) and target.id == "PROFILE"
    ]
    assert len(profile_values) == 1 and ast.unparse(profile_values[0]) == "current_profile()", (
        f"{source.name}: the parameters cell must set `PROFILE = current_profile()` exactly once"
    )
    # papermill injects `-p PROFILE ...` in a cell *after* this one, so a value computed here from
    # PROFILE (e.g. by_profile(PROFILE, ...)) would silently keep the default profile's size.
    derived = [
        ast.unparse(node)
        for node in assignments
        if node.value is not None
        and node.value is not profile_values[0]
        and any(isinstance(name, ast.Name) and name.id == "PROFILE" for name in ast.walk(node.value))
    ]
    assert not derived, (
        f"{source.name}: the parameters cell computes {derived} from PROFILE; papermill's "
        f"`-p PROFILE smoke` lands after this cell. Keep `X = None  # None: the profile's value` here and "
        f"resolve it in the setup cell with the paper module's settings builder, e.g. "
        f"`S = zhang2022.fig1a_settings(PROFILE, epochs=EPOCHS)` (docs/architecture.md, named runs)"
    )
    # Per-profile sizes live once, in the library (profiles.resolve tables behind each paper module's
    # builders); a table here would be a copy that other notebooks must keep equal.
    if source.stem not in TABLES_NOT_YET_MOVED:
        tables = [
            ast.unparse(target)
            for node in assignments
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name) and (target.id.endswith("_BY_PROFILE") or _is_profile_table(node.value))
        ]
        assert not tables, (
            f"{source.name}: the parameters cell holds per-profile tables {tables}; move them into the paper module "
            f"(a profiles.resolve table behind a settings builder) and keep only overrides here (`X = None  # None: "
            f"the profile's value`)"
        )
    # Every setting carries a short comment, on its line or the line above (style.md habit 3).
    lines = cell.source.splitlines()
    uncommented = [
        lines[node.lineno - 1]
        for node in assignments
        if "#" not in lines[node.lineno - 1] and not (node.lineno >= 2 and lines[node.lineno - 2].lstrip().startswith("#"))
    ]
    assert not uncommented, f"{source.name}: parameters without a comment: {uncommented}"


def settings_builder(source: Path):
    """`<paper>.<figure>_settings` for notebooks/<paper>_<figure>_<slug>.py, or None while it has none."""
    match = re.match(rf"^({'|'.join(PAPER_KEYS)})_((?:fig|tab)\d+[a-z]?)_", source.stem)
    if match is None:
        return None
    return getattr(importlib.import_module(f"vaegen_utils.{match.group(1)}"), f"{match.group(2)}_settings", None)


@notebook_params
def test_parameters_cell_holds_no_per_profile_tables(source):
    # Sizes per profile live once, in the paper module's settings builder (docs/architecture.md, named
    # runs); the parameters cell holds PROFILE, overrides that default to None and the figure's own
    # profile-independent knobs. Checked for every notebook whose figure has a builder (the papers
    # are converted one by one; the others are skipped until theirs exists).
    builder = settings_builder(source)
    if builder is None:
        pytest.skip(f"{source.stem}: no settings builder in its paper module yet")
    cell = first_code_cell(jupytext.read(source))
    tables = []
    for node in ast.parse(cell.source).body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [target.id for target in targets if isinstance(target, ast.Name)]
        keys = {key.value for key in node.value.keys if isinstance(key, ast.Constant)} if isinstance(node.value, ast.Dict) else set()
        if any(name.endswith("_BY_PROFILE") for name in names) or keys & set(profiles.PROFILES):
            tables.append(ast.unparse(node).split("=")[0].strip())
    assert not tables, (
        f"{source.name}: the parameters cell holds per-profile tables {tables}; move the values into "
        f"{builder.__module__}.{builder.__name__}'s profile table and keep an override here "
        f"(`EPOCHS = None  # None: the profile's value`)"
    )
    setup = jupytext.read(source).cells
    code = "\n".join(cell.source for cell in setup if cell.cell_type == "code")
    assert re.search(rf"{builder.__name__}\(\s*PROFILE\b", code), (
        f"{source.name}: the setup cell must resolve the settings with `{builder.__name__}(PROFILE, ...)`"
    )


@notebook_params
def test_parameters_tag_survives_round_trip_and_papermill_sees_it(source, tmp_path):
    import papermill

    notebook = jupytext.read(source)
    converted = tmp_path / f"{source.stem}.ipynb"
    nbformat.write(jupytext.reads(jupytext.writes(notebook, "ipynb"), "ipynb"), converted)
    assert "parameters" in first_code_cell(nbformat.read(converted, as_version=4)).metadata.get("tags", [])
    back_to_py = jupytext.writes(jupytext.read(converted), "py:percent")
    assert '# %% tags=["parameters"]' in back_to_py
    assert "PROFILE" in papermill.inspect_notebook(str(converted)), (
        f"papermill does not find PROFILE in {source.name}'s parameters cell"
    )


# ------------------------------------------------------------------------------------ run_all.sh


def run_all(*args: str, env_overrides: dict[str, str], script: Path = RUN_ALL, timeout: float = 600):
    """Run run_all.sh with this interpreter and no setup step; return the CompletedProcess."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("VAEGEN_")}
    env.update(VAEGEN_SKIP_SETUP="1", VAEGEN_PYTHON=sys.executable, **env_overrides)
    return subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO
    )


def test_run_all_profiles_match_the_library():
    match = re.search(r"^PROFILES=\(([^)]*)\)", RUN_ALL.read_text(), flags=re.MULTILINE)
    assert match and tuple(match.group(1).split()) == profiles.PROFILES


def test_run_all_help(tmp_path):
    completed = run_all("--help", env_overrides={"VAEGEN_BUILD_DIR": str(tmp_path / "build")})
    assert completed.returncode == 0 and "Usage: ./run_all.sh" in completed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "fast"], "unknown profile 'fast'; valid profiles: smoke cpu paper"),
        (["--profile"], "--profile needs a value"),
        (["--frobnicate"], "unknown option '--frobnicate'"),
        (["--profile", "smoke", "no_such_notebook"], "unknown notebook(s): no_such_notebook; valid notebooks:"),
    ],
)
def test_run_all_rejects_bad_arguments_before_running(tmp_path, args, message):
    build = tmp_path / "build"
    completed = run_all(*args, env_overrides={"VAEGEN_BUILD_DIR": str(build)})
    assert completed.returncode == 2, completed.stderr
    assert message in completed.stderr
    if "notebook" in message:
        assert "vaegen_datasets" in completed.stderr, "the error must list the valid notebooks"
    assert not build.exists(), "nothing may run (or be created) after a bad argument"


@pytest.mark.slow
def test_run_all_smoke_writes_figures_and_results_outside_figures(tmp_path):
    build = tmp_path / "build"
    committed = {path: path.stat().st_mtime_ns for path in (REPO / "figures").glob("vaegen_datasets.*")}
    completed = run_all(
        "--profile", "smoke", "notebooks/vaegen_datasets.py", env_overrides={"VAEGEN_BUILD_DIR": str(build)}
    )
    assert completed.returncode == 0, f"stdout:\n{completed.stdout[-3000:]}\nstderr:\n{completed.stderr[-5000:]}"

    # Smoke figures go to build/figures/smoke (vaegen_utils.figures.output_dir), never figures/.
    out = build / "figures" / "smoke"
    assert (out / "vaegen_datasets.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "vaegen_datasets.pdf").read_bytes().startswith(b"%PDF")
    doc = results.load_results(out / "vaegen_datasets.json")
    assert doc["profile"] == "smoke" and doc["notebook"] == "vaegen_datasets"
    assert all(claim["holds"] for claim in doc["claims"])
    assert committed == {path: path.stat().st_mtime_ns for path in (REPO / "figures").glob("vaegen_datasets.*")}

    executed = nbformat.read(build / "executed" / "smoke" / "vaegen_datasets.ipynb", as_version=4)
    injected = [cell for cell in executed.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert injected and "PROFILE = \"smoke\"" in injected[0].source
    assert (build / "notebooks" / "vaegen_datasets.ipynb").is_file()
    held, total = sum(claim["holds"] for claim in doc["claims"]), len(doc["claims"])
    assert re.search(rf"vaegen_datasets\s+ok\s+[\d.]+\s+{held}/{total}", completed.stdout), completed.stdout


def test_run_all_stops_at_the_first_failure_and_names_the_cell(tmp_path):
    # A throwaway project folder: run_all.sh runs the notebooks next to itself.
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    shutil.copy(RUN_ALL, project / "run_all.sh")
    header = "# ---\n# jupyter:\n#   kernelspec:\n#     display_name: Python 3\n#     language: python\n#     name: python3\n# ---\n\n"
    (project / "notebooks" / "a_fails.py").write_text(
        header + '# %% tags=["parameters"]\nPROFILE = "cpu"  # set by run_all.sh\n\n'
        "# %%\nx = 1\n\n# %%\nraise RuntimeError('deliberate failure for the test')\n"
    )
    (project / "notebooks" / "b_never_runs.py").write_text(header + "# %%\nprint('ran')\n")
    build = tmp_path / "build"
    completed = run_all(
        "--profile",
        "smoke",
        env_overrides={"VAEGEN_BUILD_DIR": str(build), "VAEGEN_FIGURES_DIR": str(tmp_path / "figures")},
        script=project / "run_all.sh",
    )
    assert completed.returncode == 1, completed.stderr
    assert "notebook 'a_fails' FAILED" in completed.stderr
    assert "failing cell: code cell #3 of notebooks/a_fails.py" in completed.stderr  # parameters, x = 1, raise
    assert "raise RuntimeError('deliberate failure for the test')" in completed.stderr
    assert "RuntimeError: deliberate failure for the test" in completed.stderr
    assert not (build / "executed" / "smoke" / "b_never_runs.ipynb").exists()
    assert re.search(r"a_fails\s+FAILED", completed.stdout), completed.stdout
