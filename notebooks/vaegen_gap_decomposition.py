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
# # One footing for three papers: where a VAE's test ELBO goes
#
# Each of the three papers measures one slice of why a VAE's test ELBO is worse than its train ELBO:
# paper B (Zhang et al. 2022) the **inference generalization gap** of the amortized encoder and a
# fix for it (self-consistent encoder training); paper A (Xiao et al. 2024) the **generalization gap**
# G_g and the **amortization gap** G_a, and a fix for both (DMaaPx: train on diffusion-model samples);
# paper C (Bozkurt et al. 2021) how the rate weight **β < 1** moves the test bound. Here all of them
# are measured one way: binary MNIST (fixed threshold), paper B's MLP (2 hidden layers of 500, z = 10,
# Bernoulli), the same 1000 training images, the same 3 seeds, the same 160 epochs and the same
# estimators. Five methods, each measured at the final epoch:
#
# | method | what changes | from |
# |---|---|---|
# | Normal training | nothing (paper B's base run; the cached `zhang2022_*` models) | — |
# | β = 0.1 | D + β R with β = 0.1 instead of 1 | paper C: best test bound near β = 0.1 (sparse data, 3-layer MLP) |
# | Self-consistent | the normal run's encoder retrained on ½ p_θ(x) + ½ p_data(x), decoder frozen | paper B, eq. 16 |
# | DMaaPx | every effective epoch a fresh block of 1000 diffusion-model samples (k = 10 blocks, cycled) | paper A, Algorithm 2 |
# | Aug.Naive | StyleGAN2-ADA augmentations with p = 0.1 | paper A, Table 8 |
#
# **Definitions** (nats per image; seed means ± sd). Train and test ELBO of the amortized encoder q_φ
# on all 1000 training and 1000 test images give G_g = ELBO(train) − ELBO(test) (paper A Eq. 3). The
# rest is measured on the first `N_POINTS` training and test images (cpu: 100), because IWAE with
# K = 1000 and a per-image q* fit are too expensive for all of them:
#
# - log p̂(x) = IWAE_K with the per-point optimal Gaussian q* as proposal (Cremer et al. 2018's estimate
#   of log p(x)); the IWAE with q_φ as proposal is reported too (for an overfit encoder it is far looser);
# - ELBO(retrained): the encoder retrained on the **test** set with the decoder frozen (paper B eq. 12).
#   It is fit on the very images it is scored on, so it is an upper reference for any encoder, not a
#   method one could deploy;
# - ELBO(q*): a free Gaussian per image, fitted by Adam (started from the retrained encoder's output),
#   so ELBO(q*) ≥ ELBO(retrained) ≥ ELBO(q_φ) in expectation.
#
# From these, per seed: **model gap** = log p̂(train) − log p̂(test) (the decoder overfits);
# **inference generalization gap** = ELBO(retrained) − ELBO(q_φ) on test (paper B eq. 11);
# **amortization gap** = ELBO(q*) − ELBO(q_φ) on test (paper A Eq. 4), which is the inference
# generalization gap plus the **residual amortization gap** ELBO(q*) − ELBO(retrained); and the
# **remaining variational gap** = log p̂(test) − ELBO(q*) (Cremer's approximation gap: the Gaussian
# family itself). The four stacked parts add up exactly to log p̂(train) − ELBO_test(q_φ).
#
# **Runtime (cpu).** Trains three new seed ensembles (β, DMaaPx, Aug.Naive; 3 seeds × 160 epochs × 1000
# images each) and reuses paper B's cached normal and self-consistent models and the xiao2024 sample
# bank. First run: 1028 s on 2 cores shared with other jobs (load average 6–8; 349 s of CPU time);
# a rerun reads everything from the cache (notebooks/README.md).

# %% tags=["parameters"]
from vaegen_utils.profiles import current_profile

