"""Paper C (Bozkurt et al., AISTATS 2021, "Rate-Regularization and Generalization in VAEs"): the experiments.

What this module is
-------------------
The orchestration behind the five `bozkurt2021_*` notebooks, so that each notebook is a few calls
and a plot (paper C, §4):

- named runs: every β sweep the notebooks train is built here, per profile, from ONE table
  (`SWEEPS`, `RESTARTS`, `NEIGHBOURS`): `betas(profile)`, `sweep(profile, split, architecture,
  restart)`, `curve(profile, split, architecture)`; each notebook's whole work comes from one
  settings builder (`fig01_settings` ... `fig08_settings`), so two notebooks that need the same
  sweep get the same `SweepSpec` and the same cache entry, and a planner can list the work of a
  notebook without running it;
- data: `tetromino_split(data, "cv-16k")` and `image_split("mnist", 6000)` give a `SplitData`
  (train and test images plus a JSON description); `nearest_neighbours(split)` caches the
  test-to-train L2 distances (§4.2, Fig. 2 and the 90th-percentile example of Fig. 3);
- training: a `SweepSpec` (architecture, iterations, restart, precision, ...) and a split define
  one β sweep, trained as ONE ensemble with a member per β (`EnsembleMLPVAE` / `EnsembleConvVAE`,
  member m with β_m) through `cache.train_cached`, so every notebook that needs the same sweep
  reuses it;
- evaluation: `run_sweep(spec, split)` returns the train and test rate R and distortion D
  (nats, β = 1 quantities of Eq. 5-6) of every member on fixed evaluation subsets, cached
  (a cached rerun never loads a model); `sweep_reconstructions` and `sweep_rate_decomposition`
  (I_q[x; z] and KL(q(z) || p(z)), §4.5, Fig. 8) are cached the same way;
- the RD-plane plot helpers shared by Figs. 3-7 (the claim rules live in `vaegen_utils.claims`).

What it is not: a training loop (that is `training.train`), a model zoo (`models.bozkurt2021_mlp`
/ `bozkurt2021_cnn`) or the data generator (`tetrominoes`).

Choices the paper leaves open, made explicit here
-------------------------------------------------
- Adam learning rate 1e-3 (§4.3 names Adam but no rate; the authors' earlier code uses 1e-3);
  batch 128 (§4.3) and the β grid (footnote 2) are the paper's.
- Within one restart all β members start from the same initial weights and see the same batch
  order (common random numbers, so curves compare β values rather than initialisations);
  restarts differ in every seed. The paper does not describe its seeding.
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

from . import cache as cache_module
from . import device as vdevice
from . import data as data_module
from . import estimators, models, profiles, tetrominoes, training
from .checks import check_choice, check_int, check_number, check_sequence, named_fields
from .neighbours import nearest_neighbour_distances
from .seeding import derive_seed, make_generator

PAPER_KEY = "bozkurt2021"
# Paper C, footnote 2: the 12 values of every RD curve.
BETAS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 2.0, 3.0, 5.0)
PAPER_ITERATIONS = 257_000  # §4.3: "All models are trained for 257k iterations"
PAPER_RESTARTS = 5  # §4.3: "with 5 random restarts"
BATCH_SIZE = 128  # §4.3
LEARNING_RATE = 1e-3  # §4.3 names Adam but no rate; the authors' earlier code (alicanb/vae_novel_examples) uses 1e-3
MI_BATCH_SIZE = 512  # §4.5: q(z) "over batches of size 512" (Esmaeili et al. 2019)
# Claims of Figs. 3, 7 and 8: a U needs D(β=0.001) - min D > SD_MARGIN restart sd's, an L needs it <= SD_MARGIN
# sd's (`claims.is_u_shaped` / `is_l_shaped`); one margin for every notebook, so that fig08's precision check
# judges the verdicts fig03 reports.
SD_MARGIN = 2.0
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
    check_choice("architecture", architecture, ARCHITECTURES)
    data_shape = check_sequence("data_shape", data_shape, lambda name, value: check_int(name, value, minimum=1),
                                example="data_shape=(3, 32, 32)")
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
    footnote 1), as for the Tetrominoes. The paper does not state the sizes of these splits.
    """
    check_choice("data set for Fig. 7", dataset, IMAGE_DATASETS)
    check_int("num_train", num_train, minimum=1)
    check_int("subset_seed", subset_seed, minimum=0)
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
    max_test, seed)` as in `nearest_neighbour_distances` (whose docstring: medians and
    90th percentiles agree with the full set's to 0.01 at 10,000 rows). Rows index the split's parts.
    """
    if max_test is not None:
        check_int("max_test", max_test, minimum=1)
    config = {"kind": "bozkurt2021-nearest-neighbours", "version": RESULTS_VERSION, "data": split.spec(),
              "max_test": max_test, "seed": seed}

    def compute() -> dict:
        if max_test is not None and max_test < split.num_test:
            rows = data_module.subset_indices(split.num_test, max_test, seed)
        else:
            rows = np.arange(split.num_test)
        result = nearest_neighbour_distances(split.test_rows(rows), split.train)
        return {"distances": result.distances.cpu().numpy(), "test_rows": rows, "train_rows": result.indices.cpu().numpy()}

    return (cache or cache_module.RunCache()).cached_result("nearest_neighbours", config, compute)


def difficult_example(neighbours: Mapping[str, np.ndarray], percentile: float = DIFFICULT_PERCENTILE) -> dict:
    """The test example whose NN distance is closest to the given percentile (Fig. 3's "difficult" example).

    Returns {"test_row": row into split.test, "train_row": its nearest training image, "distance",
    "percentile_distance"}.
    """
    check_number("percentile", percentile, minimum=0.0, maximum=100.0)
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


@named_fields
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
        check_choice("architecture", self.architecture, ARCHITECTURES)
        check_int("iterations", self.iterations, minimum=1)
        check_int("restart", self.restart, minimum=0)
        check_choice("precision", self.precision, training.PRECISION_CHOICES)
        check_int("batch_size", self.batch_size, minimum=1)
        check_number("learning_rate", self.learning_rate, positive=True)
        check_int("eval_points", self.eval_points, minimum=2)
        if self.max_train is not None:
            check_int("max_train", self.max_train, minimum=1)
        # A string is refused, not read one character at a time: betas="15" would train β = (1.0, 5.0).
        betas = check_sequence("betas", self.betas, lambda name, value: check_number(name, value, minimum=0.0),
                               example="betas=[0.1, 1.0, 5.0]")
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
    rows = list(check_sequence("test_rows", test_rows, lambda name, value: check_int(name, value, minimum=0)))

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
# Named runs: every sweep the notebooks train, per profile, defined once
# --------------------------------------------------------------------------------------------
#
# The per-profile values that size paper C's work live ONLY in the tables below; notebooks call
# the builders and never copy a value. A change to a profile (e.g. a different cpu analogue) is an
# edit of one row here, and every notebook that trains the same sweep follows it, with one cache
# key. Builders take keyword overrides where None means "the profile's value"
# (`profiles.resolve`), and refuse names the table does not know.

DENSE_SPLIT = "random"  # CV(82k/82k): the 50/50 random split (§4.2, split 1)
SPARSE_SPLIT = "cv-16k"  # CV(16k/147k) (§4.2, split 4): Figs. 3-6 and 8
CHECKERBOARD_SPLIT = "checkerboard"  # Checkerboard(82k/82k), out of domain (§4.2, split 2)

# β of each sweep ensemble, one member per β (paper: BETAS, the 12 values of footnote 2). A sweep
# step costs about the same per member, so the cpu grid keeps 8 of the 12, which cuts every sweep by
# a third: both ends, 0.1 and its grid neighbours, β = 1 and two β > 1. Smoke keeps 3 values so that
# a sweep costs a fraction of a second.
CPU_BETAS: tuple[float, ...] = (0.001, 0.01, 0.1, 0.3, 0.5, 1.0, 2.0, 5.0)
SMOKE_BETAS: tuple[float, ...] = (0.001, 1.0, 5.0)

# What defines one β sweep (the `SweepSpec` of a split, architecture and restart), per profile.
# - iterations: Adam steps of every sweep without a budget of its own below: the 1-layer MLPs, the
#   3-layer MLP on the 82k splits, every sweep of Figs. 4 and 7 (paper: 257k for every model,
#   §4.3). On 2 idle cores a 12-member sweep step costs ~0.11 s (1-layer MLP) to ~0.14 s (3-layer
#   MLP), an 8-member one about 2/3 of that (memory-bound: bf16 casts and Adam over 8-12 x 3-4M
#   parameters), so the cpu budget of the five notebooks (25 min) is ~10k sweep steps in all.
# - sparse_mlp3_iterations: the 3-layer MLP on CV(16k/147k) (Figs. 3 and 8). cpu: 8 epochs, past the
#   initial plateau that the 3-layer MLP leaves after ~500-1,000 steps (β <= 0.5), so that its curve
#   shape and its mutual information describe a model that reconstructs.
# - cnn_iterations: the CNNs of Fig. 6. A step costs 0.21 s (1 layer) and 0.50 s (3 layers), 2-4.5x
#   an MLP step (grouped convolutions are memory-bound on CPU); training them past their plateau is
#   out of the cpu budget, and one epoch (the engine's smallest unit) draws Fig. 6.
# - precision: CPU bf16 autocast for the training forward pass (evaluation is float32); 1.3-1.5x
#   faster; `bozkurt2021_fig08_mutual_information` checks what it changes.
# - eval_points: training and test points of every R and D evaluation (fixed subsets).
# - max_train: train on the first max_train points of the split (smoke: 256 points, 2 steps/epoch).
SWEEPS: dict[str, dict[str, Any]] = {
    "smoke": {"betas": SMOKE_BETAS, "iterations": 2, "sparse_mlp3_iterations": 2, "cnn_iterations": 2,
              "precision": "bfloat16", "eval_points": 128, "max_train": 256},
    "cpu": {"betas": CPU_BETAS, "iterations": 640, "sparse_mlp3_iterations": 1024, "cnn_iterations": 128,
            "precision": "bfloat16", "eval_points": 2000, "max_train": None},
    "paper": {"betas": BETAS, "iterations": PAPER_ITERATIONS, "sparse_mlp3_iterations": PAPER_ITERATIONS,
              "cnn_iterations": PAPER_ITERATIONS, "precision": "bfloat16", "eval_points": 20_000, "max_train": None},
}
# Restarts of one RD curve (paper: 5, §4.3). sparse_mlp_restarts: the MLP curves on CV(16k/147k),
# whose U/L shape claims (Fig. 3) and MI (Fig. 8) are judged against the restarts' sd; restarts: every
# other curve.
RESTARTS: dict[str, dict[str, int]] = {
    "smoke": {"restarts": 1, "sparse_mlp_restarts": 1},
    "cpu": {"restarts": 1, "sparse_mlp_restarts": 2},
    "paper": {"restarts": PAPER_RESTARTS, "sparse_mlp_restarts": PAPER_RESTARTS},
}
# Test points whose nearest training image is searched (a uniform subsample; all of CV(16k/147k) is
# 147k x 16k x 3,072 dimensions, ~150 s). Figs. 2 and 3 use the same searches (same cache entries).
NEIGHBOURS: dict[str, dict[str, int]] = {
    "smoke": {"nn_max_test": 300},
    "cpu": {"nn_max_test": 2000},
    "paper": {"nn_max_test": 10_000},
}

# What only one figure varies, per profile.
FIG01_SPLITS = ("random", "checkerboard", "cd-16k", "cv-16k")  # the four kinds of split (§4.2), in Fig. 2's order
FIG01 = {  # Figs. 1-2. random_samples: random data-set images in Fig. 1
    "smoke": {"splits": FIG01_SPLITS, "random_samples": 16},
    "cpu": {"splits": FIG01_SPLITS, "random_samples": 48},
    "paper": {"splits": FIG01_SPLITS, "random_samples": 48},
}
FIG03 = {  # Figs. 3, 5 and 6. Architectures trained on the checkerboard split (paper: both); cpu: the
    # 1-layer MLP only, the one trained to one budget on all three splits of Fig. 5.
    "smoke": {"checkerboard_architectures": ("mlp1",)},
    "cpu": {"checkerboard_architectures": ("mlp1",)},
    "paper": {"checkerboard_architectures": ("mlp1", "mlp3")},
}
FIG04 = {  # Fig. 4. Sizes: keys of tetrominoes.PAPER_TRAIN_SIZES (paper: 8k, 16k, 32k, 56k = 33k, 57k
    # here); cpu keeps the two smallest and the 1-layer MLP only (every size and architecture is a
    # full sweep of 1-2 minutes on 2 idle cores; the CD/CV contrast is sharpest for 1 layer).
    "smoke": {"sizes": ("8k", "16k"), "architectures": ("mlp1", "mlp3")},
    "cpu": {"sizes": ("8k", "16k"), "architectures": ("mlp1",)},
    "paper": {"sizes": ("8k", "16k", "33k", "57k"), "architectures": ("mlp1", "mlp3")},
}
FIG07 = {  # Fig. 7: one small CV split of each image data set ("a single split with a small training set").
    # num_train: the paper does not state it. cpu: 3,000, so that the 640-step budget is 27 epochs
    # (648 steps: whole epochs of 24 batches), enough for the 1-layer MLP to start overfitting MNIST;
    # 6,000 images gave 14 epochs and no overfitting yet. eval_points: of the training subset and
    # of the data set's 10,000 test images.
    "smoke": {"datasets": IMAGE_DATASETS, "num_train": 256, "eval_points": 128},
    "cpu": {"datasets": IMAGE_DATASETS, "num_train": 3000, "eval_points": 3000},
    "paper": {"datasets": IMAGE_DATASETS, "num_train": 6000, "eval_points": 10_000},
}
# Fig. 7's other data sets: reported as missing, never substituted.
UNAVAILABLE_DATASETS = {"smallnorb": "no registry package; NYU download not reachable here",
                        "3dshapes": "no registry package; Google Cloud Storage download not reachable here"}
FIG08 = {  # Fig. 8. mi_batch_size: the minibatch estimator's B (paper: 512, §4.5). full_queries: points
    # whose log q(z) the full-data estimator evaluates against all N components (cost queries x N).
    # bf16_check_architecture: the CV(16k/147k) sweep trained again in float32 (restart 0).
    "smoke": {"mi_batch_size": 64, "full_queries": 128, "bf16_check_architecture": "mlp1"},
    "cpu": {"mi_batch_size": MI_BATCH_SIZE, "full_queries": 1024, "bf16_check_architecture": "mlp1"},
    "paper": {"mi_batch_size": MI_BATCH_SIZE, "full_queries": 16_384, "bf16_check_architecture": "mlp1"},
}


def betas(profile: str) -> tuple[float, ...]:
    """The β grid of every sweep in `profile` (one ensemble member per β)."""
    return tuple(profiles.by_profile(profile, SWEEPS)["betas"])


def _sweep_iterations(values: Mapping[str, Any], split: str, architecture: str) -> int:
    """The Adam-step budget of one sweep from a resolved `SWEEPS` row: per (split, architecture)."""
    if architecture.startswith("cnn"):
        return values["cnn_iterations"]
    if architecture == "mlp3" and split == SPARSE_SPLIT:
        return values["sparse_mlp3_iterations"]
    return values["iterations"]


def _curve_restarts(values: Mapping[str, Any], split: str, architecture: str) -> int:
    """The number of restarts of one RD curve from a resolved `RESTARTS` row."""
    if split == SPARSE_SPLIT and architecture.startswith("mlp"):
        return values["sparse_mlp_restarts"]
    return values["restarts"]


def sweep(profile: str, split: str, architecture: str, restart: int = 0, **overrides: Any) -> SweepSpec:
    """The β sweep that every notebook trains for (split, architecture, restart) in `profile`.

    `overrides` name columns of `SWEEPS` (betas, iterations, sparse_mlp3_iterations,
    cnn_iterations, precision, eval_points, max_train); None keeps the profile's value.
    """
    return _sweep(profiles.resolve(profile, SWEEPS, **overrides), split, architecture, restart)


def curve(profile: str, split: str, architecture: str, **overrides: Any) -> tuple[SweepSpec, ...]:
    """The restarts' sweeps of one RD curve: `sweep(profile, split, architecture, r)` for each restart r.

    `overrides` name columns of `SWEEPS` or `RESTARTS`; None keeps the profile's value.
    """
    values = profiles.resolve(profile, _merged(SWEEPS, RESTARTS), **overrides)
    return _curve(values, split, architecture, _curve_restarts(values, split, architecture))


def _check_split_name(split: Any) -> str:
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a split name such as {SPARSE_SPLIT!r}, got {type(split).__name__} {split!r}")
    return split


def _sweep(values: Mapping[str, Any], split: str, architecture: str, restart: int, *,
           iterations: int | None = None) -> SweepSpec:
    _check_split_name(split)
    check_choice("architecture", architecture, ARCHITECTURES)
    return SweepSpec(
        architecture,
        _sweep_iterations(values, split, architecture) if iterations is None else iterations,
        restart=restart,
        precision=values["precision"],
        betas=values["betas"],
        eval_points=values["eval_points"],
        max_train=values.get("max_train"),
    )


def _curve(values: Mapping[str, Any], split: str, architecture: str, restarts: int, *,
           iterations: int | None = None) -> tuple[SweepSpec, ...]:
    check_int("restarts", restarts, minimum=1)
    return tuple(_sweep(values, split, architecture, restart, iterations=iterations) for restart in range(restarts))


def _merged(*tables: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-profile tables side by side (one row per profile); a column may appear in one table only."""
    merged: dict[str, dict[str, Any]] = {}
    for profile in profiles.PROFILES:
        row: dict[str, Any] = {}
        for table in tables:
            repeated = set(row) & set(table[profile])
            if repeated:
                raise ValueError(f"columns {sorted(repeated)} are defined in two tables")
            row.update(table[profile])
        merged[profile] = row
    return merged


def _columns(table: Mapping[str, Mapping[str, Any]], *names: str) -> dict[str, dict[str, Any]]:
    """The given columns of a per-profile table (for a figure that uses only part of a shared table)."""
    return {profile: {name: row[name] for name in names} for profile, row in table.items()}


def _check_choices(name: str, values: Any, choices: Sequence[str], example: str) -> tuple[str, ...]:
    return check_sequence(name, values, lambda item_name, value: check_choice(item_name, value, choices), example=example)


def _jsonable(value: Any) -> Any:
    if isinstance(value, SweepSpec):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {(" ".join(map(str, key)) if isinstance(key, tuple) else str(key)): _jsonable(item)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


class FigureSettings:
    """Base of the figure settings: `to_dict()` for the results JSON, `sweeps()` for a job list."""

    def to_dict(self) -> dict:
        """Every field, JSON-ready: sweeps as `SweepSpec.to_dict()`, tuple keys joined by spaces."""
        return _jsonable({field.name: getattr(self, field.name) for field in dataclasses.fields(self)})

    def sweeps(self) -> list[tuple[Any, SweepSpec]]:
        """Every sweep the notebook trains (or reads from the cache), as (curve key, spec)."""
        found = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, SweepSpec):
                found.append((field.name, value))
            elif isinstance(value, Mapping):
                found.extend((key, spec) for key, specs in value.items() if isinstance(specs, tuple)
                             for spec in specs if isinstance(spec, SweepSpec))
        return found


@dataclass(frozen=True)
class Fig01Settings(FigureSettings):
    """`bozkurt2021_fig01_dataset_splits`: the splits drawn and the nearest-neighbour searches."""

    profile: str
    splits: tuple[str, ...]
    nn_max_test: int
    random_samples: int


def fig01_settings(profile: str, **overrides: Any) -> Fig01Settings:
    """Figs. 1-2. Overrides: splits, nn_max_test, random_samples (None: the profile's value)."""
    values = profiles.resolve(profile, _merged(NEIGHBOURS, FIG01), **overrides)
    return Fig01Settings(
        profile=profile,
        splits=check_sequence("splits", values["splits"], lambda name, value: _check_split_name(value),
                              example='splits=["random", "cv-16k"]'),
        nn_max_test=check_int("nn_max_test", values["nn_max_test"], minimum=1),
        random_samples=check_int("random_samples", values["random_samples"], minimum=1),
    )


@dataclass(frozen=True)
class Fig03Settings(FigureSettings):
    """`bozkurt2021_fig03_rd_curves` (Figs. 3, 5, 6): every curve, keyed (split, architecture)."""

    profile: str
    betas: tuple[float, ...]
    splits: tuple[str, ...]
    checkerboard_architectures: tuple[str, ...]
    curves: dict  # (split, architecture) -> the restarts' SweepSpecs, in plotting order
    nn_max_test: int


def fig03_settings(profile: str, **overrides: Any) -> Fig03Settings:
    """Figs. 3, 5 and 6. Overrides: the columns of `SWEEPS`, `RESTARTS`, `NEIGHBOURS` and `FIG03`."""
    values = profiles.resolve(profile, _merged(SWEEPS, RESTARTS, NEIGHBOURS, FIG03), **overrides)
    checkerboard = _check_choices("checkerboard_architectures", values["checkerboard_architectures"],
                                  ("mlp1", "mlp3"), 'checkerboard_architectures=["mlp1"]')
    keys = [(DENSE_SPLIT, "mlp1"), (DENSE_SPLIT, "mlp3"), (SPARSE_SPLIT, "mlp1"), (SPARSE_SPLIT, "mlp3"),
            *((CHECKERBOARD_SPLIT, architecture) for architecture in checkerboard),
            (SPARSE_SPLIT, "cnn1"), (SPARSE_SPLIT, "cnn3")]
    curves = {key: _curve(values, *key, _curve_restarts(values, *key)) for key in keys}
    return Fig03Settings(profile=profile, betas=curves[keys[0]][0].betas,
                         splits=(DENSE_SPLIT, SPARSE_SPLIT, CHECKERBOARD_SPLIT), checkerboard_architectures=checkerboard,
                         curves=curves, nn_max_test=check_int("nn_max_test", values["nn_max_test"], minimum=1))


@dataclass(frozen=True)
class Fig04Settings(FigureSettings):
    """`bozkurt2021_fig04_training_size`: CV and CD curves by size, keyed (kind, size, architecture)."""

    profile: str
    betas: tuple[float, ...]
    sizes: tuple[str, ...]
    architectures: tuple[str, ...]
    restarts: int
    curves: dict  # ("cv" | "cd", size, architecture) -> the restarts' SweepSpecs

    def split(self, kind: str, size: str) -> str:
        return f"{kind}-{size}"


def fig04_settings(profile: str, **overrides: Any) -> Fig04Settings:
    """Fig. 4. Overrides: betas, iterations, precision, eval_points, max_train, restarts, sizes, architectures.

    Every curve has `iterations` steps and `restarts` restarts, whatever its split or architecture:
    the figure compares training-set sizes at one budget (§4.3: 257k iterations for every model).
    Its CV(16k/147k) 1-layer curve is therefore fig03's (same specs, same cache entries).
    """
    table = _merged(_columns(SWEEPS, "betas", "iterations", "precision", "eval_points", "max_train"),
                    _columns(RESTARTS, "restarts"), FIG04)
    values = profiles.resolve(profile, table, **overrides)
    sizes = _check_choices("sizes", values["sizes"], tuple(tetrominoes.PAPER_TRAIN_SIZES), 'sizes=["8k", "16k"]')
    architectures = _check_choices("architectures", values["architectures"], ("mlp1", "mlp3"), 'architectures=["mlp1"]')
    restarts = check_int("restarts", values["restarts"], minimum=1)
    curves = {(kind, size, architecture): _curve(values, f"{kind}-{size}", architecture, restarts,
                                                 iterations=values["iterations"])
              for kind in ("cv", "cd") for size in sizes for architecture in architectures}
    return Fig04Settings(profile=profile, betas=next(iter(curves.values()))[0].betas, sizes=sizes,
                         architectures=architectures, restarts=restarts, curves=curves)


@dataclass(frozen=True)
class Fig07Settings(FigureSettings):
    """`bozkurt2021_fig07_other_datasets`: 1- and 3-layer curves per data set, keyed (data set, architecture)."""

    profile: str
    betas: tuple[float, ...]
    datasets: tuple[str, ...]
    num_train: int
    seed: int  # the training subset of each data set (`image_split(..., subset_seed=seed)`)
    curves: dict  # (data set, architecture) -> the restarts' SweepSpecs

    def split(self) -> str:
        """The name `image_split` gives each data set's split."""
        return f"cv-{self.num_train}"


def fig07_settings(profile: str, *, seed: int = 0, **overrides: Any) -> Fig07Settings:
    """Fig. 7. Overrides: betas, iterations, precision, restarts, datasets, num_train, eval_points.

    Every sweep has `iterations` steps, the budget of the Tetrominoes sweeps; `eval_points` is this
    figure's own (its test sets are the data sets' 10,000 images) and nothing is cut by max_train
    (the smoke split is already 256 images). `seed` draws the training subsets.
    """
    table = _merged(_columns(SWEEPS, "betas", "iterations", "precision"), _columns(RESTARTS, "restarts"), FIG07)
    values = profiles.resolve(profile, table, **overrides)
    datasets = _check_choices("datasets", values["datasets"], IMAGE_DATASETS, 'datasets=["mnist"]')
    num_train = check_int("num_train", values["num_train"], minimum=1)
    restarts = check_int("restarts", values["restarts"], minimum=1)
    split = f"cv-{num_train}"
    curves = {(dataset, architecture): _curve(values, split, architecture, restarts, iterations=values["iterations"])
              for dataset in datasets for architecture in ("mlp1", "mlp3")}
    return Fig07Settings(profile=profile, betas=next(iter(curves.values()))[0].betas, datasets=datasets,
                         num_train=num_train, seed=check_int("seed", seed, minimum=0), curves=curves)


@dataclass(frozen=True)
class Fig08Settings(FigureSettings):
    """`bozkurt2021_fig08_mutual_information`: fig03's CV(16k/147k) MLP sweeps, the estimators' sizes,
    and the one sweep trained again in float32."""

    profile: str
    betas: tuple[float, ...]
    split: str
    curves: dict  # architecture -> the restarts' SweepSpecs (= fig03's (SPARSE_SPLIT, architecture))
    float32_check: SweepSpec  # restart 0 of `bf16_check_architecture`'s sweep, in float32
    bf16_check_architecture: str
    mi_batch_size: int
    full_queries: int
    seed: int  # the estimators' batches and samples


def fig08_settings(profile: str, *, seed: int = 0, **overrides: Any) -> Fig08Settings:
    """Fig. 8. Overrides: the columns of `SWEEPS`, `RESTARTS` and `FIG08`."""
    values = profiles.resolve(profile, _merged(SWEEPS, RESTARTS, FIG08), **overrides)
    curves = {architecture: _curve(values, SPARSE_SPLIT, architecture, _curve_restarts(values, SPARSE_SPLIT, architecture))
              for architecture in ("mlp1", "mlp3")}
    check_architecture = check_choice("bf16_check_architecture", values["bf16_check_architecture"], ARCHITECTURES)
    float32_check = dataclasses.replace(_sweep(values, SPARSE_SPLIT, check_architecture, 0), precision="float32")
    return Fig08Settings(
        profile=profile, betas=curves["mlp1"][0].betas, split=SPARSE_SPLIT, curves=curves, float32_check=float32_check,
        bf16_check_architecture=check_architecture,
        mi_batch_size=check_int("mi_batch_size", values["mi_batch_size"], minimum=2),
        full_queries=check_int("full_queries", values["full_queries"], minimum=1),
        seed=check_int("seed", seed, minimum=0),
    )


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
