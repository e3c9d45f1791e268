"""Paper C (Bozkurt et al., AISTATS 2021, "Rate-Regularization and Generalization in VAEs"): the experiments.

What this module is
-------------------
The orchestration behind the five `bozkurt2021_*` notebooks, so that each notebook is a few calls
and a plot (papers.md §4, C.0-C.6):

- data: `tetromino_split(data, "cv-16k")` and `image_split("mnist", 6000)` give a `SplitData`
  (train and test images plus a JSON description); `nearest_neighbours(split)` caches the
  test-to-train L2 distances (§4.2, Fig. 2 and the 90th-percentile example of Fig. 3);
- training: a `SweepSpec` (architecture, iterations, restart, precision, ...) and a split define
  one β sweep, trained as ONE 12-member ensemble (`EnsembleMLPVAE` / `EnsembleConvVAE`, member m
  with β_m) through `cache.train_cached`, so every notebook that needs the same sweep reuses it;
- evaluation: `run_sweep(spec, split)` returns the train and test rate R and distortion D
  (nats, β = 1 quantities of Eq. 5-6) of every member on fixed evaluation subsets, cached
  (a cached rerun never loads a model); `sweep_reconstructions` and `sweep_rate_decomposition`
  (I_q[x; z] and KL(q(z) || p(z)), §4.5, Fig. 8) are cached the same way;
- claims: pure functions on the curves (`minimum_shape`, `best_beta`, ...) that the notebooks
  turn into `Claim`s, and the RD-plane plot helpers shared by Figs. 3-7.

What it is not: a training loop (that is `training.train`), a model zoo (`models.bozkurt2021_mlp`
/ `bozkurt2021_cnn`) or the data generator (`tetrominoes`).

Choices the paper leaves open (papers.md C.5 UNVERIFIED items), made explicit here
---------------------------------------------------------------------------------
- Adam learning rate 1e-3 (the authors' earlier code); batch 128 and the β grid are the paper's.
- Within one restart all 12 β members start from the same initial weights and see the same batch
  order (common random numbers, so curves compare β values rather than initialisations);
  restarts differ in every seed. The paper's seeding is not known.
- Rate and distortion are evaluated with one posterior sample per point on fixed random subsets
  of `eval_points` training and test points (the same points for every β and restart).
- "Iterations" are Adam steps; the engine trains whole epochs, so a budget of I iterations on N
  points trains round(I / ceil(N / 128)) epochs (at least one) and the actual count is recorded.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .checks import check_int
from . import cache as cache_module
from . import device as vdevice
from . import data as data_module
from . import estimators, models, tetrominoes, training
from .seeding import derive_seed, make_generator

PAPER_KEY = "bozkurt2021"
# Paper C, footnote 2: the 12 values of every RD curve.
BETAS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 2.0, 3.0, 5.0)
PAPER_ITERATIONS = 257_000  # §4.3: "All models are trained for 257k iterations"
PAPER_RESTARTS = 5  # §4.3: "with 5 random restarts"
BATCH_SIZE = 128  # §4.3
LEARNING_RATE = 1e-3  # UNVERIFIED (papers.md C.5): alicanb/vae_novel_examples uses Adam 1e-3
MI_BATCH_SIZE = 512  # §4.5: q(z) "over batches of size 512" (Esmaeili et al. 2019)
DIFFICULT_PERCENTILE = 90.0  # Fig. 3: the test example at the 90th percentile of NN distance
ARCHITECTURES = ("mlp1", "mlp3", "cnn1", "cnn3")
ARCHITECTURE_LABELS = {"mlp1": "1-layer MLP", "mlp3": "3-layer MLP", "cnn1": "1-layer CNN", "cnn3": "3-layer CNN"}
IMAGE_DATASETS = ("mnist", "fashion_mnist")  # Fig. 7's data sets that load offline (data.load_dataset)
RESULTS_VERSION = 1  # bump when what a cached sweep result means changes
# 2: pairwise log-densities computed directly (the expanded quadratic form cancelled for very
# narrow posteriors and gave MI > log N); only the rate-decomposition results carry it.
ESTIMATOR_VERSION = 2


# --------------------------------------------------------------------------------------------
# Models and iteration budgets
# --------------------------------------------------------------------------------------------


def model_config(architecture: str, data_shape: Sequence[int] = (3, 32, 32)) -> models.MLPVAEConfig | models.ConvVAEConfig:
    """Paper C's networks (§4.3): "mlp1"/"mlp3" (512 units per layer), "cnn1"/"cnn3" (64 channels, k4 s2)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {ARCHITECTURES}")
    num_layers = int(architecture[-1])
    if architecture.startswith("mlp"):
        return models.bozkurt2021_mlp(num_layers, data_shape=data_shape)
    return models.bozkurt2021_cnn(num_layers, data_shape=data_shape)