PROFILE = current_profile()  # smoke | cpu | paper: env VAEGEN_PROFILE (default cpu) or papermill -p PROFILE
# Sizes per profile are decomposition.setup's (the base run and retraining are zhang2022's named runs,
# so the zhang2022 notebooks' cached models are reused; the bank is xiao2024's). Overrides: None keeps the profile's value.
EPOCHS = None  # (effective) training epochs of every method; the measurement is at the last
SEEDS = None  # one model per seed, the same seeds for every method
N_POINTS = None  # training and test images with IWAE, q* and the subset ELBOs
IWAE_SAMPLES = None  # K of IWAE_K (Burda et al. 2016)
BETA = 0.1  # bozkurt2021 Fig. 3: the test L_{beta=1} and log p(x) peak at beta = 0.1 (CV(16k/147k), 3-layer MLP)
ALPHA = 0.5  # zhang2022 eq. 16: fraction of model samples in the self-consistent encoder's data (paper: 0.5)
BANK_STAGE = "final"  # shipped diffusion checkpoint of DMaaPx (xiao2024 Algorithm 2): "final" (step 3000) or "early" (step 750)
AUGMENT_P = 0.1  # Aug.Naive: probability of each operation (xiao2024: 0.1 or 0.12; as the xiao2024 notebooks)
EVAL_SEED = 0  # noise of every ELBO and IWAE (one seed: common random numbers across encoders)

# %% [markdown]
# ## Setup

# %%
import matplotlib.pyplot as plt
import numpy as np

from vaegen_utils import decomposition, notebook
from vaegen_utils.claims import mean_sd
from vaegen_utils.figures import output_dir
from vaegen_utils.io import atomic_write_text
from vaegen_utils.results import Claim

SETUP = decomposition.setup(PROFILE, epochs=EPOCHS, seeds=SEEDS, n_points=N_POINTS, iwae_samples=IWAE_SAMPLES, beta=BETA,
                            alpha=ALPHA, stage=BANK_STAGE, augment_p=AUGMENT_P, eval_seed=EVAL_SEED)
BASE, SEEDS = SETUP.base, list(SETUP.base.seeds)
run = notebook.start("vaegen_gap_decomposition", PROFILE, seed=SEEDS[0])
METHODS = list(decomposition.METHODS)
LABELS = {method: SETUP.label(method) for method in METHODS}
N_POINTS = SETUP.fit.n_points
print(SETUP)

# %% [markdown]
# ## Train (or load) every method and measure it
#
# Normal training and the self-consistent encoder come from the zhang2022 cache; β, DMaaPx and
# Aug.Naive train here once (DMaaPx reads the diffusion sample bank shared with the xiao2024 notebooks).

# %%
measured = decomposition.measure_all(SETUP, METHODS)  # trains / retrains / fits what is missing, then cached
seconds = decomposition.training_seconds(SETUP)
summary = decomposition.summary(measured)
print("training time when each run was trained (all seeds together; reruns load the cache):",
      {LABELS[m]: round(s) for m, s in seconds.items()})
for method in METHODS:
    row = measured[method]
    print(f"{LABELS[method]:>16}: q* fits stopped by the plateau rule: train {np.mean(row['fraction_converged_train']):.0%}, "
          f"test {np.mean(row['fraction_converged_test']):.0%} (mean steps {np.mean(row['mean_steps_test']):.0f})")

# %% [markdown]
# ## The table

# %%
levels_table = decomposition.markdown_table(summary, LABELS, decomposition.TABLE_LEVELS)
gaps_table = decomposition.markdown_table(summary, LABELS, decomposition.TABLE_GAPS)
delta = {  # each gap of each method minus normal training's, per seed (same seeds: paired)
    method: {name: [a - b for a, b in zip(summary[method][name]["per_seed"], summary["normal"][name]["per_seed"])]
             for name in decomposition.TABLE_GAPS}
    for method in METHODS if method != "normal"
}
delta_summary = {method: {name: dict(zip(("mean", "sd"), mean_sd(values))) for name, values in rows.items()}
                 for method, rows in delta.items()}
delta_table = decomposition.markdown_table(delta_summary, LABELS, decomposition.TABLE_GAPS)
closes = {name: decomposition.smallest(summary, name) for name in decomposition.TABLE_GAPS}
closes_text = "\n".join(
    f"- {decomposition.TABLE_HEADERS[name]}: smallest with **{LABELS[method]}** "
    f"({summary[method][name]['mean']:.2f} nats vs normal training's {summary['normal'][name]['mean']:.2f})"
    for name, method in closes.items()
)
table_text = (
    f"# Gap decomposition ({PROFILE} profile)\n\n"
    f"Binary MNIST, paper B's MLP, {SETUP.n_train} training images, seeds {list(SEEDS)}, epoch {SETUP.epoch}; "
    f"nats per image, mean ± sd over seeds. Train/test ELBO and G_g: all {SETUP.n_train} training and "
    f"{BASE.n_test} test images ({SETUP.elbo_samples}-sample ELBO); every other column: the first {N_POINTS} "
    f"training/test images ({SETUP.fit.eval_samples}-sample ELBOs, IWAE K = {SETUP.iwae_samples}).\n\n"
    f"## Levels (higher is better)\n\n{levels_table}\n"
    f"## Gaps (lower is better)\n\n{gaps_table}\n"
    f"## Change of each gap against normal training (paired by seed; negative = the method closes it)\n\n{delta_table}\n"
    f"## Which method closes which gap\n\n{closes_text}\n"
)
table_path = output_dir(PROFILE) / "vaegen_gap_decomposition.md"
atomic_write_text(table_path, table_text)
print(table_text)
print(f"wrote {table_path}")

