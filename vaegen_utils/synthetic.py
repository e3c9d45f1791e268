"""Paper A's pre-trained diffusion models and their sample banks (the "DM" of DMaaPx).

Paper A (Xiao, Zenn, Bamler 2024, Sec. 5.1 and App. D) trains an EDM (Karras et al. 2022) from
scratch on each VAE training set (8 x A100 for about a day per model) and samples it once with an
18-step Heun sampler; Algorithm 2 (App. B.9) then trains the VAE on T x N of those samples. Neither
the EDM training nor its checkpoints can be reproduced or downloaded here, so this module provides
the CPU-sized substitute built by `vaegen_utils.diffusion`:

- **Shipped checkpoints** (`SHIPPED_ROOT = checkpoints/xiao2024/`): the EMA weights of
  `diffusion.cpu_config()` (a 1.05 M-parameter, 3-level UNet without attention) trained with the DDPM
  noise-prediction loss on the VAE's own training set, `n_train = 1000` images (subset seed 0) of
  BinaryMNIST and of FashionMNIST, for 3000 steps of batch 128 in bf16 autocast (384 epochs of the
  subset), plus one early checkpoint (step 750) of the BinaryMNIST run for the paper's open question
  of how the DM's quality changes the gains. Each folder holds `weights.pt` + `config.json`
  (`diffusion.save_diffusion`) and `provenance.json`: the SHA-256 of the weight file, the
  DiffusionConfig, the training settings, the data spec, the step, the exact Python call that
  reproduces it, its training time, the per-50-step training-loss curve and the torch version.
  `load_pretrained` checks the SHA-256 before loading.
- **Why these sizes.** The cpu profile must train every VAE of paper A in minutes on 2 CPU cores, so
  the VAEs train on 1000 real images (not 60,000) and the DM learns the same 1000 images (paper A
  trains its DM on exactly the VAE's training set). One bf16 training step of this UNet costs ~1 s
  on one core of the project's 2-core machine, so 3000 steps take about an hour per model (measured:
  55 min BinaryMNIST, 50 min FashionMNIST, one torch thread each, the two runs and other jobs sharing
  the machine): too long for a notebook, hence shipped checkpoints (4.2 MB each) with the command
  that retrains them (`train_pretrained`, or `diffusion_model(..., retrain=True)`).
- **Sample banks** (`sample_bank`): the T x N samples of Algorithm 2 generated once with a
  deterministic sampler (DDIM, eta = 0, one seed per image as in paper A) and stored as uint8 chunks
  in the cache (`diffusion.generate_bank`); a bank grows by whole chunks and serves any request up to
  its size, so every notebook reads a prefix of the same bank. The bank's manifest records the
  weights' SHA-256, sampler, steps and seed; `source.json` next to it names the shipped checkpoint.

- **Settings per profile, defined once** (`bank_settings`, `dm_notebook_settings`): which sampler
  and how many steps make the bank (every DMaaPx run of the `xiao2024_*` notebooks and of the gap
  decomposition reads the same bank), and what `vaegen_xiao2024_diffusion_model` trains, samples and
  checks.

Typical use (the VAE notebooks):

    bank = synthetic.sample_bank("binary_mnist", 20_000, **synthetic.bank_settings("cpu").sample_options())
    source = bank.data_source(1000, binarize=True, pad_to=32)   # training.train(..., data_source=source)
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from . import data, diffusion, paths, profiles
from . import io as vio
from .checks import check_choice, check_int, check_sequence, file_sha256

#: Where the shipped checkpoints live: checkpoints/xiao2024/ in a checkout (committed to git), package
#: data (vaegen_utils/shipped/xiao2024/) in an installed copy; see paths.package_data_dir.
SHIPPED_ROOT = paths.package_data_dir() / "xiao2024"
DATASETS = ("binary_mnist", "fashion_mnist")  # paper A's MNIST-type data sets with a shipped DM
STAGES = ("final", "early")
PROVENANCE_FILE = "provenance.json"
PROVENANCE_FORMAT = "vaegen_utils.synthetic.provenance"
PROVENANCE_FORMAT_VERSION = 1
SOURCE_FILE = "source.json"  # written into a bank folder: which DM made the bank

#: The training recipe of the shipped checkpoints (`train_pretrained` runs exactly this).
TRAINING = {
    "batch_size": 128,
    "learning_rate": 1e-3,
    "seed": 0,
    "precision": "bfloat16",
    "checkpoint_steps": 250,
}
FINAL_STEP = 3000
EARLY_STEP = 750  # 1/4 of the run: visibly worse samples (grey backgrounds), for the early-vs-final comparison
N_TRAIN = 1000
SUBSET_SEED = 0

#: (dataset, stage) -> step of the shipped checkpoint.
SHIPPED_STEPS = {
    ("binary_mnist", "final"): FINAL_STEP,
    ("fashion_mnist", "final"): FINAL_STEP,
    ("binary_mnist", "early"): EARLY_STEP,
}

#: Measured retraining time of one shipped model (sum of step times; see provenance.json for each).
RETRAIN_NOTE = (
    "3000 bf16 steps of batch 128, about 1 h per model on one torch thread (measured 55 min for BinaryMNIST, "
    "50 min for FashionMNIST on the shared 2-core machine; provenance.json 'train_seconds')"
)


# --------------------------------------------------------------------------------------------
# Settings per profile: the sample bank and the diffusion-model notebook
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BankSettings:
    """Which diffusion model and sampler make the synthetic data of DMaaPx (`sample_bank`).

    stage      "final" or "early" shipped checkpoint (the early one answers paper A's open question
               of how the DM's quality changes the gains, Sec. 6; binary_mnist only).
    sampler    "ddim" (deterministic, eta = 0) or "heun" (paper A App. D: EDM's 2nd-order Heun
               sampler, 18 steps).
    steps      sampler steps (cost is proportional to them).
    seed       seed of the initial noise (sample i always gets the same noise, so banks extend).
    precision  the UNet under bf16 autocast while sampling ("bfloat16", 2-3x faster on CPU) or float32.
    dm_steps   training steps of a DM that is not shipped (CIFAR-10): trained once into the cache on
               the study's own training images (paper A App. D: the DM sees only D_train).

    How many blocks of the bank a run reads (k of Algorithm 2) belongs to the run, not to the bank:
    every k reads a prefix of the same bank.
    """

    stage: str = "final"
    sampler: str = "ddim"
    steps: int = 20
    seed: int = 0
    precision: str = "bfloat16"
    dm_steps: int = 3000

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be 'final' or 'early' (the shipped diffusion checkpoints), got {self.stage!r}")
        check_choice("sampler", self.sampler, diffusion.SAMPLERS)
        check_int("steps", self.steps, minimum=1)
        check_int("seed", self.seed, minimum=0)
        check_choice("precision", self.precision, ("bfloat16", "float32"))
        check_int("dm_steps", self.dm_steps, minimum=1)

    def with_changes(self, **changes) -> "BankSettings":
        return dataclasses.replace(self, **changes)

    def sample_options(self) -> dict:
        """`sample_bank`'s sampler arguments (sampler, steps, seed, precision)."""
        return {"sampler": self.sampler, "steps": self.steps, "seed": self.seed, "precision": self.precision}


_BANK_COMMON = {"stage": "final", "seed": 0, "precision": "bfloat16", "dm_steps": 3000}
#: The bank per profile. cpu: 20 DDIM steps (clearly fewer isolated speckles on BinaryMNIST than 10,
#: at twice the cost; see vaegen_xiao2024_diffusion_model); paper: EDM's Heun sampler with 18 steps
#: (paper A App. D, 35 network evaluations).
BANK_BY_PROFILE = {
    "smoke": {**_BANK_COMMON, "sampler": "ddim", "steps": 2},
    "cpu": {**_BANK_COMMON, "sampler": "ddim", "steps": 20},
    "paper": {**_BANK_COMMON, "sampler": "heun", "steps": 18},
}


def bank_settings(profile: str, stage: str | None = "final", **overrides) -> BankSettings:
    """The sample bank of `profile` (one bank for every DMaaPx run of that profile).

    `stage` picks the shipped checkpoint ("final" or "early"); other overrides (sampler, steps, seed,
    precision, dm_steps) replace the profile's value unless None. Unknown names are refused.
    """
    return BankSettings(**profiles.resolve(profile, BANK_BY_PROFILE, stage=stage, **overrides))


@dataclass(frozen=True)
class DMNotebookSettings:
    """What `vaegen_xiao2024_diffusion_model` loads or trains, samples and checks.

    datasets       the data sets with a DM (paper A's MNIST-type sets, Table 3).
    early_dataset  the data set whose early checkpoint is compared with its final one.
    retrain        train the DMs here (True) or load the shipped checkpoints (False).
    n_train        the DM's training images, the same as the VAEs' (None: all 60,000).
    subset_seed    which training images form that subset.
    dm_steps, early_steps  training steps of the final and the early checkpoint when retraining.
    bank           the sample bank (`bank_settings`: the VAE notebooks read the same bank).
    n_samples      samples per DM checked here (the banks' first images).
    n_test         real test images for the nearest-neighbour distances.
    check_steps    the sampler check: the bank's steps against this many, on the same seeds.
    n_check        images in that check (at most n_samples).
    seed           seeds the nearest-neighbour subsamples (the samples have the bank's seed).
    """

    datasets: tuple[str, ...]
    early_dataset: str
    retrain: bool
    n_train: int | None
    subset_seed: int
    dm_steps: int
    early_steps: int
    bank: BankSettings
    n_samples: int
    n_test: int
    check_steps: int
    n_check: int
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "datasets",
            check_sequence("datasets", self.datasets, lambda name, value: _check_dataset(value), example='["binary_mnist"]'),
        )
        _check_dataset(self.early_dataset)
        if not isinstance(self.retrain, bool):
            raise ValueError(f"retrain must be True or False, got {self.retrain!r}")
        if self.n_train is not None:
            check_int("n_train", self.n_train, minimum=1, hint="None: all 60,000 training images")
        check_int("subset_seed", self.subset_seed, minimum=0)
        check_int("dm_steps", self.dm_steps, minimum=1)
        check_int("early_steps", self.early_steps, minimum=1, maximum=self.dm_steps)
        if not isinstance(self.bank, BankSettings):
            raise ValueError(f"bank must be a BankSettings (synthetic.bank_settings(profile)), got {type(self.bank).__name__}")
        check_int("n_samples", self.n_samples, minimum=1)
        check_int("n_test", self.n_test, minimum=1, maximum=10_000)
        check_int("check_steps", self.check_steps, minimum=1)
        check_int("n_check", self.n_check, minimum=1, maximum=self.n_samples, hint="at most n_samples")
        check_int("seed", self.seed, minimum=0)

    def models(self) -> list[tuple[str, str]]:
        """The (dataset, stage) DMs the notebook loads or trains: every final one, then the early one."""
        return [(dataset, "final") for dataset in self.datasets] + [(self.early_dataset, "early")]

    def training_steps(self, stage: str) -> int:
        """Training steps of the `stage` checkpoint when the DMs are retrained here."""
        return {"final": self.dm_steps, "early": self.early_steps}[_check_stage(stage)]

    def to_dict(self) -> dict:
        settings = dataclasses.asdict(self)
        return {**settings, "datasets": list(self.datasets), "bank": self.bank.sample_options() | {"stage": self.bank.stage}}


