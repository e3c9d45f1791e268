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
# # Bozkurt et al. 2021, Figure 8: mutual information and marginal KL against β
#
# In this notebook we split the rate of the β-VAEs of `bozkurt2021_fig03_rd_curves` on
# CV(16k/147k) into its two terms (paper C, Eq. 5, §4.5):
#
#     R = E_x KL(q(z|x) || p(z)) = I_q[x; z] + KL(q(z) || p(z)),   q(z) = (1/N) Σ_n q(z|x_n),
#
# with q(x) the N = 16,384 training images. Two estimators of log q(z)
# (`vaegen_utils.estimators`, tested against known MI in `tests/test_mutual_information.py`):
# the minibatch estimator of Esmaeili et al. 2019 that the paper used (batches of 512, the diagonal
# reweighted so the batch stands for all N points) and the full-data mixture over all N components.
# Both cap I_q at log N = log 16,384 = 9.70 nats, drawn as the ceiling; an unweighted batch mixture
# would cap it at log 512 = 6.24 nats.
#
# The notebook also measures whether training in bfloat16 (the lever that makes the cpu profile
# affordable) moves the RD points: one sweep is trained again in float32.

# %% tags=["parameters"]
from vaegen_utils.profiles import current_profile

PROFILE = current_profile()  # smoke | cpu | paper: env VAEGEN_PROFILE (default cpu) or papermill -p PROFILE
SEED = 0  # seeds the estimators' batches and samples (and Python/NumPy/torch at the start)
# Overrides of the profile's values (bozkurt2021.SWEEPS / RESTARTS / FIG08); None keeps the profile's,
# which are fig03's, so that its CV(16k/147k) sweeps are read from the cache.
BETAS = None  # β of each sweep ensemble, one member per β, e.g. [0.001, 0.1, 1.0] (paper: the 12 of footnote 2)
ITERATIONS = None  # Adam steps of the 1-layer MLP sweeps (paper: 257k)
SPARSE_MLP3_ITERATIONS = None  # Adam steps of the 3-layer MLP sweeps on CV(16k/147k) (paper: 257k)
SPARSE_MLP_RESTARTS = None  # restarts of both MLP curves (paper: 5)
MI_BATCH_SIZE = None  # the minibatch estimator's batch B (paper: 512, §4.5)
FULL_QUERIES = None  # points whose log q(z) the full-data estimator evaluates against all N components
BF16_CHECK_ARCHITECTURE = None  # the sweep trained again in float32 for the bfloat16 check, e.g. "mlp3"
SATURATION_FRACTION = 0.95  # "MI saturates at log N": MI at least 95% of log N_train at every β up to 0.1
SMALL_KL_FRACTION = 0.25  # "marginal KL small for β > 1": at most 25% of the rate there
PRECISION_SD_TOLERANCE = 2.0  # bfloat16 "within restart spread": |float32 - bfloat16| at most 2 median restart sd's

# %% [markdown]
# ## Setup

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

from vaegen_utils import bozkurt2021, notebook, tetrominoes
from vaegen_utils.bozkurt2021 import SD_MARGIN
from vaegen_utils.claims import (falls_as_beta_rises, is_l_shaped, is_u_shaped, minimum_shape, saturates_then_falls,
                                 share_at_most, worst_noise_ratio)
from vaegen_utils.results import Claim

run = notebook.start("bozkurt2021_fig08_mutual_information", PROFILE, seed=SEED)
S = bozkurt2021.fig08_settings(
    PROFILE, seed=SEED, betas=BETAS, iterations=ITERATIONS, sparse_mlp3_iterations=SPARSE_MLP3_ITERATIONS,
    sparse_mlp_restarts=SPARSE_MLP_RESTARTS, mi_batch_size=MI_BATCH_SIZE, full_queries=FULL_QUERIES,
    bf16_check_architecture=BF16_CHECK_ARCHITECTURE,
)

data = tetrominoes.load_tetrominoes()
split = bozkurt2021.tetromino_split(data, S.split)


