"""The training engine: in-memory minibatches, Adam, evaluation, checkpoints, resume, NaN guard.

One function, `train(model, train_images, config)`, trains any VAE of docs/architecture.md (a
single model or an `EnsembleMLPVAE` whose members train side by side) on the beta-ELBO
D + beta * R. Everything a paper needs is a parameter or a hook, not a new loop:

- paper B's standard training (Adam lr 1e-3, batch 100, a checkpoint every 100 epochs):
  `TrainConfig(epochs=1000, checkpoint_epochs=100)`;
- paper B's "optimal inference" (eq. 12: decoder fixed, encoder retrained on the test set) and
  "reverse half-asleep" / self-consistent training (eq. 16: encoder trained on an alpha = 0.5
  mixture of data and model samples): `retrain_encoder(...)` with
  `batch_transform=model_sample_mixture(model, alpha=0.5)`;
- paper A's DMaaPx (fresh synthetic samples every epoch): `data_source=lambda epoch: ...`;
- paper C's beta sweeps: an ensemble with `beta=[...]`, one value per member.

Design notes
- Data stay in memory as one tensor and are batched by index (`images[randperm(N)[i:i+B]]`):
  no DataLoader, no per-sample collation.
- Randomness comes from explicit generators, all derived from seeds in the config: one for the
  batch order, one per member for the reparameterisation noise, one for the batch transform and
  a fresh one for every evaluation. Member m of an ensemble draws exactly the noise a standalone
  run with seed `member_seeds[m]` would draw, so it trains step for step like that run (up to
  float rounding of batched matmuls). The loss is summed over members, so each member's gradient
  is its standalone gradient, and Adam is elementwise, so members stay independent
  (functorch issue #782).
- Same config, same seed, same device kind, same thread count (and library versions) -> bitwise
  the same parameters and history (`seconds` in the history is wall-clock time and is the only
  exception). The random streams are device-independent: every draw comes from a CPU generator
  and is copied to the device (`vaegen_utils.device`), so CPU and GPU runs differ only in
  arithmetic. The device and thread count of every session that trained a run are recorded in
  its `config.json` ("provenance") but are not part of its identity: a run trained on a GPU is
  resumed or reused on the CPU and vice versa (with a `ProvenanceWarning` naming both).
- Device: the model's. Training images are staged on it once (as uint8 levels where that is
  exact, scaled per batch: `device.stage_images`), the batch order and the beta tensor live on
  it, and the forward pass runs under bf16 autocast of that device type when asked.
- NaN guard without a host sync per step: each step's batch-mean loss, rate and distortion per
  member go into a small window on the device plus a device flag; the flag is read every
  `device.sync_every(device)` steps (every step on the CPU, so the error is raised before the
  bad step exactly as a per-step check would) and at every epoch end. Fused Adam receives the
  flag as `found_inf` and skips its update once it is set, so when the guard fires the model
  still holds the parameters from before the first bad step, and the error names that step's
  epoch, step, member and terms. The same reads warn (`ImplausibleLossWarning`) when a finite
  loss leaves the plausible range (PLAUSIBLE_NATS_PER_DIM), naming the first such step.
- Checkpoints are folders `run_dir/checkpoints/epoch_XXXX/` assembled in a temporary folder and
  renamed into place, so a checkpoint folder is either complete or absent; its marker records the
  SHA-256 of every file, checked before anything is loaded. Only the latest checkpoint of an
  unfinished run keeps the optimizer and RNG state (see "Checkpoints" below). A rerun with the
  same run_dir resumes and ends with the same parameters as an uninterrupted run; a finished run
  returns at once. `train` holds an advisory lock on run_dir for the whole call
  (`vaegen_utils.locks`), so a second process on the same folder waits and then finds the result.

What is not here: learning-rate schedules, gradient clipping and early stopping (each would couple
ensemble members; none of the three papers uses them), and multi-device training.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from .checks import check_int, check_number, named_fields
from . import device as vdevice
from . import estimators, io, locks
from . import progress as progress_module
from .checkpoints import (  # noqa: F401 - list_complete_checkpoints, fsync_directory: re-exported for callers
    CHECKPOINTS_FOLDER,
    COMPLETE_MARKER,
    drop_files,
    fsync_directory,
    list_complete_checkpoints,
    recorded_files,
    remove_stale_staging,
    verify_checkpoint,
    write_checkpoint_atomically,
)
from .seeding import derive_seed, make_generator

DataSource = Callable[[int], torch.Tensor]  # epoch (1-based) -> images (N, *data_shape)
BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # (x_batch, generator) -> x_batch

TRAINABLE_CHOICES = ("all", "encoder")
PRECISION_CHOICES = ("float32", "bfloat16")
RUN_CONFIG_FILE = "config.json"
RUN_LOCK_FILE = ".lock"  # advisory lock held by train() for the whole call (vaegen_utils.locks)
MODEL_FOLDER = "model"
STATE_FILE = "training_state.pt"
HISTORY_FILE = "history.json"
METRICS = ("elbo", "rate", "distortion", "bits_per_dim")
PROVENANCE_KEY = "provenance"  # config.json: one record per training session (device, threads, ...)
# A finite training loss is implausible once its rate or distortion exceeds this many nats per
# data dimension: a uniform 8-bit pixel costs ln 256 = 5.5 nats and a Bernoulli pixel ln 2, so a
# healthy VAE stays orders of magnitude below; a diverged one (lr 1e4 on MNIST: ELBO -2.8e36)
# passes it within a few steps.
PLAUSIBLE_NATS_PER_DIM = 1e4


class ImplausibleLossWarning(RuntimeWarning):
    """A finite training loss left the plausible range (training diverges); names step and terms."""


class ProvenanceWarning(UserWarning):
    """A run is resumed or reused on another device kind or torch thread count than trained it."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; raised before the bad step is applied.

    Attributes: `epoch`, `step` (1-based count of optimizer steps, including the failing one),
    `member` (ensemble member index, or None for a single model), `rate`, `distortion`, `loss`
    (batch means for that member, as floats).
    """

    def __init__(self, *, epoch: int, step: int, member: int | None, rate: float, distortion: float, loss: float):
        self.epoch, self.step, self.member = epoch, step, member
        self.rate, self.distortion, self.loss = rate, distortion, loss
        who = "the model" if member is None else f"ensemble member {member}"
        # The model holds the pre-step parameters: on the CPU the flag is read before every step;
        # elsewhere fused Adam skipped every step from the bad one on (found_inf).
        super().__init__(
            f"non-finite training loss for {who} at epoch {epoch}, step {step}: loss={loss}, "
            f"rate={rate}, distortion={distortion}. Check the data for NaN/inf values "
            f"(torch.isfinite(images).all()), lower the learning rate, or check the likelihood's "
            f"parameterisation (e.g. log-scales); the model holds the parameters from before this step."
        )


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@named_fields
@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run; JSON-serialisable (`to_dict` / `from_dict`) and validated.

    epochs            number of passes over the training images (paper B: 1000).
    batch_size        images per optimizer step (paper B: 100).
    learning_rate     Adam step size (paper B, MNIST: 1e-3).
    beta              weight of the rate in D + beta * R: a float, or a list with one value per
                      ensemble member (paper C's sweeps). beta = 1 is the ELBO.
    seed              seeds the batch order, the batch transform and (unless member_seeds is given)
                      the reparameterisation noise.
    member_seeds      optional noise seed per member: member m draws the noise a standalone run
                      with member_seeds=[member_seeds[m]] would draw. A single model accepts a list
                      of length one.
    checkpoint_epochs epochs after which to write a checkpoint when a run_dir is given: a list, or
                      an int k meaning every k epochs. The final epoch is always checkpointed.
    eval_epochs       epochs after which to evaluate on `eval_sets`: a list or an int k (every k
                      epochs). Default: the final epoch only.
    eval_at_start     also evaluate before the first step (epoch 0).
    trainable         "all", or "encoder" (decoder frozen; paper B's OptimalEval / ReverseHalfAsleep).
    num_samples       reparameterised samples per data point in the training loss (1 = standard).
    num_eval_samples  samples per data point for the evaluation ELBO (paper B's BPD: 1).
    eval_batch_size   images per forward pass during evaluation (memory only; no effect on values
                      beyond float rounding).
    eval_seed         seed of the evaluation noise; every evaluation restarts from it, so the same
                      weights always evaluate to the same numbers.
    drop_last         drop the last incomplete batch of an epoch (default: keep it, like a
                      DataLoader with drop_last=False).
    precision         "float32", or "bfloat16": the training forward pass runs under bf16 autocast
                      of the model's device type (matrix products in bf16, losses and Adam in
                      float32; `vaegen_utils.device.autocast`). On CPUs with
                      AMX this is ~3.6x faster for paper C's 3-layer MLP (benchmarks/); a notebook
                      that uses it must show it does not move its claims. Evaluation is always
                      float32, so reported numbers never carry bf16 rounding.
    """

    epochs: int
    batch_size: int = 100
    learning_rate: float = 1e-3
    beta: float | list[float] = 1.0
    seed: int = 0
    member_seeds: list[int] | None = None
    checkpoint_epochs: list[int] | int | None = None
    eval_epochs: list[int] | int | None = None
    eval_at_start: bool = False
    trainable: str = "all"
    num_samples: int = 1
    num_eval_samples: int = 1
    eval_batch_size: int = 1000
    eval_seed: int = 0
    drop_last: bool = False
    precision: str = "float32"

    def __post_init__(self) -> None:
        set_field = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        check_int("epochs", self.epochs, minimum=1, hint="train for at least one epoch")
        check_int("batch_size", self.batch_size, minimum=1)
        check_int("num_samples", self.num_samples, minimum=1)
        check_int("num_eval_samples", self.num_eval_samples, minimum=1)
        check_int("eval_batch_size", self.eval_batch_size, minimum=1)
        check_int("seed", self.seed, minimum=0)
        check_int("eval_seed", self.eval_seed, minimum=0)
        learning_rate = check_number("learning_rate", self.learning_rate)
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r} (paper B uses 1e-3 on MNIST)")
        set_field("learning_rate", learning_rate)
        set_field("beta", _normalise_beta(self.beta))
        if self.member_seeds is not None:
            seeds = list(self.member_seeds) if isinstance(self.member_seeds, (list, tuple)) else None
            if not seeds:
                raise ValueError(
                    f"member_seeds must be a non-empty list of non-negative ints (one per ensemble "
                    f"member) or None, got {self.member_seeds!r}"
                )
            for seed in seeds:
                check_int("member_seeds[...]", seed, minimum=0)
            set_field("member_seeds", seeds)
        if isinstance(self.beta, list) and self.member_seeds is not None and len(self.beta) != len(self.member_seeds):
            raise ValueError(
                f"beta has {len(self.beta)} values but member_seeds has {len(self.member_seeds)}; "
                "give one of each per ensemble member"
            )
        set_field("checkpoint_epochs", _normalise_epochs("checkpoint_epochs", self.checkpoint_epochs, self.epochs))
        set_field("eval_epochs", _normalise_epochs("eval_epochs", self.eval_epochs, self.epochs))
        if self.trainable not in TRAINABLE_CHOICES:
            raise ValueError(
                f"trainable must be one of {TRAINABLE_CHOICES} ('encoder' freezes the decoder, as in "
                f"paper B's optimal inference), got {self.trainable!r}"
            )
        if self.precision not in PRECISION_CHOICES:
            raise ValueError(
                f"precision must be one of {PRECISION_CHOICES} (bfloat16 = autocast for the "
                f"training forward pass), got {self.precision!r}"
            )
        for name in ("eval_at_start", "drop_last"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        """Plain JSON-able dict; `TrainConfig.from_dict(config.to_dict()) == config`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        return cls(**values)  # unknown keys are refused with the valid field names (checks.named_fields)

    def with_changes(self, **changes) -> "TrainConfig":
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    # Resolved schedules -----------------------------------------------------------------
    def resolved_checkpoint_epochs(self) -> list[int]:
        """Checkpoint epochs including the final epoch (always checkpointed when run_dir is set)."""
        return sorted(set(self.checkpoint_epochs or []) | {self.epochs})

    def resolved_eval_epochs(self) -> list[int]:
        """Evaluation epochs (default: the final epoch), plus 0 if eval_at_start."""
        epochs = set(self.eval_epochs) if self.eval_epochs is not None else {self.epochs}
        if self.eval_at_start:
            epochs.add(0)
        return sorted(epochs)




def _normalise_beta(beta: Any) -> float | list[float]:
    if isinstance(beta, (list, tuple)):
        if len(beta) == 0:
            raise ValueError(
                "beta is an empty list; give one float for a single model or one value per ensemble "
                "member, e.g. beta=[0.5, 1.0, 2.0]"
            )
        values = [check_number("beta[...]", value) for value in beta]
        negative = [value for value in values if value < 0]
        if negative:
            raise ValueError(f"every beta must be >= 0 (it weighs the rate, a KL divergence); got {list(beta)!r}")
        return values
    value = check_number("beta", beta)
    if value < 0:
        raise ValueError(f"beta must be >= 0 (it weighs the rate, a KL divergence); got {beta!r}")
    return value


def _normalise_epochs(name: str, value: Any, epochs: int) -> list[int] | None:
    """None stays None; an int k becomes [k, 2k, ...] up to epochs; lists are sorted and checked."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= epochs:
            raise ValueError(
                f"{name}={value} means 'every {value} epochs' but the run has only {epochs} epochs; "
                f"use a value in 1..{epochs} or an explicit list"
            )
        return list(range(value, epochs + 1, value))
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of epochs, an int k (every k epochs) or None, got {value!r}")
    for epoch in value:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= epochs:
            raise ValueError(
                f"{name} contains {epoch!r}, outside 1..{epochs} (the run has {epochs} epochs); "
                f"remove it or raise epochs"
            )
    return sorted(set(value))


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What `train` returns.

    model          the trained model (the object passed in, trained in place; `retrain_encoder`
                   trains a copy).
    history        one dict per (evaluation epoch, split): epoch, step, split, elbo, rate,
                   distortion (nats per data point, beta = 1 ELBO), bits_per_dim, seconds
                   (cumulative training wall-clock time, evaluation excluded). For an ensemble the
                   four metrics are lists with one value per member.
    config         the TrainConfig used.
    run_dir        the run folder, or None.
    resumed_from   the checkpoint epoch training resumed from (None for a fresh start).
    train_seconds  cumulative training wall-clock time, over all sessions of a resumed run.
    provenance     one record per training session of this run (`device.provenance()`: device,
                   GPU name, CUDA/cuDNN versions, precision policy, torch threads), oldest first;
                   empty for a run trained before records were kept.
    """

    model: torch.nn.Module
    history: list[dict]
    config: TrainConfig
    run_dir: Path | None = None
    resumed_from: int | None = None
    train_seconds: float = 0.0
    provenance: list[dict] = dataclasses.field(default_factory=list)

    def rows(self, split: str | None = None, member: int | None = None) -> list[dict]:
        """History rows, optionally for one split and (for ensembles) one member as plain floats."""
        rows = [row for row in self.history if split is None or row["split"] == split]
        if member is None:
            return rows
        return [
            {**row, "member": member, **{name: row[name][member] for name in METRICS if isinstance(row[name], list)}}
            for row in rows
        ]

    def final(self, split: str) -> dict:
        """The last history row for `split` (e.g. result.final('test')['bits_per_dim'])."""
        rows = self.rows(split)
        if not rows:
            present = sorted({row["split"] for row in self.history})
            raise KeyError(f"no evaluation rows for split {split!r}; splits present: {present}")
        return rows[-1]


# --------------------------------------------------------------------------------------------
# Loss terms with per-member noise
# --------------------------------------------------------------------------------------------


def num_members(model: torch.nn.Module) -> int | None:
    """The number of ensemble members, or None for a single model."""
    count = getattr(model, "num_members", None)
    if count is None:
        return None
    return int(count() if callable(count) else count)


def elbo_terms(
    model: torch.nn.Module,
    x: torch.Tensor,
    generators: Sequence[torch.Generator],
    num_samples: int = 1,
) -> estimators.ElboTerms:
    """Rate, distortion and ELBO per data point, with one noise generator per ensemble member.

    For a single model (one generator) this is exactly `estimators.beta_elbo`. For an ensemble,
    member m's reparameterisation noise comes from `generators[m]`, drawn in the same order and
    shape as `beta_elbo` would for a standalone model, so members reproduce standalone runs.
    x: `(B, *data_shape)` (shared batch) or `(M, B, *data_shape)`; terms are `(B,)` or `(M, B)`.
    """
    if len(generators) == 1 and num_members(model) is None:
        return estimators.beta_elbo(model, x, num_samples=num_samples, generator=generators[0])
    mean, log_std = model.encode(x)  # (M, B, Z) each
    rate = estimators.gaussian_kl_to_standard_normal(mean, log_std)  # (M, B)
    # Member m's noise is what reparameterize would draw from generators[m] for a standalone run;
    # drawn on the (CPU) generators, stacked and copied to the device once per step.
    noise = torch.stack(
        [
            vdevice.randn((num_samples, *mean.shape[1:]), generator=generator, dtype=mean.dtype)  # (S, B, Z)
            for generator in generators
        ],
        dim=1,
    )  # (S, M, B, Z)
    z = mean + torch.exp(log_std) * vdevice.to_device(noise, mean.device)  # (S, M, B, Z)
    distortion = -model.log_likelihood(x, z).mean(dim=0)  # (M, B)
    return estimators.ElboTerms(elbo=-distortion - rate, rate=rate, distortion=distortion)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    images: torch.Tensor,
    *,
    num_samples: int = 1,
    batch_size: int = 1000,
    seed: int = 0,
) -> dict[str, float | list[float]]:
    """Mean beta = 1 ELBO, rate, distortion (nats) and bits/dim over `images`, in eval mode.

    Deterministic: the noise generator(s) restart from `seed` on every call, so the same weights
    always give the same numbers; each ensemble member gets the noise a single model would.
    Returns floats for a single model and lists (one value per member) for an ensemble.
    """
    _check_images("evaluation images", images, model)
    members = num_members(model)
    noise_seed = derive_seed(seed, "evaluation-noise")
    generators = [make_generator(noise_seed) for _ in range(members or 1)]
    device = vdevice.of(model)
    was_training = model.training
    model.eval()
    try:
        totals = None
        for batch in torch.split(images, batch_size):
            terms = elbo_terms(model, vdevice.to_device(batch, device), generators, num_samples)
            sums = torch.stack([terms.elbo, terms.rate, terms.distortion]).double().sum(dim=-1)  # (3,) or (3, M)
            totals = sums if totals is None else totals + sums
    finally:
        model.train(was_training)
    means = totals / images.shape[0]
    elbo, rate, distortion = means
    bpd = estimators.bits_per_dim(elbo, math.prod(model.data_shape))
    values = vdevice.to_host({"elbo": elbo, "rate": rate, "distortion": distortion, "bits_per_dim": bpd})
    return {name: value.tolist() for name, value in values.items()}


# --------------------------------------------------------------------------------------------
# Paper B's model-sample mixture
# --------------------------------------------------------------------------------------------


class ModelSampleMixture:
    """Batch transform: append model samples x ~ p_theta(x|z), z ~ p(z) to each real batch.

    Paper B, eq. 16 (self-consistent / "reverse half-asleep" training): the encoder is trained on
    m(x) = alpha p_theta(x) + (1 - alpha) p_data(x). For a batch of B real images we append
    n = round(B alpha / (1 - alpha)) model samples (alpha = 0.5: n = B, as in paper B's
    `ReverseHalfAsleep` with batch_size = sample_size = 100); alpha = 1 replaces the batch by B
    model samples (`ReverseSleep`). Samples are drawn without gradient: they are data.
    Paper B's final main.py passes `model.sample(...)`, a (z, x) tuple, as the data; we use x.

    For an ensemble, `model.sample` gives each member its own samples `(M, n, ...)`, and the real
    batch is repeated per member, so the result is `(M, B + n, ...)`.
    """

    def __init__(self, model: torch.nn.Module, alpha: float = 0.5):
        alpha = check_number("alpha", alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(
                f"alpha is the fraction of model samples in the mixture and must be in [0, 1], got {alpha}"
            )
        self.model = model
        self.alpha = alpha

    def num_model_samples(self, batch_size: int) -> int:
        if self.alpha == 1.0:
            return batch_size
        return int(round(batch_size * self.alpha / (1.0 - self.alpha)))

    def describe(self) -> str:
        return f"model_sample_mixture(alpha={self.alpha!r})"

    def __repr__(self) -> str:
        return self.describe()

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        count = self.num_model_samples(x.shape[0])
        if count == 0:
            return x
        with torch.no_grad():
            samples = self.model.sample(count, generator=generator)
        if isinstance(samples, tuple):  # paper B's bug was to use such a tuple as data
            raise TypeError(
                f"{type(self.model).__name__}.sample returned a tuple; the mixture needs the images x "
                "only (docs/architecture.md: sample(n, generator) -> x)"
            )
        samples = samples.to(device=x.device, dtype=x.dtype)
        if samples.dim() == x.dim() + 1:  # ensemble: (M, n, ...) -> repeat the real batch per member
            x = x.unsqueeze(0).expand(samples.shape[0], *x.shape)
            return samples if self.alpha == 1.0 else torch.cat([x, samples], dim=1)  # (M, B + n, ...)
        return samples if self.alpha == 1.0 else torch.cat([x, samples], dim=0)  # (B + n, ...)


def model_sample_mixture(model: torch.nn.Module, alpha: float = 0.5) -> ModelSampleMixture:
    """The batch transform of paper B's self-consistent training (eq. 16); see ModelSampleMixture."""
    return ModelSampleMixture(model, alpha)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
#
# A checkpoint folder holds `model/` (weights.pt + config.json), `history.json` and, only while it
# is the latest checkpoint of an unfinished run, `training_state.pt` (Adam moments and the RNG
# states, about twice the size of the weights). Its marker records epoch, step, train_seconds and
# the SHA-256 of every file (`checkpoints.verify_checkpoint` checks them before anything is loaded).
# When a later checkpoint is complete, the training state of the earlier ones is dropped; the final
# checkpoint is written without it (a finished run is never resumed). Resume therefore continues
# from the latest checkpoint that holds a training state, and from the start when none does (a
# checkpoint deleted by hand, or `python -m vaegen_utils.cache clean --keep-final`); the run ends
# bit for bit where an uninterrupted run ends.


def checkpoint_folder(run_dir: str | os.PathLike, epoch: int) -> Path:
    return Path(run_dir) / CHECKPOINTS_FOLDER / f"epoch_{epoch:04d}"


def list_checkpoints(run_dir: str | os.PathLike) -> list[int]:
    """Epochs with a complete checkpoint in run_dir, ascending (paper B evaluates each one)."""
    return list_complete_checkpoints(run_dir, "epoch_")


def _checkpoint_fix(folder: Path) -> str:
    """What to do about a damaged checkpoint: advice that works (train() recovers from it)."""
    return (
        f"Delete the checkpoint folder {folder}: the next train() call with this run_dir resumes from an "
        f"earlier checkpoint or retrains from the start, and ends with the same model. (Deleting the whole "
        f"run folder {folder.parent.parent} also works, and retrains everything.)"
    )


def _verify(folder: Path, *, required: Sequence[str] = (MODEL_FOLDER + "/weights.pt", HISTORY_FILE)) -> dict:
    return verify_checkpoint(folder, fix=_checkpoint_fix(folder), required=required)


def load_checkpoint(
    run_dir: str | os.PathLike, epoch: int | None = None, *, device: str | torch.device | None = None
) -> torch.nn.Module:
    """The model saved at `epoch` (default: the last checkpoint) of the run in run_dir, on `device`
    (default `device.resolve()`: CUDA when available).

    Every file of the checkpoint is checked against the SHA-256 recorded when it was written.
    """
    epochs = list_checkpoints(run_dir)
    if not epochs:
        raise FileNotFoundError(
            f"no complete checkpoint in {Path(run_dir) / CHECKPOINTS_FOLDER}; train with run_dir={str(run_dir)!r} first"
        )
    if epoch is None:
        epoch = epochs[-1]
    if epoch not in epochs:
        raise FileNotFoundError(f"no complete checkpoint for epoch {epoch} in {run_dir}; available epochs: {epochs}")
    folder = checkpoint_folder(run_dir, epoch)
    _verify(folder)
    return _load_model(folder / MODEL_FOLDER).to(vdevice.resolve(device))


def load_history(run_dir: str | os.PathLike, epoch: int | None = None) -> list[dict]:
    """The evaluation history saved with the checkpoint at `epoch` (default: the last one)."""
    epochs = list_checkpoints(run_dir)
    if not epochs:
        raise FileNotFoundError(f"no complete checkpoint in {Path(run_dir) / CHECKPOINTS_FOLDER}")
    folder = checkpoint_folder(run_dir, epochs[-1] if epoch is None else epoch)
    _verify(folder)
    return _read_history(folder)


def _read_history(folder: Path) -> list[dict]:
    return io.read_json(folder / HISTORY_FILE, fix=_checkpoint_fix(folder))


def _load_model(folder: Path) -> torch.nn.Module:
    from . import (
        models,  # imported lazily: models imports nothing from here, but keep import cheap
    )

    try:
        return models.load(folder)
    except Exception as error:  # noqa: BLE001 - re-raised with the folder and the fix
        raise ValueError(
            f"could not load the model saved in {folder} ({type(error).__name__}: {error}); the checkpoint "
            f"is corrupt or from an incompatible code version. {_checkpoint_fix(folder.parent)}"
        ) from error


def _write_checkpoint(
    run_dir: Path, epoch: int, model: torch.nn.Module, state: dict, history: list[dict], *, final: bool = False
) -> Path:
    """Assemble the checkpoint in a temporary folder, mark it complete, rename it into place; then
    drop the training state of the earlier checkpoints. `final`: the run's last epoch, written
    without training state (a finished run is never resumed)."""
    from . import models

    def fill(staging: Path) -> None:
        models.save(model, staging / MODEL_FOLDER)
        if not final:
            io.atomic_save(staging / STATE_FILE, lambda path: torch.save(state, path))
        io.atomic_write_json(staging / HISTORY_FILE, history)

    marker = {"epoch": epoch, "step": state["step"], "train_seconds": state["train_seconds"], "finished": final}
    target = write_checkpoint_atomically(run_dir / CHECKPOINTS_FOLDER, checkpoint_folder(run_dir, epoch), fill, marker)
    for earlier in list_checkpoints(run_dir):
        if earlier < epoch:
            folder = checkpoint_folder(run_dir, earlier)
            drop_files(folder, [STATE_FILE], fix=_checkpoint_fix(folder))
    return target


def _read_state(folder: Path) -> dict:
    """The training state (optimizer, RNG) of a verified checkpoint; never unpickles code."""
    path = folder / STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001
        raise ValueError(
            f"could not read {path} ({type(error).__name__}: {error}); the checkpoint is corrupt. "
            f"{_checkpoint_fix(folder)}"
        ) from error


def _holds_training_state(folder: Path, marker: dict) -> bool:
    files = recorded_files(marker)
    return STATE_FILE in files if files is not None else (folder / STATE_FILE).is_file()


def _find_resume_point(run_dir: Path, config: TrainConfig | None = None) -> tuple[Path, dict] | None:
    """(folder, state) to continue from, or None to start fresh. Call while holding the run's lock.

    A finished run (its final checkpoint and every requested one present) gives the final checkpoint
    and a state without optimizer or RNG entries. Otherwise: the latest checkpoint holding a training
    state; a later checkpoint without one (or a requested checkpoint that was removed) is retrained,
    with a warning. Staging folders of interrupted writes are removed first (we hold the lock).
    """
    remove_stale_staging(run_dir, holding_lock=True)
    epochs = list_checkpoints(run_dir)
    if not epochs:
        return None
    candidates = epochs
    if config is not None and epochs[-1] == config.epochs:
        missing = [epoch for epoch in config.resolved_checkpoint_epochs() if epoch not in epochs]
        folder = checkpoint_folder(run_dir, epochs[-1])
        if not missing:
            marker = _verify(folder)
            if "train_seconds" in marker:
                progress = {name: marker[name] for name in ("epoch", "step", "train_seconds")}
            else:  # a checkpoint of an older version: its training state holds the progress
                progress = _read_state(folder)
            return folder, progress
        warnings.warn(
            f"{run_dir} is finished but lacks the checkpoints of epochs {missing} that its config asks for "
            f"(removed, e.g. by `python -m vaegen_utils.cache clean --keep-final`); training again to rebuild them.",
            stacklevel=4,
        )
        candidates = [epoch for epoch in epochs if epoch < missing[0]]
    skipped = []
    for epoch in reversed(candidates):
        folder = checkpoint_folder(run_dir, epoch)
        marker = _verify(folder)
        if _holds_training_state(folder, marker):
            if skipped and candidates is epochs:
                _warn_retraining(run_dir, skipped, f"resuming from epoch {epoch}")
            return folder, _read_state(folder)
        skipped.append(epoch)
    if skipped and candidates is epochs:
        _warn_retraining(run_dir, skipped, "training from the start")
    return None


def _warn_retraining(run_dir: Path, skipped: list[int], action: str) -> None:
    warnings.warn(
        f"the checkpoints of epochs {sorted(skipped)} in {run_dir} hold weights only (their optimizer and "
        f"RNG state was dropped once a later checkpoint existed), so training cannot continue from them; "
        f"{action} (the result is the same as an uninterrupted run).",
        stacklevel=5,
    )


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


@locks.holding_folder_lock("run_dir", RUN_LOCK_FILE)
def train(
    model: torch.nn.Module,
    train_images: torch.Tensor,
    config: TrainConfig,
    *,
    eval_sets: Mapping[str, torch.Tensor] | None = None,
    run_dir: str | os.PathLike | None = None,
    data_source: DataSource | None = None,
    batch_transform: BatchTransform | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train `model` in place on the beta-ELBO with Adam; see the module docstring.

    model           a VAE (or EnsembleMLPVAE) of docs/architecture.md.
    train_images    `(N, *data_shape)` float tensor in the data range; batched by index.
    config          a TrainConfig.
    eval_sets       {"train": images, "test": images, ...}: evaluated (beta = 1 ELBO, rate,
                    distortion, bits/dim) at config.eval_epochs. Paper A/B evaluate the train split
                    on the real training images even when training on other data.
    run_dir         folder for config.json and checkpoints; an existing run with the same setup
                    resumes from its last checkpoint (or returns at once when finished); a different
                    setup raises before training. Locked for the whole call: another process
                    training into it waits until this call ends.
    data_source     optional `epoch -> images`: the training images for that epoch (1-based), e.g.
                    fresh diffusion samples for paper A's DMaaPx or a fresh dynamic binarization.
                    It must be deterministic in `epoch` for resume to reproduce a run.
    batch_transform optional `(x_batch, generator) -> x_batch` applied to every batch, with a
                    generator seeded from config.seed (e.g. `model_sample_mixture(model, 0.5)`).
    progress        True/False forces the progress bar on/off; None follows vaegen_utils.progress
                    (on in notebooks and terminals, off in tests and logs; $VAEGEN_PROGRESS).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    members = num_members(model)
    betas, noise_seeds = _member_settings(config, members)
    _check_images("train_images", train_images, model)
    eval_sets = dict(eval_sets or {})
    for name, images in eval_sets.items():
        _check_images(f"eval_sets[{name!r}]", images, model)
    if config.batch_size > train_images.shape[0] and config.drop_last:
        raise ValueError(
            f"batch_size={config.batch_size} exceeds the {train_images.shape[0]} training images and "
            "drop_last=True, so an epoch would have no batches; lower batch_size or set drop_last=False"
        )
    trainable = _trainable_parameters(model, config.trainable)
    device = vdevice.of(model)
    vdevice.apply_policy(device)

    resume_state = None
    run_path = None
    if run_dir is not None:
        run_path = Path(run_dir)
        run_setup = _run_setup(model, train_images, config, eval_sets, data_source, batch_transform)
        _check_or_write_run_config(run_path, run_setup)
        resume_state = _find_resume_point(run_path, config)

    # Generators (CPU, so every device draws the same streams): batch order, per-member
    # reparameterisation noise, batch transform.
    order_generator = make_generator(derive_seed(config.seed, "batch-order"))
    noise_generators = [make_generator(derive_seed(seed, "reparameterization-noise")) for seed in noise_seeds]
    transform_generator = make_generator(derive_seed(config.seed, "batch-transform"))
    beta = torch.tensor(betas, dtype=torch.float32, device=device) if members is not None else betas[0]  # (M,) or float

    frozen = [] if config.trainable == "all" else [p for p in model.decoder_parameters() if p.requires_grad]
    for parameter in frozen:  # paper B, eq. 12: the decoder theta stays fixed
        parameter.requires_grad_(False)
    was_training = model.training
    try:
        optimizer = _make_adam(trainable, config.learning_rate)
        history: list[dict] = []
        start_epoch, step, train_seconds = 0, 0, 0.0
        resumed_from = None
        if resume_state is not None:
            folder, state = resume_state
            _copy_weights(_load_model(folder / MODEL_FOLDER), model, folder)
            if "optimizer" in state:  # absent from the final checkpoint of a finished run
                optimizer.load_state_dict(state["optimizer"])
                order_generator.set_state(state["rng"]["batch_order"])
                for generator, saved in zip(noise_generators, state["rng"]["noise"]):
                    generator.set_state(saved)
                transform_generator.set_state(state["rng"]["batch_transform"])
            start_epoch, step, train_seconds = state["epoch"], state["step"], state["train_seconds"]
            history = _read_history(folder)
            resumed_from = start_epoch
        provenance = _session_provenance(run_path, device, training=start_epoch < config.epochs)

        staged = vdevice.stage_images(train_images, device) if data_source is None else None
        eval_sets = {name: vdevice.to_device(images, device) for name, images in eval_sets.items()}
        monitor = _LossMonitor(
            members=members, device=device, check_every=vdevice.sync_every(device), data_dims=math.prod(model.data_shape)
        )
        if _supports_found_inf(optimizer):
            optimizer.found_inf = monitor.non_finite  # fused Adam skips its update once a loss was non-finite
        forward_model = _CompiledForward(model) if vdevice.compile_enabled() and device.type not in ("cpu", "meta") else model

        eval_epochs = set(config.resolved_eval_epochs())
        checkpoint_epochs = set(config.resolved_checkpoint_epochs()) if run_path is not None else set()
        if start_epoch == 0 and 0 in eval_epochs and eval_sets:
            history += _evaluation_rows(model, eval_sets, config, epoch=0, step=0, seconds=0.0)

        num_train = train_images.shape[0]
        if config.drop_last:
            steps_per_epoch = num_train // config.batch_size
        else:
            steps_per_epoch = math.ceil(num_train / config.batch_size)
        bar = _progress_bar(progress, total=(config.epochs - start_epoch) * steps_per_epoch, initial_epoch=start_epoch)
        use_bfloat16 = config.precision == "bfloat16"
        try:
            for epoch in range(start_epoch + 1, config.epochs + 1):
                epoch_start = time.perf_counter()
                model.train()
                images = staged
                if data_source is not None:
                    images = vdevice.stage_images(_epoch_images(data_source, epoch, train_images, model), device)
                order = vdevice.randperm(num_train, generator=order_generator, device=device)  # (N,)
                batches = torch.split(order, config.batch_size)
                if config.drop_last and len(batches[-1]) < config.batch_size:
                    batches = batches[:-1]
                for index in batches:
                    x = images.batch(index)  # (B, *data_shape); index_select, ~3x faster than images[index]
                    if batch_transform is not None:
                        x = batch_transform(x, transform_generator)
                    with vdevice.autocast(device, use_bfloat16):
                        terms = elbo_terms(forward_model, x, noise_generators, config.num_samples)
                    loss = terms.loss(beta).float().mean(dim=-1).sum()  # sum over members of the batch mean
                    step += 1
                    if monitor.record(terms, beta, loss, epoch=epoch, step=step):
                        monitor.check()  # raises before this step's update when any loss so far was non-finite
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    bar.update(1)
                monitor.check()  # never evaluate or checkpoint a model that saw a non-finite loss
                train_seconds += time.perf_counter() - epoch_start
                if epoch in eval_epochs and eval_sets:
                    history += _evaluation_rows(model, eval_sets, config, epoch=epoch, step=step, seconds=train_seconds)
                    bar.set_postfix(_postfix(history), refresh=False)
                if epoch in checkpoint_epochs:
                    state = {
                        "epoch": epoch,
                        "step": step,
                        "train_seconds": train_seconds,
                        "optimizer": optimizer.state_dict(),
                        "rng": {
                            "batch_order": order_generator.get_state(),
                            "noise": [generator.get_state() for generator in noise_generators],
                            "batch_transform": transform_generator.get_state(),
                        },
                        "torch_version": str(torch.__version__),
                    }
                    _write_checkpoint(run_path, epoch, model, state, history, final=epoch == config.epochs)
        finally:
            bar.close()
    finally:
        if getattr(optimizer, "found_inf", None) is not None:
            del optimizer.found_inf
        for parameter in frozen:
            parameter.requires_grad_(True)
        model.train(was_training)
    return TrainResult(
        model=model,
        history=history,
        config=config,
        run_dir=run_path,
        resumed_from=resumed_from,
        train_seconds=train_seconds,
        provenance=provenance,
    )


def retrain_encoder(
    model: torch.nn.Module,
    images: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 100,
    learning_rate: float = 1e-3,
    seed: int = 0,
    eval_sets: Mapping[str, torch.Tensor] | None = None,
    batch_transform: BatchTransform | None = None,
    run_dir: str | os.PathLike | None = None,
    eval_epochs: list[int] | int | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Retrain the encoder of a copy of `model` with the decoder frozen; the caller's model is untouched.

    With `images` = the test set this is paper B's "optimal inference" (eq. 12, `OptimalEval`):
    q_phi is refitted to the test data for fixed theta, and the drop in test BPD measures the
    inference generalization gap. With the training images and
    `batch_transform=model_sample_mixture(model, alpha=0.5)` it is paper B's self-consistent /
    reverse-half-asleep training (eq. 16), which needs no test data. beta = 1 (the ELBO).
    """
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        trainable="encoder",
        eval_epochs=eval_epochs,
    )
    copy_of_model = copy.deepcopy(model)
    return train(
        copy_of_model,
        images,
        config,
        eval_sets=eval_sets,
        run_dir=run_dir,
        batch_transform=batch_transform,
        progress=progress,
    )


# --------------------------------------------------------------------------------------------
# Helpers of the engine
# --------------------------------------------------------------------------------------------


def _member_settings(config: TrainConfig, members: int | None) -> tuple[list[float], list[int]]:
    """(beta per member, noise seed per member); a single model counts as one member."""
    count = members or 1
    kind = f"an ensemble of {members} members" if members is not None else "a single model"
    if isinstance(config.beta, list):
        if len(config.beta) != count:
            raise ValueError(
                f"config.beta has {len(config.beta)} values but the model is {kind}; give one beta per "
                f"member (or a single float for all)"
            )
        betas = list(config.beta)
    else:
        betas = [config.beta] * count
    if config.member_seeds is not None:
        if len(config.member_seeds) != count:
            raise ValueError(
                f"config.member_seeds has {len(config.member_seeds)} seeds but the model is {kind}; "
                "give one seed per member (or None to use config.seed for all)"
            )
        seeds = list(config.member_seeds)
    else:
        seeds = [config.seed] * count
    return betas, seeds


def _check_images(name: str, images: Any, model: torch.nn.Module) -> None:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, *data_shape), got {type(images).__name__}")
    data_shape = tuple(model.data_shape)
    if tuple(images.shape[1:]) != data_shape or images.shape[0] == 0:
        raise ValueError(
            f"{name} has shape {tuple(images.shape)} but the model expects (N, {', '.join(map(str, data_shape))}) "
            f"with N >= 1; pass dataset.images (shape (N, C, H, W)), not a flattened or single image"
        )
    if not images.is_floating_point():
        raise ValueError(f"{name} has dtype {images.dtype}; convert to float32 in the data range (e.g. k/255)")


def _trainable_parameters(model: torch.nn.Module, trainable: str) -> list[torch.nn.Parameter]:
    if trainable == "all":
        parameters = [p for p in model.parameters() if p.requires_grad]
    else:
        parameters = [p for p in model.encoder_parameters() if p.requires_grad]
    if not parameters:
        raise ValueError(f"the model has no trainable parameters for trainable={trainable!r}")
    return parameters


def _make_adam(parameters: list[torch.nn.Parameter], learning_rate: float) -> torch.optim.Adam:
    """Adam with the fused kernel on CPU and CUDA when this torch supports it (torch >= 2.4), else foreach.

    Fused and foreach Adam agree to float rounding (~1e-8 here); a run always uses the same one.
    Only the fused kernel honours `found_inf` (the deferred NaN guard); devices without it (meta)
    get foreach.
    """
    if not all(parameter.device.type in ("cpu", "cuda") for parameter in parameters):
        return torch.optim.Adam(parameters, lr=learning_rate, foreach=True)
    try:
        return torch.optim.Adam(parameters, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(parameters, lr=learning_rate, foreach=True)


def _epoch_images(
    data_source: DataSource, epoch: int, train_images: torch.Tensor, model: torch.nn.Module
) -> torch.Tensor:
    images = data_source(epoch)
    _check_images(f"data_source({epoch})", images, model)
    if images.shape[0] != train_images.shape[0]:
        raise ValueError(
            f"data_source({epoch}) returned {images.shape[0]} images but train_images has "
            f"{train_images.shape[0]}; an epoch must have the same size every time (paper A's "
            f"'effective epoch' = |D_train| samples)"
        )
    return images


class _LossMonitor:
    """The NaN guard and plausibility check of `train`, on the device, read every `check_every` steps.

    `record` stores the step's batch means (loss, rate, distortion per member) in a window on the
    device and folds them into two device flags, without a host sync; `check` reads the flags
    (one sync) and, if one is set, copies the window to the host to name the first bad step.
    """

    def __init__(self, *, members: int | None, device: torch.device, check_every: int, data_dims: int):
        self.ensemble = members is not None
        self.check_every = check_every
        self.window = torch.zeros((check_every, 3, members or 1), dtype=torch.float32, device=device)
        self.where: list[tuple[int, int]] = []  # (epoch, step) of each filled row of the window
        self.non_finite = torch.zeros((), dtype=torch.float32, device=device)  # 1.0 = Adam's found_inf
        self.implausible = torch.zeros((), dtype=torch.bool, device=device)
        self.limit = PLAUSIBLE_NATS_PER_DIM * data_dims  # nats per data point
        self.warned = False

    @torch.no_grad()
    def record(self, terms: estimators.ElboTerms, beta, loss: torch.Tensor, *, epoch: int, step: int) -> bool:
        """Store one step's terms; True when the window is full (time to `check`)."""
        means = torch.stack(
            [
                terms.loss(beta).detach().float().mean(dim=-1).reshape(-1),
                terms.rate.detach().float().mean(dim=-1).reshape(-1),
                terms.distortion.detach().float().mean(dim=-1).reshape(-1),
            ]
        )  # (3, M)
        self.window[len(self.where)].copy_(means)
        self.where.append((epoch, step))
        bad = (~torch.isfinite(means[0])).any() | ~torch.isfinite(loss.detach())
        self.non_finite.copy_(torch.maximum(self.non_finite, bad.float()))
        self.implausible.logical_or_((means[1:].abs() > self.limit).any())
        return len(self.where) >= self.check_every

    def check(self) -> None:
        """Raise NonFiniteLossError / warn ImplausibleLossWarning for the first bad recorded step."""
        if not self.where:
            return
        if self.non_finite.is_meta:  # shapes only: nothing to read (device tests)
            self.where.clear()
            return
        non_finite, implausible = vdevice.to_host(torch.stack([self.non_finite, self.implausible.float()])).tolist()
        if non_finite or (implausible and not self.warned):
            window = vdevice.to_host(self.window[: len(self.where)])  # (k, 3, M)
            if implausible and not self.warned:
                self.warned = True
                self._warn(window)
            if non_finite:
                self._raise(window)
        self.where.clear()

    def _first(self, bad: torch.Tensor) -> tuple[int, int] | None:
        """(row, member) of the first True in a (k, M) mask, in step order."""
        hits = bad.nonzero()
        return (int(hits[0, 0]), int(hits[0, 1])) if len(hits) else None

    def _raise(self, window: torch.Tensor) -> None:
        found = self._first(~torch.isfinite(window[:, 0])) or (len(self.where) - 1, 0)  # else: the member sum overflowed
        row, member = found
        epoch, step = self.where[row]
        loss, rate, distortion = (float(value) for value in window[row, :, member])
        raise NonFiniteLossError(
            epoch=epoch, step=step, member=member if self.ensemble else None, rate=rate, distortion=distortion, loss=loss
        )

    def _warn(self, window: torch.Tensor) -> None:
        found = self._first((window[:, 1:].abs() > self.limit).any(dim=1))
        if found is None:
            return
        row, member = found
        epoch, step = self.where[row]
        loss, rate, distortion = (float(value) for value in window[row, :, member])
        who = "the model" if not self.ensemble else f"ensemble member {member}"
        warnings.warn(
            f"implausible training loss for {who} at epoch {epoch}, step {step}: loss={loss:.4g}, rate={rate:.4g}, "
            f"distortion={distortion:.4g} nats per data point, beyond {PLAUSIBLE_NATS_PER_DIM:g} nats per data "
            f"dimension ({self.limit:.4g} here): training is diverging. Lower the learning rate or check the "
            f"data range and the likelihood; training continues (it stops only on NaN/inf).",
            ImplausibleLossWarning,
            stacklevel=4,
        )


def _supports_found_inf(optimizer: torch.optim.Optimizer) -> bool:
    """Fused Adam skips its update when `optimizer.found_inf` is 1 (the hook GradScaler uses)."""
    return bool(optimizer.defaults.get("fused"))


class _CompiledForward:
    """The model with `encode` and `log_likelihood` compiled ($VAEGEN_COMPILE=1); the model itself is untouched."""

    def __init__(self, model: torch.nn.Module):
        self._model = model
        self.encode = torch.compile(model.encode)
        self.log_likelihood = torch.compile(model.log_likelihood)

    def __getattr__(self, name: str):
        return getattr(self._model, name)


def _session_provenance(run_path: Path | None, device: torch.device, *, training: bool) -> list[dict]:
    """This session's provenance appended to the run's config.json (when it trains); all sessions' records.

    Device and thread count are not part of a run's identity (README, Reproducibility): a run is
    resumed or reused on any device, and a ProvenanceWarning says so when the records name
    another device kind or thread count than this session's.
    """
    record = vdevice.provenance(device)
    if run_path is None:
        return [record]
    path = run_path / RUN_CONFIG_FILE
    stored = io.read_json(path)
    records = list(stored.get(PROVENANCE_KEY) or [])
    others = sorted(
        {
            f"{item.get('device')} with {item.get('torch_threads')} torch threads"
            for item in records
            if (torch.device(str(item.get("device", "cpu"))).type, item.get("torch_threads"))
            != (device.type, record["torch_threads"])
        }
    )
    if others:
        warnings.warn(
            f"{run_path} was trained on {', '.join(others)}; this session runs on {record['device']} with "
            f"{record['torch_threads']} torch threads. Its checkpoints are {'resumed' if training else 'reused'} as they "
            f"are: their numbers are those of the device and thread count that trained them (README, Reproducibility).",
            ProvenanceWarning,
            stacklevel=3,
        )
    if training:
        records.append(record)
        io.atomic_write_json(path, {**stored, PROVENANCE_KEY: records})
    return records


def _evaluation_rows(model, eval_sets, config: TrainConfig, *, epoch: int, step: int, seconds: float) -> list[dict]:
    rows = []
    for split, images in eval_sets.items():
        metrics = evaluate(
            model, images, num_samples=config.num_eval_samples, batch_size=config.eval_batch_size, seed=config.eval_seed
        )
        rows.append({"epoch": epoch, "step": step, "split": split, **_json_safe(metrics), "seconds": seconds})
    return rows


def _json_safe(metrics: dict) -> dict:
    """NaN/inf are not JSON; store them as None (and warn: the model has diverged somewhere)."""

    def clean(value):
        if isinstance(value, list):
            return [clean(item) for item in value]
        if not math.isfinite(value):
            warnings.warn(f"non-finite evaluation metric {value}; stored as null in the history", stacklevel=4)
            return None
        return value

    return {name: clean(value) for name, value in metrics.items()}


def _postfix(history: list[dict]) -> dict:
    row = history[-1]
    value = row["bits_per_dim"]
    shown = value if not isinstance(value, list) else (sum(v for v in value if v is not None) / max(len(value), 1))
    return {f"{row['split']}_bpd": f"{shown:.4f}" if shown is not None else "nan"}


def _progress_bar(progress: bool | None, *, total: int, initial_epoch: int):
    """The training bar; `vaegen_utils.progress` decides widget / text / terminal / off."""
    return progress_module.bar(total=total, progress=progress, unit="step", desc=f"training from epoch {initial_epoch}")


def _copy_weights(source: torch.nn.Module, target: torch.nn.Module, folder: Path) -> None:
    try:
        target.load_state_dict(source.state_dict())
    except RuntimeError as error:
        raise ValueError(
            f"the checkpoint in {folder} does not fit this model ({error}); the run folder belongs to a "
            f"different architecture. Delete {folder.parent.parent.parent} or pass another run_dir."
        ) from error


# Run identity ------------------------------------------------------------------------------


def describe_callable(function: Callable | None) -> str | None:
    """A stable description of a hook for config.json: its `describe()` or qualified name."""
    if function is None:
        return None
    describe = getattr(function, "describe", None)
    if callable(describe):
        return str(describe())
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    module = getattr(function, "__module__", None) or type(function).__module__
    return f"{module}.{name}"


def describe_model(model: torch.nn.Module) -> dict:
    """Class, config and parameter shapes: enough to tell whether a checkpoint fits this model."""
    config = getattr(model, "config", None)
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    elif dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    elif isinstance(config, (list, tuple)):
        config = [item.to_dict() if hasattr(item, "to_dict") else item for item in config]
    elif config is not None and not isinstance(config, (dict, str, int, float)):
        config = repr(config)
    return {
        "class": type(model).__name__,
        "config": config,
        "num_members": num_members(model),
        "parameter_shapes": {name: list(p.shape) for name, p in model.named_parameters()},
    }


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of a model's state (names, dtypes, shapes and bytes): the identity of its weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _run_setup(model, train_images, config, eval_sets, data_source, batch_transform) -> dict:
    setup = {
        "train_config": config.to_dict(),
        "model": describe_model(model),
        # The weights training starts from are part of the run: another init seed, or another
        # checkpoint's encoder to retrain, is another run. A resumed run rebuilds the same model.
        "initial_weights_sha256": weights_sha256(model),
        "train_images": {"shape": list(train_images.shape), "dtype": str(train_images.dtype)},
        "eval_sets": {name: list(images.shape) for name, images in eval_sets.items()},
        "data_source": describe_callable(data_source),
        "batch_transform": describe_callable(batch_transform),
    }
    return json.loads(json.dumps(setup, default=io._json_default))  # exactly what a JSON round trip gives


def _check_or_write_run_config(run_dir: Path, setup: dict) -> None:
    """Refuse (before training) to mix two different runs in one folder.

    A folder without a complete checkpoint holds nothing to protect, so a new setup takes it over.
    """
    path = run_dir / RUN_CONFIG_FILE
    if path.is_file():
        stored = {key: value for key, value in io.read_json(path).items() if key != PROVENANCE_KEY}  # not identity
        if stored != setup and not list_checkpoints(run_dir):
            io.atomic_write_json(path, setup)  # nothing was saved under the old setup: take the folder over
            return
        if stored != setup:
            found = _differences(stored, setup)
            hint = ""
            if any(line.startswith("initial_weights_sha256") for line in found):
                hint = (
                    " The model passed in does not hold the weights this run started from: build it again "
                    "the same way (same config and seed) before resuming, rather than reusing a model "
                    "object that an interrupted train() call already changed in place."
                )
            raise ValueError(
                f"{run_dir} holds a run with a different setup ({'; '.join(found[:6])}). Its checkpoints "
                f"cannot be resumed with this setup: delete {run_dir} to start over, or pass another "
                f"run_dir.{hint}"
            )
        return
    if list_checkpoints(run_dir):
        raise ValueError(
            f"{run_dir} has checkpoints but no {RUN_CONFIG_FILE}, so it is unknown what produced them; "
            f"delete {run_dir} or pass another run_dir."
        )
    io.atomic_write_json(path, setup)


def _differences(stored: Any, requested: Any, prefix: str = "") -> list[str]:
    if isinstance(stored, dict) and isinstance(requested, dict):
        found = []
        for key in sorted(set(stored) | set(requested), key=str):
            found += _differences(stored.get(key, "<missing>"), requested.get(key, "<missing>"), f"{prefix}{key}.")
        return found
    if stored != requested:
        return [f"{prefix.rstrip('.')}: stored {_short(stored)}, requested {_short(requested)}"]
    return []


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