def steps_per_epoch(num_train: int, batch_size: int = BATCH_SIZE) -> int:
    return math.ceil(num_train / batch_size)


def epochs_for_iterations(iterations: int, num_train: int, batch_size: int = BATCH_SIZE) -> int:
    """Whole epochs closest to an iteration budget (at least one): round(I / ceil(N / B))."""
    check_int("iterations", iterations, minimum=1)
    check_int("num_train", num_train, minimum=1)
    return max(1, round(iterations / steps_per_epoch(num_train, batch_size)))


# --------------------------------------------------------------------------------------------
# Data: splits as train/test tensors plus a JSON description
# --------------------------------------------------------------------------------------------


def short_count(count: int) -> str:
    """16384 -> '16k', 147456 -> '147k', 81920 -> '82k' (the paper's labels), 600 -> '600'."""
    return f"{round(count / 1000)}k" if count >= 1000 else str(count)


@dataclass(eq=False)
class SplitData:
    """One train/test split: images `(N, C, H, W)` float32 in [0, 1], gathered only when needed.

    `name` is the split's name ("random", "checkerboard", "cv-16k", "cd-16k", "cv-6000");
    `train_indices` / `test_indices` are positions in `train_source` / `test_source` (both the
    163,840 Tetrominoes, or a data set's own train and test sets). `train` and `test` copy the
    whole parts on first use (1 GB each for an 82k part); `train_subset(n)` and `test_rows(rows)`
    gather only the rows asked for, which is all that evaluation and the smoke profile need.
    """

    dataset: str
    name: str
    train_source: torch.Tensor
    test_source: torch.Tensor
    train_indices: np.ndarray
    test_indices: np.ndarray
    source_seed: int

    @property
    def num_train(self) -> int:
        return len(self.train_indices)

    @property
    def num_test(self) -> int:
        return len(self.test_indices)

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.train_source.shape[1:])

    @functools.cached_property
    def train(self) -> torch.Tensor:
        return self.train_subset(self.num_train)

    @functools.cached_property
    def test(self) -> torch.Tensor:
        return self.test_rows(np.arange(self.num_test))

    def train_subset(self, count: int | None = None) -> torch.Tensor:
        """The first `count` training images (all when None): `(count, C, H, W)`."""
        if count is None or count >= self.num_train:
            if "train" in self.__dict__:
                return self.__dict__["train"]
            count = self.num_train
        return self.train_source.index_select(0, torch.from_numpy(self.train_indices[:count]))

    def train_rows(self, rows: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Training images at positions `rows` of the training part."""
        return self.train_source.index_select(0, torch.from_numpy(self.train_indices[np.asarray(rows, dtype=np.int64)]))

    def test_rows(self, rows: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Test images at positions `rows` of the test part."""
        return self.test_source.index_select(0, torch.from_numpy(self.test_indices[np.asarray(rows, dtype=np.int64)]))

    @property
    def label(self) -> str:
        """The paper's notation: CV(16k/147k), CD(16k/16k), Checkerboard(82k/82k), CV(82k/82k)."""
        kind = {"random": "CV", "checkerboard": "Checkerboard"}.get(self.name, self.name.split("-")[0].upper())
        prefix = {"tetrominoes": "", "mnist": "MNIST ", "fashion_mnist": "Fashion-MNIST "}.get(self.dataset, f"{self.dataset} ")
        return f"{prefix}{kind}({short_count(self.num_train)}/{short_count(self.num_test)})"

    def spec(self) -> dict:
        """A JSON description that identifies the split (part of every cache key)."""
        return {
            "dataset": self.dataset,
            "split": self.name,
            "num_train": self.num_train,
            "num_test": self.num_test,
            "source_seed": self.source_seed,
            "render_version": tetrominoes.RENDER_VERSION if self.dataset == "tetrominoes" else None,
        }


def tetromino_split(data: tetrominoes.TetrominoDataset, split: str, *, seed: int = tetrominoes.PAPER_SEED) -> SplitData:
    """A paper C split of the Tetrominoes (§4.2): "random", "checkerboard", "cv-<size>", "cd-<size>"."""
    indices = tetrominoes.make_split(split, data.factors, seed)
    return SplitData(
        dataset="tetrominoes",
        name=split,
        train_source=data.images,
        test_source=data.images,
        train_indices=indices.train_indices,
        test_indices=indices.test_indices,
        source_seed=seed,
    )


def image_split(dataset: str, num_train: int, *, subset_seed: int = 0) -> SplitData:
    """A small constant-volume split of MNIST or Fashion-MNIST (Fig. 7, "a single split with a small
    training set"): a seeded random subset of `num_train` training images; the test set is the data
    set's own 10,000 test images. Pixels k/255 in [0, 1] with the Bernoulli decoder (paper C,
    footnote 1), as for the Tetrominoes. Sizes of the paper's splits: UNVERIFIED (papers.md C.5).
    """
    if dataset not in IMAGE_DATASETS:
        raise ValueError(f"unknown data set {dataset!r} for Fig. 7; choose one of {IMAGE_DATASETS}")
    train = data_module.load_dataset(dataset, "train")
    test = data_module.load_dataset(dataset, "test")
    return SplitData(
        dataset=dataset,
        name=f"cv-{num_train}",
        train_source=train.images,
        test_source=test.images,
        train_indices=data_module.subset_indices(len(train.images), num_train, subset_seed),
        test_indices=np.arange(len(test.images)),
        source_seed=subset_seed,
    )


def nearest_neighbours(
    split: SplitData, *, max_test: int | None = None, seed: int = 0, cache: cache_module.RunCache | None = None
) -> dict:
    """Test-to-train L2 pixel distances (cached): {"distances", "test_rows", "train_rows"} as numpy.

    `max_test`: a seeded random subset of that many test rows, `data.subset_indices(N_test,
    max_test, seed)` as in `tetrominoes.nearest_neighbour_distances` (whose docstring: medians and
    90th percentiles agree with the full set's to 0.01 at 10,000 rows). Rows index the split's parts.
    """
    config = {"kind": "bozkurt2021-nearest-neighbours", "version": RESULTS_VERSION, "data": split.spec(),
              "max_test": max_test, "seed": seed}

    def compute() -> dict:
        if max_test is not None and max_test < split.num_test:
            rows = data_module.subset_indices(split.num_test, max_test, seed)
        else:
            rows = np.arange(split.num_test)
        result = tetrominoes.nearest_neighbour_distances(split.test_rows(rows), split.train)
        return {"distances": result.distances.cpu().numpy(), "test_rows": rows, "train_rows": result.indices.cpu().numpy()}

    return (cache or cache_module.RunCache()).cached_result("nearest_neighbours", config, compute)


def difficult_example(neighbours: Mapping[str, np.ndarray], percentile: float = DIFFICULT_PERCENTILE) -> dict:
    """The test example whose NN distance is closest to the given percentile (Fig. 3's "difficult" example).

    Returns {"test_row": row into split.test, "train_row": its nearest training image, "distance",
    "percentile_distance"}.
    """
    distances = np.asarray(neighbours["distances"], dtype=np.float64)
    target = float(np.percentile(distances, percentile))
    position = int(np.argmin(np.abs(distances - target)))
    return {
        "test_row": int(neighbours["test_rows"][position]),
        "train_row": int(neighbours["train_rows"][position]),
        "distance": float(distances[position]),
        "percentile_distance": target,
    }


# --------------------------------------------------------------------------------------------
# One β sweep = one ensemble
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSpec:
    """Everything that defines one trained β sweep on a given split (JSON-able, part of cache keys).

    architecture  "mlp1", "mlp3", "cnn1", "cnn3" (§4.3).
    iterations    Adam steps budget (paper: 257,000); converted to whole epochs for the split.
    restart       restart index (paper: 5 restarts); all seeds derive from it.
    precision     "bfloat16" (CPU autocast for the training forward pass) or "float32".
    betas         one ensemble member per value (paper: BETAS).
    eval_points   training and test points on which R and D are evaluated (fixed subsets).
    max_train     train on only the first `max_train` training points of the split (None: all).
                  Only the smoke profile sets it, so that one epoch is a few steps.
    """

    architecture: str
    iterations: int
    restart: int = 0
    precision: str = "bfloat16"
    betas: tuple[float, ...] = BETAS
    batch_size: int = BATCH_SIZE
    learning_rate: float = LEARNING_RATE
    eval_points: int = 5000
    max_train: int | None = None

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; choose one of {ARCHITECTURES}")
        check_int("iterations", self.iterations, minimum=1)
        check_int("restart", self.restart, minimum=0)
        check_int("eval_points", self.eval_points, minimum=2)
        if self.max_train is not None:
            check_int("max_train", self.max_train, minimum=1)
        if self.precision not in training.PRECISION_CHOICES:
            raise ValueError(f"precision must be one of {training.PRECISION_CHOICES}, got {self.precision!r}")
        betas = tuple(float(beta) for beta in self.betas)
        if not betas or any(beta < 0 for beta in betas):
            raise ValueError(f"betas must be a non-empty list of values >= 0, got {self.betas!r}")
        object.__setattr__(self, "betas", betas)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "betas": list(self.betas)}

    @property
    def init_seed(self) -> int:
        """Initial weights of every member of this restart (common random numbers across β)."""
        return derive_seed(self.restart, PAPER_KEY, "init")

    @property
    def noise_seed(self) -> int:
        """Reparameterisation noise of every member of this restart."""
        return derive_seed(self.restart, PAPER_KEY, "noise")

    @property
    def order_seed(self) -> int:
        """Batch order of this restart (shared by its members: they train on one batch stream)."""
        return derive_seed(self.restart, PAPER_KEY, "batch-order")

    def train_config(self, num_train: int) -> training.TrainConfig:
        return training.TrainConfig(
            epochs=epochs_for_iterations(self.iterations, num_train, self.batch_size),
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            beta=list(self.betas),
            seed=self.order_seed,
            member_seeds=[self.noise_seed] * len(self.betas),
            precision=self.precision,
        )