# %% [markdown]
# ## Figure: the stacked decomposition

# %%
STACK_COLORS = {
    "model_gap": "tab:red",
    "remaining_variational_gap": "tab:gray",
    "residual_amortization_gap": "tab:orange",
    "inference_generalization_gap": "tab:purple",
}
TICKS = [LABELS[method].replace("Self-consistent", "Self-\nconsistent").replace("Normal training", "Normal\ntraining")
         for method in METHODS]
fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 4.2), gridspec_kw={"width_ratios": [1.15, 1.0]})
x = np.arange(len(METHODS))
up, down = np.zeros(len(METHODS)), np.zeros(len(METHODS))
for name in decomposition.STACK:
    heights = np.array([summary[method][name]["mean"] for method in METHODS])
    bottoms = np.where(heights >= 0, up, down)
    left.bar(x, heights, 0.6, bottom=bottoms, color=STACK_COLORS[name], label=decomposition.GAP_LABELS[name])
    for position, height, bottom in zip(x, heights, bottoms):
        if abs(height) >= 8:  # label the segments that are tall enough to hold a number
            left.text(position, bottom + height / 2, f"{height:.0f}", ha="center", va="center", fontsize=7, color="white")
    up, down = up + np.clip(heights, 0, None), down + np.clip(heights, None, 0)
total = np.array([summary[method]["total"]["mean"] for method in METHODS])
total_sd = np.array([summary[method]["total"]["sd"] for method in METHODS])
left.errorbar(x, total, yerr=total_sd, fmt="_", color="black", markersize=12, capsize=3, linewidth=0.8,
              label="total: sum of the four (seed mean ± sd)")
g_g = np.array([summary[method]["generalization_gap"]["mean"] for method in METHODS])
left.plot(x + 0.4, g_g, "D", color="black", markersize=5, label="G_g = ELBO(train) − ELBO(test), all images (paper A)")
left.axhline(0, color="black", linewidth=0.6)
left.set_xticks(x, TICKS)
left.set_ylabel("nats per image")
left.set_title(f"(a) log p̂(train) − ELBO_test(q_φ), split into four gaps\n(first {N_POINTS} train/test images, seed means)", loc="left", fontsize=9)
left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7)

LEVEL_STYLES = [  # (level, marker, color, label)
    ("train_log_p", "^", "tab:red", "log p̂(train) (IWAE, q* proposal)"),
    ("test_log_p", "v", "tab:red", "log p̂(test)"),
    ("test_elbo_optimal", "s", "tab:orange", "test ELBO, per-point q*"),
    ("test_elbo_retrained", "o", "tab:purple", "test ELBO, encoder retrained on test"),
    ("test_elbo", "x", "black", "test ELBO, amortized q_φ"),
    ("test_iwae_amortized", "+", "tab:blue", "test IWAE, q_φ proposal"),
]
offsets = np.linspace(-0.25, 0.25, len(LEVEL_STYLES))
for offset, (name, marker, color, label) in zip(offsets, LEVEL_STYLES):
    means = [summary[method][name]["mean"] for method in METHODS]
    sds = [summary[method][name]["sd"] for method in METHODS]
    right.errorbar(x + offset, means, yerr=sds, fmt=marker, color=color, markersize=5, capsize=2, linewidth=0.8,
                   label=label, markerfacecolor="none" if marker in ("^", "v", "s", "o") else None)
right.set_xticks(x, TICKS)
right.set_ylabel("nats per image (higher is better)")
right.set_title(f"(b) the levels behind (a), first {N_POINTS} images", loc="left", fontsize=9)
right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7, ncol=2)
fig.suptitle(f"Binary MNIST VAE (paper B's MLP), {SETUP.n_train:,} training images, epoch {SETUP.epoch}, "
             f"mean over {len(SEEDS)} seeds", x=0.01, ha="left", fontsize=10)
