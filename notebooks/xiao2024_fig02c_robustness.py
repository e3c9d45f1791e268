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
# # Xiao, Zenn & Bamler 2024, Figure 2 (right) and Table 7: adversarial robustness gap G_r
#
# Paper A (App. A, Eq. 5, Eq. 10, Table 2) attacks each VAE's *encoder* without labels: find
# ε with ‖ε‖∞ ≤ δ that maximizes the symmetric KL between q(z|x_r + ε) and q(z|x_r), by projected
# gradient steps with random restarts (Kuzina et al. 2022). The robustness gap is
# G_r = E[MS-SSIM(x_r, x_a) − MS-SSIM(x̃_r, x̃_a)]: how much more the *reconstructions* of the
# clean and attacked inputs differ than the inputs themselves (x̃ = decoder mean at z ~ q(z|x)).
# Smaller is more robust. Table 2 (MNIST-type data): 50 reference test images, 10 restarts,
# 50 steps, learning rate 1.0, δ = 0.1; MS-SSIM as in Kuzina's code (window 14, ReLU-normalized).
#
# The paper's finding is *not* a clean win for DMaaPx: on BinaryMNIST normal training has the
# smallest G_r (0.49, DMaaPx 0.50), on Fashion-MNIST Aug.Naive does (0.11; DMaaPx 0.31 < normal
# 0.39). We encode exactly that and report what we see.
#
# **Scale.** The attack keeps Table 2's settings in every profile except `smoke`. The VAEs are the
# ones `xiao2024_fig02_synthetic_data` trains (same settings, shared cache: cpu profile 1000
# training images, 300 epochs, 1 seed). We attack every checkpoint, as Fig. 2 (right) plots G_r over
# training. CIFAR-10 (Table 2: 20 images, 100 steps, δ = 0.05) runs wherever its data can be had
# (no offline source; here it is skipped with a one-line message). Runtime (cpu): see notebooks/README.md.

# %% tags=["parameters"]
from vaegen_utils.profiles import current_profile

PROFILE = current_profile()  # smoke | cpu | paper: env VAEGEN_PROFILE (default cpu) or papermill -p PROFILE
METHODS = ["normal", "dmaapx", "aug_naive", "aug_tuned"]  # paper A Table 7's four rows
SUBSET_SEED = 0  # which training images form the subset (the shipped DM saw the same ones)
# Per-profile sizes, resolved with by_profile in the setup cell. These tables must match the other
# xiao2024 VAE notebooks so that all of them share one cached model set (tests/test_xiao2024.py checks it).
VARIANTS_BY_PROFILE = {  # data set + likelihood (paper A Table 3; "fashion_mnist_mol" is Fig. 12); CIFAR-10 runs where its data can be had
    "smoke": ["binary_mnist", "fashion_mnist", "cifar10"],
    "cpu": ["binary_mnist", "fashion_mnist", "cifar10"],
    "paper": ["binary_mnist", "fashion_mnist", "fashion_mnist_mol", "cifar10"],
}
CIFAR_LATENT_CHANNELS = 1  # m_z: latent_dim = 64 m_z on the 8x8 grid (paper A's default, Table 4)
CIFAR_CHANNELS_BY_PROFILE = {"smoke": 8, "cpu": 32, "paper": 256}  # n_c of the residual net (paper: 256)
CIFAR_LEARNING_RATE = 1e-4  # Adam step size of the residual net (not stated in paper A; paper B's code for this net)
N_TRAIN_BY_PROFILE = {"smoke": 100, "cpu": 1000, "paper": 1000}  # real training images N (the DM's training subset)
N_TEST_BY_PROFILE = {"smoke": 100, "cpu": 2000, "paper": 10000}  # first n test images (curves, G_g)
SEEDS_BY_PROFILE = {"smoke": [0], "cpu": [0], "paper": [0, 1, 2]}  # one model per seed (paper: 3 seeds)
EPOCHS_BY_PROFILE = {"smoke": 2, "cpu": 300, "paper": 1000}  # effective epochs (paper: 1000)
EVAL_EVERY_BY_PROFILE = {"smoke": 1, "cpu": 10, "paper": 10}  # train/test ELBO every k epochs
CHECKPOINT_EVERY_BY_PROFILE = {"smoke": 1, "cpu": 50, "paper": 100}  # G_a every k epochs (paper: 100)
BANK_BLOCKS_BY_PROFILE = {"smoke": 2, "cpu": 10, "paper": 1000}  # k blocks of N DM samples (paper: k = T, fresh every epoch)
BANK_SAMPLER_BY_PROFILE = {"smoke": "ddim", "cpu": "ddim", "paper": "heun"}  # paper: EDM's Heun sampler, 18 steps
BANK_STEPS_BY_PROFILE = {"smoke": 2, "cpu": 20, "paper": 18}  # sampler steps (DDIM-20: clearly fewer speckles than DDIM-10 on BinaryMNIST)
BANK_SEED = 0  # initial-noise seed of the bank (sample i always gets the same noise)
ATTACK_REFERENCES_BY_PROFILE = {"smoke": 4, "cpu": 50, "paper": 50}  # n_r reference test images (Table 2)
ATTACK_RESTARTS_BY_PROFILE = {"smoke": 2, "cpu": 10, "paper": 10}  # n_a random restarts per image (Table 2)
ATTACK_STEPS_BY_PROFILE = {"smoke": 3, "cpu": 50, "paper": 50}  # n_eps projected gradient steps (Table 2)
ATTACK_LEARNING_RATE = 1.0  # eta (Table 2)
ATTACK_RADIUS = 0.1  # delta, the L_inf budget for MNIST-type data (Table 2)
ATTACK_SEED = 0  # reference-image choice and attack starts
MS_SSIM_WINDOW = 14  # Kuzina et al.'s window (papers.md A.4)
CIFAR_ATTACK_REFERENCES = 20  # Table 2, CIFAR-10: 20 reference images ...
CIFAR_ATTACK_STEPS = 100  # ... 100 steps ...
CIFAR_ATTACK_RADIUS = 0.05  # ... and delta = 0.05 (10 restarts and lr 1.0 as above)
MATCH_TOLERANCE = 0.05  # "DMaaPx matches normal training": |G_r difference| below this (MS-SSIM units)