# %% [markdown]
# ## I_q[x; z] and KL(q(z) || p(z)) of every member, with both estimators

# %%
decompositions = {}  # (architecture, estimator) -> list over restarts of RateDecomposition dicts
for architecture, specs in S.curves.items():
    for spec in specs:
        bozkurt2021.run_sweep(spec, split)  # trains the sweep if fig03 has not (same spec, same cache entry)
        decompositions.setdefault((architecture, "minibatch"), []).append(
            bozkurt2021.sweep_rate_decomposition(spec, split, estimator="minibatch", batch_size=S.mi_batch_size, seed=S.seed))
        decompositions.setdefault((architecture, "full"), []).append(
            bozkurt2021.sweep_rate_decomposition(spec, split, estimator="full", max_queries=S.full_queries, seed=S.seed))
num_train = decompositions[("mlp1", "full")][0]["num_data"]
log_n = math.log(num_train)


def stacked(key, field):
    """(restarts, β) array of one field of the decompositions."""
    return np.array([run[field] for run in decompositions[key]], dtype=np.float64)


for key in decompositions:
    mi, kl = stacked(key, "mutual_information").mean(0), stacked(key, "marginal_kl").mean(0)
    print(f"{bozkurt2021.ARCHITECTURE_LABELS[key[0]]:>12} {key[1]:>9}: MI " + " ".join(f"{v:5.2f}" for v in mi))
    print(f"{'':>12} {'':>9}  KL " + " ".join(f"{v:5.2f}" for v in kl))
print(f"log N_train = log {num_train:,} = {log_n:.2f} nats; log B = log {S.mi_batch_size} = {math.log(S.mi_batch_size):.2f}")

# %% [markdown]
# ## Figure 8

# %%
fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.2), sharey=True)
for ax, architecture in zip(axes, ("mlp1", "mlp3")):
    for estimator, style in (("minibatch", "-"), ("full", "--")):
        key = (architecture, estimator)
        for field, color, name in (("mutual_information", "tab:blue", "I_q[x; z]"),
                                   ("marginal_kl", "tab:red", "KL(q(z) || p(z))")):
            values = stacked(key, field)
            ax.errorbar(S.betas, values.mean(0), yerr=values.std(0, ddof=1) if len(values) > 1 else None,
                        color=color, linestyle=style, marker="o", markersize=3, linewidth=1.1, capsize=0,
                        label=f"{name}, {estimator}")
    rate = stacked((architecture, "full"), "rate").mean(0)
    ax.plot(S.betas, rate, color="0.3", linewidth=0.9, linestyle=":", label="rate R (analytic)")
    ax.axhline(log_n, color="0.5", linewidth=0.8)
    ax.annotate(f"log N_train = {log_n:.2f}", (S.betas[0], log_n), xytext=(2, 3), textcoords="offset points", fontsize=7,
                color="0.35")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.axvline(1.0, color="0.85", linewidth=0.8, zorder=0)
    ax.set_xlabel("β")
    ax.set_title(f"{bozkurt2021.ARCHITECTURE_LABELS[architecture]}, {split.label}, training set", loc="left")
axes[0].set_ylabel("nats")
axes[0].legend(loc="lower left", fontsize=6.5)
fig.suptitle("Bozkurt et al. 2021, Fig. 8: rate = mutual information + marginal KL (mean ± sd over restarts)",
             fontsize=9)
fig.tight_layout()
run.savefig(fig)
plt.show()

# %% [markdown]
# ## Does bfloat16 training move the RD points?
#
# The same sweep (restart 0) trained in float32, evaluated on the same points, against the
# bfloat16 sweep; the yardstick is the spread between restarts of the bfloat16 sweeps.

# %%
bf16_runs = [bozkurt2021.run_sweep(spec, split) for spec in S.curves[S.bf16_check_architecture]]
float32_run = bozkurt2021.run_sweep(S.float32_check, split)
bf16_curve = bozkurt2021.Curve.from_runs(bf16_runs)
precision_check = {}
for part in ("train", "test"):
    for metric in ("rate", "distortion"):
        difference = np.abs(np.asarray(float32_run[part][metric]) - np.asarray(bf16_runs[0][part][metric]))
        precision_check[f"{part}_{metric}"] = {
            "max_abs_difference": float(difference.max()),
            "median_restart_sd": float(np.median(bf16_curve.sd(part, metric))),
        }