#: The DM notebook per profile. cpu: load the shipped checkpoints (about an hour per model to
#: retrain); paper: retrain our UNet on all 60,000 images for 50,000 steps (paper A's EDM is not
#: reproducible here), early checkpoint at 1/4 of the run as in the cpu profile (750 of 3000).
DM_NOTEBOOK_BY_PROFILE = {
    "smoke": {"retrain": False, "n_train": N_TRAIN, "dm_steps": FINAL_STEP, "early_steps": EARLY_STEP,
              "n_samples": 16, "n_test": 200, "check_steps": 4, "n_check": 8},
    "cpu": {"retrain": False, "n_train": N_TRAIN, "dm_steps": FINAL_STEP, "early_steps": EARLY_STEP,
            "n_samples": 2000, "n_test": 10_000, "check_steps": 50, "n_check": 250},
    "paper": {"retrain": True, "n_train": None, "dm_steps": 50_000, "early_steps": 12_500,
              "n_samples": 10_000, "n_test": 10_000, "check_steps": 50, "n_check": 1000},
}


def dm_notebook_settings(profile: str, *, bank: BankSettings | None = None, **overrides) -> DMNotebookSettings:
    """The settings of `vaegen_xiao2024_diffusion_model` for `profile`, with overrides (None: the profile's).

    Overrides: retrain, n_train, dm_steps, early_steps, n_samples, n_test, check_steps, n_check (each
    a table entry), datasets, early_dataset, subset_seed, seed; `bank` defaults to
    `bank_settings(profile)`, the bank the VAE notebooks read. n_check is capped at n_samples.
    """
    fixed = {"datasets": DATASETS, "early_dataset": "binary_mnist", "subset_seed": SUBSET_SEED, "seed": 0}
    table = {name: {**fixed, **values} for name, values in DM_NOTEBOOK_BY_PROFILE.items()}
    settings = profiles.resolve(profile, table, **overrides)
    settings["n_check"] = min(check_int("n_check", settings["n_check"], minimum=1), check_int("n_samples", settings["n_samples"], minimum=1))
    return DMNotebookSettings(bank=bank_settings(profile) if bank is None else bank, **settings)


