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
# # Xiao, Zenn & Bamler 2024, Figure 2 and Table 7: training on diffusion-model samples
#
# Paper A ("The Generalization Gap in VAEs Trained on Diffusion-Model Samples", Sec. 5, Fig. 2,
# Figs. 10-11, Table 7) trains the same VAE four ways and compares them on the *real* data:
#
# - **Normal training** (Algorithm 1): minibatches of the training set D_train.
# - **DMaaPx** (Algorithm 2): a diffusion model (DM) is trained on D_train only; the VAE then sees a
#   fresh block of N = |D_train| DM samples every effective epoch (k blocks, cycled).
# - **Aug.Naive / Aug.Tuned**: D_train with the StyleGAN2-ADA augmentations of Tables 8-9.
#
# Metrics, every few epochs: train and test ELBO (nats per image), the generalization gap
# G_g = ELBO(real D_train) − ELBO(D_test) (Eq. 3, always on the real training set, App. B.5), and the
# amortization gap G_a = ELBO*(D_test) − ELBO(D_test) (Eq. 4) with a per-point optimal Gaussian q*
# (Cremer et al. 2018) on a test subset. The robustness gap G_r (Table 7's third column) is in
# `xiao2024_fig02c_robustness`.
#
# **Scale.** The paper trains on all 60,000 images for 1000 effective epochs with 3 seeds, a DM
# (EDM) trained for a day on 8 A100s, and fresh samples every epoch (k = 1000). The `cpu` profile
# keeps the method and shrinks the data: **1000** training images (a seeded subset — the shipped DM
# was trained on exactly these, `vaegen_xiao2024_diffusion_model`), 300 effective epochs, 1 seed, a
# bank of k = 10 blocks of 1000 DDIM samples (paper Fig. 4: k ≈ 10 is as good as fresh data), G_a
# on 200 test images with a short q* fit. A VAE on 1000 images overfits within tens of epochs
# (as in `zhang2022_fig1a_overfitting`), so the paper's overfitting-vs-DMaaPx contrast shows in
# minutes. Fashion-MNIST with the mixture-of-logistics likelihood (Fig. 12) runs in the `paper`
# profile only (its decoder has 15× more outputs). CIFAR-10 (paper A's residual net, mixture of
# logistics; its DM is trained first on the study's training images, ~1 CPU-hour) runs wherever the
# data can be had: it has no offline source, so here it is skipped with a one-line message.
# Runtime (cpu): see notebooks/README.md.

# %% tags=["parameters"]
from vaegen_utils.profiles import current_profile

PROFILE = current_profile()  # smoke | cpu | paper: env VAEGEN_PROFILE (default cpu) or papermill -p PROFILE
VARIANTS = None  # data set + likelihood variants of Table 3, e.g. ["binary_mnist"]; None: the profile's
EPOCHS = None  # effective epochs of every run (paper: 1000); None: the profile's
SEEDS = None  # one model per seed, e.g. [0, 1, 2] (paper: 3 seeds); None: the profile's
DROP_TOLERANCE = 0.005  # "the test ELBO falls": by more than this fraction of |peak ELBO| (and not otherwise)

# %% [markdown]
# ## Setup
#
# Every size comes from `xiao2024.fig02_settings` (the tables in `vaegen_utils/xiao2024.py`): the
# runs are the same named runs the other xiao2024 notebooks use, so they share one cached model set.

# %%
import matplotlib.pyplot as plt
import numpy as np

from vaegen_utils import notebook, xiao2024
from vaegen_utils.claims import falls_after_peak, peak_then_drop, smallest, stays_near_peak
from vaegen_utils.results import Claim

S = xiao2024.fig02_settings(PROFILE, variants=VARIANTS, epochs=EPOCHS, seeds=SEEDS)
run = notebook.start("xiao2024_fig02_synthetic_data", PROFILE, seed=S.studies[S.variants[0]].seeds[0])
variants = xiao2024.available_variants(S.variants)  # one line per data set that cannot be had here
print(*S.studies.values(), S.fit, sep="\n")

# %% [markdown]
# ## Train (or load) every method and measure the gaps
#
# The first DMaaPx run generates the DM sample bank (cached, shared with the other notebooks).

# %%
curves, gaps = {}, {}
for variant in variants:
    for method in S.methods:
        curves[variant, method] = xiao2024.learning_curves(S.studies[variant], method)  # every eval epoch
        gaps[variant, method] = xiao2024.gap_curves(S.studies[variant], method, S.fit)  # every checkpoint

        row = gaps[variant, method]
        print(
            f"{variant:>14} {xiao2024.METHOD_LABELS[method]:>15}: train {np.mean(row['train_elbo'][-1]):9.2f}  "
            f"test {np.mean(row['test_elbo'][-1]):9.2f}  G_g {np.mean(row['G_g'][-1]):8.2f}  "
            f"G_a {np.mean(row['G_a'][-1]):8.2f}  (q* converged {np.mean(row['fraction_converged'][-1]):.0%}; "
            f"trained in {curves[variant, method]['seconds']:.0f} s)"
        )