fig.tight_layout()
run.savefig(fig)
plt.show()

# %% [markdown]
# ## Claims and results
#
# One claim per paper ordering, each tested on these five methods measured the same way. Methods
# share their seeds (model initialisation), so comparisons are paired by seed and a claim holds only
# when it holds for every seed.

# %%
def per_seed(method: str, name: str) -> np.ndarray:
    return np.array(summary[method][name]["per_seed"])


def rounded(values) -> list[float]:
    return [round(float(value), 3) for value in np.atleast_1d(values)]


def means(name: str, methods=METHODS) -> dict[str, float]:
    return {method: round(summary[method][name]["mean"], 3) for method in methods}


sc_gain = per_seed("self_consistent", "test_elbo_all") - per_seed("normal", "test_elbo_all")
sc_gap_change = per_seed("self_consistent", "inference_generalization_gap") - per_seed("normal", "inference_generalization_gap")
normal_inference, normal_model = per_seed("normal", "inference_generalization_gap"), per_seed("normal", "model_gap")
beta_gain = per_seed("beta", "test_elbo_all") - per_seed("normal", "test_elbo_all")
beta_model_change = per_seed("beta", "model_gap") - per_seed("normal", "model_gap")
paper_a = ("normal", "dmaapx", "aug_naive")
PAPER_A_NOTE = ("paper A: 60k images, 1000 epochs, its 1024-512-512-16 MLP on 32x32 images; here 1000 images, 160 epochs, "
                "paper B's MLP at 28x28 and a CPU-sized diffusion model, so absolute gaps differ; the ordering is the claim")


def dmaapx_smallest(name: str) -> bool:
    return bool(np.all(per_seed("dmaapx", name) < per_seed("normal", name))
                and np.all(per_seed("dmaapx", name) < per_seed("aug_naive", name)))


def mean_of(method: str, name: str) -> float:
    return summary[method][name]["mean"]