# --------------------------------------------------------------------------------------------
# Names and checks
# --------------------------------------------------------------------------------------------


def _check_dataset(dataset: Any, allowed: tuple[str, ...] = DATASETS) -> str:
    if dataset not in allowed:
        raise ValueError(f"dataset must be one of {allowed}, got {dataset!r}")
    return dataset


def _check_stage(stage: Any) -> str:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES} ('final': step {FINAL_STEP}, 'early': step {EARLY_STEP}), got {stage!r}")
    return stage


def shipped_name(dataset: str, step: int, n_train: int | None = N_TRAIN) -> str:
    """Folder name of a shipped checkpoint, e.g. `binary_mnist-n1000-step3000`."""
    size = "all" if n_train is None else str(int(n_train))
    return f"{dataset}-n{size}-step{int(step):04d}"


def stage_step(dataset: str, stage: str = "final") -> int:
    """The training step of the shipped (dataset, stage) checkpoint."""
    _check_dataset(dataset)
    _check_stage(stage)
    key = (dataset, stage)
    if key not in SHIPPED_STEPS:
        shipped = ", ".join(f"{d}/{s}" for d, s in SHIPPED_STEPS)
        raise ValueError(
            f"no shipped {stage!r} diffusion model for {dataset!r} (shipped: {shipped}); train one with "
            f"diffusion_model({dataset!r}, stage={stage!r}, retrain=True) or train_pretrained({dataset!r}, steps=...)"
        )
    return SHIPPED_STEPS[key]


