"""Tests of the result cache (vaegen_utils.cache): keys, folders, cached results, cached training."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vaegen_utils import cache, models, training
from vaegen_utils.cache import RunCache, config_key, train_cached
from vaegen_utils.checks import file_sha256
from vaegen_utils.training import TrainConfig

DATA_SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(5)
    return torch.bernoulli(torch.full((128, *DATA_SHAPE), 0.3), generator=generator)  # (128, 1, 8, 8)


def tiny_config(**changes) -> models.MLPVAEConfig:
    return models.MLPVAEConfig(**{**dict(data_shape=DATA_SHAPE, latent_dim=2, hidden_sizes=(16,)), **changes})


# ------------------------------------------------------------------------------------------
# Keys
# ------------------------------------------------------------------------------------------


def test_config_key_ignores_key_order_and_number_spelling():
    key = config_key({"lr": 0.001, "epochs": 10, "betas": (0.5, 1.0)})
    assert key == config_key({"betas": [0.5, 1], "epochs": 10.0, "lr": 1e-3})
    assert len(key) == 64 and int(key, 16) >= 0
    assert key != config_key({"lr": 0.002, "epochs": 10, "betas": [0.5, 1]})
    assert key != config_key({"lr": 0.001, "epochs": 10, "betas": [1, 0.5]})  # order of a list matters


def test_config_key_of_a_dataclass_equals_that_of_its_dict():
    config = TrainConfig(epochs=3, beta=[0.5, 2.0])
    assert config_key(config) == config_key(dataclasses.asdict(config)) == config_key(config.to_dict())
    assert config_key(config) != config_key(config.with_changes(seed=1))


def test_config_key_is_stable_across_sessions():
    # A fixed expected value: canonical JSON must not drift between Python/torch versions, or every
    # cached run would silently be recomputed.
    text = cache.canonical_json({"b": [1.5, 2.0], "a": "x", "c": None, "d": True})
    assert text == '{"a":"x","b":[1.5,2],"c":null,"d":true}'
    assert config_key({"a": 1}) == "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"


def test_config_key_refuses_values_that_have_no_stable_spelling():
    with pytest.raises(TypeError, match=r"config.images has a value of type Tensor"):
        config_key({"images": torch.zeros(3)})
    with pytest.raises(ValueError, match="NaN"):
        config_key({"x": float("nan")})


def test_data_fingerprint_tells_data_sets_apart(images):
    assert cache.data_fingerprint(images) == cache.data_fingerprint(images.clone())
    changed = images.clone()
    changed[3, 0, 2, 2] = 1 - changed[3, 0, 2, 2]
    assert cache.data_fingerprint(changed) != cache.data_fingerprint(images)
    assert cache.data_fingerprint(images[:64]) != cache.data_fingerprint(images)


# ------------------------------------------------------------------------------------------
# Folders
# ------------------------------------------------------------------------------------------


def test_run_dir_is_stable_readable_and_stores_its_config(tmp_path):
    runs = RunCache(tmp_path)
    config = {"name": "paper B fig 1", "epochs": 10}
    folder = runs.run_dir(config)
    assert folder.parent == tmp_path
    assert folder.name == f"{config_key(config)[:16]}-paper-B-fig-1"
    stored = json.loads((folder / "config.json").read_text())
    assert stored["config"] == config and stored["key"] == config_key(config)
    assert runs.run_dir({"epochs": 10.0, "name": "paper B fig 1"}, name="another label") == folder  # same key
    assert runs.run_dir({"name": "paper B fig 1", "epochs": 11}) != folder


def test_default_root_follows_the_cache_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEGEN_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert RunCache().root == tmp_path / "elsewhere" / "runs"


def test_a_folder_holding_another_config_is_an_error(tmp_path):
    runs = RunCache(tmp_path)
    folder = runs.run_dir({"epochs": 10})
    (folder / "config.json").write_text(json.dumps({"key": "x", "config": {"epochs": 99}}))
    with pytest.raises(ValueError, match=r"(?s)holds a different config.*Delete .*and rerun"):
        runs.run_dir({"epochs": 10})


def test_a_corrupt_config_file_is_an_error_naming_the_file_and_the_fix(tmp_path):
    runs = RunCache(tmp_path)
    folder = runs.run_dir({"epochs": 10})
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"(?s)config.json is not valid JSON.*delete it to recompute"):
        runs.run_dir({"epochs": 10})


# ------------------------------------------------------------------------------------------
# Cached results
# ------------------------------------------------------------------------------------------


def test_cached_result_computes_once(tmp_path):
    runs = RunCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"bpd": 0.25, "per_epoch": (1, 2, 3)}

    first = runs.cached_result("metrics", {"model": "a"}, compute)
    second = runs.cached_result("metrics", {"model": "a"}, compute)
    assert len(calls) == 1
    assert first == second == {"bpd": 0.25, "per_epoch": [1, 2, 3]}  # JSON values, on every call
    assert runs.has_result("metrics", {"model": "a"})
    runs.cached_result("metrics", {"model": "b"}, compute)
    runs.cached_result("other", {"model": "a"}, compute)
    assert len(calls) == 3
    assert cache.cached_result("metrics", {"model": "a"}, compute, root=tmp_path) == first and len(calls) == 3


def test_cached_result_stores_tensors_arrays_and_nan_as_plain_arrays(tmp_path):
    runs = RunCache(tmp_path)
    value = {
        "samples": torch.arange(6.0).reshape(2, 3),
        "half": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        "distances": np.array([[0.5, 1.0]], dtype=np.float32),
        "count": np.int64(7),
        "gap": float("nan"),
        "pairs": (1, "a", [2.0, float("inf")]),
        3: None,
    }
    first = runs.cached_result("tensors", {"k": 1}, lambda: value)
    again = runs.cached_result("tensors", {"k": 1}, lambda: pytest.fail("recomputed a cached result"))
    for returned in (first, again):  # the first call returns what every later call returns
        assert torch.equal(returned["samples"], value["samples"]) and returned["half"].dtype == torch.bfloat16
        assert torch.equal(returned["half"], value["half"])
        assert returned["distances"].dtype == np.float32 and np.array_equal(returned["distances"], value["distances"])
        assert returned["count"] == 7 and isinstance(returned["count"], np.int64)
        assert returned["gap"] != returned["gap"] and returned["pairs"] == (1, "a", [2.0, float("inf")])
        assert returned[3] is None
    results = runs.find({"k": 1}) / "results"
    marker = json.loads((results / "tensors.complete").read_text())
    assert marker["format"] == "npz" and marker["file"].endswith(".npz")
    with np.load(results / marker["file"], allow_pickle=False) as archive:  # plain arrays only
        assert len(archive.files) == 5
    with pytest.raises(TypeError, match=r"cached result\['model'\] is a .*MLPVAE.*Return plain data"):
        runs.cached_result("objects", {"k": 1}, lambda: {"model": models.build_model(tiny_config())})


class TouchOnLoad:
    """A pickle payload that creates a file when unpickled with code execution allowed."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("marker_format", ["torch", "npz"])
