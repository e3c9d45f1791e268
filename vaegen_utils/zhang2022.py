"""Paper B (Zhang, Hayes, Barber 2022, "Generalization Gap in Amortized Inference"): Figs. 1a, 1b, 2.

The experiment behind the three `zhang2022_*` notebooks, as pure functions of settings that return
plain data (lists of floats, one value per seed). Everything expensive goes through
`vaegen_utils.cache`, keyed by the full settings, so the three notebooks share one trained model set
and a rerun takes seconds.

Named runs and figure settings (one definition per profile, `profiles.resolve`):
- `base_run(profile, dataset, **overrides)`: the seed ensemble of paper B Sec. 2.2 with its
  checkpoints (binary MNIST: Figs. 1a, 1b, 2a and the gap decomposition; greyscale MNIST: Fig. 2b).
- `retrain_settings(profile, **overrides)`: the encoder retraining from each checkpoint with the
  decoder frozen (eqs. 12 and 16), shared by Figs. 1b and 2 and the gap decomposition.
- `fig1a_settings`, `fig1b_settings`, `fig2_settings`: everything one notebook computes (its named
  runs and the sizes only that figure uses), so the work of a notebook can be listed without running
  it. Overrides set to None keep the profile's value; unknown names are refused.

The computations:
1. `train_base(run)`: the VAE trained with amortized inference (paper B Sec. 2.2: MLP 500 units, z=10,
   Adam 1e-3, batch 100), all seeds at once as one stacked ensemble, with a checkpoint every
   `checkpoint_every` epochs and train/test BPD every `eval_every` epochs -> Fig. 1a
   (`learning_curves`) and the amortized curve of Figs. 1b and 2 (`amortized_at_checkpoints`).
2. `optimal_inference(run, retrain)`: for every checkpoint, the encoder retrained on the *test* set
   with the decoder frozen (paper B eq. 12, the official code's `OptimalEval`) -> Fig. 1b. The gap to
   the amortized curve is the inference generalization gap (eq. 11).
3. `self_consistent(run, retrain, alpha)`: for every checkpoint, the encoder retrained on the
   training set mixed with model samples, m(x) = alpha p_theta(x) + (1 - alpha) p_data(x)
   (paper B eq. 16; the official code's `ReverseHalfAsleep` at alpha = 0.5) -> Fig. 2.
   `alpha_sweep` repeats it for several alphas at one checkpoint (beyond the paper).
4. `per_point_optimal(run, fit, retrain)`: the *other* "optimal": a free Gaussian q*(z|x) per test
   point (Cremer et al. 2018; paper B's compression code), whose ELBO minus the encoder's is the
   amortization gap. Not the same thing as 2.; the figures label them apart.
5. `iwae_comparison(...)`: IWAE (K samples) next to the single-sample ELBO for the three encoders of
   one checkpoint. All three share the decoder, so their IWAE values estimate the same log p_theta(x).

BPD everywhere is paper B's: the negative single-sample ELBO in bits per dimension (paper B
footnote 3), evaluated with `training.evaluate` (fixed evaluation noise, so the same weights always
give the same number). Shapes: per-checkpoint results are lists over checkpoints of lists over seeds
(`[C][M]`); `claims.mean_sd` turns them into seed means and standard deviations.

What is not here: plotting (the notebooks), claim rules (`claims`), training loops (`training`),
estimators (`estimators`). Nothing here changes how a model trains; the profiles only change sizes.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from . import cache as vcache
from . import device as vdevice
from . import data, estimators, models, profiles, training
from .checks import check_choice, check_fields, check_int, check_number, check_sequence
from .estimators import PerPointSettings
from .seeding import make_generator

# Salt of every key made here: bump it when a change below changes what a setting produces.
CODE_VERSION = "zhang2022-1"

# Paper B's two MNIST variants and their likelihoods (Secs. 2.2 and 3): binary MNIST with a Bernoulli
# decoder (binarized at a fixed 0.5 threshold, as the official code's loader does), greyscale MNIST
# (k/255) with a discretized logistic decoder.
LIKELIHOOD_OF_DATASET = {"binary_mnist": "bernoulli", "mnist": "discretized_logistic"}
MODES = ("optimal_inference", "self_consistent")
TRAIN_SIZE = 60_000  # MNIST training split
TEST_SIZE = 10_000  # MNIST test split
NUM_DIMS = 28 * 28  # D of bits/dim for MNIST
OFFICIAL_TEST_IMAGES = 1_000  # the official compression notebooks encode the first 1000 test images
# BB-ANS compression lengths (bits/dim) printed by the official repository's MNIST_Compression notebook, first
# 1000 test images, MLP with 3 hidden layers of 500 (h_layer_num=2), z=10, 60k training images: the
# epoch-100 model ("baseline") and the same model after reverse-half-asleep encoder training ("improved").
OFFICIAL_NUMBERS = {
    "binary_mnist": {"baseline": 0.18543, "improved": 0.17891, "epoch": 100},
    "mnist": {"baseline": 1.56244, "improved": 1.55187, "epoch": 100},
}


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseRun:
    """The amortized-inference VAE of paper B Sec. 2.2, trained for several seeds with checkpoints.

    dataset           "binary_mnist" (Bernoulli; Figs. 1, 2a) or "mnist" (discretized logistic; Fig. 2b).
    n_train           training images: a seeded subset (`subset_seed`) of the 60k, or None (or 60000) for all.
    n_test            the first n_test test images (the official notebooks use the first 1000).
    seeds             one ensemble member per seed: each seed sets a member's initialisation and
                      reparameterisation noise; the mini-batch order is shared (one stacked ensemble).
    epochs            training epochs (paper: 1000).
    checkpoint_every  a checkpoint every k epochs (paper: 100); the final epoch always has one.
    eval_every        train and test BPD every k epochs (Fig. 1a's curves), plus at every checkpoint.
    num_hidden_layers hidden layers of 500 units in encoder and decoder (paper B's workshop text: 2;
                      the official compression notebooks: 3, `h_layer_num=2`).
    """

    dataset: str
    n_train: int | None
    n_test: int
    seeds: tuple[int, ...]
    epochs: int
    checkpoint_every: int
    eval_every: int
    subset_seed: int = 0
    num_hidden_layers: int = 2
    batch_size: int = 100
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        if self.dataset not in LIKELIHOOD_OF_DATASET:
            raise ValueError(
                f"dataset must be one of {sorted(LIKELIHOOD_OF_DATASET)} (paper B's binary and greyscale MNIST), "
                f"got {self.dataset!r}"
            )
        if self.n_train is not None:
            check_int("n_train", self.n_train, minimum=1, maximum=TRAIN_SIZE, hint="or None for the full training set")
            if self.n_train == TRAIN_SIZE:  # all images: one spelling, so both share one cache key
                object.__setattr__(self, "n_train", None)
        check_int("n_test", self.n_test, minimum=1, maximum=TEST_SIZE)
        seeds = check_sequence(
            "seeds", self.seeds, lambda name, seed: check_int(name, seed, minimum=0), example="seeds=[0, 1, 2]"
        )
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct (each is one ensemble member), got {list(seeds)}")
        object.__setattr__(self, "seeds", seeds)
        check_int("epochs", self.epochs, minimum=1)
        check_int("checkpoint_every", self.checkpoint_every, minimum=1, maximum=self.epochs, hint="a checkpoint every k epochs")
        check_int("eval_every", self.eval_every, minimum=1, maximum=self.epochs, hint="train/test BPD every k epochs")
        check_int("subset_seed", self.subset_seed, minimum=0)
        check_int("num_hidden_layers", self.num_hidden_layers, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        object.__setattr__(self, "learning_rate", check_number("learning_rate", self.learning_rate, positive=True))

    @property
    def likelihood(self) -> str:
        return LIKELIHOOD_OF_DATASET[self.dataset]

    @property
    def num_seeds(self) -> int:
        return len(self.seeds)

    def checkpoint_epochs(self) -> list[int]:
        """Epochs with a saved model: every checkpoint_every epochs, and the last epoch."""
        return sorted(set(range(self.checkpoint_every, self.epochs + 1, self.checkpoint_every)) | {self.epochs})

    def eval_epochs(self) -> list[int]:
        return sorted(set(range(self.eval_every, self.epochs + 1, self.eval_every)) | set(self.checkpoint_epochs()))

    def model_config(self) -> models.MLPVAEConfig:
        return models.zhang2022_mlp(self.likelihood, num_hidden_layers=self.num_hidden_layers)

    def train_config(self) -> training.TrainConfig:
        return training.TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=self.seeds[0],  # the shared batch order
            member_seeds=list(self.seeds),
            checkpoint_epochs=self.checkpoint_epochs(),
            eval_epochs=self.eval_epochs(),
            num_eval_samples=1,  # paper B's BPD (footnote 3): the single-sample ELBO, as the official `Eval`
        )

    def data_spec(self) -> dict:
        return {
            "dataset": self.dataset,
            "binarization": "fixed" if self.dataset == "binary_mnist" else None,  # threshold 0.5, as the official loader
            "n_train": self.n_train,
            "subset_seed": self.subset_seed,
            "test": f"first {self.n_test} test images",
        }

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "seeds": list(self.seeds), "likelihood": self.likelihood}


@dataclass(frozen=True)
class RetrainSettings:
    """Encoder retraining with the decoder frozen (paper B's `OptimalEval` / `ReverseHalfAsleep`).

    epochs        passes over the retraining images (the official code's `additional_epochs`, 100).
    batch_size    real images per step (with alpha = 0.5 each step also sees as many model samples).
    learning_rate Adam step size (the official code reuses `opt['lr']`, 1e-3 on MNIST).
    seed          batch order, reparameterisation noise and model samples.
    eval_every    test BPD every k retraining epochs (the convergence curve); None: the last only.
    """

    epochs: int
    batch_size: int = 100
    learning_rate: float = 1e-3
    seed: int = 0
    eval_every: int | None = None

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        object.__setattr__(self, "learning_rate", check_number("learning_rate", self.learning_rate, positive=True))
        check_int("seed", self.seed, minimum=0)
        if self.eval_every is not None:
            check_int("eval_every", self.eval_every, minimum=1, maximum=self.epochs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_alpha(alpha: Any, name: str = "alpha") -> float:
    """alpha of eq. 16 = the fraction of model samples in the encoder's training mixture, in [0, 1]."""
    return check_number(
        name, alpha, minimum=0.0, maximum=1.0,
        hint="the fraction of model samples in m(x) = alpha p_theta(x) + (1 - alpha) p_data(x) (paper B eq. 16; 0.5 in the paper)",
    )


# --------------------------------------------------------------------------------------------
# Named runs per profile: one definition each (the notebooks and the gap decomposition call these)
# --------------------------------------------------------------------------------------------

# Settings no profile changes: paper B Sec. 2.2 (2 hidden layers of 500, Adam 1e-3) and the official
# code's batch of 100; subset_seed picks the training images whenever n_train is below 60k.
_BASE_FIXED = {"subset_seed": 0, "num_hidden_layers": 2, "batch_size": 100, "learning_rate": 1e-3}

# The base run of paper B Sec. 2.2 per profile (binary MNIST, Figs. 1a, 1b, 2a). Paper: 60k images,
# 1000 epochs, a checkpoint every 100 (Sec. 2.2). cpu: a seeded subset of 1000 images overfits after
# ~60 epochs instead of hundreds, so 160 epochs show the whole rise of the test BPD (measured: lowest
# near epoch 60-70), with a checkpoint every 20. eval_every sets the resolution of Fig. 1a's curves;
# n_test counts the first test images (the official compression notebooks use the first 1000).
_BINARY_BASE = {
    "smoke": {"n_train": 100, "n_test": 50, "seeds": (0, 1), "epochs": 2, "checkpoint_every": 1, "eval_every": 1},
    "cpu": {"n_train": 1000, "n_test": 1000, "seeds": (0, 1, 2), "epochs": 160, "checkpoint_every": 20, "eval_every": 10},
    "paper": {"n_train": None, "n_test": 10_000, "seeds": (0, 1, 2), "epochs": 1000, "checkpoint_every": 100,
              "eval_every": 10},
}
# Greyscale MNIST (Fig. 2b) is the same run with the discretized logistic decoder (Sec. 3), except that
# it overfits sooner (cpu: test BPD lowest near epoch 40, measured), so its cpu run is 100 epochs.
_GREY_CHANGES = {"smoke": {}, "cpu": {"epochs": 100}, "paper": {}}
BASE_RUN_PROFILES = {
    "binary_mnist": {profile: {**sizes, **_BASE_FIXED} for profile, sizes in _BINARY_BASE.items()},
    "mnist": {profile: {**sizes, **_BASE_FIXED, **_GREY_CHANGES[profile]} for profile, sizes in _BINARY_BASE.items()},
}

# Encoder retraining from each checkpoint, decoder frozen (eqs. 12 and 16), per profile. Paper: the
# official code's additional_epochs = 100 with its lr (1e-3 on MNIST) and batch 100. cpu: 20 epochs on
# 1000 images (200 Adam steps), within ~0.002 bpd of 50 epochs (measured). eval_every: test BPD every k
# retraining epochs (the convergence curve).
_RETRAIN_FIXED = {"batch_size": 100, "learning_rate": 1e-3, "seed": 0}
RETRAIN_PROFILES = {
    "smoke": {"epochs": 1, "eval_every": 1, **_RETRAIN_FIXED},
    "cpu": {"epochs": 20, "eval_every": 5, **_RETRAIN_FIXED},
    "paper": {"epochs": 100, "eval_every": 10, **_RETRAIN_FIXED},
}


def base_run(profile: str, dataset: str = "binary_mnist", **overrides: Any) -> BaseRun:
    """The base run of `dataset` for `profile`; overrides (any `BaseRun` field but dataset) set to None keep
    the profile's value.

    Every notebook that needs the binary-MNIST checkpoints calls this, so they share one cache entry:
    `base_run("cpu")` is Figs. 1a/1b/2a's model, `base_run("cpu", "mnist")` Fig. 2b's.
    """
    dataset = check_choice("dataset", dataset, tuple(BASE_RUN_PROFILES), hint="paper B's binary and greyscale MNIST")
    return BaseRun(dataset=dataset, **profiles.resolve(profile, BASE_RUN_PROFILES[dataset], **overrides))


def retrain_settings(profile: str, **overrides: Any) -> RetrainSettings:
    """The encoder retraining of Figs. 1b and 2 for `profile` (fields of `RetrainSettings`; None keeps the profile's)."""
    return RetrainSettings(**profiles.resolve(profile, RETRAIN_PROFILES, **overrides))


def _route(owner: str, overrides: dict, groups: dict[str, Sequence[str]]) -> dict[str, dict]:
    """Split a figure's overrides by prefix: {"retrain_": ["epochs", ...]} sends retrain_epochs to "retrain_".

    Unknown names are refused here, listing every name the figure accepts (with the closest match).
    """
    valid = {prefix + name: (prefix, name) for prefix, names in groups.items() for name in names}
    check_fields(owner, overrides, valid)
    routed: dict[str, dict] = {prefix: {} for prefix in groups}
    for full_name, value in overrides.items():
        prefix, name = valid[full_name]
        routed[prefix][name] = value
    return routed


_BASE_FIELDS = tuple(field.name for field in dataclasses.fields(BaseRun) if field.name != "dataset")
_RETRAIN_FIELDS = tuple(RETRAIN_PROFILES["cpu"])


# --------------------------------------------------------------------------------------------
# Figure settings: everything one notebook computes, listed without running it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fig1aSettings:
    """Fig. 1a: the binary-MNIST base run, its learning curves and checkpoints."""

    run: BaseRun

    def named_runs(self) -> dict[str, BaseRun]:
        return {"binary_mnist": self.run}

    def to_dict(self) -> dict:
        return {"run": self.run.to_dict()}


def fig1a_settings(profile: str, **overrides: Any) -> Fig1aSettings:
    """Fig. 1a's settings; overrides are `BaseRun` fields (None: the profile's value)."""
    return Fig1aSettings(run=base_run(profile, "binary_mnist", **overrides))


# The per-point optimal posterior q*(z|x) of Fig. 1b's right panel (amortization gap, Cremer et al. 2018)
# on the first n_points test images: Adam from the encoder's output with paper B's compression-code step
# size for MNIST (5e-3), 5 samples per step, the plateau rule over windows of 50 steps (patience 2),
# capped at max_steps (cpu: 1000; 300 steps left q* ~0.003 bpd short of a 2000-step fit, measured);
# eval_samples for the ELBOs of the subset panel.
_PER_POINT_FIXED = {"num_samples": 5, "learning_rate": 5e-3, "check_every": 50, "patience": 2, "seed": 0}
FIG1B_PER_POINT_PROFILES = {
    "smoke": {"n_points": 8, "max_steps": 10, "eval_samples": 10, **_PER_POINT_FIXED},
    "cpu": {"n_points": 32, "max_steps": 1000, "eval_samples": 200, **_PER_POINT_FIXED},
    "paper": {"n_points": 1000, "max_steps": 5000, "eval_samples": 1000, **_PER_POINT_FIXED},
}


@dataclass(frozen=True)
class Fig1bSettings:
    """Fig. 1b: the base run, optimal inference at every checkpoint (eq. 12), per-point q* on a subset."""

    run: BaseRun
    retrain: RetrainSettings
    per_point: PerPointSettings

    def __post_init__(self) -> None:
        if self.per_point.n_points > self.run.n_test:
            raise ValueError(
                f"per_point n_points={self.per_point.n_points} exceeds the run's n_test={self.run.n_test}; "
                f"lower per_point_n_points or raise n_test"
            )

    def named_runs(self) -> dict[str, BaseRun]:
        return {"binary_mnist": self.run}

    def to_dict(self) -> dict:
        return {"run": self.run.to_dict(), "retrain": self.retrain.to_dict(),
                "per_point": dataclasses.asdict(self.per_point)}


def fig1b_settings(profile: str, **overrides: Any) -> Fig1bSettings:
    """Fig. 1b's settings. Overrides (None: the profile's value): `BaseRun` fields (n_train, epochs, seeds, ...),
    `retrain_<field>` (retrain_epochs, ...) and `per_point_<field>` of `PerPointSettings` (per_point_n_points,
    per_point_max_steps, per_point_eval_samples, ...)."""
    routed = _route("fig1b_settings", overrides,
                    {"": _BASE_FIELDS, "retrain_": _RETRAIN_FIELDS, "per_point_": tuple(FIG1B_PER_POINT_PROFILES["cpu"])})
    return Fig1bSettings(
        run=base_run(profile, "binary_mnist", **routed[""]),
        retrain=retrain_settings(profile, **routed["retrain_"]),
        per_point=PerPointSettings(**profiles.resolve(profile, FIG1B_PER_POINT_PROFILES, **routed["per_point_"])),
    )


# Fig. 2's own sizes. alpha: eq. 16's mixture weight (0.5 "works well in practice", Sec. 3); alphas:
# the sweep at the last binary checkpoint (beyond the paper; 0 = training data only, the standard
# approach, 1 = model samples only, eq. 15). IWAE with K = iwae_samples (Burda et al. 2016) on the first
# iwae_images test images (cpu: K = 1000 decoder passes per image and encoder). compare_epoch: the
# checkpoint compared with the official compression numbers, "best" = the lowest amortized test BPD
# (the model one would keep); paper: epoch 100, the official notebooks' baseline. samples_shown: model
# samples per data set in the figure.
_FIG2_FIXED = {"alpha": 0.5, "alphas": (0.0, 0.25, 0.5, 0.75, 1.0), "samples_shown": 16}
FIG2_PROFILES = {
    "smoke": {"iwae_samples": 20, "iwae_images": 8, "compare_epoch": "best", **_FIG2_FIXED},
    "cpu": {"iwae_samples": 1000, "iwae_images": 100, "compare_epoch": "best", **_FIG2_FIXED},
    "paper": {"iwae_samples": 1000, "iwae_images": 1000, "compare_epoch": 100, **_FIG2_FIXED},
}
SWEEP_ALPHAS_COMPARED = (0.0, 0.5, 1.0)  # the alpha-sweep claims compare these three


@dataclass(frozen=True)
class Fig2Settings:
    """Fig. 2: binary and greyscale base runs, optimal inference and self-consistent training at every
    checkpoint, the alpha sweep, IWAE next to the ELBO, the comparison with the official numbers."""

    binary: BaseRun
    grey: BaseRun
    retrain: RetrainSettings
    alpha: float
    alphas: tuple[float, ...]
    iwae_samples: int
    iwae_images: int
    compare_epoch: int | str
    samples_shown: int

    def __post_init__(self) -> None:
        if self.binary.dataset != "binary_mnist" or self.grey.dataset != "mnist":
            raise ValueError("Fig2Settings needs a binary_mnist run as `binary` and an mnist run as `grey`")
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        alphas = check_sequence("alphas", self.alphas, lambda name, alpha: check_alpha(alpha, name), example="alphas=[0, 0.25, 0.5, 0.75, 1]")
        missing = [alpha for alpha in SWEEP_ALPHAS_COMPARED if alpha not in alphas]
        if missing:
            raise ValueError(f"alphas must include {list(SWEEP_ALPHAS_COMPARED)} (the sweep's claims compare them); "
                             f"missing {missing} in {list(alphas)}")
        object.__setattr__(self, "alphas", alphas)
        check_int("iwae_samples", self.iwae_samples, minimum=1)
        smallest_test = min(self.binary.n_test, self.grey.n_test)
        check_int("iwae_images", self.iwae_images, minimum=1, maximum=smallest_test, hint="at most the runs' n_test")
        if self.compare_epoch != "best":
            shared = sorted(set(self.binary.checkpoint_epochs()) & set(self.grey.checkpoint_epochs()))
            check_choice("compare_epoch", self.compare_epoch, ["best", *shared],
                         hint="'best' (lowest amortized test BPD) or a checkpoint epoch of both runs")
        check_int("samples_shown", self.samples_shown, minimum=1)

    def named_runs(self) -> dict[str, BaseRun]:
        return {"binary_mnist": self.binary, "mnist": self.grey}

    def to_dict(self) -> dict:
        return {
            "runs": {dataset: run.to_dict() for dataset, run in self.named_runs().items()},
            "retrain": self.retrain.to_dict(),
            **{name: getattr(self, name) for name in ("alpha", "iwae_samples", "iwae_images", "compare_epoch",
                                                      "samples_shown")},
            "alphas": list(self.alphas),
        }


def fig2_settings(profile: str, **overrides: Any) -> Fig2Settings:
    """Fig. 2's settings. Overrides (None: the profile's value): `BaseRun` fields apply to both models
    (n_train, seeds, epochs, ...), `grey_<field>` to the greyscale model alone and wins over the plain one
    (grey_epochs, ...); `retrain_<field>`; the figure's own alpha, alphas, iwae_samples, iwae_images,
    compare_epoch, samples_shown."""
    routed = _route("fig2_settings", overrides,
                    {"": _BASE_FIELDS + tuple(FIG2_PROFILES["cpu"]), "grey_": _BASE_FIELDS, "retrain_": _RETRAIN_FIELDS})
    shared = {name: value for name, value in routed[""].items() if name in _BASE_FIELDS}
    own = {name: value for name, value in routed[""].items() if name not in _BASE_FIELDS}
    grey = {**shared, **{name: value for name, value in routed["grey_"].items() if value is not None}}
    return Fig2Settings(
        binary=base_run(profile, "binary_mnist", **shared),
        grey=base_run(profile, "mnist", **grey),
        retrain=retrain_settings(profile, **routed["retrain_"]),
        **profiles.resolve(profile, FIG2_PROFILES, **own),
    )


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _images(dataset: str, n_train: int | None, subset_seed: int, n_test: int) -> tuple[torch.Tensor, torch.Tensor]:
    train = data.load_dataset(dataset, "train", n_train=n_train, subset_seed=subset_seed, binarization="fixed")
    test = data.load_dataset(dataset, "test", binarization="fixed")
    return train.images, test.images[:n_test].clone()


def load_images(run: BaseRun) -> tuple[torch.Tensor, torch.Tensor]:
    """(training images, the first n_test test images), each `(N, 1, 28, 28)` float32."""
    return _images(run.dataset, run.n_train, run.subset_seed, run.n_test)


# --------------------------------------------------------------------------------------------
# 1. The base run (Fig. 1a) and its checkpoints
# --------------------------------------------------------------------------------------------


def _base_arguments(run: BaseRun) -> dict:
    train_images, test_images = load_images(run)
    return {
        "model_config": [run.model_config()] * run.num_seeds,
        "train_config": run.train_config(),
        "data_spec": run.data_spec(),
        "images": train_images,
        "eval_sets": {"train": train_images, "test": test_images},
        "model_seed": list(run.seeds),
    }


@functools.lru_cache(maxsize=8)
def base_key(run: BaseRun) -> str:
    """The cache key of the base training run; part of every key derived from its checkpoints.

    Memoised per settings: fingerprinting the 60k training images takes a noticeable fraction of a second.
    """
    arguments = _base_arguments(run)
    return vcache.config_key(
        vcache.training_key_config(
            arguments["model_config"],
            arguments["train_config"],
            arguments["data_spec"],
            arguments["images"],
            arguments["eval_sets"],
            model_seed=arguments["model_seed"],
        )
    )


def train_base(run: BaseRun, *, cache: vcache.RunCache | None = None, progress: bool | None = None) -> training.TrainResult:
    """Train (or load) the seed ensemble with checkpoints; returns the `TrainResult` (model = last epoch)."""
    return vcache.train_cached(
        **_base_arguments(run),
        cache=cache,
        progress=progress,
        name=f"zhang2022-{run.dataset}-n{run.n_train or 'all'}-e{run.epochs}",
    )


def load_checkpoint(run: BaseRun, epoch: int, *, cache: vcache.RunCache | None = None) -> torch.nn.Module:
    """The seed ensemble saved at `epoch` (trains the base run first if needed)."""
    if epoch not in run.checkpoint_epochs():
        raise ValueError(f"epoch {epoch} has no checkpoint; checkpoints: {run.checkpoint_epochs()}")
    result = train_base(run, cache=cache)
    return training.load_checkpoint(result.run_dir, epoch)


def _per_member(row: dict, metric: str = "bits_per_dim") -> list[float]:
    value = row[metric]
    return list(value) if isinstance(value, list) else [value]


def learning_curves(run: BaseRun, *, cache: vcache.RunCache | None = None) -> dict:
    """Fig. 1a: train and test BPD during training.

    Returns {"epochs": [T], "train_bpd": [T][M], "test_bpd": [T][M], "checkpoint_epochs": [C],
    "train_seconds": float}; BPD on all n_train training images and the n_test test images.
    """
    result = train_base(run, cache=cache)
    curves: dict[str, Any] = {"epochs": [], "train_bpd": [], "test_bpd": []}
    test_rows = {row["epoch"]: row for row in result.rows("test")}
    for row in result.rows("train"):
        curves["epochs"].append(row["epoch"])
        curves["train_bpd"].append(_per_member(row))
        curves["test_bpd"].append(_per_member(test_rows[row["epoch"]]))
    curves["checkpoint_epochs"] = run.checkpoint_epochs()
    curves["train_seconds"] = result.train_seconds
    return curves


def amortized_at_checkpoints(run: BaseRun, *, cache: vcache.RunCache | None = None) -> dict:
    """The amortized encoder's train and test BPD at every checkpoint: {"epochs": [C], "train_bpd", "test_bpd": [C][M]}."""
    curves = learning_curves(run, cache=cache)
    index = {epoch: position for position, epoch in enumerate(curves["epochs"])}
    epochs = run.checkpoint_epochs()
    return {
        "epochs": epochs,
        "train_bpd": [curves["train_bpd"][index[epoch]] for epoch in epochs],
        "test_bpd": [curves["test_bpd"][index[epoch]] for epoch in epochs],
    }


# --------------------------------------------------------------------------------------------
# 2./3. Encoder retraining from each checkpoint (Figs. 1b and 2)
# --------------------------------------------------------------------------------------------


def _retrain_key(run: BaseRun, epoch: int, retrain: RetrainSettings, mode: str, alpha: float | None) -> dict:
    return {
        "kind": "zhang2022-encoder-retraining",
        "code_version": CODE_VERSION,
        "base": base_key(run),
        "checkpoint_epoch": epoch,
        "mode": mode,
        "alpha": alpha,
        "retrain": dataclasses.asdict(retrain),
    }



def _retrain_folder_name(run: BaseRun, epoch: int, mode: str, alpha: float | None) -> str:
    return f"{mode}{'' if alpha is None else f'-alpha{alpha:g}'}-{run.dataset}-e{epoch}"


def _check_mode(mode: str, alpha: Any) -> float | None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "optimal_inference":
        if alpha is not None:
            raise ValueError("optimal inference (eq. 12) trains on the test images only; pass alpha=None")
        return None
    return check_alpha(alpha)


def _retrain(
    run: BaseRun, epoch: int, retrain: RetrainSettings, mode: str, alpha: float | None, cache: vcache.RunCache
) -> training.TrainResult:
    """Retrain the checkpoint's encoders (decoder frozen) in the cache folder of these settings."""
    key = _retrain_key(run, epoch, retrain, mode, alpha)
    folder = cache.run_dir(key, name=f"zhang2022-{_retrain_folder_name(run, epoch, mode, alpha)}")
    model = load_checkpoint(run, epoch, cache=cache)
    train_images, test_images = load_images(run)
    if mode == "optimal_inference":
        # paper B eq. 12: optimal inference = the encoder retrained on the test set, decoder fixed.
        images, batch_transform = test_images, None
    else:
        # paper B eq. 16: encoder trained on alpha p_theta(x) + (1 - alpha) p_data(x): each real batch
        # gets model samples x ~ p_theta(x|z), z ~ p(z) appended (alpha = 0.5: as many as real images,
        # the official ReverseHalfAsleep with batch 100 + sample_size 100; alpha = 1: samples only).
        images, batch_transform = train_images, training.model_sample_mixture(model, alpha)
    return training.retrain_encoder(
        model,
        images,
        epochs=retrain.epochs,
        batch_size=retrain.batch_size,
        learning_rate=retrain.learning_rate,
        seed=retrain.seed,
        eval_sets={"test": test_images},
        batch_transform=batch_transform,
        run_dir=folder / vcache.TRAINING_FOLDER,
        eval_epochs=retrain.eval_every,
    )


def retrain_at_checkpoint(
    run: BaseRun,
    epoch: int,
    retrain: RetrainSettings,
    *,
    mode: str,
    alpha: float | None = None,
    cache: vcache.RunCache | None = None,
) -> dict:
    """Test BPD of the checkpoint's encoders after retraining; cached (a rerun loads nothing).

    mode "optimal_inference": on the test images (eq. 12); "self_consistent": on the training images
    mixed with model samples at `alpha` (eq. 16). Returns {"test_bpd": [M], "test_elbo": [M]
    (nats), "curve": {"epochs": [...], "test_bpd": [...][M]}, "train_seconds": float}.
    """
    alpha = _check_mode(mode, alpha)
    cache = cache or vcache.RunCache()

    def compute() -> dict:
        result = _retrain(run, epoch, retrain, mode, alpha, cache)
        rows = result.rows("test")
        return {
            "test_bpd": _per_member(rows[-1]),
            "test_elbo": _per_member(rows[-1], "elbo"),
            "curve": {"epochs": [row["epoch"] for row in rows], "test_bpd": [_per_member(row) for row in rows]},
            "train_seconds": result.train_seconds,
        }

    key = _retrain_key(run, epoch, retrain, mode, alpha)
    return cache.cached_result("summary", key, compute, folder=f"zhang2022-{_retrain_folder_name(run, epoch, mode, alpha)}")


def retrained_model(
    run: BaseRun,
    epoch: int,
    retrain: RetrainSettings,
    *,
    mode: str,
    alpha: float | None = None,
    cache: vcache.RunCache | None = None,
) -> torch.nn.Module:
    """The retrained ensemble itself (loaded from the cache; retrained first if missing)."""
    alpha = _check_mode(mode, alpha)
    return _retrain(run, epoch, retrain, mode, alpha, cache or vcache.RunCache()).model


def _over_checkpoints(run: BaseRun, retrain: RetrainSettings, mode: str, alpha: float | None, cache) -> dict:
    epochs = run.checkpoint_epochs()
    summaries = [retrain_at_checkpoint(run, epoch, retrain, mode=mode, alpha=alpha, cache=cache) for epoch in epochs]
    return {
        "epochs": epochs,
        "test_bpd": [summary["test_bpd"] for summary in summaries],
        "curves": [summary["curve"] for summary in summaries],
        "train_seconds": sum(summary["train_seconds"] for summary in summaries),
    }


def optimal_inference(run: BaseRun, retrain: RetrainSettings, *, cache: vcache.RunCache | None = None) -> dict:
    """Fig. 1b: test BPD after retraining each checkpoint's encoder on the test set (eq. 12).

    Returns {"epochs": [C], "test_bpd": [C][M], "curves": [C] retraining curves, "train_seconds"}.
    """
    return _over_checkpoints(run, retrain, "optimal_inference", None, cache)


def self_consistent(
    run: BaseRun, retrain: RetrainSettings, *, alpha: float = 0.5, cache: vcache.RunCache | None = None
) -> dict:
    """Fig. 2: test BPD after self-consistent encoder training from each checkpoint (eq. 16); as `optimal_inference`."""
    return _over_checkpoints(run, retrain, "self_consistent", check_alpha(alpha), cache)


def alpha_sweep(
    run: BaseRun,
    retrain: RetrainSettings,
    alphas: Sequence[float],
    *,
    epoch: int | None = None,
    cache: vcache.RunCache | None = None,
) -> dict:
    """Self-consistent training at one checkpoint (default: the last) for every alpha in `alphas`.

    alpha = 0 continues training the encoder on the training data alone (the official `Wake`), alpha = 1
    on model samples alone (`ReverseSleep`). Returns {"epoch", "alphas": [A], "test_bpd": [A][M]}.
    """
    alphas = list(check_sequence("alphas", alphas, lambda name, alpha: check_alpha(alpha, name), example="alphas=[0, 0.25, 0.5, 0.75, 1]"))
    epoch = run.checkpoint_epochs()[-1] if epoch is None else epoch
    summaries = [
        retrain_at_checkpoint(run, epoch, retrain, mode="self_consistent", alpha=alpha, cache=cache) for alpha in alphas
    ]
    return {"epoch": epoch, "alphas": alphas, "test_bpd": [summary["test_bpd"] for summary in summaries]}


# --------------------------------------------------------------------------------------------
# 4. Per-data-point optimal posterior (amortization gap)
# --------------------------------------------------------------------------------------------


def _bpd(nats: torch.Tensor) -> list[float]:
    """Mean over data points (last dim) of ELBOs in nats -> BPD per member, as a list."""
    values = estimators.bits_per_dim(nats.double().mean(dim=-1), NUM_DIMS)
    return values.reshape(-1).tolist()


def per_point_at_checkpoint(
    run: BaseRun,
    epoch: int,
    fit: PerPointSettings,
    retrain: RetrainSettings,
    *,
    cache: vcache.RunCache | None = None,
) -> dict:
    """Amortized, retrained-on-test and per-point-optimal BPD on the first fit.n_points test images.

    All three ELBOs use fit.eval_samples samples; the amortized and per-point ones share their noise
    (common random numbers, `estimators.amortization_gap`). Returns {"amortized_bpd",
    "optimal_inference_bpd", "per_point_bpd", "fraction_converged", "mean_steps"} (lists over seeds).
    """
    cache = cache or vcache.RunCache()
    if fit.n_points > run.n_test:
        raise ValueError(f"fit.n_points={fit.n_points} exceeds the run's n_test={run.n_test}; lower n_points")
    key = {
        "kind": "zhang2022-per-point-optimal-posterior",
        "code_version": CODE_VERSION,
        "base": base_key(run),
        "checkpoint_epoch": epoch,
        "fit": dataclasses.asdict(fit),
        "optimal_inference": _retrain_key(run, epoch, retrain, "optimal_inference", None),
    }

    def compute() -> dict:
        model = load_checkpoint(run, epoch, cache=cache)
        x = load_images(run)[1][: fit.n_points].to(vdevice.of(model))  # (n_points, 1, 28, 28)
        gap = estimators.amortization_gap(
            model, x, eval_samples=fit.eval_samples, generator=make_generator(fit.seed), **fit.fit_options()
        )
        retrained = retrained_model(run, epoch, retrain, mode="optimal_inference", cache=cache)
        with torch.no_grad():
            mean, log_std = retrained.encode(x)
        elbo_retrained = estimators.gaussian_elbo(
            retrained, x, mean, log_std, num_samples=fit.eval_samples, generator=make_generator(fit.seed)
        )
        return {
            "amortized_bpd": _bpd(gap.elbo_amortized),
            "optimal_inference_bpd": _bpd(elbo_retrained),
            "per_point_bpd": _bpd(gap.elbo_optimal),
            "fraction_converged": gap.fit.converged.double().mean(dim=-1).reshape(-1).tolist(),
            "mean_steps": gap.fit.steps.double().mean(dim=-1).reshape(-1).tolist(),
        }

    return cache.cached_result("per_point", key, compute, folder=f"zhang2022-per-point-{run.dataset}-e{epoch}")


def per_point_optimal(
    run: BaseRun, fit: PerPointSettings, retrain: RetrainSettings, *, cache: vcache.RunCache | None = None
) -> dict:
    """`per_point_at_checkpoint` at every checkpoint: {"epochs": [C], "<name>_bpd": [C][M], ...}."""
    epochs = run.checkpoint_epochs()
    rows = [per_point_at_checkpoint(run, epoch, fit, retrain, cache=cache) for epoch in epochs]
    return {"epochs": epochs, "n_points": fit.n_points, **{name: [row[name] for row in rows] for name in rows[0]}}


# --------------------------------------------------------------------------------------------
# 5. IWAE next to the ELBO; model samples
# --------------------------------------------------------------------------------------------

ENCODERS = ("amortized", "self_consistent", "optimal_inference")


def _encoder_model(run, epoch, encoder, retrain, alpha, cache) -> torch.nn.Module:
    if encoder == "amortized":
        return load_checkpoint(run, epoch, cache=cache)
    if encoder == "self_consistent":
        return retrained_model(run, epoch, retrain, mode="self_consistent", alpha=alpha, cache=cache)
    return retrained_model(run, epoch, retrain, mode="optimal_inference", cache=cache)


def iwae_comparison(
    run: BaseRun,
    retrain: RetrainSettings,
    *,
    epoch: int | None = None,
    alpha: float = 0.5,
    num_samples: int = 1000,
    n_points: int = 1000,
    seed: int = 0,
    cache: vcache.RunCache | None = None,
) -> dict:
    """IWAE_K and single-sample-ELBO BPD of the three encoders of one checkpoint, first n_points test images.

    IWAE (Burda et al. 2016) with K = num_samples and the encoder as proposal bounds log p_theta(x)
    from below more tightly than the ELBO; the three encoders share the decoder, so their IWAE values
    estimate the same log p_theta(x) and differ only by how good a proposal each encoder is.
    Returns {"epoch", "num_samples", "n_points", "<encoder>": {"iwae_bpd": [M], "elbo_bpd": [M]}}.
    """
    cache = cache or vcache.RunCache()
    alpha = check_alpha(alpha)
    epoch = run.checkpoint_epochs()[-1] if epoch is None else epoch
    check_int("num_samples", num_samples, minimum=1)
    check_int("n_points", n_points, minimum=1, maximum=run.n_test, hint="at most the run's n_test")
    x = load_images(run)[1][:n_points]
    table: dict[str, Any] = {"epoch": epoch, "num_samples": num_samples, "n_points": n_points}
    for encoder in ENCODERS:
        key = {
            "kind": "zhang2022-iwae",
            "code_version": CODE_VERSION,
            "encoder": _retrain_key(run, epoch, retrain, "self_consistent", alpha)
            if encoder == "self_consistent"
            else _retrain_key(run, epoch, retrain, "optimal_inference", None)
            if encoder == "optimal_inference"
            else {"base": base_key(run), "checkpoint_epoch": epoch},
            "num_samples": num_samples,
            "n_points": n_points,
            "seed": seed,
        }

        def compute(encoder=encoder) -> dict:
            model = _encoder_model(run, epoch, encoder, retrain, alpha, cache)
            iwae = estimators.iwae_bound(model, x, num_samples, generator=make_generator(seed))
            elbo = training.evaluate(model, x, seed=seed)["bits_per_dim"]
            return {"iwae_bpd": _bpd(iwae), "elbo_bpd": elbo if isinstance(elbo, list) else [elbo]}

        table[encoder] = cache.cached_result("iwae", key, compute, folder=f"zhang2022-iwae-{encoder}-{run.dataset}-e{epoch}")
    return table


def official_comparison(
    run: BaseRun,
    retrain: RetrainSettings,
    *,
    epoch: int,
    alpha: float = 0.5,
    cache: vcache.RunCache | None = None,
) -> dict:
    """Amortized and self-consistent test BPD of one checkpoint on the first 1000 test images.

    The image set of the official compression numbers (OFFICIAL_NUMBERS; fewer if n_test < 1000).
    Returns {"epoch", "n_images", "amortized_bpd": [M], "self_consistent_bpd": [M]}.
    """
    cache = cache or vcache.RunCache()
    alpha = check_alpha(alpha)
    n_images = min(OFFICIAL_TEST_IMAGES, run.n_test)
    x = load_images(run)[1][:n_images]
    key = {"kind": "zhang2022-official-comparison", "code_version": CODE_VERSION,
           "self_consistent": _retrain_key(run, epoch, retrain, "self_consistent", alpha), "n_images": n_images}

    def compute() -> dict:
        values = {}
        for encoder in ("amortized", "self_consistent"):
            bpd = training.evaluate(_encoder_model(run, epoch, encoder, retrain, alpha, cache), x)["bits_per_dim"]
            values[f"{encoder}_bpd"] = bpd if isinstance(bpd, list) else [bpd]
        return values

    return {"epoch": epoch, "n_images": n_images, **cache.cached_result("bpd", key, compute, folder=f"zhang2022-official-{run.dataset}-e{epoch}")}


def model_samples(
    run: BaseRun, *, epoch: int | None = None, n: int = 16, seed: int = 0, cache: vcache.RunCache | None = None
) -> torch.Tensor:
    """n samples x ~ p_theta(x|z), z ~ p(z) per seed from a checkpoint (default: the last): `(M, n, 1, 28, 28)`.

    The images the self-consistent encoder sees next to the real ones (eq. 16); cached.
    """
    cache = cache or vcache.RunCache()
    epoch = run.checkpoint_epochs()[-1] if epoch is None else epoch
    check_int("n", n, minimum=1)
    key = {"kind": "zhang2022-model-samples", "code_version": CODE_VERSION, "base": base_key(run),
           "checkpoint_epoch": epoch, "n": n, "seed": seed}

    def compute() -> torch.Tensor:
        return load_checkpoint(run, epoch, cache=cache).sample(n, generator=make_generator(seed))

    return cache.cached_result("samples", key, compute, folder=f"zhang2022-samples-{run.dataset}-e{epoch}")

