"""Tests of vaegen_utils.ensemble.EnsembleConvVAE: each grouped-conv member computes what its ConvVAE does.

Mirrors tests/test_ensemble.py (the MLP ensemble): outputs, gradients, one Adam step, a short
training run through the engine, member extraction, save/load and the result cache.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from vaegen_utils import models
from vaegen_utils.cache import RunCache, train_cached
from vaegen_utils.ensemble import EnsembleConvVAE, EnsembleMLPVAE, ensemble_class_for
from vaegen_utils.estimators import gaussian_kl_to_standard_normal
from vaegen_utils.models import ConvVAEConfig, build_model
from vaegen_utils.training import TrainConfig, train

TOLERANCE = dict(rtol=1e-5, atol=1e-5)
NUM_MEMBERS = 3

CONFIGS = {
    "1-layer bernoulli exp": ConvVAEConfig(data_shape=(3, 8, 8), latent_dim=4, channels=6, num_layers=1),
    "3-layer bernoulli exp": ConvVAEConfig(data_shape=(3, 8, 8), latent_dim=5, channels=4, num_layers=3),
    "2-layer logistic softplus": ConvVAEConfig(data_shape=(1, 8, 8), latent_dim=3, channels=5, num_layers=2,
                                               likelihood="discretized_logistic", encoder_std="softplus"),
}


def make_data(config: ConvVAEConfig, shape, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if config.likelihood == "bernoulli":
        return torch.rand(shape, generator=generator)  # paper C: Bernoulli on [0, 1] values
    return torch.randint(0, 256, shape, generator=generator).float() / 255.0


def members_and_ensemble(config: ConvVAEConfig, num_members: int = NUM_MEMBERS):
    members = [build_model(config, seed=10 + index) for index in range(num_members)]
    return members, EnsembleConvVAE.from_members(members)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_members_match_standalone_models(name):
    config = CONFIGS[name]
    members, ensemble = members_and_ensemble(config)
    batch = 5
    shared_x = make_data(config, (batch, *config.data_shape), seed=0)
    per_member_x = make_data(config, (NUM_MEMBERS, batch, *config.data_shape), seed=1)
    for x, member_x in [(shared_x, lambda i: shared_x), (per_member_x, lambda i: per_member_x[i])]:
        mean, log_std = ensemble.encode(x)
        assert mean.shape == log_std.shape == (NUM_MEMBERS, batch, config.latent_dim)
        z = torch.randn(2, NUM_MEMBERS, batch, config.latent_dim, generator=torch.Generator().manual_seed(2))
        params = ensemble.decode(z)
        assert params.shape == (2, NUM_MEMBERS, batch, *ensemble.param_shape)
        log_likelihood = ensemble.log_likelihood(x, z)
        assert log_likelihood.shape == (2, NUM_MEMBERS, batch)
        reconstruction = ensemble.reconstruct(x)
        for index, member in enumerate(members):
            expected_mean, expected_log_std = member.encode(member_x(index))
            torch.testing.assert_close(mean[index], expected_mean, **TOLERANCE)
            torch.testing.assert_close(log_std[index], expected_log_std, **TOLERANCE)
            torch.testing.assert_close(params[:, index], member.decode(z[:, index]), **TOLERANCE)
            torch.testing.assert_close(
                log_likelihood[:, index], member.log_likelihood(member_x(index), z[:, index]), **TOLERANCE
            )
            torch.testing.assert_close(reconstruction[index], member.reconstruct(member_x(index)), **TOLERANCE)


@pytest.mark.parametrize("num_layers", [1, 3])
def test_paper_c_cnn_members_match_standalone_models(num_layers):
    """Paper C's CNN at full size (3x32x32, 64 channels, kernel 4, stride 2)."""
    config = models.bozkurt2021_cnn(num_layers)
    members, ensemble = members_and_ensemble(config, num_members=2)
    x = make_data(config, (3, *config.data_shape), seed=0)
    mean, log_std = ensemble.encode(x)
    z = mean + torch.exp(log_std) * torch.randn(mean.shape, generator=torch.Generator().manual_seed(1))
    log_likelihood = ensemble.log_likelihood(x, z.unsqueeze(0))
    for index, member in enumerate(members):
        expected_mean, expected_log_std = member.encode(x)
        torch.testing.assert_close(mean[index], expected_mean, **TOLERANCE)
        torch.testing.assert_close(log_std[index], expected_log_std, **TOLERANCE)
        expected = member.log_likelihood(x, z[index].unsqueeze(0))[0]
        torch.testing.assert_close(log_likelihood[0, index], expected, rtol=1e-5, atol=1e-3)  # sums of 3072 terms