# The verdicts that depend on this sweep's curve shape (fig03's U/L test), for one restart of each
# precision, with the bfloat16 restarts' sd as the noise yardstick.
noise = bf16_curve.sd("test", "distortion")
shape_bf16 = minimum_shape(S.betas, bf16_runs[0]["test"]["distortion"], noise)
shape_float32 = minimum_shape(S.betas, float32_run["test"]["distortion"], noise)
verdicts = {name: {"u_shaped": is_u_shaped(shape, SD_MARGIN), "l_shaped": is_l_shaped(shape, SD_MARGIN),
                   "argmin_beta": shape["argmin_beta"]}
            for name, shape in (("bfloat16", shape_bf16), ("float32", shape_float32))}
largest = {name: {part: (np.abs(np.asarray(float32_run[part][name]) - np.asarray(bf16_runs[0][part][name]))
                         / np.asarray(float32_run[part][name])).max() for part in ("train", "test")}
           for name in ("rate", "distortion")}
for name, values in precision_check.items():
    print(f"{name:>16}: max |float32 - bfloat16| = {values['max_abs_difference']:.2f} nats, "
          f"restart sd (median over β) = {values['median_restart_sd']:.2f}")
print(f"test-distortion minimum at β = {shape_bf16['argmin_beta']:g} (bfloat16) vs {shape_float32['argmin_beta']:g} (float32); "
      f"verdicts {verdicts}")
print(f"largest relative change: {largest}")
print(f"training time as measured (machine shared, not a speed comparison): bfloat16 {bf16_runs[0]['train_seconds']:.0f} s, "
      f"float32 {float32_run['train_seconds']:.0f} s")

# %% [markdown]
# ## Claims

# %%
claims = []
betas = np.asarray(S.betas)
for estimator in ("minibatch", "full"):
    for arch in ("mlp1", "mlp3"):
        values = stacked((arch, estimator), "mutual_information").mean(0)
        small_beta = betas <= 0.1
        saturated = saturates_then_falls(betas, values, log_n, SATURATION_FRACTION, small_beta=0.1)
        claims.append(Claim(
            id=f"fig8_mi_saturates_at_log_n_{estimator}_{arch}", paper="bozkurt2021", figure="Fig. 8",
            statement=f"{bozkurt2021.ARCHITECTURE_LABELS[arch]}: I_q[x; z] ({estimator} estimator) rises to ≈ log N_train as β falls "
                      "and saturates there",
            reported=f"saturates at log N_train = {log_n:.2f}",
            measured={"mi_at_small_beta": values[small_beta].round(3).tolist(), "mi_at_beta_1": round(float(values[betas == 1.0][0]), 3),
                      "mi_at_beta_5": round(float(values[-1]), 3)},
            tolerance=f"MI >= {SATURATION_FRACTION:.0%} of log N at every β <= 0.1, and MI(β=5) < MI(β=1)",
            holds=saturated,
            note=None if saturated else (
                f"MI/log N at β <= 0.1 is {values[small_beta].min() / log_n:.2f}-{values[small_beta].max() / log_n:.2f}. "
                "This network is still on the initial plateau of fig03's notes: after the cpu budget its small-β "
                "posteriors still overlap, so the encoder does not yet tell the 16,384 images apart."),
        ))
