"""The claims report: REPORT.md and the README gallery are generated from the results JSON, and a
malformed results file stops the report with an error naming it."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from vaegen_utils import paths, report, results  # noqa: E402
from vaegen_utils.figures import savefig  # noqa: E402


@pytest.fixture()
def figures_folder(tmp_path, monkeypatch):
    folder = tmp_path / "figures"
    monkeypatch.setenv("VAEGEN_FIGURES_DIR", str(folder))
    return folder


def claim(identifier: str, holds: bool, paper: str = "zhang2022", note: str | None = None) -> results.Claim:
    return results.Claim(
        id=identifier, paper=paper, figure="Fig. 1a", statement=f"statement {identifier}",
        reported=0.1854, measured=0.19, tolerance="direction", holds=holds, note=note,
    )


def write_notebook(name: str, claims: list[results.Claim]) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    savefig(fig, name, profile="cpu")
    plt.close(fig)
    results.write_results(name, profile="cpu", seed=0, config={}, metrics={"x": 1.0}, claims=claims, runtime_s=1.0)


def test_report_lists_every_claim_grouped_by_paper_with_totals_and_reasons(figures_folder, tmp_path):
    write_notebook("zhang2022_fig1a_overfitting", [claim("falls", True), claim("rises", False, note="too few epochs")])
    write_notebook("bozkurt2021_fig03_rd_curves", [claim("u_shape", True, paper="bozkurt2021")])
    readme = tmp_path / "README.md"
    readme.write_text("# project\n\nintro\n")

    assert report.main(["--figures", str(figures_folder), "--readme", str(readme)]) == 0

    text = (figures_folder / "REPORT.md").read_text()
    assert "2 of 3 claims hold in the cpu profile" in text
    assert text.index("Zhang, Hayes, Barber") < text.index("Bozkurt et al.")  # paper order
    assert "| ✗ |" in text and text.count("| ✓ |") == 2
    assert "`rises` (zhang2022_fig1a_overfitting): too few epochs" in text
    assert "(zhang2022_fig1a_overfitting.png)" in text and "zhang2022_fig1a_overfitting.pdf" in text
    gallery = readme.read_text()
    assert gallery.startswith("# project\n\nintro\n")
    assert report.README_START in gallery and "2 of 3 claims hold" in gallery
    assert 'src="figures/bozkurt2021_fig03_rd_curves.png"' in gallery

    # Regenerating replaces the block instead of appending a second one.
    assert report.main(["--figures", str(figures_folder), "--readme", str(readme)]) == 0
    assert readme.read_text() == gallery


def test_a_malformed_results_file_stops_the_report_naming_it(figures_folder, capsys):
    write_notebook("zhang2022_fig1a_overfitting", [claim("falls", True)])
    broken = figures_folder / "zhang2022_fig2_broken.json"
    broken.write_text("{ not json")
    assert report.main(["--figures", str(figures_folder), "--no-readme"]) == 1
    error = capsys.readouterr().err
    assert "zhang2022_fig2_broken.json" in error and "not valid JSON" in error
    assert not (figures_folder / "REPORT.md").exists()

    broken.write_text(json.dumps({"notebook": "x"}))  # valid JSON, wrong schema
    assert report.main(["--figures", str(figures_folder), "--check"]) == 1
    assert "zhang2022_fig2_broken.json" in capsys.readouterr().err


def test_every_committed_results_file_validates_and_reports():
    folder = paths.repo_root() / "figures"
    assert report.main(["--figures", str(folder), "--check"]) == 0
