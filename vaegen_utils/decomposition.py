"""Unified gap decomposition: the three papers' gaps measured one way.

Each paper measures one slice of why a VAE's test ELBO falls behind its train ELBO: paper B (Zhang
et al. 2022) the inference generalization gap of the amortized encoder, paper A (Xiao et al. 2024)
the generalization gap G_g and the amortization gap G_a, paper C (Bozkurt et al. 2021) how the rate
weight beta moves the test bound. This module puts five training methods on one footing — binary
MNIST, paper B's MLP (`zhang2022.BaseRun`), one training-set size, the same seeds, the same
estimators — and splits each method's test ELBO into gaps:

    method            what changes (everything else is `zhang2022.BaseRun`)           source
    normal            nothing: paper B's base run (the cached zhang2022 models)          —
    beta              the rate weight beta < 1 in D + beta R (paper C's best beta, 0.1)  paper C
    self_consistent   the normal run's encoder retrained on alpha p_theta + (1 - alpha)  paper B eq. 16
                      p_data with the decoder frozen (zhang2022 "self_consistent")
    dmaapx            a fresh block of N diffusion-model samples every effective epoch,  paper A Alg. 2
                      cycling through k blocks of the shared sample bank (28x28, binarized)
    aug_naive         the training images augmented by Aug.Naive (paper A Table 8)       paper A

Measured per method at the final epoch, per seed (nats per image, `measure`):

- train and test ELBO of the amortized encoder on all n_train / n_test images (`elbo_samples`
  samples each): G_g = ELBO(train) - ELBO(test) (paper A Eq. 3);
- on the first `fit.n_points` training and test images (IWAE and the q* fits are too expensive for
  all of them): the amortized ELBO; the ELBO of the encoder retrained on the *test* set with the
  decoder frozen (paper B eq. 12; fit on the very images it is scored on, so an upper reference
  for any encoder); the ELBO of the per-point optimal Gaussian q* (Cremer et al. 2018; started from
  the retrained encoder's output on test, from the method's encoder on train); and
  log p^(x) = IWAE_K with q* as the proposal (Cremer et al.'s estimate of log p(x); the IWAE with
  the amortized encoder as proposal, `test_iwae_amortized`, is reported too, and for an overfit
  encoder it is a much looser bound). All ELBOs and IWAEs of one split share their Monte Carlo
  noise (common random numbers: one eval seed, per-point noise streams, `estimators`).

The gaps (`decompose`, pure arithmetic, per seed, test subset unless said otherwise):

    model gap                        log p^(train) - log p^(test)         (the decoder overfits)
    inference generalization gap     ELBO(retrained on test) - ELBO(q_phi)  (paper B eq. 11)
    amortization gap                 ELBO(q*) - ELBO(q_phi)                (paper A Eq. 4, Cremer)
      = inference generalization gap + residual amortization gap, with
    residual amortization gap        ELBO(q*) - ELBO(retrained on test)   (what even an encoder fit
                                                                            on the test set misses)
    remaining variational gap        log p^(test) - ELBO(q*)               (Cremer's approximation gap:
                                                                            the Gaussian family)
    total                            log p^(train) - ELBO_test(q_phi)
                                   = model + remaining + residual amortization + inference gen. gap

q* >= retrained >= amortized hold in expectation (q* is the per-point optimum, the retrained encoder
is fit on the test images); with finite fits and samples small violations are possible and are
reported, not clipped. The self-consistent method changes the encoder only, so its decoder — and
with it log p^, the retrained encoder and q* — is normal training's (`measure` reuses them).

Cost is dominated by training the three new models (beta, DMaaPx, Aug.Naive: 3 seeds x 160 epochs x
1000 images, ~1 min each on 2 idle cores), the q* fits and IWAE_K; everything is cached by its full
settings (`vaegen_utils.cache`), and the normal and self-consistent models are paper B's cached ones.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from . import augment, estimators, synthetic, training, zhang2022
from .claims import mean_sd
from . import cache as vcache
from . import device as vdevice
from . import profiles
from .checks import check_fields, check_int
from .seeding import make_generator
from .synthetic import BankSettings, bank_settings

# Salt of every key made here: bump it when a change below changes what a setting produces.
CODE_VERSION = "decomposition-1"

METHODS = ("normal", "beta", "self_consistent", "dmaapx", "aug_naive")
TRAINED_METHODS = ("normal", "beta", "dmaapx", "aug_naive")  # trained from scratch (self_consistent retrains an encoder)
METHOD_LABELS = {
    "normal": "Normal training",
    "beta": "β < 1",
    "self_consistent": "Self-consistent",
    "dmaapx": "DMaaPx",
    "aug_naive": "Aug.Naive",
}
METHOD_SOURCES = {
    "normal": "paper B base run (Sec. 2.2)",
    "beta": "paper C (beta-VAE, Eq. 1)",
    "self_consistent": "paper B (eq. 16)",
    "dmaapx": "paper A (Algorithm 2)",
    "aug_naive": "paper A (Table 8)",
}

# Per-seed quantities of `measure` (nats per image).
LEVELS = (
    "train_elbo_all",  # amortized ELBO on all n_train training images
    "test_elbo_all",  # amortized ELBO on all n_test test images
    "train_elbo",  # amortized ELBO on the training subset
    "train_elbo_optimal",  # ELBO of q* on the training subset
    "train_log_p",  # IWAE_K with q* as proposal on the training subset
    "test_elbo",  # amortized ELBO on the test subset
    "test_elbo_retrained",  # ELBO of the encoder retrained on the test set (decoder frozen)
    "test_elbo_optimal",  # ELBO of q* on the test subset
    "test_log_p",  # IWAE_K with q* as proposal on the test subset
    "test_iwae_amortized",  # IWAE_K with the amortized encoder as proposal on the test subset
)
# The stacked segments of the decomposition, bottom to top; they sum to `total`.
STACK = ("model_gap", "remaining_variational_gap", "residual_amortization_gap", "inference_generalization_gap")
GAPS = STACK + ("amortization_gap", "generalization_gap", "total", "train_variational_gap")
GAP_LABELS = {
    "model_gap": "model gap: log p̂(train) − log p̂(test)",
    "remaining_variational_gap": "remaining variational gap: log p̂ − ELBO(q*)",
    "residual_amortization_gap": "residual amortization gap: ELBO(q*) − ELBO(retrained)",
    "inference_generalization_gap": "inference generalization gap: ELBO(retrained) − ELBO(q_φ)",
    "amortization_gap": "amortization gap: ELBO(q*) − ELBO(q_φ)",
    "generalization_gap": "generalization gap G_g: ELBO(train) − ELBO(test)",
    "total": "log p̂(train) − ELBO_test(q_φ)",
    "train_variational_gap": "log p̂(train) − ELBO_train(q_φ)",
}


def check_method(method: Any) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------



@dataclass(frozen=True)
class Setup:
    """Everything that decides the five methods and their measurement.

    base          paper B's base run (`zhang2022.BaseRun`; binary MNIST): model, data, seeds, epochs.
                  The same settings as the zhang2022 notebooks reuse their cached normal models.
    retrain       encoder retraining (decoder frozen) for the self-consistent encoder (eq. 16) and
                  for the encoder retrained on the test set (eq. 12); zhang2022's settings reuse its cache.
    fit           the per-point q* fit (`estimators.PerPointSettings`); `fit.n_points` is the size of
                  the train and test subsets of the IWAE / q* / retrained columns, `fit.eval_samples`
                  the Monte Carlo samples of every subset ELBO.
    beta          the rate weight of the beta method (paper C: best test bound near 0.1).
    alpha         fraction of model samples in the self-consistent encoder's data (paper B: 0.5).
    bank_blocks   k of DMaaPx: blocks of n_train diffusion samples, one per effective epoch, cycled.
    bank          the diffusion sample bank (the xiao2024 notebooks' settings share one bank).
    augment_p     probability of each Aug.Naive operation (paper A: 0.1 or 0.12; 0.1 as xiao2024).
    iwae_samples  K of IWAE_K (Burda et al. 2016).
    elbo_samples  Monte Carlo samples of the full-set train/test ELBOs.
    eval_seed     seed of the evaluation noise (shared by all ELBOs and IWAEs: common random numbers).
    """

    base: zhang2022.BaseRun
    retrain: zhang2022.RetrainSettings
    fit: estimators.PerPointSettings
    beta: float = 0.1
    alpha: float = 0.5
    bank_blocks: int = 10
    bank: BankSettings = BankSettings()
    augment_p: float = 0.1
    iwae_samples: int = 1000
    elbo_samples: int = 10
    eval_seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.base, zhang2022.BaseRun):
            raise ValueError(f"base must be a zhang2022.BaseRun, got {type(self.base).__name__}")
        if self.base.dataset != "binary_mnist":
            raise ValueError(
                f"the decomposition runs on binary MNIST (the shipped diffusion model's data set), got {self.base.dataset!r}"
            )
        if not isinstance(self.retrain, zhang2022.RetrainSettings):
            raise ValueError(f"retrain must be a zhang2022.RetrainSettings, got {type(self.retrain).__name__}")
        if not isinstance(self.fit, estimators.PerPointSettings):
            raise ValueError(f"fit must be a estimators.PerPointSettings, got {type(self.fit).__name__}")
        n_train = self.base.n_train or 60_000
        if self.fit.n_points > min(n_train, self.base.n_test):
            raise ValueError(
                f"fit.n_points={self.fit.n_points} exceeds the training ({n_train}) or test ({self.base.n_test}) "
                "images; lower n_points"
            )
        beta = self.beta
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or not 0 < beta:
            raise ValueError(f"beta must be a positive number (paper C: 0.1), got {beta!r}")
        object.__setattr__(self, "beta", float(beta))
        object.__setattr__(self, "alpha", zhang2022.check_alpha(self.alpha))
        check_int("bank_blocks", self.bank_blocks, minimum=1)
        if not isinstance(self.bank, BankSettings):
            raise ValueError(f"bank must be a xiao2024.BankSettings, got {type(self.bank).__name__}")
        p = self.augment_p
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"augment_p is a probability in [0, 1], got {p!r}")
        check_int("iwae_samples", self.iwae_samples, minimum=1)
        check_int("elbo_samples", self.elbo_samples, minimum=1)
        check_int("eval_seed", self.eval_seed, minimum=0)

    @property
    def n_train(self) -> int:
        return self.base.n_train or 60_000

    @property
    def epoch(self) -> int:
        """The final epoch: every method is measured there."""
        return self.base.epochs

    def label(self, method: str) -> str:
        return f"β = {self.beta:g}" if check_method(method) == "beta" else METHOD_LABELS[method]

    def to_dict(self) -> dict:
        return {
            **{field.name: getattr(self, field.name) for field in dataclasses.fields(self)},
            "base": self.base.to_dict(),
            "retrain": dataclasses.asdict(self.retrain),
            "fit": dataclasses.asdict(self.fit),
            "bank": dataclasses.asdict(self.bank),
        }


# --------------------------------------------------------------------------------------------
# Training the methods
# --------------------------------------------------------------------------------------------


#: The decomposition's own sizes per profile. Its base run and encoder retraining are zhang2022's
#: named runs (so the normal and self-consistent models come from the zhang2022 notebooks' cache)
#: and its bank is xiao2024's (one shared bank); `n_train` None keeps zhang2022's value, and the
#: paper profile trains on the shipped diffusion model's 1000 images (DMaaPx needs a DM trained on
#: the VAE's own training set). n_points: images with IWAE, q* and the subset ELBOs (cpu: IWAE_1000
#: and q* cost ~0.1 s per image and model); fit_max_steps: q* Adam cap (cpu: 0.3 nats short of a
#: 5-sample 600-step fit, measured on 10 test images).
SETUP_BY_PROFILE = {
    "smoke": {"n_train": None, "bank_blocks": 2, "n_points": 8, "fit_max_steps": 10, "subset_elbo_samples": 10,
              "iwae_samples": 20, "elbo_samples": 2},
    "cpu": {"n_train": None, "bank_blocks": 10, "n_points": 100, "fit_max_steps": 300, "subset_elbo_samples": 100,
            "iwae_samples": 1000, "elbo_samples": 10},
    "paper": {"n_train": 1000, "bank_blocks": 10, "n_points": 1000, "fit_max_steps": 2000, "subset_elbo_samples": 1000,
              "iwae_samples": 1000, "elbo_samples": 100},
}
#: The q* fit, as xiao2024's G_a: one sample per Adam step, step size 1e-2 from the encoder's output,
#: Cremer et al. (2018)'s plateau rule with windows of 50 steps and patience 2.
FIT = {"num_samples": 1, "learning_rate": 1e-2, "check_every": 50, "patience": 2}


def setup(profile: str, *, epochs: int | None = None, seeds: Sequence[int] | None = None, beta: float = 0.1,
          alpha: float = 0.5, stage: str = "final", augment_p: float = 0.1, eval_seed: int = 0, **sizes) -> Setup:
    """The decomposition's `Setup` for `profile`; None overrides keep the profile's value.

    `sizes` override SETUP_BY_PROFILE's entries (n_train, bank_blocks, n_points, fit_max_steps,
    subset_elbo_samples, iwae_samples, elbo_samples); `epochs` and `seeds` go to zhang2022's base run.
    """
    check_fields("decomposition.setup size", sizes, SETUP_BY_PROFILE["cpu"])
    values = profiles.resolve(profile, SETUP_BY_PROFILE, **sizes)
    base = zhang2022.base_run(profile, n_train=values["n_train"], epochs=epochs, seeds=seeds)
    fit = estimators.PerPointSettings(
        n_points=values["n_points"], max_steps=values["fit_max_steps"], eval_samples=values["subset_elbo_samples"], **FIT
    )
    return Setup(
        base=base,
        retrain=zhang2022.retrain_settings(profile),
        fit=fit,
        beta=beta,
        alpha=alpha,
        bank_blocks=values["bank_blocks"],
        bank=bank_settings(profile, stage=stage),
        augment_p=augment_p,
        iwae_samples=values["iwae_samples"],
        elbo_samples=values["elbo_samples"],
        eval_seed=eval_seed,
    )


def bank(setup: Setup, *, progress: bool | None = None):
    """The diffusion sample bank of DMaaPx with at least bank_blocks x n_train samples (shared, cached)."""
    settings = setup.bank
    return synthetic.sample_bank(
        setup.base.dataset,
        setup.bank_blocks * setup.n_train,
        stage=settings.stage,
        sampler=settings.sampler,
        steps=settings.steps,
        seed=settings.seed,
        precision=settings.precision,
        progress=progress,
    )


def _arguments(setup: Setup, method: str, progress: bool | None = None) -> dict:
    """`cache.train_cached` arguments of a method trained from scratch other than "normal"."""
    if method not in ("beta", "dmaapx", "aug_naive"):
        raise ValueError(f"_arguments is for beta, dmaapx and aug_naive, got {method!r}")
    run = setup.base
    train_images, test_images = zhang2022.load_images(run)
    train_config = run.train_config()
    data_source = batch_transform = None
    extra: dict[str, Any] = {"method": method}
    if method == "beta":
        train_config = train_config.with_changes(beta=setup.beta)
        extra["beta"] = setup.beta
    elif method == "dmaapx":
        # Algorithm 2: one effective epoch = N = n_train DM samples; k blocks cycled; 28x28, binarized at 0.5.
        data_source = bank(setup, progress=progress).data_source(
            setup.n_train, num_blocks=setup.bank_blocks, binarize=True, pad_to=None
        )
        extra.update(bank=dataclasses.asdict(setup.bank), bank_blocks=setup.bank_blocks)
    else:
        batch_transform = augment.aug_naive(setup.augment_p, binary=True)
    return {
        "model_config": [run.model_config()] * run.num_seeds,
        "train_config": train_config,
        "data_spec": {**run.data_spec(), **extra},
        "images": train_images,
        "eval_sets": {"train": train_images, "test": test_images},
        "model_seed": list(run.seeds),
        "data_source": data_source,
        "batch_transform": batch_transform,
    }


@functools.lru_cache(maxsize=32)
def method_key(setup: Setup, method: str) -> str:
    """The cache key of a method's final model; part of every key derived from it."""
    check_method(method)
    run = setup.base
    if method == "normal":
        return vcache.config_key({"base": zhang2022.base_key(run), "epoch": setup.epoch})
    if method == "self_consistent":
        return vcache.config_key(
            {
                "kind": "zhang2022-self-consistent",
                "zhang2022_code_version": zhang2022.CODE_VERSION,
                "base": zhang2022.base_key(run),
                "epoch": setup.epoch,
                "alpha": setup.alpha,
                "retrain": dataclasses.asdict(setup.retrain),
            }
        )
    arguments = _arguments(setup, method)
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
    setup: Setup, method: str, *, cache: vcache.RunCache | None = None, progress: bool | None = None
) -> training.TrainResult:
    """Train (or load) the seed ensemble of a method trained from scratch (not "self_consistent")."""
    if check_method(method) not in TRAINED_METHODS:
        raise ValueError(
            "self_consistent is not trained from scratch: it retrains the normal run's encoder; use final_model"
        )
    if method == "normal":
        return zhang2022.train_base(setup.base, cache=cache, progress=progress)
    run = setup.base
    return vcache.train_cached(
        **_arguments(setup, method, progress),
        cache=cache,
        progress=progress,
        name=f"vaegen-decomposition-{method}-n{run.n_train or 'all'}-e{run.epochs}",
    )