def shipped_folder(dataset: str, *, stage: str = "final") -> Path:
    """`SHIPPED_ROOT/<dataset>-n1000-step<step>` for a shipped (dataset, stage)."""
    return SHIPPED_ROOT / shipped_name(dataset, stage_step(dataset, stage))



def _fix(folder: Path, dataset: str, step: int) -> str:
    try:
        shown = folder.relative_to(paths.repo_root())
    except ValueError:
        shown = folder
    return (
        f"restore the shipped files with `git checkout -- {shown}`, or retrain the model with "
        f"`vaegen_utils.synthetic.train_pretrained({dataset!r}, steps={step})` ({RETRAIN_NOTE}) and re-export it "
        f"with `export_checkpoint(run_dir, {step}, {dataset!r}, stage=...)`"
    )


# --------------------------------------------------------------------------------------------
# Loading the shipped models
# --------------------------------------------------------------------------------------------


def provenance(dataset: str, *, stage: str = "final") -> dict:
    """The provenance record of the shipped (dataset, stage) checkpoint (see the module docstring)."""
    folder = shipped_folder(dataset, stage=stage)
    path = folder / PROVENANCE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"the shipped diffusion model's {path} is missing; {_fix(folder, dataset, stage_step(dataset, stage))}"
        )
    record = vio.read_json(path)
    if not isinstance(record, dict) or record.get("format") != PROVENANCE_FORMAT:
        raise ValueError(f"{path} is not a vaegen diffusion provenance record; {_fix(folder, dataset, stage_step(dataset, stage))}")
    return record


def load_pretrained(dataset: str, *, stage: str = "final") -> diffusion.DiffusionModel:
    """The shipped diffusion model (EMA weights, eval mode) for `dataset` ('final' step 3000 or 'early' step 750).

    The weight file's SHA-256 is checked against `provenance.json` before loading, and the loaded
    state against the recorded state hash; a missing or corrupt file raises an error that names the
    file and the fix (`git checkout` it, or retrain with `train_pretrained`).
    """
    folder = shipped_folder(dataset, stage=stage)
    step = stage_step(dataset, stage)
    fix = _fix(folder, dataset, step)
    record = provenance(dataset, stage=stage)
    weights = folder / record.get("weights_file", diffusion.WEIGHTS_FILE)
    if not weights.is_file():
        raise FileNotFoundError(f"the shipped diffusion model's weight file {weights} is missing; {fix}")
    actual = file_sha256(weights)
    if actual != record["weights_file_sha256"]:
        raise ValueError(
            f"the shipped diffusion model's weight file {weights} is corrupt or was changed: SHA-256 {actual[:16]}... "
            f"but provenance.json records {record['weights_file_sha256'][:16]}... (a Git LFS pointer or a partial "
            f"checkout looks like this too); {fix}"
        )
    try:
        model = diffusion.load_diffusion(folder)
    except (OSError, ValueError) as error:
        raise ValueError(f"could not load the shipped diffusion model in {folder} ({error}); {fix}") from error
    if diffusion.weights_sha256(model) != record["weights_sha256"]:
        raise ValueError(f"the weights loaded from {weights} do not match provenance.json's weights_sha256; {fix}")
    return model


