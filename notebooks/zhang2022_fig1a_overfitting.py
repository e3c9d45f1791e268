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
# # Zhang, Hayes & Barber 2022, Figure 1a: a VAE overfits binary MNIST
#
# Paper B ("Generalization Gap in Amortized Inference", workshop text Sec. 2.2, Fig. 1a): a VAE with
# an MLP encoder and decoder (2 hidden layers of 500 ReLU units, z = 10, Bernoulli likelihood) is
# trained on fixed-threshold binary MNIST with Adam (lr 1e-3, batch 100). The training BPD keeps
# falling while the test BPD first falls, then rises: the VAE overfits.
#
# In this notebook we train that VAE for several seeds at once (one stacked ensemble), save a
# checkpoint every few epochs and plot train and test bits/dim (BPD = negative single-sample ELBO in
# bits per pixel, paper B footnote 3). The checkpoints are cached and reused by
# `zhang2022_fig1b_optimal_inference` and `zhang2022_fig2_self_consistent`.
#
# **Scale.** The `paper` profile is the paper's setting (all 60k training images, 1000 epochs, a
# checkpoint every 100). The `cpu` profile trains on a seeded subset of **1000** training images for
# 160 epochs: with 60× fewer images per epoch the encoder overfits after ~60 epochs instead of
# hundreds, so the whole rise of the test BPD fits in about a minute of 2-core CPU time (measured:
# test BPD lowest near epoch 60–70, then rising steadily). Runtime (cpu): 82 s on the first run
# (2 cores shared with other jobs, load average ~3.5), ~7 s from the cache.
#
# **Settings.** Each profile's sizes are defined once, in `zhang2022.fig1a_settings` (the base run
# `zhang2022.base_run`, shared with the other two notebooks); the parameters below override single
# values, e.g. `./run_all.sh` or papermill with `-p EPOCHS 80` (None: the profile's value).

# %% tags=["parameters"]
from vaegen_utils.profiles import current_profile

PROFILE = current_profile()  # smoke | cpu | paper: env VAEGEN_PROFILE (default cpu) or papermill -p PROFILE
# Overrides of the base run (zhang2022.base_run, shared with fig1b and fig2); None: the profile's value.
N_TRAIN = None  # training images, a seeded subset (60000: all of them, the paper's setting)
EPOCHS = None  # training epochs (paper: 1000)
CHECKPOINT_EVERY = None  # a saved model every k epochs (paper: 100)
EVAL_EVERY = None  # train/test BPD every k epochs: the resolution of the curves
SEEDS = None  # one model per seed, e.g. [0, 1, 2]: the mean ± sd bands
RISE_TOLERANCE_SDS = 2.0  # claim: the test BPD must rise above its minimum by more than this many seed sds

# %% [markdown]
# ## Setup

# %%
import matplotlib.pyplot as plt
import numpy as np

from vaegen_utils import notebook, zhang2022
from vaegen_utils.claims import beyond_noise, interior_minimum, mean_sd, rise_after_minimum, strictly_decreasing
from vaegen_utils.results import Claim

S = zhang2022.fig1a_settings(PROFILE, n_train=N_TRAIN, epochs=EPOCHS, checkpoint_every=CHECKPOINT_EVERY,
                             eval_every=EVAL_EVERY, seeds=SEEDS)
run = notebook.start("zhang2022_fig1a_overfitting", PROFILE, seed=S.run.seeds[0])
print(S.run)

# %% [markdown]
# ## Train (or load) the seed ensemble with checkpoints

# %%
curves = zhang2022.learning_curves(S.run)  # trains once, then reads the cache
epochs = np.array(curves["epochs"])
train_mean, train_sd = map(np.array, mean_sd(curves["train_bpd"]))  # (T,) each
test_mean, test_sd = map(np.array, mean_sd(curves["test_bpd"]))
checkpoints = curves["checkpoint_epochs"]
at_checkpoint = np.isin(epochs, checkpoints)
best = int(np.argmin(test_mean))  # the lowest seed-mean test BPD
print(f"training time when the run was trained: {curves['train_seconds']:.0f} s (all seeds together; reruns load the cache)")
print(f"{'epoch':>6} {'train BPD':>16} {'test BPD':>16}")
for epoch, tm, ts, vm, vs in zip(epochs[at_checkpoint], train_mean[at_checkpoint], train_sd[at_checkpoint],
                                 test_mean[at_checkpoint], test_sd[at_checkpoint]):
    print(f"{epoch:>6} {tm:>9.4f} ± {ts:.4f} {vm:>9.4f} ± {vs:.4f}")
print(f"lowest test BPD {test_mean[best]:.4f} ± {test_sd[best]:.4f} at epoch {epochs[best]}")

# %% [markdown]
# ## Figure 1a: train and test BPD during training