def final_model(setup: Setup, method: str, *, cache: vcache.RunCache | None = None) -> torch.nn.Module:
    """The method's seed ensemble at the final epoch (trained or retrained first if missing)."""
    check_method(method)
    run = setup.base
    if method == "normal":
        return zhang2022.load_checkpoint(run, setup.epoch, cache=cache)
    if method == "self_consistent":
        return zhang2022.retrained_model(run, setup.epoch, setup.retrain, mode="self_consistent", alpha=setup.alpha, cache=cache)
    return training.load_checkpoint(train_method(setup, method, cache=cache).run_dir, setup.epoch)


def retrained_on_test(setup: Setup, method: str, *, cache: vcache.RunCache | None = None) -> torch.nn.Module:
    """The method's final model with its encoder retrained on the n_test test images, decoder frozen (eq. 12).

    normal and self_consistent share one decoder, hence one retrained encoder: paper B's cached
    `optimal_inference` retraining from the base run's final checkpoint.
    """
    check_method(method)
    cache = cache or vcache.RunCache()
    run = setup.base
    if method in ("normal", "self_consistent"):
        return zhang2022.retrained_model(run, setup.epoch, setup.retrain, mode="optimal_inference", cache=cache)
    key = {
        "kind": "vaegen-decomposition-retrain-on-test",
        "code_version": CODE_VERSION,
        "method": method_key(setup, method),
        "retrain": dataclasses.asdict(setup.retrain),
    }
    folder = cache.run_dir(key, name=f"vaegen-decomposition-{method}-retrained-on-test")
    test_images = zhang2022.load_images(run)[1]
    retrain = setup.retrain
    return training.retrain_encoder(
        final_model(setup, method, cache=cache),
        test_images,
        epochs=retrain.epochs,
        batch_size=retrain.batch_size,
        learning_rate=retrain.learning_rate,
        seed=retrain.seed,
        eval_sets={"test": test_images},
        run_dir=folder / vcache.TRAINING_FOLDER,
        eval_epochs=retrain.eval_every,
    ).model