kl = {arch: stacked((arch, "minibatch"), "marginal_kl").mean(0) for arch in ("mlp1", "mlp3")}
rate = {arch: stacked((arch, "minibatch"), "rate").mean(0) for arch in ("mlp1", "mlp3")}
large_beta = betas > 1
claims.append(Claim(
    id="fig8_marginal_kl_small_above_1_rising_below", paper="bozkurt2021", figure="Fig. 8",
    statement="The marginal KL is small for β > 1 and rises as β falls below 1",
    reported="small for β > 1, increasing as β decreases",
    measured={arch: {"kl": values.round(2).tolist(), "kl_over_rate_beta_gt_1": (values[large_beta] / rate[arch][large_beta]).round(3).tolist()}
              for arch, values in kl.items()},
    tolerance=f"KL <= {SMALL_KL_FRACTION:.0%} of R at every β > 1, and KL(0.001) > KL(0.1) > KL(1), both architectures",
    holds=all(share_at_most(betas, values, rate[arch], SMALL_KL_FRACTION, above=1.0)
              and falls_as_beta_rises(betas, values, (0.001, 0.1, 1.0)) for arch, values in kl.items()),
    note="KL/R at β = " + ", ".join(f"{beta:g}" for beta in betas[large_beta]) + ": "
         + "; ".join(f"{bozkurt2021.ARCHITECTURE_LABELS[arch]} " + ", ".join(f"{ratio:.2f}" for ratio in values[large_beta] / rate[arch][large_beta])
                     for arch, values in kl.items())
         + ". The rise as β falls is the paper's; 'small' is a judgement on a figure, and our 25% line was fixed before the run. "
         + ("Where the line is crossed, it is by the 1-layer MLP at the smallest β > 1: our reading is that its single hidden layer "
            "(and 640 steps) leaves the aggregate posterior q(z) further from the prior than the 3-layer encoder does; "
            "whether that shrinks with the paper's training length is not tested here."
            if np.all(kl["mlp3"][large_beta] <= SMALL_KL_FRACTION * rate["mlp3"][large_beta])
            and not np.all(kl["mlp1"][large_beta] <= SMALL_KL_FRACTION * rate["mlp1"][large_beta]) else ""),
))
worst = worst_noise_ratio([values["max_abs_difference"] for values in precision_check.values()],
                          [values["median_restart_sd"] for values in precision_check.values()])
claims.append(Claim(
    id="bfloat16_rd_points_within_restart_spread", paper="vaegen", figure="precision check (cpu-profile lever)",
    statement="Training in bfloat16 autocast moves the RD points by less than the spread between restarts",
    reported="no change beyond restart noise", measured={"per_quantity": precision_check, "worst_ratio": worst,
                                                         "largest_relative_change": {k: {p: float(v) for p, v in d.items()} for k, d in largest.items()}},
    tolerance=f"max |float32 - bfloat16| <= {PRECISION_SD_TOLERANCE:g} x the median restart sd, for R and D on train and test",
    holds=bool(worst <= PRECISION_SD_TOLERANCE),
    note="One float32 sweep (restart 0) against the bfloat16 sweeps; the restart sd comes from the bfloat16 restarts. "
         + ("" if worst <= PRECISION_SD_TOLERANCE else
            f"bfloat16 shifts points by up to {worst:.0f}x the restart sd, i.e. by at most "
            f"{100 * max(max(d.values()) for d in largest.values()):.1f}% of R or D. Our reading: two restarts (other "
            "initial weights, noise and batch order, same 16,384 images) land within a fraction of a nat of each other, "
            "so their sd is a very strict yardstick; what matters for the claims is the verdict check below."),
))
claims.append(Claim(
    id="bfloat16_claim_verdicts_unchanged", paper="vaegen", figure="precision check (cpu-profile lever)",
    statement="Training in bfloat16 autocast does not change the verdicts of the shape claims on this sweep",
    reported="same verdicts", measured=verdicts,
    tolerance=f"U-shaped and L-shaped verdicts (fig03's tests, {SD_MARGIN:g} restart sd) equal for float32 and bfloat16",
    holds=bool(verdicts["bfloat16"]["u_shaped"] == verdicts["float32"]["u_shaped"]
               and verdicts["bfloat16"]["l_shaped"] == verdicts["float32"]["l_shaped"]),
))

# %% [markdown]
# ## Results