# %%
fig, ax = plt.subplots(figsize=(4.8, 3.2))
for mean, sd, color, label in [
    (train_mean, train_sd, "tab:blue", "train"),
    (test_mean, test_sd, "tab:red", "test"),
]:
    ax.plot(epochs, mean, color=color, label=f"{label} BPD")
    ax.fill_between(epochs, mean - sd, mean + sd, color=color, alpha=0.25, linewidth=0)
    ax.plot(epochs[at_checkpoint], mean[at_checkpoint], "o", color=color, markersize=3)
ax.annotate(
    f"lowest test BPD\n(epoch {epochs[best]})",
    xy=(epochs[best], test_mean[best]),
    xytext=(0, -28),
    textcoords="offset points",
    ha="center",
    fontsize=7,
    arrowprops={"arrowstyle": "->", "linewidth": 0.6},
)
n_train = S.run.n_train or 60_000
ax.set_xlabel("training epoch")
ax.set_ylabel("bits/dim (negative ELBO)")
ax.set_title(f"Fig. 1a: VAE on binary MNIST, {n_train:,} training images", loc="left")
ax.legend(title=f"mean ± sd over {len(S.run.seeds)} seeds; dots: checkpoints", title_fontsize=7, loc="upper right")
run.savefig(fig)
plt.show()

# %% [markdown]
# ## Claims and results

# %%
checkpoint_train = train_mean[at_checkpoint]
rise = rise_after_minimum(test_mean)  # from the lowest point to the end of training
spread = float(max(test_sd[best], test_sd[-1]))  # seed-to-seed sd at the two ends of the rise
claims = [
    Claim(id="train_bpd_keeps_falling", paper="zhang2022", figure="Fig. 1a",
          statement="The training BPD decreases throughout training (seed mean, checkpoint to checkpoint)",
          reported="decreases throughout",
          measured={"epochs": checkpoints, "train_bpd": checkpoint_train.round(5).tolist()},
          tolerance="strictly lower at every checkpoint than at the previous one",
          holds=strictly_decreasing(checkpoint_train)),
    Claim(id="test_bpd_interior_minimum", paper="zhang2022", figure="Fig. 1a",
          statement="The test BPD first decreases, then increases: its minimum lies strictly inside the run",
          reported="first decreases, then gradually increases",
          measured={"min_epoch": int(epochs[best]), "min_bpd": round(float(test_mean[best]), 5),
                    "first_epoch": int(epochs[0]), "last_epoch": int(epochs[-1])},
          tolerance="argmin of the seed-mean test BPD is neither the first nor the last evaluation",
          holds=interior_minimum(test_mean)["interior"]),
    Claim(id="test_bpd_rise_exceeds_seed_spread", paper="zhang2022", figure="Fig. 1a",
          statement="After its minimum the test BPD rises by more than its seed-to-seed spread (overfitting, not noise)",
          reported="gradually increases",
          measured={"rise_bpd": round(rise, 5), "seed_sd_bpd": round(spread, 5), "rise_in_sds": round(rise / max(spread, 1e-12), 1)},
          tolerance=f"rise > {RISE_TOLERANCE_SDS:g} x the seed sd (the larger of the sds at the minimum and at the end)",
          holds=beyond_noise(rise, spread, RISE_TOLERANCE_SDS)),
]
run.finish(
    config=S.to_dict() | {"rise_tolerance_sds": RISE_TOLERANCE_SDS},
    metrics={"epochs": epochs.tolist(), "train_bpd": curves["train_bpd"], "test_bpd": curves["test_bpd"],
             "checkpoint_epochs": checkpoints, "min_test_epoch": int(epochs[best]), "train_seconds": curves["train_seconds"]},
    claims=claims,
)
# Sanity: the numbers are finite BPDs of a trained model (claims may fail in the smoke profile).
assert np.all(np.isfinite(train_mean)) and np.all(np.isfinite(test_mean)) and np.all(test_mean > 0)

# %% [markdown]
# ## What this shows
#
# The training BPD falls at every checkpoint, while the test BPD reaches its lowest value early and
# then climbs back up by many seed standard deviations: the VAE overfits, as in paper B's Fig. 1a.
# The seed bands are narrow: the overfitting is a property of the training set, not of one run.
#
# What differs from the paper: the `cpu` profile uses 1000 training images and 160 epochs instead of
# 60,000 images and 1000 epochs, so the curve is steeper and the BPD values are higher than the
# paper's (a model trained on 1000 images overfits sooner and more). The seeds vary the
# initialisation and the reparameterisation noise; the mini-batch order is shared because all seeds
# train together as one stacked ensemble. Whether the rise comes from the encoder or the decoder is
# the subject of the next notebook (`zhang2022_fig1b_optimal_inference`), which reuses these
# checkpoints.
