"""What every figure notebook does around its science: start, save the figure, write the results.

    run = notebook.start("zhang2022_fig1a_overfitting", PROFILE, seed=SEED)
    ...                                  # the figure's science
    run.savefig(fig)                     # <output_dir>/<notebook>.png + .pdf
    run.finish(config=..., metrics=..., claims=claims)

`start` seeds Python/NumPy/torch, applies the house plot style and starts the runtime clock;
`finish` writes `<output_dir>/<notebook>.json` (`results.write_results`, with versions, machine
and commit) and prints one line per claim. In the smoke profile it says that verdicts are not
expected to hold at that size, instead of a wall of FAILS. The folder rule is
`figures.output_dir(profile)`: the committed `figures/` for the cpu profile, `build/figures/<profile>/`
otherwise, `$VAEGEN_FIGURES_DIR` when set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import figures, profiles, results
from .seeding import set_seed


@dataclass
class NotebookRun:
    """One execution of a figure notebook (see the module docstring)."""

    name: str
    profile: str
    seed: int
    stopwatch: results.Stopwatch = field(default_factory=results.Stopwatch)

    def savefig(self, fig, name: str | None = None) -> list[Path]:
        """Save `fig` as `<name>.png` and `.pdf` (default name: the notebook's)."""
        return figures.savefig(fig, name or self.name, profile=self.profile)

    def finish(
        self,
        *,
        config: Mapping[str, Any],
        metrics: Mapping[str, Any],
        claims: Sequence[results.Claim],
    ) -> Path:
        """Write the results JSON, print each claim's verdict and return the file's path."""
        path = results.write_results(
            self.name,
            profile=self.profile,
            seed=self.seed,
            config=config,
            metrics=metrics,
            claims=list(claims),
            runtime_s=self.stopwatch.elapsed(),
        )
        print(f"wrote {path}")
        if self.profile == "smoke":
            print("smoke profile: tiny sizes that only check the code runs; verdicts are not expected to hold here")
        for claim in claims:
            verdict = "holds" if claim.holds else ("does not hold" if self.profile == "smoke" else "FAILS")
            print(f"{verdict:<13} {claim.id}: {claim.statement}")
            print(f"{'':<13} measured {claim.measured}")
        return path


def start(name: str, profile: str, *, seed: int = 0) -> NotebookRun:
    """Begin a notebook run: check the name and profile, seed everything, apply the plot style."""
    figures.check_name(name)
    profiles.check_profile(profile)
    set_seed(seed)
    figures.use_style()
    return NotebookRun(name=name, profile=profile, seed=seed)