# %% [markdown]
# ## Figure 2 (BinaryMNIST / Fashion-MNIST analogue): ELBO curves, amortization, gaps

# %%
COLORS = {"normal": "tab:red", "dmaapx": "tab:blue", "aug_naive": "tab:green", "aug_tuned": "tab:orange"}


def seed_mean(values):
    return np.array([np.mean(row) for row in values])


fig, axes = plt.subplots(len(variants), 3, figsize=(12, 3.4 * len(variants)), squeeze=False)
for row_axes, variant in zip(axes, variants):
    left, middle, right = row_axes
    for method in S.methods:
        color, label = COLORS[method], xiao2024.METHOD_LABELS[method]
        c = curves[variant, method]
        left.plot(c["epochs"], seed_mean(c["test_elbo"]), color=color, label=f"{label} (test)")
        left.plot(c["epochs"], seed_mean(c["train_elbo"]), color=color, linestyle="--", linewidth=0.9)
        g = gaps[variant, method]
        middle.plot(g["epochs"], seed_mean(g["amortized_elbo"]), "o-", color=color, markersize=3, label=f"{label}: q_φ")
        middle.plot(g["epochs"], seed_mean(g["optimal_elbo"]), "s--", color=color, markersize=3, linewidth=0.9)
    left.set_title(f"{variant}: ELBO on real data\n(solid: test, dashed: train)", loc="left", fontsize=9)
    left.set_xlabel("effective epoch")
    left.set_ylabel("ELBO (nats per image)")
    left.legend(fontsize=7)
    middle.set_title(f"{variant}: test ELBO\n(solid: amortized q_φ, dashed: per-point q*)", loc="left", fontsize=9)
    middle.set_xlabel("effective epoch")
    middle.set_ylabel(f"ELBO on {S.fit.n_points} test images")
    positions = np.arange(len(S.methods))
    final_gg = [np.mean(gaps[variant, m]["G_g"][-1]) for m in S.methods]
    final_ga = [np.mean(gaps[variant, m]["G_a"][-1]) for m in S.methods]
    right.bar(positions - 0.2, final_gg, width=0.4, color=[COLORS[m] for m in S.methods], label="G_g")
    right.bar(positions + 0.2, final_ga, width=0.4, color=[COLORS[m] for m in S.methods], alpha=0.45, hatch="//", label="G_a")
    right.set_xticks(positions, [xiao2024.METHOD_LABELS[m] for m in S.methods], fontsize=7)
    right.axhline(0, color="black", linewidth=0.6)
    right.set_title(f"{variant}: gaps at epoch {S.studies[variant].epochs}\n(solid: G_g, hatched: G_a)", loc="left", fontsize=9)
    right.set_ylabel("nats per image")
fig.tight_layout()
run.savefig(fig)
plt.show()

# %% [markdown]
# ## Table 7: paper vs measured (gaps at the end of training)

# %%
table = []
print(f"{'data set':>14} {'method':>15} | {'G_g paper':>9} {'G_g ours':>9} | {'G_a paper':>9} {'G_a ours':>9} | {'test ELBO':>9}")
for variant in variants:
    for method in S.methods:
        paper = xiao2024.TABLE7.get(variant, {}).get(method, {})
        g = gaps[variant, method]
        entry = {
            "variant": variant,
            "method": method,
            "G_g_paper": paper.get("G_g"),
            "G_g": float(np.mean(g["G_g"][-1])),
            "G_a_paper": paper.get("G_a"),
            "G_a": float(np.mean(g["G_a"][-1])),
            "test_elbo": float(np.mean(g["test_elbo"][-1])),
            "train_elbo": float(np.mean(g["train_elbo"][-1])),
        }
        table.append(entry)
        fmt = lambda value: f"{value:9.2f}" if value is not None else f"{'—':>9}"  # noqa: E731
        print(
            f"{variant:>14} {xiao2024.METHOD_LABELS[method]:>15} | {fmt(entry['G_g_paper'])} {entry['G_g']:9.2f} | "
            f"{fmt(entry['G_a_paper'])} {entry['G_a']:9.2f} | {entry['test_elbo']:9.2f}"
        )

# %% [markdown]
# ## Claims and results

