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
SEED = 0  # seeds the estimators' batches and samples
PAPER_BETAS = [0.001, 0.005, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 2.0, 3.0, 5.0]  # paper C, footnote 2
# One ensemble member per β; smoke keeps 3 values so that a sweep costs a fraction of a second.
# cpu: 8 of the 12 β (a sweep step costs about the same per member, so this cuts every sweep by a third);
# it keeps both ends, 0.1 and its grid neighbours, β = 1 and two β > 1. The paper profile runs all 12.
CPU_BETAS = [0.001, 0.01, 0.1, 0.3, 0.5, 1.0, 2.0, 5.0]  # the cpu grid (see above)
BETAS_BY_PROFILE = {"smoke": [0.001, 1.0, 5.0], "cpu": CPU_BETAS, "paper": PAPER_BETAS}  # β of each sweep ensemble
SPLIT = "cv-16k"  # CV(16k/147k), the split of paper C's Fig. 8
PRECISION = "bfloat16"  # training precision of the sweeps (as in fig03, whose cached sweeps are reused)
# Adam steps per sweep, = fig03's so that its sweeps are reused: 1-layer MLP 640, 3-layer MLP 1,024
# (the 3-layer MLP needs ~600-1,000 steps to leave its initial plateau; paper: 257k for both).
ITERATIONS_BY_PROFILE = {"smoke": 2, "cpu": 640, "paper": 257_000}  # 1-layer MLP
MLP3_ITERATIONS_BY_PROFILE = {"smoke": 2, "cpu": 1024, "paper": 257_000}  # 3-layer MLP (fig03's SPARSE_MLP3_ITERATIONS)
RESTARTS_BY_PROFILE = {"smoke": 1, "cpu": 2, "paper": 5}  # = fig03's CV(16k/147k) restarts
MAX_TRAIN_BY_PROFILE = {"smoke": 256, "cpu": None, "paper": None}  # = fig03's
EVAL_POINTS_BY_PROFILE = {"smoke": 128, "cpu": 2000, "paper": 20_000}  # = fig03's
MI_BATCH_SIZE_BY_PROFILE = {"smoke": 64, "cpu": 512, "paper": 512}  # minibatch estimator's B (paper: 512)
# Points whose log q(z) the full-data estimator evaluates against all N components (cost queries x N).
FULL_QUERIES_BY_PROFILE = {"smoke": 128, "cpu": 1024, "paper": 16_384}
BF16_CHECK_ARCHITECTURE = "mlp1"  # the sweep retrained in float32 for the bfloat16 check
SATURATION_FRACTION = 0.95  # "MI saturates at log N": MI >= 95% of log N_train at every β <= 0.1
SMALL_KL_FRACTION = 0.25  # "marginal KL small for β > 1": at most 25% of the rate there

# %% [markdown]
# ## Setup

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

from vaegen_utils import bozkurt2021
from vaegen_utils.claims import is_l_shaped, is_u_shaped, minimum_shape
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
MLP3_ITERATIONS = by_profile(PROFILE, MLP3_ITERATIONS_BY_PROFILE)
RESTARTS = by_profile(PROFILE, RESTARTS_BY_PROFILE)
MAX_TRAIN = by_profile(PROFILE, MAX_TRAIN_BY_PROFILE)
EVAL_POINTS = by_profile(PROFILE, EVAL_POINTS_BY_PROFILE)
MI_BATCH_SIZE = by_profile(PROFILE, MI_BATCH_SIZE_BY_PROFILE)
FULL_QUERIES = by_profile(PROFILE, FULL_QUERIES_BY_PROFILE)

data = tetrominoes.load_tetrominoes()
split = bozkurt2021.tetromino_split(data, SPLIT)


def specs(architecture, precision=PRECISION, restarts=RESTARTS):
    iterations = MLP3_ITERATIONS if architecture == "mlp3" else ITERATIONS
    return [bozkurt2021.SweepSpec(architecture, iterations, restart=restart, precision=precision, betas=tuple(BETAS),
                        eval_points=EVAL_POINTS, max_train=MAX_TRAIN) for restart in range(restarts)]


