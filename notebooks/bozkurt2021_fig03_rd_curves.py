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
# # Bozkurt et al. 2021, Figures 3, 5 and 6: train and test rate-distortion curves
#
# In this notebook we reproduce the RD analysis of paper C (Bozkurt et al., AISTATS 2021, §4.4,
# Eq. 5-6) on the Tetrominoes: β-VAEs with a 10-dimensional latent, a Bernoulli decoder, Adam and
# batch 128 are trained for the paper's 12 values β ∈ {0.001, ..., 5} (footnote 2; the cpu profile
# keeps 8 of them, `CPU_BETAS`), and every trained model is one point (R, D) on the training or the
# test set.
#
# - **Fig. 3**: 1-layer vs 3-layer MLPs (512 units) on the dense split CV(82k/82k) and the sparse
#   split CV(16k/147k), train and test RD planes, with reconstructions of a "difficult" test example
#   (90th percentile of the distance to its nearest training image).
# - **Fig. 5**: test RD curves on CV(82k/82k), CV(16k/147k) and the checkerboard split.
# - **Fig. 6**: MLPs vs CNNs (64 channels, kernel 4, stride 2) on CV(16k/147k).
#
# Each β sweep is **one** ensemble with a member per β (`EnsembleMLPVAE` / `EnsembleConvVAE`; 8
# members in the cpu profile, 12 in the paper profile), trained once and cached;
# `bozkurt2021_fig04_training_size` and `bozkurt2021_fig08_mutual_information` reuse the
# CV(16k/147k) sweeps. Runtime in the cpu profile: about 10 minutes (607 s) on 2 idle cores, first
# run, fresh cache; a cached rerun takes seconds.

# %% tags=["parameters"]
from vaegen_utils.profiles import current_profile

PROFILE = current_profile()  # smoke | cpu | paper: env VAEGEN_PROFILE (default cpu) or papermill -p PROFILE
SEED = 0  # seeds the evaluation noise and subsets; restart r derives all its training seeds from r
PAPER_BETAS = [0.001, 0.005, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 2.0, 3.0, 5.0]  # paper C, footnote 2
# One ensemble member per β; smoke keeps 3 values so that a sweep costs a fraction of a second.
# cpu: 8 of the 12 β (a sweep step costs about the same per member, so this cuts every sweep by a third);
# it keeps both ends, 0.1 and its grid neighbours, β = 1 and two β > 1. The paper profile runs all 12.
CPU_BETAS = [0.001, 0.01, 0.1, 0.3, 0.5, 1.0, 2.0, 5.0]  # the cpu grid (see above)
BETAS_BY_PROFILE = {"smoke": [0.001, 1.0, 5.0], "cpu": CPU_BETAS, "paper": PAPER_BETAS}  # β of each sweep ensemble
PRECISION = "bfloat16"  # CPU bf16 autocast for training (evaluation is float32); bfloat16 check in fig08
DENSE_SPLIT = "random"  # CV(82k/82k): the 50/50 random split (§4.2, split 1)
SPARSE_SPLIT = "cv-16k"  # CV(16k/147k) (§4.2, split 4)
CHECKERBOARD_SPLIT = "checkerboard"  # 82k/82k, out-of-domain (§4.2, split 2)
# Adam steps per sweep (paper: 257k for every model, §4.3). A 12-member sweep step costs ~0.11 s
# (1-layer MLP) to ~0.14 s (3-layer MLP) on 2 idle cores, an 8-member one (cpu grid) about 2/3 of that
# (memory-bound: bf16 casts and Adam over 8-12 x 3-4M parameters), so the cpu budget (five notebooks
# in 25 min) is ~10k sweep steps in all;
# they go where a claim can be reached (see "What was reduced" at the end).
ITERATIONS_BY_PROFILE = {"smoke": 2, "cpu": 640, "paper": 257_000}  # 1-layer MLPs; 3-layer MLP on CV(82k/82k)
# 3-layer MLPs on CV(16k/147k): 8 epochs, past the initial plateau that the 3-layer MLP leaves after
# ~500-1,000 steps (β <= 0.5), so that its curve shape and MI (fig08) describe a model that reconstructs.
SPARSE_MLP3_ITERATIONS_BY_PROFILE = {"smoke": 2, "cpu": 1024, "paper": 257_000}
# CNN sweeps: a step costs 0.21 s (1 layer) and 0.50 s (3 layers), 2-4.5x an MLP step (grouped convs are
# memory-bound on CPU). Training them past their plateau is out of reach; one epoch (the engine's
# smallest unit) draws Fig. 6.
CNN_ITERATIONS_BY_PROFILE = {"smoke": 2, "cpu": 128, "paper": 257_000}
SPARSE_RESTARTS_BY_PROFILE = {"smoke": 1, "cpu": 2, "paper": 5}  # MLP sweeps on CV(16k/147k) (paper: 5)
DENSE_RESTARTS_BY_PROFILE = {"smoke": 1, "cpu": 1, "paper": 5}  # MLP sweeps on CV(82k/82k) and checkerboard
CNN_RESTARTS_BY_PROFILE = {"smoke": 1, "cpu": 1, "paper": 5}  # CNN sweeps
# Architectures trained on the checkerboard split (paper: both). cpu: the 1-layer MLP only, the one
# trained to the same budget on all three splits of Fig. 5.
CHECKERBOARD_ARCHITECTURES_BY_PROFILE = {"smoke": ["mlp1"], "cpu": ["mlp1"], "paper": ["mlp1", "mlp3"]}
MAX_TRAIN_BY_PROFILE = {"smoke": 256, "cpu": None, "paper": None}  # smoke: train on 256 points (2 steps/epoch)
EVAL_POINTS_BY_PROFILE = {"smoke": 128, "cpu": 2000, "paper": 20_000}  # train and test points per RD evaluation
NN_MAX_TEST_BY_PROFILE = {"smoke": 300, "cpu": 2000, "paper": 10_000}  # test points for the NN distances
# Claims: how many restart sd's a rise must exceed to count as a U-shape (and not count as flat).
SD_MARGIN = 2.0  # a U needs D(β=0.001) - min D > 2 sd of the restarts; an L needs it <= 2 sd
DENSE_GAP_TOLERANCE = 0.02  # "no gap" on CV(82k/82k): |test D - train D| <= 2% of train D at every β