# %% [markdown]
# ## Setup

# %%
import matplotlib.pyplot as plt
import numpy as np

from vaegen_utils import xiao2024
from vaegen_utils.figures import savefig, use_style
from vaegen_utils.profiles import by_profile
from vaegen_utils.results import Claim, Stopwatch, write_results
from vaegen_utils.seeding import set_seed

stopwatch = Stopwatch()
SEEDS = by_profile(PROFILE, SEEDS_BY_PROFILE)
set_seed(SEEDS[0])
use_style()

# Sizes are resolved here, not in the parameters cell: papermill injects `-p PROFILE ...` after it.
VARIANTS = xiao2024.available_variants(by_profile(PROFILE, VARIANTS_BY_PROFILE))  # one line per data set not available
CIFAR_SIZES = dict(  # CIFAR-10 uses paper A's residual net instead of the MLP
    latent_dim=64 * CIFAR_LATENT_CHANNELS, hidden_width=by_profile(PROFILE, CIFAR_CHANNELS_BY_PROFILE), learning_rate=CIFAR_LEARNING_RATE
)
BANK = xiao2024.BankSettings(
    sampler=by_profile(PROFILE, BANK_SAMPLER_BY_PROFILE), steps=by_profile(PROFILE, BANK_STEPS_BY_PROFILE), seed=BANK_SEED
)
STUDIES = {
    variant: xiao2024.Study(
        variant=variant,
        n_train=by_profile(PROFILE, N_TRAIN_BY_PROFILE),
        n_test=by_profile(PROFILE, N_TEST_BY_PROFILE),
        seeds=SEEDS,
        epochs=by_profile(PROFILE, EPOCHS_BY_PROFILE),
        eval_every=by_profile(PROFILE, EVAL_EVERY_BY_PROFILE),
        checkpoint_every=by_profile(PROFILE, CHECKPOINT_EVERY_BY_PROFILE),
        bank_blocks=by_profile(PROFILE, BANK_BLOCKS_BY_PROFILE),
        bank=BANK,
        subset_seed=SUBSET_SEED,
        **(CIFAR_SIZES if variant == "cifar10" else {}),
    )
    for variant in VARIANTS
}
for study in STUDIES.values():
    print(study)
ATTACK = xiao2024.AttackSettings(
    n_reference=by_profile(PROFILE, ATTACK_REFERENCES_BY_PROFILE),
    restarts=by_profile(PROFILE, ATTACK_RESTARTS_BY_PROFILE),
    steps=by_profile(PROFILE, ATTACK_STEPS_BY_PROFILE),
    learning_rate=ATTACK_LEARNING_RATE,
    radius=ATTACK_RADIUS,
    seed=ATTACK_SEED,
    window_size=MS_SSIM_WINDOW,
)
CIFAR_ATTACK = xiao2024.AttackSettings(**{**ATTACK.__dict__, "n_reference": min(CIFAR_ATTACK_REFERENCES, ATTACK.n_reference),
                                     "steps": min(CIFAR_ATTACK_STEPS, 2 * ATTACK.steps), "radius": CIFAR_ATTACK_RADIUS})
ATTACKS = {variant: CIFAR_ATTACK if variant == "cifar10" else ATTACK for variant in VARIANTS}
print(ATTACKS)


