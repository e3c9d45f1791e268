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
# # Bozkurt et al. 2021, Figure 7: RD curves on other data sets
#
# In this notebook we repeat the 1-layer vs 3-layer MLP comparison of paper C (§4.4, "Additional
# Datasets", Fig. 7) on MNIST and Fashion-MNIST, each with one small constant-volume split: a
# random subset of the training images for training, the data set's 10,000 test images for
# testing. Pixels are k/255 in [0, 1] with the Bernoulli decoder, as for the Tetrominoes
# (paper C, footnote 1). The paper's reading: 1-layer curves show a local minimum (U) in most data
# sets, 3-layer curves are closer to monotonic.
#
# **SmallNORB and 3dShapes are not available here.** The paper also uses them, but neither ships
# in a package registry this project can install from (PyPI, Debian), and this workplace cannot
# download from their hosts (NYU for SmallNORB, Google Cloud Storage for 3dShapes), so
# `vaegen_utils.data` has no offline source for them; we do not substitute other data.

# %% tags=["parameters"]
from vaegen_utils.profiles import current_profile

PROFILE = current_profile()  # smoke | cpu | paper: env VAEGEN_PROFILE (default cpu) or papermill -p PROFILE
SEED = 0  # seeds the training subset of each data set (and Python/NumPy/torch at the start)
# Overrides of the profile's values (bozkurt2021.SWEEPS / RESTARTS / FIG07); None keeps the profile's.
BETAS = None  # β of each sweep ensemble, one member per β, e.g. [0.001, 0.1, 1.0] (paper: the 12 of footnote 2)
ITERATIONS = None  # Adam steps per sweep, rounded up to whole epochs (paper: 257k)
RESTARTS = None  # restarts per curve (paper: 5)
NUM_TRAIN = None  # training images of each data set's small CV split (the paper does not state its size)
DATASETS = None  # the data sets, from bozkurt2021.IMAGE_DATASETS, e.g. ["mnist"]

# %% [markdown]
# ## Setup

# %%
import matplotlib.pyplot as plt
import numpy as np

from vaegen_utils import bozkurt2021, data, notebook
from vaegen_utils.bozkurt2021 import SD_MARGIN, UNAVAILABLE_DATASETS
from vaegen_utils.claims import closer_to_monotone, is_u_shaped, majority, minimum_shape
from vaegen_utils.results import Claim

run = notebook.start("bozkurt2021_fig07_other_datasets", PROFILE, seed=SEED)
S = bozkurt2021.fig07_settings(PROFILE, seed=SEED, betas=BETAS, iterations=ITERATIONS, restarts=RESTARTS,
                               num_train=NUM_TRAIN, datasets=DATASETS)

available = data.available_datasets()
loaded = [name for name in S.datasets if available[name]]
for name in S.datasets:
    if not available[name]:
        print(f"{name}: not available offline; skipped (load_dataset({name!r}) with network access caches it once)")
for name, reason in UNAVAILABLE_DATASETS.items():
    print(f"{name}: not available ({reason}); skipped")
splits = {name: bozkurt2021.image_split(name, S.num_train, subset_seed=S.seed) for name in loaded}
for split in splits.values():
    print(f"{split.label}: {split.num_train:,} train / {split.num_test:,} test, images {split.data_shape}")

# %% [markdown]
# ## Train (or load) the sweeps and evaluate

# %%
curves, runs = bozkurt2021.run_curves({key: S.curves[key] for key in S.curves if key[0] in loaded},
                                     lambda key: splits[key[0]])
for key, group in runs.items():
    print(f"{splits[key[0]].label} {bozkurt2021.ARCHITECTURE_LABELS[key[1]]}: {group[0]['iterations']} iterations ({group[0]['epochs']} epochs)")

# %% [markdown]
# ## Figure 7

