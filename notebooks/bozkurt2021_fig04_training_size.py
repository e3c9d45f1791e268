# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Bozkurt et al. 2021, Figure 4: training-set size, constant volume vs constant density
#
# In this notebook we reproduce paper C's Fig. 4 (§4.4, "Role of the Training Set Size"): test RD
# curves of 1-layer and 3-layer MLP β-VAEs on constant-volume (CV) splits, where fewer training
# points means sparser data and farther test points, and on constant-density (CD) splits, where
# the factor range shrinks with the data so test points stay close to training points. The paper
# uses N_train ∈ {8k, 16k, 32k, 56k}; its reading is that similarity between test and training
# examples, not the amount of data, drives generalization.
#
# The CV(16k/147k) sweeps are those of `bozkurt2021_fig03_rd_curves` (same spec, so the cache
# serves them). Runtime in the cpu profile: 144 s on 2 idle cores, first run after fig03 (three new
# sweeps); a cached rerun takes seconds.

# %% tags=["parameters"]
from vaegen_utils.profiles import current_profile

PROFILE = current_profile()  # smoke | cpu | paper: env VAEGEN_PROFILE (default cpu) or papermill -p PROFILE
SEED = 0  # seeds Python/NumPy/torch at the start; restart r derives all its training seeds from r
# Overrides of the profile's values (bozkurt2021.SWEEPS / RESTARTS / FIG04); None keeps the profile's.
BETAS = None  # β of each sweep ensemble, one member per β, e.g. [0.001, 0.1, 1.0] (paper: the 12 of footnote 2)
ITERATIONS = None  # Adam steps of every sweep, one budget for every size (paper: 257k)
RESTARTS = None  # restarts per curve (paper: 5)
SIZES = None  # training-set sizes, keys of tetrominoes.PAPER_TRAIN_SIZES, e.g. ["8k", "16k", "33k", "57k"]
ARCHITECTURES = None  # networks compared, e.g. ["mlp1", "mlp3"]
CD_SPREAD_FRACTION = 0.5  # "much weaker dependence": CD's spread over N at most half of CV's

# %% [markdown]
# ## Setup

# %%
import matplotlib.pyplot as plt
import numpy as np

from vaegen_utils import bozkurt2021, notebook, tetrominoes
from vaegen_utils.claims import is_monotone, mean_spread
from vaegen_utils.results import Claim

run = notebook.start("bozkurt2021_fig04_training_size", PROFILE, seed=SEED)
S = bozkurt2021.fig04_settings(PROFILE, betas=BETAS, iterations=ITERATIONS, restarts=RESTARTS, sizes=SIZES,
                               architectures=ARCHITECTURES)

data = tetrominoes.load_tetrominoes()
splits = {(kind, size): bozkurt2021.tetromino_split(data, S.split(kind, size)) for kind in ("cv", "cd") for size in S.sizes}
for split in splits.values():
    print(f"{split.label:>14}: {split.num_train:,} train / {split.num_test:,} test")

# %% [markdown]
# ## Train (or load) the sweeps: 2 kinds × sizes × architectures

# %%
curves, runs = bozkurt2021.run_curves(S.curves, lambda key: splits[key[:2]])
for key, group in runs.items():
    print(f"{splits[key[:2]].label:>14} {bozkurt2021.ARCHITECTURE_LABELS[key[2]]}: {group[0]['iterations']} iterations "
          f"({group[0]['epochs']} epochs)")

# %% [markdown]
# ## Figure 4: test RD curves by training-set size

# %%
colors = dict(zip(S.sizes, bozkurt2021.beta_colors(len(S.sizes), "plasma")))
fig, axes = plt.subplots(2, len(S.architectures), figsize=(max(4.8, 3.6 * len(S.architectures)), 6.2), squeeze=False)
for row, kind in enumerate(("cv", "cd")):
    for column, architecture in enumerate(S.architectures):
        ax = axes[row, column]
        for size in S.sizes:
            bozkurt2021.plot_rd_curve(ax, curves[(kind, size, architecture)], "test", label=splits[(kind, size)].label,
                            color=colors[size])
        ax.margins(0.08)
        bozkurt2021.add_elbo_isolines(ax)
        ax.set_title(f"{kind.upper()} splits, {bozkurt2021.ARCHITECTURE_LABELS[architecture]}, test", loc="left")
        ax.set_xlabel("rate R (nats)")
        ax.set_ylabel("distortion D (nats)")
        ax.legend(loc="upper right")