# %% [markdown]
# ## Setup

# %%
import matplotlib.pyplot as plt
import numpy as np

from vaegen_utils import bozkurt2021
from vaegen_utils.claims import best_beta, grid_neighbours, is_l_shaped, is_u_shaped, minimum_shape
from vaegen_utils import tetrominoes
from vaegen_utils.figures import savefig, use_style
from vaegen_utils.profiles import by_profile
from vaegen_utils.results import Claim, Stopwatch, write_results
from vaegen_utils.seeding import set_seed

stopwatch = Stopwatch()
set_seed(SEED)
use_style()

# Sizes are resolved here, not in the parameters cell: papermill injects `-p PROFILE ...` *after*
# that cell, so anything computed there from PROFILE would keep the default profile's value.
BETAS = by_profile(PROFILE, BETAS_BY_PROFILE)
ITERATIONS = by_profile(PROFILE, ITERATIONS_BY_PROFILE)
SPARSE_MLP3_ITERATIONS = by_profile(PROFILE, SPARSE_MLP3_ITERATIONS_BY_PROFILE)
CNN_ITERATIONS = by_profile(PROFILE, CNN_ITERATIONS_BY_PROFILE)
CHECKERBOARD_ARCHITECTURES = by_profile(PROFILE, CHECKERBOARD_ARCHITECTURES_BY_PROFILE)
SPARSE_RESTARTS = by_profile(PROFILE, SPARSE_RESTARTS_BY_PROFILE)
DENSE_RESTARTS = by_profile(PROFILE, DENSE_RESTARTS_BY_PROFILE)
CNN_RESTARTS = by_profile(PROFILE, CNN_RESTARTS_BY_PROFILE)
MAX_TRAIN = by_profile(PROFILE, MAX_TRAIN_BY_PROFILE)
EVAL_POINTS = by_profile(PROFILE, EVAL_POINTS_BY_PROFILE)
NN_MAX_TEST = by_profile(PROFILE, NN_MAX_TEST_BY_PROFILE)


def specs(architecture, iterations, restarts):
    """The restarts' sweep specs of one curve (each spec = one ensemble with a member per β)."""
    return [
        bozkurt2021.SweepSpec(architecture, iterations, restart=restart, precision=PRECISION, betas=tuple(BETAS),
                    eval_points=EVAL_POINTS, max_train=MAX_TRAIN)
        for restart in range(restarts)
    ]


data = tetrominoes.load_tetrominoes()
splits = {name: bozkurt2021.tetromino_split(data, name) for name in (DENSE_SPLIT, SPARSE_SPLIT, CHECKERBOARD_SPLIT)}
for split in splits.values():
    print(f"{split.label:>24}: {split.num_train:,} train / {split.num_test:,} test")

# %% [markdown]
# ## Train (or load) the β sweeps and evaluate R and D on train and test
#
# Curves are keyed by (split, architecture). A sweep that is already in the cache is not trained
# again, and its evaluated R and D are read from the cache without loading the model.

