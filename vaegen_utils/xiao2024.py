"""Paper A (Xiao, Zenn, Bamler 2024, "The Generalization Gap in VAEs Trained on Diffusion-Model Samples").

The experiments behind the `xiao2024_*` VAE notebooks, as functions of settings that return plain
data (lists of floats, one value per seed). Everything expensive goes through `vaegen_utils.cache`,
keyed by the full settings, so the notebooks share one set of trained models and a rerun takes
seconds.

- `Study`: one data set + likelihood + model size + training length, trained with several seeds at
  once (one stacked ensemble; paper A averages 3 seeds).
- `train_method(study, method)`: the four training methods of paper A Sec. 5 / Table 7 —
  "normal" (Algorithm 1), "dmaapx" (Algorithm 2: a fresh block of N = |D_train| diffusion-model
  samples every effective epoch, cycling through k blocks of a pre-sampled bank, k = `bank_blocks`),
  "aug_naive" and "aug_tuned" (the StyleGAN2-ADA operations of Tables 8-9, `vaegen_utils.augment`).
  One *effective epoch* is N training images whatever their source (paper A Sec. 5.1).
- `gap_curves(study, method, fit)`: train and test ELBO at every checkpoint, the generalization gap
  G_g = ELBO(real D_train) - ELBO(D_test) (Eq. 3; always on the *real* training set, App. B.5) and
  the amortization gap G_a = ELBO*(D_test) - ELBO(D_test) (Eq. 4) with a per-point optimal
  Gaussian q* (Cremer et al. 2018, `estimators.amortization_gap`) on a test subset.
- `robustness(study, method, attack)`: the unsupervised encoder attack and the robustness gap G_r
  (Eq. 5, Table 2) at the final checkpoint (`vaegen_utils.robustness`).

Images are zero-padded from 28×28 to 32×32, as in the paper (the MLP's input is 1024 = 32², App. B.1;
the diffusion model works at 28×28 and its samples are padded the same way, so real and synthetic
images look alike to the VAE). BinaryMNIST diffusion samples are binarized at 0.5 (paper A does not
say how it binarized them; UNVERIFIED).

What is not here: plotting and claims (the notebooks), the training loop (`training`), the
diffusion model and its bank (`diffusion`, `synthetic`). The profiles change sizes only.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Sequence

import torch

from . import augment, data, diffusion, estimators, models, synthetic, training
from . import cache as vcache
from . import robustness as robust
from .checks import check_int
from .estimators import (
    PerPointSettings,  # the per-point q* settings (Cremer et al. 2018), shared with zhang2022
)
from .seeding import make_generator

# Salt of every key made here: bump it when a change below changes what a setting produces.
CODE_VERSION = "xiao2024-1"

METHODS = ("normal", "dmaapx", "aug_naive", "aug_tuned")
METHOD_LABELS = {"normal": "Normal training", "dmaapx": "DMaaPx", "aug_naive": "Aug.Naive", "aug_tuned": "Aug.Tuned"}
IMAGE_SIZE = 32  # paper A App. B.1: MLP input 1024 = 32 x 32
TEST_SIZE = 10_000

# Data set variants of paper A Table 3: (data set, likelihood, likelihood options).
VARIANTS = {
    "binary_mnist": ("binary_mnist", "bernoulli", {}),
    # Paper A does not state the Gaussian's fixed sigma (UNVERIFIED); 0.1 is the library default.
    "fashion_mnist": ("fashion_mnist", "fixed_variance_gaussian", {"sigma": 0.1}),
    # Fig. 12: mixture of logistics; the number of components is not stated (UNVERIFIED).
    "fashion_mnist_mol": ("fashion_mnist", "discretized_mixture_of_logistics", {"n_components": 5}),
    # Residual conv net (Tables 4-6) with a mixture of logistics; components not stated (UNVERIFIED;
    # paper B's code for the same net uses 10). latent_dim = 64 m_z, hidden_width = n_c.
    "cifar10": ("cifar10", "discretized_mixture_of_logistics", {"n_components": 10}),
}
# Data sets whose diffusion model is shipped in checkpoints/xiao2024/; the others train their DM first
# (`synthetic.train_pretrained`, about an hour of CPU for 3000 steps) when DMaaPx needs it.
SHIPPED_DM = ("binary_mnist", "fashion_mnist")
# BatchNorm couples the images of a batch, so the residual net's seeds cannot be stacked into one
# ensemble; each seed of these variants is its own cached run.
PER_SEED_VARIANTS = ("cifar10",)

# Paper A Table 7 (gaps at the end of training, nats; G_r is an MS-SSIM difference).
TABLE7 = {
    "binary_mnist": {
        "normal": {"G_g": 25.76, "G_a": 20.32, "G_r": 0.49},
        "dmaapx": {"G_g": 0.78, "G_a": 7.01, "G_r": 0.50},
        "aug_tuned": {"G_g": 8.16, "G_a": 9.34, "G_r": 0.79},
        "aug_naive": {"G_g": 6.38, "G_a": 8.16, "G_r": 0.74},
    },
    "fashion_mnist": {
        "normal": {"G_g": 1234.50, "G_a": 1135.89, "G_r": 0.39},
        "dmaapx": {"G_g": 136.57, "G_a": 593.39, "G_r": 0.31},
        "aug_tuned": {"G_g": 614.93, "G_a": 815.52, "G_r": 0.21},
        "aug_naive": {"G_g": 500.33, "G_a": 729.83, "G_r": 0.11},
    },
    "cifar10": {
        "normal": {"G_g": 841.54, "G_a": 835.86, "G_r": 0.41},
        "dmaapx": {"G_g": 5.44, "G_a": 288.82, "G_r": 0.30},
        "aug_tuned": {"G_g": 94.28, "G_a": 328.08, "G_r": 0.35},
        "aug_naive": {"G_g": 228.05, "G_a": 390.25, "G_r": 0.35},
    },
    # Fig. 12 (generalization gaps only).
    "fashion_mnist_mol": {
        "normal": {"G_g": 216.0},
        "dmaapx": {"G_g": 21.0},
        "aug_tuned": {"G_g": 118.0},
        "aug_naive": {"G_g": 79.0},
    },
}



@dataclass(frozen=True)
class BankSettings:
    """Which diffusion model and sampler make the synthetic data (`synthetic.sample_bank`).

    stage     "final" or "early" shipped checkpoint (the early one answers the paper's open question
              of how DM quality changes the gains; binary_mnist only).
    sampler   "ddim" (deterministic; paper A: EDM's Heun sampler with 18 steps, App. D).
    steps     sampler steps.
    seed      seed of the initial noise (sample i always gets the same noise, so banks extend).
    dm_steps  training steps of a DM that is not shipped (CIFAR-10): trained once into the cache on
              the study's own training images (paper A App. D: the DM sees only D_train).
    """

    stage: str = "final"
    sampler: str = "ddim"
    steps: int = 20
    seed: int = 0
    precision: str = "bfloat16"
    dm_steps: int = 3000

    def __post_init__(self) -> None:
        if self.stage not in ("final", "early"):
            raise ValueError(f"stage must be 'final' or 'early' (the shipped diffusion checkpoints), got {self.stage!r}")
        check_int("steps", self.steps, minimum=1)
        check_int("seed", self.seed, minimum=0)
        check_int("dm_steps", self.dm_steps, minimum=1)

    def with_changes(self, **changes) -> "BankSettings":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Study:
    """Paper A's VAE experiment on one data set (Sec. 5, App. B).

    variant          key of VARIANTS: "binary_mnist" (Bernoulli), "fashion_mnist" (fixed-variance
                     Gaussian) or "fashion_mnist_mol" (mixture of logistics, Fig. 12).
    n_train          real training images N (a seeded subset; the diffusion model saw the same ones).
    n_test           the first n_test test images (curves and G_g).
    seeds            one ensemble member per seed (paper: 3 seeds).
    epochs           effective epochs (paper: 1000).
    eval_every       train/test ELBO every k epochs (the curves).
    checkpoint_every a saved model every k epochs (G_a is computed on them; paper: every 100).
    bank_blocks      k: DMaaPx cycles through k blocks of N bank samples (paper: k = T, i.e. fresh data
                     every epoch; Fig. 4 shows k = 10 is as good).
    latent_dim, hidden_width  model size (paper: 16 and 512; the overparameterization sweeps vary them).
    """

    variant: str
    n_train: int
    n_test: int
    seeds: tuple[int, ...]
    epochs: int
    eval_every: int
    checkpoint_every: int
    bank_blocks: int = 10
    bank: BankSettings = BankSettings()
    subset_seed: int = 0
    latent_dim: int = 16
    hidden_width: int = 512
    batch_size: int = 100  # not stated in paper A (UNVERIFIED); paper B's MNIST setting
    learning_rate: float = 1e-3  # not stated in paper A (UNVERIFIED); Adam 1e-3 for the MLP (papers.md §7)
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)} (paper A Table 3), got {self.variant!r}")
        check_int("n_train", self.n_train, minimum=1, maximum=60_000)
        check_int("n_test", self.n_test, minimum=1, maximum=TEST_SIZE)
        seeds = tuple(self.seeds) if isinstance(self.seeds, (list, tuple)) else ()
        if not seeds or len(set(seeds)) != len(seeds) or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct ints >= 0 (one model per seed), got {self.seeds!r}")
        object.__setattr__(self, "seeds", seeds)
        check_int("epochs", self.epochs, minimum=1)
        check_int("eval_every", self.eval_every, minimum=1, maximum=self.epochs)
        check_int("checkpoint_every", self.checkpoint_every, minimum=1, maximum=self.epochs)
        check_int("bank_blocks", self.bank_blocks, minimum=1, hint="k of Algorithm 2: blocks of n_train bank samples")
        check_int("latent_dim", self.latent_dim, minimum=1)
        check_int("hidden_width", self.hidden_width, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1, maximum=self.n_train, hint="at most n_train")
        if not isinstance(self.bank, BankSettings):
            raise ValueError(f"bank must be a BankSettings, got {type(self.bank).__name__}")
        if self.variant == "cifar10" and self.latent_dim % 64:
            raise ValueError(
                f"cifar10: latent_dim must be 64 * m_z (m_z latent channels on the 8x8 grid, paper A Table 4), got {self.latent_dim}"
            )

    @property
    def dataset(self) -> str:
        return VARIANTS[self.variant][0]

    @property
    def likelihood(self) -> str:
        return VARIANTS[self.variant][1]

    @property
    def binary(self) -> bool:
        return self.dataset == "binary_mnist"

    def with_changes(self, **changes) -> "Study":
        return dataclasses.replace(self, **changes)

    def checkpoint_epochs(self) -> list[int]:
        return sorted(set(range(self.checkpoint_every, self.epochs + 1, self.checkpoint_every)) | {self.epochs})

    def eval_epochs(self) -> list[int]:
        return sorted(set(range(self.eval_every, self.epochs + 1, self.eval_every)) | set(self.checkpoint_epochs()))

    @property
    def per_seed(self) -> bool:
        """True when each seed trains as its own run (BatchNorm nets cannot be stacked)."""
        return self.variant in PER_SEED_VARIANTS

    def model_config(self) -> models.MLPVAEConfig | models.ResidualConvVAEConfig:
        if self.variant == "cifar10":  # paper A Tables 4-6: m_z = latent_dim / 64, n_c = hidden_width
            return models.xiao2024_resnet(
                self.latent_dim // 64, self.hidden_width, likelihood=self.likelihood, likelihood_options=VARIANTS[self.variant][2]
            )
        base = models.xiao2024_mlp(self.likelihood, likelihood_options=VARIANTS[self.variant][2])
        return dataclasses.replace(base, latent_dim=self.latent_dim, hidden_sizes=(self.hidden_width,) * len(base.hidden_sizes))

    def train_config(self, seed: int | None = None) -> training.TrainConfig:
        """The ensemble's config, or (seed given) the config of that seed's own run (per-seed variants)."""
        return training.TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=self.seeds[0] if seed is None else seed,  # the shared batch order
            member_seeds=list(self.seeds) if seed is None else None,
            checkpoint_epochs=self.checkpoint_epochs(),
            eval_epochs=self.eval_epochs(),
            num_eval_samples=1,
            precision=self.precision,
        )

    def bank_size(self, blocks: int | None = None) -> int:
        return (self.bank_blocks if blocks is None else blocks) * self.n_train

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "seeds": list(self.seeds), "likelihood": self.likelihood}


def available_variants(variants: Sequence[str]) -> list[str]:
    """The variants whose data set can be had here; prints one line for each that cannot (CIFAR-10 has
    no offline source: it runs wherever it can be downloaded or is already in the data cache)."""
    available = data.available_datasets()
    kept = []
    for variant in variants:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)} (paper A Table 3), got {variant!r}")
        dataset = VARIANTS[variant][0]
        if available.get(dataset, False):
            kept.append(variant)
        else:
            print(f"{variant}: skipped, the {dataset} data are not in the data cache and cannot be downloaded here "
                  f"(see README 'Data'; `data.load_dataset({dataset!r}, 'train')` with network access caches them once)")
    return kept


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS} (paper A Table 7), got {method!r}")
    return method


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _images(dataset: str, n_train: int, subset_seed: int, n_test: int) -> tuple[torch.Tensor, torch.Tensor]:
    train = data.load_dataset(dataset, "train", n_train=n_train, subset_seed=subset_seed).images  # (N, 1, 28, 28)
    test = data.load_dataset(dataset, "test").images[:n_test]
    return diffusion.pad_images(train, IMAGE_SIZE), diffusion.pad_images(test, IMAGE_SIZE)  # (N, 1, 32, 32)


def load_images(study: Study) -> tuple[torch.Tensor, torch.Tensor]:
    """(real training images, the first n_test test images), zero-padded to `(N, 1, 32, 32)` float32."""
    return _images(study.dataset, study.n_train, study.subset_seed, study.n_test)


def bank(study: Study, blocks: int | None = None, *, progress: bool | None = None) -> diffusion.SampleBank:
    """The diffusion-model sample bank with at least `blocks` x n_train samples (generated once, cached)."""
    settings = study.bank
    model = None
    if study.dataset not in SHIPPED_DM:  # no shipped DM (CIFAR-10): train it on the study's own images
        model = synthetic.diffusion_model(
            study.dataset, retrain=True, steps=settings.dm_steps, n_train=study.n_train, subset_seed=study.subset_seed,
            progress=progress,
        )
    return synthetic.sample_bank(
        study.dataset,
        study.bank_size(blocks),
        model=model,
        stage=settings.stage,
        sampler=settings.sampler,
        steps=settings.steps,
        seed=settings.seed,
        precision=settings.precision,
        progress=progress,
    )


def _data_source(study: Study, method: str, progress: bool | None):
    if method != "dmaapx":
        return None
    return bank(study, progress=progress).data_source(
        study.n_train, num_blocks=study.bank_blocks, binarize=study.binary, pad_to=IMAGE_SIZE
    )


def _batch_transform(study: Study, method: str):
    colour = study.dataset == "cifar10"
    if method == "aug_naive":  # Table 8 (all data sets); natural images are mirrored at the border
        return augment.aug_naive(binary=study.binary, padding_mode="reflection" if colour else "zeros")
    if method == "aug_tuned":  # Table 9 (MNIST-type) or Table 10 (CIFAR-10)
        return augment.aug_tuned("cifar10" if colour else "mnist", binary=study.binary)
    return None


def _bank_spec(study: Study) -> dict:
    """The bank settings that decide DMaaPx's data (dm_steps only matters when the DM is trained here)."""
    spec = dataclasses.asdict(study.bank)
    if study.dataset in SHIPPED_DM:
        spec.pop("dm_steps")
    return spec


# --------------------------------------------------------------------------------------------
# Training (Algorithms 1 and 2) and learning curves
# --------------------------------------------------------------------------------------------


def _arguments(study: Study, method: str, progress: bool | None = None, seed: int | None = None) -> dict:
    """train_cached's arguments: the seed ensemble, or (seed given) one seed's own run."""
    check_method(method)
    train_images, test_images = load_images(study)
    return {
        "model_config": [study.model_config()] * len(study.seeds) if seed is None else study.model_config(),
        "train_config": study.train_config(seed),
        "data_spec": {
            "dataset": study.dataset,
            "n_train": study.n_train,
            "subset_seed": study.subset_seed,
            "padded_to": IMAGE_SIZE,
            "test": f"first {study.n_test} test images",
            "method": method,
            # The bank settings matter only to DMaaPx; other methods keep their cache entries when they change.
            "bank": _bank_spec(study) if method == "dmaapx" else None,
            "bank_blocks": study.bank_blocks if method == "dmaapx" else None,
        },
        "images": train_images,
        "eval_sets": {"train": train_images, "test": test_images},
        "model_seed": list(study.seeds) if seed is None else seed,
        "data_source": _data_source(study, method, progress),
        "batch_transform": _batch_transform(study, method),
    }


def _run_name(study: Study, method: str) -> str:
    extra = f"-k{study.bank_blocks}-{study.bank.stage}" if method == "dmaapx" else ""
    return f"xiao2024-{study.variant}-{method}{extra}-z{study.latent_dim}-h{study.hidden_width}-e{study.epochs}"


def _seed_runs(study: Study) -> list[int | None]:
    """[None] (one stacked ensemble of all seeds) or one entry per seed (per-seed variants)."""
    return list(study.seeds) if study.per_seed else [None]


@functools.lru_cache(maxsize=64)
def run_key(study: Study, method: str) -> str:
    """Cache key of the (study, method) training run(s); part of every key derived from them."""
    keys = [_run_key(study, method, seed) for seed in _seed_runs(study)]
    return keys[0] if len(keys) == 1 else vcache.config_key({"per_seed_runs": keys})


def _run_key(study: Study, method: str, seed: int | None) -> str:
    arguments = _arguments(study, method, seed=seed)
    return vcache.config_key(
        vcache.training_key_config(
            arguments["model_config"],
            arguments["train_config"],
            arguments["data_spec"],
            arguments["images"],
            arguments["eval_sets"],
            model_seed=arguments["model_seed"],
            data_source=arguments["data_source"],
            batch_transform=arguments["batch_transform"],
        )
    )


def train_method(
    study: Study, method: str, *, cache: vcache.RunCache | None = None, progress: bool | None = None
) -> list[training.TrainResult]:
    """Train (or load) `study` with `method`: [the seed ensemble's TrainResult], or one per seed."""
    return [
        vcache.train_cached(
            **_arguments(study, method, progress, seed=seed),
            cache=cache,
            progress=progress,
            name=_run_name(study, method) + ("" if seed is None else f"-seed{seed}"),
        )
        for seed in _seed_runs(study)
    ]


def _checkpoint_runs(study: Study, method: str, epoch: int, cache: vcache.RunCache | None) -> list[torch.nn.Module]:
    """The saved model of every run at `epoch`: [the seed ensemble] or one model per seed."""
    if epoch not in study.checkpoint_epochs():
        raise ValueError(f"epoch {epoch} has no checkpoint; checkpoints: {study.checkpoint_epochs()}")
    return [training.load_checkpoint(result.run_dir, epoch) for result in train_method(study, method, cache=cache)]


def load_checkpoint(study: Study, method: str, epoch: int, *, cache: vcache.RunCache | None = None) -> list[torch.nn.Module]:
    """The models saved at `epoch`, one per seed (ensembles are split into their members)."""
    return [member for model in _checkpoint_runs(study, method, epoch, cache) for member in models_of(model)]


def learning_curves(study: Study, method: str, *, cache: vcache.RunCache | None = None) -> dict:
    """{"epochs": [E], "train_elbo": [E][M], "test_elbo": [E][M], "seconds": float}: ELBO on the real sets."""
    results = train_method(study, method, cache=cache)
    curves = {"epochs": [row["epoch"] for row in results[0].rows("test")]}
    for split in ("train", "test"):
        per_run = [[_as_list(row["elbo"]) for row in result.rows(split)] for result in results]
        curves[f"{split}_elbo"] = [sum(rows, []) for rows in zip(*per_run)]  # [E][M]: the seeds side by side
    curves["seconds"] = sum(result.train_seconds for result in results)
    return curves


def _as_list(value) -> list[float]:
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


# --------------------------------------------------------------------------------------------
# Gaps: G_g (Eq. 3) and G_a (Eq. 4) at every checkpoint
# --------------------------------------------------------------------------------------------



def gaps_at_checkpoint(
    study: Study, method: str, epoch: int, fit: PerPointSettings, *, cache: vcache.RunCache | None = None
) -> dict:
    """G_a on the first fit.n_points test images at one checkpoint, per seed.

    Returns {"amortized_elbo", "optimal_elbo", "G_a", "fraction_converged"}: lists over seeds (nats).
    """
    cache = cache or vcache.RunCache()
    if fit.n_points > study.n_test:
        raise ValueError(f"fit.n_points={fit.n_points} exceeds the study's n_test={study.n_test}; lower n_points")
    key = {
        "kind": "xiao2024-amortization-gap",
        "code_version": CODE_VERSION,
        "run": run_key(study, method),
        "checkpoint_epoch": epoch,
        "fit": dataclasses.asdict(fit),
    }

    def compute() -> dict:
        x = load_images(study)[1][: fit.n_points]  # (n_points, C, 32, 32)
        out = {name: [] for name in ("amortized_elbo", "optimal_elbo", "G_a", "fraction_converged")}
        for model in _checkpoint_runs(study, method, epoch, cache):  # the seed ensemble, or one model per seed
            gap = estimators.amortization_gap(
                model, x, eval_samples=fit.eval_samples, generator=make_generator(fit.seed), **fit.fit_options()
            )  # fields (M, n_points) for an ensemble, (n_points,) for one model
            out["amortized_elbo"] += gap.elbo_amortized.double().mean(dim=-1).reshape(-1).tolist()
            out["optimal_elbo"] += gap.elbo_optimal.double().mean(dim=-1).reshape(-1).tolist()
            out["G_a"] += gap.gap.double().mean(dim=-1).reshape(-1).tolist()
            out["fraction_converged"] += gap.fit.converged.double().mean(dim=-1).reshape(-1).tolist()
        return out

    return cache.cached_result("amortization_gap", key, compute, folder=f"xiao2024-gap-{_run_name(study, method)}-e{epoch}")


def gap_curves(study: Study, method: str, fit: PerPointSettings | None, *, cache: vcache.RunCache | None = None) -> dict:
    """Train/test ELBO, G_g and (if fit is given) G_a at every checkpoint epoch; lists [C][M] over seeds."""
    curves = learning_curves(study, method, cache=cache)
    by_epoch = {epoch: index for index, epoch in enumerate(curves["epochs"])}
    epochs = study.checkpoint_epochs()
    train = [curves["train_elbo"][by_epoch[e]] for e in epochs]
    test = [curves["test_elbo"][by_epoch[e]] for e in epochs]
    out = {
        "epochs": epochs,
        "train_elbo": train,
        "test_elbo": test,
        "G_g": [[a - b for a, b in zip(tr, te)] for tr, te in zip(train, test)],
    }
    if fit is not None:
        rows = [gaps_at_checkpoint(study, method, epoch, fit, cache=cache) for epoch in epochs]
        for name in rows[0]:
            out[name] = [row[name] for row in rows]
    return out


# --------------------------------------------------------------------------------------------
# Robustness: G_r (Eq. 5) at the final checkpoint
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttackSettings:
    """Paper A Table 2 (MNIST-type data): 50 reference images, 10 restarts, 50 steps, lr 1.0, delta 0.1."""

    n_reference: int = 50
    restarts: int = 10
    steps: int = 50
    learning_rate: float = 1.0
    radius: float = 0.1
    seed: int = 0
    window_size: int = 14  # Kuzina et al.'s MS-SSIM window (papers.md A.4)

    def __post_init__(self) -> None:
        for name in ("n_reference", "restarts", "steps"):
            check_int(name, getattr(self, name), minimum=1)
        if not self.radius > 0:
            raise ValueError(f"radius (the L_inf budget delta) must be positive, got {self.radius!r}")


@functools.lru_cache(maxsize=4)
def _test_labels(dataset: str, n_test: int) -> torch.Tensor | None:
    labels = data.load_dataset(dataset, "test").labels
    return None if labels is None else labels[:n_test]


def _reference_indices(dataset: str, n_test: int, n_reference: int, seed: int) -> torch.Tensor:
    """Reference test images stratified by class, as Kuzina et al.'s attack code picks them."""
    return robust.reference_images(torch.empty(n_test, 0), _test_labels(dataset, n_test), n_reference, seed=seed)


def robustness(
    study: Study, method: str, attack: AttackSettings, *, epoch: int | None = None, cache: vcache.RunCache | None = None
) -> dict:
    """Attack every seed's encoder at `epoch` (default: the last); G_r and its parts per seed.

    Returns {"G_r", "input_ms_ssim", "reconstruction_ms_ssim", "skl", "max_abs_epsilon"}: lists over seeds.
    """
    cache = cache or vcache.RunCache()
    epoch = study.epochs if epoch is None else epoch
    if attack.n_reference > study.n_test:
        raise ValueError(f"attack.n_reference={attack.n_reference} exceeds n_test={study.n_test}")
    key = {
        "kind": "xiao2024-robustness",
        "code_version": CODE_VERSION,
        "run": run_key(study, method),
        "checkpoint_epoch": epoch,
        "attack": dataclasses.asdict(attack),
    }

    def compute() -> dict:
        seed_models = load_checkpoint(study, method, epoch, cache=cache)
        indices = _reference_indices(study.dataset, study.n_test, attack.n_reference, attack.seed)
        x = load_images(study)[1][indices]  # (n_reference, 1, 32, 32)
        out = {name: [] for name in ("G_r", "input_ms_ssim", "reconstruction_ms_ssim", "skl", "max_abs_epsilon")}
        for member_model in seed_models:
            result = robust.encoder_attack(
                member_model, x, radius=attack.radius, steps=attack.steps, restarts=attack.restarts,
                learning_rate=attack.learning_rate, seed=attack.seed,
            )
            gap = robust.robustness_gap(member_model, x, result, seed=attack.seed, window_size=attack.window_size)
            out["G_r"].append(gap.gap)
            out["input_ms_ssim"].append(gap.mean_input_ms_ssim)
            out["reconstruction_ms_ssim"].append(gap.mean_reconstruction_ms_ssim)
            out["skl"].append(float(result.objective.mean()))
            out["max_abs_epsilon"].append(float(result.epsilon.abs().max()))
        return out

    return cache.cached_result("robustness", key, compute, folder=f"xiao2024-robust-{_run_name(study, method)}-e{epoch}")


def models_of(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The members of an ensemble as standalone models (or [model] for a single model)."""
    if training.num_members(model) is None:
        return [model]
    return [model.member(index) for index in range(training.num_members(model))]


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------