# %% [markdown]
# ## I_q[x; z] and KL(q(z) || p(z)) of every member, with both estimators

# %%
decompositions = {}  # (architecture, estimator) -> list over restarts of RateDecomposition dicts
for architecture in ("mlp1", "mlp3"):
    for spec in specs(architecture):
        bozkurt2021.run_sweep(spec, split)  # trains the sweep if fig03 has not (same spec, same cache entry)
        decompositions.setdefault((architecture, "minibatch"), []).append(
            bozkurt2021.sweep_rate_decomposition(spec, split, estimator="minibatch", batch_size=MI_BATCH_SIZE, seed=SEED))
        decompositions.setdefault((architecture, "full"), []).append(
            bozkurt2021.sweep_rate_decomposition(spec, split, estimator="full", max_queries=FULL_QUERIES, seed=SEED))
num_train = decompositions[("mlp1", "full")][0]["num_data"]
log_n = math.log(num_train)


def stacked(key, field):
    """(restarts, β) array of one field of the decompositions."""
    return np.array([run[field] for run in decompositions[key]], dtype=np.float64)


for key in decompositions:
    mi, kl = stacked(key, "mutual_information").mean(0), stacked(key, "marginal_kl").mean(0)
    print(f"{bozkurt2021.ARCHITECTURE_LABELS[key[0]]:>12} {key[1]:>9}: MI " + " ".join(f"{v:5.2f}" for v in mi))
    print(f"{'':>12} {'':>9}  KL " + " ".join(f"{v:5.2f}" for v in kl))