# %%
plan = {
    (DENSE_SPLIT, "mlp1"): specs("mlp1", ITERATIONS, DENSE_RESTARTS),
    (DENSE_SPLIT, "mlp3"): specs("mlp3", ITERATIONS, DENSE_RESTARTS),
    (SPARSE_SPLIT, "mlp1"): specs("mlp1", ITERATIONS, SPARSE_RESTARTS),
    (SPARSE_SPLIT, "mlp3"): specs("mlp3", SPARSE_MLP3_ITERATIONS, SPARSE_RESTARTS),
    **{(CHECKERBOARD_SPLIT, arch): specs(arch, ITERATIONS, DENSE_RESTARTS) for arch in CHECKERBOARD_ARCHITECTURES},
    (SPARSE_SPLIT, "cnn1"): specs("cnn1", CNN_ITERATIONS, CNN_RESTARTS),
    (SPARSE_SPLIT, "cnn3"): specs("cnn3", CNN_ITERATIONS, CNN_RESTARTS),
}
curves, runs = bozkurt2021.run_curves(plan, lambda key: splits[key[0]])
for (split_name, architecture), curve in curves.items():
    run = runs[(split_name, architecture)][0]
    print(f"{splits[split_name].label:>24} {bozkurt2021.ARCHITECTURE_LABELS[architecture]:<12} "
          f"{curve.num_restarts} restart(s) x {run['iterations']} iterations ({run['epochs']} epochs)")

# %% [markdown]
# The "difficult" test example of Fig. 3: the one at the 90th percentile of the L2 distance to
# its nearest training image (distances on a seeded subset of test points).

# %%
examples = {}
for name in (DENSE_SPLIT, SPARSE_SPLIT):
    neighbours = bozkurt2021.nearest_neighbours(splits[name], max_test=NN_MAX_TEST)
    examples[name] = bozkurt2021.difficult_example(neighbours)
    print(f"{splits[name].label}: test row {examples[name]['test_row']}, NN distance "
          f"{examples[name]['distance']:.2f} (90th percentile {examples[name]['percentile_distance']:.2f})")
reconstructions = {
    (name, architecture): bozkurt2021.sweep_reconstructions(plan[(name, architecture)][0], splits[name], [examples[name]["test_row"]])
    for name in (DENSE_SPLIT, SPARSE_SPLIT)
    for architecture in ("mlp1", "mlp3")
}

# %% [markdown]
# ## Figure 3: train and test RD curves, dense vs sparse CV split

# %%
COLORS = {"mlp1": "tab:orange", "mlp3": "tab:blue", "cnn1": "tab:red", "cnn3": "tab:purple"}


def iterations_label(key):
    """Adam steps of a curve's sweeps, for legends: budgets differ between curves in the cpu profile."""
    return f"{runs[key][0]['iterations']:,} it."


def rd_panel(ax, keys, part, title, labels=None, linestyles=None):
    for index, key in enumerate(keys):
        label = labels[index] if labels else f"{bozkurt2021.ARCHITECTURE_LABELS[key[1]]} ({iterations_label(key)})"
        bozkurt2021.plot_rd_curve(ax, curves[key], part, label=label, color=COLORS[key[1]] if not labels else f"C{index}",
                        linestyle=(linestyles or ["-"] * len(keys))[index])
    best = min(float(np.min(curves[key].mean(part, "rate") + curves[key].mean(part, "distortion"))) for key in keys)
    ax.margins(0.08)
    bozkurt2021.add_elbo_isolines(ax, label_best=best)
    ax.set_xlabel("rate R (nats)")
    ax.set_ylabel("distortion D (nats)")
    ax.set_title(title, loc="left")


fig = plt.figure(figsize=(7.2, 8.8))
grid = fig.add_gridspec(4, 2, height_ratios=[0.55, 2.2, 0.55, 2.2], hspace=0.62, wspace=0.3, top=0.93)
for row, name in enumerate((DENSE_SPLIT, SPARSE_SPLIT)):
    strip_ax = fig.add_subplot(grid[2 * row, :])
    example = examples[name]
    original = splits[name].test_rows([example["test_row"]]).numpy()
    neighbour = splits[name].train_rows([example["train_row"]]).numpy()
    strips = [bozkurt2021.image_strip(np.concatenate([original, neighbour, reconstructions[(name, arch)][:, 0]]))
              for arch in ("mlp1", "mlp3")]
    strip_ax.imshow(np.concatenate([strips[0], np.ones((2, strips[0].shape[1], 3)), strips[1]]), vmin=0, vmax=1)
    strip_ax.set_xticks([16 + 33 * index for index in range(2 + len(BETAS))],
                        ["x", "NN"] + [f"{beta:g}".removeprefix("0") for beta in BETAS], fontsize=6)
    strip_ax.set_yticks([16, 50], ["1-layer", "3-layer"], fontsize=7)
    strip_ax.tick_params(length=0)
    for spine in strip_ax.spines.values():
        spine.set_visible(False)
    strip_ax.set_title(f"{splits[name].label}: test image x at the 90th percentile of NN distance, its nearest "
                       "training image, reconstructions by β", loc="left", fontsize=7.5)
    for column, part in enumerate(("train", "test")):
        ax = fig.add_subplot(grid[2 * row + 1, column])
        rd_panel(ax, [(name, "mlp1"), (name, "mlp3")], part, f"{splits[name].label}, {part}")
        if row == 0 and column == 0:
            ax.legend(loc="center right")