# %%
COLORS = {"mlp1": "tab:orange", "mlp3": "tab:blue"}
fig, axes = plt.subplots(2, max(1, len(loaded)), figsize=(3.6 * max(1, len(loaded)), 6.0), squeeze=False)
for column, name in enumerate(loaded):
    for row, part in enumerate(("train", "test")):
        ax = axes[row, column]
        for architecture in ("mlp1", "mlp3"):
            bozkurt2021.plot_rd_curve(ax, curves[(name, architecture)], part, label=bozkurt2021.ARCHITECTURE_LABELS[architecture],
                            color=COLORS[architecture])
        ax.margins(0.08)
        bozkurt2021.add_elbo_isolines(ax)
        ax.set_title(f"{splits[name].label}, {part}", loc="left")
        ax.set_xlabel("rate R (nats)")
        ax.set_ylabel("distortion D (nats)")
axes[0, 0].legend(loc="upper right")
fig.suptitle("Bozkurt et al. 2021, Fig. 7: RD curves on other data sets (☆ = β=1)", fontsize=9)
fig.tight_layout()
run.savefig(fig)
plt.show()

# %% [markdown]
# ## Claims

# %%
claims = []
shapes = {key: minimum_shape(curve.betas, curve.mean("test", "distortion"), curve.sd("test", "distortion"))
          for key, curve in curves.items()}
u_one_layer = {name: is_u_shaped(shapes[(name, "mlp1")], SD_MARGIN) for name in loaded}
u_holds = majority(list(u_one_layer.values()))
gaps = {key: curve.gap().mean(axis=0) for key, curve in curves.items()}  # test D - train D per β
epochs_1 = runs[(loaded[0], "mlp1")][0]["epochs"] if loaded else 0
claims.append(Claim(
    id="fig7_1layer_local_minimum", paper="bozkurt2021", figure="Fig. 7",
    statement="1-layer MLP test distortion has a local minimum in β (U-shape) on most data sets",
    reported="U-shaped in most data sets",
    measured={name: {"argmin_beta": shapes[(name, "mlp1")]["argmin_beta"], "rise": round(shapes[(name, "mlp1")]["rise"], 2),
                     "u_shaped": u_one_layer[name]}
              for name in loaded},
    tolerance=f"interior argmin and D(β=0.001) - min D > 0 (one restart; > {SD_MARGIN:g} sd with several) in more than half of the data sets",
    holds=u_holds,
    note=None if u_holds else (
        "U-shaped on " + (", ".join(name for name in loaded if u_one_layer[name]) or "no data set") + "; monotone on "
        + ", ".join(f"{name} (minimum at β = {shapes[(name, 'mlp1')]['argmin_beta']:g}, train-test gap "
                    f"{gaps[(name, 'mlp1')][0]:.1f} nats at β = 0.001 vs {gaps[(name, 'mlp1')][-1]:.1f} at β = 5)"
                    for name in loaded if not u_one_layer[name])
        + f": after {epochs_1} epochs the small-β models there "
        + ("overfit more than the others (the larger gap at β = 0.001), but not yet enough to lose their lowest test D"
           if all(gaps[(name, "mlp1")][0] > gaps[(name, "mlp1")][-1] for name in loaded if not u_one_layer[name])
           else "have not yet overfitted more than the others")
        + " (paper: 257k iterations, thousands of epochs)."),
))
closer = {name: closer_to_monotone(shapes[(name, "mlp3")], shapes[(name, "mlp1")]) for name in loaded}
claims.append(Claim(
    id="fig7_3layer_closer_to_monotonic", paper="bozkurt2021", figure="Fig. 7",
    statement="3-layer MLP curves are closer to monotonic than 1-layer curves",
    reported="3-layer closer to monotonic (except 3dShapes, not available here)",
    measured={name: {"rise_mlp1": round(shapes[(name, "mlp1")]["rise"], 2), "rise_mlp3": round(shapes[(name, "mlp3")]["rise"], 2),
                     "argmin_beta_mlp3": shapes[(name, "mlp3")]["argmin_beta"]}
              for name in loaded},
    tolerance="small-β rise D(β=0.001) - min D of the 3-layer MLP <= that of the 1-layer MLP on every data set",
    holds=bool(loaded) and all(closer.values()),
    note=None if all(closer.values()) else (
        "Not closer on " + ", ".join(
            f"{name} (rises {shapes[(name, 'mlp3')]['rise']:.2f} nats for 3 layers vs {shapes[(name, 'mlp1')]['rise']:.2f} for 1; "
            f"3-layer test D {float(np.mean(curves[(name, 'mlp3')].mean('test', 'distortion') - curves[(name, 'mlp1')].mean('test', 'distortion'))):+.1f} "
            "nats vs the 1-layer MLP on average)" for name in loaded if not closer[name])
        + ": with one restart, rises of a few tenths of a nat are within the noise of the curve, and the 3-layer MLPs are "
        "still underfit at this budget."),
))

