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
# keeps 8 of them, `bozkurt2021.CPU_BETAS`), and every trained model is one point (R, D) on the training or the
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
SEED = 0  # seeds Python/NumPy/torch at the start; restart r derives all its training seeds from r
# Overrides of the profile's values (bozkurt2021.SWEEPS / RESTARTS / FIG03); None keeps the profile's.
BETAS = None  # β of each sweep ensemble, one member per β, e.g. [0.001, 0.1, 1.0] (paper: the 12 of footnote 2)
ITERATIONS = None  # Adam steps of the 1-layer MLPs and of the 3-layer MLP on the 82k splits (paper: 257k)
SPARSE_MLP3_ITERATIONS = None  # Adam steps of the 3-layer MLP on CV(16k/147k); fig08 reads the same sweeps
CNN_ITERATIONS = None  # Adam steps of the CNN sweeps of Fig. 6
RESTARTS = None  # restarts of the CV(82k/82k), checkerboard and CNN curves (paper: 5)
SPARSE_MLP_RESTARTS = None  # restarts of the MLP curves on CV(16k/147k); fig08 reads the same sweeps
CHECKERBOARD_ARCHITECTURES = None  # MLPs trained on the checkerboard split, e.g. ["mlp1", "mlp3"]
PRECISION = None  # training precision: "bfloat16" (CPU autocast) or "float32"
DENSE_GAP_TOLERANCE = 0.02  # "no gap" on CV(82k/82k): |test D - train D| at most 2% of train D at every β

# %% [markdown]
# ## Setup

# %%
import matplotlib.pyplot as plt
import numpy as np

from vaegen_utils import bozkurt2021, notebook, tetrominoes
from vaegen_utils.bozkurt2021 import CHECKERBOARD_SPLIT, DENSE_SPLIT, SD_MARGIN, SPARSE_SPLIT
from vaegen_utils.claims import (below_everywhere, best_beta, closer_to_monotone, grid_neighbours, is_l_shaped,
                                 is_u_shaped, largest_relative_gap, mean_abs_difference, minimum_shape)
from vaegen_utils.results import Claim

run = notebook.start("bozkurt2021_fig03_rd_curves", PROFILE, seed=SEED)
S = bozkurt2021.fig03_settings(
    PROFILE, betas=BETAS, iterations=ITERATIONS, sparse_mlp3_iterations=SPARSE_MLP3_ITERATIONS,
    cnn_iterations=CNN_ITERATIONS, restarts=RESTARTS, sparse_mlp_restarts=SPARSE_MLP_RESTARTS,
    checkerboard_architectures=CHECKERBOARD_ARCHITECTURES, precision=PRECISION,
)

data = tetrominoes.load_tetrominoes()
splits = {name: bozkurt2021.tetromino_split(data, name) for name in S.splits}
for split in splits.values():
    print(f"{split.label:>24}: {split.num_train:,} train / {split.num_test:,} test")

# %% [markdown]
# ## Train (or load) the β sweeps and evaluate R and D on train and test
#
# Curves are keyed by (split, architecture). A sweep that is already in the cache is not trained
# again, and its evaluated R and D are read from the cache without loading the model.

# %%
curves, runs = bozkurt2021.run_curves(S.curves, lambda key: splits[key[0]])
for (split_name, architecture), curve in curves.items():
    first = runs[(split_name, architecture)][0]
    print(f"{splits[split_name].label:>24} {bozkurt2021.ARCHITECTURE_LABELS[architecture]:<12} "
          f"{curve.num_restarts} restart(s) x {first['iterations']} iterations ({first['epochs']} epochs)")

# %% [markdown]
# The "difficult" test example of Fig. 3: the one at the 90th percentile of the L2 distance to
# its nearest training image (distances on a seeded subset of test points).

# %%
examples = {}
for name in (DENSE_SPLIT, SPARSE_SPLIT):
    neighbours = bozkurt2021.nearest_neighbours(splits[name], max_test=S.nn_max_test)
    examples[name] = bozkurt2021.difficult_example(neighbours)
    print(f"{splits[name].label}: test row {examples[name]['test_row']}, NN distance "
          f"{examples[name]['distance']:.2f} (90th percentile {examples[name]['percentile_distance']:.2f})")