def training_images(spec: SweepSpec, split: SplitData) -> torch.Tensor:
    """The images the sweep trains on: the split's training set, or its first `max_train` points."""
    return split.train_subset(spec.max_train)


def _sweep_key(kind: str, spec: SweepSpec, split: SplitData, **extra: Any) -> dict:
    return {"kind": f"bozkurt2021-{kind}", "version": RESULTS_VERSION, "cache_code": cache_module.CODE_VERSION,
            "spec": spec.to_dict(), "data": split.spec(), **extra}


def train_sweep(
    spec: SweepSpec, split: SplitData, *, progress: bool | None = None, cache: cache_module.RunCache | None = None
) -> training.TrainResult:
    """Train (or load) the β-sweep ensemble of `spec` on `split.train` through `cache.train_cached`."""
    config = model_config(spec.architecture, split.data_shape)
    num_members = len(spec.betas)
    images = training_images(spec, split)
    return cache_module.train_cached(
        [config] * num_members,
        spec.train_config(len(images)),
        {**split.spec(), "max_train": spec.max_train},
        images,
        model_seed=[spec.init_seed] * num_members,
        progress=progress,
        cache=cache,
        name=f"bozkurt2021-{split.name}-{spec.architecture}-r{spec.restart}-i{spec.iterations}",
    )


