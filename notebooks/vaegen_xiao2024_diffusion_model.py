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
# # Paper A's diffusion model: samples, memorization check, early vs final DM
#
# Xiao, Zenn & Bamler 2024 ("A Note on Generalization in VAEs", App. D and Algorithm 2) train their
# VAEs on samples of a diffusion model (DM) that was trained on the VAE's own training set
# ("DMaaPx"). This notebook is step 1 of that pipeline for the `xiao2024_*` notebooks: it loads (or
# retrains) the DMs for BinaryMNIST and FashionMNIST, generates the start of the **sample banks** the
# VAE notebooks read (same bank, same settings: they only extend it), and checks the samples:
#
# - a grid of samples next to the training images;
# - **memorization check**: the distance from each sample to its nearest training image, compared
#   with the same distance for real test images (a DM that copies its training set puts samples at
#   distance ~0);
# - **early vs final DM** (the paper's open question of how the DM's quality changes the gains): the
#   BinaryMNIST DM after 750 and after 3000 training steps, by two simple measures (distance to
#   held-out test digits; fraction of samples with a plausible amount of ink) and the loss curve.
#
# Our notes on paper A list no figure of its DM samples to match (App. D.3 reports a
# real-vs-synthetic classifier test on CIFAR-10), so this is a project notebook (`vaegen_` prefix,
# which also makes `run_all.sh` run it before the `xiao2024_*` notebooks).
#
# **What was scaled down, and why.** Paper A trains an EDM (Karras et al. 2022) on all 60,000
# images for about a day on 8 A100 GPUs and samples it with 18 Heun steps (35 network evaluations).
# Here (cpu profile) the DM is a 1.05 M-parameter UNet without attention (`diffusion.cpu_config()`),
# trained with the DDPM noise-prediction loss on the **1000** training images the cpu-profile VAEs
# use, for 3000 steps of batch 128 in bf16 (about 1 s per step on one core of the 2-core machine:
# 55 min for BinaryMNIST, 50 min for FashionMNIST), and sampled with **20 DDIM steps** (deterministic,
# one seed per image).
# That training is too long for a notebook, so the repository ships the trained weights
# (`checkpoints/xiao2024/`, 4.2 MB each, SHA-256-checked, with `provenance.json` holding the exact
# call that reproduces them); set `RETRAIN = True` to train them here instead
# (`vaegen_utils.synthetic.train_pretrained`). The `paper` profile retrains: our UNet (not EDM,
# which is not reproducible here) on all 60,000 images for 50,000 steps, sampled with the paper's
# 18-step Heun sampler (35 network evaluations).
#
# Runtime (cpu): 117 s with the sample banks cached (2 cores shared with other jobs, load average ~8);
# on a first run the 2000-image banks cost about 2 CPU-minutes more and the 250-image DDIM-50 check
# banks about 1 (the DMs are loaded, not trained).

# %% tags=["parameters"]
from vaegen_utils.profiles import current_profile

PROFILE = current_profile()  # smoke | cpu | paper: env VAEGEN_PROFILE (default cpu) or papermill -p PROFILE
RETRAIN = None  # True: train the DMs here (~1 h per model); False: load checkpoints/xiao2024/; None: the profile's (paper: True)
N_SAMPLES = None  # samples per DM checked here (the banks' first images); None: the profile's
SEED = 0  # seeds the NN-distance subsamples (the DM samples have the bank's own seed)
NOT_COPY_RATIO = 0.5  # claim: median sample-to-train NN distance of plausible samples at least this times that of test images
NEAR_COPY_MAX = 0.05  # claim: at most this fraction of samples nearer to train than the test images' 1st percentile

# %% [markdown]
# ## Setup
#
# `synthetic.dm_notebook_settings` holds what this notebook trains, samples and checks per profile;
# its bank is `synthetic.bank_settings(PROFILE)`, the one the xiao2024 VAE notebooks read.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from vaegen_utils import data, diffusion, notebook, synthetic
from vaegen_utils.claims import not_copies
from vaegen_utils.figures import sample_grid
from vaegen_utils.results import Claim