@pytest.mark.parametrize("shared_batch", [True, False])
def test_gradients_match_standalone_models(shared_batch):
    """Gradients of the summed member losses equal each model's own gradients (groups do not mix)."""
    config = CONFIGS["3-layer bernoulli exp"]
    members, ensemble = members_and_ensemble(config)
    batch = 6
    betas = torch.tensor([0.1, 1.0, 3.0])
    shape = (batch, *config.data_shape) if shared_batch else (NUM_MEMBERS, batch, *config.data_shape)
    x = make_data(config, shape, seed=3)
    noise = torch.randn(NUM_MEMBERS, batch, config.latent_dim, generator=torch.Generator().manual_seed(4))

    def loss_terms(model, data, eps, beta):
        mean, log_std = model.encode(data)
        z = mean + torch.exp(log_std) * eps
        distortion = -model.log_likelihood(data, z.unsqueeze(0)).squeeze(0)
        return (distortion + beta * gaussian_kl_to_standard_normal(mean, log_std)).mean(dim=-1)

    loss_terms(ensemble, x, noise, betas.unsqueeze(-1)).sum().backward()
    for index, member in enumerate(members):
        loss_terms(member, x if shared_batch else x[index], noise[index], float(betas[index])).backward()
        gradients = copy.deepcopy(member)
        for parameter, source in zip(gradients.parameters(), member.parameters()):
            parameter.data.copy_(source.grad)
        # Read the ensemble's gradients back through member(i): the same layout code as the weights.
        stacked = copy.deepcopy(ensemble)
        for parameter, source in zip(stacked.parameters(), ensemble.parameters()):
            parameter.data.copy_(source.grad)
        for (name, expected), actual in zip(gradients.state_dict().items(), stacked.member(index).state_dict().values()):
            torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5, msg=f"member {index}: {name}")


def test_engine_training_matches_standalone_runs():
    """Through training.train: 2 epochs x 4 steps with per-member betas and noise seeds.

    In float64: grouped and plain convolutions sum in different orders, and Adam divides each
    gradient by its own running RMS, so a summation difference on a near-zero gradient component
    (1e-8 in float32) becomes a full-size update difference. In float32 one member drifted 2e-5 on
    an AMD EPYC CPU while the same code matched to 1e-8 on another machine. In float64 the members
    match to 1e-16, so any real difference (a wrong beta, seed or batch order) stands out.
    """
    config = CONFIGS["1-layer bernoulli exp"]
    images = make_data(config, (32, *config.data_shape), seed=5).double()
    singles = [build_model(config, seed=seed).double() for seed in (1, 2, 3)]
    ensemble = EnsembleConvVAE.from_members([copy.deepcopy(model) for model in singles])
    common = dict(epochs=2, batch_size=8, seed=3)
    betas, noise_seeds = [0.5, 1.0, 2.0], [21, 22, 23]
    train(ensemble, images, TrainConfig(beta=betas, member_seeds=noise_seeds, **common))
    for index, (single, beta, noise_seed) in enumerate(zip(singles, betas, noise_seeds)):
        train(single, images, TrainConfig(beta=beta, member_seeds=[noise_seed], **common))
        for (name, expected), actual in zip(single.state_dict().items(), ensemble.member(index).state_dict().values()):
            torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12, msg=f"member {index}: {name}")