def evaluation_rows(count: int, eval_points: int) -> np.ndarray:
    """The fixed evaluation subset of a split part: the same rows for every β, restart and architecture."""
    return data_module.subset_indices(count, min(eval_points, count), seed=0)


def run_sweep(
    spec: SweepSpec, split: SplitData, *, progress: bool | None = None, cache: cache_module.RunCache | None = None
) -> dict:
    """Train rate, distortion and ELBO of every member on the train and test evaluation subsets (cached).

    Returns {"betas", "train": {"rate", "distortion", "elbo"}, "test": {...}, "iterations", "epochs",
    "train_seconds", "eval_points": {"train", "test"}}: lists with one value per β (nats per point;
    elbo = -D - R, the β = 1 bound). On a cache miss the sweep is trained (or loaded) first.
    """
    cache = cache or cache_module.RunCache()

    def compute() -> dict:
        result = train_sweep(spec, split, progress=progress, cache=cache)
        metrics = {}
        num_train = len(training_images(spec, split))
        for part, images in (("train", split.train_rows(evaluation_rows(num_train, spec.eval_points))),
                             ("test", split.test_rows(evaluation_rows(split.num_test, spec.eval_points)))):
            values = training.evaluate(result.model, images, batch_size=500, seed=spec.restart)
            metrics[part] = {name: values[name] for name in ("rate", "distortion", "elbo")}
        epochs = result.config.epochs
        return {
            "betas": list(spec.betas),
            **metrics,
            "epochs": epochs,
            "iterations": epochs * steps_per_epoch(num_train, spec.batch_size),
            "num_train": num_train,
            "train_seconds": result.train_seconds,
            "eval_points": {"train": min(spec.eval_points, num_train), "test": min(spec.eval_points, split.num_test)},
        }

    return cache.cached_result("rd", _sweep_key("rd", spec, split), compute)