S = synthetic.dm_notebook_settings(PROFILE, retrain=RETRAIN, n_samples=N_SAMPLES, seed=SEED)
run = notebook.start("vaegen_xiao2024_diffusion_model", PROFILE, seed=S.seed)
BANK = S.bank.sample_options()  # sampler, steps, seed, precision of the shared bank
print(f"profile {PROFILE}: {'retrain' if S.retrain else 'load the shipped'} DMs; n_train={S.n_train}; "
      f"bank {BANK}; {S.n_samples} samples per DM checked")

# %% [markdown]
# ## The diffusion models: shipped checkpoints (or retrained here)

# %%
models, records = {}, {}
for dataset, stage in S.models():
    steps = S.training_steps(stage) if S.retrain else None
    models[dataset, stage] = synthetic.diffusion_model(
        dataset, stage=stage, retrain=S.retrain, steps=steps, n_train=S.n_train, subset_seed=S.subset_seed, progress=False
    )
    if S.retrain:
        run_dir = synthetic.default_run_dir(dataset, S.n_train, S.subset_seed)
        records[dataset, stage] = {"source": str(run_dir), "step": steps,
                                   "weights_sha256": diffusion.weights_sha256(models[dataset, stage]),
                                   "loss_curve": synthetic.loss_curve(dataset, run_dir=run_dir, step=steps)}
    else:
        record = synthetic.provenance(dataset, stage=stage)
        records[dataset, stage] = {"source": synthetic.shipped_folder(dataset, stage=stage).name, "step": record["step"],
                                   "weights_sha256": record["weights_sha256"], "train_seconds": record["train_seconds"],
                                   "loss_curve": record["loss_curve"]}
for (dataset, stage), record in records.items():
    trained = f", trained in {record['train_seconds'] / 60:.0f} min" if "train_seconds" in record else ""
    print(f"{dataset:>14} {stage:>5}: step {record['step']}, weights {record['weights_sha256'][:12]}, "
          f"from {record['source']}{trained}")
if not S.retrain:
    print("\nreproduce the shipped final BinaryMNIST DM with:\n" + synthetic.provenance("binary_mnist")["python_call"])

# %% [markdown]
# ## Sample banks and the memorization / quality report
#
# The first `S.n_samples` images of each bank (generated once, then read from the cache; the VAE
# notebooks extend the same banks). BinaryMNIST samples are binarized with the training data's
# threshold (level ≥ 128), which is what the VAE sees.

# %%
train_sets = {dataset: synthetic.training_images(dataset, S.n_train, S.subset_seed) for dataset in S.datasets}
test_sets = {dataset: data.load_dataset(dataset, "test").images[:S.n_test] for dataset in S.datasets}
banks, samples, reports = {}, {}, {}
for dataset, stage in S.models():
    model = models[dataset, stage] if S.retrain else None  # None: the shipped model (recorded in the bank's source.json)
    banks[dataset, stage] = synthetic.sample_bank(dataset, S.n_samples, stage=stage, model=model, **BANK, progress=False)
    samples[dataset, stage] = banks[dataset, stage].images(0, S.n_samples, binarize=dataset == "binary_mnist")
    reports[dataset, stage] = synthetic.quality_report(
        samples[dataset, stage], train_sets[dataset], test_sets[dataset], max_queries=S.n_samples, seed=S.seed
    )

print("medians of nearest-neighbour L2 distances; 'plausible': samples whose ink is inside the training images' 1-99% range")
print(f"{'DM':>20} | {'to train: samples':>17} {'plausible':>9} {'test imgs':>9} {'near copies':>11} | "
      f"{'to test: samples':>16} {'train imgs':>10} | {'plausible ink':>13}")