def test_a_crafted_pickle_with_a_matching_marker_does_not_run(tmp_path, marker_format):
    runs = RunCache(tmp_path)
    runs.cached_result("metrics", {"k": 1}, lambda: {"value": 1})
    results = runs.find({"k": 1}) / "results"
    for stored in results.glob("metrics.*.json"):
        stored.unlink()
    evidence = tmp_path / "code-ran"
    crafted = results / ("metrics.pt" if marker_format == "torch" else "metrics.0123456789ab.npz")
    torch.save({"value": TouchOnLoad(evidence)}, crafted)
    marker = {"format": marker_format, "sha256": file_sha256(crafted)}  # "torch": the previous version's marker
    if marker_format == "npz":
        marker["file"] = crafted.name
    (results / "metrics.complete").write_text(json.dumps(marker))
    reason = r".*pickles are never loaded" if marker_format == "torch" else ""
    with pytest.warns(UserWarning, match=r"(?s)metrics\.\* is unreadable" + reason + ".*recomputing"):
        assert runs.cached_result("metrics", {"k": 1}, lambda: {"value": 2}) == {"value": 2}
    assert not evidence.exists() and not crafted.exists()  # never run; replaced by the recomputed value
    torch.save({"value": TouchOnLoad(evidence)}, tmp_path / "payload.pt")
    torch.load(tmp_path / "payload.pt", weights_only=False)  # the payload is real: unpickling runs it
    assert evidence.exists()


@pytest.mark.parametrize("damage", ["truncate", "edit", "drop_marker"])
def test_a_corrupt_cached_result_is_recomputed_after_a_warning(tmp_path, damage):
    runs = RunCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    runs.cached_result("metrics", {"k": 1}, compute)
    results = runs.find({"k": 1}) / "results"
    stored = results / json.loads((results / "metrics.complete").read_text())["file"]  # metrics.<random>.json
    if damage == "truncate":
        stored.write_text('{"val')
    elif damage == "edit":
        stored.write_text('{"value": 42}')
    else:
        (results / "metrics.complete").unlink()  # as after a crash between the data and the marker
    if damage == "drop_marker":
        assert runs.cached_result("metrics", {"k": 1}, compute) == {"value": 2}
    else:
        with pytest.warns(UserWarning, match=r"metrics\.\* is unreadable .*recomputing"):
            assert runs.cached_result("metrics", {"k": 1}, compute) == {"value": 2}
    assert runs.cached_result("metrics", {"k": 1}, compute) == {"value": 2} and len(calls) == 2


# ------------------------------------------------------------------------------------------
# Cached training
# ------------------------------------------------------------------------------------------