reconstructions = {
    (name, architecture): bozkurt2021.sweep_reconstructions(S.curves[(name, architecture)][0], splits[name], [examples[name]["test_row"]])
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
    strip_ax.set_xticks([16 + 33 * index for index in range(2 + len(S.betas))],
                        ["x", "NN"] + [f"{beta:g}".removeprefix("0") for beta in S.betas], fontsize=6)
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
run.savefig(fig)
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
run.savefig(fig, "bozkurt2021_fig05_checkerboard")
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
run.savefig(fig, "bozkurt2021_fig06_cnn")
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
dense_relative = {arch: largest_relative_gap(dense_gaps[arch], curves[(DENSE_SPLIT, arch)].mean("train", "distortion"))
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
better_everywhere = below_everywhere(dense_neg_elbo["mlp3"], dense_neg_elbo["mlp1"])
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
peak_beta = best_beta(S.betas, sparse_elbo)
peak_holds = bool(peak_beta in grid_neighbours(S.betas, 0.1))
claims.append(Claim(
    id="fig3_sparse_3layer_elbo_peak", paper="bozkurt2021", figure="Fig. 3 (bottom)",
    statement="CV(16k/147k), 3-layer MLP: the test ELBO (-D-R) is best near β = 0.1",
    reported=0.1, measured={"argmax_beta": peak_beta, "test_elbo": sparse_elbo.round(1).tolist(),
                            "gap_D_nats": sparse3_gap.round(2).tolist()},
    tolerance=f"argmax within one grid step of 0.1: {grid_neighbours(S.betas, 0.1)}",
    holds=peak_holds,
    note=(("Holds by the tolerance, but not for the paper's reason" if peak_holds else
           f"The test ELBO peaks at β = {peak_beta:g}") +
          ": the paper's peak at 0.1 comes with memorization at large β (a train-test gap that grows with β), while here "
          f"the gap stays small ({sparse3_gap.min():.1f}-{sparse3_gap.max():.1f} nats over β): the 3-layer MLP has not fitted "
          "the training set, and an underfit VAE's test ELBO also peaks at an intermediate β, where D + R is smallest."),
))

# Fig. 5: "similar generalization performance for the Checkerboard and CV (16k/147k) splits".
closeness = {}
for arch in S.checkerboard_architectures:
    checker = curves[(CHECKERBOARD_SPLIT, arch)].mean("test", "distortion")
    closeness[arch] = {
        "to_sparse": mean_abs_difference(checker, curves[(SPARSE_SPLIT, arch)].mean("test", "distortion")),
        "to_dense": mean_abs_difference(checker, curves[(DENSE_SPLIT, arch)].mean("test", "distortion")),
    }
# The three curves of an architecture must share one iteration budget (640 is 641 steps on the
# checkerboard's 82,021 training points: whole epochs), else the comparison measures training length.
comparable = all(S.curves[(name, arch)][0].iterations == S.curves[(CHECKERBOARD_SPLIT, arch)][0].iterations
                 for arch in S.checkerboard_architectures for name in (DENSE_SPLIT, SPARSE_SPLIT))
claims.append(Claim(
    id="fig5_checkerboard_like_sparse", paper="bozkurt2021", figure="Fig. 5",
    statement="Checkerboard test RD curves are close to CV(16k/147k)'s rather than CV(82k/82k)'s",
    reported="checkerboard ≈ CV(16k/147k)", measured=closeness,
    tolerance="mean |ΔD| over β to CV(16k/147k) smaller than to CV(82k/82k), for every architecture trained on the "
              f"checkerboard split ({', '.join(S.checkerboard_architectures)})",
    holds=bool(comparable and all(value["to_sparse"] < value["to_dense"] for value in closeness.values())),
    note=(f"The three 1-layer curves (one budget of {S.curves[(CHECKERBOARD_SPLIT, 'mlp1')][0].iterations} iterations: one epoch "
          "of the 82k splits, five of CV(16k/147k)) differ by only a few nats at this scale, so the verdict rests on small "
          "differences; the 3-layer MLP is not trained on the checkerboard split in this profile."
          if "mlp3" not in S.checkerboard_architectures else None),
))

# Fig. 6: "a monotonic curve for 3-layer CNNs and only a small degree of non-monotonicity in the 1-layer CNN".
cnn_shapes = {arch: shape_of((SPARSE_SPLIT, arch)) for arch in ("mlp1", "cnn1", "cnn3")}
cnn_holds = bool(closer_to_monotone(cnn_shapes["cnn1"], cnn_shapes["mlp1"]) and closer_to_monotone(cnn_shapes["cnn3"], cnn_shapes["mlp1"])
                 and cnn_shapes["cnn3"]["argmin_beta"] == min(S.betas))
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
run.finish(
    config=S.to_dict() | {"sd_margin": SD_MARGIN, "dense_gap_tolerance": DENSE_GAP_TOLERANCE,
                          "split_specs": {name: split.spec() for name, split in splits.items()}},
    metrics=metrics,
    claims=claims,
)
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