for (dataset, stage), report in reports.items():
    print(f"{dataset + ' ' + stage:>20} | {report['sample_median']:>17.2f} {report['plausible_sample_median']:>9.2f} "
          f"{report['test_median']:>9.2f} {report['near_copy_fraction']:>11.3f} | {report['sample_test_median']:>16.2f} "
          f"{report['train_test_median']:>10.2f} | {report['plausible_fraction']:>13.3f}")
for key, bank in banks.items():
    print(f"{key}: {bank.folder.name}, {len(bank)} samples in the bank, {bank.describe()}")

# %% [markdown]
# ## Figure: training images, DM samples and nearest-training-neighbour distances

# %%
n_grid = min(64, S.n_samples)
fig, axes = plt.subplots(len(S.datasets), 3, figsize=(10, 3.4 * len(S.datasets)), gridspec_kw={"width_ratios": [1, 1, 1.3]},
                         layout="constrained")
axes = np.atleast_2d(axes)
for row, dataset in enumerate(S.datasets):
    report = reports[dataset, "final"]
    axes[row, 0].imshow(sample_grid(train_sets[dataset][:n_grid], 8), cmap="gray", vmin=0, vmax=1)
    axes[row, 0].set_title(f"{dataset}: training images", loc="left")
    axes[row, 1].imshow(sample_grid(samples[dataset, "final"][:n_grid], 8), cmap="gray", vmin=0, vmax=1)
    axes[row, 1].set_title(f"DM samples (step {records[dataset, 'final']['step']}, DDIM-{S.bank.steps})", loc="left")
    for ax in axes[row, :2]:
        ax.axis("off")
    ax = axes[row, 2]
    sample_d, test_d = report["sample_distances"].numpy(), report["test_distances"].numpy()
    bins = np.linspace(0, max(sample_d.max(), test_d.max()) * 1.02, 40)
    ax.hist(test_d, bins=bins, density=True, alpha=0.5, color="tab:gray", label=f"test images (median {report['test_median']:.2f})")
    ax.hist(sample_d, bins=bins, density=True, histtype="step", linewidth=1.4, color="tab:blue",
            label=f"DM samples (median {report['sample_median']:.2f})")
    ax.set_xlabel("L2 distance to the nearest training image")
    ax.set_ylabel("density")
    ax.set_title("memorization check", loc="left")
    ax.legend(loc="upper left")
run.savefig(fig)
plt.show()

# %% [markdown]
# ## Figure: the early vs the final BinaryMNIST DM
#
# Diagnostic of the grey backgrounds: with a deterministic sampler each sample is a function of its
# starting noise; if the DM has not learnt the images' overall brightness, the mean of the starting
# noise survives as a grey background. We correlate that mean with the sample's mean level in the
# top and bottom 3 rows (black in every training image).

# %%
early, final = reports[S.early_dataset, "early"], reports[S.early_dataset, "final"]
noise_mean = diffusion.initial_noise(models[S.early_dataset, "final"].config, S.bank.seed, 0, S.n_samples).flatten(1).mean(1)
background = {}
for stage in ["early", "final"]:
    grey = banks[S.early_dataset, stage].images(0, S.n_samples)  # grey levels, before binarization
    border = torch.cat([grey[..., :3, :].flatten(1), grey[..., -3:, :].flatten(1)], dim=1).mean(1)
    background[stage] = {"grey_background_fraction": float((border > 0.2).double().mean()),
                         "noise_mean_border_correlation": float(torch.corrcoef(torch.stack([noise_mean, border]))[0, 1])}
    print(f"{stage} DM: {background[stage]['grey_background_fraction']:.2f} of the samples have a grey background "
          f"(mean level > 0.2 in the top/bottom 3 rows; training images: 0); correlation of that level with the "
          f"starting noise's mean: {background[stage]['noise_mean_border_correlation']:.2f}")
fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), gridspec_kw={"width_ratios": [1, 1, 1.2, 1.2]}, layout="constrained")
for ax, stage in zip(axes[:2], ["early", "final"]):
    ax.imshow(sample_grid(samples[S.early_dataset, stage][:n_grid], 8), cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"{stage} DM (step {records[S.early_dataset, stage]['step']})", loc="left")
    ax.axis("off")
ax = axes[2]
distances = {"early DM samples": early["sample_test_distances"], "final DM samples": final["sample_test_distances"],
             "training images": final["train_test_distances"]}
bins = np.linspace(0, max(float(value.max()) for value in distances.values()) * 1.02, 40)
for (label, values), color in zip(distances.items(), ["tab:orange", "tab:blue", "tab:gray"]):
    ax.hist(values.numpy(), bins=bins, density=True, histtype="step", linewidth=1.3, color=color,
            label=f"{label} (median {float(values.double().median()):.2f})")
ax.set_xlabel("L2 distance to the nearest test image")
ax.set_ylabel("density")
ax.set_title("closeness to unseen data", loc="left")
ax.legend(loc="upper left", fontsize=7)
ax = axes[3]
for dataset, color in zip(S.datasets, ["tab:blue", "tab:green"]):
    curve = records[dataset, "final"]["loss_curve"]
    if curve and curve["step"]:
        ax.plot(curve["step"], curve["mean_loss"], color=color, label=dataset)
for stage, style in [("early", ":"), ("final", "--")]:
    ax.axvline(records[S.early_dataset, stage]["step"], color="black", linestyle=style, linewidth=0.8)
ax.set_yscale("log")
ax.set_xlabel("DM training step")
ax.set_ylabel("noise-prediction MSE (50-step means)")
ax.set_title("DM training loss (lines: early, final)", loc="left")
ax.legend(loc="upper right")
run.savefig(fig, "vaegen_xiao2024_diffusion_early_vs_final")
plt.show()

# %% [markdown]
# ## Sampler check: DDIM with the bank's steps vs `check_steps` steps on the same seeds
#
# Sampling cost is proportional to the number of steps. The cpu bank uses 20 DDIM steps; this
# compares its first images with the same seeds sampled with more steps (a small cached bank).

# %%
check = {}
for dataset in S.datasets:
    more = synthetic.sample_bank(dataset, S.n_check, **{**BANK, "steps": S.check_steps}, model=models[dataset, "final"] if S.retrain else None)
    binary = dataset == "binary_mnist"
    few_images = banks[dataset, "final"].images(0, S.n_check, binarize=binary)
    more_images = more.images(0, S.n_check, binarize=binary)
    few_report = synthetic.quality_report(few_images, train_sets[dataset], test_sets[dataset], max_queries=S.n_check, seed=S.seed)
    more_report = synthetic.quality_report(more_images, train_sets[dataset], test_sets[dataset], max_queries=S.n_check, seed=S.seed)
    paired = (banks[dataset, "final"].images(0, S.n_check) - more.images(0, S.n_check)).flatten(1).norm(dim=1)
    speed = {}
    for steps, bank in [(S.bank.steps, banks[dataset, "final"]), (S.check_steps, more)]:
        first = bank.manifest["chunks"][0]
        speed[steps] = first["count"] / bank.manifest["seconds_per_chunk"][0] if bank.manifest["seconds_per_chunk"] else None
    check[dataset] = {
        "steps": [S.bank.steps, S.check_steps],
        "sample_test_median": [few_report["sample_test_median"], more_report["sample_test_median"]],
        "sample_train_median": [few_report["sample_median"], more_report["sample_median"]],
        "plausible_fraction": [few_report["plausible_fraction"], more_report["plausible_fraction"]],
        "paired_l2_median": float(paired.double().median()),
        "images_per_s_when_generated": [speed[S.bank.steps], speed[S.check_steps]],
    }
    print(f"{dataset}: DDIM-{S.bank.steps} vs DDIM-{S.check_steps}: NN to test {check[dataset]['sample_test_median'][0]:.2f} vs "
          f"{check[dataset]['sample_test_median'][1]:.2f}, NN to train {check[dataset]['sample_train_median'][0]:.2f} vs "
          f"{check[dataset]['sample_train_median'][1]:.2f}, plausible ink {check[dataset]['plausible_fraction'][0]:.3f} vs "
          f"{check[dataset]['plausible_fraction'][1]:.3f}; same-seed images differ by L2 {check[dataset]['paired_l2_median']:.2f} (median)")

