"""Tests of vaegen_utils.synthetic: shipped diffusion checkpoints (export, hash-checked loading,
provenance) and sample banks, on diffusion.tiny_config (an 8x8 UNet) in temporary folders.

SHIPPED_ROOT and the table of shipped steps are monkeypatched so that nothing touches the
repository's checkpoints/, except the last test, which checks the committed checkpoints themselves
(skipped while they are not exported yet).
"""

from __future__ import annotations

import json

import pytest
import torch

from vaegen_utils import diffusion as D
from vaegen_utils import synthetic as S
from vaegen_utils.checks import file_sha256


@pytest.fixture(scope="module")
def square_images() -> torch.Tensor:
    images = torch.zeros((32, 1, 8, 8))
    images[:, :, 2:6, 2:6] = 1.0
    return images


@pytest.fixture(scope="module")
def tiny_run(square_images, tmp_path_factory):
    """A 6-step tiny run with checkpoints at steps 2, 4 and 6 (EMA kept)."""
    run_dir = tmp_path_factory.mktemp("run")
    D.train_diffusion(D.tiny_config(), square_images, steps=6, batch_size=8, learning_rate=3e-3, seed=0,
                      warmup_steps=2, run_dir=run_dir, checkpoint_steps=2)
    return run_dir


@pytest.fixture
def shipped(tiny_run, tmp_path, monkeypatch):
    """SHIPPED_ROOT in tmp_path holding the tiny run's step 6 ('final') and step 2 ('early') for binary_mnist."""
    monkeypatch.setattr(S, "SHIPPED_ROOT", tmp_path / "checkpoints" / "xiao2024")
    monkeypatch.setattr(S, "SHIPPED_STEPS", {("binary_mnist", "final"): 6, ("binary_mnist", "early"): 2})
    monkeypatch.setenv("VAEGEN_CACHE_DIR", str(tmp_path / "cache"))
    final = S.export_checkpoint(tiny_run, 6, "binary_mnist", stage="final", verify_data=False, note="test")
    early = S.export_checkpoint(tiny_run, 2, "binary_mnist", stage="early", verify_data=False)
    return {"final": final, "early": early}


def state_equal(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_export_then_load_round_trips_the_ema_weights(shipped, tiny_run):
    assert shipped["final"] == S.SHIPPED_ROOT / "binary_mnist-n1000-step0006"
    assert shipped["early"].name == "binary_mnist-n1000-step0002"
    assert sorted(path.name for path in shipped["final"].iterdir()) == ["complete", "config.json", "provenance.json", "weights.pt"]
    loaded = S.load_pretrained("binary_mnist")
    assert not loaded.training
    assert state_equal(loaded, D.load_checkpoint(tiny_run, 6))  # the EMA weights of step 6
    assert state_equal(S.load_pretrained("binary_mnist", stage="early"), D.load_checkpoint(tiny_run, 2))
    assert not state_equal(loaded, D.load_checkpoint(tiny_run, 6, ema=False))
    assert S.diffusion_model("binary_mnist") is not None


def test_provenance_records_hashes_settings_data_and_the_call(shipped):
    record = S.provenance("binary_mnist")
    assert record["weights_file_sha256"] == file_sha256(shipped["final"] / "weights.pt")
    assert record["weights_sha256"] == D.weights_sha256(S.load_pretrained("binary_mnist"))
    assert record["step"] == 6 and record["stage"] == "final" and record["ema"] is True
    assert record["diffusion_config"] == D.tiny_config().to_dict()
    assert record["data"]["n_train"] == 1000 and record["data"]["subset_seed"] == 0
    assert record["training"]["batch_size"] == 8 and record["training"]["precision"] == "float32"
    assert "train_diffusion(" in record["python_call"] and "steps=6" in record["python_call"]
    assert record["loss_curve"]["window"] == 50 and record["loss_curve"]["step"] == []  # fewer than 50 steps
    assert record["train_seconds"] >= 0 and record["versions"]["torch_training"] and record["note"] == "test"
    assert S.provenance("binary_mnist", stage="early")["step"] == 2


def test_a_corrupt_weight_file_is_refused_with_the_fix(shipped):
    weights = shipped["final"] / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="corrupt") as error:
        S.load_pretrained("binary_mnist")
    message = str(error.value)
    assert str(weights) in message and "git checkout" in message and "train_pretrained('binary_mnist', steps=6)" in message


def test_a_missing_file_is_refused_with_the_fix(shipped):
    (shipped["early"] / "weights.pt").unlink()
    with pytest.raises(FileNotFoundError, match="weights.pt is missing") as error:
        S.load_pretrained("binary_mnist", stage="early")
    assert "git checkout" in str(error.value) and "train_pretrained" in str(error.value)
    (shipped["final"] / "provenance.json").unlink()
    with pytest.raises(FileNotFoundError, match="provenance.json is missing.*git checkout"):
        S.load_pretrained("binary_mnist")