fig.suptitle("Bozkurt et al. 2021, Fig. 3: RD curves (mean ± sd over restarts, ☆ = β=1, dashed: D+R = const)",
             fontsize=9, y=0.985)
savefig(fig, "bozkurt2021_fig03_rd_curves", profile=PROFILE)
plt.show()

# %% [markdown]
# ## Figure 5: CV(82k/82k), CV(16k/147k) and checkerboard; Figure 6: MLP vs CNN

# %%
fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.3))
for ax, architecture in zip(axes, ("mlp1", "mlp3")):
    keys = [key for key in ((DENSE_SPLIT, architecture), (SPARSE_SPLIT, architecture), (CHECKERBOARD_SPLIT, architecture))
            if key in curves]  # the cpu profile trains the checkerboard split for the 1-layer MLP only
    rd_panel(ax, keys, "test", f"{bozkurt2021.ARCHITECTURE_LABELS[architecture]}, test",
             labels=[f"{splits[key[0]].label} ({iterations_label(key)})" for key in keys])
axes[0].legend(loc="center right")
fig.suptitle("Bozkurt et al. 2021, Fig. 5: test RD curves of three splits (☆ = β=1)", fontsize=9)
fig.tight_layout()
savefig(fig, "bozkurt2021_fig05_checkerboard", profile=PROFILE)
plt.show()

fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.3))
for ax, part in zip(axes, ("train", "test")):
    keys = [(SPARSE_SPLIT, arch) for arch in ("mlp1", "mlp3", "cnn1", "cnn3")]
    for key in keys:
        bozkurt2021.plot_rd_curve(ax, curves[key], part, label=f"{bozkurt2021.ARCHITECTURE_LABELS[key[1]]} ({iterations_label(key)})",
                                  color=COLORS[key[1]])
    ax.margins(0.08)
    bozkurt2021.add_elbo_isolines(ax)
    ax.set_xlabel("rate R (nats)")
    ax.set_ylabel("distortion D (nats)")
    ax.set_title(f"{splits[SPARSE_SPLIT].label}, {part}", loc="left")
axes[0].legend(loc="center right")
fig.suptitle("Bozkurt et al. 2021, Fig. 6: MLP vs CNN (☆ = β=1)", fontsize=9)
fig.tight_layout()
savefig(fig, "bozkurt2021_fig06_cnn", profile=PROFILE)
plt.show()

# %% [markdown]
# ## Claims
#
# Every `holds` below is computed from the curves with the tolerance written next to it. The
# restart sd enters only where the paper's statement is about a shape (U vs L).

# %%
claims = []
# Facts the notes below refer to. At convergence a 3-layer MLP fits at least as well as a 1-layer
# one, so a 3-layer curve lying above the 1-layer curve means it is still underfit (early on, on its
# initial plateau): its shape then says how far optimisation got, not how it generalizes.
steps = {key: group[0]["iterations"] for key, group in runs.items()}
epochs = {key: group[0]["epochs"] for key, group in runs.items()}


def excess_of_3layer(split_name, part="test"):
    """Mean over β of the 3-layer minus the 1-layer MLP's D + R (the β=1 negative ELBO), nats."""
    return float(np.mean(-curves[(split_name, "mlp3")].mean(part, "elbo") + curves[(split_name, "mlp1")].mean(part, "elbo")))


dense_excess, sparse_excess = excess_of_3layer(DENSE_SPLIT), excess_of_3layer(SPARSE_SPLIT)
sparse3_gap = curves[(SPARSE_SPLIT, "mlp3")].gap().mean(axis=0)  # test D - train D per β
sparse1_gap = curves[(SPARSE_SPLIT, "mlp1")].gap().mean(axis=0)


def shape_of(key, part="test", metric="distortion"):
    curve = curves[key]
    return minimum_shape(curve.betas, curve.mean(part, metric), curve.sd(part, metric))


# Fig. 3 top: "we observe no evidence of memorization" / "virtually no generalization gap".
dense_gaps = {arch: curves[(DENSE_SPLIT, arch)].gap().mean(axis=0) for arch in ("mlp1", "mlp3")}
dense_relative = {arch: float(np.max(np.abs(dense_gaps[arch]) / curves[(DENSE_SPLIT, arch)].mean("train", "distortion")))
                  for arch in dense_gaps}