# %% [markdown]
# ## Claims and results

# %%
claims = []
for dataset in S.datasets:
    report = reports[dataset, "final"]
    copies = not_copies(report["plausible_sample_median"], report["test_median"], report["near_copy_fraction"],
                        min_ratio=NOT_COPY_RATIO, max_near_copies=NEAR_COPY_MAX)  # plausible samples only (see quality_report)
    claims.append(Claim(
        id=f"samples_not_copies_{dataset}",
        paper="xiao2024",
        figure="App. D (our memorization check)",
        statement=(f"The {dataset} DM generates new images rather than copies of its {S.n_train or 60000} training images: "
                   "its samples are about as far from their nearest training image as real test images are"),
        reported="not measured in paper A (its DM is trained on the full training set; App. D.3 tests real vs synthetic)",
        measured={"sample_median": round(report["sample_median"], 3), "plausible_sample_median": round(report["plausible_sample_median"], 3),
                  "test_median": round(report["test_median"], 3), "ratio": round(copies["ratio"], 3),
                  "plausible_fraction": round(report["plausible_fraction"], 4), "near_copy_fraction": round(report["near_copy_fraction"], 4),
                  "test_p01": round(report["test_p01"], 3), "n_samples": S.n_samples},
        tolerance=f"ratio (plausible samples' median / test median) >= {NOT_COPY_RATIO} and near_copy_fraction <= {NEAR_COPY_MAX}",
        holds=copies["holds"],
        note=("ratio uses only samples with a plausible amount of ink, so off-manifold samples (grey backgrounds) cannot make it look "
              "good; near_copy_fraction: samples nearer to the training set than the 1st percentile of test images (0.01 expected "
              "if samples behave like test images)"),
    ))
claims.append(Claim(
    id="final_dm_closer_to_data_than_early",
    paper="xiao2024",
    figure="Fig. 16 (DM quality; here the DM side only)",
    statement=(f"The final {S.early_dataset} DM (step {records[S.early_dataset, 'final']['step']}) produces better samples than the "
               f"early one (step {records[S.early_dataset, 'early']['step']}): nearer to held-out test images and more often with a "
               "plausible amount of ink"),
    reported="Fig. 16: a DM trained on more of CIFAR-10 gives a better VAE (diminishing returns at >= 70%); DM samples are not scored",
    measured={"sample_test_median": {"early": round(early["sample_test_median"], 3), "final": round(final["sample_test_median"], 3),
                                     "training_images": round(final["train_test_median"], 3)},
              "plausible_fraction": {"early": round(early["plausible_fraction"], 4), "final": round(final["plausible_fraction"], 4)}},
    tolerance="final < early in median distance to the test set, and final > early in plausible fraction",
    holds=bool(final["sample_test_median"] < early["sample_test_median"] and final["plausible_fraction"] > early["plausible_fraction"]),
))


def summary(report: dict) -> dict:
    keys = ("sample_median", "plausible_sample_median", "test_median", "sample_p10", "test_p10", "test_p01", "near_copy_fraction",
            "sample_test_median", "train_test_median", "plausible_fraction", "ink_range")
    return {key: report[key] for key in keys}


