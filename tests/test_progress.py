"""Progress bars (vaegen_utils.progress): on in notebooks and terminals, off in tests and logs,
plain lines for papermill logs; and a real Jupyter kernel shows a bar during training by default."""

from __future__ import annotations

import nbformat
import pytest
import torch
from nbclient import NotebookClient

from vaegen_utils import estimators, progress
from vaegen_utils.models import MLPVAEConfig, build_model


class _Stderr:
    """What the code under test wrote to stderr (pytest's capsys, which is no terminal, like a CI log)."""

    def __init__(self, capsys) -> None:
        self._capsys, self._seen = capsys, ""

    def getvalue(self) -> str:
        self._seen += self._capsys.readouterr().err
        return self._seen


@pytest.fixture
def stderr(monkeypatch, capsys):
    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    return _Stderr(capsys)


def test_default_is_off_outside_notebooks_and_terminals(stderr, monkeypatch):
    assert progress.resolve(None) == "off"  # pytest: stderr is not a terminal, no kernel
    assert progress.resolve(False) == "off"
    assert progress.resolve(True) == "text"  # asked for: plain lines, since this is no terminal
    monkeypatch.setattr(progress, "_stderr_is_a_terminal", lambda: True)
    assert progress.resolve(None) == "terminal"


@pytest.mark.parametrize(
    ("value", "expected_default", "expected_forced"),
    [("off", "off", "text"), ("0", "off", "text"), ("text", "text", "text"), ("on", "text", "text"), ("auto", "off", "text")],
)
def test_environment_variable_sets_the_default(stderr, monkeypatch, value, expected_default, expected_forced):
    monkeypatch.setenv(progress.ENV_VAR, value)
    assert progress.resolve(None) == expected_default
    assert progress.resolve(True) == expected_forced
    assert progress.resolve(False) == "off"


def test_a_bad_environment_value_names_the_valid_ones(monkeypatch):
    monkeypatch.setenv(progress.ENV_VAR, "loud")
    with pytest.raises(ValueError, match="VAEGEN_PROGRESS='loud'.*auto, on, off, text"):
        progress.resolve(None)


def test_text_mode_writes_whole_lines_without_carriage_returns(stderr, monkeypatch):
    monkeypatch.setenv(progress.ENV_VAR, "text")
    for _ in progress.bar(range(5), desc="counting", unit="thing"):
        pass
    text = stderr.getvalue()
    assert "\r" not in text and text.endswith("\n")
    assert "counting" in text and "5/5" in text


def test_off_writes_nothing(stderr):
    for _ in progress.bar(range(5), desc="counting"):
        pass
    assert stderr.getvalue() == ""


def test_the_q_star_fit_and_iwae_report_progress_when_asked(stderr):
    model = build_model(MLPVAEConfig(data_shape=(1, 4, 4), latent_dim=2, hidden_sizes=(8,), likelihood="bernoulli"), seed=0)
    x = (torch.rand((3, 1, 4, 4), generator=torch.Generator().manual_seed(0)) > 0.5).float()
    estimators.fit_optimal_posterior(model, x, max_steps=30, check_every=10, eval_samples=None, progress=True)
    assert "per-point q* fit" in stderr.getvalue() and "3/3" in stderr.getvalue()
    estimators.iwae_bound(model, x, 8, progress=True)
    assert "IWAE (K = 8)" in stderr.getvalue()


def test_a_jupyter_kernel_shows_a_training_bar_by_default_and_text_when_asked(tmp_path):
    """What a JupyterLab user sees: a widget bar with no argument; text lines under run_all.sh."""
    train_cell = (
        "import os, torch\n"
        "from vaegen_utils import progress\n"
        "from vaegen_utils.models import MLPVAEConfig, build_model\n"
        "from vaegen_utils.training import TrainConfig, train\n"
        "progress.DELAY_S = 0.0  # a tiny run; the rule, not the delay, is under test\n"
        "images = (torch.rand((64, 1, 4, 4), generator=torch.Generator().manual_seed(0)) > 0.5).float()\n"
        "def tiny():\n"
        "    return build_model(MLPVAEConfig(data_shape=(1, 4, 4), latent_dim=2, hidden_sizes=(8,), likelihood='bernoulli'), seed=0)\n"
    )
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(train_cell + "os.environ.pop('VAEGEN_PROGRESS', None)\ntrain(tiny(), images, TrainConfig(epochs=2, batch_size=16));"),
            nbformat.v4.new_code_cell("os.environ['VAEGEN_PROGRESS'] = 'text'\ntrain(tiny(), images, TrainConfig(epochs=2, batch_size=16));"),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    default_outputs, text_outputs = notebook.cells[0].outputs, notebook.cells[1].outputs
    widgets = [out for out in default_outputs if "application/vnd.jupyter.widget-view+json" in out.get("data", {})]
    assert widgets, f"no widget progress bar in the kernel's outputs: {default_outputs}"
    streamed = "".join(out.get("text", "") for out in text_outputs if out.get("output_type") == "stream")
    assert "training from epoch 0" in streamed and "8/8" in streamed, text_outputs