claims.append(Claim(
    id="fig3_dense_no_gap", paper="bozkurt2021", figure="Fig. 3 (top)",
    statement="CV(82k/82k): no generalization gap; test D equals train D at every β for both architectures",
    reported="virtually no gap", measured={"max_relative_gap": dense_relative,
                                           "gap_nats": {k: v.round(2).tolist() for k, v in dense_gaps.items()}},
    tolerance=f"|test D - train D| <= {DENSE_GAP_TOLERANCE:.0%} of train D at every β",
    holds=bool(max(dense_relative.values()) <= DENSE_GAP_TOLERANCE),
))

# Fig. 3 top: "increasing model capacity uniformly improves generalization ... shifting the curve to the bottom left".
dense_neg_elbo = {arch: -curves[(DENSE_SPLIT, arch)].mean("test", "elbo") for arch in ("mlp1", "mlp3")}
better_everywhere = bool(np.all(dense_neg_elbo["mlp3"] < dense_neg_elbo["mlp1"]))
claims.append(Claim(
    id="fig3_dense_3layer_better", paper="bozkurt2021", figure="Fig. 3 (top)",
    statement="CV(82k/82k): the 3-layer MLP is better than the 1-layer MLP at every β (curve shifted to the bottom left)",
    reported="3-layer below-left of 1-layer at every β",
    measured={"test_D_plus_R_mlp1": dense_neg_elbo["mlp1"].round(1).tolist(),
              "test_D_plus_R_mlp3": dense_neg_elbo["mlp3"].round(1).tolist(),
              "iterations": {"mlp1": steps[(DENSE_SPLIT, "mlp1")], "mlp3": steps[(DENSE_SPLIT, "mlp3")]}},
    tolerance="test D + R (the β=1 negative ELBO) of the 3-layer MLP strictly lower at every β of the sweep",
    holds=better_everywhere,
    note=None if better_everywhere else (
        f"Underfitting, not generalization: after {steps[(DENSE_SPLIT, 'mlp3')]} steps (one epoch) the 3-layer MLP's "
        f"test D + R is {dense_excess:.0f} nats above the 1-layer MLP's on average; even on CV(16k/147k), with "
        f"{steps[(SPARSE_SPLIT, 'mlp3')]} steps, it stays {sparse_excess:.0f} nats above the 1-layer MLP's "
        f"({steps[(SPARSE_SPLIT, 'mlp1')]} steps), so overtaking it takes more steps than the cpu budget holds."),
))

# Fig. 3 bottom, 1-layer: "the distortion on the test set initially decreases, achieves a minimum, and somewhat increases".
sparse_1 = shape_of((SPARSE_SPLIT, "mlp1"))
u_1layer = is_u_shaped(sparse_1, SD_MARGIN)
claims.append(Claim(
    id="fig3_sparse_1layer_u_shape", paper="bozkurt2021", figure="Fig. 3 (bottom)",
    statement="CV(16k/147k), 1-layer MLP: test distortion is U-shaped in β (minimum at an interior β)",
    reported="interior minimum, rising towards β=0.001", measured=sparse_1,
    tolerance=f"argmin over β is neither the smallest nor the largest β, and D(β=0.001) - min D > {SD_MARGIN:g} sd of the restarts",
    holds=u_1layer,
    note=None if u_1layer else (
        f"Too early to overfit: after {epochs[(SPARSE_SPLIT, 'mlp1')]} epochs ({steps[(SPARSE_SPLIT, 'mlp1')]} steps; paper "
        f"~2,000 epochs) the train-test gap is {sparse1_gap[0]:.1f} nats at β = 0.001 and {sparse1_gap[-1]:.1f} at β = 5, "
        f"so the small-β models still generalize best (test D lowest at β = {sparse_1['argmin_beta']:g}); the paper's U "
        "appears only after long training (its early-stopped curves are monotone too)."),
))

# Fig. 3 bottom, 3-layer: "generalization improves as we reduce β" (an L-shape, no rise at small β).
sparse_3 = shape_of((SPARSE_SPLIT, "mlp3"))
l_3layer = is_l_shaped(sparse_3, SD_MARGIN)
claims.append(Claim(
    id="fig3_sparse_3layer_l_shape", paper="bozkurt2021", figure="Fig. 3 (bottom)",
    statement="CV(16k/147k), 3-layer MLP: test distortion keeps falling as β falls (L-shaped, no rise at small β)",
    reported="monotone: lowest test D at the smallest β", measured=sparse_3,
    tolerance=f"D(β=0.001) - min D <= {SD_MARGIN:g} sd of the restarts (or the minimum is at β=0.001)",
    holds=l_3layer,
    note=(f"The 3-layer MLPs had {steps[(SPARSE_SPLIT, 'mlp3')]} steps ({epochs[(SPARSE_SPLIT, 'mlp3')]} epochs) and are still "
          f"underfit ({sparse_excess:.0f} nats above the 1-layer curve in D + R): the L is that of a model that has not "
          "begun to overfit, as for the 1-layer MLP, not yet the paper's high-capacity regime."),
))