print(f"log N_train = log {num_train:,} = {log_n:.2f} nats; log B = log {MI_BATCH_SIZE} = {math.log(MI_BATCH_SIZE):.2f}")

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
            ax.errorbar(BETAS, values.mean(0), yerr=values.std(0, ddof=1) if len(values) > 1 else None,
                        color=color, linestyle=style, marker="o", markersize=3, linewidth=1.1, capsize=0,
                        label=f"{name}, {estimator}")
    rate = stacked((architecture, "full"), "rate").mean(0)
    ax.plot(BETAS, rate, color="0.3", linewidth=0.9, linestyle=":", label="rate R (analytic)")
    ax.axhline(log_n, color="0.5", linewidth=0.8)
    ax.annotate(f"log N_train = {log_n:.2f}", (BETAS[0], log_n), xytext=(2, 3), textcoords="offset points", fontsize=7,
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
savefig(fig, "bozkurt2021_fig08_mutual_information", profile=PROFILE)
plt.show()

# %% [markdown]
# ## Does bfloat16 training move the RD points?
#
# The same sweep (restart 0) trained in float32, evaluated on the same points, against the
# bfloat16 sweep; the yardstick is the spread between restarts of the bfloat16 sweeps.

# %%
bf16_runs = [bozkurt2021.run_sweep(spec, split) for spec in specs(BF16_CHECK_ARCHITECTURE)]
float32_run = bozkurt2021.run_sweep(specs(BF16_CHECK_ARCHITECTURE, precision="float32", restarts=1)[0], split)
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
shape_bf16 = minimum_shape(BETAS, bf16_runs[0]["test"]["distortion"], noise)
shape_float32 = minimum_shape(BETAS, float32_run["test"]["distortion"], noise)
verdicts = {name: {"u_shaped": is_u_shaped(shape, 2.0), "l_shaped": is_l_shaped(shape, 2.0),
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
betas = np.asarray(BETAS)
for estimator in ("minibatch", "full"):
    for arch in ("mlp1", "mlp3"):
        values = stacked((arch, estimator), "mutual_information").mean(0)
        small_beta = betas <= 0.1
        saturated = bool(np.all(values[small_beta] >= SATURATION_FRACTION * log_n) and values[-1] < values[betas == 1.0][0])
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
    holds=bool(all(np.all(values[large_beta] <= SMALL_KL_FRACTION * rate[arch][large_beta])
                   and values[betas == 0.001][0] > values[betas == 0.1][0] > values[betas == 1.0][0]
                   for arch, values in kl.items())) if {0.001, 0.1, 1.0} <= set(BETAS) else False,
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
worst = max(values["max_abs_difference"] / max(values["median_restart_sd"], 1e-9) for values in precision_check.values())
claims.append(Claim(
    id="bfloat16_rd_points_within_restart_spread", paper="vaegen", figure="precision check (cpu-profile lever)",
    statement="Training in bfloat16 autocast moves the RD points by less than the spread between restarts",
    reported="no change beyond restart noise", measured={"per_quantity": precision_check, "worst_ratio": worst,
                                                         "largest_relative_change": {k: {p: float(v) for p, v in d.items()} for k, d in largest.items()}},
    tolerance="max |float32 - bfloat16| <= 2 x the median restart sd, for R and D on train and test",
    holds=bool(worst <= 2.0),
    note="One float32 sweep (restart 0) against the bfloat16 sweeps; the restart sd comes from the bfloat16 restarts. "
         + ("" if worst <= 2.0 else
            f"bfloat16 shifts points by up to {worst:.0f}x the restart sd, i.e. by at most "
            f"{100 * max(max(d.values()) for d in largest.values()):.1f}% of R or D. Our reading: two restarts (other "
            "initial weights, noise and batch order, same 16,384 images) land within a fraction of a nat of each other, "
            "so their sd is a very strict yardstick; what matters for the claims is the verdict check below."),
))
claims.append(Claim(
    id="bfloat16_claim_verdicts_unchanged", paper="vaegen", figure="precision check (cpu-profile lever)",
    statement="Training in bfloat16 autocast does not change the verdicts of the shape claims on this sweep",
    reported="same verdicts", measured=verdicts,
    tolerance="U-shaped and L-shaped verdicts (fig03's tests, 2 restart sd) equal for float32 and bfloat16",
    holds=bool(verdicts["bfloat16"]["u_shaped"] == verdicts["float32"]["u_shaped"]
               and verdicts["bfloat16"]["l_shaped"] == verdicts["float32"]["l_shaped"]),
))

# %% [markdown]
# ## Results

# %%
path = write_results(
    "bozkurt2021_fig08_mutual_information",
    profile=PROFILE,
    seed=SEED,
    config={"profile": PROFILE, "betas": BETAS, "split": SPLIT, "iterations": ITERATIONS, "mlp3_iterations": MLP3_ITERATIONS, "restarts": RESTARTS,
            "precision": PRECISION, "max_train": MAX_TRAIN, "eval_points": EVAL_POINTS, "mi_batch_size": MI_BATCH_SIZE,
            "full_queries": FULL_QUERIES, "bf16_check_architecture": BF16_CHECK_ARCHITECTURE, "split_spec": split.spec()},
    metrics={"num_train": num_train, "log_num_train": log_n, "log_batch_size": math.log(MI_BATCH_SIZE),
             "decompositions": {f"{a} {e}": runs for (a, e), runs in decompositions.items()},
             "bfloat16_check": {"float32": float32_run, "bfloat16": bf16_runs[0], "summary": precision_check}},
    claims=claims,
    runtime_s=stopwatch.elapsed(),
)
print(f"wrote {path}")
for claim in claims:
    print(f"{'holds' if claim.holds else 'FAILS'}  {claim.statement}")
# Sanity: both estimators can never exceed log N (tested), and MI + KL equals the sampled rate.
for key, group in decompositions.items():
    for run in group:
        assert np.all(np.asarray(run["mutual_information"]) <= log_n + 1e-6), f"{key}: MI above log N"
        total = np.asarray(run["mutual_information"]) + np.asarray(run["marginal_kl"])
        assert np.allclose(total, run["rate_sampled"], atol=1e-6), f"{key}: MI + KL != sampled rate"

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