ordering = {  # ELBO(q*) >= ELBO(retrained) >= ELBO(q_phi) and log p >= ELBO(q*), seed means, test subset
    method: bool(summary[method]["test_elbo_optimal"]["mean"] >= summary[method]["test_elbo_retrained"]["mean"]
                 >= summary[method]["test_elbo"]["mean"]
                 and summary[method]["test_log_p"]["mean"] >= summary[method]["test_elbo_optimal"]["mean"])
    for method in METHODS
}
claims = [
    Claim(
        id="paper_b_self_consistent_improves_test_elbo",
        paper="vaegen",
        figure="decomposition",
        statement="Paper B (Fig. 2): self-consistent encoder training gives a higher test ELBO than normal training, i.e. a smaller inference generalization gap (same decoder)",
        reported="test BPD improves without test-time training (official binary MNIST compression, 60k images: 0.18543 -> 0.17891 bits/dim)",
        measured={"test_elbo_gain_nats": rounded(sc_gain), "inference_gap_change_nats": rounded(sc_gap_change),
                  "inference_gap": means("inference_generalization_gap", ("normal", "self_consistent"))},
        tolerance="test ELBO (all test images) higher in every seed, and the inference generalization gap smaller in every seed",
        holds=bool(np.all(sc_gain > 0) and np.all(sc_gap_change < 0)),
        note=(f"the self-consistent encoder sits on normal training's decoder, so only the inference generalization gap "
              f"can change; it closes {-np.mean(sc_gap_change) / mean_of('normal', 'inference_generalization_gap'):.0%} of it"),
    ),
    Claim(
        id="paper_b_inference_gap_dominates_model_gap",
        paper="vaegen",
        figure="decomposition",
        statement="Paper B (Fig. 1b): for normal training the inference generalization gap is larger than the model gap (overfitting is dominated by the encoder)",
        reported="overfitting is dominated by amortized inference; model overfitting is small",
        measured={"inference_generalization_gap": rounded(normal_inference), "model_gap": rounded(normal_model)},
        tolerance="inference generalization gap > model gap in every seed",
        holds=bool(np.all(normal_inference > normal_model)),
        note=(f"paper B weighs the encoder's gap against the model's overfitting over training (the rise of the "
              f"optimal-inference curve, 60k images; checked that way in zhang2022_fig1b_optimal_inference); the model gap "
              f"here is the train-test difference of log p̂ at the last epoch ({mean_of('normal', 'train_log_p'):.1f} vs "
              f"{mean_of('normal', 'test_log_p'):.1f} nats), which with 1000 training images is large for the decoder too"),
    ),
    Claim(
        id="paper_c_beta_improves_test_elbo",
        paper="vaegen",
        figure="decomposition",
        statement=f"Paper C (Fig. 3, sparse 3-layer case): training with beta = {BETA:g} gives a higher test ELBO (the beta = 1 bound) than beta = 1",
        reported="test L_{beta=1} peaks at beta = 0.1 (CV(16k/147k), 3-layer MLP, Tetrominoes)",
        measured={"test_elbo_gain_nats": rounded(beta_gain), "test_elbo": means("test_elbo_all", ("normal", "beta"))},
        tolerance="test ELBO (all test images) higher in every seed",
        holds=bool(np.all(beta_gain > 0)),
        note=(f"paper C's optimum is for Tetrominoes (sparse CV split, 3-layer 512-unit MLP, 257k iterations); here the "
              f"beta = {BETA:g} encoder, trained with a discounted KL, sits {mean_of('beta', 'inference_generalization_gap'):.0f} "
              f"nats below the ELBO of an encoder refit to its decoder on test (normal training: "
              f"{mean_of('normal', 'inference_generalization_gap'):.0f}), and its decoder's test log p̂ differs from normal "
              f"training's by {mean_of('beta', 'test_log_p') - mean_of('normal', 'test_log_p'):+.1f} nats"),
    ),
    Claim(
        id="paper_c_beta_reduces_model_gap",
        paper="vaegen",
        figure="decomposition",
        statement=f"Paper C (Fig. 3): with beta = {BETA:g} the generalization gap in log p(x) (our model gap) is smaller than with beta = 1",
        reported="the generalization gap in D and log p(x) is smallest at beta = 0.1",
        measured={"model_gap_change_nats": rounded(beta_model_change), "model_gap": means("model_gap", ("normal", "beta"))},
        tolerance="model gap smaller in every seed",
        holds=bool(np.all(beta_model_change < 0)),
        note=("paper C's log p(x) statement is for the sparse Tetrominoes split; 1000 binary-MNIST images with paper B's "
              "2-layer MLP are another regime (paper C itself finds an intermediate beta optimal only in some settings)"),
    ),
    Claim(
        id="paper_a_dmaapx_smallest_generalization_gap",
        paper="vaegen",
        figure="decomposition",
        statement="Paper A (Table 7): DMaaPx has a smaller generalization gap G_g than normal training and Aug.Naive",
        reported={"normal": 25.76, "dmaapx": 0.78, "aug_naive": 6.38},
        measured=means("generalization_gap", paper_a),
        tolerance="G_g of DMaaPx below both others in every seed",
        holds=dmaapx_smallest("generalization_gap"),
        note=PAPER_A_NOTE,
    ),
    Claim(
        id="paper_a_dmaapx_smallest_amortization_gap",
        paper="vaegen",
        figure="decomposition",
        statement="Paper A (Table 7): DMaaPx has a smaller amortization gap G_a than normal training and Aug.Naive",
        reported={"normal": 20.32, "dmaapx": 7.01, "aug_naive": 8.16},
        measured=means("amortization_gap", paper_a),
        tolerance="G_a of DMaaPx below both others in every seed",
        holds=dmaapx_smallest("amortization_gap"),
        note=PAPER_A_NOTE,
    ),
    Claim(
        id="paper_a_aug_naive_between",
        paper="vaegen",
        figure="decomposition",
        statement="Paper A (Table 7): Aug.Naive has smaller G_g and G_a than normal training",
        reported={"G_g": {"normal": 25.76, "aug_naive": 6.38}, "G_a": {"normal": 20.32, "aug_naive": 8.16}},
        measured={"G_g": means("generalization_gap", ("normal", "aug_naive")),
                  "G_a": means("amortization_gap", ("normal", "aug_naive"))},
        tolerance="both gaps of Aug.Naive below normal training's in every seed",
        holds=bool(np.all(per_seed("aug_naive", "generalization_gap") < per_seed("normal", "generalization_gap"))
                   and np.all(per_seed("aug_naive", "amortization_gap") < per_seed("normal", "amortization_gap"))),
    ),
    Claim(
        id="estimator_ordering",
        paper="vaegen",
        figure="decomposition",
        statement="Sanity: on the test subset log p̂ >= ELBO(q*) >= ELBO(retrained on test) >= ELBO(q_phi) for every method, so every stacked gap is non-negative",
        reported="holds in expectation (IWAE >= ELBO of its proposal; q* is the per-point optimum; the retrained encoder is fit on test)",
        measured={method: {name: round(summary[method][name]["mean"], 3)
                           for name in ("test_log_p", "test_elbo_optimal", "test_elbo_retrained", "test_elbo")}
                  for method in METHODS},
        tolerance="ordering of the seed means, every method",
        holds=all(ordering.values()),
        note=f"q* fits capped at {SETUP.fit.max_steps} Adam steps",
    ),
]
run.finish(
    config={"setup": SETUP.to_dict(), "profile": PROFILE, "methods": METHODS, "labels": LABELS},
    metrics={
        "measured": measured,
        "summary": summary,
        "change_vs_normal": delta,
        "smallest_gap_method": closes,
        "train_seconds": seconds,
        "table_markdown": table_text,
    },
    claims=claims,
)
# Sanity: finite numbers; the four stacked gaps add up to the total for every method and seed.
for method in METHODS:
    stacked = sum(per_seed(method, name) for name in decomposition.STACK)
    assert np.allclose(stacked, per_seed(method, "total")), method
    assert all(np.all(np.isfinite(per_seed(method, name))) for name in decomposition.LEVELS), method