def sweep_reconstructions(
    spec: SweepSpec, split: SplitData, test_rows: Sequence[int], *, cache: cache_module.RunCache | None = None
) -> np.ndarray:
    """Each member's reconstruction (decoder mean at the encoder mean) of the given test images (cached).

    Returns float32 `(M, len(test_rows), C, H, W)` in [0, 1].
    """
    cache = cache or cache_module.RunCache()
    rows = [int(row) for row in test_rows]

    def compute() -> np.ndarray:
        model = train_sweep(spec, split, cache=cache).model
        model.eval()
        with torch.no_grad():
            return model.reconstruct(split.test_rows(rows).to(vdevice.of(model))).float().cpu().numpy()

    return cache.cached_result("reconstructions", _sweep_key("reconstructions", spec, split, rows=rows), compute)


def sweep_rate_decomposition(
    spec: SweepSpec,
    split: SplitData,
    *,
    estimator: str = "minibatch",
    batch_size: int = MI_BATCH_SIZE,
    max_queries: int | None = None,
    seed: int = 0,
    cache: cache_module.RunCache | None = None,
) -> dict:
    """I_q[x; z] and KL(q(z) || p(z)) of every member on the training set (§4.5, Fig. 8; cached).

    estimator "minibatch" (Esmaeili et al. 2019, batches of `batch_size`, N = the training set size)
    or "full" (all N mixture components; `max_queries` sampled points). q(x) is the empirical
    training distribution, as in Eq. (1). Returns `RateDecomposition.to_dict()`.
    """
    cache = cache or cache_module.RunCache()
    settings = {"estimator": estimator, "batch_size": batch_size, "max_queries": max_queries, "seed": seed,
                "estimator_version": ESTIMATOR_VERSION}

    def compute() -> dict:
        model = train_sweep(spec, split, cache=cache).model
        result = estimators.mutual_information(
            model, training_images(spec, split), estimator=estimator, batch_size=batch_size, max_queries=max_queries,
            generator=make_generator(seed),
        )
        return result.to_dict()

    return cache.cached_result("rate_decomposition", _sweep_key("rate-decomposition", spec, split, **settings), compute)


