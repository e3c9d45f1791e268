"""Paper A (Xiao, Zenn, Bamler 2024, "The Generalization Gap in VAEs Trained on Diffusion-Model Samples").

The experiments behind the `xiao2024_*` VAE notebooks, as functions of settings that return plain
data (lists of floats, one value per seed). Everything expensive goes through `vaegen_utils.cache`,
keyed by the full settings, so the notebooks share one set of trained models and a rerun takes
seconds.

Settings per profile are written once, here (tables `STUDY_BY_PROFILE`, `FIT_BY_PROFILE`,
`ATTACK_BY_PROFILE`, ...; the bank's in `synthetic.BANK_BY_PROFILE`), and built by:
- `study(profile, variant, **overrides)`: the named run every notebook shares (a `Study`);
- `bank_settings(profile, stage)` (from `synthetic`), `fit_settings(profile)` (G_a's q* fit),
  `attack_settings(profile, variant)` (G_r's attack, Table 2);
- one builder per notebook, `fig02_settings`, `fig02c_settings`, `fig04_settings`, `fig07_settings`:
  a frozen record of everything that notebook computes (`runs()` lists its training runs,
  `to_dict()` goes into its results JSON). Overrides set to None keep the profile's value.

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

What is not here: plotting (the notebooks), the rules behind the claims (`claims`), the training
loop (`training`), the diffusion model and its bank (`diffusion`, `synthetic`). The profiles change
sizes only.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from . import augment, data, diffusion, estimators, models, profiles, synthetic, training
from . import cache as vcache
from . import robustness as robust
from .checks import check_choice, check_fields, check_int, check_number, check_sequence
from .estimators import (
    PerPointSettings,  # the per-point q* settings (Cremer et al. 2018), shared with zhang2022
)
from .seeding import make_generator
# The sample bank's settings live with the diffusion models (`synthetic`); re-exported here because
# every DMaaPx run names its bank (and the gap decomposition imports BankSettings from here).
from .synthetic import BankSettings, bank_settings

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
    learning_rate: float = 1e-3  # not stated in paper A (UNVERIFIED); Adam's usual 1e-3 for the MLP
    precision: str = "float32"

    def __post_init__(self) -> None:
        check_variant(self.variant)
        check_int("n_train", self.n_train, minimum=1, maximum=60_000)
        check_int("n_test", self.n_test, minimum=1, maximum=TEST_SIZE)
        seeds = check_sequence("seeds", self.seeds, lambda name, value: check_int(name, value, minimum=0), example="[0, 1, 2]")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct (one model per seed), got {list(seeds)!r}")
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


def check_variant(variant) -> str:
    """`variant` when it is a key of VARIANTS (paper A Table 3), else ValueError listing them."""
    return check_choice("variant", variant, VARIANTS, hint="the data set + likelihood variants of paper A Table 3")


def available_variants(variants: Sequence[str]) -> list[str]:
    """The variants whose data set can be had here; prints one line for each that cannot (CIFAR-10 has
    no offline source: it runs wherever it can be downloaded or is already in the data cache)."""
    available = data.available_datasets()
    kept = []
    for variant in check_sequence("variants", variants, lambda name, value: check_variant(value), example='["binary_mnist"]'):
        dataset = VARIANTS[variant][0]
        if available.get(dataset, False):
            kept.append(variant)
        else:
            print(f"{variant}: skipped, the {dataset} data are not in the data cache and cannot be downloaded here "
                  f"(see README 'Data'; `data.load_dataset({dataset!r}, 'train')` with network access caches them once)")
    return kept


def check_method(method: str) -> str:
    """`method` when it is one of METHODS (paper A Table 7), else ValueError listing them."""
    return check_choice("method", method, METHODS, hint="the training methods of paper A Table 7")


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
        study.dataset, study.bank_size(blocks), model=model, stage=settings.stage, progress=progress, **settings.sample_options()
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
    window_size: int = 14  # the MS-SSIM window of Kuzina et al. 2022's attack code, which paper A follows (App. A)

    def __post_init__(self) -> None:
        for name in ("n_reference", "restarts", "steps", "window_size"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("seed", self.seed, minimum=0)
        object.__setattr__(self, "learning_rate", check_number("learning_rate", self.learning_rate, positive=True))
        object.__setattr__(self, "radius", check_number("radius", self.radius, positive=True, hint="the L_inf budget delta"))


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
# Named runs per profile: one definition for every notebook
# --------------------------------------------------------------------------------------------
# Each table below is the only place its numbers are written. A notebook asks a builder for its
# settings (`fig02_settings(PROFILE, epochs=EPOCHS)`), so two notebooks that need the same model get
# the same Study, hence the same cache key, and a changed setting is changed once.

_STUDY_COMMON = {
    "subset_seed": 0,  # which training images form the subset (the shipped DM saw the same ones)
    "latent_dim": 16,  # paper A App. B.1: the MLP's latent of dimension 16
    "hidden_width": 512,  # paper A App. B.1: 1024 -> 512 -> 512
    "batch_size": 100,  # not stated in paper A (UNVERIFIED)
    "learning_rate": 1e-3,  # not stated in paper A (UNVERIFIED)
    "precision": "float32",
}
#: Paper A Sec. 5: all 60,000 images, 1000 effective epochs, 3 seeds, fresh DM samples every epoch
#: (k = T). The smaller profiles keep the method and shrink the data to the 1000 images the shipped DM
#: was trained on (a VAE on 1000 images overfits within tens of epochs, so the contrast shows in
#: minutes); paper keeps those 1000 images because the shipped DMs saw exactly them.
STUDY_BY_PROFILE = {
    "smoke": {**_STUDY_COMMON, "n_train": 100, "n_test": 100, "seeds": (0,), "epochs": 2, "eval_every": 1,
              "checkpoint_every": 1, "bank_blocks": 2},
    "cpu": {**_STUDY_COMMON, "n_train": 1000, "n_test": 2000, "seeds": (0,), "epochs": 300, "eval_every": 10,
            "checkpoint_every": 50, "bank_blocks": 10},
    "paper": {**_STUDY_COMMON, "n_train": 1000, "n_test": 10_000, "seeds": (0, 1, 2), "epochs": 1000, "eval_every": 10,
              "checkpoint_every": 100, "bank_blocks": 1000},
}
#: CIFAR-10's residual net (paper A Tables 4-6) in place of the MLP: m_z = 1 latent channel on the 8x8
#: grid (latent_dim = 64 m_z, the paper's default) and n_c channels (paper: 256); Adam 1e-4 is not
#: stated in paper A (paper B's code for the same net).
RESIDUAL_BY_PROFILE = {
    "smoke": {"latent_dim": 64, "hidden_width": 8, "learning_rate": 1e-4},
    "cpu": {"latent_dim": 64, "hidden_width": 32, "learning_rate": 1e-4},
    "paper": {"latent_dim": 64, "hidden_width": 256, "learning_rate": 1e-4},
}
RESIDUAL_VARIANTS = ("cifar10",)
STUDY_FIELDS = tuple(STUDY_BY_PROFILE["cpu"])  # what `study` overrides accept


def study(profile: str, variant: str, *, bank: BankSettings | None = None, **overrides) -> Study:
    """The named run of paper A's VAE on `variant` for `profile`: the Study every notebook shares.

    Overrides (None: the profile's value; unknown names are refused): n_train, n_test, seeds, epochs,
    eval_every, checkpoint_every, bank_blocks, subset_seed, latent_dim, hidden_width, batch_size,
    learning_rate, precision. `bank` defaults to `bank_settings(profile)`, the one bank of the profile.
    """
    check_variant(variant)
    check_fields("xiao2024.study override", overrides, STUDY_FIELDS)
    table = STUDY_BY_PROFILE
    if variant in RESIDUAL_VARIANTS:
        table = {name: {**values, **RESIDUAL_BY_PROFILE[name]} for name, values in STUDY_BY_PROFILE.items()}
    settings = profiles.resolve(profile, table, **overrides)
    return Study(variant=variant, bank=bank_settings(profile) if bank is None else bank, **settings)


#: The per-point q* fit behind G_a (Eq. 4; Cremer et al. 2018's plateau rule). Paper A does not state
#: its procedure: one reparameterised sample per Adam step (1e-2, started at the encoder's output),
#: windows of 50 steps, stop after 2 windows without improvement, capped at max_steps; both ELBOs
#: scored with eval_samples samples on the first n_points test images.
_FIT_COMMON = {"num_samples": 1, "learning_rate": 1e-2, "check_every": 50, "patience": 2, "seed": 0}
FIT_BY_PROFILE = {
    "smoke": {**_FIT_COMMON, "n_points": 10, "max_steps": 20, "eval_samples": 10},
    "cpu": {**_FIT_COMMON, "n_points": 200, "max_steps": 300, "eval_samples": 100},
    "paper": {**_FIT_COMMON, "n_points": 1000, "max_steps": 2000, "eval_samples": 1000},
}


def fit_settings(profile: str, **overrides) -> PerPointSettings:
    """The q* fit of G_a for `profile` (fields of `estimators.PerPointSettings`; None: the profile's)."""
    check_fields("xiao2024.fit_settings override", overrides, FIT_BY_PROFILE["cpu"])
    return PerPointSettings(**profiles.resolve(profile, FIT_BY_PROFILE, **overrides))


#: Paper A Table 2, MNIST-type data: 50 reference test images, 10 restarts, 50 projected gradient
#: steps, learning rate 1.0, delta = 0.1 (Kuzina et al. 2022's attack, App. A).
_ATTACK_COMMON = {"learning_rate": 1.0, "radius": 0.1, "seed": 0, "window_size": 14}
ATTACK_BY_PROFILE = {
    "smoke": {**_ATTACK_COMMON, "n_reference": 4, "restarts": 2, "steps": 3},
    "cpu": {**_ATTACK_COMMON, "n_reference": 50, "restarts": 10, "steps": 50},
    "paper": {**_ATTACK_COMMON, "n_reference": 50, "restarts": 10, "steps": 50},
}
#: Table 2, CIFAR-10: 20 reference images, 100 steps, delta = 0.05 (restarts and learning rate as
#: above); smoke keeps its 4 images and doubles its 3 steps.
ATTACK_COLOUR_BY_PROFILE = {
    "smoke": {"n_reference": 4, "steps": 6, "radius": 0.05},
    "cpu": {"n_reference": 20, "steps": 100, "radius": 0.05},
    "paper": {"n_reference": 20, "steps": 100, "radius": 0.05},
}


def attack_settings(profile: str, variant: str, **overrides) -> AttackSettings:
    """The encoder attack of G_r (Eq. 5) on `variant` for `profile` (paper A Table 2; None: the profile's)."""
    check_variant(variant)
    check_fields("xiao2024.attack_settings override", overrides, ATTACK_BY_PROFILE["cpu"])
    table = ATTACK_BY_PROFILE
    if VARIANTS[variant][0] == "cifar10":
        table = {name: {**values, **ATTACK_COLOUR_BY_PROFILE[name]} for name, values in ATTACK_BY_PROFILE.items()}
    return AttackSettings(**profiles.resolve(profile, table, **overrides))


def _check_figure_overrides(builder: str, study_overrides: dict, own: tuple[str, ...]) -> None:
    """Refuse a misspelt override before anything is built, listing the figure's own names and the study's."""
    check_fields(f"xiao2024.{builder} override", study_overrides, own + STUDY_FIELDS)


def _studies(profile: str, variants, overrides: dict) -> dict[str, Study]:
    return {variant: study(profile, variant, **overrides) for variant in variants}


def _int_list(name: str, values, *, min_length: int = 1, example: str = "[1, 2]") -> tuple[int, ...]:
    """A list of positive integers as a tuple; strings and other non-lists are refused (checks.check_sequence)."""
    return check_sequence(name, values, lambda label, value: check_int(label, value, minimum=1), min_length=min_length,
                          example=example)


# --------------------------------------------------------------------------------------------
# Figure settings: everything a notebook computes, listed without running it
# --------------------------------------------------------------------------------------------

#: Data set + likelihood variants of Fig. 2 / Table 7 per profile. CIFAR-10 runs wherever its data can
#: be had (no offline source); Fashion-MNIST with the mixture of logistics (Fig. 12) only in paper (its
#: decoder has 15x more outputs).
FIG02_VARIANTS_BY_PROFILE = {
    "smoke": {"variants": ("binary_mnist", "fashion_mnist", "cifar10")},
    "cpu": {"variants": ("binary_mnist", "fashion_mnist", "cifar10")},
    "paper": {"variants": ("binary_mnist", "fashion_mnist", "fashion_mnist_mol", "cifar10")},
}


def _fig02_variants(profile: str, variants) -> tuple[str, ...]:
    chosen = profiles.resolve(profile, FIG02_VARIANTS_BY_PROFILE, variants=variants)["variants"]
    return check_sequence("variants", chosen, lambda name, value: check_variant(value), example='["binary_mnist"]')


@dataclass(frozen=True)
class Fig02Settings:
    """`xiao2024_fig02_synthetic_data`: every variant trained with the four methods of Table 7; train
    and test ELBO at every eval epoch, G_g and G_a (q* fit `fit`) at every checkpoint."""

    studies: dict[str, Study]  # variant -> its named run
    methods: tuple[str, ...]
    fit: PerPointSettings

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(self.studies)

    def runs(self) -> list[tuple[Study, str]]:
        """The training runs (study, method), in the order the notebook trains them."""
        return [(run, method) for run in self.studies.values() for method in self.methods]

    def to_dict(self) -> dict:
        return {"studies": {variant: run.to_dict() for variant, run in self.studies.items()},
                "fit": dataclasses.asdict(self.fit), "methods": list(self.methods)}


def fig02_settings(profile: str, *, variants=None, fit: PerPointSettings | None = None, **study_overrides) -> Fig02Settings:
    """Settings of `xiao2024_fig02_synthetic_data`; `study_overrides` go to every variant's `study`."""
    _check_figure_overrides("fig02_settings", study_overrides, ("variants", "fit"))
    chosen = _fig02_variants(profile, variants)
    return Fig02Settings(studies=_studies(profile, chosen, study_overrides), methods=METHODS,
                         fit=fit_settings(profile) if fit is None else fit)


@dataclass(frozen=True)
class Fig02cSettings:
    """`xiao2024_fig02c_robustness`: the encoder attack (G_r, Eq. 5) on fig02's models at every checkpoint."""

    studies: dict[str, Study]  # the same runs as fig02 (one cached model set)
    methods: tuple[str, ...]
    attacks: dict[str, AttackSettings]  # variant -> Table 2's attack for that data set

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(self.studies)

    def runs(self) -> list[tuple[Study, str]]:
        return [(run, method) for run in self.studies.values() for method in self.methods]

    def to_dict(self) -> dict:
        return {"studies": {variant: run.to_dict() for variant, run in self.studies.items()},
                "attacks": {variant: dataclasses.asdict(attack) for variant, attack in self.attacks.items()},
                "methods": list(self.methods)}


def fig02c_settings(profile: str, *, variants=None, **study_overrides) -> Fig02cSettings:
    """Settings of `xiao2024_fig02c_robustness`: fig02's runs plus one attack per variant."""
    _check_figure_overrides("fig02c_settings", study_overrides, ("variants",))
    chosen = _fig02_variants(profile, variants)
    return Fig02cSettings(studies=_studies(profile, chosen, study_overrides), methods=METHODS,
                          attacks={variant: attack_settings(profile, variant) for variant in chosen})


#: Fig. 4 (right): DMaaPx with k distinct blocks of N DM samples (paper: 1 ... 1000). cpu stops at 20:
#: the bank for k = 50 (50,000 DM samples) alone would take longer than the whole cpu budget on 2 cores.
FIG04_BY_PROFILE = {
    "smoke": {"k_values": (1, 2)},
    "cpu": {"k_values": (1, 2, 5, 10, 20)},
    "paper": {"k_values": (1, 2, 5, 10, 20, 50, 100, 250, 1000)},
}
PLATEAU_K = 10  # paper A Sec. 5.3 / Fig. 4: "k ≈ 10 suffices"
DM_STAGES = ("early", "final")  # the two shipped DM checkpoints compared at k = PLATEAU_K (paper A's open question)


@dataclass(frozen=True)
class Fig04Settings:
    """`xiao2024_fig04_amount_of_synthetic_data`: normal training, DMaaPx for every k, and DMaaPx with
    the early and the final DM at k = `quality_k`."""

    base: Study
    k_values: tuple[int, ...]
    plateau_k: int
    dm_stages: tuple[str, ...]

    @property
    def quality_k(self) -> int:
        """k of the early-vs-final DM comparison: plateau_k, or the largest k when the sweep stops short."""
        return self.plateau_k if self.plateau_k in self.k_values else self.k_values[-1]

    def k_study(self, k: int) -> Study:
        return self.base.with_changes(bank_blocks=k)

    def stage_study(self, stage: str) -> Study:
        return self.base.with_changes(bank_blocks=self.quality_k, bank=self.base.bank.with_changes(stage=stage))

    def runs(self) -> list[tuple[Study, str]]:
        runs = [(self.base, "normal")] + [(self.k_study(k), "dmaapx") for k in self.k_values]
        runs += [(self.stage_study(stage), "dmaapx") for stage in self.dm_stages]
        return list(dict.fromkeys(runs))  # the final DM at k = quality_k is also a k run

    def to_dict(self) -> dict:
        return {"base": self.base.to_dict(), "k_values": list(self.k_values), "plateau_k": self.plateau_k,
                "quality_k": self.quality_k, "dm_stages": list(self.dm_stages)}


def fig04_settings(profile: str, *, k_values=None, plateau_k: int | None = None, variant: str = "binary_mnist",
                   **study_overrides) -> Fig04Settings:
    """Settings of `xiao2024_fig04_amount_of_synthetic_data` (paper A Fig. 4 sweeps CIFAR-10; here BinaryMNIST).

    k_values: ascending distinct k (None: the profile's); plateau_k: the claimed knee (None: 10), which
    k_values must contain except in the smoke profile.
    """
    _check_figure_overrides("fig04_settings", study_overrides, ("k_values", "plateau_k", "variant"))
    k_values = _int_list("k_values", profiles.resolve(profile, FIG04_BY_PROFILE, k_values=k_values)["k_values"],
                         example="[1, 2, 5, 10, 20]")
    if list(k_values) != sorted(set(k_values)):
        raise ValueError(f"k_values must be ascending and distinct, got {list(k_values)!r}")
    plateau_k = check_int("plateau_k", PLATEAU_K if plateau_k is None else plateau_k, minimum=1)
    if plateau_k not in k_values and profile != "smoke":
        raise ValueError(f"k_values must contain plateau_k={plateau_k} to test the plateau, got {list(k_values)!r}")
    return Fig04Settings(base=study(profile, variant, **study_overrides), k_values=k_values, plateau_k=plateau_k,
                         dm_stages=DM_STAGES)


#: Figs. 6-8 analogue on BinaryMNIST's MLP: latent sizes at the base width per method (Fig. 7a-b:
#: m_z in {1, ..., 64}; G_a on these), and widths per method and latent size (Fig. 7c-d: n_c = 1 ... 512
#: at m_z in {1, 2, 8, 64}). cpu leaves out latent 32 to stay in its time budget (latents 8, 16 and 64
#: already agree to a few nats). CIFAR-10 with the residual net (paper A's own setting): m_z at
#: cifar_base_channels and n_c at m_z = 1, sized for the paper profile.
FIG07_BY_PROFILE = {
    "smoke": {
        "latent_sweep": {"normal": (2, 16), "dmaapx": (2, 16)},
        "width_sweep": {"normal": {2: (32, 512), 16: (32, 512)}, "dmaapx": {2: (32, 512)}},
        "cifar_latent_channels": (), "cifar_channels": (), "cifar_base_channels": 32, "cifar_n_train": 100, "cifar_epochs": 2,
    },
    "cpu": {
        "latent_sweep": {"normal": (2, 4, 8, 16, 64), "dmaapx": (2, 16, 64)},
        "width_sweep": {"normal": {2: (16, 32, 64, 128, 256, 512), 64: (16, 32, 64, 128, 256, 512)},
                        "dmaapx": {2: (32, 128, 512)}},
        "cifar_latent_channels": (1, 8), "cifar_channels": (), "cifar_base_channels": 32, "cifar_n_train": 1000,
        "cifar_epochs": 50,
    },
    "paper": {
        "latent_sweep": {"normal": (2, 4, 8, 16, 32, 64, 128), "dmaapx": (2, 4, 8, 16, 32, 64, 128)},
        "width_sweep": {"normal": {2: (16, 32, 64, 128, 256, 512, 1024), 64: (16, 32, 64, 128, 256, 512, 1024)},
                        "dmaapx": {2: (16, 32, 64, 128, 256, 512, 1024), 64: (16, 32, 64, 128, 256, 512, 1024)}},
        "cifar_latent_channels": (1, 2, 4, 8, 16, 32, 64), "cifar_channels": (16, 32, 64, 128, 256, 512),
        "cifar_base_channels": 256, "cifar_n_train": 50_000, "cifar_epochs": 1000,
    },
}
FIG07_METHODS = ("normal", "dmaapx")  # Algorithm 1 and Algorithm 2: paper A Fig. 7 compares exactly these


def _method_map(name: str, value) -> dict:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must map a method to its sizes, e.g. {{'normal': [2, 16]}}, got {value!r}")
    for method in value:
        check_choice(f"{name} method", method, FIG07_METHODS)
    return dict(value)


@dataclass(frozen=True)
class Fig07Settings:
    """`xiao2024_fig07_overparameterization`: one run per (method, latent, width) on the MLP (G_a on the
    latent sweep), and normally trained residual nets on CIFAR-10 when its data can be had."""

    base: Study  # latent sweep at base.hidden_width; every size is base with another latent_dim / hidden_width
    methods: tuple[str, ...]
    latent_sweep: dict[str, tuple[int, ...]]  # method -> latent sizes at the base width
    width_sweep: dict[str, dict[int, tuple[int, ...]]]  # method -> latent size -> widths
    fit: PerPointSettings
    cifar_base: Study  # the residual net's run; sizes change latent_dim = 64 m_z and hidden_width = n_c
    cifar_latent_channels: tuple[int, ...]  # m_z at cifar_base.hidden_width
    cifar_channels: tuple[int, ...]  # n_c at m_z = 1

    def __post_init__(self) -> None:
        if "normal" not in self.width_sweep or not self.width_sweep["normal"]:
            raise ValueError("width_sweep needs latent sizes for 'normal' (its smallest and largest latent are Fig. 7c-d's)")

    @property
    def base_width(self) -> int:
        return self.base.hidden_width

    @property
    def small_latent(self) -> int:
        return min(self.width_sweep["normal"])

    @property
    def large_latent(self) -> int:
        return max(self.width_sweep["normal"])

    def size_study(self, latent: int, width: int) -> Study:
        return self.base.with_changes(latent_dim=latent, hidden_width=width)

    def plan(self) -> dict[tuple[str, int, int], bool]:
        """(method, latent, width) -> whether G_a is measured (the latent sweep), in training order."""
        plan = {}
        for method in self.methods:
            for latent in self.latent_sweep.get(method, ()):
                plan[method, latent, self.base_width] = True
            for latent, widths in self.width_sweep.get(method, {}).items():
                for width in widths:
                    plan.setdefault((method, latent, width), False)
        return plan

    def cifar_sizes(self) -> list[tuple[int, int]]:
        """(m_z, n_c) of the CIFAR-10 runs (normal training only: no CIFAR diffusion model is shipped)."""
        sizes = [(m_z, self.cifar_base.hidden_width) for m_z in self.cifar_latent_channels]
        return list(dict.fromkeys(sizes + [(1, n_c) for n_c in self.cifar_channels]))

    def cifar_study(self, m_z: int, n_c: int) -> Study:
        return self.cifar_base.with_changes(latent_dim=64 * m_z, hidden_width=n_c)

    def runs(self) -> list[tuple[Study, str]]:
        runs = [(self.size_study(latent, width), method) for method, latent, width in self.plan()]
        return runs + [(self.cifar_study(m_z, n_c), "normal") for m_z, n_c in self.cifar_sizes()]

    def to_dict(self) -> dict:
        return {
            "base_study": self.base.to_dict(), "fit": dataclasses.asdict(self.fit), "methods": list(self.methods),
            "base_width": self.base_width, "latent_sweep": {m: list(v) for m, v in self.latent_sweep.items()},
            "width_sweep": {m: {str(k): list(v) for k, v in s.items()} for m, s in self.width_sweep.items()},
            "cifar": {"latent_channels": list(self.cifar_latent_channels), "channels": list(self.cifar_channels),
                      "base_channels": self.cifar_base.hidden_width, "n_train": self.cifar_base.n_train,
                      "epochs": self.cifar_base.epochs, "learning_rate": self.cifar_base.learning_rate},
        }


def fig07_settings(profile: str, *, latent_sweep=None, width_sweep=None, cifar_latent_channels=None, cifar_channels=None,
                   cifar_base_channels=None, cifar_n_train=None, cifar_epochs=None, variant: str = "binary_mnist",
                   **study_overrides) -> Fig07Settings:
    """Settings of `xiao2024_fig07_overparameterization` (None: the profile's value).

    `study_overrides` go to the MLP base run and, except n_train and epochs (cifar_n_train,
    cifar_epochs), to the CIFAR-10 base run.
    """
    _check_figure_overrides("fig07_settings", study_overrides, tuple(FIG07_BY_PROFILE["cpu"]) + ("variant",))
    table = profiles.resolve(
        profile, FIG07_BY_PROFILE, latent_sweep=latent_sweep, width_sweep=width_sweep,
        cifar_latent_channels=cifar_latent_channels, cifar_channels=cifar_channels,
        cifar_base_channels=cifar_base_channels, cifar_n_train=cifar_n_train, cifar_epochs=cifar_epochs,
    )
    latents = {method: _int_list(f"latent_sweep[{method!r}]", sizes, example="[2, 16]")
               for method, sizes in _method_map("latent_sweep", table["latent_sweep"]).items()}
    widths = {}
    for method, by_latent in _method_map("width_sweep", table["width_sweep"]).items():
        if not isinstance(by_latent, Mapping):
            raise ValueError(f"width_sweep[{method!r}] must map a latent size to widths, e.g. {{2: [32, 512]}}, got {by_latent!r}")
        widths[method] = {check_int(f"width_sweep[{method!r}] latent", latent, minimum=1):
                          _int_list(f"width_sweep[{method!r}][{latent!r}]", sizes, example="[32, 512]")
                          for latent, sizes in by_latent.items()}
    cifar_overrides = {name: value for name, value in study_overrides.items() if name not in ("n_train", "epochs")}
    cifar_base = study(profile, "cifar10", n_train=table["cifar_n_train"], epochs=table["cifar_epochs"],
                       hidden_width=table["cifar_base_channels"], **cifar_overrides)
    return Fig07Settings(
        base=study(profile, variant, **study_overrides), methods=FIG07_METHODS, latent_sweep=latents, width_sweep=widths,
        fit=fit_settings(profile), cifar_base=cifar_base,
        cifar_latent_channels=_int_list("cifar_latent_channels", table["cifar_latent_channels"], min_length=0, example="[1, 8]"),
        cifar_channels=_int_list("cifar_channels", table["cifar_channels"], min_length=0, example="[16, 32]"),
    )