# %%
claims = []
for variant in variants:
    final = {m: {name: float(np.mean(gaps[variant, m][name][-1])) for name in ("G_g", "G_a", "test_elbo")} for m in S.methods}
    paper = xiao2024.TABLE7.get(variant, {})
    for gap in ("G_g", "G_a"):
        reported = {m: paper[m][gap] for m in S.methods if gap in paper.get(m, {})}
        claims.append(Claim(
            id=f"{variant}_dmaapx_smallest_{gap}", paper="xiao2024", figure="Table 7",
            statement=f"{variant}: DMaaPx has the smallest {gap} of the four methods at the end of training",
            reported=reported or "smallest (Table 7 bold)",
            measured={m: round(final[m][gap], 2) for m in S.methods},
            tolerance="DMaaPx's seed-mean gap is the lowest of the four",
            holds=smallest({m: final[m][gap] for m in S.methods}) == "dmaapx",
        ))
    claims.append(Claim(
        id=f"{variant}_dmaapx_test_elbo_at_least_normal", paper="xiao2024", figure="Fig. 2 left / Figs. 10-11",
        statement=f"{variant}: DMaaPx's final test ELBO is at least that of normal training",
        reported="DMaaPx matches or surpasses normal training on every data set (Sec. 5.4)",
        measured={m: round(final[m]["test_elbo"], 2) for m in S.methods},
        tolerance="test ELBO(DMaaPx) >= test ELBO(normal) at the last epoch (seed means)",
        holds=final["dmaapx"]["test_elbo"] >= final["normal"]["test_elbo"],
    ))
    normal = peak_then_drop(curves[variant, "normal"]["epochs"], curves[variant, "normal"]["test_elbo"])
    dmaapx = peak_then_drop(curves[variant, "dmaapx"]["epochs"], curves[variant, "dmaapx"]["test_elbo"])
    claims.append(Claim(
        id=f"{variant}_normal_overfits_dmaapx_does_not", paper="xiao2024", figure="Fig. 2 left / Figs. 10-11",
        statement=f"{variant}: normal training's test ELBO peaks and then falls, DMaaPx's does not fall",
        reported="normal: peaks early then declines (BinaryMNIST ≈ −84 at epoch 50 → −95 at 1000); DMaaPx: still rising",
        measured={"normal": {k: round(v, 2) for k, v in normal.items()}, "dmaapx": {k: round(v, 2) for k, v in dmaapx.items()}},
        tolerance=f"normal: peak before the last epoch and drop > {DROP_TOLERANCE:g}·|peak|; DMaaPx: drop ≤ {DROP_TOLERANCE:g}·|peak|",
        holds=falls_after_peak(normal, S.studies[variant].epochs, DROP_TOLERANCE) and stays_near_peak(dmaapx, DROP_TOLERANCE),
    ))

run.finish(
    config=S.to_dict() | {"variants_run": variants, "drop_tolerance": DROP_TOLERANCE},
    metrics={"table7": table, "curves": {f"{v}/{m}": curves[v, m] for v, m in curves},
             "gaps": {f"{v}/{m}": gaps[v, m] for v, m in gaps}},
    claims=claims,
)
# Sanity: finite ELBOs and gaps (claims may fail in the smoke profile).
assert all(np.isfinite(entry["G_g"]) and np.isfinite(entry["G_a"]) for entry in table), table

# %% [markdown]
# ## What this shows
#
# In the committed `cpu` run (1000 training images, 300 effective epochs, 1 seed) every Table-7
# ordering of G_g and G_a reproduces on both data sets, and the curves have the paper's shapes:
#
# - **BinaryMNIST.** Normal training overfits hard: its test ELBO peaks at −124 nats (epoch 80) and
#   falls to −218 while the train ELBO climbs to −36 (G_g 181, paper 25.8 with 60× more data).
#   DMaaPx keeps train and test together (G_g 10, paper 0.8) and ends at the best test ELBO (−102).
#   The augmentations sit in between (G_g 63 and 69, paper 6.4 and 8.2, same order). The
#   amortization gap follows the same order (7, 15, 16, 86; paper 7.0, 8.2, 9.3, 20.3).
# - **Fashion-MNIST** (Gaussian, σ = 0.1, so ELBOs are positive): G_g 470 / 50 / 256 / 266 for
#   normal / DMaaPx / Aug.Naive / Aug.Tuned (paper 1235 / 137 / 500 / 615), G_a 112 / 43 / 51 / 54
#   (paper 1136 / 593 / 730 / 816). DMaaPx's test ELBO (681) beats normal training's (644) but
#   not the augmentations' (765, 763): here the DM's samples (3000 training steps on 1000 images)
#   are the limiting factor.
#
# The q* fit (300 Adam steps) converges for only 0-40% of the test points, so G_a is a lower bound,
# tightest for DMaaPx; normal training's G_a is the most underestimated, which makes the
# "DMaaPx smallest G_a" result conservative. Differences from the paper in magnitude come from the
# 60× smaller training set (a VAE on 1000 images overfits far more) and the weaker DM.
#
# **How firm are the Fashion-MNIST verdicts?** With one seed, not very. The same settings trained on
# one torch thread instead of two (commit 77c3d0b, reverted; only the summation order of matrix
# products differs) gave Fashion-MNIST G_a 113 / 62 / 50 / 55, so Aug.Naive, not DMaaPx, had the
# smallest G_a, and DMaaPx's test ELBO peaked at epoch 290 (663) and ended 6.6 nats lower, more than
# DROP_TOLERANCE: those two claims failed there. Its G_g ranking (471 / 48 / 250 / 277), its test
# ELBO beating normal training's (657 vs 649) and all four BinaryMNIST claims held in both runs. The
# `paper` profile's 3 seeds are the way to settle the two fragile ones.