def test_train_cached_trains_once_then_returns_the_stored_run(images, tmp_path, monkeypatch):
    runs = RunCache(tmp_path)
    config = TrainConfig(epochs=2, batch_size=32, checkpoint_epochs=1)
    data_spec = {"dataset": "synthetic", "split": "train"}
    eval_sets = {"test": images[:32]}
    first = train_cached(tiny_config(), config, data_spec, images, eval_sets, model_seed=3, cache=runs)
    assert first.resumed_from is None and len(first.history) == 1

    steps = []
    real_elbo_terms = training.elbo_terms
    def counting_elbo_terms(*args, **kwargs):
        steps.append(1)
        return real_elbo_terms(*args, **kwargs)

    monkeypatch.setattr(training, "elbo_terms", counting_elbo_terms)
    second = train_cached(tiny_config(), config, data_spec, images, eval_sets, model_seed=3, cache=runs)
    assert steps == []  # no training step, no evaluation: everything came from the cache
    assert second.resumed_from == 2
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()))
    assert second.history == first.history
    monkeypatch.undo()

    # Another model seed, training config, data spec or data set is another run.
    other_seed = train_cached(tiny_config(), config, data_spec, images, eval_sets, model_seed=4, cache=runs)
    assert other_seed.resumed_from is None
    other_data = train_cached(tiny_config(), config, data_spec, 1 - images, eval_sets, model_seed=3, cache=runs)
    assert other_data.resumed_from is None
    assert len(list(tmp_path.iterdir())) == 3
    folder = next(path for path in tmp_path.iterdir() if path == first.run_dir.parent)
    assert folder.name.endswith("-MLPVAE-synthetic-e2")
    assert training.list_checkpoints(first.run_dir) == [1, 2]


class CrashingSource:
    """A data source (the same images every epoch) that raises in `crash_in_epoch`: a killed run."""

    def __init__(self, images):
        self.images, self.crash_in_epoch = images, None

    def describe(self) -> str:  # stable across instances: part of the cache key
        return "same-images"

    def __call__(self, epoch):
        if epoch == self.crash_in_epoch:
            raise KeyboardInterrupt(f"killed in epoch {epoch}")
        return self.images


def test_train_cached_resumes_an_interrupted_run(images, tmp_path):
    runs = RunCache(tmp_path)
    config = TrainConfig(epochs=3, batch_size=32, checkpoint_epochs=1)
    source = CrashingSource(images)
    straight = train_cached(tiny_config(), config, {"dataset": "s"}, images, data_source=source, cache=RunCache(tmp_path / "a"))
    source.crash_in_epoch = 3
    with pytest.raises(KeyboardInterrupt):
        train_cached(tiny_config(), config, {"dataset": "s"}, images, data_source=source, cache=runs)
    source.crash_in_epoch = None
    resumed = train_cached(tiny_config(), config, {"dataset": "s"}, images, data_source=source, cache=runs)
    assert resumed.resumed_from == 2
    pairs = zip(straight.model.state_dict().values(), resumed.model.state_dict().values())
    assert all(torch.equal(a, b) for a, b in pairs)


def test_train_cached_with_a_beta_sweep_ensemble(images, tmp_path):
    config = TrainConfig(epochs=1, batch_size=32, beta=[0.5, 2.0])
    result = train_cached([tiny_config(), tiny_config()], config, {"dataset": "s"}, images, {"test": images[:16]},
                          model_seed=[0, 1], cache=RunCache(tmp_path))
    assert result.model.num_members == 2 and len(result.history[-1]["elbo"]) == 2
    assert result.run_dir.parent.name.endswith("MLPVAEx2-s-e1")
    with pytest.raises(ValueError, match="needs model_seed as a list of 2 seeds"):
        train_cached([tiny_config()] * 2, config, {"dataset": "s"}, images, model_seed=0, cache=RunCache(tmp_path))


def test_a_corrupt_checkpoint_of_a_cached_run_is_an_error_not_a_silent_retrain(images, tmp_path):
    runs = RunCache(tmp_path)
    config = TrainConfig(epochs=2, batch_size=64)
    source = CrashingSource(images)
    source.crash_in_epoch = 2  # stopped after epoch 1, whose checkpoint holds the training state
    with pytest.raises(KeyboardInterrupt):
        train_cached(tiny_config(), config.with_changes(checkpoint_epochs=1), {"dataset": "s"}, images, data_source=source, cache=runs)
    run_dir = next(tmp_path.iterdir()) / "training"
    (run_dir / "checkpoints" / "epoch_0001" / "training_state.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"(?s)training_state.pt does not match the SHA-256.*Delete the checkpoint folder .*epoch_0001"):
        train_cached(tiny_config(), config.with_changes(checkpoint_epochs=1), {"dataset": "s"}, images, data_source=source, cache=runs)