# Fig. 3 bottom, 3-layer: "the test-set lower bound ... achieves a maximum at β = 0.1".
sparse_elbo = curves[(SPARSE_SPLIT, "mlp3")].mean("test", "elbo")
peak_beta = best_beta(BETAS, sparse_elbo)
peak_holds = bool(peak_beta in grid_neighbours(BETAS, 0.1))
claims.append(Claim(
    id="fig3_sparse_3layer_elbo_peak", paper="bozkurt2021", figure="Fig. 3 (bottom)",
    statement="CV(16k/147k), 3-layer MLP: the test ELBO (-D-R) is best near β = 0.1",
    reported=0.1, measured={"argmax_beta": peak_beta, "test_elbo": sparse_elbo.round(1).tolist(),
                            "gap_D_nats": sparse3_gap.round(2).tolist()},
    tolerance=f"argmax within one grid step of 0.1: {grid_neighbours(BETAS, 0.1)}",
    holds=peak_holds,
    note=(("Holds by the tolerance, but not for the paper's reason" if peak_holds else
           f"The test ELBO peaks at β = {peak_beta:g}") +
          ": the paper's peak at 0.1 comes with memorization at large β (a train-test gap that grows with β), while here "
          f"the gap stays small ({sparse3_gap.min():.1f}-{sparse3_gap.max():.1f} nats over β): the 3-layer MLP has not fitted "
          "the training set, and an underfit VAE's test ELBO also peaks at an intermediate β, where D + R is smallest."),
))

# Fig. 5: "similar generalization performance for the Checkerboard and CV (16k/147k) splits".
closeness = {}
for arch in CHECKERBOARD_ARCHITECTURES:
    checker = curves[(CHECKERBOARD_SPLIT, arch)].mean("test", "distortion")
    closeness[arch] = {
        "to_sparse": float(np.mean(np.abs(checker - curves[(SPARSE_SPLIT, arch)].mean("test", "distortion")))),
        "to_dense": float(np.mean(np.abs(checker - curves[(DENSE_SPLIT, arch)].mean("test", "distortion")))),
    }
# The three curves of an architecture must share one iteration budget (640 is 641 steps on the
# checkerboard's 82,021 training points: whole epochs), else the comparison measures training length.
comparable = all(plan[(name, arch)][0].iterations == plan[(CHECKERBOARD_SPLIT, arch)][0].iterations
                 for arch in CHECKERBOARD_ARCHITECTURES for name in (DENSE_SPLIT, SPARSE_SPLIT))
claims.append(Claim(
    id="fig5_checkerboard_like_sparse", paper="bozkurt2021", figure="Fig. 5",
    statement="Checkerboard test RD curves are close to CV(16k/147k)'s rather than CV(82k/82k)'s",
    reported="checkerboard ≈ CV(16k/147k)", measured=closeness,
    tolerance="mean |ΔD| over β to CV(16k/147k) smaller than to CV(82k/82k), for every architecture trained on the "
              f"checkerboard split ({', '.join(CHECKERBOARD_ARCHITECTURES)})",
    holds=bool(comparable and all(value["to_sparse"] < value["to_dense"] for value in closeness.values())),
    note=(f"The three 1-layer curves (one budget of {plan[(CHECKERBOARD_SPLIT, 'mlp1')][0].iterations} iterations: one epoch "
          "of the 82k splits, five of CV(16k/147k)) differ by only a few nats at this scale, so the verdict rests on small "
          "differences; the 3-layer MLP is not trained on the checkerboard split in this profile."
          if "mlp3" not in CHECKERBOARD_ARCHITECTURES else None),
))

# Fig. 6: "a monotonic curve for 3-layer CNNs and only a small degree of non-monotonicity in the 1-layer CNN".
cnn_shapes = {arch: shape_of((SPARSE_SPLIT, arch)) for arch in ("mlp1", "cnn1", "cnn3")}
cnn_holds = bool(cnn_shapes["cnn1"]["rise"] <= cnn_shapes["mlp1"]["rise"] and cnn_shapes["cnn3"]["rise"] <= cnn_shapes["mlp1"]["rise"]
                 and cnn_shapes["cnn3"]["argmin_beta"] == min(BETAS))