fig.suptitle("Bozkurt et al. 2021, Fig. 4: test RD curves, constant volume (top)\nand constant density (bottom) "
             "splits by N_train (☆ = β=1)", fontsize=9)
fig.tight_layout()
run.savefig(fig)
plt.show()

# %% [markdown]
# ## Claims

# %%
claims = []
spread = {}
for architecture in S.architectures:
    for kind in ("cv", "cd"):
        test_d = np.stack([curves[(kind, size, architecture)].mean("test", "distortion") for size in S.sizes])  # (sizes, β)
        spread[(kind, architecture)] = mean_spread(test_d)
spread_ratio = {arch: spread[("cd", arch)] / spread[("cv", arch)] for arch in S.architectures}
# Reported alongside (not part of the verdict): the spread over N of the train-test gap. Each CD
# split has its own test set, drawn from a smaller box for smaller N, so CD test-D levels also move
# with the data's difficulty; the gap removes that level.
gap_spread = {}
for architecture in S.architectures:
    for kind in ("cv", "cd"):
        gaps = np.stack([curves[(kind, size, architecture)].gap().mean(axis=0) for size in S.sizes])  # (sizes, β)
        gap_spread[(kind, architecture)] = mean_spread(gaps)
claims.append(Claim(
    id="fig4_cd_depends_little_on_n", paper="bozkurt2021", figure="Fig. 4 (bottom)",
    statement="CD test RD curves depend much less on N_train than CV curves",
    reported="CD curves nearly indistinguishable across sizes; CV curves move with N",
    measured={"spread_nats": {f"{k}_{a}": round(v, 2) for (k, a), v in spread.items()},
              "cd_over_cv": {a: round(v, 3) for a, v in spread_ratio.items()},
              "gap_spread_nats_for_reference": {f"{k}_{a}": round(v, 2) for (k, a), v in gap_spread.items()}},
    tolerance=f"spread over N of test D (max - min, averaged over β) for CD <= {CD_SPREAD_FRACTION:g} x that for CV, every architecture run",
    holds=bool(all(ratio <= CD_SPREAD_FRACTION for ratio in spread_ratio.values())),
    note=None if all(ratio <= CD_SPREAD_FRACTION for ratio in spread_ratio.values()) else (
        "The CD curves move with N because each CD test set comes from its own, smaller box: test D falls from "
        f"{curves[('cd', S.sizes[-1], S.architectures[0])].mean('test', 'distortion').mean():.0f} to "
        f"{curves[('cd', S.sizes[0], S.architectures[0])].mean('test', 'distortion').mean():.0f} nats as N shrinks (the paper "
        "too reports CD curves improving as N decreases). The CV curves barely move at this budget because nothing "
        "has overfitted yet. The train-test gap, which removes the data's level, spreads "
        f"{gap_spread[('cd', S.architectures[0])]:.2f} nats over N for CD vs {gap_spread[('cv', S.architectures[0])]:.2f} for CV."),
))

# Sizes in increasing N: the CV gap (test D - train D averaged over β) must grow as N falls.
ordered = sorted(S.sizes, key=lambda size: tetrominoes.PAPER_TRAIN_SIZES[size])
cv_gaps = {arch: [float(curves[("cv", size, arch)].gap().mean()) for size in ordered] for arch in S.architectures}
claims.append(Claim(
    id="fig4_cv_gap_grows_as_n_falls", paper="bozkurt2021", figure="Fig. 4 (top)",
    statement="On CV splits the generalization gap grows as N_train falls",
    reported="gap larger for smaller N_train",
    measured={"sizes": ordered, "mean_gap_nats": {a: [round(g, 2) for g in v] for a, v in cv_gaps.items()}},
    tolerance="mean over β of test D - train D strictly decreasing in N_train, every architecture run",
    holds=bool(all(is_monotone(gaps, increasing=False) for gaps in cv_gaps.values())),
    note=(f"{len(S.sizes)} sizes and {S.restarts} restart(s): the ordering rests on a difference of "
          f"{abs(cv_gaps[S.architectures[0]][0] - cv_gaps[S.architectures[0]][-1]):.2f} nats, not separated from restart noise."
          if S.restarts == 1 else None),
))