# --------------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------------


def _per_seed(values: torch.Tensor) -> list[float]:
    """Mean over data points (last dim) per ensemble member, as a list over seeds."""
    return values.double().mean(dim=-1).reshape(-1).tolist()


def measure_models(
    model: torch.nn.Module,
    retrained: torch.nn.Module,
    train_images: torch.Tensor,
    test_images: torch.Tensor,
    *,
    fit: estimators.PerPointSettings,
    iwae_samples: int,
    elbo_samples: int,
    eval_seed: int = 0,
) -> dict:
    """Every level of `LEVELS` for one model (ensemble) and its retrained-on-test copy; per seed.

    Subsets: the first fit.n_points training and test images. Returns {name: [M] floats} plus
    "fraction_converged_train/test" and "mean_steps_train/test" of the q* fits.
    """
    n = fit.n_points
    train_images, test_images = train_images.to(vdevice.of(model)), test_images.to(vdevice.of(model))
    x_train, x_test = train_images[:n], test_images[:n]
    options = fit.fit_options()

    def noise() -> torch.Generator:  # the same base seed for every estimate: common random numbers
        return make_generator(eval_seed)

    def elbo(x, mean, log_std, samples=fit.eval_samples) -> torch.Tensor:
        return estimators.gaussian_elbo(model, x, mean, log_std, num_samples=samples, generator=noise())

    with torch.no_grad():
        encoded = {name: model.encode(x) for name, x in
                   (("train_all", train_images), ("test_all", test_images), ("train", x_train), ("test", x_test))}
        retrained_test = retrained.encode(x_test)
    # q*: on test started from the retrained encoder (closer to the optimum), on train from the model's own.
    fit_test = estimators.fit_optimal_posterior(retrained, x_test, eval_samples=None, generator=make_generator(fit.seed), **options)
    fit_train = estimators.fit_optimal_posterior(model, x_train, eval_samples=None, generator=make_generator(fit.seed), **options)
    out = {
        "train_elbo_all": _per_seed(elbo(train_images, *encoded["train_all"], samples=elbo_samples)),
        "test_elbo_all": _per_seed(elbo(test_images, *encoded["test_all"], samples=elbo_samples)),
        "train_elbo": _per_seed(elbo(x_train, *encoded["train"])),
        "train_elbo_optimal": _per_seed(elbo(x_train, fit_train.mean, fit_train.log_std)),
        "train_log_p": _per_seed(estimators.iwae_with_proposal(model, x_train, fit_train.mean, fit_train.log_std, iwae_samples, generator=noise())),
        "test_elbo": _per_seed(elbo(x_test, *encoded["test"])),
        "test_elbo_retrained": _per_seed(elbo(x_test, *retrained_test)),
        "test_elbo_optimal": _per_seed(elbo(x_test, fit_test.mean, fit_test.log_std)),
        "test_log_p": _per_seed(estimators.iwae_with_proposal(model, x_test, fit_test.mean, fit_test.log_std, iwae_samples, generator=noise())),
        "test_iwae_amortized": _per_seed(estimators.iwae_bound(model, x_test, iwae_samples, generator=noise())),
    }
    for split, result in (("train", fit_train), ("test", fit_test)):
        out[f"fraction_converged_{split}"] = _per_seed(result.converged)
        out[f"mean_steps_{split}"] = _per_seed(result.steps)
    return out