# %% [markdown]
# ## Attack every method's encoder at every checkpoint

# %%
results = {}
for variant, study in STUDIES.items():
    for method in METHODS:
        results[variant, method] = [
            xiao2024.robustness(study, method, ATTACKS[variant], epoch=epoch) for epoch in study.checkpoint_epochs()
        ]
        final = results[variant, method][-1]
        print(
            f"{variant:>14} {xiao2024.METHOD_LABELS[method]:>15}: G_r {np.mean(final['G_r']):.3f}  "
            f"MS-SSIM inputs {np.mean(final['input_ms_ssim']):.3f}  reconstructions {np.mean(final['reconstruction_ms_ssim']):.3f}  "
            f"SKL {np.mean(final['skl']):.1f}  max|eps| {max(final['max_abs_epsilon']):.4f}"
        )

# %% [markdown]
# ## Figure: MS-SSIM of inputs and reconstructions over training; G_r at the end vs Table 7

# %%
COLORS = {"normal": "tab:red", "dmaapx": "tab:blue", "aug_naive": "tab:green", "aug_tuned": "tab:orange"}
fig, axes = plt.subplots(len(VARIANTS), 2, figsize=(10, 3.4 * len(VARIANTS)), squeeze=False)
for (left, right), variant in zip(axes, VARIANTS):
    epochs = STUDIES[variant].checkpoint_epochs()
    for method in METHODS:
        rows = results[variant, method]
        color, label = COLORS[method], xiao2024.METHOD_LABELS[method]
        left.plot(epochs, [np.mean(r["reconstruction_ms_ssim"]) for r in rows], "o-", color=color, markersize=3, label=label)
        left.plot(epochs, [np.mean(r["input_ms_ssim"]) for r in rows], ":", color=color, linewidth=0.9)
    left.set_title(f"{variant}: MS-SSIM over training\n(solid: reconstructions x̃_r, x̃_a; dotted: inputs x_r, x_a)", loc="left", fontsize=9)
    left.set_xlabel("effective epoch")
    left.set_ylabel("MS-SSIM")
    left.legend(fontsize=7)
    positions = np.arange(len(METHODS))
    ours = [np.mean(results[variant, m][-1]["G_r"]) for m in METHODS]
    right.bar(positions, ours, color=[COLORS[m] for m in METHODS], label="measured")
    paper = [xiao2024.TABLE7.get(variant, {}).get(m, {}).get("G_r", np.nan) for m in METHODS]
    right.plot(positions, paper, "k*", markersize=9, label="paper A Table 7")
    right.set_xticks(positions, [xiao2024.METHOD_LABELS[m] for m in METHODS], fontsize=7)
    right.set_ylabel("G_r (smaller = more robust)")
    right.set_title(f"{variant}: robustness gap at epoch {STUDIES[variant].epochs}", loc="left", fontsize=9)
    right.legend(fontsize=7)
fig.tight_layout()
savefig(fig, "xiao2024_fig02c_robustness", profile=PROFILE)
plt.show()

# %% [markdown]
# ## Claims and results

# %%
final = {(v, m): float(np.mean(results[v, m][-1]["G_r"])) for v in VARIANTS for m in METHODS}
claims = [
    Claim(
        id="attack_respects_budget",
        paper="xiao2024",
        figure="Table 2",
        statement="Every adversarial input stays within the L_inf budget delta of its reference image",
        reported=f"||eps||_inf <= delta ({ATTACK_RADIUS} MNIST-type, {CIFAR_ATTACK_RADIUS} CIFAR-10)",
        measured={"max_abs_epsilon": {v: max(max(r["max_abs_epsilon"]) for (w, _), rows in results.items() if w == v for r in rows)
                                      for v in VARIANTS}},
        tolerance="<= delta of the data set + 1e-6 (float rounding)",
        holds=all(max(r["max_abs_epsilon"]) <= ATTACKS[v].radius + 1e-6 for (v, _), rows in results.items() for r in rows),
    )
]
if "binary_mnist" in VARIANTS:
    g = {m: final["binary_mnist", m] for m in METHODS}
    claims.append(
        Claim(
            id="binary_mnist_dmaapx_matches_normal_beats_augmentation",
            paper="xiao2024",
            figure="Table 7",
            statement="BinaryMNIST: DMaaPx's G_r matches normal training's and is smaller than both augmentations'",
            reported={m: xiao2024.TABLE7["binary_mnist"][m]["G_r"] for m in METHODS},
            measured={m: round(v, 3) for m, v in g.items()},
            tolerance=f"G_r(DMaaPx) <= G_r(normal) + {MATCH_TOLERANCE} and < G_r(Aug.Naive), G_r(Aug.Tuned)",
            holds=g["dmaapx"] <= g["normal"] + MATCH_TOLERANCE and g["dmaapx"] < min(g["aug_naive"], g["aug_tuned"]),
        )
    )