# --------------------------------------------------------------------------------------------
# Training (the exact reproduction) and choosing a model
# --------------------------------------------------------------------------------------------


def default_run_dir(dataset: str, n_train: int | None = N_TRAIN, subset_seed: int = SUBSET_SEED) -> Path:
    """`cache_dir()/diffusion/xiao2024-<dataset>-n<n_train>-s<subset_seed>`: one run, every step count."""
    size = "all" if n_train is None else str(int(n_train))
    return paths.cache_dir() / "diffusion" / f"xiao2024-{dataset}-n{size}-s{int(subset_seed)}"


def training_images(dataset: str, n_train: int | None = N_TRAIN, subset_seed: int = SUBSET_SEED) -> torch.Tensor:
    """The images a DM is trained on: the VAE's own training set (paper A App. D)."""
    return data.load_dataset(dataset, "train", n_train=n_train, subset_seed=subset_seed).images


def train_pretrained(
    dataset: str,
    *,
    steps: int = FINAL_STEP,
    n_train: int | None = N_TRAIN,
    subset_seed: int = SUBSET_SEED,
    run_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> diffusion.DiffusionModel:
    """Train (or resume, or extend) the DM of the shipped checkpoints and return its EMA model at `steps`.

    Exactly the call that made the shipped checkpoints (their provenance.json 'python_call'):
    `diffusion.train_diffusion(diffusion.cpu_config(), images, steps=steps, batch_size=128,
    learning_rate=1e-3, seed=0, precision="bfloat16", run_dir=run_dir, checkpoint_steps=250)` with
    `images = data.load_dataset(dataset, "train", n_train=n_train, subset_seed=subset_seed).images`.
    The run lives in `run_dir` (default `default_run_dir(...)` in the cache) with a checkpoint every
    250 steps, so `steps=750` after a 3000-step run returns the early checkpoint without training, and
    a larger `steps` extends the run. Bit-identical weights also need the same torch build, CPU and
    thread count (bf16 reductions); see provenance.json for those of the shipped runs.
    Paper profile: `n_train=None` (all 60,000 images) and many more steps.
    """
    _check_dataset(dataset, data.DATASETS)
    images = training_images(dataset, n_train, subset_seed)
    channels, height, width = images.shape[1:]
    config = diffusion.cpu_config(image_size=int(height), channels=int(channels))
    folder = Path(run_dir) if run_dir is not None else default_run_dir(dataset, n_train, subset_seed)
    result = diffusion.train_diffusion(
        config,
        images,
        steps=steps,
        batch_size=TRAINING["batch_size"],
        learning_rate=TRAINING["learning_rate"],
        seed=TRAINING["seed"],
        precision=TRAINING["precision"],
        run_dir=folder,
        checkpoint_steps=TRAINING["checkpoint_steps"],
        progress=progress,
    )
    return result.model


def diffusion_model(
    dataset: str,
    *,
    stage: str = "final",
    retrain: bool = False,
    steps: int | None = None,
    n_train: int | None = N_TRAIN,
    subset_seed: int = SUBSET_SEED,
    run_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> diffusion.DiffusionModel:
    """The DM a notebook uses: the shipped checkpoint, or (retrain=True) one trained here.

    retrain=False: `load_pretrained(dataset, stage=stage)`; `steps`, if given, must be the shipped step.
    retrain=True: `train_pretrained(dataset, steps=steps or the stage's step, n_train=..., ...)`;
    a rerun resumes from the run's checkpoints in the cache.
    """
    _check_stage(stage)
    if not retrain:
        shipped = stage_step(dataset, stage)
        if steps is not None and steps != shipped:
            raise ValueError(
                f"the shipped {stage!r} {dataset} model was trained for {shipped} steps, not {steps}; "
                f"pass retrain=True to train a {steps}-step model"
            )
        if n_train != N_TRAIN or subset_seed != SUBSET_SEED:
            raise ValueError(
                f"the shipped models were trained on n_train={N_TRAIN}, subset_seed={SUBSET_SEED}; pass retrain=True "
                f"to train on n_train={n_train}, subset_seed={subset_seed}"
            )
        return load_pretrained(dataset, stage=stage)
    if steps is None:
        steps = FINAL_STEP if stage == "final" else EARLY_STEP
    return train_pretrained(dataset, steps=steps, n_train=n_train, subset_seed=subset_seed, run_dir=run_dir, progress=progress)


# --------------------------------------------------------------------------------------------
# Sample banks
# --------------------------------------------------------------------------------------------


def sample_bank(
    dataset: str,
    num_samples: int,
    *,
    stage: str = "final",
    model: diffusion.DiffusionModel | None = None,
    sampler: str = "ddim",
    steps: int = 20,
    seed: int = 0,
    precision: str = "bfloat16",
    batch_size: int = 250,
    progress: bool | None = None,
) -> diffusion.SampleBank:
    """The bank of at least `num_samples` DM samples (Algorithm 2's D_DM): generated, resumed or extended.

    `model` defaults to the shipped (dataset, stage) DM. The bank lives in
    `cache_dir()/sample_banks/<key>-xiao2024-<dataset>-<stage>/`, keyed by the weights' SHA-256 and
    every sampler setting (not the size): a bank already holding more samples serves a smaller
    request unchanged, a larger request extends it (the first images never change), and a killed
    run continues from its last complete chunk of 1000. Samples are stored as grey levels; read
    BinaryMNIST samples with `binarize=True` (`diffusion.binarize_samples`).
    Paper A samples 18 Heun steps (35 network evaluations); the cpu profile uses few DDIM steps
    (cost is proportional to steps).
    """
    _check_dataset(dataset, data.DATASETS)
    _check_stage(stage)
    described = None
    if model is None:
        model = diffusion_model(dataset, stage=stage)
        described = {"shipped_folder": shipped_folder(dataset, stage=stage).name, "provenance": _bank_provenance(dataset, stage)}
    bank = diffusion.generate_bank(
        model,
        num_samples,
        sampler=sampler,
        steps=steps,
        seed=seed,
        precision=precision,
        batch_size=batch_size,
        chunk_size=1000,
        name=f"xiao2024-{dataset}-{stage}",
        progress=progress,
    )
    source = {
        "dataset": dataset,
        "stage": stage,
        "weights_sha256": bank.settings["weights_sha256"],
        "diffusion_model": described or {"note": "a model passed to sample_bank(model=...), not a shipped checkpoint"},
    }
    path = bank.folder / SOURCE_FILE
    if not path.is_file() or vio.read_json(path) != json.loads(json.dumps(source)):
        vio.atomic_write_json(path, source)
    return bank


def _bank_provenance(dataset: str, stage: str) -> dict:
    record = provenance(dataset, stage=stage)
    keys = ("step", "weights_file_sha256", "weights_sha256", "data", "python_call")
    return {key: record.get(key) for key in keys}


# --------------------------------------------------------------------------------------------
# Quality report
# --------------------------------------------------------------------------------------------


def sample_rows(n: int, max_queries: int | None, seed: int) -> torch.Tensor:
    """The rows `memorization_report` / `nearest_neighbour_distances` evaluate (all, or a seeded subset)."""
    if max_queries is None or max_queries >= n:
        return torch.arange(n)
    return torch.from_numpy(data.subset_indices(n, max_queries, seed))


def quality_report(
    samples: torch.Tensor,
    train_images: torch.Tensor,
    test_images: torch.Tensor,
    *,
    max_queries: int | None = 2000,
    seed: int = 0,
) -> dict:
    """Memorization check plus two simple, classifier-free quality measures of DM samples.

    - `diffusion.memorization_report`: nearest-training-neighbour L2 distances of the samples and of
      real test images (copies of training images would sit at distance ~0).
    - Closeness to unseen data: the median L2 distance from each sample to its nearest *test* image
      (`sample_test_median`), next to the same for the training images (`train_test_median`): samples
      from a good DM are about as close to held-out digits as real training digits are.
    - Plausible ink: the fraction of samples whose mean pixel value ("ink") lies inside the 1st-99th
      percentile range of the training images' ink (`plausible_fraction`, 0.98 for the training set
      itself). An undertrained DM leaves grey or white backgrounds, far outside that range.
      `plausible_sample_median` is the median nearest-training-neighbour distance of the plausible
      samples alone (so that off-manifold samples cannot make the memorization check look good).
    All inputs are (N, C, H, W) in the data range; pass BinaryMNIST samples binarized. Returns plain
    floats plus the distance tensors for histograms.
    """
    from .neighbours import nearest_neighbour_distances

    report = diffusion.memorization_report(samples, train_images, test_images, max_queries=max_queries, seed=seed)
    to_test = nearest_neighbour_distances(samples, test_images, max_test=max_queries, subsample_seed=seed).distances
    train_to_test = nearest_neighbour_distances(train_images, test_images, max_test=max_queries, subsample_seed=seed).distances
    ink = samples.flatten(1).mean(1).double()
    train_ink = train_images.flatten(1).mean(1).double()
    low, high = (float(value) for value in torch.quantile(train_ink, torch.tensor([0.01, 0.99], dtype=torch.float64)))
    plausible = (ink >= low) & (ink <= high)
    queried = plausible[sample_rows(len(samples), max_queries, seed)]  # the samples memorization_report measured
    plausible_distances = report["sample_distances"][queried].double()
    report.update(
        sample_test_distances=to_test,
        train_test_distances=train_to_test,
        sample_test_median=float(to_test.double().median()),
        train_test_median=float(train_to_test.double().median()),
        sample_ink=ink,
        train_ink=train_ink,
        ink_range=[low, high],
        plausible_fraction=float(plausible.double().mean()),
        plausible_sample_median=float(plausible_distances.median()) if len(plausible_distances) else float("nan"),
    )
    return report


# --------------------------------------------------------------------------------------------
# Exporting a training run's checkpoint as a shipped folder
# --------------------------------------------------------------------------------------------


def _python_call(config: diffusion.DiffusionConfig, settings: Mapping[str, Any], dataset: str, n_train, subset_seed, step: int) -> str:
    channels, size = config.channels, config.image_size
    if config == diffusion.cpu_config(image_size=size, channels=channels):
        config_text = "diffusion.cpu_config()" if (size, channels) == (28, 1) else f"diffusion.cpu_config(image_size={size}, channels={channels})"
    else:
        config_text = f"diffusion.DiffusionConfig.from_dict({json.dumps(config.to_dict())})"
    return (
        "from vaegen_utils import data, diffusion\n"
        f"images = data.load_dataset({dataset!r}, 'train', n_train={n_train!r}, subset_seed={subset_seed!r}).images\n"
        f"result = diffusion.train_diffusion({config_text}, images, steps={step}, "
        f"batch_size={settings['batch_size']}, learning_rate={settings['learning_rate']!r}, seed={settings['seed']}, "
        f"precision={settings['precision']!r}, ema_decay={settings['ema_decay']!r}, warmup_steps={settings['warmup_steps']}, "
        f"grad_clip={settings['grad_clip']!r}, weight_decay={settings['weight_decay']!r}, run_dir=RUN_DIR, "
        f"checkpoint_steps={TRAINING['checkpoint_steps']})\n"
        "model = result.model  # the EMA weights (shipped)"
    )


def loss_curve(
    dataset: str,
    *,
    stage: str = "final",
    run_dir: str | os.PathLike | None = None,
    step: int | None = None,
    window: int = 50,
) -> dict:
    """The DM's training loss, as means over `window` steps: {'window', 'step', 'mean_loss'}.

    From the shipped checkpoint's provenance.json (run_dir None), or from the checkpoint at `step`
    (default: the last) of a training run (e.g. `default_run_dir(dataset, n_train)` after retraining).
    """
    if run_dir is None:
        return provenance(dataset, stage=stage)["loss_curve"]
    steps = diffusion.list_checkpoints(run_dir)
    if not steps:
        raise FileNotFoundError(f"no diffusion checkpoint in {run_dir}")
    step = steps[-1] if step is None else step
    state = diffusion.read_training_state(run_dir, step)
    return _loss_curve(state["losses"], window)


def _loss_curve(losses: torch.Tensor, window: int = 50) -> dict:
    values = [float(value) for value in losses.tolist()]
    ends = list(range(window, len(values) + 1, window))
    return {
        "window": window,
        "step": ends,
        "mean_loss": [round(sum(values[end - window : end]) / window, 6) for end in ends],
    }


def _same_fingerprint(stored: Any, expected: Mapping[str, Any]) -> bool:
    """Data fingerprints agree: shape, dtype and sample hash exactly, the float64 sums to 1e-9 relative
    (their last bits depend on the torch thread count that summed them)."""
    if not isinstance(stored, Mapping) or set(stored) != set(expected):
        return False
    for key, value in expected.items():
        if isinstance(value, float):
            if not abs(float(stored[key]) - value) <= 1e-9 * max(1.0, abs(value)):
                return False
        elif stored[key] != value:
            return False
    return True


def export_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    dataset: str,
    *,
    stage: str,
    destination: str | os.PathLike | None = None,
    n_train: int | None = N_TRAIN,
    subset_seed: int = SUBSET_SEED,
    verify_data: bool = True,
    note: str | None = None,
) -> Path:
    """Write the EMA model of `run_dir`'s checkpoint at `step` as a shipped folder with provenance.json.

    destination defaults to `SHIPPED_ROOT/<dataset>-n<n_train>-step<step>`. The folder is written to a
    temporary folder and renamed when complete (`checkpoints.write_checkpoint_atomically`). With
    verify_data, the run's data fingerprint must equal that of `load_dataset(dataset, "train",
    n_train=n_train, subset_seed=subset_seed)` (the provenance then names the data truthfully).
    `note` is stored as is (e.g. the thread counts the run used). Returns the folder.
    """
    from .checkpoints import write_checkpoint_atomically

    _check_dataset(dataset, data.DATASETS)
    _check_stage(stage)
    run_path = Path(run_dir)
    setup_path = run_path / diffusion.RUN_CONFIG_FILE
    if not setup_path.is_file():
        raise FileNotFoundError(f"{run_path} is not a diffusion training run ({diffusion.RUN_CONFIG_FILE} missing)")
    setup = vio.read_json(setup_path)
    model = diffusion.load_checkpoint(run_path, step)  # EMA weights when the run kept them
    checkpoint = diffusion.checkpoint_folder(run_path, step)
    state = diffusion.read_training_state(run_path, step)
    ema = (checkpoint / "ema").is_dir()
    if verify_data:
        expected = json.loads(json.dumps(diffusion._data_fingerprint(training_images(dataset, n_train, subset_seed))))
        if not _same_fingerprint(setup.get("data"), expected):
            raise ValueError(
                f"the run in {run_path} was not trained on {dataset} train n_train={n_train} subset_seed={subset_seed} "
                f"(data fingerprints differ); pass the data spec it was trained on"
            )
    settings = setup["settings"]
    target = Path(destination) if destination is not None else SHIPPED_ROOT / shipped_name(dataset, step, n_train)
    import diffusers

    record_base = {
        "format": PROVENANCE_FORMAT,
        "format_version": PROVENANCE_FORMAT_VERSION,
        "paper": "xiao2024 (paper A), App. D: the DM of DMaaPx, CPU-sized substitute for the paper's EDM",
        "dataset": dataset,
        "stage": stage,
        "step": int(step),
        "ema": ema,
        "weights_file": diffusion.WEIGHTS_FILE,
        "weights_sha256": diffusion.weights_sha256(model),
        "num_parameters": model.num_parameters(),
        "diffusion_config": model.config.to_dict(),
        "training": {**settings, "checkpoint_steps": TRAINING["checkpoint_steps"], "objective": "DDPM noise prediction (epsilon MSE), data scaled to [-1, 1]"},
        "data": {"dataset": dataset, "split": "train", "n_train": n_train, "subset_seed": subset_seed, "fingerprint": setup.get("data")},
        "initial_weights_sha256": setup.get("initial_weights_sha256"),
        "python_call": _python_call(model.config, settings, dataset, n_train, subset_seed, int(step)),
        "shortcut": f"vaegen_utils.synthetic.train_pretrained({dataset!r}, steps={int(step)}, n_train={n_train!r}, subset_seed={subset_seed!r})",
        "train_seconds": round(float(state.get("train_seconds", 0.0)), 1),
        "train_seconds_note": "sum of the training steps' wall-clock times (checkpoint writes excluded), over every session of the run",
        "loss_curve": _loss_curve(state["losses"]) if "losses" in state else None,
        "versions": {"torch_training": state.get("torch_version"), "torch_export": str(torch.__version__), "diffusers": diffusers.__version__},
        "note": note,
    }

    def fill(staging: Path) -> None:
        extra = {"training": {"step": int(step), **settings}, "ema": ema, "dataset": dataset, "stage": stage}
        diffusion.save_diffusion(model, staging, extra=extra)
        record = {**record_base, "weights_file_sha256": file_sha256(staging / diffusion.WEIGHTS_FILE)}
        vio.atomic_write_json(staging / PROVENANCE_FILE, record)

    write_checkpoint_atomically(target.parent, target, fill, {"step": int(step), "dataset": dataset, "stage": stage})
    return target