claims.append(Claim(
    id="fig6_cnn_closer_to_monotonic", paper="bozkurt2021", figure="Fig. 6",
    statement="CV(16k/147k): CNN curves are closer to monotonic than the 1-layer MLP's",
    reported="3-layer CNN monotonic, 1-layer CNN slightly non-monotonic",
    measured={arch: {"rise": round(shape["rise"], 2), "argmin_beta": shape["argmin_beta"]} for arch, shape in cnn_shapes.items()},
    tolerance="rise D(β=0.001) - min D of each CNN <= that of the 1-layer MLP, and the 3-layer CNN's minimum at β=0.001",
    holds=cnn_holds,
    note=None if cnn_holds else (
        (f"Nothing to be closer to: the 1-layer MLP's curve is itself monotone here (rise {cnn_shapes['mlp1']['rise']:.2f} "
         "nats); " if cnn_shapes["mlp1"]["rise"] < 1.0 else "")
        + f"the CNNs, trained for {steps[(SPARSE_SPLIT, 'cnn1')]} steps ({epochs[(SPARSE_SPLIT, 'cnn1')]} epoch(s)), are "
        f"underfit, with rises of {cnn_shapes['cnn1']['rise']:.2f} and {cnn_shapes['cnn3']['rise']:.2f} nats and the 3-layer "
        f"CNN's minimum at β = {cnn_shapes['cnn3']['argmin_beta']:g}."),
))

# %% [markdown]
# ## Results

# %%
metrics = {
    "curves": {f"{splits[key[0]].label} {key[1]}": curve.to_dict() for key, curve in curves.items()},
    "iterations": {f"{key[0]} {key[1]}": runs[key][0]["iterations"] for key in runs},
    "epochs": {f"{key[0]} {key[1]}": runs[key][0]["epochs"] for key in runs},
    "train_seconds_as_trained": bozkurt2021.summarize_runtime([run for group in runs.values() for run in group])["train_seconds"],
    "difficult_examples": {splits[name].label: example for name, example in examples.items()},
}
path = write_results(
    "bozkurt2021_fig03_rd_curves",
    profile=PROFILE,
    seed=SEED,
    config={"profile": PROFILE, "betas": BETAS, "precision": PRECISION, "iterations": ITERATIONS,
            "sparse_mlp3_iterations": SPARSE_MLP3_ITERATIONS, "cnn_iterations": CNN_ITERATIONS,
            "checkerboard_architectures": CHECKERBOARD_ARCHITECTURES, "sparse_restarts": SPARSE_RESTARTS, "dense_restarts": DENSE_RESTARTS,
            "cnn_restarts": CNN_RESTARTS, "max_train": MAX_TRAIN, "eval_points": EVAL_POINTS,
            "nn_max_test": NN_MAX_TEST, "batch_size": bozkurt2021.BATCH_SIZE, "learning_rate": bozkurt2021.LEARNING_RATE,
            "splits": {name: split.spec() for name, split in splits.items()}},
    metrics=metrics,
    claims=claims,
    runtime_s=stopwatch.elapsed(),
)
print(f"wrote {path}")
for claim in claims:
    print(f"{'holds' if claim.holds else 'FAILS'}  {claim.statement}")
# Sanity: every evaluated number is finite, and the rate falls as β grows on the training set
# (the β-VAE trade-off itself; a violation would mean a broken sweep, not a failed claim).
for key, curve in curves.items():
    for part in ("train", "test"):
        for metric in ("rate", "distortion"):
            assert np.all(np.isfinite(curve.values[part][metric])), f"{key}: non-finite {part} {metric}"
    if PROFILE != "smoke":
        rate = curve.mean("train", "rate")
        assert rate[0] > rate[-1], f"{key}: the training rate at β=0.001 should exceed the rate at β=5"