# Levels that depend on the decoder only; self_consistent takes them from normal training.
DECODER_LEVELS = ("train_elbo_optimal", "train_log_p", "test_elbo_retrained", "test_elbo_optimal", "test_log_p",
                  "fraction_converged_train", "fraction_converged_test", "mean_steps_train", "mean_steps_test")


def _measure_key(setup: Setup, method: str) -> dict:
    return {
        "kind": "vaegen-decomposition-measure",
        "code_version": CODE_VERSION,
        "method": method,
        "model": method_key(setup, method),
        "retrain": dataclasses.asdict(setup.retrain),
        "fit": dataclasses.asdict(setup.fit),
        "iwae_samples": setup.iwae_samples,
        "elbo_samples": setup.elbo_samples,
        "eval_seed": setup.eval_seed,
    }


def measure(setup: Setup, method: str, *, cache: vcache.RunCache | None = None) -> dict:
    """Every level of `LEVELS` for one method at the final epoch, per seed (nats); cached.

    Returns {level: [M]} plus the q* fits' "fraction_converged_*" and "mean_steps_*" and, for
    self_consistent, "decoder_from": "normal".
    """
    check_method(method)
    cache = cache or vcache.RunCache()
    key = _measure_key(setup, method)

    def compute() -> dict:
        train_images, test_images = zhang2022.load_images(setup.base)
        model = final_model(setup, method, cache=cache)
        if method != "self_consistent":
            return measure_models(
                model, retrained_on_test(setup, method, cache=cache), train_images, test_images,
                fit=setup.fit, iwae_samples=setup.iwae_samples, elbo_samples=setup.elbo_samples, eval_seed=setup.eval_seed,
            )
        # The self-consistent encoder sits on normal training's decoder: reuse the decoder-only levels.
        shared = measure(setup, "normal", cache=cache)
        n = setup.fit.n_points
        train_images, test_images = train_images.to(vdevice.of(model)), test_images.to(vdevice.of(model))
        x_train, x_test = train_images[:n], test_images[:n]
        fit = setup.fit
        with torch.no_grad():
            encoded = {name: model.encode(x) for name, x in
                       (("train_all", train_images), ("test_all", test_images), ("train", x_train), ("test", x_test))}

        def elbo(x, mean, log_std, samples=fit.eval_samples) -> list[float]:
            return _per_seed(estimators.gaussian_elbo(model, x, mean, log_std, num_samples=samples,
                                                      generator=make_generator(setup.eval_seed)))

        own = {
            "train_elbo_all": elbo(train_images, *encoded["train_all"], samples=setup.elbo_samples),
            "test_elbo_all": elbo(test_images, *encoded["test_all"], samples=setup.elbo_samples),
            "train_elbo": elbo(x_train, *encoded["train"]),
            "test_elbo": elbo(x_test, *encoded["test"]),
            "test_iwae_amortized": _per_seed(
                estimators.iwae_bound(model, x_test, setup.iwae_samples, generator=make_generator(setup.eval_seed))
            ),
        }
        return {**own, **{name: shared[name] for name in DECODER_LEVELS}, "decoder_from": "normal"}

    return cache.cached_result("measure", key, compute, folder=f"vaegen-decomposition-measure-{method}")