# %% [markdown]
# ## Results

# %%
run.finish(
    config=S.to_dict() | {"sd_margin": SD_MARGIN, "split_specs": {name: split.spec() for name, split in splits.items()}},
    metrics={"curves": {f"{splits[k[0]].label} {k[1]}": curve.to_dict() for k, curve in curves.items()},
             "shapes": {f"{k[0]} {k[1]}": shape for k, shape in shapes.items()},
             "unavailable": UNAVAILABLE_DATASETS, "missing_offline": [n for n in S.datasets if n not in loaded],
             "iterations": {f"{k[0]} {k[1]}": runs[k][0]["iterations"] for k in runs}},
    claims=claims,
)
for key, curve in curves.items():
    assert np.all(np.isfinite(curve.values["test"]["distortion"])), f"{key}: non-finite test distortion"

# %% [markdown]
# ## What this shows (cpu profile)
#
# Neither claim holds (8 β, seed 0, one restart; SmallNORB and 3dShapes, two of the paper's four
# extra data sets, are missing for the reason given at the top):
#
# - **1-layer U-shape** (fails: U on one data set of two, the claim needs more than half). On MNIST
#   the 1-layer test D has its minimum at β = 0.01 and rises by 0.33 nats towards β = 0.001, a U by
#   our one-restart tolerance; its train-test gap grows as β falls (1.8 nats at β = 5, 8.0 at
#   β = 0.001), the beginning of the paper's small-β overfitting. On Fashion-MNIST the curve is
#   monotone (minimum at β = 0.001): the gap is larger at small β too (5.7 nats at β = 0.001 vs 3.7
#   at β = 5), but not enough, after 27 epochs, to cost the small-β models their lower test D.
# - **3-layer closer to monotonic** (fails). On MNIST it is (3-layer minimum at β = 0.001, rise 0,
#   against the 1-layer MLP's 0.33). On Fashion-MNIST the 3-layer minimum is at β = 0.01 with a
#   0.52-nat rise against none for the 1-layer MLP. With one restart, rises of a few tenths of a nat
#   are within the noise of a curve, and the 3-layer MLPs are still underfit at this budget: their
#   test D is on average 29 nats (MNIST) and 12 nats (Fashion-MNIST) above the 1-layer MLP's.
#
# ## What was reduced, and why
#
# - **Iterations**: 640 Adam steps requested per sweep in the cpu profile (paper: 257,000), the
#   budget of the Tetrominoes notebooks, rounded up to whole epochs: 648 steps, 27 epochs of 3,000
#   images.
# - **β**: 8 of the paper's 12 values, {0.001, 0.01, 0.1, 0.3, 0.5, 1, 2, 5} (`bozkurt2021.CPU_BETAS`,
#   every cpu sweep's grid); a sweep step costs about the same per member, so this cuts every sweep by a third.
# - **Restarts**: one (paper: 5), so the curves carry no error bars and a "U" only needs an interior
#   minimum with any rise at β = 0.001.
# - **Split**: CV(3k/10k), 3,000 training images of each data set (the paper's small-split sizes
#   are not stated; the paper profile uses 6,000), so that the budget is 27 epochs instead of 14,
#   enough for the 1-layer MLP to start overfitting MNIST; the test set is the data set's own
#   10,000 images, evaluated on 3,000 of them (and 3,000 training images).
#
# Runtime in the cpu profile: 95 s on 2 idle cores, first run, fresh cache (four sweeps); a cached
# rerun takes seconds.