# %%
run.finish(
    config=S.to_dict() | {"sd_margin": SD_MARGIN, "saturation_fraction": SATURATION_FRACTION,
                          "small_kl_fraction": SMALL_KL_FRACTION, "precision_sd_tolerance": PRECISION_SD_TOLERANCE,
                          "split_spec": split.spec()},
    metrics={"num_train": num_train, "log_num_train": log_n, "log_batch_size": math.log(S.mi_batch_size),
             "decompositions": {f"{a} {e}": runs for (a, e), runs in decompositions.items()},
             "bfloat16_check": {"float32": float32_run, "bfloat16": bf16_runs[0], "summary": precision_check}},
    claims=claims,
)
# Sanity: both estimators can never exceed log N (tested), and MI + KL equals the sampled rate.
for key, group in decompositions.items():
    for decomposition in group:
        assert np.all(np.asarray(decomposition["mutual_information"]) <= log_n + 1e-6), f"{key}: MI above log N"
        total = np.asarray(decomposition["mutual_information"]) + np.asarray(decomposition["marginal_kl"])
        assert np.allclose(total, decomposition["rate_sampled"], atol=1e-6), f"{key}: MI + KL != sampled rate"

# %% [markdown]
# ## What was reduced, and why
#
# - **The sweeps** are those of `bozkurt2021_fig03_rd_curves`, read from the cache: 8 of the
#   paper's 12 β ({0.001, 0.01, 0.1, 0.3, 0.5, 1, 2, 5}), 640 Adam steps (5 epochs) for the 1-layer
#   MLP and 1,024 (8 epochs) for the 3-layer MLP in the cpu profile (paper 257,000), 2 restarts
#   (paper 5).
# - **The full-data estimator** evaluates log q(z) for 1,024 sampled training points against all
#   16,384 mixture components (the paper profile uses every point); the minibatch estimator uses all
#   points in batches of 512, as the paper did.
# - **The bfloat16 check** trains one extra sweep (1-layer MLP, restart 0) in float32 (64 s of
#   training on 2 idle cores).
#
# Runtime in the cpu profile: 123 s on 2 idle cores, first run after fig03 (its sweeps cached).
# MI numbers are always read against their ceiling log N_train = 9.70 nats (16,384 points): an
# estimate at the ceiling means the posteriors of different training points no longer overlap,
# not that more information could not be encoded.
#
# ## What this shows (cpu profile)
#
# Five of the seven claims hold (8 β, seed 0, 2 restarts):
#
# - For both networks and both estimators I_q[x; z] is at log N_train = 9.70 nats (9.68-9.70) for
#   every β ≤ 0.1 and falls for β > 1, as in the paper (the four saturation claims hold). For the
#   1-layer MLP it is still 6.4-7.0 nats at β = 5; the 3-layer MLP, past its plateau after 1,024
#   steps, lets it fall faster (7.8-8.7 nats at β = 1, 2.6-2.7 at β = 5). Once MI has saturated
#   the rate keeps growing, so everything the rate adds at small β is marginal KL (1-layer: from
#   ~11 nats at β = 1 to ~104 at β = 0.001).
# - The marginal KL rises steadily as β falls (the paper's trend) for both networks, but at β = 2
#   it is still 38% of the 1-layer MLP's rate (16% at β = 5), above the 25% we fixed as "small"
#   before the run; for the 3-layer MLP it is 2% and 6%. The claim fails on the 1-layer MLP.
# - The minibatch estimate of I_q is never below the full-data one (to 0.01 nats) and at most
#   ~0.9 nats above it (3-layer MLP at β = 1), largest where the MI is below its ceiling (β ≥ 0.5):
#   the mean over 511 batch neighbours is unbiased for the mixture's other components, but its
#   logarithm is biased low (Jensen), which raises the MI.
# - bfloat16 shifts R and D by up to 2.5% (up to 8 median restart sd's: the two restarts share
#   data and land very close together), so the "within restart spread" claim fails; the verdicts
#   of the shape claims are the same in float32 (L-shaped in both; the float32 minimum is at
#   β = 0.01 instead of 0.001, 0.35 nats lower, within 2 restart sd).
