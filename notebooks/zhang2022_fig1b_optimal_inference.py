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
# # Zhang, Hayes & Barber 2022, Figure 1b: the overfitting is in the encoder
#
# Paper B (workshop text Sec. 2.2, eq. 12, Fig. 1b). A VAE's test ELBO can degrade for two reasons:
# the model p_θ(x) overfits (the *model generalization gap*), or the amortized encoder q_φ(z|x),
# fitted to the training images only, gives poor posteriors on test images (the *inference
# generalization gap*, eq. 10–11). **Optimal inference** separates them: freeze the decoder θ of a
# checkpoint and retrain only the encoder on the *test* set (eq. 12; the official code's
# `OptimalEval`). What remains of the overfitting then belongs to the model.
#
# In this notebook we take every checkpoint of `zhang2022_fig1a_overfitting` (cached), retrain its
# encoder on the test images and plot amortized vs optimal-inference test BPD. Paper B's claim: the
# optimal curve is much lower and nearly flat, so the overfitting is dominated by the encoder.
#
# The other meaning of "optimal": a free Gaussian **q\*(z|x) per test point** (Cremer et al. 2018;
# paper B's compression code), whose ELBO minus the encoder's is the *amortization gap*. It is a
# different quantity (it also exists on training data) and is shown in its own panel, on a subset of
# test images. Runtime (cpu): 121 s on the first run after fig1a (2 cores shared with other jobs,
# load average ~3.5), ~7 s from the cache. Settings per profile: `zhang2022.fig1b_settings`; the
# parameters below override single values (None: the profile's value).

# %% tags=["parameters"]
from vaegen_utils.profiles import current_profile

PROFILE = current_profile()  # smoke | cpu | paper: env VAEGEN_PROFILE (default cpu) or papermill -p PROFILE
# Overrides of zhang2022.fig1b_settings; None: the profile's value. The base run is fig1a's (same cache).
N_TRAIN = None  # training images of the base run (60000: all of them, the paper's setting)
EPOCHS = None  # training epochs of the base run (paper: 1000)
SEEDS = None  # one model per seed, e.g. [0, 1, 2]: the mean ± sd bands
RETRAIN_EPOCHS = None  # optimal inference: epochs of encoder retraining on the test set per checkpoint (paper: 100)
PER_POINT_IMAGES = None  # first test images with a per-point q* fit (one Adam run per image, checkpoint and seed)
PER_POINT_STEPS = None  # Adam step cap of each per-point fit
FLAT_FRACTION = 1 / 3  # claim: the optimal curve's rise after its minimum is at most this fraction of the amortized rise
DOMINANCE_FACTOR = 2.0  # claim: at the last checkpoint the inference gap is at least this many times the model's own rise

# %% [markdown]
# ## Setup

# %%
import matplotlib.pyplot as plt
import numpy as np

from vaegen_utils import notebook, zhang2022
from vaegen_utils.claims import dominates, mean_sd, nearly_flat, ordered, rise_after_minimum
from vaegen_utils.results import Claim

S = zhang2022.fig1b_settings(PROFILE, n_train=N_TRAIN, epochs=EPOCHS, seeds=SEEDS, retrain_epochs=RETRAIN_EPOCHS,
                             per_point_n_points=PER_POINT_IMAGES, per_point_max_steps=PER_POINT_STEPS)
run = notebook.start("zhang2022_fig1b_optimal_inference", PROFILE, seed=S.run.seeds[0])
print(S.run, S.retrain, S.per_point, sep="\n")

# %% [markdown]
# ## Amortized vs optimal inference at every checkpoint

# %%
amortized = zhang2022.amortized_at_checkpoints(S.run)  # the fig1a checkpoints (trained there, or here if missing)
optimal = zhang2022.optimal_inference(S.run, S.retrain)  # eq. 12, one retraining per checkpoint, cached
per_point = zhang2022.per_point_optimal(S.run, S.per_point, S.retrain)  # amortization gap on the first test images, cached

epochs = np.array(amortized["epochs"])
amortized_mean, amortized_sd = map(np.array, mean_sd(amortized["test_bpd"]))
train_mean, train_sd = map(np.array, mean_sd(amortized["train_bpd"]))
optimal_mean, optimal_sd = map(np.array, mean_sd(optimal["test_bpd"]))
inference_gap = np.array(amortized["test_bpd"]) - np.array(optimal["test_bpd"])  # (C, M), eq. 11 in bits/dim
print(f"encoder retraining time when it ran: {optimal['train_seconds']:.0f} s over all checkpoints (reruns load the cache)")
print(f"{'epoch':>6} {'amortized':>16} {'optimal inference':>18} {'inference gap':>14}")
for index, epoch in enumerate(epochs):
    print(f"{epoch:>6} {amortized_mean[index]:>9.4f} ± {amortized_sd[index]:.4f} "
          f"{optimal_mean[index]:>11.4f} ± {optimal_sd[index]:.4f} {inference_gap[index].mean():>14.4f}")