def test_member_extraction_round_trip_layout_and_parameter_split():
    config = CONFIGS["3-layer bernoulli exp"]
    members, ensemble = members_and_ensemble(config)
    for index, member in enumerate(ensemble.to_members()):
        assert isinstance(member, models.ConvVAE) and member.config == config
        for (name, a), (_, b) in zip(member.state_dict().items(), members[index].state_dict().items()):
            assert torch.equal(a, b), name
    rebuilt = EnsembleConvVAE.from_members(ensemble.to_members())
    for (name, a), (_, b) in zip(rebuilt.state_dict().items(), ensemble.state_dict().items()):
        assert torch.equal(a, b), name
    assert ensemble.num_parameters() == NUM_MEMBERS * members[0].num_parameters()
    assert tuple(ensemble.encoder.convs[0].weight.shape) == (NUM_MEMBERS * 4, 3, 4, 4)
    assert tuple(ensemble.decoder.deconvs[-1].weight.shape) == (NUM_MEMBERS * 4, 3, 4, 4)
    encoder = {id(p) for p in ensemble.encoder_parameters()}
    decoder = {id(p) for p in ensemble.decoder_parameters()}
    assert encoder and decoder and not encoder & decoder
    assert encoder | decoder == {id(p) for p in ensemble.parameters()}


def test_build_with_seeds_matches_build_model_and_sampling_shapes():
    config = CONFIGS["1-layer bernoulli exp"]
    state_before = torch.random.get_rng_state()
    ensemble = EnsembleConvVAE.build(config, seeds=[3, 4])
    assert torch.equal(torch.random.get_rng_state(), state_before)
    for index, seed in enumerate([3, 4]):
        expected = build_model(config, seed=seed)
        for (name, a), (_, b) in zip(ensemble.member(index).state_dict().items(), expected.state_dict().items()):
            assert torch.equal(a, b), name
    z, x = ensemble.sample_with_latents(7, generator=torch.Generator().manual_seed(0))
    assert z.shape == (2, 7, config.latent_dim) and x.shape == (2, 7, *config.data_shape)


def test_save_load_round_trip(tmp_path):
    config = CONFIGS["2-layer logistic softplus"]
    _, ensemble = members_and_ensemble(config)
    folder = models.save(ensemble, tmp_path / "ensemble")
    payload = json.loads((folder / "config.json").read_text())
    assert payload["kind"] == "conv_vae_ensemble" and payload["num_members"] == NUM_MEMBERS
    loaded = models.load(folder)
    assert isinstance(loaded, EnsembleConvVAE) and loaded.config == config
    x = make_data(config, (4, *config.data_shape), seed=0)
    for a, b in zip(ensemble.encode(x), loaded.encode(x)):
        assert torch.equal(a, b)


def test_train_cached_builds_a_conv_ensemble_from_a_list_of_conv_configs(tmp_path):
    config = CONFIGS["1-layer bernoulli exp"]
    images = make_data(config, (16, *config.data_shape), seed=6)
    train_config = TrainConfig(epochs=1, batch_size=8, beta=[0.5, 2.0])
    result = train_cached([config, config], train_config, {"dataset": "s"}, images, model_seed=[0, 1],
                          cache=RunCache(tmp_path))
    assert isinstance(result.model, EnsembleConvVAE) and result.model.num_members == 2
    again = train_cached([config, config], train_config, {"dataset": "s"}, images, model_seed=[0, 1],
                         cache=RunCache(tmp_path))  # a cache hit reloads the checkpoint through models.load
    for a, b in zip(result.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)


def test_errors():
    config = CONFIGS["1-layer bernoulli exp"]
    members, ensemble = members_and_ensemble(config)
    with pytest.raises(ValueError, match="at least one"):
        EnsembleConvVAE.from_members([])
    other = build_model(ConvVAEConfig(data_shape=(3, 8, 8), latent_dim=4, channels=3), seed=0)
    with pytest.raises(ValueError, match="share one ConvVAEConfig"):
        EnsembleConvVAE.from_members([members[0], other])
    with pytest.raises(ValueError, match="ConvVAE models only"):
        EnsembleConvVAE.from_members([build_model(models.MLPVAEConfig(), seed=0)])
    with pytest.raises(ValueError, match="needs a ConvVAEConfig"):
        EnsembleConvVAE(models.MLPVAEConfig(), 2)
    with pytest.raises(ValueError, match=r"\(M=3, B, \.\.\.\)"):
        ensemble.encode(torch.zeros(2, 4, 3, 8, 8))
    with pytest.raises(ValueError, match="member dimension"):
        ensemble.decode(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="member index"):
        ensemble.member(3)
    assert ensemble_class_for(config) is EnsembleConvVAE
    assert ensemble_class_for(models.MLPVAEConfig()) is EnsembleMLPVAE
    with pytest.raises(ValueError, match="BatchNorm"):
        ensemble_class_for(models.ResidualConvVAEConfig())