# --------------------------------------------------------------------------------------------
# Curves over restarts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    """An RD curve over restarts: arrays `(restarts, β)` per part and metric, with mean and sd.

    values[part][metric], part "train"/"test", metric "rate"/"distortion"/"elbo".
    """

    betas: np.ndarray
    values: dict

    @classmethod
    def from_runs(cls, runs: Sequence[Mapping]) -> "Curve":
        if not runs:
            raise ValueError("a curve needs at least one run")
        betas = np.asarray(runs[0]["betas"], dtype=np.float64)
        for run in runs[1:]:
            if not np.array_equal(np.asarray(run["betas"], dtype=np.float64), betas):
                raise ValueError("runs of one curve must share the β grid")
        values = {
            part: {metric: np.array([run[part][metric] for run in runs], dtype=np.float64)
                   for metric in ("rate", "distortion", "elbo")}
            for part in ("train", "test")
        }
        return cls(betas=betas, values=values)

    @property
    def num_restarts(self) -> int:
        return self.values["test"]["rate"].shape[0]

    def mean(self, part: str, metric: str) -> np.ndarray:
        return self.values[part][metric].mean(axis=0)

    def sd(self, part: str, metric: str) -> np.ndarray:
        """Standard deviation over restarts (ddof=1); zeros for a single restart."""
        array = self.values[part][metric]
        return array.std(axis=0, ddof=1) if len(array) > 1 else np.zeros(array.shape[1])

    def gap(self, metric: str = "distortion") -> np.ndarray:
        """Generalization gap test - train per restart and β, `(restarts, β)`."""
        return self.values["test"][metric] - self.values["train"][metric]

    def to_dict(self) -> dict:
        summary = {"betas": self.betas.tolist(), "restarts": self.num_restarts}
        for part in ("train", "test"):
            for metric in ("rate", "distortion", "elbo"):
                summary[f"{part}_{metric}_mean"] = self.mean(part, metric).tolist()
                summary[f"{part}_{metric}_sd"] = self.sd(part, metric).tolist()
        return summary


def minimum_shape(betas: Sequence[float], mean: Sequence[float], sd: Sequence[float] | None = None) -> dict:
    """Where a curve over β has its minimum and how far its small-β end rises above it.

    Returns {"argmin_beta", "interior" (the minimum is at neither the smallest nor the largest β),
    "rise" (value at the smallest β minus the minimum, >= 0), "rise_sd" (that rise in units of the
    restarts' sd at those two points, combined in quadrature; inf when the sd is 0 and rise > 0)}.
    U-shaped in paper C's sense: interior minimum and a rise well above the restart noise.
    """
    betas = np.asarray(betas, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    order = np.argsort(betas)
    betas, mean = betas[order], mean[order]
    sd = np.zeros_like(mean) if sd is None else np.asarray(sd, dtype=np.float64)[order]
    index = int(np.argmin(mean))
    rise = float(mean[0] - mean[index])
    noise = float(math.hypot(sd[0], sd[index]))
    rise_sd = rise / noise if noise > 0 else None  # None: one restart, no spread to compare with
    return {"argmin_beta": float(betas[index]), "interior": 0 < index < len(mean) - 1, "rise": rise, "rise_sd": rise_sd,
            "smallest_beta": float(betas[0])}


def is_u_shaped(shape: Mapping, sd_margin: float) -> bool:
    """Paper C's U: interior minimum and a small-β rise above `sd_margin` restart sd's (any rise > 0
    when there is a single restart)."""
    rise_sd = shape["rise_sd"]
    above_noise = shape["rise"] > 0 if rise_sd is None else rise_sd > sd_margin
    return bool(shape["interior"] and above_noise)


def is_l_shaped(shape: Mapping, sd_margin: float) -> bool:
    """Paper C's L (monotone in β): the minimum is at the smallest β, or the small-β rise is within
    `sd_margin` restart sd's (with a single restart: only a minimum at the smallest β counts)."""
    if shape["argmin_beta"] == shape["smallest_beta"]:
        return True
    rise_sd = shape["rise_sd"]
    return bool(rise_sd is not None and rise_sd <= sd_margin)


def best_beta(betas: Sequence[float], values: Sequence[float], *, largest: bool = True) -> float:
    """The β with the largest (or smallest) value."""
    values = np.asarray(values, dtype=np.float64)
    index = int(np.argmax(values) if largest else np.argmin(values))
    return float(np.asarray(betas, dtype=np.float64)[index])


def grid_neighbours(betas: Sequence[float], center: float, steps: int = 1) -> list[float]:
    """The β values within `steps` grid positions of `center` on the sorted grid (inclusive).

    When `center` is not on the grid (smoke profile's short grid), the nearest grid value in log β
    stands in for it.
    """
    grid = sorted(float(beta) for beta in betas)
    index = int(np.argmin([abs(math.log(beta / center)) if beta > 0 else math.inf for beta in grid]))
    return grid[max(0, index - steps) : index + steps + 1]


def is_monotone(values: Sequence[float], *, increasing: bool) -> bool:
    """Strictly monotone sequence (in the given direction)."""
    differences = np.diff(np.asarray(values, dtype=np.float64))
    return bool(np.all(differences > 0) if increasing else np.all(differences < 0))


# --------------------------------------------------------------------------------------------
# Plots: the RD plane of Figs. 3-7
# --------------------------------------------------------------------------------------------


def plot_rd_curve(ax, curve: Curve, part: str = "test", *, label: str, color, marker: str = "o",
                  star_beta: float = 1.0, linestyle: str = "-") -> None:
    """Rate (x) against distortion (y), nats: mean over restarts with ±1 sd bars, β=1 as a white star."""
    rate, distortion = curve.mean(part, "rate"), curve.mean(part, "distortion")
    rate_sd, distortion_sd = curve.sd(part, "rate"), curve.sd(part, "distortion")
    order = np.argsort(curve.betas)
    ax.errorbar(rate[order], distortion[order], xerr=rate_sd[order], yerr=distortion_sd[order], color=color,
                marker=marker, markersize=3.5, linewidth=1.2, linestyle=linestyle, elinewidth=0.8, capsize=0,
                label=label, zorder=3)
    starred = np.isclose(curve.betas, star_beta)
    if starred.any():
        ax.plot(rate[starred], distortion[starred], marker="*", markersize=11, markerfacecolor="white",
                markeredgecolor=color, markeredgewidth=1.0, linestyle="none", zorder=4)


def add_elbo_isolines(ax, *, count: int = 6, color: str = "0.82", label_best: float | None = None) -> None:
    """Diagonal iso-lines of the β=1 ELBO, D + R = const (§4.4: "iso-contours of L_{β=1} = -D - R").

    Call after the curves so the axis limits are final. `label_best` (a value of D + R, e.g. the
    lowest test -ELBO among the curves) is drawn darker and named in the panel's top-right corner.
    """
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    low, high = x0 + y0, x1 + y1
    step = _nice_step((high - low) / count)
    for level in np.arange(math.ceil(low / step) * step, high, step):
        ax.plot([x0, x1], [level - x0, level - x1], color=color, linewidth=0.6, linestyle="--", zorder=1)
    if label_best is not None:
        ax.plot([x0, x1], [label_best - x0, label_best - x1], color="0.45", linewidth=0.8, linestyle="--", zorder=1)
        ax.text(0.98, 0.98, f"dark dashes: D+R = {label_best:.0f}\n(best -ELBO of the panel)", transform=ax.transAxes,
                fontsize=6.5, color="0.35", ha="right", va="top")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    exponent = math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * 10**exponent >= raw:
            return factor * 10**exponent
    return 10 ** (exponent + 1)


def beta_colors(count: int, cmap: str = "viridis") -> list:
    import matplotlib

    colormap = matplotlib.colormaps[cmap]
    return [colormap(value) for value in np.linspace(0.0, 0.9, count)]


def image_strip(images: np.ndarray, padding: int = 1) -> np.ndarray:
    """Tile `(K, C, H, W)` images in one row for imshow: `(H, K*(W+p)-p, C)` (or 2-D for C = 1)."""
    images = np.asarray(images, dtype=np.float32).clip(0.0, 1.0)
    count, channels, height, width = images.shape
    strip = np.ones((channels, height, count * (width + padding) - padding), dtype=np.float32)
    for index in range(count):
        left = index * (width + padding)
        strip[:, :, left : left + width] = images[index]
    return strip[0] if channels == 1 else strip.transpose(1, 2, 0)


def summarize_runtime(runs: Sequence[Mapping]) -> dict:
    """Total training seconds and iterations over cached sweep results (as trained, not as loaded)."""
    return {
        "train_seconds": float(sum(run["train_seconds"] for run in runs)),
        "iterations": sorted({int(run["iterations"]) for run in runs}),
    }


def run_curves(
    specs_by_key: Mapping[Any, Sequence[SweepSpec]],
    splits: Mapping[Any, SplitData] | Callable[[Any], SplitData],
    *,
    progress: bool | None = None,
    cache: cache_module.RunCache | None = None,
) -> tuple[dict, dict]:
    """run_sweep for every (key -> restarts' specs): returns ({key: Curve}, {key: [run dicts]}).

    `splits` maps the same keys to SplitData (or is a function key -> SplitData).
    """
    curves, runs = {}, {}
    for key, specs in specs_by_key.items():
        split = splits(key) if callable(splits) else splits[key]
        runs[key] = [run_sweep(spec, split, progress=progress, cache=cache) for spec in specs]
        curves[key] = Curve.from_runs(runs[key])
    return curves, runs