# Convergence of the retraining at the last checkpoint: test BPD per retraining epoch.
last_curve = optimal["curves"][-1]
print("optimal inference at the last checkpoint, test BPD per retraining epoch:",
      {epoch: round(float(np.mean(values)), 4) for epoch, values in zip(last_curve["epochs"], last_curve["test_bpd"])})

subset = {name: tuple(map(np.array, mean_sd(per_point[f"{name}_bpd"])))
          for name in ("amortized", "optimal_inference", "per_point")}
print(f"\nfirst {S.per_point.n_points} test images, {S.per_point.eval_samples}-sample ELBOs:")
print(f"{'epoch':>6} {'amortized':>10} {'optimal inf.':>13} {'per-point q*':>13} {'amortization gap':>17} {'converged':>10}")
for index, epoch in enumerate(epochs):
    print(f"{epoch:>6} {subset['amortized'][0][index]:>10.4f} {subset['optimal_inference'][0][index]:>13.4f} "
          f"{subset['per_point'][0][index]:>13.4f} {subset['amortized'][0][index] - subset['per_point'][0][index]:>17.4f} "
          f"{np.mean(per_point['fraction_converged'][index]):>10.0%}")

# %% [markdown]
# ## Figure 1b: the inference generalization gap

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.8), sharex=True)
bands = [  # the train BPD is in Fig. 1a; here only test curves, as in the paper
    (amortized_mean, amortized_sd, "tab:purple", "amortized inference"),
    (optimal_mean, optimal_sd, "tab:green", "optimal inference (encoder retrained on test, eq. 12)"),
]
for mean, sd, color, label in bands:
    left.plot(epochs, mean, marker="o", markersize=3, color=color, label=label)
    left.fill_between(epochs, mean - sd, mean + sd, color=color, alpha=0.2, linewidth=0)
left.fill_between(epochs, optimal_mean, amortized_mean, color="tab:purple", alpha=0.08, linewidth=0)
middle = len(epochs) - 1
left.annotate("inference\ngeneralization gap", xy=(epochs[middle], (optimal_mean[middle] + amortized_mean[middle]) / 2),
              xytext=(-8, 0), textcoords="offset points", ha="right", va="center", fontsize=7, color="tab:purple")
left.set_xlabel("training epoch of the checkpoint")
left.set_ylabel("test bits/dim (negative ELBO)")
left.set_title(f"Fig. 1b: {S.run.n_test:,} test images, 1-sample ELBO", loc="left", fontsize=9)
left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7)

subset_lines = [
    ("amortized", "tab:purple", "amortized encoder"),
    ("optimal_inference", "tab:green", "optimal inference (encoder retrained on test, eq. 12)"),
    ("per_point", "tab:orange", "per-point optimal posterior q*(z|x) (amortization gap)"),
]
for name, color, label in subset_lines:
    mean, sd = subset[name]
    right.plot(epochs, mean, marker="o", markersize=3, color=color, label=label)
    right.fill_between(epochs, mean - sd, mean + sd, color=color, alpha=0.2, linewidth=0)
right.set_xlabel("training epoch of the checkpoint")
right.set_ylabel("test bits/dim (negative ELBO)")
right.set_title(f"two kinds of 'optimal': first {S.per_point.n_points} test images, {S.per_point.eval_samples}-sample ELBO",
                loc="left", fontsize=9)
right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7)
fig.suptitle(f"Binary MNIST VAE, {S.run.n_train or 60_000:,} training images: amortized vs optimal inference "
             f"(mean ± sd over {len(S.run.seeds)} seeds)", x=0.01, ha="left", fontsize=10)
fig.tight_layout()
run.savefig(fig)
plt.show()

# %% [markdown]
# ## Claims and results

