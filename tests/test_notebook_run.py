"""vaegen_utils.notebook: the start / savefig / finish frame every figure notebook uses."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vaegen_utils import notebook  # noqa: E402
from vaegen_utils.results import Claim, load_results  # noqa: E402


def claim(holds: bool) -> Claim:
    return Claim(id="x_rises", paper="zhang2022", figure="Fig. 1a", statement="x rises", reported="rises",
                 measured={"x": 1.0}, tolerance="x > 0", holds=holds)


def test_a_run_seeds_saves_and_writes_its_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VAEGEN_FIGURES_DIR", str(tmp_path))
    run = notebook.start("toy_fig1", "cpu", seed=3)
    first = torch.rand(2)
    notebook.start("toy_fig1", "cpu", seed=3)
    assert torch.equal(first, torch.rand(2)), "start(seed) must seed torch's global generator"
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    run.savefig(fig)
    path = run.finish(config={"a": 1}, metrics={"m": [1.0]}, claims=[claim(False)])
    assert path == tmp_path / "toy_fig1.json" and (tmp_path / "toy_fig1.png").is_file() and (tmp_path / "toy_fig1.pdf").is_file()
    doc = load_results(path)
    assert doc["seed"] == 3 and doc["profile"] == "cpu" and doc["claims"][0]["holds"] is False and doc["runtime_s"] >= 0
    assert "FAILS" in capsys.readouterr().out


def test_smoke_runs_say_verdicts_are_not_expected_to_hold(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VAEGEN_FIGURES_DIR", str(tmp_path))
    notebook.start("toy_fig1", "smoke").finish(config={}, metrics={}, claims=[claim(False)])
    out = capsys.readouterr().out
    assert "not expected to hold" in out and "FAILS" not in out


def test_bad_name_or_profile_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match="invalid figure name"):
        notebook.start("figures/x.png", "cpu")
    with pytest.raises(ValueError, match="unknown profile"):
        notebook.start("toy", "gpu")