def measure_all(setup: Setup, methods: Sequence[str] = METHODS, *, cache: vcache.RunCache | None = None) -> dict:
    """{method: measure(setup, method)} for every method, in order."""
    return {method: measure(setup, method, cache=cache) for method in methods}


def training_seconds(setup: Setup, methods: Sequence[str] = TRAINED_METHODS, *, cache: vcache.RunCache | None = None) -> dict:
    """{method: training time in seconds when the run was trained} (0 for a run that needed none)."""
    return {method: float(train_method(setup, method, cache=cache).train_seconds) for method in methods
            if method in TRAINED_METHODS}


# --------------------------------------------------------------------------------------------
# The decomposition (pure arithmetic) and summaries
# --------------------------------------------------------------------------------------------


def decompose(levels: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """The gaps of `GAPS` from the levels of one method, per seed (see the module docstring).

    Pure: levels maps every name of `LEVELS` to equally long sequences (one value per seed).
    By construction total = model_gap + remaining_variational_gap + residual_amortization_gap +
    inference_generalization_gap and amortization_gap = residual + inference generalization gap.
    """
    missing = [name for name in LEVELS if name not in levels]
    if missing:
        raise ValueError(f"levels lack {missing}; pass the dict of measure()")
    values = {name: torch.as_tensor([float(v) for v in levels[name]], dtype=torch.float64) for name in LEVELS}
    lengths = {len(value) for value in values.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"every level needs the same non-zero number of seeds, got lengths {sorted(lengths)}")
    v = values
    gaps = {
        "model_gap": v["train_log_p"] - v["test_log_p"],
        "remaining_variational_gap": v["test_log_p"] - v["test_elbo_optimal"],
        "residual_amortization_gap": v["test_elbo_optimal"] - v["test_elbo_retrained"],
        "inference_generalization_gap": v["test_elbo_retrained"] - v["test_elbo"],
        "amortization_gap": v["test_elbo_optimal"] - v["test_elbo"],
        "generalization_gap": v["train_elbo_all"] - v["test_elbo_all"],
        "total": v["train_log_p"] - v["test_elbo"],
        "train_variational_gap": v["train_log_p"] - v["train_elbo"],
    }
    return {name: gap.tolist() for name, gap in gaps.items()}


def summary(measured: Mapping[str, Mapping[str, Sequence[float]]]) -> dict:
    """{method: {name: {"mean", "sd", "per_seed"}}} for every level and gap of every method."""
    out = {}
    for method, levels in measured.items():
        rows = {name: [float(v) for v in levels[name]] for name in LEVELS}
        rows.update(decompose(levels))
        out[method] = {name: {"mean": mean_sd(values)[0], "sd": mean_sd(values)[1], "per_seed": values}
                       for name, values in rows.items()}
    return out


def smallest(summarised: Mapping[str, Mapping[str, Mapping[str, float]]], name: str) -> str:
    """The method with the smallest seed-mean value of `name` (a gap)."""
    return min(summarised, key=lambda method: summarised[method][name]["mean"])


TABLE_LEVELS = ("train_elbo_all", "test_elbo_all", "test_elbo", "test_iwae_amortized", "test_log_p",
                "test_elbo_retrained", "test_elbo_optimal")
TABLE_GAPS = ("generalization_gap", "model_gap", "inference_generalization_gap", "amortization_gap",
              "residual_amortization_gap", "remaining_variational_gap")
TABLE_HEADERS = {
    "train_elbo_all": "train ELBO",
    "test_elbo_all": "test ELBO",
    "test_elbo": "test ELBO (subset)",
    "test_iwae_amortized": "test IWAE (q_φ proposal)",
    "test_log_p": "test log p̂ (IWAE, q* proposal)",
    "test_elbo_retrained": "test ELBO, encoder retrained on test",
    "test_elbo_optimal": "test ELBO, per-point q*",
    "generalization_gap": "G_g",
    "model_gap": "model gap",
    "inference_generalization_gap": "inference gen. gap",
    "amortization_gap": "amortization gap",
    "residual_amortization_gap": "residual amort. gap",
    "remaining_variational_gap": "remaining var. gap",
}


def markdown_table(summarised: Mapping[str, Mapping[str, Mapping[str, float]]], labels: Mapping[str, str],
                   columns: Sequence[str], *, digits: int = 2) -> str:
    """A markdown table: one row per method, "mean ± sd" per column (nats)."""
    header = "| method | " + " | ".join(TABLE_HEADERS.get(name, name) for name in columns) + " |"
    rule = "|---|" + "---:|" * len(columns)
    rows = [
        f"| {labels[method]} | "
        + " | ".join(f"{values[name]['mean']:.{digits}f} ± {values[name]['sd']:.{digits}f}" for name in columns)
        + " |"
        for method, values in summarised.items()
    ]
    return "\n".join([header, rule, *rows]) + "\n"