if "fashion_mnist" in VARIANTS:
    g = {m: final["fashion_mnist", m] for m in METHODS}
    claims.append(
        Claim(
            id="fashion_mnist_dmaapx_beats_normal_aug_naive_smallest",
            paper="xiao2024",
            figure="Table 7",
            statement="Fashion-MNIST: DMaaPx's G_r is smaller than normal training's, and Aug.Naive has the smallest G_r",
            reported={m: xiao2024.TABLE7["fashion_mnist"][m]["G_r"] for m in METHODS},
            measured={m: round(v, 3) for m, v in g.items()},
            tolerance="G_r(DMaaPx) < G_r(normal) and argmin over methods = Aug.Naive",
            holds=g["dmaapx"] < g["normal"] and min(METHODS, key=g.get) == "aug_naive",
            note=None if g["dmaapx"] < g["normal"] and min(METHODS, key=g.get) == "aug_naive" else (
                f"the smallest G_r is {xiao2024.METHOD_LABELS[min(METHODS, key=g.get)]}'s ({min(g.values()):.3f}), not Aug.Naive's "
                f"({g['aug_naive']:.3f}); with 1000 training images the DMaaPx encoder, trained on 10,000 distinct images, reacts "
                "far less to the attack than the encoders that saw 1000 (possibly augmented) images, and the paper's fixed "
                "Gaussian sigma (unstated; ours 0.1) sets how sharply an encoder's posterior moves with its input"
            ),
        )
    )
if "cifar10" in VARIANTS:
    g = {m: final["cifar10", m] for m in METHODS}
    claims.append(
        Claim(
            id="cifar10_dmaapx_smallest_G_r",
            paper="xiao2024",
            figure="Table 7",
            statement="CIFAR-10: DMaaPx has the smallest G_r of the four methods",
            reported={m: xiao2024.TABLE7["cifar10"][m]["G_r"] for m in METHODS},
            measured={m: round(v, 3) for m, v in g.items()},
            tolerance="argmin over methods = DMaaPx",
            holds=min(METHODS, key=g.get) == "dmaapx",
        )
    )
path = write_results(
    "xiao2024_fig02c_robustness",
    profile=PROFILE,
    seed=SEEDS[0],
    config={"studies": {v: s.to_dict() for v, s in STUDIES.items()}, "attacks": {v: a.__dict__ for v, a in ATTACKS.items()}, "methods": METHODS,
            "match_tolerance": MATCH_TOLERANCE},
    metrics={f"{v}/{m}": {"epochs": STUDIES[v].checkpoint_epochs(), "checkpoints": rows} for (v, m), rows in results.items()},
    claims=claims,
    runtime_s=stopwatch.elapsed(),
)
print(f"wrote {path}")
for claim in claims:
    print(f"{'holds' if claim.holds else 'FAILS'}  {claim.statement}: {claim.measured}")
assert all(np.isfinite(v) for v in final.values()), final

# %% [markdown]
# ## What this shows
#
# In the committed `cpu` run (1000 training images, 300 epochs, 1 seed) the attack always uses its
# whole budget (max |ε| = δ = 0.1) and the inputs stay similar (input MS-SSIM 0.90-0.94), while
# the reconstructions move much more. **BinaryMNIST** reproduces the paper's picture: normal
# training and DMaaPx are about equally robust (G_r 0.30 vs 0.33; paper 0.49 vs 0.50) and both
# augmentations are clearly worse (0.53, 0.52; paper 0.74, 0.79). **Fashion-MNIST** does not: DMaaPx
# is by far the most robust (G_r 0.003, the attack's symmetric KL is 80× smaller than for normal
# training), Aug.Naive comes second (0.06) and normal training last (0.14), whereas the paper has
# Aug.Naive first (0.11) and DMaaPx second (0.31). DMaaPx beating normal training holds in both.
# Our reading: with 10× more distinct (synthetic) training images than the real set, the DMaaPx
# encoder is much smoother than encoders trained on 1000 images; at the paper's 60,000 images that
# advantage is smaller. The Gaussian σ, which the paper does not state, also matters here.
#
# The BinaryMNIST "DMaaPx matches normal training" verdict is fragile with one seed: the same
# settings trained on one torch thread instead of two (commit 77c3d0b, reverted; only the summation
# order of matrix products differs) gave G_r 0.30 for normal training and 0.37 for DMaaPx, outside
# the tolerance, so the claim failed there; the augmentations (0.53, 0.52) were still clearly worse
# and Fashion-MNIST's order was unchanged (DMaaPx 0.04, Aug.Naive 0.09, Aug.Tuned 0.11, normal 0.15).