run.finish(
    config=S.to_dict() | {"profile": PROFILE, "not_copy_ratio": NOT_COPY_RATIO, "near_copy_max": NEAR_COPY_MAX,
                          "diffusion_config": models[S.datasets[0], "final"].config.to_dict()},
    metrics={
        "models": {f"{dataset}/{stage}": {key: value for key, value in record.items() if key != "loss_curve"}
                   for (dataset, stage), record in records.items()},
        "banks": {f"{dataset}/{stage}": {"folder": bank.folder.name, "num_samples": len(bank), "key": bank.key}
                  for (dataset, stage), bank in banks.items()},
        "reports": {f"{dataset}/{stage}": summary(report) for (dataset, stage), report in reports.items()},
        "sampler_check": check,
        "background_diagnostic": background,
        "final_loss": {dataset: records[dataset, "final"]["loss_curve"]["mean_loss"][-1] for dataset in S.datasets
                       if records[dataset, "final"]["loss_curve"] and records[dataset, "final"]["loss_curve"]["mean_loss"]},
    },
    claims=claims,
)
# Sanity: samples are images in the data range, distances are finite (claims may fail in the smoke profile).
for key, images in samples.items():
    assert images.shape == (S.n_samples, 1, 28, 28) and 0.0 <= float(images.min()) <= float(images.max()) <= 1.0, key
assert all(np.isfinite(report["sample_median"]) and np.isfinite(report["test_median"]) for report in reports.values())

# %% [markdown]
# ## What this shows
#
# *(cpu profile, 2000 samples per DM; all numbers in `figures/vaegen_xiao2024_diffusion_model.json`.)*
#
# **Samples.** The final DMs, trained on only 1000 images, produce recognisable digits and clothes
# (DDIM-20). They are not copies of their training images: among the samples with a plausible
# amount of ink, the median distance to the nearest training image is 7.8 (BinaryMNIST) and 4.8
# (FashionMNIST), slightly *more* than for real test images (7.4 and 4.6), and no BinaryMNIST sample
# (3 of 2000 FashionMNIST samples) is nearer to the training set than the closest 1% of test images.
# The samples are still visibly worse than real data: only 83% (BinaryMNIST) and 66% (FashionMNIST)
# have a plausible amount of ink, and they lie farther from held-out test images (median 7.7) than
# the training images do (6.6).
#
# **Early vs final DM.** The early BinaryMNIST DM (step 750) gives a grey background to 64% of its
# samples, which the binarization turns into white blocks; after 3000 steps 10% remain. The grey
# level follows the mean of the sample's starting noise (correlation 0.92 early, 0.81 final): the DM
# has not fully learnt the images' overall brightness, and more training reduces the leak (measured
# at every checkpoint while training: 86% grey backgrounds at step 250, 61% at 750, 46% at 1750).
# More sampler steps do not remove it (DDIM-50 on the step-1000 model: as many grey backgrounds as
# DDIM-10). So the two BinaryMNIST banks differ clearly in quality (plausible ink 44% vs 83%, median
# distance to test images 10.1 vs 7.7), which is what the `xiao2024_*` notebooks need to ask how the
# DM's quality changes DMaaPx's gains.
#
# **Sampler.** 20 DDIM steps give clearly cleaner BinaryMNIST samples than 10 (fewer isolated
# speckles, which a Bernoulli VAE would have to model; plausible ink 0.81 vs 0.75 and grey
# backgrounds 11% vs 18% on the same 500 seeds; FashionMNIST: no difference) at twice the cost, so
# the cpu profile uses 20 steps; the banks of all `xiao2024_*` notebooks (40,000 samples) then take
# about a quarter of an hour on 2 cores, once. `synthetic.BANK_BY_PROFILE` sets it.
#
# **What differs from paper A:** a 1 M-parameter UNet trained with the DDPM loss instead of EDM,
# 1000 training images instead of 60,000 (the cpu-profile VAEs see the same 1000), 3000 training
# steps (~1 CPU-hour) instead of about a day on 8 A100s, and 20 deterministic DDIM steps instead of
# 18 Heun steps. No FID is computed (paper A reports none for BinaryMNIST/FashionMNIST either).