# %% [markdown]
# ## What was reduced, and why
#
# The paper trained every model for 257,000 Adam steps with 5 restarts. Measured here (2 cores,
# batch 128, one step of a 12-member β-sweep ensemble, the paper's grid; minimum of three timed
# runs):
#
# | network | bfloat16 autocast | float32 |
# |---|---|---|
# | 1-layer MLP | 111 ms | 148 ms |
# | 3-layer MLP | 137 ms | 200 ms |
# | 1-layer CNN | 211 ms | 282 ms |
# | 3-layer CNN | 497 ms | 728 ms |
#
# The step is memory-bound (bf16 copies of the stacked weights and Adam over 3-4M parameters per
# member), so its cost scales about linearly with the members: the cpu sweeps have 8 members (β ∈
# {0.001, 0.01, 0.1, 0.3, 0.5, 1, 2, 5}: both ends, 0.1 and its grid neighbours, β = 1 and two β > 1),
# which cuts every sweep by about a third. With 12 members the 25-minute budget of the five
# notebooks was about 10,000 sweep steps in all, 4% of one of the paper's sweeps; in the cpu run
# this notebook trains about 5,500 sweep steps (555 s of its 607 s). The cpu profile keeps the
# paper's networks, batch size, learning rate and splits, trains in bfloat16 (1.3-1.5× faster;
# `bozkurt2021_fig08_mutual_information` checks that it does not change the shape verdicts), and
# spends the steps where a claim's regime can be reached:
#
# | curves | cpu | paper | why |
# |---|---|---|---|
# | 1-layer MLP on CV(82k/82k), CV(16k/147k), checkerboard | 640 iterations (1 epoch of the 82k splits, 5 of CV(16k/147k)); 2 restarts on CV(16k/147k), 1 elsewhere | 257k, 5 restarts | one budget for the three splits of Fig. 5. The U of Fig. 3 needs the small-β models to overfit; on CV(16k/147k) their test-set advantage was still growing after 12 epochs in an exploratory run, so that regime lies far beyond this budget |
# | 3-layer MLP on CV(16k/147k) | 1,024 (8 epochs), 2 restarts | 257k, 5 | the 3-layer MLP sits on an initial plateau for ~500-1,000 steps (test D 240-290 nats after 640 steps on CV(82k/82k)); after 8 epochs its test D is 136-152 nats at β ≤ 0.5, so its curve shape (L) and its MI (fig08) describe a model that reconstructs |
# | 3-layer MLP on CV(82k/82k) | 640 (1 epoch), 1 restart | 257k, 5 | still on the plateau; overtaking the 1-layer MLP ("3-layer better") takes thousands of steps (on CV(16k/147k) it is still behind after 1,024) |
# | 3-layer MLP on the checkerboard split | not trained | 257k, 5 | it would be another plateau curve; saves about a minute (640 steps of an 8-member 3-layer sweep, estimated from the table) |
# | 1- and 3-layer CNN on CV(16k/147k) | 128 (1 epoch, the engine's smallest unit), 1 restart | 257k, 5 | a CNN step costs 2-4.5× an MLP step: enough to draw Fig. 6, not to train them past their plateau |
#
# R and D are evaluated on fixed random subsets of 2,000 training and 2,000 test points (the same
# points for every β and restart), NN distances on 2,000 test points. Runtime of this notebook in
# the cpu profile: about 10 minutes (607 s, of which 555 s training) on 2 idle cores, first run,
# fresh cache.
#
# ## What this shows (cpu profile)
#
# Four of the seven claims hold (8 β, seed 0); each claim in the results JSON carries the measured
# numbers and, where it fails or holds only by its tolerance, our reading:
#
# - CV(82k/82k) shows no generalization gap (holds), as in the paper: test D is 0.8-3.1 nats above
#   train D, at most 1.3% of it, for both architectures.
# - "3-layer better than 1-layer everywhere" fails: after one epoch (640 steps) the 3-layer MLP on
#   CV(82k/82k) is still on its plateau (test D + R 246-312 nats, on average 110 nats above the
#   1-layer MLP's), an optimisation effect, not a generalization one.
# - The 1-layer curve on CV(16k/147k) is monotone (L, minimum at β = 0.001), not U-shaped: after
#   five epochs the train-test gap is 3.7 nats at β = 0.001 and 2.8 at β = 5, so the small-β models
#   have not begun to overfit. The paper's U comes from ~2,000 epochs (and disappears with early
#   stopping).
# - The 3-layer MLPs on CV(16k/147k), past their plateau after 1,024 steps, have an L-shaped test
#   curve (holds) and the best test ELBO at β = 0.3 (−156.5 nats), one grid step from the paper's
#   0.1 (holds by the tolerance). Neither is yet the paper's high-capacity regime: their train-test
#   gap is 2.9-4.3 nats at every β, with no memorization at large β, and they are still ~34 nats
#   above the 1-layer curve in D + R.
# - The checkerboard split generalizes more like CV(16k/147k) than like CV(82k/82k) for the
#   1-layer MLP (holds), as the NN distances of `bozkurt2021_fig01_dataset_splits` predict, but by
#   little: mean |ΔD| over β is 2.7 nats to CV(16k/147k) against 3.5 to CV(82k/82k), a difference
#   of 0.8 nats, within the CV(16k/147k) curve's restart sd (0.1-3.0 nats over β).
# - CNNs (one epoch, 128 steps) are still on their plateau (test D 248-274 nats for 1 layer,
#   301-315 for 3); the 3-layer CNN is monotone and the 1-layer CNN's minimum is at β = 0.1 with a
#   0.17-nat rise, but with a monotone 1-layer MLP curve (rise 0) there is no non-monotonicity for
#   them to be "closer" to (fails).
#
# The `paper` profile runs the paper's settings unchanged.
