"""savefig and the results JSON: files written, errors raised, schema enforced."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display in tests

import matplotlib.pyplot as plt
import numpy as np
import pytest

from vaegen_utils import figures, paths, results
from vaegen_utils.results import Claim, ResultsError

REPO = paths.repo_root()


@pytest.fixture
def figures_tmp(tmp_path, monkeypatch):
    """Send figures and results to a temporary folder so tests never touch figures/."""
    folder = tmp_path / "figures"
    monkeypatch.setenv("VAEGEN_FIGURES_DIR", str(folder))
    return folder


@pytest.fixture
def figure():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    yield fig
    plt.close(fig)


def make_claim(**overrides) -> Claim:
    fields = dict(
        id="mnist_split_sizes",
        paper="vaegen",
        figure="data sets table",
        statement="MNIST has 60000 training images",
        reported=60000,
        measured=60000,
        tolerance=0,
        holds=True,
    )
    fields.update(overrides)
    return Claim(**fields)


def write(**overrides) -> Path:
    arguments = dict(
        profile="smoke",
        seed=0,
        config={"epochs": 2},
        metrics={"elbo": -90.5, "per_beta": {"0.1": [1.0, 2.0]}},
        claims=[make_claim()],
        runtime_s=1.25,
    )
    arguments.update(overrides)
    return results.write_results("vaegen_unit_test", **arguments)


# ------------------------------------------------------------------------------------ figures


def test_savefig_writes_png_and_pdf(figures_tmp, figure):
    png, pdf = figures.savefig(figure, "vaegen_unit_test")
    assert (png, pdf) == (figures_tmp / "vaegen_unit_test.png", figures_tmp / "vaegen_unit_test.pdf")
    assert png.read_bytes().startswith(b"\x89PNG")
    assert pdf.read_bytes().startswith(b"%PDF")
    assert not list(figures_tmp.glob(".tmp-*")), "temporary files must not be left behind"


def test_savefig_is_byte_deterministic(figures_tmp, figure):
    # Rerunning a notebook with unchanged results must not create git diffs.
    first = [path.read_bytes() for path in figures.savefig(figure, "vaegen_unit_test")]
    second = [path.read_bytes() for path in figures.savefig(figure, "vaegen_unit_test")]
    assert first == second


@pytest.mark.parametrize("name", ["", "a/b", "../up", "fig.png", "fig.pdf", "has space", "/abs", "_x"])
def test_savefig_rejects_bad_names(figures_tmp, figure, name):
    with pytest.raises(ValueError, match="invalid figure name"):
        figures.savefig(figure, name)
    assert not figures_tmp.exists() or not any(figures_tmp.iterdir())


def test_savefig_rejects_non_figures(figures_tmp):
    with pytest.raises(TypeError, match="matplotlib Figure"):
        figures.savefig("not a figure", "vaegen_unit_test")


def test_savefig_raises_when_the_folder_cannot_be_written(tmp_path, monkeypatch, figure):
    # A regular file where the folder should be: unwritable even for root (chmod is not).
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("VAEGEN_FIGURES_DIR", str(blocker / "figures"))
    with pytest.raises(OSError):
        figures.savefig(figure, "vaegen_unit_test")


def test_output_dir_keeps_non_cpu_profiles_out_of_figures(tmp_path, monkeypatch):
    monkeypatch.delenv("VAEGEN_FIGURES_DIR", raising=False)
    monkeypatch.setenv("VAEGEN_BUILD_DIR", str(tmp_path / "build"))
    assert figures.output_dir("smoke") == tmp_path / "build" / "figures" / "smoke"
    assert figures.output_dir("paper") == tmp_path / "build" / "figures" / "paper"
    assert figures.output_dir("cpu") == REPO / "figures"
    monkeypatch.setenv("VAEGEN_PROFILE", "smoke")
    assert figures.output_dir() == tmp_path / "build" / "figures" / "smoke"
    with pytest.raises(ValueError, match="unknown profile"):
        figures.output_dir("fast")


def test_output_dir_env_override_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEGEN_FIGURES_DIR", str(tmp_path / "elsewhere"))
    assert figures.output_dir("smoke") == figures.output_dir("cpu") == tmp_path / "elsewhere"


def test_sample_grid_shapes():
    grey = np.zeros((5, 1, 4, 3), dtype=np.float32)
    assert figures.sample_grid(grey, 2, padding=1).shape == (3 * 5 - 1, 2 * 4 - 1)
    colour = np.ones((4, 3, 2, 2), dtype=np.float32)
    assert figures.sample_grid(colour, 4, padding=0).shape == (2, 8, 3)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        figures.sample_grid(np.zeros((4, 28, 28)), 2)


# ------------------------------------------------------------------------------------ results


def test_write_results_round_trip(figures_tmp):
    path = write(metrics={"elbo": np.float32(-90.5), "counts": np.arange(3)})
    assert path == figures_tmp / "vaegen_unit_test.json"
    doc = results.load_results(path)
    assert doc["notebook"] == "vaegen_unit_test" and doc["profile"] == "smoke"
    assert doc["metrics"] == {"elbo": -90.5, "counts": [0, 1, 2]}
    assert doc["claims"][0]["holds"] is True and doc["claims"][0]["note"] is None
    assert set(doc["versions"]) >= {"python", "torch", "numpy", "matplotlib", "vaegen_utils"}
    assert set(doc["git"]) == {"commit", "dirty"}
    assert set(doc["machine"]) >= {"platform", "cpu_count", "torch_threads"}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_write_results_rejects_non_finite_metrics_naming_the_key(figures_tmp, bad):
    with pytest.raises(ResultsError, match=r"metrics\['test'\]\['elbo'\] is"):
        write(metrics={"test": {"elbo": bad}})
    assert not (figures_tmp / "vaegen_unit_test.json").exists(), "nothing may be written on error"


@pytest.mark.parametrize("holds", [1, "yes", np.bool_(True), None])
def test_claim_rejects_non_bool_holds(holds):
    with pytest.raises(ResultsError, match="holds must be True or False"):
        make_claim(holds=holds)


def test_claim_rejects_unknown_paper_and_bad_fields():
    with pytest.raises(ResultsError, match="paper must be one of"):
        make_claim(paper="kingma2014")
    with pytest.raises(ResultsError, match="statement must be a non-empty string"):
        make_claim(statement="")
    with pytest.raises(ResultsError, match="tolerance must be"):
        make_claim(tolerance=-1)
    with pytest.raises(ResultsError, match="measured is nan"):
        make_claim(measured=float("nan"))


def test_write_results_rejects_bad_arguments(figures_tmp):
    with pytest.raises(ValueError, match="unknown profile"):
        write(profile="fast")
    with pytest.raises(ValueError, match="invalid figure name"):
        results.write_results("../x", profile="smoke", seed=0, config={}, metrics={}, claims=[], runtime_s=0)
    with pytest.raises(ResultsError, match="list of Claim"):
        write(claims=[{"id": "x"}])
    with pytest.raises(ResultsError, match="repeats id"):
        write(claims=[make_claim(), make_claim()])


def test_load_results_names_file_on_malformed_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"notebook": ')
    with pytest.raises(ResultsError, match="broken.json is not valid JSON"):
        results.load_results(path)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda doc: doc.pop("claims"), "claims"),
        (lambda doc: doc.update(seed="0"), "seed"),
        (lambda doc: doc.update(profile="fast"), "notebook/profile"),
        (lambda doc: doc["claims"][0].update(holds="true"), "claims[0]"),
        (lambda doc: doc["claims"][0].pop("measured"), "claims[0]"),
        (lambda doc: doc["claims"][0].update(paper="nobody"), "claims[0]"),
        (lambda doc: doc.update(runtime_s=-1), "runtime_s"),
        (lambda doc: doc.update(git={}), "git"),
    ],
)
def test_validate_results_names_file_and_field(figures_tmp, mutate, field):
    path = write()
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultsError) as caught:
        results.load_results(path)
    message = str(caught.value)
    assert str(path) in message and repr(field) in message, message


def test_stopwatch_counts_up():
    watch = results.Stopwatch()
    first = watch.elapsed()
    assert 0 <= first <= watch.elapsed()


@pytest.mark.parametrize(
    "path", sorted((REPO / "figures").glob("*.json")), ids=lambda path: path.name
)
def test_every_committed_results_file_validates(path):
    doc = results.load_results(path)
    assert doc["notebook"] == path.stem, f"{path} says it belongs to notebook {doc['notebook']!r}"
    assert doc["profile"] == "cpu", f"{path}: committed figures must come from the cpu profile"