def test_bad_names_and_unshipped_models_are_refused(shipped):
    with pytest.raises(ValueError, match="dataset must be one of"):
        S.load_pretrained("mnist")
    with pytest.raises(ValueError, match="stage must be one of"):
        S.load_pretrained("binary_mnist", stage="middle")
    with pytest.raises(ValueError, match="no shipped 'early' diffusion model for 'fashion_mnist'.*retrain=True"):
        S.diffusion_model("fashion_mnist", stage="early")
    with pytest.raises(ValueError, match="trained for 6 steps, not 10; pass retrain=True"):
        S.diffusion_model("binary_mnist", steps=10)


def test_export_refuses_a_run_trained_on_other_data(tiny_run, tmp_path):
    with pytest.raises((ValueError, FileNotFoundError)):
        S.export_checkpoint(tiny_run, 6, "binary_mnist", stage="final", destination=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_train_pretrained_runs_the_recorded_recipe(monkeypatch, tmp_path):
    calls = {}

    def fake_train(config, images, **kwargs):
        calls.update(config=config, shape=tuple(images.shape), **kwargs)
        return D.DiffusionTrainResult(model="ema", raw_model="raw", losses=[], steps=kwargs["steps"])

    monkeypatch.setattr(S, "training_images", lambda dataset, n_train, subset_seed: torch.zeros((n_train, 1, 28, 28)))
    monkeypatch.setattr(D, "train_diffusion", fake_train)
    assert S.train_pretrained("binary_mnist", steps=750, n_train=10, run_dir=tmp_path) == "ema"
    assert calls["config"] == D.cpu_config() and calls["shape"] == (10, 1, 28, 28)
    assert {key: calls[key] for key in S.TRAINING} == S.TRAINING
    assert calls["steps"] == 750 and calls["run_dir"] == tmp_path
    S.diffusion_model("fashion_mnist", stage="early", retrain=True, n_train=10, run_dir=tmp_path)
    assert calls["steps"] == S.EARLY_STEP
    assert S.default_run_dir("binary_mnist").name == "xiao2024-binary_mnist-n1000-s0"


def test_sample_bank_generates_reuses_and_extends(shipped):
    model = S.load_pretrained("binary_mnist")
    settings = dict(steps=2, seed=1, batch_size=4)
    bank = S.sample_bank("binary_mnist", 6, **settings)  # model=None: the shipped 'final' model
    assert len(bank) == 6 and bank.settings["weights_sha256"] == D.weights_sha256(model)
    assert bank.settings["sampler"] == "ddim" and bank.settings["precision"] == "bfloat16"
    source = json.loads((bank.folder / S.SOURCE_FILE).read_text())
    assert source["stage"] == "final" and source["diffusion_model"]["shipped_folder"] == "binary_mnist-n1000-step0006"
    expected = D.quantize_uint8(D.sample(model, 6, steps=2, seed=1, batch_size=4, precision="bfloat16"))
    assert torch.equal(bank.uint8(0, 6), expected)
    grown = S.sample_bank("binary_mnist", 10, model=model, **settings)  # same settings: same folder, extended
    assert grown.folder == bank.folder and len(grown) == 10 and torch.equal(grown.uint8(0, 6), expected)
    seconds = list(grown.manifest["seconds_per_chunk"])
    again = S.sample_bank("binary_mnist", 3, **settings)  # a smaller request is served by the bigger bank
    assert again.folder == bank.folder and len(again) == 10 and again.manifest["seconds_per_chunk"] == seconds
    early = S.sample_bank("binary_mnist", 3, stage="early", **settings)
    assert early.folder != bank.folder and early.settings["weights_sha256"] != bank.settings["weights_sha256"]


@pytest.mark.parametrize(("dataset", "stage"), sorted(S.SHIPPED_STEPS), ids=lambda value: str(value))
def test_the_shipped_checkpoints_load_and_match_their_hashes(dataset, stage, monkeypatch):
    monkeypatch.setattr(S, "SHIPPED_ROOT", S.paths.repo_root() / "checkpoints" / "xiao2024")
    folder = S.shipped_folder(dataset, stage=stage)
    if not (folder / S.PROVENANCE_FILE).is_file():
        pytest.skip(f"{folder} is not exported yet (synthetic.export_checkpoint)")
    record = S.provenance(dataset, stage=stage)
    assert record["step"] == S.SHIPPED_STEPS[(dataset, stage)] and record["dataset"] == dataset and record["stage"] == stage
    assert record["data"]["n_train"] == S.N_TRAIN and record["data"]["subset_seed"] == S.SUBSET_SEED
    assert record["diffusion_config"] == D.cpu_config().to_dict() and record["ema"] is True
    assert {key: record["training"][key] for key in S.TRAINING} == S.TRAINING  # train_pretrained reproduces it
    assert (folder / "weights.pt").stat().st_size < 5_000_000
    model = S.load_pretrained(dataset, stage=stage)  # checks both hashes
    assert D.weights_sha256(model) == record["weights_sha256"]


def test_quality_report_separates_copies_plausible_and_implausible_samples():
    generator = torch.Generator().manual_seed(0)
    train = (torch.rand((60, 1, 8, 8), generator=generator) < 0.2).float()
    test = (torch.rand((40, 1, 8, 8), generator=generator) < 0.2).float()
    copies = S.quality_report(train[:20].clone(), train, test)
    assert copies["sample_median"] == 0.0 and copies["test_median"] > 1.0 and copies["near_copy_fraction"] == 1.0
    assert copies["sample_test_median"] == pytest.approx(float(copies["train_test_distances"][:20].double().median()), abs=1.0)
    assert copies["plausible_fraction"] >= 0.9 and copies["plausible_sample_median"] == 0.0
    subset = S.quality_report(train[:20].clone(), train, test, max_queries=5, seed=3)
    assert len(subset["sample_distances"]) == 5 and subset["plausible_sample_median"] == 0.0
    white = S.quality_report(torch.ones((10, 1, 8, 8)), train, test)
    assert white["plausible_fraction"] == 0.0 and white["sample_test_median"] > copies["sample_test_median"]
    assert white["ink_range"][0] <= 0.2 <= white["ink_range"][1]


def test_loss_curve_from_the_shipped_record_and_from_a_run(shipped, tiny_run):
    assert S.loss_curve("binary_mnist") == S.provenance("binary_mnist")["loss_curve"]
    curve = S.loss_curve("binary_mnist", run_dir=tiny_run, window=2)
    assert curve["step"] == [2, 4, 6] and len(curve["mean_loss"]) == 3
    assert S.loss_curve("binary_mnist", run_dir=tiny_run, step=2, window=2)["step"] == [2]


# --------------------------------------------------------------------------------------------
# Settings per profile: the bank and the DM notebook
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_one_bank_per_profile_shared_by_the_dm_notebook_and_the_vae_runs(profile):
    from vaegen_utils import xiao2024

    bank = S.bank_settings(profile)
    assert bank.stage == "final" and bank.sampler in D.SAMPLERS and bank.seed == 0
    assert S.dm_notebook_settings(profile).bank == bank == xiao2024.study(profile, "fashion_mnist").bank
    assert xiao2024.bank_settings is S.bank_settings and xiao2024.BankSettings is S.BankSettings
    assert S.bank_settings(profile, stage="early") == bank.with_changes(stage="early")
    assert S.bank_settings(profile, steps=None, stage=None) == bank  # None: the profile's value
    settings = S.dm_notebook_settings(profile)
    assert settings.n_check <= settings.n_samples and settings.early_steps < settings.dm_steps
    assert settings.models() == [("binary_mnist", "final"), ("fashion_mnist", "final"), ("binary_mnist", "early")]
    json.dumps(settings.to_dict())


def test_bank_and_dm_notebook_overrides():
    assert S.bank_settings("paper").sample_options() == {"sampler": "heun", "steps": 18, "seed": 0, "precision": "bfloat16"}
    assert S.bank_settings("cpu", steps=10).steps == 10
    cpu = S.dm_notebook_settings("cpu")
    assert not cpu.retrain and cpu.n_train == S.N_TRAIN and cpu.training_steps("early") == S.EARLY_STEP
    assert S.dm_notebook_settings("cpu", retrain=True, n_samples=100).retrain
    assert S.dm_notebook_settings("cpu", n_samples=100).n_check == 100, "n_check is capped at n_samples"
    assert S.dm_notebook_settings("cpu", retrain=None, n_samples=None) == cpu
    assert S.dm_notebook_settings("paper").n_train is None  # all 60,000 images


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: S.bank_settings("cpu", stpes=10), "'stpes' \\(did you mean 'steps'\\?\\)"),
        (lambda: S.bank_settings("cpu", steps="20"), "steps must be an integer, got str '20'"),
        (lambda: S.bank_settings("cpu", sampler="euler"), "unknown sampler 'euler'"),
        (lambda: S.bank_settings("cpu", stage="middle"), "stage must be 'final' or 'early'"),
        (lambda: S.dm_notebook_settings("cpu", n_sample=10), "'n_sample' \\(did you mean 'n_samples'\\?\\)"),
        (lambda: S.dm_notebook_settings("cpu", datasets="binary_mnist"), "datasets must be a list .*got the string"),
        (lambda: S.dm_notebook_settings("cpu", retrain="yes"), "retrain must be True or False"),
        (lambda: S.dm_notebook_settings("cpu", n_samples="2000"), "n_check must be an integer|n_samples must be an integer"),
    ],
)
def test_bad_bank_and_dm_notebook_settings_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