# %% [markdown]
# ## What this shows
#
# Numbers from the cpu run (1000 training images, epoch 160, 3 seeds; nats per image, seed means; the
# subset columns on the first 100 images). For normal training the test ELBO (−153) is 97 nats below
# the train ELBO (−57). The decomposition says where they go: **55 nats of model gap** (the decoder
# gives the 1000 training images log p̂ ≈ −53 but test images −108), **36 nats of inference
# generalization gap** (an encoder refit on the test images gains that much with the same decoder),
# and only ~3 nats of residual amortization gap and ~1.5 nats of remaining variational gap. So on
# this footing the Gaussian family and the encoder's capacity cost little; the test ELBO is lost to
# the decoder's train–test gap and to the encoder's generalization.
#
# **Which method closes which gap.**
# - **DMaaPx closes every gap most**: G_g 97 → 8, model gap 55 → 7 (the decoder no longer memorizes:
#   train log p̂ −94 instead of −53, test −100 instead of −108), inference generalization gap 36 → 3.
#   It has the best test ELBO (−108) and, with Aug.Naive, the best test log p̂ (−100).
# - **Aug.Naive** closes part of both: model gap 55 → 32, inference generalization gap 36 → 8; its
#   decoder reaches the same test log p̂ as DMaaPx's, but it still fits the training images much
#   better than test images (G_g 41).
# - **Self-consistent training** changes the encoder only, so it can close only the inference
#   generalization gap: 36 → 18 (about half), +19 nats of test ELBO, no test data needed.
# - **β = 0.1 closes nothing here**: its encoder, trained with a discounted KL, is 140 nats below the
#   ELBO an encoder refit to its own decoder reaches on test (its rate is far too high for the β = 1
#   bound), and its decoder is slightly worse than normal training's (test log p̂ −114 vs −108).
#
# **Where the papers' orderings hold when measured the same way.** Paper A's Table 7 ordering holds
# in every seed: G_g and G_a are smallest for DMaaPx, then Aug.Naive, then normal training. Paper B's
# self-consistent training improves the test ELBO in every seed. Two orderings disagree: (1) paper C's
# β = 0.1 is worse than β = 1 in test ELBO and in the log p̂ gap: its optimum is for Tetrominoes in a
# sparse split with another MLP and does not transfer to 1000 binary-MNIST images with paper B's MLP;
# (2) paper B's "overfitting is dominated by the encoder" is not true of the train–test *levels* at
# 1000 images (model gap 55 > inference generalization gap 36): paper B's statement is about the
# *rise* during training with 60k images, which the fig1b notebook checks (there it holds).
#
# **Caveats.** The retrained encoder is fit on the test images it is scored on (an upper reference,
# not a deployable method). q* is capped at 300 Adam steps (~0.3 nats short of a longer fit,
# measured); IWAE with the amortized encoder as proposal underestimates log p̂ by 19 nats for normal
# training (−126 vs −108), which is why log p̂ uses q* as the proposal. Subset estimates rest on 100
# images; the seed sds are in the table. The DMaaPx diffusion model is the CPU-sized one shipped in
# `checkpoints/xiao2024/` (trained on the same 1000 images), sampled with 20 DDIM steps (the xiao2024 bank).