# %% [markdown]
# ## Results

# %%
run.finish(
    config=S.to_dict() | {"cd_spread_fraction": CD_SPREAD_FRACTION,
                          "split_specs": {S.split(*key): split.spec() for key, split in splits.items()}},
    metrics={"curves": {f"{splits[key[:2]].label} {key[2]}": curve.to_dict() for key, curve in curves.items()},
             "iterations": {f"{S.split(kind, size)} {arch}": runs[(kind, size, arch)][0]["iterations"] for (kind, size, arch) in runs},
             "train_seconds_as_trained": bozkurt2021.summarize_runtime([r for group in runs.values() for r in group])["train_seconds"]},
    claims=claims,
)
for key, curve in curves.items():
    for part in ("train", "test"):
        assert np.all(np.isfinite(curve.values[part]["distortion"])), f"{key}: non-finite {part} distortion"

# %% [markdown]
# ## What was reduced, and why
#
# - **Iterations**: 640 Adam steps per sweep in the cpu profile instead of 257,000 (0.25%), the
#   same budget as `bozkurt2021_fig03_rd_curves`, so its CV(16k/147k) sweep (restart 0) is reused:
#   10 epochs of the 8k splits and 5 of the 16k splits, against ~4,000 and ~2,000 in the paper.
#   The three new sweeps (CV(8k), CD(8k), CD(16k)) and their evaluation take 144 s on 2 idle
#   cores; all five notebooks must fit in about 25 minutes.
# - **β**: 8 of the paper's 12 values, {0.001, 0.01, 0.1, 0.3, 0.5, 1, 2, 5} (`bozkurt2021.CPU_BETAS`,
#   every cpu sweep's grid); a sweep step costs about the same per member, so this cuts every sweep by a third.
# - **Sizes and architectures**: N_train ∈ {8k, 16k} and the 1-layer MLP only (paper: {8k, 16k,
#   32k, 56k}, 1 and 3 layers), one restart (paper: 5). Every size costs the same number of
#   iterations, so each extra size or architecture is another full sweep.
# - **Evaluation**: R and D on 2,000 training and 2,000 test points per split (the same points for
#   every β), as in fig03. The paper profile restores all of the paper's settings.
#
# Whether the claims above hold at this scale is recorded in the results JSON with the measured
# numbers; the README row summarises it.
#
# ## What this shows (cpu profile)
#
# One of the two claims holds (8 β, seed 0, one restart):
#
# - The CV gap (test D − train D, averaged over β) is 5.1 nats at 8k and 3.2 at 16k, so it grows as
#   N falls (the claim holds by its tolerance). With two sizes and one restart the ordering rests on
#   a difference of 1.9 nats, which the claim's note does not count as separated from restart noise
#   (for scale: the restart sd of fig03's CV(16k/147k) test D is 0.1-3.0 nats over β). After 5-10
#   epochs the CV test curves themselves barely move with N (spread 1.0 nat, averaged over β).
# - The CD curves move with N because each CD split has its own test set drawn from a smaller box
#   of factors: smaller boxes hold easier images (mean test D 95 nats at 16k, 87 at 8k). The paper
#   also reports CD curves improving as N decreases; its "depends little on N" is about the shape
#   of the curves and the 1- vs 3-layer discrepancy, which at this budget cannot show. Measured as
#   we defined it before the run (spread of test D: 8.3 nats for CD against 1.0 for CV, 8.4× rather
#   than at most 0.5×), the claim does not hold; the train-test gap, which removes the data's level,
#   spreads over N about as little for CD (1.6 nats) as for CV (1.9).