# %%
amortized_rise, optimal_rise = rise_after_minimum(amortized_mean), rise_after_minimum(optimal_mean)
last_gap = float(inference_gap[-1].mean())
claims = [
    Claim(id="optimal_below_amortized_every_checkpoint", paper="zhang2022", figure="Fig. 1b",
          statement="Optimal inference (encoder retrained on the test set, eq. 12) gives a lower test BPD than amortized inference at every checkpoint",
          reported="optimal inference significantly improves the BPD",
          measured={"epochs": epochs.tolist(), "inference_gap_bpd": inference_gap.mean(axis=1).round(5).tolist(),
                    "smallest_gap_bpd": round(float(inference_gap.min()), 5)},
          tolerance="strictly lower for every checkpoint and every seed",
          holds=ordered([optimal["test_bpd"], amortized["test_bpd"]])),  # [C][M]: every checkpoint and seed
    Claim(id="optimal_curve_nearly_flat", paper="zhang2022", figure="Fig. 1b",
          statement="The optimal-inference test BPD stays nearly flat while the amortized one rises",
          reported="optimal inference no longer exhibits the over-fitting behaviour; stable during training",
          measured={"optimal_rise_bpd": round(optimal_rise, 5), "amortized_rise_bpd": round(amortized_rise, 5),
                    "ratio": round(optimal_rise / max(amortized_rise, 1e-12), 3)},
          tolerance=f"rise after the minimum (seed means) of the optimal curve <= {FLAT_FRACTION:.2f} x that of the amortized curve, which must be > 0",
          holds=nearly_flat(optimal_rise, amortized_rise, FLAT_FRACTION)),
    Claim(id="inference_gap_dominates", paper="zhang2022", figure="Fig. 1b",
          statement="At the last checkpoint the inference generalization gap is larger than the model's own overfitting (the optimal curve's rise)",
          reported="over-fitting is dominated by the inference network; model over-fitting is negligible",
          measured={"inference_gap_bpd": round(last_gap, 5), "model_rise_bpd": round(optimal_rise, 5)},
          tolerance=f"inference gap >= {DOMINANCE_FACTOR:g} x the optimal curve's rise after its minimum",
          holds=dominates(last_gap, optimal_rise, DOMINANCE_FACTOR)),
    Claim(id="per_point_below_optimal_inference_below_amortized", paper="vaegen", figure="Fig. 1b (right panel)",
          statement="On the subset, per-point q* <= optimal inference <= amortized in BPD at every checkpoint: the per-point posterior is the best Gaussian per image, the retrained encoder is still amortized",
          reported="ELBO(q*) >= ELBO(any amortized encoder) (Cremer et al. 2018)",
          measured={name: subset[name][0].round(5).tolist() for name in subset},
          tolerance="ordering of the seed means at every checkpoint; same noise for the amortized and q* ELBOs",
          holds=ordered([subset[name][0] for name in ("per_point", "optimal_inference", "amortized")], strict=False),
          note=(f"q* fitted with at most {S.per_point.max_steps} Adam steps; "
                f"{np.mean(per_point['fraction_converged']):.0%} of the fits stopped by the plateau rule")),
]
run.finish(
    config=S.to_dict() | {"flat_fraction": FLAT_FRACTION, "dominance_factor": DOMINANCE_FACTOR},
    metrics={"epochs": epochs.tolist(), "amortized_test_bpd": amortized["test_bpd"], "amortized_train_bpd": amortized["train_bpd"],
             "optimal_inference_test_bpd": optimal["test_bpd"], "optimal_inference_curves": optimal["curves"],
             "per_point_subset": per_point, "retrain_seconds": optimal["train_seconds"]},
    claims=claims,
)
assert np.all(np.isfinite(optimal_mean)) and np.all(np.isfinite(subset["per_point"][0]))

# %% [markdown]
# ## What this shows
#
# Left: retraining only the encoder on the test set, with the decoder of each checkpoint frozen,
# removes most of the overfitting. The amortized test BPD climbs after its minimum while the
# optimal-inference curve stays close to flat; the shaded band between them is the inference
# generalization gap (eq. 11), and it grows with training. As in paper B, the overfitting of this VAE
# is mostly the encoder's, not the model's.
#
# Right: the per-point optimal posterior q*(z|x) (a free Gaussian fitted to each test image) is a
# different "optimal". Its distance to the amortized encoder is the amortization gap (Cremer et al.
# 2018), which exists on training data too; its distance to the retrained encoder is the part of the
# amortization gap that remains even with an encoder fitted to the test set.
#
# What differs from the paper: the `cpu` profile uses 1000 training images (see the fig1a notebook),
# so the decoder overfits somewhat as well and the optimal curve is not perfectly flat; the claims
# state how flat it must be. The encoder is retrained for 20 epochs on the 1000 test images
# (200 Adam steps) instead of the official code's 100 epochs; the convergence line above shows the
# test BPD still drifting down by ~0.001 per 5 retraining epochs at the last checkpoint, so the
# optimal curve is a slight overestimate (by ~0.002 bpd against 50 epochs, measured), which only
# makes the claims harder to meet. The per-point fits use the first 32 test images and at most 1000
# Adam steps (lr 5e-3, 5 samples per step, plateau stopping; the printed table gives the fraction that
# stopped by the plateau rule), because each test image needs its own optimisation.
