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
VARIANTS = None  # data set + likelihood variants of Table 3, e.g. ["binary_mnist"]; None: the profile's
EPOCHS = None  # effective epochs of every run (paper: 1000); None: the profile's (fig02's models)
SEEDS = None  # one model per seed, e.g. [0, 1, 2] (paper: 3 seeds); None: the profile's
MATCH_TOLERANCE = 0.05  # "DMaaPx matches normal training": |G_r difference| below this (MS-SSIM units)

# %% [markdown]
# ## Setup
#
# The runs are `xiao2024_fig02_synthetic_data`'s (the same named runs, one cached model set); the
# attack of each data set is `xiao2024.attack_settings` (Table 2).

# %%
import matplotlib.pyplot as plt
import numpy as np

from vaegen_utils import notebook, xiao2024
from vaegen_utils.claims import matches_and_beats, smallest, within_budget
from vaegen_utils.results import Claim

S = xiao2024.fig02c_settings(PROFILE, variants=VARIANTS, epochs=EPOCHS, seeds=SEEDS)
run = notebook.start("xiao2024_fig02c_robustness", PROFILE, seed=S.studies[S.variants[0]].seeds[0])
variants = xiao2024.available_variants(S.variants)  # one line per data set that cannot be had here
print(*S.studies.values(), sep="\n")
print({variant: S.attacks[variant] for variant in variants})


# %% [markdown]
# ## Attack every method's encoder at every checkpoint

# %%
results = {}
for variant in variants:
    study = S.studies[variant]
    for method in S.methods:
        results[variant, method] = [
            xiao2024.robustness(study, method, S.attacks[variant], epoch=epoch) for epoch in study.checkpoint_epochs()
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
fig, axes = plt.subplots(len(variants), 2, figsize=(10, 3.4 * len(variants)), squeeze=False)
for (left, right), variant in zip(axes, variants):
    epochs = S.studies[variant].checkpoint_epochs()
    for method in S.methods:
        rows = results[variant, method]
        color, label = COLORS[method], xiao2024.METHOD_LABELS[method]
        left.plot(epochs, [np.mean(r["reconstruction_ms_ssim"]) for r in rows], "o-", color=color, markersize=3, label=label)
        left.plot(epochs, [np.mean(r["input_ms_ssim"]) for r in rows], ":", color=color, linewidth=0.9)
    left.set_title(f"{variant}: MS-SSIM over training\n(solid: reconstructions x̃_r, x̃_a; dotted: inputs x_r, x_a)", loc="left", fontsize=9)
    left.set_xlabel("effective epoch")
    left.set_ylabel("MS-SSIM")
    left.legend(fontsize=7)
    positions = np.arange(len(S.methods))
    ours = [np.mean(results[variant, m][-1]["G_r"]) for m in S.methods]
    right.bar(positions, ours, color=[COLORS[m] for m in S.methods], label="measured")
    paper = [xiao2024.TABLE7.get(variant, {}).get(m, {}).get("G_r", np.nan) for m in S.methods]
    right.plot(positions, paper, "k*", markersize=9, label="paper A Table 7")
    right.set_xticks(positions, [xiao2024.METHOD_LABELS[m] for m in S.methods], fontsize=7)
    right.set_ylabel("G_r (smaller = more robust)")
    right.set_title(f"{variant}: robustness gap at epoch {S.studies[variant].epochs}", loc="left", fontsize=9)
    right.legend(fontsize=7)
fig.tight_layout()
run.savefig(fig)
plt.show()

# %% [markdown]
# ## Claims and results

# %%
final = {(v, m): float(np.mean(results[v, m][-1]["G_r"])) for v in variants for m in S.methods}
claims = [Claim(
    id="attack_respects_budget", paper="xiao2024", figure="Table 2",
    statement="Every adversarial input stays within the L_inf budget delta of its reference image",
    reported="||eps||_inf <= delta (0.1 MNIST-type, 0.05 CIFAR-10)",
    measured={"max_abs_epsilon": {v: max(max(r["max_abs_epsilon"]) for (w, _), rows in results.items() if w == v for r in rows)
                                  for v in variants}},
    tolerance="<= delta of the data set + 1e-6 (float rounding)",
    holds=all(within_budget(r["max_abs_epsilon"], S.attacks[v].radius) for (v, _), rows in results.items() for r in rows),
)]
if "binary_mnist" in variants:
    g = {m: final["binary_mnist", m] for m in S.methods}
    claims.append(Claim(
        id="binary_mnist_dmaapx_matches_normal_beats_augmentation", paper="xiao2024", figure="Table 7",
        statement="BinaryMNIST: DMaaPx's G_r matches normal training's and is smaller than both augmentations'",
        reported={m: xiao2024.TABLE7["binary_mnist"][m]["G_r"] for m in S.methods},
        measured={m: round(v, 3) for m, v in g.items()},
        tolerance=f"G_r(DMaaPx) <= G_r(normal) + {MATCH_TOLERANCE} and < G_r(Aug.Naive), G_r(Aug.Tuned)",
        holds=matches_and_beats(g, "dmaapx", "normal", ["aug_naive", "aug_tuned"], MATCH_TOLERANCE),
    ))
if "fashion_mnist" in variants:
    g = {m: final["fashion_mnist", m] for m in S.methods}
    holds = g["dmaapx"] < g["normal"] and smallest(g) == "aug_naive"
    claims.append(Claim(
        id="fashion_mnist_dmaapx_beats_normal_aug_naive_smallest", paper="xiao2024", figure="Table 7",
        statement="Fashion-MNIST: DMaaPx's G_r is smaller than normal training's, and Aug.Naive has the smallest G_r",
        reported={m: xiao2024.TABLE7["fashion_mnist"][m]["G_r"] for m in S.methods},
        measured={m: round(v, 3) for m, v in g.items()},
        tolerance="G_r(DMaaPx) < G_r(normal) and argmin over methods = Aug.Naive",
        holds=holds,
        note=None if holds else (
            f"the smallest G_r is {xiao2024.METHOD_LABELS[smallest(g)]}'s ({min(g.values()):.3f}), not Aug.Naive's "
            f"({g['aug_naive']:.3f}); with 1000 training images the DMaaPx encoder, trained on 10,000 distinct images, reacts "
            "far less to the attack than the encoders that saw 1000 (possibly augmented) images, and the paper's fixed "
            "Gaussian sigma (unstated; ours 0.1) sets how sharply an encoder's posterior moves with its input"
        ),
    ))
if "cifar10" in variants:
    g = {m: final["cifar10", m] for m in S.methods}
    claims.append(Claim(
        id="cifar10_dmaapx_smallest_G_r", paper="xiao2024", figure="Table 7",
        statement="CIFAR-10: DMaaPx has the smallest G_r of the four methods",
        reported={m: xiao2024.TABLE7["cifar10"][m]["G_r"] for m in S.methods},
        measured={m: round(v, 3) for m, v in g.items()},
        tolerance="argmin over methods = DMaaPx",
        holds=smallest(g) == "dmaapx",
    ))

run.finish(
    config=S.to_dict() | {"variants_run": variants, "match_tolerance": MATCH_TOLERANCE},
    metrics={f"{v}/{m}": {"epochs": S.studies[v].checkpoint_epochs(), "checkpoints": rows} for (v, m), rows in results.items()},
    claims=claims,
)
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
